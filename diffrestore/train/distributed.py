"""Joining a multi-process (multi-host) job: `jax.distributed.initialize` when there is one.

Every process of a job runs the same `diffrestore train ...` command. Before JAX touches a
device, `initialize_if_needed()` decides from the environment whether this process is one of
several and, if so, connects it to the others:

| environment | detected by | what is passed to `jax.distributed.initialize` |
| --- | --- | --- |
| explicit | `DIFFRESTORE_NUM_PROCESSES` > 1 (or `JAX_NUM_PROCESSES`) | coordinator, count, id (and local device ids) from the variables below |
| SLURM | `SLURM_JOB_ID` and more than one task in the step | nothing: JAX reads the SLURM variables itself |
| Open MPI | `OMPI_COMM_WORLD_SIZE` > 1 | nothing: JAX reads the Open MPI variables itself |
| Cloud TPU pod / GKE TPU | `TPU_WORKER_HOSTNAMES` with more than one host, or `MEGASCALE_NUM_SLICES` > 1 | nothing: JAX asks the TPU metadata |

Explicit variables (what `launch/local.sh` and `launch/gke_jobset.yaml` set):
`DIFFRESTORE_COORDINATOR` (host:port of process 0, or `JAX_COORDINATOR_ADDRESS`),
`DIFFRESTORE_NUM_PROCESSES`, `DIFFRESTORE_PROCESS_ID` (or `JAX_NUM_PROCESSES`,
`JAX_PROCESS_ID`) and optionally `DIFFRESTORE_LOCAL_DEVICE_IDS` (comma-separated).

On CPU the processes exchange collectives over gloo (JAX's default CPU implementation), so
the same code path is tested on a laptop with `launch/local.sh`.
"""
from __future__ import annotations

import logging
import os
from typing import Mapping

log = logging.getLogger("diffrestore.train")

_initialized = False


def _int(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def _first(env: Mapping[str, str], *names: str) -> tuple[str | None, str | None]:
    """(name, value) of the first variable of `names` that is set, else (None, None)."""
    for name in names:
        if env.get(name) not in (None, ""):
            return name, env[name]
    return None, None


def detect_cluster(env: Mapping[str, str]) -> str | None:
    """Which multi-process environment this is: "explicit", "slurm", "ompi", "tpu" or None
    (a single process)."""
    count_name, _ = _first(env, "DIFFRESTORE_NUM_PROCESSES", "JAX_NUM_PROCESSES")
    if count_name is not None:
        return "explicit" if _int(env, count_name) > 1 else None
    slurm_tasks = _int(env, "SLURM_STEP_NUM_TASKS") or _int(env, "SLURM_NTASKS")
    if env.get("SLURM_JOB_ID") and slurm_tasks and slurm_tasks > 1:
        return "slurm"
    if (_int(env, "OMPI_COMM_WORLD_SIZE") or 0) > 1:
        return "ompi"
    hosts = [h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h.strip()]
    if len(hosts) > 1 or (_int(env, "MEGASCALE_NUM_SLICES") or 0) > 1:
        return "tpu"
    return None


def initialize_kwargs(env: Mapping[str, str]) -> dict | None:
    """The keyword arguments for `jax.distributed.initialize`, or None for a single process.

    For SLURM, Open MPI and TPU pods the dict is empty: JAX's own cluster detection fills in
    the coordinator, process count and id. Explicit variables are checked here so that a
    mistake is reported with the variable's name, not as a hang at the coordinator.
    """
    kind = detect_cluster(env)
    if kind is None:
        return None
    if kind != "explicit":
        return {}
    count_name, _ = _first(env, "DIFFRESTORE_NUM_PROCESSES", "JAX_NUM_PROCESSES")
    num_processes = _int(env, count_name)
    coord_name, coordinator = _first(env, "DIFFRESTORE_COORDINATOR", "JAX_COORDINATOR_ADDRESS")
    if coordinator is None:
        raise ValueError(f"{count_name}={num_processes} but DIFFRESTORE_COORDINATOR (host:port of process 0) is not set")
    if ":" not in coordinator:
        raise ValueError(f"{coord_name}={coordinator!r} must be host:port")
    id_name, _ = _first(env, "DIFFRESTORE_PROCESS_ID", "JAX_PROCESS_ID")
    if id_name is None:
        raise ValueError(f"{count_name}={num_processes} but DIFFRESTORE_PROCESS_ID (0..{num_processes - 1}) is not set")
    process_id = _int(env, id_name)
    if not 0 <= process_id < num_processes:
        raise ValueError(f"{id_name}={process_id} is outside 0..{num_processes - 1} ({count_name}={num_processes})")
    kwargs = dict(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    ids = env.get("DIFFRESTORE_LOCAL_DEVICE_IDS", "")
    if ids.strip():
        try:
            kwargs["local_device_ids"] = [int(i) for i in ids.split(",")]
        except ValueError:
            raise ValueError(f"DIFFRESTORE_LOCAL_DEVICE_IDS={ids!r} must be comma-separated integers") from None
    return kwargs


def initialize_if_needed(env: Mapping[str, str] | None = None) -> bool:
    """Calls `jax.distributed.initialize` once if this process is part of a multi-process job.

    Must run before anything else uses JAX devices (it is the first thing `diffrestore train`
    does). Returns True if this process is (now) part of a multi-process job.
    """
    global _initialized
    if _initialized:
        return True
    kwargs = initialize_kwargs(os.environ if env is None else env)
    if kwargs is None:
        return False
    import jax

    jax.distributed.initialize(**kwargs)
    _initialized = True
    log.info("process %d of %d joined the job (%s); %d local and %d global devices",
             jax.process_index(), jax.process_count(), detect_cluster(os.environ if env is None else env),
             jax.local_device_count(), jax.device_count())
    return True
