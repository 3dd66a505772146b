"""Import checkpoints of StoRM (sp-uhh/storm) into diffrestore, without PyTorch.

A `StochasticRegenerationModel` Lightning `.ckpt` holds two NCSN++ networks of the
`ncsnpp_storm` variant (`diffrestore.models.ncsnpp`):

| network    | state_dict prefix | built with                         | call here                          |
| ---------- | ----------------- | ---------------------------------- | ---------------------------------- |
| "denoiser" | `denoiser_net.`   | discriminative=True (2 channels)   | `apply(p, y, None, None)` = D(y)   |
| "score"    | `score_net.`      | input_channels 6 (condition both)  | `apply(p, x, [y, D(y)], t)`        |

StoRM's score is minus the score network's output. `ema.shadow_params` is torch_ema's list in
`model.parameters()` order: all denoiser parameters, then all score parameters, each network in
its `named_parameters()` order (no buffers; the fixed Fourier `W` included). The reference
enhances with the EMA weights.

Real checkpoints carry no `nf`, `ch_mult` or `num_res_blocks` (they are not command-line
options of StoRM, the constructor defaults apply), and their `hyper_parameters` hold
`input_channels` / `discriminative` as the score network's constructor left them. So each
network's size is read from its weights (`storm_kwargs_from_state_dict`), its role from its
prefix, and every weight is then checked strictly against that network's layout.
"""
from __future__ import annotations

import pathlib
import warnings
from typing import Any, Mapping

import numpy as np

from diffrestore.convert.torch_pickle import CheckpointError, load_torch_checkpoint

BACKBONE = "ncsnpp_storm"
# Network name -> its attribute in StochasticRegenerationModel, in registration order (the
# order of model.parameters(), hence of the EMA list).
PREFIXES = {"denoiser": "denoiser_net.", "score": "score_net."}
# The score network's input channels for each `--condition` (x plus its conditioning).
CONDITION_CHANNELS = {"both": 6, "noisy": 4, "post_denoiser": 4}
_HPARAM_BACKBONE = {"denoiser": "backbone_denoiser", "score": "backbone_score"}


# ----------------------------------------------------------------------------- network sizes


def _modules(state_dict: Mapping) -> dict[int, dict[str, tuple[int, ...]]]:
    """all_modules index -> {sub key: shape}, e.g. {3: {"Conv_1.weight": (16, 16, 3, 3), ...}}."""
    modules: dict[int, dict[str, tuple[int, ...]]] = {}
    for key, value in state_dict.items():
        parts = key.split(".", 2)
        if len(parts) == 3 and parts[0] == "all_modules" and parts[1].isdigit():
            modules.setdefault(int(parts[1]), {})[parts[2]] = tuple(np.shape(value))
    return dict(sorted(modules.items()))


def _kind(subkeys: Mapping[str, tuple[int, ...]]) -> str:
    """What one `all_modules` entry is, from its submodule names and parameter ranks.

    Any one of a block's submodules identifies it, so a single missing key does not shift
    the inferred size (the strict import then names exactly that key).
    """
    parts = {key.split(".")[0] for key in subkeys}
    if parts & {"GroupNorm_1", "Conv_1", "Dense_0"}:
        return "resblock"
    if any(part.startswith("NIN_") for part in parts):
        return "attn"
    if parts == {"Conv_0"}:
        return "combine"  # the input-skip Combine: one 1x1 conv
    if "W" in subkeys:
        return "fourier"
    if "weight" in subkeys:
        return {4: "conv", 2: "dense", 1: "groupnorm"}.get(len(subkeys["weight"]), "other")
    # A bias alone (its weight missing): only the first conv's width is read from such an
    # entry, and the plain modules before it (Fourier W, Linear) are told apart by their weights.
    return "conv" if "bias" in subkeys else "other"


def _width(subkeys: Mapping[str, tuple[int, ...]], *candidates: str) -> int | None:
    """Output channels of a module: the leading dimension of the first candidate key present."""
    for key in candidates:
        if key in subkeys and subkeys[key]:
            return int(subkeys[key][0])
    return None


def infer_network_size(state_dict: Mapping) -> dict[str, Any]:
    """nf, and where the layout allows it ch_mult and num_res_blocks, of one NCSN++ state dict.

    Reads StoRM's layout (BigGAN blocks, input-skip Combine after each downsampling level):
    nf is the first conv's output width; the Combine entries end the first len(ch_mult) − 1
    levels, and each carries that level's width nf·ch_mult[l]; the first residual block after
    the last Combine has the last level's width; the residual blocks before the first Combine
    are num_res_blocks plus the downsampling one. Without Combine entries only nf is returned.

    Args:
      state_dict: one network's keys without prefix (`all_modules.<i>.*`) -> arrays or shapes'
        holders (anything `np.shape` takes).
    Returns:
      A dict with "nf" and possibly "ch_mult" (tuple) and "num_res_blocks"; empty when the
      state dict has no first conv.
    """
    modules = _modules(state_dict)
    kinds = [(i, _kind(sub)) for i, sub in modules.items()]
    convs = [i for i, kind in kinds if kind == "conv"]
    if not convs:
        return {}
    conv_in = convs[0]
    nf = _width(modules[conv_in], "weight", "bias")
    size: dict[str, Any] = {"nf": nf}
    down = [(i, kind) for i, kind in kinds if i > conv_in]
    combines = [pos for pos, (_, kind) in enumerate(down) if kind == "combine"]
    after_last = [i for i, kind in down[combines[-1] + 1:] if kind == "resblock"] if combines else []
    if not after_last:
        return size
    widths = [_width(modules[down[pos][0]], "Conv_0.weight", "Conv_0.bias") for pos in combines]
    widths.append(_width(modules[after_last[0]], "Conv_1.weight", "Conv_1.bias", "GroupNorm_1.weight", "Conv_0.bias"))
    blocks_first_level = sum(kind == "resblock" for _, kind in down[: combines[0]])
    if any(w is None or w % nf for w in widths) or blocks_first_level < 1:
        return size  # not this layout; the strict import will say what does not fit
    size["ch_mult"] = tuple(int(w // nf) for w in widths)
    size["num_res_blocks"] = int(blocks_first_level - 1)
    return size


def storm_kwargs_from_state_dict(state_dict: Mapping, *, network: str, hparams: Mapping | None = None) -> dict:
    """The `ncsnpp_storm` constructor kwargs of one of StoRM's networks.

    Args:
      state_dict: that network's weights, keys without the `denoiser_net.`/`score_net.` prefix.
      network: "denoiser" (built discriminative, 2 channels) or "score" (channels from
        `hparams["condition"]`: 6 for "both", the default, 4 for "noisy"/"post_denoiser").
      hparams: the checkpoint's `hyper_parameters`; the entries the constructor names are
        taken (as the reference passes all of them to it), except `input_channels` and
        `discriminative`, which describe the score network as it left them.
    Returns:
      kwargs for `build_backbone("ncsnpp_storm", **kwargs)` / `params_from_torch`. The size
      read from the weights (`infer_network_size`) takes precedence over `nf`/`ch_mult`/
      `num_res_blocks` in hparams: the weights are what will be loaded.
    Raises:
      CheckpointError: unknown network or condition.
    """
    from diffrestore.models.ncsnpp import backbone_kwargs

    hparams = dict(hparams or {})
    if network not in PREFIXES:
        raise CheckpointError(f"unknown StoRM network {network!r}; expected one of {sorted(PREFIXES)}")
    kwargs = {
        k: v for k, v in backbone_kwargs(BACKBONE, hparams).items() if k not in ("input_channels", "discriminative")
    }
    kwargs.update(infer_network_size(state_dict))
    if network == "denoiser":
        kwargs.update(discriminative=True, input_channels=2)
    else:
        condition = str(hparams.get("condition", "both"))
        if condition not in CONDITION_CHANNELS:
            raise CheckpointError(f"unknown StoRM condition {condition!r}; expected one of {sorted(CONDITION_CHANNELS)}")
        kwargs.update(discriminative=False, input_channels=CONDITION_CHANNELS[condition])
    return kwargs


# ----------------------------------------------------------------------------- checkpoint


def _networks(hparams: Mapping, source: str) -> list[str]:
    """The networks the model built (a backbone "none" builds none), in registration order."""
    present = []
    for network, key in _HPARAM_BACKBONE.items():
        backbone = str(hparams.get(key, "ncsnpp"))
        if backbone == "none":
            continue
        if backbone != "ncsnpp":
            raise CheckpointError(f"{source}: {key} {backbone!r} is not supported (supported: 'ncsnpp', 'none')")
        present.append(network)
    if not present:
        raise CheckpointError(f"{source}: both backbones are 'none'; the checkpoint holds no network")
    return present


def _split_state_dict(state: Mapping, networks: list[str], source: str) -> dict[str, dict[str, np.ndarray]]:
    """{"denoiser": {...}, "score": {...}} with the prefixes stripped; refuses other keys."""
    split: dict[str, dict[str, np.ndarray]] = {network: {} for network in networks}
    stray = []
    for key, value in state.items():
        network = next((n for n in networks if key.startswith(PREFIXES[n])), None)
        if network is None:
            stray.append(key)
        else:
            split[network][key[len(PREFIXES[network]):]] = np.asarray(value)
    if stray:
        expected = ", ".join(f"'{PREFIXES[n]}*'" for n in networks)
        raise CheckpointError(f"{source}: state_dict keys outside {expected}: {stray[:10]}{' ...' if len(stray) > 10 else ''}")
    empty = [n for n in networks if not split[n]]
    if empty:
        raise CheckpointError(f"{source}: state_dict has no '{PREFIXES[empty[0]]}*' weights")
    return split


def _ema_state_dicts(ckpt: Mapping, names: Mapping[str, list[str]], raw: Mapping, source: str) -> dict:
    """Per network, torch key -> EMA tensor, from torch_ema's flat `shadow_params` list.

    `names`: each network's `named_parameters()` order, networks in registration order; `raw`
    holds exactly these keys (checked before), whose shapes each EMA tensor must have.
    """
    ema_state = ckpt.get("ema")
    if not isinstance(ema_state, Mapping) or "shadow_params" not in ema_state:
        # The reference warns and evaluates the raw weights in this case; so do we.
        warnings.warn(f"{source}: no EMA weights in the checkpoint; using the raw state_dict")
        return {network: dict(state) for network, state in raw.items()}
    shadow = list(ema_state["shadow_params"])
    expected = sum(len(keys) for keys in names.values())
    if len(shadow) != expected:
        counts = ", ".join(f"{network} {len(keys)}" for network, keys in names.items())
        raise CheckpointError(
            f"{source}: ema.shadow_params has {len(shadow)} tensors but the networks have {expected} parameters ({counts})"
        )
    ema: dict[str, dict[str, np.ndarray]] = {}
    position = 0
    for network, keys in names.items():
        ema[network] = {}
        for key in keys:
            value = np.asarray(shadow[position])
            want = np.shape(raw[network][key])
            if value.shape != want:
                raise CheckpointError(
                    f"{source}: ema.shadow_params[{position}] ({PREFIXES[network]}{key}) has shape "
                    f"{value.shape}, expected {want}"
                )
            ema[network][key] = value
            position += 1
    return ema


def load_storm_checkpoint(path, ckpt=None) -> tuple[dict, dict, dict]:
    """Reads a StoRM `StochasticRegenerationModel` `.ckpt` (no PyTorch, nothing executed);
    ckpt: the file's contents when the caller has read them already.

    Args:
      path: the Lightning checkpoint.
    Returns:
      (hparams, params, ema_params):
      hparams: the checkpoint's `hyper_parameters` as a dict (classes such as
        `data_module_cls` stay inert `TorchGlobal` names), plus one entry of ours,
        "network_kwargs": {"denoiser": kwargs, "score": kwargs}, the `ncsnpp_storm`
        constructor kwargs the weights were read with (`build_storm_networks` takes it);
      params: {"denoiser": tree, "score": tree} from `state_dict`, Flax "params" trees of
        float32 numpy arrays (a network whose backbone is "none" is absent);
      ema_params: the same from `ema.shadow_params`: the weights StoRM enhances with (the
        raw weights, with a warning, when the checkpoint has no EMA).
    Raises:
      CheckpointError (naming the file): not a StoRM checkpoint, unsupported backbone or
      condition, keys outside the two networks, an EMA list of the wrong length or shapes,
      or weights that do not fit the network (every missing, unexpected and misshapen key).
    """
    from diffrestore.models.torch_import import params_from_torch, torch_param_names

    path = pathlib.Path(path)
    source = str(path)
    ckpt = load_torch_checkpoint(path) if ckpt is None else ckpt
    if not isinstance(ckpt, Mapping) or "hyper_parameters" not in ckpt:
        raise CheckpointError(f"{source}: no hyper_parameters; is this a Lightning checkpoint of StoRM?")
    hparams = ckpt["hyper_parameters"]
    # Lightning stores a dict, or an argparse Namespace when hparams were saved from one.
    hparams = dict(hparams) if isinstance(hparams, Mapping) else dict(vars(hparams))
    state = ckpt.get("state_dict")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{source}: no state_dict; is this a Lightning checkpoint of StoRM?")

    networks = _networks(hparams, source)
    raw = _split_state_dict(state, networks, source)
    kwargs = {n: storm_kwargs_from_state_dict(raw[n], network=n, hparams=hparams) for n in networks}

    def convert(network: str, state_dict: Mapping, what: str) -> dict:
        try:
            return params_from_torch(BACKBONE, kwargs[network], state_dict)
        except ValueError as err:
            raise CheckpointError(f"{source}: {what} of {PREFIXES[network]}* do not fit StoRM's NCSN++: {err}") from err

    # The raw weights first: their strict check names every wrong key before the EMA list,
    # which can only report a count, is matched against them.
    params = {n: convert(n, raw[n], "weights") for n in networks}
    names = {n: torch_param_names(BACKBONE, kwargs[n]) for n in networks}
    ema = _ema_state_dicts(ckpt, names, raw, source)
    ema_params = {n: convert(n, ema[n], "EMA weights") for n in networks}
    hparams["network_kwargs"] = kwargs
    return hparams, params, ema_params


def build_storm_networks(network_kwargs: Mapping[str, Mapping], dtype=None) -> dict:
    """{"denoiser": module, "score": module} (`ncsnpp_storm` NCSNpp) from
    `hparams["network_kwargs"]` of `load_storm_checkpoint`; dtype: compute dtype (float32)."""
    import jax.numpy as jnp

    from diffrestore.models.ncsnpp import build_backbone

    dtype = jnp.float32 if dtype is None else dtype
    return {network: build_backbone(BACKBONE, dtype=dtype, **dict(kw)) for network, kw in network_kwargs.items()}


# StoRM's enhancement.py defaults: PC sampler with ALD (snr 0.5, one step) then reverse
# diffusion, N = 50, every step dt = 1/N (its SDE.discretize), no frame padding but zeros.
STORM_SAMPLING = dict(sampler="pc", predictor="reverse_diffusion", corrector="ald", snr=0.5, corrector_steps=1,
                      num_steps=50, step_size="1/N", pad_mode="zero")


def config_from_storm_hparams(hparams: Mapping, source: str = "checkpoint"):
    """A diffrestore config of a StoRM checkpoint, from `load_storm_checkpoint`'s hparams
    (including its "network_kwargs").

    Raises:
      CheckpointError: a StoRM variant diffrestore does not run (an SDE other than OUVE, a
        condition other than 'both', or a missing network).
    """
    import ml_collections

    from diffrestore import config as config_lib
    from diffrestore.convert.sgmse import _plain, apply_data_hparams

    if str(hparams.get("sde", "ouve")).lower() != "ouve":
        raise CheckpointError(f"{source}: StoRM with SDE {hparams.get('sde')!r} is not supported (OUVE only)")
    if str(hparams.get("condition", "both")) != "both":
        raise CheckpointError(f"{source}: StoRM condition {hparams.get('condition')!r} is not supported ('both' only)")
    kwargs = hparams.get("network_kwargs", {})
    if set(kwargs) != {"denoiser", "score"}:
        raise CheckpointError(f"{source}: StoRM needs both networks; the checkpoint has {sorted(kwargs)}")

    config = config_lib.default_config()
    config.model.backbone = config_lib.STORM_BACKBONE
    score_kwargs = {k: v for k, v in dict(kwargs["score"]).items()}
    denoiser_kwargs = {k: v for k, v in dict(kwargs["denoiser"]).items() if k != "discriminative"}
    config.model.backbone_kwargs = ml_collections.ConfigDict(_plain(score_kwargs))
    config.model.denoiser_kwargs = ml_collections.ConfigDict(_plain(denoiser_kwargs))
    config.model.storm_mode = "frozen_denoiser" if hparams.get("mode") == "regen-freeze-denoiser" else "joint"
    config.model.denoiser_loss_weight = float(hparams.get("weighting_denoiser_to_score", 0.5))
    config.model.t_eps = float(hparams.get("t_eps", 0.03))
    config.sde.name = "ouve"
    for field in ("theta", "sigma_min", "sigma_max"):
        if hparams.get(field) is not None:
            config.sde[field] = float(hparams[field])
    apply_data_hparams(config, hparams)
    config.sampling.update(STORM_SAMPLING)
    return config


def load_storm_model(path, ckpt=None):
    """(config, params, ema_params) of a StoRM `.ckpt`, the parameter trees shaped as
    `models.storm.StochasticRegeneration`'s ({"denoiser": ..., "score": ...})."""
    hparams, params, ema_params = load_storm_checkpoint(path, ckpt)
    return config_from_storm_hparams(hparams, str(path)), params, ema_params


def is_storm_checkpoint(hparams: Mapping) -> bool:
    """Whether Lightning hyper-parameters are a StochasticRegenerationModel's."""
    return "backbone_denoiser" in hparams or "backbone_score" in hparams
