"""Degradation operators for zero-shot restoration: y = A(x) (+ noise), A a pure `jnp` function.

Posterior samplers differentiate ‖y − A(D(x))‖ through A (`jax.vjp`) and, where the references
do, replace A(D) by y (data consistency). Every operator here works on (..., L) float32 signals
under jit, vmap and grad; its parameters (taps, sections, clip levels, masks) are explicit array
inputs that may differ per example, and the options that set shapes are static.

* `filters`: FIR low/high-pass (firwin + torch-"same" correlation by FFT), Chebyshev I and
  biquad low-passes (second-order sections, `lax.scan`), the experimenters' final low-pass;
* `resampling`: naive decimation, scipy's resample_poly, torchaudio's sinc resampling;
* `clipping`: hard clipping and the clip level of a target SDR;
* `masks`: gaps (seconds or samples), random sample subsets, smoothed consistency masks;
* `noise`: y = A(x) + σ·ε at a σ or an SNR;
* `registry`: the `Operator` record and `get_operator(kind, **options)` over all of them.
"""
from diffrestore.operators.clipping import clip_level_for_sdr, clip_level_for_sdr_jnp, clipping_sdr, hard_clip
from diffrestore.operators.filters import (
    FINAL_LOWPASS,
    biquad_lowpass_sos,
    cheby1_lowpass_sos,
    final_lowpass,
    fir_correlate,
    fir_taps,
    lfilter,
    sosfilt,
)
from diffrestore.operators.masks import (
    centered_gap,
    gap_mask,
    gap_mask_from_samples,
    interval_mask,
    random_mask,
    smooth_mask_edges,
)
from diffrestore.operators.noise import add_noise, noise_sigma_for_snr
from diffrestore.operators.registry import OPERATORS, Operator, get_operator
from diffrestore.operators.resampling import decimate, resample_poly, sinc_resample

__all__ = [
    "Operator", "OPERATORS", "get_operator",
    "fir_taps", "fir_correlate", "final_lowpass", "FINAL_LOWPASS", "cheby1_lowpass_sos", "biquad_lowpass_sos",
    "sosfilt", "lfilter",
    "decimate", "resample_poly", "sinc_resample",
    "hard_clip", "clipping_sdr", "clip_level_for_sdr", "clip_level_for_sdr_jnp",
    "gap_mask", "gap_mask_from_samples", "centered_gap", "interval_mask", "random_mask", "smooth_mask_edges",
    "add_noise", "noise_sigma_for_snr",
]
