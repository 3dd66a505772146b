"""EDM (CQT-Diff / BABE): schedule, churn, training σ and preconditioning against the PyTorch
reference numbers; the λ-weighted loss and its reductions; the stochastic Heun sampler against
the README's pseudo-code, by hand, and on a Gaussian prior whose denoiser is exact."""
import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffrestore import sampling
from diffrestore.config import build_sde, default_config
from diffrestore.losses import edm_loss_from_output, make_edm_loss_fn
from diffrestore.score import make_edm_denoiser
from diffrestore.sde import EDM, OUVESDE, complex_normal, get_sde

# Settings of the two references (MANIFEST.json "edm_schedule.npz" settings).
CQTDIFF = EDM(sigma_min=1e-4, sigma_max=1.0, rho=13, sigma_data=0.057, rho_train=10, train_sigma_min=1e-6, train_sigma_max=10)
BABE = EDM(sigma_min=1e-4, sigma_max=1.0, rho=8, sigma_data=0.063, rho_train=10, train_sigma_min=1e-5, train_sigma_max=10)
CODES = {"cqtdiff": CQTDIFF, "babe": BABE}
# float32 rounding: the grid is a ρ-th power, so a relative rounding of 6e-8 in its base becomes
# ρ·6e-8 (8e-7 for ρ = 13) in t; jitted and eager XLA powers differ by up to ~2 of those.
GRID_RTOL = 4e-6


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-30)))


@pytest.fixture(scope="module")
def schedule(cqtdiff_fixtures):
    return np.load(cqtdiff_fixtures / "edm_schedule.npz")


# At module level so that every parametrisation reuses the compiled programs (one without and
# one with a start level); T and the start level are traced.
@jax.jit
def _traced_grid(num_steps, start_sigma):
    return tuple(sde.sigma_at(jnp.arange(36), num_steps, start_sigma) for sde in (CQTDIFF, BABE))


# --- the process ---------------------------------------------------------------------------------


def test_get_sde_builds_edm_from_a_flat_config():
    config = default_config()
    with config.unlocked():
        config.sde.name = "edm"
        config.sde.sigma_min, config.sde.sigma_max, config.sde.rho = 1e-4, 1.0, 8.0
        config.sde.sigma_data, config.sde.train_distribution, config.sde.p_mean = 0.063, "lognormal", -1.0
    sde = get_sde("edm", **config.sde)  # the config's own `name` and the OUVE fields are ignored
    assert sde == EDM(sigma_min=1e-4, sigma_max=1.0, rho=8.0, sigma_data=0.063, train_distribution="lognormal", p_mean=-1.0)
    assert build_sde(config) == sde
    assert hash(sde) == hash(build_sde(config))  # frozen: usable as a static argument
    with pytest.raises(ValueError, match="train_distribution"):
        EDM(train_distribution="uniform")


@pytest.mark.parametrize("code,T", [("cqtdiff", 35), ("cqtdiff", 6), ("cqtdiff", 4), ("babe", 35), ("babe", 6)])
def test_schedule_matches_reference(schedule, code, T):
    key = f"{code}_T{T}_t"
    sde = CODES[code]
    t = sde.schedule(T)
    assert t.shape == (T + 1,) and float(t[-1]) == 0.0
    assert _rel(t, schedule[key]) <= GRID_RTOL and _rel(t, schedule[key + "_f64"]) <= GRID_RTOL
    # T as a traced runtime value (as the sampler's loop uses it).
    traced = _traced_grid(T, None)[list(CODES).index(code)]
    assert _rel(traced[: T + 1], schedule[key]) <= GRID_RTOL
    assert np.all(np.asarray(traced[T + 1 :]) == 0)
    if code == "babe":  # create_schedule_from_initial_t(0.2, T), start level static and traced
        ref = schedule[f"babe_T{T}_t_from_start_sigma"]
        assert _rel(sde.schedule(T, 0.2), ref) <= GRID_RTOL
        assert _rel(_traced_grid(T, jnp.float32(0.2))[1][: T + 1], ref) <= GRID_RTOL


@pytest.mark.parametrize("code", ["cqtdiff", "babe"])
@pytest.mark.parametrize("T", [35, 6])
@pytest.mark.parametrize("S_churn", [5, 20])
def test_churn_matches_reference(schedule, code, T, S_churn):
    t = schedule[f"{code}_T{T}_t"]
    gamma = CODES[code].churn_gamma(t, T, S_churn, 0.0, 50.0, convention=code)
    np.testing.assert_array_equal(np.asarray(gamma), schedule[f"{code}_T{T}_Schurn{S_churn}_gamma"])
    t_hat = t + np.asarray(gamma) * t
    np.testing.assert_array_equal(t_hat, schedule[f"{code}_T{T}_Schurn{S_churn}_t_hat"])


def test_karras_churn_convention():
    # NVlabs edm_sampler: min(S_churn/T, √2 − 1) for S_tmin ≤ t ≤ S_tmax (T steps, not T + 1 points).
    t = jnp.array([2.0, 1.0, 0.5, 0.0])
    karras = CQTDIFF.churn_gamma(t, 10, 3.0, S_tmin=0.5, S_tmax=1.0, convention="karras")
    np.testing.assert_allclose(np.asarray(karras), [0.0, 0.3, 0.3, 0.0], rtol=1e-7)
    ref = CQTDIFF.churn_gamma(t, 10, 3.0, S_tmin=0.5, S_tmax=1.0, convention="cqtdiff")
    np.testing.assert_array_equal(np.asarray(ref), [0.0, 0.0, 0.0, 0.0])  # strict bounds
    assert float(CQTDIFF.churn_gamma(0.7, 10, 3.0, 0.5, 1.0)) == pytest.approx(3 / 11)
    assert float(CQTDIFF.churn_gamma(0.7, 10, 30.0, 0.5, 1.0)) == pytest.approx(math.sqrt(2) - 1)


def test_training_sigma_matches_reference(schedule):
    u, z = schedule["u"], schedule["z"]
    # CQT-Diff draws u in float64 and casts σ to float32; ours is float32 throughout (ρt = 10).
    assert _rel(CQTDIFF.train_sigma_from_uniform(u), schedule["cqtdiff_train_sigma_alt_f64"]) <= 2e-6
    assert _rel(BABE.train_sigma_from_uniform(u), schedule["babe_train_sigma_safe"]) <= 2e-6
    assert _rel(CQTDIFF.train_sigma_from_normal(z), schedule["cqtdiff_train_sigma_lognormal_f64"]) <= 1e-6
    assert _rel(BABE.train_sigma_from_normal(z), schedule["babe_train_sigma_lognormal_f64"]) <= 1e-6


@pytest.mark.parametrize("distribution", ["rho_uniform", "lognormal"])
def test_training_sigma_draws(distribution):
    sde = EDM(train_distribution=distribution, train_sigma_min=1e-5, train_sigma_max=10.0)
    sigma = jax.jit(lambda key: sde.sample_train_sigma(key, (50_000,)))(jax.random.key(0))
    assert sigma.dtype == jnp.float32
    sigma = np.asarray(sigma, np.float64)
    assert sigma.min() >= 1e-5 * (1 - 1e-6) and sigma.max() <= 10 * (1 + 1e-6)
    if distribution == "rho_uniform":
        # Inverting the warp gives back u ~ U(0, 1): mean ½ ± 5 standard errors (1/√(12n)).
        a, b = 10.0 ** 0.1, 1e-5 ** 0.1
        u = (sigma**0.1 - a) / (b - a)
        assert abs(u.mean() - 0.5) < 5 / math.sqrt(12 * 50_000)
        assert abs(np.mean(u < 0.25) - 0.25) < 0.01
    else:
        # Median exp(P_mean) (clipping does not move it); upper clip at 10 = 2.9 P_std above P_mean.
        assert abs(np.mean(sigma < math.exp(-1.2)) - 0.5) < 0.01
        assert abs(np.mean(sigma == np.float64(np.float32(10.0))) - 0.0017) < 0.001


@pytest.mark.parametrize("code", ["cqtdiff", "babe"])
def test_preconditioning_matches_reference(schedule, code):
    sigma = schedule["precond_sigma"]
    c_skip, c_out, c_in, c_noise = CODES[code].precondition(sigma)
    for name, value in zip(("c_skip", "c_out", "c_in"), (c_skip, c_out, c_in)):
        assert _rel(value, schedule[f"{code}_{name}"]) <= 1e-6, name
    np.testing.assert_allclose(np.asarray(c_noise), schedule[f"{code}_c_noise"], rtol=1e-6, atol=1e-7)
    # λ = 1/c_out², so λ·|D − x0|² = |F − F*|² (Karras et al. Eq. 8).
    np.testing.assert_allclose(np.asarray(CODES[code].loss_weight(sigma)) * schedule[f"{code}_c_out"] ** 2, 1.0, rtol=1e-5)


def test_denoiser_wraps_network_as_the_references(schedule):
    sigma = schedule["precond_sigma"][[1, 4, 7]]  # three examples, (B,)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 64)).astype(np.float32)
    seen = {}

    def apply_fn(params, x_in, c_noise):
        seen.update(x_in=x_in, c_noise=c_noise)
        return params * x_in + c_noise

    denoise = make_edm_denoiser(apply_fn, BABE)
    pick = lambda k: schedule[f"babe_{k}"][[1, 4, 7]][:, None]
    for shape in [(3,), (3, 1)]:
        out = denoise(0.7, x, sigma.reshape(shape))
        assert seen["c_noise"].shape == (3, 1)
        np.testing.assert_allclose(np.asarray(seen["c_noise"]), pick("c_noise"), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(np.asarray(seen["x_in"]), pick("c_in") * x, rtol=1e-6)
        expected = pick("c_skip") * x + pick("c_out") * (0.7 * pick("c_in") * x + pick("c_noise"))
        np.testing.assert_allclose(np.asarray(out), expected, rtol=2e-6, atol=1e-7)


# --- the loss ------------------------------------------------------------------------------------


def _loss_problem(seed=0, shape=(4, 256)):
    rng = np.random.default_rng(seed)
    x0 = jnp.asarray(rng.normal(size=shape).astype(np.float32) * 0.06)
    n = jnp.asarray(rng.normal(size=shape).astype(np.float32))
    sigma = jnp.asarray([1e-3, 0.05, 0.4, 3.0], jnp.float32)
    out = jnp.asarray(rng.normal(size=shape).astype(np.float32))
    return x0, x0 + sigma[:, None] * n, sigma, out


def test_edm_loss_is_the_lambda_weighted_denoiser_error_with_each_reduction():
    x0, x_noisy, sigma, out = _loss_problem()
    sd = CQTDIFF.sigma_data
    s = np.asarray(sigma, np.float64)[:, None]
    # Closed forms (Karras et al. Table 1, Eq. 8) in float64.
    denoised = sd**2 / (s**2 + sd**2) * np.asarray(x_noisy) + s * sd / np.sqrt(s**2 + sd**2) * np.asarray(out)
    weighted = (s**2 + sd**2) / (s * sd) ** 2 * (denoised - np.asarray(x0)) ** 2
    @jax.jit
    def losses(out, x0, x_noisy, sigma):
        kw = dict(x0=x0, x_noisy=x_noisy, sigma=sigma, sde=CQTDIFF)
        return (edm_loss_from_output(out, **kw), edm_loss_from_output(out, reduction="sum", **kw),
                edm_loss_from_output(out, error_filter_fn=lambda e: 2 * e, **kw))

    mean, total, doubled = losses(out, x0, x_noisy, sigma)
    assert float(mean) == pytest.approx(weighted.mean(), rel=1e-4)  # CQT-Diff MSELoss, BABE error.mean()
    assert float(total) == pytest.approx(weighted.sum(axis=1).mean(), rel=1e-4)  # NVlabs: Σ per example, mean over B
    assert float(doubled) == pytest.approx(4 * float(mean), rel=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        edm_loss_from_output(out, x0=x0, x_noisy=x_noisy, sigma=sigma, sde=CQTDIFF, reduction="half_sum")


@pytest.mark.parametrize("distribution", ["rho_uniform", "lognormal"])
def test_edm_loss_fn_vanishes_for_the_ideal_network(distribution):
    sde = EDM(sigma_data=0.057, train_distribution=distribution)
    x0 = jnp.asarray(np.random.default_rng(1).normal(size=(8, 128)).astype(np.float32) * 0.05)

    # Data that is one known point: the ideal network reads σ back from c_noise and x from c_in·x
    # (the (B, 1) shapes of the references) and returns F* = (x0 − c_skip·x)/c_out.
    def ideal(params, x_in, c_noise):
        assert c_noise.shape == (8, 1)
        sigma = jnp.exp(4 * c_noise)
        x = x_in * jnp.sqrt(sde.sigma_data**2 + sigma**2)
        c_skip = sde.sigma_data**2 / (sigma**2 + sde.sigma_data**2)
        return (params - c_skip * x) / (sigma * sde.sigma_data / jnp.sqrt(sde.sigma_data**2 + sigma**2))

    zero_fn = make_edm_loss_fn(lambda p, x_in, c: jnp.zeros_like(x_in), sde)
    both = jax.jit(lambda x0, key: (make_edm_loss_fn(ideal, sde)(x0, x0, None, key), zero_fn(None, x0, None, key)[0]))
    (loss, aux), zero = both(x0, jax.random.key(0))
    assert float(zero) > 0.5  # E|F*|² = 1 by design when the data std is σd (here 0.05 vs 0.057)
    assert float(loss) < 1e-4 * float(zero)
    assert sde.train_sigma_min <= float(aux["t_mean"]) <= sde.train_sigma_max


# --- the sampler ---------------------------------------------------------------------------------


def replay_heun_cqtdiff(fixtures, denoise_fn):
    """Runs `edm_heun` on the draws of `heun_cqtdiff_T6.npz` with the run's settings.

    Once the CQT-Diff U-Net exists, `x, ref = replay_heun_cqtdiff(fixtures, D)` with its denoiser
    and `rel(x, ref["x_out"]) ≤ 1e-4` (README, Tolerances) is the replay test.
    """
    ref = np.load(fixtures / "heun_cqtdiff_T6.npz")
    settings = json.loads((fixtures / "MANIFEST.json").read_text())["files"]["heun_cqtdiff_T6.npz"]["settings"]
    sde = EDM(sigma_min=settings["sigma_min"], sigma_max=settings["sigma_max"], rho=settings["ro"], sigma_data=settings["sigma_data"])
    sample = sampling.get_sampler(
        "edm_heun", S_churn=settings["Schurn"], S_tmin=settings["Stmin"], S_tmax=settings["Stmax"],
        S_noise=settings["Snoise"], convention="cqtdiff",
    )
    T = settings["T"]
    assert ref["noise"].shape[0] == sampling.draws_needed("edm_heun", T)
    run = jax.jit(lambda noise: sample(denoise_fn, sde, jnp.zeros(settings["shape"], jnp.float32), sampling.replayed_noise(noise), T))
    x, nfe = run(ref["noise"])
    assert int(nfe) == 2 * T - 1
    return np.asarray(x), ref


def _simple_denoiser(xp):
    # Nonlinear in x and σ, so evaluating at the wrong point or level shows.
    def denoise(x, sigma):
        sigma = sigma.reshape((-1,) + (1,) * (x.ndim - 1)) if xp is jnp else sigma
        return 0.057**2 / (0.057**2 + sigma**2) * x + 0.02 * sigma * xp.sin(3 * x)

    return denoise


def test_sampler_follows_the_reference_pseudocode(cqtdiff_fixtures):
    x, ref = replay_heun_cqtdiff(cqtdiff_fixtures, _simple_denoiser(jnp))
    # The README's `Sampler.predict` pseudo-code in float64 on the fixture's own t, γ and draws.
    t, gamma, noise = (ref[k].astype(np.float64) for k in ("t", "gamma", "noise"))
    D = _simple_denoiser(np)
    score = lambda x, t: (D(x, t) - x) / t**2
    xr = t[0] * noise[0]
    for i in range(len(t) - 1):
        if gamma[i] == 0:
            t_hat, x_hat = t[i], xr
        else:
            t_hat = t[i] + gamma[i] * t[i]
            x_hat = xr + math.sqrt(t_hat**2 - t[i] ** 2) * noise[1 + i]
        d = -t_hat * score(x_hat, t_hat)
        h = t[i + 1] - t_hat
        if t[i + 1] != 0:
            x_prime = x_hat + h * d
            xr = x_hat + h * (d / 2 + -t[i + 1] * score(x_prime, t[i + 1]) / 2)
        else:
            xr = x_hat + h * d
    assert np.max(np.abs(x - xr)) <= 1e-5 * np.max(np.abs(xr))  # measured 1.0e-6


def test_one_heun_step_by_hand():
    # T = 2: t = (1, σmin, 0); step 0 is one Heun step with churn, step 1 the final Euler step.
    sde = EDM(sigma_min=0.01, sigma_max=1.0, rho=7)
    a = lambda s: 0.25 / (0.25 + s**2)  # D(x, σ) = a(σ)·x: the N(0, ½²) denoiser
    noise = np.array([[[0.8]], [[-1.5]], [[0.3]]], np.float32)  # (draws, B = 1, L = 1)
    g = math.sqrt(2) - 1  # S_churn 10 / 3 points, capped
    t0, t1 = 1.0, 0.01
    x = t0 * 0.8
    t_hat = t0 + g * t0
    x_hat = x + math.sqrt(t_hat**2 - t0**2) * -1.5
    d = (x_hat - a(t_hat) * x_hat) / t_hat
    x_prime = x_hat + (t1 - t_hat) * d
    d_prime = (x_prime - a(t1) * x_prime) / t1
    x = x_hat + (t1 - t_hat) * (d + d_prime) / 2
    t_hat = t1 + g * t1
    x_hat = x + math.sqrt(t_hat**2 - t1**2) * 0.3
    expected = a(t_hat) * x_hat  # Euler to σ = 0 lands on D(x̂, t̂)
    sample = sampling.get_sampler("edm_heun", S_churn=10.0)
    denoise = lambda x, s: a(s)[:, None] * x
    out, nfe = jax.jit(lambda noise: sample(denoise, sde, jnp.zeros((1, 1)), sampling.replayed_noise(noise), 2))(noise)
    assert int(nfe) == 3
    assert float(out[0, 0]) == pytest.approx(expected, rel=1e-5)


# A Gaussian data distribution N(μ, s²) has the exact denoiser D(x, σ) = μ + s²/(s² + σ²)·(x − μ),
# and its probability flow maps x_σ to μ + s/√(s² + σ²)·(x_σ − μ). Four rows with their own (μ, s).
MU = np.array([0.0, 0.05, -0.02, 0.01], np.float32)[:, None]
STD = np.array([0.057, 0.1, 0.02, 0.2], np.float32)[:, None]
GAUSS_L = 2**16


def _gaussian_denoiser(x, sigma):
    return MU + STD**2 / (STD**2 + sigma[:, None] ** 2) * (x - MU)


@pytest.mark.parametrize("start_sigma", [None, 0.2])
def test_deterministic_heun_matches_the_exact_flow(start_sigma):
    # S_churn = 0: every sample must land where the exact flow takes its own x_T (which also
    # accounts for starting at N(0, σmax²) rather than the data's N(μ, s² + σmax²)).
    T = 64
    keys = sampling.example_keys(0, 4)
    y = jnp.asarray(MU + STD * np.random.default_rng(2).normal(size=(4, 4096)).astype(np.float32))
    sample = sampling.get_sampler("edm_heun", S_churn=0.0, start_sigma=start_sigma)

    @jax.jit
    def run(y):
        draw = sampling.keyed_noise(keys)
        return sample(_gaussian_denoiser, CQTDIFF, y, draw, T)[0], draw(0, y), CQTDIFF.sigma_at(0, T, start_sigma)

    x, eps0, t0 = (np.asarray(v, np.float64) for v in run(y))
    x_T = (np.asarray(y) if start_sigma else 0.0) + t0 * eps0
    exact = MU + STD / np.sqrt(STD**2 + t0**2) * (x_T - MU)
    err = np.max(np.abs(x - exact)) / np.max(np.abs(exact - MU))
    assert err < 5e-3, err  # measured 1.6e-3 and 3.8e-4 (second order: 4x less at T = 128); Euler fails it


@pytest.mark.parametrize("S_churn,convention", [(5.0, "cqtdiff"), (20.0, "babe"), (20.0, "karras")])
def test_stochastic_heun_samples_a_gaussian_prior(S_churn, convention):
    # Start exactly on the marginal at σ = 0.2 (BABE's warm start, y ~ N(μ, s²)), so any error
    # is the sampler's. Tolerance: 5 Monte Carlo standard errors (mean s/√L, variance √(2/L))
    # plus 1 % for the discretisation (≤ 0.9 % measured at T = 128; 2 % at T = 64).
    T = 128
    y = jnp.asarray(MU + STD * np.random.default_rng(3).normal(size=(4, GAUSS_L)).astype(np.float32))
    sample = sampling.get_sampler("edm_heun", S_churn=S_churn, convention=convention, start_sigma=0.2)
    keys = sampling.example_keys(11, 4)
    x, _ = jax.jit(lambda y: sample(_gaussian_denoiser, CQTDIFF, y, sampling.keyed_noise(keys), T))(y)
    x = np.asarray(x, np.float64)
    mean_err = (x.mean(axis=1) - MU[:, 0]) / STD[:, 0]
    var_err = x.var(axis=1) / STD[:, 0] ** 2 - 1
    assert np.all(np.abs(mean_err) < 5 / math.sqrt(GAUSS_L) + 0.01), mean_err
    assert np.all(np.abs(var_err) < 5 * math.sqrt(2 / GAUSS_L) + 0.01), var_err


def test_draw_numbering_of_each_convention():
    # S_tmax = 0.5: γ_0 = 0 (t_0 = 1), later steps churn. CQT-Diff skips the draw of step 0,
    # BABE draws it anyway (and adds √0·ε = 0): the same run needs one more row for BABE.
    rng = np.random.default_rng(4)
    noise = rng.normal(size=(6, 2, 32)).astype(np.float32)
    extra = rng.normal(size=(1, 2, 32)).astype(np.float32) * 1e3
    inserted, appended = np.concatenate([noise[:1], extra, noise[1:]]), np.concatenate([noise, extra])

    @functools.partial(jax.jit, static_argnums=0)
    def run(convention, noise):
        sample = sampling.get_sampler("edm_heun", S_churn=5.0, S_tmax=0.5, convention=convention)
        return sample(_simple_denoiser(jnp), CQTDIFF, jnp.zeros((2, 32)), sampling.replayed_noise(noise), 5)[0]

    reference = np.asarray(run("cqtdiff", noise))
    np.testing.assert_allclose(reference, np.asarray(run("babe", inserted)), rtol=1e-6, atol=1e-7)
    assert not np.allclose(reference, np.asarray(run("babe", appended)))


def test_num_steps_is_a_runtime_value_and_examples_are_independent():
    traces = []
    keys = sampling.example_keys(5, 3)
    sample = sampling.get_sampler("edm_heun", S_churn=5.0)

    @jax.jit
    def run(keys, num_steps):
        traces.append(1)
        return sample(_simple_denoiser(jnp), CQTDIFF, jnp.zeros((keys.shape[0], 16)), sampling.keyed_noise(keys), num_steps)

    outs = {}
    for n in (3, 6, 9):
        outs[n], nfe = run(keys, n)
        assert int(nfe) == 2 * n - 1
    assert len(traces) == 1
    assert not np.allclose(np.asarray(outs[3]), np.asarray(outs[6]))
    # Example 1 keeps its key, its neighbours change: its sample must not move.
    others = sampling.example_keys(6, 3)
    mixed, _ = run(jnp.stack([others[0], keys[1], others[2]]), 6)
    np.testing.assert_allclose(np.asarray(mixed[1]), np.asarray(outs[6][1]), rtol=1e-5, atol=1e-7)
    assert not np.allclose(np.asarray(mixed[0]), np.asarray(outs[6][0]))


def test_registry_model_kinds():
    assert sampling.model_kind("edm_heun") == "edm_denoiser"
    assert {sampling.model_kind(n) for n in sampling.SAMPLERS} == set(sampling.MODEL_KINDS)
    # Unchanged for the existing samplers (the enhancer and the training loop ask this).
    assert [sampling.needs_data_prediction(n) for n in ("pc", "ode_euler", "ode_heun", "ode_adaptive", "sb_ode", "sb_sde")] == [
        False, False, False, False, True, True]
    assert sampling.draws_needed("edm_heun", 6) == 7
    with pytest.raises(ValueError, match="S_chrun"):
        sampling.get_sampler("edm_heun", S_chrun=5)
    with pytest.raises(ValueError, match="convention"):
        sampling.edm_heun_sample(None, CQTDIFF, jnp.zeros((1, 4)), None, 4, convention="nvidia")
    with pytest.raises(TypeError, match="EDM"):
        sampling.get_sampler("edm_heun")(None, OUVESDE(), jnp.zeros((1, 4)), None, 4)


# --- noise sources -------------------------------------------------------------------------------


def test_noise_sources_draw_real_and_complex_standard_normals():
    keys = sampling.example_keys(0, 4)
    draws = jax.jit(lambda real, cplx: (sampling.keyed_noise(keys)(3, real), sampling.keyed_noise(keys)(3, cplx),
                                        complex_normal(jax.random.fold_in(keys[2], 3), cplx.shape[1:])))
    real, cplx, expected = map(np.asarray, draws(jnp.zeros((4, 50_000), jnp.float32), jnp.zeros((4, 1, 8, 8), jnp.complex64)))
    assert real.dtype == np.float32 and cplx.dtype == np.complex64
    # 200 000 draws: mean and variance within 5 standard errors of N(0, 1).
    assert abs(real.mean()) < 5 / math.sqrt(real.size) and abs(real.var() - 1) < 5 * math.sqrt(2 / real.size)
    np.testing.assert_array_equal(cplx[2], expected)  # complex: CN(0, 1) of fold_in(key_b, i), as before
    with pytest.raises(ValueError, match="imaginary"):
        sampling.replayed_noise(jnp.zeros((2, 4, 8), jnp.complex64))(0, jnp.zeros((4, 8)))
