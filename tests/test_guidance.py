"""Posterior sampling: the reference's guided runs replayed, and a closed-form property.

`../shared/fixtures/cqtdiff/{heun_cqtdiff_T6, bwe_guided_T4, declip_guided_T4,
inpaint_guided_T4}.npz` were computed by CQT-Diff's `Sampler`s with the small random U-Net of
`net_unet_cqt.npz` at L = 16384; replaying their draws through our network, operators,
guidance and Heun sampler must give their trajectories' end points within the README's 1e-4.
"""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffrestore import config as config_lib
from diffrestore import operators, sampling
from diffrestore.models import cqt_torch_import, cqtdiff
from diffrestore.score import make_edm_denoiser
from diffrestore.sde import EDM

SMALL = dict(Ns=(4, 8, 8, 8, 8, 8, 8, 8))


def _rel(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


@pytest.fixture(scope="module")
def reference(cqtdiff_fixtures):
    """(denoise_fn(x, σ) of the fixtures' U-Net, manifest settings of each sampler file)."""
    ref = np.load(cqtdiff_fixtures / "net_unet_cqt.npz")
    state = {k[len("param/"):]: ref[k] for k in ref.files if k.startswith("param/")}
    params = cqt_torch_import.params_from_torch("cqtdiff", SMALL, state)
    module = cqtdiff.build(**SMALL)
    sde = EDM(sigma_min=1e-4, sigma_max=1.0, rho=13.0, sigma_data=0.057)
    denoise = make_edm_denoiser(config_lib.prior_apply_fn(module), sde)
    manifest = json.loads((cqtdiff_fixtures / "MANIFEST.json").read_text())["files"]
    return (lambda x, s: denoise(params, x, s)), sde, manifest


def _replay(fixtures, name, reference, make_operator):
    denoise, sde, manifest = reference
    ref = np.load(fixtures / name)
    settings = manifest[name]["settings"]
    operator, params = make_operator(ref)
    y = jnp.asarray(ref["y"])
    guided = sampling.guided_denoiser(
        denoise, operator, y, params, xi=float(settings["xi"]), clip_grad=float(settings["max_thresh_grads"]),
        data_consistency=bool(settings["data_consistency"]),
    )
    sample = sampling.get_sampler("edm_heun", S_churn=float(settings["Schurn"]), convention="cqtdiff")
    T = int(settings["T"])
    assert ref["noise"].shape[0] == sampling.draws_needed("edm_heun", T)
    x, _ = jax.jit(lambda noise: sample(guided, sde, y, sampling.replayed_noise(noise), T))(ref["noise"])
    return np.asarray(x), ref


def test_unconditional_heun_replays_the_reference(cqtdiff_fixtures, reference):
    from test_edm import replay_heun_cqtdiff

    x, ref = replay_heun_cqtdiff(cqtdiff_fixtures, reference[0])
    assert _rel(x, ref["x_out"]) <= 1e-4


def test_guided_bandwidth_extension_replays_the_reference(cqtdiff_fixtures, reference):
    # firwin(500, 1 kHz, width=1) applied as torch's conv1d "same"; ξ 0.2; gradients clipped to ±1.
    def make(ref):
        op = operators.get_operator("lowpass_fir", cutoff=1000.0, sample_rate=22050.0, numtaps=500)
        np.testing.assert_allclose(np.asarray(op.params["taps"]), ref["filter"], rtol=0, atol=1e-7)
        np.testing.assert_allclose(np.asarray(op.apply(ref["seg"])), ref["y"], atol=1e-5 * np.abs(ref["y"]).max())
        return op, None

    x, ref = _replay(cqtdiff_fixtures, "bwe_guided_T4.npz", reference, make)
    assert _rel(x, ref["x_out"]) <= 1e-4


def test_guided_declipping_replays_the_reference(cqtdiff_fixtures, reference):
    def make(ref):
        op = operators.get_operator("clip", level=float(ref["clip_value"]))
        np.testing.assert_allclose(np.asarray(op.apply(ref["seg"])), ref["y"], atol=1e-7)
        return op, None

    x, ref = _replay(cqtdiff_fixtures, "declip_guided_T4.npz", reference, make)
    assert _rel(x, ref["x_out"]) <= 1e-4


def test_guided_inpainting_with_data_consistency_replays_the_reference(cqtdiff_fixtures, reference):
    def make(ref):
        start, length = int(ref["gap_start"]), int(ref["gap_len"])
        op = operators.get_operator("gaps", length=ref["seg"].shape[-1], gap_samples=[(start, start + length)])
        np.testing.assert_array_equal(np.asarray(op.params["mask"]).reshape(ref["mask"].shape), ref["mask"])
        return op, None

    x, ref = _replay(cqtdiff_fixtures, "inpaint_guided_T4.npz", reference, make)
    assert _rel(x, ref["x_out"]) <= 1e-4
    # Data consistency: the observed samples are the observation's, whatever the sampler did.
    observed = ref["mask"] > 0
    np.testing.assert_allclose(x[observed], ref["y"][observed], atol=1e-6)


def test_a_gaussian_prior_with_data_consistency_keeps_the_observation_and_the_prior_elsewhere():
    # White Gaussian prior N(μ, s²) per sample: D(x, σ) = μ + s²/(s² + σ²)·(x − μ) exactly.
    # With a mask and data consistency the posterior is y on the observed samples and the prior
    # itself on the others (they are independent of the observation).
    mu, s = 0.02, 0.05
    sde = EDM(sigma_min=1e-3, sigma_max=2.0, rho=7.0, sigma_data=s)

    def denoise(x, sigma):
        sigma = sigma.reshape(-1, 1)
        return mu + s**2 / (s**2 + sigma**2) * (x - mu)

    rows, length = 256, 512
    rng = np.random.default_rng(0)
    clean = (mu + s * rng.standard_normal((rows, length))).astype(np.float32)
    op = operators.get_operator("gaps", length=length, gap_samples=[(100, 300)])
    y = op.apply(clean)
    guided = sampling.guided_denoiser(denoise, op, y, xi=0.2, data_consistency=True)
    sample = sampling.get_sampler("edm_heun", S_churn=0.0)
    keys = sampling.example_keys(0, rows)
    x, _ = jax.jit(lambda k: sample(guided, sde, y, sampling.keyed_noise(k), 64))(keys)
    x = np.asarray(x)
    mask = np.asarray(op.params["mask"]).reshape(-1) > 0
    np.testing.assert_allclose(x[:, mask], np.asarray(y)[:, mask], atol=1e-6)
    gap = x[:, ~mask].ravel()  # 256 × 200 draws of the prior
    # Tolerances: 5 Monte Carlo standard errors (s/√n for the mean, s²·√(2/n) for the
    # variance, n = 51 200) plus 2 % of s² for the discretisation of 64 Heun steps.
    n = gap.size
    assert abs(gap.mean() - mu) < 5 * s / np.sqrt(n)
    assert abs(gap.var() - s**2) < 5 * s**2 * np.sqrt(2 / n) + 0.02 * s**2
    # The gap is not a copy of the clean signal: its samples are new draws.
    assert abs(np.corrcoef(gap, clean[:, ~mask].ravel())[0, 1]) < 0.05
