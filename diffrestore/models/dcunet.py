"""The DCUNet backbone of SGMSE ("dcunet") in Flax, and import of its PyTorch weights.

sp-uhh/sgmse `sgmse/backbones/dcunet.py: DCUNet` (commit ae690e8): a complex-valued U-Net
(Choi et al., 2019) with a time embedding. `ScoreModel` calls it as `dnn(cat([x, y], 1), t)`
on the complex spectrograms x, y (B, 1, F, T) and negates the result to get the score; here
`module.apply(variables, x, y, t)` returns the raw output (B, 1, F, T), without the sign.

What the network does, in the reference's order:
* input: the two *complex* channels (x, y) (the reference sets input_channels = 2, "rather
  than 4, because we directly treat complex channels"); the time axis is padded with zeros
  ("pad") or trimmed ("trim") so that T − 1 is divisible by the product of the encoders' time
  strides, and F − 1 must be divisible by that of the frequency strides (otherwise an error,
  whatever `dcunet_fix_length`). The output is zero-padded or cropped back to T.
* time embedding of t (as the complex t + 0j): "gfp" (Gaussian Fourier projection, W ~
  N(0, 16²), fixed) or "ds" (DiffWave's steps 10^(4k/(K−1))): [sin, cos] of K = embed_dim/2
  features, or exp(i·) of embed_dim features with `dcunet_time_embedding_complex`; then
  `dcunet_temb_layers_global` × (complex Linear, activation on re and im).
* encoders: complex conv (no bias) + per-block embedding (`dcunet_temb_layers_local` − 1
  complex Linear + activation, then a complex Linear to the block's channels + activation,
  broadcast over F and T), norm, activation. Decoders: the same with a complex transposed
  conv whose output size is the matching encoder's output (the output padding follows
  from it), then the skip is concatenated on the channel axis.
* output: a complex transposed conv (with bias) to one channel and the input's size. There
  is no mask: `dcunet_mask_bound` other than "none" raises, as in the reference.
* norms: "bN" = a BatchNorm2d on the real and one on the imaginary part (running statistics
  in eval, batch statistics in training); "CbN" = the complex (whitening) batch norm with
  track_running_stats=False, so it normalises with the statistics of the batch it is given,
  in training and in eval alike.
The reference has no dropout and only the time embeddings "gfp", "ds" and "none".

Complex arithmetic. A complex module F(a + ib) = f_re(a) − f_im(b) + i(f_re(b) + f_im(a)) is
the reference's `ArgsComplexMultiplicationWrapper`; biases included, so the real part gets
b_re − b_im and the imaginary part b_re + b_im. We run it as one real convolution on the
channels [re | im] with the block kernel [[K_re, K_im], [−K_im, K_re]]: the same FLOPs as the
reference's four real convolutions, one call. Every activation is a real array
(B, F, T, 2C) whose first C channels are the real parts and the last C the imaginary parts;
per-part operations (BatchNorm of re and im, activations) act on the 2C channels directly.

Variables: "params" (float32) and, for "bN", "batch_stats" (the running means and variances,
the reference's buffers, which its EMA does not average). Call

    module = build(dtype=jnp.bfloat16, dcunet_architecture="DCUNet-16")
    variables = variables_from_torch(kwargs, state_dict)     # {"params", "batch_stats"}
    out = module.apply(variables, x, y, t)                   # eval: running statistics
    out, updates = module.apply(variables, x, y, t, train=True, mutable=["batch_stats"])

Convolutions run in `dtype`; the time embedding, norm statistics and the output in float32.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


Dtype = Any
_NHWC = ("NHWC", "HWIO", "NHWC")

# The reference's encoder rows: (in_chan, out_chan, kernel, stride, padding, dilation), kernel
# and friends as (frequency, time). The decoders are their automatic mirror (`_decoder_specs`);
# row 0's in_chan (1) becomes the output layer's channels, while the first encoder reads 2.
ARCHITECTURES: dict[str, tuple] = {
    "DCUNet-10": (
        (1, 32, (7, 5), (2, 2), "auto", (1, 1)),
        (32, 64, (7, 5), (2, 2), "auto", (1, 1)),
        (64, 64, (5, 3), (2, 2), "auto", (1, 1)),
        (64, 64, (5, 3), (2, 2), "auto", (1, 1)),
        (64, 64, (5, 3), (2, 1), "auto", (1, 1)),
    ),
    "DCUNet-16": (
        (1, 32, (7, 5), (2, 2), "auto", (1, 1)),
        (32, 32, (7, 5), (2, 1), "auto", (1, 1)),
        (32, 64, (7, 5), (2, 2), "auto", (1, 1)),
        (64, 64, (5, 3), (2, 1), "auto", (1, 1)),
        (64, 64, (5, 3), (2, 2), "auto", (1, 1)),
        (64, 64, (5, 3), (2, 1), "auto", (1, 1)),
        (64, 64, (5, 3), (2, 2), "auto", (1, 1)),
        (64, 64, (5, 3), (2, 1), "auto", (1, 1)),
    ),
    "DCUNet-20": (
        (1, 32, (7, 1), (1, 1), "auto", (1, 1)),
        (32, 32, (1, 7), (1, 1), "auto", (1, 1)),
        (32, 64, (7, 5), (2, 2), "auto", (1, 1)),
        (64, 64, (7, 5), (2, 1), "auto", (1, 1)),
        (64, 64, (5, 3), (2, 2), "auto", (1, 1)),
        (64, 64, (5, 3), (2, 1), "auto", (1, 1)),
        (64, 64, (5, 3), (2, 2), "auto", (1, 1)),
        (64, 64, (5, 3), (2, 1), "auto", (1, 1)),
        (64, 64, (5, 3), (2, 2), "auto", (1, 1)),
        (64, 90, (5, 3), (2, 1), "auto", (1, 1)),
    ),
    # "architecture used in SGMSE / Interspeech paper" (the reference's default).
    "DilDCUNet-v2": (
        (1, 32, (4, 4), (1, 1), "auto", (1, 1)),
        (32, 32, (4, 4), (1, 1), "auto", (1, 1)),
        (32, 32, (4, 4), (1, 1), "auto", (1, 1)),
        (32, 64, (4, 4), (2, 1), "auto", (2, 1)),
        (64, 128, (4, 4), (2, 2), "auto", (4, 1)),
        (128, 256, (4, 4), (2, 2), "auto", (8, 1)),
    ),
}

# `DCUNet.__init__`'s keyword arguments and defaults. `dcunet_architecture` may also be a
# tuple of encoder rows in the layout of `ARCHITECTURES` (the reference's module-level table
# can be extended the same way); the decoders are then its automatic mirror.
DEFAULTS: dict[str, Any] = dict(
    dcunet_architecture="DilDCUNet-v2",
    dcunet_time_embedding="gfp",
    dcunet_temb_layers_global=2,
    dcunet_temb_layers_local=1,
    dcunet_temb_activation="silu",
    dcunet_time_embedding_complex=False,
    dcunet_fix_length="pad",
    dcunet_mask_bound="none",
    dcunet_norm_type="bN",
    dcunet_activation="relu",
    embed_dim=128,
)
# The defaults of `DCUNet.add_argparse_args`, i.e. what the reference trainer stores in a
# checkpoint's hyper-parameters when not told otherwise; two differ from the constructor's.
ARGPARSE_DEFAULTS: dict[str, Any] = dict(DEFAULTS, dcunet_temb_layers_global=1, dcunet_activation="leaky_relu")

_ACTIVATIONS = {
    "silu": jax.nn.silu,
    "relu": jax.nn.relu,
    # torch.nn.LeakyReLU's default slope.
    "leaky_relu": lambda v: jax.nn.leaky_relu(v, negative_slope=0.01),
}
_BN_EPS = 1e-5  # torch's BatchNorm2d and the reference's ComplexBatchNorm
_BN_MOMENTUM = 0.1


# ----------------------------------------------------------------------------- configuration


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """One (transposed) convolution: channels and (frequency, time) pairs."""

    in_ch: int
    out_ch: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]


@dataclasses.dataclass(frozen=True)
class DCUNetConfig:
    """The validated constructor options (`make_config`); names as the reference's kwargs."""

    dcunet_architecture: Any = "DilDCUNet-v2"
    dcunet_time_embedding: str = "gfp"
    dcunet_temb_layers_global: int = 2
    dcunet_temb_layers_local: int = 1
    dcunet_temb_activation: str = "silu"
    dcunet_time_embedding_complex: bool = False
    dcunet_fix_length: str = "pad"
    dcunet_mask_bound: str = "none"
    dcunet_norm_type: str = "bN"
    dcunet_activation: str = "relu"
    embed_dim: int = 128

    @property
    def rows(self) -> tuple:
        """The encoder rows of the architecture (name or explicit rows)."""
        arch = self.dcunet_architecture
        return ARCHITECTURES[arch] if isinstance(arch, str) else arch

    @property
    def encoders(self) -> tuple[ConvSpec, ...]:
        """The encoder convolutions; the first reads the 2 complex input channels (x, y)."""
        specs = tuple(_row_spec(row) for row in self.rows)
        return (dataclasses.replace(specs[0], in_ch=2),) + specs[1:]

    @property
    def decoders(self) -> tuple[ConvSpec, ...]:
        """The decoder blocks' transposed convolutions, deepest first (without the output layer)."""
        return _decoder_specs(self.rows)[:-1]

    @property
    def output_layer(self) -> ConvSpec:
        """The last mirror row. The reference passes its dilation positionally into
        ConvTranspose2d's output_padding slot (overridden by output_size), so the layer itself
        runs with dilation 1."""
        return dataclasses.replace(_decoder_specs(self.rows)[-1], dilation=(1, 1))

    @property
    def stride_product(self) -> tuple[int, int]:
        """Product of the encoders' (frequency, time) strides: F − 1 and T − 1 must be multiples."""
        return tuple(int(np.prod([s.stride[i] for s in self.encoders])) for i in range(2))

    @property
    def has_time_embedding(self) -> bool:
        return self.dcunet_time_embedding != "none"

    @property
    def embedding_features(self) -> int:
        """Features of the sinusoidal embedding before the [sin, cos] concatenation: K."""
        e = self.embed_dim
        return e if self.dcunet_time_embedding_complex else e // 2

    @property
    def local_dense_layers(self) -> int:
        """Complex Linear (E → E) layers of each block's embedding before its projection."""
        return max(0, self.dcunet_temb_layers_local - 1)


def _pair(value, what: str) -> tuple[int, int]:
    pair = tuple(int(v) for v in value)
    if len(pair) != 2 or min(pair) < 0:
        raise ValueError(f"{what} must be two non-negative ints (frequency, time); got {value!r}")
    return pair


def _row_spec(row) -> ConvSpec:
    """An encoder row (in, out, kernel, stride, padding | "auto", dilation) -> ConvSpec."""
    in_ch, out_ch, kernel, stride, padding, dilation = row
    kernel = _pair(kernel, "kernel")
    # "auto" is the reference's n // 2 per axis; with even kernels the output grows by one.
    padding = tuple(k // 2 for k in kernel) if padding == "auto" else _pair(padding, "padding")
    return ConvSpec(int(in_ch), int(out_ch), kernel, _pair(stride, "stride"), padding, _pair(dilation, "dilation"))


def _decoder_specs(rows) -> tuple[ConvSpec, ...]:
    """The reference's `unet_decoder_args(..., skip_connections=True)`: each encoder mirrored,
    deepest first, every decoder but the first also reading the skip (the encoder's output)."""
    specs = []
    for i, enc in enumerate(reversed([_row_spec(r) for r in rows])):
        skip = enc.out_ch if i else 0
        specs.append(ConvSpec(enc.out_ch + skip, enc.in_ch, enc.kernel, enc.stride, enc.padding, enc.dilation))
    return tuple(specs)


def _tuple(value):
    """Lists (from argparse / JSON) to tuples, recursively, so the config is hashable."""
    if isinstance(value, (list, tuple)):
        return tuple(_tuple(v) for v in value)
    return value


def _none_str(value) -> str:
    """The reference's "none" strings; None is accepted for them."""
    return "none" if value is None else str(value)


def _validate_rows(rows) -> None:
    if not isinstance(rows, tuple) or not rows:
        raise ValueError(f"dcunet_architecture must be one of {sorted(ARCHITECTURES)} or a tuple of encoder rows")
    for row in rows:
        if not isinstance(row, tuple) or len(row) != 6:
            raise ValueError(f"an encoder row is (in, out, kernel, stride, padding, dilation); got {row!r}")
        spec = _row_spec(row)
        if min(spec.kernel) < 1 or min(spec.stride) < 1 or min(spec.dilation) < 1 or spec.out_ch < 1:
            raise ValueError(f"encoder row {row!r}: kernel, stride, dilation and channels must be positive")
    if int(rows[0][0]) != 1:
        # Row 0's in_chan is the output layer's channel count; the contract is one channel.
        raise ValueError(
            f"the first encoder row must read 1 channel (it sets the single output channel); got {rows[0]!r}"
        )
    for prev, row in zip(rows, rows[1:]):
        if int(prev[1]) != int(row[0]):
            raise ValueError(f"encoder rows do not chain: {prev!r} outputs {prev[1]}, {row!r} reads {row[0]}")


def make_config(**kwargs) -> DCUNetConfig:
    """Validated config from the reference constructor's keyword arguments.

    Raises:
      TypeError: a keyword `DCUNet.__init__` does not take (the reference swallows unknown
        ones in **kwargs; use `backbone_kwargs` to pick them from hyper-parameters).
      ValueError: an invalid value, or mask bounding (which the reference does not implement).
    """
    unknown = sorted(set(kwargs) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"dcunet takes no option(s) {unknown}; it accepts {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **{k: _tuple(v) for k, v in kwargs.items()}}
    for key in ("dcunet_time_embedding", "dcunet_fix_length", "dcunet_mask_bound"):
        opts[key] = _none_str(opts[key]).lower()
    for key in ("dcunet_temb_layers_global", "dcunet_temb_layers_local", "embed_dim"):
        opts[key] = int(opts[key])
    opts["dcunet_time_embedding_complex"] = bool(opts["dcunet_time_embedding_complex"])
    cfg = DCUNetConfig(**opts)

    arch = cfg.dcunet_architecture
    if isinstance(arch, str):
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown dcunet_architecture {arch!r}; expected one of {sorted(ARCHITECTURES)}")
    else:
        _validate_rows(arch)
    choices = {
        "dcunet_time_embedding": ("gfp", "ds", "none"),
        "dcunet_fix_length": ("pad", "trim", "none"),
        "dcunet_norm_type": ("bN", "CbN"),
        "dcunet_activation": tuple(_ACTIVATIONS),
        "dcunet_temb_activation": tuple(_ACTIVATIONS),
    }
    for key, allowed in choices.items():
        if getattr(cfg, key) not in allowed:
            raise ValueError(f"{key} must be one of {allowed}; got {getattr(cfg, key)!r}")
    if cfg.dcunet_mask_bound != "none":
        if cfg.dcunet_mask_bound in ("tanh", "sigmoid"):
            raise ValueError(
                f"dcunet_mask_bound={cfg.dcunet_mask_bound!r}: the reference raises NotImplementedError "
                "('mask bounding not implemented'); only 'none' exists"
            )
        raise ValueError(f"dcunet_mask_bound must be 'none'; got {cfg.dcunet_mask_bound!r}")
    if min(cfg.dcunet_temb_layers_global, cfg.dcunet_temb_layers_local) < 0:
        raise ValueError("dcunet_temb_layers_global/local must be >= 0")
    if cfg.has_time_embedding:
        if not cfg.dcunet_time_embedding_complex and cfg.embed_dim % 2:
            # [sin, cos] of embed_dim // 2 features would not fit the E x E Linear layers.
            raise ValueError(f"a real time embedding needs an even embed_dim; got {cfg.embed_dim}")
        if cfg.embedding_features < (2 if cfg.dcunet_time_embedding == "ds" else 1):
            raise ValueError(
                f"embed_dim {cfg.embed_dim} is too small for the {cfg.dcunet_time_embedding!r} embedding"
            )
    return cfg


def backbone_kwargs(hparams: Mapping) -> dict:
    """The entries of a flat Lightning hyper-parameter dict that `DCUNet.__init__` takes
    (the reference passes all of them and swallows the rest in **kwargs)."""
    return {k: hparams[k] for k in DEFAULTS if k in hparams}


# ----------------------------------------------------------------------------- complex primitives


def split_reim(h):
    """(..., 2C) [re | im] -> (re, im), each (..., C)."""
    c = h.shape[-1] // 2
    return h[..., :c], h[..., c:]


def concat_reim(a, b):
    """Complex channel concatenation (torch.cat(dim=1)) of two [re | im] arrays."""
    (ar, ai), (br, bi) = split_reim(a), split_reim(b)
    return jnp.concatenate([ar, br.astype(ar.dtype), ai, bi.astype(ai.dtype)], axis=-1)


def complex_block_kernel(k_re, k_im):
    """Real kernel of a complex linear map on [re | im] channels.

    k_re, k_im: (..., C, O) -> (..., 2C, 2O) = [[k_re, k_im], [−k_im, k_re]], so that
    [a | b] @ K = [a·k_re − b·k_im | a·k_im + b·k_re].
    """
    top = jnp.concatenate([k_re, k_im], axis=-1)
    bottom = jnp.concatenate([-k_im, k_re], axis=-1)
    return jnp.concatenate([top, bottom], axis=-2)


def complex_bias(b_re, b_im):
    """The wrapper's bias on [re | im]: (O,), (O,) -> (2O,) = [b_re − b_im | b_re + b_im]."""
    return jnp.concatenate([b_re - b_im, b_re + b_im])


def transposed_output_padding(size: int, target: int, k: int, s: int, p: int, d: int) -> int:
    """The output padding torch's ConvTranspose2d derives from `output_size` along one axis.

    Raises:
      ValueError: target outside [min, min + s − 1], as torch refuses it.
    """
    smallest = (size - 1) * s - 2 * p + d * (k - 1) + 1
    if not smallest <= target <= smallest + s - 1:
        raise ValueError(
            f"a transposed conv (kernel {k}, stride {s}, padding {p}, dilation {d}) maps {size} to "
            f"{smallest}..{smallest + s - 1}, not {target}"
        )
    return target - smallest


# ----------------------------------------------------------------------------- layers


def _torch_uniform(fan_in: int):
    """U(−1/√fan_in, 1/√fan_in): torch's default for Conv/Linear weights (kaiming a=√5) and biases.

    Drawn flat and reshaped: XLA:CPU (jax 0.10) took ~8 s to compile one 4-D threefry draw of 1k
    values (0.5 s flat), which made `init` of even a tiny DCUNet take half a minute.
    """
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, (math.prod(shape),), dtype, -bound, bound).reshape(shape)

    return init


class ComplexConv(nn.Module):
    """The reference's ComplexConv2d / ComplexConvTranspose2d on [re | im] NHWC arrays.

    Kernels are stored (kh, kw, in, out) for both (torch: Conv2d (out, in, kh, kw),
    ConvTranspose2d (in, out, kh, kw)). Attributes: spec, transpose, use_bias, dtype.
    """

    spec: ConvSpec
    transpose: bool = False
    use_bias: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, h, out_hw: tuple[int, int] | None = None):
        """h: (B, H, W, 2·in) -> (B, H', W', 2·out) in `dtype`; `out_hw` (H', W') is required
        for a transposed conv (torch's `output_size`) and sets its output padding."""
        s = self.spec
        kh, kw = s.kernel
        # torch's fan_in: in·kh·kw for Conv2d; out·kh·kw for ConvTranspose2d (its weight's dim 1).
        fan_in = (s.out_ch if self.transpose else s.in_ch) * kh * kw
        shape = (kh, kw, s.in_ch, s.out_ch)
        k_re = self.param("kernel_re", _torch_uniform(fan_in), shape, jnp.float32)
        k_im = self.param("kernel_im", _torch_uniform(fan_in), shape, jnp.float32)
        kernel = complex_block_kernel(k_re, k_im).astype(self.dtype)
        h = h.astype(self.dtype)
        if self.transpose:
            if out_hw is None:
                raise ValueError("a transposed complex conv needs its output size")
            # The transposed conv as a correlation of the stride-dilated input with the
            # flipped kernel, padded by d·(k − 1) − p (plus the output padding at the end).
            pads = []
            for axis in range(2):
                k, st, p, d = s.kernel[axis], s.stride[axis], s.padding[axis], s.dilation[axis]
                extra = transposed_output_padding(h.shape[1 + axis], out_hw[axis], k, st, p, d)
                pads.append((d * (k - 1) - p, d * (k - 1) - p + extra))
            out = lax.conv_general_dilated(
                h, kernel[::-1, ::-1], (1, 1), pads, lhs_dilation=s.stride, rhs_dilation=s.dilation,
                dimension_numbers=_NHWC,
            )
        else:
            pads = [(p, p) for p in s.padding]
            out = lax.conv_general_dilated(
                h, kernel, s.stride, pads, rhs_dilation=s.dilation, dimension_numbers=_NHWC
            )
        if self.use_bias:
            b_re = self.param("bias_re", _torch_uniform(fan_in), (s.out_ch,), jnp.float32)
            b_im = self.param("bias_im", _torch_uniform(fan_in), (s.out_ch,), jnp.float32)
            out = out + complex_bias(b_re, b_im).astype(self.dtype)
        return out


class ComplexDense(nn.Module):
    """The reference's ComplexLinear(complex_valued=True) on [re | im] vectors, in float32.

    Both nn.Linear layers have biases, and the wrapper applies them to the real and the
    imaginary input alike: a real input (imaginary part 0) still gets b_re + b_im there.
    """

    features: int

    @nn.compact
    def __call__(self, e):
        """e: (B, 2E) float32 -> (B, 2·features) float32."""
        fan_in = e.shape[-1] // 2
        shape = (fan_in, self.features)
        k_re = self.param("kernel_re", _torch_uniform(fan_in), shape, jnp.float32)
        b_re = self.param("bias_re", _torch_uniform(fan_in), (self.features,), jnp.float32)
        k_im = self.param("kernel_im", _torch_uniform(fan_in), shape, jnp.float32)
        b_im = self.param("bias_im", _torch_uniform(fan_in), (self.features,), jnp.float32)
        out = jnp.dot(e.astype(jnp.float32), complex_block_kernel(k_re, k_im), precision=lax.Precision.HIGHEST)
        return out + complex_bias(b_re, b_im)


class ReImBatchNorm(nn.Module):
    """"bN": torch BatchNorm2d on the real and (another) on the imaginary channels.

    Eval uses the running statistics ("batch_stats"); training normalises with the batch's
    mean and biased variance over (B, H, W) and, as torch, moves the running mean and the
    unbiased variance by momentum 0.1, which needs `mutable=["batch_stats"]`.
    """

    features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, h, train: bool):
        """h: (B, H, W, 2C) -> (B, H, W, 2C) in `dtype`; statistics in float32."""
        c = self.features

        def both(kind, init):
            # [re | im] per-channel vectors from the two torch modules' tensors.
            re = self.param(f"{kind}_re", init, (c,), jnp.float32)
            im = self.param(f"{kind}_im", init, (c,), jnp.float32)
            return jnp.concatenate([re, im])

        def stats(kind, init):
            return (self.variable("batch_stats", f"{kind}_re", lambda: init((c,), jnp.float32)),
                    self.variable("batch_stats", f"{kind}_im", lambda: init((c,), jnp.float32)))

        scale = both("scale", nn.initializers.ones)
        bias = both("bias", nn.initializers.zeros)
        mean_vars = stats("mean", jnp.zeros)
        var_vars = stats("var", jnp.ones)
        h = h.astype(jnp.float32)
        if train:
            mean = jnp.mean(h, axis=(0, 1, 2))
            var = jnp.mean(jnp.square(h - mean), axis=(0, 1, 2))
            if not self.is_initializing():
                if not self.is_mutable_collection("batch_stats"):
                    raise ValueError(
                        "train=True updates the BatchNorm running statistics as the reference does: "
                        "call apply(..., train=True, mutable=['batch_stats'])"
                    )
                n = h.shape[0] * h.shape[1] * h.shape[2]
                unbiased = var * (n / max(n - 1, 1))
                for (v_re, v_im), batch in ((mean_vars, mean), (var_vars, unbiased)):
                    new = (1 - _BN_MOMENTUM) * jnp.concatenate([v_re.value, v_im.value]) + _BN_MOMENTUM * batch
                    v_re.value, v_im.value = new[:c], new[c:]
        else:
            mean = jnp.concatenate([mean_vars[0].value, mean_vars[1].value])
            var = jnp.concatenate([var_vars[0].value, var_vars[1].value])
        out = (h - mean) * lax.rsqrt(var + _BN_EPS) * scale + bias
        return out.astype(self.dtype)


def _uniform(low: float, high: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, low, high)

    return init


class ComplexBatchNorm(nn.Module):
    """"CbN": the reference's ComplexBatchNorm (track_running_stats=False, affine).

    Whitens each complex channel with the inverse square root of its 2x2 covariance over the
    batch, (B, H, W), in training and eval alike, then applies W = [[Wrr, Wri], [Wri, Wii]]
    and the bias (Br, Bi).
    """

    features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, h):
        """h: (B, H, W, 2C) -> (B, H, W, 2C) in `dtype`; all arithmetic in float32."""
        c = self.features
        w_rr = self.param("Wrr", nn.initializers.ones, (c,), jnp.float32)
        w_ri = self.param("Wri", _uniform(-0.9, 0.9), (c,), jnp.float32)  # W positive definite
        w_ii = self.param("Wii", nn.initializers.ones, (c,), jnp.float32)
        b_r = self.param("Br", nn.initializers.zeros, (c,), jnp.float32)
        b_i = self.param("Bi", nn.initializers.zeros, (c,), jnp.float32)
        xr, xi = split_reim(h.astype(jnp.float32))
        xr = xr - jnp.mean(xr, axis=(0, 1, 2))
        xi = xi - jnp.mean(xi, axis=(0, 1, 2))
        v_rr = jnp.mean(xr * xr, axis=(0, 1, 2)) + _BN_EPS
        v_ri = jnp.mean(xr * xi, axis=(0, 1, 2))
        v_ii = jnp.mean(xi * xi, axis=(0, 1, 2)) + _BN_EPS
        # Inverse square root of [[v_rr, v_ri], [v_ri, v_ii]] in closed form (s = √det, t = √(tr + 2s)).
        s = jnp.sqrt(v_rr * v_ii - v_ri * v_ri)
        t = jnp.sqrt(v_rr + v_ii + 2 * s)
        inv = 1.0 / (s * t)
        u_rr, u_ii, u_ri = (s + v_ii) * inv, (s + v_rr) * inv, -v_ri * inv
        z_rr = w_rr * u_rr + w_ri * u_ri
        z_ri = w_rr * u_ri + w_ri * u_ii
        z_ir = w_ri * u_rr + w_ii * u_ri
        z_ii = w_ri * u_ri + w_ii * u_ii
        yr = z_rr * xr + z_ri * xi + b_r
        yi = z_ir * xr + z_ii * xi + b_i
        return jnp.concatenate([yr, yi], axis=-1).astype(self.dtype)


class GaussianFourierProjection(nn.Module):
    """sgmse `shared.GaussianFourierProjection`: W ~ N(0, scale²) fixed (stop_gradient; in
    "params" because the reference keeps it as a Parameter with requires_grad=False)."""

    features: int
    complex_valued: bool
    scale: float = 16.0

    @nn.compact
    def __call__(self, t):
        """t: (B,) -> (B, 2E) [re | im]: [sin, cos] (imaginary part 0) or exp(i·)."""
        w = lax.stop_gradient(self.param("W", nn.initializers.normal(self.scale), (self.features,), jnp.float32))
        # The reference's order: ((t·W)·2)·π.
        return _sinusoids(t.astype(jnp.float32)[:, None] * w[None, :] * 2 * np.pi, self.complex_valued)


def diffusion_step_embedding(t, features: int, complex_valued: bool):
    """sgmse `shared.DiffusionStepEmbedding`: sinusoids of t·10^(4k/(K−1)), k < K.

    t: (B,) -> (B, 2E) [re | im]. The phase t·f reaches 1e4 rad, so f must be torch's float32
    value to the last bit: torch rounds the exponent 4k/(K−1) to float32 and then raises 10
    to it (correctly rounded), which this does with numpy once, outside the trace.
    """
    exponent = (4 * np.arange(features)).astype(np.float32) / np.float32(features - 1)
    freqs = (10.0 ** exponent.astype(np.float64)).astype(np.float32)
    return _sinusoids(t.astype(jnp.float32)[:, None] * freqs[None, :], complex_valued)


def _sinusoids(phase, complex_valued: bool):
    """phase (B, K) -> [re | im] of cat[sin, cos] + 0i (B, 2·2K) or of exp(i·phase) (B, 2K)."""
    if complex_valued:
        return jnp.concatenate([jnp.cos(phase), jnp.sin(phase)], axis=-1)
    real = jnp.concatenate([jnp.sin(phase), jnp.cos(phase)], axis=-1)
    return jnp.concatenate([real, jnp.zeros_like(real)], axis=-1)


class _Block(nn.Module):
    """DCUNetComplexEncoderBlock / DCUNetComplexDecoderBlock: act(norm(conv(h) + emb(t)))."""

    config: DCUNetConfig
    spec: ConvSpec
    decoder: bool
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, h, temb, train: bool, out_hw=None):
        """h: (B, H, W, 2·in); temb: (B, 2E) or None -> (B, H', W', 2·out) in `dtype`."""
        cfg, out_ch = self.config, self.spec.out_ch
        name = "deconv" if self.decoder else "conv"
        y = ComplexConv(self.spec, transpose=self.decoder, dtype=self.dtype, name=name)(h, out_hw)
        if temb is not None:
            act = _ACTIVATIONS[cfg.dcunet_temb_activation]
            e = temb
            for j in range(cfg.local_dense_layers):
                e = act(ComplexDense(cfg.embed_dim, name=f"embed_layer_{2 * j}")(e))
            e = act(ComplexDense(out_ch, name=f"embed_layer_{2 * cfg.local_dense_layers}")(e))
            y = y + e[:, None, None, :]  # FeatureMapDense: (B, 2·out) -> (B, 1, 1, 2·out)
        if cfg.dcunet_norm_type == "bN":
            y = ReImBatchNorm(out_ch, dtype=self.dtype, name="norm")(y, train)
        else:
            y = ComplexBatchNorm(out_ch, dtype=self.dtype, name="norm")(y)
        return _ACTIVATIONS[cfg.dcunet_activation](y)


# ----------------------------------------------------------------------------- the network


def fix_input_length(spec, cfg: DCUNetConfig):
    """The reference's `_fix_dcu_input_dims`: spec (B, C, F, T) -> (B, C, F, T') with
    (T' − 1) divisible by the time-stride product, zero-padded ("pad") or trimmed ("trim").

    Raises:
      ValueError: F − 1 not divisible by the frequency-stride product, or a misfit T with
        dcunet_fix_length "none" (the reference raises TypeError for both).
    """
    freq_prod, time_prod = cfg.stride_product
    f, t = spec.shape[2], spec.shape[3]
    if (f - 1) % freq_prod:
        raise ValueError(
            f"dcunet needs F − 1 divisible by {freq_prod} (e.g. F = {freq_prod + 1}); got {spec.shape}"
        )
    remainder = (t - 1) % time_prod
    if not remainder:
        return spec
    if cfg.dcunet_fix_length == "none":
        raise ValueError(
            f"dcunet needs T − 1 divisible by {time_prod} with dcunet_fix_length='none'; got {spec.shape} "
            "(use 'pad' or 'trim')"
        )
    if cfg.dcunet_fix_length == "pad":
        return jnp.pad(spec, ((0, 0), (0, 0), (0, 0), (0, time_prod - remainder)))
    return spec[..., : t - remainder]


def fix_output_length(out, frames: int):
    """The reference's `_fix_dcu_output_dims`: zero-pad or crop the time axis to `frames`."""
    t = out.shape[-1]
    if t >= frames:
        return out[..., :frames]
    return jnp.pad(out, ((0, 0), (0, 0), (0, 0), (0, frames - t)))


class DCUNet(nn.Module):
    """SGMSE's DCUNet: `apply(variables, x, y, t, train=False)` = the reference's
    `dnn(cat([x, y], 1), t)`, without the score's sign.

    x, y: complex (B, 1, F, T) with F − 1 divisible by `config.stride_product[0]` (e.g.
    F = 257, n_fft 512, for all shipped architectures but DilDCUNet-v2, which takes
    F − 1 divisible by 8); T any length with dcunet_fix_length "pad"/"trim". t: (B,).
    Returns complex64 (B, 1, F, T). With "bN", variables hold "batch_stats" too, and
    train=True needs mutable=["batch_stats"]; "CbN" always uses the batch's statistics.

    Attributes:
      config: validated options (`make_config`).
      dtype: compute dtype of the convolutions (e.g. jnp.bfloat16); parameters float32.
    """

    config: DCUNetConfig
    dtype: Dtype = jnp.float32

    def _check_shapes(self, x, y, t):
        if x.ndim != 4 or x.shape[1] != 1 or y is None or y.shape != x.shape:
            raise ValueError(
                f"dcunet takes x and y complex (B, 1, F, T) of one shape; got {getattr(x, 'shape', x)} "
                f"and {getattr(y, 'shape', y)}"
            )
        if not (jnp.iscomplexobj(x) and jnp.iscomplexobj(y)):
            raise ValueError(f"dcunet takes complex spectrograms; got {x.dtype} and {y.dtype}")
        if t is None or jnp.shape(t) != (x.shape[0],):
            raise ValueError(f"t must be (B,) = ({x.shape[0]},); got {None if t is None else jnp.shape(t)}")

    @nn.compact
    def __call__(self, x, y, t, train: bool = False):
        """x, y: complex (B, 1, F, T); t: (B,) -> complex64 (B, 1, F, T)."""
        cfg = self.config
        self._check_shapes(x, y, t)
        frames = x.shape[-1]
        spec = fix_input_length(jnp.concatenate([x, y], axis=1), cfg)
        # (B, 2, F, T') complex -> (B, F, T', 4) real: [x.re, y.re | x.im, y.im].
        h = jnp.concatenate([jnp.real(spec), jnp.imag(spec)], axis=1).transpose(0, 2, 3, 1).astype(jnp.float32)
        in_hw = h.shape[1:3]
        temb = self._time_embedding(t) if cfg.has_time_embedding else None

        skips = []
        for i, spec_i in enumerate(cfg.encoders):
            h = _Block(cfg, spec_i, decoder=False, dtype=self.dtype, name=f"encoders_{i}")(h, temb, train)
            skips.append(h)
        for i, (skip, spec_i) in enumerate(zip(reversed(skips[:-1]), cfg.decoders)):
            h = _Block(cfg, spec_i, decoder=True, dtype=self.dtype, name=f"decoders_{i}")(
                h, temb, train, out_hw=skip.shape[1:3]
            )
            h = concat_reim(h, skip)
        out = ComplexConv(cfg.output_layer, transpose=True, use_bias=True, dtype=self.dtype, name="output_layer")(
            h, in_hw
        )
        re, im = split_reim(out.astype(jnp.float32))
        out = lax.complex(re, im).transpose(0, 3, 1, 2)  # (B, 1, F, T')
        return fix_output_length(out, frames)

    def _time_embedding(self, t):
        """t: (B,) -> (B, 2E) [re | im] float32: the reference's `self.embed(t + 0j)`."""
        cfg = self.config
        t = jnp.asarray(t, jnp.float32)
        if cfg.dcunet_time_embedding == "gfp":
            gfp = GaussianFourierProjection(cfg.embedding_features, cfg.dcunet_time_embedding_complex, name="embed_0")
            e = gfp(t)
        else:
            e = diffusion_step_embedding(t, cfg.embedding_features, cfg.dcunet_time_embedding_complex)
        act = _ACTIVATIONS[cfg.dcunet_temb_activation]
        for k in range(cfg.dcunet_temb_layers_global):
            e = act(ComplexDense(cfg.embed_dim, name=f"embed_{1 + 2 * k}")(e))
        return e


def build(dtype=jnp.float32, remat: str = "none", **kwargs) -> DCUNet:
    """The Flax DCUNet from the reference constructor's keyword arguments (`DEFAULTS`).

    Args:
      dtype: compute dtype of the convolutions; parameters and statistics stay float32.
      remat: only "none" (the blocks are small; accepted for `build_network`'s signature).
      **kwargs: `DCUNet.__init__`'s options; missing ones take its defaults.
    Raises:
      ValueError: invalid value; TypeError: unknown keyword.
    """
    if remat != "none":
        raise ValueError(f"dcunet has no rematerialisation policies; remat must be 'none', not {remat!r}")
    return DCUNet(make_config(**kwargs), dtype=dtype)


# ----------------------------------------------------------------------------- torch import

# torch layout -> flax layout
_TRANSFORMS = {
    "conv": lambda a: np.transpose(a, (2, 3, 1, 0)),  # Conv2d (out, in, kh, kw) -> (kh, kw, in, out)
    "deconv": lambda a: np.transpose(a, (2, 3, 0, 1)),  # ConvTranspose2d (in, out, kh, kw) -> (kh, kw, in, out)
    "linear": lambda a: np.transpose(a, (1, 0)),  # Linear (out, in) -> (in, out)
    "same": lambda a: a,
}


@dataclasses.dataclass(frozen=True)
class _Entry:
    """Where one state_dict tensor goes: Flax collection ("params", "batch_stats" or None for
    torch's num_batches_tracked, which only matters for momentum=None) and path."""

    collection: str | None
    flax_path: tuple[str, ...]
    transform: str
    torch_shape: tuple[int, ...]


def _complex_conv_entries(tk: str, fp: tuple, spec: ConvSpec, transpose: bool, bias: bool):
    kh, kw = spec.kernel
    shape = (spec.in_ch, spec.out_ch, kh, kw) if transpose else (spec.out_ch, spec.in_ch, kh, kw)
    layout = "deconv" if transpose else "conv"
    for part in ("re", "im"):
        yield f"{tk}.{part}_module.weight", _Entry("params", fp + (f"kernel_{part}",), layout, shape)
        if bias:
            yield f"{tk}.{part}_module.bias", _Entry("params", fp + (f"bias_{part}",), "same", (spec.out_ch,))


def _complex_dense_entries(tk: str, fp: tuple, cin: int, cout: int):
    for part in ("re", "im"):
        yield f"{tk}.{part}.weight", _Entry("params", fp + (f"kernel_{part}",), "linear", (cout, cin))
        yield f"{tk}.{part}.bias", _Entry("params", fp + (f"bias_{part}",), "same", (cout,))


def _norm_entries(cfg: DCUNetConfig, tk: str, fp: tuple, c: int):
    if cfg.dcunet_norm_type == "CbN":
        for leaf in ("Wrr", "Wri", "Wii", "Br", "Bi"):
            yield f"{tk}.{leaf}", _Entry("params", fp + (leaf,), "same", (c,))
        return
    for part in ("re", "im"):
        m = f"{tk}.{part}_module"
        yield f"{m}.weight", _Entry("params", fp + (f"scale_{part}",), "same", (c,))
        yield f"{m}.bias", _Entry("params", fp + (f"bias_{part}",), "same", (c,))
        yield f"{m}.running_mean", _Entry("batch_stats", fp + (f"mean_{part}",), "same", (c,))
        yield f"{m}.running_var", _Entry("batch_stats", fp + (f"var_{part}",), "same", (c,))
        yield f"{m}.num_batches_tracked", _Entry(None, (), "same", ())


def _block_entries(cfg: DCUNetConfig, tk: str, fp: tuple, spec: ConvSpec, decoder: bool):
    conv = "deconv" if decoder else "conv"
    yield from _complex_conv_entries(f"{tk}.{conv}", fp + (conv,), spec, decoder, bias=False)
    yield from _norm_entries(cfg, f"{tk}.norm", fp + ("norm",), spec.out_ch)
    if cfg.has_time_embedding:
        e = cfg.embed_dim
        for j in range(cfg.local_dense_layers):
            yield from _complex_dense_entries(f"{tk}.embed_layer.{2 * j}", fp + (f"embed_layer_{2 * j}",), e, e)
        j = 2 * cfg.local_dense_layers  # FeatureMapDense wraps its ComplexLinear as `.dense`
        yield from _complex_dense_entries(
            f"{tk}.embed_layer.{j}.dense", fp + (f"embed_layer_{j}",), e, spec.out_ch
        )


def _entries(cfg: DCUNetConfig) -> dict[str, _Entry]:
    """Ordered torch key -> destination, in state_dict order (parameters and buffers)."""
    entries: dict[str, _Entry] = {}
    # Registration order of DCUNet.__init__: embed, encoders, decoders, output_layer.
    if cfg.has_time_embedding:
        if cfg.dcunet_time_embedding == "gfp":
            entries["embed.0.W"] = _Entry("params", ("embed_0", "W"), "same", (cfg.embedding_features,))
        e = cfg.embed_dim
        for k in range(cfg.dcunet_temb_layers_global):
            entries.update(_complex_dense_entries(f"embed.{1 + 2 * k}", (f"embed_{1 + 2 * k}",), e, e))
    for i, spec in enumerate(cfg.encoders):
        entries.update(_block_entries(cfg, f"encoders.{i}", (f"encoders_{i}",), spec, decoder=False))
    for i, spec in enumerate(cfg.decoders):
        entries.update(_block_entries(cfg, f"decoders.{i}", (f"decoders_{i}",), spec, decoder=True))
    entries.update(_complex_conv_entries("output_layer", ("output_layer",), cfg.output_layer, True, bias=True))
    return entries


def torch_param_names(kwargs: Mapping) -> list[str]:
    """The reference's `named_parameters()` names, in order, without ScoreModel's `dnn.`
    prefix: the order of `parameters()`, hence of torch_ema's `shadow_params`. Includes the
    fixed Fourier weights `embed.0.W`; excludes the BatchNorm buffers (`torch_buffer_names`),
    which the EMA does not hold: take them from the checkpoint's state_dict."""
    return [k for k, e in _entries(make_config(**dict(kwargs))).items() if e.collection == "params"]


def torch_buffer_names(kwargs: Mapping) -> list[str]:
    """The state_dict's buffers, in order: `running_mean`, `running_var` and
    `num_batches_tracked` of every "bN" BatchNorm (none for "CbN")."""
    return [k for k, e in _entries(make_config(**dict(kwargs))).items() if e.collection != "params"]


def torch_param_shapes(kwargs: Mapping) -> dict[str, tuple[int, ...]]:
    """Every state_dict key (parameters and buffers) with its shape in the reference layout."""
    return {k: e.torch_shape for k, e in _entries(make_config(**dict(kwargs))).items()}


def _check(kwargs: Mapping, state_dict: Mapping, entries: dict[str, _Entry], required: set[str]) -> None:
    """Raises one ValueError naming every missing, unexpected and wrongly shaped tensor."""
    missing = [k for k in entries if k in required and k not in state_dict]
    extra = [k for k in state_dict if k not in entries]
    wrong = [
        f"{k}: shape {tuple(np.shape(state_dict[k]))}, expected {entries[k].torch_shape}"
        for k in entries
        if k in state_dict and tuple(np.shape(state_dict[k])) != entries[k].torch_shape
    ]
    if not (missing or extra or wrong):
        return
    parts = []
    if missing:
        parts.append(f"missing keys {missing}")
    if extra:
        hint = " (strip the 'dnn.' prefix)" if all(str(k).startswith("dnn.") for k in extra) else ""
        parts.append(f"unexpected keys {extra}{hint}")
    if wrong:
        parts.append(f"wrong shapes [{'; '.join(wrong)}]")
    raise ValueError(f"state_dict does not fit dcunet {dict(kwargs)}: " + "; ".join(parts))


def _collect(entries: dict[str, _Entry], state_dict: Mapping, collection: str) -> dict:
    tree: dict = {}
    for key, entry in entries.items():
        if entry.collection != collection:
            continue
        value = np.asarray(state_dict[key], dtype=np.float32)
        node = tree
        for part in entry.flax_path[:-1]:
            node = node.setdefault(part, {})
        node[entry.flax_path[-1]] = np.ascontiguousarray(_TRANSFORMS[entry.transform](value))
    return tree


def params_from_torch(kwargs: Mapping, state_dict: Mapping) -> dict:
    """Flax "params" from the reference's tensors.

    Args:
      kwargs: the constructor's keyword arguments (as for `build`).
      state_dict: torch key (no `dnn.` prefix) -> array-like in the reference layout. Every
        parameter must be there (e.g. EMA shadow params named by `torch_param_names`); the
        BatchNorm buffers may be there too (a full state_dict) and are ignored here.
    Returns:
      Nested dict of float32 numpy arrays.
    Raises:
      ValueError: naming every missing key, unexpected key and wrongly shaped tensor.
    """
    entries = _entries(make_config(**dict(kwargs)))
    _check(kwargs, state_dict, entries, {k for k, e in entries.items() if e.collection == "params"})
    return _collect(entries, state_dict, "params")


def batch_stats_from_torch(kwargs: Mapping, state_dict: Mapping) -> dict:
    """Flax "batch_stats" (the "bN" running means and variances) from a full state_dict;
    {} for "CbN". `num_batches_tracked` is optional and unused. Raises ValueError as
    `params_from_torch` (parameters may be absent here)."""
    entries = _entries(make_config(**dict(kwargs)))
    _check(kwargs, state_dict, entries, {k for k, e in entries.items() if e.collection == "batch_stats"})
    return _collect(entries, state_dict, "batch_stats")


def variables_from_torch(kwargs: Mapping, state_dict: Mapping) -> dict:
    """{"params", "batch_stats"} (the latter only for "bN") from a full state_dict, ready for
    `module.apply(variables, x, y, t)`. Raises ValueError as `params_from_torch`."""
    entries = _entries(make_config(**dict(kwargs)))
    _check(kwargs, state_dict, entries, {k for k, e in entries.items() if e.collection is not None})
    variables = {"params": _collect(entries, state_dict, "params")}
    stats = _collect(entries, state_dict, "batch_stats")
    if stats:
        variables["batch_stats"] = stats
    return variables


def variable_shapes(kwargs: Mapping) -> dict:
    """{"params": ..., "batch_stats": ...} of nested dicts of Flax shapes (no arrays built)."""
    tree: dict = {}
    for entry in _entries(make_config(**dict(kwargs))).values():
        if entry.collection is None:
            continue
        node = tree.setdefault(entry.collection, {})
        for part in entry.flax_path[:-1]:
            node = node.setdefault(part, {})
        node[entry.flax_path[-1]] = _TRANSFORMS[entry.transform](np.empty(entry.torch_shape, np.bool_)).shape
    return tree

