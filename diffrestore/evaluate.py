"""`diffrestore evaluate`: quality of a folder of enhanced files against clean references.

Files are paired by relative path (EARS noisy-style names `<stem>_<snr>dB` are recognised),
each pair is measured (PESQ, ESTOI, SI-SDR, log-spectral distance; with the noisy folder also
SI-SIR and SI-SAR, and the noisy input's own figures), and the results are written as a
per-file CSV plus a JSON summary (mean ± std per measure).
"""
from __future__ import annotations

import csv
import json
import math
import pathlib

import numpy as np

from diffrestore import metrics
from diffrestore.data.pairs import DataError, pair_folders, read_mono

MEASURES = ("pesq", "estoi", "si_sdr", "si_sir", "si_sar", "lsd")


def _pairs(clean_dir, other_dir):
    try:
        return pair_folders(clean_dir, other_dir)
    except DataError as plain_error:
        try:
            return pair_folders(clean_dir, other_dir, strip_snr_suffix=True)
        except DataError:
            raise plain_error from None


def _read(path):
    import soundfile as sf

    rate = sf.info(str(path)).samplerate
    return read_mono(path), rate


def _measure(clean, estimate, rate, noisy=None) -> dict:
    n = min(len(clean), len(estimate))
    row = metrics.speech_metrics(clean[:n], estimate[:n], rate)
    row["lsd"] = metrics.log_spectral_distance(clean[:n], estimate[:n])
    if noisy is not None:
        _, row["si_sir"], row["si_sar"] = metrics.energy_ratios(estimate[:n], clean[:n], noisy[:n] - clean[:n])
    return row


def evaluate_folders(clean_dir, enhanced_dir, noisy_dir=None) -> list[dict]:
    """One dict per enhanced file: `file` plus the measures (and `noisy_*` with a noisy folder)."""
    rows = []
    noisy_by_rel = {}
    if noisy_dir is not None:
        noisy_by_rel = {p.relpath: p.noisy for p in _pairs(clean_dir, noisy_dir)}
    for pair in _pairs(clean_dir, enhanced_dir):
        clean, rate = _read(pair.clean)
        enhanced, rate_e = _read(pair.noisy)
        if rate_e != rate:
            raise DataError(f"{pair.noisy}: sample rate {rate_e} Hz differs from its clean file {pair.clean} ({rate} Hz)")
        row = {"file": pair.relpath}
        noisy = None
        if noisy_dir is not None:
            if pair.relpath not in noisy_by_rel:
                raise DataError(f"{pair.noisy}: no noisy file with the same relative path in {noisy_dir}")
            noisy, _ = _read(noisy_by_rel[pair.relpath])
            row.update({f"noisy_{k}": v for k, v in _measure(clean, noisy, rate).items()})
        row.update(_measure(clean, enhanced, rate, noisy))
        rows.append(row)
    return rows


def summarize(rows: list[dict]) -> dict:
    """{measure: {"mean", "std", "n"}} over the finite values of each column."""
    summary = {}
    for key in rows[0]:
        if key == "file":
            continue
        values = np.array([r[key] for r in rows if isinstance(r.get(key), float) and math.isfinite(r[key])])
        if len(values):
            summary[key] = {"mean": float(values.mean()), "std": float(values.std()), "n": int(len(values))}
    return summary


def write_results(rows, summary, csv_path) -> pathlib.Path:
    """Writes the CSV and, beside it, `<name>.summary.json`; returns the JSON path."""
    csv_path = pathlib.Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    json_path = csv_path.with_suffix(".summary.json")
    json_path.write_text(json.dumps(summary, indent=2))
    return json_path


def format_summary(summary) -> str:
    lines = [f"{'measure':14s}{'mean':>10s}{'± std':>10s}{'n':>6s}"]
    for key, s in summary.items():
        lines.append(f"{key:14s}{s['mean']:10.3f}{s['std']:10.3f}{s['n']:6d}")
    return "\n".join(lines)
