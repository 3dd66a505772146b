"""NCSN++ score networks of SGMSE (`ncsnpp`, `ncsnpp_v2`, `ncsnpp_48k`), of BUDDy
(`ncsnpp_buddy`) and of StoRM (`ncsnpp_storm`) in Flax.

The five reference backbones share one U-Net; they differ in defaults and in these details:

| backbone     | input               | conditional | centered | division by t (scale_by_sigma) | Fourier input |
| ------------ | ------------------- | ----------- | -------- | ------------------------------ | ------------- |
| ncsnpp       | net(cat[x, y], t)   | option      | option   | before the 1x1 output layer    | log t         |
| ncsnpp_v2    | net(x, y, t)        | always      | always   | never                          | log t         |
| ncsnpp_48k   | net(cat[x, y], t)   | option      | option   | after the 1x1 output layer     | log t         |
| ncsnpp_buddy | net(x[, y], c)      | option      | option   | never                          | c itself      |
| ncsnpp_storm | net(cat[x, y, D], t)| option      | never    | before the 1x1 output layer    | log t         |

ncsnpp_48k defaults to progressive = progressive_input = "none" and no attention resolutions.

`ncsnpp_buddy` is sp-uhh/buddy's `networks/ncsnpp.py: NCSNpp` (the network of its clean-speech
EDM prior, wrapped in an STFT by `diffrestore.models.ncsnpp_stft`). Its constructor differs
from SGMSE's in what changes numbers:
* `input_channels`: 4 = (x, y) as SGMSE, or 2 = x alone (the unconditional prior: call with
  y=None). `spatial_channels` (D) multiplies them; BUDDy uses D = 1 and so do we (its input
  indexing `x[:, chan + in_chan]` reads overlapping channels for D > 1).
* `time_conditional` instead of `conditional`: when False there is no Fourier projection, no
  embedding MLP and no `Dense_0` in the residual blocks (SGMSE's conditional=False keeps all
  three as unused weights). `discriminative=True` forces time_conditional=False and
  input_channels=2 (the one channel is the noisy spectrogram; pass it as x).
* the Fourier projection is applied to the conditioning value as given (BUDDy passes EDM's
  c_noise = ¼ ln σ; the log of SGMSE's forward is commented out), never divided by sigma.
* defaults: nf 128, ch_mult (1, 2, 2, 2), one residual block per level, attn_resolutions (0,)
  (attention only in the middle), fir False.
Input layout (channel order re, im of x, then of y), the output layer (1x1 conv to re, im),
the attention test on the frequency size and the progressive/combine paths are SGMSE's.

`ncsnpp_storm` is sp-uhh/storm's `sgmse/backbones/ncsnpp.py: NCSNpp`, which builds both
networks of StoRM's `StochasticRegenerationModel`:
* the score network, `input_channels` = 6: the reference's input is cat([x, y, D(y)]) on the
  complex channel axis, i.e. the real channels [re x, im x, re y, im y, re D, im D]
  (4 for StoRM's conditions 'noisy' / 'post_denoiser', whose one conditioning channel is y or D).
  Call it as `apply(variables, x, cond, t)` with cond complex (B, input_channels/2 − 1, F, T)
  holding the conditioning spectrograms stacked on the channel axis ([y, D(y)] for 'both').
* the predictive denoiser D, `discriminative=True`: forces conditional=False,
  scale_by_sigma=False and input_channels=2. Call it as `apply(variables, y, None, None)`.
  Its Fourier projection `W` and every residual block's `Dense_0` still exist (SGMSE's
  layout), unused, so checkpoints map one to one.
* `centered=False` hard-wired (the constructor takes `centered`, but nothing in StoRM sets it
  and it has no command-line option): after stacking, every real channel, conditioning ones
  included, is mapped to 2v − 1 (complex: 2z − (1 + 1j)), and the input-skip pyramid sees the
  mapped values.
* defaults: nf 128, ch_mult (1, 2, 2, 2), one residual block per level, attn_resolutions (0,)
  (attention only in the middle), fir True with [1, 3, 3, 1]; the division by t comes before
  the output layer (1x1 conv, input_channels -> 2, with bias), as in SGMSE's ncsnpp.

The structure is described once, by `layer_plan(config)`: the reference's `all_modules` list,
in its order, with a Flax name for each entry. The Flax forward pass consumes the plan in
order and checks each entry's kind (as the reference asserts `m_idx == len(modules)`), and
`torch_import` maps `all_modules.<i>` to the plan's i-th name. Module names in Flax are thus
readable (`down_3_res_0`, `mid_attn`, ...) and still line up with the PyTorch indices.

Layout: the network runs NHWC, (B, F, T, C), on the real channels (x.real, x.imag, y.real,
y.imag, ...), in that order (the first two only for a 2-channel network; for StoRM's 6
channels y's channels follow one after the other: y[:, 0].real, y[:, 0].imag, y[:, 1].real, ...).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from diffrestore.models import layers as L

# SGMSE's enhancement backbones (conditional on y), as registered in the reference.
BACKBONES = ("ncsnpp", "ncsnpp_v2", "ncsnpp_48k")
# Every variant `make_config`/`build_backbone` know: SGMSE's, BUDDy's (which serves the
# speech prior `ncsnpp_stft`) and StoRM's (whose two networks a `StochasticRegenerationModel`
# checkpoint holds, read by `diffrestore.convert.storm`). The last two are not in BACKBONES:
# sgmse checkpoints and configs name their one network from that tuple, and StoRM's pair of
# networks (with its conditioning channels) is not a drop-in SGMSE backbone.
VARIANTS = BACKBONES + ("ncsnpp_buddy", "ncsnpp_storm")

_COMMON_DEFAULTS = dict(
    nf=128,
    ch_mult=(1, 1, 2, 2, 2, 2, 2),
    num_res_blocks=2,
    attn_resolutions=(16,),
    nonlinearity="swish",
    resamp_with_conv=True,
    fir=True,
    fir_kernel=(1, 3, 3, 1),
    skip_rescale=True,
    resblock_type="biggan",
    progressive="output_skip",
    progressive_input="input_skip",
    progressive_combine="sum",
    init_scale=0.0,
    fourier_scale=16,
    image_size=256,
    embedding_type="fourier",
    dropout=0.0,
)

# The keyword arguments of each reference constructor, with its defaults.
DEFAULTS: dict[str, dict[str, Any]] = {
    "ncsnpp": dict(_COMMON_DEFAULTS, scale_by_sigma=True, conditional=True, centered=True),
    "ncsnpp_v2": dict(_COMMON_DEFAULTS),
    "ncsnpp_48k": dict(
        _COMMON_DEFAULTS, scale_by_sigma=True, conditional=True, centered=True,
        attn_resolutions=(), progressive="none", progressive_input="none",
    ),
    # sp-uhh/buddy `networks/ncsnpp.py: NCSNpp.__init__` and its defaults.
    "ncsnpp_buddy": dict(
        _COMMON_DEFAULTS, ch_mult=(1, 2, 2, 2), num_res_blocks=1, attn_resolutions=(0,), fir=False,
        time_conditional=True, input_channels=4, spatial_channels=1, centered=True, discriminative=False,
    ),
    # sp-uhh/storm `sgmse/backbones/ncsnpp.py: NCSNpp.__init__`, without `centered` (hard-wired
    # False, see the module docstring). input_channels: the constructor's default is 4, but
    # StochasticRegenerationModel always overrides it and its default condition 'both' gives 6,
    # the score network StoRM publishes; the default here is that one.
    "ncsnpp_storm": dict(
        _COMMON_DEFAULTS, ch_mult=(1, 2, 2, 2), num_res_blocks=1, attn_resolutions=(0,),
        scale_by_sigma=True, conditional=True, input_channels=6, spatial_channels=1, discriminative=False,
    ),
}

NUM_CHANNELS = 4  # SGMSE's input: x.real, x.imag, y.real, y.imag


def _tuple(value):
    """Lists (from argparse / JSON) to tuples, recursively, so the config is hashable."""
    if isinstance(value, (list, tuple)):
        return tuple(_tuple(v) for v in value)
    return value


@dataclasses.dataclass(frozen=True)
class NCSNppConfig:
    """All options of the backbones; `backbone` fixes the per-variant behaviour.

    `conditional` is BUDDy's `time_conditional` for ncsnpp_buddy; `input_channels`,
    `spatial_channels` and `discriminative` are BUDDy's and StoRM's options (SGMSE's are 4,
    1, False; StoRM's score network has 6 input channels).
    """

    backbone: str = "ncsnpp"
    nf: int = 128
    ch_mult: tuple = (1, 1, 2, 2, 2, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: tuple = (16,)
    nonlinearity: str = "swish"
    resamp_with_conv: bool = True
    fir: bool = True
    fir_kernel: tuple = (1, 3, 3, 1)
    skip_rescale: bool = True
    resblock_type: str = "biggan"
    progressive: str = "output_skip"
    progressive_input: str = "input_skip"
    progressive_combine: str = "sum"
    init_scale: float = 0.0
    fourier_scale: float = 16
    image_size: int = 256
    embedding_type: str = "fourier"
    dropout: float = 0.0
    scale_by_sigma: bool = True
    conditional: bool = True
    centered: bool = True
    input_channels: int = NUM_CHANNELS
    spatial_channels: int = 1
    discriminative: bool = False

    @property
    def is_buddy(self) -> bool:
        return self.backbone == "ncsnpp_buddy"

    @property
    def is_storm(self) -> bool:
        return self.backbone == "ncsnpp_storm"

    @property
    def num_conditioning(self) -> int:
        """Complex conditioning spectrograms the network takes besides x (y's channel count):
        0 for a 2-channel network, 1 for SGMSE's 4 channels, 2 for StoRM's 6."""
        return self.input_channels // 2 - 1

    @property
    def total_channels(self) -> int:
        """Real input channels: those of the first conv, of the input/output pyramids and of
        the output layer's input."""
        return self.input_channels * self.spatial_channels

    @property
    def has_fourier(self) -> bool:
        """Whether the Gaussian Fourier projection exists (SGMSE: whenever embedding_type is
        fourier; BUDDy: only when time-conditional)."""
        return self.embedding_type == "fourier" and (self.conditional or not self.is_buddy)

    @property
    def num_resolutions(self) -> int:
        return len(self.ch_mult)

    @property
    def all_resolutions(self) -> tuple[int, ...]:
        """The frequency size the constructor assumes at each level: image_size / 2^level."""
        return tuple(self.image_size // 2**i for i in range(self.num_resolutions))

    @property
    def temb_dim(self) -> int | None:
        """Width of the time embedding the residual blocks take (their `Dense_0`); None for
        BUDDy without time conditioning (its blocks then have no Dense_0)."""
        if self.is_buddy and not self.conditional:
            return None
        return 4 * self.nf


def make_config(name: str, **kwargs) -> NCSNppConfig:
    """Validated config of backbone `name` from the reference constructor's kwargs.

    Raises:
      ValueError: unknown backbone or an invalid option value.
      TypeError: a keyword the backbone's constructor does not take.
    """
    if name not in DEFAULTS:
        raise ValueError(f"unknown backbone {name!r}; expected one of {VARIANTS}")
    unknown = sorted(set(kwargs) - set(DEFAULTS[name]))
    if unknown:
        raise TypeError(
            f"backbone {name!r} takes no option(s) {unknown}; it accepts {sorted(DEFAULTS[name])}"
        )
    opts = {**DEFAULTS[name], **{k: _tuple(v) for k, v in kwargs.items()}}
    for key in ("resblock_type", "progressive", "progressive_input", "progressive_combine", "embedding_type"):
        opts[key] = str(opts[key]).lower()
    opts["nonlinearity"] = str(opts["nonlinearity"]).lower()
    if name == "ncsnpp_v2":
        # v2 always conditions on t, never recentres its input and never divides by t.
        opts.update(scale_by_sigma=False, conditional=True, centered=True)
    if name == "ncsnpp_buddy":
        # BUDDy never divides by sigma; its time_conditional is our conditional, and a
        # discriminative network overrides both options as the reference's constructor does.
        opts["conditional"] = bool(opts.pop("time_conditional"))
        opts["scale_by_sigma"] = False
        opts["discriminative"] = bool(opts["discriminative"])
        if opts["discriminative"]:
            opts.update(conditional=False, input_channels=2)
        opts["input_channels"], opts["spatial_channels"] = int(opts["input_channels"]), int(opts["spatial_channels"])
    if name == "ncsnpp_storm":
        # StoRM maps every input channel to 2v - 1 (centered=False, never changed), and its
        # discriminative network overrides the options as the reference's constructor does.
        opts["centered"] = False
        opts["discriminative"] = bool(opts["discriminative"])
        if opts["discriminative"]:
            opts.update(conditional=False, scale_by_sigma=False, input_channels=2)
        opts["input_channels"], opts["spatial_channels"] = int(opts["input_channels"]), int(opts["spatial_channels"])
    cfg = NCSNppConfig(backbone=name, **opts)
    _validate(cfg)
    return cfg


def _validate(cfg: NCSNppConfig) -> None:
    choices = {
        "progressive": ("none", "output_skip", "residual"),
        "progressive_input": ("none", "input_skip", "residual"),
        "progressive_combine": ("sum", "cat"),
        "embedding_type": ("fourier", "positional"),
        "resblock_type": ("ddpm", "biggan"),
    }
    for key, allowed in choices.items():
        if getattr(cfg, key) not in allowed:
            raise ValueError(f"{key}={getattr(cfg, key)!r} is not one of {allowed}")
    L.get_act(cfg.nonlinearity)
    if cfg.is_storm:
        if cfg.input_channels not in (2, 4, 6):
            raise ValueError(
                f"input_channels must be 2 (one spectrogram), 4 (x and one conditioning) or 6 "
                f"(x, y and D(y)), got {cfg.input_channels}"
            )
    elif cfg.input_channels not in (2, 4):
        raise ValueError(f"input_channels must be 2 (x alone) or 4 (x and y), got {cfg.input_channels}")
    if cfg.spatial_channels != 1:
        raise ValueError(
            f"spatial_channels must be 1 (BUDDy's value; the reference's input indexing is not "
            f"meaningful for more), got {cfg.spatial_channels}"
        )
    if not cfg.ch_mult or cfg.num_res_blocks < 0 or cfg.nf < 4:
        raise ValueError(
            f"invalid network size: nf={cfg.nf}, ch_mult={cfg.ch_mult}, num_res_blocks={cfg.num_res_blocks}"
        )


# ----------------------------------------------------------------------------- the plan


@dataclasses.dataclass(frozen=True)
class Layer:
    """One entry of the reference's `all_modules`.

    kind: fourier | dense | conv3x3 | groupnorm | resblock | attn | combine | downsample | upsample
    in_ch/out_ch: channels in and out. up/down: resampling resblock. with_conv: conv in a
    (Up|Down)sample. init_scale: of the layer's last conv (initialisation only).
    """

    name: str
    kind: str
    in_ch: int = 0
    out_ch: int = 0
    up: bool = False
    down: bool = False
    with_conv: bool = False
    init_scale: float = 1.0


def layer_plan(cfg: NCSNppConfig) -> tuple[Layer, ...]:
    """The reference constructor's `all_modules`, in order, with Flax names."""
    plan: list[Layer] = []
    add = lambda *a, **k: plan.append(Layer(*a, **k))  # noqa: E731
    nf, n_res = cfg.nf, cfg.num_resolutions
    resample_resblock = cfg.resblock_type == "biggan"

    if cfg.has_fourier:
        add("time_fourier", "fourier", out_ch=nf)
    embed_dim = 2 * nf if cfg.embedding_type == "fourier" else nf
    if cfg.conditional:
        add("time_dense_0", "dense", embed_dim, 4 * nf)
        add("time_dense_1", "dense", 4 * nf, 4 * nf)

    channels = cfg.total_channels
    input_pyramid_ch = channels
    add("conv_in", "conv3x3", channels, nf)
    hs_c = [nf]
    in_ch = nf
    for level in range(n_res):
        for block in range(cfg.num_res_blocks):
            out_ch = nf * cfg.ch_mult[level]
            add(f"down_{level}_res_{block}", "resblock", in_ch, out_ch)
            in_ch = out_ch
            if cfg.all_resolutions[level] in cfg.attn_resolutions:
                add(f"down_{level}_attn_{block}", "attn", in_ch, in_ch, init_scale=cfg.init_scale)
            hs_c.append(in_ch)
        if level != n_res - 1:
            if resample_resblock:
                add(f"down_{level}_resample", "resblock", in_ch, in_ch, down=True)
            else:
                add(f"down_{level}_resample", "downsample", in_ch, in_ch, with_conv=cfg.resamp_with_conv)
            if cfg.progressive_input == "input_skip":
                add(f"down_{level}_combine", "combine", input_pyramid_ch, in_ch)
                if cfg.progressive_combine == "cat":
                    in_ch *= 2
            elif cfg.progressive_input == "residual":
                add(f"down_{level}_pyramid", "downsample", input_pyramid_ch, in_ch, with_conv=True)
                input_pyramid_ch = in_ch
            hs_c.append(in_ch)

    in_ch = hs_c[-1]
    add("mid_res_0", "resblock", in_ch, in_ch)
    add("mid_attn", "attn", in_ch, in_ch, init_scale=cfg.init_scale)
    add("mid_res_1", "resblock", in_ch, in_ch)

    pyramid_ch = 0
    for level in reversed(range(n_res)):
        for block in range(cfg.num_res_blocks + 1):
            out_ch = nf * cfg.ch_mult[level]
            add(f"up_{level}_res_{block}", "resblock", in_ch + hs_c.pop(), out_ch)
            in_ch = out_ch
        if cfg.all_resolutions[level] in cfg.attn_resolutions:
            add(f"up_{level}_attn", "attn", in_ch, in_ch, init_scale=cfg.init_scale)
        if cfg.progressive != "none":
            if level == n_res - 1 or cfg.progressive == "output_skip":
                out = channels if cfg.progressive == "output_skip" else in_ch
                scale = cfg.init_scale if cfg.progressive == "output_skip" else 1.0
                add(f"up_{level}_pyramid_norm", "groupnorm", in_ch, in_ch)
                add(f"up_{level}_pyramid_conv", "conv3x3", in_ch, out, init_scale=scale)
                pyramid_ch = out
            else:  # residual, below the top level
                add(f"up_{level}_pyramid", "upsample", pyramid_ch, in_ch, with_conv=True)
                pyramid_ch = in_ch
        if level != 0:
            if resample_resblock:
                add(f"up_{level}_resample", "resblock", in_ch, in_ch, up=True)
            else:
                add(f"up_{level}_resample", "upsample", in_ch, in_ch, with_conv=cfg.resamp_with_conv)
    assert not hs_c

    if cfg.progressive != "output_skip":
        add("out_norm", "groupnorm", in_ch, in_ch)
        add("out_conv", "conv3x3", in_ch, channels, init_scale=cfg.init_scale)
    return tuple(plan)


class _Cursor:
    """Walks the plan in order; each step names the kind the forward pass expects."""

    def __init__(self, plan: tuple[Layer, ...]):
        self._it: Iterator[Layer] = iter(plan)

    def take(self, kind: str) -> Layer:
        layer = next(self._it, None)
        if layer is None or layer.kind != kind:
            raise AssertionError(f"implementation error: forward pass wants a {kind}, plan has {layer}")
        return layer

    def finish(self) -> None:
        rest = list(self._it)
        if rest:
            raise AssertionError(f"implementation error: unused layers {[l.name for l in rest]}")


# ----------------------------------------------------------------------------- the network


class NCSNpp(nn.Module):
    """NCSN++ as in SGMSE and BUDDy; see the module docstring for the variants.

    Call as `module.apply(variables, x, y, t, train=False)` with x, y complex64 (B, 1, F, T)
    and t float32 (B,); F and T must be divisible by 2^(len(ch_mult) − 1). Returns complex64
    (B, 1, F, T): the reference's `net(cat([x, y], 1), t)` (ncsnpp, ncsnpp_48k, ncsnpp_buddy
    with 4 input channels) or `net(x, y, t)` (ncsnpp_v2), without any sign change. With
    train=True and dropout > 0, pass a "dropout" rng.

    A 2-channel ncsnpp_buddy (input_channels=2, or discriminative) takes one spectrogram: call
    it with y=None, i.e. `apply(variables, x, None, c)` = the reference's `net(x, c)`. Its t is
    the conditioning value itself (BUDDy's c_noise); without time conditioning t is ignored
    and may be None. The output has the same (B, 1, F, T) shape in every case.

    ncsnpp_storm: the score network (input_channels 6) is `apply(variables, x, cond, t)` with
    cond complex (B, 2, F, T) = [y, D(y)] stacked on the channel axis (the reference's
    `net(cat([x, y, D], 1), t)`; 4 channels: cond (B, 1, F, T)); the discriminative denoiser is
    `apply(variables, y, None, None)` (the reference's `net(y)`, t ignored).

    Attributes:
      config: the validated options (`make_config`).
      dtype: compute dtype of convolutions and matmuls; parameters stay float32.
      remat: rematerialisation of the residual and attention blocks in training (`REMAT_POLICIES`):
        "none", "full" (keep only each block's inputs, recompute the rest in the backward
        pass), "dots" (keep conv/matmul outputs, recompute norms and activations),
        "dots_no_batch". Parameters and outputs are the same for every choice.
    """

    config: NCSNppConfig
    dtype: Any = jnp.float32
    remat: str = "none"

    @property
    def uses_t(self) -> bool:
        """Whether the forward pass reads t: all but BUDDy's networks without time conditioning
        and StoRM's networks that neither embed t nor divide by it (the discriminative one).
        SGMSE's conditional=False still computes (and drops) the embedding of log t."""
        cfg = self.config
        if cfg.is_buddy:
            return cfg.conditional
        if cfg.is_storm:
            return cfg.conditional or cfg.scale_by_sigma
        return True

    def _check_shapes(self, x, y, t):
        cfg = self.config
        n_cond = cfg.num_conditioning
        if n_cond == 0:
            if y is not None:
                raise ValueError(
                    f"this network has input_channels=2 and takes x alone: call it with y=None (got y {y.shape})"
                )
            if x.ndim != 4 or x.shape[1] != 1:
                raise ValueError(f"x must be (B, 1, F, T); got {x.shape}")
        elif n_cond == 1:
            if y is None or x.ndim != 4 or x.shape[1] != 1 or y.shape != x.shape:
                got = None if y is None else y.shape
                raise ValueError(f"x and y must both be (B, 1, F, T); got {x.shape} and {got}")
        else:
            want = None if x.ndim != 4 else (x.shape[0], n_cond, *x.shape[2:])
            if y is None or x.ndim != 4 or x.shape[1] != 1 or y.shape != want:
                got = None if y is None else y.shape
                raise ValueError(
                    f"this network has input_channels={cfg.input_channels}: x must be (B, 1, F, T) and the "
                    f"conditioning y (B, {n_cond}, F, T), its spectrograms stacked on axis 1 (StoRM: [y, D(y)]); "
                    f"got x {x.shape} and y {got}"
                )
        if self.uses_t and (t is None or t.shape != (x.shape[0],)):
            raise ValueError(f"t must be (B,) = ({x.shape[0]},); got {None if t is None else t.shape}")
        _, _, f, frames = x.shape
        factor = 2 ** (cfg.num_resolutions - 1)
        if f % factor or frames % factor:
            raise ValueError(
                f"F={f} and T={frames} must be multiples of {factor} (2^(len(ch_mult)-1)); pad the spectrogram"
            )
        for level, size in enumerate(cfg.all_resolutions):
            # The reference builds attention blocks where image_size/2^l is listed but calls them
            # where the actual F/2^l is listed; it only runs when the two agree.
            if (size in cfg.attn_resolutions) != ((f // 2**level) in cfg.attn_resolutions):
                raise ValueError(
                    f"F={f} does not fit image_size={cfg.image_size} with attn_resolutions="
                    f"{cfg.attn_resolutions}: at level {level} the reference would call an attention "
                    "block it did not build (or skip one it built); set image_size to F"
                )

    @nn.compact
    def __call__(self, x, y, t, train: bool = False):
        """x: complex (B, 1, F, T); y: complex (B, input_channels/2 − 1, F, T), None for 2 input
        channels; t: (B,) (None where `uses_t` is False) -> complex64 (B, 1, F, T)."""
        return self._network(x, y, t, train)

    def _network(self, x, y, t, train: bool):
        """The forward pass; subclasses (`ncsnpp_stft.NCSNppSTFT`) call it from their own
        compact `__call__`, so its parameters sit at the top of the tree either way."""
        cfg = self.config
        self._check_shapes(x, y, t)
        act = L.get_act(cfg.nonlinearity)
        plan = _Cursor(layer_plan(cfg))
        blocks = _Blocks(cfg, act, self.dtype, train, self.remat)
        t = jnp.asarray(t, jnp.float32) if self.uses_t else None

        # (B, 1, F, T) complex -> (B, F, T, C) real, channels as the reference concatenates them:
        # re, im of each complex channel in turn (x, then each conditioning channel of y).
        channels = [x[:, 0].real, x[:, 0].imag]
        if y is not None:
            for c in range(y.shape[1]):
                channels += [y[:, c].real, y[:, c].imag]
        inputs = jnp.stack(channels, axis=-1).astype(jnp.float32)
        temb = self._time_embedding(plan, t, act)
        if not cfg.centered:
            # data in [0, 1] -> [-1, 1]; on every real channel, conditioning ones included.
            inputs = 2 * inputs - 1.0

        hs = self._encoder(plan, blocks, inputs, temb)
        h = hs[-1]
        h = blocks.resblock(plan.take("resblock"))(h, temb)
        h = blocks.attn(plan.take("attn"))(h)
        h = blocks.resblock(plan.take("resblock"))(h, temb)
        h = self._decoder(plan, blocks, h, hs, temb, act)
        plan.finish()
        # The division by "sigma" uses t itself. (The reference's positional branch reads an
        # attribute `self.sigmas` that it never defines; t is the only consistent choice.)
        return self._output(h, sigma=t)

    def _time_embedding(self, plan: _Cursor, t, act):
        """(B,) -> (B, 4·nf) float32, or None when not conditional. Float32: it is tiny."""
        cfg = self.config
        if cfg.is_buddy and not cfg.conditional:
            return None  # BUDDy builds no embedding at all then
        if cfg.embedding_type == "fourier":
            spec = plan.take("fourier")
            projection = L.GaussianFourierProjection(spec.out_ch, cfg.fourier_scale, name=spec.name)
            if t is None:
                # StoRM's discriminative net: no time input, but `W` exists (unused). Create it
                # on a dummy input so checkpoints map one to one; XLA drops the dead compute.
                projection(jnp.ones((1,), jnp.float32))
                return None
            # SGMSE and StoRM project log t; BUDDy its conditioning value (EDM's c_noise) as is.
            s_in = t if cfg.is_buddy else jnp.log(t)
            temb = projection(s_in)
        else:
            temb = L.timestep_embedding(t, cfg.nf)
        if not cfg.conditional:
            return None
        temb = _dense32(plan.take("dense"))(temb)
        return _dense32(plan.take("dense"))(act(temb))

    def _encoder(self, plan: _Cursor, blocks: "_Blocks", inputs, temb) -> list:
        """The down path: returns every skip tensor, (B, F/2^l, T/2^l, C_l), deepest last."""
        cfg = self.config
        input_pyramid = inputs
        spec = plan.take("conv3x3")
        hs = [L.conv3x3(spec.out_ch, spec.name, self.dtype)(inputs)]
        for level in range(cfg.num_resolutions):
            for _ in range(cfg.num_res_blocks):
                h = blocks.resblock(plan.take("resblock"))(hs[-1], temb)
                if h.shape[1] in cfg.attn_resolutions:  # the reference tests F/2^l, not T/2^l
                    h = blocks.attn(plan.take("attn"))(h)
                hs.append(h)
            if level == cfg.num_resolutions - 1:
                break
            if cfg.resblock_type == "ddpm":
                h = blocks.downsample(plan.take("downsample"))(hs[-1])
            else:
                h = blocks.resblock(plan.take("resblock"))(hs[-1], temb)
            if cfg.progressive_input == "input_skip":
                # The reference's parameter-free `pyramid_downsample`.
                if cfg.fir:
                    input_pyramid = L.downsample_2d(input_pyramid, cfg.fir_kernel)
                else:
                    input_pyramid = L.naive_downsample_2d(input_pyramid)
                spec = plan.take("combine")
                h = L.Combine(spec.out_ch, cfg.progressive_combine, self.dtype, name=spec.name)(input_pyramid, h)
            elif cfg.progressive_input == "residual":
                input_pyramid = blocks.downsample(plan.take("downsample"))(input_pyramid)
                input_pyramid = h = L.skip_add(input_pyramid, h, cfg.skip_rescale)
            hs.append(h)
        return hs

    def _decoder(self, plan: _Cursor, blocks: "_Blocks", h, hs: list, temb, act):
        """The up path, consuming `hs`: returns the input-channel map (B, F, T, C), float32."""
        cfg = self.config
        pyramid = None
        for level in reversed(range(cfg.num_resolutions)):
            for _ in range(cfg.num_res_blocks + 1):
                skip = hs.pop()
                h = blocks.resblock(plan.take("resblock"))(jnp.concatenate([h, skip.astype(h.dtype)], axis=-1), temb)
            if h.shape[1] in cfg.attn_resolutions:
                h = blocks.attn(plan.take("attn"))(h)
            if cfg.progressive != "none":
                if level == cfg.num_resolutions - 1:
                    pyramid = _norm_act_conv(plan, h, act)
                elif cfg.progressive == "output_skip":
                    # The C-channel output pyramid stays float32: it is the network's output.
                    pyramid = L.upsample_2d(pyramid, cfg.fir_kernel) if cfg.fir else L.naive_upsample_2d(pyramid)
                    pyramid = pyramid + _norm_act_conv(plan, h, act)
                else:  # residual: the pyramid joins the main path
                    pyramid = blocks.upsample(plan.take("upsample"))(pyramid)
                    pyramid = h = L.skip_add(pyramid, h.astype(pyramid.dtype), cfg.skip_rescale)
            if level != 0:
                if cfg.resblock_type == "ddpm":
                    h = blocks.upsample(plan.take("upsample"))(h)
                else:
                    h = blocks.resblock(plan.take("resblock"))(h, temb)
        assert not hs
        if cfg.progressive == "output_skip":
            return pyramid
        return _norm_act_conv(plan, h, act)

    def _output(self, h, sigma):
        """(B, F, T, C) -> complex64 (B, 1, F, T): 1x1 conv to (re, im), division by sigma
        (never for ncsnpp_v2, ncsnpp_buddy and StoRM's discriminative net, whose sigma may be None)."""
        cfg = self.config
        h = h.astype(jnp.float32)
        if cfg.scale_by_sigma:
            sigma = sigma[:, None, None, None]
        # ncsnpp and ncsnpp_storm divide before the output layer, ncsnpp_48k after it (its bias
        # is divided too).
        if cfg.backbone in ("ncsnpp", "ncsnpp_storm") and cfg.scale_by_sigma:
            h = h / sigma
        h = nn.Conv(
            2, (1, 1), dtype=jnp.float32, param_dtype=jnp.float32, precision=lax.Precision.HIGHEST,
            kernel_init=L.torch_default_kernel_init, bias_init=L.torch_default_bias_init(cfg.total_channels),
            name="output_layer",
        )(h)
        if cfg.backbone == "ncsnpp_48k" and cfg.scale_by_sigma:
            h = h / sigma
        return lax.complex(h[..., 0], h[..., 1])[:, None]


def _dense32(spec: Layer):
    """A Linear of the time-embedding MLP, computed in float32."""
    return nn.Dense(
        spec.out_ch, dtype=jnp.float32, param_dtype=jnp.float32, kernel_init=L.default_init(), name=spec.name
    )


def _norm_act_conv(plan: _Cursor, h, act):
    """act(GroupNorm(h)) then a 3x3 conv, in float32: the output heads (pyramid / final)."""
    norm = plan.take("groupnorm")
    conv = plan.take("conv3x3")
    h = act(L.GroupNorm(L.num_groups(norm.in_ch), dtype=jnp.float32, name=norm.name)(h))
    return L.conv3x3(conv.out_ch, conv.name, jnp.float32, init_scale=conv.init_scale)(h)


@dataclasses.dataclass(frozen=True)
class _Blocks:
    """Factories for the blocks of one config: each takes a plan entry, returns a module."""

    cfg: NCSNppConfig
    act: Any
    dtype: Any
    train: bool
    remat: str = "none"

    def _maybe_remat(self, cls, **static):
        """`cls`, or `cls` under nn.remat with the chosen policy. The module keeps its name, so
        parameter names and the torch import do not depend on the choice."""
        if self.remat == "none":
            return cls
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"remat must be one of {sorted(REMAT_POLICIES)} or 'none', not {self.remat!r}")
        return nn.remat(cls, policy=REMAT_POLICIES[self.remat], **static)

    def resblock(self, spec: Layer):
        """A residual block; call it as block(h, temb)."""
        block = self._resblock(spec)
        return lambda h, temb: block(h, temb, self.train)

    def _resblock(self, spec: Layer):
        cfg = self.cfg
        # static_argnums counts `self`: 3 is `train`, a Python bool that selects code paths.
        if cfg.resblock_type == "ddpm":
            return self._maybe_remat(L.ResnetBlockDDPM, static_argnums=(3,))(
                self.act, out_ch=spec.out_ch, temb_dim=cfg.temb_dim, dropout=cfg.dropout,
                skip_rescale=cfg.skip_rescale, init_scale=cfg.init_scale, dtype=self.dtype, name=spec.name,
            )
        return self._maybe_remat(L.ResnetBlockBigGAN, static_argnums=(3,))(
            self.act, out_ch=spec.out_ch, temb_dim=cfg.temb_dim, up=spec.up, down=spec.down,
            dropout=cfg.dropout, fir=cfg.fir, fir_kernel=cfg.fir_kernel, skip_rescale=cfg.skip_rescale,
            init_scale=cfg.init_scale, dtype=self.dtype, name=spec.name,
        )

    def attn(self, spec: Layer):
        return self._maybe_remat(L.AttnBlock)(
            skip_rescale=self.cfg.skip_rescale, init_scale=spec.init_scale, dtype=self.dtype, name=spec.name
        )

    def downsample(self, spec: Layer):
        return L.Downsample(spec.out_ch, spec.with_conv, self.cfg.fir, self.cfg.fir_kernel, self.dtype, name=spec.name)

    def upsample(self, spec: Layer):
        return L.Upsample(spec.out_ch, spec.with_conv, self.cfg.fir, self.cfg.fir_kernel, self.dtype, name=spec.name)


# ----------------------------------------------------------------------------- public API


# Which intermediate values a rematerialised block keeps for the backward pass (None: none).
REMAT_POLICIES = {
    "full": None,
    "dots": jax.checkpoint_policies.dots_saveable,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def build_backbone(name: str, dtype=jnp.float32, remat: str = "none", **kwargs) -> NCSNpp:
    """The Flax module of backbone `name` ("ncsnpp", "ncsnpp_v2", "ncsnpp_48k", "ncsnpp_buddy",
    "ncsnpp_storm").

    Args:
      name: backbone name as registered in the reference (`VARIANTS`; "ncsnpp_buddy" is
        BUDDy's NCSNpp, whose keywords are its constructor's: time_conditional, input_channels, ...;
        "ncsnpp_storm" is StoRM's NCSNpp: input_channels 6 (score) or discriminative=True).
      dtype: compute dtype (e.g. jnp.bfloat16); parameters are always float32.
      remat: rematerialisation policy of the blocks ("none", "full", "dots", "dots_no_batch").
      **kwargs: the reference constructor's keyword arguments; missing ones take that
        backbone's defaults (`DEFAULTS[name]`).
    Raises:
      ValueError: unknown backbone or invalid value; TypeError: unknown keyword.
    """
    if remat != "none" and remat not in REMAT_POLICIES:
        raise ValueError(f"remat must be one of {sorted(REMAT_POLICIES)} or 'none', not {remat!r}")
    return NCSNpp(make_config(name, **kwargs), dtype=dtype, remat=remat)


def backbone_kwargs(name: str, hparams: Mapping) -> dict:
    """The entries of a flat Lightning hyper-parameter dict that backbone `name` takes.

    The reference passes all hyper-parameters to the constructor, which keeps the ones it
    names and swallows the rest (`**unused_kwargs`); this picks the same ones.
    """
    if name not in DEFAULTS:
        raise ValueError(f"unknown backbone {name!r}; expected one of {VARIANTS}")
    return {k: hparams[k] for k in DEFAULTS[name] if k in hparams}
