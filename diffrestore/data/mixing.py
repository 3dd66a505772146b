"""Noisy examples made on the fly: clean speech (+ a room impulse response) + noise at a drawn SNR.

The reference trains on mixtures written to disk beforehand; mixing inside the input pipeline
gives a new noise excerpt, SNR and room for every example, at no storage cost.

Conventions (shared by the numpy functions used for validation sets and the TensorFlow ones
used in the training pipeline, so both make the same mixtures):

* SNR = 10 log10(sum(s^2) / sum(n^2)) over the mixed excerpt, where s is the (reverberant)
  speech and n the scaled noise; silence and padding inside the excerpt count.
* A room impulse response is cut at its direct path (its largest sample) and scaled so that the
  direct path is +1: the reverberant speech is then the dry speech plus reflections, aligned
  with it, and the dry speech is a valid dereverberation target.
* Noise shorter than the excerpt is repeated (looped) from a drawn start.
* Sources may be multi-channel; their first channel is used.
"""
from __future__ import annotations

import dataclasses
import logging
import pathlib

import numpy as np

from diffrestore.data.pairs import AudioInfo, DataError, SUBSETS, audio_infos, list_audio_files

log = logging.getLogger("diffrestore.data")

MIX_TARGETS = ("dry", "reverberant")


# ---------------------------------------------------------------------------------------------
# numpy (validation/test sets, and the reference the TensorFlow versions are tested against)


def power(x) -> float:
    """Mean square of a waveform (float64)."""
    x = np.asarray(x, np.float64)
    return float(np.mean(x * x)) if x.size else 0.0


def noise_gain(speech, noise, snr_db: float) -> float:
    """The factor g with 10 log10(sum(speech^2) / sum((g * noise)^2)) = snr_db.

    Args:
      speech, noise: waveforms of the same length (any scale).
      snr_db: the wanted SNR in dB.

    Returns:
      g >= 0; 0 for a silent noise (the SNR is then infinite whatever g is).
    """
    p_noise = power(noise)
    if p_noise <= 0.0:
        return 0.0
    return float(np.sqrt(power(speech) / (p_noise * 10.0 ** (snr_db / 10.0))))


def mix_at_snr(speech, noise, snr_db: float) -> tuple[np.ndarray, np.ndarray]:
    """speech + scaled noise at `snr_db`.

    Returns:
      (noisy, scaled_noise), float32, shaped like `speech`.
    """
    speech = np.asarray(speech, np.float64)
    scaled = noise_gain(speech, noise, snr_db) * np.asarray(noise, np.float64)
    return (speech + scaled).astype(np.float32), scaled.astype(np.float32)


def prepare_rir(rir, *, max_samples: int) -> np.ndarray:
    """A room impulse response cut at its direct path, truncated, with the direct path at +1.

    Args:
      rir: (R,) impulse response at the corpus sample rate.
      max_samples: the longest response kept (the tail beyond is dropped).

    Returns:
      (min(R - peak, max_samples),) float32 with rir[0] == 1.

    Raises:
      ValueError: an all-zero response.
    """
    rir = np.asarray(rir, np.float64)
    peak = int(np.argmax(np.abs(rir)))
    if rir.size == 0 or rir[peak] == 0.0:
        raise ValueError("the impulse response is all zeros")
    # Dividing by the signed peak keeps the direct path in phase with the dry speech.
    return (rir[peak: peak + max_samples] / rir[peak]).astype(np.float32)


def reverberate(speech, rir) -> np.ndarray:
    """speech convolved with rir, truncated to the length of speech (the tail is cut), float32."""
    from scipy.signal import fftconvolve

    speech = np.asarray(speech, np.float64)
    return fftconvolve(speech, np.asarray(rir, np.float64))[: speech.shape[0]].astype(np.float32)


def looped_excerpt(noise, start: int, length: int) -> np.ndarray:
    """noise[start : start + length], wrapping around to the beginning where it runs out."""
    noise = np.asarray(noise)
    return noise[(start + np.arange(length)) % noise.shape[0]]


def mix_example(clean, noise, snr_db: float, *, rir=None, target: str = "dry") -> tuple[np.ndarray, np.ndarray]:
    """One noisy example: (reverberant) clean + noise at `snr_db`.

    Args:
      clean: (T,) dry speech.
      noise: (T,) noise excerpt.
      snr_db: SNR of the reverberant speech against the scaled noise, dB.
      rir: an impulse response from `prepare_rir`, or None for no reverberation.
      target: "dry" (dereverberation + denoising) or "reverberant" (denoising only).

    Returns:
      (target, noisy), float32 (T,).
    """
    if target not in MIX_TARGETS:
        raise ValueError(f"mix target must be one of {MIX_TARGETS}, not {target!r}")
    clean = np.asarray(clean, np.float32)
    speech = clean if rir is None else reverberate(clean, rir)
    noisy, _ = mix_at_snr(speech, noise, snr_db)
    return (clean if target == "dry" else speech), noisy


# ---------------------------------------------------------------------------------------------
# TensorFlow (inside the training pipeline's map; `tf` is passed in so this module stays light)


def tf_mix_at_snr(tf, speech, noise, snr_db):
    """TensorFlow `mix_at_snr` for float32 (T,) tensors; returns (noisy, scaled_noise)."""
    p_speech = tf.reduce_mean(tf.square(tf.cast(speech, tf.float64)))
    p_noise = tf.reduce_mean(tf.square(tf.cast(noise, tf.float64)))
    snr = tf.cast(snr_db, tf.float64)
    gain = tf.where(p_noise > 0.0, tf.sqrt(p_speech / (tf.maximum(p_noise, 1e-300) * 10.0 ** (snr / 10.0))), 0.0)
    scaled = tf.cast(gain, tf.float32) * noise
    return speech + scaled, scaled


def tf_reverberate_valid(tf, extended, rir, length: int):
    """The `length` samples of extended * rir where the whole response overlaps the signal.

    Args:
      extended: (length + R - 1,) float32 speech, starting R - 1 samples before the excerpt
        (zeros where that lies before the file start), so the excerpt's reverberation includes
        the tail of what was said just before it.
      rir: (R,) float32 impulse response (zero-padded to a fixed R).
      length: samples wanted.

    Returns:
      (length,) float32.
    """
    num_taps = int(rir.shape[0])
    total = length + num_taps - 1
    fft_length = 1 << (total - 1).bit_length()
    # Circular convolution at >= total points: wrap-around only touches the first R - 1
    # outputs, which are exactly the ones dropped.
    spectrum = tf.signal.rfft(extended, [fft_length]) * tf.signal.rfft(rir, [fft_length])
    full = tf.signal.irfft(spectrum, [fft_length])
    return full[num_taps - 1: num_taps - 1 + length]


# ---------------------------------------------------------------------------------------------
# Sources on disk


@dataclasses.dataclass(frozen=True)
class MixSources:
    """The files of one subset that on-the-fly mixing draws from (headers already read)."""

    speech: list[AudioInfo]
    noise: list[AudioInfo]
    rirs: list[AudioInfo]
    speech_root: pathlib.Path


def subset_dir(root, subset: str, *, what: str) -> pathlib.Path:
    """`root/subset` if it exists; `root` itself if it has no train/valid/test folders at all.

    Raises:
      DataError: `root` is missing, or it is split into subsets but not into this one.
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise DataError(f"{what} folder {root} does not exist")
    if (root / subset).is_dir():
        return root / subset
    present = [s for s in SUBSETS if (root / s).is_dir()]
    if present:
        raise DataError(f"{what} folder {root} has {'/'.join(present)} but no {subset}/ subfolder")
    return root


def _infos(root, subset: str, *, what: str, sample_rate: int, allow_flat: bool) -> list[AudioInfo]:
    folder = subset_dir(root, subset, what=what)
    if folder == pathlib.Path(root) and subset != "train":
        if not allow_flat:
            raise DataError(
                f"{what} folder {root} has no {subset}/ subfolder; {subset} speech must not be training speech "
                f"(add {root}/{subset}/, or turn validation off)"
            )
        log.warning("%s folder %s has no %s/ subfolder: %s uses the training %s files", what, root, subset, subset, what)
    infos = audio_infos(list_audio_files(folder))
    if not infos:
        raise DataError(f"{what} folder {folder} holds no audio files")
    wrong = [i for i in infos if i.sample_rate != sample_rate]
    if wrong:
        listed = ", ".join(f"{i.path} ({i.sample_rate} Hz)" for i in wrong[:10])
        raise DataError(f"{what} files not at the configured {sample_rate} Hz: {listed}" + (" ..." if len(wrong) > 10 else ""))
    return infos


def find_mix_sources(speech_dir, noise_dir, rir_dir, subset: str, *, sample_rate: int) -> MixSources:
    """Lists and checks the speech, noise and (optional) impulse-response files of a subset.

    Each folder may be split into `train/`, `valid/`, `test/` or be flat. Flat noise/RIR folders
    are shared by all subsets (with a warning outside training); a flat speech folder serves
    training only.

    Args:
      speech_dir: clean speech (the dry targets).
      noise_dir: noise recordings.
      rir_dir: room impulse responses, or "" / None for none.
      subset: "train", "valid" or "test".
      sample_rate: the rate every file must have (Hz); nothing is resampled.

    Raises:
      DataError: missing or empty folders, unreadable or empty files, wrong sample rates.
    """
    speech = _infos(speech_dir, subset, what="speech", sample_rate=sample_rate, allow_flat=False)
    noise = _infos(noise_dir, subset, what="noise", sample_rate=sample_rate, allow_flat=True)
    rirs = _infos(rir_dir, subset, what="RIR", sample_rate=sample_rate, allow_flat=True) if rir_dir else []
    return MixSources(speech=speech, noise=noise, rirs=rirs, speech_root=subset_dir(speech_dir, subset, what="speech"))
