"""Helpers shared by all SDEs."""
import jax
import jax.numpy as jnp


def complex_normal(key: jax.Array, shape, dtype=jnp.complex64) -> jnp.ndarray:
    """Standard complex normal: real and imaginary parts each N(0, 1/2), so E|z|^2 = 1.

    This is torch.randn_like on a complex tensor, the convention of the reference.
    """
    re, im = jax.random.normal(key, (2,) + tuple(shape), jnp.float32)
    return ((re + 1j * im) * jnp.sqrt(0.5)).astype(dtype)


def batch_view(v: jnp.ndarray, like: jnp.ndarray) -> jnp.ndarray:
    """Reshapes a per-example vector (B,) to broadcast against `like` (B, ...)."""
    v = jnp.asarray(v)
    return v.reshape(v.shape + (1,) * (like.ndim - v.ndim))
