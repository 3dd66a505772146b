"""Score networks: the NCSN++ backbones of SGMSE in Flax, and import of their PyTorch weights.

    module = build_backbone("ncsnpp", dtype=jnp.bfloat16, nf=128)
    params = params_from_torch("ncsnpp", kwargs, state_dict)
    out = module.apply({"params": params}, x, y, t)   # complex (B, 1, F, T)
"""
from diffrestore.models.ncsnpp import (
    BACKBONES,
    DEFAULTS,
    NCSNpp,
    NCSNppConfig,
    backbone_kwargs,
    build_backbone,
    layer_plan,
    make_config,
)
from diffrestore.models.torch_import import param_shapes, params_from_torch, torch_param_names, torch_param_shapes

__all__ = [
    "BACKBONES",
    "DEFAULTS",
    "NCSNpp",
    "NCSNppConfig",
    "backbone_kwargs",
    "build_backbone",
    "layer_plan",
    "make_config",
    "param_shapes",
    "params_from_torch",
    "torch_param_names",
    "torch_param_shapes",
]
