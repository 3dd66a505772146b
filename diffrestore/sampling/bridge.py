"""Schrödinger-bridge samplers (Jukić et al., 2024), first-order discretisations.

The network predicts the clean spectrogram x̂ = D(x_t, y, t). Starting from x_T = y, with
times t_0 = T > t_1 > ... > t_N = eps on linspace(T, eps, N + 1), each step mixes the current
state, the estimate and (ODE) the prior mean y or (SDE) fresh noise, with the reference's
weights. N network calls.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from diffrestore.sde.base import batch_view


def sb_sample(data_fn: Callable, sde, y, draw: Callable, num_steps, *, kind="ode", eps=1e-4):
    """Runs the bridge sampler.

    Args:
      data_fn: `(x, y, t) -> x̂`, complex (B, 1, F, T).
      sde: a bridge SDE (`sigmas_alphas`, `eps`, `T`).
      y: complex (B, 1, F, T) noisy spectrogram.
      draw: noise source (SDE only: draw i for step i; the last step adds none).
      num_steps: N (runtime int).
      kind: "ode" or "sde".

    Returns:
      (x̂, N network evaluations).
    """
    if kind not in ("ode", "sde"):
        raise ValueError(f"unknown bridge sampler {kind!r}; choose ode or sde")
    num_steps = jnp.asarray(num_steps, jnp.int32)
    batch = y.shape[0]
    delta = (sde.T - eps) / num_steps
    small = sde.eps

    def times(i):
        return jnp.full((batch,), sde.T - i * delta, jnp.float32)

    def step(i, carry):
        x, prev = carry
        sigma_prev, alpha_prev, sigma_bar_prev = prev
        t = jnp.where(i == num_steps - 1, eps, sde.T - (i + 1) * delta)
        vec_t = jnp.full((batch,), t, jnp.float32)
        sigma_t, sigma_T, sigma_bar, alpha_t, alpha_T, _ = sde.sigmas_alphas(vec_t)
        estimate = data_fn(x, y, vec_t)
        if kind == "ode":
            w_prev = alpha_t * sigma_t * sigma_bar / (alpha_prev * sigma_prev * sigma_bar_prev + small)
            w_est = alpha_t / (sigma_T**2 + small) * (sigma_bar**2 - sigma_bar_prev * sigma_t * sigma_bar / (sigma_prev + small))
            w_y = alpha_t / (alpha_T * sigma_T**2 + small) * (sigma_t**2 - sigma_prev * sigma_t * sigma_bar / (sigma_bar_prev + small))
            x = batch_view(w_prev, x) * x + batch_view(w_est, x) * estimate + batch_view(w_y, x) * y
        else:
            w_prev = alpha_t * sigma_t**2 / (alpha_prev * sigma_prev**2 + small)
            ratio = 1 - sigma_t**2 / (sigma_prev**2 + small)
            w_est = alpha_t * ratio
            w_z = jnp.where(i == num_steps - 1, 0.0, alpha_t * sigma_t * jnp.sqrt(ratio))
            z = draw(i, x)
            x = batch_view(w_prev, x) * x + batch_view(w_est, x) * estimate + batch_view(w_z, x) * z
        return x, (sigma_t, alpha_t, sigma_bar)

    sigma0, _, sigma_bar0, alpha0, _, _ = sde.sigmas_alphas(times(0))
    x, _ = jax.lax.fori_loop(0, num_steps, step, (y, (sigma0, alpha0, sigma_bar0)))
    return x, num_steps
