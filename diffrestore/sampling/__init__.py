"""Reverse-process samplers: predictor-corrector, probability-flow ODE, Schrödinger bridge, EDM.

Every sampler has the signature

    sampler(model_fn, sde, y, draw, num_steps) -> (x̂, network_evaluations)

where `draw` is a noise source from `sampling.noise`, `num_steps` may be a traced integer, and
`model_fn` is what the sampler's model kind (`model_kind(name)`) says:

* "score": `model_fn(x, y, t)` = ∇log p_t(x|y) (pc, ode_*);
* "data_prediction": `model_fn(x, y, t)` = x̂, a bridge's clean estimate (sb_*);
* "edm_denoiser": `model_fn(x, sigma)` = D(x, σ), an EDM denoiser (`score.make_edm_denoiser`
  with its parameters bound, or a posterior's wrapper of it); y is the start state or only
  gives the shape (edm_heun).
* "vector_field": `model_fn(x, y, t)` = v, a flow-matching field (flow_euler);
* "flow_data": `model_fn(x, y, t)` = x̂, a flow-matching model's clean estimate, which the
  sampler turns into the flow's field (flow_euler_data). Called like "data_prediction", but
  integrated along the flow's path, so the two kinds do not share samplers.

`get_sampler(name, **options)` binds the options; names are listed in `SAMPLERS`.
"""
from __future__ import annotations

import functools

from diffrestore.sampling.bridge import sb_sample
from diffrestore.sampling.edm import edm_heun_sample
from diffrestore.sampling.flow import flow_euler_sample
from diffrestore.sampling.guidance import GUIDANCE, guided_denoiser
from diffrestore.sampling.noise import example_keys, keyed_noise, replayed_noise, standard_normal
from diffrestore.sampling.ode import ode_sample, ode_sample_adaptive
from diffrestore.sampling.pc import CORRECTORS, PREDICTORS, pc_sample

MODEL_KINDS = ("score", "data_prediction", "edm_denoiser", "vector_field", "flow_data")

# name -> (function, options it accepts, the model kind it consumes)
_REGISTRY = {
    "pc": (pc_sample, {"predictor", "corrector", "snr", "corrector_steps", "eps", "denoise", "probability_flow", "start_time", "step_size"}, "score"),
    "ode_euler": (functools.partial(ode_sample, method="euler"), {"eps", "denoise"}, "score"),
    "ode_heun": (functools.partial(ode_sample, method="heun"), {"eps", "denoise"}, "score"),
    "ode_adaptive": (None, {"eps", "denoise", "rtol", "atol", "max_steps"}, "score"),
    "sb_ode": (functools.partial(sb_sample, kind="ode"), {"eps"}, "data_prediction"),
    "sb_sde": (functools.partial(sb_sample, kind="sde"), {"eps"}, "data_prediction"),
    # Options: S_churn, S_tmin, S_tmax, S_noise (CQT-Diff defaults 5, 0, 50, 1), convention
    # ("cqtdiff", "babe", "karras"), start_sigma (None or BABE's warm-start level, e.g. 0.2).
    # NeMo's Euler sampler of conditional flow matching; condition=False feeds zeros for y.
    "flow_euler": (flow_euler_sample, {"condition"}, "vector_field"),
    "flow_euler_data": (functools.partial(flow_euler_sample, estimator_target="data"), {"condition"}, "flow_data"),
    "edm_heun": (edm_heun_sample, {"S_churn", "S_tmin", "S_tmax", "S_noise", "convention", "start_sigma"}, "edm_denoiser"),
}
SAMPLERS = tuple(_REGISTRY)


def model_kind(name: str) -> str:
    """What the sampler's `model_fn` must be: one of `MODEL_KINDS`."""
    return _registry_entry(name)[2]


def needs_data_prediction(name: str) -> bool:
    """True for samplers that consume a clean estimate instead of a score.

    That is a bridge's x̂(x, y, t) ("data_prediction") or an EDM denoiser D(x, σ)
    ("edm_denoiser"); the two are called differently, so new code should ask `model_kind`.
    """
    return model_kind(name) != "score"


def _registry_entry(name):
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; choose from {SAMPLERS}") from None


def get_sampler(name: str, **options):
    """Binds a sampler's options; unknown options raise (so typos do not pass silently)."""
    fn, accepted, _ = _registry_entry(name)
    unknown = set(options) - accepted
    if unknown:
        raise ValueError(f"sampler {name!r} takes no option(s) {sorted(unknown)}; it takes {sorted(accepted)}")
    if name == "ode_adaptive":
        # The adaptive solver chooses its own steps; num_steps is ignored.
        def adaptive(model_fn, sde, y, draw, num_steps=None):
            del num_steps
            return ode_sample_adaptive(model_fn, sde, y, draw, **options)

        return adaptive
    return functools.partial(fn, **options)


def draws_needed(name: str, num_steps: int, corrector: str = "ald", corrector_steps: int = 1) -> int:
    """How many noise draws a run makes (to size replayed noise)."""
    if name == "pc":
        n_corr = 0 if corrector == "none" else corrector_steps
        return 1 + num_steps * (n_corr + 1)
    if name == "sb_sde":
        return num_steps
    if name == "edm_heun":
        return 1 + num_steps  # the prior, then at most one churn draw per step
    return 1


__all__ = [
    "GUIDANCE", "guided_denoiser",
    "SAMPLERS", "PREDICTORS", "CORRECTORS", "MODEL_KINDS", "get_sampler", "model_kind", "needs_data_prediction",
    "draws_needed", "pc_sample", "ode_sample", "ode_sample_adaptive", "sb_sample", "edm_heun_sample", "flow_euler_sample",
    "keyed_noise", "replayed_noise", "example_keys", "standard_normal",
]
