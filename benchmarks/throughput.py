"""Training and enhancement throughput of a config: steps/s, FLOPs, MFU, real-time factor.

    python benchmarks/throughput.py --config configs/sgmse_vbd.py --out throughput.json
    python benchmarks/throughput.py --config configs/sgmse_vbd.py --override model.dtype=bfloat16 \
        --override training.batch_size=32 --what train
    python benchmarks/throughput.py --what forward --override model.backbone_kwargs.fir=False

Measures, with random parameters and random batches of the config's shapes (throughput does
not depend on the values):
- train: the sharded update step compiled ahead of time from shapes (compile seconds), then
  `--steps` timed steps after `--warmup`: steps/s, examples/s, FLOPs per step and per device
  from XLA's cost analysis, achieved TFLOP/s per device and MFU (achieved / peak; the peak
  comes from the device table below for the compute dtype, or `--peak-tflops`; none on CPU);
- forward: one network call on a `--seconds` long spectrogram at batch 1 (seconds, FLOPs);
- enhance: `Enhancer.enhance` with the config's sampler (SGMSE+: PC reverse diffusion +
  annealed Langevin, N = 30, 2N network calls; `--sampler`, `--num-steps` override) on
  `--seconds` long signals at each of `--batch-sizes`, after a warm-up call that compiles:
  real-time factor = compute seconds per second of audio (lower is faster).
Writes JSON (with device, JAX version, date and the command line) to `--out` and prints it.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import datetime
import importlib.util
import json
import pathlib
import platform
import statistics
import sys
import time
from typing import Any, NamedTuple

import numpy as np

# Dense peak TFLOP/s per device, by compute dtype ("float32" is TF32 tensor-core math on
# NVIDIA, which XLA uses for float32 convolutions and matmuls by default). Matched against
# jax's device_kind, first hit wins.
PEAK_TFLOPS = [
    ("H200", {"bfloat16": 989.4, "float32": 494.7}),
    ("H100", {"bfloat16": 989.4, "float32": 494.7}),  # SXM
    ("A100", {"bfloat16": 312.0, "float32": 156.0}),
    ("TPU v6", {"bfloat16": 918.0}),
    ("TPU v5p", {"bfloat16": 459.0}),
    ("TPU v5 lite", {"bfloat16": 197.0}),
    ("TPU v5e", {"bfloat16": 197.0}),
    ("TPU v4", {"bfloat16": 275.0}),
]


def load_config(path: str, overrides: list[str]):
    """`get_config()` of a config file, with `group.field=value` overrides (Python literals)."""
    spec = importlib.util.spec_from_file_location("benchmark_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    for item in overrides:
        key, _, text = item.partition("=")
        if not _:
            raise ValueError(f"--override {item!r}: expected group.field=value")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text  # a bare string such as bfloat16
        node = config
        *groups, field = key.split(".")
        for g in groups:
            node = node[g]
        if field not in node and groups[-1:] != ["backbone_kwargs"]:
            # backbone_kwargs holds only what differs from the backbone's defaults; any of
            # the backbone's constructor arguments may be added (checked when it is built).
            raise ValueError(f"--override {item!r}: the config has no field {key}")
        with node.unlocked() if hasattr(node, "unlocked") else contextlib.nullcontext():
            node[field] = value
    return config


def peak_tflops(device_kind: str, dtype: str, override: float | None) -> tuple[float | None, str]:
    if override:
        return float(override), "--peak-tflops"
    for name, peaks in PEAK_TFLOPS:
        if name.lower() in device_kind.lower() and dtype in peaks:
            return peaks[dtype], f"{name} dense {dtype}"
    return None, "unknown device: pass --peak-tflops"


def _flops(compiled) -> float | None:
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else {}
    value = (analysis or {}).get("flops")
    return float(value) if value else None


def _timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


class TrainSetup(NamedTuple):
    """A config's sharded training step compiled from shapes, ready to call as
    `step(state, batch, key)`, and what it was built from."""

    step: Any
    compile_seconds: float
    state: Any
    batch: Any
    key: Any
    programs: Any
    mesh: Any


def train_setup(config) -> TrainSetup:
    """Compiles the config's training step and makes a fresh state and one random global batch
    of its crop length (throughput does not depend on the values)."""
    import jax

    from diffrestore.data.defaults import crop_length
    from diffrestore.train import build_programs, global_batch, make_mesh
    from diffrestore.train.mesh import check_batch_size

    mesh = make_mesh(config.mesh)
    batch_size = int(config.training.batch_size)
    local = check_batch_size(batch_size, mesh)
    samples = crop_length(config.data)
    programs = build_programs(config, mesh)
    step, compile_seconds = programs.compile_step_abstract(batch_size, samples)
    rng = np.random.default_rng(jax.process_index())
    batch = global_batch(
        {"clean": 0.1 * rng.standard_normal((local, samples), np.float32),
         "noisy": 0.1 * rng.standard_normal((local, samples), np.float32)}, mesh)
    return TrainSetup(step, compile_seconds, programs.initialize(jax.random.key(0)), batch,
                      jax.random.key(1), programs, mesh)


def bench_train(config, args, peak) -> dict:
    import jax

    setup = train_setup(config)
    step, state = setup.step, setup.state
    batch_size, samples = setup.batch["clean"].shape
    flops = _flops(step)

    def one():
        nonlocal state
        state, measurements = step(state, setup.batch, setup.key)
        jax.block_until_ready(measurements)

    _timed(one, args.warmup)
    seconds = _timed(one, args.steps)
    steps_per_sec = 1.0 / statistics.median(seconds)
    result = {
        "global_batch_size": batch_size, "mesh": dict(setup.mesh.shape), "num_params": setup.programs.num_params,
        "input_shape": [batch_size, samples], "compile_seconds": setup.compile_seconds,
        "steps_per_sec": steps_per_sec, "examples_per_sec": steps_per_sec * batch_size,
        "step_seconds": seconds, "flops_per_step_per_device": flops,
    }
    memory = step.memory_analysis()
    if memory is not None:
        result["temp_bytes_per_device"] = int(getattr(memory, "temp_size_in_bytes", 0))
    if flops:
        achieved = flops * steps_per_sec / 1e12
        result["tflops_per_device"] = achieved
        result["mfu"] = achieved / peak if peak else None
    return result


def _random_params(config):
    import jax

    from diffrestore import config as config_lib

    module = config_lib.build_backbone(config)
    f = config_lib.spectrogram_config(config).num_freqs
    x = np.zeros((1, 1, f, int(config.data.num_frames)), np.complex64)
    return jax.jit(lambda k: module.init(k, x, x, np.ones(1, np.float32))["params"])(jax.random.key(0))


def _frames_for(config, seconds: float) -> int:
    from diffrestore import config as config_lib

    spec = config_lib.spectrogram_config(config)
    frames = 1 + int(seconds * spec.sample_rate) // spec.hop_length
    return -(-frames // 64) * 64


def forward_setup(config, params, seconds: float):
    """(compiled network forward at batch 1 on `seconds` of audio, its arguments, compile s)."""
    import jax
    import jax.numpy as jnp

    from diffrestore import config as config_lib

    model_fn = config_lib.build_model_fn(config)
    f = config_lib.spectrogram_config(config).num_freqs
    frames = _frames_for(config, seconds)
    rng = np.random.default_rng(0)
    x = jnp.asarray((rng.standard_normal((1, 1, f, frames)) + 1j * rng.standard_normal((1, 1, f, frames))).astype(np.complex64))
    t = jnp.full((1,), 0.5, jnp.float32)
    start = time.perf_counter()
    compiled = jax.jit(model_fn).lower(params, x, x, t).compile()
    return compiled, (params, x, x, t), time.perf_counter() - start


def bench_forward(config, params, args, peak) -> dict:
    import jax

    compiled, call_args, compile_seconds = forward_setup(config, params, args.seconds)
    f, frames = call_args[1].shape[2:]
    call = lambda: jax.block_until_ready(compiled(*call_args))
    _timed(call, args.warmup)
    seconds = _timed(call, args.repeats)
    flops = _flops(compiled)
    median = statistics.median(seconds)
    result = {"input_shape": [1, 1, f, frames], "compile_seconds": compile_seconds, "seconds_median": median,
              "seconds": seconds, "flops": flops}
    if flops:
        result["tflops"] = flops / median / 1e12
        result["mfu"] = result["tflops"] / peak if peak else None
    return result


def bench_enhance(config, params, args) -> list[dict]:
    from diffrestore import Enhancer
    from diffrestore import config as config_lib
    from diffrestore.enhancer import DEFAULT_BUCKETS, bucket_for  # the Enhancer's default table

    enhancer = Enhancer(config, params)
    rate = config_lib.spectrogram_config(config).sample_rate
    rng = np.random.default_rng(0)
    rows = []
    # The config's sampler and step count unless the command line names them.
    settings = enhancer.sampler_settings(args.sampler, args.num_steps)
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        waves = [(0.1 * rng.standard_normal(int(args.seconds * rate))).astype(np.float32) for _ in range(batch_size)]
        options = dict(sampler=settings.sampler, num_steps=settings.num_steps, batch_size=batch_size, **dict(settings.options))
        start = time.perf_counter()
        enhancer.enhance(waves, rate, **{**options, "num_steps": 1})  # compiles; N is a runtime value
        compile_seconds = time.perf_counter() - start
        seconds = _timed(lambda: enhancer.enhance(waves, rate, **options), args.repeats)
        median = statistics.median(seconds)
        rows.append({
            "batch_size": batch_size, "seconds_of_audio_each": args.seconds, "sampler": settings.describe(),
            "num_steps": settings.num_steps,
            "frames": bucket_for(enhancer._frames(len(waves[0])), DEFAULT_BUCKETS),
            "network_calls": enhancer.last_network_evaluations, "devices": enhancer.mesh.size,
            "first_call_seconds": compile_seconds, "seconds_median": median, "seconds": seconds,
            "real_time_factor": median / (batch_size * args.seconds),
        })
    return rows


def device_info() -> dict:
    import jax

    device = jax.devices()[0]
    kind = device.device_kind
    if device.platform == "cpu":
        try:
            with open("/proc/cpuinfo") as f:
                kind = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        except (OSError, StopIteration):
            kind = platform.processor() or kind
    import os

    return {"platform": device.platform, "device_kind": kind, "device_count": jax.device_count(),
            "process_count": jax.process_count(), "cpu_count": os.cpu_count(), "jax": jax.__version__}


def run(args) -> dict:
    import jax

    from diffrestore.train.distributed import initialize_if_needed

    initialize_if_needed()
    config = load_config(args.config, args.override)
    if args.batch_size:
        config.training.batch_size = args.batch_size
    info = device_info()
    dtype = str(config.model.dtype)
    peak, peak_source = peak_tflops(info["device_kind"], dtype, args.peak_tflops)
    result = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "command": " ".join(["python", *sys.argv]),
        "config": args.config, "overrides": args.override, "model": config.model.backbone,
        "compute_dtype": dtype, "remat": config.model.get("remat", "none"), **info,
        "peak_tflops_per_device": peak, "peak_source": peak_source,
    }
    what = set(args.what.split(","))
    unknown = what - {"train", "forward", "enhance"}
    if unknown:
        raise ValueError(f"--what: unknown parts {sorted(unknown)}")
    if "train" in what:
        result["train"] = bench_train(config, args, peak)
    if what & {"forward", "enhance"}:
        params = _random_params(config)
        result["num_params"] = int(sum(leaf.size for leaf in jax.tree.leaves(params)))
        if "forward" in what:
            result["forward"] = bench_forward(config, params, args, peak)
        if "enhance" in what:
            result["enhance"] = bench_enhance(config, params, args)
    return result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/sgmse_vbd.py")
    parser.add_argument("--override", action="append", default=[], help="group.field=value (repeatable)")
    parser.add_argument("--what", default="train,forward,enhance")
    parser.add_argument("--batch-size", type=int, default=0, help="training global batch (default: the config's)")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed forward / enhancement calls")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length for forward and enhancement")
    parser.add_argument("--batch-sizes", default="1,16", help="enhancement batch sizes")
    parser.add_argument("--sampler", default=None, help="enhancement sampler (default: the config's)")
    parser.add_argument("--num-steps", type=int, default=None,
                        help="reverse steps N (default: the config's; PC + ALD: 2N network calls)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak per device for MFU (default: device table)")
    parser.add_argument("--out", default=None)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        path = pathlib.Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(path)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    sys.exit(main())
