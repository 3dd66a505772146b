"""Training objectives of SGMSE+ and its successors, with the reference's exact reductions.

Every loss sums over (channel, frequency, frame), halves, and averages over the batch —
`mean_b(½ Σ |·|²)` — as `ScoreModel._loss` does, so loss values are comparable with
PyTorch training logs.

* score_matching (σ² weighting): |s·σ + z|², the denoising score matching loss, Eq. (7) of
  Richter et al. 2024.
* denoiser: D = s·σ² + x_t, |D − μ_t|² weighted by 1, σ² or the EDM weight
  (σ² + σ_d²)/(σ σ_d)².
* data_prediction: |x̂ − x0|²/(F·T) plus l1_weight × time-domain L1/(L) of the waveforms.

EDM priors (`make_edm_loss_fn`) and flow matching (`make_flow_matching_loss_fn`, NeMo) do not
use the half-sum: their references average. StoRM (`make_storm_loss_fn`) sums over the batch too.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from diffrestore.audio.transforms import SpectrogramConfig, to_audio
from diffrestore.sde.base import batch_view, complex_normal
from diffrestore.sde.flow import OTFlow, estimator_target_name


def _half_sum_mean(per_bin):
    """mean over batch of ½ Σ over all other axes."""
    return jnp.mean(0.5 * jnp.sum(per_bin.reshape(per_bin.shape[0], -1), axis=-1))


def loss_from_output(
    out,
    *,
    x0,
    x_t,
    z,
    mean,
    sigma,
    loss_type: str = "score_matching",
    loss_weighting: str = "sigma^2",
    sigma_data: float = 0.1,
    l1_weight: float = 0.001,
    spectrogram: SpectrogramConfig | None = None,
):
    """The reference loss given the network's (post-processed) output.

    Args:
      out: score for score_matching/denoiser, x̂ for data_prediction; complex (B, 1, F, T).
      x0: clean spectrogram; x_t: perturbed state; z: the unit complex normal draw;
      mean: μ_t; sigma: σ_t (B,). All complex (B, 1, F, T) except sigma.
      spectrogram: needed for data_prediction (waveform L1 term).

    Returns:
      scalar float32 loss.
    """
    sig = batch_view(sigma, out)
    if loss_type == "score_matching":
        if loss_weighting != "sigma^2":
            raise ValueError(f"loss_type=score_matching supports loss_weighting 'sigma^2', not {loss_weighting!r}")
        return _half_sum_mean(jnp.abs(out * sig + z) ** 2)
    if loss_type == "denoiser":
        denoised = out * sig**2 + x_t
        per_bin = jnp.abs(denoised - mean) ** 2
        if loss_weighting == "sigma^2":
            per_bin = per_bin * sig**2
        elif loss_weighting == "edm":
            per_bin = per_bin * (sig**2 + sigma_data**2) / (sig * sigma_data) ** 2
        elif loss_weighting != "1":
            raise ValueError(f"loss_type=denoiser supports loss_weighting 1, sigma^2, edm, not {loss_weighting!r}")
        return _half_sum_mean(per_bin)
    if loss_type == "data_prediction":
        if spectrogram is None:
            raise ValueError("data_prediction loss needs the spectrogram settings for its waveform term")
        num_freqs, num_frames = out.shape[-2:]
        loss_tf = _half_sum_mean(jnp.abs(out - x0) ** 2 / (num_freqs * num_frames))
        length = (num_frames - 1) * spectrogram.hop_length
        wave_hat = to_audio(out[:, 0], spectrogram, length)
        wave = to_audio(x0[:, 0], spectrogram, length)
        loss_l1 = _half_sum_mean(jnp.abs(wave_hat - wave) / length)
        return loss_tf + l1_weight * loss_l1
    raise ValueError(f"unknown loss_type {loss_type!r}")


def make_loss_fn(
    model_fn: Callable,
    sde,
    *,
    t_eps: float = 0.03,
    loss_type: str = "score_matching",
    loss_weighting: str = "sigma^2",
    sigma_data: float = 0.1,
    l1_weight: float = 0.001,
    spectrogram: SpectrogramConfig | None = None,
) -> Callable:
    """Returns `loss_fn(params, x0, y, rng, **model_kwargs) -> (loss, aux)`.

    The training step of the reference: t ~ U(t_eps, T), z ~ CN(0, 1),
    x_t = μ_t(x0, y) + σ_t z, out = model_fn(params, x_t, y, t).
    """

    def loss_fn(params, x0, y, rng, **model_kwargs):
        key_t, key_z = jax.random.split(rng)
        t = jax.random.uniform(key_t, (x0.shape[0],), jnp.float32, t_eps, sde.T)
        z = complex_normal(key_z, x0.shape, x0.dtype)
        mean, sigma = sde.marginal_prob(x0, y, t)
        x_t = mean + batch_view(sigma, x0) * z
        out = model_fn(params, x_t, y, t, **model_kwargs)
        loss = loss_from_output(
            out, x0=x0, x_t=x_t, z=z, mean=mean, sigma=sigma, loss_type=loss_type,
            loss_weighting=loss_weighting, sigma_data=sigma_data, l1_weight=l1_weight,
            spectrogram=spectrogram,
        )
        return loss, {"t_mean": jnp.mean(t)}

    return loss_fn


# --- Conditional flow matching (NeMo `FlowMatchingAudioToAudioModel._step`) ---------------------
def drop_condition(key, y, p_cond: float):
    """NeMo's conditioning dropout: keep y with probability p_cond per example, else zeros.

    `keep = rand(B) < p_cond; y = y * keep` (enhancement.py l. 833-836), so p_cond = 1 always
    keeps and p_cond = 0 always drops.

    Returns:
      (y with dropped examples zeroed, keep (B,) bool).
    """
    keep = jax.random.uniform(key, y.shape[:1], jnp.float32) < p_cond
    return y * batch_view(keep, y).astype(y.dtype), keep


def mean_squared_error(estimate, target):
    """NeMo's `MSELoss(ndim=4)`: |e − t|² averaged over (F, T), then channels, then the batch.

    `calculate_mse_batch` means over (F, T) (audio.py l. 468), `torch.mean(mse, dim=1)` over
    channels (l. 571), `torch.mean` over the batch (l. 578). Without length masks every
    example has the same size, so this is the plain mean over all elements. It is
    2/(C·F·T) times our SDE losses' `_half_sum_mean` (mean_b ½ Σ_{c,f,t}) of the same
    errors: NeMo's loss values are per bin, SGMSE's per example.
    """
    err = jnp.abs(estimate - target) ** 2
    return jnp.mean(err.astype(jnp.float32))


def make_flow_matching_loss_fn(
    model_fn: Callable,
    flow: OTFlow,
    *,
    target: str = "vector_field",
    p_cond: float = 0.9,
) -> Callable:
    """Returns `loss_fn(params, x0, y, rng, **model_kwargs) -> (loss, aux)`, NeMo's `_step`.

    t ~ U[time_min, time_max], z ~ CN(0, 1), x_t = mean_t + std_t·z from x_start to the clean
    x0, ỹ = y with each example dropped to zeros with probability 1 − p_cond, and

        loss = mean |model_fn(params, x_t, ỹ, t) − target|²   (`mean_squared_error`)

    with target u_t(x_t | x_start, x0) ("vector_field") or x0 ("data"). The path uses the
    original y (start = "noisy"): dropout hides the condition from the estimator, not from
    the data pair. aux = {"t_mean": mean t}.

    Args:
      model_fn: `(params, x_t, y, t, **kw) -> estimate`, complex (B, 1, F, T); the raw
        `ncsnpp_v2` output net(x, y, t) is what NeMo regresses (no preconditioning).
      flow: an `OTFlow`.
      target: "vector_field" (NeMo's "conditional_vector_field") or "data".
      p_cond: probability of KEEPING the condition (NeMo's `p_cond`, 0.9 in its yaml), so a
        NeMo config value transfers unchanged; the dropout probability is 1 − p_cond.
    """
    target = estimator_target_name(target)
    if not 0.0 <= p_cond <= 1.0:
        raise ValueError(f"p_cond must lie in [0, 1], got {p_cond}")

    def loss_fn(params, x0, y, rng, **model_kwargs):
        key_t, key_z, key_cond = jax.random.split(rng, 3)
        t = flow.sample_time(key_t, x0.shape[0])
        z = complex_normal(key_z, x0.shape, x0.dtype)
        x_t = flow.sample_path(x0, y, t, z)
        y_in, _ = drop_condition(key_cond, y, p_cond)
        estimate = model_fn(params, x_t, y_in, t, **model_kwargs)
        if target == "vector_field":
            goal = flow.vector_field(x_t, x0, y, t)
        else:
            goal = x0
        return mean_squared_error(estimate, goal), {"t_mean": jnp.mean(t)}

    return loss_fn


# --- CRP (sp-uhh/sgmse_crp `sgmse/model.py: ScoreModel.training_step`, loss_type 'default') -------
def crp_loss_from_draws(model_fn, sde, params, x0, y, t_start, num_steps, draw, *, t_eps: float = 0.03, **model_kwargs):
    """CRP's loss for a given start time, step count and noise (Lay et al., "Single and few-step
    diffusion for generative speech enhancement", 2024: correcting the reverse process).

    From x = y + std(t_start)·z_0, N Euler–Maruyama steps of the reverse SDE on the grid
    t_i = linspace(t_start, t_eps, N) with h_i = t_i − t_{i+1} and h_{N−1} = t_{N−1} (the last
    step reaches 0); the first N − 1 steps run without gradient, and the last step's mean

        μ = x − (f(x, t) − g(t)²·s(x, t))·h,        loss = mean_b ½ Σ |μ − mean(x0, t − h)|²

    is compared with the forward process's mean at t − h = 0, the clean x0 (stop 'last', the
    published setting). Only that last network call carries gradient.

    Args:
      model_fn: `(params, x, y, t, **kw) -> score`.
      sde: BBED (or any SDE with `sde`, `std`, `mean`, `discretize`).
      x0, y: clean and noisy spectrograms, complex (B, 1, F, T).
      t_start: scalar start time; num_steps: N ≥ 1 (Python or traced int).
      draw: noise source: draw 0 is the start, draw i the noise of EM step i (i < N).
    Returns:
      (loss, μ of the last step).
    """
    batch = y.shape[0]
    num_steps = jnp.asarray(num_steps, jnp.int32)
    t_start = jnp.asarray(t_start, jnp.float32)
    delta = jnp.where(num_steps > 1, (t_start - t_eps) / jnp.maximum(num_steps - 1, 1), 0.0)
    x = y + batch_view(sde.std(jnp.full((batch,), t_start)), y) * draw(0, y)
    frozen = jax.lax.stop_gradient(params)

    def em_step(i, x):
        t = jnp.full((batch,), t_start - i * delta, jnp.float32)
        f, g = sde.discretize(x, y, t, jnp.full((batch,), delta))
        mean = x - f + batch_view(g**2, x) * model_fn(frozen, x, y, t, **model_kwargs)
        return mean + batch_view(g, x) * draw(i + 1, x)

    x = jax.lax.stop_gradient(jax.lax.fori_loop(0, num_steps - 1, em_step, x))
    t_last = t_start - (num_steps - 1) * delta
    t = jnp.full((batch,), t_last, jnp.float32)
    h = jnp.full((batch,), jnp.where(num_steps > 1, t_last, t_start))
    f, g = sde.discretize(x, y, t, h)
    mean = x - f + batch_view(g**2, x) * model_fn(params, x, y, t, **model_kwargs)
    target = sde.mean(x0, y, t - h)
    return _half_sum_mean(jnp.abs(mean - target) ** 2), mean


def make_crp_loss_fn(
    model_fn: Callable,
    sde,
    *,
    t_eps: float = 0.03,
    t_start_range: tuple[float, float] = (0.4, 0.7),
    num_steps_range: tuple[int, int] = (5, 15),
) -> Callable:
    """CRP fine-tuning: `loss_fn(params, x0, y, rng, **kw) -> (loss, aux)`, with a start time
    t ~ U(t_start_range) and a step count N uniform in num_steps_range (both ends included) drawn
    per batch, as the reference's `random.uniform` / `random.randint` (train_resume.py: t in
    [0.4, 0.7], N in [5, 15]); see `crp_loss_from_draws`. aux: t_mean (the start), num_steps."""
    lo, hi = (float(v) for v in t_start_range)
    n_lo, n_hi = (int(v) for v in num_steps_range)
    if not (0 < lo <= hi <= sde.T) or not (1 <= n_lo <= n_hi):
        raise ValueError(f"CRP ranges must satisfy 0 < t_min <= t_max <= T and 1 <= N_min <= N_max, got "
                         f"{t_start_range}, {num_steps_range}")

    def loss_fn(params, x0, y, rng, **model_kwargs):
        key_t, key_n, key_z = jax.random.split(rng, 3)
        t_start = jax.random.uniform(key_t, (), jnp.float32, lo, hi) if hi > lo else jnp.float32(lo)
        num_steps = jax.random.randint(key_n, (), n_lo, n_hi + 1)
        keys = jax.random.split(key_z, n_hi)

        def draw(i, like):
            return complex_normal(keys[i], like.shape, like.dtype)

        loss, _ = crp_loss_from_draws(model_fn, sde, params, x0, y, t_start, num_steps, draw, t_eps=t_eps, **model_kwargs)
        return loss, {"t_mean": t_start, "num_steps": num_steps.astype(jnp.float32)}

    return loss_fn


# --- StoRM (sp-uhh/storm `sgmse/model.py: StochasticRegenerationModel._step`, `_loss`) -----------
STORM_MODES = ("joint", "frozen_denoiser")


def make_storm_loss_fn(
    model_fn: Callable,
    condition_fn: Callable,
    sde,
    *,
    t_eps: float = 0.03,
    denoiser_weight: float = 0.5,
    mode: str = "joint",
) -> Callable:
    """Returns StoRM's `loss_fn(params, x0, y, rng, **model_kwargs) -> (loss, aux)`.

    D = D(y) (the predictive network, through `condition_fn`); t ~ U(t_eps, T); x_t =
    μ_t(x0, D) + σ_t z (D in place of y in the OUVE mean); s = score([x_t, y, D], t);

        loss = a · ½ Σ |D − x0|² + (1 − a) · ½ Σ |σ_t s + z|²,   a = denoiser_weight (0.5)

    where Σ runs over the whole batch too: the reference's `_reduce_op` is 0.5·torch.sum, with
    no mean over examples (unlike SGMSE's, so StoRM's losses scale with the batch size).
    In "frozen_denoiser" mode D is computed without gradient (the reference's
    `regen-freeze-denoiser`: its weights stay as they are) and its term is still reported.

    Args:
      model_fn: `(params, x, cond, t, **kw) -> score` (`config.build_model_fn`).
      condition_fn: `(params, y, **kw) -> (D(y), [y, D(y)])` (`config.build_condition_fn`).
      sde: the OUVE SDE.
    Returns:
      aux: t_mean, loss_score, loss_denoiser (scalars).
    """
    if mode not in STORM_MODES:
        raise ValueError(f"unknown StoRM mode {mode!r}; choose from {STORM_MODES}")

    def loss_fn(params, x0, y, rng, **model_kwargs):
        key_t, key_z = jax.random.split(rng)
        dy, cond = condition_fn(params, y, **model_kwargs)
        if mode == "frozen_denoiser":
            dy, cond = jax.lax.stop_gradient((dy, cond))
        t = jax.random.uniform(key_t, (x0.shape[0],), jnp.float32, t_eps, sde.T)
        z = complex_normal(key_z, x0.shape, x0.dtype)
        mean, sigma = sde.marginal_prob(x0, dy, t)
        x_t = mean + batch_view(sigma, x0) * z
        score = model_fn(params, x_t, cond, t, **model_kwargs)
        loss_score = 0.5 * jnp.sum(jnp.abs(score * batch_view(sigma, score) + z) ** 2)
        loss_denoiser = 0.5 * jnp.sum(jnp.abs(dy - x0) ** 2)
        loss = denoiser_weight * loss_denoiser + (1 - denoiser_weight) * loss_score
        return loss, {"t_mean": jnp.mean(t), "loss_score": loss_score, "loss_denoiser": loss_denoiser}

    return loss_fn


# --- EDM priors (CQT-Diff, CQTdiff+/BABE) -------------------------------------------------------
# Both references compute the network target F* = (x0 − c_skip·(x0 + σn))/c_out and average the
# squared error over every element of the (B, L) batch: CQT-Diff `src/learner.py` train_step,
# `loss = nn.MSELoss()(estimate, target)` (l. 60, 252-255; reduction "mean"); BABE
# `diff_params/edm.py` loss_fn returns `error**2` (l. 192-206) and `training/trainer.py`
# train_step takes `loss = error.mean()` (l. 393-394). Since |F − F*|² = λ(σ)·|D − x0|², this is
# the λ-weighted denoiser loss of Karras et al. Eq. 8, averaged over batch and samples.
# NVlabs' training loop instead sums the weighted error over each example and averages over the
# batch (`loss.sum().mul(loss_scaling / batch_gpu_total)`): reduction "sum".
EDM_REDUCTIONS = ("mean", "sum")


def edm_loss_from_output(net_out, *, x0, x_noisy, sigma, sde, reduction: str = "mean", error_filter_fn=None):
    """The EDM loss given the raw network output F(c_in·x_noisy, c_noise).

    Args:
      net_out: F, shaped like x0 (real waveforms (B, L) for the priors).
      x0: clean examples; x_noisy: x0 + σ·n; sigma: (B,) noise levels; sde: an `EDM`.
      reduction: "mean" (CQT-Diff, BABE: mean over every element) or "sum" (NVlabs: sum over
        each example, mean over the batch).
      error_filter_fn: applied to F − F* before squaring: BABE's hook for its optional
        A-weighting FIR (`diff_params.aweighting`, off in its configs).

    Returns:
      scalar float32 loss.
    """
    if reduction not in EDM_REDUCTIONS:
        raise ValueError(f"unknown EDM loss reduction {reduction!r}; choose from {EDM_REDUCTIONS}")
    c_skip, c_out, _, _ = sde.precondition(sigma)
    target = (x0 - batch_view(c_skip, x0) * x_noisy) / batch_view(c_out, x0)
    error = net_out - target
    if error_filter_fn is not None:
        error = error_filter_fn(error)
    squared = jnp.abs(error) ** 2
    if reduction == "mean":
        return jnp.mean(squared)
    return jnp.mean(jnp.sum(squared.reshape(squared.shape[0], -1), axis=-1))


def make_edm_loss_fn(apply_fn: Callable, sde, *, reduction: str = "mean", error_filter_fn=None) -> Callable:
    """Returns `loss_fn(params, x0, y, rng, **model_kwargs) -> (loss, aux)` for an EDM prior.

    The references' training step: σ ~ `sde.train_distribution` per example, n ~ N(0, I),
    F = apply_fn(params, c_in·(x0 + σn), c_noise) with c_noise (B, 1), loss on F's target.
    `y` is ignored (a prior is unconditional); it keeps the signature of `make_loss_fn`.

    Args:
      apply_fn: `(params, x_in, c_noise, **kw) -> F` (the raw network, as in
        `diffrestore.score.make_edm_denoiser`).
      sde: an `EDM`.
      reduction, error_filter_fn: see `edm_loss_from_output`.
    """
    if reduction not in EDM_REDUCTIONS:
        raise ValueError(f"unknown EDM loss reduction {reduction!r}; choose from {EDM_REDUCTIONS}")

    def loss_fn(params, x0, y, rng, **model_kwargs):
        del y
        key_sigma, key_n = jax.random.split(rng)
        sigma = sde.sample_train_sigma(key_sigma, x0.shape[:1])
        x_noisy = x0 + batch_view(sigma, x0) * jax.random.normal(key_n, x0.shape, jnp.float32).astype(x0.dtype)
        _, _, c_in, c_noise = sde.precondition(sigma)
        out = apply_fn(params, batch_view(c_in, x0) * x_noisy, c_noise[:, None], **model_kwargs)
        loss = edm_loss_from_output(
            out, x0=x0, x_noisy=x_noisy, sigma=sigma, sde=sde, reduction=reduction, error_filter_fn=error_filter_fn
        )
        return loss, {"t_mean": jnp.mean(sigma)}

    return loss_fn
