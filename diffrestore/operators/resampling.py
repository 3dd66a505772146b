"""Observations at a lower sample rate: naive decimation, polyphase resampling, torchaudio's sinc resampling.

Each operator maps a full-rate (..., L) signal to its (..., L_low) observation. All three are
linear maps written as one frame-times-matrix product,

    out[..., q·P + r] = Σ_f xpad[..., q·S + f]·W[f, r],      q = 0, 1, …

(S the input stride, P the output phases, xpad the zero-padded input), computed as ⌈F/S⌉
matmuls of shifted reshapes of xpad (no gather), so the forward map and its transpose (what
guidance differentiates through) are a few slices and small matmuls: on CPU, 65536 samples to
2 kHz (torchaudio 551:50) take ~1 ms per example, to 1/10 of the rate (resample_poly) ~3.5 ms.

What the references do (CQT-Diff `src/sampler.py SamplerBWE`, `src/utils/bandwidth_extension.py`;
BABE `testing/blind_bwe_sampler.py`: the same):
* "decimate": `x[..., 0:-1:factor]`, plain subsampling without an anti-aliasing filter, and the
  last sample never taken (so for L − 1 divisible by the factor one sample fewer than
  `x[..., ::factor]`). Script: factor 10.
* "resample": `torchaudio.functional.resample(x, orig_freq=int(100·factor), new_freq=100)` with
  factor = sr / fs_low (script: fs_low 2000 Hz → 1102:100, i.e. 551:50, an output rate of
  2000.9 Hz), torchaudio's `sinc_interp_hann` (lowpass_filter_width 6, rolloff 0.99).
* scipy's `resample_poly` (Kaiser β = 5 anti-aliasing FIR, the project's data resampler in
  `audio/resample.py`) is not used by the references; it is here as a standard band-limiting
  observation model.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def _polyphase(x: jnp.ndarray, weights, stride: int, pad_left: int, count: int) -> jnp.ndarray:
    """out[..., q·P + r] = Σ_f xpad[..., q·stride + f]·weights[f, r] for q < count.

    xpad = x with `pad_left` zeros in front and zeros after it, viewed as rows of `stride`
    samples; frame q spans rows q .. q + c − 1 (c = ⌈F/stride⌉), so the sum is c matmuls of
    shifted row blocks with stride-row slices of the weights (no gather, no (count, F) copy).
    """
    x = jnp.asarray(x, jnp.float32)
    weights = jnp.asarray(weights, jnp.float32)
    frame, phases = weights.shape
    blocks = -(-frame // stride)
    weights = jnp.pad(weights, [(0, blocks * stride - frame), (0, 0)])
    rows = count + blocks - 1
    total = rows * stride
    right = total - pad_left - x.shape[-1]
    widths = [(0, 0)] * (x.ndim - 1)
    if right >= 0:
        xpad = jnp.pad(x, widths + [(pad_left, right)])
    else:
        xpad = jnp.pad(x, widths + [(pad_left, 0)])[..., :total]
    grid = xpad.reshape(x.shape[:-1] + (rows, stride))
    out = None
    for s in range(blocks):
        # HIGHEST: accelerators would otherwise round float32 matmul inputs (TF32 / bf16 passes).
        part = jnp.matmul(grid[..., s:s + count, :], weights[s * stride:(s + 1) * stride],
                          precision=jax.lax.Precision.HIGHEST)
        out = part if out is None else out + part
    return out.reshape(x.shape[:-1] + (count * phases,))


# ---------------------------------------------------------------------------------------------
# Naive decimation (the references' "decimate")
# ---------------------------------------------------------------------------------------------


def decimate_indices(length: int, factor: int) -> np.ndarray:
    """Sample indices the references keep: range(0, L − 1, factor)."""
    return np.arange(0, length - 1, int(factor))


def decimate(x: jnp.ndarray, factor: int) -> jnp.ndarray:
    """CQT-Diff's `x[..., 0:-1:factor]` (no anti-aliasing), (..., L) → (..., ⌈(L − 1)/factor⌉)."""
    x = jnp.asarray(x, jnp.float32)
    return x[..., 0:x.shape[-1] - 1:int(factor)]


# ---------------------------------------------------------------------------------------------
# scipy.signal.resample_poly
# ---------------------------------------------------------------------------------------------


def _reduce(up: int, down: int) -> tuple[int, int]:
    if int(up) != up or int(down) != down or up < 1 or down < 1:
        raise ValueError(f"up and down must be positive integers, got {up}, {down}")
    g = math.gcd(int(up), int(down))
    return int(up) // g, int(down) // g


def resample_poly_length(length: int, up: int, down: int) -> int:
    """Output length of `resample_poly`: ⌈L·up/down⌉."""
    up, down = _reduce(up, down)
    return -(-length * up // down)


def resample_poly_taps(up: int, down: int, window=("kaiser", 5.0)) -> np.ndarray:
    """The FIR that `scipy.signal.resample_poly` designs: firwin(2·10·max + 1, 1/max, window)·up."""
    import scipy.signal

    up, down = _reduce(up, down)
    max_rate = max(up, down)
    half_len = 10 * max_rate
    return scipy.signal.firwin(2 * half_len + 1, 1.0 / max_rate, window=window) * up


def _poly_layout(up: int, down: int) -> tuple[int, int]:
    """(i_min, i_max): the input offsets j − q·down that some output phase of block q reads."""
    half = 10 * max(up, down)
    return -(half // up), ((up - 1) * down + half) // up


def resample_poly_matrix(up: int, down: int, taps: np.ndarray | None = None) -> np.ndarray:
    """Polyphase weights of resample_poly: y[n] = Σ_j x[j]·g(n·down − j·up), g(t) = taps[t + half].

    (scipy's pre-padding of the taps and removal of the first outputs amount to centring the
    symmetric filter: output n sits at input position n·down/up.) With n = q·up + r and
    j = q·down + i: weights[i − i_min, r] = g(r·down − i·up).

    Returns:
      (F, up) float32 weights, F = i_max − i_min + 1.
    """
    up, down = _reduce(up, down)
    if taps is None:
        taps = resample_poly_taps(up, down)
    taps = np.asarray(taps, np.float64)
    half = 10 * max(up, down)
    if len(taps) != 2 * half + 1:
        raise ValueError(f"resample_poly's filter for {up}/{down} has {2 * half + 1} taps, got {len(taps)}")
    i_min, i_max = _poly_layout(up, down)
    i = np.arange(i_min, i_max + 1)[:, None]
    t = np.arange(up)[None, :] * down - i * up
    weights = np.where(np.abs(t) <= half, taps[np.clip(t + half, 0, len(taps) - 1)], 0.0)
    return weights.astype(np.float32)


def resample_poly(x: jnp.ndarray, up: int, down: int, weights=None) -> jnp.ndarray:
    """`scipy.signal.resample_poly(x, up, down, axis=-1)` (padtype 'constant') in jnp.

    Args:
      x: (..., L).
      up, down: integer rate ratio (reduced by their gcd).
      weights: `resample_poly_matrix(up, down)` (may be a traced array); computed if None.

    Returns:
      (..., ⌈L·up/down⌉) float32.
    """
    up, down = _reduce(up, down)
    x = jnp.asarray(x, jnp.float32)
    if up == down == 1:
        return x
    if weights is None:
        weights = resample_poly_matrix(up, down)
    i_min, _ = _poly_layout(up, down)
    n_out = resample_poly_length(x.shape[-1], up, down)
    count = -(-n_out // up)
    return _polyphase(x, weights, down, -i_min, count)[..., :n_out]


# ---------------------------------------------------------------------------------------------
# torchaudio.functional.resample (sinc_interp_hann)
# ---------------------------------------------------------------------------------------------


def reference_resample_ratio(sample_rate: float, target_rate: float) -> tuple[int, int]:
    """(orig_freq, new_freq) as CQT-Diff's `apply_resample` passes them: (int(100·sr/fs_low), 100)."""
    if not 0 < target_rate < sample_rate:
        raise ValueError(f"target_rate must lie in (0, sample_rate = {sample_rate}), got {target_rate}")
    factor = sample_rate / target_rate
    return int(100 * factor), 100


def sinc_resample_kernel(orig: int, new: int, lowpass_filter_width: int = 6, rolloff: float = 0.99):
    """torchaudio's `_get_sinc_resample_kernel` (sinc_interp_hann), orig:new reduced by their gcd.

    Returns:
      (kernel (new, 2·width + orig) float32, width).
    """
    from diffrestore.models.cqt_blocks import sinc_resample_kernel as _kernel

    return _kernel(orig, new, lowpass_filter_width, rolloff)


def sinc_resample_length(length: int, orig: int, new: int) -> int:
    """torchaudio's output length ⌈new·L/orig⌉ (ratio reduced)."""
    g = math.gcd(int(orig), int(new))
    return -(-(int(new) // g) * length // (int(orig) // g))


def sinc_resample(x: jnp.ndarray, orig: int, new: int, kernel: np.ndarray | None = None, *,
                  lowpass_filter_width: int = 6, rolloff: float = 0.99) -> jnp.ndarray:
    """`torchaudio.functional.resample(x, orig, new)` along the last axis (sinc_interp_hann).

    torchaudio zero-pads (width, width + orig), correlates each of the `new` phase kernels with
    stride `orig`, interleaves the phases and keeps ⌈new·L/orig⌉ samples.
    """
    if int(orig) != orig or int(new) != new or orig < 1 or new < 1:
        raise ValueError(f"orig and new must be positive integers, got {orig}, {new}")
    g = math.gcd(int(orig), int(new))
    orig, new = int(orig) // g, int(new) // g
    x = jnp.asarray(x, jnp.float32)
    if orig == new:
        return x
    computed, width = sinc_resample_kernel(orig, new, lowpass_filter_width, rolloff)
    kernel = computed if kernel is None else kernel
    n_out = sinc_resample_length(x.shape[-1], orig, new)
    count = -(-n_out // new)
    return _polyphase(x, jnp.asarray(kernel, jnp.float32).T, orig, width, count)[..., :n_out]
