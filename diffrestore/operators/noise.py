"""Observation noise: y = A(x) + n, n ~ N(0, σ²), with σ given or set by an SNR.

The operator A stays noiseless (what guidance differentiates); the noise is drawn once, when
the observation is made. CQT-Diff (`exp_bandwidth_extension.py`, `noise_in_observations_SNR`) and
BABE (`blind_bwe_tester.py`, `SNR_observations`) both set σ = √(var(y)/10^(SNR/10)) with torch's
unbiased variance of the noiseless observation over time, then add σ·randn.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def noise_sigma_for_snr(y: jnp.ndarray, snr_db) -> jnp.ndarray:
    """σ = √(var(y)/10^(SNR/10)) per row (unbiased variance over the last axis), shape y.shape[:-1]."""
    y = jnp.asarray(y, jnp.float32)
    return jnp.sqrt(jnp.var(y, axis=-1, ddof=1) / 10.0 ** (jnp.asarray(snr_db, jnp.float32) / 10.0))


def _is_key_batch(key, batch_shape) -> bool:
    return jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) and key.ndim > 0 and key.shape == batch_shape


def add_noise(key, y: jnp.ndarray, *, snr_db=None, sigma=None) -> jnp.ndarray:
    """y + σ·ε, ε ~ N(0, 1) (float32); exactly one of `snr_db` or `sigma` (scalars or per row).

    Args:
      key: one PRNG key for the whole array, or typed keys shaped y.shape[:-1] (one per example,
        so that an example's noise does not depend on the rest of the batch).
      y: (..., L) noiseless observation A(x).
    """
    if (snr_db is None) == (sigma is None):
        raise ValueError("give exactly one of snr_db or sigma")
    y = jnp.asarray(y, jnp.float32)
    if sigma is None:
        sigma = noise_sigma_for_snr(y, snr_db)
    sigma = jnp.asarray(sigma, jnp.float32)
    if _is_key_batch(key, y.shape[:-1]):
        flat = key.reshape(-1)
        eps = jax.vmap(lambda k: jax.random.normal(k, y.shape[-1:], jnp.float32))(flat).reshape(y.shape)
    else:
        eps = jax.random.normal(key, y.shape, jnp.float32)
    return y + sigma[..., None] * eps
