"""Training, enhancement and sampling throughput of a config: steps/s, FLOPs, MFU, real-time factor.

    python benchmarks/throughput.py --config configs/sgmse_vbd.py --out throughput.json
    python benchmarks/throughput.py --config configs/sgmse_vbd.py --override model.dtype=bfloat16 \
        --override training.batch_size=32 --what train
    python benchmarks/throughput.py --what forward --override model.backbone_kwargs.fir=False
    python benchmarks/throughput.py --config configs/cqtdiff_maestro.py --what forward,sample --max-load 0.6
    python benchmarks/throughput.py --config configs/cqtdiff_maestro.py --what bwe --num-steps 35 --cutoff 1000

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
A prior's config (EDM on waveforms: configs/cqtdiff_maestro.py, configs/cqtdiffplus_maestro.py)
has these parts instead (default `--what train,forward,sample`):
- train: as above, on random waveform batches of the training segment;
- forward: one call of the denoiser D(x, σ) (the preconditioned network, CQT and inverse CQT
  included) on a waveform of `--length` samples (default: the training segment, 65536 at
  22.05 kHz for CQT-Diff) at batch 1: seconds, FLOPs;
- sample: `Prior.sample` with the config's sampler (CQT-Diff: stochastic Heun, T = 35, S_churn
  5, 2T − 1 network calls; `--num-steps`, `--sampler` override) drawing `--batch-sizes` rows
  (default 1) of `--length` samples: the sampler program's compile time (first call) apart,
  then `--sample-repeats` timed calls: seconds per second of sampled audio and per network call;
- bwe (only when asked for): guided bandwidth extension with `Prior.restore(task="bwe",
  filter="fir")`, CQT-Diff's BWE script (firwin 500 taps at `--cutoff` Hz, default 1000; ξ
  `--xi`, default the task's 0.2; gradients clipped at 1; no data consistency) with the same
  sampler settings as sample, on `--batch-sizes` rows of `--length` samples (one bucket of
  exactly that length: no padding, no chunks): the restoration program's compile time (a
  first call with T = 2; T is a runtime value) apart, then `--sample-repeats` timed calls:
  seconds per restored second and per network call (each with its gradient through the
  network). Compare with `torch_reference_cqtdiff.py --what bwe`.
Before each timed part the 1-minute load average must be below `--max-load` (default 0: do not
wait; the machine may be shared): the script waits (up to `--max-wait` s) and records the load
before and after the timed calls (a high `load_after` means someone else ran meanwhile).
Writes JSON (with device, JAX version, date and the command line) to `--out` and prints it.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import datetime
import importlib.util
import json
import os
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


def load_average() -> float | None:
    """The 1-minute load average (first value of /proc/loadavg), None where there is none."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def wait_for_quiet(max_load: float, max_wait: float, poll: float = 60.0) -> dict:
    """Waits until the 1-minute load average is below `max_load` (other users' jobs on a shared
    machine would slow the next timed part), checking every `poll` s for `max_wait` s at most.

    Returns {"load_before": the load when timing starts, "waited_seconds": s}; max_load <= 0
    only records the load. Timing goes ahead after `max_wait` whatever the load: the JSON says it.
    """
    start = time.monotonic()
    load = load_average()
    while max_load > 0 and load is not None and load >= max_load and time.monotonic() - start < max_wait:
        print(f"load {load:.2f} >= {max_load}: waiting {poll:.0f} s", file=sys.stderr, flush=True)
        time.sleep(poll)
        load = load_average()
    return {"load_before": load, "waited_seconds": round(time.monotonic() - start, 1)}


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
    # (clean, noisy) pairs for enhancement, clean waveforms only for a prior.
    batch = global_batch({key: 0.1 * rng.standard_normal((local, samples), np.float32)
                          for key in programs.batch_keys}, mesh)
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
    load = wait_for_quiet(args.max_load, args.max_wait)
    seconds = _timed(one, args.steps)
    load["load_after"] = load_average()  # a busy machine during the timing shows here
    steps_per_sec = 1.0 / statistics.median(seconds)
    result = {
        "global_batch_size": batch_size, "mesh": dict(setup.mesh.shape), "num_params": setup.programs.num_params,
        "input_shape": [batch_size, samples], "compile_seconds": setup.compile_seconds,
        "steps_per_sec": steps_per_sec, "examples_per_sec": steps_per_sec * batch_size,
        "step_seconds": seconds, "flops_per_step_per_device": flops, **load,
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
    inputs = config_lib.example_inputs(config)  # the training shape at batch 1 (spectrograms or waveforms)
    return jax.jit(lambda k: module.init(k, *inputs)["params"])(jax.random.key(0))


def prior_length(config, length: int | None = None) -> int:
    """A prior's waveform length for forward and sampling: `length`, else the training segment."""
    from diffrestore.data.defaults import crop_length

    return int(length) if length else crop_length(config.data)


def _frames_for(config, seconds: float) -> int:
    from diffrestore import config as config_lib

    spec = config_lib.spectrogram_config(config)
    frames = 1 + int(seconds * spec.sample_rate) // spec.hop_length
    return -(-frames // 64) * 64


def forward_setup(config, params, seconds: float, length: int | None = None):
    """(compiled network forward at batch 1, its arguments, compile s).

    Enhancement: the score network on the spectrogram of `seconds` of audio. Prior: the
    denoiser D(params, x, σ) on a waveform of `prior_length(config, length)` samples.
    """
    import jax
    import jax.numpy as jnp

    from diffrestore import config as config_lib

    model_fn = config_lib.build_model_fn(config)
    if config_lib.is_prior(config):
        # Any values do: white noise at about the level of the references' σ_data.
        x = jnp.asarray(0.057 * np.random.default_rng(0).standard_normal((1, prior_length(config, length))), jnp.float32)
        sigma = jnp.full((1,), 0.5, jnp.float32)
        start = time.perf_counter()
        compiled = jax.jit(model_fn).lower(params, x, sigma).compile()
        return compiled, (params, x, sigma), time.perf_counter() - start
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

    compiled, call_args, compile_seconds = forward_setup(config, params, args.seconds, args.length)
    call = lambda: jax.block_until_ready(compiled(*call_args))
    _timed(call, args.warmup)
    load = wait_for_quiet(args.max_load, args.max_wait)
    seconds = _timed(call, args.repeats)
    load["load_after"] = load_average()
    flops = _flops(compiled)
    median = statistics.median(seconds)
    # (1, 1, F, frames) spectrograms for enhancement, (1, L) waveforms for a prior.
    result = {"input_shape": list(call_args[1].shape), "compile_seconds": compile_seconds, "seconds_median": median,
              "seconds": seconds, "flops": flops, **load}
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
    for batch_size in [int(b) for b in (args.batch_sizes or "1,16").split(",")]:
        waves = [(0.1 * rng.standard_normal(int(args.seconds * rate))).astype(np.float32) for _ in range(batch_size)]
        options = dict(sampler=settings.sampler, num_steps=settings.num_steps, batch_size=batch_size, **dict(settings.options))
        start = time.perf_counter()
        enhancer.enhance(waves, rate, **{**options, "num_steps": 1})  # compiles; N is a runtime value
        compile_seconds = time.perf_counter() - start
        load = wait_for_quiet(args.max_load, args.max_wait)
        seconds = _timed(lambda: enhancer.enhance(waves, rate, **options), args.repeats)
        load["load_after"] = load_average()
        median = statistics.median(seconds)
        rows.append({
            "batch_size": batch_size, "seconds_of_audio_each": args.seconds, "sampler": settings.describe(),
            "num_steps": settings.num_steps,
            "frames": bucket_for(enhancer._frames(len(waves[0])), DEFAULT_BUCKETS),
            "network_calls": enhancer.last_network_evaluations, "devices": enhancer.mesh.size,
            "first_call_seconds": compile_seconds, "seconds_median": median, "seconds": seconds,
            "real_time_factor": median / (batch_size * args.seconds), **load,
        })
    return rows


def bench_sample(config, params, args) -> list[dict]:
    """Unconditional sampling with `Prior.sample` at each of --batch-sizes (default 1)."""
    from diffrestore import Prior
    from diffrestore.enhancer import batch_rows

    # No persistent compilation cache: the compile time is part of what is measured.
    prior = Prior(config, params, compilation_cache=False)
    length = prior_length(config, args.length)
    settings = prior.sampler_settings(args.sampler, args.num_steps)
    sampler, num_steps, options = settings
    rows_out = []
    for batch_size in [int(b) for b in (args.batch_sizes or "1").split(",")]:
        rows = batch_rows(batch_size, -(-batch_size // prior.mesh.size) * prior.mesh.size, prior.mesh.size)
        start = time.perf_counter()
        prior._program(settings, length, rows)  # what the first sample() call compiles (T is a runtime value)
        compile_seconds = time.perf_counter() - start
        draw = lambda: prior.sample(batch_size, length=length, num_steps=num_steps, batch_size=batch_size, seed=0,
                                    sampler=sampler, **dict(options))
        load = wait_for_quiet(args.max_load, args.max_wait)
        seconds = _timed(draw, args.sample_repeats)
        load["load_after"] = load_average()
        median = statistics.median(seconds)
        calls = prior.last_network_evaluations
        seconds_of_audio = length / prior.sample_rate
        rows_out.append({
            "batch_size": batch_size, "length": length, "sample_rate": prior.sample_rate,
            "seconds_of_audio_each": seconds_of_audio,
            "sampler": sampler + ", " + ", ".join(f"{k} {v}" for k, v in options), "num_steps": num_steps,
            "network_calls": calls, "devices": prior.mesh.size, "compile_seconds": compile_seconds,
            "seconds": seconds, "seconds_median": median,
            "seconds_per_sampled_second": median / (batch_size * seconds_of_audio),
            "seconds_per_network_call": median / calls, **load,
        })
    return rows_out


def bench_bwe(config, params, args) -> list[dict]:
    """Guided BWE with `Prior.restore` at each of --batch-sizes (default 1), as the module docstring says."""
    from diffrestore import Prior, restoration

    prior = Prior(config, params, compilation_cache=False)  # the compile time is measured, not loaded
    length = prior_length(config, args.length)
    sampler, num_steps, options = prior.sampler_settings(args.sampler, args.num_steps)
    task = restoration.make_task("bwe", prior.sample_rate, cutoff_hz=args.cutoff, filter="fir", xi=args.xi)
    rng = np.random.default_rng(0)
    rows_out = []
    for batch_size in [int(b) for b in (args.batch_sizes or "1").split(",")]:
        # Low-passed noise at about σ_data: any observation does, speed does not depend on it.
        waves = [restoration.degrade(0.057 * rng.standard_normal(length).astype(np.float32), task, prior.sample_rate)
                 for _ in range(batch_size)]

        def restore(steps):
            return prior.restore(waves, prior.sample_rate, task="bwe", cutoff_hz=args.cutoff, filter="fir",
                                 xi=task.xi, num_steps=steps, batch_size=batch_size, buckets=(length,), seed=0,
                                 sampler=sampler, **dict(options))

        since = len(prior.programs.compile_log)
        start = time.perf_counter()
        restore(2)  # compiles the program the timed calls run (T is one of its runtime inputs)
        first_call_seconds = time.perf_counter() - start
        compiled = len(prior.programs.compile_log)
        compile_seconds = sum(e["seconds"] for e in prior.programs.compile_log[since:])
        load = wait_for_quiet(args.max_load, args.max_wait)
        seconds = _timed(lambda: restore(num_steps), args.sample_repeats)
        load["load_after"] = load_average()
        if len(prior.programs.compile_log) != compiled:  # the timed calls must not include a compile
            raise RuntimeError("bwe: a timed restore call compiled a program")
        median = statistics.median(seconds)
        calls = prior.last_network_evaluations
        seconds_of_audio = length / prior.sample_rate
        rows_out.append({
            "batch_size": batch_size, "length": length, "sample_rate": prior.sample_rate,
            "seconds_of_audio_each": seconds_of_audio, "task": task.description, "cutoff_hz": float(args.cutoff),
            "numtaps": int(dict(task.options)["numtaps"]), "xi": task.xi, "clip_grad": task.clip_grad,
            "data_consistency": task.data_consistency,
            "sampler": sampler + ", " + ", ".join(f"{k} {v}" for k, v in options), "num_steps": num_steps,
            "network_calls": calls, "devices": prior.mesh.size, "batches": prior.last_batches,
            "compile_seconds": compile_seconds, "first_call_seconds": first_call_seconds,
            "seconds": seconds, "seconds_median": median,
            "seconds_per_restored_second": median / (batch_size * seconds_of_audio),
            "seconds_per_network_call": median / calls, **load,
        })
    return rows_out


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "cpu"


def device_info() -> dict:
    import jax

    device = jax.devices()[0]
    kind = cpu_name() if device.platform == "cpu" else device.device_kind
    return {"platform": device.platform, "device_kind": kind, "device_count": jax.device_count(),
            "process_count": jax.process_count(), "cpu_count": os.cpu_count(), "jax": jax.__version__}


def run(args) -> dict:
    import jax

    from diffrestore import config as config_lib
    from diffrestore.train.distributed import initialize_if_needed

    initialize_if_needed()
    config = load_config(args.config, args.override)
    prior = config_lib.is_prior(config)
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
    # A prior samples unconditionally; an enhancement model enhances.
    parts = {"train", "forward", "sample", "bwe"} if prior else {"train", "forward", "enhance"}
    what = set((args.what or ("train,forward,sample" if prior else "train,forward,enhance")).split(","))
    unknown = what - parts
    if unknown:
        raise ValueError(f"--what: {sorted(unknown)} not measured for {'a prior' if prior else 'an enhancement'} "
                         f"config (parts: {sorted(parts)})")
    if "train" in what:
        result["train"] = bench_train(config, args, peak)
    if what & {"forward", "enhance", "sample", "bwe"}:
        params = _random_params(config)
        result["num_params"] = int(sum(leaf.size for leaf in jax.tree.leaves(params)))
        if "forward" in what:
            result["forward"] = bench_forward(config, params, args, peak)
        if "enhance" in what:
            result["enhance"] = bench_enhance(config, params, args)
        if "sample" in what:
            result["sample"] = bench_sample(config, params, args)
        if "bwe" in what:
            result["bwe"] = bench_bwe(config, params, args)
    return result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/sgmse_vbd.py")
    parser.add_argument("--override", action="append", default=[], help="group.field=value (repeatable)")
    parser.add_argument("--what", default=None,
                        help="parts, comma-separated (default: train,forward,enhance; priors: train,forward,sample; "
                             "priors also: bwe)")
    parser.add_argument("--batch-size", type=int, default=0, help="training global batch (default: the config's)")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed forward / enhancement calls")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length for forward and enhancement")
    parser.add_argument("--batch-sizes", default=None, help="enhancement (default 1,16) or sampling (default 1) batch sizes")
    parser.add_argument("--sampler", default=None, help="enhancement or prior sampler (default: the config's)")
    parser.add_argument("--num-steps", type=int, default=None,
                        help="reverse steps N (default: the config's; PC + ALD: 2N network calls; EDM Heun: 2T - 1)")
    parser.add_argument("--length", type=int, default=0,
                        help="prior forward and sampling: waveform samples (default: the config's training segment)")
    parser.add_argument("--sample-repeats", type=int, default=1, help="timed sampling (and bwe) calls of a prior")
    parser.add_argument("--cutoff", type=float, default=1000.0, help="prior bwe: FIR low-pass cutoff in Hz")
    parser.add_argument("--xi", type=float, default=None, help="prior bwe: guidance step (default: the task's, 0.2)")
    parser.add_argument("--max-load", type=float, default=0.0,
                        help="wait before each timed part until the 1-min load average is below this (0: no wait)")
    parser.add_argument("--max-wait", type=float, default=1200.0, help="seconds to wait for --max-load at most")
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
