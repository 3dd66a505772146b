"""benchmarks/restoration.py on the tiny prior: its files, its grid and its degraded figures.

The tiny prior's weights are random, so the restored figures are only checked to be finite;
the degraded ones must be exactly what `restoration.degrade` and `metrics.restoration_metrics`
give for the same crop.
"""
import csv
import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import soundfile as sf

from diffrestore import metrics, restoration
from diffrestore.data import write_synthetic_music

ROOT = pathlib.Path(__file__).resolve().parents[1]
RATE = 22050
CROP = 8192  # tiny_prior's training segment: the benchmark's default crop


def _benchmark(*args, timeout=600):
    return subprocess.run([sys.executable, "benchmarks/restoration.py", *map(str, args)], cwd=ROOT,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True, timeout=timeout)


def _expected_degraded(path, task, **options):
    """The degraded figures of the middle CROP samples of a file, computed here independently."""
    wave, rate = sf.read(str(path), dtype="float32")
    assert rate == RATE and wave.ndim == 1
    start = (wave.shape[0] - CROP) // 2
    clean = wave[start:start + CROP]
    clip_sdr = options.pop("clip_sdr_db", None)
    spec = restoration.make_task(task, RATE, **options)
    return metrics.restoration_metrics(clean, restoration.degrade(clean, spec, RATE, clip_sdr_db=clip_sdr), RATE)


def test_restoration_benchmark_writes_one_row_per_file_and_combination(tiny_prior_dir, tmp_path):
    clean = tmp_path / "clean"
    write_synthetic_music(clean, num_train=0, num_valid=0, num_test=2, seconds=0.5)  # clean/test/*.wav
    out = tmp_path / "out"
    run = _benchmark("--checkpoint", tiny_prior_dir, "--clean", clean, "--out", out, "--tasks", "bwe,declip",
                     "--filters", "fir", "--cutoff", 1000, "--clip-sdr", 3, "--steps", 2)
    assert run.returncode == 0, run.stdout + run.stderr
    for name in ("restoration.csv", "restoration.md", "restoration.png", "restoration.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "restoration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    with (out / "restoration.csv").open() as f:
        rows = list(csv.DictReader(f))
    # 2 files × (bwe fir + declip at 3 dB) × T = 2 × the default ξ.
    assert len(rows) == 2 * 2
    assert sorted((r["file"], r["task"]) for r in rows) == sorted(
        (f"test/test_0000{i}.wav", t) for i in (0, 1) for t in ("bwe", "declip"))
    for row in rows:
        # Heun with T = 2: one Heun step (2 network calls) and the last Euler step (1).
        assert int(row["network_calls"]) == 2 * 2 - 1 and int(row["num_steps"]) == 2
        assert int(row["batches"]) == 1  # the crop is the training segment: one bucket, no chunks
        figures = {k: float(row[k]) for k in row if k.startswith(("degraded_", "restored_"))}
        assert len(figures) == 6 and all(math.isfinite(v) for v in figures.values()), row
        assert float(row["seconds_per_second"]) > 0 and float(row["compile_seconds"]) > 0
        assert float(row["seconds_per_second"]) == float(row["restore_seconds"]) / (CROP / RATE)
        task_options = dict(cutoff_hz=1000.0, filter="fir") if row["task"] == "bwe" else dict(clip_sdr_db=3.0)
        expected = _expected_degraded(clean / row["file"], row["task"], **task_options)
        for key, value in expected.items():
            np.testing.assert_allclose(float(row[f"degraded_{key}"]), value, rtol=1e-9, err_msg=key)
        if row["task"] == "declip":
            assert abs(float(row["degraded_sdr"]) - 3.0) < 1e-3  # the clip level was set for 3 dB
        assert float(row["xi"]) == 0.2  # the tasks' default ξ (CQT-Diff's scripts)

    report = json.loads((out / "restoration.json").read_text())
    assert len(report["rows"]) == 4 and len(report["summary"]) == 2
    assert report["device_kind"] and report["jax"] and "load_before" in report and "load_after" in report
    # Two programs compiled (one per task), none of them during the timed calls.
    assert [e["task"] for e in report["compile_log"]] == ["bwe", "declip"]
    table = (out / "restoration.md").read_text()
    assert table.count("\n| bwe | fir 1000 Hz | 2 | 0.2 | 2 |") == 1
    assert table.count("\n| declip | SDR 3 dB | 2 | 0.2 | 2 |") == 1


def test_restoration_benchmark_bad_input_names_the_option(tiny_prior_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not audio")
    run = _benchmark("--checkpoint", tiny_prior_dir, "--clean", empty, "--out", tmp_path / "out", timeout=120)
    assert run.returncode == 2 and f"--clean {empty}: no audio files" in run.stderr, run.stderr
    run = _benchmark("--checkpoint", tiny_prior_dir, "--clean", empty, "--out", tmp_path / "out",
                     "--tasks", "bwe,denoise", timeout=120)
    assert run.returncode == 2 and "--tasks: unknown 'denoise'" in run.stderr, run.stderr
    assert not (tmp_path / "out").exists()
