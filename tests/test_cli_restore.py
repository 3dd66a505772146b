"""`diffrestore restore` on a folder of mixed formats with broken files among them (tiny prior)."""
import numpy as np
import soundfile as sf

from diffrestore.cli import main as cli_main


def _tone(seconds, rate, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.2 * np.sin(2 * np.pi * 330 * t)[:, None] * np.ones(channels)
    return (tone + 0.01 * rng.normal(size=(t.size, channels))).astype(np.float32)


def test_restore_folder_keeps_formats_and_names_broken_files(tiny_prior_dir, tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    good = {
        "a.wav": (_tone(0.3, 22050), 22050, "WAV", "PCM_16"),  # the prior's rate, mono
        "b.flac": (_tone(0.25, 44100, channels=2, seed=1), 44100, "FLAC", "PCM_24"),  # 44.1 kHz stereo 24-bit
        "sub/c.wav": (_tone(0.35, 16000, seed=2), 16000, "WAV", "FLOAT"),  # 16 kHz in a subfolder
    }
    for rel, (data, rate, fmt, subtype) in good.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(src / rel, data, rate, format=fmt, subtype=subtype)
    sf.write(src / "empty.wav", np.zeros((0, 1), np.float32), 22050)
    nan = _tone(0.3, 22050)
    nan[10] = np.nan
    sf.write(src / "sub" / "nan.wav", nan, 22050, subtype="FLOAT")
    (src / "notes.wav").write_text("not audio")
    sf.write(src / "tiny.wav", _tone(0.005, 22050), 22050)  # 110 samples: shorter than the 500-tap filter
    argv = ["restore", "--checkpoint", str(tiny_prior_dir), "--task", "bwe", "--cutoff", "2000", "--steps", "2",
            "--quiet", str(src), str(out)]
    assert cli_main(argv) == 1  # some files failed
    err = capsys.readouterr().err
    for rel, (data, rate, fmt, subtype) in good.items():
        info = sf.info(out / rel)
        assert (info.samplerate, info.channels, info.frames, info.format, info.subtype) == (rate, data.shape[1], data.shape[0], fmt, subtype)
        restored, _ = sf.read(out / rel, always_2d=True)
        assert np.all(np.isfinite(restored))
    for name, reason in {"empty.wav": "no samples", "nan.wav": "NaN", "notes.wav": "not a readable audio file",
                         "tiny.wav": "shorter than the minimum 500"}.items():
        line = next((l for l in err.splitlines() if name in l), "")
        assert reason in line, (name, err)
    assert not list(out.rglob("*.part")) and not (out / "tiny.wav").exists()
    # A second run skips what is done and fails the same files again.
    assert cli_main(argv) == 1
    assert "restored 0 file(s)" in capsys.readouterr().out
    # A bad option is an error before any file is read.
    assert cli_main(["restore", "--checkpoint", str(tiny_prior_dir), "--task", "bwe", "--cutoff", "30000",
                     str(src), str(tmp_path / "out2")]) == 2
    assert "Nyquist" in capsys.readouterr().err and not (tmp_path / "out2").exists()
