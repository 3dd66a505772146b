"""Conditional flow matching (NeMo's OT flow): closed-form properties of the path, the Euler
sampler, the loss and its conditioning dropout."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffrestore.sampling.flow import flow_euler_sample
from diffrestore.sampling.noise import keyed_noise, replayed_noise
from diffrestore.score import OutputSpec, make_model_fn
from diffrestore.sde.base import complex_normal
from diffrestore.losses import drop_condition, make_flow_matching_loss_fn, mean_squared_error
from diffrestore.sde.flow import OTFlow

SHAPE = (3, 1, 4, 5)  # (B, 1, F, T)


def _pair(seed=0, shape=SHAPE):
    k1, k2 = jax.random.split(jax.random.key(seed))
    x_clean = complex_normal(k1, shape) * 0.7 + 0.2
    y = x_clean + complex_normal(k2, shape) * 0.5
    return x_clean, y


@pytest.mark.parametrize("start", ["zero", "noisy"])
def test_path_mean_and_std_follow_the_documented_formulas(start):
    flow = OTFlow(sigma_start=0.8, sigma_end=0.1, start=start)
    x_clean, y = _pair()
    x_start = jnp.zeros_like(y) if start == "zero" else y
    t = jnp.array([0.0, 0.25, 1.0], jnp.float32)
    w = np.asarray(t)[:, None, None, None]
    np.testing.assert_allclose(flow.mean(x_clean, y, t), (1 - w) * x_start + w * x_clean, atol=1e-6)
    np.testing.assert_allclose(flow.std(t), [0.8, 0.75 * 0.8 + 0.25 * 0.1, 0.1], rtol=1e-6)
    # The endpoints: x_start + σ_start·z at t = 0, x_clean + σ_end·z at t = 1.
    z = complex_normal(jax.random.key(3), SHAPE)
    x_t = flow.sample_path(x_clean, y, t, z)
    np.testing.assert_allclose(x_t[0], x_start[0] + 0.8 * z[0], atol=1e-6)
    np.testing.assert_allclose(x_t[2], x_clean[2] + 0.1 * z[2], atol=1e-6)
    np.testing.assert_allclose(flow.prior_sampling(None, y, z=z), x_start + 0.8 * z, atol=1e-6)


def test_path_samples_match_a_monte_carlo_estimate():
    flow = OTFlow(sigma_start=1.0, sigma_end=1e-4, start="noisy")
    draws = 20_000
    x_clean, y = _pair(shape=(1, 1, 2, 3))
    t = jnp.full((draws,), 0.3, jnp.float32)
    tile = lambda a: jnp.broadcast_to(a, (draws,) + a.shape[1:])  # noqa: E731
    z = complex_normal(jax.random.key(7), (draws, 1, 2, 3))
    x_t = np.asarray(flow.sample_path(tile(x_clean), tile(y), t, z))
    mean = np.asarray(0.7 * y + 0.3 * x_clean)[0]
    std = 0.7 * 1.0 + 0.3 * 1e-4
    # Mean within 5 standard errors; real and imaginary variances std²/2 each (CN convention).
    assert np.max(np.abs(x_t.mean(0) - mean)) < 5 * std / np.sqrt(draws)
    np.testing.assert_allclose(x_t.real.var(0), std**2 / 2, rtol=0.05)
    np.testing.assert_allclose(x_t.imag.var(0), std**2 / 2, rtol=0.05)


@pytest.mark.parametrize("start", ["zero", "noisy"])
@pytest.mark.parametrize("sigmas", [(1.0, 1e-4), (0.6, 0.2), (0.5, 0.5)])
def test_vector_field_is_the_time_derivative_of_the_path(start, sigmas):
    """d/dt (mean_t + std_t z) = u_t(x_t): NeMo's field transports its own path."""
    flow = OTFlow(sigma_start=sigmas[0], sigma_end=sigmas[1], start=start, vf_eps=0.0)
    x_clean, y = _pair()
    z = complex_normal(jax.random.key(1), SHAPE)
    t = jnp.array([0.1, 0.5, 0.9], jnp.float32)
    x_t, dx_dt = jax.jvp(lambda s: flow.sample_path(x_clean, y, s, z), (t,), (jnp.ones_like(t),))
    np.testing.assert_allclose(flow.vector_field(x_t, x_clean, y, t), dx_dt, atol=2e-5)


def _point_mass_field(flow, x_clean, y):
    # The exact marginal field of a point-mass target is its conditional field.
    return lambda x, cond, t: flow.vector_field(x, x_clean, y, t)


@pytest.mark.parametrize("start", ["zero", "noisy"])
@pytest.mark.parametrize("sigmas", [(1.0, 0.0), (1.0, 1e-4), (1.0, 0.3), (0.5, 0.5)])
@pytest.mark.parametrize("num_steps", [1, 5])
def test_euler_recovers_a_point_mass(start, sigmas, num_steps):
    """Every trajectory of the OT field is x_t = mean_t + std_t·c (mean, std affine in t), a
    straight line with constant velocity, so Euler is exact with any number of steps, one
    included: it ends at x_clean + σ_end·(x_0 − x_start)/σ_start = x_clean + σ_end·z."""
    flow = OTFlow(sigma_start=sigmas[0], sigma_end=sigmas[1], start=start)
    x_clean, y = _pair()
    z = complex_normal(jax.random.key(5), SHAPE)
    x_hat, nfe = flow_euler_sample(_point_mass_field(flow, x_clean, y), flow, y, replayed_noise(z[None]), num_steps)
    assert int(nfe) == num_steps
    np.testing.assert_allclose(x_hat, x_clean + sigmas[1] * z, atol=1e-4)


@pytest.mark.parametrize("start", ["zero", "noisy"])
@pytest.mark.parametrize("num_steps", [1, 4])
def test_euler_with_a_perfect_data_estimator_lands_on_it(start, num_steps):
    """NeMo turns x̂ into the field from the run's own start x_0, so a perfect clean estimate is
    reached exactly (no σ_end·z residue), even with a large σ_end."""
    flow = OTFlow(sigma_start=1.0, sigma_end=0.3, start=start)
    x_clean, y = _pair()
    draw = keyed_noise(jax.random.split(jax.random.key(2), SHAPE[0]))
    x_hat, _ = flow_euler_sample(lambda x, c, t: x_clean, flow, y, draw, num_steps, estimator_target="data")
    np.testing.assert_allclose(x_hat, x_clean, atol=1e-4)


def test_euler_grid_matches_linspace_and_condition_switch():
    """The model sees t_i = linspace(time_min, time_max, N + 1)[:-1] and y (or zeros)."""
    flow = OTFlow(time_min=0.1, time_max=0.9)
    _, y = _pair()
    seen = []

    def model_fn(x, cond, t):
        jax.debug.callback(lambda tt, cc: seen.append((np.asarray(tt), np.asarray(cc))), t, cond)
        return jnp.zeros_like(x)

    draw = replayed_noise(jnp.zeros((1,) + SHAPE, jnp.complex64))
    flow_euler_sample(model_fn, flow, y, draw, 4)
    jax.effects_barrier()
    np.testing.assert_allclose([s[0][0] for s in seen], np.linspace(0.1, 0.9, 5)[:-1], atol=1e-6)
    np.testing.assert_allclose(seen[0][1], y)
    seen.clear()
    flow_euler_sample(model_fn, flow, y, draw, 2, condition=False)
    jax.effects_barrier()
    assert len(seen) == 2 and not np.any(seen[0][1])


def test_traced_num_steps_compiles_once():
    flow = OTFlow(sigma_start=1.0, sigma_end=1e-4)
    x_clean, y = _pair()
    z = complex_normal(jax.random.key(9), SHAPE)
    traces = []

    def field(x, cond, t):
        traces.append(1)  # runs only while tracing
        return flow.vector_field(x, x_clean, y, t)

    run = jax.jit(lambda n: flow_euler_sample(field, flow, y, replayed_noise(z[None]), n))
    for n in (1, 3, 8):
        x_hat, nfe = run(jnp.int32(n))
        assert int(nfe) == n
        np.testing.assert_allclose(x_hat, x_clean + 1e-4 * z, atol=1e-4)
    assert len(traces) == 1


def _exact_model(flow, target, scale_offset=0.0):
    """An estimator that knows the pair: params = {"x0", "y", "scale"}."""

    def model_fn(params, x_t, y_in, t):
        if target == "data":
            out = params["x0"]
        else:
            out = flow.vector_field(x_t, params["x0"], params["y"], t)
        return params["scale"] * out + scale_offset

    return model_fn


@pytest.mark.parametrize("start", ["zero", "noisy"])
@pytest.mark.parametrize("target", ["vector_field", "conditional_vector_field", "data"])
def test_loss_is_zero_for_the_exact_estimator_and_positive_otherwise(start, target):
    flow = OTFlow(start=start)
    x0, y = _pair()
    loss_fn = make_flow_matching_loss_fn(_exact_model(flow, target), flow, target=target, p_cond=0.9)
    params = {"x0": x0, "y": y, "scale": jnp.float32(1.0)}
    rng = jax.random.key(4)
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x0, y, rng)
    assert float(loss) < 1e-10
    assert abs(float(grads["scale"])) < 1e-6
    assert flow.time_min <= float(aux["t_mean"]) <= flow.time_max
    wrong, _ = loss_fn({**params, "scale": jnp.float32(1.1)}, x0, y, rng)
    assert float(wrong) > 1e-4


def test_loss_is_nemo_mean_not_the_half_sum():
    """A constant error c in every bin gives |c|² (mean over B, C, F, T), not ½·F·T·|c|²."""
    flow = OTFlow()
    x0, y = _pair()
    c = 0.3 - 0.4j
    loss_fn = make_flow_matching_loss_fn(_exact_model(flow, "vector_field", scale_offset=c), flow)
    loss, _ = loss_fn({"x0": x0, "y": y, "scale": 1.0}, x0, y, jax.random.key(0))
    np.testing.assert_allclose(float(loss), abs(c) ** 2, rtol=1e-4)
    np.testing.assert_allclose(float(mean_squared_error(x0 + c, x0)), abs(c) ** 2, rtol=1e-5)


@pytest.mark.parametrize("p_cond", [0.0, 0.5, 0.9, 1.0])
def test_conditioning_dropout_keeps_y_with_probability_p_cond(p_cond):
    """The estimator's error is its y input (ones or zeros), so the loss is the kept fraction."""
    flow = OTFlow()
    batch = 20_000
    x0 = jnp.zeros((batch, 1, 1, 2), jnp.complex64)
    y = jnp.ones_like(x0)

    def model_fn(params, x_t, y_in, t):
        return flow.vector_field(x_t, x0, y, t) + y_in

    loss_fn = make_flow_matching_loss_fn(model_fn, flow, p_cond=p_cond)
    kept_fraction, _ = loss_fn(None, x0, y, jax.random.key(11))
    tolerance = 5 * np.sqrt(p_cond * (1 - p_cond) / batch)
    assert abs(float(kept_fraction) - p_cond) <= tolerance + 1e-6

    y_in, keep = drop_condition(jax.random.key(12), y, p_cond)
    np.testing.assert_array_equal(np.asarray(y_in)[~np.asarray(keep)], 0)
    np.testing.assert_array_equal(np.asarray(y_in)[np.asarray(keep)], 1)
    assert abs(float(jnp.mean(keep)) - p_cond) <= tolerance + 1e-6


def test_time_draws_stay_in_range():
    flow = OTFlow(time_min=0.2, time_max=0.7)
    t = np.asarray(flow.sample_time(jax.random.key(0), 10_000))
    assert t.min() >= 0.2 and t.max() <= 0.7
    assert abs(t.mean() - 0.45) < 0.01
    assert flow.T == 0.7


def test_ncsnpp_v2_output_spec_passes_the_raw_network_output():
    """Wired through `score.make_model_fn` with default preconditioning, the estimator is the raw
    `net(x, y, t)` that NeMo regresses (its σ_t comes from the flow's std)."""
    flow = OTFlow()
    x0, y = _pair()
    t = jnp.array([0.1, 0.5, 0.9], jnp.float32)
    apply_fn = lambda p, x, yy, tt: p * x + yy * tt[:, None, None, None]  # noqa: E731
    for loss_type in ("score_matching", "data_prediction"):
        model_fn = make_model_fn(apply_fn, flow, OutputSpec(backbone="ncsnpp_v2", loss_type=loss_type))
        np.testing.assert_allclose(model_fn(2.0, x0, y, t), apply_fn(2.0, x0, y, t), atol=1e-6)


def test_invalid_settings_raise():
    with pytest.raises(ValueError):
        OTFlow(start="clean")
    with pytest.raises(ValueError):
        make_flow_matching_loss_fn(lambda *a: None, OTFlow(), target="score")
    with pytest.raises(ValueError):
        make_flow_matching_loss_fn(lambda *a: None, OTFlow(), p_cond=1.5)
