"""Quality measures: SI-SDR/SI-SIR/SI-SAR, SDR, PESQ, ESTOI, log-spectral distance.

SI-SDR and its components follow the reference's `calc_metrics` (sgmse/util/other.py):
s_target = <ŝ, s>/‖s‖² s, e_noise = <ŝ, n>/‖n‖² n with n = noisy − clean, e_art the rest.
PESQ is wide-band at 16 kHz (signals at other rates are resampled to 16 kHz first, as the
reference does), ESTOI is pystoi's extended STOI at the signal's own rate.

For the music restoration tasks (bandwidth extension, declipping, inpainting) the references
are CQT-Diff and BABE: `lsd_cqtdiff` is their `computeLSD` (CQT-Diff `src/utils.py`, BABE
`blind_bwe_evaluation/compute_LSD.py`), in log10-power units (bels, not dB), and `sdr` is the
plain SDR 10·log10(‖s‖²/‖s − ŝ‖²) that CQT-Diff's declipping sets its clip level with
(`src/utils/declipping.py get_clip_value_from_SDR`); `restoration_metrics` bundles the two with
SI-SDR. `log_spectral_distance` is a different, dB-valued LSD on a short Hann STFT, kept for
its callers; `diffrestore evaluate` reports `lsd_cqtdiff` as "lsd".
"""
from __future__ import annotations

import math

import numpy as np

from diffrestore.audio.resample import resample


def _db(num, den):
    return 10 * math.log10(num / den) if den > 0 else float("inf")


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al., 2019), as the reference computes it."""
    s = np.asarray(reference, np.float64)
    s_hat = np.asarray(estimate, np.float64)
    alpha = np.dot(s_hat, s) / np.dot(s, s)
    return _db(np.sum((alpha * s) ** 2), np.sum((alpha * s - s_hat) ** 2))


def energy_ratios(estimate: np.ndarray, clean: np.ndarray, noise: np.ndarray) -> tuple[float, float, float]:
    """(SI-SDR, SI-SIR, SI-SAR) in dB with the reference's decomposition."""
    s_hat, s, n = (np.asarray(v, np.float64) for v in (estimate, clean, noise))
    s_target = np.dot(s_hat, s) / np.dot(s, s) * s
    e_noise = np.dot(s_hat, n) / np.dot(n, n) * n
    e_art = s_hat - s_target - e_noise
    target = np.sum(s_target**2)
    return _db(target, np.sum((e_noise + e_art) ** 2)), _db(target, np.sum(e_noise**2)), _db(target, np.sum(e_art**2))


def pesq_wb(reference: np.ndarray, estimate: np.ndarray, rate: int) -> float:
    """Wide-band PESQ (ITU-T P.862.2) at 16 kHz; NaN when PESQ finds no utterance."""
    from pesq import NoUtterancesError, pesq

    try:
        return float(pesq(16000, resample(reference, rate, 16000), resample(estimate, rate, 16000), "wb"))
    except NoUtterancesError:
        return float("nan")


def estoi(reference: np.ndarray, estimate: np.ndarray, rate: int) -> float:
    """Extended STOI (Jensen & Taal, 2016) via pystoi."""
    from pystoi import stoi

    return float(stoi(np.asarray(reference, np.float64), np.asarray(estimate, np.float64), rate, extended=True))


def log_spectral_distance(reference: np.ndarray, estimate: np.ndarray, n_fft: int = 512, hop: int = 128) -> float:
    """A dB-valued LSD on a short STFT; not the references' definition (that is `lsd_cqtdiff`).

    scipy's `stft` (periodic Hann window of `n_fft` samples, hop `hop`, the signal padded by
    n_fft/2 zeros at both ends, spectrum scaled by 1/Σw), P = |X|², then

        mean over frames of sqrt(mean over the n_fft/2 + 1 bins of (10·log10(P + 1e-10) − 10·log10(P̂ + 1e-10))²).

    Compared with `lsd_cqtdiff`: 10× larger units (dB against bels), a Hann window of 512
    rather than Hamming of 2048, centred frames, a window-normalised spectrum (so its 1e-10
    floor sits at a different level) and no 1e-8 inside the square root (0 for equal signals).
    A gain of 2 gives 10·log10(4) = 6.02 here and log10(4) = 0.602 there.

    Args:
      reference, estimate: (L,) signals of the same length.
    Returns:
      LSD in dB (float).
    """
    from scipy.signal import stft

    _, _, a = stft(np.asarray(reference, np.float64), nperseg=n_fft, noverlap=n_fft - hop)
    _, _, b = stft(np.asarray(estimate, np.float64), nperseg=n_fft, noverlap=n_fft - hop)
    la = np.log10(np.abs(a) ** 2 + 1e-10)
    lb = np.log10(np.abs(b) ** 2 + 1e-10)
    return float(np.mean(np.sqrt(np.mean((10 * (la - lb)) ** 2, axis=0))))


# CQT-Diff / BABE `computeLSD`: `do_stft(y, win_size=2048, hop_size=512)`.
_LSD_N_FFT = 2048
_LSD_HOP = 512
_LSD_EPS = 1e-8
# Frames per block in `lsd_cqtdiff`, so minutes of audio never hold all frames at once.
_LSD_BLOCK = 256


def _cqtdiff_log_power(x: np.ndarray, start: int, stop: int, window: np.ndarray) -> np.ndarray:
    """log10(|X|² + 1e-8) of frames start..stop−1 of the reference's `do_stft`: (frames, 1025)."""
    all_frames = np.lib.stride_tricks.sliding_window_view(x, _LSD_N_FFT)  # a view: no copy
    frames = all_frames[start * _LSD_HOP : (stop - 1) * _LSD_HOP + 1 : _LSD_HOP]
    spectrum = np.fft.rfft(frames * window, axis=-1)  # torch.stft: unnormalised, one-sided
    return np.log10(spectrum.real**2 + spectrum.imag**2 + _LSD_EPS)


def lsd_cqtdiff(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Log-spectral distance exactly as CQT-Diff and BABE compute it (`computeLSD`).

    CQT-Diff `src/utils.py` (commit ae40852) and BABE `blind_bwe_evaluation/compute_LSD.py`:
    `do_stft` appends 2048 zeros to the signal and takes torch.stft with n_fft = 2048, hop 512,
    a periodic Hamming window (0.54 − 0.46·cos(2πn/2048)), center=False and no normalisation,
    so there are 1 + L//512 frames of 1025 bins; then with P = |X|²

        S = log10(P + 1e-8),   LSD = mean over frames t of sqrt(mean over bins f of (S − Ŝ)² + 1e-8).

    The unit is log10 of power (bels): a gain of 2 gives log10(4) = 0.602, not 6.02 dB, and two
    equal signals give sqrt(1e-8) = 1e-4, not 0. The sizes are in samples whatever the rate
    (the references run at 22.05 and 44.1 kHz). Computed in float64, where the reference
    casts to torch float32, so the two agree to float32 rounding, not bit for bit.

    Args:
      reference, estimate: (L,) signals of the same length.
    Returns:
      LSD in bels (float).
    """
    a = np.asarray(reference, np.float64)
    b = np.asarray(estimate, np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"lsd_cqtdiff expects two 1-D signals of one length, got {a.shape} and {b.shape}")
    pad = np.zeros(_LSD_N_FFT)
    a, b = np.concatenate([a, pad]), np.concatenate([b, pad])
    n = np.arange(_LSD_N_FFT)
    window = 0.54 - 0.46 * np.cos(2 * np.pi * n / _LSD_N_FFT)  # torch.hamming_window(2048), periodic
    num_frames = 1 + (len(a) - _LSD_N_FFT) // _LSD_HOP
    per_frame = np.empty(num_frames)
    for start in range(0, num_frames, _LSD_BLOCK):
        stop = min(start + _LSD_BLOCK, num_frames)
        d = _cqtdiff_log_power(a, start, stop, window) - _cqtdiff_log_power(b, start, stop, window)
        per_frame[start:stop] = np.sqrt(np.mean(d**2 + _LSD_EPS, axis=-1))
    return float(np.mean(per_frame))


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Plain signal-to-distortion ratio 10·log10(‖s‖² / ‖s − ŝ‖²) in dB (inf when ŝ = s).

    The SDR of CQT-Diff's declipping (`src/utils/declipping.py get_clip_value_from_SDR`:
    20·log10(‖x‖ / (‖x − x_clipped‖ + 1e-7)); its `computeSNR` in `src/utils.py` is the same
    ratio of mean powers): no projection, no scale invariance and no BSS-eval filter, so a gain
    error counts as distortion (SI-SDR would forgive it). The reference's 1e-7 on the error
    norm is left out: it moves the figure by less than 1e-6 dB unless the error is that small.

    Args:
      reference, estimate: (L,) signals of the same length.
    Returns:
      SDR in dB (float).
    """
    s = np.asarray(reference, np.float64)
    s_hat = np.asarray(estimate, np.float64)
    return _db(np.sum(s**2), np.sum((s - s_hat) ** 2))


def speech_metrics(clean: np.ndarray, estimate: np.ndarray, rate: int) -> dict:
    """The three figures the SGMSE papers report: PESQ, ESTOI, SI-SDR."""
    n = min(len(clean), len(estimate))
    clean, estimate = clean[:n], estimate[:n]
    return {"pesq": pesq_wb(clean, estimate, rate), "estoi": estoi(clean, estimate, rate), "si_sdr": si_sdr(clean, estimate)}


def restoration_metrics(clean: np.ndarray, estimate: np.ndarray, rate: int) -> dict:
    """The figures of the music restoration papers: {"lsd", "si_sdr", "sdr"}.

    lsd is `lsd_cqtdiff` (bels), si_sdr and sdr are in dB. Both signals are cut to the shorter
    length first (a restorer may return a few samples more or less). `rate` (Hz) is not used by
    these three measures, whose STFT sizes are fixed in samples as in the references; it keeps
    the call the same as `speech_metrics`.

    Args:
      clean, estimate: (L,) and (L',) signals.
      rate: their sample rate in Hz.
    Returns:
      dict of three floats.
    """
    del rate
    n = min(len(clean), len(estimate))
    clean = np.asarray(clean, np.float64)[:n]
    estimate = np.asarray(estimate, np.float64)[:n]
    return {"lsd": lsd_cqtdiff(clean, estimate), "si_sdr": si_sdr(clean, estimate), "sdr": sdr(clean, estimate)}
