"""The `training`, `optim` and `mesh` groups of a training config, with the reference's defaults.

`configs/*.py` call `training_config()` (or `add_training_groups(config)`) and change what
their recipe needs. Defaults follow sp-uhh/sgmse `train.py`/`ScoreModel`: Adam at 1e-4, EMA
0.999, batch 8, validation on 20 files with the reverse process's N steps; no warm-up, no
clipping, no accumulation.
"""
from __future__ import annotations

import ml_collections

from diffrestore import config as config_lib


def training_defaults() -> ml_collections.ConfigDict:
    t = ml_collections.ConfigDict()
    t.seed = 0  # parameters, per-step rng and the input order are all functions of it
    t.batch_size = 8  # global, over all devices and processes (the reference's per-GPU default)
    t.num_steps = 100_000  # update steps; micro-batches when optim.grad_accum_steps > 1
    t.max_minutes = 0.0  # stop (with a checkpoint) once this much wall time has passed (0 = no limit)
    t.ema_decay = 0.999
    t.log_every_steps = 50
    t.checkpoint_every_steps = 5_000
    t.keep_checkpoints = 3  # the last N checkpoints (0 = keep all)
    t.keep_period = 50_000  # also keep every step that is a multiple (0 = none); the reference saves every 50k
    t.eval_every_steps = 2_000  # 0 = no validation
    t.num_eval_files = 20
    t.eval_num_steps = 30  # reverse steps at validation (the reference uses sde.N)
    t.num_eval_examples = 2  # enhanced examples written to TensorBoard (audio + spectrogram)
    t.tensorboard = True
    t.init_from = ""  # start from a trained model's weights and EMA (run dir or reference .ckpt; CRP, StoRM)
    t.compilation_cache_dir = ""  # persistent XLA cache (e.g. ~/.cache/diffrestore/xla); "" = JAX's default (off)
    return t


def optim_defaults() -> ml_collections.ConfigDict:
    o = ml_collections.ConfigDict()
    o.optimizer = "adam"  # adam | adamw
    o.lr = 1e-4
    o.b1 = 0.9
    o.b2 = 0.999
    o.eps = 1e-8
    o.weight_decay = 0.0  # adamw only
    o.warmup_steps = 0  # linear warm-up, in optimizer updates
    o.grad_clip_norm = 0.0  # global-norm clipping (0 = off)
    o.grad_accum_steps = 1  # micro-batches per update (optax.MultiSteps)
    return o


def mesh_defaults() -> ml_collections.ConfigDict:
    m = ml_collections.ConfigDict()
    m.data = -1  # data parallel: the remaining devices (state replicated over this axis)
    m.fsdp = 1  # fully sharded: parameters, EMA and optimizer state split over this many devices
    return m


def add_training_groups(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Adds training/optim/mesh groups and the input pipeline's data fields to `config`."""
    from diffrestore.data import default_data_config

    with config.unlocked():
        config.training = training_defaults()
        config.optim = optim_defaults()
        config.mesh = mesh_defaults()
        # The data group keeps the spectrogram fields of `default_config()` and gains the input
        # pipeline's (location, augmentation, ...); fields in both keep the model's values.
        data_fields = default_data_config()
        for key, value in data_fields.items():
            if key not in config.data:
                config.data[key] = value
    return config


def training_config() -> ml_collections.ConfigDict:
    """`diffrestore.config.default_config()` plus the training groups: SGMSE+ at 16 kHz."""
    return add_training_groups(config_lib.default_config())


def prior_training_config(backbone: str = "cqtdiff", **backbone_kwargs) -> ml_collections.ConfigDict:
    """`diffrestore.config.prior_config(...)` plus the training groups, for a prior trained on
    a folder of clean audio (`data.dataset = "clean"`); validation draws unconditional
    samples with `training.eval_num_steps` sampler steps. Recipes set their optimizer."""
    config = add_training_groups(config_lib.prior_config(backbone, **backbone_kwargs))
    config.data.dataset = "clean"
    config.training.eval_num_steps = int(config.sampling.num_steps)
    return config
