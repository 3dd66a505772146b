"""`make quickstart`: the whole workflow on a built-in synthetic corpus, in minutes on a CPU.

1. writes a synthetic noisy/clean speech-like corpus (nothing is downloaded),
2. trains `configs/quickstart.py` on whatever devices exist,
3. enhances the held-out test set with the EMA weights,
4. prints noisy vs enhanced PESQ, ESTOI and SI-SDR, and writes under WORKDIR:
   checkpoints/, enhanced/, spectrograms.png and results.json
   ({"noisy": {"pesq", "estoi", "si_sdr"}, "enhanced": {...}}, means over the test set).
"""
from __future__ import annotations

import importlib.util
import json
import pathlib

import numpy as np

CONFIG_FILE = pathlib.Path(__file__).resolve().parents[1] / "configs" / "quickstart.py"


def load_config_file(path):
    """Imports a `configs/*.py` file and returns its `get_config()`."""
    path = pathlib.Path(path)
    spec = importlib.util.spec_from_file_location(f"diffrestore_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def run_quickstart(workdir="runs/quickstart", minutes=None) -> dict:
    from diffrestore import Enhancer
    from diffrestore.data import load_eval_pairs, write_synthetic_corpus
    from diffrestore.metrics import speech_metrics
    from diffrestore.train import train_and_evaluate
    import soundfile as sf

    workdir = pathlib.Path(workdir)
    config = load_config_file(CONFIG_FILE)
    data_dir = workdir / "data"
    config.data.data_dir = str(data_dir)
    if minutes is not None:
        config.training.max_minutes = float(minutes)
    if not (data_dir / "test").is_dir():
        print(f"writing the synthetic corpus to {data_dir}")
        write_synthetic_corpus(data_dir, **config.quickstart.corpus.to_dict())

    train_and_evaluate(config, workdir)

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


def _plot_spectrograms(path, clean, noisy, enhanced, rate):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    for ax, (title, wave) in zip(axes, [("noisy", noisy), ("enhanced", enhanced), ("clean", clean)]):
        ax.specgram(wave, NFFT=512, Fs=rate, noverlap=384, cmap="magma", vmin=-120)
        ax.set_title(title)
        ax.set_ylabel("Hz")
    axes[-1].set_xlabel("s")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
