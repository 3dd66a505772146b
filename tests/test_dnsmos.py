"""DNSMOS: ours (diffrestore.dnsmos, no librosa) against the speechmos package's own function on
the same signals, and `diffrestore evaluate` without clean references."""
import numpy as np
import pytest
import soundfile as sf

from diffrestore import dnsmos

RATE = 16000


def _speechlike(seconds, seed):
    """A voiced-like tone sweep with noise bursts: scores away from the extremes."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    voice = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / RATE) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    return (0.2 * voice * envelope + 0.03 * rng.standard_normal(t.size)).astype(np.float32)


def test_log_mel_is_librosas():
    librosa = pytest.importorskip("librosa")
    x = _speechlike(2.0, 0)
    ref = librosa.feature.melspectrogram(y=x, sr=RATE, n_fft=321, hop_length=160, n_mels=120)
    ref = ((librosa.power_to_db(ref, ref=np.max) + 40) / 40).T
    np.testing.assert_allclose(dnsmos.log_mel(x), ref, atol=1e-5)


@pytest.mark.parametrize("seconds", [3.0, 9.01, 12.5])
def test_scores_equal_the_packages_function(seconds):
    """Shorter than a window (repeated), one window, four windows."""
    pytest.importorskip("librosa")
    from speechmos import dnsmos as reference

    x = _speechlike(seconds, int(seconds))
    want = reference.run(x, RATE)
    got = dnsmos.dnsmos(x, RATE)
    for ours, theirs in (("sig", "sig_mos"), ("bak", "bak_mos"), ("ovrl", "ovrl_mos"), ("p808", "p808_mos")):
        np.testing.assert_allclose(got[ours], float(want[theirs]), rtol=1e-5, err_msg=ours)
    assert 1.0 < got["ovrl"] < 5.0


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="16000 Hz"):
        dnsmos.dnsmos(np.zeros(100, np.float32) + 0.1, 8000)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        dnsmos.dnsmos(np.full(100, 1.5, np.float32))
    with pytest.raises(ValueError, match="silent"):
        dnsmos.dnsmos(np.zeros(100, np.float32))


def test_evaluate_without_clean_references(tmp_path, capsys):
    from diffrestore.cli import main

    enhanced, noisy = tmp_path / "enhanced", tmp_path / "noisy"
    for folder, seed in ((enhanced, 0), (noisy, 1)):
        (folder / "a").mkdir(parents=True)
        clean = _speechlike(2.0, 5)
        sf.write(folder / "a" / "one.wav", clean + 0.05 * seed * np.random.default_rng(seed).standard_normal(clean.size), RATE)
        # a 22.05 kHz file is resampled to DNSMOS's 16 kHz
        sf.write(folder / "two.wav", _speechlike(1.5, 7)[: int(1.5 * 22050)], 22050)
    out = tmp_path / "scores.csv"
    assert main(["evaluate", "--enhanced", str(enhanced), "--noisy", str(noisy), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "dnsmos_ovrl" in text and "noisy_dnsmos_ovrl" in text
    header = out.read_text().splitlines()[0].split(",")
    assert header[0] == "file" and {"dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"} <= set(header)
    assert len(out.read_text().splitlines()) == 3
    with pytest.raises(ValueError, match="need clean references"):
        from diffrestore.evaluate import evaluate_folders

        evaluate_folders(None, enhanced, measures="pesq,dnsmos")
