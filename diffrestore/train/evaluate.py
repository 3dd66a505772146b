"""Validation during training: enhance a few validation files with the EMA weights and score
them as the reference does (PESQ wide-band at 16 kHz, ESTOI, SI-SDR at the model's rate,
from `diffrestore.metrics`)."""
from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np

log = logging.getLogger("diffrestore.train")


def file_metrics(clean, estimate, sample_rate: int) -> dict:
    """{"pesq", "estoi", "si_sdr"} of one estimate (`diffrestore.metrics`); NaN where one fails."""
    from diffrestore import metrics

    try:
        return metrics.speech_metrics(np.asarray(clean), np.asarray(estimate), int(sample_rate))
    except Exception as e:  # one odd validation file must not stop a training run
        log.warning("validation metrics failed (%s); counted as NaN", e)
        return {"pesq": float("nan"), "estoi": float("nan"), "si_sdr": float("nan")}


def select_eval_pairs(pairs, num_files: int):
    """`num_files` pairs spread evenly over the list (the reference's linspace selection)."""
    if num_files <= 0 or not pairs:
        return []
    num_files = min(num_files, len(pairs))
    indices = np.linspace(0, len(pairs) - 1, num_files).astype(int)
    return [pairs[i] for i in indices]


def mean_metrics(per_file: list[dict], prefix: str = "") -> dict:
    keys = per_file[0].keys() if per_file else ()
    return {prefix + k: float(np.nanmean([m[k] for m in per_file])) for k in keys}


def spectrogram_image(wave, n_fft: int = 510, hop_length: int = 128, floor_db: float = -80.0) -> np.ndarray:
    """A log-magnitude spectrogram as an RGB uint8 image (low frequencies at the bottom)."""
    from matplotlib import colormaps
    from scipy.signal import stft

    _, _, spec = stft(np.asarray(wave, np.float64), nperseg=n_fft, noverlap=n_fft - hop_length, window="hann")
    db = 20 * np.log10(np.abs(spec) + 1e-8)
    db = np.clip(db - db.max(), floor_db, 0.0)
    scaled = (db - floor_db) / -floor_db
    rgb = colormaps["magma"](scaled[::-1])[..., :3]
    return (rgb * 255).astype(np.uint8)


@dataclasses.dataclass(frozen=True)
class EvalExample:
    clean: np.ndarray  # float32 (L,)
    noisy: np.ndarray  # float32 (L,)
    sample_rate: int
    name: str


def load_examples(pairs, default_rate: int) -> list[EvalExample]:
    """Validation pairs (waveform arrays or paths to audio files) as mono float32 arrays."""
    examples = []
    for p in pairs:
        waves, rate = [], int(getattr(p, "sample_rate", default_rate))
        for item in (p.clean, p.noisy):
            if isinstance(item, (str, os.PathLike)):
                import soundfile as sf

                data, rate = sf.read(str(item), dtype="float32", always_2d=True)
                item = data[:, 0]  # the reference trains and validates on mono files
            waves.append(np.asarray(item, np.float32).reshape(-1))
        examples.append(EvalExample(waves[0], waves[1], int(rate), str(getattr(p, "relpath", len(examples)))))
    return examples


def evaluate_enhancement(enhancer, examples, *, num_steps: int, sampler=None, seed: int = 0, **sampler_options):
    """Enhances `examples` (EvalExample) and scores them against their clean references.

    Signal i is sampled with the key fold_in(key(seed), i), so successive validations of the
    same files differ only by the weights.

    Returns:
      (metrics, enhanced): mean pesq, estoi, si_sdr over the files, and the enhanced waveforms.
    """
    enhanced = [None] * len(examples)
    for rate in sorted({e.sample_rate for e in examples}):  # one call per rate (usually one)
        idx = [i for i, e in enumerate(examples) if e.sample_rate == rate]
        outs = enhancer.enhance(
            [examples[i].noisy for i in idx], rate, sampler=sampler, num_steps=num_steps, seed=seed,
            example_ids=idx, **sampler_options,
        )
        for i, out in zip(idx, outs):
            enhanced[i] = out
    per_file = [file_metrics(e.clean, out, e.sample_rate) for e, out in zip(examples, enhanced)]
    return mean_metrics(per_file), enhanced
