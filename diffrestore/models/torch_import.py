"""PyTorch state_dicts of the reference NCSN++ backbones -> Flax "params".

The reference names its weights `output_layer.{weight,bias}` and `all_modules.<i>.<sub>.<leaf>`,
where i indexes the constructor's module list. `layer_plan` gives the same list with Flax
names, so each torch key maps to one Flax path. SGMSE's and BUDDy's NCSNpp share this layout
(SGMSE's checkpoints add a `dnn.` prefix, BUDDy's none); BUDDy's differs in its contents:
input_channels (2 for its prior) sets the first conv, the pyramid convs and `output_layer`'s
input, and without time conditioning there is no `all_modules.0.W`, no embedding MLP and no
`Dense_0` in the residual blocks. BUDDy's `NCSNppTime` (our "ncsnpp_stft") is the same module
with an STFT around it: its window is a plain attribute, not in the state_dict, so its keys are
the NCSNpp's and map onto the same Flax tree. StoRM's NCSNpp ("ncsnpp_storm") has SGMSE's
layout with input_channels 6 (score network: the first conv, the pyramid convs and
`output_layer` take 6 channels) or 2 (discriminative denoiser, whose unused `all_modules.0.W`
and `Dense_0` are in the state_dict and in the Flax tree); a `StochasticRegenerationModel`
prefixes the two networks' keys with `denoiser_net.` and `score_net.`
(`diffrestore.convert.storm` strips them). Layouts:

| torch                                   | flax                          |
| --------------------------------------- | ----------------------------- |
| conv `weight` [out, in, kh, kw]         | `kernel` [kh, kw, in, out]    |
| Linear `weight` [out, in]               | `kernel` [in, out]            |
| NIN `W` [in, out], `b`                  | `kernel` [in, out], `bias`    |
| GroupNorm `weight`, `bias`              | `scale`, `bias`               |
| GaussianFourierProjection `W` [nf]      | `W` [nf] (fixed; see layers)  |

kh is the frequency axis in both.

The same four functions serve the waveform priors: "ncsnpp_stft" through the tables here,
"cqtdiff" and "cqtdiffplus" by dispatch to `cqt_torch_import`, whose tables also list the
reference's buffers (resampling kernels).
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, Mapping

import numpy as np

from diffrestore.models.ncsnpp import Layer, NCSNppConfig, layer_plan, make_config

# torch layout -> flax layout
_TRANSFORMS = {
    "conv": lambda a: np.transpose(a, (2, 3, 1, 0)),
    "linear": lambda a: np.transpose(a, (1, 0)),
    "same": lambda a: a,
}


@dataclasses.dataclass(frozen=True)
class _Entry:
    flax_path: tuple[str, ...]
    transform: str
    torch_shape: tuple[int, ...]


def _conv(tk: str, fp: tuple, cin: int, cout: int, k: int) -> Iterator[tuple[str, _Entry]]:
    yield f"{tk}.weight", _Entry(fp + ("kernel",), "conv", (cout, cin, k, k))
    yield f"{tk}.bias", _Entry(fp + ("bias",), "same", (cout,))


def _linear(tk: str, fp: tuple, cin: int, cout: int):
    yield f"{tk}.weight", _Entry(fp + ("kernel",), "linear", (cout, cin))
    yield f"{tk}.bias", _Entry(fp + ("bias",), "same", (cout,))


def _nin(tk: str, fp: tuple, cin: int, cout: int):
    yield f"{tk}.W", _Entry(fp + ("kernel",), "same", (cin, cout))
    yield f"{tk}.b", _Entry(fp + ("bias",), "same", (cout,))


def _norm(tk: str, fp: tuple, c: int):
    yield f"{tk}.weight", _Entry(fp + ("scale",), "same", (c,))
    yield f"{tk}.bias", _Entry(fp + ("bias",), "same", (c,))


def _layer_entries(cfg: NCSNppConfig, layer: Layer, tk: str):
    """Torch keys of one `all_modules` entry, in the reference's registration order."""
    fp = (layer.name,)
    sub = lambda name: (f"{tk}.{name}", fp + (name,))  # noqa: E731
    cin, cout = layer.in_ch, layer.out_ch
    if layer.kind == "fourier":
        yield f"{tk}.W", _Entry(fp + ("W",), "same", (cout,))
    elif layer.kind == "dense":
        yield from _linear(tk, fp, cin, cout)
    elif layer.kind == "conv3x3":
        yield from _conv(tk, fp, cin, cout, 3)
    elif layer.kind == "groupnorm":
        yield from _norm(tk, fp, cin)
    elif layer.kind == "resblock":
        yield from _norm(*sub("GroupNorm_0"), cin)
        yield from _conv(*sub("Conv_0"), cin, cout, 3)
        # SGMSE always passes temb_dim, so Dense_0 exists even when conditional=False; BUDDy
        # passes None without time conditioning (cfg.temb_dim is None then).
        if cfg.temb_dim is not None:
            yield from _linear(*sub("Dense_0"), cfg.temb_dim, cout)
        yield from _norm(*sub("GroupNorm_1"), cout)
        yield from _conv(*sub("Conv_1"), cout, cout, 3)
        if cfg.resblock_type == "biggan":
            if cin != cout or layer.up or layer.down:
                yield from _conv(*sub("Conv_2"), cin, cout, 1)
        elif cin != cout:
            yield from _nin(*sub("NIN_0"), cin, cout)
    elif layer.kind == "attn":
        yield from _norm(*sub("GroupNorm_0"), cin)
        for i in range(4):
            yield from _nin(*sub(f"NIN_{i}"), cin, cin)
    elif layer.kind == "combine":
        yield from _conv(*sub("Conv_0"), cin, cout, 1)
    elif layer.kind in ("downsample", "upsample"):
        if layer.with_conv:
            yield from _conv(*sub("Conv2d_0" if cfg.fir else "Conv_0"), cin, cout, 3)
    else:  # pragma: no cover - the plan only has the kinds above
        raise AssertionError(f"unknown layer kind {layer.kind}")


def _entries(cfg: NCSNppConfig) -> dict[str, _Entry]:
    """Ordered torch key -> Flax destination, in `named_parameters()` order."""
    # output_layer is assigned before all_modules in the reference __init__, so it comes first.
    entries = dict(_conv("output_layer", ("output_layer",), cfg.total_channels, 2 * cfg.spatial_channels, 1))
    for i, layer in enumerate(layer_plan(cfg)):
        entries.update(_layer_entries(cfg, layer, f"all_modules.{i}"))
    return entries


def _prior(name: str):
    """The canonical name of a CQT prior network ("cqtdiff", "cqtdiffplus"), whose tables live in
    `cqt_torch_import`; None for the NCSN++ networks (the backbones and "ncsnpp_stft")."""
    from diffrestore.models import prior_network_name

    try:
        name = prior_network_name(name)
    except ValueError:
        return None
    return None if name == "ncsnpp_stft" else name


def _ncsnpp_config(name: str, kwargs: Mapping) -> NCSNppConfig:
    """The NCSN++ options of a backbone (`ncsnpp.VARIANTS`) or of the "ncsnpp_stft" prior."""
    from diffrestore.models import prior_network_name

    try:
        is_stft = prior_network_name(name) == "ncsnpp_stft"
    except ValueError:
        is_stft = False
    if is_stft:
        from diffrestore.models import ncsnpp_stft

        return ncsnpp_stft.make_config(**dict(kwargs)).network
    return make_config(name, **dict(kwargs))


def torch_param_names(name: str, kwargs: Mapping) -> list[str]:
    """The reference's `named_parameters()` names, in order, without the `dnn.` prefix.

    This is also the order of `model.parameters()`, hence of torch_ema's `shadow_params`
    (a list), and the order of the state_dict keys: the networks have no buffers, so
    state_dict lists exactly these parameters in the same order (the fixtures' key order
    is this one). The list includes the Fourier projection `all_modules.0.W`
    (requires_grad=False, but still a Parameter, so also in parameters()).
    """
    return list(torch_param_shapes(name, kwargs))


def torch_param_shapes(name: str, kwargs: Mapping) -> dict[str, tuple[int, ...]]:
    """`torch_param_names` with each tensor's shape in the reference layout, in order."""
    if _prior(name):
        from diffrestore.models import cqt_torch_import

        return cqt_torch_import.torch_param_shapes(_prior(name), kwargs)
    return {k: e.torch_shape for k, e in _entries(_ncsnpp_config(name, kwargs)).items()}


def param_shapes(name: str, kwargs: Mapping) -> dict:
    """The Flax "params" tree of the backbone as nested dicts of shapes (no arrays built)."""
    if _prior(name):
        from diffrestore.models import cqt_torch_import

        return cqt_torch_import.param_shapes(_prior(name), kwargs)
    tree: dict = {}
    for entry in _entries(_ncsnpp_config(name, kwargs)).values():
        shape = _TRANSFORMS[entry.transform](np.empty(entry.torch_shape, np.bool_)).shape
        _set(tree, entry.flax_path, shape)
    return tree


def params_from_torch(name: str, kwargs: Mapping, state_dict: Mapping) -> dict:
    """Flax "params" of backbone `name` from a reference state_dict.

    Args:
      name: "ncsnpp", "ncsnpp_v2", "ncsnpp_48k", "ncsnpp_buddy" (BUDDy's NCSNpp),
        "ncsnpp_storm" (StoRM's NCSNpp, either network) or "ncsnpp_stft" (BUDDy's NCSNppTime:
        the same keys).
      kwargs: the constructor's keyword arguments (as for `build_backbone`, or
        `build_prior_network` for "ncsnpp_stft").
      state_dict: torch key (no `dnn.` / `denoiser_net.` / `score_net.` prefix) -> array-like
        (numpy, or anything np.asarray takes), in the reference layout.
    Returns:
      Nested dict of float32 numpy arrays (host memory; device_put them with the sharding
      you want), ready for `module.apply({"params": params}, ...)`.
    Raises:
      ValueError: naming every missing key, unexpected key and wrongly shaped tensor.

    For "cqtdiff" / "cqtdiffplus" see `cqt_torch_import.params_from_torch`.
    """
    if _prior(name):
        from diffrestore.models import cqt_torch_import

        return cqt_torch_import.params_from_torch(_prior(name), kwargs, state_dict)
    cfg = _ncsnpp_config(name, kwargs)
    entries = _entries(cfg)
    missing = [k for k in entries if k not in state_dict]
    extra = [k for k in state_dict if k not in entries]
    wrong = [
        f"{k}: shape {tuple(np.shape(state_dict[k]))}, expected {entries[k].torch_shape}"
        for k in entries
        if k in state_dict and tuple(np.shape(state_dict[k])) != entries[k].torch_shape
    ]
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if extra:
            # Lightning models prefix their networks' keys: sgmse `dnn.`, StoRM `denoiser_net.` / `score_net.`.
            prefix = next((p for p in ("dnn.", "denoiser_net.", "score_net.") if all(k.startswith(p) for k in extra)), None)
            hint = f" (strip the {prefix!r} prefix)" if prefix else ""
            parts.append(f"unexpected keys {extra}{hint}")
        if wrong:
            parts.append(f"wrong shapes [{'; '.join(wrong)}]")
        raise ValueError(f"state_dict does not fit backbone {name!r} {dict(kwargs)}: " + "; ".join(parts))

    params: dict = {}
    for key, entry in entries.items():
        value = np.asarray(state_dict[key], dtype=np.float32)
        _set(params, entry.flax_path, np.ascontiguousarray(_TRANSFORMS[entry.transform](value)))
    return params


# flax layout -> torch layout (the inverse of _TRANSFORMS)
_INVERSE_TRANSFORMS = {
    "conv": lambda a: np.transpose(a, (3, 2, 0, 1)),
    "linear": lambda a: np.transpose(a, (1, 0)),
    "same": lambda a: a,
}


def params_to_torch(name: str, kwargs: Mapping, params: Mapping) -> dict:
    """The inverse of `params_from_torch` for the NCSN++ backbones: a Flax "params" tree (or a
    gradient of one) -> {torch key: numpy array in the reference layout}, e.g. to compare
    gradients with the reference's or to hand weights back to PyTorch."""
    if _prior(name):
        raise ValueError(f"params_to_torch covers the NCSN++ backbones, not {name!r}")
    out = {}
    for key, entry in _entries(_ncsnpp_config(name, kwargs)).items():
        leaf = params
        for part in entry.flax_path:
            leaf = leaf[part]
        out[key] = np.ascontiguousarray(_INVERSE_TRANSFORMS[entry.transform](np.asarray(leaf)))
    return out


def _set(tree: dict, path: tuple[str, ...], value) -> None:
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    if path[-1] in tree:  # pragma: no cover - would be a bug in the plan
        raise AssertionError(f"two torch keys map to {'/'.join(path)}")
    tree[path[-1]] = value
