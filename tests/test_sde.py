"""SDE marginals against the reference values and against Monte Carlo simulation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffrestore.sde import OUVESDE, OUVPSDE, SBVESDE, SBVPSDE, complex_normal


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


def test_ouve_matches_reference(sgmse_fixtures):
    ref = np.load(sgmse_fixtures / "sde_ouve.npz")
    sde = OUVESDE(theta=1.5, sigma_min=0.05, sigma_max=0.5)
    mean, std = sde.marginal_prob(ref["x0"], ref["y"], ref["t"])
    drift, diffusion = sde.sde(ref["x0"], ref["y"], ref["t"])
    for ours, theirs in [(mean, ref["mean"]), (std, ref["std"]), (drift, ref["drift"]), (diffusion, ref["diffusion"])]:
        assert _rel(ours, theirs) <= 1e-5


def test_sbve_matches_reference(sgmse_fixtures):
    ref = np.load(sgmse_fixtures / "sde_sbve.npz")
    sde = SBVESDE(k=2.6, c=0.4, eps=1e-8)
    mean, std = sde.marginal_prob(ref["x0"], ref["y"], ref["t"])
    assert _rel(mean, ref["mean"]) <= 1e-5
    assert _rel(std, ref["std"]) <= 1e-5


@pytest.mark.parametrize("sde", [SBVESDE(k=2.6, c=0.4), SBVPSDE()])
@pytest.mark.parametrize("as_array", [np.asarray, jnp.asarray])
def test_bridge_is_finite_at_the_end_of_the_interval(sde, as_array):
    # At t = T the bridge sits on y with std 0; σ̄_T is sqrt(eps), never the NaN of a square
    # root of a difference that rounded below zero (whatever computes the powers of t).
    t = as_array(np.linspace(0.9, 1.0, 11, dtype=np.float32))
    _, _, sigma_bar, *_ = sde.sigmas_alphas(t)
    assert np.all(np.isfinite(np.asarray(sigma_bar)))
    np.testing.assert_allclose(float(np.asarray(sigma_bar)[-1]), np.sqrt(sde.eps), rtol=1e-3)
    x0, y = np.zeros((11, 1, 2, 2), np.complex64), np.ones((11, 1, 2, 2), np.complex64)
    mean, std = sde.marginal_prob(x0, y, t)
    assert np.all(np.isfinite(np.asarray(mean))) and np.all(np.isfinite(np.asarray(std)))


def test_complex_normal_convention():
    z = np.asarray(complex_normal(jax.random.key(0), (200_000,)))
    assert abs(np.var(z.real) - 0.5) < 0.01 and abs(np.var(z.imag) - 0.5) < 0.01
    assert abs(np.mean(np.abs(z) ** 2) - 1.0) < 0.01


def _simulate_forward(sde, x0, y, t_end, steps, paths, seed=0):
    """Euler-Maruyama simulation of the forward SDE from x0 (complex scalars), many paths."""
    dt = t_end / steps

    def step(x, inp):
        i, key = inp
        t = jnp.full((paths,), i * dt)
        drift, g = sde.sde(x, jnp.full_like(x, y), t)
        x = x + drift * dt + g * jnp.sqrt(dt) * complex_normal(key, x.shape)
        return x, None

    keys = jax.random.split(jax.random.key(seed), steps)
    x, _ = jax.lax.scan(step, jnp.full((paths,), x0, jnp.complex64), (jnp.arange(steps), keys))
    return np.asarray(x)


@pytest.mark.parametrize(
    "sde", [OUVESDE(theta=1.5, sigma_min=0.05, sigma_max=0.5), OUVPSDE(beta_min=0.1, beta_max=2.0, stiffness=1.5)]
)
@pytest.mark.parametrize("t_end", [0.4, 1.0])
def test_ou_marginal_matches_monte_carlo(sde, t_end):
    x0, y, paths = 0.3 - 0.2j, -0.5 + 0.4j, 40_000
    xs = _simulate_forward(sde, x0, y, t_end, steps=1000, paths=paths)
    t = jnp.array([t_end])
    mean, std = sde.marginal_prob(jnp.array([[x0]]), jnp.array([[y]]), t)
    # Monte Carlo std error of E|x - mean|^2 is about std^2 / sqrt(paths) -> 3 % bound is ~6 sigma.
    assert abs(np.mean(xs) - complex(mean[0, 0])) < 5 * float(std[0]) / np.sqrt(paths) + 2e-3
    emp_std = np.sqrt(np.mean(np.abs(xs - np.mean(xs)) ** 2))
    assert abs(emp_std / float(std[0]) - 1) < 0.03


@pytest.mark.parametrize("sde", [SBVESDE(), SBVPSDE()])
def test_bridge_endpoints(sde):
    x0 = jnp.ones((2, 1, 3, 4), jnp.complex64) * (0.5 + 0.1j)
    y = jnp.ones((2, 1, 3, 4), jnp.complex64) * (-0.2 + 0.7j)
    # At t = 0 the bridge sits at x0 with no spread; at t = T at y (up to the reference eps).
    mean0, std0 = sde.marginal_prob(x0, y, jnp.zeros(2))
    assert np.allclose(mean0, x0, atol=1e-4) and np.all(np.asarray(std0) < 1e-3)
    alpha_T = float(sde.alpha_sigma(jnp.ones(()))[0])
    meanT, stdT = sde.marginal_prob(x0, y, jnp.ones(2))
    assert np.allclose(meanT, y * alpha_T / (alpha_T + sde.eps), atol=1e-4)
    assert np.all(np.asarray(stdT) < 1e-3)
