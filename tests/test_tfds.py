"""TFDS builders on a tiny fake manual directory (nothing is downloaded), and the "tfds" pipeline."""
import logging
import shutil

import numpy as np
import pytest
import soundfile as sf

from diffrestore.data import DataError, crop_length, default_data_config, load_eval_pairs, make_train_iterator, write_synthetic_corpus

tfds_builders = pytest.importorskip("diffrestore.data.tfds_builders")
tfds = tfds_builders.tfds

VB_NAMES = {"train": ["p226_001", "p226_002", "p287_010"], "test": ["p232_001", "p257_003"]}


def _fake_voicebank(root):
    """The four DataShare folders at 48 kHz: training folders under a parent folder, test
    folders as zips (both ways people keep them)."""
    rng = np.random.default_rng(0)
    for split, names in VB_NAMES.items():
        clean_name, noisy_name = tfds_builders.VOICEBANK_FOLDERS[split]
        parent = root / "DS_10283_2791" if split == "train" else root / "unzipped"
        for name in names:
            clean = 0.2 * np.sin(2 * np.pi * 220 * np.arange(48000 + 4800 * len(name) % 7) / 48000)
            noisy = clean + 0.02 * rng.standard_normal(clean.shape[0])
            for folder, wave in ((clean_name, clean), (noisy_name, noisy)):
                (parent / folder).mkdir(parents=True, exist_ok=True)
                sf.write(str(parent / folder / f"{name}.wav"), wave, 48000, subtype="PCM_16")
    for folder in tfds_builders.VOICEBANK_FOLDERS["test"]:
        shutil.make_archive(str(root / folder), "zip", root / "unzipped", folder)
    shutil.rmtree(root / "unzipped")


@pytest.fixture(scope="module")
def voicebank(tmp_path_factory):
    manual = tmp_path_factory.mktemp("vb_manual")
    _fake_voicebank(manual)
    data_dir = tmp_path_factory.mktemp("tfds")
    builder = tfds.builder("voicebank_demand/16k", data_dir=str(data_dir))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    return builder, manual, data_dir


def test_voicebank_builder_resamples_and_pairs(voicebank):
    builder, manual, _ = voicebank
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"train": 3, "test": 2}
    examples = {ex["id"].decode(): ex for ex in tfds.as_numpy(builder.as_dataset(split="train"))}
    assert sorted(examples) == VB_NAMES["train"]
    for name, ex in examples.items():
        assert ex["clean"].dtype == np.int16 and ex["sample_rate"] == 16000
        for key, folder in (("clean", "clean_trainset_28spk_wav"), ("noisy", "noisy_trainset_28spk_wav")):
            original, rate = sf.read(str(manual / "DS_10283_2791" / folder / f"{name}.wav"))
            assert rate == 48000
            expected = tfds_builders.to_dtype(tfds_builders.resample(original, 48000, 16000), "int16")
            np.testing.assert_array_equal(ex[key], expected)
        assert ex["clean"].shape[0] == pytest.approx(sf.info(str(manual / "DS_10283_2791" / "clean_trainset_28spk_wav" / f"{name}.wav")).frames / 3, abs=1)


def test_voicebank_builder_names_missing_folders(tmp_path):
    builder = tfds.builder("voicebank_demand/16k", data_dir=str(tmp_path / "tfds"))
    with pytest.raises(DataError, match="clean_trainset_28spk_wav"):
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path)))


def _tfds_config(data_dir, **overrides):
    c = default_data_config()
    c.dataset = "tfds"
    c.tfds_name = "voicebank_demand/16k"
    c.tfds_data_dir = str(data_dir)
    c.num_frames = 33
    for key, value in overrides.items():
        setattr(c, key, value)
    return c


def test_pipeline_reads_a_prepared_tfds_dataset(voicebank, caplog):
    builder, _, data_dir = voicebank
    cfg = _tfds_config(data_dir)
    run = [next(make_train_iterator(cfg, global_batch_size=4, seed=0, start_step=s)) for s in (0, 1)]
    assert run[0]["clean"].shape == (4, crop_length(cfg)) and run[0]["noisy"].dtype == np.float32
    np.testing.assert_array_equal(np.max(np.abs(run[0]["noisy"]), axis=1), np.ones(4, np.float32))
    it = make_train_iterator(cfg, global_batch_size=4, seed=0)
    next(it)
    np.testing.assert_array_equal(next(it)["noisy"], run[1]["noisy"])
    # Every noisy crop is a piece of one training example.
    waves = [ex["noisy"].astype(np.float32) / 32768 for ex in tfds.as_numpy(builder.as_dataset(split="train"))]
    for crop in run[0]["noisy"]:
        assert any(_contains(w, crop) for w in waves)

    with caplog.at_level(logging.WARNING, logger="diffrestore.data"):
        pairs = load_eval_pairs(cfg, "valid")
    assert "validating on its test split" in caplog.text
    assert [p.relpath for p in pairs] == VB_NAMES["test"]
    assert pairs[0].clean.dtype == np.float32 and pairs[0].clean.shape == pairs[0].noisy.shape

    with pytest.raises(DataError, match="preload_max_mb"):
        make_train_iterator(_tfds_config(data_dir, preload_max_mb=0.01), global_batch_size=4, seed=0)
    with pytest.raises(DataError, match="16000 Hz, the config says 8000"):
        make_train_iterator(_tfds_config(data_dir, sample_rate=8000), global_batch_size=4, seed=0)


def _contains(wave, crop):
    """Whether crop == wave[o:o+L] / c for some offset o and scale c > 0."""
    windows = np.lib.stride_tricks.sliding_window_view(wave, crop.shape[0])
    score = windows @ crop / (np.linalg.norm(windows, axis=1) * np.linalg.norm(crop) + 1e-12)
    o = int(np.argmax(score))
    scale = np.max(np.abs(windows[o]))
    return np.allclose(crop * scale, windows[o], atol=1e-6)


def test_paired_folder_builder(tmp_path):
    write_synthetic_corpus(tmp_path / "corpus", num_train=3, num_valid=2, num_test=1, seconds=(0.3, 0.5), seed=1, subtype="FLOAT")
    config = tfds_builders.PairedFolderConfig(name="tiny", root=str(tmp_path / "corpus"), dtype="float32")
    builder = tfds_builders.PairedFolder(config=config, data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare()
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"train": 3, "validation": 2, "test": 1}
    for ex in tfds.as_numpy(builder.as_dataset(split="validation")):
        name = ex["id"].decode()
        np.testing.assert_array_equal(ex["clean"], sf.read(str(tmp_path / "corpus" / "valid" / "clean" / f"{name}.wav"), dtype="float32")[0])
        np.testing.assert_array_equal(ex["noisy"], sf.read(str(tmp_path / "corpus" / "valid" / "noisy" / f"{name}.wav"), dtype="float32")[0])


# ---------------------------------------------------------------------------------------------
# MAESTRO v3 (clean piano for the priors)

# (audio_filename, split, year, rate, seconds): 2018 is recorded at 48 kHz, the others at 44.1 kHz.
MAESTRO_ROWS = [
    ("2004/MIDI-Unprocessed_XP_01_R1_2004_01-02_ORIG_MID--AUDIO_01_R1_2004_01_Track01_wav.wav", "train", 2004, 44100, 0.6),
    ("2018/MIDI-Unprocessed_Chamber1_MID--AUDIO_07_R3_2018_wav--1.wav", "train", 2018, 48000, 0.5),
    ("2006/MIDI-Unprocessed_02_R1_2006_01-04_ORIG_MID--AUDIO_02_R1_2006_01_Track01_wav.wav", "train", 2006, 44100, 0.3),
    ("2009/MIDI-Unprocessed_03_R1_2009_03-06_ORIG_MID--AUDIO_03_R1_2009_03_R1_2009_03_WAV.wav", "validation", 2009, 44100, 0.4),
    ("2011/MIDI-Unprocessed_04_R1_2011_01-03_ORIG_MID--AUDIO_04_R1_2011_01_Track01_wav.wav", "test", 2011, 44100, 0.4),
]


def _fake_maestro(root):
    """maestro-v3.0.0/ with the csv (the real columns) and short stereo wavs of distinct sines."""
    import csv

    folder = root / "maestro-v3.0.0"
    folder.mkdir(parents=True)
    with open(folder / "maestro-v3.0.0.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["canonical_composer", "canonical_title", "split", "year", "midi_filename", "audio_filename", "duration"])
        for k, (name, split, year, rate, seconds) in enumerate(MAESTRO_ROWS):
            writer.writerow([f"Composer {k}", f"Piece, Op. {k}", split, year, name.replace(".wav", ".midi"), name, seconds])
            t = np.arange(int(seconds * rate)) / rate
            left = 0.5 * np.sin(2 * np.pi * (300 + 100 * k) * t)
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(folder / name), np.stack([left, 0.5 * left], axis=1), rate, subtype="PCM_16")
    return folder


@pytest.fixture(scope="module")
def maestro(tmp_path_factory):
    manual = tmp_path_factory.mktemp("maestro_manual")
    folder = _fake_maestro(manual)
    data_dir = tmp_path_factory.mktemp("tfds_maestro")
    builder = tfds.builder("maestro_v3/22k_mono", data_dir=str(data_dir))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    return builder, folder, data_dir


def test_maestro_builder_downmixes_and_resamples(maestro):
    builder, folder, _ = maestro
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"train": 3, "validation": 1, "test": 1}
    assert "noisy" not in builder.info.features
    rows = {name: (split, year, rate) for name, split, year, rate, _ in MAESTRO_ROWS}
    examples = list(tfds.as_numpy(builder.as_dataset(split="train")))
    assert sorted(ex["id"].decode() for ex in examples) == sorted(n[:-4] for n, s, *_ in MAESTRO_ROWS if s == "train")
    for ex in examples:
        name = ex["id"].decode() + ".wav"
        _, year, rate = rows[name]
        assert ex["sample_rate"] == 22050 and ex["year"] == year and ex["audio"].dtype == np.int16
        stereo, file_rate = sf.read(str(folder / name), dtype="float32")
        assert file_rate == rate
        expected = tfds_builders.to_dtype(tfds_builders.resample(stereo.mean(axis=1, dtype=np.float64), rate, 22050), "int16")
        np.testing.assert_array_equal(ex["audio"], expected)
        assert ex["audio"].shape[0] == pytest.approx(stereo.shape[0] * 22050 / rate, abs=1)
    # CQT-Diff's config keeps the 44.1-kHz years only.
    kept = tfds_builders.read_maestro_csv(folder / tfds_builders.MAESTRO_CSV, years=tfds_builders.CQTDIFF_YEARS)
    assert [len(kept[s]) for s in ("train", "validation", "test")] == [2, 1, 1]


def test_maestro_builder_names_missing_audio(tmp_path):
    folder = _fake_maestro(tmp_path)
    (folder / MAESTRO_ROWS[3][0]).unlink()
    builder = tfds.builder("maestro_v3/22k_mono", data_dir=str(tmp_path / "tfds"))
    with pytest.raises(DataError, match="1 audio files listed in maestro-v3.0.0.csv are missing: 2009/MIDI"):
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path)))


def test_pipeline_gives_clean_only_batches_from_maestro(maestro, caplog):
    from diffrestore.data import load_eval_segments

    _, _, data_dir = maestro
    cfg = _tfds_config(data_dir, tfds_name="maestro_v3/22k_mono", sample_rate=22050, segment_length=8192, normalize="none")
    with caplog.at_level(logging.WARNING, logger="diffrestore.data"):
        it = make_train_iterator(cfg, global_batch_size=4, seed=0)
    assert "skipping 1 of 3 files" in caplog.text  # the 0.3 s recording is shorter than a segment
    batch = next(it)
    assert set(batch) == {"clean"} and batch["clean"].shape == (4, 8192) and batch["clean"].dtype == np.float32
    # The mean of the channels' 0.5 and 0.25 sines, not peak-normalised.
    np.testing.assert_allclose(np.max(np.abs(batch["clean"]), axis=1), 0.375, rtol=0.02)
    segments = load_eval_segments(cfg, "valid")
    assert segments.shape == (1, 8192) and segments.dtype == np.float32  # the one validation recording
    with pytest.raises(ValueError, match="normalize"):
        make_train_iterator(_tfds_config(data_dir, tfds_name="maestro_v3/22k_mono", sample_rate=22050, segment_length=4096),
                            global_batch_size=4, seed=0)
