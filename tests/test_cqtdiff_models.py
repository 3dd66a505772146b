"""CQT-Diff's and CQTdiff+'s U-Nets and the import of their .pt checkpoints, against the PyTorch references.

Reference data: ../shared/fixtures/cqtdiff (README.md there). Every network output is compared
relative to max |expected| at 1e-4 (the README's float32 tolerance; float64 re-runs of the
reference agree to ~1e-6). D(x, σ) comes from `diffrestore.sde.EDM.precondition`.

Compilation dominates on CPU, so each (network, shape, dtype) is compiled once per module and
the executables take the parameters as an argument; on CPU they are compiled with LLVM
optimisation off (~4x faster to compile, ~2x slower to run, same numbers to float32 rounding).
"""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffrestore.convert import cqtdiff as convert
from diffrestore.convert.torch_pickle import CheckpointError
from diffrestore.models import (
    build_network, build_prior_network, cqt_blocks, cqt_torch_import, cqtdiff, cqtdiffplus, params_from_torch,
)
from diffrestore.sde import EDM

TOL = 1e-4
SMALL_CQTDIFF = dict(Ns=(4, 8, 8, 8, 8, 8, 8, 8))
SMALL_PLUS = dict(Ns=(8,) * 7, emb_dim=32)
SMALL_PLUS_ATTN = dict(SMALL_PLUS, attention_layers=(1, 0, 0, 0, 0, 0, 0, 0), num_heads=2)


def _rel(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def _state(arrays) -> dict:
    """The `param/<torch key>` entries of a fixture, in the file's order."""
    return {k[len("param/"):]: arrays[k] for k in arrays.files if k.startswith("param/")}


class _Runner:
    """F(params, x, c_noise) -> (F, emb) of one module, compiled once per input shape."""

    _CPU_OPTIONS = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}

    def __init__(self, module):
        self.module = module
        self._compiled = {}

    def __call__(self, params, x, c_noise):
        x = jnp.asarray(x, jnp.float32)
        c_noise = jnp.asarray(c_noise, jnp.float32).reshape(-1)
        key = x.shape
        if key not in self._compiled:
            def fn(p, x, c):
                out, state = self.module.apply({"params": p}, x, c, mutable=["intermediates"])
                return out, state["intermediates"]["emb"][0]

            lowered = jax.jit(fn).lower(params, x, c_noise)
            self._compiled[key] = lowered.compile(self._CPU_OPTIONS if jax.default_backend() == "cpu" else None)
        out, emb = self._compiled[key](params, x, c_noise)
        return np.asarray(out), np.asarray(emb)


def _denoise(runner, params, x, sigma, sigma_data):
    """D(x, σ) = c_skip·x + c_out·F(c_in·x, c_noise), with the coefficients of `EDM`."""
    c_skip, c_out, c_in, c_noise = (np.asarray(c)[:, None] for c in EDM(sigma_data=sigma_data).precondition(sigma))
    net_out, emb = runner(params, (c_in * x).astype(np.float32), c_noise[:, 0])
    return c_skip * x + c_out * net_out, net_out, emb


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cqtdiff_ref(cqtdiff_fixtures):
    return np.load(cqtdiff_fixtures / "net_unet_cqt.npz")


@pytest.fixture(scope="module")
def plus_ref(cqtdiff_fixtures):
    return np.load(cqtdiff_fixtures / "net_cqtdiffplus.npz")


@pytest.fixture(scope="module")
def plus_attn_ref(cqtdiff_fixtures):
    return np.load(cqtdiff_fixtures / "net_cqtdiffplus_attn.npz")


@pytest.fixture(scope="module")
def cqtdiff_params(cqtdiff_ref):
    return cqt_torch_import.params_from_torch("cqtdiff", SMALL_CQTDIFF, _state(cqtdiff_ref))


@pytest.fixture(scope="module")
def cqtdiff_f32():
    return _Runner(cqtdiff.build(**SMALL_CQTDIFF))


@pytest.fixture(scope="module")
def plus_f32():
    return _Runner(cqtdiffplus.build(**SMALL_PLUS))


@pytest.fixture(scope="module")
def plus_attn_f32():
    return _Runner(cqtdiffplus.build(**SMALL_PLUS_ATTN))


@pytest.fixture(scope="module")
def plus_attn_params(plus_attn_ref):
    return cqt_torch_import.params_from_torch("cqtdiffplus", SMALL_PLUS_ATTN, _state(plus_attn_ref))


@pytest.fixture(scope="module")
def plus_attn_result(plus_attn_f32, plus_attn_params, plus_attn_ref):
    return _denoise(plus_attn_f32, plus_attn_params, plus_attn_ref["x"], plus_attn_ref["sigma"], 0.063)


# ----------------------------------------------------------------------------- structure


@pytest.mark.parametrize("name, kwargs, fixture", [
    ("cqtdiff", SMALL_CQTDIFF, "net_unet_cqt.npz"),
    ("cqtdiffplus", SMALL_PLUS, "net_cqtdiffplus.npz"),
    ("cqtdiffplus", SMALL_PLUS_ATTN, "net_cqtdiffplus_attn.npz"),
])
def test_state_dict_layout_is_the_reference(cqtdiff_fixtures, name, kwargs, fixture):
    # The reference's state_dict, key by key in its order, with every shape (buffers included),
    # and the Flax module creates exactly the parameters the mapping fills.
    ref = np.load(cqtdiff_fixtures / fixture)
    state = _state(ref)
    entries = cqt_torch_import.torch_entries(name, kwargs)
    assert [(e.key, e.shape) for e in entries] == [(k, v.shape) for k, v in state.items()]
    module = build_prior_network(name, **kwargs)
    abstract = jax.eval_shape(lambda: module.init(jax.random.key(0), ref["x"], ref["c_noise"][:, 0]))["params"]
    shapes = jax.tree.map(lambda a: a.shape, abstract)
    assert shapes == cqt_torch_import.param_shapes(name, kwargs)
    n_params = sum(int(np.prod(s)) for s in cqt_torch_import.torch_param_shapes(name, kwargs).values())
    manifest = json.loads((cqtdiff_fixtures / "MANIFEST.json").read_text())["files"][fixture]
    assert n_params == manifest["n_params"]


def test_resampling_kernels_are_the_references_buffers(cqtdiff_ref, plus_ref):
    # torchaudio's sinc_interp_hann kernels and BABE's "cubic" taps, as the reference stored them.
    for key, value in cqt_torch_import.torch_buffers("cqtdiff", SMALL_CQTDIFF).items():
        np.testing.assert_allclose(value, cqtdiff_ref[f"param/{key}"], rtol=0, atol=2e-7)
    for key, value in cqt_torch_import.torch_buffers("cqtdiffplus", SMALL_PLUS).items():
        np.testing.assert_array_equal(value, plus_ref[f"param/{key}"])


def test_time_resamplers_closed_forms():
    # Properties the reference's resamplers have by construction, on (B, F, T, C) maps.
    t = np.arange(64, dtype=np.float32)
    x = np.broadcast_to(np.sin(0.05 * t)[None, None, :, None], (1, 2, 64, 3))
    # torchaudio: ceil(T/2) and 2T samples; a slow sine passes (away from the zero-padded edges).
    down = np.asarray(jax.jit(lambda v: cqt_blocks.sinc_resample_time(v, 2, 1))(x))
    up = np.asarray(jax.jit(lambda v: cqt_blocks.sinc_resample_time(v, 1, 2))(x[:, :, :63]))
    assert down.shape == (1, 2, 32, 3) and up.shape == (1, 2, 126, 3)
    np.testing.assert_allclose(down[0, 0, 8:24, 0], np.sin(0.1 * np.arange(8, 24)), atol=2e-3)
    np.testing.assert_allclose(up[0, 0, 20:100, 0], np.sin(0.025 * np.arange(20, 100)), atol=2e-3)
    # BABE: down keeps a constant (taps sum to 1), up halves it (the kernel is not scaled by 2).
    ones = jnp.ones((1, 1, 16, 1))
    taps = cqt_blocks.resample_kernel("cubic")
    np.testing.assert_allclose(np.asarray(cqt_blocks.fir_downsample_time(ones, taps)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(cqt_blocks.fir_upsample_time(ones, taps)), 0.5, rtol=1e-6)
    assert cqt_blocks.fir_upsample_time(ones, taps).shape == (1, 1, 32, 1)


def test_relative_position_buckets_closed_form():
    # T5: 16 buckets per direction, exact below 8, log-spaced to 64, clipped at 15.
    buckets = cqt_blocks.relative_position_buckets(200, 32, 64)
    n = np.arange(200)
    expected = np.where(n < 8, n, np.minimum(15, 8 + (np.log(np.maximum(n, 1) / 8) / np.log(8) * 8).astype(int)))
    np.testing.assert_array_equal(buckets[0], 16 + expected)  # j ≥ i
    np.testing.assert_array_equal(buckets[1:, 0], expected[1:])  # j < i
    assert buckets[10, 10] == 16 and buckets[70, 6] == 15 and buckets[6, 70] == 31


# ----------------------------------------------------------------------------- CQT-Diff


def test_cqtdiff_matches_reference(cqtdiff_f32, cqtdiff_params, cqtdiff_ref):
    ref = cqtdiff_ref
    denoised, net_out, emb = _denoise(cqtdiff_f32, cqtdiff_params, ref["x"], ref["sigma"], 0.057)
    assert _rel(emb, ref["emb"]) < TOL
    assert _rel(net_out, ref["net_out"]) < TOL
    assert _rel(denoised, ref["denoised"]) < TOL


def test_cqtdiff_crop_path_against_the_heun_fixture(cqtdiff_f32, cqtdiff_params, cqtdiff_fixtures):
    # L = 16384: 176 frames -> ... 11 -> 6, so the decoder crops (CropConcatBlock, pyr[..., :T]).
    # The first step of the reference's stochastic Heun (README), with its recorded noise.
    ref = np.load(cqtdiff_fixtures / "heun_cqtdiff_T6.npz")
    t, gamma, noise = ref["t"], ref["gamma"], ref["noise"]
    assert gamma[0] > 0
    t_hat = np.float32(t[0] + gamma[0] * t[0])
    x_hat = t[0] * noise[0] + np.sqrt(t_hat**2 - t[0] ** 2) * noise[1]
    d_hat = (x_hat - _denoise(cqtdiff_f32, cqtdiff_params, x_hat, np.array([t_hat]), 0.057)[0]) / t_hat
    x_next = x_hat + (t[1] - t_hat) * d_hat
    d_next = (x_next - _denoise(cqtdiff_f32, cqtdiff_params, x_next, t[1:2], 0.057)[0]) / t[1]
    x1 = x_hat + (t[1] - t_hat) * (d_hat + d_next) / 2
    assert _rel(x1, ref["x_steps"][0]) < TOL


def test_cqtdiff_bfloat16_stays_close(cqtdiff_params, cqtdiff_f32, cqtdiff_fixtures):
    x = np.load(cqtdiff_fixtures / "heun_cqtdiff_T6.npz")["noise"][1] * 0.1
    c_noise = np.log(np.array([0.1], np.float32)) / 4
    want, _ = cqtdiff_f32(cqtdiff_params, x, c_noise)
    got, _ = _Runner(cqtdiff.build(jnp.bfloat16, **SMALL_CQTDIFF))(cqtdiff_params, x, c_noise)
    assert got.dtype == np.float32 and np.isfinite(got).all()
    assert 1e-5 < _rel(got, want) < 3e-2  # it does run in bfloat16, and stays close


def test_cqtdiff_checkpoint(cqtdiff_f32, cqtdiff_fixtures):
    # small_cqtdiff.pt as the learner saves it: the architecture comes from the weights alone,
    # and the reference samples with 'model' (not 'ema_weights').
    expected = np.load(cqtdiff_fixtures / "small_cqtdiff_expected.npz")
    config = json.loads((cqtdiff_fixtures / "small_cqtdiff_config.json").read_text())
    ckpt = convert.read_prior_checkpoint(cqtdiff_fixtures / "small_cqtdiff.pt")
    assert (ckpt.network, ckpt.reference, ckpt.step) == ("cqtdiff", "CQT-Diff", 1)
    assert ckpt.weights_entry == str(expected["which_weights"]) == config["which_weights"]
    assert ckpt.network_kwargs["Ns"] == tuple(config["Ns"][:7]) and ckpt.network_kwargs["depth"] == 6
    assert (ckpt.sigma_data, ckpt.sample_rate, ckpt.audio_len) == (
        float(expected["sigma_data"]), config["constructor"]["args.sample_rate"], config["constructor"]["args.audio_len"])
    checksum = sum(np.abs(a).astype(np.float64).sum() for a in jax.tree.leaves(ckpt.params))
    checksum += sum(np.abs(b).astype(np.float64).sum() for b in cqt_torch_import.torch_buffers("cqtdiff", ckpt.network_kwargs).values())
    assert checksum == pytest.approx(float(expected["param_checksum"]), rel=1e-6)
    denoised, net_out, _ = _denoise(cqtdiff_f32, ckpt.params, expected["x"], expected["sigma"], ckpt.sigma_data)
    assert _rel(net_out, expected["net_out"]) < TOL
    assert _rel(denoised, expected["denoised"]) < TOL


def test_cqtdiff_checkpoint_ema_weights_by_parameter_order(cqtdiff_fixtures):
    # weights="ema": ema_weights[i] belongs to the i-th parameter (buffers skipped); the fixed
    # random features are parameters too, equal in both entries.
    raw = convert.read_prior_checkpoint(cqtdiff_fixtures / "small_cqtdiff.pt", weights="raw")
    ema = convert.read_prior_checkpoint(cqtdiff_fixtures / "small_cqtdiff.pt", weights="ema")
    assert ema.weights_entry == "ema_weights"
    np.testing.assert_array_equal(ema.params["embedding"]["RFF_freq"], raw.params["embedding"]["RFF_freq"])
    np.testing.assert_array_equal(ema.params["freq_encoding"]["embeddings"], raw.params["freq_encoding"]["embeddings"])
    # EMA after one step: every trained tensor stays near its raw value, and is not it.
    for path in (("init_conv", "kernel"), ("ups_5_0", "first_conv_1", "kernel"), ("downs_3_0", "film", "output_layer", "bias")):
        a, b = ema.params, raw.params
        for part in path:
            a, b = a[part], b[part]
        assert a.shape == b.shape and not np.array_equal(a, b)
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.5


# ----------------------------------------------------------------------------- CQTdiff+


def test_cqtdiffplus_matches_reference(plus_f32, plus_ref):
    ref = plus_ref
    params = cqt_torch_import.params_from_torch("cqtdiffplus", SMALL_PLUS, _state(ref))
    denoised, net_out, emb = _denoise(plus_f32, params, ref["x"], ref["sigma"], 0.063)
    assert _rel(emb, ref["emb"]) < TOL
    assert _rel(net_out, ref["net_out"]) < TOL
    assert _rel(denoised, ref["denoised"]) < TOL
    # What BABE's sampler uses: D without what the CQT's missing DC/Nyquist windows carry.
    hpf = plus_f32.module.cqt(ref["x"].shape[-1]).apply_hpf_DC(denoised)
    assert _rel(hpf, ref["denoised_hpf"]) < TOL


def test_cqtdiffplus_attention_matches_reference(plus_attn_result, plus_attn_ref):
    denoised, net_out, emb = plus_attn_result
    assert _rel(emb, plus_attn_ref["emb"]) < TOL
    assert _rel(net_out, plus_attn_ref["net_out"]) < TOL
    assert _rel(denoised, plus_attn_ref["denoised"]) < TOL


def test_cqtdiffplus_bfloat16_stays_close(plus_attn_params, plus_attn_ref, plus_attn_result):
    ref = plus_attn_ref
    c_in = np.asarray(EDM(sigma_data=0.063).precondition(ref["sigma"])[2])[:, None]
    got, _ = _Runner(cqtdiffplus.build(jnp.bfloat16, **SMALL_PLUS_ATTN))(plus_attn_params, c_in * ref["x"], ref["c_noise"])
    assert got.dtype == np.float32 and np.isfinite(got).all()
    assert 1e-5 < _rel(got, plus_attn_result[1]) < 3e-2


def test_cqtdiffplus_checkpoint(plus_attn_f32, cqtdiff_fixtures):
    # small_cqtdiffplus.pt as BABE's trainer saves it (omegaconf args, Adam state): the reference
    # samples with 'ema'; 'network' ("raw") is the other set.
    expected = np.load(cqtdiff_fixtures / "small_cqtdiffplus_expected.npz")
    config = json.loads((cqtdiff_fixtures / "small_cqtdiffplus_config.json").read_text())
    net = config["constructor"]["args.network"]
    ckpt = convert.read_prior_checkpoint(cqtdiff_fixtures / "small_cqtdiffplus.pt")
    assert (ckpt.network, ckpt.reference, ckpt.step) == ("cqtdiffplus", "BABE", 1)
    assert ckpt.weights_entry == str(expected["which_weights"]) == "ema"
    kw = ckpt.network_kwargs
    assert (kw["Ns"], kw["num_dils"], kw["attention_layers"]) == (tuple(net["Ns"]), tuple(net["num_dils"]), tuple(net["attention_layers"]))
    assert (kw["emb_dim"], kw["num_heads"], kw["bins_per_octave"]) == (32, 2, 64)
    assert (ckpt.sigma_data, ckpt.sample_rate, ckpt.audio_len) == (0.063, 22050, 65536)
    # The whole omegaconf config comes back as plain data (lists as tuples).
    assert ckpt.args["network"] == json.loads(json.dumps(net), object_hook=lambda d: {
        k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
    cqt = plus_attn_f32.module.cqt(expected["x"].shape[-1])
    denoised, net_out, _ = _denoise(plus_attn_f32, ckpt.params, expected["x"], expected["sigma"], ckpt.sigma_data)
    assert _rel(net_out, expected["net_out"]) < TOL
    assert _rel(denoised, expected["denoised"]) < TOL
    assert _rel(cqt.apply_hpf_DC(denoised), expected["denoised_hpf"]) < TOL
    raw = convert.read_prior_checkpoint(cqtdiff_fixtures / "small_cqtdiffplus.pt", weights="raw")
    assert raw.weights_entry == str(expected["alt_weights"]) == "network"
    alt, _, _ = _denoise(plus_attn_f32, raw.params, expected["x"], expected["sigma"], ckpt.sigma_data)
    assert _rel(alt, expected["denoised_alt"]) < TOL


def test_cqtdiffplus_length_limits():
    # The octave U-Net needs each octave to have twice the frames of the one below.
    module = cqtdiffplus.build(**SMALL_PLUS)
    assert module.cqt(49152).frames_per_octave[:2] == (8, 32)
    with pytest.raises(ValueError, match="twice the frames"):
        jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, 49152)), jnp.zeros((1,))))
    out = jax.eval_shape(lambda: module.init_with_output(jax.random.key(0), jnp.zeros((1, 40000)), jnp.zeros((1,)))[0])
    assert out.shape == (1, 40000) and out.dtype == jnp.float32


# ----------------------------------------------------------------------------- configs and import


def test_registry_and_configs():
    assert isinstance(build_network("cqtdiff"), cqtdiff.CQTDiffUNet)
    assert isinstance(build_prior_network("cqtdiff+"), cqtdiffplus.CQTDiffPlusUNet)
    # The shipped configs: CQT-Diff's hard-coded channels, BABE's cqtdiff+.yaml.
    assert cqtdiff.make_config().Ns == (32, 64, 64, 128, 128, 128, 128)
    plus = cqtdiffplus.make_config()
    assert (plus.Ns, plus.num_dils, plus.emb_dim, plus.num_heads) == ((64, 96, 96, 128, 128, 256, 256), (2, 3, 4, 5, 6, 7, 7), 256, 8)
    assert cqtdiffplus.make_config(Ns=[8] * 7, attention_layers=[1] + [0] * 7).attention_layers[0] == 1
    with pytest.raises(ValueError, match="Ns\\[depth\\]"):
        cqtdiff.make_config(Ns=(4, 8, 8, 8, 8, 8, 16))
    with pytest.raises(TypeError, match="nf"):
        build_prior_network("cqtdiff", nf=8)
    with pytest.raises(ValueError, match="use_norm"):
        cqtdiffplus.make_config(use_norm=False)
    with pytest.raises(ValueError, match="attention_layers"):
        cqtdiffplus.make_config(attention_layers=(0,) * 7)
    with pytest.raises(ValueError, match="unknown prior network"):
        build_prior_network("unet")


def test_strict_key_and_shape_checks(plus_attn_ref):
    state = _state(plus_attn_ref)
    ok = cqt_torch_import.params_from_torch("cqtdiffplus", SMALL_PLUS_ATTN, state)
    assert ok["downs_0_2"]["attn_block"]["qk"]["kernel"].shape == (128, 256)
    # The models package's entry point (shared with NCSN++) dispatches here, BABE's name included.
    same = params_from_torch("cqtdiff+", SMALL_PLUS_ATTN, state)
    assert jax.tree.all(jax.tree.map(np.array_equal, same, ok))
    # Buffers may be absent (constants here); parameters may not.
    cqt_torch_import.params_from_torch("cqtdiffplus", SMALL_PLUS_ATTN, {k: v for k, v in state.items() if "kernel" != k.split(".")[-1]})
    broken = dict(state)
    del broken["ups.3.1.gate.2.bias"]
    broken["extra.weight"] = np.zeros(3)
    broken["middle.0.1.H.6.weight"] = np.zeros((8, 8, 3, 3))
    broken["upsamplerT.kernel"] = np.asarray(cqt_blocks.resample_kernel("linear").tolist() * 2, np.float32)
    with pytest.raises(ValueError) as info:
        cqt_torch_import.params_from_torch("cqtdiffplus", SMALL_PLUS_ATTN, broken)
    message = str(info.value)
    for needle in ("ups.3.1.gate.2.bias", "extra.weight", "middle.0.1.H.6.weight: shape (8, 8, 3, 3)", "upsamplerT.kernel"):
        assert needle in message, message
    # Without attention the same weights have keys too many.
    with pytest.raises(ValueError, match="attn_block"):
        cqt_torch_import.params_from_torch("cqtdiffplus", SMALL_PLUS, state)


def test_inference_from_shapes(cqtdiff_ref, plus_attn_ref):
    # What the shapes alone tell, against the fixtures' constructor settings.
    kw = convert.infer_cqtdiff_kwargs(_state(cqtdiff_ref))
    assert kw == dict(Ns=(4, 8, 8, 8, 8, 8, 8), depth=6, num_layers=8, kernel_size=(5, 3), use_norm=False,
                      freq_encoding_dim=32, emb_dim=512, rff_dim=32)
    kw = convert.infer_cqtdiffplus_kwargs(_state(plus_attn_ref))
    assert (kw["Ns"], kw["num_dils"], kw["attention_layers"], kw["num_heads"]) == (
        (8,) * 7, (2, 3, 4, 5, 6, 7, 7), (1, 0, 0, 0, 0, 0, 0, 0), 2)
    assert (kw["emb_dim"], kw["bins_per_octave"], kw["resample_filter"], kw["use_fencoding"]) == (32, 64, "cubic", False)
    assert convert.network_of(_state(cqtdiff_ref)) == "cqtdiff" and convert.network_of(_state(plus_attn_ref)) == "cqtdiffplus"


def test_prior_configs_from_checkpoints(cqtdiff_fixtures):
    from diffrestore import config as config_lib

    config, params = convert.load_prior_checkpoint(cqtdiff_fixtures / "small_cqtdiffplus.pt")
    assert config.model.backbone == "cqtdiffplus" and config.model.backbone_kwargs.num_heads == 2
    # BABE's args: σ_data, the segment, and its tester's sampler (σ 1e-4 … 1, ρ 8, S_churn 20).
    assert (config.sde.sigma_data, config.data.segment_length, config.sde.rho) == (0.063, 65536, 8.0)
    assert (config.sampling.num_steps, config.sampling.S_churn, config.sampling.convention) == (35, 20.0, "babe")
    assert jax.tree.map(np.shape, params) == cqt_torch_import.param_shapes("cqtdiffplus", config.model.backbone_kwargs.to_dict())
    # CQT-Diff files tell nothing but the weights: a given config supplies the rest.
    mine = config_lib.prior_config("cqtdiff")
    mine.sde.sigma_data = 0.05
    config, _ = convert.load_prior_checkpoint(cqtdiff_fixtures / "small_cqtdiff.pt", config=mine)
    assert config.sde.sigma_data == 0.05 and config.model.backbone_kwargs.Ns == (4, 8, 8, 8, 8, 8, 8)
    assert mine.model.backbone_kwargs.to_dict() == {}  # the caller's config is not modified
    # An explicit override of what the shapes cannot tell, and one they contradict.
    ckpt = convert.read_prior_checkpoint(cqtdiff_fixtures / "small_cqtdiff.pt", network_kwargs={"sample_rate": 16000})
    assert ckpt.network_kwargs["sample_rate"] == 16000
    with pytest.raises(CheckpointError, match="do not fit"):
        convert.read_prior_checkpoint(cqtdiff_fixtures / "small_cqtdiff.pt", network_kwargs={"num_layers": 7})
