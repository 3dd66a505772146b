"""A synthetic music corpus: polyphonic piano-like pieces, numpy only, from a seed.

Clean audio for the unconditional priors' tests and demos (data.dataset="clean"), without
downloading MAESTRO; not a substitute for it. A piece is a melody over a chord progression with a
bass line, in a random key, scale and tempo, with phrase dynamics, played on a simple piano model:

* a note's partials are inharmonic as a stiff string's, f_k = k f0 sqrt(1 + B k^2) (Fletcher
  1964), with B rising towards the treble;
* partial k decays exponentially, faster the higher it is (tau_k = tau_1 / (1 + 0.3 (k - 1))),
  in two stages (a prompt sound and a slower aftersound, as coupled unison strings give), and is
  damped within ~0.1 s when the key is released; louder notes are brighter; the hammer's strike
  position weights partial k by |sin(pi k x0)|;
* a hammer transient: a short noise burst, low-pass filtered more for soft notes;
* the piece is played in a small room: convolution with exponentially decaying noise (RT60
  0.3-1.0 s) added below the dry sound.

Every file is generated from its own `default_rng([seed, subset, index])`: a corpus is
reproducible, and adding files does not change the existing ones.
"""
from __future__ import annotations

import json
import pathlib

import numpy as np

from diffrestore.data.synthetic import _write_wav

# Semitones above the tonic.
SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "pentatonic": (0, 2, 4, 7, 9),
}
# Chord progressions as scale degrees (0 = tonic), one chord per bar.
_PROGRESSIONS = ((0, 4, 5, 3), (0, 3, 4, 0), (5, 3, 0, 4), (1, 4, 0, 0), (0, 5, 3, 4))
_SUBSET_IDS = {"train": 0, "valid": 1, "test": 2}
_MIDDLE_C = 261.6256


def midi_to_hz(note) -> np.ndarray:
    """Equal-tempered frequency of MIDI note numbers (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((np.asarray(note, np.float64) - 69.0) / 12.0)


def piano_inharmonicity(f0: float) -> float:
    """A plausible inharmonicity coefficient B for a piano string of fundamental f0 (Hz):
    3e-4 at middle C, growing towards the treble, clipped to [5e-5, 5e-3]."""
    return float(np.clip(3e-4 * (f0 / _MIDDLE_C) ** 1.2, 5e-5, 5e-3))


def partial_frequencies(f0: float, inharmonicity: float, max_hz: float, max_partials: int = 40) -> np.ndarray:
    """f_k = k f0 sqrt(1 + B k^2) for k = 1, 2, ... below `max_hz` (at most `max_partials`)."""
    k = np.arange(1, max_partials + 1, dtype=np.float64)
    freqs = k * f0 * np.sqrt(1.0 + inharmonicity * k * k)
    return freqs[freqs < max_hz]


def piano_note(f0: float, *, sample_rate: int, duration: float, velocity: float = 0.7, inharmonicity: float | None = None,
               rng: np.random.Generator | None = None, max_partials: int = 40) -> np.ndarray:
    """One piano-like note: held for `duration` seconds, then released.

    Args:
      f0: fundamental, Hz.
      sample_rate: Hz.
      duration: seconds the key is held (the note rings on for its release, ~0.1-0.3 s).
      velocity: in (0, 1]: loudness and brightness.
      inharmonicity: B of f_k = k f0 sqrt(1 + B k^2); `piano_inharmonicity(f0)` if None.
      rng: draws the partials' phases and the hammer noise (default_rng(0) if None).
      max_partials: partials beyond this (or above 0.45 sample_rate) are left out.

    Returns:
      float64 waveform, peak about `velocity` before mixing (arbitrary scale).
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    b = piano_inharmonicity(f0) if inharmonicity is None else float(inharmonicity)
    freqs = partial_frequencies(f0, b, 0.45 * sample_rate, max_partials)
    k = np.arange(1, freqs.shape[0] + 1, dtype=np.float64)
    # Bass notes ring longer; the release damps everything within ~0.1 s.
    tau_1 = float(np.clip(2.5 * (_MIDDLE_C / f0) ** 0.6, 0.4, 6.0))
    tau = tau_1 / (1.0 + 0.3 * (k - 1.0))
    release = 0.08 * (_MIDDLE_C / f0) ** 0.3
    length = int(round((duration + 5 * release) * sample_rate)) + 1
    t = np.arange(length) / sample_rate

    tilt = 1.7 - 0.9 * velocity  # louder is brighter
    strike = 0.12  # hammer position, as a fraction of the string length
    amplitude = k ** -tilt * (0.15 + np.abs(np.sin(np.pi * k * strike))) * rng.uniform(0.8, 1.2, k.shape[0])
    # Drop what would be inaudible, so high notes do not pay for partials they do not have.
    keep = amplitude > 1e-3 * amplitude.max()
    freqs, tau, amplitude, k = freqs[keep], tau[keep], amplitude[keep], k[keep]
    phases = rng.uniform(0, 2 * np.pi, freqs.shape[0])

    decay = 0.75 * np.exp(-t / tau[:, None]) + 0.25 * np.exp(-t / (4.0 * tau[:, None]))
    partials = decay * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None])
    note = amplitude @ partials
    envelope = 1.0 - np.exp(-t / 0.002)  # 2 ms attack: no click
    envelope *= np.exp(-np.maximum(t - duration, 0.0) / release)
    note *= envelope

    # Hammer: a 4-10 ms noise burst, duller for soft notes.
    burst_len = max(8, int(rng.uniform(0.004, 0.01) * sample_rate))
    burst = rng.standard_normal(burst_len) * np.exp(-np.arange(burst_len) / (0.3 * burst_len))
    spectrum = np.fft.rfft(burst, n=2 * burst_len)
    f = np.fft.rfftfreq(2 * burst_len, 1.0 / sample_rate)
    cutoff = 800.0 + 4000.0 * velocity
    spectrum /= np.sqrt(1.0 + (f / cutoff) ** 4)
    spectrum[f < 60.0] = 0.0
    burst = np.fft.irfft(spectrum, n=2 * burst_len)
    burst *= 0.15 * np.max(np.abs(note)) / (np.max(np.abs(burst)) + 1e-12)
    end = min(length, burst.shape[0])
    note[:end] += burst[:end]
    return velocity * note / (np.max(np.abs(note)) + 1e-12)


def _room_impulse_response(rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Exponentially decaying noise (60 dB over RT60 in 0.3-1.0 s) after a 5-20 ms pre-delay."""
    rt60 = rng.uniform(0.3, 1.0)
    predelay = int(rng.uniform(0.005, 0.02) * sample_rate)
    n = int(rt60 * sample_rate)
    tail = rng.standard_normal(n) * np.exp(-6.91 * np.arange(n) / (rt60 * sample_rate))
    return np.concatenate([np.zeros(predelay), tail])


def _convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Linear convolution, cut to len(x) (numpy FFT)."""
    size = 1 << int(np.ceil(np.log2(x.shape[0] + h.shape[0] - 1)))
    return np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[: x.shape[0]]


def music_like(rng: np.random.Generator, num_samples: int, sample_rate: int) -> tuple[np.ndarray, dict]:
    """A piano-like piece of `num_samples` samples with peak 1.

    Returns:
      (float64 waveform, {"tempo_bpm", "tonic", "scale", "num_notes"}).
    """
    seconds = num_samples / sample_rate
    tempo = float(rng.uniform(70.0, 140.0))
    beat = 60.0 / tempo
    tonic = int(rng.integers(12))  # pitch class
    scale_name = list(SCALES)[int(rng.integers(len(SCALES)))]
    scale = np.asarray(SCALES[scale_name])
    progression = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]

    def pitch(degree: int, octave: int) -> int:  # scale degree (any integer) -> MIDI note
        return 12 * (octave + 1 + degree // len(scale)) + tonic + int(scale[degree % len(scale)])

    notes = []  # (onset seconds, MIDI note, held seconds, velocity)
    phrase_level = rng.uniform(0.45, 0.85)
    swell = rng.uniform(0.0, 0.25)
    dynamics = lambda when: float(np.clip(phrase_level * (1 + swell * np.sin(2 * np.pi * when / (8 * beat))), 0.15, 1.0))
    bar = 4 * beat
    arpeggiate = rng.uniform() < 0.5
    for b in range(int(np.ceil(seconds / bar))):
        start = b * bar
        root = progression[b % len(progression)]
        chord = [pitch(root + step, 3) for step in (0, 2, 4)]
        notes.append((start, pitch(root, 2), bar * 0.95, 0.8 * dynamics(start)))  # bass
        if arpeggiate:
            for i in range(8):
                notes.append((start + i * beat / 2, chord[(0, 1, 2, 1)[i % 4]], beat * 0.6, 0.55 * dynamics(start)))
        else:
            for p in chord:
                notes.append((start, p, bar * rng.uniform(0.5, 0.95), 0.6 * dynamics(start)))
    # Melody: a random walk on the scale, durations of 1/2 to 2 beats, a few rests.
    degree, when = int(rng.integers(len(scale), 2 * len(scale))), 0.0
    while when < seconds:
        held = beat * float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0]))
        if rng.uniform() > 0.1:
            notes.append((when, pitch(degree, 4), held * 0.9, dynamics(when) * rng.uniform(0.85, 1.0)))
        degree = int(np.clip(degree + rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3]), 0, 3 * len(scale)))
        when += held

    tail = int(2.0 * sample_rate)
    dry = np.zeros(num_samples + tail)
    for onset, note, held, velocity in notes:
        onset += rng.normal(0.0, 0.008)  # a human's timing
        first = max(0, int(round(onset * sample_rate)))
        if first >= num_samples:
            continue
        wave = piano_note(float(midi_to_hz(note)), sample_rate=sample_rate, duration=held,
                          velocity=float(np.clip(velocity + rng.normal(0, 0.05), 0.1, 1.0)), rng=rng)
        wave = wave[: dry.shape[0] - first]
        dry[first: first + wave.shape[0]] += wave
    dry = dry[:num_samples]

    rir = _room_impulse_response(rng, sample_rate)
    wet = _convolve(dry, rir)
    # Reverberation 8-16 dB below the dry sound.
    wet *= np.sqrt(np.sum(dry**2) / (np.sum(wet**2) + 1e-12)) * 10 ** (-rng.uniform(8.0, 16.0) / 20)
    x = dry + wet
    x /= np.max(np.abs(x)) + 1e-12
    return x, {"tempo_bpm": tempo, "tonic": tonic, "scale": scale_name, "num_notes": len(notes)}


def write_synthetic_music(root, *, sample_rate: int = 22050, num_train: int = 32, num_valid: int = 4, num_test: int = 4,
                          seconds=(10.0, 15.0), seed: int = 0, subtype: str = "PCM_16") -> dict:
    """Writes a clean music corpus `root/{train,valid,test}/<subset>_NNNNN.wav` (mono).

    Train a prior on it with data.dataset="clean", data.data_dir=root. A summary (also written to
    root/synthetic_music.json) lists each file's duration, tempo, key and scale.

    Args:
      root: output folder (created; existing files of the same names are overwritten).
      sample_rate: Hz.
      num_train, num_valid, num_test: files per subset.
      seconds: duration of every file, or (min, max) drawn uniformly per file. The default is
        longer than CQTdiff+'s 184184-sample segments at 22.05 kHz (8.4 s).
      seed: everything is a function of it.
      subtype: soundfile subtype, "PCM_16" or "FLOAT".

    Returns:
      {"root", "sample_rate", "seed", "subsets": {name: count}, "seconds": total,
       "files": [{"subset", "relpath", "seconds", "peak", "tempo_bpm", "tonic", "scale", "num_notes"}, ...]}.
    """
    root = pathlib.Path(root)
    low, high = (float(seconds), float(seconds)) if np.isscalar(seconds) else (float(seconds[0]), float(seconds[1]))
    counts = {"train": int(num_train), "valid": int(num_valid), "test": int(num_test)}
    files = []
    for subset, count in counts.items():
        for index in range(count):
            rng = np.random.default_rng([seed, _SUBSET_IDS[subset], index])
            num_samples = int(round(rng.uniform(low, high) * sample_rate))
            wave, facts = music_like(rng, num_samples, sample_rate)
            peak = float(rng.uniform(0.5, 0.9))  # below full scale: no clipping
            relpath = f"{subset}_{index:05d}.wav"
            path = root / subset / relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_wav(path, (peak * wave).astype(np.float32), sample_rate, subtype)
            files.append({"subset": subset, "relpath": relpath, "seconds": num_samples / sample_rate, "peak": peak, **facts})
    summary = {"root": str(root), "sample_rate": sample_rate, "seed": seed, "subsets": counts,
               "seconds": float(sum(f["seconds"] for f in files)), "files": files}
    root.mkdir(parents=True, exist_ok=True)
    (root / "synthetic_music.json").write_text(json.dumps(summary, indent=1))
    return summary
