"""The speed benchmarks: benchmarks/device_run.sh (which drives throughput.py) on the tiny
config, in an environment that has only what the GPU machines' image has, and the target
table of benchmarks/compare.py."""
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Packages of ours that the GPU image lacks and that cannot travel as small wheels (TensorFlow)
# or need not: the benchmarks must not import them.
NOT_ON_GPU_IMAGE = ("tensorflow", "tensorflow_datasets", "soundfile", "pesq", "pystoi")

BLOCKER = f"""
import importlib.abc, sys
class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {NOT_ON_GPU_IMAGE!r}:
            raise ImportError("not on the GPU image: " + name)
sys.meta_path.insert(0, _Blocked())
"""


def test_device_runbook_runs_without_the_packages_the_gpu_image_lacks(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    (tmp_path / "no_wheels").mkdir()
    out = tmp_path / "out"
    env = {
        **os.environ, "PYTHONPATH": str(site), "PYTHON": sys.executable, "OUT": str(out),
        "WHEELS": str(tmp_path / "no_wheels"), "CONFIG": "configs/tiny.py", "AUDIO_SECONDS": "0.5",
        "NUM_STEPS": "2", "BATCH_SIZES": "2", "TRAIN_BATCH": "2", "TRAIN_STEPS": "2", "REPEATS": "1",
        "JAX_PLATFORMS": "cpu",
    }
    # The blocker is live: TensorFlow cannot be imported in this environment.
    blocked = subprocess.run([sys.executable, "-c", "import tensorflow"], env=env, capture_output=True, text=True)
    assert blocked.returncode != 0 and "not on the GPU image" in blocked.stderr

    run = subprocess.run(["bash", "benchmarks/device_run.sh", "ours"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900)
    log = (out / "device_run.log").read_text() if (out / "device_run.log").exists() else ""
    assert run.returncode == 0, run.stdout + run.stderr + log

    fp32, bf16 = (json.loads((out / f"ours_{d}.json").read_text()) for d in ("fp32", "bf16"))
    train = json.loads((out / "train_bf16.json").read_text())
    assert (fp32["compute_dtype"], bf16["compute_dtype"], train["compute_dtype"]) == ("float32", "bfloat16", "bfloat16")
    forward, (enhance,) = fp32["forward"], fp32["enhance"]
    t = train["train"]
    assert t["steps_per_sec"] > 0 and t["flops_per_step_per_device"] > 0 and t["compile_seconds"] > 0
    assert t["examples_per_sec"] == t["steps_per_sec"] * 2 and t["tflops_per_device"] > 0
    assert forward["flops"] > 0 and forward["input_shape"][-1] % 64 == 0
    # PC + ALD: two network calls per step; the factor is time over audio time.
    assert enhance["network_calls"] == 4 and bf16["enhance"][0]["network_calls"] == 4
    assert enhance["real_time_factor"] == enhance["seconds_median"] / (2 * 0.5)
    assert train["peak_tflops_per_device"] is None  # no peak is claimed for a CPU
    # The forward's FLOPs agree with the training step's (a step is one forward and its
    # backward on a batch: a few forwards' worth per example), so the counts are not garbage.
    per_example_forward = forward["flops"] / (forward["input_shape"][-1] / 64)  # tiny: 64 frames in training
    assert 1.5 < t["flops_per_step_per_device"] / (2 * per_example_forward) < 6
    table = (out / "compare.md").read_text()
    assert "| train bfloat16, global batch 2 |" in table and "MFU n/a" in table


def _throughput(dtype, forward_s, frames, enhance, num_params=65_590_822):
    return {"compute_dtype": dtype, "device_kind": "GPU X", "num_params": num_params,
            "forward": {"input_shape": [1, 1, 256, frames], "seconds_median": forward_s},
            "enhance": [{"batch_size": b, "seconds_of_audio_each": 10.0, "network_calls": 60, "frames": 1280,
                         "seconds_median": s} for b, s in enhance]}


def test_compare_table_ratios_and_verdicts():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import compare

    reference = {"device": "GPU X", "params": 65_590_822,
                 "forward": {"input_shape": [1, 2, 256, 1280], "seconds_median": 0.10},
                 "enhance": [{"batch_size": b, "seconds_of_audio_each": 10.0, "network_calls": 60, "frames": 1280,
                              "seconds_median": s} for b, s in ((1, 6.0), (16, 40.0))]}
    ours = {"fp32": _throughput("float32", 0.06, 1280, [(1, 1.5), (16, 20.0)]),
            "bf16": _throughput("bfloat16", 0.04, 1408, [(1, 2.5)])}
    other_network = _throughput("float32", 0.01, 1280, [(1, 0.1)], num_params=1000)
    assert {r[3] for r in compare.compare_rows({"fp32": other_network}, reference, None)} == \
        {"not comparable (network or shape differs)"}
    train = {"compute_dtype": "bfloat16", "train": {"global_batch_size": 32, "steps_per_sec": 2.0,
                                                    "tflops_per_device": 400.0, "mfu": 0.40}}
    rows = {r[0]: r[1:] for r in compare.compare_rows(ours, reference, train)}
    # forward 0.06 / 0.10 = 0.6 > 1/2; 10 s at batch 1: 1.5 / 6 = 0.25 <= 1/3.
    assert rows["forward float32, batch 1, 1280 frames"][2:] == ["0.60", "≤ 0.50", "not met"]
    assert rows["enhance float32, 1 × 10 s, 60 network calls"][2:] == ["0.25", "≤ 0.33", "met"]
    assert rows["enhance float32, 16 × 10 s, 60 network calls"][2:] == ["0.50", "—", "—"]
    # Different frame counts are not compared; a bf16 enhancement at 2.5 / 6 = 0.42 misses ⅓.
    assert rows["forward bfloat16, batch 1, 1408 frames"][2] == "not comparable (network or shape differs)"
    assert rows["enhance bfloat16, 1 × 10 s, 60 network calls"][2:] == ["0.42", "≤ 0.33", "not met"]
    assert rows["train bfloat16, global batch 32"][2:] == ["MFU 40.0 %", "MFU ≥ 35 %", "met"]


def test_prior_throughput_modes_and_their_compare_rows(tmp_path):
    """throughput.py's prior parts (train, forward D(x, σ), unconditional sampling) on a tiny
    CQT-Diff with tiny sizes, and the sample rows compare.py makes of them."""
    out = tmp_path / "ours_fp32.json"
    cmd = [sys.executable, "benchmarks/throughput.py", "--config", "configs/tiny_prior.py",
           # Smaller still than tiny_prior (2 levels, 1 dilated conv per block): compiling the
           # training step is most of the test's time.
           "--override", "model.backbone_kwargs.num_layers=1", "--override", "model.backbone_kwargs.depth=2",
           "--override", "model.backbone_kwargs.Ns=(4,8,8)", "--override", "data.segment_length=4096",
           "--what", "train,forward,sample", "--batch-size", "2", "--steps", "1", "--warmup", "0",
           "--repeats", "1", "--num-steps", "2", "--out", str(out)]
    run = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    ours = json.loads(out.read_text())
    assert ours["model"] == "cqtdiff" and ours["train"]["input_shape"] == [2, 4096]
    assert ours["train"]["steps_per_sec"] > 0 and ours["train"]["flops_per_step_per_device"] > 0
    forward, (sample,) = ours["forward"], ours["sample"]
    assert forward["input_shape"] == [1, 4096] and forward["flops"] > 0 and "load_before" in forward
    # Heun with T = 2: one Heun step (2 calls) and the last Euler step (1 call).
    assert (sample["num_steps"], sample["network_calls"], sample["length"]) == (2, 3, 4096)
    assert sample["compile_seconds"] > 0
    assert sample["seconds_per_sampled_second"] == sample["seconds_median"] / (4096 / 22050)

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import compare

    half = {**sample, "seconds_per_sampled_second": 3 * sample["seconds_per_sampled_second"],
            "seconds_per_network_call": 3 * sample["seconds_per_network_call"]}
    reference = {"params": ours["num_params"], "forward": {**forward, "seconds_median": 2 * forward["seconds_median"]},
                 "sample": [half]}
    rows = {r[0]: r[1:] for r in compare.compare_rows({"fp32": ours}, reference, None)}
    assert rows["forward float32, batch 1, 4096 samples"][2:] == ["0.50", "≤ 0.50", "met"]
    key = "sample float32, 1 × 4096 samples, T = 2, 3 network calls, per sampled second"
    assert rows[key][2:] == ["0.33", "≤ 0.50", "met"]
    other = {**reference, "sample": [{**half, "network_calls": 5}]}
    assert compare.compare_rows({"fp32": ours}, other, None)[1][3] == "not comparable (network or shape differs)"


def test_prior_bwe_throughput_and_its_compare_rows(tmp_path):
    """throughput.py --what bwe (guided BWE through Prior.restore) on the smallest tiny CQT-Diff,
    and the bwe rows compare.py makes of it beside a reference of the torch script's shape."""
    out = tmp_path / "ours_fp32.json"
    cmd = [sys.executable, "benchmarks/throughput.py", "--config", "configs/tiny_prior.py",
           "--override", "model.backbone_kwargs.num_layers=1", "--override", "model.backbone_kwargs.depth=2",
           "--override", "model.backbone_kwargs.Ns=(4,8,8)", "--override", "data.segment_length=4096",
           "--what", "bwe", "--num-steps", "2", "--cutoff", "2000", "--out", str(out)]
    run = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    ours = json.loads(out.read_text())
    assert "train" not in ours and "sample" not in ours
    (bwe,) = ours["bwe"]
    # Heun with T = 2: 2T - 1 guided network calls, on one bucket of exactly the length (one row).
    assert (bwe["num_steps"], bwe["network_calls"], bwe["length"], bwe["batch_size"]) == (2, 3, 4096, 1)
    assert bwe["batches"] == [[4096, 1, 1]]
    # CQT-Diff's BWE script: firwin 500 taps, ξ 0.2, gradients clipped at 1, no data consistency.
    assert (bwe["cutoff_hz"], bwe["numtaps"], bwe["xi"], bwe["clip_grad"], bwe["data_consistency"]) == \
        (2000.0, 500, 0.2, 1.0, False)
    assert 0 < bwe["compile_seconds"] <= bwe["first_call_seconds"] and "load_before" in bwe
    assert bwe["seconds_per_restored_second"] == bwe["seconds_median"] / (4096 / 22050)
    assert bwe["seconds_per_network_call"] == bwe["seconds_median"] / 3

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import compare

    # The torch script's bwe row: the same fields, 4 times slower.
    ref_row = {key: bwe[key] for key in ("batch_size", "length", "num_steps", "network_calls", "cutoff_hz", "numtaps")}
    ref_row.update(seconds_per_restored_second=4 * bwe["seconds_per_restored_second"],
                   seconds_per_network_call=4 * bwe["seconds_per_network_call"])
    reference = {"params": ours["num_params"], "bwe": [ref_row]}
    rows = {r[0]: r[1:] for r in compare.compare_rows({"fp32": ours}, reference, None)}
    key = "bwe float32, 1 × 4096 samples, T = 2, 3 network calls, per restored second"
    assert rows[key][2:] == ["0.25", "≤ 0.50", "met"]
    assert rows["bwe float32, 1 × 4096 samples, per network call"][2:] == ["0.25", "—", "—"]
    slower = {**reference, "bwe": [{**ref_row, "seconds_per_restored_second": 1.5 * bwe["seconds_per_restored_second"]}]}
    assert {r[0]: r for r in compare.compare_rows({"fp32": ours}, slower, None)}[key][4:] == ["≤ 0.50", "not met"]
    # Another cutoff or another network is other work: no ratio.
    for other in ({**reference, "bwe": [{**ref_row, "cutoff_hz": 1000.0}]}, {**reference, "params": 1}):
        assert {r[3] for r in compare.compare_rows({"fp32": ours}, other, None)} == \
            {"not comparable (network or shape differs)"}
