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
from diffrestore.sde.flow import estimator_target_name


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


# --- the supervised families on one network size ------------------------------------------------
# Each family as its reference trains and samples it; `set_family` turns a config of any of them
# into another with the same network size, STFT and training loop (for sweeps that compare
# families, the tiny test configs and the quickstart).
FAMILIES = ("sgmse", "sb", "bbed", "storm", "flow", "crp")
# Options of the backbone that a family fixes (the rest is the network's size).
_FAMILY_OPTIONS = ("centered", "scale_by_sigma", "fir_kernel", "input_channels", "discriminative")


def set_family(config, family: str, *, num_steps: int | None = None):
    """Makes `config` (modified in place and returned) a model of `family`:

    * "sgmse": SGMSE+ (NCSN++, OUVE, score matching; PC + ALD);
    * "sb": Schrödinger bridge SBVE with data prediction (NCSN++ v2; bridge ODE);
    * "bbed": BBED (sgmse-bbed's NCSN++; PC + ALD from T' = 0.5);
    * "storm": StoRM (predictive + score NCSN++ of StoRM, joint; PC + ALD, dt = 1/N);
    * "flow": conditional flow matching (NCSN++ v2, vector-field target; Euler);
    * "crp": CRP fine-tuning of a BBED model (needs `training.init_from`; one step from 0.5).

    The network size (nf, ch_mult, res blocks, attention, FIR resampling) is the config's
    `model.backbone_kwargs` without the options a family fixes. num_steps: the sampler's
    steps (default: the family's recipe).
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {FAMILIES}")
    size = {k: v for k, v in config.model.backbone_kwargs.to_dict().items() if k not in _FAMILY_OPTIONS}
    m, s = config.model, config.sampling
    with config.unlocked():
        m.backbone, m.loss_type = "ncsnpp", "score_matching"
        m.backbone_kwargs = ml_collections.ConfigDict(dict(size, centered=True))
        m.c_in, m.c_out, m.c_skip, m.network_scaling = "1", "1", "0", ""
        for key in ("denoiser_kwargs", "storm_mode", "denoiser_loss_weight", "estimator_target", "p_cond", "crp"):
            if key in m:
                del m[key]
        defaults = default_config()
        config.sde = defaults.sde
        for key in ("start_time", "step_size"):
            if key in s:
                del s[key]
        s.update(sampler="pc", predictor="reverse_diffusion", corrector="ald", snr=0.5, corrector_steps=1,
                 num_steps=30, pad_mode="zero")
        if family == "sb":
            m.backbone, m.loss_type = "ncsnpp_v2", "data_prediction"
            m.backbone_kwargs = ml_collections.ConfigDict(size)
            config.sde.update(name="sbve", k=2.6, c=0.4, eps=1e-8, N=50)
            s.update(sampler="sb_ode", num_steps=50, pad_mode="reflection")
        elif family in ("bbed", "crp"):
            m.backbone_kwargs.update(scale_by_sigma=True, fir_kernel=(1, 3, 3, 1))
            config.sde = ml_collections.ConfigDict({"name": "bbed", "k": 2.6, "c": 0.51, "T": 0.999, "N": 30})
            s.update(start_time=0.5, num_steps=15)
            if family == "crp":
                m.loss_type = "crp"
                m.crp = ml_collections.ConfigDict({"t_rsp_min": 0.4, "t_rsp_max": 0.7, "num_steps_min": 5, "num_steps_max": 15})
                s.update(corrector="none", num_steps=1)
                if "optim" in config:
                    config.optim.lr = 1e-5
        elif family == "storm":
            m.backbone = STORM_BACKBONE
            m.backbone_kwargs = ml_collections.ConfigDict(dict(size, input_channels=6))
            m.denoiser_kwargs = ml_collections.ConfigDict(size)
            m.storm_mode, m.denoiser_loss_weight = "joint", 0.5
            s.update(step_size="1/N", num_steps=50)
        elif family == "flow":
            m.backbone, m.loss_type = "ncsnpp_v2", "flow_matching"
            m.backbone_kwargs = ml_collections.ConfigDict(size)
            m.estimator_target, m.p_cond = "vector_field", 0.9
            config.sde = ml_collections.ConfigDict(
                {"name": "ot_flow", "sigma_start": 1.0, "sigma_end": 1e-4, "time_min": 1e-8, "time_max": 1.0,
                 "start": "noisy", "vf_eps": 1e-6, "N": 20})
            s.update(sampler="flow_euler", num_steps=20, pad_mode="reflection")
        if num_steps is not None:
            s.num_steps = int(num_steps)
    return config


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
        estimator_target=estimator_target_name(str(m.get("estimator_target", "vector_field"))),
    )


def compute_dtype(config):
    names = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
    try:
        return names[config.model.dtype]
    except KeyError:
        raise ValueError(f"model.dtype must be one of {sorted(names)}, not {config.model.dtype!r}") from None


STORM_BACKBONE = "ncsnpp_storm"
# Networks whose weights are all their Flax variables, not only "params": DCUNet's BatchNorm
# running statistics ("batch_stats") travel with its parameters through checkpoints and
# inference, so its weight tree is the whole {"params", "batch_stats"} dict.
WHOLE_VARIABLES_BACKBONES = ("dcunet",)


def weights_are_variables(config) -> bool:
    return str(config.model.backbone) in WHOLE_VARIABLES_BACKBONES


def is_storm(config) -> bool:
    """True for StoRM (predictive denoiser + score network, `models.storm`): the backbone is
    StoRM's NCSN++ and `model.denoiser_kwargs` sizes its predictive network."""
    return str(config.model.backbone) == STORM_BACKBONE


def build_backbone(config):
    """The Flax network of a config (NCSN++ for enhancement, a prior's network for priors,
    StoRM's pair of networks as one module)."""
    from diffrestore.models import build_network

    kwargs = dict(config.model.backbone_kwargs.to_dict())
    dtype, remat = compute_dtype(config), config.model.get("remat", "none")
    if is_storm(config):
        from diffrestore.models.ncsnpp import build_backbone as build_ncsnpp
        from diffrestore.models.storm import StochasticRegeneration

        denoiser_kwargs = dict(config.model.get("denoiser_kwargs", {}) or {})
        denoiser_kwargs["discriminative"] = True
        return StochasticRegeneration(
            denoiser=build_ncsnpp(STORM_BACKBONE, dtype=dtype, remat=remat, **denoiser_kwargs),
            score=build_ncsnpp(STORM_BACKBONE, dtype=dtype, remat=remat, **kwargs),
        )
    return build_network(config.model.backbone, dtype=dtype, remat=remat, **kwargs)


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
    if weights_are_variables(config):
        return jax.eval_shape(lambda *a: dict(module.init(jax.random.key(0), *a)), *inputs)
    return jax.eval_shape(lambda *a: module.init(jax.random.key(0), *a)["params"], *inputs)


def build_model_fn(config, module=None):
    """What samplers and losses call, with the parameters as first argument.

    Enhancement models: `model_fn(params, x_t, cond, t, train=False, rngs=None)` -> score or
    x̂ (see `diffrestore.score`), where cond is the conditioning that `build_condition_fn`
    makes of y: y itself, or StoRM's [y, D(y)]. Priors: `denoise_fn(params, x, sigma)` ->
    D(x, σ), the EDM denoiser of waveforms (B, L).
    """
    from diffrestore.score import make_edm_denoiser, make_model_fn

    module = module if module is not None else build_backbone(config)
    if is_prior(config):
        return make_edm_denoiser(prior_apply_fn(module), build_sde(config))
    method = "score_given" if is_storm(config) else None
    whole = weights_are_variables(config)

    def apply_fn(params, x, cond, t, train=False, rngs=None):
        variables = params if whole else {"params": params}
        return module.apply(variables, x, cond, t, train=train, rngs=rngs, method=method)

    return make_model_fn(apply_fn, build_sde(config), output_spec(config))


def build_condition_fn(config, module=None):
    """`condition_fn(params, y, train=False, rngs=None) -> (sde_y, cond)` of an enhancement model.

    sde_y is what the SDE's mean and prior move towards and cond what `build_model_fn`'s
    network is conditioned on. Both are y itself, except for StoRM, whose predictive network
    runs once per batch: sde_y = D(y) and cond = [y, D(y)] (B, 2, F, T), the reference's
    `enhance` with condition 'both'.
    """
    if not is_storm(config):
        return lambda params, y, train=False, rngs=None: (y, y)
    from diffrestore.models.storm import storm_condition

    module = module if module is not None else build_backbone(config)

    def condition_fn(params, y, train=False, rngs=None):
        dy = module.apply({"params": params}, y, train=train, rngs=rngs, method="predict")
        return dy, storm_condition(y, dy)

    return condition_fn


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
                if key in ("backbone_kwargs", "denoiser_kwargs"):
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
