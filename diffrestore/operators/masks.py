"""Sample masks: gaps for inpainting and random subsets for compressive sensing; A(x) = m·x.

What the references do:
* CQT-Diff inpainting (`src/experimenters/exp_inpainting.py`): gap = int(gap_ms·sr/1000)
  samples starting at L//2 − gap//2 (or at int(start_ms·sr/1001) — sic, 1001); script 1496 ms at
  L = 65536. Data consistency (`Sampler.data_consistency_step`): x̂ ← y + x̂ − m·x̂.
* audio-inpainting-diffusion (`testing/tester_inpainting.py prepare_mask`): the same centred gap
  (start int(start_ms·sr/1000) when given), or `num_gaps` gaps of int(ms·sr/1000) samples at
  random starts; its data consistency (`edm_sampler_inpainting.py`) replaces with a mask whose
  edges are Hann ramps of `hann_size` (50) samples: x̂ ← s·y + (1 − s)·x̂ (`smooth_mask_edges`).
* CQT-Diff compressive sensing (`src/experimenters/exp_comp_sens.py`): zeros at
  int(L·(100 − percentage)/100) indices drawn without replacement (`np.random.choice`, unseeded);
  script 5 % kept; no data consistency.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def _check_length(length):
    if int(length) != length or length < 1:
        raise ValueError(f"length must be a positive number of samples, got {length}")


def gap_mask_from_samples(length: int, gaps: Sequence[tuple[int, int]]) -> np.ndarray:
    """(L,) float32 mask: 1 everywhere except the half-open sample intervals [start, end) of `gaps`."""
    _check_length(length)
    mask = np.ones(int(length), np.float32)
    for gap in gaps:
        if len(gap) != 2:
            raise ValueError(f"a gap is a (start, end) pair, got {gap!r}")
        start, end = int(gap[0]), int(gap[1])
        if not 0 <= start < end <= length:
            raise ValueError(
                f"gap [{start}, {end}) (samples) must satisfy 0 <= start < end <= {length}, the signal's length"
            )
        mask[start:end] = 0.0
    return mask


def gap_mask(length: int, gaps: Sequence[tuple[float, float]], sample_rate: float) -> np.ndarray:
    """Mask with gaps given in seconds: [start_s, end_s) → samples [round(start_s·sr), round(end_s·sr)).

    Raises ValueError for a gap that is empty or reaches outside the L-sample signal.
    """
    if not sample_rate > 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    intervals = []
    for gap in gaps:
        if len(gap) != 2:
            raise ValueError(f"a gap is a (start_s, end_s) pair, got {gap!r}")
        start_s, end_s = float(gap[0]), float(gap[1])
        start, end = int(round(start_s * sample_rate)), int(round(end_s * sample_rate))
        if not 0 <= start < end <= length:
            raise ValueError(
                f"gap ({start_s:g} s, {end_s:g} s) = samples [{start}, {end}) does not fit in the signal of {length} "
                f"samples ({length / sample_rate:g} s at {sample_rate:g} Hz)"
            )
        intervals.append((start, end))
    return gap_mask_from_samples(length, intervals)


def centered_gap(length: int, gap_ms: float, sample_rate: float) -> tuple[int, int]:
    """(start, end) of the references' centred gap: int(gap_ms·sr/1000) samples from L//2 − gap//2."""
    gap = int(gap_ms * sample_rate / 1000)
    start = int(length // 2 - gap // 2)
    if gap < 1 or start < 0 or start + gap > length:
        raise ValueError(f"a gap of {gap_ms} ms ({gap} samples at {sample_rate:g} Hz) does not fit in {length} samples")
    return start, start + gap


def interval_mask(starts, ends, length: int) -> jnp.ndarray:
    """jnp mask with traced gap positions: 1 − any_g [start_g ≤ n < end_g].

    Args:
      starts, ends: (..., G) integer arrays (per example and gap); empty gaps (end ≤ start) are
        no-ops, positions are not checked (use `gap_mask` for validated ones).
      length: L (static).

    Returns:
      (..., L) float32.
    """
    n = jnp.arange(length)
    starts = jnp.asarray(starts)[..., None]
    ends = jnp.asarray(ends)[..., None]
    inside = jnp.any((n >= starts) & (n < ends), axis=-2)
    return jnp.where(inside, 0.0, 1.0).astype(jnp.float32)


def num_dropped(length: int, keep_fraction: float) -> int:
    """Samples a random mask zeroes: int(L·(1 − keep)), as CQT-Diff's int(L·(100 − pct)/100)."""
    if not 0 < keep_fraction <= 1:
        raise ValueError(f"keep_fraction must lie in (0, 1], got {keep_fraction}")
    # round() first so that e.g. 1 − 0.05 does not land a hair below an integer product.
    return int(math.floor(round(length * (1.0 - keep_fraction), 9)))


def random_mask(key, length: int, keep_fraction: float) -> jnp.ndarray:
    """(L,) mask keeping all but int(L·(1 − keep)) samples, chosen uniformly without replacement.

    Args:
      key: a PRNG key or an int seed (vmap over keys for per-example masks).
      length: L.
      keep_fraction: kept share in (0, 1] (the reference's percentage/100; script 0.05).
    """
    _check_length(length)
    drop = num_dropped(length, keep_fraction)
    if isinstance(key, int):
        key = jax.random.key(key)
    dropped = jax.random.permutation(key, length)[:drop]
    return jnp.ones((length,), jnp.float32).at[dropped].set(0.0)


def smooth_mask_edges(mask, size: int) -> np.ndarray:
    """audio-inpainting-diffusion's `prepare_smooth_mask`: Hann ramps of `size` samples outside each gap.

    Where the mask falls 1 → 0 at index i, samples [i − size, i) become hann[size:] (periodic
    Hann of 2·size points, descending); where it rises 0 → 1 at i, samples [i, i + size) become
    hann[:size] (ascending), written in order of i over the original mask. The gaps stay 0.

    Args:
      mask: (L,) or (B, L) binary mask (rows smoothed independently).
      size: ramp length ≥ 1; every ramp must fit inside the signal (the reference fails otherwise).
    """
    mask = np.asarray(mask, np.float32)
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer, got {size}")
    size = int(size)
    n = np.arange(2 * size)
    hann = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / (2 * size))).astype(np.float32)  # torch.hann_window
    rows = mask.reshape(-1, mask.shape[-1])
    out = rows.copy()
    for row, new in zip(rows, out):
        prev = np.concatenate([[1.0], row[:-1]])
        for i in np.flatnonzero(row != prev):
            if row[i] == 0:
                if i - size < 0:
                    raise ValueError(f"a gap starts at sample {i}, closer to the start than the {size}-sample ramp")
                new[i - size:i] = hann[size:]
            else:
                if i + size > row.shape[-1]:
                    raise ValueError(f"a gap ends at sample {i}, closer to the end than the {size}-sample ramp")
                new[i:i + size] = hann[:size]
    return out.reshape(mask.shape)
