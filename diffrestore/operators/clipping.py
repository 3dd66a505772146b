"""Hard clipping, A(x) = clip(x, −c, c), and the clip level that gives a target SDR.

CQT-Diff (`src/utils/declipping.py get_clip_value_from_SDR`, `src/experimenters/exp_declipping.py`,
`src/sampler.py SamplerDeclipping`): the level is

    c = fsolve(|SDR(c) − target|, 0.1),  SDR(c) = 20·log10(‖x‖ / (‖x − clip(x, −c, c)‖ + 1e-7))

on the whole (mono) segment, and the observation is y = clip(seg, −c, c); no data consistency.
Script: SDR 10 dB (conf default 3). SDR(c) increases monotonically from ≈ 0 dB (c → 0) to
20·log10(‖x‖/1e-7) (c ≥ max|x|), so the equation has one root for any target in between;
`clip_level_for_sdr` finds it by bisection, where fsolve (started at 0.1, on an absolute value)
can stop early or wander for signals whose scale is far from 0.1.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def hard_clip(x: jnp.ndarray, level) -> jnp.ndarray:
    """clip(x, −c, c) along the last axis; `level` is a scalar or per example (...,) array (> 0)."""
    x = jnp.asarray(x, jnp.float32)
    level = jnp.asarray(level, jnp.float32)[..., None]
    return jnp.clip(x, -level, level)


def clipping_sdr(x, level) -> np.ndarray:
    """SDR(c) in dB exactly as the reference computes it (numpy float64), per row of x."""
    x = np.asarray(x, np.float64)
    level = np.asarray(level, np.float64)[..., None]
    distortion = np.linalg.norm(x - np.clip(x, -level, level), axis=-1)
    return 20.0 * np.log10(np.linalg.norm(x, axis=-1) / (distortion + 1e-7))


def _check_target(x, sdr_db):
    norm = np.linalg.norm(np.asarray(x, np.float64), axis=-1)
    if np.any(norm == 0):
        raise ValueError("cannot clip a silent signal to a target SDR")
    top = 20.0 * np.log10(norm / 1e-7)
    sdr = np.asarray(sdr_db, np.float64)
    if np.any(sdr <= 0) or np.any(sdr >= top):
        raise ValueError(
            f"target SDR must lie in (0, {float(np.min(top)):.1f}) dB for this signal (clipping at c ≥ max|x| leaves "
            f"only the 1e-7 floor), got {sdr_db}"
        )


def clip_level_for_sdr(x, sdr_db, *, iterations: int = 80) -> np.ndarray:
    """The clip level c with SDR(c) = sdr_db, by bisection on [0, max|x|] (numpy float64).

    Args:
      x: (L,) or (..., L) signal(s): one level per row (the reference takes the whole segment).
      sdr_db: target SDR in dB, scalar or per row.
      iterations: bisection steps (80 halvings of max|x| reach float64 resolution).

    Returns:
      c as float64, shape x.shape[:-1].
    """
    x = np.asarray(x, np.float64)
    _check_target(x, sdr_db)
    target = np.broadcast_to(np.asarray(sdr_db, np.float64), x.shape[:-1])
    low = np.zeros(x.shape[:-1])
    high = np.max(np.abs(x), axis=-1)
    for _ in range(iterations):
        mid = 0.5 * (low + high)
        below = clipping_sdr(x, mid) < target
        low, high = np.where(below, mid, low), np.where(below, high, mid)
    return 0.5 * (low + high)


def clip_level_for_sdr_jnp(x: jnp.ndarray, sdr_db, *, iterations: int = 40) -> jnp.ndarray:
    """`clip_level_for_sdr` in float32 jnp, per row, for levels computed inside jit (traced x, SDR).

    The float32 norms resolve the level to ~1e-6 relative; targets outside the reachable range
    give a level at the bracket's end instead of an error.
    """
    x = jnp.asarray(x, jnp.float32)
    target = jnp.broadcast_to(jnp.asarray(sdr_db, jnp.float32), x.shape[:-1])
    norm = jnp.linalg.norm(x, axis=-1)

    def sdr(level):
        distortion = jnp.linalg.norm(x - jnp.clip(x, -level[..., None], level[..., None]), axis=-1)
        return 20.0 * jnp.log10(norm / (distortion + 1e-7))

    def body(_, bracket):
        low, high = bracket
        mid = 0.5 * (low + high)
        below = sdr(mid) < target
        return jnp.where(below, mid, low), jnp.where(below, high, mid)

    low, high = jax.lax.fori_loop(0, iterations, body, (jnp.zeros_like(norm), jnp.max(jnp.abs(x), axis=-1)))
    return 0.5 * (low + high)
