"""The optimizer of a config's `optim` group, and the parameter EMA of the reference.

The reference trains with `torch.optim.Adam(lr=1e-4)` (betas 0.9/0.999, eps 1e-8), no
warm-up, no clipping, and keeps a `torch_ema.ExponentialMovingAverage(decay=0.999)` of the
parameters updated after every optimizer step. `optim` adds what large jobs want on top
(linear warm-up, global-norm clipping, gradient accumulation, AdamW), all off by default.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax


def learning_rate_schedule(optim_config) -> Callable:
    """lr(count): linear warm-up from 0 over `warmup_steps` optimizer updates, then constant."""
    lr = float(optim_config.lr)
    warmup = int(optim_config.warmup_steps)
    if warmup <= 0:
        return optax.constant_schedule(lr)
    # count is the number of updates already applied, so update k (0-based) uses lr·(k+1)/warmup:
    # the first update is not a wasted zero-lr step.
    return lambda count: lr * jnp.minimum(1.0, (count + 1.0) / warmup)


def make_optimizer(optim_config) -> tuple[optax.GradientTransformation, Callable]:
    """Builds the optax transformation of `config.optim`.

    Args:
      optim_config: `config.optim` with fields optimizer ("adam" | "adamw"), lr, b1, b2, eps,
        weight_decay, warmup_steps, grad_clip_norm (0 = off), grad_accum_steps.

    Returns:
      (tx, schedule): the transformation, and lr(count) as a function of the number of
      optimizer updates applied (micro-batches of an accumulation count once per update).
    """
    schedule = learning_rate_schedule(optim_config)
    name = str(optim_config.optimizer).lower()
    b1, b2, eps = float(optim_config.b1), float(optim_config.b2), float(optim_config.eps)
    if name == "adam":
        opt = optax.adam(schedule, b1=b1, b2=b2, eps=eps)
    elif name == "adamw":
        opt = optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=float(optim_config.weight_decay))
    else:
        raise ValueError(f"optim.optimizer must be 'adam' or 'adamw', not {optim_config.optimizer!r}")
    parts = []
    if float(optim_config.grad_clip_norm) > 0:
        parts.append(optax.clip_by_global_norm(float(optim_config.grad_clip_norm)))
    parts.append(opt)
    tx = optax.chain(*parts) if len(parts) > 1 else opt
    accum = int(optim_config.grad_accum_steps)
    if accum < 1:
        raise ValueError(f"optim.grad_accum_steps must be >= 1, not {accum}")
    if accum > 1:
        # MultiSteps averages `accum` micro-batch gradients and applies the inner update once;
        # its state counts both, which is what the EMA and the lr metric need.
        tx = optax.MultiSteps(tx, every_k_schedule=accum).gradient_transformation()
    return tx, schedule


def updates_applied(opt_state, step, grad_accum_steps: int):
    """Number of optimizer updates applied once `step` (0-based micro-batch index) is done."""
    if grad_accum_steps > 1:
        return opt_state.gradient_step
    return step + 1


def ema_decay_at(ema_decay: float, num_updates):
    """torch_ema's warm-up: decay = min(ema_decay, (1 + n)/(10 + n)) at the n-th update (n ≥ 1)."""
    n = jnp.asarray(num_updates, jnp.float32)
    return jnp.minimum(jnp.float32(ema_decay), (1.0 + n) / (10.0 + n))


def ema_update(ema_params, params, decay):
    """shadow ← shadow − (1 − decay)·(shadow − param), as torch_ema does (float32)."""
    return jax.tree.map(lambda s, p: s - (1.0 - decay) * (s - p), ema_params, params)
