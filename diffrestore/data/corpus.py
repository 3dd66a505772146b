"""Random access to the waveforms of a corpus: from memory (pure TensorFlow gathers) or from disk.

The training pipeline reads "samples [start, start + length) of file i" for (i, start) drawn
inside the tf.data graph. A `MemoryStore` answers with a gather on one concatenated array (no
Python, no GIL: the JAX training loop's host thread is not slowed down); a `FileStore` answers
with a soundfile read of only those samples (through `tf.numpy_function`) for corpora larger
than the memory budget. Both give identical float32 samples (integer files scaled by 1/32768).

Clean audio for the priors (`load_clean_store`) may have any channel count and sample rate: it is
downmixed to mono (mean of the channels) and resampled to the corpus rate, once per file when
loaded into memory, or per crop when read from disk (`ResampledFileStore`); both give the same
samples (to float32 rounding).
"""
from __future__ import annotations

import concurrent.futures
import math

import numpy as np
import soundfile as sf

from diffrestore.data.pairs import AudioInfo, DataError, read_downmixed, read_mono

_INT16_SCALE = 1.0 / 32768.0  # libsndfile's int16 -> float scaling; exact in float32


def _storage_dtype(infos: list[AudioInfo]):
    # 16-bit files are kept as int16: half the memory, and lossless.
    return np.int16 if infos and all(i.subtype == "PCM_16" for i in infos) else np.float32


def estimate_nbytes(infos: list[AudioInfo]) -> int:
    """Bytes a `MemoryStore` of these files takes (one channel each)."""
    return sum(i.num_samples for i in infos) * np.dtype(_storage_dtype(infos)).itemsize


class MemoryStore:
    """Waveforms held as one concatenated int16 or float32 array.

    Attributes:
      data: (sum of lengths,) int16 or float32.
      lengths: (N,) int64 samples per waveform.
      offsets: (N,) int64 start of each waveform in `data`.
    """

    def __init__(self, data: np.ndarray, lengths):
        self.data = np.ascontiguousarray(data)
        self.lengths = np.asarray(lengths, np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.scale = _INT16_SCALE if self.data.dtype == np.int16 else 1.0
        self._tf_tensors = None

    @classmethod
    def from_waves(cls, waves) -> "MemoryStore":
        """From a list of 1-D arrays (all int16, or anything else stored as float32)."""
        dtype = np.int16 if waves and all(w.dtype == np.int16 for w in waves) else np.float32
        lengths = [w.shape[0] for w in waves]
        data = np.concatenate([np.asarray(w, dtype) for w in waves]) if waves else np.zeros(0, dtype)
        return cls(data, lengths)

    @classmethod
    def from_files(cls, infos: list[AudioInfo], *, channel: int | None = None, max_workers: int = 16) -> "MemoryStore":
        """Reads every file into one array (concurrently; decoding releases the GIL).

        Args:
          channel: None requires mono files; an index takes that channel.
        """
        dtype = _storage_dtype(infos)
        store = cls(np.empty(sum(i.num_samples for i in infos), dtype), [i.num_samples for i in infos])

        def load(k):
            info, offset = infos[k], store.offsets[k]
            try:
                wave, _ = sf.read(str(info.path), dtype=np.dtype(dtype).name, always_2d=True)
            except Exception as err:
                raise DataError(f"{info.path}: not a readable audio file ({err})") from None
            if channel is None and wave.shape[1] != 1:
                raise DataError(f"{info.path}: {wave.shape[1]} channels (diffrestore trains on mono files)")
            if wave.shape[0] != info.num_samples:  # the file changed since its header was read
                raise DataError(f"{info.path}: read {wave.shape[0]} samples, its header says {info.num_samples}")
            store.data[offset: offset + info.num_samples] = wave[:, channel or 0]

        with concurrent.futures.ThreadPoolExecutor(max_workers) as pool:
            list(pool.map(load, range(len(infos))))
        return store

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def wave(self, index: int) -> np.ndarray:
        """Waveform `index` as float32."""
        start = self.offsets[index]
        return self.data[start: start + self.lengths[index]].astype(np.float32) * np.float32(self.scale)

    def read(self, index: int, start: int, length: int) -> np.ndarray:
        """numpy `read_tf`: (length,) float32, zero outside the waveform."""
        index, start, length = int(index), int(start), int(length)
        out = np.zeros(length, np.float32)
        n = int(self.lengths[index])
        lo, hi = max(start, 0), min(start + length, n)
        if hi > lo:
            base = int(self.offsets[index])
            out[lo - start: hi - start] = self.data[base + lo: base + hi].astype(np.float32) * np.float32(self.scale)
        return out

    def _tensors(self, tf):
        if self._tf_tensors is None:
            # init_scope lifts the conversion out of any graph being traced: the array becomes
            # an eager tensor the dataset captures by reference, not a graph constant (which
            # would copy it and fail beyond 2 GB).
            with tf.init_scope():
                self._tf_tensors = (tf.convert_to_tensor(self.data), tf.constant(self.offsets), tf.constant(self.lengths))
        return self._tf_tensors

    def read_tf(self, tf, index, start, length: int):
        """(length,) float32: samples [start, start + length) of waveform `index`, zero outside it
        (start may be negative)."""
        data, offsets, lengths = self._tensors(tf)
        n = lengths[index]
        pos = tf.cast(start, tf.int64) + tf.range(length, dtype=tf.int64)
        inside = (pos >= 0) & (pos < n)
        values = tf.gather(data, offsets[index] + tf.clip_by_value(pos, 0, n - 1))
        return tf.where(inside, tf.cast(values, tf.float32) * self.scale, 0.0)

    def read_looped_tf(self, tf, index, start, length: int):
        """(length,) float32: samples from `start` on, wrapping around to the file start."""
        data, offsets, lengths = self._tensors(tf)
        pos = (tf.cast(start, tf.int64) + tf.range(length, dtype=tf.int64)) % lengths[index]
        return tf.cast(tf.gather(data, offsets[index] + pos), tf.float32) * self.scale


class FileStore:
    """Waveforms read from disk on demand, only the samples asked for.

    Attributes:
      infos: the files' headers.
      lengths: (N,) int64 samples per file.
    """

    def __init__(self, infos: list[AudioInfo], *, channel: int | None = None):
        self.infos = list(infos)
        self.lengths = np.asarray([i.num_samples for i in infos], np.int64)
        self.channel = channel
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self.infos)

    def wave(self, index: int) -> np.ndarray:
        return read_mono(self.infos[index].path, channel=self.channel)

    def read(self, index: int, start: int, length: int) -> np.ndarray:
        """numpy `MemoryStore.read_tf`: zero outside the file."""
        index, start, length = int(index), int(start), int(length)
        n = int(self.lengths[index])
        out = np.zeros(length, np.float32)
        lo, hi = max(start, 0), min(start + length, n)
        if hi > lo:
            out[lo - start: hi - start] = read_mono(self.infos[index].path, start=lo, num_samples=hi - lo, channel=self.channel)
        return out

    def read_looped(self, index: int, start: int, length: int) -> np.ndarray:
        """numpy `MemoryStore.read_looped_tf`."""
        index, start, length = int(index), int(start), int(length)
        n = int(self.lengths[index])
        if start + length <= n:
            return read_mono(self.infos[index].path, start=start, num_samples=length, channel=self.channel)
        wave = self.wave(index)
        return wave[(start + np.arange(length)) % n]

    def read_tf(self, tf, index, start, length: int):
        out = tf.numpy_function(self.read, [index, start, length], tf.float32, stateful=False)
        return tf.ensure_shape(out, [length])

    def read_looped_tf(self, tf, index, start, length: int):
        out = tf.numpy_function(self.read_looped, [index, start, length], tf.float32, stateful=False)
        return tf.ensure_shape(out, [length])


def resampled_length(num_samples: int, from_rate: int, to_rate: int) -> int:
    """Samples of `diffrestore.audio.resample.resample` of `num_samples` (scipy's resample_poly
    gives ceil(n * to / from))."""
    g = math.gcd(int(from_rate), int(to_rate))
    up, down = int(to_rate) // g, int(from_rate) // g
    return -(-int(num_samples) * up // down)


def _resample(wave: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    from diffrestore.audio.resample import resample

    return resample(wave, from_rate, to_rate)


def _check_finite(wave: np.ndarray, path) -> None:
    if not np.all(np.isfinite(wave)):
        raise DataError(f"{path}: {int(np.sum(~np.isfinite(wave)))} samples are NaN or infinite")


def _keeps_int16(info: AudioInfo, sample_rate: int) -> bool:
    # Only mono 16-bit files at the corpus rate can be held as their int16 samples.
    return info.subtype == "PCM_16" and info.channels == 1 and info.sample_rate == sample_rate


def estimate_clean_nbytes(infos: list[AudioInfo], *, sample_rate: int) -> int:
    """Bytes of `clean_memory_store(infos, sample_rate=...)`."""
    itemsize = 2 if infos and all(_keeps_int16(i, sample_rate) for i in infos) else 4
    return sum(resampled_length(i.num_samples, i.sample_rate, sample_rate) for i in infos) * itemsize


def clean_memory_store(infos: list[AudioInfo], *, sample_rate: int, max_workers: int = 16) -> MemoryStore:
    """Clean audio read into memory once: each file downmixed to mono (mean of its channels) and
    resampled from its own rate to `sample_rate` (`diffrestore.audio.resample.resample`).

    Mono 16-bit files at `sample_rate` are kept as int16 when all files are; anything else is
    stored as float32.

    Raises:
      DataError: an unreadable file, one that changed since its header was read, or one with NaN
        or infinite samples (named).
    """
    as_int16 = bool(infos) and all(_keeps_int16(i, sample_rate) for i in infos)
    lengths = [resampled_length(i.num_samples, i.sample_rate, sample_rate) for i in infos]
    store = MemoryStore(np.empty(sum(lengths), np.int16 if as_int16 else np.float32), lengths)

    def load(k):
        info, offset = infos[k], store.offsets[k]
        if as_int16:
            try:
                wave = sf.read(str(info.path), dtype="int16", always_2d=True)[0][:, 0]
            except Exception as err:
                raise DataError(f"{info.path}: not a readable audio file ({err})") from None
        else:
            wave = read_downmixed(info.path)
        if wave.shape[0] != info.num_samples:  # the file changed since its header was read
            raise DataError(f"{info.path}: read {wave.shape[0]} samples, its header says {info.num_samples}")
        if not as_int16:
            _check_finite(wave, info.path)
            wave = _resample(wave, info.sample_rate, sample_rate).astype(np.float32)
        store.data[offset: offset + lengths[k]] = wave

    with concurrent.futures.ThreadPoolExecutor(max_workers) as pool:
        list(pool.map(load, range(len(infos))))
    return store


class ResampledFileStore:
    """Clean audio read from disk per crop, downmixed and resampled to `sample_rate`.

    A crop of samples [start, start + length) at `sample_rate` reads the matching span of the
    file at its own rate (plus the resampling filter's reach on both sides, zeros outside the
    file) and resamples it: the same samples `clean_memory_store` gives, where the whole file
    is resampled at once. NaN or infinite samples are found (and named) when a crop holds them.

    Attributes:
      infos: the files' headers.
      lengths: (N,) int64 samples per file at `sample_rate`.
    """

    def __init__(self, infos: list[AudioInfo], *, sample_rate: int):
        self.infos = list(infos)
        self.sample_rate = int(sample_rate)
        self.lengths = np.asarray([resampled_length(i.num_samples, i.sample_rate, sample_rate) for i in infos], np.int64)
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self.infos)

    def wave(self, index: int) -> np.ndarray:
        """File `index`, whole, as float32 at `sample_rate`."""
        info = self.infos[index]
        wave = read_downmixed(info.path)
        _check_finite(wave, info.path)
        return _resample(wave, info.sample_rate, self.sample_rate).astype(np.float32)

    def _read_source(self, info: AudioInfo, lo: int, hi: int) -> np.ndarray:
        """Samples [lo, hi) at the file's rate, zero outside the file, checked finite."""
        out = np.zeros(hi - lo, np.float64)
        a, b = max(lo, 0), min(hi, info.num_samples)
        if b > a:
            wave = read_downmixed(info.path, start=a, num_samples=b - a)
            _check_finite(wave, info.path)
            out[a - lo: a - lo + wave.shape[0]] = wave
        return out

    def read(self, index: int, start: int, length: int) -> np.ndarray:
        """(length,) float32: samples [start, start + length) at `sample_rate`, zero outside."""
        index, start, length = int(index), int(start), int(length)
        info = self.infos[index]
        out = np.zeros(length, np.float32)
        lo, hi = max(start, 0), min(start + length, int(self.lengths[index]))
        if hi <= lo:
            return out
        if info.sample_rate == self.sample_rate:
            out[lo - start: hi - start] = self._read_source(info, lo, hi)
            return out
        g = math.gcd(info.sample_rate, self.sample_rate)
        up, down = self.sample_rate // g, info.sample_rate // g
        # resample_poly's filter reaches 10 max(up, down) samples of the up-sampled signal to
        # each side, i.e. 10 max(up, down) / down output samples.
        margin = -(-10 * max(up, down) // down) + 2
        # Output sample j of resample_poly(x[q down:], up, down) is output sample q up + j of the
        # whole file's: a span starting at a multiple of `down` keeps the filter phases aligned.
        q0 = (lo - margin) // up
        q1 = -(-(hi + margin) // up)
        y = _resample(self._read_source(info, q0 * down, q1 * down), info.sample_rate, self.sample_rate)
        out[lo - start: hi - start] = y[lo - q0 * up: hi - q0 * up]
        return out

    def read_tf(self, tf, index, start, length: int):
        out = tf.numpy_function(self.read, [index, start, length], tf.float32, stateful=False)
        return tf.ensure_shape(out, [length])


def load_clean_store(infos: list[AudioInfo], *, sample_rate: int, budget_bytes: int):
    """A `clean_memory_store` if it fits in `budget_bytes`, else a `ResampledFileStore`."""
    if estimate_clean_nbytes(infos, sample_rate=sample_rate) <= budget_bytes:
        return clean_memory_store(infos, sample_rate=sample_rate)
    return ResampledFileStore(infos, sample_rate=sample_rate)


def load_store(infos: list[AudioInfo], *, budget_bytes: int, channel: int | None = None):
    """A `MemoryStore` if the files fit in `budget_bytes`, else a `FileStore`."""
    if estimate_nbytes(infos) <= budget_bytes:
        return MemoryStore.from_files(infos, channel=channel)
    return FileStore(infos, channel=channel)
