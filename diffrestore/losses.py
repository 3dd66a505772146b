"""Training objectives of SGMSE+ and its successors, with the reference's exact reductions.

Every loss sums over (channel, frequency, frame), halves, and averages over the batch —
`mean_b(½ Σ |·|²)` — as `ScoreModel._loss` does, so loss values are comparable with
PyTorch training logs.

* score_matching (σ² weighting): |s·σ + z|², the denoising score matching loss, Eq. (7) of
  Richter et al. 2024.
* denoiser: D = s·σ² + x_t, |D − μ_t|² weighted by 1, σ² or the EDM weight
  (σ² + σ_d²)/(σ σ_d)².
* data_prediction: |x̂ − x0|²/(F·T) plus l1_weight × time-domain L1/(L) of the waveforms.

EDM priors (`make_edm_loss_fn`) do not use the half-sum: their references average.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from diffrestore.audio.transforms import SpectrogramConfig, to_audio
from diffrestore.sde.base import batch_view, complex_normal


def _half_sum_mean(per_bin):
    """mean over batch of ½ Σ over all other axes."""
    return jnp.mean(0.5 * jnp.sum(per_bin.reshape(per_bin.shape[0], -1), axis=-1))


def loss_from_output(
    out,
    *,
    x0,
    x_t,
    z,
    mean,
    sigma,
    loss_type: str = "score_matching",
    loss_weighting: str = "sigma^2",
    sigma_data: float = 0.1,
    l1_weight: float = 0.001,
    spectrogram: SpectrogramConfig | None = None,
):
    """The reference loss given the network's (post-processed) output.

    Args:
      out: score for score_matching/denoiser, x̂ for data_prediction; complex (B, 1, F, T).
      x0: clean spectrogram; x_t: perturbed state; z: the unit complex normal draw;
      mean: μ_t; sigma: σ_t (B,). All complex (B, 1, F, T) except sigma.
      spectrogram: needed for data_prediction (waveform L1 term).

    Returns:
      scalar float32 loss.
    """
    sig = batch_view(sigma, out)
    if loss_type == "score_matching":
        if loss_weighting != "sigma^2":
            raise ValueError(f"loss_type=score_matching supports loss_weighting 'sigma^2', not {loss_weighting!r}")
        return _half_sum_mean(jnp.abs(out * sig + z) ** 2)
    if loss_type == "denoiser":
        denoised = out * sig**2 + x_t
        per_bin = jnp.abs(denoised - mean) ** 2
        if loss_weighting == "sigma^2":
            per_bin = per_bin * sig**2
        elif loss_weighting == "edm":
            per_bin = per_bin * (sig**2 + sigma_data**2) / (sig * sigma_data) ** 2
        elif loss_weighting != "1":
            raise ValueError(f"loss_type=denoiser supports loss_weighting 1, sigma^2, edm, not {loss_weighting!r}")
        return _half_sum_mean(per_bin)
    if loss_type == "data_prediction":
        if spectrogram is None:
            raise ValueError("data_prediction loss needs the spectrogram settings for its waveform term")
        num_freqs, num_frames = out.shape[-2:]
        loss_tf = _half_sum_mean(jnp.abs(out - x0) ** 2 / (num_freqs * num_frames))
        length = (num_frames - 1) * spectrogram.hop_length
        wave_hat = to_audio(out[:, 0], spectrogram, length)
        wave = to_audio(x0[:, 0], spectrogram, length)
        loss_l1 = _half_sum_mean(jnp.abs(wave_hat - wave) / length)
        return loss_tf + l1_weight * loss_l1
    raise ValueError(f"unknown loss_type {loss_type!r}")


def make_loss_fn(
    model_fn: Callable,
    sde,
    *,
    t_eps: float = 0.03,
    loss_type: str = "score_matching",
    loss_weighting: str = "sigma^2",
    sigma_data: float = 0.1,
    l1_weight: float = 0.001,
    spectrogram: SpectrogramConfig | None = None,
) -> Callable:
    """Returns `loss_fn(params, x0, y, rng, **model_kwargs) -> (loss, aux)`.

    The training step of the reference: t ~ U(t_eps, T), z ~ CN(0, 1),
    x_t = μ_t(x0, y) + σ_t z, out = model_fn(params, x_t, y, t).
    """

    def loss_fn(params, x0, y, rng, **model_kwargs):
        key_t, key_z = jax.random.split(rng)
        t = jax.random.uniform(key_t, (x0.shape[0],), jnp.float32, t_eps, sde.T)
        z = complex_normal(key_z, x0.shape, x0.dtype)
        mean, sigma = sde.marginal_prob(x0, y, t)
        x_t = mean + batch_view(sigma, x0) * z
        out = model_fn(params, x_t, y, t, **model_kwargs)
        loss = loss_from_output(
            out, x0=x0, x_t=x_t, z=z, mean=mean, sigma=sigma, loss_type=loss_type,
            loss_weighting=loss_weighting, sigma_data=sigma_data, l1_weight=l1_weight,
            spectrogram=spectrogram,
        )
        return loss, {"t_mean": jnp.mean(t)}

    return loss_fn


# --- EDM priors (CQT-Diff, CQTdiff+/BABE) -------------------------------------------------------
# Both references compute the network target F* = (x0 − c_skip·(x0 + σn))/c_out and average the
# squared error over every element of the (B, L) batch: CQT-Diff `src/learner.py` train_step,
# `loss = nn.MSELoss()(estimate, target)` (l. 60, 252-255; reduction "mean"); BABE
# `diff_params/edm.py` loss_fn returns `error**2` (l. 192-206) and `training/trainer.py`
# train_step takes `loss = error.mean()` (l. 393-394). Since |F − F*|² = λ(σ)·|D − x0|², this is
# the λ-weighted denoiser loss of Karras et al. Eq. 8, averaged over batch and samples.
# NVlabs' training loop instead sums the weighted error over each example and averages over the
# batch (`loss.sum().mul(loss_scaling / batch_gpu_total)`): reduction "sum".
EDM_REDUCTIONS = ("mean", "sum")


def edm_loss_from_output(net_out, *, x0, x_noisy, sigma, sde, reduction: str = "mean", error_filter_fn=None):
    """The EDM loss given the raw network output F(c_in·x_noisy, c_noise).

    Args:
      net_out: F, shaped like x0 (real waveforms (B, L) for the priors).
      x0: clean examples; x_noisy: x0 + σ·n; sigma: (B,) noise levels; sde: an `EDM`.
      reduction: "mean" (CQT-Diff, BABE: mean over every element) or "sum" (NVlabs: sum over
        each example, mean over the batch).
      error_filter_fn: applied to F − F* before squaring: BABE's hook for its optional
        A-weighting FIR (`diff_params.aweighting`, off in its configs).

    Returns:
      scalar float32 loss.
    """
    if reduction not in EDM_REDUCTIONS:
        raise ValueError(f"unknown EDM loss reduction {reduction!r}; choose from {EDM_REDUCTIONS}")
    c_skip, c_out, _, _ = sde.precondition(sigma)
    target = (x0 - batch_view(c_skip, x0) * x_noisy) / batch_view(c_out, x0)
    error = net_out - target
    if error_filter_fn is not None:
        error = error_filter_fn(error)
    squared = jnp.abs(error) ** 2
    if reduction == "mean":
        return jnp.mean(squared)
    return jnp.mean(jnp.sum(squared.reshape(squared.shape[0], -1), axis=-1))


def make_edm_loss_fn(apply_fn: Callable, sde, *, reduction: str = "mean", error_filter_fn=None) -> Callable:
    """Returns `loss_fn(params, x0, y, rng, **model_kwargs) -> (loss, aux)` for an EDM prior.

    The references' training step: σ ~ `sde.train_distribution` per example, n ~ N(0, I),
    F = apply_fn(params, c_in·(x0 + σn), c_noise) with c_noise (B, 1), loss on F's target.
    `y` is ignored (a prior is unconditional); it keeps the signature of `make_loss_fn`.

    Args:
      apply_fn: `(params, x_in, c_noise, **kw) -> F` (the raw network, as in
        `diffrestore.score.make_edm_denoiser`).
      sde: an `EDM`.
      reduction, error_filter_fn: see `edm_loss_from_output`.
    """
    if reduction not in EDM_REDUCTIONS:
        raise ValueError(f"unknown EDM loss reduction {reduction!r}; choose from {EDM_REDUCTIONS}")

    def loss_fn(params, x0, y, rng, **model_kwargs):
        del y
        key_sigma, key_n = jax.random.split(rng)
        sigma = sde.sample_train_sigma(key_sigma, x0.shape[:1])
        x_noisy = x0 + batch_view(sigma, x0) * jax.random.normal(key_n, x0.shape, jnp.float32).astype(x0.dtype)
        _, _, c_in, c_noise = sde.precondition(sigma)
        out = apply_fn(params, batch_view(c_in, x0) * x_noisy, c_noise[:, None], **model_kwargs)
        loss = edm_loss_from_output(
            out, x0=x0, x_noisy=x_noisy, sigma=sigma, sde=sde, reduction=reduction, error_filter_fn=error_filter_fn
        )
        return loss, {"t_mean": jnp.mean(sigma)}

    return loss_fn
