"""Brownian bridge with exploding diffusion (BBED; Lay et al., "Reducing the prior mismatch of
stochastic differential equations for diffusion-based speech enhancement", Interspeech 2023).

Reference: sp-uhh/sgmse-bbed `sgmse/sdes.py`, class `BBED` (commit e4ec469). Its constructor
argument `theta` is the scale c of the diffusion; we call it `c` (`theta` is accepted by
`get_sde`'s flat hyper-parameter dicts through `from_hparams`).

    dx = (y − x)/(1 − t) dt + √c · k^t dw,       t ∈ [0, 1)   (Tc = 1)
    mean(t) = (1 − t)·x0 + t·y
    var(t)  = c·(1 − t)·[ k^{2t} − 1 + t + 2k²·ln k·(1 − t)·(Ei(2(t − 1) ln k) − Ei(−2 ln k)) ]

The bridge ends exactly at y when t → 1, where the variance formula is 0·∞ (the reference
returns NaN at t = 1); sampling and training therefore stop at `T` = T_sampling (0.999), and
the reverse process may start earlier still (`pc` sampler's `start_time`, 0.5 in the paper).
"""
from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import expi

from diffrestore.sde.base import batch_view, complex_normal


# Gauss–Legendre rule for Ei(b) − Ei(a) = ∫_a^b e^u/u du on intervals that stay clear of u = 0.
_GL_NODES, _GL_WEIGHTS = (np.float32(v) for v in np.polynomial.legendre.leggauss(12))
_QUADRATURE_BELOW = 0.5  # t below which the interval [−2 ln k, 2(t − 1) ln k] is at most half-way to 0


def _integral_exp_over_u(a, width):
    """∫_a^{a + width} e^u/u du (elementwise; the interval < 0 and bounded away from 0), float32.

    The width is an input (not b − a) because for small t the rounding of b = 2(t − 1) ln k
    would dominate it."""
    half = width / 2
    u = (a + half)[..., None] + half[..., None] * _GL_NODES
    return half * jnp.sum(_GL_WEIGHTS * jnp.exp(u) / u, axis=-1)


@dataclasses.dataclass(frozen=True)
class BBEDSDE:
    """BBED with base k and scale c (the reference's `k`, `theta`), sampled from `T` down.

    t is a per-example vector (B,); x, y complex (B, ...). Everything is float32, as the
    reference computes its std (float32 NumPy on float32 t).
    """

    k: float = 2.6
    c: float = 0.51
    T: float = 0.999  # T_sampling: the largest t of training and of the reverse process
    N: int = 30

    @property
    def log_k(self) -> float:
        return math.log(self.k)

    def sde(self, x, y, t):
        """Drift (y − x)/(1 − t), like x, and diffusion √c·k^t (B,)."""
        drift = (y - x) / batch_view(1.0 - t, x)
        return drift, math.sqrt(self.c) * jnp.power(jnp.float32(self.k), t)

    def mean(self, x0, y, t):
        time = batch_view(t, x0)
        return x0 * (1 - time) + y * time

    def std(self, t):
        """Marginal std (B,), the closed form above; NaN at t = 1, like the reference.

        float32 throughout, accurate at both ends: for small t the reference's form subtracts
        nearly equal numbers twice (k^{2t} − 1, and Ei(2(t − 1) ln k) − Ei(−2 ln k)), which
        costs it 1e-4 relative at t = 1e-4 (MANIFEST); here k^{2t} − 1 is expm1 and the Ei
        difference is the integral of e^u/u over [−2 ln k, 2(t − 1) ln k] by Gauss–Legendre
        quadrature (no cancellation): 1e-6 relative from t = 1e-6 to 0.99 (6e-6 at 0.999,
        the float32 rounding of t itself). Near t = 1 the upper limit nears the pole of e^u/u,
        where the plain difference has no cancellation and is used instead.
        """
        t = jnp.asarray(t, jnp.float32)
        log_k = jnp.float32(self.log_k)
        lower, upper = -2 * log_k, 2 * (t - 1) * log_k
        quadrature = _integral_exp_over_u(jnp.broadcast_to(lower, t.shape), 2 * t * log_k)
        ei_diff = jnp.where(t < _QUADRATURE_BELOW, quadrature, expi(upper) - expi(lower))
        h = 2 * jnp.float32(self.k) ** 2 * log_k
        bracket = jnp.expm1(2 * t * log_k) + t + h * (1 - t) * ei_diff
        return jnp.sqrt(bracket * (1 - t) * jnp.float32(self.c))

    def marginal_prob(self, x0, y, t):
        return self.mean(x0, y, t), self.std(t)

    def prior_sampling(self, key, y, z=None):
        """x_T = y + std(T)·z (the reference's prior: the mean at T is not used); pass `z` to
        replay a draw."""
        if z is None:
            z = complex_normal(key, y.shape, y.dtype)
        return y + batch_view(self.std(jnp.full(y.shape[:1], self.T, jnp.float32)), y) * z

    def discretize(self, x, y, t, dt):
        """Euler-Maruyama increments f = drift·dt and G = g·√dt (the reference's base class)."""
        drift, diffusion = self.sde(x, y, t)
        return drift * batch_view(dt, x), diffusion * jnp.sqrt(dt)

    @classmethod
    def from_hparams(cls, **hparams) -> "BBEDSDE":
        """From the reference's hyper-parameter names (k, theta = c, T_sampling, sde_n / N);
        others are ignored."""
        kwargs = {}
        if hparams.get("k") is not None:
            kwargs["k"] = float(hparams["k"])
        for name in ("c", "theta"):
            if hparams.get(name) is not None:
                kwargs["c"] = float(hparams[name])
        for name in ("T", "T_sampling"):
            if hparams.get(name) is not None:
                kwargs["T"] = float(hparams[name])
        for name in ("N", "sde_n"):
            if hparams.get(name) is not None:
                kwargs["N"] = int(hparams[name])
        return cls(**kwargs)
