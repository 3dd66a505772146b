"""Ornstein-Uhlenbeck SDEs of SGMSE: the mean drifts from clean x0 towards noisy y.

All methods are pure `jnp` functions of arrays; `t` is a per-example vector (B,) in [0, T]
and x, y are complex arrays (B, ...). Complex Gaussian noise has independent real and
imaginary parts of variance 1/2 each (see `complex_normal`).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from diffrestore.sde.base import batch_view, complex_normal


@dataclasses.dataclass(frozen=True)
class OUVESDE:
    """OUVE SDE of SGMSE+ (Richter et al., 2023):

        dx = θ (y − x) dt + σ(t) dw,   σ(t) = σmin (σmax/σmin)^t · sqrt(2 log(σmax/σmin)).

    The sqrt(2 log) factor makes the marginal std independent of the log-ratio's scale.
    """

    theta: float = 1.5
    sigma_min: float = 0.05
    sigma_max: float = 0.5
    N: int = 30
    T: float = 1.0

    @property
    def logsig(self) -> float:
        return math.log(self.sigma_max / self.sigma_min)

    def sde(self, x, y, t):
        """Drift (like x) and diffusion g(t) (B,)."""
        drift = self.theta * (y - x)
        sigma = self.sigma_min * (self.sigma_max / self.sigma_min) ** t
        return drift, sigma * math.sqrt(2 * self.logsig)

    def mean(self, x0, y, t):
        decay = batch_view(jnp.exp(-self.theta * t), x0)
        return decay * x0 + (1 - decay) * y

    def std(self, t):
        """Marginal std (B,): closed form of the variance ODE with g(t) above."""
        s, th, ls = self.sigma_min, self.theta, self.logsig
        return jnp.sqrt(s**2 * jnp.exp(-2 * th * t) * (jnp.exp(2 * (th + ls) * t) - 1) * ls / (th + ls))

    def marginal_prob(self, x0, y, t):
        return self.mean(x0, y, t), self.std(t)

    def prior_sampling(self, key, y, z=None):
        """x_T = y + σ_T z; pass `z` to replay a given draw."""
        if z is None:
            z = complex_normal(key, y.shape, y.dtype)
        return y + batch_view(self.std(jnp.full(y.shape[:1], self.T)), y) * z

    def discretize(self, x, y, t, dt):
        """Euler-Maruyama increments f = drift·dt and G = g·sqrt(dt)."""
        drift, diffusion = self.sde(x, y, t)
        return drift * batch_view(dt, x), diffusion * jnp.sqrt(dt)


@dataclasses.dataclass(frozen=True)
class OUVPSDE:
    """OUVP SDE (Richter et al., 2023, Sec. on VP variants):

        dx = ½ β(t) s (y − x) dt + sqrt(β(t)) dw,   β(t) = β0 + t (β1 − β0).

    Marginal: mean = y + exp(−½ s B(t)) (x0 − y), variance = (1 − exp(−s B(t))) / s with
    B(t) = β0 t + ½ (β1 − β0) t². (The historical sgmse code returned the variance from
    `_std`; we return its square root, which is what a std must be.)
    """

    beta_min: float = 0.01
    beta_max: float = 1.0
    stiffness: float = 1.0
    N: int = 30
    T: float = 1.0

    def _beta(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def _integral_beta(self, t):
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def sde(self, x, y, t):
        drift = 0.5 * self.stiffness * batch_view(self._beta(t), x) * (y - x)
        return drift, jnp.sqrt(self._beta(t))

    def mean(self, x0, y, t):
        decay = batch_view(jnp.exp(-0.5 * self.stiffness * self._integral_beta(t)), x0)
        return y + decay * (x0 - y)

    def std(self, t):
        return jnp.sqrt((1 - jnp.exp(-self.stiffness * self._integral_beta(t))) / self.stiffness)

    def marginal_prob(self, x0, y, t):
        return self.mean(x0, y, t), self.std(t)

    def prior_sampling(self, key, y, z=None):
        if z is None:
            z = complex_normal(key, y.shape, y.dtype)
        return y + batch_view(self.std(jnp.full(y.shape[:1], self.T)), y) * z

    def discretize(self, x, y, t, dt):
        drift, diffusion = self.sde(x, y, t)
        return drift * batch_view(dt, x), diffusion * jnp.sqrt(dt)
