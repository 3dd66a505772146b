"""Smoke test of benchmarks/throughput.py on the tiny config: every part runs and reports
positive, self-consistent figures."""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_throughput_benchmark_runs_on_the_tiny_config(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import throughput

    out = tmp_path / "throughput.json"
    assert throughput.main([
        "--config", str(ROOT / "configs" / "tiny.py"), "--what", "train,forward,enhance", "--batch-size", "2",
        "--steps", "2", "--warmup", "1", "--repeats", "1", "--seconds", "0.5", "--batch-sizes", "2",
        "--num-steps", "2", "--override", "training.tensorboard=False", "--out", str(out),
    ]) == 0
    result = json.loads(out.read_text())
    train, forward, (enhance,) = result["train"], result["forward"], result["enhance"]
    assert train["steps_per_sec"] > 0 and train["flops_per_step_per_device"] > 0
    assert train["examples_per_sec"] == train["steps_per_sec"] * 2
    assert train["tflops_per_device"] > 0 and train["compile_seconds"] > 0
    assert forward["flops"] > 0 and forward["input_shape"][-1] % 64 == 0
    # PC + ALD: two network calls per step; the factor is time over audio time.
    assert enhance["network_calls"] == 4
    assert enhance["real_time_factor"] == enhance["seconds_median"] / (2 * 0.5)
    assert result["peak_tflops_per_device"] is None or result["platform"] != "cpu"
    # The forward's FLOPs agree with the training step's (a step is one forward and its
    # backward on a batch: a few forwards' worth per example), so the counts are not garbage.
    per_example_forward = forward["flops"] / (forward["input_shape"][-1] / 64)  # tiny: 64 frames in training
    assert 1.5 < train["flops_per_step_per_device"] / (2 * per_example_forward) < 6
