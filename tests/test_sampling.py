"""Samplers: replay of the PyTorch reference runs, and closed-form properties."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffrestore import sampling
from diffrestore.models import build_backbone, params_from_torch
from diffrestore.score import OutputSpec, make_model_fn
from diffrestore.sde import OUVESDE, OUVPSDE, SBVESDE, SBVPSDE
from diffrestore.sde.base import batch_view


def _weights(npz):
    return {k[len("param/"):]: npz[k] for k in npz.files if k.startswith("param/")}


def _network(sgmse_fixtures, backbone, weights, manifest_key):
    manifest = json.loads((sgmse_fixtures / "MANIFEST.json").read_text())
    kwargs = manifest[manifest_key]["kwargs"]
    module = build_backbone(backbone, **kwargs)
    params = params_from_torch(backbone, kwargs, weights)

    def apply_fn(p, x, y, t, **kw):
        return module.apply({"params": p}, x, y, t)

    return apply_fn, params


@pytest.fixture(scope="module")
def pc_program(sgmse_fixtures):
    weights = _weights(np.load(sgmse_fixtures / "sampler_net.npz"))
    apply_fn, params = _network(sgmse_fixtures, "ncsnpp", weights, "net_ncsnpp")
    sde = OUVESDE(theta=1.5, sigma_min=0.05, sigma_max=0.5)
    model_fn = make_model_fn(apply_fn, sde, OutputSpec(backbone="ncsnpp"))
    traces = []

    def make(corrector):
        @jax.jit
        def run(y, noise, num_steps):
            traces.append(corrector)
            score_fn = lambda x, yy, t: model_fn(params, x, yy, t)
            return sampling.pc_sample(
                score_fn, sde, y, sampling.replayed_noise(noise), num_steps, corrector=corrector, snr=0.5, eps=0.03
            )

        return run

    return {"ald": make("ald"), "none": make("none"), "traces": traces}


@pytest.mark.parametrize("name,corrector,steps", [("pc_ouve_N5_ald", "ald", 5), ("pc_ouve_N4_none", "none", 4)])
def test_pc_sampler_replays_reference(sgmse_fixtures, pc_program, name, corrector, steps):
    ref = np.load(sgmse_fixtures / f"{name}.npz")
    assert ref["noise"].shape[0] == sampling.draws_needed("pc", steps, corrector)
    x_hat, nfe = pc_program[corrector](ref["y"], ref["noise"], steps)
    assert int(nfe) == steps * (2 if corrector == "ald" else 1)
    err = np.max(np.abs(np.asarray(x_hat) - ref["x_hat"]))
    assert err <= 1e-3 * np.max(np.abs(ref["x_hat"])), err


def test_pc_step_count_is_a_runtime_value(sgmse_fixtures, pc_program):
    ref = np.load(sgmse_fixtures / "pc_ouve_N4_none.npz")
    before = pc_program["traces"].count("none")
    pad = np.concatenate([ref["noise"], ref["noise"]])  # enough draws for 2..7 steps
    outs = [np.asarray(pc_program["none"](ref["y"], pad, n)[0]) for n in (2, 3, 7)]
    assert pc_program["traces"].count("none") - before <= 1
    assert not np.allclose(outs[0], outs[1])


def test_sb_ode_matches_reference(sgmse_fixtures):
    ref = np.load(sgmse_fixtures / "sb_ode_N6.npz")
    apply_fn, params = _network(sgmse_fixtures, "ncsnpp_v2", _weights(ref), "net_ncsnpp_v2")
    sde = SBVESDE(k=2.6, c=0.4, eps=1e-8)
    data_fn = make_model_fn(apply_fn, sde, OutputSpec(backbone="ncsnpp_v2", loss_type="data_prediction"))
    run = jax.jit(lambda y: sampling.sb_sample(lambda x, yy, t: data_fn(params, x, yy, t), sde, y, None, 6, kind="ode", eps=1e-4))
    x_hat, nfe = run(ref["y"])
    assert int(nfe) == 6
    err = np.max(np.abs(np.asarray(x_hat) - ref["x_hat"]))
    assert err <= 1e-3 * np.max(np.abs(ref["x_hat"])), err


# --- closed-form properties: a point-mass data distribution has an exact score ---------------

SHAPE = (3, 1, 4, 8)


def _point_mass_problem(seed=0):
    rng = np.random.default_rng(seed)
    c = (rng.normal(size=SHAPE) + 1j * rng.normal(size=SHAPE)).astype(np.complex64) * 0.3
    y = c + (rng.normal(size=SHAPE) + 1j * rng.normal(size=SHAPE)).astype(np.complex64) * 0.3
    return jnp.asarray(c), jnp.asarray(y)


def _exact_score(sde, c):
    # If x0 = c surely, p_t(x|y) = CN(mean_t(c, y), σ_t²): score = −(x − mean)/σ_t².
    def score_fn(x, y, t):
        mean, std = sde.marginal_prob(c, y, t)
        return -(x - mean) / batch_view(std, x) ** 2

    return score_fn


@pytest.mark.parametrize("sde", [OUVESDE(), OUVPSDE(beta_min=0.1, beta_max=2.0)])
@pytest.mark.parametrize(
    "name,options,steps,tol",
    [
        ("pc", dict(corrector="ald", snr=0.3, eps=0.03), 200, 0.05),
        ("pc", dict(corrector="none", predictor="euler_maruyama", eps=0.03), 200, 0.05),
        ("ode_euler", dict(eps=0.03), 200, 0.05),
        ("ode_heun", dict(eps=0.03), 40, 0.05),
        ("ode_adaptive", dict(eps=0.03, rtol=1e-5, atol=1e-5), None, 0.05),
    ],
)
def test_samplers_recover_point_mass(sde, name, options, steps, tol):
    c, y = _point_mass_problem()
    sample = sampling.get_sampler(name, **options)
    keys = sampling.example_keys(0, SHAPE[0])
    x, nfe = jax.jit(lambda y: sample(_exact_score(sde, c), sde, y, sampling.keyed_noise(keys), steps))(y)
    # The process stops at t = eps, where the exact posterior still has spread σ_eps;
    # the final denoising step removes most of it.
    err = float(jnp.sqrt(jnp.mean(jnp.abs(x - c) ** 2)))
    assert err < tol * float(jnp.sqrt(jnp.mean(jnp.abs(y - c) ** 2))) + float(sde.std(jnp.array(options["eps"]))), err
    assert int(nfe) > 0


@pytest.mark.parametrize("sde", [SBVESDE(), SBVPSDE()])
@pytest.mark.parametrize("kind", ["ode", "sde"])
def test_bridge_samplers_with_perfect_estimate(sde, kind):
    c, y = _point_mass_problem(1)
    keys = sampling.example_keys(3, SHAPE[0])
    x, nfe = sampling.sb_sample(lambda x, yy, t: c, sde, y, sampling.keyed_noise(keys), 8, kind=kind, eps=1e-4)
    assert int(nfe) == 8
    assert float(jnp.max(jnp.abs(x - c))) < 1e-2


def test_examples_are_independent_of_their_batch():
    sde = OUVESDE()
    c, y = _point_mass_problem()
    keys = sampling.example_keys(7, SHAPE[0])
    run = lambda y, c_, keys: sampling.pc_sample(_exact_score(sde, c_), sde, y, sampling.keyed_noise(keys), 5, corrector="langevin")[0]
    full = run(y, c, keys)
    alone = run(y[1:2], c[1:2], keys[1:2])
    np.testing.assert_allclose(np.asarray(full[1:2]), np.asarray(alone), rtol=1e-5, atol=1e-6)
