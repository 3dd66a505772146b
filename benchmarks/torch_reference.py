"""Times the PyTorch reference (sp-uhh/sgmse) NCSN++ forward, for side-by-side figures.

Not part of diffrestore and never imported by it: run it in a separate environment that has
PyTorch and a checkout of the reference, e.g.

    python -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install torch numpy scipy einops
    git clone https://github.com/sp-uhh/sgmse /tmp/sgmse
    /tmp/refvenv/bin/python benchmarks/torch_reference.py --sgmse /tmp/sgmse \
        --frames 256 --batch-size 1 --device cpu --out ref_forward.json

It builds the default SGMSE+ backbone (`NCSNpp()`, 65.6 M parameters, random weights),
feeds the reference layout (B, 2, F, T) complex64 with F = 256 and a time per example, and
reports the median wall time of `--repeats` forwards after `--warmup` (torch.no_grad; on
CUDA with synchronisation). Compare with `benchmarks/throughput.py --what forward`.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "cpu"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sgmse", required=True, help="path to a checkout of sp-uhh/sgmse")
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    sys.path.insert(0, args.sgmse)
    import torch
    from sgmse.backbones.ncsnpp import NCSNpp

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    net = NCSNpp().to(device).eval()
    shape = (args.batch_size, 2, 256, args.frames)
    x = torch.complex(torch.randn(shape), torch.randn(shape)).to(device)
    t = torch.full((args.batch_size,), 0.5, device=device)

    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            net(x, t)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for _ in range(args.warmup):
        once()
    times = [once() for _ in range(args.repeats)]
    result = {
        "what": "sgmse NCSNpp forward (reference, PyTorch)",
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "threads": torch.get_num_threads(),
        "input_shape": list(shape),
        "params": sum(p.numel() for p in net.parameters()),
        "seconds_median": statistics.median(times),
        "seconds_all": times,
        "command": " ".join(sys.argv),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
