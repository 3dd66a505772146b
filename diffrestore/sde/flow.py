"""Conditional flow matching on complex spectrograms: NeMo's optimal-transport flow.

This is `OptimalTransportFlow` of NVIDIA NeMo (`nemo/collections/audio/parts/submodules/flow.py`,
l. 106-167) with the training step of `FlowMatchingAudioToAudioModel._step`
(`nemo/collections/audio/models/enhancement.py`, l. 814-858), the OT-CFM of Lipman et al.
(2023) conditioned on the noisy spectrogram y.

Direction of time (NeMo's, the opposite of our SDEs'): t runs forward from the noise end to
the clean end. t = 0 is the start x_start + σ_start·z, t = time_max (= 1) is the clean x_1.
Every conditional path is Gaussian with

    mean_t = (time_max − t)·x_start + t·x_1,      std_t = (time_max − t)·σ_start + t·σ_end,

(flow.py l. 145-149) and is pushed along by the conditional vector field

    u_t(x | x_start, x_1) = (σ_end·(x − x_start) − σ_start·(x − x_1)) / ((1 − t)·σ_start + t·σ_end + eps)

(flow.py l. 165-167), which equals d mean/dt + (d std/dt)/std · (x − mean_t): each path
x_t = mean_t + std_t·z with fixed z is a straight line in t. When σ_start = σ_end the field is
x_1 − x_start (l. 162-163). NeMo writes (1 − t) in the field and (time_max − t) in the path;
they agree for time_max = 1, the only value its configs use.

Where the path starts (`start`):
* "zero" (NeMo): x_start = 0. The noisy spectrogram only conditions the estimator
  (`x_start = torch.zeros_like(input_enc)`, enhancement.py l. 838; inference starts at
  `torch.randn_like(encoded) * sigma_start`, l. 785).
* "noisy" (FlowSE-style): x_start = y, so the path runs from y + σ_start·z to the clean x_1.

Spectrograms are complex (B, 1, F, T) as in `diffrestore.sde.ou`; t is per example (B,);
z ~ CN(0, 1) (`complex_normal`, real and imaginary parts N(0, ½), as torch.randn_like on a
complex tensor). The training objective is `losses.make_flow_matching_loss_fn`, the Euler
sampler `sampling.flow.flow_euler_sample`.
"""
from __future__ import annotations

import dataclasses
import jax
import jax.numpy as jnp

from diffrestore.sde.base import batch_view, complex_normal

STARTS = ("zero", "noisy")
# NeMo's `estimator_target` values ("conditional_vector_field" or "data"); "vector_field" is
# accepted as a short name for the first.
ESTIMATOR_TARGETS = ("vector_field", "data")
_TARGET_ALIASES = {"conditional_vector_field": "vector_field", "vector_field": "vector_field", "data": "data"}


def estimator_target_name(target: str) -> str:
    """Canonical estimator target: "vector_field" (NeMo's "conditional_vector_field") or "data"."""
    try:
        return _TARGET_ALIASES[target]
    except KeyError:
        raise ValueError(f"unknown estimator target {target!r}; choose from {sorted(_TARGET_ALIASES)}") from None


@dataclasses.dataclass(frozen=True)
class OTFlow:
    """NeMo's OptimalTransportFlow (OT-CFM) between a Gaussian start and the clean spectrogram.

    Defaults are NeMo's `examples/audio/conf/flow_matching_generative.yaml`: σ_start = 1,
    σ_end = 1e-4, time in [1e-8, 1], 20 Euler steps.

    Attributes:
      sigma_start: std of the start distribution (t = 0).
      sigma_end: std around the clean spectrogram (t = time_max).
      time_min, time_max: the time range; training draws t ~ U[time_min, time_max] and the
        Euler sampler integrates from time_min to time_max.
      start: "zero" (NeMo: x_start = 0) or "noisy" (x_start = y), see the module docstring.
      vf_eps: added to the field's denominator (NeMo's `eps=1e-6` argument). It is not called
        `eps` so that the config's shared `sde.eps` (a bridge's 1e-8) does not land here.
      N: default number of sampler steps (the yaml's `sampler.num_steps`).
    """

    sigma_start: float = 1.0
    sigma_end: float = 1e-4
    time_min: float = 1e-8
    time_max: float = 1.0
    start: str = "zero"
    vf_eps: float = 1e-6
    N: int = 20

    def __post_init__(self):
        if self.start not in STARTS:
            raise ValueError(f"unknown flow start {self.start!r}; choose from {STARTS}")
        if not self.time_min < self.time_max:
            raise ValueError(f"time_min {self.time_min} must be below time_max {self.time_max}")

    @property
    def T(self) -> float:
        """The end of the time range (the clean end, unlike an SDE's T, which is the noisy end)."""
        return self.time_max

    def start_mean(self, y):
        """x_start (like y): zeros ("zero", NeMo) or y itself ("noisy")."""
        return jnp.zeros_like(y) if self.start == "zero" else y

    def mean(self, x_clean, y, t, *, x_start=None):
        """mean_t = (time_max − t)·x_start + t·x_clean (flow.py l. 145-146); like x_clean."""
        x_start = self.start_mean(y) if x_start is None else x_start
        tb = batch_view(jnp.asarray(t, jnp.float32), x_clean)
        return (self.time_max - tb) * x_start + tb * x_clean

    def std(self, t):
        """std_t = (time_max − t)·σ_start + t·σ_end (flow.py l. 148-149); (B,) like t."""
        t = jnp.asarray(t, jnp.float32)
        return (self.time_max - t) * self.sigma_start + t * self.sigma_end

    def marginal_prob(self, x_clean, y, t):
        """(mean_t, std_t) of the conditional path, the SDEs' `marginal_prob` interface."""
        return self.mean(x_clean, y, t), self.std(t)

    def sample_path(self, x_clean, y, t, z):
        """x_t = mean_t + std_t·z (NeMo's `ConditionalFlow.sample` with z given).

        Args:
          x_clean: complex (B, 1, F, T) clean spectrogram x_1.
          y: complex (B, 1, F, T) noisy spectrogram (only used when start = "noisy").
          t: (B,) times in [time_min, time_max].
          z: CN(0, 1) draw shaped like x_clean.
        """
        return self.mean(x_clean, y, t) + batch_view(self.std(t), x_clean) * z

    def vector_field(self, x_t, x_clean, y, t, *, x_start=None):
        """The conditional vector field u_t(x_t | x_start, x_clean) (flow.py l. 151-167).

        Args:
          x_t: complex (B, 1, F, T), the point where the field is evaluated.
          x_clean: complex (B, 1, F, T), the path's end x_1 (or an estimate of it).
          y: complex (B, 1, F, T) noisy spectrogram, giving x_start = `start_mean(y)`.
          t: (B,) times.
          x_start: overrides x_start; NeMo's sampler passes its initial state here when it
            turns a clean estimate into a field (flow.py l. 263).

        Returns:
          complex (B, 1, F, T).
        """
        x_start = self.start_mean(y) if x_start is None else x_start
        # A Python comparison of two floats: the rectified-flow/I-CFM branch is chosen at trace time.
        if self.sigma_start == self.sigma_end:
            return x_clean - x_start
        tb = batch_view(jnp.asarray(t, jnp.float32), x_t)
        num = self.sigma_end * (x_t - x_start) - self.sigma_start * (x_t - x_clean)
        denom = (1 - tb) * self.sigma_start + tb * self.sigma_end
        return num / (denom + self.vf_eps)

    def prior_sampling(self, key, y, z=None):
        """The start state x_start + σ_start·z (enhancement.py l. 785); pass `z` to replay a draw."""
        if z is None:
            z = complex_normal(key, y.shape, y.dtype)
        return self.start_mean(y) + self.sigma_start * z

    def sample_time(self, key, batch_size: int):
        """t ~ U[time_min, time_max) per example, (B,) float32 (flow.py l. 76-81)."""
        return jax.random.uniform(key, (batch_size,), jnp.float32, self.time_min, self.time_max)
