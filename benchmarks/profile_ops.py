"""Where the time goes: a per-operation profile of the forward or the training step.

    python benchmarks/profile_ops.py --config configs/sgmse_vbd.py --what forward --seconds 2 \
        --out benchmarks/results/cpu_xeon/profile_forward.json
    python benchmarks/profile_ops.py --what train --override model.dtype=bfloat16 --batch-size 32
    python benchmarks/profile_ops.py --config configs/cqtdiff_maestro.py --what forward --repeats 2

Compiles the program (the network forward on `--seconds` of audio at batch 1 — for a prior's
config the denoiser D(x, σ) on a waveform of `--length` samples, default its training segment —
or the sharded training step at `--batch-size`), runs it `--repeats` times under `jax.profiler` with a
Perfetto trace, and adds up the time of every XLA operation of that program (on a GPU the
kernels on the device, on a CPU the thunks on the host threads). Each operation is
classified twice, from the optimised HLO of the compiled program:
- by kind: convolution, matmul, reduction (e.g. GroupNorm statistics), elementwise fusion,
  copy/transpose, other; a fusion counts as the heaviest kind it contains, so a convolution
  fused with its bias and activation is a convolution;
- by layer: the Flax module that emitted it (its name in the op's metadata without indices:
  `Conv`, `GroupNorm`, `Dense`, attention, FIR resampling, ...), split into forward and
  backward (transposed) work for the training step; ops without metadata are named by kind.
Prints both tables (share of the summed op time) and the slowest operations, and writes them
as JSON to `--out`. Used to say what limits a target that is not met (benchmarks/RESULTS.md).
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import pathlib
import re
import sys
import tempfile
import time

_HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(_HERE), str(_HERE.parent)]  # throughput.py beside it; diffrestore without installing
import throughput  # noqa: E402  (config loading, random parameters and batches)

KIND_ORDER = ("convolution", "matmul", "reduction", "elementwise", "copy/transpose")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*.*?\s([a-z][\w\-]*)\((.*)$")
_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")


def hlo_module_name(text: str) -> str:
    """The module's name (first line `HloModule NAME, ...`): what trace events call it."""
    return re.match(r"HloModule\s+([\w.\-]+)", text).group(1)


def parse_hlo(text: str) -> tuple[dict, dict]:
    """Optimised HLO text -> ({instruction: (opcode, called computations, op_name)},
    {computation: [instruction names]})."""
    instructions, computations, current = {}, {}, None
    for line in text.splitlines():
        match = _COMPUTATION.match(line)
        if match and "=" not in line.split("{")[0]:
            current = match.group(1)
            computations[current] = []
            continue
        match = _INSTRUCTION.match(line)
        if match and current is not None:
            name, opcode, rest = match.groups()
            called = re.findall(r"(?:calls|to_apply)=%?([\w.\-]+)", rest)
            target = re.search(r'custom_call_target="([^"]+)"', rest)
            op_name = re.search(r'op_name="([^"]+)"', rest)
            if target:
                opcode = f"custom-call:{target.group(1)}"
            instructions[name] = (opcode, called, op_name.group(1) if op_name else "")
            computations[current].append(name)
    return instructions, computations


def _kind_of_opcode(opcode: str) -> str | None:
    if opcode == "convolution" or ("conv" in opcode and opcode.startswith("custom-call")):
        return "convolution"
    if opcode == "dot" or any(k in opcode for k in ("gemm", "cublas", "matmul")):
        return "matmul"
    if opcode in ("reduce", "reduce-window", "all-reduce", "reduce-scatter"):
        return "reduction"
    if opcode in ("copy", "transpose"):
        return "copy/transpose"
    return None


_MAX_NESTING = 4  # fusions inside fusions; deeper than this HLO does not go in practice


def _inner(name: str, instructions: dict, computations: dict):
    """The instructions of the computations that `name` calls (a fusion's body, a reduce's
    reducer)."""
    for computation in instructions.get(name, ("", [], ""))[1]:
        yield from computations.get(computation, [])


def op_kind(name: str, instructions: dict, computations: dict, _depth: int = 0) -> str:
    """The heaviest kind of work an instruction (or the computation it calls) does."""
    opcode = instructions.get(name, ("other", [], ""))[0]
    kind = _kind_of_opcode(opcode)
    if kind:
        return kind
    found = set()
    if _depth < _MAX_NESTING:
        found = {op_kind(i, instructions, computations, _depth + 1) for i in _inner(name, instructions, computations)}
    for kind in KIND_ORDER[:3]:
        if kind in found:
            return kind
    if opcode == "fusion" or found & {"elementwise"}:
        return "elementwise"
    return "other" if not found else sorted(found)[0]


def op_metadata_name(name: str, instructions: dict, computations: dict, _depth: int = 0) -> str:
    """The op_name of an instruction, or else the first one inside the computations it calls
    (XLA:CPU's library fusions of weight gradients carry theirs only inside)."""
    op_name = instructions.get(name, ("", [], ""))[2]
    if op_name or _depth >= _MAX_NESTING:
        return op_name
    inner_names = (op_metadata_name(i, instructions, computations, _depth + 1) for i in _inner(name, instructions, computations))
    return next((n for n in inner_names if n), "")


def layer_of(op_name: str) -> str:
    """`jit(step)/transpose(jvp(NCSNpp))/down_1_res_0/GroupNorm_0/reduce_sum` -> `GroupNorm (backward)`."""
    parts = [p for p in op_name.split("/")[1:-1] if not p.startswith("jit(")]
    backward = "transpose(" in op_name
    parts = [q for q in (re.sub(r"^(?:\w+\()+|\)+$", "", p) for p in parts) if q]  # vmap() -> dropped
    layer = re.sub(r"_\d+", "", parts[-1]) if parts else "(no layer in the metadata)"
    return f"{layer} (backward)" if backward else layer


def trace_op_times(trace_dir: str, module_name: str) -> dict[str, float]:
    """Summed microseconds per HLO op of the module `module_name` in a Perfetto trace (events
    whose module name starts with it, in case a backend appends an id).

    Device events are used where the trace has a device (GPU kernels); otherwise the host's.
    """
    (path,) = glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True)
    with gzip.open(path) as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    device_pids = {e["pid"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"
                   and str(e.get("args", {}).get("name", "")).startswith("/device:")}
    times: dict[str, float] = collections.defaultdict(float)
    for e in events:
        args = e.get("args") or {}
        if e.get("ph") != "X" or "hlo_op" not in args:
            continue
        if not str(args.get("hlo_module", "")).startswith(module_name):
            continue
        if device_pids and e["pid"] not in device_pids:
            continue
        times[args["hlo_op"]] += float(e.get("dur", 0.0))
    return dict(times)


def summarize(times: dict[str, float], instructions: dict, computations: dict, repeats: int, top: int = 15) -> dict:
    total = sum(times.values())
    by_kind, by_layer = collections.Counter(), collections.Counter()
    rows = []
    for name, us in times.items():
        kind = op_kind(name, instructions, computations)
        op_name = op_metadata_name(name, instructions, computations)
        # XLA drops the metadata of some ops it makes itself (on CPU, the weight-gradient
        # convolutions of a training step): name those by their kind.
        layer = layer_of(op_name) if op_name else f"(no metadata) {kind}"
        by_kind[kind] += us
        by_layer[layer] += us
        rows.append({"op": name, "kind": kind, "layer": layer, "ms_per_call": us / repeats / 1e3})
    rows.sort(key=lambda r: -r["ms_per_call"])
    share = lambda counter: [{"name": k, "ms_per_call": v / repeats / 1e3, "share": v / total}
                             for k, v in counter.most_common()]
    return {"op_ms_per_call": total / repeats / 1e3, "ops": len(times), "by_kind": share(by_kind),
            "by_layer": share(by_layer), "slowest_ops": rows[:top]}


def _table(title: str, rows: list[dict], limit: int = 12) -> str:
    lines = [f"| {title} | ms per call | share |", "| --- | ---: | ---: |"]
    lines += [f"| {r['name']} | {r['ms_per_call']:.2f} | {100 * r['share']:.1f} % |" for r in rows[:limit]]
    return "\n".join(lines)


def compiled_program(config, args):
    """(compiled executable, its arguments) for --what."""
    if args.what == "forward":
        compiled, call_args, _ = throughput.forward_setup(config, throughput._random_params(config), args.seconds,
                                                          args.length)
        return compiled, call_args
    setup = throughput.train_setup(config)
    return setup.step, (setup.state, setup.batch, setup.key)


def run(args) -> dict:
    import jax

    config = throughput.load_config(args.config, args.override)
    if args.batch_size:
        config.training.batch_size = args.batch_size
    compiled, call_args = compiled_program(config, args)
    hlo_text = compiled.as_text()
    instructions, computations = parse_hlo(hlo_text)

    def call():
        nonlocal call_args
        out = compiled(*call_args)
        if args.what == "train":  # the step donates its state: pass the new one on
            state, out = out
            call_args = (state, *call_args[1:])
        jax.block_until_ready(out)

    call()  # warm-up outside the trace
    with tempfile.TemporaryDirectory() as trace_dir:
        start = time.perf_counter()
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            for _ in range(args.repeats):
                call()
        wall = (time.perf_counter() - start) / args.repeats
        times = trace_op_times(trace_dir, hlo_module_name(hlo_text))
    if not times:
        raise RuntimeError("the trace holds no XLA operations of the program (profiler not supported here?)")
    result = {
        "what": args.what, "config": args.config, "overrides": args.override, "compute_dtype": str(config.model.dtype),
        "command": " ".join(["python", *sys.argv]), **throughput.device_info(),
        "wall_seconds_per_call_traced": wall, **summarize(times, instructions, computations, args.repeats),
    }
    if args.what == "train":
        result["global_batch_size"] = int(config.training.batch_size)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/sgmse_vbd.py")
    parser.add_argument("--override", action="append", default=[], help="group.field=value (repeatable)")
    parser.add_argument("--what", default="forward", choices=("forward", "train"))
    parser.add_argument("--seconds", type=float, default=2.0, help="forward: audio length at batch 1")
    parser.add_argument("--length", type=int, default=0,
                        help="forward of a prior: waveform samples (default: the config's training segment)")
    parser.add_argument("--batch-size", type=int, default=0, help="train: global batch (default: the config's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    result = run(args)
    print(f"{args.what}: {result['op_ms_per_call']:.1f} ms of XLA ops per call ({result['ops']} ops), "
          f"{1e3 * result['wall_seconds_per_call_traced']:.1f} ms wall per call under the profiler, "
          f"{result['device_kind']}")
    print(_table("kind", result["by_kind"]))
    print()
    print(_table("layer", result["by_layer"]))
    if args.out:
        path = pathlib.Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
