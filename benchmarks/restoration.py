"""Restoration quality and speed of a prior: BWE, declipping and inpainting of clean test audio.

    python benchmarks/restoration.py --checkpoint runs/cqtdiff_maestro --clean DIR --out results/restoration \
        --tasks bwe,declip,inpaint --filters fir,cheby1,biquad --cutoff 1000 --clip-sdr 3,10 \
        --gap-ms 100,500 --steps 10,35 --max-files 8 --max-load 0.6

For a prior (`--checkpoint`: our run directory or a reference CQT-Diff / BABE / BUDDy `.pt`)
and every audio file under `--clean DIR` (recursive, sorted; the first `--max-files`), each
file is read as mono at the prior's rate and its middle `--seconds` (default: the prior's
training segment) is kept. Then for every combination of
- task × operator: `bwe` with each of `--filters` at `--cutoff` Hz, `declip` at each of
  `--clip-sdr` dB (CQT-Diff's `get_clip_value_from_SDR`), `inpaint` with one gap of each of
  `--gap-ms` in the middle of the crop (the reference's `start_gap_idx: None`);
- T in `--steps` (sampler steps: 2T − 1 network calls for Heun) and ξ in `--xi` (default:
  each task's default, `diffrestore.restoration`)
the clean crop is degraded by `restoration.degrade`, restored by `Prior.restore(...,
num_steps=T, xi=ξ, seed=0)` one file at a time, and both the degraded and the restored signal
are measured against the clean one with `metrics.restoration_metrics` (LSD in bels as
CQT-Diff computes it, SI-SDR and SDR in dB).
Speed is the wall time of the restore call per second of audio, after a warm-up call on the
same shapes (T = 2: T is a runtime value of the compiled program, so it compiles the same
program) so that compilation is excluded; the compile seconds of each program are recorded
apart, from the prior's compile log (the persistent compilation cache is off). Before each
combination's timed calls the 1-minute load average must be below `--max-load` (default 0:
do not wait), as in benchmarks/throughput.py.

Writes to `--out DIR`:
- restoration.csv: one row per file × combination (metrics, seconds, network calls);
- restoration.md: a Markdown table of the means per combination;
- restoration.png: restored (and, dashed, degraded) LSD against T per task/operator, and
  seconds per second against T;
- restoration.json: the rows, the means and the machine (CPU name, device, JAX version, date,
  load averages before and after).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import json
import pathlib
import sys
import time

import numpy as np

_HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
sys.path.insert(1, str(_HERE.parent))
from throughput import device_info, load_average, wait_for_quiet  # noqa: E402

TASKS = ("bwe", "declip", "inpaint")
FILTERS = ("fir", "cheby1", "biquad")
WARMUP_STEPS = 2  # the fewest the sampler takes: the warm-up compiles, it is not measured
CSV_FIELDS = (
    "file", "seconds_of_audio", "task", "operator", "cutoff_hz", "filter", "clip_sdr_db", "gap_ms", "num_steps",
    "xi", "network_calls", "batches", "restore_seconds", "seconds_per_second", "compile_seconds",
    "degraded_lsd", "degraded_si_sdr", "degraded_sdr", "restored_lsd", "restored_si_sdr", "restored_sdr",
    "load_before", "load_after",
)


@dataclasses.dataclass(frozen=True)
class Operator:
    """One degradation of the grid: a task with its operator's setting.

    Attributes:
      task: "bwe", "declip" or "inpaint"; label: for tables ("fir 1000 Hz", "SDR 3 dB", ...).
      cutoff_hz, filter: BWE's low-pass; clip_sdr_db: declipping's target SDR (dB);
      gap_ms: inpainting's gap length (ms), centred in each crop.
    """

    task: str
    label: str
    cutoff_hz: float | None = None
    filter: str | None = None
    clip_sdr_db: float | None = None
    gap_ms: float | None = None

    def task_options(self, num_samples: int, sample_rate: int) -> dict:
        """`make_task` / `Prior.restore` options for a crop of `num_samples` at `sample_rate` Hz."""
        if self.task == "bwe":
            return {"cutoff_hz": self.cutoff_hz, "filter": self.filter}
        if self.task == "inpaint":
            return {"gaps": [centred_gap(num_samples, sample_rate, self.gap_ms)]}
        return {}  # declip: the clip level is each observation's peak, where it saturates


def centred_gap(num_samples: int, sample_rate: int, gap_ms: float) -> tuple[float, float]:
    """(start_s, end_s) of a gap of `gap_ms` ms in the middle of `num_samples` samples.

    Raises:
      ValueError: a gap as long as the signal or longer (nothing would be left to guide with).
    """
    seconds = num_samples / sample_rate
    gap = gap_ms / 1000.0
    if not 0 < gap < seconds:
        raise ValueError(f"--gap-ms {gap_ms:g}: a gap must be positive and shorter than the "
                         f"{seconds * 1000:.0f} ms crop")
    start = (seconds - gap) / 2
    return (start, start + gap)


def parse_floats(text: str, option: str) -> list[float]:
    """A comma-separated list of numbers; ValueError naming `option` otherwise."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{option} {text!r}: expected comma-separated numbers") from None
    if not values:
        raise ValueError(f"{option}: no values given")
    return values


def parse_names(text: str, option: str, choices: tuple[str, ...]) -> list[str]:
    """A comma-separated list of names from `choices`; ValueError naming the unknown ones."""
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [n for n in names if n not in choices]
    if unknown or not names:
        what = ", ".join(map(repr, unknown)) or "empty list"
        raise ValueError(f"{option}: unknown {what}; choose from {', '.join(choices)}")
    return names


def operator_grid(tasks, filters, cutoff_hz: float, clip_sdrs, gaps_ms) -> list[Operator]:
    """Every task × operator setting, in the order of the command line."""
    grid = []
    for task in tasks:
        if task == "bwe":
            grid += [Operator("bwe", f"{f} {cutoff_hz:g} Hz", cutoff_hz=cutoff_hz, filter=f) for f in filters]
        elif task == "declip":
            grid += [Operator("declip", f"SDR {s:g} dB", clip_sdr_db=s) for s in clip_sdrs]
        else:
            grid += [Operator("inpaint", f"gap {g:g} ms", gap_ms=g) for g in gaps_ms]
    return grid


def crop_middle(wave: np.ndarray, length: int) -> np.ndarray:
    """The middle `length` samples of `wave` (all of it when shorter)."""
    start = max(0, (wave.shape[0] - length) // 2)
    return wave[start:start + length]


def load_clean(path: pathlib.Path, sample_rate: int, length: int) -> np.ndarray:
    """A file as mono float32 at `sample_rate` Hz (channels averaged), cropped to its middle `length` samples."""
    from diffrestore.audio.resample import resample
    from diffrestore.io import read_audio

    data, rate, _ = read_audio(path)
    mono = data.mean(axis=1)
    return crop_middle(resample(mono, rate, sample_rate), length).astype(np.float32)


def find_clean_files(folder, max_files: int) -> list[pathlib.Path]:
    """Audio files under `folder` (recursive, sorted), the first `max_files` (0: all).

    Raises:
      ValueError: not a folder, or no audio files in it (both name the folder).
    """
    from diffrestore.data.pairs import list_audio_files

    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise ValueError(f"--clean {folder}: no such folder")
    files = list_audio_files(folder)
    if not files:
        raise ValueError(f"--clean {folder}: no audio files in it (searched recursively)")
    return files[:max_files] if max_files > 0 else files


def new_compile_seconds(prior, since: int) -> float:
    """Seconds spent compiling the programs the prior built after its `since`-th compile-log entry."""
    return float(sum(entry["seconds"] for entry in prior.programs.compile_log[since:]))


def measure_file(prior, operator: Operator, clean: np.ndarray, num_steps: int, xi: float | None) -> dict:
    """Degrades one clean crop, restores it (timed) and measures both; the program must be compiled already.

    Returns the row's measurements: LSD (bels), SI-SDR and SDR (dB), restore seconds, network calls.
    """
    from diffrestore import metrics, restoration

    rate = prior.sample_rate
    options = operator.task_options(clean.shape[0], rate)
    task = restoration.make_task(operator.task, rate, xi=xi, **options)
    degraded = restoration.degrade(clean, task, rate, clip_sdr_db=operator.clip_sdr_db)
    log_length = len(prior.programs.compile_log)
    start = time.perf_counter()
    (restored,) = prior.restore([degraded], rate, task=operator.task, num_steps=num_steps, xi=xi, seed=0,
                                batch_size=1, **options)
    seconds = time.perf_counter() - start
    if len(prior.programs.compile_log) != log_length:
        # The warm-up should have built every program this call needs.
        raise RuntimeError(f"{operator.label}: the timed restore call compiled a program")
    before = metrics.restoration_metrics(clean, degraded, rate)
    after = metrics.restoration_metrics(clean, restored, rate)
    return {
        "task": operator.task, "operator": operator.label, "cutoff_hz": operator.cutoff_hz, "filter": operator.filter,
        "clip_sdr_db": operator.clip_sdr_db, "gap_ms": operator.gap_ms, "num_steps": num_steps, "xi": task.xi,
        # Per sampler run (2T - 1 for Heun); a crop longer than the largest bucket runs in `batches` chunks.
        "network_calls": prior.last_network_evaluations, "batches": len(prior.last_batches), "restore_seconds": seconds,
        "seconds_of_audio": clean.shape[0] / rate, "seconds_per_second": seconds / (clean.shape[0] / rate),
        **{f"degraded_{k}": float(v) for k, v in before.items()},
        **{f"restored_{k}": float(v) for k, v in after.items()},
    }


def warm_up(prior, operator: Operator, cleans: list[np.ndarray], xi: float | None) -> dict[int, float]:
    """Compiles (by one short restore call per crop length) what `measure_file` will run.

    Returns {crop length: compile seconds of its program} (0 where nothing new was compiled).
    """
    from diffrestore import restoration

    rate = prior.sample_rate
    compile_seconds = {}
    for clean in cleans:
        n = clean.shape[0]
        if n in compile_seconds:
            continue
        options = operator.task_options(n, rate)
        task = restoration.make_task(operator.task, rate, xi=xi, **options)
        degraded = restoration.degrade(clean, task, rate, clip_sdr_db=operator.clip_sdr_db)
        since = len(prior.programs.compile_log)
        prior.restore([degraded], rate, task=operator.task, num_steps=WARMUP_STEPS, xi=xi, seed=0, batch_size=1,
                      **options)
        compile_seconds[n] = new_compile_seconds(prior, since)
    return compile_seconds


def _mean(values) -> float:
    values = [float(v) for v in values if v is not None]
    return float(np.mean(values)) if values else float("nan")


def summarize(rows: list[dict]) -> list[dict]:
    """Means per (task, operator, T, ξ), in the rows' order."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["task"], row["operator"], row["num_steps"], row["xi"]), []).append(row)
    summary = []
    for (task, operator, steps, xi), group in groups.items():
        means = {k: _mean(r[k] for r in group) for k in (
            "degraded_lsd", "restored_lsd", "degraded_si_sdr", "restored_si_sdr", "degraded_sdr", "restored_sdr",
            "seconds_per_second", "compile_seconds")}
        summary.append({"task": task, "operator": operator, "num_steps": steps, "xi": xi, "files": len(group),
                        "network_calls": group[0]["network_calls"], **means})
    return summary


def format_markdown(summary: list[dict], header: str) -> str:
    """The table of means (LSD in bels, the rest in dB): SDR is shown for declipping only, where
    the references report it."""
    lines = [header, "",
             "| task | operator | T | ξ | files | degraded LSD (B) | restored LSD (B) | degraded SI-SDR (dB) | "
             "restored SI-SDR (dB) | degraded SDR (dB) | restored SDR (dB) | s per s | network calls |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in summary:
        sdr = [f"{s['degraded_sdr']:.2f}", f"{s['restored_sdr']:.2f}"] if s["task"] == "declip" else ["—", "—"]
        lines.append("| " + " | ".join([
            s["task"], s["operator"], str(s["num_steps"]), f"{s['xi']:g}", str(s["files"]),
            f"{s['degraded_lsd']:.2f}", f"{s['restored_lsd']:.2f}", f"{s['degraded_si_sdr']:.2f}",
            f"{s['restored_si_sdr']:.2f}", *sdr, f"{s['seconds_per_second']:.3g}", str(s["network_calls"]),
        ]) + " |")
    return "\n".join(lines) + "\n"


def plot(summary: list[dict], path: pathlib.Path) -> None:
    """Restored LSD against T (one line per task, operator and ξ; the degraded LSD dashed) and
    seconds per second against T."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lsd_ax, speed_ax) = plt.subplots(1, 2, figsize=(11, 4))
    lines: dict[tuple, list[dict]] = {}
    for s in summary:
        lines.setdefault((s["task"], s["operator"], s["xi"]), []).append(s)
    for (task, operator, xi), points in lines.items():
        points = sorted(points, key=lambda p: p["num_steps"])
        steps = [p["num_steps"] for p in points]
        label = f"{task} {operator}, ξ {xi:g}"
        (line,) = lsd_ax.plot(steps, [p["restored_lsd"] for p in points], marker="o", label=label)
        # The observation's LSD in the same colour, dashed: what restoration has to beat.
        lsd_ax.plot(steps, [p["degraded_lsd"] for p in points], linestyle="--", color=line.get_color())
        speed_ax.plot(steps, [p["seconds_per_second"] for p in points], marker="o", label=label)
    lsd_ax.set(xlabel="sampler steps T", ylabel="restored LSD (bels, lower is better)", title="quality")
    speed_ax.set(xlabel="sampler steps T", ylabel="seconds per second of audio", title="speed")
    lsd_ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_csv(rows: list[dict], path: pathlib.Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def run(args) -> dict:
    """The whole grid; returns the JSON report (rows, means, machine)."""
    from diffrestore import Prior

    tasks = parse_names(args.tasks, "--tasks", TASKS)
    filters = parse_names(args.filters, "--filters", FILTERS)
    grid = operator_grid(tasks, filters, float(args.cutoff), parse_floats(args.clip_sdr, "--clip-sdr"),
                         parse_floats(args.gap_ms, "--gap-ms"))
    steps = [int(t) for t in parse_floats(args.steps, "--steps")]
    if any(t < 2 for t in steps):
        raise ValueError(f"--steps {args.steps}: every T must be at least 2")
    xis = [None] if args.xi is None else parse_floats(args.xi, "--xi")
    files = find_clean_files(args.clean, args.max_files)

    load_start = load_average()
    prior = Prior.from_checkpoint(args.checkpoint, compilation_cache=False)  # compile seconds are measured
    rate = prior.sample_rate
    if args.seconds:
        length = int(round(args.seconds * rate))
    else:
        from diffrestore.data.defaults import crop_length

        length = crop_length(prior.config.data)
    root = pathlib.Path(args.clean)
    cleans = [load_clean(p, rate, length) for p in files]
    names = [str(p.relative_to(root)) for p in files]

    rows = []
    for operator in grid:
        for xi in xis:
            compile_seconds = warm_up(prior, operator, cleans, xi)
            load = wait_for_quiet(args.max_load, args.max_wait)
            block = []
            for num_steps in steps:
                for name, clean in zip(names, cleans):
                    row = {"file": name, **measure_file(prior, operator, clean, num_steps, xi),
                           "compile_seconds": compile_seconds[clean.shape[0]]}
                    block.append(row)
                    print(f"{name}: {operator.task} {operator.label}, T {num_steps}, xi {row['xi']:g}: LSD "
                          f"{row['degraded_lsd']:.2f} -> {row['restored_lsd']:.2f} B, "
                          f"{row['seconds_per_second']:.3g} s/s", file=sys.stderr, flush=True)
            load["load_after"] = load_average()  # someone else's job during the timing shows here
            rows += [{**r, "load_before": load["load_before"], "load_after": load["load_after"]} for r in block]
    sampler, _, options = prior.sampler_settings()
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "command": " ".join(["python", *sys.argv]),
        "checkpoint": str(args.checkpoint), "clean": str(args.clean), "files": names, "sample_rate": rate,
        "crop_samples": length, "model": str(prior.config.model.backbone),
        "sampler": sampler + "".join(f", {k} {v}" for k, v in options), "seed": 0,
        **device_info(), "load_before": load_start, "load_after": load_average(),
        "compile_log": prior.programs.compile_log, "summary": summarize(rows), "rows": rows,
    }


def write_outputs(result: dict, out: pathlib.Path) -> None:
    """restoration.{csv,md,png,json} in `out` (created)."""
    out.mkdir(parents=True, exist_ok=True)
    write_csv(result["rows"], out / "restoration.csv")
    header = (f"Restoration of {len(result['files'])} file(s) of {result['crop_samples']} samples at "
              f"{result['sample_rate']} Hz by {result['checkpoint']} ({result['sampler']}, seed 0) on "
              f"{result['device_kind']}, {result['date']}")
    (out / "restoration.md").write_text(format_markdown(result["summary"], header))
    plot(result["summary"], out / "restoration.png")
    # JSON has no infinity: an exact restoration's SI-SDR is written as null.
    clean = json.loads(json.dumps(result, default=str), parse_constant=lambda _: None)
    (out / "restoration.json").write_text(json.dumps(clean, indent=1, allow_nan=False) + "\n")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a prior's run directory or a reference .pt file")
    parser.add_argument("--clean", required=True, help="folder of clean test audio (searched recursively)")
    parser.add_argument("--out", required=True, help="folder for restoration.{csv,md,png,json}")
    parser.add_argument("--max-files", type=int, default=0, help="the first N files (sorted; 0: all)")
    parser.add_argument("--seconds", type=float, default=0.0,
                        help="crop length in seconds, from the middle (default: the prior's training segment)")
    parser.add_argument("--tasks", default="bwe,declip,inpaint", help="comma-separated: bwe, declip, inpaint")
    parser.add_argument("--filters", default="fir", help="bwe low-passes, comma-separated: fir, cheby1, biquad")
    parser.add_argument("--cutoff", type=float, default=1000.0, help="bwe cutoff in Hz (CQT-Diff's scripts: 1000)")
    parser.add_argument("--clip-sdr", default="3", help="declipping SDRs in dB, comma-separated (conf.yaml: 3)")
    parser.add_argument("--gap-ms", default="100", help="inpainting gap lengths in ms, comma-separated")
    parser.add_argument("--steps", default="35", help="sampler steps T, comma-separated")
    parser.add_argument("--xi", default=None, help="guidance steps, comma-separated (default: each task's)")
    parser.add_argument("--max-load", type=float, default=0.0,
                        help="wait before each combination's timed calls until the 1-min load is below this "
                             "(0: no wait)")
    parser.add_argument("--max-wait", type=float, default=1200.0, help="seconds to wait for --max-load at most")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except (ValueError, FileNotFoundError) as err:  # bad options or files (DataError, AudioFileError), named
        print(f"restoration.py: error: {err}", file=sys.stderr)
        return 2
    write_outputs(result, pathlib.Path(args.out))
    print(format_markdown(result["summary"], f"Written to {args.out}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
