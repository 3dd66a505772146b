"""`Enhancer`: a trained model plus everything needed to enhance waveforms with it.

    from diffrestore import Enhancer
    enhancer = Enhancer.from_checkpoint("runs/quickstart")        # or an sgmse .ckpt
    clean = enhancer.enhance([noisy_wave], sample_rate=16000)      # list of 1-D arrays

Enhancement follows the reference's `enhance`: normalise by the noisy peak, STFT, compress,
pad frames to a multiple of 64, sample the reverse process, decompress, inverse STFT cropped
to the input length, undo the normalisation. Signals are grouped by padded frame count and
sampled in fixed-size batches, so a list of many lengths compiles one program per length
bucket; the number of steps is a runtime value and does not recompile.
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


class Enhancer:
    """A restoration model ready for inference (EMA weights)."""

    def __init__(self, config, params):
        self.config = config
        self.params = jax.device_put(params)
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
    def from_checkpoint(cls, path, step: int | None = None) -> "Enhancer":
        """Loads a diffrestore run directory (training workdir or converted) or an sgmse `.ckpt`.

        A `.ckpt` is read safely without PyTorch (see `diffrestore.convert`), with its EMA
        weights, exactly as the reference evaluates it.
        """
        from diffrestore import checkpoint

        path = pathlib.Path(path)
        if path.is_file():
            from diffrestore.convert.sgmse import load_sgmse_checkpoint

            config, _, ema_params = load_sgmse_checkpoint(path)
            return cls(config, ema_params)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such checkpoint file or run directory")
        config, ema_params, _ = checkpoint.restore_ema_params(path, step)
        return cls(config, ema_params)

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
    ) -> list[np.ndarray]:
        """Enhances a list of 1-D waveforms.

        Args:
          waves: 1-D float arrays (any lengths).
          sample_rate: their rate in Hz; resampled to the model's rate and back if different.
          sampler: "pc" (default for score models), "ode_euler", "ode_heun", "ode_adaptive",
            "sb_ode" (default for bridge models), "sb_sde".
          num_steps: reverse steps N; corrector, snr, corrector_steps, predictor: PC options.
          seed: signal i uses the key fold_in(key(seed), example_ids[i]) (default ids 0, 1, ...),
            whatever it is batched with.
          batch_size: signals per compiled batch.
          example_ids: stable ids for the keys (e.g. a hash of the file name), non-negative.

        Returns:
          Enhanced 1-D float32 arrays, each as long as its input.
        """
        sampler = sampler or self.default_sampler()
        options = self._sampler_options(sampler, corrector, snr, corrector_steps, predictor)
        model_rate = self.spectrogram.sample_rate
        rate = model_rate if sample_rate is None else int(sample_rate)
        prepared = [self._prepare(i, w, rate, model_rate) for i, w in enumerate(waves)]
        ids = list(range(len(waves))) if example_ids is None else [int(i) for i in example_ids]
        if len(ids) != len(waves):
            raise ValueError(f"{len(ids)} example_ids for {len(waves)} signals")

        # Bucket by padded frame count: one compiled program per bucket.
        buckets: dict[int, list[int]] = {}
        for i, (_, _, frames) in enumerate(prepared):
            buckets.setdefault(frames, []).append(i)
        outputs: list[np.ndarray | None] = [None] * len(waves)
        for frames, members in sorted(buckets.items()):
            for start in range(0, len(members), batch_size):
                chunk = members[start : start + batch_size]
                self._enhance_batch(chunk, prepared, frames, batch_size, seed, ids, sampler, num_steps, options, outputs)
        return [self._finish(out, len(w), rate, model_rate) for out, w in zip(outputs, waves)]

    def _prepare(self, index, wave, rate, model_rate):
        wave = np.asarray(wave, np.float32)
        if wave.ndim != 1:
            raise ValueError(f"signal {index}: expected a 1-D array, got shape {wave.shape}")
        if not np.all(np.isfinite(wave)):
            raise ValueError(f"signal {index}: contains NaN or infinite samples")
        if rate != model_rate:
            wave = resample(wave, rate, model_rate).astype(np.float32)
        min_len = self.spectrogram.n_fft // 2 + 1
        if wave.shape[0] < min_len:
            raise ValueError(f"signal {index}: {wave.shape[0]} samples is shorter than the minimum {min_len}")
        peak = float(np.max(np.abs(wave)))
        if peak == 0.0:
            raise ValueError(f"signal {index}: all samples are zero; nothing to enhance")
        frames = 1 + wave.shape[0] // self.spectrogram.hop_length
        padded = math.ceil(frames / FRAME_MULTIPLE) * FRAME_MULTIPLE
        return wave / peak, peak, padded

    def _enhance_batch(self, chunk, prepared, frames, batch_size, seed, ids, sampler, num_steps, options, outputs):
        specs = []
        for i in chunk:
            wave, _, _ = prepared[i]
            spec = to_spectrogram(jnp.asarray(wave), self.spectrogram)
            specs.append(pad_frames(spec, FRAME_MULTIPLE, self.config.sampling.pad_mode))
        # Fill the batch to a fixed size so every batch of a bucket reuses one program.
        filler = [jnp.zeros_like(specs[0])] * (batch_size - len(specs))
        y = jnp.stack(specs + filler)[:, None]
        # Keys: signal i always gets fold_in(key(seed), ids[i]); filler rows reuse id 0 (discarded).
        keys_index = [ids[i] for i in chunk] + [0] * len(filler)
        x, _ = self._sample_rows(y, keys_index, seed, sampler, num_steps, options)
        for row, i in enumerate(chunk):
            wave, peak, _ = prepared[i]
            outputs[i] = np.asarray(to_audio(x[row, 0], self.spectrogram, wave.shape[0])) * peak

    def _sample_rows(self, y, keys_index, seed, sampler, num_steps, options):
        program = self._sampler_program(sampler, tuple(sorted(options.items())))
        base = jax.random.key(seed)
        keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(keys_index, jnp.uint32))
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

