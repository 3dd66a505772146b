"""Degradation operators against the CQT-Diff fixtures, scipy and closed forms.

Every comparison is with an independent computation: the PyTorch reference's arrays, scipy's
filtering / resampling / root finding on the same coefficients, or a formula evaluated directly
(torchaudio's sinc interpolation sum, transposes from dense scipy matrices).
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
from scipy.optimize import fsolve

import diffrestore.operators as ops

SR = 22050


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _signal(shape, seed=0, scale=0.1):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def _scipy_same(x, h):
    """torch conv1d(padding='same'): zero-pad (K−1)//2 left, the rest right, then correlate."""
    k = len(h)
    left = (k - 1) // 2
    pad = np.pad(np.asarray(x, np.float64), [(0, 0)] * (x.ndim - 1) + [(left, k - 1 - left)])
    return np.apply_along_axis(lambda r: scipy.signal.correlate(r, np.asarray(h, np.float64), mode="valid"), -1, pad)


# ------------------------------------------------------------------------------------------ FIR


def test_fir_matches_cqtdiff_bwe_fixture(cqtdiff_fixtures):
    ref = np.load(cqtdiff_fixtures / "bwe_guided_T4.npz")
    op = ops.get_operator("lowpass_fir", cutoff=1000.0, sample_rate=SR, numtaps=500)
    np.testing.assert_array_equal(np.asarray(op.params["taps"]), ref["filter"])
    for method in ("fft", "direct"):
        op = ops.get_operator("lowpass_fir", cutoff=1000.0, method=method)
        assert _rel(op.apply(ref["seg"]), ref["y"]) < 1e-5


def test_final_lowpass_matches_fixtures(cqtdiff_fixtures):
    taps = ops.fir_taps(10000.0, SR, numtaps=100, width=1.0)
    for name in ("bwe_guided_T4", "heun_cqtdiff_T6"):
        ref = np.load(cqtdiff_fixtures / f"{name}.npz")
        np.testing.assert_array_equal(taps, ref["final_filter"].ravel())
        assert _rel(ops.final_lowpass(ref["x_out"]), ref["output_lpf"]) < 1e-5


@pytest.mark.parametrize("numtaps,cutoff,highpass", [(101, 3000.0, False), (64, 5000.0, False), (499, 1000.0, True)])
def test_fir_matches_scipy(numtaps, cutoff, highpass):
    x = _signal((2, 6000))
    kind = "highpass_fir" if highpass else "lowpass_fir"
    op = ops.get_operator(kind, cutoff=cutoff, numtaps=numtaps)
    h = scipy.signal.firwin(numtaps, cutoff, width=1, window="kaiser", fs=SR,
                            pass_zero="highpass" if highpass else True).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(op.params["taps"]), h)
    assert _rel(op.apply(x), _scipy_same(x, h)) < 1e-5


def test_fir_gradient_is_the_transposed_convolution():
    x, r = _signal((2, 4096), 1), _signal((2, 4096), 2)
    op = ops.get_operator("lowpass_fir", cutoff=1000.0)
    h = np.asarray(op.params["taps"], np.float64)
    grad = jax.grad(lambda x: jnp.sum(op.apply(x) * r))(x)
    # A(x)[n] = Σ_k h[k] x[n + k − 249]  ⇒  Aᵀr[m] = (h ∗ r)[m + 249].
    expected = np.stack([np.convolve(row, h)[249:249 + 4096] for row in r.astype(np.float64)])
    assert _rel(grad, expected) < 1e-5
    assert _rel(op.transpose(r, 4096), expected) < 1e-5


# ------------------------------------------------------------------------------------------ IIR


@pytest.mark.parametrize("method", ["blocked", "scan"])
def test_cheby1_matches_scipy_lfilter_and_sosfilt(method):
    x = _signal((2, 8000), 3)  # not a multiple of the 64-sample blocks
    x64 = x.astype(np.float64)
    # The references' filter: float32 copies of cheby1(..., output='ba'), run by lfilter.
    b, a = scipy.signal.cheby1(6, 0.05, 2 * 1000 / SR, btype="lowpass", output="ba")
    reference = scipy.signal.lfilter(b.astype(np.float32).astype(np.float64), a.astype(np.float32).astype(np.float64), x64)
    op = ops.get_operator("lowpass_cheby1", cutoff=1000.0, method=method)
    assert _rel(op.apply(x), reference) < 1e-5
    # The designed filter: scipy's own sections (also an odd order: a first-order section).
    for order, cutoff in ((6, 1000.0), (5, 3000.0)):
        op = ops.get_operator("lowpass_cheby1", cutoff=cutoff, order=order, reference_float32=False, method=method)
        sos = scipy.signal.cheby1(order, 0.05, cutoff, btype="lowpass", output="sos", fs=SR)
        assert _rel(op.apply(x), scipy.signal.sosfilt(sos, x64)) < 1e-5
    # The float32 rounding the references apply is visible (0.8 % at 1 kHz), so the two differ.
    designed = scipy.signal.lfilter(b, a, x64)
    assert _rel(reference, designed) > 1e-3


def test_cheby1_reference_rounding_unstable_at_low_cutoff():
    with pytest.raises(ValueError, match="unstable"):
        ops.get_operator("lowpass_cheby1", cutoff=300.0)
    op = ops.get_operator("lowpass_cheby1", cutoff=300.0, reference_float32=False)
    x = _signal((1, 4096), 4)
    sos = scipy.signal.cheby1(6, 0.05, 300, output="sos", fs=SR)
    assert _rel(op.apply(x), scipy.signal.sosfilt(sos, x.astype(np.float64))) < 1e-4


def test_biquad_is_the_cookbook_lowpass():
    x = _signal((2, 8000), 5)
    x64 = x.astype(np.float64)
    # With Q = 1/√2 the cookbook low-pass is the bilinear Butterworth prewarped at fc.
    op = ops.get_operator("lowpass_biquad", cutoff=1000.0, Q=1 / math.sqrt(2))
    b, a = scipy.signal.butter(2, 1000.0, fs=SR)
    np.testing.assert_allclose(np.asarray(op.params["sos"])[0], np.concatenate([b, a]), rtol=2e-6, atol=1e-9)
    assert _rel(op.apply(x), scipy.signal.lfilter(b, a, x64)) < 1e-5
    # Q = 0.707 (the script) against lfilter on the cookbook formula.
    w0 = 2 * math.pi * 1000 / SR
    alpha = math.sin(w0) / (2 * 0.707)
    b = [(1 - math.cos(w0)) / 2, 1 - math.cos(w0), (1 - math.cos(w0)) / 2]
    a = [1 + alpha, -2 * math.cos(w0), 1 - alpha]
    for method in ("blocked", "scan"):
        op = ops.get_operator("lowpass_biquad", cutoff=1000.0, method=method)
        assert _rel(op.apply(x), scipy.signal.lfilter(b, a, x64)) < 1e-5
    short = x[:, :37]  # shorter than one block
    assert _rel(ops.sosfilt(short, op.params["sos"]), scipy.signal.lfilter(b, a, short.astype(np.float64))) < 1e-5
    # torchaudio's biquad clamps to [−1, 1] (lfilter's default); clamp=False does not.
    loud = 20 * x
    clamped = ops.get_operator("lowpass_biquad", cutoff=1000.0).apply(loud)
    free = ops.get_operator("lowpass_biquad", cutoff=1000.0, clamp=False).apply(loud)
    full = scipy.signal.lfilter(b, a, loud.astype(np.float64))
    assert np.max(np.abs(full)) > 1.5
    assert _rel(free, full) < 1e-5
    np.testing.assert_allclose(np.asarray(clamped), np.clip(full, -1, 1), atol=2e-5)


def test_lfilter_matches_scipy():
    x = _signal((2, 4096), 6)
    for b, a in (scipy.signal.butter(3, 4000.0, fs=SR), (np.array([0.5, 0.25, -0.125]), np.array([1.0])),
                 (np.array([1.0]), np.array([2.0, -0.9]))):
        assert _rel(ops.lfilter(x, b, a), scipy.signal.lfilter(b, a, x.astype(np.float64))) < 1e-5


@pytest.mark.parametrize("method", ["blocked", "scan"])
def test_iir_gradient_is_the_time_reversed_filter(method):
    x, r = _signal((2, 4096), 7), _signal((2, 4096), 8)
    op = ops.get_operator("lowpass_cheby1", cutoff=2000.0, method=method)
    sos = np.asarray(op.params["sos"], np.float64)
    grad = jax.grad(lambda x: jnp.sum(op.apply(x) * r))(x)
    # A causal LTI filter with zero initial state has Aᵀ = flip ∘ A ∘ flip.
    expected = scipy.signal.sosfilt(sos, r[:, ::-1].astype(np.float64))[:, ::-1]
    assert _rel(grad, expected) < 1e-5


# ------------------------------------------------------------------------------ lower sample rates


def test_decimate_is_the_references_slice_and_its_projection():
    x = _signal((3, 21), 9)
    op = ops.get_operator("decimate", factor=5)
    y = op.apply(x)
    np.testing.assert_array_equal(np.asarray(y), x[..., 0:-1:5])  # 4 samples: index 20 is never kept
    assert y.shape[-1] == op.output_length(21) == 4
    z = _signal((3, 21), 10)
    projected = op.consistency(z, y)
    np.testing.assert_array_equal(np.asarray(op.apply(projected)), np.asarray(y))
    keep = np.zeros(21, bool)
    keep[0:20:5] = True
    np.testing.assert_array_equal(np.asarray(projected)[:, ~keep], z[:, ~keep])
    r = _signal((3, 4), 11)
    expected = np.zeros((3, 21), np.float32)
    expected[:, 0:20:5] = r
    np.testing.assert_array_equal(np.asarray(op.transpose(r, 21)), expected)


@pytest.mark.parametrize("up,down,length", [(1, 10, 6000), (2, 3, 1001), (50, 551, 6000), (3, 7, 517)])
def test_resample_poly_matches_scipy(up, down, length):
    x = _signal((2, length), 12)
    op = ops.get_operator("resample_poly", up=up, down=down)
    y = op.apply(x)
    expected = scipy.signal.resample_poly(x.astype(np.float64), up, down, axis=-1)
    assert y.shape == expected.shape and y.shape[-1] == op.output_length(length)
    assert _rel(y, expected) < 1e-5


def test_resample_poly_transpose_matches_scipy_matrix():
    length, up, down = 60, 2, 5
    op = ops.get_operator("resample_poly", up=up, down=down)
    matrix = scipy.signal.resample_poly(np.eye(length), up, down, axis=-1).T  # column j = A e_j
    r = _signal((2, matrix.shape[0]), 13)
    assert _rel(op.transpose(r, length), r.astype(np.float64) @ matrix) < 1e-5
    x = _signal((2, length), 14)
    grad = jax.grad(lambda x: jnp.sum(op.apply(x) * r))(x)
    assert _rel(grad, r.astype(np.float64) @ matrix) < 1e-5


def _torchaudio_sum(x, orig, new, width=6, rolloff=0.99):
    """y[j] = Σ_i x[i]·sinc(π t)·cos²(π t/(2w))·base/orig, t = clamp((i/orig − j/new)·base, ±w)."""
    g = math.gcd(orig, new)
    orig, new = orig // g, new // g
    base = min(orig, new) * rolloff
    n_out = -(-new * x.shape[-1] // orig)
    i = np.arange(x.shape[-1])[None, :]
    t = np.clip((i / orig - np.arange(n_out)[:, None] / new) * base, -width, width)
    weights = np.sinc(t) * np.cos(np.pi * t / width / 2) ** 2 * base / orig
    return np.asarray(x, np.float64) @ weights.T, weights


@pytest.mark.parametrize("orig,new", [(1102, 100), (11, 2), (1, 3)])
def test_sinc_resample_matches_torchaudio_formula(orig, new):
    length = 3000 if new < orig else 600
    x = _signal((2, length), 15)
    expected, matrix = _torchaudio_sum(x, orig, new)
    op = ops.get_operator("resample", orig_freq=orig, new_freq=new) if new < orig else None
    y = ops.sinc_resample(x, orig, new) if op is None else op.apply(x)
    assert _rel(y, expected) < 1e-5
    if op is not None:
        r = _signal(expected.shape, 16)
        assert _rel(op.transpose(r, length), r.astype(np.float64) @ matrix) < 1e-5


def test_resample_uses_the_references_ratio_and_lifts_back():
    op = ops.get_operator("resample", target_rate=2000.0)
    assert (op.options["orig_freq"], op.options["new_freq"]) == (551, 50)  # int(100·11.025) = 1102 : 100
    assert op.output_length(65536) == math.ceil(50 * 65536 / 551)
    # A 300 Hz tone survives the 2 kHz observation and comes back at 22.05 kHz.
    n = np.arange(8192)
    tone = (0.5 * np.sin(2 * np.pi * 300 * n / SR)).astype(np.float32)[None]
    low = op.apply(tone)
    fs_low = SR * 50 / 551
    np.testing.assert_allclose(np.asarray(low)[0, 50:-50], 0.5 * np.sin(2 * np.pi * 300 * np.arange(50, low.shape[-1] - 50) / fs_low),
                               atol=2e-2)
    back = op.lift(low, 8192)
    assert back.shape == (1, 8192)
    np.testing.assert_allclose(np.asarray(back)[0, 500:-500], tone[0, 500:-500], atol=2e-2)
    poly = ops.get_operator("resample_poly", sample_rate=22050, target_rate=2205)
    np.testing.assert_allclose(np.asarray(poly.lift(poly.apply(tone), 8192))[0, 500:-500], tone[0, 500:-500], atol=1e-2)


# ------------------------------------------------------------------------------------- clipping


def _reference_clip_value(seg, sdr):
    # CQT-Diff src/utils/declipping.py get_clip_value_from_SDR, on a float32 numpy signal.
    def find_clip_value(thresh, x, target):
        clipped = np.clip(x, -thresh, thresh)
        value = 20 * np.log10(np.linalg.norm(x) / (np.linalg.norm(x - clipped) + 1e-7))
        return np.abs(value - target)

    return fsolve(find_clip_value, 0.1, args=(seg, sdr))[0]


def test_clip_level_matches_fsolve(cqtdiff_fixtures):
    ref = np.load(cqtdiff_fixtures / "declip_guided_T4.npz")
    seg = ref["seg"][0]
    rng = np.random.default_rng(17)
    signals = [seg, (rng.standard_normal(16384) * 0.3).astype(np.float32),
               (rng.laplace(size=16384) * 0.05).astype(np.float32)]
    targets = (3.0, 10.0, 20.0)
    expected = np.array([[_reference_clip_value(x, sdr) for sdr in targets] for x in signals])
    levels = np.array([[ops.clip_level_for_sdr(x, sdr) for sdr in targets] for x in signals])
    assert np.max(np.abs(levels - expected) / expected) < 1e-6
    # The traced float32 version, all signals and targets in one jitted call.
    traced = jax.jit(jax.vmap(jax.vmap(ops.clip_level_for_sdr_jnp, (None, 0)), (0, None)))(np.stack(signals), jnp.asarray(targets))
    assert np.max(np.abs(np.asarray(traced) - expected) / expected) < 1e-5
    levels = ops.clip_level_for_sdr(np.stack(signals), [10.0, 3.0, 20.0])
    assert levels.shape == (3,) and abs(levels[1] - _reference_clip_value(signals[1], 3.0)) < 1e-6
    assert abs(ops.clip_level_for_sdr(seg, float(ref["SDR"])) - float(ref["clip_value"])) < 1e-7
    op = ops.get_operator("clip", level=float(ref["clip_value"]))
    np.testing.assert_array_equal(np.asarray(op.apply(ref["seg"])), ref["y"])
    with pytest.raises(ValueError, match="target SDR"):
        ops.clip_level_for_sdr(seg, 0.0)


def test_clip_gradient_and_per_example_levels():
    x = _signal((3, 512), 18, scale=0.3)
    r = _signal((3, 512), 19)
    levels = jnp.asarray([0.1, 0.2, 0.5])
    op = ops.get_operator("clip", level=0.2)
    grad = jax.grad(lambda x: jnp.sum(op.apply(x, {"level": levels}) * r))(x)
    np.testing.assert_array_equal(np.asarray(grad), np.where(np.abs(x) < np.asarray(levels)[:, None], r, 0))
    batched = jax.jit(jax.vmap(op.apply))(x, {"level": levels})
    np.testing.assert_array_equal(np.asarray(batched), np.clip(x, -np.asarray(levels)[:, None], np.asarray(levels)[:, None]))


# ---------------------------------------------------------------------------------------- masks


def test_gap_masks_match_the_inpainting_fixture(cqtdiff_fixtures):
    ref = np.load(cqtdiff_fixtures / "inpaint_guided_T4.npz")
    length = ref["mask"].shape[-1]
    start, end = ops.centered_gap(length, int(ref["gap_length_ms"]), SR)
    assert (start, end - start) == (int(ref["gap_start"]), int(ref["gap_len"]))
    op = ops.get_operator("gaps", length=length, gap_ms=int(ref["gap_length_ms"]))
    np.testing.assert_array_equal(np.asarray(op.params["mask"]), ref["mask"][0])
    seconds = ops.get_operator("gaps", length=length, gaps=[(start / SR, end / SR)], sample_rate=SR)
    np.testing.assert_array_equal(np.asarray(seconds.params["mask"]), ref["mask"][0])
    np.testing.assert_array_equal(np.asarray(op.apply(ref["seg"])), ref["y"])
    # CQT-Diff's replacement y + x − m·x keeps y outside the gap and x inside it.
    x = _signal(ref["y"].shape, 20)
    np.testing.assert_allclose(np.asarray(op.consistency(x, ref["y"])), ref["y"] + x - ref["mask"] * x, atol=1e-7)
    # The script's 1496 ms gap does not fit in 16384 samples; a gap past the end is refused.
    with pytest.raises(ValueError, match="does not fit"):
        ops.get_operator("gaps", length=length, gap_ms=1496)
    with pytest.raises(ValueError, match="does not fit"):
        ops.gap_mask(length, [(0.5, 0.8)], SR)
    with pytest.raises(ValueError, match="does not fit"):
        ops.gap_mask(length, [(0.3, 0.2)], SR)


def test_several_gaps_in_seconds_and_traced_positions():
    mask = ops.gap_mask(1000, [(0.01, 0.02), (0.03, 0.035)], sample_rate=10000)
    expected = np.ones(1000, np.float32)
    expected[100:200] = 0
    expected[300:350] = 0
    np.testing.assert_array_equal(mask, expected)
    starts = jnp.asarray([[100, 300], [0, 900]])
    ends = jnp.asarray([[200, 350], [10, 1000]])
    traced = jax.jit(jax.vmap(lambda s, e: ops.interval_mask(s, e, 1000)))(starts, ends)
    np.testing.assert_array_equal(np.asarray(traced[0]), expected)
    np.testing.assert_array_equal(np.asarray(traced[1]), ops.gap_mask_from_samples(1000, [(0, 10), (900, 1000)]))


def test_smoothed_consistency_mask():
    mask = ops.gap_mask_from_samples(200, [(80, 120)])
    smooth = ops.smooth_mask_edges(mask, 10)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(20) / 20)  # torch.hann_window(20), periodic
    np.testing.assert_allclose(smooth[70:80], hann[10:], atol=1e-7)
    np.testing.assert_allclose(smooth[120:130], hann[:10], atol=1e-7)
    assert np.all(smooth[80:120] == 0) and np.all(smooth[:70] == 1) and np.all(smooth[130:] == 1)
    op = ops.get_operator("gaps", length=200, gap_samples=[(80, 120)], smooth=10)
    x, y = _signal((1, 200), 21), _signal((1, 200), 22) * mask
    np.testing.assert_allclose(np.asarray(op.consistency(x, y)), smooth * y + (1 - smooth) * x, atol=1e-7)
    with pytest.raises(ValueError, match="ramp"):
        ops.smooth_mask_edges(ops.gap_mask_from_samples(200, [(5, 20)]), 10)


def test_random_masks():
    mask = np.asarray(ops.random_mask(0, 65536, 0.05))
    assert int((mask == 0).sum()) == int(65536 * (100 - 5) / 100)  # CQT-Diff's count, 5 % kept
    keys = jax.random.split(jax.random.key(1), 3)
    batch = np.asarray(jax.jit(jax.vmap(lambda k: ops.random_mask(k, 1000, 0.25)))(keys))
    assert np.all(batch.sum(-1) == 250) and not np.array_equal(batch[0], batch[1])
    np.testing.assert_array_equal(batch[2], np.asarray(ops.random_mask(keys[2], 1000, 0.25)))
    op = ops.get_operator("random_mask", length=1000, keep_fraction=0.25, seed=3)
    np.testing.assert_array_equal(np.asarray(op.params["mask"]), np.asarray(ops.random_mask(3, 1000, 0.25)))
    x = _signal((2, 1000), 23)
    np.testing.assert_array_equal(np.asarray(jax.jit(jax.vmap(op.apply))(x, {"mask": jnp.asarray(batch[:2])})),
                                  batch[:2] * x)


# ---------------------------------------------------------------------------------------- noise


def test_observation_noise():
    x = _signal((2, 65536), 24, scale=0.2)
    op = ops.get_operator("lowpass_fir", cutoff=3000.0)
    clean = np.asarray(op.apply(x))
    sigma = np.asarray(ops.noise_sigma_for_snr(clean, 20.0))
    np.testing.assert_allclose(sigma, np.sqrt(np.var(clean, axis=-1, ddof=1) / 100.0), rtol=1e-5)
    keys = jax.random.split(jax.random.key(0), 2)
    noisy = np.asarray(op.observe(keys, x, snr_db=20.0))
    measured = 10 * np.log10(np.var(clean, -1, ddof=1) / np.var(noisy - clean, -1, ddof=1))
    np.testing.assert_allclose(measured, 20.0, atol=0.1)  # 65536 draws: the variance is known to ~0.6 % (0.024 dB)
    # Per-example keys: example 1's noise does not depend on example 0.
    alone = np.asarray(op.observe(keys[1:], x[1:], snr_db=20.0))
    np.testing.assert_allclose(alone[0], noisy[1], atol=1e-6)
    fixed = np.asarray(ops.add_noise(jax.random.key(1), clean, sigma=0.01))
    np.testing.assert_allclose(np.std(fixed - clean), 0.01, rtol=0.01)
    np.testing.assert_array_equal(np.asarray(op.observe(None, x)), clean)  # no noise asked: A(x)
    with pytest.raises(ValueError, match="exactly one"):
        ops.add_noise(jax.random.key(0), clean, snr_db=10.0, sigma=0.1)


# ------------------------------------------------------------------------- every operator at once


@functools.lru_cache(maxsize=None)
def _all_operators(length):
    return {
        "identity": ops.get_operator("identity"),
        "lowpass_fir": ops.get_operator("lowpass_fir", cutoff=1000.0),
        "highpass_fir": ops.get_operator("highpass_fir", cutoff=1000.0),
        "lowpass_cheby1": ops.get_operator("lowpass_cheby1", cutoff=1000.0),
        "lowpass_biquad": ops.get_operator("lowpass_biquad", cutoff=1000.0),
        "decimate": ops.get_operator("decimate", factor=10),
        "resample": ops.get_operator("resample", target_rate=2000.0),
        "resample_poly": ops.get_operator("resample_poly", up=1, down=4),
        "clip": ops.get_operator("clip", level=0.05),
        "gaps": ops.get_operator("gaps", length=length, gap_samples=[(500, 900)]),
        "random_mask": ops.get_operator("random_mask", length=length, keep_fraction=0.1),
        "mask": ops.get_operator("mask", mask=ops.gap_mask_from_samples(length, [(0, 100)])),
    }


def test_registry_covers_every_kind():
    assert set(_all_operators(2048)) == set(ops.OPERATORS)


def test_guidance_gradient_is_finite_and_linear_operators_pass_the_dot_test():
    length = 2048
    x, x0 = _signal((2, length), 25), _signal((2, length), 26)
    for kind, op in _all_operators(length).items():

        @jax.jit
        def check(x, x0, r):
            y = op.apply(x0)
            # Reconstruction guidance: the gradient of ‖y − A(x)‖ (per item, not squared).
            grad = jax.grad(lambda x: jnp.sum(jnp.linalg.norm(y - op.apply(x), axis=-1)))(x)
            if not op.linear:
                return y, grad, 0.0, 0.0
            return y, grad, jnp.sum(op.apply(x) * r), jnp.sum(x * op.transpose(r, length))

        r = _signal((2, op.output_length(length)), 27)
        y, grad, lhs, rhs = check(x, x0, r)
        assert y.shape == r.shape, kind
        assert np.all(np.isfinite(np.asarray(grad))) and np.any(np.asarray(grad) != 0), kind
        assert abs(float(lhs) - float(rhs)) <= 1e-5 * max(abs(float(lhs)), 1e-3), kind


def test_consistency_steps():
    length = 2048
    x, seg = _signal((2, length), 28), _signal((2, length), 29)
    operators = _all_operators(length)
    for kind in ("lowpass_fir", "highpass_fir", "lowpass_cheby1", "lowpass_biquad"):
        op = operators[kind]
        y = op.apply(seg)
        # CQT-Diff's replacement for linear degradations: y + x − A(x).
        np.testing.assert_allclose(np.asarray(op.consistency(x, y)), np.asarray(y + x - op.apply(x)), atol=1e-7)
    for kind in ("gaps", "random_mask", "mask", "decimate", "identity"):
        op = operators[kind]
        y = op.apply(seg)
        np.testing.assert_allclose(np.asarray(op.apply(op.consistency(x, y))), np.asarray(y), atol=1e-7)
    for kind in ("clip", "resample", "resample_poly"):
        assert not operators[kind].has_consistency
        with pytest.raises(ValueError, match="no data-consistency"):
            operators[kind].consistency(x, x)


def test_jit_vmap_with_per_example_filters():
    x = _signal((2, 4096), 30)
    cutoffs = (1000.0, 4000.0)
    taps = jnp.stack([ops.fir_taps(c, SR, 500) for c in cutoffs])
    fir = ops.get_operator("lowpass_fir", cutoff=1000.0)
    # Batched parameters directly, and the same through vmap of the single-example map.
    direct = jax.jit(fir.apply)(x, {"taps": taps})
    mapped = jax.jit(jax.vmap(fir.apply))(x, {"taps": taps})
    for i, c in enumerate(cutoffs):
        expected = _scipy_same(x[i], scipy.signal.firwin(500, c, width=1, window="kaiser", fs=SR).astype(np.float32))
        assert _rel(direct[i], expected) < 1e-5 and _rel(mapped[i], expected) < 1e-5
    sections = [ops.cheby1_lowpass_sos(c, SR) for c in cutoffs]
    cheby = ops.get_operator("lowpass_cheby1", cutoff=1000.0)
    batched = {"sos": jnp.stack(sections)}
    for out in (jax.jit(cheby.apply)(x, batched), jax.jit(jax.vmap(cheby.apply))(x, batched)):
        for i in range(2):
            assert _rel(out[i], scipy.signal.sosfilt(sections[i].astype(np.float64), x[i].astype(np.float64))) < 1e-5


# ---------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kind,options,message",
    [
        ("lowpass_fir", dict(cutoff=11025.0), "Nyquist"),
        ("lowpass_fir", dict(cutoff=-5.0), "Nyquist"),
        ("lowpass_fir", dict(cutoff=1000.0, numtaps=0), "numtaps"),
        ("highpass_fir", dict(cutoff=1000.0, numtaps=500), "odd"),
        ("lowpass_fir", dict(cutoff=1000.0, method="fast"), "FIR method"),
        ("lowpass_cheby1", dict(cutoff=1000.0, method="associative"), "IIR method"),
        ("lowpass_biquad", dict(cutoff=1000.0, block_size=0), "block_size"),
        ("lowpass_fir", dict(), "needs option"),
        ("lowpass_fir", dict(cutoff=1000.0, order=6), "takes no option"),
        ("lowpass_cheby1", dict(cutoff=1000.0, order=0), "order"),
        ("lowpass_cheby1", dict(cutoff=1000.0, ripple=0.0), "ripple"),
        ("lowpass_cheby1", dict(cutoff=12000.0, sample_rate=22050.0), "Nyquist"),
        ("lowpass_biquad", dict(cutoff=1000.0, Q=0.0), "Q"),
        ("decimate", dict(factor=1), "factor"),
        ("decimate", dict(factor=2.5), "integer"),
        ("resample", dict(target_rate=30000.0), "target_rate"),
        ("resample", dict(orig_freq=2, new_freq=3), "below"),
        ("resample_poly", dict(up=3, down=2), "lower rate"),
        ("resample_poly", dict(up=1), "up and down"),
        ("clip", dict(level=0.0), "clip level"),
        ("clip", dict(level=-0.1), "clip level"),
        ("gaps", dict(length=100, gap_samples=[(90, 120)]), "start < end"),
        ("gaps", dict(length=100), "exactly one"),
        ("random_mask", dict(length=100, keep_fraction=0.0), "keep_fraction"),
        ("random_mask", dict(length=100, keep_fraction=1.5), "keep_fraction"),
        ("mask", dict(mask=np.full(10, 0.5)), "zeros and ones"),
        ("bandpass", dict(), "unknown operator"),
    ],
)
def test_bad_options_raise(kind, options, message):
    with pytest.raises(ValueError, match=message):
        ops.get_operator(kind, **options)
