"""TFDS builders for paired speech corpora (VoiceBank-DEMAND, any sgmse-layout folder) and for
the clean piano recordings of MAESTRO v3 (the priors' training data).

Importing this module registers the builders `voicebank_demand` (configs `16k`, `48k`),
`paired_folder` and `maestro_v3` (configs `22k_mono`, `22k_mono_cqtdiff`, `44k_mono`) with TFDS
(and imports TensorFlow, with its GPUs hidden). Nothing is ever downloaded: VoiceBank-DEMAND and
MAESTRO are built from manual download directories.

    import tensorflow_datasets as tfds
    from diffrestore.data import tfds_builders
    builder = tfds.builder("voicebank_demand/16k", data_dir="/data/tfds")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir="/data/vbd"))

then train with `data.dataset="tfds"`, `data.tfds_name="voicebank_demand/16k"`,
`data.tfds_data_dir="/data/tfds"`.

Every paired example has "clean" and "noisy" (int16, or float32 with dtype="float32"; the same
length), "sample_rate" and "id" (the file's relative path without extension). Files at another
rate than the config's are resampled with `scipy.signal.resample_poly`, clean and noisy alike.
MAESTRO's examples have "audio" (no "noisy"): the pipeline then yields {"clean"} batches.
"""
from __future__ import annotations

import csv
import dataclasses
import pathlib

import numpy as np

from diffrestore.audio.resample import resample
from diffrestore.data._tf import import_tfds
from diffrestore.data.pairs import LAYOUTS, SUBSETS, DataError, Pair, pair_folders, read_downmixed, read_mono, subset_folders

tfds = import_tfds()

# The folders (or zips) of the Edinburgh DataShare release, doi:10.7488/ds/2117.
VOICEBANK_FOLDERS = {
    "train": ("clean_trainset_28spk_wav", "noisy_trainset_28spk_wav"),
    "test": ("clean_testset_wav", "noisy_testset_wav"),
}
_TFDS_SPLITS = {"train": "train", "valid": "validation", "test": "test"}


def to_dtype(wave: np.ndarray, dtype: str) -> np.ndarray:
    """float [-1, 1] -> int16 (rounded, clipped at full scale) or float32."""
    if dtype == "int16":
        return np.clip(np.round(np.asarray(wave, np.float64) * 32768.0), -32768, 32767).astype(np.int16)
    if dtype == "float32":
        return np.asarray(wave, np.float32)
    raise ValueError(f"dtype must be 'int16' or 'float32', not {dtype!r}")


def encode_pair(pair: Pair, *, sample_rate: int, dtype: str) -> dict:
    """The example of one file pair: read, checked, resampled to `sample_rate`, converted.

    Raises:
      DataError: unreadable files, or clean/noisy rates or lengths that differ.
    """
    import soundfile as sf

    rates = {}
    for name, path in (("clean", pair.clean), ("noisy", pair.noisy)):
        try:
            rates[name] = int(sf.info(str(path)).samplerate)
        except Exception as err:
            raise DataError(f"{path}: not a readable audio file ({err})") from None
    if rates["clean"] != rates["noisy"]:
        raise DataError(f"sample rates differ within a pair: {pair.clean} at {rates['clean']} Hz, {pair.noisy} at {rates['noisy']} Hz")
    clean, noisy = read_mono(pair.clean), read_mono(pair.noisy)
    if clean.shape != noisy.shape:
        raise DataError(f"lengths differ within a pair: {pair.clean} has {clean.shape[0]} samples, {pair.noisy} has {noisy.shape[0]}")
    if clean.shape[0] == 0:
        raise DataError(f"{pair.clean}: the file has no samples")
    return {
        "id": str(pathlib.PurePosixPath(pair.relpath).with_suffix("")),
        "sample_rate": np.int32(sample_rate),
        "clean": to_dtype(resample(clean, rates["clean"], sample_rate), dtype),
        "noisy": to_dtype(resample(noisy, rates["noisy"], sample_rate), dtype),
    }


def _features(sample_rate: int, dtype: str):
    np_dtype = {"int16": np.int16, "float32": np.float32}[dtype]
    # Plain tensors with BYTES encoding store the raw samples: `tfds.features.Audio` keeps arrays
    # as tf.Example int64 lists, which spend up to 10 bytes on each negative int16.
    audio = lambda doc: tfds.features.Tensor(shape=(None,), dtype=np_dtype, encoding=tfds.features.Encoding.BYTES,
                                             doc=f"{doc}; {dtype} at {sample_rate} Hz" + (" (full scale 32768)" if dtype == "int16" else ""))
    return tfds.features.FeaturesDict({
        "id": tfds.features.Text(doc="relative path of the noisy file, without extension"),
        "sample_rate": tfds.features.Scalar(np.int32, doc="Hz"),
        "clean": audio("target speech"),
        "noisy": audio("degraded speech, aligned with clean"),
    })


def _find_folder(manual_dir: pathlib.Path, name: str, dl_manager) -> pathlib.Path:
    """The folder `name` holding .wav files somewhere under manual_dir, or the extracted
    `name.zip`.

    Raises:
      DataError: neither found.
    """
    def holding_wavs(base):
        candidates = [base] if base.name == name else []
        candidates += sorted(p for p in base.rglob(name) if p.is_dir())
        return [c for c in candidates if any(c.glob("*.wav"))]

    found = holding_wavs(manual_dir)
    if not found:
        zips = sorted(manual_dir.rglob(f"{name}.zip"))
        if zips:
            extracted = pathlib.Path(dl_manager.extract(zips[0]))
            found = [extracted] if any(extracted.glob("*.wav")) else holding_wavs(extracted)
    if not found:
        raise DataError(f"{manual_dir}: no folder {name}/ with .wav files and no {name}.zip (see the manual download instructions)")
    return found[0]


@dataclasses.dataclass(eq=False)
class VoicebankDemandConfig(tfds.core.BuilderConfig):
    """sample_rate: Hz of the stored audio; dtype: "int16" or "float32"."""

    sample_rate: int = 16000
    dtype: str = "int16"


class VoicebankDemand(tfds.core.GeneratorBasedBuilder):
    """VoiceBank-DEMAND (Valentini-Botinhao et al., 2016): 28 training speakers, 2 test speakers,
    noisy versions with DEMAND and artificial noises. Splits "train" (11572) and "test" (824)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        VoicebankDemandConfig(name="16k", sample_rate=16000, description="resampled to 16 kHz (as SGMSE+ trains)"),
        VoicebankDemandConfig(name="48k", sample_rate=48000, description="the original 48 kHz"),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download from https://datashare.ed.ac.uk/handle/10283/2791 the four archives
    clean_trainset_28spk_wav.zip, noisy_trainset_28spk_wav.zip, clean_testset_wav.zip and
    noisy_testset_wav.zip, and put them (zipped, or extracted into folders of the same names)
    into the manual directory (`manual_dir`, default <data_dir>/downloads/manual).
    """

    def _info(self):
        return self.dataset_info_from_configs(
            features=_features(self.builder_config.sample_rate, self.builder_config.dtype),
            supervised_keys=("noisy", "clean"),
            homepage="https://datashare.ed.ac.uk/handle/10283/2791",
            citation="""@inproceedings{valentini2016investigating,
  title={Investigating RNN-based speech enhancement methods for noise-robust Text-to-Speech},
  author={Valentini-Botinhao, Cassia and Wang, Xin and Takaki, Shinji and Yamagishi, Junichi},
  booktitle={9th ISCA Speech Synthesis Workshop}, pages={146--152}, year={2016}}""",
        )

    def _split_generators(self, dl_manager):
        manual_dir = pathlib.Path(dl_manager.manual_dir)
        splits = {}
        for split, (clean_name, noisy_name) in VOICEBANK_FOLDERS.items():
            clean_dir = _find_folder(manual_dir, clean_name, dl_manager)
            noisy_dir = _find_folder(manual_dir, noisy_name, dl_manager)
            splits[split] = self._generate_examples(pair_folders(clean_dir, noisy_dir))
        return splits

    def _generate_examples(self, pairs):
        config = self.builder_config
        for pair in pairs:
            yield pair.relpath, encode_pair(pair, sample_rate=config.sample_rate, dtype=config.dtype)


@dataclasses.dataclass(eq=False)
class PairedFolderConfig(tfds.core.BuilderConfig):
    """root: corpus folder with train/valid/test in `layout` (see diffrestore.data.pairs.LAYOUTS);
    sample_rate: Hz of the stored audio; dtype: "int16" or "float32"."""

    root: str = ""
    layout: str = "default"
    sample_rate: int = 16000
    dtype: str = "int16"


class PairedFolder(tfds.core.GeneratorBasedBuilder):
    """Any paired corpus in the sgmse layout, as a TFDS dataset with splits train/validation/test
    (those present). Give the config (there is no default one):

        PairedFolder(config=PairedFolderConfig(name="wsj0_chime3", root="/data/wsj0_chime3"), data_dir=...)
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def _info(self):
        return self.dataset_info_from_configs(
            features=_features(self.builder_config.sample_rate, self.builder_config.dtype),
            supervised_keys=("noisy", "clean"),
        )

    def _split_generators(self, dl_manager):
        config = self.builder_config
        if not config.root:
            raise DataError("PairedFolderConfig.root is not set")
        if config.layout not in LAYOUTS:
            raise DataError(f"unknown layout {config.layout!r}; expected one of {sorted(LAYOUTS)}")
        root = pathlib.Path(config.root)
        splits = {}
        for subset in SUBSETS:
            if (root / subset).is_dir():
                clean_dir, noisy_dir = subset_folders(root, subset, config.layout)
                pairs = pair_folders(clean_dir, noisy_dir, strip_snr_suffix=LAYOUTS[config.layout][2])
                splits[_TFDS_SPLITS[subset]] = self._generate_examples(pairs)
        if not splits:
            raise DataError(f"{root}: none of {'/'.join(SUBSETS)} exists")
        return splits

    def _generate_examples(self, pairs):
        config = self.builder_config
        for pair in pairs:
            yield pair.relpath, encode_pair(pair, sample_rate=config.sample_rate, dtype=config.dtype)


# ---------------------------------------------------------------------------------------------
# MAESTRO v3: clean piano (the training data of CQT-Diff and CQTdiff+/BABE)

MAESTRO_CSV = "maestro-v3.0.0.csv"
MAESTRO_COLUMNS = ("canonical_composer", "canonical_title", "split", "year", "audio_filename", "duration")
# CQT-Diff trains on the years recorded at 44.1 kHz (conf/dset/maestro.yaml: "the most recent ones
# are sampled at 48kHz"); BABE's maestro_allyears adds 2017 and 2018.
CQTDIFF_YEARS = (2004, 2006, 2008, 2009, 2011, 2013, 2014, 2015)


def find_maestro_csv(manual_dir, dl_manager=None) -> pathlib.Path:
    """maestro-v3.0.0.csv under `manual_dir` (the extracted maestro-v3.0.0/ folder or the folder
    itself), or in an extracted maestro-v3.0.0.zip.

    Raises:
      DataError: neither found.
    """
    manual_dir = pathlib.Path(manual_dir)
    found = sorted(manual_dir.rglob(MAESTRO_CSV), key=lambda p: len(p.parts))
    if not found and dl_manager is not None:
        zips = sorted(manual_dir.rglob("maestro-v3.0.0.zip"))
        if zips:
            found = sorted(pathlib.Path(dl_manager.extract(zips[0])).rglob(MAESTRO_CSV), key=lambda p: len(p.parts))
    if not found:
        raise DataError(f"{manual_dir}: no {MAESTRO_CSV} (nor maestro-v3.0.0.zip); see the manual download instructions")
    return found[0]


def read_maestro_csv(path, *, years=()) -> dict:
    """{split: [row, ...]} of MAESTRO's metadata (rows sorted by audio_filename), the audio of
    each row checked to exist.

    Args:
      years: keep only these years (all when empty).

    Raises:
      DataError: missing columns, or audio files the csv lists that are not there (named).
    """
    path = pathlib.Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in MAESTRO_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: no column(s) {', '.join(missing)} (it has {reader.fieldnames})")
        rows = [r for r in reader if not years or int(r["year"]) in set(int(y) for y in years)]
    absent = [r["audio_filename"] for r in rows if not (path.parent / r["audio_filename"]).is_file()]
    if absent:
        more = f" ... and {len(absent) - 10} more" if len(absent) > 10 else ""
        raise DataError(f"{path.parent}: {len(absent)} audio files listed in {path.name} are missing: {', '.join(absent[:10])}{more}")
    splits: dict = {}
    for row in sorted(rows, key=lambda r: r["audio_filename"]):
        splits.setdefault(row["split"], []).append(row)
    return splits


def encode_maestro(root, row: dict, *, sample_rate: int, dtype: str) -> dict:
    """The example of one MAESTRO recording: downmixed to mono (the mean of the channels, as
    CQT-Diff's dataset_loader.py and BABE's maestro_dataset.py do) and resampled from the file's
    rate (44.1 or 48 kHz) to `sample_rate`.

    Raises:
      DataError: an unreadable or empty file, or NaN/infinite samples.
    """
    import soundfile as sf

    path = pathlib.Path(root) / row["audio_filename"]
    try:
        rate = int(sf.info(str(path)).samplerate)
    except Exception as err:
        raise DataError(f"{path}: not a readable audio file ({err})") from None
    wave = read_downmixed(path)
    if wave.shape[0] == 0:
        raise DataError(f"{path}: the file has no samples")
    if not np.all(np.isfinite(wave)):
        raise DataError(f"{path}: NaN or infinite samples")
    return {
        "id": str(pathlib.PurePosixPath(row["audio_filename"]).with_suffix("")),
        "sample_rate": np.int32(sample_rate),
        "audio": to_dtype(resample(wave, rate, sample_rate), dtype),
        "year": np.int32(int(row["year"])),
        "canonical_composer": row["canonical_composer"],
        "canonical_title": row["canonical_title"],
        "duration": np.float32(float(row["duration"])),
    }


@dataclasses.dataclass(eq=False)
class MaestroConfig(tfds.core.BuilderConfig):
    """sample_rate: Hz of the stored audio (mono); dtype: "int16" or "float32"; years: the
    years kept (all when empty)."""

    sample_rate: int = 22050
    dtype: str = "int16"
    years: tuple = ()


class MaestroV3(tfds.core.GeneratorBasedBuilder):
    """MAESTRO v3.0.0 (Hawthorne et al., 2019): ~200 hours of virtuosic piano from the
    International Piano-e-Competition, 2004-2018, stereo at 44.1 kHz (48 kHz for 2017 and 2018).
    Splits "train" (962 recordings), "validation" (137) and "test" (177), as its csv assigns them.

    Stored mono (the mean of the two channels) and resampled once at build time (scipy's
    polyphase resampling; CQT-Diff and BABE resample crops with torchaudio instead: 2:1 from
    44.1 kHz, 320:147 from 48 kHz). Configs:

    * `22k_mono`: every year at 22.05 kHz, as BABE/CQTdiff+ trains (maestro_allyears).
    * `22k_mono_cqtdiff`: CQT-Diff's years (the 44.1-kHz ones, `CQTDIFF_YEARS`) at 22.05 kHz.
    * `44k_mono`: every year at 44.1 kHz (BABE's maestro44k experiments).

    The 22.05-kHz int16 train split takes about 25 GB, and `data.dataset="tfds"` holds a split in
    memory: raise data.preload_max_mb to match, or train from the folder with
    data.dataset="clean" (which reads segments from disk when the corpus is larger).

        builder = tfds.builder("maestro_v3/22k_mono", data_dir="/data/tfds")
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir="/data/maestro"))

    then train with `data.dataset="tfds"`, `data.tfds_name="maestro_v3/22k_mono"`,
    `data.sample_rate=22050`, `data.segment_length=184184` (CQTdiff+; 65536 for CQT-Diff),
    `data.normalize="none"`, `data.preload_max_mb=30000`.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        MaestroConfig(name="22k_mono", sample_rate=22050, description="every year, mono at 22.05 kHz (BABE/CQTdiff+)"),
        MaestroConfig(name="22k_mono_cqtdiff", sample_rate=22050, years=CQTDIFF_YEARS,
                      description="the 44.1-kHz years CQT-Diff trains on, mono at 22.05 kHz"),
        MaestroConfig(name="44k_mono", sample_rate=44100, description="every year, mono at 44.1 kHz"),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download the audio-only release maestro-v3.0.0.zip (about 100 GB) from
    https://magenta.tensorflow.org/datasets/maestro#v300 and put it into the manual directory
    (`manual_dir`, default <data_dir>/downloads/manual), zipped or extracted: the folder
    maestro-v3.0.0/ with maestro-v3.0.0.csv and the YEAR/ folders of .wav files.
    """

    def _info(self):
        config = self.builder_config
        np_dtype = {"int16": np.int16, "float32": np.float32}[config.dtype]
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "id": tfds.features.Text(doc="audio_filename without extension, e.g. 2004/MIDI-Unprocessed_..."),
                "sample_rate": tfds.features.Scalar(np.int32, doc="Hz"),
                "audio": tfds.features.Tensor(
                    shape=(None,), dtype=np_dtype, encoding=tfds.features.Encoding.BYTES,
                    doc=f"mono piano, {config.dtype} at {config.sample_rate} Hz" + (" (full scale 32768)" if config.dtype == "int16" else "")),
                "year": tfds.features.Scalar(np.int32),
                "canonical_composer": tfds.features.Text(),
                "canonical_title": tfds.features.Text(),
                "duration": tfds.features.Scalar(np.float32, doc="seconds, from the csv"),
            }),
            supervised_keys=None,
            homepage="https://magenta.tensorflow.org/datasets/maestro",
            citation="""@inproceedings{hawthorne2018enabling,
  title={Enabling Factorized Piano Music Modeling and Generation with the {MAESTRO} Dataset},
  author={Curtis Hawthorne and Andriy Stasyuk and Adam Roberts and Ian Simon and Cheng-Zhi Anna Huang and
          Sander Dieleman and Erich Elsen and Jesse Engel and Douglas Eck},
  booktitle={International Conference on Learning Representations}, year={2019}}""",
        )

    def _split_generators(self, dl_manager):
        csv_path = find_maestro_csv(dl_manager.manual_dir, dl_manager)
        splits = read_maestro_csv(csv_path, years=self.builder_config.years)
        if not splits:
            raise DataError(f"{csv_path}: no recordings of the years {self.builder_config.years}")
        return {split: self._generate_examples(csv_path.parent, rows) for split, rows in splits.items()}

    def _generate_examples(self, root, rows):
        config = self.builder_config
        for row in rows:
            yield row["audio_filename"], encode_maestro(root, row, sample_rate=config.sample_rate, dtype=config.dtype)
