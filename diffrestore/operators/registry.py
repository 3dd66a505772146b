"""One interface over every degradation: `Operator`, and `get_operator(kind, **options)` to build one.

An `Operator` is a frozen record of pure functions and a default parameter pytree:

    op = get_operator("lowpass_fir", cutoff=1000.0)
    y = op.apply(x, params)          # (B, L) -> (B, L_obs); params default to op.params
    x = op.consistency(x, y, params) # the reference's data-consistency replacement, where one exists

`params` is a dict of arrays that may be traced and may carry a leading batch axis (per-example
clip levels, masks, taps, sections); options that set shapes (taps count, rates, mask length)
are static and live in `op.options`. The sampler receives the operator and its parameters as
inputs; nothing here is global state.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from diffrestore.operators import clipping, filters, masks, resampling
from diffrestore.operators.noise import add_noise


@dataclasses.dataclass(frozen=True, eq=False)
class Operator:
    """A degradation A with its default parameters; hashable by identity (usable as a static arg).

    Attributes:
      kind: registry name ("lowpass_fir", "clip", ...).
      options: the static, validated options it was built with.
      params: default parameter pytree (dict of float32 arrays; may be empty).
      linear: whether A is linear (then `transpose` gives Aᵀ).
      apply_fn: (x, params) -> A(x), x (..., L).
      consistency_fn: (x, y, params) -> x with A(x) replaced by y, or None where the references
        have no such step.
      output_length_fn: L -> observation length.
      lift_fn: (y, length, params) -> a full-rate signal for a lower-rate observation (the
        inverse resampling), or None.
    """

    kind: str
    options: Mapping[str, Any]
    params: Any
    linear: bool
    apply_fn: Callable
    consistency_fn: Callable | None = None
    output_length_fn: Callable[[int], int] = lambda length: length
    lift_fn: Callable | None = None

    def _params(self, params):
        return self.params if params is None else params

    def apply(self, x: jnp.ndarray, params=None) -> jnp.ndarray:
        """A(x) for x (..., L) float32; params default to `self.params`."""
        return self.apply_fn(jnp.asarray(x, jnp.float32), self._params(params))

    __call__ = apply

    def output_length(self, length: int) -> int:
        """Length of A(x) for an L-sample x."""
        return int(self.output_length_fn(int(length)))

    @property
    def has_consistency(self) -> bool:
        return self.consistency_fn is not None

    def consistency(self, x: jnp.ndarray, y: jnp.ndarray, params=None) -> jnp.ndarray:
        """Data-consistency replacement of x (a denoised estimate) with the observation y."""
        if self.consistency_fn is None:
            raise ValueError(f"operator {self.kind!r} has no data-consistency step")
        return self.consistency_fn(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), self._params(params))

    def lift(self, y: jnp.ndarray, length: int, params=None) -> jnp.ndarray:
        """A lower-rate observation brought back to `length` samples at the full rate."""
        if self.lift_fn is None:
            raise ValueError(f"operator {self.kind!r} does not change the sample rate; nothing to lift")
        return self.lift_fn(jnp.asarray(y, jnp.float32), int(length), self._params(params))

    def transpose(self, r: jnp.ndarray, length: int, params=None) -> jnp.ndarray:
        """Aᵀ r for a linear A (r shaped like A(x) for x (..., length))."""
        if not self.linear:
            raise ValueError(f"operator {self.kind!r} is not linear; use jax.vjp at a point instead")
        r = jnp.asarray(r, jnp.float32)
        shape = jax.ShapeDtypeStruct(r.shape[:-1] + (int(length),), jnp.float32)
        params = self._params(params)
        (out,) = jax.linear_transpose(lambda x: self.apply_fn(x, params), shape)(r)
        return out

    def observe(self, key, x: jnp.ndarray, params=None, *, snr_db=None, sigma=None) -> jnp.ndarray:
        """y = A(x) + n: the noiseless A(x), plus Gaussian noise when `snr_db` or `sigma` is given."""
        y = self.apply(x, params)
        if snr_db is None and sigma is None:
            return y
        return add_noise(key, y, snr_db=snr_db, sigma=sigma)


# ---------------------------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------------------------


def _replacement(apply_fn):
    # CQT-Diff `Sampler.data_consistency_step`: y + x − A(x) ("valid for linear degradations").
    return lambda x, y, params: y + x - apply_fn(x, params)


def _mask_consistency(x, y, params):
    # s·y + (1 − s)·x: audio-inpainting-diffusion's `proj_convex_set`; with s = m and y = m·y it is
    # CQT-Diff's y + x − m·x.
    s = params.get("consistency_mask", params["mask"])
    return s * y + (1.0 - s) * x


def _fit_length(x, length):
    n = x.shape[-1]
    if n >= length:
        return x[..., :length]
    return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, length - n)])


def _positive(name, value, integer=False):
    if integer and (int(value) != value):
        raise ValueError(f"{name} must be an integer, got {value}")
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return int(value) if integer else float(value)


def _choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose from {choices}")
    return value


# ---------------------------------------------------------------------------------------------
# Builders, one per kind
# ---------------------------------------------------------------------------------------------


def _identity():
    apply_fn = lambda x, params: x
    return Operator("identity", {}, {}, True, apply_fn, consistency_fn=lambda x, y, params: y)


def _fir(kind, cutoff, sample_rate=22050.0, numtaps=None, width=1.0, window="kaiser", method="fft"):
    highpass = kind == "highpass_fir"
    if numtaps is None:
        numtaps = 499 if highpass else 500  # CQT-Diff: firwin(order) / firwin(order − 1), order 500
    _choice("FIR method", method, filters.FIR_METHODS)
    taps = filters.fir_taps(cutoff, sample_rate, numtaps, width, window, highpass=highpass)
    options = dict(cutoff=float(cutoff), sample_rate=float(sample_rate), numtaps=int(numtaps), width=width,
                   window=window, method=method)

    def apply_fn(x, params):
        return filters.fir_correlate(x, params["taps"], method=method)

    return Operator(kind, options, {"taps": jnp.asarray(taps)}, True, apply_fn, _replacement(apply_fn))


def _iir_apply(method, block_size, clamp=False):
    def apply_fn(x, params):
        y = filters.sosfilt(x, params["sos"], method=method, block_size=block_size)
        # torchaudio's biquad calls lfilter with its default clamp=True.
        return jnp.clip(y, -1.0, 1.0) if clamp else y

    return apply_fn


def _cheby1(cutoff, sample_rate=22050.0, order=6, ripple=0.05, reference_float32=True, method="blocked",
            block_size=64):
    _choice("IIR method", method, filters.IIR_METHODS)
    block_size = _positive("block_size", block_size, integer=True)
    sos = filters.cheby1_lowpass_sos(cutoff, sample_rate, order, ripple, reference_float32=reference_float32)
    options = dict(cutoff=float(cutoff), sample_rate=float(sample_rate), order=int(order), ripple=float(ripple),
                   reference_float32=bool(reference_float32), method=method, block_size=block_size)
    apply_fn = _iir_apply(method, block_size)
    return Operator("lowpass_cheby1", options, {"sos": jnp.asarray(sos)}, True, apply_fn, _replacement(apply_fn))


def _biquad(cutoff, sample_rate=22050.0, Q=0.707, clamp=True, method="blocked", block_size=64):
    _choice("IIR method", method, filters.IIR_METHODS)
    block_size = _positive("block_size", block_size, integer=True)
    sos = filters.biquad_lowpass_sos(cutoff, sample_rate, Q)
    options = dict(cutoff=float(cutoff), sample_rate=float(sample_rate), Q=float(Q), clamp=bool(clamp), method=method,
                   block_size=block_size)
    apply_fn = _iir_apply(method, block_size, clamp)
    # With clamp the operator is linear only for |A(x)| ≤ 1; it is treated as the linear filter.
    return Operator("lowpass_biquad", options, {"sos": jnp.asarray(sos)}, not clamp, apply_fn, _replacement(apply_fn))


def _decimate(factor):
    factor = _positive("factor", factor, integer=True)
    if factor < 2:
        raise ValueError(f"decimation factor must be ≥ 2, got {factor}")

    def apply_fn(x, params):
        return resampling.decimate(x, factor)

    def consistency_fn(x, y, params):
        # Subsampling S has S Sᵀ = I, so x + Sᵀ(y − S x) puts y at the kept samples: a projection.
        return x.at[..., 0:x.shape[-1] - 1:factor].set(y)

    return Operator("decimate", {"factor": factor}, {}, True, apply_fn, consistency_fn,
                    output_length_fn=lambda length: len(range(0, length - 1, factor)))


def _resample(target_rate=None, sample_rate=22050.0, orig_freq=None, new_freq=None, lowpass_filter_width=6,
              rolloff=0.99):
    if (target_rate is None) == (orig_freq is None and new_freq is None):
        raise ValueError("give target_rate (with sample_rate), or orig_freq and new_freq")
    if target_rate is not None:
        orig, new = resampling.reference_resample_ratio(float(sample_rate), float(target_rate))
    else:
        orig, new = _positive("orig_freq", orig_freq, True), _positive("new_freq", new_freq, True)
        if new >= orig:
            raise ValueError(f"new_freq must be below orig_freq for an observation at a lower rate, got {orig}:{new}")
    _positive("lowpass_filter_width", lowpass_filter_width, integer=True)
    if not 0 < rolloff <= 1:
        raise ValueError(f"rolloff must lie in (0, 1], got {rolloff}")
    g = math.gcd(orig, new)
    orig, new = orig // g, new // g
    kernel, _ = resampling.sinc_resample_kernel(orig, new, int(lowpass_filter_width), float(rolloff))
    back, _ = resampling.sinc_resample_kernel(new, orig, int(lowpass_filter_width), float(rolloff))
    options = dict(target_rate=target_rate, sample_rate=float(sample_rate), orig_freq=orig, new_freq=new,
                   lowpass_filter_width=int(lowpass_filter_width), rolloff=float(rolloff))

    def apply_fn(x, params):
        return resampling.sinc_resample(x, orig, new, params["kernel"])

    def lift_fn(y, length, params):
        return _fit_length(resampling.sinc_resample(y, new, orig, params["lift_kernel"]), length)

    return Operator("resample", options, {"kernel": jnp.asarray(kernel), "lift_kernel": jnp.asarray(back)}, True,
                    apply_fn, output_length_fn=lambda length: resampling.sinc_resample_length(length, orig, new),
                    lift_fn=lift_fn)


def _resample_poly(up=None, down=None, sample_rate=None, target_rate=None):
    if (up is None or down is None) == (sample_rate is None or target_rate is None):
        raise ValueError("give up and down, or sample_rate and target_rate (integers, Hz)")
    if up is None:
        sample_rate = _positive("sample_rate", sample_rate, integer=True)
        target_rate = _positive("target_rate", target_rate, integer=True)
        up, down = target_rate, sample_rate
    up, down = _positive("up", up, integer=True), _positive("down", down, integer=True)
    if up >= down:
        raise ValueError(f"resample_poly observes at a lower rate: need up < down, got {up}/{down}")
    g = math.gcd(up, down)
    up, down = up // g, down // g
    options = dict(up=up, down=down, sample_rate=sample_rate, target_rate=target_rate)
    params = {"weights": jnp.asarray(resampling.resample_poly_matrix(up, down)),
              "lift_weights": jnp.asarray(resampling.resample_poly_matrix(down, up))}

    def apply_fn(x, params):
        return resampling.resample_poly(x, up, down, params["weights"])

    def lift_fn(y, length, params):
        return _fit_length(resampling.resample_poly(y, down, up, params["lift_weights"]), length)

    return Operator("resample_poly", options, params, True, apply_fn,
                    output_length_fn=lambda length: resampling.resample_poly_length(length, up, down), lift_fn=lift_fn)


def _clip(level):
    level = _positive("clip level", level)

    def apply_fn(x, params):
        return clipping.hard_clip(x, params["level"])

    return Operator("clip", {"level": level}, {"level": jnp.asarray(level, jnp.float32)}, False, apply_fn)


def _mask_operator(kind, mask, options, smooth):
    mask = np.asarray(mask, np.float32)
    params = {"mask": jnp.asarray(mask)}
    if smooth:
        params["consistency_mask"] = jnp.asarray(masks.smooth_mask_edges(mask, smooth))

    def apply_fn(x, params):
        return params["mask"] * x

    return Operator(kind, dict(options, smooth=int(smooth)), params, True, apply_fn, _mask_consistency)


def _gaps(length, gaps=None, sample_rate=22050.0, gap_samples=None, gap_ms=None, smooth=0):
    given = [g is not None for g in (gaps, gap_samples, gap_ms)]
    if sum(given) != 1:
        raise ValueError("give exactly one of gaps (seconds), gap_samples or gap_ms (one centred gap)")
    length = _positive("length", length, integer=True)
    if gaps is not None:
        mask = masks.gap_mask(length, gaps, sample_rate)
    elif gap_samples is not None:
        mask = masks.gap_mask_from_samples(length, gap_samples)
    else:
        mask = masks.gap_mask_from_samples(length, [masks.centered_gap(length, gap_ms, sample_rate)])
    if smooth and (int(smooth) != smooth or smooth < 0):
        raise ValueError(f"smooth must be a non-negative integer (Hann ramp in samples), got {smooth}")
    options = dict(length=length, gaps=gaps, sample_rate=float(sample_rate), gap_samples=gap_samples, gap_ms=gap_ms)
    return _mask_operator("gaps", mask, options, int(smooth))


def _random_mask(length, keep_fraction, seed=0):
    length = _positive("length", length, integer=True)
    mask = np.asarray(masks.random_mask(int(seed), length, keep_fraction))
    options = dict(length=length, keep_fraction=float(keep_fraction), seed=int(seed))
    return _mask_operator("random_mask", mask, options, 0)


def _mask(mask, smooth=0):
    mask = np.asarray(mask, np.float32)
    if mask.ndim < 1 or not np.all((mask == 0) | (mask == 1)):
        raise ValueError("mask must be a (..., L) array of zeros and ones")
    return _mask_operator("mask", mask, {"length": mask.shape[-1]}, int(smooth))


# name -> (builder, required options, optional options)
_REGISTRY = {
    "identity": (_identity, (), ()),
    "lowpass_fir": (lambda **o: _fir("lowpass_fir", **o), ("cutoff",),
                    ("sample_rate", "numtaps", "width", "window", "method")),
    "highpass_fir": (lambda **o: _fir("highpass_fir", **o), ("cutoff",),
                     ("sample_rate", "numtaps", "width", "window", "method")),
    "lowpass_cheby1": (_cheby1, ("cutoff",), ("sample_rate", "order", "ripple", "reference_float32", "method",
                                               "block_size")),
    "lowpass_biquad": (_biquad, ("cutoff",), ("sample_rate", "Q", "clamp", "method", "block_size")),
    "decimate": (_decimate, ("factor",), ()),
    "resample": (_resample, (), ("target_rate", "sample_rate", "orig_freq", "new_freq", "lowpass_filter_width",
                                 "rolloff")),
    "resample_poly": (_resample_poly, (), ("up", "down", "sample_rate", "target_rate")),
    "clip": (_clip, ("level",), ()),
    "gaps": (_gaps, ("length",), ("gaps", "sample_rate", "gap_samples", "gap_ms", "smooth")),
    "random_mask": (_random_mask, ("length", "keep_fraction"), ("seed",)),
    "mask": (_mask, ("mask",), ("smooth",)),
}
OPERATORS = tuple(_REGISTRY)


def get_operator(kind: str, /, **options) -> Operator:
    """Builds an operator by name with validated options (unknown or missing options raise ValueError).

    Kinds and options (defaults are CQT-Diff's scripts and `conf.yaml`):
      identity: —
      lowpass_fir: cutoff (Hz), sample_rate 22050, numtaps 500, width 1.0 (firwin's, Hz), window
        "kaiser" (ignored by firwin when width is set), method "fft" | "direct".
      highpass_fir: as lowpass_fir, numtaps 499 (CQT-Diff's firwin_hpf uses order − 1).
      lowpass_cheby1: cutoff, sample_rate, order 6, ripple 0.05 (dB), reference_float32 True (the
        references' float32 (b, a)), method "blocked" | "scan", block_size 64.
      lowpass_biquad: cutoff, sample_rate, Q 0.707, clamp True (torchaudio's biquad clamps to
        [−1, 1]), method, block_size.
      decimate: factor (≥ 2): x[..., 0:L−1:factor].
      resample: target_rate (with sample_rate; ratio int(100·sr/target):100 as the reference) or
        orig_freq and new_freq; lowpass_filter_width 6, rolloff 0.99 (torchaudio sinc_interp_hann).
      resample_poly: up and down, or sample_rate and target_rate (integers): scipy's resample_poly.
      clip: level (> 0).
      gaps: length (samples) and one of gaps [(start_s, end_s), ...] with sample_rate,
        gap_samples [(start, end), ...], or gap_ms (one centred gap, as the references); smooth
        (Hann ramp in samples for data consistency, 0 = none).
      random_mask: length, keep_fraction in (0, 1], seed 0.
      mask: mask (an explicit 0/1 array (L,) or (B, L)), smooth 0.
    """
    try:
        builder, required, optional = _REGISTRY[kind]
    except KeyError:
        raise ValueError(f"unknown operator {kind!r}; choose from {OPERATORS}") from None
    unknown = set(options) - set(required) - set(optional)
    if unknown:
        raise ValueError(f"operator {kind!r} takes no option(s) {sorted(unknown)}; it takes {sorted(required + optional)}")
    missing = [name for name in required if options.get(name) is None]
    if missing:
        raise ValueError(f"operator {kind!r} needs option(s) {missing}")
    return builder(**options)
