"""The forward of a config's network with its long self-attention computed whole or in query blocks.

    python benchmarks/attention_blocks.py --config configs/quickstart.py --frames 1536 \
        --out benchmarks/results/cpu_amd/attention_blocks_quickstart.json

Same random weights and input for both: `full` evaluates every attention as one
`jax.nn.dot_product_attention` (what NCSN++ did before the blocked path), `blocked` uses the
library's default (`models.layers.self_attention`: query blocks above ATTENTION_FULL_MAX
positions). Records the median time of `--repeats` calls, the compile time, XLA's temporary
memory, the largest relative difference of the outputs, and the FLOP rate from the full
program's FLOP count (XLA counts a while loop's body once, so the blocked program's own
count is too low).
"""
from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import statistics
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent


def measure(config_path: str, frames: int, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp

    import throughput
    from diffrestore import config as config_lib
    from diffrestore.models import layers

    config = throughput.load_config(config_path, [])
    params = throughput._random_params(config)
    f = config_lib.spectrogram_config(config).num_freqs
    rng = np.random.default_rng(0)
    x = jnp.asarray(0.3 * (rng.standard_normal((1, 1, f, frames)) + 1j * rng.standard_normal((1, 1, f, frames))), jnp.complex64)
    t = jnp.full((1,), 0.5, jnp.float32)
    default_limit = layers.ATTENTION_FULL_MAX
    runs, outputs = {}, {}
    try:
        for mode, limit in (("full", 10**12), ("blocked", default_limit)):
            layers.ATTENTION_FULL_MAX = limit
            model_fn = config_lib.build_model_fn(config)
            start = time.perf_counter()
            compiled = jax.jit(model_fn).lower(params, x, x, t).compile()
            compile_seconds = time.perf_counter() - start
            outputs[mode] = np.asarray(jax.block_until_ready(compiled(params, x, x, t)))
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                jax.block_until_ready(compiled(params, x, x, t))
                seconds.append(time.perf_counter() - start)
            analysis = compiled.cost_analysis()
            analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
            runs[mode] = {"seconds": seconds, "seconds_median": statistics.median(seconds), "compile_seconds": compile_seconds,
                          "xla_flops": float(analysis.get("flops", 0.0)),
                          "temp_bytes": int(compiled.memory_analysis().temp_size_in_bytes)}
    finally:
        layers.ATTENTION_FULL_MAX = default_limit
    flops = runs["full"]["xla_flops"]
    for run in runs.values():
        run["gflops_per_s"] = flops / run["seconds_median"] / 1e9
    diff = float(np.max(np.abs(outputs["full"] - outputs["blocked"])) / np.max(np.abs(outputs["full"])))
    return {"config": config_path, "frames": frames, "flops": flops, "max_rel_diff": diff, **runs,
            "speedup": runs["full"]["seconds_median"] / runs["blocked"]["seconds_median"]}


def main(argv=None) -> int:
    import throughput

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/quickstart.py")
    parser.add_argument("--frames", type=int, default=1536, help="spectrogram frames (a multiple of 64)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    result = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "command": " ".join(["python", *sys.argv]),
              **throughput.device_info(), **measure(args.config, args.frames, args.repeats)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.path[:0] = [str(HERE), str(HERE.parent)]
    sys.exit(main())
