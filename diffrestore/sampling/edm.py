"""The stochastic Heun sampler of EDM (Karras et al. 2022, Algorithm 2), as CQT-Diff and BABE run it.

On the grid t_0 > ... > t_{T−1} = σmin > t_T = 0 of `EDM.sigma_at`, step i:

    γ_i = EDM.churn_gamma(t_i);  t̂ = t_i + γ_i·t_i;  x̂ = x + √(t̂² − t_i²)·S_noise·ε_{1+i}
    d = −t̂·(D(x̂, t̂) − x̂)/t̂²;  h = t_{i+1} − t̂;  x' = x̂ + h·d
    t_{i+1} ≠ 0: x = x̂ + h·(d + d')/2 with d' = −t_{i+1}·(D(x', t_{i+1}) − x')/t_{i+1}²  (Heun)
    t_{i+1} = 0: x = x' (Euler, the last step; it lands on D(x̂, t̂))

starting from x_T = t_0·ε_0 or, with `start_sigma`, x_T = y + t_0·ε_0 on BABE's grid from
that level (`create_schedule_from_initial_t`). The score form (D − x)/t² is kept as the
references compute it, so that guidance, which modifies the score, can later act through D.
The whole run is one `lax.fori_loop` over the 2T − 1 network calls, with T a runtime value
(nothing is evaluated at σ = 0), so the compiled program holds the network once.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from diffrestore.sde.edm import CHURN_CONVENTIONS


def edm_heun_sample(
    denoise_fn: Callable,
    sde,
    y: jnp.ndarray,
    draw: Callable,
    num_steps,
    *,
    S_churn: float = 5.0,
    S_tmin: float = 0.0,
    S_tmax: float = 50.0,
    S_noise: float = 1.0,
    convention: str = "cqtdiff",
    start_sigma=None,
):
    """Runs the stochastic Heun sampler.

    Args:
      denoise_fn: `(x, sigma) -> D(x, σ)`, x shaped like y, sigma (B,) (e.g. a prior's
        `make_edm_denoiser` with its parameters bound, or a posterior's wrapper of it).
      sde: an `EDM` (grid, churn).
      y: (B, ...) state-shaped array. Without `start_sigma` only its shape and dtype are used
        (unconditional start x_T = t_0·ε_0); with it, the sampler starts from x_T = y + t_0·ε_0.
      draw: noise source (`sampling.noise`): draw 0 is the prior's ε_0, draw 1 + i the churn ε of
        step i ("babe", "karras": every step draws; "cqtdiff": only steps with γ_i ≠ 0 draw, and the
        draws are numbered in the order they happen, as the torch code calls randn).
      num_steps: T (python int or traced int32 scalar; T ≥ 2 as in the references).
      S_churn, S_tmin, S_tmax, S_noise: churn settings (CQT-Diff: 5, 0, 50, 1; BABE's tester:
        S_churn 20).
      convention: "cqtdiff", "babe" or "karras" (NVlabs): how γ is computed and when ε is drawn
        (see `EDM.churn_gamma`).
      start_sigma: None (grid from σmax) or the start level of BABE's warm start (a float or a
        traced scalar).

    Returns:
      (x̂ shaped like y, 2T − 1 network evaluations).
    """
    if convention not in CHURN_CONVENTIONS:
        raise ValueError(f"unknown churn convention {convention!r}; choose from {CHURN_CONVENTIONS}")
    if not hasattr(sde, "churn_gamma"):
        raise TypeError(f"edm_heun samples an EDM process, not {type(sde).__name__}")
    num_steps = jnp.asarray(num_steps, jnp.int32)
    batch = y.shape[0]

    def sigma(i):
        return sde.sigma_at(i, num_steps, start_sigma)

    def churn(i, x, drawn):
        t = sigma(i)
        gamma = sde.churn_gamma(t, num_steps, S_churn, S_tmin, S_tmax, convention)
        t_hat = t + gamma * t
        if convention == "cqtdiff":
            index, drawn = 1 + drawn, drawn + (gamma != 0).astype(jnp.int32)
        else:
            index = 1 + i
        eps = draw(index, x) * S_noise
        # With γ = 0 the churn adds √0·ε = 0 exactly: x̂ = x in every convention.
        x_hat = jnp.where(gamma != 0, x + jnp.sqrt(t_hat**2 - t**2) * eps, x)
        return x_hat, t_hat, drawn

    # One network call per iteration k = 0 … 2T − 2, so the program holds the network once
    # (a Heun body with both calls, plus the last Euler step, held it three times: three
    # times the compile time, for a prior's network and its gradient under guidance).
    # Even k = 2i: the churned point of step i and its slope d (for the last step, the Euler
    # update); odd k = 2i + 1: the slope d' at the trial point, and the Heun update.
    def evaluation(k, carry):
        x, x_hat, t_hat, d, drawn = carry
        i = k // 2
        first = k % 2 == 0
        churned, churned_t, churned_drawn = churn(i, x, drawn)
        x_hat = jnp.where(first, churned, x_hat)
        t_hat = jnp.where(first, churned_t, t_hat)
        drawn = jnp.where(first, churned_drawn, drawn)
        t_next = sigma(i + 1)
        h = t_next - t_hat
        point = jnp.where(first, x_hat, x_hat + h * d)
        level = jnp.where(first, t_hat, t_next)
        # d = −t·score with the score (D − x)/t², the references' order of operations.
        score = (denoise_fn(point, jnp.full((batch,), level, jnp.float32)) - point) / level**2
        slope = -level * score
        euler = x_hat + h * slope  # the last step, to σ = 0 (i = T − 1)
        heun = x_hat + h * (0.5 * d + 0.5 * slope)
        last = i == num_steps - 1
        x = jnp.where(first, jnp.where(last, euler, x), heun)
        d = jnp.where(first, slope, d)
        return x, x_hat, t_hat, d, drawn

    x = draw(0, y) * sigma(0)
    if start_sigma is not None:
        x = y + x
    zero = jnp.zeros((), jnp.float32)
    carry = (x, x, zero, jnp.zeros_like(x), jnp.zeros((), jnp.int32))
    x, *_ = jax.lax.fori_loop(0, 2 * num_steps - 1, evaluation, carry)
    return x, 2 * num_steps - 1
