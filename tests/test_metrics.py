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
