"""`Prior`: a diffusion prior of clean audio (EDM on waveforms) ready for denoising and sampling.

    from diffrestore import Prior
    prior = Prior.from_checkpoint("runs/cqtdiff_maestro")      # or a CQT-Diff / BABE / BUDDy .pt file
    d = prior.denoise(x, sigma)                                # D(x; σ), x (B, L), σ (B,)
    audio = prior.sample(4, seconds=3.0, seed=0)               # (4, L) unconditional samples

The prior is the four EDM pieces of `diffrestore.sde.EDM` around a network F of
`diffrestore.models.PRIOR_NETWORKS`: D(x, σ) = c_skip·x + c_out·F(c_in·x, ¼ ln σ), exactly what
the references' preconditioned networks compute (their front end, the CQT, is inside F). The
sampler is the config's (`config.sampling`: CQT-Diff's stochastic Heun with T = 35 steps and
S_churn 5), each option overridable per call. Posterior sampling for restoration builds on
`denoise_fn`.
"""
from __future__ import annotations

import logging
import pathlib
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from diffrestore import config as config_lib
from diffrestore import inference, sampling, xla_cache
from diffrestore.audio.resample import resample
from diffrestore.inference import batch_rows

log = logging.getLogger("diffrestore")

MIN_RESTORE_SAMPLES = 256  # shortest recording restore() takes (at the prior's rate)


class Prior:
    """An unconditional EDM prior of clean audio with its (EMA) weights."""

    def __init__(self, config, params, devices=None, *, compilation_cache=True, compile_ahead=True):
        """
        Args:
          config: a prior's config (`config.prior_config`, `sde.name == "edm"`).
          params: the network's weights (EMA for our run directories; the weights the
            reference samples with for imported files).
          devices: where batches run (default: all of this process's devices).
          compilation_cache: as for `Enhancer`: True (default folder), a path, False (off),
            None (leave JAX's setting alone).
          compile_ahead: compile the programs of a `restore` call in a background thread.
        """
        if not config_lib.is_prior(config):
            raise ValueError(
                f"not a prior: sde.name is {config.sde.name!r}, not 'edm' (enhancement models load with Enhancer)"
            )
        self.config = config
        xla_cache.configure(compilation_cache)
        placement = inference.DeviceRows.local(devices)
        self.mesh, self._rows, self._replicated = placement.mesh, placement.rows, placement.replicated
        self.params = params
        self.sde = config_lib.build_sde(config)
        self.module = config_lib.build_backbone(config)
        self.denoise_fn = config_lib.build_model_fn(config, self.module)  # (params, x, σ) -> D
        self.sample_rate = int(config.data.sample_rate)
        self._denoise = jax.jit(self.denoise_fn)
        self.programs = inference.Programs(compile_ahead)  # compiled samplers and restorers
        self.last_network_evaluations = 0
        self.last_batches: list[tuple[int, int, int]] = []  # (samples, rows run, real rows) of the last restore()

    @property
    def params(self):
        return self._params

    @params.setter
    def params(self, params):
        self._params = jax.device_put(params, self._replicated)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_checkpoint(cls, path, step: int | None = None, devices=None, *, config=None, **kwargs) -> "Prior":
        """Loads our run directory (a training workdir) or a reference `.pt` file.

        A `.pt` is a CQT-Diff (`{'step', 'model', 'ema_weights'}`), BABE or BUDDy (`{'it',
        'network', 'ema', 'args'}`) trainer file, read without PyTorch through the restricted unpickler;
        its architecture is inferred from the weights' keys and shapes (see
        `diffrestore.convert.cqtdiff`), with the weights the reference samples with. `config`
        (a prior config) overrides what the file cannot tell.
        """
        from diffrestore import checkpoint

        xla_cache.configure(kwargs.get("compilation_cache", True))  # before restoring compiles anything
        path = pathlib.Path(path)
        if path.is_file():
            from diffrestore.convert.cqtdiff import load_prior_checkpoint

            loaded_config, params = load_prior_checkpoint(path, config=config)
            return cls(loaded_config, params, devices, **kwargs)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such checkpoint file or run directory")
        loaded_config, ema_params, _ = checkpoint.restore_ema_params(path, step)
        return cls(loaded_config, ema_params, devices, **kwargs)

    # ------------------------------------------------------------------ the denoiser
    def denoise(self, x, sigma) -> np.ndarray:
        """D(x; σ): the preconditioned network, as the reference's `denoiser(x, σ)`.

        Args:
          x: float32 (B, L) noisy waveforms at `sample_rate`; sigma: noise levels (B,) or a scalar.
        Returns:
          float32 (B, L).
        """
        x = jnp.asarray(x, jnp.float32)
        if x.ndim != 2:
            raise ValueError(f"x must be (B, L) waveforms, got shape {x.shape}")
        sigma = jnp.broadcast_to(jnp.asarray(sigma, jnp.float32).reshape(-1), x.shape[:1])
        return np.asarray(self._denoise(self.params, x, sigma))

    # ------------------------------------------------------------------ sampling
    def sampler_settings(self, sampler: str | None = None, num_steps: int | None = None, **options):
        """(sampler, T, options): the config's unless given; unknown options raise ValueError."""
        s = self.config.sampling
        sampler = sampler or str(s.sampler)
        if sampling.model_kind(sampler) != "edm_denoiser":
            fits = [n for n in sampling.SAMPLERS if sampling.model_kind(n) == "edm_denoiser"]
            raise ValueError(f"sampler {sampler!r} does not fit a prior; use one of {fits}")
        num_steps = int(s.num_steps) if num_steps is None else num_steps
        if isinstance(num_steps, bool) or int(num_steps) != num_steps or num_steps < 2:
            raise ValueError(f"num_steps must be an integer >= 2 (the references' grid), got {num_steps!r}")
        resolved = {k: s[k] for k in ("S_churn", "S_tmin", "S_tmax", "S_noise", "convention") if k in s}
        resolved.update({k: v for k, v in options.items() if v is not None})
        sampling.get_sampler(sampler, **resolved)  # raises on an option the sampler does not take
        return sampler, int(num_steps), tuple(sorted(resolved.items()))

    def sample(self, num: int, seconds: float | None = None, *, length: int | None = None, num_steps=None,
               seed: int = 0, batch_size: int = 4, sampler: str | None = None, **options) -> np.ndarray:
        """Draws `num` unconditional samples.

        Args:
          num: how many; seconds or length: their duration (s) or samples at `sample_rate`
            (default: the training segment).
          num_steps: sampler steps T (default: the config's); seed: sample i uses the key
            fold_in(key(seed), i), whatever the batch size.
          batch_size: rows per batch (rounded up to the devices); a last, smaller batch runs
            with fewer rows. sampler, **options: the config's unless given (S_churn, ...).

        Returns:
          float32 (num, L).
        """
        from diffrestore.data.defaults import crop_length

        if length is None:
            length = int(round(seconds * self.sample_rate)) if seconds is not None else crop_length(self.config.data)
        length = int(length)
        if num < 1 or length < 1:
            raise ValueError(f"num and length must be positive, got {num} and {length}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        settings = self.sampler_settings(sampler, num_steps, **options)
        devices = self.mesh.size
        max_rows = -(-batch_size // devices) * devices
        out = []
        for start in range(0, num, max_rows):
            real = min(max_rows, num - start)
            rows = batch_rows(real, max_rows, devices)
            ids = jax.device_put(np.arange(start, start + rows, dtype=np.uint32), self._rows)
            program = self._program(settings, length, rows)
            x, nfe = program(self.params, ids, jax.random.key(seed), jnp.int32(settings[1]))
            self.last_network_evaluations = int(nfe)
            out.append(np.asarray(x)[:real])
        return np.concatenate(out, axis=0)

    def _abstract(self, rows: int, *arrays):
        """ShapeDtypeStructs of (params, *arrays): arrays are (shape, dtype) of per-row inputs."""
        structs = [jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=self._replicated), self.params)]
        structs += [jax.ShapeDtypeStruct(shape, dtype, sharding=self._rows) for shape, dtype in arrays]
        return structs

    def _scalars(self):
        return [jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=self._replicated),
                jax.ShapeDtypeStruct((), jnp.int32, sharding=self._replicated)]

    def _program(self, settings, length: int, rows: int):
        key = ("sample", settings[0], settings[2], length, rows)

        def build():
            sample_fn = sampling.get_sampler(settings[0], **dict(settings[2]))
            denoise_fn, sde = self.denoise_fn, self.sde

            def run(params, ids, base, num_steps):
                keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(ids)
                template = jnp.zeros((ids.shape[0], length), jnp.float32)
                return sample_fn(lambda x, s: denoise_fn(params, x, s), sde, template, sampling.keyed_noise(keys), num_steps)

            return inference.compile_checked(
                jax.jit(run, out_shardings=(self._rows, self._replicated)),
                self._abstract(rows, ((rows,), jnp.uint32)) + self._scalars(), mesh=self.mesh,
                log_to=self.programs.compile_log, what=f"{settings[0]} for {rows} row(s) x {length} samples",
                sampler=settings[0], samples=length, rows=rows,
            )

        return self.programs.wait(self.programs.request(key, build))

    # ------------------------------------------------------------------ restoration
    def default_buckets(self) -> tuple[int, ...]:
        """Padded lengths (samples) of restoration: a quarter, half and all of the training
        segment for CQT-Diff, which takes any length; the segment alone for CQTdiff+, whose
        octave U-Net needs lengths whose octaves double. Longer signals go in chunks of the
        largest."""
        from diffrestore.data.defaults import crop_length

        segment = crop_length(self.config.data)
        if self.config.model.backbone == "cqtdiff":
            return tuple(sorted({segment // 4, segment // 2, segment}))
        return (segment,)

    def restore(self, waves: Sequence[np.ndarray], sample_rate: int | None = None, *, task: str, seed: int = 0,
                batch_size: int = 4, example_ids: Sequence[int] | None = None, buckets: Sequence[int] | None = None,
                overlap: int | None = None, num_steps: int | None = None, sampler: str | None = None,
                **options) -> list[np.ndarray]:
        """Restores recordings whose degradation is known, by posterior sampling from the prior.

        Args:
          waves: 1-D arrays (any lengths): the degraded recordings (the observations); a list of
            them, or one array (then one array comes back); float, or integer PCM scaled as
            soundfile reads it (`inference.as_signals`).
          sample_rate: their rate (Hz); resampled to the prior's and back.
          task: "bwe" (cutoff_hz=..., filter="fir" | "cheby1" | "biquad"), "declip"
            (clip_level=..., default each signal's peak) or "inpaint" (gaps=[(start_s,
            end_s), ...]); see `diffrestore.restoration.make_task` for every option (xi,
            clip_grad, data_consistency, guidance) and the references' defaults.
          seed: signal i uses the key fold_in(key(seed), example_ids[i]); chunk j folds in j.
          batch_size: rows per batch (rounded up to the devices); buckets: padded lengths in
            samples at the prior's rate (default `default_buckets()`); overlap: samples shared
            by consecutive chunks of a long signal (default 1/8 of the largest bucket).
          num_steps, sampler: the prior's sampler settings unless given; other options
            (S_churn, ...) are the sampler's.

        Returns:
          Restored 1-D float32 arrays, each as long as its input, at its rate.

        Raises:
          ValueError: bad signals (not 1-D, NaN, shorter than the bucket minimum) or task
            options (a cutoff above the prior's Nyquist, a gap outside a signal, a clip level
            above a signal's peak), naming the signal; BatchTooLargeError.
        """
        from diffrestore import restoration

        waves, single = inference.as_signals(waves)
        task_names = {"cutoff_hz", "filter", "numtaps", "order", "ripple", "q", "clip_level", "gaps", "xi",
                      "clip_grad", "data_consistency", "guidance"}
        task_options = {k: v for k, v in options.items() if k in task_names}
        settings = self.sampler_settings(sampler, num_steps, **{k: v for k, v in options.items() if k not in task_names})
        spec = restoration.make_task(task, self.sample_rate, **task_options)
        rate = self.sample_rate if sample_rate is None else int(sample_rate)
        ids = list(range(len(waves))) if example_ids is None else [int(i) for i in example_ids]
        if len(ids) != len(waves):
            raise ValueError(f"{len(ids)} example_ids for {len(waves)} signals")
        table = tuple(sorted({int(b) for b in (buckets or self.default_buckets())}))
        if not table or table[0] < 1:
            raise ValueError(f"buckets must be positive lengths in samples, got {buckets}")
        chunk = table[-1]
        overlap = chunk // 8 if overlap is None else int(overlap)
        if not 0 < overlap < chunk // 2:
            raise ValueError(f"overlap must be positive and below half the largest bucket {chunk}")
        max_rows = inference.max_rows_for(batch_size, self.mesh.size)

        observed, peaks = [], []
        for i, wave in enumerate(waves):
            peaks.append(float(np.max(np.abs(wave))))
            observed.append(wave if rate == self.sample_rate else resample(wave, rate, self.sample_rate).astype(np.float32))
        # A recording shorter than the operator's support carries nothing it could guide with.
        minimum = max(MIN_RESTORE_SAMPLES, int(dict(spec.options).get("numtaps", 0)) if spec.name == "bwe" else 0)
        for i, wave in enumerate(observed):
            if wave.shape[0] < minimum:
                raise ValueError(f"signal {i}: {wave.shape[0]} samples at {self.sample_rate} Hz is shorter than the "
                                 f"minimum {minimum} for {spec.description}")
        level = dict(spec.options).get("clip_level")
        if level is not None:
            for i, peak in enumerate(peaks):
                if level > peak * (1 + 1e-6) and peak > 0:
                    raise ValueError(f"signal {i}: clip level {level:g} is above the signal's peak {peak:g}")
        if spec.per_signal == "level":  # a clipped recording saturates at its peak (at its own rate)
            per_signal = [float(level) if level is not None else peak for peak in peaks]
        else:
            per_signal = []
            for i, wave in enumerate(observed):
                try:
                    per_signal.append(spec.signal_params([wave], self.sample_rate)[0])
                except ValueError as err:
                    raise ValueError(f"signal {i}: {err}") from None

        lengths = [w.shape[0] for w in observed]
        segments = inference.plan_segments(
            lengths, bucket_of=lambda n: inference.bucket_for(n, table), chunk_length=chunk, overlap=overlap,
            largest_bucket=chunk, skip=[p == 0.0 for p in peaks],  # silence stays silence
        )
        batches = inference.plan_batches(segments, max_rows, self.mesh.size)
        futures = [self._restore_program(settings, spec, b.bucket, b.rows) for b in batches]
        self.last_batches = [(b.bucket, b.rows, len(b.segments)) for b in batches]
        pieces = {}
        for batch, future in zip(batches, futures):
            program = self.programs.wait(future)
            inputs = [inference.gather_rows(batch, observed, batch.bucket), inference.row_lengths(batch),
                      inference.row_values(batch, ids, np.uint32), inference.row_values(batch, None, np.int32)]
            if spec.per_signal == "mask":
                inputs.append(inference.gather_rows(batch, per_signal, batch.bucket))
            elif spec.per_signal == "level":
                inputs.append(inference.row_values(batch, per_signal, np.float32))
            out, nfe = program(self.params, *jax.device_put(tuple(inputs), self._rows), jax.random.key(seed),
                               jnp.int32(settings[1]))
            self.last_network_evaluations = int(nfe)
            out = np.asarray(out)
            pieces.update(((s.signal, s.chunk), out[r, : s.length]) for r, s in enumerate(batch.segments))

        outputs = []
        for i, joined in enumerate(inference.join_segments(pieces, lengths, chunk, overlap)):
            joined = np.zeros(lengths[i], np.float32) if joined is None else joined
            if rate != self.sample_rate:
                joined = resample(joined, self.sample_rate, rate).astype(np.float32)
            n = len(waves[i])
            outputs.append(np.pad(joined, (0, max(0, n - joined.shape[0])))[:n].astype(np.float32))
        return outputs[0] if single else outputs

    def _restore_program(self, settings, spec, length: int, rows: int):
        """The compiled restoration program of (sampler settings, task, bucket, rows), as a Future."""
        key = ("restore", settings[0], settings[2], spec.name, spec.options, spec.xi, spec.clip_grad,
               spec.data_consistency, spec.guidance, length, rows)

        def build():
            sample_fn = sampling.get_sampler(settings[0], **dict(settings[2]))
            denoise_fn, sde, op = self.denoise_fn, self.sde, spec.operator

            def run(params, ys, lengths, ids, chunks, *rest):
                *per_row, base, num_steps = rest
                valid = (jnp.arange(length)[None, :] < lengths[:, None]).astype(jnp.float32)
                if spec.per_signal == "mask":
                    op_params = {"mask": per_row[0]}
                elif spec.per_signal == "level":
                    op_params = {"level": per_row[0]}
                else:
                    op_params = None
                guided = sampling.guided_denoiser(
                    lambda x, s: denoise_fn(params, x, s), op, ys, op_params, xi=spec.xi, guidance=spec.guidance,
                    clip_grad=spec.clip_grad, data_consistency=spec.data_consistency, valid=valid,
                )
                keys = inference.row_keys(base, ids, chunks)
                return sample_fn(guided, sde, ys, sampling.keyed_noise(keys), num_steps)

            arrays = [((rows, length), jnp.float32), ((rows,), jnp.int32), ((rows,), jnp.uint32), ((rows,), jnp.int32)]
            if spec.per_signal == "mask":
                arrays.append(((rows, length), jnp.float32))
            elif spec.per_signal == "level":
                arrays.append(((rows,), jnp.float32))
            return inference.compile_checked(
                jax.jit(run, out_shardings=(self._rows, self._replicated)),
                self._abstract(rows, *arrays) + self._scalars(), mesh=self.mesh, log_to=self.programs.compile_log,
                what=f"{spec.name} with {settings[0]} for {rows} row(s) x {length} samples",
                task=spec.name, sampler=settings[0], samples=length, rows=rows,
            )

        return self.programs.request(key, build)
