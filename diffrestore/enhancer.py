"""`Enhancer`: a trained model plus everything needed to enhance waveforms with it.

    from diffrestore import Enhancer
    enhancer = Enhancer.from_checkpoint("runs/quickstart")        # or an sgmse .ckpt
    clean = enhancer.enhance([noisy_wave], sample_rate=16000)      # list of 1-D arrays

Enhancement follows the reference's `enhance`: normalise by the noisy peak, STFT, compress,
pad frames to a multiple of 64, sample the reverse process, decompress, inverse STFT cropped
to the input length, undo the normalisation.

At scale, three things keep the number of compiled programs small and every device busy:
- length buckets: each signal is padded up to the smallest frame count of a short table
  (`DEFAULT_BUCKETS`, 13 sizes from 64 to 2048 frames, i.e. 0.5 s to 16 s at 16 kHz, about
  1.25x apart), and batches have a
  fixed size (filler rows), so any list of lengths compiles at most one program per bucket;
- chunking: a signal longer than the largest bucket is cut into overlapping chunks of that
  size, enhanced like separate signals (all normalised by the whole signal's peak, so their
  levels agree) and joined with raised-cosine cross-fades over the overlaps;
- sharding: every batch is split over the local devices (its size is rounded up to a
  multiple of their number); the parameters are replicated on each.
The number of steps is a runtime value and never recompiles.
"""
from __future__ import annotations

import math
import pathlib
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from diffrestore import config as config_lib
from diffrestore import sampling
from diffrestore.audio.resample import resample
from diffrestore.audio.transforms import pad_frames, to_audio, to_spectrogram

FRAME_MULTIPLE = 64  # the U-Net halves the frame axis 6 times
# Padded frame counts, about 1.25x apart above 256 frames (2 s at 16 kHz). Doubling (64, 128,
# ..., 2048) compiled fewer programs but padded a 10 s recording (1251 frames) to 2048, 1.6x
# the network work of the reference's 1280; with this table the padding costs at most 1.33x
# and usually under 1.15x, which for the long default sampler (60 network calls) outweighs the
# compile time of the extra buckets (one program each, reused for every later file).
DEFAULT_BUCKETS = (64, 128, 192, 256, 320, 384, 512, 640, 768, 1024, 1280, 1536, 2048)


class Enhancer:
    """A restoration model ready for inference (EMA weights)."""

    def __init__(self, config, params, devices=None):
        """config: a model config (`diffrestore.config`); params: the network's (EMA) weights;
        devices: where batches run (default: all of this process's devices)."""
        self.config = config
        # One batch axis over the devices; parameters replicated on each of them.
        devices = jax.local_devices() if devices is None else list(devices)
        self.mesh = jax.sharding.Mesh(np.array(devices), ("batch",))
        self._rows = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec("batch"))
        self.params = jax.device_put(params, jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec()))
        self.spectrogram = config_lib.spectrogram_config(config)
        self.sde = config_lib.build_sde(config)
        self.spec = config_lib.output_spec(config)
        self.model_fn = config_lib.build_model_fn(config)
        self._forward = jax.jit(self.model_fn)
        self._programs = {}  # (sampler, options) -> jitted sampling program
        self.compiled_programs = 0  # incremented each time a sampling program is traced
        self.last_network_evaluations = 0  # per example, of the last sampling call

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_checkpoint(cls, path, step: int | None = None, devices=None) -> "Enhancer":
        """Loads a diffrestore run directory (training workdir or converted) or an sgmse `.ckpt`.

        A `.ckpt` is read safely without PyTorch (see `diffrestore.convert`), with its EMA
        weights, exactly as the reference evaluates it.
        """
        from diffrestore import checkpoint

        path = pathlib.Path(path)
        if path.is_file():
            from diffrestore.convert.sgmse import load_sgmse_checkpoint

            config, _, ema_params = load_sgmse_checkpoint(path)
            return cls(config, ema_params, devices)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such checkpoint file or run directory")
        config, ema_params, _ = checkpoint.restore_ema_params(path, step)
        return cls(config, ema_params, devices)

    # ------------------------------------------------------------------ network
    def forward(self, x, y, t) -> np.ndarray:
        """The reference `ScoreModel.forward(x, y, t)`: score, or x̂ for data-prediction models.

        Args:
          x, y: complex64 (B, 1, F, T); t: float (B,).
        """
        x = jnp.asarray(x, jnp.complex64)
        y = jnp.asarray(y, jnp.complex64)
        t = jnp.asarray(t, jnp.float32).reshape(-1)
        return np.asarray(self._forward(self.params, x, y, t))

    # ------------------------------------------------------------------ sampling
    def default_sampler(self) -> str:
        return "sb_ode" if self.spec.predicts_data else self.config.sampling.sampler

    def _sampler_program(self, sampler: str, options: tuple):
        cache_key = (sampler, options)
        if cache_key not in self._programs:
            self._programs[cache_key] = self._build_sampler_program(sampler, options)
        return self._programs[cache_key]

    def _build_sampler_program(self, sampler: str, options: tuple):
        if sampling.needs_data_prediction(sampler) != self.spec.predicts_data:
            kind = "a data-prediction (bridge)" if self.spec.predicts_data else "a score"
            raise ValueError(f"sampler {sampler!r} does not fit this model, which is {kind} model")
        sample_fn = sampling.get_sampler(sampler, **dict(options))
        model_fn = self.model_fn

        def run(params, y, keys, num_steps):
            self.compiled_programs += 1  # runs at trace time only
            score_or_data = lambda x, yy, t: model_fn(params, x, yy, t)
            return sample_fn(score_or_data, self.sde, y, sampling.keyed_noise(keys), num_steps)

        return jax.jit(run)

    def sample_spectrograms(self, y, *, seed: int = 0, key_offset: int = 0, sampler=None, num_steps=30, **options):
        """Runs a sampler on compressed noisy spectrograms y (B, 1, F, T), T a multiple of 64.

        Example b uses the key fold_in(key(seed), key_offset + b).
        Returns (x̂ complex64 (B, 1, F, T), network evaluations).
        """
        sampler = sampler or self.default_sampler()
        indices = key_offset + np.arange(y.shape[0])
        return self._sample_rows(jnp.asarray(y, jnp.complex64), indices, seed, sampler, num_steps, options)

    def _sampler_options(self, sampler, corrector, snr, corrector_steps, predictor):
        if sampler == "pc":
            return dict(
                predictor=predictor, corrector=corrector, snr=snr, corrector_steps=corrector_steps,
                eps=float(self.config.model.t_eps),
            )
        if sampler in ("ode_euler", "ode_heun", "ode_adaptive"):
            return dict(eps=float(self.config.model.t_eps))
        return {}

    def enhance(
        self,
        waves: Sequence[np.ndarray],
        sample_rate: int | None = None,
        *,
        sampler: str | None = None,
        num_steps: int = 30,
        corrector: str = "ald",
        snr: float = 0.5,
        corrector_steps: int = 1,
        predictor: str = "reverse_diffusion",
        seed: int = 0,
        batch_size: int = 4,
        example_ids: Sequence[int] | None = None,
        buckets: Sequence[int] = DEFAULT_BUCKETS,
        overlap_frames: int | None = None,
    ) -> list[np.ndarray]:
        """Enhances a list of 1-D waveforms.

        Args:
          waves: 1-D float arrays (any lengths). An all-zero signal comes back as zeros.
          sample_rate: their rate in Hz; resampled to the model's rate and back if different.
          sampler: "pc" (default for score models), "ode_euler", "ode_heun", "ode_adaptive",
            "sb_ode" (default for bridge models), "sb_sde".
          num_steps: reverse steps N; corrector, snr, corrector_steps, predictor: PC options.
          seed: signal i uses the key fold_in(key(seed), example_ids[i]) (default ids 0, 1, ...),
            whatever it is batched with; chunk j of a long signal folds in j once more.
          batch_size: signals per batch (rounded up to a multiple of the local device count).
          example_ids: stable ids for the keys (e.g. a hash of the file name), non-negative.
          buckets: padded frame counts (multiples of 64); one program is compiled per bucket
            used. Signals longer than the largest are enhanced in chunks of that size.
          overlap_frames: overlap of consecutive chunks (default: 1/8 of the largest bucket).

        Returns:
          Enhanced 1-D float32 arrays, each as long as its input.
        """
        sampler = sampler or self.default_sampler()
        options = self._sampler_options(sampler, corrector, snr, corrector_steps, predictor)
        buckets = check_buckets(buckets)
        hop = self.spectrogram.hop_length
        chunk_len = (buckets[-1] - 1) * hop  # the longest wave whose frames fit the largest bucket
        overlap = (buckets[-1] // 8 if overlap_frames is None else int(overlap_frames)) * hop
        if not 0 < overlap < chunk_len // 2:
            raise ValueError(f"overlap_frames must be positive and below half the largest bucket {buckets[-1]}")
        model_rate = self.spectrogram.sample_rate
        rate = model_rate if sample_rate is None else int(sample_rate)
        ids = list(range(len(waves))) if example_ids is None else [int(i) for i in example_ids]
        if len(ids) != len(waves):
            raise ValueError(f"{len(ids)} example_ids for {len(waves)} signals")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        rows_per_batch = -(-batch_size // self.mesh.size) * self.mesh.size

        # Every signal becomes one or more rows: (signal, chunk index or -1, start, length, bucket).
        signals = [self._prepare(i, w, rate, model_rate) for i, w in enumerate(waves)]
        rows = []
        for i, (wave, peak) in enumerate(signals):
            if peak == 0.0:
                continue  # silence: nothing to enhance, the output is silence
            if wave.shape[0] <= chunk_len:
                rows.append((i, -1, 0, wave.shape[0], bucket_for(self._frames(wave.shape[0]), buckets)))
            else:
                for j, start in enumerate(chunk_starts(wave.shape[0], chunk_len, overlap)):
                    rows.append((i, j, start, chunk_len, buckets[-1]))

        pieces: dict[tuple[int, int], np.ndarray] = {}
        by_bucket: dict[int, list] = {}
        for row in rows:
            by_bucket.setdefault(row[4], []).append(row)
        for frames, members in sorted(by_bucket.items()):
            for b in range(0, len(members), rows_per_batch):
                batch = members[b : b + rows_per_batch]
                out = self._enhance_rows(batch, signals, frames, rows_per_batch, seed, ids, sampler, num_steps, options)
                pieces.update(zip([(r[0], r[1]) for r in batch], out))

        outputs = []
        for i, (wave, peak) in enumerate(signals):
            if peak == 0.0:
                enhanced = np.zeros_like(wave)
            elif (i, -1) in pieces:
                enhanced = pieces[(i, -1)]
            else:
                starts = chunk_starts(wave.shape[0], chunk_len, overlap)
                enhanced = crossfade_join([pieces[(i, j)] for j in range(len(starts))], starts, wave.shape[0])
            outputs.append(self._finish(enhanced * peak, len(waves[i]), rate, model_rate))
        return outputs

    def _frames(self, num_samples: int) -> int:
        return 1 + num_samples // self.spectrogram.hop_length

    def _prepare(self, index, wave, rate, model_rate):
        """(wave at the model's rate divided by its peak, peak); checks the input."""
        wave = np.asarray(wave, np.float32)
        if wave.ndim != 1:
            raise ValueError(f"signal {index}: expected a 1-D array, got shape {wave.shape}")
        if not np.all(np.isfinite(wave)):
            raise ValueError(f"signal {index}: contains NaN or infinite samples")
        if rate != model_rate:
            wave = resample(wave, rate, model_rate).astype(np.float32)
        min_len = self.spectrogram.n_fft // 2 + 1  # the STFT's reflection padding needs this
        if wave.shape[0] < min_len:
            raise ValueError(f"signal {index}: {wave.shape[0]} samples is shorter than the minimum {min_len}")
        peak = float(np.max(np.abs(wave)))
        return (wave / peak if peak > 0 else wave), peak

    def _enhance_rows(self, batch, signals, frames, rows_per_batch, seed, ids, sampler, num_steps, options):
        """Enhances one batch of rows (signal, chunk, start, length, bucket); returns normalised waves."""
        specs = []
        for i, _, start, length, _ in batch:
            segment = signals[i][0][start : start + length]
            spec = to_spectrogram(jnp.asarray(segment), self.spectrogram)
            specs.append(pad_frames(spec, mode=self.config.sampling.pad_mode, size=frames))
        # Fill the batch to a fixed size so every batch of a bucket reuses one program.
        filler = [jnp.zeros_like(specs[0])] * (rows_per_batch - len(specs))
        y = jnp.stack(specs + filler)[:, None]
        # Filler rows reuse the first row's key; their output is discarded.
        keys = [(ids[i], j) for i, j, *_ in batch] + [(ids[batch[0][0]], batch[0][1])] * len(filler)
        x, _ = self._sample_rows(y, keys, seed, sampler, num_steps, options)
        x = np.asarray(x)
        return [np.asarray(to_audio(x[r, 0], self.spectrogram, length)) for r, (*_, length, _) in enumerate(batch)]

    def _sample_rows(self, y, keys_index, seed, sampler, num_steps, options):
        """Samples rows y (B, 1, F, T), sharded over the local devices.

        keys_index: per row an id or (id, chunk): the row's key is fold_in(key(seed), id),
          folded once more with the chunk index when it is >= 0.
        """
        program = self._sampler_program(sampler, tuple(sorted(options.items())))
        base = jax.random.key(seed)
        pairs = [(k, -1) if np.ndim(k) == 0 else tuple(k) for k in keys_index]
        ids = jnp.asarray([p[0] for p in pairs], jnp.uint32)
        chunks = jnp.asarray([p[1] for p in pairs], jnp.int32)
        keys = _row_keys(base, ids, chunks)
        if y.shape[0] % self.mesh.size == 0:  # enhance() always rounds its batches up to this
            y, keys = jax.device_put((y, keys), self._rows)
        x, nfe = program(self.params, y, keys, jnp.int32(num_steps))
        self.last_network_evaluations = int(nfe)
        return x, self.last_network_evaluations

    @staticmethod
    def _finish(out, original_len, rate, model_rate):
        if rate != model_rate:
            out = resample(out, model_rate, rate)
        out = np.asarray(out, np.float32)
        if out.shape[0] < original_len:
            out = np.pad(out, (0, original_len - out.shape[0]))
        return out[:original_len]


@jax.jit
def _row_keys(base, ids, chunks):
    """fold_in(base, id), and then fold_in(., chunk) for chunk rows (chunk >= 0)."""

    def one(i, c):
        key = jax.random.fold_in(base, i)
        return jax.lax.cond(c >= 0, lambda k: jax.random.fold_in(k, c), lambda k: k, key)

    return jax.vmap(one)(ids, chunks)


# --------------------------------------------------------------------------- buckets and chunks
def check_buckets(buckets: Sequence[int]) -> tuple[int, ...]:
    """The bucket table sorted; each a positive multiple of 64 frames."""
    table = tuple(sorted({int(b) for b in buckets}))
    if not table or any(b <= 0 or b % FRAME_MULTIPLE for b in table):
        raise ValueError(f"buckets must be positive multiples of {FRAME_MULTIPLE} frames, got {tuple(buckets)}")
    return table


def bucket_for(frames: int, buckets: Sequence[int]) -> int:
    """The smallest bucket holding `frames` frames."""
    for b in buckets:
        if frames <= b:
            return b
    raise ValueError(f"{frames} frames exceed the largest bucket {buckets[-1]}")


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
