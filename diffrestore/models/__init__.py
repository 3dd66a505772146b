"""Networks in Flax, and import of their PyTorch weights.

Enhancement: the NCSN++ backbones of SGMSE, `net(x, y, t)` on complex spectrograms.

    module = build_backbone("ncsnpp", dtype=jnp.bfloat16, nf=128)
    params = params_from_torch("ncsnpp", kwargs, state_dict)
    out = module.apply({"params": params}, x, y, t)   # complex (B, 1, F, T)

Priors of clean audio: CQT-Diff's U-Net ("cqtdiff"), CQTdiff+ ("cqtdiffplus") and BUDDy's
speech prior, NCSN++ inside an STFT ("ncsnpp_stft"), `F(x, c_noise)` on waveforms (B, L), the
raw network that EDM preconditions. `build_network(name, ...)` builds any of them by name.

SGMSE's DCUNet ("dcunet", `diffrestore.models.dcunet`) is an enhancement backbone too, with
the same `apply(variables, x, y, t)` contract; its BatchNorm running statistics live in a
"batch_stats" collection beside "params" (`dcunet.variables_from_torch`).
"""
from diffrestore.models.ncsnpp import (
    BACKBONES,
    DEFAULTS,
    VARIANTS,
    NCSNpp,
    NCSNppConfig,
    backbone_kwargs,
    build_backbone,
    layer_plan,
    make_config,
)
from diffrestore.models.torch_import import (
    param_shapes,
    params_from_torch,
    params_to_torch,
    torch_param_names,
    torch_param_shapes,
)

PRIOR_NETWORKS = ("cqtdiff", "cqtdiffplus", "ncsnpp_stft")
# Enhancement backbones outside the NCSN++ family (own module, own torch import).
OTHER_BACKBONES = ("dcunet",)
NETWORKS = BACKBONES + OTHER_BACKBONES + PRIOR_NETWORKS
# BABE's own name of CQTdiff+ (`conf/network/cqtdiff+.yaml: name`).
_PRIOR_ALIASES = {"cqtdiff+": "cqtdiffplus"}


def prior_network_name(name: str) -> str:
    """The registered name of a prior network: "cqtdiff", "cqtdiffplus" ("cqtdiff+" is accepted),
    "ncsnpp_stft"."""
    key = _PRIOR_ALIASES.get(str(name).lower(), str(name).lower())
    if key not in PRIOR_NETWORKS:
        raise ValueError(f"unknown prior network {name!r}; expected one of {PRIOR_NETWORKS}")
    return key


def build_prior_network(name: str, dtype=None, remat: str = "none", **kwargs):
    """The Flax module of an unconditional waveform prior: `apply(params, x (B, L), c_noise (B,)) -> (B, L)`.

    Args:
      name: "cqtdiff" (CQT-Diff's `Unet_CQT`), "cqtdiffplus" (BABE's CQTdiff+, alias "cqtdiff+")
        or "ncsnpp_stft" (BUDDy's `NCSNppTime`: unconditional NCSN++ on the STFT).
      dtype: compute dtype of convolutions and matmuls (default float32; e.g. jnp.bfloat16);
        parameters, the CQT/STFT and normalisation statistics stay float32.
      remat: rematerialisation of the blocks in training, for "ncsnpp_stft" (as for NCSN++:
        "none", "full", "dots", "dots_no_batch"); the CQT networks have none and ignore it.
      **kwargs: the network's options (ints, floats, bools, strings, tuples); missing ones take
        the reference's shipped values (`cqtdiff.DEFAULTS`, `cqtdiffplus.DEFAULTS`,
        `ncsnpp_stft.DEFAULTS`).
    Raises:
      ValueError: unknown network or invalid value; TypeError: unknown keyword.
    """
    import jax.numpy as jnp

    from diffrestore.models import cqtdiff, cqtdiffplus, ncsnpp_stft

    dtype = jnp.float32 if dtype is None else dtype
    name = prior_network_name(name)
    if name == "ncsnpp_stft":
        return ncsnpp_stft.build(dtype=dtype, remat=remat, **kwargs)
    builder = {"cqtdiff": cqtdiff.build, "cqtdiffplus": cqtdiffplus.build}[name]
    return builder(dtype=dtype, **kwargs)


def build_network(name: str, dtype=None, remat: str = "none", **kwargs):
    """The Flax module of any network by name: an NCSN++ backbone (`build_backbone`), the
    DCUNet ("dcunet", `dcunet.build`) or a prior's network (`PRIOR_NETWORKS`); kwargs are
    its constructor options."""
    import jax.numpy as jnp

    dtype = jnp.float32 if dtype is None else dtype
    if name in BACKBONES:
        return build_backbone(name, dtype=dtype, remat=remat, **kwargs)
    if name == "dcunet":
        from diffrestore.models import dcunet

        return dcunet.build(dtype=dtype, remat=remat, **kwargs)
    if name in PRIOR_NETWORKS or name in _PRIOR_ALIASES:
        return build_prior_network(name, dtype=dtype, remat=remat, **kwargs)
    raise ValueError(f"unknown network {name!r}; choose from {NETWORKS}")


__all__ = [
    "NETWORKS",
    "OTHER_BACKBONES",
    "PRIOR_NETWORKS",
    "build_network",
    "build_prior_network",
    "prior_network_name",
    "BACKBONES",
    "DEFAULTS",
    "VARIANTS",
    "NCSNpp",
    "NCSNppConfig",
    "backbone_kwargs",
    "build_backbone",
    "layer_plan",
    "make_config",
    "param_shapes",
    "params_from_torch",
    "params_to_torch",
    "torch_param_names",
    "torch_param_shapes",
]
