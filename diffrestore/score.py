"""What the network's output means: SGMSE's `ScoreModel.forward`, as a pure function.

Backbones return a raw complex map; this module turns it into what a sampler consumes:
the score ∇log p_t(x|y) for score-based models, or the clean estimate x̂ for data-prediction
models (the Schrödinger bridge). The rules follow the reference exactly:

* `ncsnpp`, `ncsnpp_48k` (the SGMSE+ papers): score = −net([x_t, y], t).
* `ncsnpp_storm` (StoRM's score network): score = −net([x_t, y, D(y)], t), as ncsnpp.
* `ncsnpp_v2` (Richter et al., "Investigating training objectives", 2024):
  F = net(c_in·x_t, c_in·y, t), optionally divided by σ_t or t (network_scaling); then
  score_matching: score = c_skip·x_t + c_out·F; denoiser: score = (F − x_t)/σ_t²;
  data_prediction: x̂ = c_skip·x_t + c_out·F; flow_matching (NeMo; c_in = c_out = 1,
  c_skip = 0): F itself, the vector field or the clean estimate.

EDM priors (CQT-Diff, CQTdiff+/BABE) work on real waveforms: `make_edm_denoiser` wraps a raw
network F into the denoiser D(x, σ) = c_skip·x + c_out·F(c_in·x, c_noise) with the
coefficients of `diffrestore.sde.EDM`; samplers and posterior guidance consume D.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax.numpy as jnp

from diffrestore.sde.base import batch_view

LOSS_TYPES = ("score_matching", "denoiser", "data_prediction", "flow_matching", "crp")


@dataclasses.dataclass(frozen=True)
class OutputSpec:
    """The reference's ScoreModel arguments that shape the network output."""

    backbone: str = "ncsnpp"
    loss_type: str = "score_matching"
    network_scaling: str = ""  # "", "1/sigma" or "1/t" ("" = the reference's None)
    c_in: str = "1"
    c_out: str = "1"
    c_skip: str = "0"
    sigma_data: float = 0.1
    estimator_target: str = "vector_field"  # flow_matching: "vector_field" or "data" (NeMo)

    def __post_init__(self):
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"unknown loss_type {self.loss_type!r}; choose from {LOSS_TYPES}")
        if self.network_scaling not in ("", "1/sigma", "1/t"):
            raise ValueError(f"unknown network_scaling {self.network_scaling!r}")
        if self.c_in not in ("1", "edm") or self.c_skip not in ("0", "edm"):
            raise ValueError(f"unknown c_in/c_skip {self.c_in!r}/{self.c_skip!r}")
        if self.c_out not in ("1", "sigma", "1/sigma", "edm"):
            raise ValueError(f"unknown c_out {self.c_out!r}")

    @property
    def predicts_data(self) -> bool:
        """True when the model output is a clean estimate x̂ rather than a score."""
        return self.backbone == "ncsnpp_v2" and self.loss_type == "data_prediction"

    @property
    def model_kind(self) -> str:
        """What a sampler gets from this model (`sampling.model_kind`): "score",
        "data_prediction" (a bridge's x̂), "vector_field" or "flow_data" (flow matching)."""
        if self.loss_type == "flow_matching":
            return "flow_data" if self.estimator_target == "data" else "vector_field"
        return "data_prediction" if self.predicts_data else "score"


def _c_in(spec: OutputSpec, sigma):
    if spec.c_in == "edm":
        return 1.0 / jnp.sqrt(sigma**2 + spec.sigma_data**2)
    return jnp.ones_like(sigma)


def _c_out(spec: OutputSpec, sigma):
    if spec.c_out == "sigma":
        return sigma
    if spec.c_out == "1/sigma":
        return 1.0 / sigma
    if spec.c_out == "edm":
        return sigma * spec.sigma_data / jnp.sqrt(spec.sigma_data**2 + sigma**2)
    return jnp.ones_like(sigma)


def _c_skip(spec: OutputSpec, sigma):
    if spec.c_skip == "edm":
        return spec.sigma_data**2 / (sigma**2 + spec.sigma_data**2)
    return jnp.zeros_like(sigma)


def make_model_fn(apply_fn: Callable, sde, spec: OutputSpec) -> Callable:
    """Wraps a backbone's apply into the reference's forward.

    Args:
      apply_fn: `(params, x, y, t, **kw) -> raw` with x, y complex (B, 1, F, T), t (B,).
      sde: the SDE (its `std(t)` gives σ_t for the preconditioning).
      spec: output rules.

    Returns:
      `model_fn(params, x_t, y, t, **kw)` -> score, or x̂ when `spec.predicts_data`.
    """
    if spec.backbone != "ncsnpp_v2":

        def model_fn(params, x_t, y, t, **kw):
            return -apply_fn(params, x_t, y, t, **kw)

        return model_fn

    def model_fn(params, x_t, y, t, **kw):
        sigma = sde.std(t)
        c_in = batch_view(_c_in(spec, sigma), x_t)
        out = apply_fn(params, c_in * x_t, c_in * y, t, **kw)
        if spec.network_scaling == "1/sigma":
            out = out / batch_view(sigma, out)
        elif spec.network_scaling == "1/t":
            out = out / batch_view(t, out)
        if spec.loss_type == "denoiser":
            return (out - x_t) / batch_view(sigma, x_t) ** 2
        # score_matching and data_prediction share the skip/out form.
        return batch_view(_c_skip(spec, sigma), x_t) * x_t + batch_view(_c_out(spec, sigma), out) * out

    return model_fn


def make_edm_denoiser(apply_fn: Callable, sde) -> Callable:
    """Wraps a raw network into the EDM denoiser (Karras et al. 2022, Table 1).

    Args:
      apply_fn: `(params, x_in, c_noise, **kw) -> F`, x_in shaped like x (real waveforms
        (B, L) for the priors), c_noise (B, 1) as the references pass it.
      sde: an `EDM` (its `precondition(σ)` gives c_skip, c_out, c_in, c_noise).

    Returns:
      `denoise_fn(params, x, sigma, **kw) -> D(x, σ)` shaped like x; sigma is a scalar, (B,) or
      (B, 1) (the references' shape).
    """

    def denoise_fn(params, x, sigma, **kw):
        sigma = jnp.asarray(sigma, jnp.float32)
        sigma = jnp.broadcast_to(sigma.reshape(-1) if sigma.ndim else sigma, x.shape[:1])
        c_skip, c_out, c_in, c_noise = sde.precondition(sigma)
        out = apply_fn(params, batch_view(c_in, x) * x, c_noise[:, None], **kw)
        return batch_view(c_skip, x) * x + batch_view(c_out, out) * out

    return denoise_fn
