"""Quality against network calls: sweep samplers and step counts on a test folder.

    python benchmarks/sampler_steps.py --checkpoint runs/quickstart \
        --test-dir runs/quickstart/data/test --out benchmarks/results/quickstart_steps

For every sampler and step count N it enhances the noisy files of TEST_DIR/noisy, measures
PESQ, ESTOI and SI-SDR against TEST_DIR/clean, and records the network evaluations (NFE) and
the seconds of computation per second of audio (compilation excluded: every sampler is
compiled once before timing, and N is a runtime value, so no N recompiles). Writes
`steps.csv`, `steps.md` (a markdown table) and `steps.png` (quality against NFE).

Default samplers: score models (SGMSE+, BBED, StoRM, CRP): pc+ald, pc (no corrector),
ode_euler, ode_heun; bridge models: sb_ode, sb_sde; flow matching: flow_euler (or
flow_euler_data for a data-target model).
"""
from __future__ import annotations

import argparse
import csv
import pathlib
import sys
import time

import numpy as np

SCORE_SAMPLERS = {
    "pc_ald": dict(sampler="pc", corrector="ald"),
    "pc_none": dict(sampler="pc", corrector="none"),
    "ode_euler": dict(sampler="ode_euler"),
    "ode_heun": dict(sampler="ode_heun"),
}
BRIDGE_SAMPLERS = {"sb_ode": dict(sampler="sb_ode"), "sb_sde": dict(sampler="sb_sde")}
FLOW_SAMPLERS = {"flow_euler": dict(sampler="flow_euler")}
FLOW_DATA_SAMPLERS = {"flow_euler_data": dict(sampler="flow_euler_data")}
# The default sweep of each model kind (`Enhancer.spec.model_kind`).
SAMPLERS_OF_KIND = {"score": SCORE_SAMPLERS, "data_prediction": BRIDGE_SAMPLERS, "vector_field": FLOW_SAMPLERS,
                    "flow_data": FLOW_DATA_SAMPLERS}


def _load_pairs(test_dir, max_files):
    import soundfile as sf

    from diffrestore.data.pairs import pair_folders

    pairs = pair_folders(pathlib.Path(test_dir) / "clean", pathlib.Path(test_dir) / "noisy")[:max_files]
    clean, noisy, rates = [], [], []
    for p in pairs:
        c, rate = sf.read(p.clean, dtype="float32")
        n, _ = sf.read(p.noisy, dtype="float32")
        clean.append(c), noisy.append(n), rates.append(rate)
    if len(set(rates)) != 1:
        raise ValueError(f"{test_dir}: files have several sample rates {sorted(set(rates))}")
    return clean, noisy, rates[0]


def run(args) -> list[dict]:
    from diffrestore import Enhancer

    enhancer = Enhancer.from_checkpoint(args.checkpoint)
    clean, noisy, rate = _load_pairs(args.test_dir, args.max_files)
    table = SAMPLERS_OF_KIND[enhancer.spec.model_kind]
    names = args.samplers.split(",") if args.samplers else list(table)
    steps = [int(s) for s in args.steps.split(",")]
    return [noisy_row(clean, noisy, rate)] + sweep(enhancer, clean, noisy, rate, {n: table[n] for n in names}, steps,
                                                   args.batch_size)


def noisy_row(clean, noisy, rate) -> dict:
    """The row of the unprocessed input (NFE 0)."""
    from diffrestore.metrics import speech_metrics

    scores = [speech_metrics(c, n, rate) for c, n in zip(clean, noisy)]
    base = {m: float(np.nanmean([s[m] for s in scores])) for m in ("pesq", "estoi", "si_sdr")}
    return {"sampler": "noisy input", "steps": 0, "nfe": 0, "sec_per_audio_sec": 0.0, **base}


def sweep(enhancer, clean, noisy, rate, samplers: dict, steps, batch_size: int) -> list[dict]:
    """One row per (sampler, N): mean PESQ, ESTOI, SI-SDR, network evaluations per file and
    seconds per second of audio (compilation excluded: each sampler runs once first, and N is
    a runtime value). samplers: name -> options of `Enhancer.enhance`."""
    from diffrestore.metrics import speech_metrics

    audio_seconds = sum(len(n) for n in noisy) / rate
    rows = []
    for name, options in samplers.items():
        enhancer.enhance(noisy, rate, num_steps=1, batch_size=batch_size, **options)
        for n in steps:
            start = time.perf_counter()
            out = enhancer.enhance(noisy, rate, num_steps=n, seed=0, batch_size=batch_size, **options)
            seconds = time.perf_counter() - start
            scores = [speech_metrics(c, e, rate) for c, e in zip(clean, out)]
            row = {
                "sampler": name, "steps": n, "nfe": enhancer.last_network_evaluations,
                "sec_per_audio_sec": seconds / audio_seconds,
                **{m: float(np.nanmean([s[m] for s in scores])) for m in ("pesq", "estoi", "si_sdr")},
            }
            rows.append(row)
            print(
                f"{name:10s} N={n:3d} NFE={row['nfe']:4d}  PESQ {row['pesq']:.2f}  ESTOI {row['estoi']:.3f}  "
                f"SI-SDR {row['si_sdr']:6.2f} dB  {row['sec_per_audio_sec']:.3f} s/s",
                flush=True,
            )
    return rows


def write_outputs(rows, out_dir, title) -> None:
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "steps.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [f"### {title}", "", "| sampler | N | NFE | PESQ | ESTOI | SI-SDR (dB) | s per s of audio |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['sampler']} | {r['steps']} | {r['nfe']} | {r['pesq']:.2f} | {r['estoi']:.3f} | {r['si_sdr']:.2f} | {r['sec_per_audio_sec']:.3f} |"
        )
    (out_dir / "steps.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    noisy = rows[0]
    for ax, metric, label in zip(axes, ("pesq", "estoi", "si_sdr"), ("PESQ", "ESTOI", "SI-SDR (dB)")):
        for name in dict.fromkeys(r["sampler"] for r in rows[1:]):
            pts = [(r["nfe"], r[metric]) for r in rows[1:] if r["sampler"] == name]
            ax.plot(*zip(*pts), marker="o", label=name)
        ax.axhline(noisy[metric], color="gray", linestyle="--", label="noisy input")
        ax.set_xscale("log")
        ax.set_xlabel("network evaluations")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_dir / "steps.png", dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--test-dir", required=True, help="folder with clean/ and noisy/")
    parser.add_argument("--samplers", default="", help="comma-separated names (default: all for the model type)")
    parser.add_argument("--steps", default="1,2,5,10,20,30,50")
    parser.add_argument("--max-files", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", default="benchmarks/results/sampler_steps")
    parser.add_argument("--title", default="Quality against network evaluations")
    args = parser.parse_args(argv)
    rows = run(args)
    write_outputs(rows, args.out, args.title)
    print(f"wrote {args.out}/steps.csv, steps.md, steps.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
