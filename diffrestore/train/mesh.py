"""The device mesh of a config's `mesh` group, and how arrays are placed on it.

One mesh, one device order, everywhere: the batch is sharded over the `data` axis and the
training state is replicated (a `fsdp` axis can shard it later without changing callers).
Every process feeds only its own slice of the global batch
(`jax.make_array_from_process_local_data`), so the same code runs on one host or many.
"""
from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(mesh_config=None, devices=None) -> Mesh:
    """A Mesh with the axes of `config.mesh` in order; a size of -1 takes the remaining devices.

    Args:
      mesh_config: mapping axis name -> size (default {"data": -1}). Only `data` is used by the
        training step today.
      devices: devices to use (default all of `jax.devices()`).
    """
    devices = jax.devices() if devices is None else list(devices)
    axes = dict(mesh_config.items()) if mesh_config is not None else {DATA_AXIS: -1}
    if DATA_AXIS not in axes:
        raise ValueError(f"config.mesh needs a {DATA_AXIS!r} axis, got {sorted(axes)}")
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
    """Leading (batch) axis split over `data`, the rest whole."""
    return NamedSharding(mesh, P(DATA_AXIS))


def data_parallel_size(mesh: Mesh) -> int:
    return mesh.shape[DATA_AXIS]


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
