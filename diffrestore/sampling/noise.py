"""Where a sampler's Gaussian draws come from.

Samplers ask for draw number `i` (0 = the prior, then in the order the reference draws);
a noise source answers with a standard normal array shaped like the state: complex CN(0, 1)
(real and imaginary parts N(0, ½), `complex_normal`) for a complex state such as a
spectrogram, N(0, 1) for a real one such as a waveform. Two sources:

* `keyed_noise(keys)`: one PRNG key per example, draw i comes from fold_in(key_b, i).
  Example b's trajectory depends only on its own key, whatever else is in the batch.
* `replayed_noise(noise)`: pre-drawn noise (num_draws, B, ...), e.g. the reference's draws,
  so that a test can replay a PyTorch trajectory exactly.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from diffrestore.sde.base import complex_normal


def standard_normal(key: jax.Array, shape, dtype) -> jnp.ndarray:
    """CN(0, 1) for complex dtypes (E|z|² = 1), N(0, 1) for real ones (drawn in float32)."""
    if jnp.issubdtype(dtype, jnp.complexfloating):
        return complex_normal(key, shape, dtype)
    return jax.random.normal(key, tuple(shape), jnp.float32).astype(dtype)


def keyed_noise(keys: jax.Array):
    """Noise source from per-example keys, shape (B,) typed keys or (B, 2) raw uint32."""

    def draw(index, like):
        return jax.vmap(lambda k: standard_normal(jax.random.fold_in(k, index), like.shape[1:], like.dtype))(keys)

    return draw


def replayed_noise(noise: jnp.ndarray):
    """Noise source that returns noise[index]; `noise` is (num_draws, B, ...)."""

    def draw(index, like):
        if jnp.iscomplexobj(noise) and not jnp.issubdtype(like.dtype, jnp.complexfloating):
            raise ValueError("complex replayed noise for a real state would lose its imaginary part")
        return jax.lax.dynamic_index_in_dim(noise, index, axis=0, keepdims=False).astype(like.dtype)

    return draw


def example_keys(seed: int | jax.Array, batch_size: int, offset: int = 0) -> jax.Array:
    """Per-example keys derived from a seed: example j gets fold_in(key(seed), offset + j)."""
    base = jax.random.key(seed) if isinstance(seed, int) else seed
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(offset + jnp.arange(batch_size))
