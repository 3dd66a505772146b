"""Times the PyTorch reference of CQT-Diff (eloimoliner/CQTdiff): Unet_CQT forward, its
unconditional stochastic Heun sampler and its guided bandwidth extension.

Not part of diffrestore and never imported by it: run it in an environment that has PyTorch,
numpy and scipy (no torchaudio: see below) beside a copy of the reference, e.g.

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 numpy scipy
    # .ref/cqtdiff: the files of github:eloimoliner/CQTdiff e8b6715 (git archive of the mirror)
    /tmp/torchenv/bin/python benchmarks/torch_reference_cqtdiff.py --cqtdiff .ref/cqtdiff \
        --what forward,sample,bwe --num-steps 35 --threads 2 --out reference.json

forward: the shipped `Unet_CQT` (conf/conf.yaml: 22.05 kHz, 7 octaves × 64 bins, no norm; the
  channel list hard-coded in its __init__, Ns = [32, 64, 64, 128, 128, 128, 128, 128]) with its
  default (random) initialisation, wrapped in the reference's EDM preconditioning
  (`VE_Sde_Elucidating.denoiser`, σ_data 0.057): one D(x, σ) call on x (B, `--length`) under
  torch.no_grad; median wall time of `--repeats` calls after `--warmup`. Compare with
  `benchmarks/throughput.py --config configs/cqtdiff_maestro.py --what forward`.
sample: `Sampler.predict` of src/sampler.py with y = None (what `predict_unconditional` and
  the unconditional experimenter run: order 2, ξ = 0): the stochastic Heun sampler with
  `--num-steps` T (default 35, conf.yaml), S_churn `--s-churn` (5), S_tmin 0, S_tmax 50,
  S_noise 1, on the grid σ 1e-4 … 1 with ρ 13 (scripts/sampling_*.sh), 2T − 1 network
  calls (counted, not assumed), `--sample-batch` rows of `--length` samples. Seconds per second
  of sampled audio = time / (rows · length / 22050). Compare with `throughput.py --what sample`.
bwe: guided bandwidth extension as the BWE experimenter runs it (src/experimenters/
  exp_bandwidth_extension.py with scripts/sampling_bwe_firwin_CQTdiff.sh): the low-pass
  `utils_bwe.get_FIR_lowpass(500, --cutoff, 1, 22050)` (firwin, 500 taps, width 1, kaiser),
  the observation y = `apply_low_pass(x, filter, "firwin")` of a random x, then the timed
  `SamplerBWE(..., xi=--xi (0.2), order=2, data_consistency=False).predict_bwe(y, filter,
  "firwin")`: reconstruction guidance (a gradient through the network at every call) clipped
  at `max_thresh_grads` 1 (conf.yaml), on the same σ grid, T and S_churn as `sample`, 2T − 1
  network calls, `--sample-batch` rows of `--length` samples. The experimenter's final 10 kHz
  low-pass of the output (one 100-tap convolution) is left out, as `Prior.restore` has none.
  Seconds per restored second = time / (rows · length / 22050). Compare with
  `throughput.py --what bwe`.

Speed does not depend on the weights' values, so nothing is loaded. What the reference needs
and does not get on a current CPU stack is patched at run time, as for the fixtures of
../shared/fixtures/cqtdiff (README "Run-time patches"); no file of the reference is edited:
* torchaudio (CQT-Diff pins 0.10.2) has no CPU build for this torch: `torchaudio_standin` below
  provides `transforms.Resample` and `functional.resample` with torchaudio's sinc_interp_hann
  algorithm (kernel from `_get_sinc_resample_kernel`, applied as `_apply_sinc_resample_kernel`
  does: pad, strided conv1d over (rows, 1, time), interleave the phases, crop);
* numpy ≥ 2 refuses `np.clip(M, min_win, np.inf, out=M)` on the integer array in the NSGT's
  `nsgfwin_sl`: that module's `np` becomes a copy whose `clip` casts "unsafe", as numpy 1.19 did;
* modules that only log (plotly, pandas, soundfile, cv2, wandb) are empty stand-ins where they
  are not installed; `tqdm` is the identity;
* bwe only: `src/nsgt/nsigtf.py nsigtf_sl` writes into a view `t2` of a pre-allocated buffer
  that was taken before the buffer's other view `t1` was written, which torch >= 2 refuses to
  differentiate ("a leaf Variable that requires grad is being used in an in-place operation"),
  so the guided sampler could not run: that module's `nsigtf_sl` becomes a copy that takes `t2`
  one line later (the views are disjoint: the same operations on the same memory), and the
  network's inverse CQT is asserted bit-identical before and after (as for the fixtures of
  ../shared/fixtures/cqtdiff, README "Run-time patches").
Load: before each timed part the 1-minute load average (/proc/loadavg) must be below
`--max-load` (default 0: do not wait, only record it); the load before and after the timed
calls is recorded in the JSON.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import math
import pathlib
import statistics
import sys
import time
import types

_HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
from throughput import cpu_name, load_average, wait_for_quiet  # noqa: E402  (no JAX is imported)

SAMPLE_RATE = 22050
SIGMA_DATA = 0.057  # conf.yaml diffusion_parameters.sigma_data
# conf.yaml diffusion_parameters with the overrides of scripts/sampling_*.sh (σ 1e-4 … 1, ρ 13).
DIFFUSION_PARAMETERS = dict(sigma_data=SIGMA_DATA, sigma_min=1e-4, sigma_max=1.0, P_mean=-1.2, P_std=1.2,
                            ro=13.0, ro_train=10.0, Schurn=5.0, Snoise=1.0, Stmin=0.0, Stmax=50.0)


def _namespace(d: dict) -> types.SimpleNamespace:
    return types.SimpleNamespace(**{k: _namespace(v) if isinstance(v, dict) else v for k, v in d.items()})


def torchaudio_standin(torch) -> types.ModuleType:
    """A `torchaudio` module with `transforms.Resample` and `functional.resample` only:
    torchaudio's band-limited sinc interpolation with a Hann window (lowpass_filter_width 6,
    rolloff 0.99 by default), the algorithm of torchaudio 0.10 … 2.11."""

    def kernel_and_width(orig_freq, new_freq, gcd, lowpass_filter_width=6, rolloff=0.99, dtype=None):
        if not (int(orig_freq) == orig_freq and int(new_freq) == new_freq):
            raise ValueError("frequencies must be integers (torchaudio's own restriction)")
        orig, new = int(orig_freq) // gcd, int(new_freq) // gcd
        base_freq = min(orig, new) * rolloff
        width = math.ceil(lowpass_filter_width * orig / base_freq)
        idx = torch.arange(-width, width + orig, dtype=dtype or torch.float64)[None, None] / orig
        t = torch.arange(0, -new, -1, dtype=dtype or torch.float64)[:, None, None] / new + idx
        t = (t * base_freq).clamp_(-lowpass_filter_width, lowpass_filter_width)
        window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
        t = t * math.pi
        kernels = torch.where(t == 0, torch.tensor(1.0).to(t), t.sin() / t) * window * (base_freq / orig)
        return kernels.to(dtype or torch.float32), width

    def apply(waveform, orig_freq, new_freq, gcd, kernel, width):
        orig, new = int(orig_freq) // gcd, int(new_freq) // gcd
        shape = waveform.size()
        waveform = waveform.reshape(-1, shape[-1])
        num_wavs, length = waveform.shape
        waveform = torch.nn.functional.pad(waveform, (width, width + orig))
        resampled = torch.nn.functional.conv1d(waveform[:, None], kernel, stride=orig)
        resampled = resampled.transpose(1, 2).reshape(num_wavs, -1)
        resampled = resampled[..., : int(math.ceil(new * length / orig))]
        return resampled.view(shape[:-1] + resampled.shape[-1:])

    def resample(waveform, orig_freq, new_freq, lowpass_filter_width=6, rolloff=0.99,
                 resampling_method="sinc_interp_hann", beta=None):
        if resampling_method not in ("sinc_interp_hann", "sinc_interpolation"):
            raise NotImplementedError(f"stand-in torchaudio: only sinc_interp_hann, not {resampling_method}")
        if orig_freq == new_freq:
            return waveform
        gcd = math.gcd(int(orig_freq), int(new_freq))
        kernel, width = kernel_and_width(orig_freq, new_freq, gcd, lowpass_filter_width, rolloff, waveform.dtype)
        return apply(waveform, orig_freq, new_freq, gcd, kernel.to(waveform.device), width)

    class Resample(torch.nn.Module):
        def __init__(self, orig_freq=16000, new_freq=16000, resampling_method="sinc_interp_hann",
                     lowpass_filter_width=6, rolloff=0.99, beta=None, *, dtype=None):
            super().__init__()
            if resampling_method not in ("sinc_interp_hann", "sinc_interpolation"):
                raise NotImplementedError(f"stand-in torchaudio: only sinc_interp_hann, not {resampling_method}")
            self.orig_freq, self.new_freq = orig_freq, new_freq
            self.gcd = math.gcd(int(orig_freq), int(new_freq))
            if orig_freq != new_freq:
                kernel, self.width = kernel_and_width(orig_freq, new_freq, self.gcd, lowpass_filter_width, rolloff, dtype)
                self.register_buffer("kernel", kernel)  # a buffer, as torchaudio >= 0.9 registers it

        def forward(self, waveform):
            if self.orig_freq == self.new_freq:
                return waveform
            return apply(waveform, self.orig_freq, self.new_freq, self.gcd, self.kernel, self.width)

    module = types.ModuleType("torchaudio")
    module.__doc__ = "stand-in (benchmarks/torch_reference_cqtdiff.py): Resample / resample only"
    module.transforms = types.SimpleNamespace(Resample=Resample)
    module.functional = types.SimpleNamespace(resample=resample)
    return module


def install_patches(torch, cqtdiff: str) -> None:
    """The run-time patches of the module docstring, then the reference on sys.path."""
    import numpy

    sys.modules.setdefault("torchaudio", torchaudio_standin(torch))
    for name in ("plotly", "plotly.express", "plotly.graph_objects", "pandas", "soundfile", "cv2", "wandb"):
        try:
            importlib.import_module(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
    try:
        importlib.import_module("tqdm")
    except ImportError:
        sys.modules["tqdm"] = types.SimpleNamespace(tqdm=lambda iterable, *a, **k: iterable)
    sys.path.insert(0, str(pathlib.Path(cqtdiff).resolve()))

    numpy_clip_unsafe = types.ModuleType("numpy")
    numpy_clip_unsafe.__dict__.update(numpy.__dict__)
    numpy_clip_unsafe.clip = lambda a, a_min=None, a_max=None, out=None, **kw: numpy.clip(
        a, a_min, a_max, out=out, casting="unsafe", **kw)
    for name in ("src.nsgt.nsgfwin_sl", "src.nsgt.nsgfwin"):
        importlib.import_module(name).np = numpy_clip_unsafe


def differentiable_nsigtf(torch, net, length: int) -> None:
    """Replaces `src.nsgt.nsigtf.nsigtf_sl` by a copy that takes the view `t2` after `t1` is
    written (module docstring), and checks that the network's inverse CQT is unchanged."""
    import inspect
    import re

    module = importlib.import_module("src.nsgt.nsigtf")
    source = inspect.getsource(module.nsigtf_sl)
    # "t2 = temp0[...]" (+ blank line) "t1[...] = ..."  ->  "t1[...] = ..." "t2 = temp0[...]", in both branches.
    patched, count = re.subn(r"(\n[ \t]*t2 = temp0\[[^\n]*\])\n\s*\n([ \t]*t1\[:, :, :\] = [^\n]*)", r"\n\2\1", source)
    if count != 2:
        raise RuntimeError(f"nsigtf_sl: expected the two t2 views to move, moved {count}")
    x = SIGMA_DATA * torch.randn(1, length, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = net.CQTransform.bwd(net.CQTransform.fwd(x))
    exec(compile(patched, module.__file__, "exec"), module.__dict__)  # nsigtf() looks nsigtf_sl up here
    with torch.no_grad():
        after = net.CQTransform.bwd(net.CQTransform.fwd(x))
    if not torch.equal(before, after):
        raise AssertionError("the patched nsigtf_sl changed the inverse CQT")


def build(torch, args):
    """(network, EDM parameters, network-call counter) of the shipped configuration."""
    from src.models.unet_cqt import Unet_CQT
    from src.sde import VE_Sde_Elucidating

    hydra_args = _namespace({
        "sample_rate": SAMPLE_RATE, "audio_len": args.length,
        "cqt": {"binsoct": 64, "numocts": 7, "use_norm": False},
        # conf.yaml's max_thresh_grads (1), which the BWE scripts keep; unguided sampling never reads it.
        "inference": {"T": args.num_steps, "max_thresh_grads": 1.0},
        "diffusion_parameters": {**DIFFUSION_PARAMETERS, "Schurn": args.s_churn},
    })
    net = Unet_CQT(hydra_args, "cpu").eval()
    calls = [0]
    forward = net.forward

    def counted(*a, **k):
        calls[0] += 1
        return forward(*a, **k)

    net.forward = counted
    return net, VE_Sde_Elucidating(hydra_args.diffusion_parameters, SIGMA_DATA), hydra_args, calls


def _timed(fn, warmup: int, repeats: int, max_load: float, max_wait: float) -> tuple[list[float], dict]:
    for _ in range(warmup):
        fn()
    load = wait_for_quiet(max_load, max_wait)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times, {**load, "load_after": load_average()}


def bench_forward(torch, net, edm, args) -> dict:
    gen = torch.Generator().manual_seed(args.seed)
    x = SIGMA_DATA * torch.randn(args.batch_size, args.length, generator=gen)
    sigma = torch.full((args.batch_size,), 0.5)

    def once():
        with torch.no_grad():
            out = edm.denoiser(x, net, sigma)  # c_skip·x + c_out·F(c_in·x, ¼ ln σ)
        assert out.shape == x.shape

    times, load = _timed(once, args.warmup, args.repeats, args.max_load, args.max_wait)
    return {"input_shape": [args.batch_size, args.length], "sigma": 0.5, "seconds_median": statistics.median(times),
            "seconds": times, **load}


def bench_sample(torch, net, edm, hydra_args, calls, args) -> list[dict]:
    from src.sampler import Sampler

    sampler = Sampler(net, edm, hydra_args, xi=0, order=2, data_consistency=False, rid=False)
    rows = args.sample_batch
    out = []

    def once():
        calls[0] = 0
        x = sampler.predict_unconditional((rows, args.length), torch.device("cpu"))
        if not bool(torch.isfinite(x).all()):
            raise FloatingPointError("the sampler produced non-finite values")

    times, load = _timed(once, args.sample_warmup, args.sample_repeats, args.max_load, args.max_wait)
    median = statistics.median(times)
    seconds_of_audio = args.length / SAMPLE_RATE
    out.append({
        "batch_size": rows, "length": args.length, "sample_rate": SAMPLE_RATE, "seconds_of_audio_each": seconds_of_audio,
        "sampler": f"stochastic Heun (src/sampler.py Sampler.predict), S_churn {args.s_churn}, rho 13, sigma 1e-4..1",
        "num_steps": args.num_steps, "network_calls": calls[0], "seconds": times, "seconds_median": median,
        "seconds_per_sampled_second": median / (rows * seconds_of_audio),
        "seconds_per_network_call": median / calls[0], **load,
    })
    return out


def bench_bwe(torch, net, edm, hydra_args, calls, args) -> list[dict]:
    """Guided BWE with `SamplerBWE.predict_bwe`, as the BWE experimenter calls it (module docstring)."""
    import src.utils.bandwidth_extension as utils_bwe
    from src.sampler import SamplerBWE

    sampler = SamplerBWE(net, edm, hydra_args, xi=args.xi, order=2, data_consistency=False, rid=False)
    lowpass = utils_bwe.get_FIR_lowpass(500, args.cutoff, 1, SAMPLE_RATE)  # (order, fc, beta, sr), as the script
    rows = args.sample_batch
    gen = torch.Generator().manual_seed(args.seed)
    y = utils_bwe.apply_low_pass(SIGMA_DATA * torch.randn(rows, args.length, generator=gen), lowpass, "firwin")

    def once():
        calls[0] = 0
        x = sampler.predict_bwe(y, lowpass, "firwin")
        if not bool(torch.isfinite(x).all()):
            raise FloatingPointError("the guided sampler produced non-finite values")

    times, load = _timed(once, args.sample_warmup, args.sample_repeats, args.max_load, args.max_wait)
    median = statistics.median(times)
    seconds_of_audio = args.length / SAMPLE_RATE
    return [{
        "batch_size": rows, "length": args.length, "sample_rate": SAMPLE_RATE, "seconds_of_audio_each": seconds_of_audio,
        "task": f"bwe, firwin 500 taps at {args.cutoff:g} Hz, xi {args.xi:g}, max_thresh_grads 1, no data consistency",
        "cutoff_hz": args.cutoff, "numtaps": 500, "xi": args.xi,
        "sampler": f"stochastic Heun (src/sampler.py SamplerBWE.predict_bwe), S_churn {args.s_churn}, rho 13, "
                   "sigma 1e-4..1",
        "num_steps": args.num_steps, "network_calls": calls[0], "seconds": times, "seconds_median": median,
        "seconds_per_restored_second": median / (rows * seconds_of_audio),
        "seconds_per_network_call": median / calls[0], **load,
    }]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cqtdiff", required=True, help="path to the files of eloimoliner/CQTdiff")
    parser.add_argument("--ref-commit", default="e8b6715", help="the reference's commit (recorded only)")
    parser.add_argument("--what", default="forward,sample", help="parts, comma-separated: forward, sample, bwe")
    parser.add_argument("--length", type=int, default=65536, help="samples at 22.05 kHz (conf.yaml audio_len)")
    parser.add_argument("--batch-size", type=int, default=1, help="forward batch")
    parser.add_argument("--num-steps", type=int, default=35, help="sampler steps T (2T - 1 network calls)")
    parser.add_argument("--s-churn", type=float, default=5.0)
    parser.add_argument("--sample-batch", type=int, default=1, help="rows sampled (or restored) together")
    parser.add_argument("--cutoff", type=float, default=1000.0, help="bwe: low-pass cutoff in Hz (the BWE scripts' fc)")
    parser.add_argument("--xi", type=float, default=0.2, help="bwe: guidance step (the BWE scripts' inference.xi)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timed forward calls")
    parser.add_argument("--sample-warmup", type=int, default=0)
    parser.add_argument("--sample-repeats", type=int, default=1)
    parser.add_argument("--max-load", type=float, default=0.0, help="wait until the 1-min load is below this (0: no wait)")
    parser.add_argument("--max-wait", type=float, default=1200.0, help="seconds to wait for a quiet machine at most")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    what = set(args.what.split(","))
    if what - {"forward", "sample", "bwe"}:
        raise SystemExit(f"--what: unknown parts {sorted(what - {'forward', 'sample', 'bwe'})}")
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    install_patches(torch, args.cqtdiff)
    net, edm, hydra_args, calls = build(torch, args)
    result = {
        "what": f"CQT-Diff (PyTorch reference eloimoliner/CQTdiff {args.ref_commit}): Unet_CQT forward D(x, sigma) / "
                "unconditional stochastic Heun / guided BWE",
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "torch": torch.__version__,
        "device": cpu_name(), "threads": torch.get_num_threads(),
        # Every parameter, the fixed random Fourier features (requires_grad False) included, as
        # diffrestore counts them; the reference's trainer prints the trainable ones.
        "params": sum(p.numel() for p in net.parameters()),
        "trainable_params": sum(p.numel() for p in net.parameters() if p.requires_grad),
        "compute_dtype": "float32", "command": " ".join(["python", *sys.argv]),
    }
    if "forward" in what:
        result["forward"] = bench_forward(torch, net, edm, args)
    if "sample" in what:
        result["sample"] = bench_sample(torch, net, edm, hydra_args, calls, args)
    if "bwe" in what:
        differentiable_nsigtf(torch, net, args.length)
        result["bwe"] = bench_bwe(torch, net, edm, hydra_args, calls, args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        path = pathlib.Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
