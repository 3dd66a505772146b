"""Checkpoint layout shared by training, conversion and enhancement.

A diffrestore run directory (a training workdir, or the output of `diffrestore convert`):

    DIR/config.json            the full config (ml_collections JSON)
    DIR/checkpoints/<step>/    Orbax CheckpointManager steps with items
        params                 trained parameters (Flax "params" collection)
        ema_params             their exponential moving average (used for enhancement)
        opt_state              optimizer state (training runs only)

All processes of a multi-host job call save/restore (Orbax coordinates the writes).
"""
from __future__ import annotations

import pathlib

import jax
import orbax.checkpoint as ocp

from diffrestore import config as config_lib

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


def is_run_dir(path) -> bool:
    p = pathlib.Path(path)
    return (p / CONFIG_FILE).is_file() and (p / CHECKPOINT_DIR).is_dir()


def make_manager(run_dir, *, max_to_keep=None, keep_period=None, save_interval_steps=1, enable_async=True):
    """An Orbax CheckpointManager over DIR/checkpoints."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        keep_period=keep_period,
        save_interval_steps=save_interval_steps,
        enable_async_checkpointing=enable_async,
        create=True,
    )
    directory = pathlib.Path(run_dir).absolute() / CHECKPOINT_DIR
    return ocp.CheckpointManager(directory, options=options)


def write_config(run_dir, config) -> None:
    """Writes DIR/config.json atomically (temporary file, then rename)."""
    run_dir = pathlib.Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / (CONFIG_FILE + ".tmp")
    tmp.write_text(config_lib.to_json(config))
    tmp.replace(run_dir / CONFIG_FILE)


def read_config(run_dir):
    path = pathlib.Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no config.json, so {run_dir} is not a diffrestore run directory")
    return config_lib.from_json(path.read_text())


def save_parameters(run_dir, config, params, ema_params, step: int = 0) -> None:
    """Writes a run directory holding only parameters (what `diffrestore convert` produces)."""
    write_config(run_dir, config)
    with make_manager(run_dir, enable_async=False) as manager:
        manager.save(
            step,
            args=ocp.args.Composite(params=ocp.args.StandardSave(params), ema_params=ocp.args.StandardSave(ema_params)),
            force=True,
        )
        manager.wait_until_finished()


def restore_ema_params(run_dir, step: int | None = None):
    """Loads (config, EMA parameters, step) of the latest (or given) step of a run directory."""
    config, restored, step = _restore_items(run_dir, step, ("ema_params",))
    return config, restored["ema_params"], step


def _restore_items(run_dir, step, items):
    """(config, {item: tree}, step) for parameter-shaped items of a checkpoint step."""
    config = read_config(run_dir)
    with make_manager(run_dir, enable_async=False) as manager:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{run_dir}/{CHECKPOINT_DIR}: no checkpoint step found")
        # Restore onto this process's first device whatever mesh wrote the checkpoint (8 GPUs,
        # FSDP, ...): the saved shardings name devices this process may not have.
        # (The checkpoint's own metadata carries those shardings, so the shapes come from the config.)
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), config_lib.abstract_params(config)
        )
        restored = manager.restore(step, args=ocp.args.Composite(**{i: ocp.args.StandardRestore(target) for i in items}))
    return config, {i: restored[i] for i in items}, step


def restore_params(run_dir, step: int | None = None):
    """Loads (config, parameters, EMA parameters, step) of the latest (or given) step of a run
    directory, on this process's first device (see `restore_ema_params`). A directory written
    by `save_parameters` holds both trees too."""
    config, restored, step = _restore_items(run_dir, step, ("params", "ema_params"))
    return config, restored["params"], restored["ema_params"], step


def load_weights(path):
    """(config, params, ema_params) of anything `Enhancer.from_checkpoint` loads: a diffrestore
    run directory (latest step) or a reference Lightning `.ckpt` (sgmse, sgmse-bbed,
    sgmse_crp, StoRM; read without PyTorch). For `training.init_from`."""
    import pathlib

    path = pathlib.Path(path)
    if path.is_file():
        from diffrestore.convert import load_lightning_checkpoint

        return load_lightning_checkpoint(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint file or run directory")
    config, params, ema_params, _ = restore_params(path)
    return config, params, ema_params
