"""Every supervised family for the same training budget on the same corpus, then each one's
samplers over step counts: quality (PESQ, ESTOI, SI-SDR) against network calls and against
seconds per second of audio, all families in one table and one figure.

    python benchmarks/family_comparison.py --workdir runs/families --minutes 5 \
        --out benchmarks/results/families

For each family of `diffrestore.config.FAMILIES` (SGMSE+, Schrödinger bridge, BBED, StoRM,
flow matching, and a CRP fine-tune of the BBED run) it trains the quickstart's network
(`configs/quickstart.py`: NCSN++ nf 16, three resolutions, 128-bin spectrograms) with that
family's loss, process and recipe for `--minutes` of training (`training.max_minutes`; the
CRP fine-tune gets the same minutes on top of the BBED run, as CRP is used), on the
quickstart's synthetic corpus (written to WORKDIR/data unless there), then enhances the test
files with the family's samplers at each step count. A run directory that exists is resumed
(already at its budget: not trained again), so the script can be rerun for other sweeps.

Writes OUT/families.csv, OUT/families.md and OUT/families.png (two rows: quality against
network evaluations, and against seconds of computation per second of audio).
"""
from __future__ import annotations

import argparse
import csv
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from sampler_steps import noisy_row, sweep  # noqa: E402

# Each family's samplers (options of Enhancer.enhance) and step counts.
SWEEPS = {
    "sgmse": ({"pc_ald": dict(sampler="pc", corrector="ald"), "pc_none": dict(sampler="pc", corrector="none")},
              (4, 8, 16)),
    "sb": ({"sb_ode": dict(sampler="sb_ode"), "sb_sde": dict(sampler="sb_sde")}, (1, 2, 4, 8)),
    "bbed": ({"pc_ald_from_0.5": dict(sampler="pc", corrector="ald")}, (2, 4, 8, 15)),
    "storm": ({"pc_ald": dict(sampler="pc", corrector="ald")}, (2, 4, 8)),
    "flow": ({"flow_euler": dict(sampler="flow_euler")}, (1, 2, 5, 10, 20)),
    "crp": ({"pc_from_0.5": dict(sampler="pc", corrector="none")}, (1, 2, 5)),
}


def train_family(family: str, root: pathlib.Path, minutes: float) -> pathlib.Path:
    """Trains (or resumes) the quickstart network as `family` for `minutes`; returns its run dir."""
    from diffrestore.config import set_family
    from diffrestore.quickstart import CONFIG_FILE, load_config_file
    from diffrestore.train import train_and_evaluate

    config = set_family(load_config_file(CONFIG_FILE), family)
    config.data.data_dir = str(root / "data")
    t = config.training
    t.max_minutes = float(minutes)
    t.num_steps = 1_000_000  # the budget is the time
    t.checkpoint_every_steps = 100
    if family == "crp":
        t.init_from = str(root / "bbed")
    workdir = root / family
    start = time.perf_counter()
    result = train_and_evaluate(config, workdir)
    print(f"{family}: step {result.get('step')} after {time.perf_counter() - start:.0f} s", flush=True)
    return workdir


def run(args) -> list[dict]:
    from diffrestore import Enhancer
    from diffrestore.config import FAMILIES
    from diffrestore.data import write_synthetic_corpus
    from diffrestore.quickstart import CONFIG_FILE, load_config_file

    root = pathlib.Path(args.workdir)
    corpus = load_config_file(CONFIG_FILE).quickstart.corpus.to_dict()
    if not (root / "data" / "test").is_dir():
        write_synthetic_corpus(root / "data", **corpus)
    families = args.families.split(",") if args.families else list(FAMILIES)
    if "crp" in families and "bbed" not in families and not (root / "bbed").is_dir():
        raise SystemExit("crp fine-tunes the bbed run: include bbed in --families")
    order = [f for f in FAMILIES if f in families]  # bbed before crp
    clean, noisy, rate = _test_pairs(root / "data" / "test", args.max_files)
    rows = [dict(family="noisy input", **noisy_row(clean, noisy, rate))]
    for family in order:
        workdir = train_family(family, root, args.minutes)
        steps_done = _last_step(workdir)
        enhancer = Enhancer.from_checkpoint(workdir)
        samplers, steps = SWEEPS[family]
        for row in sweep(enhancer, clean, noisy, rate, samplers, steps, args.batch_size):
            rows.append(dict(family=family, train_steps=steps_done, **row))
    return rows


def _test_pairs(test_dir, max_files):
    from sampler_steps import _load_pairs

    return _load_pairs(test_dir, max_files)


def _last_step(workdir) -> int:
    from diffrestore import checkpoint

    with checkpoint.make_manager(workdir, enable_async=False) as manager:
        return int(manager.latest_step() or 0)


def _read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for key in ("steps", "nfe"):
            r[key] = int(r[key])
        for key in ("sec_per_audio_sec", "pesq", "estoi", "si_sdr"):
            r[key] = float(r[key])
    return rows


def write_outputs(rows, out_dir, title) -> None:
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fields = ["family", "train_steps", "sampler", "steps", "nfe", "sec_per_audio_sec", "pesq", "estoi", "si_sdr"]
    with open(out_dir / "families.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows({k: r.get(k, "") for k in fields} for r in rows)
    lines = [f"### {title}", "",
             "| family | training steps | sampler | N | NFE | PESQ | ESTOI | SI-SDR (dB) | s per s of audio |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['family']} | {r.get('train_steps', '')} | {r['sampler']} | {r['steps']} | {r['nfe']} | {r['pesq']:.2f} | "
            f"{r['estoi']:.3f} | {r['si_sdr']:.2f} | {r['sec_per_audio_sec']:.3f} |"
        )
    (out_dir / "families.md").write_text("\n".join(lines) + "\n")

    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    noisy = rows[0]
    curves = list(dict.fromkeys((r["family"], r["sampler"]) for r in rows[1:]))
    for col, (metric, label) in enumerate((("pesq", "PESQ"), ("estoi", "ESTOI"), ("si_sdr", "SI-SDR (dB)"))):
        for row_i, (x_key, x_label) in enumerate((("nfe", "network evaluations per file"),
                                                  ("sec_per_audio_sec", "seconds per second of audio"))):
            ax = axes[row_i, col]
            for family, sampler in curves:
                pts = [(r[x_key], r[metric]) for r in rows[1:] if (r["family"], r["sampler"]) == (family, sampler)]
                ax.plot(*zip(*pts), marker="o", label=f"{family} {sampler}")
            ax.axhline(noisy[metric], color="gray", linestyle="--", label="noisy input")
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # decades only: no overlapping labels
            ax.set_xlabel(x_label)
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_dir / "families.png", dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="runs/families", help="corpus and one run directory per family")
    parser.add_argument("--minutes", type=float, default=5.0, help="training budget per family")
    parser.add_argument("--families", default="", help="comma-separated subset of diffrestore.config.FAMILIES")
    parser.add_argument("--max-files", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/families")
    parser.add_argument("--title", default="Supervised families, same network and training budget")
    parser.add_argument("--from-csv", default="", help="redraw OUT's table and plot from this families.csv (no runs)")
    args = parser.parse_args(argv)
    rows = _read_csv(args.from_csv) if args.from_csv else run(args)
    write_outputs(rows, args.out, args.title)
    print(f"wrote {args.out}/families.csv, families.md, families.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
