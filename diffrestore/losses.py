"""Training objectives of SGMSE+ and its successors, with the reference's exact reductions.

Every loss sums over (channel, frequency, frame), halves, and averages over the batch —
`mean_b(½ Σ |·|²)` — as `ScoreModel._loss` does, so loss values are comparable with
PyTorch training logs.

* score_matching (σ² weighting): |s·σ + z|², the denoising score matching loss, Eq. (7) of
  Richter et al. 2024.
* denoiser: D = s·σ² + x_t, |D − μ_t|² weighted by 1, σ² or the EDM weight
  (σ² + σ_d²)/(σ σ_d)².
* data_prediction: |x̂ − x0|²/(F·T) plus l1_weight × time-domain L1/(L) of the waveforms.
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
