"""Schrödinger bridges between clean and noisy spectrograms (Jukić et al., 2024).

A bridge is defined by the forward SDE dx = f(t) x dt + g(t) dw through α_t = exp∫f and
σ_t² = ∫ g²/α². With ᾱ_t = α_t/α_T and σ̄_t² = σ_T² − σ_t², the marginal of x_t given the
endpoints (x0, y) is Gaussian with

    mean = α_t σ̄_t²/σ_T² · x0 + ᾱ_t σ_t²/σ_T² · y,    std = α_t σ̄_t σ_t / σ_T.

`eps` is added exactly where the reference adds it, so values agree to float precision.
"""
from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp

from diffrestore.sde.base import batch_view


class _Bridge:
    """Shared bridge formulas; subclasses define `alpha_sigma(t) -> (α_t, σ_t)`."""

    eps: float
    T: float

    def sigmas_alphas(self, t):
        """(σ_t, σ_T, σ̄_t, α_t, α_T, ᾱ_t), each shaped like t."""
        t = jnp.asarray(t, jnp.float32)  # a numpy t would take numpy's pow for σ_t, XLA's for σ_T
        alpha_t, sigma_t = self.alpha_sigma(t)
        alpha_T, sigma_T = self.alpha_sigma(jnp.full_like(t, self.T))
        alpha_bar = alpha_t / (alpha_T + self.eps)
        # σ_T² − σ_t² is 0 at t = T in exact arithmetic but can round to −1 ulp (~1e-7, larger
        # than eps), which made σ̄_T NaN on some CPUs; clamped, it is sqrt(eps) as in the reference.
        sigma_bar = jnp.sqrt(jnp.maximum(sigma_T**2 - sigma_t**2, 0.0) + self.eps)
        return sigma_t, sigma_T, sigma_bar, alpha_t, alpha_T, alpha_bar

    def mean(self, x0, y, t):
        sigma_t, sigma_T, sigma_bar, alpha_t, _, alpha_bar = self.sigmas_alphas(t)
        w_x = alpha_t * sigma_bar**2 / (sigma_T**2 + self.eps)
        w_y = alpha_bar * sigma_t**2 / (sigma_T**2 + self.eps)
        return batch_view(w_x, x0) * x0 + batch_view(w_y, y) * y

    def std(self, t):
        sigma_t, sigma_T, sigma_bar, alpha_t, _, _ = self.sigmas_alphas(t)
        return alpha_t * sigma_bar * sigma_t / (sigma_T + self.eps)

    def marginal_prob(self, x0, y, t):
        return self.mean(x0, y, t), self.std(t)

    def prior_sampling(self, key, y, z=None):
        """The bridge starts deterministically at the noisy observation."""
        del key, z
        return y


@dataclasses.dataclass(frozen=True)
class SBVESDE(_Bridge):
    """Variance-exploding bridge: f = 0, g(t) = sqrt(c)·k^t, σ_t² = c (k^{2t} − 1) / (2 log k)."""

    k: float = 2.6
    c: float = 0.4
    eps: float = 1e-8
    N: int = 50
    T: float = 1.0

    def alpha_sigma(self, t):
        sigma = jnp.sqrt(self.c * (self.k ** (2 * t) - 1.0) / (2 * math.log(self.k)))
        return jnp.ones_like(t), sigma

    def sde(self, x, y, t):
        return jnp.zeros_like(x), math.sqrt(self.c) * self.k**t


@dataclasses.dataclass(frozen=True)
class SBVPSDE(_Bridge):
    """Variance-preserving bridge: f = −½β(t), g = sqrt(β(t)), β(t) = β0 + t(β1 − β0);
    α_t = exp(−½ B(t)), σ_t² = exp(B(t)) − 1 with B(t) = ∫β."""

    beta_0: float = 0.01
    beta_1: float = 20.0
    eps: float = 1e-8
    N: int = 50
    T: float = 1.0

    def _integral_beta(self, t):
        return self.beta_0 * t + 0.5 * (self.beta_1 - self.beta_0) * t**2

    def alpha_sigma(self, t):
        b = self._integral_beta(t)
        return jnp.exp(-0.5 * b), jnp.sqrt(jnp.expm1(b))

    def sde(self, x, y, t):
        beta = self.beta_0 + t * (self.beta_1 - self.beta_0)
        return -0.5 * batch_view(beta, x) * x, jnp.sqrt(beta)
