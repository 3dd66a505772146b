"""BUDDy's clean-speech prior: NCSN++ in an STFT ("ncsnpp_stft"), configs/prior_speech.py.

The network at the shipped structure (small nf) through `Prior` (σ → 0 gives D ≈ x), one
training step of a tiny variant of the recipe (nf 8, one level, a 126-point STFT, 0.25 s
segments) on synthetic speech whose run directory loads and samples, the PyTorch weight mapping
checked against the reference's key names (every tensor where its name says), its output
against a few numbers of the PyTorch reference, bf16 against f32, and BUDDy trainer files
(`{'it', 'network', 'ema', 'args'}`) read without PyTorch. There is no BUDDy fixture: the
expected torch names and shapes below are read off sp-uhh/buddy `networks/ncsnpp.py` and
`ncsnpp_utils/layerspp.py` (registration order of each module), and were checked against the
reference's `state_dict()`.
"""
import importlib.util
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lightning_ckpt import _Writer, _global, _int, _str, _value, write_torch_zip

ROOT = pathlib.Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "prior_speech.py"
# A coarse STFT (64 rows) and two levels keep the compiled programs small.
TINY = dict(nf=8, ch_mult=(1,), n_fft=126, hop_length=32, image_size=64)


def load_recipe(**network):
    spec = importlib.util.spec_from_file_location("prior_speech_config", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.model.backbone_kwargs.update(network)
    return config


def random_params(shapes: dict, seed: int = 0) -> dict:
    """Flax parameters of the given shapes with roughly trained-network scales."""
    rng = np.random.default_rng(seed)

    def leaf(name, shape):
        if name == "kernel":
            return rng.standard_normal(shape) / np.sqrt(np.prod(shape[:-1]))
        if name == "scale":
            return 1.0 + 0.1 * rng.standard_normal(shape)
        if name == "W":  # Fourier frequencies, N(0, fourier_scale²)
            return 16.0 * rng.standard_normal(shape)
        return 0.01 * rng.standard_normal(shape)

    def build(tree):
        return {k: build(v) if isinstance(v, dict) else leaf(k, v).astype(np.float32) for k, v in tree.items()}

    return build(shapes)


# ----------------------------------------------------------------------------- the network


def test_the_recipe_is_buddys():
    from diffrestore import config as config_lib
    from diffrestore.data.defaults import crop_length

    config = load_recipe()
    assert config_lib.is_prior(config) and config.model.backbone == "ncsnpp_stft"
    # sum(p.numel() for p in NCSNppTime(**conf/network/ncsnpp.yaml).parameters()) in PyTorch
    # (sp-uhh/buddy c7fa951), the fixed Fourier features included.
    n_params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(config_lib.abstract_params(config)))
    assert n_params == 27_736_590
    d, s, m = config.data, config.sde, config.sampling
    assert (d.dataset, d.normalize, d.sample_rate, crop_length(d)) == ("clean", "none", 16000, 65536)
    assert (s.sigma_data, s.train_distribution, s.train_sigma_min, s.train_sigma_max, s.rho_train) == (
        0.05, "rho_uniform", 1e-5, 10.0, 10.0)
    assert (s.sigma_min, s.sigma_max, s.rho) == (5e-4, 1.0, 10.0)
    assert (m.sampler, m.num_steps, m.S_churn, m.S_tmin, m.S_tmax, m.convention) == ("edm_heun", 201, 30.0, 0.0, 10.0, "babe")
    assert (config.optim.lr, config.optim.grad_clip_norm, config.training.batch_size, config.training.ema_decay) == (
        1e-4, 1.0, 16, 0.9999)



def test_the_shipped_structure_runs_and_denoises_through_prior():
    from diffrestore import Prior
    from diffrestore import config as config_lib
    from diffrestore.models import param_shapes

    config = load_recipe(nf=8)  # everything else as BUDDy ships it: 4 levels, n_fft 510, hop 128
    kwargs = config.model.backbone_kwargs.to_dict()
    module = config_lib.build_backbone(config)
    abstract = jax.eval_shape(module.init, jax.random.key(0), *config_lib.example_inputs(config))["params"]
    assert jax.tree.map(lambda a: a.shape, abstract) == param_shapes("ncsnpp_stft", kwargs)
    prior = Prior(config, random_params(param_shapes("ncsnpp_stft", kwargs)))
    assert prior.sample_rate == 16000 and prior.sde.sigma_data == 0.05
    rng = np.random.default_rng(1)
    x = (0.05 * rng.standard_normal((2, 3001))).astype(np.float32)  # 3001 = 23 hops + 57: 24 frames, padded to 32
    d = prior.denoise(x, [0.05, 1.0])
    assert d.shape == x.shape and d.dtype == np.float32 and np.all(np.isfinite(d))
    assert np.std(d - x) > 1e-3  # the network does contribute at these levels
    # σ → 0: c_skip → 1 and c_out → 0, whatever the weights.
    np.testing.assert_allclose(prior.denoise(x, 1e-7), x, atol=1e-6)


def test_options_and_call_convention():
    from diffrestore.models import PRIOR_NETWORKS, build_backbone, build_network, ncsnpp_stft

    assert "ncsnpp_stft" in PRIOR_NETWORKS
    net = build_network("ncsnpp_stft").config
    # BUDDy's conf/network/ncsnpp.yaml.
    assert (net.nf, net.ch_mult, net.num_res_blocks, net.attn_resolutions) == (128, (1, 2, 2, 2), 1, (0,))
    assert not net.fir
    assert (net.input_channels, net.conditional, net.scale_by_sigma, net.temb_dim) == (2, True, False, 512)
    assert ncsnpp_stft.make_config().n_fft == 510 and ncsnpp_stft.make_config().hop_length == 128
    disc = build_backbone("ncsnpp_buddy", discriminative=True).config  # the reference overrides both
    assert (disc.conditional, disc.input_channels, disc.temb_dim, disc.has_fourier) == (False, 2, None, False)
    with pytest.raises(ValueError, match="input_channels=2"):
        ncsnpp_stft.make_config(input_channels=4)
    with pytest.raises(ValueError, match="multiple of 8"):
        ncsnpp_stft.make_config(n_fft=512)  # 257 rows cannot be halved three times
    with pytest.raises(ValueError, match="spatial_channels"):
        build_backbone("ncsnpp_buddy", spatial_channels=2)
    with pytest.raises(TypeError, match="time_conditional"):
        build_backbone("ncsnpp", time_conditional=False)  # SGMSE's constructor has no such option
    # A 2-channel NCSN++ is called with y=None; one with 4 channels needs y.
    x = jnp.zeros((1, 1, 64, 16), jnp.complex64)
    two = build_backbone("ncsnpp_buddy", nf=8, ch_mult=(1, 2), image_size=64, input_channels=2)
    out = jax.eval_shape(two.init, jax.random.key(0), x, None, jnp.zeros((1,)))
    assert "time_fourier" in out["params"]
    with pytest.raises(ValueError, match="y=None"):
        jax.eval_shape(two.init, jax.random.key(0), x, x, jnp.zeros((1,)))
    four = build_backbone("ncsnpp_buddy", nf=8, ch_mult=(1, 2), image_size=64, time_conditional=False)
    shapes = jax.eval_shape(four.init, jax.random.key(0), x, x, None)["params"]
    assert shapes["conv_in"]["kernel"].shape == (3, 3, 4, 8) and "time_fourier" not in shapes
    assert "Dense_0" not in shapes["down_0_res_0"]
    with pytest.raises(ValueError, match="x and y"):
        jax.eval_shape(four.init, jax.random.key(0), x, None, None)


# ----------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def clean_speech(tmp_path_factory):
    """A clean-only folder (train/, valid/) cut from the synthetic paired speech corpus."""
    from diffrestore.data import write_synthetic_corpus

    corpus = tmp_path_factory.mktemp("speech_corpus")
    write_synthetic_corpus(corpus, sample_rate=16000, num_train=3, num_valid=1, num_test=0, seconds=(0.4, 0.6),
                           seed=0, num_speakers=1)
    root = tmp_path_factory.mktemp("clean_speech")
    for subset in ("train", "valid"):
        shutil.copytree(corpus / subset / "clean", root / subset)
    return root


def test_a_tiny_speech_prior_trains_and_its_run_directory_samples(clean_speech, tmp_path):
    from diffrestore import Prior
    from diffrestore.train import train_and_evaluate

    config = load_recipe(**TINY)
    config.data.data_dir = str(clean_speech)
    config.data.segment_length = 4000  # 0.25 s; the files are shorter and are padded (short_files="pad")
    t = config.training
    t.batch_size, t.num_steps, t.log_every_steps, t.checkpoint_every_steps = 2, 1, 1, 1
    t.keep_period, t.eval_every_steps, t.tensorboard = 0, 0, False
    result = train_and_evaluate(config, tmp_path / "run")
    assert result["step"] == 1 and np.isfinite(result["loss"]) and result["loss"] > 0

    prior = Prior.from_checkpoint(tmp_path / "run")
    assert prior.config.model.backbone == "ncsnpp_stft" and prior.sample_rate == 16000
    sampler, steps, options = prior.sampler_settings()
    assert (sampler, steps, dict(options)["S_churn"], dict(options)["convention"]) == ("edm_heun", 201, 30.0, "babe")
    audio = prior.sample(2, length=3001, num_steps=2, batch_size=2, seed=0)
    assert audio.shape == (2, 3001) and np.all(np.isfinite(audio)) and np.std(audio) > 0


# ----------------------------------------------------------------------------- weight import

# BUDDy's NCSNpp(nf=8, ch_mult=(1, 2), input_channels=2) (other options as shipped): its
# `all_modules`, in constructor order, as (kind, in, out). "res" is ResnetBlockBigGANpp (its
# 1x1 `Conv_2` exists when in != out or it resamples: "res_up"/"res_down"), "combine" the input
# pyramid's Combine, "norm"/"conv" the output pyramid's GroupNorm and conv3x3.
SMALL = dict(nf=8, ch_mult=(1, 2), n_fft=126, hop_length=32, image_size=64)
REFERENCE_MODULES = [
    ("fourier", 0, 8), ("linear", 16, 32), ("linear", 32, 32),  # time embedding (time_conditional)
    ("conv", 2, 8),  # input layer: conv3x3(total_channels, nf)
    ("res", 8, 8), ("res_down", 8, 8), ("combine", 2, 8),  # level 0, then downsampling
    ("res", 8, 16),  # level 1 (last: no downsampling)
    ("res", 16, 16), ("attn", 16, 16), ("res", 16, 16),  # middle
    ("res", 32, 16), ("res", 24, 16), ("norm", 16, 16), ("conv", 16, 2), ("res_up", 16, 16),  # up, level 1
    ("res", 24, 8), ("res", 16, 8), ("norm", 8, 8), ("conv", 8, 2),  # up, level 0
]


def reference_names(modules, temb: int | None) -> dict:
    """torch state_dict names and shapes, in order, of BUDDy's NCSNppTime with these modules."""
    out = {"output_layer.weight": (2, 2, 1, 1), "output_layer.bias": (2,)}  # assigned before all_modules

    def add(prefix, cin, cout, k):
        out[f"{prefix}.weight"], out[f"{prefix}.bias"] = ((cout, cin, k, k) if k else (cout, cin)), (cout,)

    for i, (kind, cin, cout) in enumerate(modules):
        p = f"all_modules.{i}"
        if kind == "fourier":
            out[f"{p}.W"] = (cout,)
        elif kind == "linear":
            add(p, cin, cout, 0)
        elif kind == "conv":
            add(p, cin, cout, 3)
        elif kind == "norm":
            out[f"{p}.weight"], out[f"{p}.bias"] = (cin,), (cin,)
        elif kind == "combine":
            add(f"{p}.Conv_0", cin, cout, 1)
        elif kind == "attn":
            out[f"{p}.GroupNorm_0.weight"], out[f"{p}.GroupNorm_0.bias"] = (cin,), (cin,)
            for j in range(4):
                out[f"{p}.NIN_{j}.W"], out[f"{p}.NIN_{j}.b"] = (cin, cin), (cin,)
        else:  # GroupNorm_0, Conv_0, Dense_0 (only with a time embedding), GroupNorm_1, Conv_1, Conv_2
            out[f"{p}.GroupNorm_0.weight"], out[f"{p}.GroupNorm_0.bias"] = (cin,), (cin,)
            add(f"{p}.Conv_0", cin, cout, 3)
            if temb:
                add(f"{p}.Dense_0", temb, cout, 0)
            out[f"{p}.GroupNorm_1.weight"], out[f"{p}.GroupNorm_1.bias"] = (cout,), (cout,)
            add(f"{p}.Conv_1", cout, cout, 3)
            if cin != cout or kind != "res":
                add(f"{p}.Conv_2", cin, cout, 1)
    return out


def distinct_state(shapes: dict, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def test_the_weight_mapping_follows_the_reference_names():
    from diffrestore.models import build_prior_network, params_from_torch, torch_param_shapes

    expected = reference_names(REFERENCE_MODULES, temb=32)
    assert list(torch_param_shapes("ncsnpp_stft", SMALL).items()) == list(expected.items())
    # Without time conditioning BUDDy has no embedding modules and no Dense_0 in its blocks.
    no_time = reference_names(REFERENCE_MODULES[3:], temb=None)
    assert list(torch_param_shapes("ncsnpp_stft", dict(SMALL, time_conditional=False)).items()) == list(no_time.items())

    state = distinct_state(expected)
    params = params_from_torch("ncsnpp_stft", SMALL, state)
    module = build_prior_network("ncsnpp_stft", **SMALL)
    abstract = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 2000)), jnp.zeros((1,)))["params"]
    assert jax.tree.map(np.shape, params) == jax.tree.map(lambda a: a.shape, abstract)
    conv = lambda a: np.transpose(a, (2, 3, 1, 0))  # noqa: E731  [out, in, kh, kw] -> [kh, kw, in, out]
    lands = {
        "output_layer.weight": (("output_layer", "kernel"), conv),
        "all_modules.0.W": (("time_fourier", "W"), None),
        "all_modules.1.weight": (("time_dense_0", "kernel"), np.transpose),
        "all_modules.3.weight": (("conv_in", "kernel"), conv),
        "all_modules.4.Dense_0.bias": (("down_0_res_0", "Dense_0", "bias"), None),
        "all_modules.5.Conv_2.weight": (("down_0_resample", "Conv_2", "kernel"), conv),
        "all_modules.6.Conv_0.weight": (("down_0_combine", "Conv_0", "kernel"), conv),
        "all_modules.9.NIN_2.W": (("mid_attn", "NIN_2", "kernel"), None),
        "all_modules.10.GroupNorm_1.weight": (("mid_res_1", "GroupNorm_1", "scale"), None),
        "all_modules.12.Conv_0.weight": (("up_1_res_1", "Conv_0", "kernel"), conv),
        "all_modules.13.weight": (("up_1_pyramid_norm", "scale"), None),
        "all_modules.14.bias": (("up_1_pyramid_conv", "bias"), None),
        "all_modules.15.Conv_2.weight": (("up_1_resample", "Conv_2", "kernel"), conv),
        "all_modules.19.weight": (("up_0_pyramid_conv", "kernel"), conv),
    }
    for key, (path, transform) in lands.items():
        leaf = params
        for part in path:
            leaf = leaf[part]
        np.testing.assert_array_equal(leaf, transform(state[key]) if transform else state[key], err_msg=key)
    # Every tensor lands exactly once: the Flax leaves are the torch tensors, values and all.
    flat = sorted(tuple(np.sort(a, axis=None)) for a in jax.tree.leaves(params))
    assert flat == sorted(tuple(np.sort(a, axis=None)) for a in state.values())


def test_the_weight_mapping_refuses_what_does_not_fit():
    from diffrestore.models import params_from_torch

    state = distinct_state(reference_names(REFERENCE_MODULES, temb=32))
    broken = dict(state)
    del broken["all_modules.9.NIN_3.b"]
    broken["all_modules.20.weight"] = np.zeros((2, 8, 3, 3), np.float32)
    broken["all_modules.7.Conv_0.weight"] = np.zeros((16, 8, 3, 1), np.float32)
    with pytest.raises(ValueError) as info:
        params_from_torch("ncsnpp_stft", SMALL, broken)
    for needle in ("missing keys ['all_modules.9.NIN_3.b']", "all_modules.20.weight",
                   "all_modules.7.Conv_0.weight: shape (16, 8, 3, 1), expected (16, 8, 3, 3)"):
        assert needle in str(info.value), info.value
    # The same weights do not fit a network without time conditioning (keys too many).
    with pytest.raises(ValueError, match="unexpected keys"):
        params_from_torch("ncsnpp_stft", dict(SMALL, time_conditional=False), state)


# BUDDy's NCSNppTime(n_fft 126, hop 32, nf 8, ch_mult (1, 2), input_channels 2, image_size 64) run
# in PyTorch (float32, CPU; sp-uhh/buddy at c7fa951) with the weights 0.3·distinct_state(names,
# seed=0), x = 0.5·N(0, 1) of default_rng(3), shape (2, 1500), c_noise (-0.7, 0.2): its output
# at every 250th sample, and the RMS of each row.
REFERENCE_OUT = [[0.014748186, 0.0062719896, -0.026601937, -0.007871096, -0.00098931941, -0.00082286936],
                 [0.010451202, 0.0005298566, 0.00027043355, 0.0051908144, -0.020752147, 0.031678297]]
REFERENCE_RMS = [0.01280179, 0.014459488]


def test_imported_weights_give_the_references_output_in_float32_and_close_in_bfloat16():
    from diffrestore.models import build_prior_network, params_from_torch

    state = {k: 0.3 * v for k, v in distinct_state(reference_names(REFERENCE_MODULES, temb=32), seed=0).items()}
    params = params_from_torch("ncsnpp_stft", SMALL, state)
    x = jnp.asarray((0.5 * np.random.default_rng(3).standard_normal((2, 1500))).astype(np.float32))
    c_noise = jnp.asarray([[-0.7], [0.2]], jnp.float32)  # EDM's ¼ ln σ, fed to the Fourier features as is
    f32 = jax.jit(build_prior_network("ncsnpp_stft", **SMALL).apply)({"params": params}, x, c_noise)
    assert f32.shape == (2, 1500) and f32.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(f32)[:, ::250], REFERENCE_OUT, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(np.sqrt(np.mean(np.asarray(f32, np.float64) ** 2, axis=1)), REFERENCE_RMS, rtol=1e-5)
    bf16_module = build_prior_network("ncsnpp_stft", dtype=jnp.bfloat16, **SMALL)
    bf16 = jax.jit(bf16_module.apply)({"params": params}, x, c_noise)
    assert bf16.dtype == jnp.float32
    err = float(jnp.max(jnp.abs(bf16 - f32)) / jnp.max(jnp.abs(f32)))
    assert 0 < err < 0.05, err


# ----------------------------------------------------------------------------- BUDDy trainer files


def _pickled(value, writer: _Writer) -> bytes:
    """Pickle opcodes (protocol 2) of nested dicts/lists of plain values and numpy tensors."""
    if isinstance(value, np.ndarray):
        return writer.tensor(value)
    if isinstance(value, dict):
        return b"}" + b"".join(_str(k) + _pickled(v, writer) + b"s" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return b"]" + b"".join(_pickled(v, writer) + b"a" for v in value)
    return _value(value)


def write_buddy_checkpoint(path, *, it, network, ema, args=None):
    """A `torch.save` file like BUDDy's `Trainer.save_checkpoint` (state dicts as OrderedDicts)."""
    w = _Writer()

    def state(sd):
        items = b"".join(_str(k) + w.tensor(v) + b"s" for k, v in sd.items())
        return _global("collections", "OrderedDict") + b")R" + items

    top = b"\x80\x02}" + _str("it") + _int(it) + b"s" + _str("network") + state(network) + b"s"
    top += _str("ema") + state(ema) + b"s"
    if args is not None:
        top += _str("args") + _pickled(args, w) + b"s"
    top += b"."
    return write_torch_zip(path, top, w)


def buddy_args(**network):
    """BUDDy's saved Hydra config (the parts the reader looks at), for the SMALL network."""
    net = {"_target_": "networks.ncsnpp.NCSNppTime", "stft": {"n_fft": 126, "hop_length": 32, "center": True},
           "nonlinearity": "swish", "nf": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [0],
           "time_conditional": True, "fir": False, "image_size": 64, "input_channels": 2, "discriminative": False}
    net.update(network)
    return {"network": net,
            "diff_params": {"_target_": "diff_params.edm.EDM", "type": "ve_karras",
                            "sde_hp": {"sigma_data": 0.05, "sigma_min": 1e-5, "sigma_max": 10, "rho": 10}},
            "exp": {"exp_name": "VCTK_16k_4s_time", "sample_rate": 16000, "audio_len": 32768, "batch_size": 16},
            "tester": {"sampling_params": {"same_as_training": True, "T": 201}}}


def test_a_buddy_trainer_file_is_read_with_its_ema_weights(tmp_path):
    from diffrestore import Prior
    from diffrestore.convert.cqtdiff import CheckpointError, load_prior_checkpoint, read_prior_checkpoint
    from diffrestore.models import ncsnpp_stft, params_from_torch, torch_param_shapes

    names = reference_names(REFERENCE_MODULES, temb=32)
    network, ema = distinct_state(names, seed=1), distinct_state(names, seed=2)
    path = write_buddy_checkpoint(tmp_path / "VCTK_16k_4s_time-30000.pt", it=30000, network=network, ema=ema,
                                  args=buddy_args())
    ckpt = read_prior_checkpoint(path)
    assert (ckpt.reference, ckpt.network, ckpt.weights_entry, ckpt.step) == ("BUDDy", "ncsnpp_stft", "ema", 30000)
    assert (ckpt.sigma_data, ckpt.sample_rate, ckpt.audio_len) == (0.05, 16000, 32768)
    kw = ckpt.network_kwargs
    assert (kw["nf"], kw["ch_mult"], kw["n_fft"], kw["hop_length"], kw["input_channels"]) == (8, (1, 2), 126, 32, 2)
    # The tester samples with 'ema'; weights="raw" gives the trained weights.
    mapped = params_from_torch("ncsnpp_stft", SMALL, ema)
    assert jax.tree.all(jax.tree.map(np.array_equal, ckpt.params, mapped))
    raw = read_prior_checkpoint(path, weights="raw")
    np.testing.assert_array_equal(raw.params["conv_in"]["kernel"],
                                  np.transpose(network["all_modules.3.weight"], (2, 3, 1, 0)))

    config, _ = load_prior_checkpoint(path)
    assert (config.model.backbone, config.sde.sigma_data, config.data.sample_rate) == ("ncsnpp_stft", 0.05, 16000)
    assert (config.sde.train_sigma_min, config.sde.train_sigma_max, config.sde.rho_train) == (1e-5, 10.0, 10.0)
    # The sampler of BUDDy's only_unconditional tester, not the forced training range of args.tester.
    assert (config.sde.sigma_min, config.sde.sigma_max, config.sde.rho) == (5e-4, 1.0, 10.0)
    assert (config.sampling.num_steps, config.sampling.S_churn, config.sampling.S_tmax, config.sampling.convention) == (
        201, 30.0, 10.0, "babe")
    prior = Prior.from_checkpoint(path)  # builds the denoiser (compiles nothing until it is called)
    assert prior.config.model.backbone_kwargs.n_fft == 126

    # Without args the shapes still tell the network; the STFT falls back to BUDDy's (n_fft 510).
    bare = read_prior_checkpoint(write_buddy_checkpoint(tmp_path / "bare.pt", it=5, network=network, ema=ema))
    bare_kw = bare.network_kwargs
    assert (bare_kw["nf"], bare_kw["ch_mult"], bare_kw["num_res_blocks"], bare_kw["time_conditional"]) == (8, (1, 2), 1, True)
    assert ncsnpp_stft.make_config(**bare.network_kwargs).n_fft == 510 and bare.audio_len == 65536
    # Attention at a level (image_size/2 = 32) is found in the shapes, too.
    attn_state = distinct_state(torch_param_shapes("ncsnpp_stft", dict(SMALL, attn_resolutions=(32,))))
    with_attn = read_prior_checkpoint(
        write_buddy_checkpoint(tmp_path / "attn.pt", it=1, network=attn_state, ema=attn_state))
    assert with_attn.network_kwargs["attn_resolutions"] == (128,)  # level 1 of image_size 256 (no args)
    # Saved args that contradict the weights are refused.
    with pytest.raises(CheckpointError, match="do not describe"):
        read_prior_checkpoint(write_buddy_checkpoint(tmp_path / "bad.pt", it=1, network=network, ema=ema,
                                                     args=buddy_args(nf=16)))
