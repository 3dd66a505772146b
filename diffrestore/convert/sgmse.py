"""Import checkpoints of the PyTorch SGMSE code (sp-uhh/sgmse) into diffrestore.

A Lightning `.ckpt` of sgmse holds the network weights (`state_dict`, keys `dnn.*`), their
EMA (`ema.shadow_params`, a list in `dnn.parameters()` order — the reference evaluates with
these), and `hyper_parameters`, the flat argparse namespace of the training run. We read it
with the restricted unpickler of `torch_pickle` (no PyTorch, nothing executed) and map the
hyper-parameters onto a diffrestore config.
"""
from __future__ import annotations

import pathlib
import warnings
from typing import Mapping

import numpy as np

from diffrestore import config as config_lib
from diffrestore.convert.torch_pickle import CheckpointError, load_torch_checkpoint

# How the reference's enhancement script pads the frame axis for each backbone.
_PAD_MODE = {"ncsnpp": "zero", "ncsnpp_v2": "reflection", "ncsnpp_48k": "reflection", "dcunet": "zero"}
_SDE_FIELDS = ("theta", "sigma_min", "sigma_max", "k", "c", "eps", "beta_min", "beta_max", "stiffness", "beta_0", "beta_1", "N")
_DATA_FIELDS = ("n_fft", "hop_length", "num_frames", "window", "spec_factor", "spec_abs_exponent", "transform_type", "normalize")
_MODEL_FIELDS = ("loss_type", "loss_weighting", "c_in", "c_out", "c_skip", "sigma_data", "l1_weight", "t_eps")


def config_from_hparams(hparams: Mapping, source: str = "checkpoint"):
    """Builds a diffrestore config from sgmse's `hyper_parameters`.

    Missing keys take the reference defaults of the version that wrote the checkpoint
    (older sgmse versions had no loss_type: they trained score matching).
    """
    from diffrestore.models import BACKBONES, backbone_kwargs, dcunet

    backbone = str(hparams.get("backbone", ""))
    if backbone not in BACKBONES + ("dcunet",):
        raise CheckpointError(
            f"{source}: backbone {backbone!r} is not supported (supported: {sorted(BACKBONES + ('dcunet',))})"
        )
    sde_name = str(hparams.get("sde", "")).lower()
    if sde_name not in ("ouve", "ouvp", "sbve", "sbvp", "bbed"):
        raise CheckpointError(f"{source}: SDE {hparams.get('sde')!r} is not supported")
    bbed = sde_name == "bbed"  # sp-uhh/sgmse-bbed and sp-uhh/sgmse_crp checkpoints

    config = config_lib.default_config()
    config.model.backbone = backbone
    if backbone == "dcunet":
        # sgmse's argparse defaults where the checkpoint has no value (they differ from the
        # constructor's in two options, see dcunet.ARGPARSE_DEFAULTS).
        kwargs = {**dcunet.ARGPARSE_DEFAULTS, **dcunet.backbone_kwargs(hparams)}
    else:
        kwargs = backbone_kwargs(backbone, hparams)
    if bbed and backbone != "dcunet":
        # sgmse-bbed's NCSN++ has no `centered` option (no input map), always divides by t
        # (its `scale_by_sigma` is ignored) and overwrites fir_kernel with [1, 3, 3, 1].
        kwargs.update(centered=True, scale_by_sigma=True, fir_kernel=(1, 3, 3, 1))
    config.model.backbone_kwargs = _plain(kwargs)
    for field in _MODEL_FIELDS:
        if hparams.get(field) is not None:
            config.model[field] = type(config.model[field])(hparams[field])
    if bbed:
        config.model.loss_type = _bbed_loss_type(hparams, source)
    config.model.network_scaling = str(hparams.get("network_scaling") or "")

    config.sde.name = sde_name
    for field in _SDE_FIELDS:
        if hparams.get(field) is not None and not bbed:
            config.sde[field] = type(config.sde[field])(hparams[field])
    if bbed:
        config.sde = _bbed_sde_config(hparams)

    apply_data_hparams(config, hparams)
    if backbone == "ncsnpp_48k":
        config.data.sample_rate = 48000

    sampler_type = str(hparams.get("sampler_type", "") or "")
    if sde_name.startswith("sb"):
        config.sampling.sampler = "sb_sde" if sampler_type == "sde" else "sb_ode"
    else:
        config.sampling.sampler = "ode_adaptive" if sampler_type == "ode" else "pc"
    config.sampling.num_steps = int(config.sde.N)
    config.sampling.pad_mode = _PAD_MODE[backbone]
    if bbed:
        _bbed_sampling(config.sampling, hparams)
    return config


def apply_data_hparams(config, hparams: Mapping) -> None:
    """The STFT, compression and normalisation of a Lightning run's data module (sgmse's
    `SpecsDataModule`, which StoRM shares) onto `config.data`; 16 kHz unless `sr` says otherwise."""
    for field in _DATA_FIELDS:
        if hparams.get(field) is not None:
            config.data[field] = type(config.data[field])(hparams[field])
    config.data.sample_rate = int(hparams.get("sr", 16000) or 16000)


def _bbed_loss_type(hparams: Mapping, source: str) -> str:
    """sgmse-bbed's `loss_type` "mse" is |σ·s + z|² (`ScoreModel._loss`): our score matching."""
    loss_type = str(hparams.get("loss_type", "mse"))
    if loss_type != "mse":
        # Its "mae" branch reads an undefined variable: no checkpoint can have trained with it.
        raise CheckpointError(f"{source}: BBED loss_type {loss_type!r} is not supported (expected 'mse')")
    return "score_matching"


def _bbed_sde_config(hparams: Mapping):
    """The `sde` group of a BBED checkpoint: k, c (the reference's `theta`), T (T_sampling), N."""
    import ml_collections

    from diffrestore.sde import BBEDSDE

    sde = BBEDSDE.from_hparams(**hparams)
    return ml_collections.ConfigDict({"name": "bbed", "k": sde.k, "c": sde.c, "T": sde.T, "N": sde.N})


# BBED's paper setting (Lay et al. 2023): reverse process from T' = 0.5 with 15 PC steps, i.e.
# eval.py's N = int(0.5 / (1/30)). A CRP checkpoint carries its own inference start and step
# count (`inference_start`, `inference_N`) and samples without a corrector.
_BBED_START, _BBED_STEPS = 0.5, 15


def _bbed_sampling(sampling, hparams: Mapping) -> None:
    sampling.predictor = "reverse_diffusion"
    if hparams.get("inference_N") is not None:
        sampling.corrector = "none"
        sampling.num_steps = int(hparams["inference_N"])
        sampling.start_time = float(hparams.get("inference_start", _BBED_START))
    else:
        sampling.corrector = "ald"
        sampling.num_steps = _BBED_STEPS
        sampling.start_time = _BBED_START


def _plain(value):
    """Converts lists to tuples and numpy scalars to Python values (ConfigDict-friendly)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def _network_state_dicts(ckpt: Mapping, source: str, parameter_names=None):
    """(raw, ema) state dicts of the network, keys without the `dnn.` prefix.

    `parameter_names` (without prefix) lists the network's parameters in `parameters()` order,
    the order of the EMA list, when the state_dict also holds buffers (DCUNet's BatchNorm
    statistics, which the EMA does not cover: the EMA dict gets the raw buffers)."""
    state = ckpt.get("state_dict")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{source}: no state_dict; is this a Lightning checkpoint of sgmse?")
    names = [k for k in state if k.startswith("dnn.")]
    if not names:
        raise CheckpointError(f"{source}: state_dict has no 'dnn.*' network weights")
    raw = {k[len("dnn."):]: np.asarray(state[k]) for k in names}
    if parameter_names is not None:
        missing = [k for k in parameter_names if k not in raw]
        if missing:
            raise CheckpointError(f"{source}: state_dict lacks network parameters {missing[:5]}")
        names = ["dnn." + k for k in parameter_names]
    ema_state = ckpt.get("ema")
    if not isinstance(ema_state, Mapping) or "shadow_params" not in ema_state:
        # The reference warns and evaluates the raw weights in this case; so do we.
        warnings.warn(f"{source}: no EMA weights in the checkpoint; using the raw state_dict")
        return raw, raw
    shadow = list(ema_state["shadow_params"])
    if len(shadow) != len(names):
        raise CheckpointError(
            f"{source}: ema.shadow_params has {len(shadow)} tensors but the network has {len(names)} parameters"
        )
    ema = {k: v for k, v in raw.items() if "dnn." + k not in names}  # buffers: not averaged
    for key, value in zip(names, shadow):
        value = np.asarray(value)
        if value.shape != raw[key[len("dnn."):]].shape:
            raise CheckpointError(f"{source}: EMA tensor for {key} has shape {value.shape}, expected {raw[key[4:]].shape}")
        ema[key[len("dnn."):]] = value
    return raw, ema


def load_sgmse_checkpoint(path, ckpt=None):
    """Reads an sgmse `.ckpt`: returns (config, params, ema_params) as Flax parameter trees.
    ckpt: the file's contents when the caller has read them already (`load_torch_checkpoint`)."""
    from diffrestore.models import params_from_torch

    path = pathlib.Path(path)
    ckpt = load_torch_checkpoint(path) if ckpt is None else ckpt
    if not isinstance(ckpt, Mapping) or "hyper_parameters" not in ckpt:
        raise CheckpointError(f"{path}: no hyper_parameters; is this a Lightning checkpoint of sgmse?")
    hparams = ckpt["hyper_parameters"]
    # Lightning stores a dict, or an argparse Namespace when hparams were saved from one.
    hparams = dict(hparams) if isinstance(hparams, Mapping) else dict(vars(hparams))
    config = config_from_hparams(hparams, str(path))
    kwargs = config.model.backbone_kwargs.to_dict()
    if config.model.backbone == "dcunet":
        from diffrestore.models import dcunet

        # The model's weights are all its variables: parameters and BatchNorm statistics.
        convert = dcunet.variables_from_torch
        try:
            names = dcunet.torch_param_names(kwargs)
        except ValueError as err:
            raise CheckpointError(f"{path}: DCUNet options do not build: {err}") from err
        raw, ema = _network_state_dicts(ckpt, str(path), names)
    else:
        convert = lambda kw, sd: params_from_torch(config.model.backbone, kw, sd)  # noqa: E731
        raw, ema = _network_state_dicts(ckpt, str(path))
    try:
        params = convert(kwargs, raw)
        ema_params = convert(kwargs, ema)
    except ValueError as err:
        raise CheckpointError(f"{path}: weights do not fit backbone {config.model.backbone}: {err}") from err
    return config, params, ema_params


def convert_checkpoint(src, dest) -> pathlib.Path:
    """`diffrestore convert SRC.ckpt DEST`: writes an Orbax run directory with config.json
    (any checkpoint `convert.load_lightning_checkpoint` reads: sgmse, sgmse-bbed, sgmse_crp, StoRM)."""
    from diffrestore import checkpoint
    from diffrestore.convert import load_lightning_checkpoint

    config, params, ema_params = load_lightning_checkpoint(src)
    dest = pathlib.Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest}: destination exists and is not empty")
    checkpoint.save_parameters(dest, config, params, ema_params, step=0)
    return dest
