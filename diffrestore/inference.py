"""The inference engine under `Enhancer.enhance` and `Prior.restore`: signals of any lengths
in, the same lengths out, with few compiled programs and every device busy.

A call turns its signals into *segments* (a whole signal, or overlapping chunks of a long
one), groups segments of one length *bucket* into *batches* of at most `max_rows` rows
(rounded up only to `row_counts`), asks `Programs` for each batch's compiled program (built
ahead of time in a background thread, in the order the batches run, checked against the
memory the devices have, kept in the persistent XLA cache), runs them with the rows sharded
over the devices, and joins the chunks of each signal again with raised-cosine cross-fades.
What a program computes, and what a row holds besides the signal (an observation, a mask),
is the caller's: the engine only slices, pads and joins sample-aligned arrays.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import math
import threading
import time
from typing import Callable, Hashable, Sequence

import jax
import numpy as np

from diffrestore import xla_cache

log = logging.getLogger("diffrestore")


class BatchTooLargeError(MemoryError):
    """A batch whose program needs more memory than the device (or host) has free."""


# --------------------------------------------------------------------------- segments and batches
@dataclasses.dataclass(frozen=True)
class Segment:
    """One row of work: samples [start, start + length) of signal `signal`, in `bucket`.

    chunk: -1 for a whole signal, else the index of this chunk among the signal's chunks
    (it is folded into the row's random key, so chunks draw different noise).
    """

    signal: int
    chunk: int
    start: int
    length: int
    bucket: int


@dataclasses.dataclass(frozen=True)
class Batch:
    """Segments of one bucket run together on `rows` rows (rows >= len(segments): the extra
    rows repeat the first segment and their output is discarded)."""

    bucket: int
    rows: int
    segments: tuple


@dataclasses.dataclass(frozen=True)
class DeviceRows:
    """Local devices as one batch axis: rows sharded over them, weights replicated on each."""

    mesh: jax.sharding.Mesh
    rows: jax.sharding.NamedSharding
    replicated: jax.sharding.NamedSharding

    @classmethod
    def local(cls, devices=None) -> "DeviceRows":
        """Over `devices` (default this process's `jax.local_devices()`)."""
        devices = jax.local_devices() if devices is None else list(devices)
        mesh = jax.sharding.Mesh(np.array(devices), ("batch",))
        spec = jax.sharding.PartitionSpec
        return cls(mesh, jax.sharding.NamedSharding(mesh, spec("batch")), jax.sharding.NamedSharding(mesh, spec()))


def as_signals(waves) -> tuple[list[np.ndarray], bool]:
    """The signals of an `enhance`/`restore` call as float32 1-D arrays, and whether the caller
    passed one signal (a 1-D array) rather than a list of them.

    Integer PCM arrays are scaled as soundfile reads them: signed n-bit samples divided by
    2^(n−1) (int16 32767 -> 0.99997), unsigned ones centred on 2^(n−1) first (uint8 WAV).

    Raises:
      ValueError: naming the signal: not 1-D, empty, NaN/infinite samples, or a boolean or
        complex array; a 2-D array (pass its channels as a list of 1-D arrays).
    """
    if isinstance(waves, (str, bytes)):
        raise ValueError("expected a 1-D array or a list of 1-D arrays of samples, got a string (load the file first)")
    if hasattr(waves, "shape") and hasattr(waves, "dtype"):
        shape = tuple(waves.shape)
        if len(shape) == 1:
            return [_float_signal(0, waves)], True
        raise ValueError(
            f"expected a 1-D array or a list of 1-D arrays, got one array of shape {shape}; "
            "pass multichannel audio as a list with one 1-D array per channel"
        )
    return [_float_signal(i, w) for i, w in enumerate(waves)], False


def _float_signal(index: int, wave) -> np.ndarray:
    wave = np.asarray(wave)
    if wave.dtype == np.bool_ or np.iscomplexobj(wave):
        raise ValueError(f"signal {index}: samples must be real numbers, got dtype {wave.dtype}")
    if np.issubdtype(wave.dtype, np.integer):
        bits = 8 * wave.dtype.itemsize
        offset = 2 ** (bits - 1) if np.issubdtype(wave.dtype, np.unsignedinteger) else 0
        wave = (wave.astype(np.float64) - offset) / 2 ** (bits - 1)
    wave = np.asarray(wave, np.float32)
    if wave.ndim != 1:
        raise ValueError(f"signal {index}: expected a 1-D array, got shape {wave.shape}")
    if wave.size == 0:
        raise ValueError(f"signal {index}: is empty")
    if not np.all(np.isfinite(wave)):
        raise ValueError(f"signal {index}: contains NaN or infinite samples")
    return wave


def plan_segments(lengths: Sequence[int], *, bucket_of: Callable[[int], int], chunk_length: int, overlap: int,
                  largest_bucket, skip: Sequence[bool] | None = None) -> list[Segment]:
    """Segments of signals of `lengths` samples: a signal of at most `chunk_length` samples is
    one segment in `bucket_of(length)`; a longer one is cut by `chunk_starts` into chunks of
    `chunk_length` in `largest_bucket`. Signals with skip[i] true get none (e.g. silence)."""
    segments = []
    for i, length in enumerate(lengths):
        if skip is not None and skip[i]:
            continue
        if length <= chunk_length:
            segments.append(Segment(i, -1, 0, int(length), bucket_of(int(length))))
        else:
            for j, start in enumerate(chunk_starts(int(length), chunk_length, overlap)):
                segments.append(Segment(i, j, start, chunk_length, largest_bucket))
    return segments


def plan_batches(segments: Sequence[Segment], max_rows: int, devices: int = 1) -> list[Batch]:
    """Batches of one bucket each, in bucket order, as many rows as exist up to `max_rows`."""
    by_bucket: dict = {}
    for segment in segments:
        by_bucket.setdefault(segment.bucket, []).append(segment)
    batches = []
    for bucket, members in sorted(by_bucket.items()):
        for b in range(0, len(members), max_rows):
            part = tuple(members[b : b + max_rows])
            batches.append(Batch(bucket, batch_rows(len(part), max_rows, devices), part))
    return batches


def row_counts(max_rows: int, devices: int = 1) -> tuple[int, ...]:
    """The row counts batches are rounded up to: devices × 1, 2, 4, ... below `max_rows`,
    and `max_rows` itself (a multiple of `devices`). Few sizes, so few compiled programs."""
    counts = []
    count = devices
    while count < max_rows:
        counts.append(count)
        count *= 2
    return tuple(counts) + (max_rows,)


def batch_rows(rows: int, max_rows: int, devices: int = 1) -> int:
    """The row count a batch of `rows` real rows runs with (the smallest of `row_counts` ≥ rows)."""
    if not 0 < rows <= max_rows:
        raise ValueError(f"a batch holds 1 to {max_rows} rows, not {rows}")
    return next(c for c in row_counts(max_rows, devices) if c >= rows)


def max_rows_for(batch_size: int, devices: int) -> int:
    """`batch_size` rounded up to a multiple of the device count (every device gets rows)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return -(-int(batch_size) // devices) * devices


def gather_rows(batch: Batch, arrays: Sequence[np.ndarray], width: int, dtype=np.float32) -> np.ndarray:
    """The batch's slices of per-signal, sample-aligned arrays as one (rows, width) array:
    row r holds arrays[segment.signal][segment.start : segment.start + segment.length],
    zero-padded to `width`; extra rows repeat the first segment."""
    out = np.zeros((batch.rows, width), dtype)
    for r in range(batch.rows):
        s = batch.segments[r] if r < len(batch.segments) else batch.segments[0]
        out[r, : s.length] = arrays[s.signal][s.start : s.start + s.length]
    return out


def row_values(batch: Batch, values: Sequence, dtype) -> np.ndarray:
    """A per-signal value for every row of the batch (the chunk index with `values=None`)."""
    def value(s):
        return s.chunk if values is None else values[s.signal]

    return np.asarray([value(batch.segments[r] if r < len(batch.segments) else batch.segments[0])
                       for r in range(batch.rows)], dtype)


def row_lengths(batch: Batch) -> np.ndarray:
    """int32 (rows,): each row's segment length (extra rows: the first segment's)."""
    return np.asarray([(batch.segments[r] if r < len(batch.segments) else batch.segments[0]).length
                       for r in range(batch.rows)], np.int32)


def join_segments(pieces: dict, lengths: Sequence[int], chunk_length: int, overlap: int) -> list:
    """Each signal's output from its segments' outputs `pieces[(signal, chunk)]`; None for a
    signal without segments (the caller fills it)."""
    outputs = []
    for i, length in enumerate(lengths):
        if (i, -1) in pieces:
            outputs.append(pieces[(i, -1)])
        elif (i, 0) in pieces:
            starts = chunk_starts(int(length), chunk_length, overlap)
            outputs.append(crossfade_join([pieces[(i, j)] for j in range(len(starts))], starts, int(length)))
        else:
            outputs.append(None)
    return outputs


def bucket_for(size: int, buckets: Sequence[int]) -> int:
    """The smallest bucket of the (sorted) table holding `size`."""
    for b in buckets:
        if size <= b:
            return b
    raise ValueError(f"{size} exceeds the largest bucket {buckets[-1]}")


def chunk_starts(length: int, chunk: int, overlap: int) -> list[int]:
    """Start samples of chunks of `chunk` samples covering `length` samples.

    Consecutive chunks overlap by at least `overlap` samples; the last chunk ends at `length`
    (so every chunk is full length and none is mostly padding). For length <= chunk: [0].
    """
    if length <= chunk:
        return [0]
    hop = chunk - overlap
    count = 1 + math.ceil((length - chunk) / hop)
    starts = [k * hop for k in range(count - 1)]
    return starts + [length - chunk]


def crossfade_join(pieces: Sequence[np.ndarray], starts: Sequence[int], length: int) -> np.ndarray:
    """Joins overlapping pieces (piece k covers [starts[k], starts[k] + len(piece k))).

    In each overlap the earlier piece fades out and the later fades in with complementary
    raised-cosine weights (they sum to one), so agreeing pieces are reproduced exactly and
    disagreeing ones meet without a step.
    """
    out = np.zeros(length, np.float32)
    end = 0  # how far `out` is filled
    for piece, start in zip(pieces, starts):
        piece = np.asarray(piece, np.float32)
        stop = start + piece.shape[0]
        shared = max(0, min(end, stop) - start)
        if shared:
            fade_in = (0.5 - 0.5 * np.cos(np.pi * (np.arange(shared) + 0.5) / shared)).astype(np.float32)
            out[start : start + shared] = out[start : start + shared] * (1 - fade_in) + piece[:shared] * fade_in
        out[start + shared : stop] = piece[shared:]
        end = max(end, stop)
    if end < length:
        raise ValueError(f"pieces cover {end} of {length} samples")
    return out


@jax.jit
def row_keys(base, ids, chunks):
    """Per-row keys: fold_in(base, id), then fold_in(., chunk) for chunk rows (chunk >= 0)."""

    def one(i, c):
        key = jax.random.fold_in(base, i)
        return jax.lax.cond(c >= 0, lambda k: jax.random.fold_in(k, c), lambda k: k, key)

    return jax.vmap(one)(ids, chunks)


# --------------------------------------------------------------------------- compiled programs
class Programs:
    """Compiled programs by key, each built once (`build()` returns the compiled program),
    in a background thread in the order they are asked for when `compile_ahead`.

    Attributes:
      compile_log: one entry per build (filled by `compile_checked`).
      compile_wait_seconds: time callers have waited for builds in `wait`, in all.
    """

    def __init__(self, compile_ahead: bool = True):
        self.compile_ahead = bool(compile_ahead)
        self.compile_log: list[dict] = []
        self.compile_wait_seconds = 0.0
        self._futures: dict = {}
        self._lock = threading.Lock()
        self._executor = None

    def request(self, key: Hashable, build: Callable) -> concurrent.futures.Future:
        """The program of `key` as a Future; a failed build (e.g. a batch that did not fit) is
        tried again next time, not remembered."""
        with self._lock:
            future = self._futures.get(key)
            if future is None or (future.done() and future.exception() is not None):
                future = self._futures[key] = self._submit(build)
        return future

    def wait(self, future: concurrent.futures.Future):
        start = time.perf_counter()
        try:
            return future.result()
        finally:
            self.compile_wait_seconds += time.perf_counter() - start

    def _submit(self, build) -> concurrent.futures.Future:
        if self.compile_ahead:
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="diffrestore-compile")
            return self._executor.submit(build)
        done = concurrent.futures.Future()
        try:
            done.set_result(build())
        except Exception as err:  # delivered to the caller through .result()
            done.set_exception(err)
        return done


def compile_checked(jitted, abstract_args: Sequence, *, mesh, log_to: list, what: str, **info):
    """Compiles `jitted` ahead of time for `abstract_args`, logs how long it took and whether
    it came from the persistent cache (`log_to` gets the entry), and refuses a program that
    needs more memory than its devices have free (BatchTooLargeError).

    info: fields of the log entry; `rows` (and `bucket`) name the batch in the error.
    """
    counter = xla_cache.CompileCounter()
    start = time.perf_counter()
    compiled = jitted.lower(*abstract_args).compile()
    seconds = time.perf_counter() - start
    cached = counter.loaded_from_cache > 0 and counter.compiled == 0
    need = program_bytes(compiled)
    entry = {**info, "seconds": seconds, "from_cache": cached, "bytes": need}
    log_to.append(entry)
    log.info("%s %s in %.1f s%s", "loaded" if cached else "compiled", what, seconds,
             f", {need / 2**30:.2f} GiB per device" if need else "")
    check_memory(need, mesh, rows=int(info.get("rows", 1)), what=what)
    return compiled


def program_bytes(compiled) -> int | None:
    """Memory a compiled program allocates per device beyond its arguments (temporaries and
    outputs), from XLA's buffer assignment; None where the backend does not say."""
    try:
        memory = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    if memory is None:
        return None
    return int(getattr(memory, "temp_size_in_bytes", 0)) + int(getattr(memory, "output_size_in_bytes", 0))


def check_memory(need: int | None, mesh, *, rows: int, what: str) -> None:
    """Refuses a program that needs more memory than its devices have available, with the
    largest batch that would fit, instead of letting the host swap or the accelerator fail."""
    if not need:
        return
    device = mesh.devices.flat[0]
    available = available_memory_bytes(device)
    if available is None:
        return
    # Host devices (CPU, also forced multi-device CPU) share one memory.
    total = need * (mesh.size if device.platform == "cpu" else 1)
    if total <= available:
        return
    per_row = total / rows
    fit = int(available // per_row) // mesh.size * mesh.size
    hint = f"use batch_size={fit} or less" if fit >= mesh.size else "use smaller buckets or a larger machine"
    raise BatchTooLargeError(
        f"{what} needs {total / 2**30:.2f} GiB ({per_row / 2**30:.2f} GiB a row) but "
        f"{available / 2**30:.2f} GiB are available on {device.platform}: {hint}"
    )


def available_memory_bytes(device) -> int | None:
    """Free memory for a program on `device`: the accelerator's limit minus what is in use,
    or for the host the kernel's MemAvailable; None where it cannot be known."""
    if device.platform != "cpu":
        try:
            stats = device.memory_stats() or {}
        except Exception:  # noqa: BLE001
            return None
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
