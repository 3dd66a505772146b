"""StoRM's two NCSN++ networks (`ncsnpp_storm`) and its Lightning checkpoint, against the
PyTorch reference (../shared/fixtures/storm_bbed, see its README).

Each network configuration is compiled once (XLA compile dominates the run time on CPU).
"""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from lightning_ckpt import write_lightning_checkpoint

from diffrestore.convert.storm import (
    build_storm_networks,
    infer_network_size,
    load_storm_checkpoint,
    storm_kwargs_from_state_dict,
)
from diffrestore.convert.torch_pickle import CheckpointError, load_torch_checkpoint
from diffrestore.models.ncsnpp import BACKBONES, VARIANTS, build_backbone, make_config
from diffrestore.models.torch_import import param_shapes, params_from_torch, torch_param_names

# Test-only: skip XLA's expensive LLVM passes on CPU (no float32 result changes).
_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@pytest.fixture(scope="module")
def manifest(storm_bbed_fixtures):
    return json.loads((storm_bbed_fixtures / "MANIFEST.json").read_text())


def _load_net(fixtures, name):
    """(arrays, state_dict) of one net_*.npz; state_dict keys in the file's order."""
    data = np.load(fixtures / f"{name}.npz")
    return data, {k[len("param/"):]: data[k] for k in data.files if k.startswith("param/")}


def _run(module, params, *inputs):
    """module.apply({"params": params}, *inputs), compiled once, as numpy."""
    args = ({"params": params}, *inputs)
    compiled = jax.jit(module.apply).lower(*args).compile(compiler_options=_FAST_COMPILE)
    return np.asarray(compiled(*args))


def _assert_close(out, ref, what):
    assert out.dtype == np.complex64 and out.shape == ref.shape, (what, out.dtype, out.shape)
    err, scale = np.max(np.abs(out - ref)), np.max(np.abs(ref))
    print(f"{what}: max|diff| {err:.3g}, max|ref| {scale:.3g}, relative {err / scale:.3g}")
    assert err <= 1e-4 * scale, f"{what}: max|diff| {err:.3g} vs max|out| {scale:.3g}"


def _shape_tree(tree):
    return jax.tree.map(lambda a: tuple(a.shape), tree)


def _count(tree):
    return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


# ----------------------------------------------------------------------------- the two networks


def test_predictor_matches_pytorch_reference(storm_bbed_fixtures, manifest):
    spec = manifest["net_storm_predictor"]
    data, state_dict = _load_net(storm_bbed_fixtures, "net_storm_predictor")
    params = params_from_torch("ncsnpp_storm", spec["kwargs"], state_dict)
    module = build_backbone("ncsnpp_storm", **spec["kwargs"])
    cfg = module.config
    assert (cfg.conditional, cfg.scale_by_sigma, cfg.centered, cfg.input_channels) == (False, False, False, 2)
    # The reference's net(y): no time input at all.
    _assert_close(_run(module, params, data["y"], None, None), data["out"], "D(y)")


def test_score_net_matches_pytorch_reference(storm_bbed_fixtures, manifest):
    spec = manifest["net_storm_score"]
    data, state_dict = _load_net(storm_bbed_fixtures, "net_storm_score")
    params = params_from_torch("ncsnpp_storm", spec["kwargs"], state_dict)
    module = build_backbone("ncsnpp_storm", **spec["kwargs"])
    # The reference's net(cat([x, y, dy], 1), t): the conditioning [y, dy] on the channel axis.
    cond = np.concatenate([data["y"], data["dy"]], axis=1)
    _assert_close(_run(module, params, data["x"], cond, data["t"]), data["out"], "score net")


@pytest.mark.parametrize("name", ["net_storm_predictor", "net_storm_score"])
def test_import_fills_exactly_the_module_parameters(storm_bbed_fixtures, manifest, name):
    spec = manifest[name]
    data, state_dict = _load_net(storm_bbed_fixtures, name)
    # The fixtures list the state_dict in the reference's parameters() order.
    assert list(state_dict) == torch_param_names("ncsnpp_storm", spec["kwargs"])
    params = params_from_torch("ncsnpp_storm", spec["kwargs"], state_dict)
    module = build_backbone("ncsnpp_storm", **spec["kwargs"])
    if module.config.discriminative:
        inputs = (data["y"], None, None)
    else:
        inputs = (data["x"], np.concatenate([data["y"], data["dy"]], axis=1), data["t"])
    abstract = jax.eval_shape(module.init, jax.random.key(0), *inputs)["params"]
    assert _shape_tree(params) == _shape_tree(abstract) == param_shapes("ncsnpp_storm", spec["kwargs"])
    assert _count(abstract) == spec["params"]
    # The discriminative net keeps the unused Fourier W and the residual blocks' Dense_0.
    assert "time_fourier" in abstract and "Dense_0" in abstract["down_0_res_0"]


def test_variant_defaults_and_registries():
    cfg = make_config("ncsnpp_storm")
    assert (cfg.nf, cfg.ch_mult, cfg.num_res_blocks, cfg.attn_resolutions) == (128, (1, 2, 2, 2), 1, (0,))
    assert (cfg.fir, cfg.fir_kernel, cfg.fourier_scale, cfg.centered) == (True, (1, 3, 3, 1), 16, False)
    assert (cfg.conditional, cfg.scale_by_sigma, cfg.input_channels) == (True, True, 6)
    assert "ncsnpp_storm" in VARIANTS and "ncsnpp_storm" not in BACKBONES
    with pytest.raises(TypeError, match="centered"):
        make_config("ncsnpp_storm", centered=True)  # hard-wired: the input map is always applied
    with pytest.raises(ValueError, match="input_channels"):
        make_config("ncsnpp_storm", input_channels=8)


def test_call_convention_is_checked():
    small = dict(nf=8, ch_mult=(1, 2), image_size=16)
    x = jax.ShapeDtypeStruct((2, 1, 16, 8), jnp.complex64)
    t = jax.ShapeDtypeStruct((2,), jnp.float32)
    score = build_backbone("ncsnpp_storm", **small)
    with pytest.raises(ValueError, match=r"conditioning y \(B, 2, F, T\)"):
        jax.eval_shape(score.init, jax.random.key(0), x, x, t)  # y alone, without D(y)
    with pytest.raises(ValueError, match="t must be"):
        jax.eval_shape(score.init, jax.random.key(0), x, jax.ShapeDtypeStruct((2, 2, 16, 8), jnp.complex64), None)
    denoiser = build_backbone("ncsnpp_storm", discriminative=True, **small)
    with pytest.raises(ValueError, match="y=None"):
        jax.eval_shape(denoiser.init, jax.random.key(0), x, x, None)


# ----------------------------------------------------------------------------- checkpoint


@pytest.fixture(scope="module")
def storm_ckpt(storm_bbed_fixtures):
    return storm_bbed_fixtures / "storm_small.ckpt"


def test_checkpoint_reproduces_reference_with_ema_weights(storm_ckpt, storm_bbed_fixtures):
    hparams, params, ema_params = load_storm_checkpoint(storm_ckpt)
    kwargs = hparams["network_kwargs"]
    # The sizes come from the weights (nf 8 here), the roles from the prefixes.
    assert kwargs["denoiser"] == dict(
        nf=8, ch_mult=(1, 2, 2, 2), num_res_blocks=1, spatial_channels=1, discriminative=True, input_channels=2
    )
    assert kwargs["score"]["input_channels"] == 6 and not kwargs["score"]["discriminative"]
    assert hparams["condition"] == "both" and hparams["spec_factor"] == 0.33
    # EMA and raw weights differ (the expected outputs are the EMA ones).
    assert not np.allclose(params["score"]["conv_in"]["kernel"], ema_params["score"]["conv_in"]["kernel"])

    expected = np.load(storm_bbed_fixtures / "storm_small_expected.npz")
    nets = build_storm_networks(kwargs)
    dy = _run(nets["denoiser"], ema_params["denoiser"], expected["y"], None, None)
    _assert_close(dy, expected["dy"], "forward_denoiser(y)")
    # forward_score(x, t, [y, dy], dy) = -score_net(cat([x, y, dy]), t), with the reference's dy.
    cond = np.concatenate([expected["y"], expected["dy"]], axis=1)
    score = -_run(nets["score"], ema_params["score"], expected["x"], cond, expected["t"])
    _assert_close(score, expected["score"], "forward_score")


def test_network_size_is_read_from_the_weights(storm_bbed_fixtures):
    _, state_dict = _load_net(storm_bbed_fixtures, "net_storm_score")
    assert infer_network_size(state_dict) == dict(nf=16, ch_mult=(1, 2, 2, 2), num_res_blocks=1)
    # hparams' nf is overridden by the weights; their other constructor options are kept.
    kwargs = storm_kwargs_from_state_dict(state_dict, network="score", hparams={"nf": 128, "fourier_scale": 16, "lr": 1e-4})
    assert kwargs == dict(nf=16, ch_mult=(1, 2, 2, 2), num_res_blocks=1, fourier_scale=16, discriminative=False, input_channels=6)
    assert storm_kwargs_from_state_dict(state_dict, network="score", hparams={"condition": "noisy"})["input_channels"] == 4


@pytest.fixture(scope="module")
def storm_ckpt_contents(storm_ckpt):
    """(state_dict, shadow_params, hyper_parameters without data_module_cls) of the fixture."""
    ckpt = load_torch_checkpoint(storm_ckpt)
    hparams = {k: v for k, v in ckpt["hyper_parameters"].items() if k != "data_module_cls"}
    state = {k: np.asarray(v) for k, v in ckpt["state_dict"].items()}
    return state, [np.asarray(v) for v in ckpt["ema"]["shadow_params"]], hparams


def _broken(tmp_path, contents, state=None, shadow=None, hparams=None):
    state0, shadow0, hparams0 = contents
    path = tmp_path / "broken.ckpt"
    return write_lightning_checkpoint(
        path, state if state is not None else state0, shadow if shadow is not None else shadow0,
        hparams if hparams is not None else hparams0,
    )


def test_checkpoint_refuses_a_missing_key(tmp_path, storm_ckpt_contents):
    state = {k: v for k, v in storm_ckpt_contents[0].items() if k != "score_net.all_modules.5.Conv_1.weight"}
    path = _broken(tmp_path, storm_ckpt_contents, state=state)
    with pytest.raises(CheckpointError, match=r"broken\.ckpt: weights of score_net\.\* .*missing keys \['all_modules\.5\.Conv_1\.weight'\]"):
        load_storm_checkpoint(path)


def test_checkpoint_refuses_a_wrong_shape(tmp_path, storm_ckpt_contents):
    state = dict(storm_ckpt_contents[0])
    state["denoiser_net.output_layer.weight"] = np.zeros((2, 6, 1, 1), np.float32)
    path = _broken(tmp_path, storm_ckpt_contents, state=state)
    with pytest.raises(CheckpointError, match=r"output_layer\.weight: shape \(2, 6, 1, 1\), expected \(2, 2, 1, 1\)"):
        load_storm_checkpoint(path)


def test_checkpoint_refuses_a_short_ema_list_and_stray_keys(tmp_path, storm_ckpt_contents):
    shadow = storm_ckpt_contents[1][:-1]
    path = _broken(tmp_path, storm_ckpt_contents, shadow=shadow)
    with pytest.raises(CheckpointError, match=r"shadow_params has 537 tensors but the networks have 538 parameters \(denoiser 267, score 271\)"):
        load_storm_checkpoint(path)
    # Swapping two EMA tensors of different shapes is caught by position.
    shadow = list(storm_ckpt_contents[1])
    shadow[0], shadow[1] = shadow[1], shadow[0]
    path = _broken(tmp_path, storm_ckpt_contents, shadow=shadow)
    with pytest.raises(CheckpointError, match=r"shadow_params\[0\] \(denoiser_net\.output_layer\.weight\)"):
        load_storm_checkpoint(path)
    state = dict(storm_ckpt_contents[0], **{"dnn.output_layer.bias": np.zeros(2, np.float32)})
    path = _broken(tmp_path, storm_ckpt_contents, state=state)
    with pytest.raises(CheckpointError, match=r"keys outside 'denoiser_net\.\*', 'score_net\.\*': \['dnn\.output_layer\.bias'\]"):
        load_storm_checkpoint(path)


def test_torch_import_refuses_wrong_keys(storm_bbed_fixtures, manifest):
    kwargs = manifest["net_storm_score"]["kwargs"]
    _, state_dict = _load_net(storm_bbed_fixtures, "net_storm_score")
    broken = {k: v for k, v in state_dict.items() if k != "all_modules.0.W"}
    with pytest.raises(ValueError, match=r"missing keys \['all_modules\.0\.W'\]"):
        params_from_torch("ncsnpp_storm", kwargs, broken)
    with pytest.raises(ValueError, match="strip the 'score_net.' prefix"):
        params_from_torch("ncsnpp_storm", kwargs, {"score_net." + k: v for k, v in state_dict.items()})
    # A 4-channel state dict does not fit the 6-channel score network.
    with pytest.raises(ValueError, match=r"output_layer\.weight: shape \(2, 6, 1, 1\), expected \(2, 4, 1, 1\)"):
        params_from_torch("ncsnpp_storm", dict(kwargs, input_channels=4), state_dict)
