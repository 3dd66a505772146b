"""Side-by-side table of diffrestore and the PyTorch reference, with the speed targets.

    python benchmarks/compare.py --dir benchmarks/results/device

Reads whichever of these the folder holds (as `benchmarks/device_run.sh` writes them):
`ours_fp32.json`, `ours_bf16.json` (throughput.py --what forward,enhance), `train_bf16.json`
or else `train_fp32.json` (throughput.py --what train) and `reference.json`
(torch_reference.py --what forward,enhance), and prints a Markdown table: our time, the
reference's, their ratio and the target it is held to (issue 5: forward ≤ ½ of the reference's
time, a 10 s file with N = 30 + ALD ≤ ⅓, bf16 training MFU ≥ 35 %). A row whose two sides ran
different networks (parameter counts) or shapes (batch, padded frames, network calls) says so
instead of giving a ratio.

A prior's folder (e.g. `benchmarks/results/cpu_amd/cqtdiff`) holds the same names written by
`throughput.py --config configs/cqtdiff_maestro.py --what forward,sample` and
`torch_reference_cqtdiff.py --what forward,sample`: forward rows compare D(x, σ) on the same
waveform length, sample rows the seconds per second of sampled audio for the same length,
rows and network calls (issue "Unconditional diffusion priors": ours ≤ ½ of the reference's).
With `--what bwe` on both sides (throughput.py and torch_reference_cqtdiff.py), bwe rows compare
guided bandwidth extension (FIR 500 taps, same cutoff, T, length and rows) in seconds per
restored second (issue 13: ours ≤ ½ of the reference's).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

FORWARD_TARGET = 0.5  # our forward time / the reference's
ENHANCE_TARGET = 1 / 3  # our 10 s enhancement time / the reference's, batch 1
MFU_TARGET = 0.35  # bf16 training on an H100
SAMPLE_TARGET = 0.5  # our seconds per sampled second / the reference's (unconditional prior sampling)
BWE_TARGET = 0.5  # our seconds per restored second / the reference's (guided bandwidth extension)


def _load(folder: pathlib.Path, name: str) -> dict | None:
    path = folder / name
    return json.loads(path.read_text()) if path.exists() else None


def _ratio_row(what: str, ours: float, ref: float, same_shape: bool, target: float | None,
               unit: str = "s") -> list[str]:
    if not same_shape:
        return [what, f"{ours:.4g} {unit}", f"{ref:.4g} {unit}", "not comparable (network or shape differs)", "—", "—"]
    ratio = ours / ref
    verdict = "—" if target is None else ("met" if ratio <= target else "not met")
    goal = "—" if target is None else f"≤ {target:.2f}"
    return [what, f"{ours:.4g} {unit}", f"{ref:.4g} {unit}", f"{ratio:.2f}", goal, verdict]


# A prior's sampling parts: (JSON part, what it makes, per-second field, target, the fields
# that must agree for a ratio besides the network: the same work on both sides).
_PRIOR_PARTS = {
    "sample": ("sampled", "seconds_per_sampled_second", SAMPLE_TARGET, ("length", "network_calls")),
    "bwe": ("restored", "seconds_per_restored_second", BWE_TARGET, ("length", "network_calls", "cutoff_hz", "numtaps")),
}


def _prior_rows(part: str, dtype: str, result: dict, reference: dict | None, same_net: bool) -> list[list[str]]:
    """Unconditional sampling ("sample") or guided bandwidth extension ("bwe") of a prior:
    seconds per second of audio made, and per network call, per batch size."""
    made, per_second, target, keys = _PRIOR_PARTS[part]
    by_batch = {r["batch_size"]: r for r in (reference or {}).get(part, [])}
    rows = []
    for row in result.get(part, []):
        ref = by_batch.get(row["batch_size"])
        if not ref:
            continue
        same = same_net and all(row.get(k) == ref.get(k) for k in keys)
        shape = f"{part} {dtype}, {row['batch_size']} × {row['length']} samples"
        rows.append(_ratio_row(
            f"{shape}, T = {row['num_steps']}, {row['network_calls']} network calls, per {made} second",
            row[per_second], ref[per_second], same, target, "s/s"))
        rows.append(_ratio_row(f"{shape}, per network call", row["seconds_per_network_call"],
                               ref["seconds_per_network_call"], same, None))
    return rows


def compare_rows(ours: dict[str, dict | None], reference: dict | None, train: dict | None) -> list[list[str]]:
    """Table rows [what, ours, reference, ours/reference, target, verdict].

    ours: {"fp32": throughput JSON or None, "bf16": ...}; reference: torch_reference JSON;
    train: throughput JSON with a "train" part. A ratio is given only where both sides ran the
    same network (parameter count) on the same shape (batch, frames, network calls).
    """
    rows = []
    ref_forward = (reference or {}).get("forward")
    ref_enhance = {r["batch_size"]: r for r in (reference or {}).get("enhance", [])}
    for label, result in ours.items():
        if not result:
            continue
        dtype = result.get("compute_dtype", label)
        same_net = result.get("num_params") == (reference or {}).get("params")
        forward = result.get("forward")
        if forward and ref_forward:
            shape, ref_shape = forward["input_shape"], ref_forward["input_shape"]
            same = same_net and shape[-1] == ref_shape[-1] and shape[0] == ref_shape[0] and len(shape) == len(ref_shape)
            # (B, 1, F, frames) spectrograms, or (B, L) waveforms for a prior's denoiser.
            size = f"{shape[-1]} samples" if len(shape) == 2 else f"{shape[-1]} frames"
            rows.append(_ratio_row(f"forward {dtype}, batch {shape[0]}, {size}",
                                   forward["seconds_median"], ref_forward["seconds_median"], same, FORWARD_TARGET))
        for row in result.get("enhance", []):
            ref = ref_enhance.get(row["batch_size"])
            if not ref:
                continue
            same = same_net and row["seconds_of_audio_each"] == ref["seconds_of_audio_each"] and \
                row["network_calls"] == ref["network_calls"] and row.get("frames") == ref.get("frames")
            target = ENHANCE_TARGET if row["batch_size"] == 1 else None
            rows.append(_ratio_row(
                f"enhance {dtype}, {row['batch_size']} × {row['seconds_of_audio_each']:g} s, "
                f"{row['network_calls']} network calls", row["seconds_median"], ref["seconds_median"], same, target))
        rows += _prior_rows("sample", dtype, result, reference, same_net)
        rows += _prior_rows("bwe", dtype, result, reference, same_net)
    if train and train.get("train"):
        t = train["train"]
        mfu = t.get("mfu")
        verdict = "—" if mfu is None else ("met" if mfu >= MFU_TARGET else "not met")
        rows.append([
            f"train {train.get('compute_dtype', '?')}, global batch {t['global_batch_size']}",
            f"{t['steps_per_sec']:.3g} steps/s, {t.get('tflops_per_device') or float('nan'):.3g} TFLOP/s",
            "—", "MFU " + ("n/a" if mfu is None else f"{100 * mfu:.1f} %"), f"MFU ≥ {100 * MFU_TARGET:.0f} %", verdict,
        ])
    return rows


def format_table(rows: list[list[str]], header: str) -> str:
    lines = [header, "", "| what | diffrestore | reference | ratio | target | verdict |", "| --- | ---: | ---: | ---: | --- | --- |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="benchmarks/results/device")
    args = parser.parse_args(argv)
    folder = pathlib.Path(args.dir)
    ours = {"fp32": _load(folder, "ours_fp32.json"), "bf16": _load(folder, "ours_bf16.json")}
    reference = _load(folder, "reference.json")
    train = _load(folder, "train_bf16.json") or _load(folder, "train_fp32.json")
    devices = {r.get("device_kind") for r in [*ours.values(), train] if r}
    if reference:
        devices.add(reference.get("device"))
    header = f"Devices: {', '.join(sorted(str(d) for d in devices)) or 'none'} ({folder})"
    print(format_table(compare_rows(ours, reference, train), header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
