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

import dataclasses
import logging
import pathlib
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from diffrestore import config as config_lib
from diffrestore import inference, sampling, xla_cache
from diffrestore.audio.resample import resample
from diffrestore.audio.stft import stft_of_prefix
from diffrestore.audio.transforms import pad_frames_of_prefix, spec_forward, to_audio
# The engine's pieces, importable from here as before.
from diffrestore.inference import (  # noqa: F401
    BatchTooLargeError, available_memory_bytes, batch_rows, bucket_for, chunk_starts, crossfade_join, row_counts,
)

log = logging.getLogger("diffrestore")

FRAME_MULTIPLE = 64  # the U-Net halves the frame axis 6 times
# Padded frame counts, about 1.25x apart above 256 frames (2 s at 16 kHz). Doubling (64, 128,
# ..., 2048) compiled fewer programs but padded a 10 s recording (1251 frames) to 2048, 1.6x
# the network work of the reference's 1280; with this table the padding costs at most 1.33x
# and usually under 1.15x, which for the long default sampler (60 network calls) outweighs the
# compile time of the extra buckets (one program each, reused for every later file).
DEFAULT_BUCKETS = (64, 128, 192, 256, 320, 384, 512, 640, 768, 1024, 1280, 1536, 2048)

# Options each sampler takes from `config.sampling` when the caller does not give them.
_CONFIG_OPTIONS = {"pc": ("predictor", "corrector", "snr", "corrector_steps", "start_time", "step_size")}


# The sampler of each model kind when the config names none that fits.
_DEFAULT_SAMPLER = {"score": "pc", "data_prediction": "sb_ode", "vector_field": "flow_euler", "flow_data": "flow_euler_data"}
_KIND_WORDS = {"score": "a score", "data_prediction": "a data-prediction (bridge)",
               "vector_field": "a flow-matching (vector field)", "flow_data": "a flow-matching (data target)"}


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
        xla_cache.configure(compilation_cache)
        # One batch axis over the devices; parameters replicated on each of them.
        placement = inference.DeviceRows.local(devices)
        self.mesh, self._rows, self._replicated = placement.mesh, placement.rows, placement.replicated
        self.params = params
        self.spectrogram = config_lib.spectrogram_config(config)
        self.sde = config_lib.build_sde(config)
        self.spec = config_lib.output_spec(config)
        module = config_lib.build_backbone(config)
        self.model_fn = config_lib.build_model_fn(config, module)  # (params, x, cond, t)
        self.condition_fn = config_lib.build_condition_fn(config, module)  # (params, y) -> (sde_y, cond)
        self._forward = jax.jit(lambda params, x, y, t: self.model_fn(params, x, self.condition_fn(params, y)[1], t))
        self._predict = jax.jit(lambda params, y: self.condition_fn(params, y)[0])
        self.programs = inference.Programs(compile_ahead)  # (settings, frames, rows) -> compiled
        self._spectrogram_programs = {}  # settings key -> jitted sampler on spectrograms
        self.compiled_programs = 0  # incremented each time a sampling program is traced
        self.last_network_evaluations = 0  # per example, of the last sampling call
        self.last_batches: list[tuple[int, int, int]] = []  # (frames, rows run, real rows) of the last enhance()

    @property
    def compile_log(self) -> list[dict]:
        """One entry per program built: sampler, frames, rows, seconds, from_cache, bytes."""
        return self.programs.compile_log

    @property
    def compile_wait_seconds(self) -> float:
        """Time enhance() has waited for programs to compile, in all."""
        return self.programs.compile_wait_seconds

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

        A `.ckpt` (sgmse, sgmse-bbed, sgmse_crp or StoRM) is read safely without PyTorch (see
        `diffrestore.convert`), with its EMA weights, exactly as the reference evaluates it.
        kwargs: those of `Enhancer(...)`.
        """
        from diffrestore import checkpoint

        xla_cache.configure(kwargs.get("compilation_cache", True))  # before restoring compiles anything
        path = pathlib.Path(path)
        if path.is_file():
            from diffrestore.convert import load_lightning_checkpoint

            config, _, ema_params = load_lightning_checkpoint(path)
            return cls(config, ema_params, devices, **kwargs)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such checkpoint file or run directory")
        config, ema_params, _ = checkpoint.restore_ema_params(path, step)
        return cls(config, ema_params, devices, **kwargs)

    # ------------------------------------------------------------------ network
    def forward(self, x, y, t) -> np.ndarray:
        """The reference `ScoreModel.forward(x, y, t)`: score, or x̂ for data-prediction models.
        For StoRM: the score of `forward_score(x, t, [y, D(y)], D(y))`, D(y) computed inside.

        Args:
          x, y: complex64 (B, 1, F, T); t: float (B,).
        """
        x = jnp.asarray(x, jnp.complex64)
        y = jnp.asarray(y, jnp.complex64)
        t = jnp.asarray(t, jnp.float32).reshape(-1)
        return np.asarray(self._forward(self.params, x, y, t))

    def predict(self, y) -> np.ndarray:
        """StoRM's predictive estimate D(y) of compressed noisy spectrograms y (B, 1, F, T).

        Raises:
          ValueError: the model has no predictive network (anything but StoRM).
        """
        if not config_lib.is_storm(self.config):
            raise ValueError(f"predict() needs a StoRM model; this one is {self.config.model.backbone} (no predictive network)")
        return np.asarray(self._predict(self.params, jnp.asarray(y, jnp.complex64)))

    # ------------------------------------------------------------------ sampler settings
    def default_sampler(self) -> str:
        """The config's sampler when it fits the model, else the model kind's usual one."""
        configured = str(self.config.sampling.sampler)
        if configured in sampling.SAMPLERS and sampling.model_kind(configured) == self.spec.model_kind:
            return configured
        return _DEFAULT_SAMPLER[self.spec.model_kind]

    def sampler_settings(self, sampler: str | None = None, num_steps: int | None = None, **options) -> SamplerSettings:
        """The sampler, N and options a call uses: the model config's unless given.

        Raises:
          ValueError: an unknown sampler, one that does not fit the model, N < 1, or an
            option the sampler does not take.
        """
        s = self.config.sampling
        sampler = sampler or self.default_sampler()
        if sampling.model_kind(sampler) != self.spec.model_kind:
            kind = _KIND_WORDS[self.spec.model_kind]
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
            sample_fn = self._sample_fn(settings)

            def run(params, y, base, ids, num_steps):
                self.compiled_programs += 1  # runs at trace time only
                keys = inference.row_keys(base, ids, jnp.full(ids.shape, -1, jnp.int32))
                return self._sample(sample_fn, params, y, sampling.keyed_noise(keys), num_steps)

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
        """Enhances a list of 1-D waveforms (or one 1-D waveform: then one array comes back).

        Args:
          waves: 1-D arrays (any lengths), float in [-1, 1] or integer PCM (scaled as
            soundfile reads it, see `inference.as_signals`); a list of them, or one array.
            An all-zero signal comes back as zeros.
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
          Enhanced 1-D float32 arrays, each as long as its input (one array for one input array).

        Raises:
          ValueError: bad signals or options; BatchTooLargeError: a batch that does not fit
            in memory (lower batch_size).
        """
        waves, single = inference.as_signals(waves)
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
        max_rows = inference.max_rows_for(batch_size, self.mesh.size)

        signals = [self._prepare(i, w, rate, model_rate) for i, w in enumerate(waves)]
        normalised = [wave for wave, _ in signals]
        segments = inference.plan_segments(
            [w.shape[0] for w in normalised], bucket_of=lambda n: bucket_for(self._frames(n), buckets),
            chunk_length=chunk_len, overlap=overlap, largest_bucket=buckets[-1],
            skip=[peak == 0.0 for _, peak in signals],  # silence: nothing to enhance, the output is silence
        )
        batches = inference.plan_batches(segments, max_rows, self.mesh.size)
        # Ask for every program now, in the order they run: the background thread compiles the
        # next while the current batch runs.
        programs = [self._program(settings, batch.bucket, batch.rows) for batch in batches]
        self.last_batches = [(batch.bucket, batch.rows, len(batch.segments)) for batch in batches]

        pieces: dict[tuple[int, int], np.ndarray] = {}
        for batch, program in zip(batches, programs):
            out = self._run_batch(self.programs.wait(program), batch, normalised, ids, seed, settings)
            pieces.update(((s.signal, s.chunk), piece) for s, piece in zip(batch.segments, out))

        joined = inference.join_segments(pieces, [w.shape[0] for w in normalised], chunk_len, overlap)
        outputs = []
        for i, ((wave, peak), enhanced) in enumerate(zip(signals, joined)):
            enhanced = np.zeros_like(wave) if enhanced is None else enhanced
            outputs.append(self._finish(enhanced * peak, len(waves[i]), rate, model_rate))
        return outputs[0] if single else outputs

    def _frames(self, num_samples: int) -> int:
        return 1 + num_samples // self.spectrogram.hop_length

    def _prepare(self, index, wave, rate, model_rate):
        """(wave at the model's rate divided by its peak, peak); wave from `inference.as_signals`."""
        if rate != model_rate:
            wave = resample(wave, rate, model_rate).astype(np.float32)
        min_len = self.spectrogram.n_fft // 2 + 1  # the STFT's reflection padding needs this
        if wave.shape[0] < min_len:
            raise ValueError(f"signal {index}: {wave.shape[0]} samples is shorter than the minimum {min_len}")
        peak = float(np.max(np.abs(wave)))
        return (wave / peak if peak > 0 else wave), peak

    def _run_batch(self, program, batch: inference.Batch, waves, ids, seed, settings):
        """Enhances one batch; returns the normalised waves of its real rows."""
        inputs = (
            inference.gather_rows(batch, waves, _bucket_samples(batch.bucket, self.spectrogram.hop_length)),
            inference.row_lengths(batch),
            inference.row_values(batch, ids, np.uint32),
            inference.row_values(batch, None, np.int32),
        )
        out, nfe = program(self.params, *jax.device_put(inputs, self._rows), jax.random.key(seed), jnp.int32(settings.num_steps))
        self.last_network_evaluations = int(nfe)
        out = np.asarray(out)
        return [out[r, : s.length] for r, s in enumerate(batch.segments)]

    def _sample(self, sample_fn, params, y, draw, num_steps):
        """One sampler run on spectrograms y (traced): the conditioning is made once (StoRM's
        D(y) is one network call; its sampler then moves towards D(y)); the sampler's own
        second argument is that sde_y and is not needed again."""
        sde_y, cond = self.condition_fn(params, y)
        score_or_data = lambda x, _sde_y, t: self.model_fn(params, x, cond, t)
        x, nfe = sample_fn(score_or_data, self.sde, sde_y, draw, num_steps)
        return x, nfe + (1 if config_lib.is_storm(self.config) else 0)

    # ------------------------------------------------------------------ compiled programs
    def _program(self, settings: SamplerSettings, frames: int, rows: int):
        """The compiled enhancement program for (settings, bucket, rows), as a Future."""
        key = (settings.sampler, settings.options, frames, rows)
        return self.programs.request(key, lambda: self._compile(settings, frames, rows))

    def _compile(self, settings: SamplerSettings, frames: int, rows: int):
        """Traces and compiles waves (rows, S) -> enhanced (rows, S) for one bucket."""
        sample_fn, spec_cfg = self._sample_fn(settings), self.spectrogram
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
            keys = inference.row_keys(base, ids, chunks)
            x, nfe = self._sample(sample_fn, params, y, sampling.keyed_noise(keys), num_steps)
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
        return inference.compile_checked(
            jax.jit(run, out_shardings=(rows_sharded, replicated)), abstract, mesh=self.mesh, log_to=self.compile_log,
            what=f"{settings.sampler} for {rows} row(s) x {frames} frames",
            sampler=settings.sampler, frames=frames, rows=rows,
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


# --------------------------------------------------------------------------- buckets and chunks
def check_buckets(buckets: Sequence[int]) -> tuple[int, ...]:
    """The bucket table sorted; each a positive multiple of 64 frames."""
    table = tuple(sorted({int(b) for b in buckets}))
    if not table or any(b <= 0 or b % FRAME_MULTIPLE for b in table):
        raise ValueError(f"buckets must be positive multiples of {FRAME_MULTIPLE} frames, got {tuple(buckets)}")
    return table
