"""Sample-rate conversion shared by enhancement, evaluation and the TFDS builders."""
from __future__ import annotations

import math

import numpy as np


def resample(wave: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Polyphase resampling (scipy's resample_poly, Kaiser window) along the last axis.

    Returns float64; the input unchanged (as float64) when the rates are equal.
    """
    wave = np.asarray(wave, np.float64)
    if int(from_rate) == int(to_rate):
        return wave
    from scipy.signal import resample_poly

    g = math.gcd(int(from_rate), int(to_rate))
    return resample_poly(wave, int(to_rate) // g, int(from_rate) // g, axis=-1)
