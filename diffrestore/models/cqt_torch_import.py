"""PyTorch state_dicts of CQT-Diff (`Unet_CQT`) and CQTdiff+ (`Unet_CQT_oct_with_attention`) -> Flax "params".

`torch_entries(name, cfg)` lists the reference's state_dict in its order (parameters and
buffers, as `module.state_dict()` yields them), each with its torch shape and a layout kind.
Parameters map to Flax by one rule (`flax_path`): the module path with ModuleList indices glued
to the preceding name, and the leaf renamed by kind:

| kind        | torch                               | flax                          |
| ----------- | ----------------------------------- | ----------------------------- |
| conv2d      | `weight` [out, in, kF, kT]          | `kernel` [kF, kT, in, out]    |
| linear      | `weight` [out, in]                  | `kernel` [in, out]            |
| conv1d      | `weight` [out, in, 1] (`qk`)        | `kernel` [in, out]            |
| bias        | `bias` [out]                        | `bias`                        |
| gamma       | BiasFreeGroupNorm `gamma` [1,C,1,1] | `gamma` [C]                   |
| gn_scale    | GroupNorm `weight` [C]              | `scale` [C]                   |
| embed       | nn.Embedding `weight` [n, h]        | `embedding` [n, h]            |
| fixed       | `RFF_freq`, `embeddings`            | same name, same shape         |
| buffer      | resampling kernels                  | none (constants of the module)|

e.g. `downs.0.2.attn_block.qk.weight` -> `downs_0_2/attn_block/qk/kernel`.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from diffrestore.models import cqt_blocks as B
from diffrestore.models import cqtdiff, cqtdiffplus

_TRANSFORMS = {
    "conv2d": lambda a: np.transpose(a, (2, 3, 1, 0)),
    "linear": lambda a: np.transpose(a, (1, 0)),
    "conv1d": lambda a: np.transpose(a[:, :, 0], (1, 0)),
    "gamma": lambda a: a.reshape(-1),
    "bias": lambda a: a,
    "gn_scale": lambda a: a,
    "gn_bias": lambda a: a,
    "embed": lambda a: a,
    "fixed": lambda a: a,
}
_LEAF = {"conv2d": "kernel", "linear": "kernel", "conv1d": "kernel", "bias": "bias", "gamma": "gamma",
         "gn_scale": "scale", "gn_bias": "bias", "embed": "embedding"}


@dataclasses.dataclass(frozen=True)
class Entry:
    key: str
    shape: tuple[int, ...]
    kind: str

    @property
    def is_buffer(self) -> bool:
        return self.kind == "buffer"


def flax_path(key: str, kind: str) -> tuple[str, ...]:
    """Flax parameter path of a torch state_dict key (see the module docstring)."""
    *modules, leaf = key.split(".")
    path: list[str] = []
    for part in modules:
        if part.isdigit() and path:
            path[-1] = f"{path[-1]}_{part}"
        else:
            path.append(part)
    return tuple(path) + (_LEAF.get(kind, leaf),)


class _Builder:
    def __init__(self):
        self.entries: list[Entry] = []

    def add(self, key, shape, kind):
        self.entries.append(Entry(key, tuple(int(s) for s in shape), kind))

    def conv(self, prefix, cout, cin, kernel=(1, 1), bias=False):
        self.add(f"{prefix}.weight", (cout, cin, *kernel), "conv2d")
        if bias:
            self.add(f"{prefix}.bias", (cout,), "bias")

    def linear(self, prefix, cout, cin):
        self.add(f"{prefix}.weight", (cout, cin), "linear")
        self.add(f"{prefix}.bias", (cout,), "bias")

    def embedding(self, prefix, emb_dim, rff_dim):
        self.add(f"{prefix}.RFF_freq", (1, rff_dim), "fixed")
        widths = (2 * rff_dim, *B.MLP_HIDDEN, emb_dim)
        for i in range(3):
            self.linear(f"{prefix}.MLP.{i}", widths[i + 1], widths[i])

    def freq_encoding(self, prefix, dim, rows):
        self.add(f"{prefix}.RFF_freq", (1, dim), "fixed")
        self.add(f"{prefix}.embeddings", (1, 2 * dim, rows), "fixed")


# ----------------------------------------------------------------------------- CQT-Diff


def _cqtdiff_entries(cfg: cqtdiff.CQTDiffConfig) -> list[Entry]:
    b = _Builder()
    kernel = cfg.kernel_size

    def resblock(p, dim, dim_out):
        # Registration order of the reference: film, res_conv, H (filled later), gnorm, first_conv.
        b.linear(f"{p}.film.output_layer", dim, cfg.emb_dim)
        if dim != dim_out:
            b.conv(f"{p}.res_conv", dim_out, dim)
        for k in range(cfg.num_layers):
            b.conv(f"{p}.H.{k}.conv", dim_out, dim_out, kernel)
        if cfg.use_norm:
            b.add(f"{p}.gnorm.weight", (dim,), "gn_scale")
            b.add(f"{p}.gnorm.bias", (dim,), "gn_bias")
        b.conv(f"{p}.first_conv.1", dim_out, dim)

    b.embedding("embedding", cfg.emb_dim, cfg.rff_dim)
    b.freq_encoding("freq_encoding", cfg.freq_encoding_dim, cfg.num_rows)
    b.conv("init_conv", cfg.Ns[0], 2 + 2 * cfg.freq_encoding_dim, kernel)
    down, _ = B.sinc_resample_kernel(2, 1)
    up, _ = B.sinc_resample_kernel(1, 2)
    for i, (dim_in, dim_out) in enumerate(cfg.level_channels()):
        resblock(f"downs.{i}.0", dim_in, dim_out)
        if i < cfg.depth - 1:
            b.add(f"downs.{i}.1.resample.kernel", (1, 1, down.shape[1]), "buffer")
            b.conv(f"downs.{i}.2.conv1x1", dim_out, 2)
    resblock("middle.0.0", cfg.Ns[cfg.depth], cfg.Ns[cfg.depth])
    for k in range(cfg.depth):
        j = cfg.depth - 1 - k
        dim_out = cfg.Ns[max(j - 1, 0)]
        resblock(f"ups.{k}.0", 2 * cfg.Ns[j], dim_out)
        if j > 0:
            b.add(f"ups.{k}.1.resample.kernel", (2, 1, up.shape[1]), "buffer")
            b.conv(f"ups.{k}.2.conv1x1", 2, dim_out)
    return b.entries


# ----------------------------------------------------------------------------- CQTdiff+


def _cqtdiffplus_entries(cfg: cqtdiffplus.CQTDiffPlusConfig) -> list[Entry]:
    b = _Builder()
    bins = cfg.bins_per_octave
    heads = cfg.num_heads

    def resblock(p, dim, dim_out, num_dils, kernel, proj_place="before", attention=False, rows=0):
        n = dim_out if proj_place == "before" else dim
        if proj_place == "after" and n != dim_out:
            b.conv(f"{p}.proj_out", dim_out, n)
        if dim != dim_out:
            b.conv(f"{p}.res_conv", dim_out, dim)
        if dim != n:
            b.conv(f"{p}.proj_in", n, dim)
        for k in range(num_dils):
            b.conv(f"{p}.H.{k}", n, n, kernel)
        for k in range(num_dils):
            b.linear(f"{p}.affine.{k}", n, cfg.emb_dim)
        for k in range(num_dils):
            b.linear(f"{p}.gate.{k}", n, cfg.emb_dim)
        for k in range(num_dils):
            b.add(f"{p}.norm.{k}.gamma", (1, n, 1, 1), "gamma")
        if attention:
            b.add(f"{p}.norm2.gamma", (1, n, 1, 1), "gamma")
            b.linear(f"{p}.affine2", n, cfg.emb_dim)
            b.linear(f"{p}.gate2", n, cfg.emb_dim)
            a = f"{p}.attn_block"
            b.add(f"{a}.qk.weight", (2 * heads * rows, heads * rows, 1), "conv1d")
            if cfg.bias_qkv:
                b.add(f"{a}.qk.bias", (2 * heads * rows,), "bias")
            b.conv(f"{a}.proj_in", heads, n)
            b.conv(f"{a}.proj_out", n, heads)
            if cfg.use_rel_pos:
                b.add(f"{a}.rel_pos.relative_attention_bias.weight", (cfg.rel_pos_num_buckets, heads), "embed")

    b.embedding("embedding", cfg.emb_dim, cfg.rff_dim)
    if cfg.use_fencoding:
        for i in range(cfg.num_octaves):
            b.freq_encoding(f"freq_encodings.{i}", cfg.freq_encoding_dim, bins)
    taps = B.resample_kernel(cfg.resample_filter)
    b.add("downsamplerT.kernel", taps.shape, "buffer")
    b.add("upsamplerT.kernel", taps.shape, "buffer")
    o = cfg.num_octaves
    for i in range(o):
        dim_in = cfg.Ns[max(i - 1, 0)]
        resblock(f"downs.{i}.0", cfg.input_channels, dim_in, 1, (1, 1))
        b.conv(f"downs.{i}.1", cfg.Ns[i], 2, cfg.kernel_size)
        resblock(f"downs.{i}.2", dim_in, cfg.Ns[i], cfg.num_dils[i], cfg.kernel_size,
                 attention=bool(cfg.attention_layers[i]), rows=(i + 1) * bins)
    for m in range(cfg.num_bottleneck_layers):
        resblock(f"middle.{m}.0", cfg.Ns[-1], 2, 1, (1, 1), proj_place="after")
        resblock(f"middle.{m}.1", cfg.Ns[-1], cfg.Ns[-1], cfg.num_dils[-1], cfg.kernel_size,
                 attention=bool(cfg.attention_layers[-1]), rows=o * bins)
    for k in range(o):
        j = o - 1 - k
        dim_out = cfg.Ns[max(j - 1, 0)]
        resblock(f"ups.{k}.0", dim_out, 2, 1, (1, 1), proj_place="after")
        resblock(f"ups.{k}.1", 2 * cfg.Ns[j], dim_out, cfg.num_dils[j], cfg.kernel_size,
                 attention=bool(cfg.attention_layers[j]), rows=(j + 1) * bins)
    return b.entries


# ----------------------------------------------------------------------------- public API

_NETWORKS = {
    "cqtdiff": (cqtdiff.make_config, _cqtdiff_entries, cqtdiff.buffers),
    "cqtdiffplus": (cqtdiffplus.make_config, _cqtdiffplus_entries, cqtdiffplus.buffers),
}


def _network(name: str):
    try:
        return _NETWORKS[name]
    except KeyError:
        raise ValueError(f"unknown prior network {name!r}; expected one of {sorted(_NETWORKS)}") from None


def torch_entries(name: str, kwargs: Mapping) -> list[Entry]:
    """The reference's state_dict entries in `state_dict()` order, buffers included."""
    make_config, entries, _ = _network(name)
    return entries(make_config(**dict(kwargs)))


def torch_param_shapes(name: str, kwargs: Mapping) -> dict[str, tuple[int, ...]]:
    """Parameter names (no buffers) -> torch shapes, in `parameters()` order (the order of
    CQT-Diff's `ema_weights` list and of BABE's optimizer state indices)."""
    return {e.key: e.shape for e in torch_entries(name, kwargs) if not e.is_buffer}


def torch_buffers(name: str, kwargs: Mapping) -> dict[str, np.ndarray]:
    """The buffers (resampling kernels) the reference computes, torch layout, float32."""
    make_config, _, buffers = _network(name)
    return buffers(make_config(**dict(kwargs)))


def param_shapes(name: str, kwargs: Mapping) -> dict:
    """The Flax "params" tree as nested dicts of shapes (no arrays built)."""
    tree: dict = {}
    for e in torch_entries(name, kwargs):
        if not e.is_buffer:
            _set(tree, flax_path(e.key, e.kind), _TRANSFORMS[e.kind](np.empty(e.shape, np.bool_)).shape)
    return tree


def params_from_torch(name: str, kwargs: Mapping, state_dict: Mapping) -> dict:
    """Flax "params" of prior network `name` from a reference state_dict.

    Every parameter must be present with its exact shape and nothing else may be there. The
    resampling-kernel buffers may be absent (older torchaudio did not register them, and they are
    constants here); when present they must equal what this module computes.

    Args:
      name: "cqtdiff" or "cqtdiffplus".
      kwargs: constructor keywords (as for `build_prior_network`).
      state_dict: torch key -> array-like, reference layout.
    Returns:
      Nested dict of float32 numpy arrays for `module.apply({"params": params}, ...)`.
    Raises:
      ValueError: naming every missing, unexpected and wrongly shaped tensor, and any buffer
        that differs from the reference's kernel.
    """
    entries = {e.key: e for e in torch_entries(name, kwargs)}
    expected_buffers = torch_buffers(name, kwargs)
    missing = [k for k, e in entries.items() if k not in state_dict and not e.is_buffer]
    extra = [k for k in state_dict if k not in entries]
    wrong_keys = [k for k in entries if k in state_dict and tuple(np.shape(state_dict[k])) != entries[k].shape]
    wrong = [f"{k}: shape {tuple(np.shape(state_dict[k]))}, expected {entries[k].shape}" for k in wrong_keys]
    bad_buffers = [
        k for k, value in expected_buffers.items()
        if k in state_dict and k not in wrong_keys
        and not np.allclose(np.asarray(state_dict[k], np.float64), value, rtol=1e-5, atol=1e-7)
    ]
    if missing or extra or wrong or bad_buffers:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if extra:
            parts.append(f"unexpected keys {extra}")
        if wrong:
            parts.append(f"wrong shapes [{'; '.join(wrong)}]")
        if bad_buffers:
            parts.append(f"resampling kernels that differ from the reference's {bad_buffers}")
        raise ValueError(f"state_dict does not fit {name} {dict(kwargs)}: " + "; ".join(parts))
    params: dict = {}
    for key, e in entries.items():
        if e.is_buffer:
            continue
        value = np.asarray(state_dict[key], dtype=np.float32)
        _set(params, flax_path(key, e.kind), np.ascontiguousarray(_TRANSFORMS[e.kind](value)))
    return params


def _set(tree: dict, path: tuple[str, ...], value) -> None:
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    if path[-1] in tree:  # pragma: no cover - would be a bug in the entry tables
        raise AssertionError(f"two torch keys map to {'/'.join(path)}")
    tree[path[-1]] = value
