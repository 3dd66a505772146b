"""CQT-Diff's U-Net (`Unet_CQT`, Moliner, Lehtinen & Välimäki, ICASSP 2023) in Flax.

Reference: github.com/eloimoliner/CQTdiff `src/models/unet_cqt.py` with `conf/conf.yaml`.
F(x, c_noise): waveform (B, L) -> CQT (450 rows × T frames, real and imaginary channels) ->
U-Net over (frequency, time) that downsamples time only -> inverse CQT -> waveform (B, L).

Structure (depth D = 6, channels Ns[0..D]):
* noise embedding: random Fourier features of c_noise, MLP 64 -> 128 -> 256 -> 512 (ReLU after
  every layer);
* input: [Re, Im, 64 fixed frequency-encoding channels] -> `init_conv` (5×3, reflect, no bias);
* encoder level i: ResnetBlock; skip; then (i < D − 1) sinc resampling of time by 1/2 for the
  features and for the input pyramid (the CQT itself), and (features + 1×1(pyramid))/√2;
* middle ResnetBlock; decoder level j = D − 1 … 0: concat(crop(features), skip) -> ResnetBlock ->
  output pyramid (pyr + 1×1(features))/√2 -> time ×2 for both (j > 0);
* output: inverse CQT of the 2-channel pyramid, cropped to L.
ResnetBlock: x·γ (FiLM without the 1 + γ, γ = Linear(emb)), y = 1×1(GELU(x)), eight
y = (y + conv(GELU(y)))/√2 with 5×3 kernels dilated 1, 2, …, 128 along frequency (reflect
padding), out = (y + res(x))/√2.

Copied quirks (see the fixture README): the last decoder level has no combiner of its own and
reuses the previous level's (`ups.{D−2}.2`); FiLM is a plain product; padding is reflect; the
decoder crops its features centred (CropConcatBlock) but the pyramid at the start (`pyr[..., :T]`).

Layout: NHWC, (B, F, T, C); the CQT is built inside for the input's length.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from diffrestore.audio.cqt import cqtdiff_cqt
from diffrestore.models import cqt_blocks as B

# The reference's (hard-coded) values; `Ns` keeps only the depth + 1 entries the network uses.
DEFAULTS: dict[str, Any] = dict(
    Ns=(32, 64, 64, 128, 128, 128, 128, 128),
    depth=6,
    num_layers=8,
    kernel_size=(5, 3),
    use_norm=False,
    freq_encoding_dim=32,
    emb_dim=512,
    rff_dim=32,
    num_octaves=7,
    bins_per_octave=64,
    sample_rate=22050,
)


@dataclasses.dataclass(frozen=True)
class CQTDiffConfig:
    """Options of `Unet_CQT`; see `DEFAULTS` for the shipped values.

    Ns: channels per level (Ns[0..depth−1]) and of the middle block (Ns[depth], which must equal
      Ns[depth−1]: the reference feeds the last encoder output into it).
    depth: levels (6); the time axis is halved depth − 1 times.
    num_layers: dilated convolutions per ResnetBlock (8: dilations 1 … 128 along frequency).
    kernel_size: (frequency, time) taps of the dilated and initial convolutions.
    use_norm: GroupNorm(8, C) before FiLM (`args.cqt.use_norm`).
    freq_encoding_dim: N of the fixed frequency-encoding channels (2N = 64 of them; the
      reference always uses them, its `use_fencoding` is hard-coded True).
    emb_dim, rff_dim: noise embedding width and number of Fourier frequencies.
    num_octaves, bins_per_octave, sample_rate: the CQT (`cqtdiff_cqt`).
    """

    Ns: tuple = (32, 64, 64, 128, 128, 128, 128)
    depth: int = 6
    num_layers: int = 8
    kernel_size: tuple = (5, 3)
    use_norm: bool = False
    freq_encoding_dim: int = 32
    emb_dim: int = 512
    rff_dim: int = 32
    num_octaves: int = 7
    bins_per_octave: int = 64
    sample_rate: float = 22050

    @property
    def num_rows(self) -> int:
        """CQT rows F: the log-spaced bins plus DC and Nyquist."""
        return self.num_octaves * self.bins_per_octave + 2

    def level_channels(self):
        """(dim_in, dim_out) of the encoder blocks, as the reference builds them."""
        ns = self.Ns
        return [(ns[max(i - 1, 0)], ns[i]) for i in range(self.depth)]


def make_config(**kwargs) -> CQTDiffConfig:
    """Validated config from constructor keywords (lists become tuples; extra Ns entries are dropped).

    Raises:
      TypeError: an unknown keyword. ValueError: inconsistent values.
    """
    unknown = sorted(set(kwargs) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"cqtdiff takes no option(s) {unknown}; it accepts {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **kwargs}
    depth = int(opts["depth"])
    ns = tuple(int(n) for n in opts["Ns"])
    if depth < 2:
        raise ValueError(f"depth must be at least 2 (the last decoder level reuses the one before), got {depth}")
    if len(ns) < depth + 1:
        raise ValueError(f"Ns needs depth + 1 = {depth + 1} entries (levels and middle block), got {ns}")
    ns = ns[: depth + 1]
    if ns[depth] != ns[depth - 1]:
        raise ValueError(f"Ns[depth] must equal Ns[depth - 1] (the middle block takes the last level's output), got {ns}")
    kernel = tuple(int(k) for k in opts["kernel_size"])
    if len(kernel) != 2 or any(k % 2 == 0 for k in kernel):
        raise ValueError(f"kernel_size must be two odd numbers, got {kernel}")
    cfg = CQTDiffConfig(
        Ns=ns, depth=depth, num_layers=int(opts["num_layers"]), kernel_size=kernel,
        use_norm=bool(opts["use_norm"]),
        freq_encoding_dim=int(opts["freq_encoding_dim"]), emb_dim=int(opts["emb_dim"]),
        rff_dim=int(opts["rff_dim"]), num_octaves=int(opts["num_octaves"]),
        bins_per_octave=int(opts["bins_per_octave"]), sample_rate=float(opts["sample_rate"]),
    )
    if cfg.use_norm and any(n % 8 for n in ns):
        raise ValueError(f"use_norm=True needs channel counts divisible by 8 (GroupNorm(8, C)), got {ns}")
    if min(ns) < 1 or cfg.num_layers < 1:
        raise ValueError(f"invalid network size: Ns={ns}, num_layers={cfg.num_layers}")
    return cfg


# ----------------------------------------------------------------------------- blocks


class Film(nn.Module):
    """`Film(dim, bias=False)`: γ = output_layer(emb), a Linear 512 -> dim (with a bias), float32."""

    features: int

    @nn.compact
    def __call__(self, emb):
        return B.linear32(self.features, "output_layer", emb.shape[-1])(emb)


class GatedResidualLayer(nn.Module):
    """`Gated_residual_layer`: (x + conv(GELU(x)))/√2, conv dilated along frequency, reflect padding."""

    kernel_size: tuple
    dilation: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        conv = B.Conv2d(x.shape[-1], self.kernel_size, (self.dilation, 1), "reflect", dtype=self.dtype, name="conv")
        return (x + conv(B.gelu(x))) * B.INV_SQRT2


class ResnetBlock(nn.Module):
    """CQT-Diff's ResnetBlock(dim, dim_out, bias=False); see the module docstring."""

    dim_out: int
    num_layers: int
    kernel_size: tuple
    use_norm: bool
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, emb):
        """x: (B, F, T, dim), emb: (B, emb_dim) float32 -> (B, F, T, dim_out) in `dtype`."""
        dim = x.shape[-1]
        gamma = Film(dim, name="film")(emb)
        if self.use_norm:
            # torch.nn.GroupNorm(8, C): biased variance, eps 1e-5, two-pass for float32 accuracy.
            norm = nn.GroupNorm(8, epsilon=1e-5, dtype=jnp.float32, param_dtype=jnp.float32,
                                use_fast_variance=False, name="gnorm")
            x = norm(x.astype(jnp.float32))
        x = x.astype(self.dtype) * gamma[:, None, None, :].astype(self.dtype)
        y = B.Conv2d(self.dim_out, dtype=self.dtype, name="first_conv_1")(B.gelu(x))
        for i in range(self.num_layers):
            y = GatedResidualLayer(self.kernel_size, 2**i, self.dtype, name=f"H_{i}")(y)
        # The shortcut sees the FiLM-scaled input, as in the reference.
        res = x if dim == self.dim_out else B.Conv2d(self.dim_out, dtype=self.dtype, name="res_conv")(x)
        return (y + res) * B.INV_SQRT2


class Combiner(nn.Module):
    """`CombinerDown` / `CombinerUp`: a bias-free 1×1 conv named `conv1x1`.

    down: (features + conv1x1(pyramid))/√2.  up: conv1x1(features) starts the output pyramid,
    or (pyramid[:, :, :T] + conv1x1(features))/√2 (the time crop is at the start, not centred).
    The output pyramid is kept in float32: it is the network's output.
    """

    features: int
    up: bool
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, pyr, x):
        if self.up:
            # CombinerUp's weight starts at zero in the reference.
            conv = B.Conv2d(self.features, dtype=jnp.float32, kernel_init=nn.initializers.zeros, name="conv1x1")
            h = conv(x.astype(jnp.float32))
            if pyr is None:
                return h
            return (pyr[:, :, : h.shape[2]] + h) * B.INV_SQRT2
        h = B.Conv2d(self.features, dtype=self.dtype, name="conv1x1")(pyr)
        return (h + x.astype(h.dtype)) * B.INV_SQRT2


def crop_concat(x, skip):
    """`CropConcatBlock(x, skip)`: x cropped (centred) to the skip's frequency/time size, then [x, skip]."""
    df = (x.shape[1] - skip.shape[1]) // 2
    dt = (x.shape[2] - skip.shape[2]) // 2
    x = x[:, df : df + skip.shape[1], dt : dt + skip.shape[2]]
    return jnp.concatenate([x, skip.astype(x.dtype)], axis=-1)


def _time_down(x):
    # torchaudio Resample(4096, 2048): the reference's Downsample(S=2).
    return B.sinc_resample_time(x, 2, 1, axis=2)


def _time_up(x):
    # torchaudio Resample(4096, 8192): the reference's Upsample(S=2).
    return B.sinc_resample_time(x, 1, 2, axis=2)


# ----------------------------------------------------------------------------- the network


class CQTDiffUNet(nn.Module):
    """CQT-Diff's `Unet_CQT` as a Flax module.

    Call as `module.apply({"params": params}, x, c_noise)` with x float32 (B, L) waveforms and
    c_noise (B,) or (B, 1) (EDM's ln(σ)/4); returns F float32 (B, L). The CQT is built for L.
    The noise embedding is sown as `intermediates/emb`.

    Attributes:
      config: validated options (`make_config`).
      dtype: compute dtype of the convolutions (e.g. jnp.bfloat16); parameters, the CQT, the
        noise embedding, FiLM and the output pyramid stay float32.
    """

    config: CQTDiffConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, c_noise):
        cfg = self.config
        if x.ndim != 2:
            raise ValueError(f"x must be (B, L) waveforms, got shape {x.shape}")
        batch, length = x.shape
        c_noise = jnp.asarray(c_noise, jnp.float32).reshape(-1)
        if c_noise.shape != (batch,):
            raise ValueError(f"c_noise must be (B,) or (B, 1) with B = {batch}, got {c_noise.size} values")
        emb = B.NoiseEmbedding(cfg.emb_dim, cfg.rff_dim, name="embedding")(c_noise)
        self.sow("intermediates", "emb", emb)

        cqt = cqtdiff_cqt(length, cfg.sample_rate, cfg.num_octaves, cfg.bins_per_octave)
        coeffs = cqt.forward(x.astype(jnp.float32))  # (B, F, T) complex64
        spec = jnp.stack([coeffs.real, coeffs.imag], axis=-1)  # (B, F, T, 2)
        pyr = spec
        spec = B.FreqEncodingRFF(cfg.num_rows, cfg.freq_encoding_dim, name="freq_encoding")(spec)
        h = B.Conv2d(cfg.Ns[0], cfg.kernel_size, padding="reflect", dtype=self.dtype, name="init_conv")(spec)

        block = lambda dim_out, name: ResnetBlock(  # noqa: E731
            dim_out, cfg.num_layers, cfg.kernel_size, cfg.use_norm, self.dtype, name=name)
        skips = []
        for i, (_, dim_out) in enumerate(cfg.level_channels()):
            h = block(dim_out, f"downs_{i}_0")(h, emb)
            skips.append(h)
            if i < cfg.depth - 1:
                h, pyr = _time_down(h), _time_down(pyr)
                h = Combiner(dim_out, up=False, dtype=self.dtype, name=f"downs_{i}_2")(pyr, h)
        h = block(cfg.Ns[cfg.depth], "middle_0_0")(h, emb)

        pyr = None
        combiner = None
        for k in range(cfg.depth):
            j = cfg.depth - 1 - k
            h = crop_concat(h, skips.pop())
            h = block(cfg.Ns[max(j - 1, 0)], f"ups_{k}_0")(h, emb)
            if j > 0:
                combiner = Combiner(2, up=True, name=f"ups_{k}_2")
            # At j = 0 the reference calls the combiner left over from the loop (ups.{D-2}.2).
            pyr = combiner(pyr, h)
            if j > 0:
                h, pyr = _time_up(h), _time_up(pyr)

        out = cqt.inverse(lax.complex(pyr[..., 0], pyr[..., 1]))
        return out[:, :length]


def build(dtype=jnp.float32, **kwargs) -> CQTDiffUNet:
    """The Flax module for constructor keywords `kwargs` (defaults: `DEFAULTS`)."""
    return CQTDiffUNet(make_config(**kwargs), dtype=dtype)


def buffers(cfg: CQTDiffConfig) -> dict:
    """The reference's non-parameter state_dict entries (torchaudio's resampling kernels), torch layout.

    They are constants here; a checkpoint's copies are checked against these.
    """
    down, _ = B.sinc_resample_kernel(2, 1)
    up, _ = B.sinc_resample_kernel(1, 2)
    out = {}
    for i in range(cfg.depth - 1):
        out[f"downs.{i}.1.resample.kernel"] = down[:, None, :]
    for k in range(cfg.depth - 1):
        out[f"ups.{k}.1.resample.kernel"] = up[:, None, :]
    return out
