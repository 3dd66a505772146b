"""Times the PyTorch reference (sp-uhh/sgmse): NCSN++ forward and SGMSE+ enhancement.

Not part of diffrestore and never imported by it: run it in an environment that has PyTorch
(and scipy) beside a checkout of the reference, e.g.

    python -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install torch numpy scipy
    git clone https://github.com/sp-uhh/sgmse /tmp/sgmse
    /tmp/refvenv/bin/python benchmarks/torch_reference.py --sgmse /tmp/sgmse \
        --what forward,enhance --seconds 10 --device cpu --out ref.json

forward: the default SGMSE+ backbone (`NCSNpp()`, 65.6 M parameters, random weights) on the
  reference layout (B, 2, F, T) complex64, F = 256, T = `--frames` (default: the frames of
  `--seconds` of 16 kHz audio padded to a multiple of 64, as the reference pads), one time
  per example; median wall time of `--repeats` calls after `--warmup`, under torch.no_grad,
  synchronised on CUDA. Compare with `benchmarks/throughput.py --what forward`.
enhance: what the reference's `ScoreModel.enhance` does for a score model with the default
  sampler, built from the reference's own parts (its `OUVESDE`, `get_pc_sampler` with the
  reverse-diffusion predictor and the ALD corrector, snr 0.5, one corrector step, t_eps
  0.03, N = `--num-steps`, score = −NCSNpp(cat(x, y), t)): peak normalisation, STFT
  (n_fft 510, hop 128, periodic Hann), 0.15·|X|^0.5 compression, zero padding to a multiple
  of 64 frames, sampling, inverse transform and iSTFT. `ScoreModel` itself is not imported
  because its module needs training-only packages (Lightning, torch_ema, librosa, pesq,
  torch_pesq). A batch of B signals is sampled together (the reference's `enhancement.py`
  goes file by file, i.e. batch 1). Real-time factor = seconds per second of audio.
  Compare with `benchmarks/throughput.py --what enhance`.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time

SAMPLE_RATE, N_FFT, HOP = 16000, 510, 128
SPEC_FACTOR, SPEC_EXPONENT = 0.15, 0.5


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "cpu"


def _frames(seconds: float) -> int:
    """Frames of `seconds` of 16 kHz audio (centred STFT) padded to a multiple of 64."""
    frames = 1 + int(seconds * SAMPLE_RATE) // HOP
    return -(-frames // 64) * 64


def _timer(torch, device):
    def timed(fn, warmup: int, repeats: int) -> list[float]:
        times = []
        for i in range(warmup + repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - start)
        return times

    return timed


def bench_forward(torch, net, device, args) -> dict:
    frames = args.frames or _frames(args.seconds)
    shape = (args.batch_size, 2, 256, frames)
    x = torch.complex(torch.randn(shape), torch.randn(shape)).to(device)
    t = torch.full((args.batch_size,), 0.5, device=device)

    def once():
        with torch.no_grad():
            net(x, t)

    times = _timer(torch, device)(once, args.warmup, args.repeats)
    return {"input_shape": list(shape), "seconds_median": statistics.median(times), "seconds": times}


def make_enhance_fn(torch, net, device, num_steps: int):
    """Returns enhance(waves (B, L) float32 tensor) -> (B, L): the reference's procedure."""
    from sgmse import sampling
    from sgmse.sdes import OUVESDE

    sde = OUVESDE(theta=1.5, sigma_min=0.05, sigma_max=0.5, N=num_steps)
    window = torch.hann_window(N_FFT, periodic=True, device=device)
    score_fn = lambda x, y, t: -net(torch.cat([x, y], dim=1), t)  # ScoreModel.forward, ncsnpp

    def enhance(waves):
        length = waves.shape[-1]
        peak = waves.abs().amax(dim=-1, keepdim=True)
        spec = torch.stft(waves / peak, N_FFT, HOP, window=window, center=True, return_complex=True)
        spec = spec.abs() ** SPEC_EXPONENT * torch.exp(1j * spec.angle()) * SPEC_FACTOR
        y = spec[:, None]
        pad = -y.shape[-1] % 64
        y = torch.nn.functional.pad(y, (0, pad))  # pad_spec, zero_pad
        sampler = sampling.get_pc_sampler(
            "reverse_diffusion", "ald", sde=sde, score_fn=score_fn, y=y,
            eps=0.03, snr=0.5, corrector_steps=1, intermediate=False)
        sample, nfe = sampler()
        spec = sample[:, 0] / SPEC_FACTOR
        spec = spec.abs() ** (1 / SPEC_EXPONENT) * torch.exp(1j * spec.angle())
        out = torch.istft(spec, N_FFT, HOP, window=window, center=True, length=length)
        return out * peak, nfe

    return enhance


def bench_enhance(torch, net, device, args) -> list[dict]:
    enhance = make_enhance_fn(torch, net, device, args.num_steps)
    rows = []
    for batch_size in [int(b) for b in args.batch_sizes.split(",")]:
        samples = int(args.seconds * SAMPLE_RATE)
        waves = (0.1 * torch.randn(batch_size, samples)).to(device)
        nfe = []

        def once():
            with torch.no_grad():
                _, n = enhance(waves)
            nfe.append(n)

        times = _timer(torch, device)(once, args.warmup, args.repeats)
        median = statistics.median(times)
        rows.append({
            "batch_size": batch_size, "seconds_of_audio_each": args.seconds, "num_steps": args.num_steps,
            "network_calls": nfe[-1], "frames": _frames(args.seconds), "seconds_median": median,
            "seconds": times, "real_time_factor": median / (batch_size * args.seconds),
        })
    return rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sgmse", required=True, help="path to a checkout of sp-uhh/sgmse")
    parser.add_argument("--what", default="forward", help="forward, enhance or forward,enhance")
    parser.add_argument("--seconds", type=float, default=2.0, help="audio length (forward: unless --frames)")
    parser.add_argument("--frames", type=int, default=0, help="forward frames (default: from --seconds)")
    parser.add_argument("--batch-size", type=int, default=1, help="forward batch")
    parser.add_argument("--batch-sizes", default="1", help="enhancement batch sizes")
    parser.add_argument("--num-steps", type=int, default=30, help="reverse steps N (PC + ALD: 2N network calls)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    what = set(args.what.split(","))
    if what - {"forward", "enhance"}:
        raise SystemExit(f"--what: unknown parts {sorted(what - {'forward', 'enhance'})}")
    sys.path.insert(0, args.sgmse)
    import torch
    from sgmse.backbones.ncsnpp import NCSNpp

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    net = NCSNpp().to(device).eval()
    result = {
        "what": "sgmse (PyTorch reference): NCSNpp forward / SGMSE+ PC+ALD enhancement",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "threads": torch.get_num_threads(),
        # float32 convolutions use TF32 tensor cores on CUDA unless this is off (torch's default: on).
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "params": sum(p.numel() for p in net.parameters()),
        "command": " ".join(["python", *sys.argv]),
    }
    if "forward" in what:
        result["forward"] = bench_forward(torch, net, device, args)
    if "enhance" in what:
        result["enhance"] = bench_enhance(torch, net, device, args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
