"""The training state: one pytree that the update step consumes (donated) and returns."""
from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training.

    Attributes:
      step: int32 scalar, the number of update steps (micro-batches) taken; the data iterator
        and the per-step rng are functions of it, so it is all a restart needs besides weights.
      params: Flax "params" collection (float32).
      ema_params: exponential moving average of `params` (what enhancement uses).
      opt_state: optax state.
    """

    step: jax.Array
    params: Any
    ema_params: Any
    opt_state: Any


def make_init_fn(module, tx, inputs: tuple) -> Callable:
    """Returns `init_fn(rng) -> TrainState`, pure, for `jax.eval_shape` and a sharded `jax.jit`.

    Args:
      module: the Flax network; tx: the optax transformation.
      inputs: dummy arguments of the network's call (`config.example_inputs`); parameter
        shapes do not depend on their batch size.
    """

    def init_fn(rng):
        params = module.init({"params": rng, "dropout": rng}, *inputs)["params"]
        # The EMA starts as a copy of the initial weights (torch_ema clones them); copying keeps
        # the two trees in distinct buffers, so donating the state never donates one buffer twice.
        ema_params = jax.tree.map(jnp.copy, params)
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, ema_params=ema_params, opt_state=tx.init(params))

    return init_fn
