"""What the enhance/restore entry points accept as signals (`inference.as_signals`)."""
import numpy as np
import pytest

from diffrestore.inference import as_signals


def test_one_array_or_a_list():
    signals, single = as_signals(np.zeros(8))
    assert single and len(signals) == 1 and signals[0].dtype == np.float32
    signals, single = as_signals([np.zeros(8), np.ones(5, np.float64)])
    assert not single and [s.shape for s in signals] == [(8,), (5,)]
    assert all(s.dtype == np.float32 for s in signals)


def test_integer_pcm_is_scaled_as_soundfile_reads_it():
    (x,), _ = as_signals(np.array([-32768, 0, 16384, 32767], np.int16))
    np.testing.assert_allclose(x, [-1.0, 0.0, 0.5, 32767 / 32768])
    (x,), _ = as_signals(np.array([-2**31, 2**30], np.int32))
    np.testing.assert_allclose(x, [-1.0, 0.5])
    (x,), _ = as_signals(np.array([0, 128, 192], np.uint8))  # 8-bit WAV is unsigned, centred on 128
    np.testing.assert_allclose(x, [-1.0, 0.0, 0.5])


@pytest.mark.parametrize("waves,message", [
    (np.zeros((2, 8)), "one 1-D array per channel"),
    ([np.zeros(4), np.zeros((2, 4))], r"signal 1: expected a 1-D array, got shape \(2, 4\)"),
    ([np.zeros(4), np.array([])], "signal 1: is empty"),
    ([np.array([0.0, np.nan])], "signal 0: contains NaN"),
    ([np.array([True, False])], "signal 0: samples must be real"),
    ([np.array([1j, 0])], "signal 0: samples must be real"),
    ("speech.wav", "load the file first"),
])
def test_bad_signals_are_named(waves, message):
    with pytest.raises(ValueError, match=message):
        as_signals(waves)
