"""The complex-spectrogram representation SGMSE models work in.

A waveform becomes ``spec_forward(stft(wave))``: the STFT magnitude is compressed
(``exponent``: factor·|X|^e·e^{i∠X}; ``log``: factor·log(1+|X|)·e^{i∠X}; ``none``) so that
speech energy is spread more evenly over the time-frequency plane.
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from diffrestore.audio.stft import hann_window, istft, reflect_index, stft


@dataclasses.dataclass(frozen=True)
class SpectrogramConfig:
    """STFT and compression settings (the reference's data-module arguments).

    Attributes:
      sample_rate: Hz.
      n_fft: FFT size; F = n_fft // 2 + 1 frequency bins (256 for 510).
      hop_length: samples between frames.
      spec_factor: linear factor of the compressed spectrogram.
      spec_abs_exponent: exponent e of the magnitude compression.
      transform_type: "exponent", "log" or "none".
      window: "hann" or "sqrthann".
    """

    sample_rate: int = 16000
    n_fft: int = 510
    hop_length: int = 128
    spec_factor: float = 0.15
    spec_abs_exponent: float = 0.5
    transform_type: str = "exponent"
    window: str = "hann"

    def __post_init__(self):
        if self.transform_type not in ("exponent", "log", "none"):
            raise ValueError(f"unknown transform_type {self.transform_type!r}: use exponent, log or none")
        if self.window not in ("hann", "sqrthann"):
            raise ValueError(f"unknown window {self.window!r}: use hann or sqrthann")

    @property
    def num_freqs(self) -> int:
        return self.n_fft // 2 + 1

    def window_array(self) -> np.ndarray:
        w = hann_window(self.n_fft, periodic=True)
        return np.sqrt(w) if self.window == "sqrthann" else w


PRESETS = {
    "16k": SpectrogramConfig(16000, 510, 128, 0.15, 0.5),
    "48k": SpectrogramConfig(48000, 1534, 384, 0.065, 0.667),
}


def _scale_magnitude(z: jnp.ndarray, new_magnitude_fn) -> jnp.ndarray:
    """Returns new_magnitude_fn(|z|)·e^{i∠z}, with angle(0) = 0 and finite gradients at 0.

    NaN/inf bins stay non-finite (`!= 0` is true for NaN), so bad input is not silently zeroed.
    """
    mag = jnp.abs(z)
    nonzero = mag != 0
    safe_mag = jnp.where(nonzero, mag, 1.0)
    phase = jnp.where(nonzero, z / safe_mag, 0.0)
    return (new_magnitude_fn(safe_mag) * phase).astype(z.dtype)


def spec_forward(spec: jnp.ndarray, cfg: SpectrogramConfig) -> jnp.ndarray:
    """Compresses a complex STFT (any shape) into the model's representation."""
    if cfg.transform_type == "exponent":
        if cfg.spec_abs_exponent != 1:
            e = cfg.spec_abs_exponent
            spec = _scale_magnitude(spec, lambda m: m**e)
        return spec * cfg.spec_factor
    if cfg.transform_type == "log":
        return _scale_magnitude(spec, jnp.log1p) * cfg.spec_factor
    return spec


def spec_backward(spec: jnp.ndarray, cfg: SpectrogramConfig) -> jnp.ndarray:
    """Inverse of `spec_forward`."""
    if cfg.transform_type == "exponent":
        spec = spec / cfg.spec_factor
        if cfg.spec_abs_exponent != 1:
            inv = 1.0 / cfg.spec_abs_exponent
            spec = _scale_magnitude(spec, lambda m: m**inv)
        return spec
    if cfg.transform_type == "log":
        return _scale_magnitude(spec / cfg.spec_factor, jnp.expm1)
    return spec


def to_spectrogram(wave: jnp.ndarray, cfg: SpectrogramConfig) -> jnp.ndarray:
    """Waveform (..., L) -> compressed complex spectrogram (..., F, T)."""
    return spec_forward(stft(wave, cfg.n_fft, cfg.hop_length, cfg.window_array()), cfg)


def to_audio(spec: jnp.ndarray, cfg: SpectrogramConfig, length: int | None = None) -> jnp.ndarray:
    """Compressed complex spectrogram (..., F, T) -> waveform (..., length)."""
    return istft(spec_backward(spec, cfg), cfg.n_fft, cfg.hop_length, cfg.window_array(), length)


def pad_frames(spec: jnp.ndarray, multiple: int = 64, mode: str = "zero", *, size: int | None = None) -> jnp.ndarray:
    """Pads the last (frame) axis up to a multiple of `multiple` (the U-Net needs 2^6 | T),
    or up to exactly `size` frames when given (a length bucket).

    mode: "zero" (the reference's default for ncsnpp), "reflection" (used for ncsnpp_v2 and
    ncsnpp_48k by the reference's enhancement script) or "replication".
    """
    n = spec.shape[-1]
    if size is not None and size < n:
        raise ValueError(f"cannot pad {n} frames to {size}")
    extra = (-n) % multiple if size is None else size - n
    if extra == 0:
        return spec
    widths = [(0, 0)] * (spec.ndim - 1) + [(0, extra)]
    np_mode = {"zero": "constant", "reflection": "reflect", "replication": "edge"}[mode]
    return jnp.pad(spec, widths, mode=np_mode)


def pad_frames_of_prefix(spec: jnp.ndarray, valid_frames, mode: str = "zero") -> jnp.ndarray:
    """`pad_frames(spec[..., :valid_frames], mode=mode, size=T)` with valid_frames traced:
    the frames from `valid_frames` on are replaced as the padding mode would fill them.

    Args:
      spec: (..., T) whose first `valid_frames` frames are the spectrogram.
      valid_frames: int32 scalar in [1, T].
    """
    frames = jnp.arange(spec.shape[-1])
    if mode == "zero":
        return jnp.where(frames < valid_frames, spec, 0).astype(spec.dtype)
    if mode == "reflection":
        source = reflect_index(frames, valid_frames)
    elif mode == "replication":
        source = jnp.minimum(frames, valid_frames - 1)
    else:
        raise ValueError(f"unknown pad mode {mode!r}: zero, reflection or replication")
    return jnp.take(spec, source, axis=-1)
