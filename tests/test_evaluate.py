"""`diffrestore evaluate`'s measure selection, SDR and the improvements over the degraded input.

Tiny float wav files (no PCM rounding, so the closed forms hold to float32 precision) and only
the cheap measures: no PESQ or ESTOI is computed here.
"""
import json

import numpy as np
import pytest
import soundfile as sf

from diffrestore import evaluate, metrics
from diffrestore.cli import main as cli_main

RATE = 16000


def _write_folders(tmp_path, names=("a", "sub/b")):
    """clean s, noisy s + e with ‖e‖² = ‖s‖²/10 (SDR 10 dB), enhanced s + e/10 (SDR 30 dB)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for name in names:
        s = 0.1 * rng.normal(size=RATE // 2)
        e = rng.normal(size=s.shape)
        e *= np.sqrt(np.sum(s**2) / 10 / np.sum(e**2))
        for folder, x in (("clean", s), ("noisy", s + e), ("enhanced", s + 0.1 * e)):
            path = tmp_path / folder / f"{name}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, x, RATE, subtype="FLOAT")
            arrays[folder, name] = sf.read(path, dtype="float32")[0].astype(np.float64)
    return arrays


def test_music_measures_with_improvements(tmp_path):
    arrays = _write_folders(tmp_path)
    rows = evaluate.evaluate_folders(tmp_path / "clean", tmp_path / "enhanced", tmp_path / "noisy",
                                     measures=["sdr", "lsd", "si_sdr"])
    assert [r["file"] for r in rows] == ["a.wav", "sub/b.wav"]
    for row in rows:
        # Only what was asked for (in column order), its noisy figures and the two improvements.
        assert list(row) == ["file", "noisy_si_sdr", "noisy_lsd", "noisy_sdr", "si_sdr", "lsd", "sdr",
                             "sdr_improvement", "si_sdr_improvement"]
        name = row["file"][: -len(".wav")]
        clean, noisy, enhanced = (arrays[f, name] for f in ("clean", "noisy", "enhanced"))
        assert row["noisy_sdr"] == pytest.approx(10.0, abs=1e-3)
        assert row["sdr"] == pytest.approx(30.0, abs=1e-3)
        assert row["sdr_improvement"] == pytest.approx(20.0, abs=2e-3)
        assert row["sdr_improvement"] == pytest.approx(row["sdr"] - row["noisy_sdr"], abs=1e-12)
        assert row["si_sdr_improvement"] == pytest.approx(row["si_sdr"] - row["noisy_si_sdr"], abs=1e-12)
        # An independent SDR of the files as read, and the references' LSD.
        expected_sdr = 10 * np.log10(np.sum(clean**2) / np.sum((clean - enhanced) ** 2))
        assert row["sdr"] == pytest.approx(expected_sdr, abs=1e-6)
        assert row["lsd"] == pytest.approx(metrics.lsd_cqtdiff(clean, enhanced), rel=1e-6)
        assert row["noisy_lsd"] > row["lsd"]


def test_measure_names_are_checked():
    assert evaluate.resolve_measures(None) == ("pesq", "estoi", "si_sdr", "lsd", "sdr", "si_sir", "si_sar", "dnsmos")
    assert evaluate.resolve_measures(None, with_noisy=False, with_clean=False) == ("dnsmos",)
    assert "si_sir" not in evaluate.resolve_measures(None, with_noisy=False)
    assert evaluate.resolve_measures("sdr, lsd") == ("lsd", "sdr")
    with pytest.raises(ValueError, match=r"unknown measure\(s\) snr; valid: pesq, estoi, si_sdr, lsd, sdr"):
        evaluate.resolve_measures(["sdr", "snr"])
    with pytest.raises(ValueError, match="valid:"):
        evaluate.resolve_measures("")
    with pytest.raises(ValueError, match="si_sir need the noisy inputs"):
        evaluate.resolve_measures(["si_sir"], with_noisy=False)


def test_without_noisy_no_improvements(tmp_path):
    _write_folders(tmp_path, names=("a",))
    (row,) = evaluate.evaluate_folders(tmp_path / "clean", tmp_path / "enhanced", measures="sdr,lsd_db")
    assert list(row) == ["file", "sdr", "lsd_db"]


def test_cli_measures_flag(tmp_path, capsys):
    _write_folders(tmp_path)
    out = tmp_path / "res" / "results.csv"
    base = ["evaluate", "--clean", str(tmp_path / "clean"), "--enhanced", str(tmp_path / "enhanced"),
            "--noisy", str(tmp_path / "noisy"), "--out", str(out)]
    assert cli_main(base + ["--measures", "lsd,si_sdr,sdr"]) == 0
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert "pesq" not in summary and "estoi" not in summary
    assert summary["sdr_improvement"]["n"] == 2
    assert summary["sdr_improvement"]["mean"] == pytest.approx(20.0, abs=2e-3)
    assert "si_sdr_improvement" in capsys.readouterr().out  # the printed table fits the long names
    assert cli_main(base + ["--measures", "lsd,bogus"]) == 2
    err = capsys.readouterr().err
    assert "bogus" in err and "valid: pesq" in err
