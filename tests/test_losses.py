"""Losses: exact zeros for perfect predictions and the reference's reductions."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffrestore.audio import PRESETS, to_spectrogram
from diffrestore.losses import loss_from_output, make_loss_fn
from diffrestore.sde import OUVESDE, SBVESDE
from diffrestore.sde.base import batch_view

B, F, T = 3, 256, 16


def _data(seed=0):
    rng = np.random.default_rng(seed)
    waves = rng.normal(size=(2, B, (T - 1) * 128)).astype(np.float32) * 0.1
    x0, y = (to_spectrogram(jnp.asarray(w), PRESETS["16k"])[:, None] for w in waves)
    return x0, y


def test_score_matching_zero_for_exact_score_and_half_sum_reduction():
    sde = OUVESDE()
    x0, y = _data()
    exact = lambda p, x_t, y, t: -(x_t - sde.mean(x0, y, t)) / batch_view(sde.std(t), x_t) ** 2
    loss, _ = make_loss_fn(exact, sde)(None, x0, y, jax.random.key(0))
    assert float(loss) < 1e-6
    # A zero score leaves ½ Σ |z|², whose mean over the batch is ½ F T (E|z|² = 1).
    zero = lambda p, x_t, y, t: jnp.zeros_like(x_t)
    loss, _ = make_loss_fn(zero, sde)(None, x0, y, jax.random.key(1))
    assert float(loss) == pytest.approx(0.5 * F * T, rel=0.05)


@pytest.mark.parametrize("weighting", ["1", "sigma^2", "edm"])
def test_denoiser_loss_values(weighting):
    x0, y = _data(1)
    sigma = jnp.array([0.1, 0.2, 0.4])
    z = jnp.ones_like(x0)
    mean = x0
    x_t = mean + batch_view(sigma, x0) * z
    # score = (D − x_t)/σ²; with D = μ + e the per-bin loss is |e|² times the weight.
    e = 0.01
    score = (mean + e - x_t) / batch_view(sigma, x0) ** 2
    loss = loss_from_output(score, x0=x0, x_t=x_t, z=z, mean=mean, sigma=sigma, loss_type="denoiser", loss_weighting=weighting)
    w = {"1": jnp.ones(3), "sigma^2": sigma**2, "edm": (sigma**2 + 0.01) / (sigma * 0.1) ** 2}[weighting]
    assert float(loss) == pytest.approx(float(jnp.mean(0.5 * F * T * e**2 * w)), rel=1e-4)


def test_data_prediction_zero_for_perfect_estimate_and_positive_otherwise():
    sde = SBVESDE()
    x0, y = _data(2)
    perfect = lambda p, x_t, y, t: x0
    loss_fn = make_loss_fn(perfect, sde, loss_type="data_prediction", spectrogram=PRESETS["16k"])
    assert float(loss_fn(None, x0, y, jax.random.key(0))[0]) < 1e-10
    noisy_guess = lambda p, x_t, y, t: y
    loss_fn = make_loss_fn(noisy_guess, sde, loss_type="data_prediction", spectrogram=PRESETS["16k"])
    expected_tf = float(jnp.mean(0.5 * jnp.sum(jnp.abs(y - x0) ** 2, axis=(1, 2, 3)) / (F * T)))
    loss = float(loss_fn(None, x0, y, jax.random.key(0))[0])
    # The waveform L1 term adds a small positive amount (weight 0.001).
    assert expected_tf < loss < expected_tf * 1.05


def test_unknown_loss_settings_are_refused():
    x0, y = _data()
    args = dict(x0=x0, x_t=x0, z=x0, mean=x0, sigma=jnp.ones(B))
    with pytest.raises(ValueError, match="loss_weighting"):
        loss_from_output(x0, loss_type="score_matching", loss_weighting="edm", **args)
    with pytest.raises(ValueError, match="spectrogram"):
        loss_from_output(x0, loss_type="data_prediction", **args)
