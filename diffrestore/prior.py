"""`Prior`: a diffusion prior of clean audio (EDM on waveforms) ready for denoising and sampling.

    from diffrestore import Prior
    prior = Prior.from_checkpoint("runs/cqtdiff_maestro")      # or a CQT-Diff / BABE .pt file
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
import time

import jax
import jax.numpy as jnp
import numpy as np

from diffrestore import config as config_lib
from diffrestore import sampling, xla_cache
from diffrestore.inference import batch_rows

log = logging.getLogger("diffrestore")


class Prior:
    """An unconditional EDM prior of clean audio with its (EMA) weights."""

    def __init__(self, config, params, devices=None, *, compilation_cache=True):
        """
        Args:
          config: a prior's config (`config.prior_config`, `sde.name == "edm"`).
          params: the network's weights (EMA for our run directories; the weights the
            reference samples with for imported files).
          devices: where batches run (default: all of this process's devices).
          compilation_cache: as for `Enhancer`: True (default folder), a path, False (off),
            None (leave JAX's setting alone).
        """
        if not config_lib.is_prior(config):
            raise ValueError(
                f"not a prior: sde.name is {config.sde.name!r}, not 'edm' (enhancement models load with Enhancer)"
            )
        self.config = config
        xla_cache.configure(compilation_cache)
        devices = jax.local_devices() if devices is None else list(devices)
        self.mesh = jax.sharding.Mesh(np.array(devices), ("batch",))
        self._rows = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec("batch"))
        self._replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
        self.params = params
        self.sde = config_lib.build_sde(config)
        self.module = config_lib.build_backbone(config)
        self.denoise_fn = config_lib.build_model_fn(config, self.module)  # (params, x, σ) -> D
        self.sample_rate = int(config.data.sample_rate)
        self._denoise = jax.jit(self.denoise_fn)
        self._programs = {}  # (settings, length, rows) -> jitted sampler
        self.last_network_evaluations = 0

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

        A `.pt` is a CQT-Diff (`{'step', 'model', 'ema_weights'}`) or BABE (`{'it', 'network',
        'ema', 'args'}`) trainer file, read without PyTorch through the restricted unpickler;
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

    def _program(self, settings, length: int, rows: int):
        key = (settings[0], settings[2], length, rows)
        if key not in self._programs:
            sample_fn = sampling.get_sampler(settings[0], **dict(settings[2]))
            denoise_fn, sde = self.denoise_fn, self.sde

            def run(params, ids, base, num_steps):
                keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(ids)
                template = jnp.zeros((ids.shape[0], length), jnp.float32)
                return sample_fn(lambda x, s: denoise_fn(params, x, s), sde, template, sampling.keyed_noise(keys), num_steps)

            abstract = (
                jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=self._replicated), self.params),
                jax.ShapeDtypeStruct((rows,), jnp.uint32, sharding=self._rows),
                jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=self._replicated),
                jax.ShapeDtypeStruct((), jnp.int32, sharding=self._replicated),
            )
            start = time.perf_counter()
            self._programs[key] = (
                jax.jit(run, out_shardings=(self._rows, self._replicated)).lower(*abstract).compile()
            )
            log.info("compiled %s for %d row(s) x %d samples in %.1f s", settings[0], rows, length,
                     time.perf_counter() - start)
        return self._programs[key]
