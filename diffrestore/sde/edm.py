"""The EDM diffusion process (Karras et al., 2022) as CQT-Diff and BABE (CQTdiff+) use it.

Variance exploding and parameterised by the noise level itself: x_σ = x0 + σ·n with
n ~ N(0, I), and time t ≡ σ. Four pieces that can be swapped independently (paper equations):

* preconditioning (Table 1): D(x, σ) = c_skip·x + c_out·F(c_in·x, c_noise) with
  c_skip = σd²/(σ² + σd²), c_out = σ·σd/√(σ² + σd²), c_in = 1/√(σ² + σd²), c_noise = ¼ ln σ
  (`diffrestore.score.make_edm_denoiser` wraps a network with it);
* the training noise levels and the loss weight λ(σ) = (σ² + σd²)/(σ·σd)² = 1/c_out² (Eq. 8):
  "rho_uniform" is CQT-Diff's `sample_ptrain_alt` / BABE's `sample_ptrain_safe`,
  σ = (σmax^(1/ρt) + u·(σmin^(1/ρt) − σmax^(1/ρt)))^ρt, u ~ U(0, 1); "lognormal" is the paper's
  ln σ ~ N(P_mean, P_std²), clipped to [σmin, σmax] as the references' `sample_ptrain` clips it
  (NVlabs' EDMLoss does not clip);
* the sampling grid (Eq. 5) as the references compute it: t_i = (σmax^(1/ρ) + i/(T−1)·(σmin^(1/ρ)
  − σmax^(1/ρ)))^ρ for i = 0..T−1, t_T = 0 (the references compute i = T, an extrapolation
  past σmin, then overwrite it with 0); BABE's `create_schedule_from_initial_t` replaces σmax by
  a start σ;
* the churn γ_i of the stochastic sampler (Algorithm 2), see `churn_gamma`.

The sampling bounds (σmin, σmax, ρ) and the training ones (train_sigma_min, train_sigma_max,
ρ_train) are separate fields: the references keep one set and override it for sampling (CQT-Diff
scripts: σmin 1e-4, σmax 1, ρ 13 after training with 1e-6, 10, ρt 10; BABE's tester: ρ 8).
Defaults are CQT-Diff's (`conf/conf.yaml`, `scripts/sampling_*.sh`); BABE's `conf/diff_params/
edm.yaml` trains with σd 0.063, train σmin 1e-5.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

TRAIN_DISTRIBUTIONS = ("rho_uniform", "lognormal")
# "cqtdiff" and "babe" compute the same γ (N = T + 1 grid points, S_tmin < t < S_tmax);
# they differ in when the sampler draws ε (see sampling.edm). "karras" is NVlabs' edm_sampler:
# N = T steps, S_tmin ≤ t ≤ S_tmax.
CHURN_CONVENTIONS = ("cqtdiff", "babe", "karras")


def _root(value, rho):
    # value^(1/ρ): in double precision for a Python number, as the references compute it from
    # their float config values; in float32 when the value is traced.
    if isinstance(value, (int, float)):
        return float(value) ** (1.0 / rho)
    return jnp.asarray(value, jnp.float32) ** (1.0 / rho)


@dataclasses.dataclass(frozen=True)
class EDM:
    """EDM parameters; every method is a pure `jnp` function of its array arguments."""

    sigma_min: float = 1e-4
    sigma_max: float = 1.0
    rho: float = 13.0
    sigma_data: float = 0.057
    train_distribution: str = "rho_uniform"
    rho_train: float = 10.0
    train_sigma_min: float = 1e-6
    train_sigma_max: float = 10.0
    p_mean: float = -1.2
    p_std: float = 1.2

    def __post_init__(self):
        if self.train_distribution not in TRAIN_DISTRIBUTIONS:
            raise ValueError(f"unknown train_distribution {self.train_distribution!r}; choose from {TRAIN_DISTRIBUTIONS}")
        if not 0 < self.sigma_min < self.sigma_max or not 0 < self.train_sigma_min < self.train_sigma_max:
            raise ValueError("EDM needs 0 < sigma_min < sigma_max and 0 < train_sigma_min < train_sigma_max")

    # ------------------------------------------------------------------ preconditioning
    def precondition(self, sigma):
        """(c_skip, c_out, c_in, c_noise), each shaped like `sigma` (float32)."""
        sigma = jnp.asarray(sigma, jnp.float32)
        sd2 = self.sigma_data**2
        c_skip = sd2 * (sigma**2 + sd2) ** -1
        c_out = sigma * self.sigma_data * (sd2 + sigma**2) ** -0.5
        c_in = (sd2 + sigma**2) ** -0.5
        c_noise = 0.25 * jnp.log(sigma)
        return c_skip, c_out, c_in, c_noise

    def loss_weight(self, sigma):
        """λ(σ) = (σ² + σd²)/(σ·σd)²: λ·|D − x0|² = |F − F_target|² (Eq. 8)."""
        sigma = jnp.asarray(sigma, jnp.float32)
        return (sigma * self.sigma_data) ** -2 * (self.sigma_data**2 + sigma**2)

    # ------------------------------------------------------------------ sampling grid
    def sigma_at(self, i, num_steps, sigma_max=None):
        """Noise level t_i of a T-step grid; i and T may be traced integers, i an array.

        Args:
          i: step index (0..T); t_T = 0.
          num_steps: T (≥ 2 as in the references, whose grid is NaN for T = 1; here T = 1 gives
            the single level σmax and then 0).
          sigma_max: start level instead of the field (BABE's create_schedule_from_initial_t).
        """
        a = _root(self.sigma_max if sigma_max is None else sigma_max, self.rho)
        b = _root(self.sigma_min, self.rho)
        i = jnp.asarray(i, jnp.int32)
        n = jnp.asarray(num_steps, jnp.int32)
        frac = i / jnp.maximum(n - 1, 1)  # float32, like torch's int64 arange / int
        t = (a + frac * (b - a)) ** self.rho
        return jnp.where(i >= n, 0.0, t).astype(jnp.float32)

    def schedule(self, num_steps: int, sigma_max=None):
        """The whole grid (t_0, ..., t_T), shape (T + 1,), for a static T."""
        return self.sigma_at(jnp.arange(num_steps + 1), num_steps, sigma_max)

    def churn_gamma(self, t, num_steps, S_churn, S_tmin=0.0, S_tmax=50.0, convention="cqtdiff"):
        """Churn γ at noise level(s) t of a T-step run.

        "cqtdiff"/"babe" (`get_gamma` of both): γ = min(S_churn/N, √2 − 1) with N = len(t) = T + 1
        where S_tmin < t < S_tmax, else 0 (so γ_T = 0). "karras" (NVlabs `edm_sampler`):
        min(S_churn/T, √2 − 1) where S_tmin ≤ t ≤ S_tmax.
        """
        if convention not in CHURN_CONVENTIONS:
            raise ValueError(f"unknown churn convention {convention!r}; choose from {CHURN_CONVENTIONS}")
        t = jnp.asarray(t, jnp.float32)
        n = jnp.asarray(num_steps, jnp.int32)
        if convention == "karras":
            inside = (t >= S_tmin) & (t <= S_tmax)
        else:
            n = n + 1
            inside = (t > S_tmin) & (t < S_tmax)
        value = jnp.minimum(S_churn / n.astype(jnp.float32), math.sqrt(2.0) - 1.0)
        return jnp.where(inside, value, 0.0).astype(jnp.float32)

    # ------------------------------------------------------------------ training noise levels
    def train_sigma_from_uniform(self, u):
        """ρ-warped uniform: u = 0 → train σmax, u = 1 → train σmin."""
        u = jnp.asarray(u, jnp.float32)
        a = self.train_sigma_max ** (1.0 / self.rho_train)
        b = self.train_sigma_min ** (1.0 / self.rho_train)
        return (a + u * (b - a)) ** self.rho_train

    def train_sigma_from_normal(self, z):
        """Log-normal exp(P_mean + P_std·z), clipped to [train σmin, train σmax]."""
        z = jnp.asarray(z, jnp.float32)
        return jnp.clip(jnp.exp(z * self.p_std + self.p_mean), self.train_sigma_min, self.train_sigma_max)

    def sample_train_sigma(self, key: jax.Array, shape):
        """Training noise levels drawn from `train_distribution` (float32)."""
        if self.train_distribution == "lognormal":
            return self.train_sigma_from_normal(jax.random.normal(key, shape, jnp.float32))
        return self.train_sigma_from_uniform(jax.random.uniform(key, shape, jnp.float32))
