"""`Prior.restore`: zero-shot restoration through the shared inference engine (tiny prior).

The tiny prior's weights are random: these tests check the machinery (lengths, rates, chunks,
batches, determinism, data consistency, errors), not restoration quality; the guided
sampler itself is checked against the reference in tests/test_guidance.py.
"""
import numpy as np
import pytest

from diffrestore import Prior

RATE = 22050


@pytest.fixture(scope="module")
def prior(tiny_prior_dir):
    return Prior.from_checkpoint(tiny_prior_dir)


def _music(seconds, seed=0, rate=RATE):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(0.1 / k * np.sin(2 * np.pi * 220 * k * t + rng.uniform(0, 6)) for k in range(1, 6))
    return (tone * np.exp(-t) + 0.005 * rng.standard_normal(t.size)).astype(np.float32)


def test_inpainting_keeps_the_observed_samples_through_chunks_and_batches(prior):
    # Buckets (2048, 4096, 8192) samples: a 0.3 s signal (6615 samples) in the 8192 bucket and a
    # 1.2 s one in 4 overlapping chunks of 8192: five rows, batches of 4 and 1.
    short, long = _music(0.3, 1), _music(1.2, 2)
    gaps = [(0.1, 0.15)]
    out = prior.restore([short, long], RATE, task="inpaint", gaps=gaps, batch_size=4, seed=3)
    assert [o.shape for o in out] == [short.shape, long.shape]
    assert prior.last_batches == [(8192, 4, 4), (8192, 1, 1)]
    for wave, restored in zip((short, long), out):
        observed = np.ones(wave.size, bool)
        observed[2205:3308] = False  # samples n with 0.1 <= n / 22050 < 0.15
        # Data consistency puts the observation back on every observed sample, chunk joins included.
        np.testing.assert_allclose(restored[observed], wave[observed], atol=1e-5)
        assert np.all(np.isfinite(restored)) and not np.allclose(restored[~observed], wave[~observed])
    # The same signal alone (same id) gives the same result: independent of its batch.
    again = prior.restore([long], RATE, task="inpaint", gaps=gaps, batch_size=4, seed=3, example_ids=[1])
    np.testing.assert_allclose(again[0], out[1], atol=1e-5)


def test_bandwidth_extension_at_another_rate_and_declipping(prior):
    wave = _music(0.25, 4, rate=44100)
    out = prior.restore([wave], 44100, task="bwe", cutoff_hz=3000, filter="cheby1", seed=0)
    assert out[0].shape == wave.shape and np.all(np.isfinite(out[0]))
    clipped = np.clip(_music(0.2, 5), -0.05, 0.05)
    a = prior.restore([clipped], RATE, task="declip", seed=1)  # clip level: the recording's peak
    b = prior.restore([clipped], RATE, task="declip", clip_level=0.05, seed=1)
    np.testing.assert_allclose(a[0], b[0], atol=1e-6)
    assert not np.allclose(prior.restore([clipped], RATE, task="declip", seed=2)[0], a[0])


@pytest.mark.parametrize("options,message", [
    (dict(task="bwe", cutoff_hz=20000), "Nyquist"),
    (dict(task="bwe", cutoff_hz=1000, filter="butter"), "unknown filter"),
    (dict(task="declip", clip_level=0.9), "above the signal's peak"),
    (dict(task="inpaint", gaps=[(2.0, 2.5)]), "signal 0: gap"),
    (dict(task="inpaint", gaps=[]), "needs gaps"),
    (dict(task="denoise"), "unknown task"),
    (dict(task="bwe", cutoff_hz=1000, corrector="ald"), "takes no option"),
])
def test_bad_task_options_are_clear_errors(prior, options, message):
    with pytest.raises(ValueError, match=message):
        prior.restore([_music(0.2)], RATE, **options)


def test_bad_signals_are_named(prior):
    with pytest.raises(ValueError, match="signal 1: contains NaN"):
        prior.restore([_music(0.2), np.full(3000, np.nan, np.float32)], RATE, task="inpaint", gaps=[(0.0, 0.01)])
    with pytest.raises(ValueError, match="signal 0: 100 samples .* shorter than the minimum 500"):
        prior.restore([np.ones(100, np.float32) * 0.1], RATE, task="bwe", cutoff_hz=2000)
