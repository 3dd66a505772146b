"""Linear time-invariant degradations: FIR low/high-pass filters and IIR (Chebyshev I, biquad) filters.

Design happens once in numpy/scipy (float64, then float32 as the references store it); the
application is a pure `jnp` function of the signal and the coefficient arrays, so it runs under
jit, vmap and grad, and the coefficients may differ per example.

What the references do (CQT-Diff `src/utils/bandwidth_extension.py`, `src/sampler.py SamplerBWE`;
BABE `utils/bandwidth_extension.py`, `testing/blind_bwe_sampler.py`: the same code):

* FIR: `scipy.signal.firwin(numtaps=order, cutoff=fc, width=beta, window="kaiser", fs=sr)` with
  `beta` = 1 (`conf.yaml`), cast to float32 (`torch.FloatTensor`), applied by
  `torch.nn.functional.conv1d(y, B, padding="same")`: a cross-correlation with zero padding
  (K − 1)//2 on the left and the rest on the right,

      A(x)[n] = Σ_k h[k]·x[n + k − (K − 1)//2].

  scipy reads `width` (1 Hz) as the Kaiser transition width and ignores `window`; for 1 Hz the
  Kaiser β is 0, so the filter is a boxcar-windowed sinc. The high-pass (`firwin_hpf`) uses
  numtaps = order − 1 and `pass_zero="highpass"`. After sampling, every experimenter low-passes
  the output with `get_FIR_lowpass(100, 10000, 1, sr)` (`FINAL_LOWPASS`).
* Chebyshev I (`cheby1`): `scipy.signal.cheby1(order, ripple, 2·fc/sr, btype='lowpass',
  output='ba')`, cast to float32 (`torch.Tensor(b)`), applied by
  `torchaudio.functional.lfilter(y, a, b, clamp=False)` (an FIR with b, then the all-pole
  recursion, in float32). Scripts: order 6, ripple 0.05 dB, fc 1 kHz. The float32 cast moves the
  poles of an order-6 low-pass (1 kHz: max |pole| 0.96390 → 0.96355, |H| changes by up to 8e-3;
  500 Hz: 0.27; ≤ 300 Hz the rounded filter is unstable). `cheby1_lowpass_sos` reproduces the
  rounded filter (`reference_float32=True`) or the designed one.
* biquad: the audio-EQ-cookbook low-pass (`design_biquad_lpf(fc, fs, Q)`, float32 torch),
  applied by `torchaudio.functional.biquad`, i.e. `lfilter` with its default `clamp=True`: the
  output is clamped to [−1, 1]. Q = 0.707 in the script. With Q = 1/√2 the cookbook low-pass
  is `scipy.signal.butter(2, fc, fs=fs)` exactly (both prewarp the bilinear transform at fc).
* "cheby1filtfilt", "butter_fir", "cheby1_fir" raise NotImplementedError in both: no reference
  filters zero-phase, so nothing here does either.

IIR filters are cascaded second-order sections (direct form II transposed, scipy's `sosfilt`)
run as a `lax.scan`. Two forms of the same recursion, equal to float32 rounding:
* "blocked" (default): the cascade as one state-space system z' = A z + B x, y = C z + D x
  (state 2S), stepped K = 64 samples at a time: within a block the outputs are a K×K Toeplitz
  matmul of the impulse response plus C·A^j times the block's start state, and the state moves
  on by A^K. A scan of L/K steps of small matmuls: on CPU 65536 samples through a 3-section
  cascade take ~0.6–1 ms per example (forward; the gradient about the same) at any batch size,
  and the short loop suits accelerators.
* "scan": one step per sample, the textbook loop. ~1 ms for one example on CPU, but XLA's CPU
  loop dispatch made a batch of 4–16 take 60–130 ms (and unrolling by 8 was 10× slower).
(A parallel-prefix `lax.associative_scan` of the sections' 2×2 maps gave the same values but
took 6 s to compile at L = 1024 and 28 s at 8192, so it is not offered.)
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

# The experimenters' final output filter: get_FIR_lowpass(100, 10000, 1, sr).
FINAL_LOWPASS = {"numtaps": 100, "cutoff": 10000.0, "width": 1.0}
IIR_METHODS = ("blocked", "scan")
FIR_METHODS = ("fft", "direct")


# ---------------------------------------------------------------------------------------------
# Design (numpy / scipy)
# ---------------------------------------------------------------------------------------------


def _check_cutoff(cutoff: float, sample_rate: float) -> None:
    if not sample_rate > 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if not 0 < cutoff < sample_rate / 2:
        raise ValueError(f"cutoff must lie in (0, Nyquist = {sample_rate / 2:g} Hz), got {cutoff} Hz")


def fir_taps(
    cutoff: float,
    sample_rate: float,
    numtaps: int = 500,
    width: float | None = 1.0,
    window="kaiser",
    highpass: bool = False,
) -> np.ndarray:
    """The references' windowed-sinc FIR: `scipy.signal.firwin` exactly as CQT-Diff calls it.

    Args:
      cutoff: -6 dB frequency in Hz, 0 < cutoff < sample_rate/2.
      sample_rate: Hz.
      numtaps: filter length (≥ 1; odd for a high-pass, as firwin requires).
      width: firwin's `width`, the Kaiser transition width in Hz. CQT-Diff passes its `beta`
        (1) here; scipy then ignores `window` and, for 1 Hz, uses β = 0 (a boxcar window). None
        designs with `window` instead.
      window: firwin's window (only used when width is None).
      highpass: `pass_zero="highpass"` (CQT-Diff's `get_FIR_high_pass`).

    Returns:
      (numtaps,) float32 taps h, applied as A(x)[n] = Σ_k h[k]·x[n + k − (numtaps − 1)//2].
    """
    import scipy.signal

    _check_cutoff(cutoff, sample_rate)
    if int(numtaps) != numtaps or numtaps < 1:
        raise ValueError(f"numtaps must be a positive integer, got {numtaps}")
    if highpass and numtaps % 2 == 0:
        raise ValueError(f"a high-pass FIR needs an odd number of taps (firwin), got {numtaps}")
    if width is not None and not width > 0:
        raise ValueError(f"width must be positive (Hz) or None, got {width}")
    taps = scipy.signal.firwin(
        numtaps=int(numtaps), cutoff=float(cutoff), width=width, window=window, fs=float(sample_rate),
        pass_zero="highpass" if highpass else True,
    )
    return taps.astype(np.float32)


def _check_iir_rate(cutoff, sample_rate, order=None):
    _check_cutoff(cutoff, sample_rate)
    if order is not None and (int(order) != order or order < 1):
        raise ValueError(f"order must be an integer ≥ 1, got {order}")


def cheby1_lowpass_sos(
    cutoff: float, sample_rate: float, order: int = 6, ripple: float = 0.05, *, reference_float32: bool = True
) -> np.ndarray:
    """Chebyshev type I low-pass as second-order sections (S, 6) float32, rows [b0 b1 b2 1 a1 a2].

    The references design `scipy.signal.cheby1(order, ripple, 2·fc/sr, btype='lowpass',
    output='ba')` and filter with float32 copies of b and a. With `reference_float32` the
    sections are those of that rounded (b, a) pair (split into sections in float64), so the
    operator is the filter the reference applies; otherwise they are scipy's `output='sos'`
    design of the same call, the filter as designed. For low cutoffs the rounded filter differs
    a lot from the design or is unstable (see the module docstring); that raises here.

    Args:
      cutoff: passband edge (Hz), where the response leaves the ripple band.
      order: filter order N ≥ 1 (sections: ⌈N/2⌉).
      ripple: passband ripple in dB (> 0).
    """
    import scipy.signal

    _check_iir_rate(cutoff, sample_rate, order)
    if not ripple > 0:
        raise ValueError(f"ripple must be positive (dB), got {ripple}")
    wn = 2.0 * float(cutoff) / float(sample_rate)
    if not reference_float32:
        return scipy.signal.cheby1(int(order), float(ripple), wn, btype="lowpass", output="sos").astype(np.float32)
    b, a = scipy.signal.cheby1(int(order), float(ripple), wn, btype="lowpass", output="ba")
    b = b.astype(np.float32).astype(np.float64)
    a = a.astype(np.float32).astype(np.float64)
    radius = float(np.max(np.abs(np.roots(a)))) if len(a) > 1 else 0.0
    if radius >= 1.0:
        raise ValueError(
            f"the references' float32 (b, a) of cheby1(order={order}, ripple={ripple}, cutoff={cutoff} Hz) is unstable "
            f"(largest pole radius {radius:.4f}); use reference_float32=False for the designed filter"
        )
    return scipy.signal.tf2sos(b, a).astype(np.float32)


def biquad_lowpass_sos(cutoff: float, sample_rate: float, Q: float = 0.707) -> np.ndarray:
    """The audio-EQ-cookbook low-pass biquad of CQT-Diff's `design_biquad_lpf`, as one section (1, 6).

    w0 = 2π·fc/fs, α = sin(w0)/(2Q); b = ((1 − cos w0)/2, 1 − cos w0, (1 − cos w0)/2),
    a = (1 + α, −2 cos w0, 1 − α), normalised by a0 (torchaudio's `biquad` divides by a0). The
    reference computes these in float32; here float64, then float32 (≤ 1 float32 ulp apart).
    """
    _check_iir_rate(cutoff, sample_rate)
    if not Q > 0:
        raise ValueError(f"Q must be positive, got {Q}")
    w0 = 2.0 * math.pi * float(cutoff) / float(sample_rate)
    alpha = math.sin(w0) / 2.0 / float(Q)
    c = math.cos(w0)
    b = np.array([(1 - c) / 2, 1 - c, (1 - c) / 2])
    a = np.array([1 + alpha, -2 * c, 1 - alpha])
    return (np.concatenate([b, a]) / a[0]).astype(np.float32)[None, :]


# ---------------------------------------------------------------------------------------------
# Application (jnp)
# ---------------------------------------------------------------------------------------------


def _fast_fft_length(n: int) -> int:
    import scipy.fft

    return int(scipy.fft.next_fast_len(int(n), real=True))


def fir_correlate(x: jnp.ndarray, taps: jnp.ndarray, *, method: str = "fft") -> jnp.ndarray:
    """torch `conv1d(x, taps, padding="same")` along the last axis: Σ_k h[k]·x[n + k − (K − 1)//2].

    Args:
      x: (..., L) real signal.
      taps: (K,) or (..., K) (per-example taps broadcast against x's leading axes).
      method: "fft" (default): zero-padded real FFTs of a fast length ≥ L + K − 1 (scipy's
        `next_fast_len`), exact to float32 rounding (~3e-7 of max |y| for 500 taps). On CPU, for
        500 taps × 65536 samples, 3–5× faster than "direct": 2.5–3 vs 9–13 ms per example
        forward, 5–7 vs 27 ms for the guidance gradient (O(L log L) against O(L·K) = 33 M
        multiply-adds; XLA's CPU convolution does not use FFTs). "direct":
        `lax.conv_general_dilated`, the sums torch computes (taps shared, (K,)).

    Returns:
      (..., L) float32.
    """
    x = jnp.asarray(x, jnp.float32)
    taps = jnp.asarray(taps, jnp.float32)
    length, k = x.shape[-1], taps.shape[-1]
    left = (k - 1) // 2
    if method == "direct":
        if taps.ndim != 1:
            raise ValueError("method='direct' takes shared (K,) taps; use 'fft' (or vmap) for per-example taps")
        flat = x.reshape((-1, 1, length))
        y = jax.lax.conv_general_dilated(
            flat, taps[None, None, :], (1,), [(left, k - 1 - left)], precision=jax.lax.Precision.HIGHEST
        )
        return y.reshape(x.shape)
    if method != "fft":
        raise ValueError(f"unknown FIR method {method!r}; choose from {FIR_METHODS}")
    # Correlation with h = convolution with the reversed taps; full[t] = Σ_j h[K−1−j]·x[t − j],
    # and A(x)[n] = full[n + K − 1 − left].
    n_fft = _fast_fft_length(length + k - 1)
    spectrum = jnp.fft.rfft(x, n=n_fft) * jnp.fft.rfft(taps[..., ::-1], n=n_fft)
    full = jnp.fft.irfft(spectrum, n=n_fft)
    start = k - 1 - left
    return full[..., start:start + length].astype(jnp.float32)


def _split_sections(sos):
    sos = jnp.asarray(sos, jnp.float32)
    a0 = sos[..., 3]
    b0, b1, b2 = (sos[..., i] / a0 for i in range(3))
    a1, a2 = sos[..., 4] / a0, sos[..., 5] / a0
    return b0, b1, b2, a1, a2


def sosfilt(x: jnp.ndarray, sos: jnp.ndarray, *, method: str = "blocked", block_size: int = 64) -> jnp.ndarray:
    """`scipy.signal.sosfilt(sos, x)` (zero initial state) along the last axis.

    Each section is direct form II transposed:
        y = b0·v + z1;  z1 ← b1·v − a1·y + z2;  z2 ← b2·v − a2·y
    (coefficients divided by a0), and the sections are cascaded within one time step.

    Args:
      x: (..., L) real signal.
      sos: (S, 6) sections [b0 b1 b2 a0 a1 a2], or (..., S, 6) per example (leading axes
        broadcast against x's).
      method: "blocked" (a scan over blocks of `block_size` samples, the default) or "scan" (a
        scan over samples); see the module docstring.
      block_size: K of the blocked form (static).

    Returns:
      (..., L) float32.
    """
    if method == "blocked":
        return _sosfilt_blocked(x, sos, int(block_size))
    x = jnp.asarray(x, jnp.float32)
    b0, b1, b2, a1, a2 = _split_sections(sos)  # each (..., S)
    num_sections = b0.shape[-1]
    lead = jnp.broadcast_shapes(x.shape[:-1], b0.shape[:-1])
    x = jnp.broadcast_to(x, lead + x.shape[-1:])
    coef = [jnp.broadcast_to(c, lead + (num_sections,)) for c in (b0, b1, b2, a1, a2)]
    if method != "scan":
        raise ValueError(f"unknown IIR method {method!r}; choose from {IIR_METHODS}")
    sections = [tuple(c[..., s] for c in coef) for s in range(num_sections)]

    def step(state, xn):
        # state: (z1, z2) per section, each shaped like one time step of x (kept as separate
        # arrays: stacking them per step made a batch of 4 run 5× slower on CPU).
        v, new_state = xn, []
        for (b0s, b1s, b2s, a1s, a2s), (z1, z2) in zip(sections, state):
            y = b0s * v + z1
            new_state.append((b1s * v - a1s * y + z2, b2s * v - a2s * y))
            v = y
        return tuple(new_state), v

    zeros = jnp.zeros(lead, jnp.float32)
    _, y = jax.lax.scan(step, tuple((zeros, zeros) for _ in range(num_sections)), jnp.moveaxis(x, -1, 0))
    return jnp.moveaxis(y, 0, -1)


_HIGHEST = jax.lax.Precision.HIGHEST


def sos_state_space(sos):
    """The cascade of DF2T sections as one system Z(n+1) = A Z(n) + B x_n, y_n = C·Z(n) + D x_n.

    Z stacks the sections' (z1, z2); section s sees v_s = (output of section s − 1) = c_s·Z + d_s x
    and updates z_s ← M_s z_s + u_s v_s with M_s = [[−a1, 1], [−a2, 0]], u_s = (b1 − a1 b0,
    b2 − a2 b0); its output is b0·v_s + z_s1. Built with jnp ops, so the sections may be traced.

    Returns:
      (A (..., N, N), B (..., N), C (..., N), D (...)), N = 2S.
    """
    b0, b1, b2, a1, a2 = _split_sections(sos)
    num_sections = b0.shape[-1]
    n = 2 * num_sections
    lead = b0.shape[:-1]
    a = jnp.zeros(lead + (n, n), jnp.float32)
    b = jnp.zeros(lead + (n,), jnp.float32)
    c = jnp.zeros(lead + (n,), jnp.float32)
    d = jnp.ones(lead, jnp.float32)
    for s in range(num_sections):
        i = 2 * s
        u0 = b1[..., s] - a1[..., s] * b0[..., s]
        u1 = b2[..., s] - a2[..., s] * b0[..., s]
        a = a.at[..., i, i].add(-a1[..., s]).at[..., i, i + 1].add(1.0).at[..., i + 1, i].add(-a2[..., s])
        a = a.at[..., i, :].add(u0[..., None] * c).at[..., i + 1, :].add(u1[..., None] * c)
        b = b.at[..., i].add(u0 * d).at[..., i + 1].add(u1 * d)
        c = (b0[..., s, None] * c).at[..., i].add(1.0)
        d = b0[..., s] * d
    return a, b, c, d


def _sosfilt_blocked(x, sos, block: int):
    """`sosfilt` K samples per scan step (see the module docstring); exact, not truncated."""
    if block < 1:
        raise ValueError(f"block_size must be ≥ 1, got {block}")
    x = jnp.asarray(x, jnp.float32)
    a, b, c, d = sos_state_space(sos)
    n = a.shape[-1]
    lead = jnp.broadcast_shapes(x.shape[:-1], a.shape[:-2])
    length = x.shape[-1]
    num_blocks = -(-length // block)
    x = jnp.broadcast_to(x, lead + (length,))
    x = jnp.pad(x, [(0, 0)] * len(lead) + [(0, num_blocks * block - length)])  # causal: the tail is dropped

    def power(p, _):
        return jnp.matmul(a, p, precision=_HIGHEST), p

    a_k, powers = jax.lax.scan(power, jnp.broadcast_to(jnp.eye(n, dtype=jnp.float32), a.shape), None, length=block)
    powers = jnp.moveaxis(powers, 0, -3)  # A^j, j < K: (..., K, N, N)
    observe = jnp.einsum("...n,...knm->...km", c, powers, precision=_HIGHEST)  # C A^j
    drive = jnp.einsum("...knm,...m->...kn", powers, b, precision=_HIGHEST)  # A^j B
    impulse = jnp.concatenate(
        [d[..., None], jnp.einsum("...kn,...n->...k", drive[..., : block - 1, :], c, precision=_HIGHEST)], axis=-1
    )  # h_0 = D, h_j = C A^(j−1) B
    i = np.arange(block)
    toeplitz = jnp.where(i[:, None] >= i[None, :], impulse[..., np.clip(i[:, None] - i[None, :], 0, block - 1)], 0.0)
    blocks = x.reshape(lead + (num_blocks, block))
    zero_state = jnp.einsum("...bj,...ij->...bi", blocks, toeplitz, precision=_HIGHEST)
    # State a block leaves behind from its own input: Σ_j A^(K−1−j) B x_j.
    pushed = jnp.einsum("...bj,...jn->...bn", blocks, drive[..., ::-1, :], precision=_HIGHEST)

    def carry(z, w):
        return jnp.einsum("...nm,...m->...n", a_k, z, precision=_HIGHEST) + w, z

    _, starts = jax.lax.scan(carry, jnp.zeros(lead + (n,), jnp.float32), jnp.moveaxis(pushed, -2, 0))
    y = zero_state + jnp.einsum("...bn,...kn->...bk", jnp.moveaxis(starts, 0, -2), observe, precision=_HIGHEST)
    return y.reshape(lead + (num_blocks * block,))[..., :length]


def lfilter(x: jnp.ndarray, b: jnp.ndarray, a: jnp.ndarray) -> jnp.ndarray:
    """`scipy.signal.lfilter(b, a, x)` (zero initial state) along the last axis, direct form II transposed.

    One recursion of order N = max(len(a), len(b)) − 1; for N > 2 prefer `sosfilt` (an order-6
    low-pass in one float32 direct form loses ~1e-3 of accuracy).

    Args:
      x: (..., L); b, a: (N_b,), (N_a,) or per example (..., N_b), (..., N_a); a[0] ≠ 0.
    """
    x = jnp.asarray(x, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    a = jnp.asarray(a, jnp.float32)
    order = max(a.shape[-1], b.shape[-1]) - 1
    pad = lambda c: jnp.pad(c, [(0, 0)] * (c.ndim - 1) + [(0, order + 1 - c.shape[-1])])
    a0 = a[..., :1]
    b, a = pad(b) / a0, pad(a) / a0
    lead = jnp.broadcast_shapes(x.shape[:-1], b.shape[:-1], a.shape[:-1])
    x = jnp.broadcast_to(x, lead + x.shape[-1:])
    b = jnp.moveaxis(jnp.broadcast_to(b, lead + (order + 1,)), -1, 0)
    a = jnp.moveaxis(jnp.broadcast_to(a, lead + (order + 1,)), -1, 0)
    if order == 0:
        return b[0] * x

    def step(z, xn):  # z: (N, ...)
        y = b[0] * xn + z[0]
        shifted = jnp.concatenate([z[1:], jnp.zeros_like(z[:1])], axis=0)
        return b[1:] * xn - a[1:] * y + shifted, y

    _, y = jax.lax.scan(step, jnp.zeros((order,) + lead, jnp.float32), jnp.moveaxis(x, -1, 0))
    return jnp.moveaxis(y, 0, -1)


def final_lowpass(x: jnp.ndarray, sample_rate: float = 22050.0) -> jnp.ndarray:
    """The experimenters' last step: `conv1d(x̂, firwin(100, 10 kHz, width=1, fs), "same")`."""
    taps = fir_taps(FINAL_LOWPASS["cutoff"], sample_rate, FINAL_LOWPASS["numtaps"], FINAL_LOWPASS["width"])
    return fir_correlate(x, taps)
