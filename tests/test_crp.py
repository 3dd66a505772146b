"""CRP (sgmse_crp): its training loss and gradient replayed from the reference's draws, and a
sgmse_crp Lightning checkpoint through `Enhancer` (its own inference start and step count)."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffrestore import sampling
from diffrestore.losses import crp_loss_from_draws, make_crp_loss_fn
from diffrestore.models import build_backbone, params_from_torch, params_to_torch
from diffrestore.score import OutputSpec, make_model_fn
from diffrestore.sde import BBEDSDE

BBED_NET = dict(centered=True, scale_by_sigma=True, fir_kernel=(1, 3, 3, 1))


@pytest.fixture(scope="module")
def crp(storm_bbed_fixtures):
    ref = np.load(storm_bbed_fixtures / "crp_step.npz")
    manifest = json.loads((storm_bbed_fixtures / "MANIFEST.json").read_text())["crp_step"]
    kwargs = dict(manifest["net"]["kwargs"], **BBED_NET)
    weights = {k[len("param/"):]: ref[k] for k in ref.files if k.startswith("param/")}
    module = build_backbone("ncsnpp", **kwargs)
    params = params_from_torch("ncsnpp", kwargs, weights)
    sde = BBEDSDE(k=2.6, c=0.51)
    model_fn = make_model_fn(lambda p, x, y, t: module.apply({"params": p}, x, y, t), sde, OutputSpec(backbone="ncsnpp"))

    @jax.jit
    def loss_and_grad(params, noise, t_start, num_steps):
        def loss(p):
            return crp_loss_from_draws(model_fn, sde, p, ref["X"], ref["Y"], t_start, num_steps,
                                       sampling.replayed_noise(noise), t_eps=0.03)

        return jax.value_and_grad(loss, has_aux=True)(params)

    return ref, manifest, kwargs, params, loss_and_grad


@pytest.mark.parametrize("run", ["A", "B"])
def test_loss_and_gradient_match_reference(crp, run):
    """Run A: N 3 from a drawn start 0.549 (two no-grad EM steps, then the loss step); run B:
    the published N 1 from 0.5. Both share one compiled program (N and the start traced)."""
    ref, manifest, kwargs, params, loss_and_grad = crp
    num_steps = int(ref[f"{run}/N"])
    noise = np.zeros((3,) + ref["Y"].shape, np.complex64)
    noise[:num_steps] = ref[f"{run}/noise"]
    (loss, mean), grads = loss_and_grad(params, jnp.asarray(noise), float(ref[f"{run}/t_rsp"]), num_steps)
    np.testing.assert_allclose(float(loss), float(ref[f"{run}/loss"]), rtol=1e-5)
    mean_ref = ref[f"{run}/mean_x_tm1"]
    assert np.max(np.abs(np.asarray(mean) - mean_ref)) <= 1e-5 * np.max(np.abs(mean_ref))
    torch_grads = params_to_torch("ncsnpp", kwargs, jax.device_get(grads))
    for key in manifest["grad_params"]:
        want = ref[f"{run}/grad/{key}"]
        # float32 vs float64 in the reference: up to 1.4e-5 (MANIFEST grad_relerr); 1e-4 of the max.
        assert np.max(np.abs(torch_grads[key] - want)) <= 1e-4 * np.max(np.abs(want)), key


def test_random_draws_of_start_and_steps_stay_in_range():
    """make_crp_loss_fn draws the start in [0.4, 0.7] and N in {1, 2, 3} per batch; each N occurs."""
    sde = BBEDSDE()
    x0 = jnp.zeros((1, 1, 4, 4), jnp.complex64)
    loss_fn = jax.jit(make_crp_loss_fn(lambda p, x, y, t: -x, sde, t_start_range=(0.4, 0.7), num_steps_range=(1, 3)))
    draws = [jax.device_get(loss_fn(None, x0, x0 + 1, jax.random.key(i))[1]) for i in range(40)]
    starts = np.array([d["t_mean"] for d in draws])
    steps = np.array([d["num_steps"] for d in draws])
    assert starts.min() >= 0.4 and starts.max() <= 0.7 and starts.std() > 0.05
    assert set(steps.tolist()) == {1.0, 2.0, 3.0}
    with pytest.raises(ValueError, match="CRP ranges"):
        make_crp_loss_fn(lambda p, x, y, t: x, sde, num_steps_range=(0, 3))


def test_crp_checkpoint_through_enhancer(storm_bbed_fixtures):
    from diffrestore.enhancer import Enhancer

    ref = np.load(storm_bbed_fixtures / "crp_small_expected.npz")
    enhancer = Enhancer.from_checkpoint(storm_bbed_fixtures / "crp_small.ckpt", compilation_cache=False, compile_ahead=False)
    score = enhancer.forward(ref["x"], ref["y"], ref["t"])
    assert np.max(np.abs(score - ref["score"])) <= 1e-4 * np.max(np.abs(ref["score"]))
    settings = enhancer.sampler_settings()
    # the checkpoint's inference_N = 1 from inference_start = 0.5, no corrector (NFE = N)
    assert settings.num_steps == 1
    assert dict(settings.options)["start_time"] == 0.5 and dict(settings.options)["corrector"] == "none"
