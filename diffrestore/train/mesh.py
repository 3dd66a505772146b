"""The device mesh of a config's `mesh` group, and how arrays are placed on it.

One mesh, one device order, everywhere. Axes: `data` (data parallel: the state replicated)
and `fsdp` (fully sharded data parallel: parameters, EMA and optimizer state split over it,
gathered by XLA where a layer needs them). The batch is split over both axes together, so
`data` x `fsdp` devices each see their own rows.
Every process feeds only its own slice of the global batch
(`jax.make_array_from_process_local_data`), so the same code runs on one host or many.
"""
from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"
FSDP_AXIS = "fsdp"
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)  # the batch is split over both
# Leaves smaller than this stay replicated under FSDP: biases and norms cost more to gather
# than to keep whole.
FSDP_MIN_SIZE = 2**14


def make_mesh(mesh_config=None, devices=None) -> Mesh:
    """A Mesh with the axes of `config.mesh` in order; a size of -1 takes the remaining devices.

    Args:
      mesh_config: mapping axis name -> size (default {"data": -1}); axes `data` and
        optionally `fsdp` (a missing `fsdp` is size 1).
      devices: devices to use (default all of `jax.devices()`).
    """
    devices = jax.devices() if devices is None else list(devices)
    axes = dict(mesh_config.items()) if mesh_config is not None else {DATA_AXIS: -1}
    if DATA_AXIS not in axes:
        raise ValueError(f"config.mesh needs a {DATA_AXIS!r} axis, got {sorted(axes)}")
    unknown = set(axes) - set(BATCH_AXES)
    if unknown:
        raise ValueError(f"config.mesh has unknown axes {sorted(unknown)}; expected {list(BATCH_AXES)}")
    axes.setdefault(FSDP_AXIS, 1)
    names = tuple(axes)
    sizes = [int(v) for v in axes.values()]
    if sizes.count(-1) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got {axes}")
    known = math.prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"{len(devices)} devices do not divide into mesh axes {axes}")
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) != len(devices):
        raise ValueError(f"mesh {dict(zip(names, sizes))} needs {math.prod(sizes)} devices, there are {len(devices)}")
    return jax.make_mesh(tuple(sizes), names, axis_types=(AxisType.Auto,) * len(names), devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def replicate(value, mesh: Mesh):
    """`value` (the same on every process: a key, a step count) as one array replicated on the
    whole mesh. `jax.device_put` cannot do this across processes (it would have to write to
    other hosts' devices); a jitted identity with replicated output places each process's own
    copy on its own devices."""
    return jax.jit(lambda x: x, out_shardings=replicated(mesh))(value)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over `data` and `fsdp` together, the rest whole."""
    return NamedSharding(mesh, P(BATCH_AXES))


def data_parallel_size(mesh: Mesh) -> int:
    """How many ways the batch is split: data x fsdp devices."""
    return mesh.shape[DATA_AXIS] * mesh.shape.get(FSDP_AXIS, 1)


def fsdp_spec(shape: tuple[int, ...], fsdp_size: int) -> P:
    """How one state leaf is split over `fsdp`: its largest dimension divisible by the axis
    size (for a conv kernel HWIO usually the output channels), or whole if it is small or
    nothing divides."""
    if fsdp_size == 1 or math.prod(shape) < FSDP_MIN_SIZE:
        return P()
    candidates = [d for d in range(len(shape)) if shape[d] % fsdp_size == 0]
    if not candidates:
        return P()
    dim = max(candidates, key=lambda d: (shape[d], d))
    return P(*([None] * dim + [FSDP_AXIS]))


def state_shardings(abstract_state, mesh: Mesh):
    """NamedSharding per leaf of a (params, EMA, optimizer) state tree: split over `fsdp`
    by `fsdp_spec`, replicated over `data`. With fsdp = 1 everything is replicated."""
    size = mesh.shape.get(FSDP_AXIS, 1)
    return jax.tree.map(lambda a: NamedSharding(mesh, fsdp_spec(tuple(a.shape), size)), abstract_state)


def check_batch_size(global_batch_size: int, mesh: Mesh) -> int:
    """The per-process batch size; the global batch must split evenly over devices and processes."""
    n_data = data_parallel_size(mesh)
    if global_batch_size % n_data:
        raise ValueError(f"training.batch_size={global_batch_size} is not a multiple of the {n_data} data-parallel devices")
    if global_batch_size % jax.process_count():
        raise ValueError(f"training.batch_size={global_batch_size} is not a multiple of {jax.process_count()} processes")
    return global_batch_size // jax.process_count()


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
    """Assembles each process's numpy slice into global arrays sharded over `data`."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}
