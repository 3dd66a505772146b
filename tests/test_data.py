"""Training data: pairing, the step-indexed tf.data pipeline, on-the-fly mixing, synthetic corpus."""
import json
import pathlib
import random
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from diffrestore.data import (
    DataError,
    crop_length,
    default_data_config,
    find_pairs,
    load_eval_pairs,
    make_train_dataset,
    make_train_iterator,
    write_synthetic_corpus,
)
from diffrestore.data import mixing, synthetic

RATE = 16000


def _write(path, wave, rate=RATE, subtype="PCM_16"):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(wave, np.float32), rate, subtype=subtype)


def _config(root, **overrides):
    c = default_data_config()
    c.data_dir = str(root)
    c.num_frames = 17  # crop of 16 * 128 = 2048 samples
    for key, value in overrides.items():
        setattr(c, key, value)
    return c


def _take(iterator, count):
    return [next(iterator) for _ in range(count)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    summary = write_synthetic_corpus(root, num_train=12, num_valid=3, num_test=2, seconds=(0.4, 1.0), snr_db=(0, 15), seed=3)
    return root, summary


# ---------------------------------------------------------------------------------------------
# Pairing


def _paired_folder(root, names, *, noisy_ext=".wav", rng=None):
    """clean/noisy files with distinct random content; noisy = clean + a little noise."""
    rng = rng or np.random.default_rng(0)
    for name in names:
        clean = 0.3 * rng.standard_normal(4000)
        _write(root / "train" / "clean" / f"{name}.wav", clean)
        _write(root / "train" / "noisy" / f"{name}{noisy_ext}", clean + 0.01 * rng.standard_normal(4000))


def test_pairs_by_relative_path_whatever_the_listing_order(tmp_path, monkeypatch):
    names = ["b", "a", "sub/c", "sub/deeper/a", "z_last"]
    _paired_folder(tmp_path, names, noisy_ext=".flac")  # extensions differ: paired by name
    expected = find_pairs(tmp_path, "train")
    assert [p.relpath for p in expected] == sorted(f"{n}.flac" for n in names)

    original = pathlib.Path.rglob
    monkeypatch.setattr(pathlib.Path, "rglob", lambda self, pattern: random.Random(1).sample(list(original(self, pattern)), k=len(list(original(self, pattern)))))
    pairs = find_pairs(tmp_path, "train")
    assert pairs == expected
    for pair in pairs:
        clean, _ = sf.read(pair.clean)
        noisy, _ = sf.read(pair.noisy)
        assert np.corrcoef(clean, noisy)[0, 1] > 0.99, pair  # the right partner, not a neighbour
        assert pair.clean.relative_to(tmp_path / "train" / "clean").with_suffix("") == pair.noisy.relative_to(tmp_path / "train" / "noisy").with_suffix("")
        assert pair.num_samples == 4000


def test_ears_naming_strips_the_snr_suffix(tmp_path):
    rng = np.random.default_rng(0)
    for rel in ("p001/00001", "p001/00002", "p002/00001"):
        _write(tmp_path / "train" / "clean" / f"{rel}.wav", rng.standard_normal(800) * 0.1)
    for rel in ("p001/00001_3.4dB", "p001/00002_-2dB", "p002/00001_10.0dB", "p002/00001_+1.5dB"):
        _write(tmp_path / "train" / "noisy" / f"{rel}.wav", rng.standard_normal(800) * 0.1)
    pairs = find_pairs(tmp_path, "train", layout="ears")
    got = {p.relpath: p.clean.relative_to(tmp_path / "train" / "clean").as_posix() for p in pairs}
    assert got == {
        "p001/00001_3.4dB.wav": "p001/00001.wav",
        "p001/00002_-2dB.wav": "p001/00002.wav",
        "p002/00001_+1.5dB.wav": "p002/00001.wav",
        "p002/00001_10.0dB.wav": "p002/00001.wav",
    }
    with pytest.raises(DataError, match="00001_3.4dB"):  # the default layout does not strip it
        find_pairs(tmp_path, "train")


def test_reverb_layout_accepts_anechoic(tmp_path):
    _write(tmp_path / "valid" / "anechoic" / "x.wav", np.ones(100) * 0.1)
    _write(tmp_path / "valid" / "reverb" / "x.wav", np.ones(100) * 0.2)
    (pair,) = find_pairs(tmp_path, "valid", layout="reverb")
    assert pair.clean.parent.name == "anechoic" and pair.noisy.parent.name == "reverb"


def _break_unpaired_noisy(root):
    _write(root / "train" / "noisy" / "extra.wav", np.zeros(4000))
    return "extra.wav", {}


def _break_unpaired_clean(root):
    _write(root / "train" / "clean" / "orphan.wav", np.zeros(4000))
    return "orphan.wav", {}


def _break_rate_in_pair(root):
    _write(root / "train" / "noisy" / "a.wav", np.zeros(4000), rate=8000)
    return "a.wav", {}


def _break_rate_vs_config(root):
    return "16000 Hz, the config says 22050", {"sample_rate": 22050}


def _break_unreadable(root):
    (root / "train" / "noisy" / "a.wav").write_bytes(b"this is not a wav file")
    return "a.wav", {}


def _break_empty(root):
    _write(root / "train" / "clean" / "a.wav", np.zeros(0))
    return "a.wav: the file has no samples", {}


def _break_length(root):
    _write(root / "train" / "noisy" / "a.wav", np.zeros(3999))
    return "lengths differ", {}


@pytest.mark.parametrize("breaker", [_break_unpaired_noisy, _break_unpaired_clean, _break_rate_in_pair, _break_rate_vs_config,
                                     _break_unreadable, _break_empty, _break_length])
def test_bad_corpora_raise_data_error_naming_the_file(tmp_path, breaker):
    _paired_folder(tmp_path, ["a", "b"])
    find_pairs(tmp_path, "train", sample_rate=RATE)  # fine before
    expected, kwargs = breaker(tmp_path)
    with pytest.raises(DataError, match=expected.replace(".", r"\.")) as err:
        find_pairs(tmp_path, "train", sample_rate=kwargs.get("sample_rate", RATE))
    assert isinstance(err.value, ValueError)
    assert str(tmp_path) in str(err.value)  # the full path, so the file can be found


def test_missing_subset_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="valid"):
        find_pairs(tmp_path, "valid")


# ---------------------------------------------------------------------------------------------
# The training pipeline


def test_batches_are_a_function_of_seed_and_step(corpus):
    root, _ = corpus
    cfg = _config(root)
    run = _take(make_train_iterator(cfg, global_batch_size=4, seed=7), 5)
    resumed = _take(make_train_iterator(cfg, global_batch_size=4, seed=7, start_step=3), 2)
    for k in (3, 4):
        for key in ("clean", "noisy"):
            np.testing.assert_array_equal(run[k][key], resumed[k - 3][key])
    other_seed = next(make_train_iterator(cfg, global_batch_size=4, seed=8))
    assert not np.array_equal(other_seed["noisy"], run[0]["noisy"])
    assert not np.array_equal(run[0]["noisy"], run[1]["noisy"])  # steps differ too


def test_process_slices_concatenate_to_the_global_batch(corpus):
    root, _ = corpus
    cfg = _config(root)
    whole = _take(make_train_iterator(cfg, global_batch_size=6, seed=1, start_step=2), 2)
    parts = [_take(make_train_iterator(cfg, global_batch_size=6, seed=1, start_step=2, process_index=p, process_count=3), 2) for p in range(3)]
    for step in range(2):
        for key in ("clean", "noisy"):
            assert parts[0][step][key].shape == (2, crop_length(cfg))
            np.testing.assert_array_equal(np.concatenate([p[step][key] for p in parts]), whole[step][key])
    with pytest.raises(ValueError, match="does not split over 4 processes"):
        make_train_iterator(cfg, global_batch_size=6, seed=1, process_index=0, process_count=4)


def test_shapes_normalisation_and_aligned_crops(corpus):
    root, _ = corpus
    cfg = _config(root)
    length = crop_length(cfg)
    assert length == 2048
    batch = next(make_train_iterator(cfg, global_batch_size=8, seed=0, start_step=5))
    assert set(batch) == {"clean", "noisy"}
    for key in ("clean", "noisy"):
        assert batch[key].shape == (8, length) and batch[key].dtype == np.float32
    np.testing.assert_array_equal(np.max(np.abs(batch["noisy"]), axis=1), np.ones(8, np.float32))

    from scipy.signal import correlate

    pairs = find_pairs(root, "train")
    files = [(sf.read(p.clean, dtype="float32")[0], sf.read(p.noisy, dtype="float32")[0]) for p in pairs]
    for clean_crop, noisy_crop in zip(batch["clean"], batch["noisy"]):
        # Search every training file for the noisy crop (up to the normalisation factor) ...
        best = None
        for f, (clean, noisy) in enumerate(files):
            energy = np.cumsum(np.concatenate([[0.0], noisy.astype(np.float64) ** 2]))
            window_norms = np.sqrt(np.maximum(energy[length:] - energy[:-length], 0.0))
            score = correlate(noisy, noisy_crop, mode="valid", method="fft") / (window_norms * np.linalg.norm(noisy_crop) + 1e-12)
            o = int(np.argmax(score))
            if best is None or score[o] > best[0]:
                best = (score[o], f, o)
        score, f, o = best
        assert score > 0.9999
        clean, noisy = files[f]
        factor = np.max(np.abs(noisy[o: o + length]))  # the noisy peak of the crop
        np.testing.assert_allclose(noisy_crop * factor, noisy[o: o + length], atol=1e-6)
        # ... and the clean crop is at the same offset of the partner file.
        np.testing.assert_allclose(clean_crop * factor, clean[o: o + length], atol=1e-6)


def test_short_files_are_centred_in_zeros_and_normalise_modes(tmp_path):
    rng = np.random.default_rng(0)
    clean = 0.5 * rng.standard_normal(1001)
    _write(tmp_path / "train" / "clean" / "short.wav", clean, subtype="FLOAT")
    _write(tmp_path / "train" / "noisy" / "short.wav", 0.5 * clean, subtype="FLOAT")
    length = 2048
    pad = length - 1001
    for mode, factor in (("noisy", np.max(np.abs(0.5 * clean))), ("clean", np.max(np.abs(clean))), ("none", 1.0)):
        batch = next(make_train_iterator(_config(tmp_path, normalize=mode), global_batch_size=2, seed=0))
        expected = np.concatenate([np.zeros(pad // 2), clean, np.zeros(pad - pad // 2)]) / factor
        for row in range(2):
            np.testing.assert_allclose(batch["clean"][row], expected, rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(batch["noisy"][row], 0.5 * expected, rtol=1e-6, atol=1e-7)


def test_epochs_visit_every_file_once(corpus):
    root, _ = corpus
    ds = make_train_dataset(_config(root), global_batch_size=4, seed=5, with_info=True)
    indices = np.concatenate([b["index"] for b in ds.take(6).as_numpy_iterator()])  # 24 examples = 2 epochs of 12
    assert sorted(indices[:12]) == list(range(12)) and sorted(indices[12:]) == list(range(12))
    assert list(indices[:12]) != list(indices[12:])  # a fresh order each epoch


def test_memory_and_disk_reading_give_the_same_batches(corpus):
    root, _ = corpus
    in_memory = _take(make_train_iterator(_config(root), global_batch_size=4, seed=2), 2)
    from_disk = _take(make_train_iterator(_config(root, preload_max_mb=0), global_batch_size=4, seed=2), 2)
    for a, b in zip(in_memory, from_disk):
        for key in ("clean", "noisy"):
            np.testing.assert_array_equal(a[key], b[key])


def test_config_errors_are_clear(corpus):
    root, _ = corpus
    with pytest.raises(ValueError, match="normalize"):
        make_train_iterator(_config(root, normalize="peak"), global_batch_size=2, seed=0)
    with pytest.raises(ValueError, match="dataset"):
        make_train_iterator(_config(root, dataset="csv"), global_batch_size=2, seed=0)
    with pytest.raises(DataError, match="16000 Hz, the config says 8000"):
        make_train_iterator(_config(root, sample_rate=8000), global_batch_size=2, seed=0)


def test_eval_pairs_are_full_files(corpus):
    root, _ = corpus
    pairs = load_eval_pairs(_config(root), "valid")
    assert len(pairs) == 3 and [p.relpath for p in pairs] == sorted(p.relpath for p in pairs)
    for pair in pairs:
        np.testing.assert_array_equal(pair.clean, sf.read(pair.clean_path, dtype="float32")[0])
        np.testing.assert_array_equal(pair.noisy, sf.read(pair.noisy_path, dtype="float32")[0])


def test_import_does_not_load_tensorflow():
    code = "import sys, diffrestore.data; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------
# On-the-fly mixing


@pytest.fixture(scope="module")
def mix_dirs(tmp_path_factory, corpus):
    root, _ = corpus
    base = tmp_path_factory.mktemp("mix")
    speech = base / "speech"
    for subset in ("train", "valid"):
        for pair in find_pairs(root, subset):
            _write(speech / subset / pair.relpath, sf.read(pair.clean)[0])
    rng = np.random.default_rng(0)
    noise = base / "noise"
    _write(noise / "white.wav", 0.1 * rng.standard_normal(RATE))
    _write(noise / "hum.flac", 0.1 * synthetic.noise(rng, "hum", RATE // 2, RATE))
    _write(noise / "short.wav", 0.1 * rng.standard_normal(1000))  # shorter than a crop: looped
    rirs = base / "rirs"
    for k in range(3):
        delay = 20 + 10 * k
        rir = np.zeros(2000)
        rir[delay:] = 0.3 * rng.standard_normal(2000 - delay) * np.exp(-np.arange(2000 - delay) / 300)
        rir[delay] = 0.9
        _write(rirs / f"room{k}.wav", rir, subtype="FLOAT")
    return speech, noise, rirs


def _mix_config(mix_dirs, **overrides):
    speech, noise, rirs = mix_dirs
    return _config(speech, dataset="mix", noise_dir=str(noise), snr_db=(-5.0, 15.0), num_frames=65, **overrides)


def _realised_snr(clean, noisy):
    noise = noisy.astype(np.float64) - clean.astype(np.float64)
    return 10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / np.sum(noise**2))


@pytest.mark.parametrize("with_rir", [False, True])
def test_mixing_realises_the_drawn_snr(mix_dirs, with_rir):
    extra = {"rir_dir": str(mix_dirs[2]), "mix_target": "reverberant"} if with_rir else {}
    ds = make_train_dataset(_mix_config(mix_dirs, **extra), global_batch_size=8, seed=0, with_info=True)
    batches = list(ds.take(3).as_numpy_iterator())
    for b in batches:
        for row in range(8):
            assert abs(_realised_snr(b["clean"][row], b["noisy"][row]) - b["snr_db"][row]) < 0.1
    snrs = np.concatenate([b["snr_db"] for b in batches])
    assert snrs.min() >= -5 and snrs.max() <= 15 and snrs.std() > 2  # drawn, not constant
    assert len(set(np.concatenate([b["noise_index"] for b in batches]))) == 3
    if with_rir:
        assert set(np.concatenate([b["rir_index"] for b in batches])) <= {0, 1, 2}


def test_dry_target_with_rir_is_the_aligned_clean_crop(mix_dirs):
    cfg = _mix_config(mix_dirs, rir_dir=str(mix_dirs[2]), mix_target="dry", normalize="none")
    batch = next(make_train_dataset(cfg, global_batch_size=4, seed=3, with_info=True).as_numpy_iterator())
    speech_files = sorted((mix_dirs[0] / "train").rglob("*.wav"))
    length = crop_length(cfg)
    for row in range(4):
        wave = sf.read(speech_files[batch["index"][row]], dtype="float32")[0]
        start = batch["start"][row]
        expected = np.zeros(length, np.float32)
        lo, hi = max(start, 0), min(start + length, wave.shape[0])
        expected[lo - start: hi - start] = wave[lo:hi]
        np.testing.assert_array_equal(batch["clean"][row], expected)
        assert not np.allclose(batch["noisy"][row], batch["clean"][row], atol=1e-3)


def test_tf_reverberation_matches_numpy():
    from diffrestore.data._tf import import_tf

    tf = import_tf()
    rng = np.random.default_rng(0)
    speech = rng.standard_normal(3000).astype(np.float32)
    rir = mixing.prepare_rir(np.concatenate([np.zeros(7), [-0.5], 0.05 * rng.standard_normal(300)]), max_samples=200)
    assert rir.shape == (200,) and rir[0] == 1.0
    start, length = 1000, 1500
    extended = speech[start - 199: start + length]
    got = mixing.tf_reverberate_valid(tf, tf.constant(extended), tf.constant(rir), length).numpy()
    full = mixing.reverberate(speech, rir)
    np.testing.assert_allclose(got, full[start: start + length], atol=1e-4)


def test_numpy_mix_realises_the_snr():
    rng = np.random.default_rng(0)
    clean = rng.standard_normal(5000)
    target, noisy = mixing.mix_example(clean, rng.standard_normal(5000) * 3, 7.5)
    assert abs(_realised_snr(target, noisy) - 7.5) < 0.01


def test_mix_eval_pairs_are_fixed_mixtures(mix_dirs):
    cfg = _mix_config(mix_dirs)
    first, again = load_eval_pairs(cfg, "valid"), load_eval_pairs(cfg, "valid")
    assert len(first) == 3
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.noisy, b.noisy)
        assert a.clean.shape == a.noisy.shape == (sf.info(a.clean_path).frames,)
        assert abs(_realised_snr(a.clean, a.noisy) - a.snr_db) < 0.1
    flat = _config(mix_dirs[1], dataset="mix", noise_dir=str(mix_dirs[1]))  # a flat speech folder
    with pytest.raises(DataError, match="no valid/ subfolder"):
        load_eval_pairs(flat, "valid")


# ---------------------------------------------------------------------------------------------
# Synthetic corpus


def _autocorrelation_peak(frame, rate, low_hz=70, high_hz=400):
    frame = frame - frame.mean()
    ac = np.correlate(frame, frame, "full")[frame.shape[0] - 1:]
    ac /= ac[0] + 1e-12
    return ac[int(rate / high_hz): int(rate / low_hz) + 1].max()


def test_synthetic_corpus_layout_determinism_voicing_and_snr(tmp_path, corpus):
    root, summary = corpus
    for subset, count in (("train", 12), ("valid", 3), ("test", 2)):
        assert len(find_pairs(root, subset, sample_rate=RATE)) == count
    assert json.loads((root / "synthetic_corpus.json").read_text()) == json.loads(json.dumps(summary))

    write_synthetic_corpus(tmp_path / "again", num_train=12, num_valid=0, num_test=0, seconds=(0.4, 1.0), snr_db=(0, 15), seed=3)
    other = write_synthetic_corpus(tmp_path / "other", num_train=1, num_valid=0, num_test=0, seconds=(0.4, 1.0), snr_db=(0, 15), seed=4)
    first = summary["files"][0]["relpath"]
    assert (root / "train" / "noisy" / first).read_bytes() == (tmp_path / "again" / "train" / "noisy" / first).read_bytes()
    assert (root / "train" / "clean" / first).read_bytes() != (tmp_path / "other" / "train" / "clean" / other["files"][0]["relpath"]).read_bytes()

    voiced = []
    for entry in summary["files"]:
        if entry["subset"] != "train":
            continue
        clean = sf.read(root / "train" / "clean" / entry["relpath"])[0]
        noisy = sf.read(root / "train" / "noisy" / entry["relpath"])[0]
        assert abs(_realised_snr(clean, noisy) - entry["snr_db"]) < 0.1
        frames = np.lib.stride_tricks.sliding_window_view(clean, 640)[::320]  # 40 ms
        energy = np.sum(frames**2, axis=1)
        loud = frames[energy > 0.3 * energy.max()]
        voiced.append(np.median([_autocorrelation_peak(f, RATE) for f in loud]))
    assert np.median(voiced) > 0.6  # periodic at a pitch lag in the loud frames
    white = np.random.default_rng(0).standard_normal(640)
    assert _autocorrelation_peak(white, RATE) < 0.3  # the measure is not trivially high
    kinds = {f["noise"] for f in summary["files"]}
    assert len(kinds) >= 4


def test_synthetic_noises_are_distinct_and_finite():
    rng = np.random.default_rng(0)
    spectra = {}
    for kind in synthetic.NOISE_TYPES:
        x = synthetic.noise(rng, kind, RATE, RATE)
        assert x.shape == (RATE,) and np.all(np.isfinite(x)) and np.std(x) > 0
        spectrum = np.abs(np.fft.rfft(x)) ** 2
        spectra[kind] = np.sum(spectrum[:250]) / np.sum(spectrum)  # share of power below 250 Hz
    assert spectra["brown"] > spectra["pink"] > spectra["white"]
    assert spectra["hum"] > 0.8  # mains harmonics below 250 Hz carry most of its power


def test_short_synthetic_speech_is_never_silent():
    for seed in range(40):
        x = synthetic.speech_like(np.random.default_rng(seed), 1600, RATE)  # 100 ms
        assert np.all(np.isfinite(x)) and np.max(np.abs(x)) == pytest.approx(1.0)
