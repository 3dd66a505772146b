"""Quality measures against closed forms and the pesq package; the evaluate command."""
import json

import numpy as np
import pytest
import soundfile as sf

from diffrestore import metrics
from diffrestore.cli import main as cli_main


def _speechy(seconds=2.0, rate=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    env = 0.5 * (1 + np.sin(2 * np.pi * 2.5 * t)) ** 2
    x = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) / k for k, f in enumerate([150, 300, 450, 900, 1400], 1))
    return (0.2 * env * x).astype(np.float64)


def test_si_sdr_closed_form():
    rng = np.random.default_rng(0)
    s = rng.normal(size=4000)
    e = rng.normal(size=4000)
    e -= np.dot(e, s) / np.dot(s, s) * s  # orthogonal to s
    est = 0.7 * s + e
    expected = 10 * np.log10(np.sum((0.7 * s) ** 2) / np.sum(e**2))
    assert metrics.si_sdr(s, est) == pytest.approx(expected, abs=1e-9)
    assert metrics.si_sdr(s, 3.0 * est) == pytest.approx(expected, abs=1e-9)  # scale invariance


def test_energy_ratios_decomposition():
    rng = np.random.default_rng(1)
    s, n, art = rng.normal(size=(3, 8000))
    n -= np.dot(n, s) / np.dot(s, s) * s
    art -= np.dot(art, s) / np.dot(s, s) * s + np.dot(art, n) / np.dot(n, n) * n
    est = s + 0.1 * n + 0.2 * art
    sdr, sir, sar = metrics.energy_ratios(est, s, n)
    assert sir == pytest.approx(10 * np.log10(np.sum(s**2) / np.sum((0.1 * n) ** 2)), abs=1e-6)
    assert sar == pytest.approx(10 * np.log10(np.sum(s**2) / np.sum((0.2 * art) ** 2)), abs=1e-6)
    assert sdr == pytest.approx(10 * np.log10(np.sum(s**2) / np.sum((0.1 * n + 0.2 * art) ** 2)), abs=1e-6)


def test_pesq_matches_package_and_orders_quality():
    from pesq import pesq

    clean = _speechy()
    noisy = clean + 0.05 * np.random.default_rng(2).normal(size=clean.shape)
    assert metrics.pesq_wb(clean, noisy, 16000) == pytest.approx(pesq(16000, clean, noisy, "wb"), abs=1e-6)
    assert metrics.pesq_wb(clean, clean, 16000) > metrics.pesq_wb(clean, noisy, 16000)
    assert metrics.estoi(clean, clean, 16000) > metrics.estoi(clean, noisy, 16000)
    assert metrics.log_spectral_distance(clean, clean) == pytest.approx(0.0, abs=1e-9)


def test_evaluate_cli(tmp_path, capsys):
    rng = np.random.default_rng(3)
    for sub in ("clean", "enhanced", "noisy"):
        (tmp_path / sub / "spk").mkdir(parents=True)
    for name in ("a", "spk/b"):
        clean = _speechy(seed=len(name))
        noise = 0.05 * rng.normal(size=clean.shape)
        sf.write(tmp_path / "clean" / f"{name}.wav", clean, 16000)
        sf.write(tmp_path / "noisy" / f"{name}.wav", clean + noise, 16000)
        sf.write(tmp_path / "enhanced" / f"{name}.wav", clean + 0.2 * noise, 16000)
    out = tmp_path / "res" / "results.csv"
    args = ["evaluate", "--clean", str(tmp_path / "clean"), "--enhanced", str(tmp_path / "enhanced"),
            "--noisy", str(tmp_path / "noisy"), "--out", str(out)]
    assert cli_main(args) == 0
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["si_sdr"]["n"] == 2
    assert summary["si_sdr"]["mean"] > summary["noisy_si_sdr"]["mean"] + 10  # noise scaled by 0.2: +14 dB
    assert out.read_text().splitlines()[0].startswith("file,")
    # An enhanced file without a clean partner is named.
    sf.write(tmp_path / "enhanced" / "stray.wav", np.zeros(1600), 16000)
    assert cli_main(args) == 2
    assert "stray.wav" in capsys.readouterr().err


# --- Restoration measures (CQT-Diff / BABE definitions) -------------------------------------


def _lsd_reference_loop(y, y_hat):
    """CQT-Diff `computeLSD`, written out frame by frame: 2048 zeros appended, periodic Hamming
    2048, hop 512, no centring, full FFT cut to bins 0..1024, log10(|X|² + 1e-8), per frame
    sqrt(mean over bins + 1e-8), mean over frames."""
    from scipy.signal import get_window

    window = get_window("hamming", 2048)  # periodic (fftbins=True), as torch.hamming_window
    y = np.concatenate([np.asarray(y, np.float64), np.zeros(2048)])
    y_hat = np.concatenate([np.asarray(y_hat, np.float64), np.zeros(2048)])
    values = []
    start = 0
    while start + 2048 <= len(y):
        s = np.log10(np.abs(np.fft.fft(window * y[start : start + 2048])[:1025]) ** 2 + 1e-8)
        s_hat = np.log10(np.abs(np.fft.fft(window * y_hat[start : start + 2048])[:1025]) ** 2 + 1e-8)
        values.append(np.sqrt(np.mean((s - s_hat) ** 2 + 1e-8)))
        start += 512
    return float(np.mean(values)), len(values)


@pytest.mark.parametrize("length", [10_001, 140_003])  # the second spans two of lsd_cqtdiff's blocks
def test_lsd_cqtdiff_matches_reference_formula(length):
    from scipy.signal import lfilter

    rng = np.random.default_rng(4)
    t = np.arange(length) / 22050
    clean = 0.3 * np.sin(2 * np.pi * (200 + 3000 * t) * t) + 0.05 * rng.normal(size=length)
    estimate = lfilter([0.5, 0.5], [1.0], clean) + 0.01 * rng.normal(size=length)  # low-passed, noisy
    expected, frames = _lsd_reference_loop(clean, estimate)
    assert frames == 1 + length // 512
    assert metrics.lsd_cqtdiff(clean, estimate) == pytest.approx(expected, rel=1e-10)
    # The dB LSD on a short Hann STFT is a different figure.
    assert metrics.log_spectral_distance(clean, estimate) != pytest.approx(expected, rel=0.1)


def test_lsd_conventions_closed_forms():
    x = np.random.default_rng(5).normal(size=20_000)
    # Reference: log10 of power, no factor 10; a gain of 2 is log10(4) in every bin, and the
    # 1e-8 under the square root makes equal signals 1e-4 apart.
    assert metrics.lsd_cqtdiff(x, 2 * x) == pytest.approx(np.sqrt(np.log10(4) ** 2 + 1e-8), abs=1e-7)
    assert metrics.lsd_cqtdiff(x, x) == pytest.approx(1e-4, rel=1e-12)
    assert metrics.lsd_cqtdiff(2 * x, x) == pytest.approx(metrics.lsd_cqtdiff(x, 2 * x), rel=1e-12)
    # The older measure is in dB: 10·log10(4) = 6.02 (its 1e-10 floor bends a few weak bins).
    assert metrics.log_spectral_distance(x, 2 * x) == pytest.approx(10 * np.log10(4), abs=1e-3)
    with pytest.raises(ValueError, match="one length"):
        metrics.lsd_cqtdiff(x, x[:-1])


def test_sdr_closed_forms():
    rng = np.random.default_rng(6)
    s = rng.normal(size=8000)
    e = rng.normal(size=8000)
    e *= np.sqrt(np.sum(s**2) / 100 / np.sum(e**2))  # ‖e‖² = ‖s‖²/100
    assert metrics.sdr(s, s + e) == pytest.approx(20.0, abs=1e-9)
    # Plain SDR counts a gain error as distortion; SI-SDR does not.
    assert metrics.sdr(s, 0.5 * s) == pytest.approx(10 * np.log10(4), abs=1e-9)
    assert metrics.si_sdr(s, 0.5 * s) == float("inf")
    assert metrics.sdr(s, s) == float("inf")


def test_sdr_is_the_declipping_sdr():
    from diffrestore.operators.clipping import clip_level_for_sdr

    x = _speechy(seconds=1.0)
    level = clip_level_for_sdr(x, 3.0)  # the reference's 20·log10(‖x‖ / (‖x − clip(x)‖ + 1e-7)) = 3 dB
    assert metrics.sdr(x, np.clip(x, -level, level)) == pytest.approx(3.0, abs=1e-5)


def test_restoration_metrics_keys_and_truncation():
    rng = np.random.default_rng(7)
    clean = rng.normal(size=6000)
    estimate = np.concatenate([clean + 0.1 * rng.normal(size=6000), rng.normal(size=37)])  # 37 extra samples
    out = metrics.restoration_metrics(clean, estimate, 22050)
    assert set(out) == {"lsd", "si_sdr", "sdr"}
    cut = estimate[:6000]
    assert out["lsd"] == pytest.approx(_lsd_reference_loop(clean, cut)[0], rel=1e-10)
    assert out["sdr"] == pytest.approx(10 * np.log10(np.sum(clean**2) / np.sum((clean - cut) ** 2)), abs=1e-9)
    assert out["si_sdr"] == pytest.approx(metrics.si_sdr(clean, cut), abs=1e-12)
    # Shorter estimate: the clean signal is cut instead.
    short = metrics.restoration_metrics(clean, cut[:5000], 22050)
    assert short["sdr"] == pytest.approx(metrics.sdr(clean[:5000], cut[:5000]), abs=1e-12)
