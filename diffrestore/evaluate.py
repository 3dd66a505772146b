"""`diffrestore evaluate`: quality of a folder of enhanced files, against clean references or
without them (DNSMOS).

Files are paired by relative path (EARS noisy-style names `<stem>_<snr>dB` are recognised),
each pair is measured (by default PESQ, ESTOI, SI-SDR, SDR and the references' log-spectral
distance; with the noisy folder also SI-SIR and SI-SAR, the noisy input's own figures and the
SDR and SI-SDR improvements over it), and the results are written as a per-file CSV plus a
JSON summary (mean ± std per measure). `measures=` (CLI `--measures`) picks a subset, e.g.
`lsd,si_sdr,sdr` for music, where the speech measures PESQ and ESTOI mean nothing.
Without a clean folder only the non-intrusive DNSMOS is computed (`diffrestore.dnsmos`: SIG,
BAK, OVRL and the P.808 MOS, columns dnsmos_sig, dnsmos_bak, dnsmos_ovrl, dnsmos_p808); with
one, DNSMOS is among the defaults beside the intrusive measures.

Units: pesq (MOS-LQO, 1–4.64), estoi (0–1), si_sdr, si_sir, si_sar, sdr and the improvements
in dB; lsd is `metrics.lsd_cqtdiff` (CQT-Diff/BABE `computeLSD`, log10-power units), lsd_db
(not a default) the older dB-valued `metrics.log_spectral_distance` (Hann 512, hop 128);
DNSMOS in MOS units (1–5), at 16 kHz (other rates are resampled; samples beyond full scale
are clipped, as a fixed-point file would hold them).
"""
from __future__ import annotations

import csv
import json
import math
import pathlib

import numpy as np

from diffrestore import metrics
from diffrestore.data.pairs import DataError, pair_folders, read_mono

# Every measure that can be asked for, in column order. si_sir and si_sar need the noisy input
# (their decomposition projects on noisy − clean).
MEASURES = ("pesq", "estoi", "si_sdr", "lsd", "sdr", "si_sir", "si_sar", "lsd_db", "dnsmos")
DEFAULT_MEASURES = ("pesq", "estoi", "si_sdr", "lsd", "sdr", "si_sir", "si_sar", "dnsmos")
NON_INTRUSIVE = ("dnsmos",)  # need no clean reference
_NEED_NOISY = ("si_sir", "si_sar")
# Improvements over the degraded input, reported with a noisy folder when their measure is on.
IMPROVEMENTS = {"sdr_improvement": "sdr", "si_sdr_improvement": "si_sdr"}


def resolve_measures(measures=None, *, with_noisy: bool = True, with_clean: bool = True) -> tuple[str, ...]:
    """The measures to compute, in column order; None is `DEFAULT_MEASURES` (without a clean
    folder: the non-intrusive ones).

    `measures` is a sequence of names or a comma-separated string. Unknown names are a
    ValueError that lists the valid ones; so are si_sir / si_sar asked for explicitly without
    a noisy folder (the default set just leaves them out then), and intrusive measures
    without a clean folder.
    """
    if measures is None:
        chosen = set(DEFAULT_MEASURES) if with_clean else set(NON_INTRUSIVE)
        if not with_noisy:
            chosen -= set(_NEED_NOISY)
    else:
        if isinstance(measures, str):
            measures = measures.split(",")
        names = [m.strip() for m in measures if m.strip()]
        unknown = [m for m in names if m not in MEASURES]
        if unknown or not names:
            raise ValueError(f"unknown measure(s) {', '.join(unknown) or '(none given)'}; valid: {', '.join(MEASURES)}")
        chosen = set(names)
        if not with_noisy and chosen & set(_NEED_NOISY):
            raise ValueError(f"{', '.join(sorted(chosen & set(_NEED_NOISY)))} need the noisy inputs (--noisy DIR)")
        if not with_clean and chosen - set(NON_INTRUSIVE):
            raise ValueError(f"{', '.join(sorted(chosen - set(NON_INTRUSIVE)))} need clean references (--clean DIR); "
                             f"without them: {', '.join(NON_INTRUSIVE)}")
    return tuple(m for m in MEASURES if m in chosen)


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


def _measure(clean, estimate, rate, measures, noisy=None) -> dict:
    # Cut to the shortest: enhancers and restorers may return a few samples more or less.
    n = min(len(clean), len(estimate), *([len(noisy)] if noisy is not None else []))
    clean, estimate = clean[:n], estimate[:n]
    compute = {
        "pesq": lambda: metrics.pesq_wb(clean, estimate, rate),
        "estoi": lambda: metrics.estoi(clean, estimate, rate),
        "si_sdr": lambda: metrics.si_sdr(clean, estimate),
        "lsd": lambda: metrics.lsd_cqtdiff(clean, estimate),
        "sdr": lambda: metrics.sdr(clean, estimate),
        "lsd_db": lambda: metrics.log_spectral_distance(clean, estimate),
    }
    row = {m: compute[m]() for m in measures if m in compute}
    if "dnsmos" in measures:
        row.update(_dnsmos(estimate, rate))
    if noisy is not None and set(measures) & set(_NEED_NOISY):
        _, si_sir, si_sar = metrics.energy_ratios(estimate, clean, noisy[:n] - clean)
        row.update({k: v for k, v in (("si_sir", si_sir), ("si_sar", si_sar)) if k in measures})
    return row


def _dnsmos(wave, rate) -> dict:
    from diffrestore import dnsmos

    (scores,) = dnsmos.dnsmos_many([np.clip(wave, -1.0, 1.0)], rate)
    return {f"dnsmos_{k}": v for k, v in scores.items()}


def evaluate_folders(clean_dir, enhanced_dir, noisy_dir=None, measures=None) -> list[dict]:
    """One dict per enhanced file: `file`, the measures, and with a noisy folder `noisy_*`.

    Args:
      clean_dir, enhanced_dir: folders paired by relative path; clean_dir None: every audio
        file under enhanced_dir, with the non-intrusive measures only (DNSMOS).
      noisy_dir: the degraded inputs (same relative paths). Adds si_sir / si_sar, the noisy
        input's own figures as `noisy_<measure>` and, per file, sdr_improvement = sdr −
        noisy_sdr and si_sdr_improvement = si_sdr − noisy_si_sdr (dB) when sdr / si_sdr are on.
      measures: names from `MEASURES` (sequence or comma-separated string); default
        `DEFAULT_MEASURES`. See `resolve_measures`.
    """
    if clean_dir is None:
        return _evaluate_without_reference(enhanced_dir, noisy_dir, resolve_measures(
            measures, with_noisy=False, with_clean=False))
    measures = resolve_measures(measures, with_noisy=noisy_dir is not None)
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
        noisy_row = {}
        if noisy_dir is not None:
            if pair.relpath not in noisy_by_rel:
                raise DataError(f"{pair.noisy}: no noisy file with the same relative path in {noisy_dir}")
            noisy, _ = _read(noisy_by_rel[pair.relpath])
            # The input against itself has no noise/artefact split, so no noisy si_sir / si_sar.
            noisy_row = _measure(clean, noisy, rate, measures)
            row.update({f"noisy_{k}": v for k, v in noisy_row.items()})
        row.update(_measure(clean, enhanced, rate, measures, noisy))
        for key, base in IMPROVEMENTS.items():
            if base in noisy_row:
                row[key] = row[base] - noisy_row[base]
        rows.append(row)
    return rows


def _evaluate_without_reference(enhanced_dir, noisy_dir, measures) -> list[dict]:
    """Non-intrusive measures of each file under enhanced_dir (and of its noisy input, same
    relative path, as `noisy_*`, when noisy_dir is given)."""
    from diffrestore.io import list_audio_files

    root = pathlib.Path(enhanced_dir)
    rows = []
    for path in list_audio_files(root):
        rel = path.relative_to(root) if root.is_dir() else pathlib.Path(path.name)
        wave, rate = _read(path)
        row = {"file": str(rel)}
        if noisy_dir is not None:
            noisy_path = pathlib.Path(noisy_dir) / rel
            if not noisy_path.is_file():
                raise DataError(f"{path}: no noisy file with the same relative path in {noisy_dir}")
            noisy, noisy_rate = _read(noisy_path)
            row.update({f"noisy_{k}": v for k, v in _measure(noisy, noisy, noisy_rate, measures).items()})
        row.update(_measure(wave, wave, rate, measures))
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
    width = max([14] + [len(k) + 2 for k in summary])  # "noisy_si_sdr", "si_sdr_improvement" fit
    lines = [f"{'measure':{width}s}{'mean':>10s}{'± std':>10s}{'n':>6s}"]
    for key, s in summary.items():
        lines.append(f"{key:{width}s}{s['mean']:10.3f}{s['std']:10.3f}{s['n']:6d}")
    return "\n".join(lines)
