"""A synthetic paired corpus: speech-like signals in varied noises, numpy only, from a seed.

Good enough to exercise every part of training and enhancement without downloading anything
(tests, the quickstart), not a substitute for real speech. The "speech" is a source-filter
model: a harmonic glottal source with a moving f0, or noise for unvoiced sounds, shaped by
second-order resonators (formants) that glide between vowel targets, under syllable-like
envelopes with pauses. Resonators are applied per 10 ms frame in the STFT domain (the product of
their magnitude responses at the frame's formant frequencies), which moves them smoothly and
costs a few milliseconds per second of audio.

Every file is generated from its own `SeedSequence([seed, subset, index])`: a corpus is
reproducible, and adding files does not change the existing ones.
"""
from __future__ import annotations

import dataclasses
import io
import json
import pathlib

import numpy as np
import soundfile as sf

NOISE_TYPES = ("white", "pink", "brown", "babble", "hum", "clicks")

# (F1, F2, F3) of vowels of an adult male voice, Hz (Peterson & Barney averages).
_VOWELS = np.array([
    (730, 1090, 2440),  # a
    (270, 2290, 3010),  # i
    (300, 870, 2240),  # u
    (530, 1840, 2480),  # e
    (570, 840, 2410),  # o
    (660, 1720, 2410),  # ae
    (490, 1350, 1690),  # er
    (640, 1190, 2390),  # ah
], np.float64)
_BANDWIDTHS = np.array([80.0, 100.0, 140.0, 200.0])  # Hz, F1..F4
_SUBSET_IDS = {"train": 0, "valid": 1, "test": 2}


@dataclasses.dataclass(frozen=True)
class Speaker:
    """Voice traits: f0 in Hz, formant scale (vocal tract length), syllables per second."""

    f0: float
    formant_scale: float
    syllable_rate: float
    breathiness: float


def random_speaker(rng: np.random.Generator) -> Speaker:
    """Voices from low male (~90 Hz) to child-like (~260 Hz)."""
    f0 = float(np.exp(rng.uniform(np.log(90.0), np.log(260.0))))
    # Higher voices have shorter vocal tracts: formants scale up with f0, loosely.
    scale = float(np.clip(0.85 + 0.35 * (f0 - 90.0) / 170.0 + rng.normal(0, 0.04), 0.8, 1.25))
    return Speaker(f0=f0, formant_scale=scale, syllable_rate=float(rng.uniform(3.0, 5.5)), breathiness=float(rng.uniform(0.02, 0.1)))


# ---------------------------------------------------------------------------------------------
# Frame-domain filtering


def _frame_params(sample_rate: int) -> tuple[int, int]:
    hop = max(16, int(round(0.01 * sample_rate)))
    return hop, 2 * hop  # 10 ms hop, 50 % overlap: the filters are smooth envelopes


def _stft(x, hop, frame):
    """(T, frame//2 + 1) complex spectra of sqrt-Hann windowed frames (frame = 2 hop); x is
    padded to whole hops."""
    window = np.sqrt(np.hanning(frame + 1)[:-1])
    padded = np.concatenate([np.zeros(frame - hop), x, np.zeros(frame)])
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame)[::hop]
    return np.fft.rfft(frames * window, axis=1)


def _istft(spec, hop, frame, length):
    """Overlap-add inverse of `_stft` (sqrt-Hann analysis and synthesis at 50 % overlap sum to 1)."""
    window = np.sqrt(np.hanning(frame + 1)[:-1])
    frames = np.fft.irfft(spec, n=frame, axis=1) * window
    num = frames.shape[0]
    out = np.zeros((num + 1) * hop)
    out[: num * hop] += frames[:, :hop].reshape(-1)
    out[hop:] += frames[:, hop:].reshape(-1)  # each frame's second half lands one hop later
    return out[frame - hop: frame - hop + length]


def _trig(freqs, sample_rate: int):
    omega = 2 * np.pi * np.asarray(freqs, np.float64) / sample_rate
    return np.cos(omega), np.sin(omega), np.cos(2 * omega), np.sin(2 * omega)


def _resonance(trig, centre, bandwidth, sample_rate: int):
    r = np.exp(-np.pi * np.asarray(bandwidth, np.float64) / sample_rate)
    a = 2 * r * np.cos(2 * np.pi * np.asarray(centre, np.float64) / sample_rate)
    b = r * r
    cos1, sin1, cos2, sin2 = trig
    # |1 - a e^{-jw} + b e^{-2jw}| in real arithmetic: a complex exp per frame and bin would be
    # the slowest part of the generator.
    real = 1 - a * cos1 + b * cos2
    imag = a * sin1 - b * sin2
    return np.abs(1 - a + b) / np.sqrt(real * real + imag * imag)


def resonator_gain(freqs, centre, bandwidth, sample_rate: int):
    """|H| of the second-order resonator 1 / (1 - 2 r cos(theta) z^-1 + r^2 z^-2) with
    r = exp(-pi bandwidth / fs), theta = 2 pi centre / fs, scaled to unit gain at 0 Hz (Klatt's
    normalisation), at `freqs` (Hz). Broadcasts (e.g. centre (frames, 1) x freqs (1, bins))."""
    return _resonance(_trig(freqs, sample_rate), centre, bandwidth, sample_rate)


# ---------------------------------------------------------------------------------------------
# Speech


def _smooth_track(rng, num, step, spread):
    """A slowly varying random track (one value per frame), control points every `step` frames."""
    points = rng.normal(0.0, spread, num // step + 2)
    return np.interp(np.arange(num), np.arange(points.shape[0]) * step, points)


def speech_like(rng: np.random.Generator, num_samples: int, sample_rate: int, speaker: Speaker | None = None) -> np.ndarray:
    """A speech-like waveform with peak 1.

    Syllables (voiced vowel, sometimes with a noisy fricative onset) of 90-300 ms under smooth
    envelopes, short gaps and longer pauses; f0 moves around the speaker's with declination and
    vibrato; formants glide between vowel targets.

    Args:
      rng: the generator everything is drawn from.
      num_samples: output length.
      sample_rate: Hz (8 kHz and up).
      speaker: voice traits; drawn from rng if None.

    Returns:
      (num_samples,) float64.
    """
    speaker = speaker or random_speaker(rng)
    hop, frame = _frame_params(sample_rate)
    num_frames = num_samples // hop + 5
    frame_rate = sample_rate / hop

    # Per-frame voiced/unvoiced amplitudes and vowel targets, syllable by syllable.
    voiced = np.zeros(num_frames)
    unvoiced = np.zeros(num_frames)
    fric_centre = np.full(num_frames, 4000.0)
    targets = np.zeros((num_frames, 3))

    def put(track, start, values):  # writes values from frame `start` on, clipped at the end
        values = values[: max(0, num_frames - start)]
        track[start: start + values.shape[0]] = values

    # Leading silence, short enough that even a short file holds a syllable.
    t = int(min(rng.uniform(0.05, 0.3) * frame_rate, 0.2 * num_frames))
    vowel = _VOWELS[rng.integers(len(_VOWELS))]
    first = True
    while t < num_frames:
        if not first and rng.uniform() < 0.12:  # a pause between phrases
            t += int(rng.uniform(0.15, 0.5) * frame_rate)
            continue
        first = False
        duration = max(4, int(rng.uniform(0.09, 0.3) / (speaker.syllable_rate / 4.0) * frame_rate))
        level = rng.uniform(0.4, 1.0)
        if rng.uniform() < 0.35:  # fricative onset (s, f, sh ...)
            onset = max(2, int(rng.uniform(0.03, 0.08) * frame_rate))
            put(unvoiced, t, level * 0.6 * np.hanning(onset + 2)[1:-1])
            put(fric_centre, t, np.full(onset, rng.uniform(2500, min(6500, 0.4 * sample_rate))))
            t += onset
        if rng.uniform() < 0.95:
            put(voiced, t, level * np.sin(np.linspace(0, np.pi, duration + 2)[1:-1]) ** 1.5)
        else:  # a whispered/unvoiced syllable
            put(unvoiced, t, level * 0.7 * np.hanning(duration + 2)[1:-1])
            put(fric_centre, t, np.full(duration, rng.uniform(2000, min(5000, 0.4 * sample_rate))))
        next_vowel = _VOWELS[rng.integers(len(_VOWELS))]
        # Formants glide from the previous vowel to this one over the syllable.
        ramp = np.linspace(0, 1, duration)[:, None]
        put(targets, t, (1 - ramp) * vowel + ramp * next_vowel)
        vowel = next_vowel
        t += duration + int(rng.uniform(0.02, 0.08) * frame_rate)
    formants = targets * speaker.formant_scale * (1 + 0.03 * _smooth_track(rng, num_frames, 10, 1.0)[:, None])
    formants[formants <= 0] = 500.0  # frames before the first syllable

    # Source: a sawtooth (harmonics falling at 6 dB/octave) at a moving f0.
    declination = np.linspace(1.1, 0.9, num_frames)
    f0_frames = speaker.f0 * declination * np.exp(0.08 * _smooth_track(rng, num_frames, 25, 1.0))
    f0_frames *= 1 + 0.01 * np.sin(2 * np.pi * 5.5 * np.arange(num_frames) / frame_rate)  # vibrato
    f0_frames = np.clip(f0_frames, 70.0, 400.0)
    f0 = np.interp(np.arange(num_samples) / hop, np.arange(num_frames), f0_frames)
    phase = np.cumsum(f0) / sample_rate
    glottal = 2 * (phase % 1.0) - 1.0

    # Filters, frame by frame: F1-F3 from the tracks plus a fixed F4 on voiced frames, a
    # fricative resonance on unvoiced ones (silent frames cost nothing).
    spec_v = _stft(glottal, hop, frame)[:num_frames]
    count = spec_v.shape[0]
    # Breath noise, added in the STFT domain: white noise's STFT is (nearly) i.i.d. complex
    # Gaussian with variance frame/2 per bin (sqrt-Hann window), so it is drawn directly.
    noise_scale = np.sqrt(frame / 4)
    trig = _trig(np.fft.rfftfreq(frame, 1.0 / sample_rate)[None, :], sample_rate)
    nyquist_guard = 0.45 * sample_rate
    spec = np.zeros_like(spec_v)
    rows = np.flatnonzero(voiced[:count])
    gain = _resonance(trig, min(3500.0 * speaker.formant_scale, nyquist_guard), _BANDWIDTHS[3], sample_rate)
    for k in range(3):
        gain = gain * _resonance(trig, np.minimum(formants[rows, k], nyquist_guard)[:, None], _BANDWIDTHS[k], sample_rate)
    # The resonator cascade has a large gain near F1: both paths are scaled to unit mean gain
    # before the envelopes set their levels.
    gain /= np.mean(gain, axis=1, keepdims=True)
    breath = rng.standard_normal((rows.size, gain.shape[1])) + 1j * rng.standard_normal((rows.size, gain.shape[1]))
    spec[rows] = (spec_v[rows] + speaker.breathiness * noise_scale * breath) * (gain * voiced[rows, None])
    rows = np.flatnonzero(unvoiced[:count])
    if rows.size:
        gain = _resonance(trig, np.minimum(fric_centre[rows], nyquist_guard)[:, None], 1500.0, sample_rate)
        gain /= np.mean(gain, axis=1, keepdims=True)
        shape = (rows.size, trig[0].shape[1])
        hiss = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) * noise_scale
        # Fricatives are some 15 dB weaker than vowels.
        spec[rows] += 0.1 * hiss * (gain * unvoiced[rows, None])
    x = _istft(spec, hop, frame, num_samples)
    x /= np.max(np.abs(x))
    # A recording's noise floor (-70 dB re the peak): real "clean" speech is never digital
    # silence, and all-zero crops would make SNRs and peak normalisation degenerate.
    x += 10 ** (-70 / 20) * rng.standard_normal(num_samples)
    return x / np.max(np.abs(x))


# ---------------------------------------------------------------------------------------------
# Noise


def _spectral_noise(rng, num_samples, sample_rate, exponent):
    """Gaussian noise with power spectral density ~ 1/f^exponent above 20 Hz (no DC drift)."""
    spec = np.fft.rfft(rng.standard_normal(num_samples))
    freqs = np.fft.rfftfreq(num_samples, 1.0 / sample_rate)
    spec *= np.maximum(freqs, 20.0) ** (-exponent / 2)
    spec[freqs < 20.0] = 0.0
    return np.fft.irfft(spec, n=num_samples)


def noise(rng: np.random.Generator, kind: str, num_samples: int, sample_rate: int) -> np.ndarray:
    """Noise of one kind (see NOISE_TYPES), float64 (num_samples,), arbitrary scale, never silent.

    white/pink/brown: 1/f^0, 1/f, 1/f^2 Gaussian noise; babble: 3-5 speech-like voices summed;
    hum: 50 or 60 Hz mains with decaying harmonics; clicks: random decaying bursts (1-10 per
    second) over a faint noise floor.
    """
    if kind == "white":
        return rng.standard_normal(num_samples)
    if kind == "pink":
        return _spectral_noise(rng, num_samples, sample_rate, 1.0)
    if kind == "brown":
        return _spectral_noise(rng, num_samples, sample_rate, 2.0)
    if kind == "babble":
        voices = [speech_like(rng, num_samples, sample_rate) for _ in range(int(rng.integers(3, 6)))]
        return np.sum([v / (np.std(v) + 1e-12) for v in voices], axis=0)
    t = np.arange(num_samples) / sample_rate
    if kind == "hum":
        mains = rng.choice([50.0, 60.0]) * rng.uniform(0.995, 1.005)
        harmonics = np.arange(1, 11)
        amplitudes = harmonics ** -rng.uniform(0.5, 1.5)
        phases = rng.uniform(0, 2 * np.pi, harmonics.shape[0])
        tone = np.sum(amplitudes[:, None] * np.sin(2 * np.pi * mains * harmonics[:, None] * t + phases[:, None]), axis=0)
        return tone + 0.01 * rng.standard_normal(num_samples)
    if kind == "clicks":
        out = 0.003 * rng.standard_normal(num_samples)
        num_clicks = max(1, rng.poisson(rng.uniform(1, 10) * num_samples / sample_rate))
        for start in rng.integers(0, num_samples, num_clicks):
            length = int(rng.uniform(0.002, 0.02) * sample_rate)
            burst = rng.standard_normal(length) * np.exp(-np.arange(length) / (0.2 * length))
            burst *= rng.lognormal(0.0, 0.7)
            end = min(num_samples, start + length)
            out[start:end] += burst[: end - start]
        return out
    raise ValueError(f"unknown noise type {kind!r}; expected one of {NOISE_TYPES}")


# ---------------------------------------------------------------------------------------------
# Corpus


def make_pair(rng: np.random.Generator, *, num_samples: int, sample_rate: int, snr_db: float, noise_kind: str,
              speaker: Speaker | None = None, peak: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy) float32 at `snr_db` (over the whole file), scaled together so that the
    larger peak of the two is `peak` (the SNR does not change)."""
    clean = speech_like(rng, num_samples, sample_rate, speaker)
    n = noise(rng, noise_kind, num_samples, sample_rate)
    n *= np.sqrt(np.mean(clean**2) / (np.mean(n**2) * 10 ** (snr_db / 10)))
    noisy = clean + n
    scale = peak / max(np.max(np.abs(noisy)), np.max(np.abs(clean)))
    return (clean * scale).astype(np.float32), (noisy * scale).astype(np.float32)


def _write_wav(path, wave, sample_rate: int, subtype: str) -> None:
    # Encoded in memory and written at once: libsndfile writing to a path makes many small
    # writes and seeks, 4x slower here than the generation of a file.
    buffer = io.BytesIO()
    sf.write(buffer, wave, sample_rate, subtype=subtype, format="WAV")
    pathlib.Path(path).write_bytes(buffer.getvalue())


def write_synthetic_corpus(root, *, sample_rate: int = 16000, num_train: int = 64, num_valid: int = 8, num_test: int = 8,
                           seconds=(2.0, 4.0), snr_db=(-5.0, 20.0), seed: int = 0, num_speakers: int = 4,
                           subtype: str = "PCM_16") -> dict:
    """Writes a paired corpus in the sgmse layout `root/{train,valid,test}/{clean,noisy}/`.

    Files are `<subset>/{clean,noisy}/spkNN/<subset>_NNNNN.wav`; every subset has its own
    speakers. A summary (also written to root/synthetic_corpus.json) lists each file's
    duration, SNR and noise type.

    Args:
      root: output folder (created; existing files of the same names are overwritten).
      sample_rate: Hz.
      num_train, num_valid, num_test: files per subset.
      seconds: (min, max) duration, drawn uniformly per file.
      snr_db: (min, max) SNR in dB, drawn uniformly per file.
      seed: everything is a function of it.
      num_speakers: voices per subset.
      subtype: soundfile subtype, "PCM_16" (like most corpora) or "FLOAT".

    Returns:
      {"root", "sample_rate", "seed", "subsets": {name: count}, "seconds": total,
       "files": [{"subset", "relpath", "seconds", "snr_db", "noise"}, ...]}.
    """
    root = pathlib.Path(root)
    counts = {"train": int(num_train), "valid": int(num_valid), "test": int(num_test)}
    files = []
    for subset, count in counts.items():
        sid = _SUBSET_IDS[subset]
        speakers = [random_speaker(np.random.default_rng([seed, sid, 10**6, s])) for s in range(num_speakers)]
        for index in range(count):
            rng = np.random.default_rng([seed, sid, index])
            duration = float(rng.uniform(*seconds))
            file_snr = float(rng.uniform(*snr_db))
            kind = NOISE_TYPES[int(rng.integers(len(NOISE_TYPES)))]
            spk = int(rng.integers(num_speakers))
            clean, noisy = make_pair(rng, num_samples=int(round(duration * sample_rate)), sample_rate=sample_rate,
                                     snr_db=file_snr, noise_kind=kind, speaker=speakers[spk], peak=float(rng.uniform(0.3, 0.95)))
            relpath = f"spk{spk:02d}/{subset}_{index:05d}.wav"
            for folder, wave in (("clean", clean), ("noisy", noisy)):
                path = root / subset / folder / relpath
                path.parent.mkdir(parents=True, exist_ok=True)
                _write_wav(path, wave, sample_rate, subtype)
            files.append({"subset": subset, "relpath": relpath, "seconds": clean.shape[0] / sample_rate,
                          "snr_db": file_snr, "noise": kind})
    summary = {"root": str(root), "sample_rate": sample_rate, "seed": seed, "subsets": counts,
               "seconds": float(sum(f["seconds"] for f in files)), "files": files}
    root.mkdir(parents=True, exist_ok=True)
    (root / "synthetic_corpus.json").write_text(json.dumps(summary, indent=1))
    return summary
