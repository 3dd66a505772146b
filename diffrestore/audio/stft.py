"""STFT and inverse STFT in `jnp`, with torch.stft / torch.istft conventions.

The conventions are the ones SGMSE trains with: periodic Hann window, ``center=True``
(the signal is reflect-padded by ``n_fft // 2`` on both sides), one-sided spectrum,
no normalisation, and an inverse that divides by the overlap-added squared window and is
cropped to a requested ``length``. Frequency comes before time in the outputs
(``(..., F, T)``), as in the reference.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def hann_window(n_fft: int, periodic: bool = True) -> np.ndarray:
    """Hann window of length `n_fft` (float32). Periodic = torch.hann_window default."""
    denom = n_fft if periodic else n_fft - 1
    n = np.arange(n_fft, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / denom)).astype(np.float32)


def num_frames(num_samples: int, hop_length: int) -> int:
    """Number of STFT frames for a signal of `num_samples` with center=True."""
    return 1 + num_samples // hop_length


def _frame_indices(n_frames: int, n_fft: int, hop_length: int) -> np.ndarray:
    # Static (numpy) gather indices: frame t covers padded samples [t*hop, t*hop + n_fft).
    return hop_length * np.arange(n_frames)[:, None] + np.arange(n_fft)[None, :]


def stft(x: jnp.ndarray, n_fft: int, hop_length: int, window: np.ndarray | None = None) -> jnp.ndarray:
    """One-sided STFT with center=True and reflect padding.

    Args:
      x: real signal, shape (..., L).
      n_fft: FFT size (= window length).
      hop_length: hop between frames, in samples.
      window: (n_fft,) analysis window; periodic Hann by default.

    Returns:
      complex64 array (..., n_fft // 2 + 1, 1 + L // hop_length).
    """
    if window is None:
        window = hann_window(n_fft)
    x = jnp.asarray(x, jnp.float32)
    pad = n_fft // 2
    if x.shape[-1] <= pad:
        raise ValueError(f"signal of {x.shape[-1]} samples is too short for reflect padding by {pad}")
    widths = [(0, 0)] * (x.ndim - 1) + [(pad, pad)]
    padded = jnp.pad(x, widths, mode="reflect")
    frames = padded[..., _frame_indices(num_frames(x.shape[-1], hop_length), n_fft, hop_length)]
    spec = jnp.fft.rfft(frames * jnp.asarray(window), n=n_fft, axis=-1)  # (..., T, F)
    return jnp.swapaxes(spec, -1, -2).astype(jnp.complex64)


def reflect_index(index, size):
    """Where `index` lands after numpy/torch 'reflect' padding of an axis of `size` entries.

    Reflection without repeating the edge, extended periodically (period 2·(size − 1)) for
    indices beyond one reflection, as `np.pad(mode="reflect")` does; size may be traced.
    """
    period = jnp.maximum(2 * (size - 1), 1)
    m = jnp.mod(index, period)
    return jnp.where(size > 1, jnp.where(m < size, m, period - m), 0)


def stft_of_prefix(
    x: jnp.ndarray, length, n_fft: int, hop_length: int, window: np.ndarray | None = None, *, num_frames: int
) -> jnp.ndarray:
    """`stft(x[:length])` for a signal stored at the start of a longer buffer, length traced.

    Batched inference keeps signals of different lengths in one fixed-size array, so the
    reflection at the signal's end must happen where the signal ends, not where the buffer
    does. The frames `stft(x[:length])` has (1 + length // hop) equal that function's output;
    the following frames, up to `num_frames`, are zero.

    Args:
      x: (S,) float32 buffer whose first `length` samples are the signal.
      length: int32 scalar, n_fft // 2 < length <= S.
      num_frames: frames to return (static); frames past the signal's are zero.

    Returns:
      complex64 (n_fft // 2 + 1, num_frames).
    """
    if window is None:
        window = hann_window(n_fft)
    x = jnp.asarray(x, jnp.float32)
    pad = n_fft // 2
    # Index into the reflect-padded signal, then back into x.
    padded_index = _frame_indices(num_frames, n_fft, hop_length) - pad
    source = jnp.where(padded_index < 0, -padded_index, padded_index)
    source = jnp.where(source >= length, 2 * (length - 1) - source, source)
    frames = x[jnp.clip(source, 0, x.shape[-1] - 1)]  # (num_frames, n_fft)
    valid = jnp.arange(num_frames) < 1 + length // hop_length
    spec = jnp.fft.rfft(frames * jnp.asarray(window), n=n_fft, axis=-1)
    spec = jnp.where(valid[:, None], spec, 0)
    return jnp.swapaxes(spec, -1, -2).astype(jnp.complex64)


def istft(
    spec: jnp.ndarray,
    n_fft: int,
    hop_length: int,
    window: np.ndarray | None = None,
    length: int | None = None,
) -> jnp.ndarray:
    """Inverse of `stft` (weighted overlap-add), like torch.istft(center=True).

    Args:
      spec: complex array (..., n_fft // 2 + 1, T).
      length: number of output samples; default (T - 1) * hop_length. Longer requests are
        zero-padded at the end, as torch does.

    Returns:
      float32 array (..., length).
    """
    if window is None:
        window = hann_window(n_fft)
    window = np.asarray(window, np.float32)
    n_frames = spec.shape[-1]
    frames = jnp.fft.irfft(jnp.swapaxes(spec, -1, -2), n=n_fft, axis=-1) * window  # (..., T, n_fft)
    total = n_fft + hop_length * (n_frames - 1)
    idx = _frame_indices(n_frames, n_fft, hop_length).reshape(-1)
    batch_shape = frames.shape[:-2]
    signal = jnp.zeros(batch_shape + (total,), frames.dtype).at[..., idx].add(
        frames.reshape(batch_shape + (-1,))
    )
    # The squared-window envelope is data independent: compute it once in numpy.
    envelope = np.zeros(total, np.float64)
    np.add.at(envelope, idx, np.tile(window.astype(np.float64) ** 2, n_frames))
    start = n_fft // 2
    if length is None:
        length = hop_length * (n_frames - 1)
    end = min(start + length, total)
    env = envelope[start:end]
    if np.any(env <= 1e-11):
        raise ValueError("window fails the nonzero overlap-add condition for this hop length")
    out = signal[..., start:end] / env.astype(np.float32)
    if end - start < length:
        out = jnp.pad(out, [(0, 0)] * (out.ndim - 1) + [(0, length - (end - start))])
    return out.astype(jnp.float32)
