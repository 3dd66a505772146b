"""`make quickstart` and `make quickstart-bwe`: whole workflows on built-in synthetic corpora, in
minutes on a CPU (nothing is downloaded).

Enhancement (`run_quickstart`, `diffrestore quickstart`):
1. writes a synthetic noisy/clean speech-like corpus,
2. trains `configs/quickstart.py` on whatever devices exist,
3. enhances the held-out test set with the EMA weights,
4. prints noisy vs enhanced PESQ, ESTOI and SI-SDR, and writes under WORKDIR:
   checkpoints/, enhanced/, spectrograms.png and results.json
   ({"noisy": {"pesq", "estoi", "si_sdr"}, "enhanced": {...}}, means over the test set).

Zero-shot bandwidth extension (`run_bwe_quickstart`, `diffrestore quickstart --task bwe`):
1. writes a synthetic piano-music corpus (clean audio only),
2. trains the CQT-Diff prior of `configs/quickstart_bwe.py`,
3. low-passes the held-out pieces and restores them by posterior sampling with that prior,
4. prints degraded vs restored LSD and SI-SDR, and writes under WORKDIR: checkpoints/,
   degraded/, restored/, spectrograms.png and results.json
   ({"degraded": {"lsd", "si_sdr"}, "restored": {...}}, means over the test pieces).
"""
from __future__ import annotations

import importlib.util
import json
import pathlib

import numpy as np

CONFIG_FILE = pathlib.Path(__file__).resolve().parents[1] / "configs" / "quickstart.py"
BWE_CONFIG_FILE = CONFIG_FILE.with_name("quickstart_bwe.py")


def load_config_file(path):
    """Imports a `configs/*.py` file and returns its `get_config()`."""
    path = pathlib.Path(path)
    spec = importlib.util.spec_from_file_location(f"diffrestore_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


# `diffrestore quickstart --family`: the families a quickstart can train from scratch (CRP
# fine-tunes a trained model). The default, the Schrödinger bridge of configs/quickstart.py,
# reaches the best quality in the 8-minute budget (benchmarks/results/families).
QUICKSTART_FAMILIES = ("sb", "sgmse", "bbed", "storm", "flow")


def _write_corpus_and_train(config_file, workdir: pathlib.Path, minutes, write_corpus, kind: str, family=None):
    """Steps 1-2 of both workflows: the config with data_dir = WORKDIR/data, the corpus written
    there unless it exists (`write_corpus(dir, **quickstart.corpus)`), training run (or resumed).
    family: another supervised family on the same network (`config.set_family`)."""
    from diffrestore.train import train_and_evaluate

    config = load_config_file(config_file)
    if family not in (None, "sb"):
        from diffrestore.config import set_family

        if family not in QUICKSTART_FAMILIES:
            raise ValueError(f"quickstart family must be one of {QUICKSTART_FAMILIES}, not {family!r}")
        set_family(config, family)
        config.quickstart.num_steps = int(config.sampling.num_steps)
        config.training.eval_num_steps = int(config.sampling.num_steps)
    data_dir = workdir / "data"
    config.data.data_dir = str(data_dir)
    if minutes is not None:
        config.training.max_minutes = float(minutes)
    if not (data_dir / "test").is_dir():
        print(f"writing the synthetic {kind} corpus to {data_dir}")
        write_corpus(data_dir, **config.quickstart.corpus.to_dict())
    train_and_evaluate(config, workdir)
    return config


def run_quickstart(workdir="runs/quickstart", minutes=None, family=None) -> dict:
    from diffrestore import Enhancer
    from diffrestore.data import load_eval_pairs, write_synthetic_corpus
    from diffrestore.metrics import speech_metrics
    import soundfile as sf

    workdir = pathlib.Path(workdir)
    config = _write_corpus_and_train(CONFIG_FILE, workdir, minutes, write_synthetic_corpus, "speech", family)

    enhancer = Enhancer.from_checkpoint(workdir)
    pairs = load_eval_pairs(config.data, "test")
    rate = int(config.data.sample_rate)
    out_dir = workdir / "enhanced"
    print(f"enhancing {len(pairs)} held-out files ({config.quickstart.num_steps} reverse steps)")
    enhanced = enhancer.enhance(
        [p.noisy for p in pairs], rate, num_steps=config.quickstart.num_steps, seed=0,
        batch_size=config.quickstart.batch_size,
    )
    rows = {"noisy": [], "enhanced": []}
    for pair, est in zip(pairs, enhanced):
        dest = out_dir / pair.relpath
        dest.parent.mkdir(parents=True, exist_ok=True)
        sf.write(dest, est, rate)
        rows["noisy"].append(speech_metrics(pair.clean, pair.noisy, rate))
        rows["enhanced"].append(speech_metrics(pair.clean, est, rate))

    results = {
        kind: {m: float(np.nanmean([r[m] for r in rs])) for m in ("pesq", "estoi", "si_sdr")} for kind, rs in rows.items()
    }
    results["num_files"] = len(pairs)
    (workdir / "results.json").write_text(json.dumps(results, indent=2))
    _plot_spectrograms(workdir / "spectrograms.png", pairs[0].clean, pairs[0].noisy, enhanced[0], rate)
    print(f"\n{'':10s}{'PESQ':>8s}{'ESTOI':>8s}{'SI-SDR':>9s}   ({len(pairs)} held-out files)")
    for kind in ("noisy", "enhanced"):
        r = results[kind]
        print(f"{kind:10s}{r['pesq']:8.2f}{r['estoi']:8.3f}{r['si_sdr']:8.2f} dB")
    print(f"\nwrote {workdir}/results.json, {workdir}/spectrograms.png and {out_dir}/")
    return results


def run_bwe_quickstart(workdir="runs/quickstart_bwe", minutes=None) -> dict:
    """Trains the demo prior and restores the low-passed test pieces; returns results.json's dict."""
    from diffrestore import Prior, restoration
    from diffrestore.data import load_eval_segments, write_synthetic_music
    from diffrestore.io import write_audio_atomic
    from diffrestore.metrics import restoration_metrics

    workdir = pathlib.Path(workdir)
    config = _write_corpus_and_train(BWE_CONFIG_FILE, workdir, minutes, write_synthetic_music, "music")
    q = config.quickstart

    prior = Prior.from_checkpoint(workdir)
    rate = prior.sample_rate
    clean = list(load_eval_segments(config.data, "test", num_segments=q.corpus.num_test, length=int(q.seconds * rate)))
    task = restoration.make_task(q.task, rate, cutoff_hz=q.cutoff_hz, filter=q.filter)
    degraded = [restoration.degrade(c, task, rate) for c in clean]
    print(f"restoring {len(clean)} held-out pieces of {q.seconds:g} s low-passed at {q.cutoff_hz:g} Hz "
          f"({q.filter}; {q.num_steps} Heun steps, xi {q.xi:g})")
    restored = prior.restore(degraded, rate, task=q.task, cutoff_hz=q.cutoff_hz, filter=q.filter,
                             num_steps=q.num_steps, xi=q.xi, batch_size=q.batch_size, seed=0)
    rows = {"degraded": [], "restored": []}
    for i, (c, d, r) in enumerate(zip(clean, degraded, restored)):
        for kind, wave in (("degraded", d), ("restored", r)):
            write_audio_atomic(workdir / kind / f"test_{i:02d}.wav", wave, rate, subtype="FLOAT", fmt="WAV")
            rows[kind].append(restoration_metrics(c, wave, rate))
    results = {kind: {m: float(np.mean([r[m] for r in rs])) for m in ("lsd", "si_sdr")} for kind, rs in rows.items()}
    results.update(num_files=len(clean), seconds=float(q.seconds), cutoff_hz=float(q.cutoff_hz), filter=q.filter,
                   num_steps=int(q.num_steps), xi=float(q.xi))
    (workdir / "results.json").write_text(json.dumps(results, indent=2))
    _plot_spectrograms(workdir / "spectrograms.png", clean[0], degraded[0], restored[0], rate,
                       titles=("low-passed", "restored", "clean"))
    print(f"\n{'':10s}{'LSD':>8s}{'SI-SDR':>9s}   ({len(clean)} held-out pieces)")
    for kind in ("degraded", "restored"):
        r = results[kind]
        print(f"{kind:10s}{r['lsd']:8.2f}{r['si_sdr']:8.2f} dB")
    print(f"\nwrote {workdir}/results.json, {workdir}/spectrograms.png, {workdir}/degraded/ and {workdir}/restored/")
    return results


def _plot_spectrograms(path, clean, noisy, enhanced, rate, titles=("noisy", "enhanced", "clean")):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    for ax, (title, wave) in zip(axes, zip(titles, (noisy, enhanced, clean))):
        ax.specgram(wave, NFFT=512, Fs=rate, noverlap=384, cmap="magma", vmin=-120)
        ax.set_title(title)
        ax.set_ylabel("Hz")
    axes[-1].set_xlabel("s")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
