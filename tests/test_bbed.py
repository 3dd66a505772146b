"""BBED (sgmse-bbed): the SDE against the reference's values and a Monte Carlo of its SDE, the PC
sampler replayed from the reference's noise (from T and from a reverse starting point), and a
sgmse-bbed Lightning checkpoint through `Enhancer`."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffrestore import sampling
from diffrestore.models import build_backbone, params_from_torch
from diffrestore.score import OutputSpec, make_model_fn
from diffrestore.sde import BBEDSDE, get_sde

# sgmse-bbed's NCSN++: sgmse's centred network that always divides by t, fir_kernel [1, 3, 3, 1].
BBED_NET = dict(centered=True, scale_by_sigma=True, fir_kernel=(1, 3, 3, 1))


def _rel(a, b):
    return np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b))


@pytest.mark.parametrize("run", ["a", "b"])
def test_sde_matches_reference(storm_bbed_fixtures, run):
    ref = np.load(storm_bbed_fixtures / "sde_bbed.npz")
    sde = BBEDSDE(k=float(ref[f"{run}/k"]), c=float(ref[f"{run}/c"]))
    t = jnp.asarray(ref["t"])
    assert _rel(sde.mean(ref["x0"], ref["y"], t), ref[f"{run}/mean"]) < 1e-6
    drift, diffusion = sde.sde(jnp.asarray(ref["x0"]), jnp.asarray(ref["y"]), t)
    assert _rel(drift, ref[f"{run}/drift"]) < 1e-6
    np.testing.assert_allclose(diffusion, ref[f"{run}/diffusion"], rtol=1e-6)
    std = np.asarray(sde.std(t))
    # The reference's float32 std is 1e-6-accurate for t >= 0.03 and loses digits below (1e-4
    # at t = 1e-4); ours stays close to the float64 value at every t.
    large = ref["t"] >= 0.03
    np.testing.assert_allclose(std[large], ref[f"{run}/std"][large], rtol=1e-5)
    np.testing.assert_allclose(std, ref[f"{run}/std_f64"], rtol=2e-5)
    x_T = sde.prior_sampling(None, jnp.asarray(ref["prior_y"]), z=jnp.asarray(ref[f"{run}/prior_z"]))
    assert _rel(x_T, ref[f"{run}/prior_xT"]) < 1e-6
    # The bridge's variance is 0·∞ at t = 1: NaN in the reference, and here.
    assert np.isnan(float(sde.std(jnp.ones(1))[0])) and np.isnan(ref[f"{run}/std_at_1"][0])


@pytest.mark.parametrize("k,c", [(2.6, 0.51), (10.0, 0.3), (1.2, 1.0)])
def test_std_is_float32_accurate_at_both_ends(k, c):
    """Against the variance with Ei(b) − Ei(a) as a float64 adaptive integral of e^u/u."""
    from scipy.integrate import quad

    t = np.array([1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99], np.float64)
    log_k = np.log(k)
    ei = np.array([quad(lambda u: np.exp(u) / u, -2 * log_k, 2 * (s - 1) * log_k, epsabs=0, epsrel=1e-13)[0] for s in t])
    var = c * (1 - t) * (np.expm1(2 * t * log_k) + t + 2 * k**2 * log_k * (1 - t) * ei)
    np.testing.assert_allclose(BBEDSDE(k=k, c=c).std(jnp.asarray(t, jnp.float32)), np.sqrt(var), rtol=2e-6)


def test_get_sde_takes_reference_hyperparameters():
    sde = BBEDSDE.from_hparams(k=4.0, theta=0.25, T_sampling=0.9, sde_n=17)
    assert sde == BBEDSDE(k=4.0, c=0.25, T=0.9, N=17)
    assert get_sde("bbed", k=4.0, c=0.25, theta=9.0) == BBEDSDE(k=4.0, c=0.25)  # our names win in configs


@pytest.mark.parametrize("t_end", [0.3, 0.9])
def test_marginal_matches_monte_carlo_of_the_sde(t_end):
    """Euler-Maruyama of dx = (y − x)/(1 − t) dt + √c k^t dw from x0 (real, 40k paths, 2000
    steps): mean and variance at t_end equal the closed form (3 standard errors; 1 % on the
    variance, well above its MC error of 0.7 % and the O(dt) discretisation bias)."""
    sde = BBEDSDE(k=2.6, c=0.51)
    x0, y, paths, steps = 0.7, -0.4, 40_000, 2000
    rng = np.random.default_rng(0)
    dt = t_end / steps
    x = np.full(paths, x0)
    for i in range(steps):
        t = i * dt
        x += (y - x) / (1 - t) * dt + np.sqrt(sde.c) * sde.k**t * np.sqrt(dt) * rng.standard_normal(paths)
    mean = float(sde.mean(jnp.asarray([x0]), jnp.asarray([y]), jnp.asarray([t_end]))[0])
    var = float(sde.std(jnp.asarray([t_end]))[0]) ** 2
    assert abs(x.mean() - mean) < 3 * np.sqrt(var / paths)
    assert abs(x.var() / var - 1) < 0.01, (x.var(), var)


def _bbed_network(storm_bbed_fixtures, ref):
    manifest = json.loads((storm_bbed_fixtures / "MANIFEST.json").read_text())["pc_bbed_N5"]["net"]
    kwargs = dict(manifest["kwargs"], **BBED_NET)
    weights = {k[len("param/"):]: ref[k] for k in ref.files if k.startswith("param/")}
    module = build_backbone("ncsnpp", **kwargs)
    params = params_from_torch("ncsnpp", kwargs, weights)
    return lambda x, y, t: module.apply({"params": params}, x, y, t)


@pytest.fixture(scope="module")
def bbed_pc(storm_bbed_fixtures):
    ref = np.load(storm_bbed_fixtures / "pc_bbed_N5.npz")
    apply_fn = _bbed_network(storm_bbed_fixtures, ref)
    sde = BBEDSDE(k=2.6, c=0.51, T=0.999)
    score_fn = make_model_fn(lambda p, x, y, t: apply_fn(x, y, t), sde, OutputSpec(backbone="ncsnpp"))

    @jax.jit
    def run(y, noise, num_steps, start_time):
        fn = lambda x, yy, t: score_fn(None, x, yy, t)
        return sampling.pc_sample(
            fn, sde, y, sampling.replayed_noise(noise), num_steps, corrector="ald", snr=0.5, eps=0.03,
            start_time=start_time,
        )

    return ref, apply_fn, run


def test_bbed_network_matches_reference(bbed_pc):
    ref, apply_fn, _ = bbed_pc
    out = apply_fn(jnp.asarray(ref["net_x"]), jnp.asarray(ref["y"]), jnp.asarray(ref["net_t"]))
    assert _rel(out, ref["net_out"]) < 1e-4


@pytest.mark.parametrize("run", ["N5", "rsp05_N3"])
def test_pc_sampler_replays_reference(bbed_pc, run):
    """From T = 0.999 with N 5, and from the reverse starting point 0.5 with N 3 (a traced
    start time: one program for both)."""
    ref, _, program = bbed_pc
    num_steps, start = int(ref[f"{run}/N"]), float(ref[f"{run}/T_start"])
    assert ref[f"{run}/noise"].shape[0] == 1 + 2 * num_steps
    # Both runs get 11 draws (the extra ones unused), so they share one compiled program.
    noise = np.zeros((11,) + ref["y"].shape[1:], np.complex64)
    noise[: 1 + 2 * num_steps] = ref[f"{run}/noise"][:, 0]
    x_hat, nfe = program(jnp.asarray(ref["y"]), jnp.asarray(noise), num_steps, start)
    assert int(nfe) == 2 * num_steps
    assert _rel(x_hat, ref[f"{run}/x_hat"]) < 1e-4


def test_start_time_outside_the_process_is_refused():
    sde = BBEDSDE()
    y = jnp.zeros((1, 1, 4, 4), jnp.complex64)
    with pytest.raises(ValueError, match="start_time"):
        sampling.pc_sample(lambda x, yy, t: x, sde, y, sampling.replayed_noise(jnp.zeros((3, 1, 1, 4, 4))), 1, start_time=1.0)


def test_bbed_checkpoint_through_enhancer(storm_bbed_fixtures):
    from diffrestore.enhancer import Enhancer

    ref = np.load(storm_bbed_fixtures / "bbed_small_expected.npz")
    enhancer = Enhancer.from_checkpoint(storm_bbed_fixtures / "bbed_small.ckpt", compilation_cache=False, compile_ahead=False)
    assert isinstance(enhancer.sde, BBEDSDE) and (enhancer.sde.k, enhancer.sde.c, enhancer.sde.T) == (2.6, 0.51, 0.999)
    np.testing.assert_allclose(enhancer.sde.std(jnp.asarray(ref["t"])), ref["std_t"], rtol=1e-5)
    score = enhancer.forward(ref["x"], ref["y"], ref["t"])
    assert _rel(score, ref["score"]) < 1e-4
    settings = enhancer.sampler_settings()
    assert settings.sampler == "pc" and settings.num_steps == 15
    assert dict(settings.options)["start_time"] == 0.5 and dict(settings.options)["corrector"] == "ald"
