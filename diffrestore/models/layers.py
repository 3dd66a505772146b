"""Building blocks of NCSN++ (Song et al., 2021) as SGMSE uses them, in Flax, channels last.

Every tensor is NHWC: (batch, frequency, frames, channels). Submodule and parameter names
follow the PyTorch reference (`GroupNorm_0`, `Conv_0`, `Dense_0`, `NIN_0`, ...) so that
`torch_import` can map a state_dict by name; leaves are Flax's (`kernel`, `bias`, `scale`).

Precision: parameters are float32; convolutions and matmuls run in `dtype`; GroupNorm
statistics and everything touching the time embedding run in float32.

The FIR resampling of StyleGAN2 (`upfirdn2d`) runs as two 1-D passes (the kernels are outer
products of 1-D taps): zero insertion and padding are one `lax.pad`, the filter a weighted
sum of a few shifted (strided, when decimating) slices. XLA fuses that into one loop; the
equivalent depthwise convolution with `lhs_dilation` was ~100x slower than a 3x3 conv on CPU.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Dtype = Any

_NHWC = ("NHWC", "HWIO", "NHWC")
# A Python float, not np.float64: a strongly typed scalar would silently promote bf16 to f32.
_SQRT2 = math.sqrt(2.0)


# ----------------------------------------------------------------------------- activations

ACTIVATIONS: dict[str, Callable] = {
    "swish": jax.nn.silu,
    "relu": jax.nn.relu,
    "elu": jax.nn.elu,
    "lrelu": lambda x: jax.nn.leaky_relu(x, negative_slope=0.2),
}


def get_act(name: str) -> Callable:
    """The activation the reference's `get_act(name)` returns (swish = SiLU)."""
    try:
        return ACTIVATIONS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown nonlinearity {name!r}; expected one of {sorted(ACTIVATIONS)}") from None


def skip_add(x, h, skip_rescale: bool):
    """Residual sum, divided by sqrt(2) when `skip_rescale` keeps the variance constant."""
    return (x + h) / _SQRT2 if skip_rescale else x + h


# ----------------------------------------------------------------------------- initializers


def default_init(scale: float = 1.0):
    """DDPM's initializer: variance scaling, fan_avg, uniform; scale 0 means 1e-10.

    Flax kernels are (kh, kw, in, out) / (in, out), so the default fan axes match the
    reference's (out, in, kh, kw) convention.
    """
    scale = 1e-10 if scale == 0 else scale
    return nn.initializers.variance_scaling(scale, "fan_avg", "uniform")


def torch_default_bias_init(fan_in: int):
    """PyTorch's default bias init of nn.Conv2d / nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


# PyTorch's default weight init of nn.Conv2d (kaiming_uniform with a=sqrt(5)): bound 1/sqrt(fan_in).
torch_default_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def conv3x3(features: int, name: str, dtype: Dtype, init_scale: float = 1.0, stride: int = 1, padding=1):
    """`ddpm_conv3x3`: 3x3 convolution, 'same' padding (1) unless told otherwise."""
    return nn.Conv(
        features, (3, 3), strides=(stride, stride), padding=padding, dtype=dtype,
        param_dtype=jnp.float32, kernel_init=default_init(init_scale), name=name,
    )


def conv1x1(features: int, name: str, dtype: Dtype, init_scale: float = 1.0):
    """`ddpm_conv1x1`: a per-pixel linear map of the channels."""
    return nn.Conv(
        features, (1, 1), padding=0, dtype=dtype, param_dtype=jnp.float32,
        kernel_init=default_init(init_scale), name=name,
    )


# ----------------------------------------------------------------------------- normalisation


class GroupNorm(nn.Module):
    """torch.nn.GroupNorm(num_groups, C, eps) on NHWC, statistics in float32.

    Two-pass mean/variance (not E[x²]−E[x]²) so float32 results match PyTorch closely. Each
    pass sums over (H, W) per channel first and then over the channels of a group: written as
    one reduction over (H, W, C/G) of a 5-D view, XLA:CPU ran it 2x slower (forward) and 3x
    slower (gradient) at (1, 256, 256, 128); GroupNorm was 17 % of the SGMSE+ forward there.
    Attributes:
      num_groups: groups over the channel axis; C must be divisible by it.
      epsilon: added to the variance (the reference uses 1e-6).
      dtype: dtype of the output.
    """

    num_groups: int
    epsilon: float = 1e-6
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        """x: (B, H, W, C) -> (B, H, W, C) in `dtype`."""
        b, h, w, c = x.shape
        g = self.num_groups
        if g < 1 or c % g:
            raise ValueError(f"GroupNorm: {c} channels cannot form {g} groups")
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        x = x.astype(jnp.float32)
        per_group = h * w * (c // g)

        def group_mean_per_channel(v):
            # (B, H, W, C) -> the mean over each channel's group, broadcastable as (B, 1, 1, C).
            sums = jnp.sum(v, axis=(1, 2)).reshape(b, g, c // g).sum(axis=-1) / per_group
            return jnp.repeat(sums, c // g, axis=1)[:, None, None, :]

        centred = x - group_mean_per_channel(x)
        var = group_mean_per_channel(jnp.square(centred))
        return (centred * lax.rsqrt(var + self.epsilon) * scale + bias).astype(self.dtype)


def num_groups(channels: int) -> int:
    """The reference's group count for a GroupNorm over `channels`: min(C // 4, 32)."""
    return min(channels // 4, 32)


# ----------------------------------------------------------------------------- FIR resampling


def setup_kernel(k: Sequence) -> np.ndarray:
    """A 1-D FIR kernel becomes its outer product; the result is normalised to sum 1."""
    k = np.asarray(k, dtype=np.float32)
    if k.ndim == 1:
        k = np.outer(k, k)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"FIR kernel must be 1-D or square 2-D, got shape {k.shape}")
    return k / np.sum(k)


def upfirdn2d(x, kernel: np.ndarray, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)):
    """StyleGAN2's upfirdn2d on NHWC.

    Upsample by zero insertion, pad (pad0, pad1) on both spatial axes, convolve (true
    convolution, i.e. the kernel flipped) with `kernel`, keep every `down`-th sample.

    Args:
      x: (B, H, W, C).
      kernel: (kh, kw) numpy FIR kernel.
    Returns:
      (B, (H·up + pad0 + pad1 − kh) // down + 1, (W·up + ...) // down + 1, C).
    """
    separable = _separate(kernel)
    if separable is None:
        return _upfirdn2d_conv(x, kernel, up, down, pad)
    taps_h, taps_w = separable
    x = _upfirdn_1d(x, taps_h, axis=1, up=up, down=down, pad=pad)
    return _upfirdn_1d(x, taps_w, axis=2, up=up, down=down, pad=pad)


def _separate(kernel: np.ndarray):
    """(taps along H, taps along W) with outer(taps_h, taps_w) == kernel, or None if the
    kernel is not an outer product (then the 2-D path is used)."""
    kernel = np.asarray(kernel, np.float64)
    row = int(np.argmax(np.max(np.abs(kernel), axis=1)))
    col = int(np.argmax(np.abs(kernel[row])))
    pivot = kernel[row, col]
    if pivot == 0:
        return None
    taps_h, taps_w = kernel[:, col] / pivot, kernel[row]
    if not np.allclose(np.outer(taps_h, taps_w), kernel, rtol=1e-6, atol=1e-9 * abs(pivot)):
        return None
    return taps_h, taps_w


def _upfirdn_1d(x, taps: np.ndarray, axis: int, up: int, down: int, pad: tuple[int, int]):
    """upfirdn along one axis: zero insertion + padding in one `lax.pad` (negative pads crop),
    then out[j] = Σ_t taps[L−1−t] · z[j·down + t] as shifted, strided slices."""
    p0, p1 = pad
    config = [(0, 0, 0)] * x.ndim
    # Interior padding inserts up−1 zeros between samples; upfirdn also appends them after the last.
    config[axis] = (p0, p1 + up - 1, up - 1)
    z = lax.pad(x, jnp.zeros((), x.dtype), config)
    length = len(taps)
    out_len = (z.shape[axis] - length) // down + 1
    flipped = taps[::-1]
    out = None
    for t, weight in enumerate(flipped):
        if weight == 0:
            continue
        part = lax.slice_in_dim(z, t, t + (out_len - 1) * down + 1, stride=down, axis=axis) * float(weight)
        out = part if out is None else out + part
    return out


def _upfirdn2d_conv(x, kernel: np.ndarray, up: int, down: int, pad: tuple[int, int]):
    """upfirdn2d for a non-separable kernel: one depthwise convolution, zero insertion as
    `lhs_dilation`, decimation as `window_strides`."""
    c = x.shape[-1]
    kh, kw = kernel.shape
    # lax correlates; upfirdn2d convolves.
    w = np.ascontiguousarray(kernel[::-1, ::-1])
    w = jnp.asarray(np.broadcast_to(w[:, :, None, None], (kh, kw, 1, c)), dtype=x.dtype)
    p0, p1 = pad
    # lhs_dilation leaves no zeros after the last sample; upfirdn2d's zero insertion does.
    padding = [(p0, p1 + up - 1), (p0, p1 + up - 1)]
    return lax.conv_general_dilated(
        x, w, window_strides=(down, down), padding=padding, lhs_dilation=(up, up),
        dimension_numbers=_NHWC, feature_group_count=c,
    )


def upsample_2d(x, k: Sequence, factor: int = 2):
    """FIR upsampling (B, H, W, C) -> (B, H·f, W·f, C); the kernel is scaled by f² (gain 1)."""
    kernel = setup_kernel(k) * factor**2
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_2d(x, k: Sequence, factor: int = 2):
    """FIR downsampling (B, H, W, C) -> (B, H/f, W/f, C)."""
    kernel = setup_kernel(k)
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel, down=factor, pad=((p + 1) // 2, p // 2))


def naive_upsample_2d(x, factor: int = 2):
    """Nearest-neighbour upsampling (B, H, W, C) -> (B, H·f, W·f, C)."""
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def naive_downsample_2d(x, factor: int = 2):
    """Average pooling over f×f blocks (B, H, W, C) -> (B, H/f, W/f, C)."""
    b, h, w, c = x.shape
    return jnp.mean(x.reshape(b, h // factor, factor, w // factor, factor, c), axis=(2, 4))


class FIRConv(nn.Module):
    """StyleGAN2's fused 3x3 convolution with FIR up- or downsampling (`Conv2d(up|down=True)`).

    up:   transposed convolution (stride 2) of the input with the 3x3 kernel, then the FIR
          filter (gain 4) with padding 1: H -> 2H.
    down: the FIR filter with padding 2, then the 3x3 convolution with stride 2: H -> H/2.
    The fused forms differ from "resample, then 'same' conv" at the borders, so we keep them.
    (The reference's `upsample_conv_2d` slices a tensor with a negative step, which PyTorch
    rejects; we implement what it means, the StyleGAN2/score_sde operation.)
    """

    features: int
    up: bool
    fir_kernel: tuple
    dtype: Dtype = jnp.float32
    factor: int = 2

    @nn.compact
    def __call__(self, x):
        """x: (B, H, W, Cin) -> (B, H·2 or H/2, W·2 or W/2, features)."""
        cin = x.shape[-1]
        kernel = self.param("kernel", default_init(), (3, 3, cin, self.features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        x = x.astype(self.dtype)
        w = kernel.astype(self.dtype)
        f = self.factor
        if self.up:
            fir = setup_kernel(self.fir_kernel) * f**2
            p = (fir.shape[0] - f) - 2
            # Transposed conv == correlation of the zero-upsampled input, padded by k−1.
            x = lax.conv_general_dilated(
                x, w, window_strides=(1, 1), padding=[(2, 2), (2, 2)], lhs_dilation=(f, f),
                dimension_numbers=_NHWC,
            )
            x = upfirdn2d(x, fir, pad=((p + 1) // 2 + f - 1, p // 2 + 1))
        else:
            fir = setup_kernel(self.fir_kernel)
            p = (fir.shape[0] - f) + 2
            x = upfirdn2d(x, fir, pad=((p + 1) // 2, p // 2))
            x = lax.conv_general_dilated(
                x, w, window_strides=(f, f), padding="VALID", dimension_numbers=_NHWC
            )
        return x + bias.astype(self.dtype)


class Upsample(nn.Module):
    """layerspp.Upsample: x2 along frequency and time, optionally with a 3x3 convolution.

    fir=False: nearest neighbour (+ `Conv_0`); fir=True: FIR (`upsample_2d`) or, with a
    convolution, the fused `Conv2d_0`.
    """

    out_ch: int
    with_conv: bool
    fir: bool
    fir_kernel: tuple
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        """(B, H, W, C) -> (B, 2H, 2W, out_ch if with_conv else C)."""
        if not self.fir:
            h = naive_upsample_2d(x)
            if self.with_conv:
                h = conv3x3(self.out_ch, "Conv_0", self.dtype)(h)
            return h
        if not self.with_conv:
            return upsample_2d(x, self.fir_kernel)
        return FIRConv(self.out_ch, up=True, fir_kernel=self.fir_kernel, dtype=self.dtype, name="Conv2d_0")(x)


class Downsample(nn.Module):
    """layerspp.Downsample: /2 along frequency and time, optionally with a 3x3 convolution.

    fir=False: average pooling, or pad (0, 1) at the end of each axis + stride-2 `Conv_0`;
    fir=True: FIR (`downsample_2d`) or, with a convolution, the fused `Conv2d_0`.
    """

    out_ch: int
    with_conv: bool
    fir: bool
    fir_kernel: tuple
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        """(B, H, W, C) -> (B, H/2, W/2, out_ch if with_conv else C)."""
        if not self.fir:
            if not self.with_conv:
                return naive_downsample_2d(x)
            return conv3x3(self.out_ch, "Conv_0", self.dtype, stride=2, padding=((0, 1), (0, 1)))(x)
        if not self.with_conv:
            return downsample_2d(x, self.fir_kernel)
        return FIRConv(self.out_ch, up=False, fir_kernel=self.fir_kernel, dtype=self.dtype, name="Conv2d_0")(x)


# ----------------------------------------------------------------------------- time embeddings


class GaussianFourierProjection(nn.Module):
    """[sin(2π·W·s), cos(2π·W·s)] of a scalar s per example; W ~ N(0, scale²), fixed.

    The reference keeps W as a Parameter with requires_grad=False, so it sits in state_dict
    and in parameters() (and in the EMA). We keep it in "params" for a one-to-one mapping
    and stop its gradient, so optimisers without weight decay leave it unchanged.
    """

    embedding_size: int
    scale: float = 1.0

    @nn.compact
    def __call__(self, s):
        """s: (B,) float32 -> (B, 2·embedding_size) float32."""
        w = self.param("W", nn.initializers.normal(stddev=self.scale), (self.embedding_size,), jnp.float32)
        w = lax.stop_gradient(w)
        # Same operation order as the reference: ((s·W)·2)·π.
        proj = s.astype(jnp.float32)[:, None] * w[None, :] * 2 * np.pi
        return jnp.concatenate([jnp.sin(proj), jnp.cos(proj)], axis=-1)


def timestep_embedding(t, embedding_dim: int, max_positions: int = 10000):
    """DDPM's sinusoidal embedding: t (B,) -> (B, embedding_dim) float32."""
    half = embedding_dim // 2
    freq = jnp.exp(jnp.arange(half, dtype=jnp.float32) * -(math.log(max_positions) / (half - 1)))
    emb = t.astype(jnp.float32)[:, None] * freq[None, :]
    emb = jnp.concatenate([jnp.sin(emb), jnp.cos(emb)], axis=1)
    if embedding_dim % 2 == 1:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


# ----------------------------------------------------------------------------- blocks


class Combine(nn.Module):
    """layerspp.Combine: merges the input pyramid x into the features y (sum or cat)."""

    features: int
    method: str = "sum"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, y):
        """x: (B, H, W, Cx), y: (B, H, W, features) -> (B, H, W, features or 2·features)."""
        h = conv1x1(self.features, "Conv_0", self.dtype)(x)
        if self.method == "cat":
            return jnp.concatenate([h, y.astype(h.dtype)], axis=-1)
        if self.method == "sum":
            return h + y
        raise ValueError(f"combine method {self.method!r} not recognized")


# Attention over more positions than this runs in blocks of ATTENTION_QUERY_BLOCK queries.
ATTENTION_FULL_MAX = 1024
ATTENTION_QUERY_BLOCK = 256


def self_attention(q, k, v, scale: float):
    """softmax(q·kᵀ·scale)·v over all positions, single head: (B, N, 1, C) -> (B, N, 1, C).

    Logits and softmax in float32 (also for bfloat16 inputs), the unnormalised weights cast
    to v's dtype for the second product. Short sequences use `jax.nn.dot_product_attention`;
    long ones (N > ATTENTION_FULL_MAX) go through blocks of queries: the
    whole (N, N) logit matrix of an NCSN++ bottleneck that halves the spectrogram only twice
    (the quickstart network: 32 × T/4 positions, 0.6 GB of logits per example for 6 s of
    audio) was written and read back by every softmax pass, and was most of that network's
    time (65 %) and memory; a (256, N) block stays in cache. Same values up to float32
    rounding, since every query still sees every key.
    """
    n = q.shape[1]
    if n <= ATTENTION_FULL_MAX or q.shape[2] != 1:
        return jax.nn.dot_product_attention(q, k, v, scale=scale)
    block = ATTENTION_QUERY_BLOCK
    padded = -(-n // block) * block
    # One head: (B, N, C) matrices, so both products are plain row-major GEMMs and the
    # softmax runs along contiguous rows (with the head axis XLA:CPU transposed every block).
    q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]
    q = jnp.pad(q, ((0, 0), (0, padded - n), (0, 0)))
    blocks = jnp.moveaxis(q.reshape(q.shape[0], padded // block, block, q.shape[-1]), 1, 0)

    def one_block(qb):
        logits = jnp.einsum("bqc,bkc->bqk", qb, k, preferred_element_type=jnp.float32) * scale
        weights = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
        # Normalising after the product divides B·block·C values instead of B·block·N.
        out = jnp.einsum("bqk,bkc->bqc", weights.astype(v.dtype), v, preferred_element_type=jnp.float32)
        return (out / jnp.sum(weights, axis=-1, keepdims=True)).astype(v.dtype)

    out = jnp.moveaxis(lax.map(one_block, blocks), 0, 1)
    return out.reshape(out.shape[0], padded, -1)[:, :n, None, :]


class AttnBlock(nn.Module):
    """layerspp.AttnBlockpp: single-head self-attention over all H·W positions.

    Queries, keys and values are per-pixel linear maps (NIN) of the group-normalised input;
    logits are scaled by C^-1/2 (`self_attention`: float32 logits and softmax, even for
    bfloat16 inputs; long sequences in blocks of queries).
    """

    skip_rescale: bool = False
    init_scale: float = 0.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        """x: (B, H, W, C) -> (B, H, W, C)."""
        b, hh, ww, c = x.shape
        h = GroupNorm(num_groups(c), dtype=self.dtype, name="GroupNorm_0")(x)

        def nin(name, scale=0.1):
            return nn.Dense(c, dtype=self.dtype, param_dtype=jnp.float32, kernel_init=default_init(scale), name=name)

        q, k, v = (nin(f"NIN_{i}")(h).reshape(b, hh * ww, 1, c) for i in range(3))
        h = self_attention(q, k, v, scale=c**-0.5).reshape(b, hh, ww, c)
        h = nin("NIN_3", self.init_scale)(h)
        return skip_add(x.astype(h.dtype), h, self.skip_rescale)


def _temb_bias(temb, features: int, act: Callable, name: str):
    """Dense_0(act(temb)) in float32, shaped (B, 1, 1, features) to add to NHWC maps."""
    dense = nn.Dense(features, dtype=jnp.float32, param_dtype=jnp.float32, kernel_init=default_init(), name=name)
    return dense(act(temb))[:, None, None, :]


class ResnetBlockBigGAN(nn.Module):
    """layerspp.ResnetBlockBigGANpp: pre-activation residual block, optionally resampling.

    Attributes:
      out_ch: output channels (None: same as input).
      temb_dim: width of the time embedding; the block owns `Dense_0` whenever it is set,
        even when it is called without an embedding (the reference's conditional=False keeps
        those unused weights, so we keep them too).
    """

    act: Callable
    out_ch: int | None = None
    temb_dim: int | None = None
    up: bool = False
    down: bool = False
    dropout: float = 0.0
    fir: bool = False
    fir_kernel: tuple = (1, 3, 3, 1)
    skip_rescale: bool = True
    init_scale: float = 0.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, temb=None, train: bool = False):
        """x: (B, H, W, Cin), temb: (B, temb_dim) float32 or None -> (B, H', W', out_ch)."""
        in_ch = x.shape[-1]
        out_ch = self.out_ch or in_ch
        h = self.act(GroupNorm(num_groups(in_ch), dtype=self.dtype, name="GroupNorm_0")(x))
        x = x.astype(self.dtype)
        if self.up:
            resample = (lambda v: upsample_2d(v, self.fir_kernel)) if self.fir else naive_upsample_2d
            h, x = resample(h), resample(x)
        elif self.down:
            resample = (lambda v: downsample_2d(v, self.fir_kernel)) if self.fir else naive_downsample_2d
            h, x = resample(h), resample(x)
        h = conv3x3(out_ch, "Conv_0", self.dtype)(h)
        h = _add_temb(h, temb, self.temb_dim, out_ch, self.act)
        h = self.act(GroupNorm(num_groups(out_ch), dtype=self.dtype, name="GroupNorm_1")(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = conv3x3(out_ch, "Conv_1", self.dtype, init_scale=self.init_scale)(h)
        if in_ch != out_ch or self.up or self.down:
            x = conv1x1(out_ch, "Conv_2", self.dtype)(x)
        return skip_add(x, h, self.skip_rescale)


class ResnetBlockDDPM(nn.Module):
    """layerspp.ResnetBlockDDPMpp: pre-activation residual block; NIN shortcut if Cin != Cout."""

    act: Callable
    out_ch: int | None = None
    temb_dim: int | None = None
    dropout: float = 0.0
    skip_rescale: bool = False
    init_scale: float = 0.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, temb=None, train: bool = False):
        """x: (B, H, W, Cin), temb: (B, temb_dim) float32 or None -> (B, H, W, out_ch)."""
        in_ch = x.shape[-1]
        out_ch = self.out_ch or in_ch
        h = self.act(GroupNorm(num_groups(in_ch), dtype=self.dtype, name="GroupNorm_0")(x))
        h = conv3x3(out_ch, "Conv_0", self.dtype)(h)
        h = _add_temb(h, temb, self.temb_dim, out_ch, self.act)
        h = self.act(GroupNorm(num_groups(out_ch), dtype=self.dtype, name="GroupNorm_1")(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = conv3x3(out_ch, "Conv_1", self.dtype, init_scale=self.init_scale)(h)
        x = x.astype(self.dtype)
        if in_ch != out_ch:
            nin = nn.Dense(
                out_ch, dtype=self.dtype, param_dtype=jnp.float32, kernel_init=default_init(0.1), name="NIN_0"
            )
            x = nin(x)
        return skip_add(x, h, self.skip_rescale)


def _add_temb(h, temb, temb_dim, features, act):
    """h + Dense_0(act(temb)), or h when there is no embedding (but Dense_0 still exists)."""
    if temb_dim is None:
        return h
    if temb is None:
        # conditional=False: the reference still builds Dense_0 and never uses it. Create the
        # parameters on a dummy input so checkpoints map one to one; XLA drops the dead compute.
        _temb_bias(jnp.zeros((1, temb_dim), jnp.float32), features, lambda v: v, "Dense_0")
        return h
    return h + _temb_bias(temb, features, act, "Dense_0").astype(h.dtype)
