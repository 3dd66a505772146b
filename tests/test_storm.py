"""StoRM as a model of the house: its sampler replayed from the reference's draws (D(y) once,
the OUVE process moving towards D(y), dt = 1/N), a StoRM Lightning checkpoint through
`Enhancer` (forward with D inside, predict, enhance), and its loss's closed-form parts.

The two networks' parity with the reference is in test_storm_networks.py."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffrestore import config as config_lib
from diffrestore import sampling
from diffrestore.models.storm import StochasticRegeneration
from diffrestore.models.torch_import import params_from_torch
from diffrestore.sde import OUVESDE


def _rel(a, b):
    return np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b))


def _storm_config(denoiser_kwargs, score_kwargs):
    import ml_collections

    config = config_lib.default_config()
    config.model.backbone = "ncsnpp_storm"
    config.model.backbone_kwargs = ml_collections.ConfigDict(score_kwargs)
    config.model.denoiser_kwargs = ml_collections.ConfigDict(denoiser_kwargs)
    return config


def test_sampler_replays_reference(storm_bbed_fixtures):
    ref = np.load(storm_bbed_fixtures / "storm_sampler_N4.npz")
    nets = json.loads((storm_bbed_fixtures / "MANIFEST.json").read_text())["storm_sampler_N4"]["nets"]
    denoiser_kwargs = {k: v for k, v in nets["denoiser"].items() if k != "discriminative"}
    config = _storm_config(denoiser_kwargs, nets["score"])
    params = {
        name: params_from_torch("ncsnpp_storm", dict(nets[name]), {
            k[len(f"{name}/param/"):]: ref[k] for k in ref.files if k.startswith(f"{name}/param/")
        })
        for name in ("denoiser", "score")
    }
    module = config_lib.build_backbone(config)
    assert isinstance(module, StochasticRegeneration)
    condition_fn = config_lib.build_condition_fn(config, module)
    model_fn = config_lib.build_model_fn(config, module)
    sde = OUVESDE(theta=1.5, sigma_min=0.05, sigma_max=0.5)

    @jax.jit
    def run(y, noise):
        dy, cond = condition_fn(params, y)
        score_fn = lambda x, _dy, t: model_fn(params, x, cond, t)
        x_hat, nfe = sampling.pc_sample(score_fn, sde, dy, sampling.replayed_noise(noise), 4, corrector="ald",
                                        snr=0.5, eps=0.03, step_size="1/N")
        return dy, x_hat, nfe

    dy, x_hat, nfe = run(jnp.asarray(ref["y"]), jnp.asarray(ref["noise"][:, 0]))
    assert int(nfe) == 8
    assert _rel(dy, ref["dy"]) < 1e-4
    assert _rel(x_hat, ref["x_hat"]) < 1e-4


@pytest.fixture(scope="module")
def storm_enhancer(storm_bbed_fixtures):
    from diffrestore.enhancer import Enhancer

    return Enhancer.from_checkpoint(storm_bbed_fixtures / "storm_small.ckpt", compilation_cache=False, compile_ahead=False)


def test_checkpoint_forward_and_predict(storm_bbed_fixtures, storm_enhancer):
    ref = np.load(storm_bbed_fixtures / "storm_small_expected.npz")
    assert config_lib.is_storm(storm_enhancer.config)
    assert storm_enhancer.config.data.spec_factor == pytest.approx(0.33)
    assert _rel(storm_enhancer.predict(ref["y"]), ref["dy"]) < 1e-4
    # forward(x, y, t) = forward_score(x, t, [y, D(y)], D(y)): D(y) is computed inside.
    assert _rel(storm_enhancer.forward(ref["x"], ref["y"], ref["t"]), ref["score"]) < 1e-4
    settings = storm_enhancer.sampler_settings()
    assert (settings.sampler, settings.num_steps) == ("pc", 50)
    assert dict(settings.options)["step_size"] == "1/N" and dict(settings.options)["corrector"] == "ald"


def test_enhance_waveform_counts_the_predictive_call(storm_enhancer):
    wave = np.random.default_rng(0).standard_normal(4000).astype(np.float32) * 0.1
    (out,) = storm_enhancer.enhance([wave], 16000, num_steps=2, buckets=(64,))
    assert out.shape == wave.shape and np.all(np.isfinite(out))
    assert storm_enhancer.last_network_evaluations == 2 * 2 + 1  # ALD + predictor per step, and D(y)


def test_predict_needs_a_storm_model(sgmse_fixtures):
    from diffrestore.enhancer import Enhancer

    enhancer = Enhancer.from_checkpoint(sgmse_fixtures / "sgmse_small.ckpt", compilation_cache=False, compile_ahead=False)
    with pytest.raises(ValueError, match="StoRM"):
        enhancer.predict(np.zeros((1, 1, 256, 64), np.complex64))


def test_loss_terms_and_frozen_denoiser():
    """The loss is a·½Σ|D − x0|² + (1 − a)·½Σ|σs + z|² summed over the batch; in frozen mode no
    gradient reaches the predictive network, in joint mode it does."""
    from diffrestore.losses import make_storm_loss_fn

    tiny = {"nf": 8, "ch_mult": (1, 2), "num_res_blocks": 1, "attn_resolutions": ()}
    config = _storm_config(tiny, dict(tiny, input_channels=6))
    module = config_lib.build_backbone(config)
    x0 = jax.random.normal(jax.random.key(0), (2, 1, 8, 8)) * (1 + 0.5j)
    y = x0 + 0.3 * jax.random.normal(jax.random.key(1), x0.shape)
    params = module.init(jax.random.key(2), x0, y, jnp.ones(2))["params"]
    sde = OUVESDE()
    args = (config_lib.build_model_fn(config, module), config_lib.build_condition_fn(config, module), sde)
    for mode, reaches in (("joint", True), ("frozen_denoiser", False)):
        loss_fn = make_storm_loss_fn(*args, mode=mode, denoiser_weight=0.25)
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x0, y, jax.random.key(3))
        dy = module.apply({"params": params}, y, method="predict")
        np.testing.assert_allclose(aux["loss_denoiser"], 0.5 * np.sum(np.abs(np.asarray(dy - x0)) ** 2), rtol=1e-5)
        np.testing.assert_allclose(loss, 0.25 * aux["loss_denoiser"] + 0.75 * aux["loss_score"], rtol=1e-6)
        norm = float(sum(jnp.sum(jnp.abs(g)) for g in jax.tree.leaves(grads["denoiser"])))
        assert (norm > 0) == reaches, (mode, norm)
        assert float(sum(jnp.sum(jnp.abs(g)) for g in jax.tree.leaves(grads["score"]))) > 0
