"""Reverse-process samplers: predictor-corrector, probability-flow ODE, Schrödinger bridge.

Every sampler has the signature

    sampler(model_fn, sde, y, draw, num_steps) -> (x̂, network_evaluations)

where `model_fn(x, y, t)` is the score (score models) or the clean estimate (bridge models),
`draw` is a noise source from `sampling.noise`, and `num_steps` may be a traced integer.
`get_sampler(name, **options)` binds the options; names are listed in `SAMPLERS`.
"""
from __future__ import annotations

import functools

from diffrestore.sampling.bridge import sb_sample
from diffrestore.sampling.noise import example_keys, keyed_noise, replayed_noise
from diffrestore.sampling.ode import ode_sample, ode_sample_adaptive
from diffrestore.sampling.pc import CORRECTORS, PREDICTORS, pc_sample

# name -> (function, options it accepts, whether the model must predict data)
_REGISTRY = {
    "pc": (pc_sample, {"predictor", "corrector", "snr", "corrector_steps", "eps", "denoise", "probability_flow"}, False),
    "ode_euler": (functools.partial(ode_sample, method="euler"), {"eps", "denoise"}, False),
    "ode_heun": (functools.partial(ode_sample, method="heun"), {"eps", "denoise"}, False),
    "ode_adaptive": (None, {"eps", "denoise", "rtol", "atol", "max_steps"}, False),
    "sb_ode": (functools.partial(sb_sample, kind="ode"), {"eps"}, True),
    "sb_sde": (functools.partial(sb_sample, kind="sde"), {"eps"}, True),
}
SAMPLERS = tuple(_REGISTRY)


def needs_data_prediction(name: str) -> bool:
    """True for samplers that consume a clean estimate x̂ instead of a score."""
    return _registry_entry(name)[2]


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
    return 1


__all__ = [
    "SAMPLERS", "PREDICTORS", "CORRECTORS", "get_sampler", "needs_data_prediction", "draws_needed",
    "pc_sample", "ode_sample", "ode_sample_adaptive", "sb_sample",
    "keyed_noise", "replayed_noise", "example_keys",
]
