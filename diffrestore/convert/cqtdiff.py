"""Import the `.pt` checkpoints of CQT-Diff (eloimoliner/CQTdiff), BABE / CQTdiff+ (eloimoliner/BABE)
and BUDDy's speech prior (sp-uhh/buddy).

The trainers write `torch.save` zip files; we read them with the restricted unpickler of
`torch_pickle` (no PyTorch, nothing executed):

* CQT-Diff (`src/learner.py`): `{'step', 'model': state_dict incl. the resampling buffers,
  'ema_weights': list in model.parameters() order}`. No configuration: the network is
  `Unet_CQT` with hard-coded channels. The reference samples with **'model'**: its loader
  (`load_ema_weights`) pairs keys and EMA tensors by position, the buffers break the pairing,
  and its fallback keeps every state_dict tensor (none has requires_grad).
* BABE (`training/trainer.py`): `{'it', 'network', 'optimizer', 'ema', 'args': DictConfig}`.
  The tester loads **'ema'**. `args` is the Hydra training config (network, diff_params, exp,
  tester).
* BUDDy (`training/trainer.py`, BABE's trainer): the same `{'it', 'network', 'optimizer', 'ema',
  'args'}`; the weights are `NCSNppTime`'s (`output_layer.*`, `all_modules.<i>.*`, our
  "ncsnpp_stft"). Its tester (`tester.load_checkpoint` -> `load_state_dict(state, ema=network)`)
  samples with **'ema'**.

The architecture is inferred from the state_dict's keys and shapes (levels, channels, dilations,
embedding width, attention blocks and heads, frequency encodings); what shapes cannot tell comes
from BABE's `args` when present, else from the reference configs (CQT-Diff `conf/conf.yaml`:
σ_data 0.057, 22050 Hz, 65536 samples; BABE `conf/network/cqtdiff+.yaml`, `diff_params/edm.yaml`,
`exp/maestro22k_8s.yaml`: σ_data 0.063, 22050 Hz, 184184 samples; BUDDy `conf/network/ncsnpp.yaml`,
`diff_params/edm_VCTK.yaml`, `exp/VCTK_16k_4s_time.yaml`: σ_data 0.05, 16000 Hz, 65536 samples).
Explicit `network_kwargs` override everything; the strict key/shape check of `params_from_torch`
runs last.
"""
from __future__ import annotations

import copy
import dataclasses
import pathlib
from typing import Any, Mapping

import numpy as np

from diffrestore.convert.torch_pickle import CheckpointError, load_torch_checkpoint

WEIGHTS = ("default", "raw", "ema")

# What the files cannot tell, from the reference configs.
_CQTDIFF_FACTS = dict(sigma_data=0.057, sample_rate=22050, audio_len=65536)
_BABE_FACTS = dict(sigma_data=0.063, sample_rate=22050, audio_len=184184)
_BUDDY_FACTS = dict(sigma_data=0.05, sample_rate=16000, audio_len=65536)


@dataclasses.dataclass(frozen=True)
class PriorCheckpoint:
    """A reference checkpoint turned into what diffrestore needs.

    Attributes:
      network: "cqtdiff", "cqtdiffplus" or "ncsnpp_stft" (`diffrestore.models.build_prior_network`).
      network_kwargs: the network's constructor keywords (plain values, tuples).
      params: Flax parameters (nested dict of float32 numpy arrays) of `weights_entry`.
      weights_entry: which entry of the file they come from ("model", "ema_weights", "ema", "network").
      sigma_data, sample_rate, audio_len: EDM's σ_data, the audio rate (Hz) and the training
        segment (samples).
      step: the training step the file was written at.
      reference: "CQT-Diff", "BABE" or "BUDDy".
      args: BABE's or BUDDy's training config as plain dicts and lists (None for CQT-Diff).
    """

    network: str
    network_kwargs: dict
    params: dict
    weights_entry: str
    sigma_data: float
    sample_rate: int
    audio_len: int
    step: int
    reference: str
    args: dict | None = None


# ----------------------------------------------------------------------------- architecture inference


def _count(state: Mapping, pattern: str) -> int:
    """How many consecutive i = 0, 1, ... have `pattern.format(i)` in the state_dict."""
    n = 0
    while pattern.format(n) in state:
        n += 1
    return n


def _shape(state: Mapping, key: str, source: str) -> tuple:
    if key not in state:
        raise CheckpointError(f"{source}: no {key!r} in the weights; not the expected network")
    return tuple(np.shape(state[key]))


def network_of(state: Mapping) -> str | None:
    """"cqtdiff", "cqtdiffplus" or "ncsnpp_stft" from a state_dict's keys, None if none."""
    if "init_conv.weight" in state and "freq_encoding.embeddings" in state:
        return "cqtdiff"
    if "downs.0.1.weight" in state and "downs.0.2.H.0.weight" in state:
        return "cqtdiffplus"
    if "output_layer.weight" in state and any(k.startswith("all_modules.") for k in state):
        return "ncsnpp_stft"
    return None


def _ncsnpp_modules(state: Mapping) -> list[tuple[str, dict]]:
    """The `all_modules` entries of an NCSN++ state_dict in index order: (kind, {leaf key: shape}).

    kind: fourier | dense | conv | norm (top-level Linear, conv, GroupNorm) | resblock | attn |
    other | none (an index without weights, e.g. a resampler without a convolution).
    """
    by_index: dict[int, dict] = {}
    for key in state:
        parts = key.split(".")
        if len(parts) >= 3 and parts[0] == "all_modules" and parts[1].isdigit():
            by_index.setdefault(int(parts[1]), {})[".".join(parts[2:])] = tuple(np.shape(state[key]))
    modules = []
    for i in range(max(by_index) + 1 if by_index else 0):
        leaves = by_index.get(i, {})
        if not leaves:
            kind = "none"
        elif set(leaves) == {"W"}:
            kind = "fourier"
        elif "GroupNorm_1.weight" in leaves:
            kind = "resblock"
        elif "NIN_0.W" in leaves and "GroupNorm_0.weight" in leaves:
            kind = "attn"
        elif set(leaves) == {"weight", "bias"}:
            kind = {1: "norm", 2: "dense", 4: "conv"}.get(len(leaves["weight"]), "other")
        else:
            kind = "other"
        modules.append((kind, leaves))
    return modules


def infer_ncsnpp_stft_kwargs(state: Mapping, source: str = "state_dict") -> dict:
    """BUDDy's `NCSNppTime` keywords from its state_dict (what shapes tell).

    Always: input_channels and spatial_channels (`output_layer`), time_conditional and
    embedding_type (the first modules), nf (the first conv). For BUDDy's block structure (biggan
    blocks, progressive output_skip, input_skip / sum: what `conf/network/ncsnpp.yaml` ships)
    also num_res_blocks, ch_mult and the levels with attention (`_attention_levels`, turned into
    attn_resolutions once image_size is known): the pyramid norms count the levels n, the
    residual blocks (2k + 3)·n give k. Those are kept only if the shipped structure with them
    has exactly the state_dict's keys and shapes; otherwise the file's args (or explicit
    keywords) must describe the network, and `params_from_torch` checks the whole.
    """
    from diffrestore.models import ncsnpp_stft, torch_import

    out_ch, total = _shape(state, "output_layer.weight", source)[:2]
    spatial = max(int(out_ch) // 2, 1)
    kw: dict[str, Any] = dict(spatial_channels=spatial, input_channels=int(total) // spatial)
    modules = _ncsnpp_modules(state)
    kinds = [k for k, _ in modules]
    if kinds[:1] == ["fourier"]:
        kw.update(time_conditional=True, embedding_type="fourier")
    elif kinds[:1] == ["dense"]:
        kw.update(time_conditional=True, embedding_type="positional")
    else:
        kw.update(time_conditional=False)
    first_conv = {"fourier": 3, "dense": 2}.get(kinds[0] if kinds else "", 0)
    if first_conv >= len(modules) or kinds[first_conv] != "conv":
        raise CheckpointError(f"{source}: all_modules.{first_conv} is not the input convolution; not BUDDy's NCSNpp")
    nf = int(modules[first_conv][1]["weight"][0])
    kw["nf"] = nf

    body = modules[first_conv + 1:]
    resblocks = [i for i, (kind, _) in enumerate(body) if kind == "resblock"]
    levels = sum(1 for kind, _ in body if kind == "norm")  # one pyramid norm per level (output_skip)
    if not levels or (len(resblocks) - 3 * levels) % (2 * levels) or len(resblocks) < 5 * levels:
        return kw
    k = (len(resblocks) - 3 * levels) // (2 * levels)
    encoder = resblocks[: levels * (k + 1) - 1]  # k blocks per level, then a downsampling block
    structure = dict(
        num_res_blocks=k,
        ch_mult=tuple(int(body[encoder[l * (k + 1)]][1]["Conv_0.weight"][0]) // nf for l in range(levels)),
    )
    attention = tuple(
        l for l in range(levels)
        if any(i + 1 < len(body) and body[i + 1][0] == "attn" for i in encoder[l * (k + 1): l * (k + 1) + k])
    )
    image_size = int(ncsnpp_stft.DEFAULTS["image_size"])
    candidate = {**kw, **structure, "attn_resolutions": tuple(image_size // 2**l for l in attention) or (0,)}
    try:
        expected = torch_import.torch_param_shapes("ncsnpp_stft", candidate)
    except (ValueError, TypeError):
        return kw
    if expected != {key: tuple(np.shape(v)) for key, v in state.items()}:
        return kw  # another structure: the args (or explicit keywords) must describe it
    return {**kw, **structure, "_attention_levels": attention}


def _buddy_kwargs_from_args(args: Mapping) -> dict:
    """`NCSNppTime` keywords from BUDDy's `args.network` (its NCSNpp keywords and `stft`)."""
    from diffrestore.models import ncsnpp_stft

    net = dict(args.get("network") or {})
    stft = dict(net.pop("stft", None) or {})
    if "center" in stft and not bool(stft["center"]):
        raise CheckpointError("args.network.stft.center is False; only center=True is implemented")
    kw = {k: net[k] for k in ncsnpp_stft.DEFAULTS if k in net}
    kw.update({k: int(stft[k]) for k in ncsnpp_stft.STFT_KEYS if k in stft})
    if bool(kw.get("discriminative", False)):
        # The reference's constructor overrides these for a discriminative network.
        kw.pop("time_conditional", None)
        kw.pop("input_channels", None)
    return {k: _plain(v) for k, v in kw.items()}


def _attention_resolutions(levels: tuple, kwargs: Mapping, source: str) -> tuple:
    """attn_resolutions giving attention at exactly `levels` (image_size / 2^level)."""
    from diffrestore.models import ncsnpp_stft

    image_size = int(kwargs.get("image_size", ncsnpp_stft.DEFAULTS["image_size"]))
    given = kwargs.get("attn_resolutions")
    if given is not None:
        listed = tuple(l for l in range(len(kwargs.get("ch_mult", ()))) if image_size // 2**l in tuple(given))
        if listed != tuple(levels):
            raise CheckpointError(f"{source}: the saved args put attention at levels {listed}, the weights at {levels}")
        return tuple(given)
    return tuple(image_size // 2**l for l in levels) if levels else ncsnpp_stft.DEFAULTS["attn_resolutions"]


def infer_cqtdiff_kwargs(state: Mapping, source: str = "state_dict") -> dict:
    """`Unet_CQT` constructor keywords from its state_dict (what shapes tell)."""
    depth = _count(state, "downs.{}.0.first_conv.1.weight")
    if depth < 2:
        raise CheckpointError(f"{source}: found {depth} encoder levels (downs.i.0); not a CQT-Diff Unet_CQT")
    ns = [_shape(state, f"downs.{i}.0.first_conv.1.weight", source)[0] for i in range(depth)]
    ns.append(_shape(state, "middle.0.0.first_conv.1.weight", source)[0])
    rows = _shape(state, "freq_encoding.embeddings", source)
    kw = dict(
        Ns=tuple(int(n) for n in ns),
        depth=depth,
        num_layers=_count(state, "downs.0.0.H.{}.conv.weight"),
        kernel_size=tuple(int(k) for k in _shape(state, "downs.0.0.H.0.conv.weight", source)[2:]),
        use_norm="downs.0.0.gnorm.weight" in state,
        freq_encoding_dim=int(rows[1] // 2),
        emb_dim=int(_shape(state, "embedding.MLP.2.weight", source)[0]),
        rff_dim=int(_shape(state, "embedding.RFF_freq", source)[1]),
    )
    # 450 rows = 7 octaves x 64 bins + DC + Nyquist; other counts need explicit num_octaves/bins.
    if rows[2] != 7 * 64 + 2:
        kw["_num_rows"] = int(rows[2])
    return kw


def infer_cqtdiffplus_kwargs(state: Mapping, source: str = "state_dict") -> dict:
    """`Unet_CQT_oct_with_attention` constructor keywords from its state_dict (what shapes tell)."""
    octaves = _count(state, "downs.{}.1.weight")
    if octaves < 2:
        raise CheckpointError(f"{source}: found {octaves} octave levels (downs.i.1); not a CQTdiff+ network")
    levels = [f"downs.{i}.2" for i in range(octaves)]
    bottleneck = _count(state, "middle.{}.1.H.0.weight")
    attention = [f"{p}.attn_block.proj_in.weight" in state for p in levels] + [
        "middle.0.1.attn_block.proj_in.weight" in state]
    kw: dict[str, Any] = dict(
        Ns=tuple(int(_shape(state, f"downs.{i}.1.weight", source)[0]) for i in range(octaves)),
        num_dils=tuple(_count(state, p + ".H.{}.weight") for p in levels),
        use_norm="downs.0.2.norm.0.gamma" in state,
        use_fencoding="freq_encodings.0.embeddings" in state,
        emb_dim=int(_shape(state, "embedding.MLP.2.weight", source)[0]),
        rff_dim=int(_shape(state, "embedding.RFF_freq", source)[1]),
        attention_layers=tuple(int(a) for a in attention),
        num_bottleneck_layers=bottleneck,
        num_octaves=octaves,
        kernel_size=tuple(int(k) for k in _shape(state, "downs.0.1.weight", source)[2:]),
    )
    if kw["use_fencoding"]:
        enc = _shape(state, "freq_encodings.0.embeddings", source)
        kw["freq_encoding_dim"] = int(enc[1] // 2)
        kw["bins_per_octave"] = int(enc[2])
    blocks = [p for p, a in zip(levels + ["middle.0.1"], attention) if a]
    if blocks:
        p = blocks[0]
        heads = int(_shape(state, f"{p}.attn_block.proj_in.weight", source)[0])
        kw["num_heads"] = heads
        kw["bias_qkv"] = f"{p}.attn_block.qk.bias" in state
        kw["use_rel_pos"] = f"{p}.attn_block.rel_pos.relative_attention_bias.weight" in state
        if kw["use_rel_pos"]:
            kw["rel_pos_num_buckets"] = int(_shape(state, f"{p}.attn_block.rel_pos.relative_attention_bias.weight", source)[0])
        # qk maps h·F -> 2h·F features, F = (level + 1)·bins_per_octave.
        level = levels.index(p) if p in levels else octaves - 1
        features = _shape(state, f"{p}.attn_block.qk.weight", source)[1]
        kw["bins_per_octave"] = int(features // (heads * (level + 1)))
    if "downsamplerT.kernel" in state:
        from diffrestore.models.cqt_blocks import RESAMPLE_KERNELS

        taps = np.asarray(state["downsamplerT.kernel"], np.float64).reshape(-1)
        for name, ref in RESAMPLE_KERNELS.items():
            if len(ref) == len(taps) and np.allclose(taps, ref, atol=1e-7):
                kw["resample_filter"] = name
    return kw


def _babe_kwargs_from_args(args: Mapping) -> dict:
    """CQTdiff+ constructor keywords from BABE's `args.network` (and `args.exp`)."""
    net = args.get("network") or {}
    cqt = net.get("cqt") or {}
    attn = net.get("attention_dict") or {}
    kw = {}
    for key in ("Ns", "num_dils", "attention_layers"):
        if key in net:
            kw[key] = tuple(int(v) for v in net[key])
    for key in ("use_norm", "use_fencoding"):
        if key in net:
            kw[key] = bool(net[key])
    for key, src in (("emb_dim", "emb_dim"), ("num_bottleneck_layers", "num_bottleneck_layers")):
        if src in net:
            kw[key] = int(net[src])
    if "bottleneck_type" in net:
        kw["bottleneck_type"] = str(net["bottleneck_type"])
    for key, src, cast in (("num_heads", "num_heads", int), ("bias_qkv", "bias_qkv", bool),
                           ("use_rel_pos", "use_rel_pos", bool), ("rel_pos_num_buckets", "rel_pos_num_buckets", int),
                           ("rel_pos_max_distance", "rel_pos_max_distance", int)):
        if src in attn:
            kw[key] = cast(attn[src])
    for key, src, cast in (("num_octaves", "num_octs", int), ("bins_per_octave", "bins_per_oct", int),
                           ("cqt_window", "window", str), ("cqt_beta", "beta", float)):
        if src in cqt:
            kw[key] = cast(cqt[src])
    exp = args.get("exp") or {}
    if "sample_rate" in exp:
        kw["sample_rate"] = float(exp["sample_rate"])
    return kw


# ----------------------------------------------------------------------------- reading files


def _state(value, what: str, source: str) -> dict:
    if not isinstance(value, Mapping):
        raise CheckpointError(f"{source}: {what!r} is not a state_dict (got {type(value).__name__})")
    return {str(k): np.asarray(v) for k, v in value.items()}


def _cqtdiff_ema_state(ckpt: Mapping, model: dict, source: str) -> dict:
    """`ema_weights` (a list in parameters() order) under the parameter names of `model`.

    The names are model's keys without its buffers (state_dict lists each module's parameters,
    then its buffers, in the same module order as parameters()).
    """
    shadow = ckpt.get("ema_weights")
    if not isinstance(shadow, (list, tuple)):
        raise CheckpointError(f"{source}: no 'ema_weights' list")
    buffers = {k for k in model if k.endswith(".resample.kernel")}
    names = [k for k in model if k not in buffers]
    if len(shadow) != len(names):
        raise CheckpointError(f"{source}: 'ema_weights' has {len(shadow)} tensors, the model has {len(names)} parameters")
    ema = {}
    for name, value in zip(names, shadow):
        value = np.asarray(value)
        if value.shape != model[name].shape:
            raise CheckpointError(f"{source}: ema_weights tensor for {name} has shape {value.shape}, expected {model[name].shape}")
        ema[name] = value
    return ema


def _merge_kwargs(inferred: dict, from_args: dict, source: str) -> dict:
    """args first, then the shapes; a disagreement means the file is inconsistent."""
    conflicts = [f"{k}: args {from_args[k]!r}, weights {inferred[k]!r}"
                 for k in inferred if k in from_args and from_args[k] != inferred[k]]
    if conflicts:
        raise CheckpointError(f"{source}: the saved args do not describe these weights ({'; '.join(conflicts)})")
    return {**from_args, **inferred}


def read_prior_checkpoint(path, weights: str = "default", network_kwargs: Mapping | None = None,
                          sigma_data: float | None = None, sample_rate: int | None = None,
                          audio_len: int | None = None) -> PriorCheckpoint:
    """Reads a CQT-Diff, BABE or BUDDy `.pt` file.

    Args:
      path: the file.
      weights: "default" (what the reference samples with: CQT-Diff 'model', BABE and BUDDy
        'ema'), "raw" (CQT-Diff 'model', BABE/BUDDy 'network') or "ema" (CQT-Diff 'ema_weights'
        mapped by parameter order, BABE/BUDDy 'ema').
      network_kwargs: constructor keywords that override the inferred ones (e.g. sample_rate,
        or num_octaves/bins_per_octave when the shapes cannot tell them; for BUDDy files without
        args, n_fft/hop_length and whatever differs from its shipped network).
      sigma_data, sample_rate, audio_len: override what the file says or the reference defaults.
    Returns:
      a `PriorCheckpoint`.
    Raises:
      CheckpointError: not such a file, or weights that do not fit the inferred network
        (every missing/unexpected key and wrong shape is named). UnsafeCheckpointError: the
        pickle asks for code outside the allowlist (nothing ran).
    """
    from diffrestore.models import cqt_torch_import

    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, not {weights!r}")
    path = pathlib.Path(path)
    source = str(path)
    ckpt = load_torch_checkpoint(path)
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(
            f"{source}: expected a dict of a CQT-Diff, BABE or BUDDy trainer, got {type(ckpt).__name__}")
    args = None
    if "model" in ckpt and "ema_weights" in ckpt:
        reference, facts = "CQT-Diff", dict(_CQTDIFF_FACTS)
        raw = _state(ckpt["model"], "model", source)
        entry = "ema_weights" if weights == "ema" else "model"
        step = int(ckpt.get("step", 0) or 0)
    elif "network" in ckpt or "ema" in ckpt:
        # BABE's trainer, also BUDDy's: which one the weights tell.
        entry = "network" if weights == "raw" else "ema"
        if entry not in ckpt:
            raise CheckpointError(f"{source}: no {entry!r} weights in this BABE/BUDDy checkpoint")
        raw = _state(ckpt[entry], entry, source)
        is_buddy = network_of(raw) == "ncsnpp_stft"
        reference, facts = ("BUDDy", dict(_BUDDY_FACTS)) if is_buddy else ("BABE", dict(_BABE_FACTS))
        step = int(ckpt.get("it", 0) or 0)
        args = ckpt.get("args")
        args = _plain(args) if isinstance(args, Mapping) else None
    else:
        raise CheckpointError(f"{source}: neither a CQT-Diff ('model', 'ema_weights') nor a BABE/BUDDy "
                              f"('network', 'ema', 'args') checkpoint; top-level keys {sorted(map(str, ckpt))}")

    network = network_of(raw)
    if network is None:
        raise CheckpointError(f"{source}: the {reference} weights are neither CQT-Diff's Unet_CQT, CQTdiff+ "
                              "nor BUDDy's NCSNppTime")
    if network == "ncsnpp_stft" and reference != "BUDDy":
        raise CheckpointError(f"{source}: NCSN++ weights in a CQT-Diff file; not a file this reader knows")
    levels = None
    if network == "cqtdiff":
        kwargs = infer_cqtdiff_kwargs(raw, source)
        rows = kwargs.pop("_num_rows", None)
    elif network == "ncsnpp_stft":
        kwargs = infer_ncsnpp_stft_kwargs(raw, source)
        rows = None
        levels = kwargs.pop("_attention_levels", None)
        if args is not None:
            target = str((args.get("network") or {}).get("_target_", "networks.ncsnpp.NCSNppTime"))
            if not target.endswith("NCSNppTime"):
                raise CheckpointError(f"{source}: args.network._target_ is {target!r}, not BUDDy's NCSNppTime")
            from_args = _buddy_kwargs_from_args(args)
            kwargs = _merge_kwargs(kwargs, {k: v for k, v in from_args.items() if k != "attn_resolutions"}, source)
            if "attn_resolutions" in from_args:
                kwargs["attn_resolutions"] = from_args["attn_resolutions"]
            facts.update(_buddy_facts(args))
    else:
        kwargs = infer_cqtdiffplus_kwargs(raw, source)
        rows = None
        if args is not None:
            if str((args.get("network") or {}).get("name", "cqtdiff+")) != "cqtdiff+":
                raise CheckpointError(f"{source}: args.network.name is {args['network']['name']!r}, not 'cqtdiff+'")
            kwargs = _merge_kwargs(kwargs, _babe_kwargs_from_args(args), source)
            facts.update(_babe_facts(args))
    kwargs.update(network_kwargs or {})
    if network == "ncsnpp_stft" and levels is not None and "attn_resolutions" not in (network_kwargs or {}):
        kwargs["attn_resolutions"] = _attention_resolutions(levels, kwargs, source)
    if rows is not None and not (network_kwargs and {"num_octaves", "bins_per_octave"} <= set(network_kwargs)):
        raise CheckpointError(f"{source}: the frequency encoding has {rows} rows, not 7 x 64 + 2; pass "
                              "num_octaves and bins_per_octave in network_kwargs")
    kwargs = {k: _plain(v) for k, v in kwargs.items()}

    state = _cqtdiff_ema_state(ckpt, raw, source) if entry == "ema_weights" else raw
    try:
        if network == "ncsnpp_stft":
            from diffrestore.models import torch_import

            params = torch_import.params_from_torch(network, kwargs, state)
        else:
            params = cqt_torch_import.params_from_torch(network, kwargs, state)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{source}: the {entry!r} weights do not fit the inferred network: {err}") from err

    if sigma_data is not None:
        facts["sigma_data"] = sigma_data
    if sample_rate is not None:
        facts["sample_rate"] = sample_rate
    if audio_len is not None:
        facts["audio_len"] = audio_len
    return PriorCheckpoint(
        network=network, network_kwargs=kwargs, params=params, weights_entry=entry,
        sigma_data=float(facts["sigma_data"]), sample_rate=int(facts["sample_rate"]),
        audio_len=int(facts["audio_len"]), step=step, reference=reference, args=args,
    )


def _buddy_facts(args: Mapping) -> dict:
    out = {}
    hp = (args.get("diff_params") or {}).get("sde_hp") or {}
    exp = args.get("exp") or {}
    if _is_number(hp.get("sigma_data")):
        out["sigma_data"] = float(hp["sigma_data"])
    if _is_number(exp.get("sample_rate")):
        out["sample_rate"] = int(exp["sample_rate"])
    if _is_number(exp.get("audio_len")):
        out["audio_len"] = int(exp["audio_len"])
    return out


def _babe_facts(args: Mapping) -> dict:
    out = {}
    diff = args.get("diff_params") or {}
    exp = args.get("exp") or {}
    if _is_number(diff.get("sigma_data")):
        out["sigma_data"] = float(diff["sigma_data"])
    if _is_number(exp.get("sample_rate")):
        out["sample_rate"] = int(exp["sample_rate"])
    if _is_number(exp.get("audio_len")):
        out["audio_len"] = int(exp["audio_len"])
    return out


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _plain(value):
    """OmegaDict/OmegaList (and lists) -> plain dicts and tuples, numpy scalars -> Python values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


# ----------------------------------------------------------------------------- diffrestore configs


def prior_config_for(ckpt: PriorCheckpoint, config=None):
    """A diffrestore prior config (`diffrestore.config.prior_config`) for an imported checkpoint.

    Without `config`: the reference's settings. CQT-Diff: `prior_config` as it is (σ_data 0.057,
    T = 35, S_churn 5, ρ 13). BABE: EDM and sampler from `args` (`diff_params` for training,
    `tester.diff_params` and `tester.T` for sampling: σ 1e-4 … 1, ρ 8, S_churn 20, drawing the
    churn noise as BABE does). BUDDy: `prior_config("ncsnpp_stft")` (its `only_unconditional`
    tester: σ 5e-4 … 1, ρ 10, T 201, S_churn 30), training σ from `args.diff_params.sde_hp`; not
    the sampler of `args.tester`, which BUDDy's train.py forces to the training σ range
    (`same_as_training = True`) before saving it. With `config`: a copy of it, with the network,
    its keywords, and what the file tells (σ_data, sample rate and training segment) replaced.
    """
    import ml_collections

    from diffrestore import config as config_lib

    if config is None:
        c = config_lib.prior_config(ckpt.network, **ckpt.network_kwargs)
        if ckpt.reference == "BABE":
            _babe_sampling(c, ckpt.args or {})
        elif ckpt.reference == "BUDDy":
            _buddy_training_sigmas(c, ckpt.args or {})
    else:
        c = copy.deepcopy(config)
        with c.unlocked():
            c.model.backbone = ckpt.network
            c.model.backbone_kwargs = ml_collections.ConfigDict(ckpt.network_kwargs)
    if config is None or ckpt.reference in ("BABE", "BUDDy"):
        c.sde.sigma_data = ckpt.sigma_data
        c.data.sample_rate = ckpt.sample_rate
        c.data.segment_length = ckpt.audio_len
    return c


def _babe_sampling(c, args: Mapping) -> None:
    diff = args.get("diff_params") or {}
    tester = args.get("tester") or {}
    sampling = tester.get("diff_params") or {}
    number = lambda d, k: _is_number(d.get(k))  # noqa: E731
    if number(diff, "sigma_min"):
        c.sde.train_sigma_min = float(diff["sigma_min"])
    if number(diff, "sigma_max"):
        c.sde.train_sigma_max = float(diff["sigma_max"])
    if number(diff, "ro_train"):
        c.sde.rho_train = float(diff["ro_train"])
    # BABE's conf/diff_params/edm.yaml defaults when the tester gives none.
    c.sde.sigma_min = float(sampling["sigma_min"]) if number(sampling, "sigma_min") else 1e-4
    c.sde.sigma_max = float(sampling["sigma_max"]) if number(sampling, "sigma_max") else 1.0
    c.sde.rho = float(sampling["ro"]) if number(sampling, "ro") else 8.0
    if number(tester, "T"):
        c.sampling.num_steps = int(tester["T"])
    for key, src in (("S_churn", "Schurn"), ("S_noise", "Snoise"), ("S_tmin", "Stmin"), ("S_tmax", "Stmax")):
        if number(sampling, src):
            c.sampling[key] = float(sampling[src])
    c.sampling.convention = "babe"


def _buddy_training_sigmas(c, args: Mapping) -> None:
    hp = (args.get("diff_params") or {}).get("sde_hp") or {}
    for key, src in (("train_sigma_min", "sigma_min"), ("train_sigma_max", "sigma_max"), ("rho_train", "rho")):
        if _is_number(hp.get(src)):
            c.sde[key] = float(hp[src])


def load_prior_checkpoint(path, config=None, weights: str = "default"):
    """Reads a CQT-Diff, BABE or BUDDy `.pt` into (diffrestore prior config, Flax params).

    `config.model.backbone_kwargs` (if given) overrides inferred network keywords; see
    `prior_config_for` for the rest.
    """
    from diffrestore.models import prior_network_name

    overrides = None
    if config is not None and "backbone_kwargs" in config.model:
        overrides = dict(config.model.backbone_kwargs.to_dict()) or None
    ckpt = read_prior_checkpoint(path, weights=weights, network_kwargs=overrides)
    if overrides and prior_network_name(config.model.backbone) != ckpt.network:
        raise CheckpointError(f"{path}: the file holds a {ckpt.network} network, but config.model.backbone_kwargs "
                              f"are for {config.model.backbone!r}")
    return prior_config_for(ckpt, config), ckpt.params

