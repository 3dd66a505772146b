"""The compiled programs of a training run: sharded initialisation and the update step.

`build_programs(config, mesh)` is memoised on what determines the programs (model, SDE,
data shapes, optimizer, batch size, EMA decay, mesh devices), so training the same setup again
in one process (a resumed run in a notebook, a test, a sweep over seeds or data) reuses the
compiled code instead of compiling it again. Parameters and optimizer state are arguments,
never baked into the programs, so reuse is always safe.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import logging
import time
from typing import Any, Callable

import jax
import optax

from diffrestore import config as config_lib
from diffrestore.train import mesh as mesh_lib
from diffrestore.train.optimizer import make_optimizer
from diffrestore.train.state import TrainState, make_init_fn
from diffrestore.train.step import batch_keys, make_train_step

log = logging.getLogger("diffrestore.train")

_CACHE_SIZE = 4
_cache: "collections.OrderedDict[tuple, TrainPrograms]" = collections.OrderedDict()


@dataclasses.dataclass
class TrainPrograms:
    """Everything about a run that is fixed by its config and mesh.

    Attributes:
      mesh: the device mesh.
      module, tx, schedule: the Flax backbone, the optax transformation and lr(count).
      abstract_state: shapes and dtypes of the TrainState (no memory).
      state_sharding: NamedSharding per leaf of the state (split over `fsdp`, see
        `mesh.state_shardings`; replicated when fsdp = 1).
      batch_sharding: the batch's sharding (leading axis over `data` x `fsdp`).
      init: jitted `init(rng) -> TrainState` with the state's out_shardings (see `initialize`).
      train_step: jitted `train_step(state, batch, base_rng) -> (state, measurements)`, state donated.
    """

    mesh: Any
    module: Any
    tx: optax.GradientTransformation
    schedule: Callable
    abstract_state: TrainState
    state_sharding: TrainState
    batch_sharding: Any
    init: Callable
    train_step: Callable
    batch_keys: tuple = ("clean", "noisy")  # the waveforms of a batch: ("clean",) for a prior
    _compiled_step: Any = None
    _compiled_init: Any = None

    @property
    def num_params(self) -> int:
        return sum(int(a.size) for a in jax.tree.leaves(self.abstract_state.params))

    def initialize(self, rng) -> TrainState:
        """A fresh TrainState, created directly in its shardings.

        The init program runs once, so on CPU it is compiled without XLA's backend (LLVM)
        optimisation: its ~150 independent threefry draws otherwise take most of a minute to
        compile on a small machine, for a program that runs in milliseconds.
        """
        if self._compiled_init is None:
            start = time.perf_counter()
            options = {"xla_backend_optimization_level": 0} if self.mesh.devices.flat[0].platform == "cpu" else None
            self._compiled_init = self.init.lower(rng).compile(compiler_options=options)
            log.info("compiled the initialisation in %.1f s", time.perf_counter() - start)
        return self._compiled_init(rng)

    def abstract_step_args(self, global_batch_size: int, num_samples: int):
        """(state, batch, rng) as jax.ShapeDtypeStructs with their shardings: what the step is
        compiled for, without allocating anything."""
        state = jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), self.abstract_state, self.state_sharding
        )
        wave = jax.ShapeDtypeStruct((global_batch_size, num_samples), jax.numpy.float32, sharding=self.batch_sharding)
        rng = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=mesh_lib.replicated(self.mesh))
        return state, {key: wave for key in self.batch_keys}, rng

    def compile_step_abstract(self, global_batch_size: int, num_samples: int):
        """Compiles the update step ahead of time from shapes alone (no parameters, no data).

        For checking that a config fits and what it costs before a long job, and for
        benchmarks: the result has `.cost_analysis()` (FLOPs) and `.memory_analysis()`
        (bytes per device). Returns (compiled, seconds it took).

        Args:
          global_batch_size: examples per step over all devices.
          num_samples: waveform samples per example ((num_frames - 1) * hop_length in training).
        """
        start = time.perf_counter()
        compiled = self.train_step.lower(*self.abstract_step_args(global_batch_size, num_samples)).compile()
        seconds = time.perf_counter() - start
        log.info("compiled the train step ahead of time in %.1f s", seconds)
        return compiled, seconds

    def compiled_step(self, state, batch, base_rng):
        """The update step compiled ahead of time for these arguments, and the seconds it took
        (0.0 when it was already compiled)."""
        if self._compiled_step is not None:
            return self._compiled_step, 0.0
        start = time.perf_counter()
        self._compiled_step = self.train_step.lower(state, batch, base_rng).compile()
        return self._compiled_step, time.perf_counter() - start


def _key(config, mesh) -> tuple:
    t = config.training
    relevant = {
        "model": config.model.to_dict(), "sde": config.sde.to_dict(), "data": config.data.to_dict(),
        "optim": config.optim.to_dict(), "batch_size": int(t.batch_size), "ema_decay": float(t.ema_decay),
    }
    devices = tuple(d.id for d in mesh.devices.flat)
    return json.dumps(relevant, sort_keys=True, default=str), devices, tuple(mesh.axis_names), tuple(mesh.devices.shape)


def build_programs(config, mesh) -> TrainPrograms:
    """The (memoised) TrainPrograms of `config` on `mesh`."""
    key = _key(config, mesh)
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]

    module = config_lib.build_backbone(config)
    tx, schedule = make_optimizer(config.optim)
    # The network is initialised on a batch of one: parameter shapes do not depend on B.
    init_fn = make_init_fn(module, tx, config_lib.example_inputs(config, batch_size=1))
    keys = batch_keys(config)
    # Shapes first (no memory, no compilation), then shardings, then the sharded program: the
    # parameters are created where they live and never gathered on one device.
    abstract_state = jax.eval_shape(init_fn, jax.random.key(0))
    replicated = mesh_lib.replicated(mesh)
    state_sharding = mesh_lib.state_shardings(abstract_state, mesh)
    batch_sharding = mesh_lib.batch_sharding(mesh)
    train_step = jax.jit(
        make_train_step(config, module=module, tx=tx, schedule=schedule),
        in_shardings=(state_sharding, {key: batch_sharding for key in keys}, replicated),
        out_shardings=(state_sharding, replicated),
        donate_argnums=0,  # the old state's buffers become the new state's
    )
    programs = TrainPrograms(
        mesh=mesh, module=module, tx=tx, schedule=schedule, abstract_state=abstract_state,
        state_sharding=state_sharding, batch_sharding=batch_sharding,
        init=jax.jit(init_fn, out_shardings=state_sharding), train_step=train_step, batch_keys=keys,
    )
    _cache[key] = programs
    while len(_cache) > _CACHE_SIZE:
        _cache.popitem(last=False)
    return programs
