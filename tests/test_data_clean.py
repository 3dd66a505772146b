"""Clean-audio training data for unconditional priors (data.dataset="clean") and the synthetic music corpus."""
import json
import logging
import pathlib
import re

import numpy as np
import pytest
import soundfile as sf

from diffrestore.data import (
    DataError,
    crop_length,
    default_data_config,
    load_eval_pairs,
    load_eval_segments,
    make_train_dataset,
    make_train_iterator,
    write_synthetic_music,
)
from diffrestore.data import synthetic_music

RATE = 22050
SEGMENT = 2048


def _write(path, wave, rate=RATE, subtype="FLOAT"):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(wave, np.float32), rate, subtype=subtype)
    return path


def _config(root, **overrides):
    c = default_data_config()
    c.dataset = "clean"
    c.data_dir = str(root)
    c.sample_rate = RATE
    c.segment_length = SEGMENT
    c.normalize = "none"
    for key, value in overrides.items():
        setattr(c, key, value)
    return c


def _take(iterator, count):
    return [next(iterator) for _ in range(count)]


@pytest.fixture(scope="module")
def music(tmp_path_factory):
    """The synthetic music corpus in its train/valid/test layout (1 s files)."""
    root = tmp_path_factory.mktemp("music")
    summary = write_synthetic_music(root, num_train=4, num_valid=3, num_test=1, seconds=(0.5, 1.0), seed=2)
    return root, summary


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    """A flat folder (no train/): nested files of distinct random content, mono and stereo."""
    root = tmp_path_factory.mktemp("flat")
    rng = np.random.default_rng(0)
    waves = {}
    for name, n in (("a.wav", 5000), ("sub/b.flac", 3000), ("sub/deeper/c.wav", 9000)):
        waves[name] = (0.3 * rng.standard_normal(n)).astype(np.float32)
        _write(root / name, waves[name], subtype="FLOAT" if name.endswith(".wav") else "PCM_24")
    stereo = 0.3 * rng.standard_normal((4000, 2))
    _write(root / "stereo.wav", stereo)
    waves["stereo.wav"] = stereo.astype(np.float32).mean(axis=1)
    (root / "notes.txt").write_text("not audio")  # ignored
    # As the pipeline reads them: float32 samples, the channels' mean in float64, rounded to float32.
    return root, {k: sf.read(str(root / k), dtype="float32", always_2d=True)[0].mean(axis=1, dtype=np.float64).astype(np.float32)
                  for k in waves}


# ---------------------------------------------------------------------------------------------
# The training input


def test_segments_are_pieces_of_the_files_and_clean_only(flat):
    root, waves = flat
    cfg = _config(root)
    assert crop_length(cfg) == SEGMENT  # segment_length wins over num_frames * hop_length
    ds = make_train_dataset(cfg, global_batch_size=8, seed=0, with_info=True)
    batches = list(ds.take(2).as_numpy_iterator())
    assert set(next(make_train_iterator(cfg, global_batch_size=8, seed=0))) == {"clean"}  # no "noisy"
    names = sorted(waves)  # the source's file order: sorted relative paths
    for b in batches:
        assert b["clean"].shape == (8, SEGMENT) and b["clean"].dtype == np.float32
        for row in range(8):
            wave = waves[names[b["index"][row]]]
            start = int(b["start"][row])
            assert 0 <= start <= wave.shape[0] - SEGMENT
            np.testing.assert_array_equal(b["clean"][row], wave[start: start + SEGMENT])
    # Epoch order: every file once in each epoch of 4 examples.
    indices = np.concatenate([b["index"] for b in batches])
    assert sorted(indices[:4]) == [0, 1, 2, 3] and sorted(indices[4:8]) == [0, 1, 2, 3]


def test_batches_are_a_function_of_seed_and_step_and_split_over_processes(music):
    root, _ = music
    cfg = _config(root)
    run = _take(make_train_iterator(cfg, global_batch_size=4, seed=3), 4)
    resumed = _take(make_train_iterator(cfg, global_batch_size=4, seed=3, start_step=2), 2)
    for k in (2, 3):
        np.testing.assert_array_equal(run[k]["clean"], resumed[k - 2]["clean"])
    assert not np.array_equal(run[0]["clean"], run[1]["clean"])
    parts = [_take(make_train_iterator(cfg, global_batch_size=4, seed=3, start_step=2, process_index=p, process_count=2), 2)
             for p in range(2)]
    for k in range(2):
        assert parts[0][k]["clean"].shape == (2, SEGMENT)
        np.testing.assert_array_equal(np.concatenate([p[k]["clean"] for p in parts]), run[2 + k]["clean"])


def test_train_subfolder_is_used_and_validation_segments_are_fixed(music):
    root, summary = music
    cfg = _config(root)
    ds = make_train_dataset(cfg, global_batch_size=8, seed=1, with_info=True)
    indices = np.concatenate([b["index"] for b in ds.take(2).as_numpy_iterator()])
    assert set(indices) == {0, 1, 2, 3}  # the 4 files of train/, none of valid/ or test/

    segments = load_eval_segments(cfg, "valid", num_segments=2)
    assert segments.shape == (2, SEGMENT) and segments.dtype == np.float32
    # From files spread over the sorted subset (the first and the last), the middle of each.
    for segment, name in zip(segments, ["valid_00000.wav", "valid_00002.wav"]):
        wave = sf.read(str(root / "valid" / name), dtype="float32")[0]
        start = (wave.shape[0] - SEGMENT) // 2
        np.testing.assert_array_equal(segment, wave[start: start + SEGMENT])
    np.testing.assert_array_equal(load_eval_segments(cfg, "valid", num_segments=2), segments)
    assert load_eval_segments(cfg, "valid", num_segments=10).shape == (3, SEGMENT)  # as many as there are files
    assert load_eval_segments(cfg, "valid", 1, length=4000).shape == (1, 4000)
    with pytest.raises(ValueError, match="load_eval_segments"):
        load_eval_pairs(cfg, "valid")


def test_a_flat_folder_is_all_training_data(flat, tmp_path, caplog):
    root, _ = flat
    with caplog.at_level(logging.WARNING, logger="diffrestore.data"):
        assert load_eval_segments(_config(root), "valid").shape == (0, SEGMENT)
    assert "no valid folder" in caplog.text
    _write(tmp_path / "train" / "t.wav", np.full(3000, 0.5))
    _write(tmp_path / "validation" / "v.wav", np.full(3000, 0.25))
    (segment,) = load_eval_segments(_config(tmp_path), "valid")  # validation/ is accepted for valid/
    np.testing.assert_allclose(segment, 0.25)
    (tmp_path / "train" / "t.wav").unlink()
    (tmp_path / "train").rmdir()
    with pytest.raises(DataError, match="but no train/"):  # not silently training on the validation files
        make_train_iterator(_config(tmp_path), global_batch_size=2, seed=0)


def test_resampling_keeps_the_frequency_and_memory_equals_disk(tmp_path):
    # 44.1 kHz stereo and 48 kHz mono sines: at 22.05 kHz they must still be 1000 Hz and 1500 Hz.
    t44 = np.arange(44100) / 44100
    sine = np.sin(2 * np.pi * 1000 * t44)
    _write(tmp_path / "train" / "a44k.wav", np.stack([0.8 * sine, 0.4 * sine], axis=1), rate=44100)
    t48 = np.arange(48000) / 48000
    _write(tmp_path / "train" / "b48k.wav", 0.5 * np.sin(2 * np.pi * 1500 * t48), rate=48000, subtype="PCM_16")
    length = 8192
    cfg = _config(tmp_path, segment_length=length)
    ds = make_train_dataset(cfg, global_batch_size=4, seed=0, with_info=True)
    batch = next(ds.as_numpy_iterator())
    from_disk = next(make_train_iterator(_config(tmp_path, segment_length=length, preload_max_mb=0), global_batch_size=4, seed=0))
    np.testing.assert_allclose(from_disk["clean"], batch["clean"], atol=1e-6)
    window = np.hanning(length)
    for row in range(4):
        segment = batch["clean"][row]
        spectrum = np.abs(np.fft.rfft(segment * window, 8 * length))
        peak_hz = np.argmax(spectrum) * RATE / (8 * length)
        expected, amplitude = ((1000.0, 0.6), (1500.0, 0.5))[int(batch["index"][row])]  # stereo: mean of 0.8 and 0.4
        assert abs(peak_hz - expected) < 1.0, (row, peak_hz)
        assert np.max(np.abs(segment)) == pytest.approx(amplitude, rel=0.01)
    assert load_eval_segments(cfg, "train", num_segments=2).shape == (2, length)


def test_short_files_are_skipped_or_centred_in_zeros(tmp_path, caplog):
    rng = np.random.default_rng(1)
    long_wave = 0.5 + 0.1 * rng.uniform(size=5000)  # never zero
    short_wave = 0.3 + 0.1 * rng.uniform(size=1001)
    _write(tmp_path / "long.wav", long_wave)
    _write(tmp_path / "short.wav", short_wave)
    with caplog.at_level(logging.WARNING, logger="diffrestore.data"):
        ds = make_train_dataset(_config(tmp_path), global_batch_size=4, seed=0, with_info=True)
    assert "skipping 1 of 2 files" in caplog.text and "short.wav" in caplog.text
    batch = next(ds.as_numpy_iterator())
    assert set(batch["index"]) == {0}  # only long.wav is left
    assert np.all(batch["clean"] > 0.4)  # no padding, no samples of short.wav

    ds = make_train_dataset(_config(tmp_path, short_files="pad"), global_batch_size=4, seed=0, with_info=True)
    batch = next(ds.as_numpy_iterator())
    pad = SEGMENT - 1001
    expected = np.concatenate([np.zeros(pad // 2), short_wave, np.zeros(pad - pad // 2)]).astype(np.float32)
    rows = np.flatnonzero(batch["index"] == 1)
    assert rows.size == 2  # both files in each epoch
    for row in rows:
        np.testing.assert_allclose(batch["clean"][row], expected, atol=1e-7)

    (tmp_path / "long.wav").unlink()
    with pytest.raises(DataError, match="short_files='pad'"):
        make_train_iterator(_config(tmp_path), global_batch_size=4, seed=0)


def _break_unreadable(root):
    path = root / "sub" / "broken.wav"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(b"RIFF but not really a wav file")
    return path, "not a readable audio file"


def _break_empty(root):
    return _write(root / "sub" / "empty.wav", np.zeros(0)), "no samples"


def _break_nan(root):
    wave = np.full(5000, 0.1)
    wave[[1234, 3000]] = np.nan  # every segment of 2048 holds one
    return _write(root / "sub" / "nan.wav", wave), "NaN"


@pytest.mark.parametrize("preload_max_mb", [4096.0, 0.0])
@pytest.mark.parametrize("breaker", [_break_unreadable, _break_empty, _break_nan])
def test_broken_files_are_named(tmp_path, breaker, preload_max_mb):
    _write(tmp_path / "good.wav", np.full(5000, 0.1))
    cfg = _config(tmp_path, preload_max_mb=preload_max_mb)
    next(make_train_iterator(cfg, global_batch_size=2, seed=0))  # fine before
    path, reason = breaker(tmp_path)
    # From disk, NaNs are found when a segment holds them: in the first epoch of 2 files.
    with pytest.raises(Exception, match=reason) as err:
        _take(make_train_iterator(cfg, global_batch_size=2, seed=0), 1)
    assert str(path) in str(err.value)


def test_empty_and_missing_folders_are_named(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "readme.txt").write_text("no audio here")
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'train'}: no audio files")):
        make_train_iterator(_config(tmp_path), global_batch_size=2, seed=0)
    with pytest.raises(DataError, match="no such folder"):
        make_train_iterator(_config(tmp_path / "nowhere"), global_batch_size=2, seed=0)


def test_normalisation_modes(flat):
    root, _ = flat
    with pytest.raises(ValueError, match="normalize='none'"):
        make_train_iterator(_config(root, normalize="noisy"), global_batch_size=2, seed=0)
    raw = next(make_train_iterator(_config(root), global_batch_size=4, seed=5))["clean"]
    peak = next(make_train_iterator(_config(root, normalize="clean"), global_batch_size=4, seed=5))["clean"]
    np.testing.assert_allclose(np.max(np.abs(peak), axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(peak * np.max(np.abs(raw), axis=1, keepdims=True), raw, atol=1e-6)
    with pytest.raises(ValueError, match="short_files"):
        make_train_iterator(_config(root, short_files="loop"), global_batch_size=2, seed=0)


# ---------------------------------------------------------------------------------------------
# Synthetic music


def test_synthetic_music_layout_rates_determinism_and_no_clipping(tmp_path, music):
    root, summary = music
    assert json.loads((root / "synthetic_music.json").read_text()) == json.loads(json.dumps(summary))
    for subset, count in (("train", 4), ("valid", 3), ("test", 1)):
        assert len(sorted((root / subset).glob("*.wav"))) == count
    for entry in summary["files"]:
        wave, rate = sf.read(str(root / entry["subset"] / entry["relpath"]))
        assert rate == RATE and wave.ndim == 1
        assert wave.shape[0] == pytest.approx(entry["seconds"] * RATE, abs=1) and 0.5 * RATE <= wave.shape[0] <= RATE
        assert np.max(np.abs(wave)) == pytest.approx(entry["peak"], abs=1e-4) and entry["peak"] <= 0.9  # no clipping
        assert np.std(wave) > 0.02  # music, not silence
    again = write_synthetic_music(tmp_path / "again", num_train=2, num_valid=0, num_test=0, seconds=(0.5, 1.0), seed=2)
    other = write_synthetic_music(tmp_path / "other", num_train=1, num_valid=0, num_test=0, seconds=(0.5, 1.0), seed=3, sample_rate=16000)
    assert (tmp_path / "again" / "train" / "train_00001.wav").read_bytes() == (root / "train" / "train_00001.wav").read_bytes()
    assert again["files"][0]["tempo_bpm"] == summary["files"][0]["tempo_bpm"]
    assert sf.info(str(tmp_path / "other" / "train" / "train_00000.wav")).samplerate == 16000
    assert other["files"][0]["tempo_bpm"] != summary["files"][0]["tempo_bpm"]


def test_piano_note_partials_are_inharmonic_and_high_ones_decay_faster():
    f0, b = 220.0, 4e-4
    note = synthetic_music.piano_note(f0, sample_rate=RATE, duration=1.0, velocity=0.8, inharmonicity=b, rng=np.random.default_rng(0))
    assert np.all(np.isfinite(note)) and np.max(np.abs(note)) == pytest.approx(0.8)
    spectrum = np.abs(np.fft.rfft(note * np.hanning(note.shape[0]), 4 * note.shape[0]))
    freqs = np.fft.rfftfreq(4 * note.shape[0], 1.0 / RATE)
    expected = synthetic_music.partial_frequencies(f0, b, 0.45 * RATE)
    for k, fk in enumerate(expected[:12], start=1):
        np.testing.assert_allclose(fk, k * f0 * np.sqrt(1 + b * k * k))
        band = np.abs(freqs - fk) < 0.3 * f0  # holds k f0 too: the peak must be the stretched partial
        assert abs(freqs[band][np.argmax(spectrum[band])] - fk) < 1.0, k
        assert spectrum[band].max() > 30 * np.median(spectrum[band]), k  # a peak, not noise
    assert expected[9] - 10 * f0 > 40  # the 10th partial is 43 Hz above the harmonic one

    # Partial 1 keeps more of its level over the note than partial 12 does (tau_12 = tau_1 / 4.3).
    def level(partial, start, stop):
        seg = note[int(start * RATE): int(stop * RATE)]
        spec = np.abs(np.fft.rfft(seg * np.hanning(seg.shape[0])))
        f = np.fft.rfftfreq(seg.shape[0], 1.0 / RATE)
        return spec[np.abs(f - expected[partial - 1]) < 20].max()

    decay_1 = level(1, 0.6, 0.9) / level(1, 0.0, 0.3)
    decay_12 = level(12, 0.6, 0.9) / level(12, 0.0, 0.3)
    assert decay_12 < 0.7 * decay_1 < 0.7
