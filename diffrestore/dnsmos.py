"""DNSMOS P.835 (SIG, BAK, OVRL) and P.808 MOS: non-intrusive speech quality, no clean reference.

Reddy, Gopal, Cutler, "DNSMOS P.835: a non-intrusive perceptual objective speech quality
metric to evaluate noise suppressors" (ICASSP 2022). The networks are the ONNX files that the
`speechmos` package ships (`speechmos/dnsmos_models/sig_bak_ovr.onnx`, `model_v8.onnx`), run
with onnxruntime; nothing is downloaded. The pipeline is the package's `speechmos.dnsmos`
(Microsoft's `dnsmos_local.py`), written here without its librosa dependency:

* 16 kHz audio in [-1, 1]; shorter than 9.01 s: repeated until it is not;
* windows of 9.01 s (144160 samples) every second; per window the P.835 network maps the raw
  waveform to (SIG, BAK, OVRL) raw scores, calibrated by the non-personalised polynomials,
  and the P.808 network maps a log-mel spectrogram of the window (its last 160 samples
  dropped) to the P.808 MOS;
* the log-mel spectrogram is librosa's `melspectrogram(n_fft=321, hop_length=160, n_mels=120)`
  (centred frames with zero padding, periodic Hann window, power 2, Slaney mel filters) in
  dB relative to its maximum (`power_to_db(ref=np.max)`, floor 80 dB below), then
  (dB + 40) / 40;
* a file's scores are the means over its windows.
"""
from __future__ import annotations

import functools
import importlib.util
import pathlib
from typing import Sequence

import numpy as np

SAMPLE_RATE = 16000
WINDOW_SECONDS = 9.01
WINDOW = int(WINDOW_SECONDS * SAMPLE_RATE)
MEASURES = ("sig", "bak", "ovrl", "p808")
# speechmos.dnsmos.DNSMOS.get_polyfit_val, not personalised (highest power first).
_POLYNOMIALS = {
    "sig": (-0.08397278, 1.22083953, 0.0052439),
    "bak": (-0.13166888, 1.60915514, -0.39604546),
    "ovrl": (-0.06766283, 1.11546468, 0.04602535),
}
_MEL = dict(n_fft=321, hop_length=160, n_mels=120)


def model_dir() -> pathlib.Path:
    """Where the speechmos package keeps the DNSMOS ONNX files (without importing it: its
    module imports librosa).

    Raises:
      RuntimeError: speechmos or onnxruntime is not installed.
    """
    spec = importlib.util.find_spec("speechmos")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("DNSMOS needs the speechmos package (pip install speechmos onnxruntime)")
    if importlib.util.find_spec("onnxruntime") is None:
        raise RuntimeError("DNSMOS needs onnxruntime (pip install onnxruntime)")
    return pathlib.Path(list(spec.submodule_search_locations)[0]) / "dnsmos_models"


@functools.lru_cache(maxsize=1)
def _sessions():
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 0  # onnxruntime's default: all cores
    folder = model_dir()
    load = lambda name: ort.InferenceSession(str(folder / name), options, providers=["CPUExecutionProvider"])  # noqa: E731
    return load("sig_bak_ovr.onnx"), load("model_v8.onnx")


def _hz_to_mel(f):
    """Slaney's mel scale (librosa's htk=False): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-12) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz(m):
    m = np.asarray(m, np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@functools.lru_cache(maxsize=4)
def mel_filterbank(sample_rate: int = SAMPLE_RATE, n_fft: int = 321, n_mels: int = 120) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, Slaney-normalised (area-equal), 0 … Nyquist:
    librosa.filters.mel's defaults."""
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - bins[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    return (weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]).astype(np.float32)


def log_mel(audio: np.ndarray) -> np.ndarray:
    """The P.808 network's input: (frames, 120) float32, see the module docstring."""
    n_fft, hop = _MEL["n_fft"], _MEL["hop_length"]
    x = np.pad(np.asarray(audio, np.float32), n_fft // 2)  # centred frames, zero padding
    frames = 1 + (x.shape[0] - n_fft) // hop
    index = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    power = np.abs(np.fft.rfft(x[index] * window, axis=-1)) ** 2
    mel = power @ mel_filterbank(SAMPLE_RATE, n_fft, _MEL["n_mels"]).T
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    db = db - 10.0 * np.log10(max(float(mel.max()), 1e-10))
    db = np.maximum(db, db.max() - 80.0)
    return ((db + 40.0) / 40.0).astype(np.float32)


def dnsmos(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> dict:
    """{"sig", "bak", "ovrl", "p808"} of one 1-D recording at 16 kHz with samples in [-1, 1].

    Raises:
      ValueError: another rate (resample first: DNSMOS is defined at 16 kHz), samples outside
        [-1, 1], NaN, or an empty or silent signal.
    """
    if int(sample_rate) != SAMPLE_RATE:
        raise ValueError(f"DNSMOS is defined at {SAMPLE_RATE} Hz, got {sample_rate} Hz (resample first)")
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"DNSMOS takes one non-empty 1-D signal, got shape {audio.shape}")
    if not np.all(np.isfinite(audio)) or np.max(np.abs(audio)) > 1.0:
        raise ValueError("DNSMOS needs finite samples in [-1, 1]")
    if not np.any(audio):
        raise ValueError("DNSMOS of a silent signal is undefined")
    while audio.shape[0] < WINDOW:
        audio = np.concatenate([audio, audio])
    num_windows = int(np.floor(audio.shape[0] / SAMPLE_RATE) - WINDOW_SECONDS) + 1
    primary, p808 = _sessions()
    scores = {m: [] for m in MEASURES}
    for k in range(num_windows):
        segment = audio[k * SAMPLE_RATE: k * SAMPLE_RATE + WINDOW]
        if segment.shape[0] < WINDOW:
            continue
        raw = primary.run(None, {"input_1": segment[None]})[0][0]
        for name, value in zip(("sig", "bak", "ovrl"), raw):
            scores[name].append(float(np.polyval(_POLYNOMIALS[name], value)))
        scores["p808"].append(float(p808.run(None, {"input_1": log_mel(segment[:-160])[None]})[0][0][0]))
    return {m: float(np.mean(v)) for m, v in scores.items()}


def dnsmos_many(waves: Sequence[np.ndarray], sample_rate: int = SAMPLE_RATE) -> list[dict]:
    """`dnsmos` of each recording (resampled to 16 kHz when `sample_rate` differs)."""
    out = []
    for wave in waves:
        wave = np.asarray(wave, np.float32)
        if int(sample_rate) != SAMPLE_RATE:
            from diffrestore.audio.resample import resample

            wave = np.clip(resample(wave, int(sample_rate), SAMPLE_RATE), -1.0, 1.0).astype(np.float32)
        out.append(dnsmos(wave, SAMPLE_RATE))
    return out
