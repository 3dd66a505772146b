"""STFT and spectrogram transforms against the PyTorch reference (torch.stft/istft)."""
import numpy as np
import pytest

from diffrestore.audio import PRESETS, SpectrogramConfig, pad_frames, spec_backward, spec_forward, stft, to_audio


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("preset", ["16k", "48k"])
def test_stft_and_transform_match_reference(sgmse_fixtures, preset):
    ref = np.load(sgmse_fixtures / f"stft_{preset}.npz")
    cfg = PRESETS[preset]
    X = stft(ref["wav"], cfg.n_fft, cfg.hop_length)
    assert X.shape == ref["stft"].shape
    assert _rel(X, ref["stft"]) <= 1e-5
    assert _rel(spec_forward(X, cfg), ref["spec"]) <= 1e-5
    back = to_audio(ref["spec"], cfg, length=ref["wav"].shape[0])
    assert back.shape == ref["wav_back"].shape
    assert _rel(back, ref["wav_back"]) <= 1e-5


@pytest.mark.parametrize("transform", ["exponent", "log", "none"])
def test_transforms_invert(transform):
    cfg = SpectrogramConfig(transform_type=transform, spec_abs_exponent=0.667, spec_factor=0.2)
    rng = np.random.default_rng(0)
    z = (rng.normal(size=(3, 16, 8)) + 1j * rng.normal(size=(3, 16, 8))).astype(np.complex64)
    z[0, 0, 0] = 0  # zero bins must stay finite
    assert np.allclose(spec_backward(spec_forward(z, cfg), cfg), z, atol=1e-5)


def test_pad_frames_modes():
    x = np.arange(10, dtype=np.complex64).reshape(1, 1, 10)
    assert pad_frames(x, 8).shape[-1] == 16
    assert np.all(np.asarray(pad_frames(x, 8, "zero"))[..., 10:] == 0)
    assert np.asarray(pad_frames(x, 8, "reflection"))[0, 0, 10] == 8
    assert pad_frames(x, 5).shape[-1] == 10


def test_non_finite_bins_are_not_silently_zeroed():
    cfg = PRESETS["16k"]
    z = np.array([1 + 1j, np.nan + 0j, 0j], np.complex64)
    out = np.asarray(spec_forward(z, cfg))
    assert np.isfinite(out[0]) and not np.isfinite(out[1]) and out[2] == 0


def test_stft_of_a_prefix_in_a_longer_buffer_equals_the_stft_of_the_signal():
    # Batched inference stores signals of many lengths in one buffer; the reflection at the
    # end must happen where each signal ends. Lengths around frame boundaries and the minimum.
    import jax

    from diffrestore.audio.stft import stft_of_prefix

    rng = np.random.default_rng(0)
    n_fft, hop, frames = 254, 64, 40
    buffer = rng.normal(size=frames * hop - 1).astype(np.float32)
    prefix_stft = jax.jit(lambda x, n: stft_of_prefix(x, n, n_fft, hop, num_frames=frames))
    for length in (n_fft // 2 + 1, 200, 64 * 7, 64 * 7 + 1, 64 * 20 - 1, frames * hop - 1):
        got = np.asarray(prefix_stft(buffer, np.int32(length)))
        want = np.asarray(stft(buffer[:length], n_fft, hop))
        valid = 1 + length // hop
        assert want.shape[-1] == valid
        np.testing.assert_allclose(got[:, :valid], want, atol=1e-5 * np.abs(want).max())
        assert np.all(got[:, valid:] == 0)


@pytest.mark.parametrize("mode", ["zero", "reflection", "replication"])
def test_frame_padding_of_a_prefix_equals_pad_frames(mode):
    import jax

    from diffrestore.audio.transforms import pad_frames_of_prefix

    x = (np.arange(3 * 64).reshape(3, 64) + 1j).astype(np.complex64)
    pad = jax.jit(lambda s, n: pad_frames_of_prefix(s, n, mode))
    for valid in (1, 2, 5, 31, 33, 64):  # 1 and 2 reflect more than once (numpy's periodic rule)
        want = np.pad(x[:, :valid], [(0, 0), (0, 64 - valid)],
                      mode={"zero": "constant", "reflection": "reflect", "replication": "edge"}[mode])
        np.testing.assert_array_equal(np.asarray(pad(x, np.int32(valid))), want)
        if valid > 1 or mode != "reflection":
            np.testing.assert_array_equal(want, np.asarray(pad_frames(x[:, :valid], mode=mode, size=64)))
