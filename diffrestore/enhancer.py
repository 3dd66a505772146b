"""`Enhancer`: a trained model plus everything needed to enhance waveforms with it.

    from diffrestore import Enhancer
    enhancer = Enhancer.from_checkpoint("runs/quickstart")        # or an sgmse .ckpt
    clean = enhancer.enhance([noisy_wave], sample_rate=16000)      # list of 1-D arrays

Enhancement follows the reference's `enhance`: normalise by the noisy peak, STFT, compress,
pad frames to a multiple of 64, sample the reverse process, decompress, inverse STFT cropped
to the input length, undo the normalisation. The sampler, its step count and options come
from the model's config (`config.sampling`: the quickstart's 8-step bridge ODE, the sgmse
recipe's PC + ALD with 30 steps); every one can be overridden per call.

At scale, the work done is the work asked for, and compiled programs are few and reused:
- length buckets: each signal is padded up to the smallest frame count of a short table
  (`DEFAULT_BUCKETS`, 13 sizes from 64 to 2048 frames, i.e. 0.5 s to 16 s at 16 kHz, about
  1.25x apart);
- batches sized to the work: a bucket's batch holds the rows that exist (up to
  `batch_size`), rounded up only to a power of two times the device count (`row_counts`),
  so a lone file runs once, not once per filler row, and a job compiles at most a few
  programs per bucket;
- chunking: a signal longer than the largest bucket is cut into overlapping chunks of that
  size, which fill rows like separate signals (all normalised by the whole signal's peak, so
  their levels agree), joined with raised-cosine cross-fades over the overlaps;
- one program per (sampler, bucket, rows): STFT, sampler and inverse STFT run in it, so the
  host only slices, normalises and resamples; it is compiled ahead of time (its time logged,
  its memory checked against what the machine has), the next bucket's program in a
  background thread while the current one runs, and kept in the persistent XLA cache
  (`diffrestore.xla_cache`), so a second process loads it instead of compiling it;
- sharding: every batch is split over the local devices; the parameters are replicated.
The number of steps is a runtime value and never recompiles.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import math
import pathlib
import threading
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from diffrestore import config as config_lib
from diffrestore import sampling, xla_cache
from diffrestore.audio.resample import resample
from diffrestore.audio.stft import stft_of_prefix
from diffrestore.audio.transforms import pad_frames_of_prefix, spec_forward, to_audio

log = logging.getLogger("diffrestore")

FRAME_MULTIPLE = 64  # the U-Net halves the frame axis 6 times
# Padded frame counts, about 1.25x apart above 256 frames (2 s at 16 kHz). Doubling (64, 128,
# ..., 2048) compiled fewer programs but padded a 10 s recording (1251 frames) to 2048, 1.6x
# the network work of the reference's 1280; with this table the padding costs at most 1.33x
# and usually under 1.15x, which for the long default sampler (60 network calls) outweighs the
# compile time of the extra buckets (one program each, reused for every later file).
DEFAULT_BUCKETS = (64, 128, 192, 256, 320, 384, 512, 640, 768, 1024, 1280, 1536, 2048)

# Options each sampler takes from `config.sampling` when the caller does not give them.
_CONFIG_OPTIONS = {"pc": ("predictor", "corrector", "snr", "corrector_steps")}


class BatchTooLargeError(MemoryError):
    """A batch whose program needs more memory than the device (or host) has free."""


@dataclasses.dataclass(frozen=True)
class SamplerSettings:
    """What one enhancement call samples with: a registered sampler, N and its options."""

    sampler: str
    num_steps: int
    options: tuple  # sorted (name, value) pairs, hashable: part of the program cache key

    def describe(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.options if k != "eps")
        return f"{self.sampler} N={self.num_steps}" + (f" ({opts})" if opts else "")


class Enhancer:
    """A restoration model ready for inference (EMA weights)."""

    def __init__(self, config, params, devices=None, *, compilation_cache=True, compile_ahead=True):
        """
        Args:
          config: a model config (`diffrestore.config`); params: the network's (EMA) weights.
          devices: where batches run (default: all of this process's devices).
          compilation_cache: True: JAX's persistent compilation cache in the default folder
            (`xla_cache.default_cache_dir()`, unless the user set one for JAX already); a
            path: that folder; False: off; None: leave JAX's setting as it is (training).
          compile_ahead: compile the programs a call needs in a background thread, in the
            order it runs them, so a bucket's program compiles while the previous one runs.
        """
        self.config = config
        if compilation_cache is False:
            xla_cache.disable()
        elif compilation_cache is not None:
            xla_cache.enable(None if compilation_cache is True else compilation_cache)
        # One batch axis over the devices; parameters replicated on each of them.
        devices = jax.local_devices() if devices is None else list(devices)
        self.mesh = jax.sharding.Mesh(np.array(devices), ("batch",))
        self._rows = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec("batch"))
        self._replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
        self.params = params
        self.spectrogram = config_lib.spectrogram_config(config)
        self.sde = config_lib.build_sde(config)
        self.spec = config_lib.output_spec(config)
        self.model_fn = config_lib.build_model_fn(config)
        self._forward = jax.jit(self.model_fn)
        self.compile_ahead = bool(compile_ahead)
        self._programs = {}  # (settings key, frames, rows) -> Future of a compiled program
        self._spectrogram_programs = {}  # settings key -> jitted sampler on spectrograms
        self._lock = threading.Lock()
        self._compiler = None  # a one-thread executor, made on first use
        self.compiled_programs = 0  # incremented each time a sampling program is traced
        self.compile_log: list[dict] = []  # one entry per program built: shape, seconds, cached
        self.last_network_evaluations = 0  # per example, of the last sampling call
        self.last_batches: list[tuple[int, int, int]] = []  # (frames, rows run, real rows) of the last enhance()
        self.compile_wait_seconds = 0.0  # time enhance() has waited for programs to compile, in all

    @property
    def params(self):
        """The network weights, replicated on every device of the mesh."""
        return self._params

    @params.setter
    def params(self, params):
        # New weights of the same shapes (e.g. at each validation) reuse the compiled programs,
        # which expect them replicated over this mesh.
        self._params = jax.device_put(params, self._replicated)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_checkpoint(cls, path, step: int | None = None, devices=None, **kwargs) -> "Enhancer":
        """Loads a diffrestore run directory (training workdir or converted) or an sgmse `.ckpt`.

        A `.ckpt` is read safely without PyTorch (see `diffrestore.convert`), with its EMA
        weights, exactly as the reference evaluates it. kwargs: those of `Enhancer(...)`.
        """
        from diffrestore import checkpoint

        path = pathlib.Path(path)
        if path.is_file():
            from diffrestore.convert.sgmse import load_sgmse_checkpoint

            config, _, ema_params = load_sgmse_checkpoint(path)
            return cls(config, ema_params, devices, **kwargs)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such checkpoint file or run directory")
        config, ema_params, _ = checkpoint.restore_ema_params(path, step)
        return cls(config, ema_params, devices, **kwargs)

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

    # ------------------------------------------------------------------ sampler settings
    def default_sampler(self) -> str:
        """The config's sampler when it fits the model, else the model kind's usual one."""
        configured = str(self.config.sampling.sampler)
        if configured in sampling.SAMPLERS and sampling.model_kind(configured) == self.spec.model_kind:
            return configured
        return "sb_ode" if self.spec.predicts_data else "pc"

    def sampler_settings(self, sampler: str | None = None, num_steps: int | None = None, **options) -> SamplerSettings:
        """The sampler, N and options a call uses: the model config's unless given.

        Raises:
          ValueError: an unknown sampler, one that does not fit the model, N < 1, or an
            option the sampler does not take.
        """
        s = self.config.sampling
        sampler = sampler or self.default_sampler()
        if sampling.model_kind(sampler) != self.spec.model_kind:
            kind = "a data-prediction (bridge)" if self.spec.predicts_data else "a score"
            fits = [name for name in sampling.SAMPLERS if sampling.model_kind(name) == self.spec.model_kind]
            raise ValueError(f"sampler {sampler!r} does not fit this model, which is {kind} model; use one of {fits}")
        num_steps = int(s.num_steps) if num_steps is None else num_steps
        if isinstance(num_steps, bool) or int(num_steps) != num_steps or num_steps < 1:
            raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
        given = {k: v for k, v in options.items() if v is not None}
        resolved = {k: s[k] for k in _CONFIG_OPTIONS.get(sampler, ()) if k in s}
        if sampler == "pc" or sampler.startswith("ode_"):
            resolved["eps"] = float(self.config.model.t_eps)
        resolved.update(given)
        sampling.get_sampler(sampler, **resolved)  # raises on options the sampler does not take
        return SamplerSettings(sampler, int(num_steps), tuple(sorted(resolved.items())))

    def _sample_fn(self, settings: SamplerSettings):
        """`sample_fn(model_fn, sde, y, draw, num_steps) -> (x̂, nfe)` of these settings."""
        return sampling.get_sampler(settings.sampler, **dict(settings.options))

    # ------------------------------------------------------------------ sampling spectrograms
    def sample_spectrograms(self, y, *, seed: int = 0, key_offset: int = 0, sampler=None, num_steps=None, **options):
        """Runs a sampler on compressed noisy spectrograms y (B, 1, F, T), T a multiple of 64.

        Example b uses the key fold_in(key(seed), key_offset + b).
        Returns (x̂ complex64 (B, 1, F, T), network evaluations).
        """
        settings = self.sampler_settings(sampler, num_steps, **options)
        key = (settings.sampler, settings.options)
        if key not in self._spectrogram_programs:
            sample_fn, model_fn = self._sample_fn(settings), self.model_fn

            def run(params, y, base, ids, num_steps):
                self.compiled_programs += 1  # runs at trace time only
                keys = _row_keys(base, ids, jnp.full(ids.shape, -1, jnp.int32))
                score_or_data = lambda x, yy, t: model_fn(params, x, yy, t)
                return sample_fn(score_or_data, self.sde, y, sampling.keyed_noise(keys), num_steps)

            self._spectrogram_programs[key] = jax.jit(run)
        y = jnp.asarray(y, jnp.complex64)
        ids = jnp.asarray(key_offset + np.arange(y.shape[0]), jnp.uint32)
        if y.shape[0] % self.mesh.size == 0:
            y, ids = jax.device_put((y, ids), self._rows)
        x, nfe = self._spectrogram_programs[key](self.params, y, jax.random.key(seed), ids, jnp.int32(settings.num_steps))
        self.last_network_evaluations = int(nfe)
        return x, self.last_network_evaluations

    # ------------------------------------------------------------------ enhancing waveforms
    def enhance(
        self,
        waves: Sequence[np.ndarray],
        sample_rate: int | None = None,
        *,
        sampler: str | None = None,
        num_steps: int | None = None,
        seed: int = 0,
        batch_size: int = 4,
        example_ids: Sequence[int] | None = None,
        buckets: Sequence[int] = DEFAULT_BUCKETS,
        overlap_frames: int | None = None,
        **sampler_options,
    ) -> list[np.ndarray]:
        """Enhances a list of 1-D waveforms.

        Args:
          waves: 1-D float arrays (any lengths). An all-zero signal comes back as zeros.
          sample_rate: their rate in Hz; resampled to the model's rate and back if different.
          sampler: "pc", "ode_euler", "ode_heun", "ode_adaptive", "sb_ode", "sb_sde";
            default: the model config's (`config.sampling.sampler`).
          num_steps: reverse steps N; default: the model config's (`config.sampling.num_steps`).
          seed: signal i uses the key fold_in(key(seed), example_ids[i]) (default ids 0, 1, ...),
            whatever it is batched with; chunk j of a long signal folds in j once more.
          batch_size: at most this many rows (signals or chunks) per batch, rounded up to a
            multiple of the local device count; a batch with fewer rows runs with fewer
            (`row_counts`).
          example_ids: stable ids for the keys (e.g. a hash of the file name), non-negative.
          buckets: padded frame counts (multiples of 64); a program is compiled per bucket and
            row count used. Signals longer than the largest are enhanced in chunks of that size.
          overlap_frames: overlap of consecutive chunks (default: 1/8 of the largest bucket).
          **sampler_options: the sampler's options (PC: predictor, corrector, snr,
            corrector_steps; all: eps), default the model config's; others raise ValueError.

        Returns:
          Enhanced 1-D float32 arrays, each as long as its input.

        Raises:
          ValueError: bad signals or options; BatchTooLargeError: a batch that does not fit
            in memory (lower batch_size).
        """
        settings = self.sampler_settings(sampler, num_steps, **sampler_options)
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
        max_rows = -(-batch_size // self.mesh.size) * self.mesh.size

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

        # Batches of one bucket each, as many rows as exist (up to max_rows), in bucket order.
        by_bucket: dict[int, list] = {}
        for row in rows:
            by_bucket.setdefault(row[4], []).append(row)
        batches = []
        for frames, members in sorted(by_bucket.items()):
            for b in range(0, len(members), max_rows):
                part = members[b : b + max_rows]
                batches.append((frames, batch_rows(len(part), max_rows, self.mesh.size), part))
        # Ask for every program now, in the order they run: the background thread compiles the
        # next while the current batch runs.
        programs = [self._program(settings, frames, count) for frames, count, _ in batches]
        self.last_batches = [(frames, count, len(part)) for frames, count, part in batches]

        pieces: dict[tuple[int, int], np.ndarray] = {}
        for (frames, count, part), program in zip(batches, programs):
            waited = time.perf_counter()
            compiled = program.result()
            self.compile_wait_seconds += time.perf_counter() - waited
            out = self._run_batch(compiled, part, signals, frames, count, seed, ids, settings)
            pieces.update(zip([(r[0], r[1]) for r in part], out))

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

    def _run_batch(self, program, batch, signals, frames, count, seed, ids, settings):
        """Enhances one batch of rows (signal, chunk, start, length, bucket) on `count` rows;
        returns the normalised waves of the real rows."""
        samples = _bucket_samples(frames, self.spectrogram.hop_length)
        waves = np.zeros((count, samples), np.float32)
        lengths = np.zeros(count, np.int32)
        row_ids = np.zeros(count, np.uint32)
        chunks = np.zeros(count, np.int32)
        # Filler rows (to reach `count`) repeat the first row; their output is discarded.
        for r in range(count):
            i, j, start, length, _ = batch[r] if r < len(batch) else batch[0]
            waves[r, :length] = signals[i][0][start : start + length]
            lengths[r], row_ids[r], chunks[r] = length, ids[i], j
        inputs = jax.device_put((waves, lengths, row_ids, chunks), self._rows)
        out, nfe = program(self.params, *inputs, jax.random.key(seed), jnp.int32(settings.num_steps))
        self.last_network_evaluations = int(nfe)
        out = np.asarray(out)
        return [out[r, : row[3]] for r, row in enumerate(batch)]

    # ------------------------------------------------------------------ compiled programs
    def _program(self, settings: SamplerSettings, frames: int, rows: int) -> concurrent.futures.Future:
        """The compiled enhancement program for (settings, bucket, rows), as a Future."""
        key = (settings.sampler, settings.options, frames, rows)
        with self._lock:
            future = self._programs.get(key)
            # A failed build (e.g. a batch that did not fit) is tried again, not remembered.
            if future is None or (future.done() and future.exception() is not None):
                future = self._programs[key] = self._submit(self._compile, settings, frames, rows)
        return future

    def _submit(self, fn, *args) -> concurrent.futures.Future:
        """Runs fn(*args) in the compile thread (compile_ahead) or right here."""
        if self.compile_ahead:
            if self._compiler is None:
                self._compiler = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="diffrestore-compile")
            return self._compiler.submit(fn, *args)
        done = concurrent.futures.Future()
        try:
            done.set_result(fn(*args))
        except Exception as err:  # delivered to the caller through .result()
            done.set_exception(err)
        return done

    def _compile(self, settings: SamplerSettings, frames: int, rows: int):
        """Traces and compiles waves (rows, S) -> enhanced (rows, S) for one bucket."""
        sample_fn, model_fn, spec_cfg, sde = self._sample_fn(settings), self.model_fn, self.spectrogram, self.sde
        pad_mode = str(self.config.sampling.pad_mode)
        samples = _bucket_samples(frames, spec_cfg.hop_length)
        window = spec_cfg.window_array()

        def bucket_spectrogram(wave, length):
            # The reference's to_spectrogram(wave[:length]) then pad_spec to `frames` frames.
            spec = spec_forward(stft_of_prefix(wave, length, spec_cfg.n_fft, spec_cfg.hop_length, window,
                                               num_frames=frames), spec_cfg)
            return pad_frames_of_prefix(spec, 1 + length // spec_cfg.hop_length, pad_mode)

        def run(params, waves, lengths, ids, chunks, base, num_steps):
            self.compiled_programs += 1  # runs at trace time only
            y = jax.vmap(bucket_spectrogram)(waves, lengths)[:, None]
            keys = _row_keys(base, ids, chunks)
            score_or_data = lambda x, yy, t: model_fn(params, x, yy, t)
            x, nfe = sample_fn(score_or_data, sde, y, sampling.keyed_noise(keys), num_steps)
            # The inverse STFT of the whole bucket; the host crops each row to its length.
            return to_audio(x[:, 0], spec_cfg, samples), nfe

        rows_sharded, replicated = self._rows, self._replicated
        abstract = (
            jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=replicated), self.params),
            jax.ShapeDtypeStruct((rows, samples), jnp.float32, sharding=rows_sharded),
            jax.ShapeDtypeStruct((rows,), jnp.int32, sharding=rows_sharded),
            jax.ShapeDtypeStruct((rows,), jnp.uint32, sharding=rows_sharded),
            jax.ShapeDtypeStruct((rows,), jnp.int32, sharding=rows_sharded),
            jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=replicated),
            jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated),
        )
        counter = xla_cache.CompileCounter()
        start = time.perf_counter()
        compiled = jax.jit(run, out_shardings=(rows_sharded, replicated)).lower(*abstract).compile()
        seconds = time.perf_counter() - start
        cached = counter.loaded_from_cache > 0 and counter.compiled == 0
        need = _program_bytes(compiled)
        entry = {"sampler": settings.sampler, "frames": frames, "rows": rows, "seconds": seconds,
                 "from_cache": cached, "bytes": need}
        self.compile_log.append(entry)
        log.info("%s %s for %d row(s) x %d frames in %.1f s%s", "loaded" if cached else "compiled",
                 settings.sampler, rows, frames, seconds,
                 f", {need / 2**30:.2f} GiB per device" if need else "")
        self._check_memory(need, rows, frames)
        return compiled

    def _check_memory(self, need: int | None, rows: int, frames: int) -> None:
        """Refuses a program that needs more memory than its devices have available, with
        the largest batch that would fit, instead of letting the host swap or the GPU fail."""
        if not need:
            return
        device = self.mesh.devices.flat[0]
        available = available_memory_bytes(device)
        if available is None:
            return
        # Host devices (CPU, also forced multi-device CPU) share one memory.
        total = need * (self.mesh.size if device.platform == "cpu" else 1)
        if total <= available:
            return
        per_row = total / rows
        fit = int(available // per_row) // self.mesh.size * self.mesh.size
        hint = f"use batch_size={fit} or less" if fit >= self.mesh.size else "use smaller buckets (--buckets) or a larger machine"
        raise BatchTooLargeError(
            f"a batch of {rows} row(s) x {frames} frames needs {total / 2**30:.2f} GiB "
            f"({per_row / 2**30:.2f} GiB a row) but {available / 2**30:.2f} GiB are available on "
            f"{device.platform}: {hint}"
        )

    @staticmethod
    def _finish(out, original_len, rate, model_rate):
        if rate != model_rate:
            out = resample(out, model_rate, rate)
        out = np.asarray(out, np.float32)
        if out.shape[0] < original_len:
            out = np.pad(out, (0, original_len - out.shape[0]))
        return out[:original_len]


def _bucket_samples(frames: int, hop_length: int) -> int:
    """Samples of a bucket's input rows: the longest signal with at most `frames` frames."""
    return frames * hop_length - 1


def _program_bytes(compiled) -> int | None:
    """Memory a compiled program allocates per device beyond its arguments (temporaries and
    outputs), from XLA's buffer assignment; None where the backend does not say."""
    try:
        memory = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    if memory is None:
        return None
    return int(getattr(memory, "temp_size_in_bytes", 0)) + int(getattr(memory, "output_size_in_bytes", 0))


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


@jax.jit
def _row_keys(base, ids, chunks):
    """fold_in(base, id), and then fold_in(., chunk) for chunk rows (chunk >= 0)."""

    def one(i, c):
        key = jax.random.fold_in(base, i)
        return jax.lax.cond(c >= 0, lambda k: jax.random.fold_in(k, c), lambda k: k, key)

    return jax.vmap(one)(ids, chunks)


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
