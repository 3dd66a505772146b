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
