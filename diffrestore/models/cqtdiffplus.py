"""CQTdiff+'s U-Net (`Unet_CQT_oct_with_attention`, BABE, Moliner et al. 2023) in Flax.

Reference: github.com/eloimoliner/BABE `networks/cqtdiff+.py` with `conf/network/cqtdiff+.yaml`.
The CQT comes as one (64 bins × T_o frames) block per octave (`cqtdiffplus_cqt`, T_o doubling
from octave to octave), and the U-Net's levels are the octaves: level i adds octave 6 − i
(highest first) on top of the frequency axis, so the frequency extent grows while time shrinks.

Structure (O = 7 octaves, channels Ns[0..O−1], emb = noise embedding):
* encoder level i, octave o = O − 1 − i as C (B, 64, T_o, 2): C2 = Init_i(C) (ResnetBlock with
  1×1 kernels); X = C2 (i = 0) or [C2; X] on the frequency axis; the input pyramid is
  down(C) (i = 0), [down(C); down(pyr)] (0 < i < O − 1), [C; pyr] (last level); X = Res_i(X);
  skip; X = down(X) (i < O − 1); X = (X + P_i(pyr))/√2 with P_i a 5×3 conv 2 -> Ns[i];
* middle: X = Res(X), Xout = Out(X) (a ResnetBlock to 2 channels, projection after the block);
* decoder step k = 0 … O − 1 (level j = O − 1 − k): X = Res([X, skip_j] on channels);
  Xout = (Xout + Out_j(X))/√2; the first 64 rows of Xout are output octave k (lowest first),
  X and Xout go on without their first 64 rows; up(X), up(Xout) for j > 0;
* output: inverse CQT of the 7 octave blocks, cropped to L.
ResnetBlock: optional time attention (norm, 1 + γ, TimeAttentionBlock, gate, residual), then
for each k < num_dils: x0 = x; x = norm(x)·(1 + γ_k); x = (x0 + conv_k(GELU(x))·gate_k)/√2 with
5×3 kernels dilated 2^k along frequency (zero padding), then the optional projection and
(x + res(input))/√2. γ_k and gate_k are Linear(emb). Norms are `BiasFreeGroupNorm(C, 8)`.
Time is resampled with the depthwise "cubic" kernel (up by conv_transpose, which halves a
constant: copied).

Layout: NHWC, (B, F, T, C); the CQT is built inside for the input's length (L ≥ 32768, as the
reference's octave CQT needs).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from diffrestore.audio.cqt import cqtdiffplus_cqt
from diffrestore.models import cqt_blocks as B

# `conf/network/cqtdiff+.yaml` (+ `attention_dict`), flattened; `Ss` and `depth` of the yaml are unused
# by the reference (it takes the depth from cqt.num_octs and always resamples by 2).
DEFAULTS: dict[str, Any] = dict(
    Ns=(64, 96, 96, 128, 128, 256, 256),
    num_dils=(2, 3, 4, 5, 6, 7, 7),
    use_norm=True,
    use_fencoding=False,
    freq_encoding_dim=32,
    emb_dim=256,
    rff_dim=32,
    attention_layers=(0, 0, 0, 0, 0, 0, 0, 0),
    num_heads=8,
    bias_qkv=False,
    use_rel_pos=True,
    rel_pos_num_buckets=32,
    rel_pos_max_distance=64,
    bottleneck_type="res_dil_convs",
    num_bottleneck_layers=1,
    num_octaves=7,
    bins_per_octave=64,
    cqt_window="kaiser",
    cqt_beta=1.0,
    sample_rate=22050,
    kernel_size=(5, 3),
    resample_filter="cubic",
)

BOTTLENECK_TYPES = ("res_dil_convs",)


@dataclasses.dataclass(frozen=True)
class CQTDiffPlusConfig:
    """Options of `Unet_CQT_oct_with_attention`; see `DEFAULTS` for the shipped values.

    Ns, num_dils: channels and dilated convolutions of each level (one per octave).
    use_norm: BiasFreeGroupNorm before every FiLM (the reference cannot run without it).
    use_fencoding, freq_encoding_dim: fixed sinusoidal channels per octave block (off in the yaml).
    emb_dim, rff_dim: noise embedding width and Fourier frequencies.
    attention_layers: one flag per level plus one for the bottleneck (num_octaves + 1 entries);
      num_heads, bias_qkv, use_rel_pos, rel_pos_num_buckets, rel_pos_max_distance: the
      attention blocks (`attention_dict`).
    bottleneck_type, num_bottleneck_layers: the middle ("res_dil_convs" only, as the reference).
    num_octaves, bins_per_octave, cqt_window, cqt_beta, sample_rate: the CQT (`cqtdiffplus_cqt`).
    kernel_size: taps of the dilated convolutions and the pyramid projections (5×3).
    resample_filter: the time resampling kernel ("cubic"; "linear", "lanczos3" as in the reference table).
    """

    Ns: tuple = DEFAULTS["Ns"]
    num_dils: tuple = DEFAULTS["num_dils"]
    use_norm: bool = True
    use_fencoding: bool = False
    freq_encoding_dim: int = 32
    emb_dim: int = 256
    rff_dim: int = 32
    attention_layers: tuple = DEFAULTS["attention_layers"]
    num_heads: int = 8
    bias_qkv: bool = False
    use_rel_pos: bool = True
    rel_pos_num_buckets: int = 32
    rel_pos_max_distance: int = 64
    bottleneck_type: str = "res_dil_convs"
    num_bottleneck_layers: int = 1
    num_octaves: int = 7
    bins_per_octave: int = 64
    cqt_window: str = "kaiser"
    cqt_beta: float = 1.0
    sample_rate: float = 22050
    kernel_size: tuple = (5, 3)
    resample_filter: str = "cubic"

    @property
    def window(self):
        """The `window` argument of `cqtdiffplus_cqt`."""
        return ("kaiser", self.cqt_beta) if self.cqt_window == "kaiser" else self.cqt_window

    @property
    def input_channels(self) -> int:
        return 2 + (2 * self.freq_encoding_dim if self.use_fencoding else 0)


def make_config(**kwargs) -> CQTDiffPlusConfig:
    """Validated config from constructor keywords (lists become tuples).

    Raises:
      TypeError: an unknown keyword. ValueError: inconsistent values.
    """
    unknown = sorted(set(kwargs) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"cqtdiffplus takes no option(s) {unknown}; it accepts {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **kwargs}
    cfg = CQTDiffPlusConfig(
        Ns=tuple(int(n) for n in opts["Ns"]),
        num_dils=tuple(int(n) for n in opts["num_dils"]),
        use_norm=bool(opts["use_norm"]),
        use_fencoding=bool(opts["use_fencoding"]),
        freq_encoding_dim=int(opts["freq_encoding_dim"]),
        emb_dim=int(opts["emb_dim"]),
        rff_dim=int(opts["rff_dim"]),
        attention_layers=tuple(int(bool(a)) for a in opts["attention_layers"]),
        num_heads=int(opts["num_heads"]),
        bias_qkv=bool(opts["bias_qkv"]),
        use_rel_pos=bool(opts["use_rel_pos"]),
        rel_pos_num_buckets=int(opts["rel_pos_num_buckets"]),
        rel_pos_max_distance=int(opts["rel_pos_max_distance"]),
        bottleneck_type=str(opts["bottleneck_type"]),
        num_bottleneck_layers=int(opts["num_bottleneck_layers"]),
        num_octaves=int(opts["num_octaves"]),
        bins_per_octave=int(opts["bins_per_octave"]),
        cqt_window=str(opts["cqt_window"]),
        cqt_beta=float(opts["cqt_beta"]),
        sample_rate=float(opts["sample_rate"]),
        kernel_size=tuple(int(k) for k in opts["kernel_size"]),
        resample_filter=str(opts["resample_filter"]),
    )
    _validate(cfg)
    return cfg


def _validate(cfg: CQTDiffPlusConfig) -> None:
    o = cfg.num_octaves
    if o < 2:
        raise ValueError(f"num_octaves must be at least 2, got {o}")
    if len(cfg.Ns) != o or len(cfg.num_dils) != o:
        raise ValueError(f"Ns and num_dils need one entry per octave ({o}), got {cfg.Ns} and {cfg.num_dils}")
    if len(cfg.attention_layers) != o + 1:
        raise ValueError(f"attention_layers needs num_octaves + 1 = {o + 1} flags (levels, bottleneck), "
                         f"got {cfg.attention_layers}")
    if not cfg.use_norm:
        raise ValueError("use_norm=False: the reference's ResnetBlock iterates over `self.norm`, which it only "
                         "builds when use_norm is set, so no such network can run")
    if any(n % 8 for n in cfg.Ns):
        raise ValueError(f"BiasFreeGroupNorm(C, 8) needs channel counts divisible by 8, got Ns={cfg.Ns}")
    if cfg.bottleneck_type not in BOTTLENECK_TYPES:
        raise ValueError(f"bottleneck_type {cfg.bottleneck_type!r} is not implemented (reference: {BOTTLENECK_TYPES})")
    if cfg.num_bottleneck_layers < 1:
        raise ValueError("num_bottleneck_layers must be at least 1 (the decoder starts from the bottleneck output)")
    if min(cfg.num_dils) < 1 or min(cfg.Ns) < 1 or cfg.num_heads < 1:
        raise ValueError(f"invalid network size: Ns={cfg.Ns}, num_dils={cfg.num_dils}, num_heads={cfg.num_heads}")
    if len(cfg.kernel_size) != 2 or any(k % 2 == 0 for k in cfg.kernel_size):
        raise ValueError(f"kernel_size must be two odd numbers, got {cfg.kernel_size}")
    if cfg.cqt_window not in ("kaiser", "hann"):
        raise ValueError(f"cqt_window must be 'kaiser' or 'hann', got {cfg.cqt_window!r}")
    B.resample_kernel(cfg.resample_filter)


# ----------------------------------------------------------------------------- blocks


class ResnetBlock(nn.Module):
    """CQTdiff+'s ResnetBlock(dim, dim_out, ...); see the module docstring.

    N = dim_out (proj_place 'before': `proj_in` maps dim -> N first) or dim ('after':
    `proj_out` maps N -> dim_out last). `res_conv` (dim -> dim_out) on the block's input.
    """

    dim_out: int
    num_dils: int
    kernel_size: tuple = (5, 3)
    proj_place: str = "before"
    attention: bool = False
    num_bins: int = 0  # frequency rows, for the attention block
    cfg: CQTDiffPlusConfig | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, inputs, emb):
        """inputs: (B, F, T, dim), emb: (B, emb_dim) float32 -> (B, F, T, dim_out) in `dtype`."""
        cfg = self.cfg
        dim = inputs.shape[-1]
        n = self.dim_out if self.proj_place == "before" else dim
        emb_dim = emb.shape[-1]
        x = inputs.astype(self.dtype)
        if dim != n:
            x = B.Conv2d(n, dtype=self.dtype, name="proj_in")(x)

        def modulation(name):  # (1 + γ) of an `affine`, in float32
            return 1.0 + B.linear32(n, name, emb_dim, zero_bias=True)(emb)[:, None, None, :]

        def gate(name):  # BABE initialises the gates at 1e-7 of the usual scale
            return B.linear32(n, name, emb_dim, weight_gain=1e-7, zero_bias=True)(emb)[:, None, None, :]

        if self.attention:
            x0 = x
            h = B.BiasFreeGroupNorm(8, dtype=jnp.float32, name="norm2")(x) * modulation("affine2")
            h = B.TimeAttentionBlock(
                cfg.num_heads, self.num_bins, cfg.bias_qkv, cfg.use_rel_pos, cfg.rel_pos_num_buckets,
                cfg.rel_pos_max_distance, self.dtype, name="attn_block",
            )(h.astype(self.dtype))
            x = (h * gate("gate2").astype(self.dtype) + x0) * B.INV_SQRT2

        for k in range(self.num_dils):
            x0 = x
            h = B.BiasFreeGroupNorm(8, dtype=jnp.float32, name=f"norm_{k}")(x) * modulation(f"affine_{k}")
            conv = B.Conv2d(n, self.kernel_size, (2**k, 1), "zeros", dtype=self.dtype, name=f"H_{k}")
            x = (x0 + conv(B.gelu(h.astype(self.dtype))) * gate(f"gate_{k}").astype(self.dtype)) * B.INV_SQRT2

        if self.proj_place == "after" and n != self.dim_out:
            x = B.Conv2d(self.dim_out, dtype=self.dtype, name="proj_out")(x)
        res = inputs.astype(self.dtype)
        if dim != self.dim_out:
            res = B.Conv2d(self.dim_out, dtype=self.dtype, name="res_conv")(res)
        return (x + res) * B.INV_SQRT2


# ----------------------------------------------------------------------------- the network


class CQTDiffPlusUNet(nn.Module):
    """CQTdiff+'s `Unet_CQT_oct_with_attention` as a Flax module.

    Call as `module.apply({"params": params}, x, c_noise)` with x float32 (B, L) waveforms and
    c_noise (B,) or (B, 1) (EDM's ln(σ)/4); returns F float32 (B, L). The octave CQT is built
    for L (the reference needs L ≥ 32768). The noise embedding is sown as `intermediates/emb`.
    BABE's sampler then removes what the CQT cannot represent from D: `cqt.apply_hpf_DC`.

    Attributes:
      config: validated options (`make_config`).
      dtype: compute dtype of the convolutions and attention matmuls; parameters, the CQT, norm
        statistics, embeddings, FiLM/gates, softmax and the output path stay float32.
    """

    config: CQTDiffPlusConfig
    dtype: Any = jnp.float32

    def cqt(self, length: int):
        """The network's front end for signals of `length` samples."""
        cfg = self.config
        return cqtdiffplus_cqt(length, cfg.sample_rate, cfg.num_octaves, cfg.bins_per_octave, cfg.window)

    @nn.compact
    def __call__(self, x, c_noise):
        cfg = self.config
        if x.ndim != 2:
            raise ValueError(f"x must be (B, L) waveforms, got shape {x.shape}")
        batch, length = x.shape
        c_noise = jnp.asarray(c_noise, jnp.float32).reshape(-1)
        if c_noise.shape != (batch,):
            raise ValueError(f"c_noise must be (B,) or (B, 1) with B = {batch}, got {c_noise.size} values")
        emb = B.NoiseEmbedding(cfg.emb_dim, cfg.rff_dim, zero_bias=True, name="embedding")(c_noise)
        self.sow("intermediates", "emb", emb)

        cqt = self.cqt(length)
        frames = cqt.frames_per_octave
        if any(frames[o + 1] != 2 * frames[o] for o in range(len(frames) - 1)):
            raise ValueError(
                f"L = {length}: the octave CQT has {frames} frames per octave; the U-Net needs each octave "
                "to have twice the frames of the one below (use L >= 32768, e.g. a power of two)"
            )
        octaves = [jnp.stack([c.real, c.imag], axis=-1) for c in cqt.forward(x.astype(jnp.float32))]
        taps = B.resample_kernel(cfg.resample_filter)
        down = lambda v: B.fir_downsample_time(v, taps)  # noqa: E731
        up = lambda v: B.fir_upsample_time(v, taps)  # noqa: E731
        bins = cfg.bins_per_octave
        o_count = cfg.num_octaves

        def block(dim_out, num_dils, name, level=None, kernel=None, proj_place="before", attention=False):
            rows = 0 if level is None else (level + 1) * bins
            return ResnetBlock(dim_out, num_dils, kernel or cfg.kernel_size, proj_place, attention, rows, cfg,
                               self.dtype, name=name)

        skips = []
        h = pyr = None
        for i in range(o_count):
            c = octaves[o_count - 1 - i]  # (B, 64, T_o, 2), highest octave first
            c2 = c
            if cfg.use_fencoding:
                c2 = B.FreqEncodingRFF(bins, cfg.freq_encoding_dim, name=f"freq_encodings_{i}")(c)
            dim_in = cfg.Ns[max(i - 1, 0)]
            c2 = block(dim_in, 1, f"downs_{i}_0", kernel=(1, 1))(c2, emb)
            if i == 0:
                h, pyr = c2, down(c)
            elif i < o_count - 1:
                pyr = jnp.concatenate([down(c), down(pyr)], axis=1)
                h = jnp.concatenate([c2, h], axis=1)
            else:
                pyr = jnp.concatenate([c, pyr], axis=1)
                h = jnp.concatenate([c2, h], axis=1)
            h = block(cfg.Ns[i], cfg.num_dils[i], f"downs_{i}_2", level=i, attention=bool(cfg.attention_layers[i]))(h, emb)
            skips.append(h)
            if i < o_count - 1:
                h = down(h)
            proj = B.Conv2d(cfg.Ns[i], cfg.kernel_size, dtype=self.dtype, name=f"downs_{i}_1")(pyr)
            h = (h + proj) * B.INV_SQRT2

        out = None
        for b in range(cfg.num_bottleneck_layers):
            h = block(cfg.Ns[-1], cfg.num_dils[-1], f"middle_{b}_1", level=o_count - 1,
                      attention=bool(cfg.attention_layers[-1]))(h, emb)
            out = block(2, 1, f"middle_{b}_0", kernel=(1, 1), proj_place="after")(h, emb).astype(jnp.float32)

        octaves_out = []
        for k in range(o_count):
            j = o_count - 1 - k
            h = jnp.concatenate([h, skips.pop().astype(h.dtype)], axis=-1)
            dim_out = cfg.Ns[max(j - 1, 0)]
            h = block(dim_out, cfg.num_dils[j], f"ups_{k}_1", level=j, attention=bool(cfg.attention_layers[j]))(h, emb)
            head = block(2, 1, f"ups_{k}_0", kernel=(1, 1), proj_place="after")(h, emb)
            out = (out + head.astype(jnp.float32)) * B.INV_SQRT2
            h = h[:, bins:]
            octaves_out.append(lax.complex(out[:, :bins, :, 0], out[:, :bins, :, 1]))  # octave k
            out = out[:, bins:]
            if j > 0:
                h, out = up(h), up(out)

        return cqt.inverse(octaves_out)[:, :length]


def build(dtype=jnp.float32, **kwargs) -> CQTDiffPlusUNet:
    """The Flax module for constructor keywords `kwargs` (defaults: `DEFAULTS`)."""
    return CQTDiffPlusUNet(make_config(**kwargs), dtype=dtype)


def buffers(cfg: CQTDiffPlusConfig) -> dict:
    """The reference's non-parameter state_dict entries (the resampling kernels), torch layout."""
    taps = B.resample_kernel(cfg.resample_filter)
    return {"downsamplerT.kernel": taps, "upsamplerT.kernel": taps}
