"""Euler sampler of conditional flow matching: NeMo's `ConditionalFlowMatchingEulerSampler`.

`nemo/collections/audio/parts/submodules/flow.py` l. 205-269: on the uniform grid
t_i = linspace(time_min, time_max, N + 1)[i], i < N, with step Δ = (time_max − time_min)/N,

    x_{i+1} = x_i + Δ·v(x_i, y, t_i),

starting from x_0 = x_start + σ_start·z (noise draw 0; NeMo's `randn_like(encoded) *
sigma_start`, enhancement.py l. 785). N network calls, one per step, for the whole batch.

Model kinds (the sampler registry's `model_kind`):
* "vector_field": `model_fn(x, y, t)` = v, the estimated vector field (NeMo's
  estimator_target "conditional_vector_field"). New kind: a field is neither a score nor a
  clean estimate.
* "data_prediction": `model_fn(x, y, t)` = x̂, a clean estimate (NeMo's "data"), the same
  call as a bridge's. The sampler turns it into the flow's conditional field towards x̂ from
  the run's own initial state, v = u_t(x | x_start = x_0, x_1 = x̂) (flow.py l. 262-264).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from diffrestore.sde.flow import estimator_target_name


def flow_euler_sample(
    model_fn: Callable,
    flow,
    y,
    draw: Callable,
    num_steps,
    *,
    estimator_target: str = "vector_field",
    condition: bool = True,
):
    """Integrates the flow ODE from the start distribution to the clean end.

    Args:
      model_fn: `(x, y, t) -> v` (estimator_target "vector_field") or `-> x̂` ("data");
        x, y complex (B, 1, F, T), t (B,).
      flow: an `OTFlow` (its `time_min`, `time_max`, `prior_sampling`, `vector_field`).
      y: complex (B, 1, F, T) noisy spectrogram: the estimator's condition, and x_start
        when `flow.start == "noisy"`.
      draw: noise source; draw 0 is the start noise z.
      num_steps: N, a Python or traced int (one compiled program serves every N).
      estimator_target: "vector_field" (or NeMo's "conditional_vector_field") or "data".
      condition: False feeds zeros instead of y, as NeMo does at inference for a model
        trained with p_cond = 0 (enhancement.py l. 777-779).

    Returns:
      (x̂ complex (B, 1, F, T), N network evaluations).
    """
    target = estimator_target_name(estimator_target)
    num_steps = jnp.asarray(num_steps, jnp.int32)
    batch = y.shape[0]
    step_size = (flow.time_max - flow.time_min) / num_steps.astype(jnp.float32)
    x_init = flow.prior_sampling(None, y, z=draw(0, y))
    cond = y if condition else jnp.zeros_like(y)

    def step(i, x):
        # t_i = time_min + i·Δ is linspace(time_min, time_max, N + 1)[i] for a runtime N.
        t = jnp.full((batch,), flow.time_min, jnp.float32) + i.astype(jnp.float32) * step_size
        out = model_fn(x, cond, t)
        if target == "vector_field":
            field = out
        else:
            field = flow.vector_field(x, out, y, t, x_start=x_init)
        return x + (field * step_size).astype(x.dtype)

    x = jax.lax.fori_loop(0, num_steps, step, x_init)
    return x, num_steps
