"""The configuration schema and the builders that turn a config into objects.

A config is an `ml_collections.ConfigDict` with the groups of score_sde:

* `model`: backbone name and its constructor arguments, output rules (loss_type, c_in, ...),
  loss weighting, t_eps, compute dtype.
* `sde`: name ("ouve", "ouvp", "sbve", "sbvp") and its parameters.
* `data`: STFT and spectrogram compression, sample rate, crop length, dataset location.
* `sampling`: default sampler for enhancement and validation.
* `training`, `optim`: the training loop (see `diffrestore.train`).

`configs/*.py` files start from `default_config()` and change what their recipe needs.
"""
from __future__ import annotations

import json

import jax.numpy as jnp
import ml_collections

from diffrestore.audio.transforms import SpectrogramConfig
from diffrestore.score import OutputSpec


def default_config() -> ml_collections.ConfigDict:
    """SGMSE+ on 16 kHz speech, as the reference trains it by default."""
    c = ml_collections.ConfigDict()

    c.model = ml_collections.ConfigDict()
    c.model.backbone = "ncsnpp"
    # Constructor arguments of the backbone (only those that differ from its defaults are needed).
    c.model.backbone_kwargs = ml_collections.ConfigDict(
        {"nf": 128, "ch_mult": (1, 1, 2, 2, 2, 2, 2), "num_res_blocks": 2, "attn_resolutions": (16,), "centered": True}
    )
    c.model.loss_type = "score_matching"
    c.model.loss_weighting = "sigma^2"
    c.model.network_scaling = ""
    c.model.c_in = "1"
    c.model.c_out = "1"
    c.model.c_skip = "0"
    c.model.sigma_data = 0.1
    c.model.l1_weight = 0.001
    c.model.t_eps = 0.03
    c.model.dtype = "float32"  # compute dtype of convolutions/matmuls: float32 or bfloat16
    c.model.remat = "none"  # rematerialise blocks in training: none | full | dots | dots_no_batch

    c.sde = ml_collections.ConfigDict()
    c.sde.name = "ouve"
    c.sde.theta = 1.5
    c.sde.sigma_min = 0.05
    c.sde.sigma_max = 0.5
    c.sde.k = 2.6
    c.sde.c = 0.4
    c.sde.eps = 1e-8
    c.sde.beta_min = 0.01
    c.sde.beta_max = 1.0
    c.sde.stiffness = 1.0
    c.sde.beta_0 = 0.01
    c.sde.beta_1 = 20.0
    c.sde.N = 30

    c.data = ml_collections.ConfigDict()
    c.data.sample_rate = 16000
    c.data.n_fft = 510
    c.data.hop_length = 128
    c.data.window = "hann"
    c.data.spec_factor = 0.15
    c.data.spec_abs_exponent = 0.5
    c.data.transform_type = "exponent"
    c.data.num_frames = 256
    c.data.normalize = "noisy"

    c.sampling = ml_collections.ConfigDict()
    c.sampling.sampler = "pc"
    c.sampling.predictor = "reverse_diffusion"
    c.sampling.corrector = "ald"
    c.sampling.corrector_steps = 1
    c.sampling.snr = 0.5
    c.sampling.num_steps = 30
    c.sampling.pad_mode = "zero"  # frame padding to a multiple of 64: zero / reflection
    return c


def edm_sde_config(**overrides) -> ml_collections.ConfigDict:
    """The `sde` group of a prior: EDM (`diffrestore.sde.EDM`) with CQT-Diff's values
    (σ_data 0.057; sampling σ 1e-4 … 1, ρ 13; training σ ρ-uniform in 1e-6 … 10, ρ_t 10)."""
    c = ml_collections.ConfigDict()
    c.name = "edm"
    c.sigma_min = 1e-4
    c.sigma_max = 1.0
    c.rho = 13.0
    c.sigma_data = 0.057
    c.train_distribution = "rho_uniform"  # rho_uniform (the references) | lognormal (EDM's paper)
    c.rho_train = 10.0
    c.train_sigma_min = 1e-6
    c.train_sigma_max = 10.0
    c.p_mean = -1.2  # lognormal only
    c.p_std = 1.2
    c.update(overrides)
    return c


# BUDDy's clean-speech prior (sp-uhh/buddy): EDM of `conf/diff_params/edm_VCTK.yaml` (σ_data 0.05,
# training σ ρ-uniform in 1e-5 … 10 with ρ 10, `diff_params/edm.py: sample_time_training`), the
# sampler of `conf/tester/only_unconditional.yaml` (σ 5e-4 … 1, ρ 10, T 201, S_churn 30,
# S_tmin 0, S_tmax 10, S_noise 1; `EulerHeunSampler` draws the churn noise at every step and
# computes γ over the T + 1 grid points, as BABE's does) and 16 kHz segments of 65536 samples
# (`conf/exp/VCTK_16k_4s_time.yaml`).
BUDDY_SDE = dict(sigma_min=5e-4, sigma_max=1.0, rho=10.0, sigma_data=0.05, train_distribution="rho_uniform",
                 rho_train=10.0, train_sigma_min=1e-5, train_sigma_max=10.0)
BUDDY_SAMPLING = dict(num_steps=201, S_churn=30.0, S_tmin=0.0, S_tmax=10.0, S_noise=1.0, convention="babe")


def prior_config(backbone: str = "cqtdiff", **backbone_kwargs) -> ml_collections.ConfigDict:
    """A prior of clean audio: `default_config()` with the network `backbone` (a name of
    `diffrestore.models.PRIOR_NETWORKS`), the EDM process and its stochastic Heun sampler
    with CQT-Diff's settings (T = 35, S_churn 5), on 22.05 kHz audio; for "ncsnpp_stft",
    BUDDy's speech prior, with its settings (`BUDDY_SDE`, `BUDDY_SAMPLING`, 16 kHz)."""
    c = default_config()
    c.model.backbone = backbone
    c.model.backbone_kwargs = ml_collections.ConfigDict(backbone_kwargs)
    c.model.loss_reduction = "mean"  # the references' MSE over every sample (see losses.edm_loss_from_output)
    c.sde = edm_sde_config()
    c.data.sample_rate = 22050
    c.data.segment_length = 65536  # training segment, samples (CQT-Diff; CQTdiff+ uses 184184)
    c.data.normalize = "none"
    s = c.sampling
    s.sampler = "edm_heun"
    s.num_steps = 35
    s.S_churn = 5.0
    s.S_tmin = 0.0
    s.S_tmax = 50.0
    s.S_noise = 1.0
    s.convention = "cqtdiff"  # when churn noise is drawn: cqtdiff (only where γ > 0) | babe | karras
    if str(backbone).lower() == "ncsnpp_stft":
        c.sde.update(BUDDY_SDE)
        s.update(BUDDY_SAMPLING)
        c.data.sample_rate = 16000
        c.data.segment_length = 65536
    return c


def spectrogram_config(config) -> SpectrogramConfig:
    d = config.data
    return SpectrogramConfig(
        sample_rate=int(d.sample_rate), n_fft=int(d.n_fft), hop_length=int(d.hop_length),
        spec_factor=float(d.spec_factor), spec_abs_exponent=float(d.spec_abs_exponent),
        transform_type=str(d.transform_type), window=str(d.window),
    )


def is_prior(config) -> bool:
    """True for an unconditional prior of clean audio (EDM on waveforms: CQT-Diff, CQTdiff+,
    the speech prior), False for a conditional enhancement model (an SDE on spectrograms)."""
    return str(config.sde.name).lower() == "edm"


def build_sde(config):
    from diffrestore.sde import get_sde

    params = {k: v for k, v in config.sde.to_dict().items() if k != "name"}
    return get_sde(config.sde.name, **params)


def output_spec(config) -> OutputSpec:
    m = config.model
    return OutputSpec(
        backbone=m.backbone, loss_type=m.loss_type, network_scaling=m.network_scaling or "",
        c_in=str(m.c_in), c_out=str(m.c_out), c_skip=str(m.c_skip), sigma_data=float(m.sigma_data),
    )


def compute_dtype(config):
    names = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
    try:
        return names[config.model.dtype]
    except KeyError:
        raise ValueError(f"model.dtype must be one of {sorted(names)}, not {config.model.dtype!r}") from None


def build_backbone(config):
    """The Flax network of a config (NCSN++ for enhancement, a prior's network for priors)."""
    from diffrestore.models import build_network

    kwargs = dict(config.model.backbone_kwargs.to_dict())
    return build_network(config.model.backbone, dtype=compute_dtype(config), remat=config.model.get("remat", "none"), **kwargs)


def example_inputs(config, batch_size: int = 1) -> tuple:
    """Zero inputs of the network's call, of the training shape: what `module.init` takes.

    Enhancement models: (x, y) complex64 (B, 1, F, num_frames) and t (B,); priors: the
    waveform x float32 (B, segment) and c_noise (B,).
    """
    if is_prior(config):
        from diffrestore.data.defaults import crop_length

        return (jnp.zeros((batch_size, crop_length(config.data)), jnp.float32), jnp.zeros((batch_size,), jnp.float32))
    x = jnp.zeros((batch_size, 1, spectrogram_config(config).num_freqs, int(config.data.num_frames)), jnp.complex64)
    return x, x, jnp.ones((batch_size,), jnp.float32)


def abstract_params(config):
    """The network's parameter tree as jax.ShapeDtypeStructs (no memory, no compilation)."""
    import jax

    module = build_backbone(config)
    inputs = example_inputs(config)
    return jax.eval_shape(lambda *a: module.init(jax.random.key(0), *a)["params"], *inputs)


def build_model_fn(config, module=None):
    """What samplers and losses call, with the parameters as first argument.

    Enhancement models: `model_fn(params, x_t, y, t, train=False, rngs=None)` -> score or x̂
    (see `diffrestore.score`). Priors: `denoise_fn(params, x, sigma)` -> D(x, σ), the EDM
    denoiser of waveforms (B, L).
    """
    from diffrestore.score import make_edm_denoiser, make_model_fn

    module = module if module is not None else build_backbone(config)
    if is_prior(config):
        return make_edm_denoiser(prior_apply_fn(module), build_sde(config))

    def apply_fn(params, x, y, t, train=False, rngs=None):
        return module.apply({"params": params}, x, y, t, train=train, rngs=rngs)

    return make_model_fn(apply_fn, build_sde(config), output_spec(config))


def prior_apply_fn(module):
    """`apply_fn(params, x_in, c_noise, **kw) -> F` of a prior network (the raw network that
    `score.make_edm_denoiser` and `losses.make_edm_loss_fn` precondition). The prior networks
    have no dropout, so training flags are accepted and ignored."""

    def apply_fn(params, x, c_noise, train=False, rngs=None):
        del train, rngs
        return module.apply({"params": params}, x, c_noise)

    return apply_fn


def to_json(config) -> str:
    return config.to_json_best_effort(indent=2, sort_keys=True)


def from_json(text: str) -> ml_collections.ConfigDict:
    """Rebuilds a config saved with `to_json`, on top of the defaults (so old files still load)."""
    loaded = json.loads(text)
    base = default_config()

    def merge(dst, src):
        for key, value in src.items():
            if isinstance(value, dict) and key in dst and isinstance(dst[key], ml_collections.ConfigDict):
                if key == "backbone_kwargs":
                    dst[key] = ml_collections.ConfigDict(_tuplify(value))
                else:
                    merge(dst[key], value)
            else:
                with dst.unlocked():
                    dst[key] = _tuplify(value)

    merge(base, loaded)
    return base


def _tuplify(value):
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuplify(v) for k, v in value.items()}
    return value
