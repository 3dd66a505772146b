"""Invertible constant-Q transforms (non-stationary Gabor transforms) of CQT-Diff and CQTdiff+ in `jnp`.

Both networks see audio through a painless non-stationary Gabor transform (NSGT) built in the
frequency domain (Velasco et al. 2011; Holighaus et al. 2013). Window i is a real function
G_i(m) of the FFT-bin offset m around its centre bin p_i, of length Lg_i; coefficient row i is

    c_i[n] = ifft_T( X[p_i + m] · G_i(m) placed at slot m mod T )[n],      m ∈ [-(Lg_i//2), ⌈Lg_i/2⌉),

with X = fft(x), T ≥ Lg_i the row's number of frames. The inverse multiplies fft_T(c_i) by the
dual window T·G_i(m)/D[p_i + m], D[k] = Σ_j T_j·G_j(k − p_j)² the diagonal of the frame
operator (the sum runs over all windows, the mirrored negative-frequency ones included),
overlap-adds the slots back onto the one-sided spectrum and takes the irfft. The design (window
lengths, centres, duals) is numpy float64, done once per setting; the transform itself is one
gather, a multiply and batched iffts, and its inverse batched ffts, a multiply and one
scatter-add: no Python loop over bins, so it traces small and is jit/vmap/grad friendly.

Two front ends:
* `cqtdiff_cqt` (CQT-Diff, github.com/eloimoliner/CQTdiff `src/CQT_nsgt.py` + `src/nsgt/`):
  matrixform NSGT with Hann windows, F = 7·64 + 2 = 450 rows (row 0 = DC, row F−1 = Nyquist),
  all rows T frames (T = the longest window: 704 for L = 65536). Perfect reconstruction.
* `cqtdiffplus_cqt` (CQTdiff+ / BABE, github.com/eloimoliner/CQT_pytorch at 08bf486, mode
  "oct"): a nearly flat "kaiser" window, no DC/Nyquist rows, one (64, T_i) block per octave with
  T_i a power of two. Its inverse gives back ≈ `apply_hpf_DC(x)`, not x (see `OctaveCQT`).

Both scales place num_octaves·bins_per_octave bins with both ends included, so adjacent bins
are num_octaves/(num_octaves·bins_per_octave − 1) octave apart (7/447), not 1/bins_per_octave.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np


# ---------------------------------------------------------------------------------------------
# Design (numpy, float64): frequency scale, window lengths and centres, window functions.
# ---------------------------------------------------------------------------------------------


def _log_scale(fmin: float, fmax: float, num_bins: int) -> tuple[np.ndarray, float]:
    """Centre frequencies (Hz) and Q of the nsgt `LogScale`, with its exact float64 arithmetic.

    The scalar power loop (not a vectorised power) matters: whether the last bin lands at or
    just below Nyquist decides whether the NSGT keeps it.
    """
    lfmin, lfmax = np.log2(fmin), np.log2(fmax)
    step = (lfmax - lfmin) / (num_bins - 1)
    base, ratio = 2.0**lfmin, 2.0**step
    freqs = np.array([base * ratio**b for b in range(num_bins)], dtype=np.float64)
    q = float(np.sqrt(ratio) / (ratio - 1.0) / 2.0)
    return freqs, q


def _keep_below_nyquist(freqs: np.ndarray, nyquist: float) -> np.ndarray:
    # nsgfwin: drop bins from the first one at or above Nyquist (argmax = 0 means "none").
    cut = int(np.argmax(freqs >= nyquist))
    return freqs[:cut] if cut else freqs


def _bin_positions(freqs: np.ndarray, sample_rate: float, length: int) -> np.ndarray:
    """Window centres in FFT bins (float) for [DC, freqs, Nyquist, mirrored freqs]: 2·len + 2."""
    nyquist = sample_rate / 2.0
    positive = np.concatenate(([0.0], freqs, [nyquist]))
    return np.concatenate((positive, sample_rate - positive[-2:0:-1])) * (float(length) / sample_rate)


def _rounded_centres(positions: np.ndarray, num_bins: int, length: int) -> np.ndarray:
    """Integer centre bins. Both references move the last bin's centre halfway to Nyquist."""
    positions = positions.copy()
    positions[num_bins] = (positions[num_bins - 1] + positions[num_bins + 1]) / 2
    positions[num_bins + 2] = length - positions[num_bins]
    centres = np.round(positions).astype(np.int64)
    # calcwinrange derives the FFT size from the centres; it is the signal length when the
    # first centre is DC and the last one lies inside (0, L).
    fft_size = int(np.mod(-centres[-1], length) + centres[-1] - centres[0])
    if centres[0] != 0 or fft_size != length:
        raise ValueError(f"window centres do not tile an FFT of {length} bins")
    return centres


def _hann(j: np.ndarray, lg: np.ndarray) -> np.ndarray:
    # nsgt `hannwin`: 0.5·(1 + cos(2πj/Lg)), peak at stored index 0 (offset m = j mod Lg).
    return 0.5 * (1.0 + np.cos(2.0 * np.pi * j / lg))


def _kaiser_like(j: np.ndarray, lg: np.ndarray, beta: float) -> np.ndarray:
    # CQT_pytorch 08bf486 `kaiserwin`: r = sqrt((1 + cos(2πn/Lg))/2) = |cos(πn/Lg)|, then
    # I0(β·sqrt(1 − r²))/(2·I0(β)) = I0(β·|sin(πn/Lg)|)/(2·I0(β)), rolled by Lg//2 so that the
    # peak (0.5) sits at index 0. With β = 1 it only ranges over [0.395, 0.5]: nearly flat.
    n = j - lg // 2  # the roll: stored[j] = unrolled[(j − Lg//2) mod Lg]; |sin| has period Lg
    return np.i0(beta * np.abs(np.sin(np.pi * n / lg))) / (2.0 * np.i0(beta))


def _window_fn(window):
    if window == "hann":
        return _hann
    if isinstance(window, tuple) and len(window) == 2 and window[0] == "kaiser":
        beta = float(window[1])
        return lambda j, lg: _kaiser_like(j, lg, beta)
    raise ValueError(f"unknown window {window!r}: use 'hann' or ('kaiser', beta)")


def _offsets(lengths: np.ndarray, frames: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin offset m of each coefficient slot n < frames (row-wise), and whether it is in the window.

    The references store offsets m ≥ 0 at slots 0..⌈Lg/2⌉−1 and m < 0 at the end (T + m): the
    window's centre bin goes to buffer index 0, so the ifft brings the band down to baseband.
    """
    n = np.arange(width)[None, :]
    lg, t = lengths[:, None], frames[:, None]
    head = n < (lg + 1) // 2
    tail = (n >= t - lg // 2) & (n < t)
    return np.where(head, n, n - t), head | tail


def _frame_operator(centres, lengths, frames, window_fn, length) -> np.ndarray:
    """Diagonal D[k] = Σ_i T_i·G_i(k − p_i)² of the frame operator, over all windows (nsdual)."""
    width = int(lengths.max())
    n = np.arange(width)[None, :]
    valid = n < lengths[:, None]
    m = n - lengths[:, None] // 2  # every offset of each window once
    values = window_fn(np.mod(m, lengths[:, None]), lengths[:, None])
    diag = np.zeros(length, np.float64)
    np.add.at(diag, np.mod(centres[:, None] + m, length)[valid], (frames[:, None] * values**2)[valid])
    return diag


@dataclasses.dataclass(frozen=True)
class _Slots:
    """Flat per-slot tables for a set of rows; see `_SlotTransform`."""

    gather_index: np.ndarray
    conjugate: np.ndarray
    analysis_window: np.ndarray
    scatter_index: np.ndarray
    synthesis_window: np.ndarray


def _slot_tables(rows, centres, lengths, frames, window_fn, diag, length) -> _Slots:
    """Tables for rows `rows` (indices into the window list), each padded to its frame count."""
    rows = np.asarray(rows)
    lg, t, p = lengths[rows], frames[rows], centres[rows]
    width = int(t.max())
    m, valid = _offsets(lg, t, width)
    in_row = np.arange(width)[None, :] < t[:, None]
    pos = np.mod(p[:, None] + m, length)  # FFT bin of each slot
    half = length // 2
    # The input is real: a bin above Nyquist is the conjugate of its mirror in the rfft.
    upper = pos > half
    gather = np.where(upper, length - pos, pos)
    g = np.where(valid, window_fn(np.mod(m, lg[:, None]), lg[:, None]), 0.0)
    d = diag[pos]
    dual = np.where(valid & (d > 0), t[:, None] * g / np.where(d > 0, d, 1.0), 0.0)
    # Synthesis only fills the one-sided spectrum (what the irfft reads); slots above it go to
    # a dump bin (half + 1) that is cut off.
    keep = valid & ~upper
    scatter = np.where(keep, pos, half + 1)
    dual = np.where(keep, dual, 0.0)
    sel = in_row.reshape(-1)  # drop the padding past each row's own frame count
    return _Slots(
        gather_index=np.where(valid, gather, 0).reshape(-1)[sel].astype(np.int32),
        conjugate=(upper & valid).reshape(-1)[sel],
        analysis_window=g.reshape(-1)[sel].astype(np.float32),
        scatter_index=scatter.reshape(-1)[sel].astype(np.int32),
        synthesis_window=dual.reshape(-1)[sel].astype(np.float32),
    )


def _table():
    # A required keyword-only field that repr leaves out (the tables are long).
    return dataclasses.field(repr=False, kw_only=True)


def _fields(slots: _Slots) -> dict[str, np.ndarray]:
    return {f.name: getattr(slots, f.name) for f in dataclasses.fields(slots)}


# ---------------------------------------------------------------------------------------------
# The transform (jnp).
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class _SlotTransform:
    """Gather → window → ifft per block of rows with one frame count; the inverse scatters back.

    Tables are flat over the blocks (row-major (rows, frames) per block, blocks in order), so
    the forward is one gather for all rows and the inverse one scatter-add. eq=False: hashed by
    identity, so an instance can be a static argument of `jax.jit` (the factories cache them).
    """

    length: int
    sample_rate: float
    block_shapes: tuple[tuple[int, int], ...]  # (rows, frames) per block
    # N = Σ rows·frames coefficient slots.
    gather_index: np.ndarray = _table()  # (N,) int32: rfft bin each slot reads
    conjugate: np.ndarray = _table()  # (N,) bool: the slot's bin is above Nyquist (read conj of its mirror)
    analysis_window: np.ndarray = _table()  # (N,) float32: window value at the slot, 0 in the padding
    scatter_index: np.ndarray = _table()  # (N,) int32: rfft bin the slot adds to on synthesis (L//2+1: none)
    synthesis_window: np.ndarray = _table()  # (N,) float32: frames·dual window at the slot

    def _check_length(self, x):
        if x.shape[-1] != self.length:
            raise ValueError(f"this transform was built for {self.length} samples, got {x.shape[-1]}")

    def _analyse(self, x: jnp.ndarray) -> list[jnp.ndarray]:
        x = jnp.asarray(x, jnp.float32)
        self._check_length(x)
        batch = x.shape[:-1]
        spec = jnp.fft.rfft(x, axis=-1)
        slots = spec[..., self.gather_index]
        slots = jnp.where(self.conjugate, jnp.conj(slots), slots) * self.analysis_window
        blocks, start = [], 0
        for rows, frames in self.block_shapes:
            block = slots[..., start : start + rows * frames].reshape(batch + (rows, frames))
            blocks.append(jnp.fft.ifft(block, axis=-1).astype(jnp.complex64))
            start += rows * frames
        return blocks

    def _synthesise(self, blocks) -> jnp.ndarray:
        blocks = [jnp.asarray(b, jnp.complex64) for b in blocks]
        if len(blocks) != len(self.block_shapes):
            raise ValueError(f"expected {len(self.block_shapes)} coefficient blocks, got {len(blocks)}")
        batch = blocks[0].shape[:-2]
        for b, shape in zip(blocks, self.block_shapes):
            if b.shape[-2:] != shape or b.shape[:-2] != batch:
                raise ValueError(f"coefficient block of shape {b.shape}, expected {batch + shape}")
        slots = jnp.concatenate([jnp.fft.fft(b, axis=-1).reshape(batch + (-1,)) for b in blocks], axis=-1)
        half = self.length // 2 + 1
        spec = jnp.zeros(batch + (half + 1,), jnp.complex64)
        spec = spec.at[..., self.scatter_index].add(slots * self.synthesis_window)[..., :half]
        # irfft ignores the imaginary part of DC (and of Nyquist for even L) on CPU; make that
        # explicit so no backend reads it.
        spec = jax.lax.complex(spec.real, spec.imag * self._imag_keep())
        return jnp.fft.irfft(spec, n=self.length, axis=-1).astype(jnp.float32)

    def _imag_keep(self) -> np.ndarray:
        keep = np.ones(self.length // 2 + 1, np.float32)
        keep[0] = 0.0
        if self.length % 2 == 0:
            keep[-1] = 0.0
        return keep


@dataclasses.dataclass(frozen=True, eq=False)
class MatrixCQT(_SlotTransform):
    """CQT-Diff's NSGT: every row has the same number of frames. Build with `cqtdiff_cqt`.

    Coefficients are complex64 `(..., num_bins, num_frames)`: row 0 is DC, rows 1..num_bins−2
    the log-spaced bins (ascending), row num_bins−1 Nyquist. CQT-Diff's U-Net takes them as
    real channels `stack([c.real, c.imag], axis=-3)` → `(B, 2, F, T)` (frequency, then time);
    its output goes back through `inverse(r[:, 0] + 1j·r[:, 1])`. That stacking is the caller's.

    Attributes (beyond the tables): `center_freqs` (F,) nominal centre frequencies in Hz, DC and
    Nyquist included (the last log bin's window is centred halfway between its neighbour and
    Nyquist, as in the reference); `window_lengths` (F,) window lengths in FFT bins.
    """

    center_freqs: np.ndarray = _table()
    window_lengths: np.ndarray = _table()

    @property
    def num_bins(self) -> int:
        """F: rows, DC and Nyquist included (450 for 7 octaves × 64 bins)."""
        return self.block_shapes[0][0]

    @property
    def num_frames(self) -> int:
        """T: frames per row = the longest window in bins (704 for L = 65536, 176 for 16384)."""
        return self.block_shapes[0][1]

    def forward(self, x: jnp.ndarray) -> jnp.ndarray:
        """Waveform (..., L) float32 → complex64 coefficients (..., F, T)."""
        return self._analyse(x)[0]

    def inverse(self, c: jnp.ndarray) -> jnp.ndarray:
        """Coefficients (..., F, T) → waveform (..., L) float32; exact inverse of `forward`."""
        return self._synthesise([c])


@dataclasses.dataclass(frozen=True, eq=False)
class OctaveCQT(_SlotTransform):
    """CQTdiff+'s CQT (CQT_pytorch 08bf486, mode "oct"). Build with `cqtdiffplus_cqt`.

    Coefficients are a tuple of `num_octaves` complex64 arrays `(..., bins_per_octave, T_i)`,
    index 0 = lowest octave, bins ascending, T_i = `frames_per_octave[i]` (the next power of
    two of the octave's longest window; 16 … 1024 for L = 65536, 32 … 2048 for 184184).

    The DC and Nyquist windows are analysed by no row, so `inverse(forward(x))` is not x: it is
    close to `apply_hpf_DC(x)` = Re ifft(fft(x)·(1 − H_lpf)), with H_lpf the reference's
    estimate of what those two windows carry. The estimate is off where the frame operator is
    not symmetric about DC and Nyquist: the nearly flat window does not vanish at its edges, so
    the mirrored top window's edge sample lands on the Nyquist bin (H_lpf = 0.62 there, while the
    rows synthesise none of it), and the lowest bin's mirror keeps its own frame count (the
    reference's mirrored frame-count slices are one window off). On unit-variance white noise
    the two differ by up to ~6e-3 (RMS ~2.5e-3) at L = 32768 … 184184, in float64 too: the
    reference's mismatch, copied. With window="hann" (edges at zero) it drops to ~1e-4 at
    32768 and ~5e-6 at 65536 and 184184.
    `inverse(forward(x))` itself misses x by ~0.3 there (the DC and Nyquist bands).

    Attributes (beyond the tables): `center_freqs` (num_octaves·bins_per_octave,) nominal
    centre frequencies in Hz; `window_lengths` (same) window lengths in FFT bins;
    `lowpass_response` (L,) float32 H_lpf on the full FFT grid.
    """

    num_octaves: int = dataclasses.field(kw_only=True)
    bins_per_octave: int = dataclasses.field(kw_only=True)
    center_freqs: np.ndarray = _table()
    window_lengths: np.ndarray = _table()
    lowpass_response: np.ndarray = _table()

    @property
    def frames_per_octave(self) -> tuple[int, ...]:
        """T_i of each octave block, lowest first (the reference's `size_per_oct`)."""
        return tuple(frames for _, frames in self.block_shapes)

    def forward(self, x: jnp.ndarray) -> tuple[jnp.ndarray, ...]:
        """Waveform (..., L) float32 → tuple of complex64 (..., bins_per_octave, T_i), lowest first."""
        return tuple(self._analyse(x))

    def inverse(self, coeffs) -> jnp.ndarray:
        """Octave blocks (a sequence as `forward` returns) → waveform (..., L) float32.

        Unlike the reference's `bwd`, the input is not modified.
        """
        return self._synthesise(list(coeffs))

    def apply_hpf_DC(self, x: jnp.ndarray) -> jnp.ndarray:
        """Removes what the DC and Nyquist windows carry: Re ifft(fft(x)·(1 − H_lpf)), (..., L)."""
        return self._filter(x, 1.0 - self.lowpass_response)

    def apply_lpf_DC(self, x: jnp.ndarray) -> jnp.ndarray:
        """Keeps only what the DC and Nyquist windows carry: Re ifft(fft(x)·H_lpf), (..., L)."""
        return self._filter(x, self.lowpass_response)

    def _filter(self, x, response: np.ndarray) -> jnp.ndarray:
        x = jnp.asarray(x, jnp.float32)
        self._check_length(x)
        # H_lpf is not conjugate-symmetric (for odd window lengths it is one bin off),
        # so this is a full complex FFT and a real part, as in the reference, not an irfft.
        return jnp.fft.ifft(jnp.fft.fft(x, axis=-1) * response.astype(np.float32), axis=-1).real


# ---------------------------------------------------------------------------------------------
# Factories.
# ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def cqtdiff_cqt(
    length: int, sample_rate: float = 22050, num_octaves: int = 7, bins_per_octave: int = 64
) -> MatrixCQT:
    """CQT-Diff's front end: `CQT_cpx(fmin, fbins, fs, audio_len)` (matrixform NSGT, Hann windows).

    fmax = sample_rate/2, fmin = fmax/2^num_octaves, num_octaves·bins_per_octave log-spaced bins
    with both ends included (nsgt `LogScale`), plus DC and Nyquist rows. Window lengths follow
    nsgt `nsgfwin(sliced=False)`: DC 2·p_1, bin k p_{k+1} − p_{k−1}, at least 4 bins.

    Args:
      length: signal length L in samples (every length works; T ≈ L·704/65536).
      sample_rate: Hz.
      num_octaves, bins_per_octave: the scale (F = num_octaves·bins_per_octave + 2 rows).

    Returns:
      a cached `MatrixCQT` (same arguments → same object).
    """
    nyquist = sample_rate / 2.0
    freqs, _ = _log_scale(nyquist / 2**num_octaves, nyquist, num_octaves * bins_per_octave)
    freqs = _keep_below_nyquist(freqs, nyquist)
    nb = len(freqs)
    positions = _bin_positions(freqs, sample_rate, length)
    lengths = np.zeros(positions.shape, np.int64)
    lengths[0] = np.round(2 * positions[1])
    lengths[1:-1] = np.round(positions[2:] - positions[:-2])
    lengths[-1] = np.round(length - positions[-2])
    lengths = np.maximum(lengths, 4)
    centres = _rounded_centres(positions, nb, length)
    frames = np.full(lengths.shape, lengths.max())  # matrixform: every row as long as the longest
    diag = _frame_operator(centres, lengths, frames, _hann, length)
    rows = np.arange(nb + 2)  # DC, the bins, Nyquist (real signal: one side)
    slots = _slot_tables(rows, centres, lengths, frames, _hann, diag, length)
    return MatrixCQT(
        length=int(length),
        sample_rate=float(sample_rate),
        block_shapes=((nb + 2, int(frames[0])),),
        **_fields(slots),
        center_freqs=np.concatenate(([0.0], freqs, [nyquist])),
        window_lengths=lengths[rows],
    )


def _next_power_of_2(n: int) -> int:
    return 1 if n == 0 else 2 ** int(np.ceil(np.log2(n)))


@functools.lru_cache(maxsize=16)
def cqtdiffplus_cqt(
    length: int,
    sample_rate: float = 22050,
    num_octaves: int = 7,
    bins_per_octave: int = 64,
    window: str | tuple[str, float] = ("kaiser", 1.0),
) -> OctaveCQT:
    """CQTdiff+'s front end: `CQT_nsgt(numocts, binsoct, mode="oct", window, fs, audio_len)` at 08bf486.

    fmax = sample_rate/2 − 1e-6 (so the top bin stays below Nyquist), fmin = fmax/2^num_octaves.
    Window lengths as that commit's `nsgfwin`: DC 2·p_1, lowest bin p_1/Q, bin k p_{k+1} − p_{k−1},
    Nyquist the same as the top bin, at least 4 bins. Each octave's rows get the next power of
    two of its longest window as frame count.

    Args:
      length: signal length L in samples. BABE uses 184184; the reference is meant for L ≥ 32768.
        (At lengths where a window is exactly as long as its octave's frame count, e.g. 16384
        or 49152, the reference's synthesis adds that window's middle coefficient to every
        other bin; this implementation does not copy that.)
      sample_rate: Hz.
      num_octaves, bins_per_octave: the scale.
      window: ("kaiser", beta) (the reference's nearly flat `kaiserwin`; BABE uses beta 1) or "hann".

    Returns:
      a cached `OctaveCQT`.
    """
    window_fn = _window_fn(window)
    nyquist = sample_rate / 2.0
    fmax = nyquist - 1e-6
    freqs, q = _log_scale(fmax / 2**num_octaves, fmax, num_octaves * bins_per_octave)
    freqs = _keep_below_nyquist(freqs, nyquist)
    nb = len(freqs)
    if nb != num_octaves * bins_per_octave:
        raise ValueError("octave mode needs every bin below Nyquist")
    positions = _bin_positions(freqs, sample_rate, length)
    lengths = np.zeros(positions.shape, np.int64)
    lengths[0] = np.round(2 * positions[1])
    lengths[1] = np.round(positions[1] / q)
    lengths[2 : nb + 1] = np.round(positions[3 : nb + 2] - positions[1:nb])
    lengths[nb + 1] = lengths[nb]  # the reference reuses the last loop index for Nyquist
    lengths[nb + 2 :] = lengths[nb:0:-1]  # mirrored windows
    lengths = np.maximum(lengths, 4)
    centres = _rounded_centres(positions, nb, length)

    # Frame counts ("M" after the reference's octave loop), with its exact slices: the mirrored
    # assignment M[-i-B:-i] lands one window off, so the Nyquist window gets the top octave's
    # frame count and the lowest bin's mirror keeps its window length. Both enter the frame operator, hence the
    # duals (the inverse) and H_lpf; the analysis windows do not depend on them.
    frames = lengths.copy()
    start = 1
    for _ in range(num_octaves):
        value = _next_power_of_2(int(frames[start : start + bins_per_octave].max()))
        frames[start : start + bins_per_octave] = value
        frames[-start - bins_per_octave : -start] = value
        start += bins_per_octave
    diag = _frame_operator(centres, lengths, frames, window_fn, length)

    block_shapes, parts = [], []
    for octave in range(num_octaves):
        rows = 1 + octave * bins_per_octave + np.arange(bins_per_octave)
        block_shapes.append((bins_per_octave, int(frames[rows[0]])))
        parts.append(_slot_tables(rows, centres, lengths, frames, window_fn, diag, length))
    slots = {name: np.concatenate([_fields(p)[name] for p in parts]) for name in _fields(parts[0])}

    return OctaveCQT(
        length=int(length),
        sample_rate=float(sample_rate),
        block_shapes=tuple(block_shapes),
        **slots,
        num_octaves=num_octaves,
        bins_per_octave=bins_per_octave,
        center_freqs=freqs,
        window_lengths=lengths[1 : nb + 1],
        lowpass_response=_dc_nyquist_response(centres, lengths, frames, window_fn, diag, nb, length),
    )


def _dc_nyquist_response(centres, lengths, frames, window_fn, diag, nb, length) -> np.ndarray:
    """H_lpf of CQT_pytorch 08bf486: Σ T·G·G_dual over the DC and Nyquist windows, (L,) float32.

    Written with the reference's index arithmetic on the stored window arrays (index j ↔ offset
    j, or j − Lg past the middle), which misplaces samples by one bin for odd window lengths
    (e.g. the DC window's outermost positive sample lands at L − ⌈Lg/2⌉ for L = 184184).
    """

    def stored(i):  # (window, dual) as stored arrays g[j], j = 0..Lg−1
        lg = int(lengths[i])
        j = np.arange(lg)
        m = np.where(j < (lg + 1) // 2, j, j - lg)
        g = window_fn(j, lg)
        return g, g / diag[np.mod(centres[i] + m, length)]

    response = np.zeros(length, np.float64)
    g, gd = stored(0)
    lg = len(g)
    response[: lg // 2] = (g * gd * frames[0])[: lg // 2]
    response[length - (lg + 1) // 2 :] = (g * gd * frames[0])[lg // 2 :]
    i = nb + 1
    g, gd = stored(i)
    lg = len(g)
    win = np.mod(centres[i] - lg // 2 + np.arange(lg), length)  # calcwinrange's positions
    product = g * gd * frames[i]
    response[win[: (lg + 1) // 2]] += product[lg // 2 :]
    response[win[(lg + 1) // 2 :]] += product[: lg // 2]
    return response.astype(np.float32)
