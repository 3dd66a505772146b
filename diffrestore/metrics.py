"""Speech quality measures: SI-SDR/SI-SIR/SI-SAR, PESQ, ESTOI, log-spectral distance.

SI-SDR and its components follow the reference's `calc_metrics` (sgmse/util/other.py):
s_target = <ŝ, s>/‖s‖² s, e_noise = <ŝ, n>/‖n‖² n with n = noisy − clean, e_art the rest.
PESQ is wide-band at 16 kHz (signals at other rates are resampled to 16 kHz first, as the
reference does), ESTOI is pystoi's extended STOI at the signal's own rate.
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
    """LSD in dB: mean over frames of the RMS over frequency of the log-power difference."""
    from scipy.signal import stft

    _, _, a = stft(np.asarray(reference, np.float64), nperseg=n_fft, noverlap=n_fft - hop)
    _, _, b = stft(np.asarray(estimate, np.float64), nperseg=n_fft, noverlap=n_fft - hop)
    la = np.log10(np.abs(a) ** 2 + 1e-10)
    lb = np.log10(np.abs(b) ** 2 + 1e-10)
    return float(np.mean(np.sqrt(np.mean((10 * (la - lb)) ** 2, axis=0))))


def speech_metrics(clean: np.ndarray, estimate: np.ndarray, rate: int) -> dict:
    """The three figures the SGMSE papers report: PESQ, ESTOI, SI-SDR."""
    n = min(len(clean), len(estimate))
    clean, estimate = clean[:n], estimate[:n]
    return {"pesq": pesq_wb(clean, estimate, rate), "estoi": estoi(clean, estimate, rate), "si_sdr": si_sdr(clean, estimate)}
