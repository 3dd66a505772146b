"""BUDDy's speech prior network (`NCSNppTime`, sp-uhh/buddy `networks/ncsnpp.py`) in Flax.

F(x, c_noise): waveform (B, L) -> STFT (periodic Hann window of n_fft, hop, center=True with
reflect padding, one-sided, unnormalised: torch.stft's conventions, `diffrestore.audio.stft`)
-> frames zero-padded at the end to a multiple of 16 -> unconditional NCSN++
(`ncsnpp_buddy` with input_channels=2: re, im of the one spectrogram; conditioned on c_noise
itself, EDM's ¼ ln σ) -> inverse STFT of all frames, padded ones included, cropped to L.

As in the reference the spectrogram is not compressed or scaled: the network sees the raw
STFT of its (c_in-scaled) input, and its complex output is turned back into a waveform.

The reference derives NCSNppTime from NCSNpp, so its state_dict is NCSNpp's; likewise
`NCSNppSTFT` derives from `NCSNpp` and its "params" tree is that of the `ncsnpp_buddy` backbone
with the same options (`torch_import` maps both).

Shipped configuration (`DEFAULTS`, BUDDy's `conf/network/ncsnpp.yaml`): nf 128, ch_mult
(1, 2, 2, 2), one residual block per level, attention only in the middle (attn_resolutions
(0,)), fir False, biggan blocks, output_skip / input_skip / sum, Fourier embedding (scale 16),
n_fft 510 (256 frequency rows = image_size), hop 128.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from diffrestore.audio.stft import hann_window, istft, stft
from diffrestore.models import ncsnpp

# The reference pads the frames to a multiple of 16 (`NCSNppTime.stft`: N_pad = 16).
FRAME_MULTIPLE = 16

# sp-uhh/buddy `conf/network/ncsnpp.yaml`: the NCSNpp keywords and `stft.{n_fft, hop_length}`
# (its `stft.center` is True, the only value `diffrestore.audio.stft` implements). The yaml
# repeats the constructor's defaults except input_channels: 2 (the noisy state alone), not 4.
DEFAULTS: dict[str, Any] = dict(ncsnpp.DEFAULTS["ncsnpp_buddy"], input_channels=2, n_fft=510, hop_length=128)
STFT_KEYS = ("n_fft", "hop_length")


@dataclasses.dataclass(frozen=True)
class NCSNppSTFTConfig:
    """The network's NCSN++ options (`ncsnpp.NCSNppConfig` of "ncsnpp_buddy") and its STFT."""

    network: ncsnpp.NCSNppConfig
    n_fft: int = 510
    hop_length: int = 128

    @property
    def num_freqs(self) -> int:
        return self.n_fft // 2 + 1


def make_config(**kwargs) -> NCSNppSTFTConfig:
    """Validated config from `NCSNppTime`'s keywords (missing ones: `DEFAULTS`).

    Raises:
      TypeError: an unknown keyword. ValueError: invalid values, or an STFT whose frequency
        rows the U-Net cannot halve len(ch_mult) − 1 times, or a network too deep for frames
        padded to a multiple of 16.
    """
    unknown = sorted(set(kwargs) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"ncsnpp_stft takes no option(s) {unknown}; it accepts {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **kwargs}
    n_fft, hop = int(opts.pop("n_fft")), int(opts.pop("hop_length"))
    net = ncsnpp.make_config("ncsnpp_buddy", **opts)
    if net.input_channels != 2:
        raise ValueError(
            f"the STFT prior feeds one spectrogram (input_channels=2), got input_channels={net.input_channels}"
        )
    if n_fft < 2 or not 0 < hop <= n_fft // 2:
        # hop <= n_fft/2 keeps the Hann window's overlap-add nonzero everywhere (iSTFT exists).
        raise ValueError(f"need n_fft >= 2 and 0 < hop_length <= n_fft // 2, got n_fft={n_fft}, hop_length={hop}")
    cfg = NCSNppSTFTConfig(network=net, n_fft=n_fft, hop_length=hop)
    factor = 2 ** (net.num_resolutions - 1)
    if cfg.num_freqs % factor:
        raise ValueError(
            f"n_fft={n_fft} gives {cfg.num_freqs} frequency rows, not a multiple of {factor} "
            f"(2^(len(ch_mult)-1)); BUDDy uses n_fft = 2·2^k − 2 (510: 256 rows)"
        )
    if FRAME_MULTIPLE % factor:
        raise ValueError(
            f"ch_mult has {net.num_resolutions} levels: frames padded to a multiple of {FRAME_MULTIPLE} "
            f"(as the reference pads) cannot be halved {net.num_resolutions - 1} times"
        )
    return cfg


class NCSNppSTFT(ncsnpp.NCSNpp):
    """BUDDy's `NCSNppTime` as a Flax module.

    Call as `module.apply({"params": params}, x, c_noise)` with x float32 (B, L) waveforms
    (L > n_fft / 2, for the reflect padding) and c_noise (B,) or (B, 1) (EDM's ¼ ln σ); returns
    F float32 (B, L). Any L works: the frames are padded to a multiple of 16 and the inverse
    STFT is cropped to L.

    Attributes:
      config: the `ncsnpp_buddy` options (`NCSNppSTFTConfig.network`), as for `NCSNpp`.
      n_fft, hop_length: the STFT.
      dtype: compute dtype of convolutions and matmuls (e.g. jnp.bfloat16); parameters, the
        STFT and its inverse, GroupNorm statistics, the time embedding and the output heads
        stay float32.
      remat: as for `NCSNpp` (rematerialised blocks in training).
    """

    n_fft: int = 510
    hop_length: int = 128

    @nn.compact
    def __call__(self, x, c_noise, train: bool = False):
        if x.ndim != 2:
            raise ValueError(f"x must be (B, L) waveforms, got shape {x.shape}")
        batch, length = x.shape
        c_noise = jnp.asarray(c_noise, jnp.float32).reshape(-1)
        if c_noise.shape != (batch,):
            raise ValueError(f"c_noise must be (B,) or (B, 1) with B = {batch}, got {c_noise.size} values")
        window = hann_window(self.n_fft)
        spec = stft(x.astype(jnp.float32), self.n_fft, self.hop_length, window)  # (B, F, T) complex64
        frames = spec.shape[-1]
        pad = -frames % FRAME_MULTIPLE
        spec = jnp.pad(spec, ((0, 0), (0, 0), (0, pad)))
        out = self._network(spec[:, None], None, c_noise, train)[:, 0]  # (B, F, T + pad)
        # Like torch.istft(length=L) on every frame: the padded frames' outputs overlap the last
        # samples and their windows count in the normalising envelope.
        return istft(out, self.n_fft, self.hop_length, window, length=length)


def build(dtype=jnp.float32, remat: str = "none", **kwargs) -> NCSNppSTFT:
    """The Flax module for `NCSNppTime` keywords `kwargs` (defaults: `DEFAULTS`); `remat` as for
    `ncsnpp.build_backbone`."""
    if remat != "none" and remat not in ncsnpp.REMAT_POLICIES:
        raise ValueError(f"remat must be one of {sorted(ncsnpp.REMAT_POLICIES)} or 'none', not {remat!r}")
    cfg = make_config(**kwargs)
    return NCSNppSTFT(cfg.network, dtype=dtype, remat=remat, n_fft=cfg.n_fft, hop_length=cfg.hop_length)
