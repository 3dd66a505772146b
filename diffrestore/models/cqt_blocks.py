"""Building blocks shared by the CQT-Diff and CQTdiff+ U-Nets (`cqtdiff`, `cqtdiffplus`), channels last.

Tensors are NHWC as in NCSN++: (batch, frequency, frames, channels). The references are NCHW
with frequency before time, so a PyTorch Conv2d kernel [out, in, kF, kT] becomes a Flax kernel
[kF, kT, in, out] and a dilation (2^k, 1) stays a frequency dilation.

Parameter names follow the PyTorch module paths by one rule (`flax_path`): the dotted torch key
with every ModuleList index glued to the name before it, `downs.0.2.H.3.weight` ->
`downs_0_2/H_3/kernel`. The modules below therefore take their Flax `name` from the reference's
attribute names (`film`, `output_layer`, `first_conv_1`, `attn_block`, ...).

Precision: parameters are float32; convolutions and matmuls of the signal path run in `dtype`;
the noise embedding, FiLM/gate projections, normalisation statistics and softmax run in float32.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Dtype = Any

_NHWC = ("NHWC", "HWIO", "NHWC")
# A Python float: a numpy scalar would promote bfloat16 activations to float32.
INV_SQRT2 = 1.0 / math.sqrt(2.0)
RFF_SCALE = 16.0  # both references draw their random Fourier features as 16·randn
MLP_HIDDEN = (128, 256)  # the noise-embedding MLP of both references: 2·rff -> 128 -> 256 -> emb_dim


def gelu(x):
    """torch.nn.GELU() / F.gelu: the exact (erf) form."""
    return jax.nn.gelu(x, approximate=False)


# ----------------------------------------------------------------------------- initializers


def uniform_init(bound: float):
    """U(−bound, bound), for any shape."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def fan_in_uniform(fan_in: int, gain: float = 1.0):
    """U(±gain/√fan_in): PyTorch's default Conv/Linear init, and BABE's kaiming_uniform·√(1/3)."""
    return uniform_init(gain / math.sqrt(fan_in))


# ----------------------------------------------------------------------------- layers


def reflect_pad(x, pad: tuple[int, int], axis: int):
    """PyTorch/numpy "reflect" padding along one axis (the edge sample is not repeated).

    Written as reversed slices and a concatenation: on CPU this is about twice as fast as
    `jnp.pad(mode="reflect")`, and the CQT-Diff U-Net pads before every one of its convolutions.
    """
    before, after = pad
    n = x.shape[axis]
    if before >= n or after >= n:
        raise ValueError(f"reflect padding of {pad} needs more than {max(pad)} samples along axis {axis}, got {n}")
    parts = [x]
    if before:
        parts.insert(0, lax.rev(lax.slice_in_dim(x, 1, before + 1, axis=axis), (axis,)))
    if after:
        parts.append(lax.rev(lax.slice_in_dim(x, n - 1 - after, n - 1, axis=axis), (axis,)))
    return jnp.concatenate(parts, axis=axis) if len(parts) > 1 else x


class Conv2d(nn.Module):
    """A bias-free (by default) 2-D convolution with 'same' padding, zeros or reflect.

    Attributes:
      features: output channels.
      kernel_size: (frequency, time) taps.
      dilation: (frequency, time) dilation.
      padding: "zeros" or "reflect" (PyTorch's padding_mode with padding="same": for odd
        kernels the same amount on both sides).
      use_bias: a bias term ("bias").
      dtype: compute dtype; the kernel is stored float32.
      kernel_init: initializer of the [kF, kT, in, out] kernel (None: U(±1/√fan_in)).
    """

    features: int
    kernel_size: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    padding: str = "zeros"
    use_bias: bool = False
    dtype: Dtype = jnp.float32
    kernel_init: Any = None

    @nn.compact
    def __call__(self, x):
        """x: (B, F, T, Cin) -> (B, F, T, features) in `dtype`."""
        cin = x.shape[-1]
        kf, kt = self.kernel_size
        fan_in = cin * kf * kt
        init = self.kernel_init or fan_in_uniform(fan_in)
        kernel = self.param("kernel", init, (kf, kt, cin, self.features), jnp.float32)
        x = x.astype(self.dtype)
        pads = [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(self.kernel_size, self.dilation)]
        if self.padding == "reflect" and any(p != (0, 0) for p in pads):
            x = reflect_pad(reflect_pad(x, pads[0], axis=1), pads[1], axis=2)
            pads = [(0, 0), (0, 0)]
        elif self.padding not in ("zeros", "reflect"):
            raise ValueError(f"padding must be 'zeros' or 'reflect', not {self.padding!r}")
        y = lax.conv_general_dilated(
            x, kernel.astype(self.dtype), window_strides=(1, 1), padding=pads,
            rhs_dilation=tuple(self.dilation), dimension_numbers=_NHWC,
        )
        if self.use_bias:
            bias = self.param("bias", fan_in_uniform(fan_in), (self.features,), jnp.float32)
            y = y + bias.astype(self.dtype)
        return y


def linear32(features: int, name: str, fan_in: int, weight_gain: float = 1.0, zero_bias: bool = False):
    """A Linear (y = x·Wᵀ + b) in float32: the embedding MLP, FiLM and gate projections."""
    return nn.Dense(
        features, dtype=jnp.float32, param_dtype=jnp.float32, precision=lax.Precision.HIGHEST,
        kernel_init=fan_in_uniform(fan_in, weight_gain),
        bias_init=nn.initializers.zeros if zero_bias else fan_in_uniform(fan_in), name=name,
    )


class NoiseEmbedding(nn.Module):
    """`RFF_MLP_Block`: random Fourier features of c_noise, then an MLP with ReLU after every layer.

    table = 2π·c_noise·φ (φ = `RFF_freq` (1, rff_dim), fixed), [sin, cos] -> 128 -> 256 -> emb_dim.
    `RFF_freq` is a parameter with requires_grad=False in the reference (so in its state_dict,
    parameters() and EMA); here it is a parameter whose gradient is stopped.

    Attributes:
      emb_dim: output width (512 in CQT-Diff, `emb_dim` in CQTdiff+).
      rff_dim: number of Fourier frequencies (32 in both).
      zero_bias: initialise the MLP biases to zero (BABE) instead of PyTorch's uniform.
    """

    emb_dim: int
    rff_dim: int = 32
    zero_bias: bool = False

    @nn.compact
    def __call__(self, c_noise):
        """c_noise: (B,) float32 -> (B, emb_dim) float32."""
        freqs = self.param("RFF_freq", nn.initializers.normal(RFF_SCALE), (1, self.rff_dim), jnp.float32)
        freqs = lax.stop_gradient(freqs)
        # The reference's order of operations: (2π·σ)·φ, in float32.
        table = (2 * np.pi * c_noise.astype(jnp.float32))[:, None] * freqs
        h = jnp.concatenate([jnp.sin(table), jnp.cos(table)], axis=-1)
        widths = (*MLP_HIDDEN, self.emb_dim)
        for i, width in enumerate(widths):
            h = jax.nn.relu(linear32(width, f"MLP_{i}", h.shape[-1], zero_bias=self.zero_bias)(h))
        return h


def freq_encoding_table(freqs, num_bins: int):
    """`AddFreqEncodingRFF.build_RFF_embedding`: (1, N) frequencies -> (1, 2N, num_bins) [sin; cos]."""
    n = jnp.arange(num_bins, dtype=jnp.float32)[None, None, :]
    table = 2 * np.pi * n * freqs[:, :, None]
    return jnp.concatenate([jnp.sin(table), jnp.cos(table)], axis=1)


class FreqEncodingRFF(nn.Module):
    """`AddFreqEncodingRFF`: appends 2N fixed sinusoidal channels that depend on the bin index only.

    Both `RFF_freq` (1, N) and the table `embeddings` (1, 2N, F) are fixed parameters of the
    reference (requires_grad=False); the table is used as stored, not recomputed.
    """

    num_bins: int
    dim: int = 32

    @nn.compact
    def __call__(self, x):
        """x: (B, F, T, C) -> (B, F, T, C + 2·dim), the encoding after the input channels."""
        freqs = self.param("RFF_freq", nn.initializers.normal(RFF_SCALE), (1, self.dim), jnp.float32)
        table = self.param("embeddings", lambda key: freq_encoding_table(freqs, self.num_bins))
        b, f, t, _ = x.shape
        if f != self.num_bins:
            raise ValueError(f"frequency encoding built for {self.num_bins} bins, input has {f}")
        enc = jnp.transpose(lax.stop_gradient(table)[0], (1, 0))  # (F, 2N)
        enc = jnp.broadcast_to(enc[None, :, None, :], (b, f, t, 2 * self.dim)).astype(x.dtype)
        return jnp.concatenate([x, enc], axis=-1)


class BiasFreeGroupNorm(nn.Module):
    """CQTdiff+'s `BiasFreeGroupNorm(C, G)`: x / (std + eps) · γ per group, no mean subtraction.

    std is the unbiased (N − 1) standard deviation of each group of C/G channels over
    (channels, frequency, time), computed in float32 (two passes). Parameter `gamma` (C,).
    """

    num_groups: int = 8
    epsilon: float = 1e-7
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        """x: (B, F, T, C) -> (B, F, T, C) in `dtype`."""
        b, f, t, c = x.shape
        g = self.num_groups
        if c % g:
            raise ValueError(f"BiasFreeGroupNorm: {c} channels cannot form {g} groups")
        gamma = self.param("gamma", nn.initializers.ones, (c,), jnp.float32)
        x = x.astype(jnp.float32)
        n = f * t * (c // g)

        def group_sum(v):
            # Sum over (F, T) per channel, then over each group's channels, broadcast back as
            # (B, 1, 1, C): ~5x faster on CPU than one reduction over a 5-D view.
            sums = jnp.sum(v, axis=(1, 2)).reshape(b, g, c // g).sum(axis=-1)
            return jnp.repeat(sums, c // g, axis=1)[:, None, None, :]

        centred = x - group_sum(x) / n
        std = jnp.sqrt(group_sum(jnp.square(centred)) / (n - 1))
        return (x / (std + self.epsilon) * gamma).astype(self.dtype)


# ----------------------------------------------------------------------------- time resampling


def sinc_resample_kernel(orig: int, new: int, lowpass_filter_width: int = 6, rolloff: float = 0.99):
    """torchaudio's `sinc_interp_hann` kernel for a ratio orig:new (already reduced by their gcd).

    Returns:
      (kernel (new, 2·width + orig) float32, width): row p gives output phase p.
    """
    base = min(orig, new) * rolloff
    width = math.ceil(lowpass_filter_width * orig / base)
    idx = np.arange(-width, width + orig, dtype=np.float64)[None, :] / orig
    t = (np.arange(0, -new, -1, dtype=np.float64)[:, None] / new + idx) * base
    t = np.clip(t, -lowpass_filter_width, lowpass_filter_width)
    window = np.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t = t * math.pi
    with np.errstate(invalid="ignore", divide="ignore"):
        sinc = np.where(t == 0, 1.0, np.sin(t) / np.where(t == 0, 1.0, t))
    return (sinc * window * (base / orig)).astype(np.float32), width


def _taps_sum(z, taps, count: int, stride: int, axis: int):
    """out[n] = Σ_k taps[k]·z[stride·n + k], n < count, as shifted (strided) slices."""
    out = None
    for k, weight in enumerate(np.asarray(taps, np.float64)):
        if weight == 0:
            continue
        part = lax.slice_in_dim(z, k, k + (count - 1) * stride + 1, stride=stride, axis=axis) * float(weight)
        out = part if out is None else out + part
    return out


def sinc_resample_time(x, orig: int, new: int, axis: int = 2):
    """torchaudio `Resample(orig, new)` along `axis` (CQT-Diff's Downsample/Upsample of the time axis).

    Zero-pads (width, width + orig), correlates each phase's kernel with stride orig, interleaves
    the `new` phases and keeps ceil(new·T/orig) samples.
    """
    g = math.gcd(orig, new)
    orig, new = orig // g, new // g
    kernel, width = sinc_resample_kernel(orig, new)
    length = x.shape[axis]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (width, width + orig)
    z = jnp.pad(x, pad)
    count = (z.shape[axis] - kernel.shape[1]) // orig + 1
    phases = [_taps_sum(z, kernel[p], count, orig, axis) for p in range(new)]
    y = jnp.stack(phases, axis=axis + 1)
    y = y.reshape(y.shape[:axis] + (count * new,) + y.shape[axis + 2:])
    return lax.slice_in_dim(y, 0, -(-new * length // orig), axis=axis)


# CQTdiff+'s `UpDownResample` kernels (`_kernels` in networks/cqtdiff+.py); the U-Net uses "cubic".
RESAMPLE_KERNELS = {
    "linear": (1 / 8, 3 / 8, 3 / 8, 1 / 8),
    "cubic": (-0.01171875, -0.03515625, 0.11328125, 0.43359375, 0.43359375, 0.11328125, -0.03515625, -0.01171875),
    "lanczos3": (0.003689131001010537, 0.015056144446134567, -0.03399861603975296, -0.066637322306633,
                 0.13550527393817902, 0.44638532400131226, 0.44638532400131226, 0.13550527393817902,
                 -0.066637322306633, -0.03399861603975296, 0.015056144446134567, 0.003689131001010537),
}


def resample_kernel(name: str) -> np.ndarray:
    """The float32 taps of an `UpDownResample` filter (what the reference stores as its buffer)."""
    try:
        return np.asarray(RESAMPLE_KERNELS[name], np.float32)
    except KeyError:
        raise ValueError(f"unknown resample filter {name!r}; expected one of {sorted(RESAMPLE_KERNELS)}") from None


def fir_downsample_time(x, taps: Sequence[float], axis: int = 2):
    """`UpDownResample(down=True)`: reflect-pad K/2 − 1 on both sides, correlate, stride 2 (T -> T/2)."""
    taps = np.asarray(taps, np.float32)
    pad = len(taps) // 2 - 1
    z = reflect_pad(x, (pad, pad), axis)
    count = (z.shape[axis] - len(taps)) // 2 + 1
    return _taps_sum(z, taps, count, 2, axis)


def fir_upsample_time(x, taps: Sequence[float], axis: int = 2):
    """`UpDownResample(up=True)`: reflect-pad (K/2)/2 on both sides, conv_transpose1d stride 2,
    padding K − 1 (T -> 2T). The kernel is not scaled by 2, so a constant comes out halved."""
    taps = np.asarray(taps, np.float32)
    k = len(taps)
    pad = (k // 2 - 1 + 1) // 2
    # conv_transpose1d(stride 2, padding P) is a correlation of the zero-stuffed input with the
    # flipped kernel, cropped by P on both sides; with P = K − 1 nothing outside z is read.
    z = lax.pad(reflect_pad(x, (pad, pad), axis), jnp.zeros((), x.dtype),
                [(0, 0, 1) if i == axis else (0, 0, 0) for i in range(x.ndim)])
    crop = 2 * (k // 2 - 1) + 1
    count = (x.shape[axis] + 2 * pad - 1) * 2 - 2 * crop + k
    return _taps_sum(z, taps[::-1], count, 1, axis)


# ----------------------------------------------------------------------------- attention


def relative_position_buckets(length: int, num_buckets: int, max_distance: int) -> np.ndarray:
    """T5's bidirectional buckets of j − i for an (i, j) grid of `length` queries and keys, (T, T) int.

    Computed as the reference does, in float32: half the buckets per direction, exact below
    half of those, logarithmic up to `max_distance`, the last bucket beyond.
    """
    half = num_buckets // 2
    rel = np.arange(length)[None, :] - np.arange(length)[:, None]
    ret = (rel >= 0).astype(np.int64) * half
    n = np.abs(rel)
    max_exact = half // 2
    ratio = np.maximum(n, 1).astype(np.float32) / np.float32(max_exact)
    large = np.log(ratio) / np.float32(math.log(max_distance / max_exact)) * np.float32(half - max_exact)
    large = np.minimum(max_exact + large.astype(np.int64), half - 1)
    return ret + np.where(n < max_exact, n, large)


class TimeAttentionBlock(nn.Module):
    """CQTdiff+'s `TimeAttentionBlock`: attention over frames, each head seeing all frequency rows.

    z = proj_in(x) (C -> h channels); per head the F rows are the features: values v = z, and
    q, k from one 1×1 Conv1d over the h·F features (`qk`, h·F -> 2h·F, as (h, 2F): q the first F,
    k the last F of each head). logits = (q·kᵀ + bias)·F^(−1/2) (the scale multiplies the T5
    relative-position bias too), softmax over keys in float32, out = attn·v -> proj_out (h -> C).

    Attributes:
      num_heads: h.
      num_bins: F, the frequency rows of the input (fixed by the block's level).
      use_bias_qkv: a bias on `qk`.
      use_rel_pos, num_buckets, max_distance: the `rel_pos` bias (`relative_attention_bias` (buckets, h)).
    """

    num_heads: int
    num_bins: int
    use_bias_qkv: bool = False
    use_rel_pos: bool = True
    num_buckets: int = 32
    max_distance: int = 64
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        """x: (B, F, T, C) -> (B, F, T, C)."""
        b, f, t, c = x.shape
        h = self.num_heads
        if f != self.num_bins:
            raise ValueError(f"attention block built for {self.num_bins} frequency rows, input has {f}")
        z = Conv2d(h, dtype=self.dtype, name="proj_in")(x)  # (B, F, T, h)
        z = jnp.transpose(z, (0, 2, 3, 1))  # (B, T, h, F): feature index h·F + f, as the reference's
        qk = QKProjection(2 * h * f, self.use_bias_qkv, self.dtype, name="qk")(z.reshape(b, t, h * f))
        qk = qk.reshape(b, t, h, 2 * f)
        q, k = qk[..., :f], qk[..., f:]
        logits = jnp.einsum("bihf,bjhf->bhij", q, k, preferred_element_type=jnp.float32)
        if self.use_rel_pos:
            logits = logits + RelativePositionBias(self.num_buckets, self.max_distance, h, name="rel_pos")(t)
        attn = jax.nn.softmax(logits * (f**-0.5), axis=-1)
        out = jnp.einsum("bhij,bjhf->bihf", attn.astype(self.dtype), z.astype(self.dtype),
                         preferred_element_type=jnp.float32)
        out = jnp.transpose(out, (0, 3, 1, 2)).astype(self.dtype)  # (B, F, T, h)
        return Conv2d(c, dtype=self.dtype, name="proj_out")(out)


class QKProjection(nn.Module):
    """The `qk` Conv1d (kernel 1) of `TimeAttentionBlock`: a per-frame linear map; `kernel` (in, out)."""

    features: int
    use_bias: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        fan_in = x.shape[-1]
        kernel = self.param("kernel", fan_in_uniform(fan_in), (fan_in, self.features), jnp.float32)
        y = jnp.dot(x.astype(self.dtype), kernel.astype(self.dtype))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32).astype(self.dtype)
        return y


class RelativePositionBias(nn.Module):
    """T5 relative-position bias: `relative_attention_bias` (nn.Embedding (buckets, h)) -> (h, T, T)."""

    num_buckets: int
    max_distance: int
    num_heads: int

    @nn.compact
    def __call__(self, length: int):
        table = nn.Embed(self.num_buckets, self.num_heads, embedding_init=nn.initializers.normal(1.0),
                         param_dtype=jnp.float32, name="relative_attention_bias")
        buckets = relative_position_buckets(length, self.num_buckets, self.max_distance)
        return jnp.transpose(table(jnp.asarray(buckets)), (2, 0, 1))  # (h, T, T)
