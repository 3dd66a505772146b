"""The update step: `train_step(state, batch, base_rng) -> (state, measurements)`, pure.

It is jitted at the call site (see `diffrestore.train.loop`) with NamedShardings and the state
donated. Everything that is float-sensitive (STFT, compression, SDE coefficients, the loss,
the EMA) runs in float32; the backbone may compute in bfloat16 (config.model.dtype).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from diffrestore import config as config_lib
from diffrestore.audio.transforms import to_spectrogram
from diffrestore.losses import make_loss_fn
from diffrestore.train.optimizer import ema_decay_at, ema_update, make_optimizer, updates_applied
from diffrestore.train.state import TrainState


def normalize_waves(clean, noisy, mode: str):
    """Per-example peak normalisation of the reference's dataset (`normalize` = noisy|clean|none).

    `diffrestore.data` already normalises; doing it again is exact (the peak is then 1) and
    makes the step correct for any other iterator too.
    """
    if mode in ("none", "not"):
        return clean, noisy
    if mode not in ("noisy", "clean"):
        raise ValueError(f"data.normalize must be noisy, clean or none, not {mode!r}")
    ref = noisy if mode == "noisy" else clean
    peak = jnp.max(jnp.abs(ref), axis=-1, keepdims=True)
    # A silent crop would divide by zero; leave it as it is (all zeros) instead.
    peak = jnp.where(peak > 0, peak, 1.0)
    return clean / peak, noisy / peak


def batch_to_spectrograms(batch, spectrogram, normalize: str = "none"):
    """{"clean", "noisy"} float waveforms (B, L) -> (x0, y) complex64 (B, 1, F, T)."""
    clean = jnp.asarray(batch["clean"], jnp.float32)
    noisy = jnp.asarray(batch["noisy"], jnp.float32)
    clean, noisy = normalize_waves(clean, noisy, normalize)
    x0 = to_spectrogram(clean, spectrogram)[:, None]
    y = to_spectrogram(noisy, spectrogram)[:, None]
    return x0.astype(jnp.complex64), y.astype(jnp.complex64)


def batch_keys(config) -> tuple:
    """The waveforms a training batch holds: (clean, noisy) pairs, or clean audio for a prior."""
    return ("clean",) if config_lib.is_prior(config) else ("clean", "noisy")


def make_objective(config, module=None) -> tuple[Callable, Callable]:
    """(prepare, loss_fn) of a config: `prepare(batch) -> (x0, y)` turns a batch of waveforms
    into the loss's inputs, `loss_fn(params, x0, y, rng, **model_kwargs) -> (loss, aux)`.

    Enhancement models: x0, y are the clean and noisy compressed spectrograms (B, 1, F, T)
    and the loss is `losses.make_loss_fn`'s. Priors: x0 is the clean waveform (B, L), y is
    None, and the loss is EDM's (`losses.make_edm_loss_fn`, `model.loss_reduction`).
    """
    module = module if module is not None else config_lib.build_backbone(config)
    if config_lib.is_prior(config):
        from diffrestore.losses import make_edm_loss_fn

        loss_fn = make_edm_loss_fn(
            config_lib.prior_apply_fn(module), config_lib.build_sde(config),
            reduction=str(config.model.get("loss_reduction", "mean")),
        )
        return (lambda batch: (jnp.asarray(batch["clean"], jnp.float32), None)), loss_fn
    spectrogram = config_lib.spectrogram_config(config)
    normalize = str(config.data.get("normalize", "none"))
    return (lambda batch: batch_to_spectrograms(batch, spectrogram, normalize)), make_loss_fn_from_config(config, module)


def make_loss_fn_from_config(config, module=None) -> Callable:
    """`loss_fn(params, x0, y, rng, **model_kwargs) -> (loss, aux)` of an enhancement config."""
    m = config.model
    module = module if module is not None else config_lib.build_backbone(config)
    if str(m.loss_type) == "flow_matching":
        from diffrestore.losses import make_flow_matching_loss_fn

        return make_flow_matching_loss_fn(
            config_lib.build_model_fn(config, module), config_lib.build_sde(config),
            target=str(m.get("estimator_target", "vector_field")), p_cond=float(m.get("p_cond", 0.9)),
        )
    if str(m.loss_type) == "crp":
        from diffrestore.losses import make_crp_loss_fn

        crp = m.crp
        return make_crp_loss_fn(
            config_lib.build_model_fn(config, module), config_lib.build_sde(config), t_eps=float(m.t_eps),
            t_start_range=(float(crp.t_rsp_min), float(crp.t_rsp_max)),
            num_steps_range=(int(crp.num_steps_min), int(crp.num_steps_max)),
        )
    if config_lib.is_storm(config):
        from diffrestore.losses import make_storm_loss_fn

        return make_storm_loss_fn(
            config_lib.build_model_fn(config, module), config_lib.build_condition_fn(config, module),
            config_lib.build_sde(config), t_eps=float(m.t_eps),
            denoiser_weight=float(m.get("denoiser_loss_weight", 0.5)), mode=str(m.get("storm_mode", "joint")),
        )
    return make_loss_fn(
        config_lib.build_model_fn(config, module),
        config_lib.build_sde(config),
        t_eps=float(m.t_eps),
        loss_type=str(m.loss_type),
        loss_weighting=str(m.loss_weighting),
        sigma_data=float(m.sigma_data),
        l1_weight=float(m.l1_weight),
        spectrogram=config_lib.spectrogram_config(config),
    )


def make_train_step(config, *, module=None, tx=None, schedule=None) -> Callable:
    """Builds the pure update step of a config.

    Args:
      config: the full config (model, sde, data, optim, training).
      module: the Flax backbone (default: `config_lib.build_backbone(config)`).
      tx, schedule: optimizer and its lr(count) (default: `make_optimizer(config.optim)`).
        Pass the same `tx` that built the state's `opt_state`.

    Returns:
      `train_step(state, batch, base_rng) -> (state, measurements)` where batch is
      {"clean", "noisy"} float32 waveforms (B, L) ({"clean"} for a prior) and measurements is a flat dict of float32
      scalars: loss, grad_norm, param_norm, learning_rate, ema_decay, t_mean, nonfinite_inputs
      (the number of NaN/inf samples in the batch).
    """
    if config_lib.weights_are_variables(config):
        # BatchNorm in training mode updates running statistics (a mutable collection) that
        # the update step does not thread through; DCUNet checkpoints load and enhance.
        raise ValueError(f"training backbone {config.model.backbone!r} (BatchNorm statistics) is not supported; "
                         "it loads from sgmse checkpoints and enhances")
    if tx is None:
        tx, schedule = make_optimizer(config.optim)
    if schedule is None:
        raise ValueError("pass the learning-rate schedule together with tx")
    prepare, loss_fn = make_objective(config, module)
    ema_decay = float(config.training.ema_decay)
    accum = int(config.optim.grad_accum_steps)

    def train_step(state: TrainState, batch, base_rng):
        # A fresh key per step that depends only on (seed, step): restarts replay exactly.
        rng = jax.random.fold_in(base_rng, state.step)
        loss_rng, dropout_rng = jax.random.split(rng)
        x0, y = prepare(batch)

        def objective(params):
            return loss_fn(params, x0, y, loss_rng, train=True, rngs={"dropout": dropout_rng})

        (loss, aux), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)

        # EMA after every optimizer update (not every micro-batch), with torch_ema's warm-up.
        num_updates = updates_applied(opt_state, state.step, accum)
        decay = ema_decay_at(ema_decay, num_updates)
        ema_params = ema_update(state.ema_params, params, decay)
        if accum > 1:
            updated = opt_state.mini_step == 0  # MultiSteps resets mini_step when it applies
            ema_params = jax.tree.map(lambda new, old: jnp.where(updated, new, old), ema_params, state.ema_params)

        measurements = {
            "loss": loss.astype(jnp.float32),
            "grad_norm": optax.tree.norm(grads),
            "param_norm": optax.tree.norm(params),
            # the rate used by the latest (or, while accumulating, the next) update
            "learning_rate": jnp.asarray(schedule(jnp.maximum(num_updates - 1, 0)), jnp.float32),
            "ema_decay": decay,
            # t_mean, and what else the loss reports (StoRM: its two terms)
            **{name: value.astype(jnp.float32) for name, value in aux.items()},
            # The spectrogram compression maps NaN/inf samples to 0, so bad input would not show
            # in the loss; count it so the host can stop on it.
            "nonfinite_inputs": sum(jnp.sum(~jnp.isfinite(v)) for v in batch.values()).astype(jnp.float32),
        }
        new_state = TrainState(step=state.step + 1, params=params, ema_params=ema_params, opt_state=opt_state)
        return new_state, measurements

    return train_step
