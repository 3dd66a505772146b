"""Posterior sampling: wrappers that turn a prior's denoiser into a posterior's.

Each wrapper takes the prior's `denoise_fn(x, σ) -> D(x, σ)` (batched, (B, L)), an operator
A (`diffrestore.operators.Operator`) with its parameters and the observation y, and returns
a denoiser of the same signature, so every EDM sampler (`edm_heun`) samples the posterior
without knowing it. The guided estimate is D̃ = x + σ²·s̃ for the posterior score s̃:

* reconstruction guidance (CQT-Diff, Moliner et al. 2023; its `get_score_rec_guidance`):
  r = ‖y − A(D(x, σ))‖₂ per example (not squared), g = ∂r/∂x through the network and A,
  ν = ‖g‖₂/√L, s̃ = (D − x)/σ² − ξ/(ν·σ + 1e-6)·g, with g clipped to ±`clip_grad` after ν
  is taken when `clip_grad` > 0 (the BWE script's `max_thresh_grads`);
* DPS (Chung et al. 2023): s̃ = (D − x)/σ² − ζ·∇‖y − A(D)‖₂², ζ = ξ/‖y − A(D)‖₂;
* data consistency (CQT-Diff's inpainting): after either, D̃ ← the operator's replacement of
  A(D̃) by y (for a mask m: m·y + (1 − m)·D̃), as `Operator.consistency` defines it.

Rows are independent: the gradient of the sum of per-row residuals gives every row its own
gradient (the reference computes one example at a time). `valid` (1 for real samples, 0 for a
bucket's padding) keeps padded samples out of the residual, so a short signal in a longer
bucket is guided by its own samples only, and L in ν is its own length.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

GUIDANCE = ("reconstruction", "dps", "none")


def _per_row_norm(r):
    # ‖r‖₂ over all but the batch axis, with a zero (not NaN) gradient where r = 0.
    squared = jnp.sum(jnp.square(r).reshape(r.shape[0], -1), axis=-1)
    safe = jnp.where(squared > 0, squared, 1.0)
    return jnp.where(squared > 0, jnp.sqrt(safe), 0.0)


def guided_denoiser(
    denoise_fn: Callable,
    operator,
    y,
    params=None,
    *,
    xi: float = 0.2,
    guidance: str = "reconstruction",
    clip_grad: float = 0.0,
    data_consistency: bool = False,
    valid=None,
    observed=None,
) -> Callable:
    """The posterior's denoiser D̃(x, σ) for observation y = A(x0) of a prior `denoise_fn`.

    Args:
      denoise_fn: `(x, sigma) -> D(x, σ)` with x (B, L) and sigma (B,) (the prior's, params bound).
      operator: an `Operator` (`apply(x, params)`, `consistency(x, y, params)`).
      y: the observation, shaped like A(x) (B, L_obs).
      params: the operator's parameters (default its own; arrays may be per row).
      xi: the guidance step ξ (CQT-Diff's scripts: 0.2 for BWE, declipping and inpainting).
      guidance: "reconstruction" (the references'), "dps", or "none" (only data consistency).
      clip_grad: clip the gradient to ±clip_grad after its norm is taken (0: off).
      data_consistency: replace A(D̃) by y after the guidance step (needs
        `operator.consistency`).
      valid: optional (B, L) mask of real samples (a bucket's padding 0): ν's L counts them,
        and data consistency leaves the padding alone.
      observed: optional mask of the observation's real samples, shaped like y (default:
        `valid` when A keeps the length): the residual counts only those.

    Returns:
      `denoise(x, sigma) -> D̃` of the same shapes.
    """
    if guidance not in GUIDANCE:
        raise ValueError(f"unknown guidance {guidance!r}; choose from {GUIDANCE}")
    if data_consistency and not operator.has_consistency:
        raise ValueError(f"operator {operator.kind!r} has no data-consistency step")
    if guidance == "none" and not data_consistency:
        raise ValueError("guidance 'none' without data consistency would ignore the observation")

    mask = observed if observed is not None else valid

    def residual_of(d):
        r = y - operator.apply(d, params)
        if mask is not None:
            if mask.shape != r.shape:
                raise ValueError(f"observation mask {mask.shape} does not fit the observation {r.shape}")
            r = r * mask  # padded samples of a bucket are not observed
        return r

    def guided(x, sigma):
        sigma = jnp.asarray(sigma, jnp.float32).reshape(-1)
        s = sigma.reshape((-1,) + (1,) * (x.ndim - 1))
        if guidance == "none":
            d_tilde = denoise_fn(x, sigma)
        else:
            def objective(x):
                d = denoise_fn(x, sigma)
                norms = _per_row_norm(residual_of(d))
                value = jnp.sum(norms) if guidance == "reconstruction" else jnp.sum(jnp.square(norms))
                return value, (d, norms)

            (_, (d, norms)), g = jax.value_and_grad(objective, has_aux=True)(x)
            if guidance == "reconstruction":
                length = x[0].size if valid is None else jnp.sum(valid.reshape(valid.shape[0], -1), axis=-1)
                nu = _per_row_norm(g) / jnp.sqrt(jnp.asarray(length, jnp.float32))
                step = xi / (nu * sigma + 1e-6)
                if clip_grad > 0:
                    g = jnp.clip(g, -clip_grad, clip_grad)
            else:  # DPS: ζ = ξ / ‖y − A(D)‖ on the gradient of the squared norm
                step = xi / jnp.where(norms > 0, norms, 1.0)
            score = (d - x) / s**2 - step.reshape(s.shape) * g
            d_tilde = score * s**2 + x
        if data_consistency:
            consistent = operator.consistency(d_tilde, y, params)
            # A bucket's padding is not observed: it keeps the estimate as it was.
            d_tilde = consistent if valid is None else jnp.where(valid > 0, consistent, d_tilde)
        return d_tilde

    return guided
