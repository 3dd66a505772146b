"""`diffrestore enhance` on a folder of mixed formats with broken files among them."""
import numpy as np
import soundfile as sf

from diffrestore.cli import main as cli_main


def _tone(seconds, rate, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    voice = 0.3 * np.sin(2 * np.pi * 200 * t)[:, None] * np.ones(channels)
    return (voice + 0.05 * rng.normal(size=(t.size, channels))).astype(np.float32)


def _write_inputs(root):
    good = {
        "a.wav": (_tone(0.4, 16000), 16000, "WAV", "PCM_16"),  # 16 kHz mono wav
        "music/b.flac": (_tone(0.3, 48000, channels=2, seed=1), 48000, "FLAC", "PCM_24"),  # 48 kHz stereo 24-bit
        "sub/c.wav": (_tone(0.5, 8000, seed=2), 8000, "WAV", "FLOAT"),  # 8 kHz in a subfolder
        "sub/silent.wav": (np.zeros((4000, 1), np.float32), 16000, "WAV", "PCM_16"),  # silence stays silence
    }
    for rel, (data, rate, fmt, subtype) in good.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, data, rate, format=fmt, subtype=subtype)
    sf.write(root / "empty.wav", np.zeros((0, 1), np.float32), 16000)
    nan = _tone(0.3, 16000)
    nan[100] = np.nan
    sf.write(root / "sub/nan.wav", nan, 16000, subtype="FLOAT")
    (root / "notes.wav").write_text("this is not audio")
    return good, {"empty.wav": "no samples", "sub/nan.wav": "NaN", "notes.wav": "not a readable audio file"}


def test_enhance_folder_keeps_formats_and_names_broken_files(sgmse_fixtures, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    good, broken = _write_inputs(src)
    argv = ["enhance", "--checkpoint", str(sgmse_fixtures / "sgmse_small.ckpt"), str(src), str(out),
            "--sampler", "pc", "--corrector", "none", "--num-steps", "1", "--quiet"]
    assert cli_main(argv) == 1  # some files failed
    captured = capsys.readouterr()
    assert "enhanced 4 file(s)" in captured.out and "failed 3" in captured.out
    for rel, reason in broken.items():
        line = next(ln for ln in captured.err.splitlines() if str(src / rel) in ln)
        assert reason in line, line
        assert not (out / rel).exists()
    for rel, (data, rate, fmt, subtype) in good.items():
        info = sf.info(out / rel)
        assert (info.samplerate, info.channels, info.frames, info.format, info.subtype) == (
            rate, data.shape[1], data.shape[0], fmt, subtype), rel
        enhanced = sf.read(out / rel, always_2d=True)[0]
        assert np.all(np.isfinite(enhanced))
        if rel != "sub/silent.wav":
            assert not np.allclose(enhanced, data, atol=1e-2), rel  # it was really processed
    np.testing.assert_array_equal(sf.read(out / "sub/silent.wav")[0], 0.0)
    assert not list(out.rglob("*.part"))  # no temporary files left behind

    # Run again: the finished outputs are skipped (an interrupted job resumes), broken still named.
    before = {rel: (out / rel).stat().st_mtime_ns for rel in good}
    assert cli_main(argv) == 1
    assert "enhanced 0 file(s), skipped 4 existing, failed 3" in capsys.readouterr().out
    assert {rel: (out / rel).stat().st_mtime_ns for rel in good} == before
