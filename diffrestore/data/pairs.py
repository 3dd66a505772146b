"""Clean/noisy file pairs of a paired corpus, found by relative path and checked up front.

A paired corpus has the sgmse layout `ROOT/{train,valid,test}/{clean,noisy}/...` (or
`{clean|anechoic,reverb}` for dereverberation). The reference pairs the i-th sorted clean file
with the i-th sorted noisy file, which silently mis-pairs as soon as one file is missing or named
differently; here files are paired by their path relative to the `clean`/`noisy` folders, and
every problem (unpaired file, unreadable or empty file, sample-rate or length mismatch) raises a
`DataError` that names the files.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import pathlib
import re

import numpy as np
import soundfile as sf

SUBSETS = ("train", "valid", "test")

# (accepted clean folder names, noisy folder name, strip an EARS-style `_<number>dB` suffix)
LAYOUTS = {
    "default": (("clean",), "noisy", False),
    "reverb": (("clean", "anechoic"), "reverb", False),  # the reference names it `anechoic`
    "ears": (("clean",), "noisy", True),
}

# Extensions of containers libsndfile reads (headerless RAW is left out: it needs parameters).
_EXTENSIONS = {
    "wav", "wave", "flac", "ogg", "oga", "opus", "aif", "aiff", "aifc", "au", "snd", "caf",
    "w64", "rf64", "sph", "nist", "voc", "paf", "ircam", "htk", "xi", "sd2",
}
if "MP3" in sf.available_formats():
    _EXTENSIONS.add("mp3")
AUDIO_EXTENSIONS = frozenset(_EXTENSIONS)

# EARS names noisy files `<clean stem>_<snr>dB.wav`, e.g. `00001_-2.5dB.wav`.
_SNR_SUFFIX = re.compile(r"_[-+]?\d+(?:\.\d+)?dB$")

# How many offending files a message lists before it says "and N more".
_MAX_LISTED = 10


class DataError(ValueError):
    """A corpus that cannot be trained on as it is; the message names the files and the reason."""


@dataclasses.dataclass(frozen=True)
class Pair:
    """One training/evaluation example of a paired corpus.

    Attributes:
      clean: path of the target file.
      noisy: path of the degraded file (same length and sample rate as `clean`).
      relpath: the noisy file's path relative to the noisy folder (POSIX separators); unique
        per pair, also when several noisy files share one clean file (EARS).
      num_samples: length of both files in samples, or None when the pair was not checked.
    """

    clean: pathlib.Path
    noisy: pathlib.Path
    relpath: str
    num_samples: int | None = None


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """Header facts of one audio file (read without decoding the samples)."""

    path: pathlib.Path
    num_samples: int
    sample_rate: int
    channels: int
    subtype: str


def is_audio_file(path) -> bool:
    """Whether the extension is one soundfile reads (wav, flac, ogg, ...), case-insensitively."""
    return pathlib.PurePath(path).suffix.lower().lstrip(".") in AUDIO_EXTENSIONS


def list_audio_files(root) -> list[pathlib.Path]:
    """Audio files under `root`, recursively, sorted by relative path; hidden files are skipped.

    Raises:
      DataError: `root` is not a folder.
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    files = [
        p for p in root.rglob("*")
        if p.is_file() and is_audio_file(p) and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    # Sorting by the relative POSIX path makes the order (and so every index drawn from it)
    # the same on every host and file system.
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def pairing_key(relpath: str, *, strip_snr_suffix: bool) -> str:
    """The name two files are paired by: the relative path without extension (and, for EARS
    noisy files, without the trailing `_<snr>dB`). `p001/00001_3.4dB.wav` -> `p001/00001`."""
    stem = str(pathlib.PurePosixPath(relpath).with_suffix(""))
    return _SNR_SUFFIX.sub("", stem) if strip_snr_suffix else stem


def _listing(files, limit: int = _MAX_LISTED) -> str:
    names = [str(f) for f in files]
    more = f" ... and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _keyed(root: pathlib.Path, *, strip_snr_suffix: bool) -> dict[str, list[pathlib.Path]]:
    keyed: dict[str, list[pathlib.Path]] = {}
    for path in list_audio_files(root):
        key = pairing_key(path.relative_to(root).as_posix(), strip_snr_suffix=strip_snr_suffix)
        keyed.setdefault(key, []).append(path)
    return keyed


def pair_folders(clean_dir, noisy_dir, *, strip_snr_suffix: bool = False) -> list[Pair]:
    """Pairs the files of two folders by relative path (extension ignored), without reading them.

    Several noisy files may share one clean file (e.g. EARS noisy versions at different SNRs);
    every noisy file needs a clean file and every clean file at least one noisy file.

    Args:
      clean_dir, noisy_dir: the two folders (searched recursively).
      strip_snr_suffix: drop an EARS `_<number>dB` suffix from noisy stems before pairing.

    Returns:
      Pairs sorted by the noisy file's relative path (num_samples None).

    Raises:
      DataError: a folder is missing, a file has no partner, or two clean files differ only
        by extension.
    """
    clean_dir, noisy_dir = pathlib.Path(clean_dir), pathlib.Path(noisy_dir)
    clean = _keyed(clean_dir, strip_snr_suffix=False)
    noisy = _keyed(noisy_dir, strip_snr_suffix=strip_snr_suffix)

    ambiguous = sorted(p for paths in clean.values() if len(paths) > 1 for p in paths)
    if ambiguous:
        raise DataError(f"clean files that differ only by extension (which one is meant?): {_listing(ambiguous)}")
    unpaired_noisy = sorted(p for key, paths in noisy.items() if key not in clean for p in paths)
    unpaired_clean = sorted(paths[0] for key, paths in clean.items() if key not in noisy)
    problems = []
    if unpaired_noisy:
        problems.append(f"noisy files without a clean file in {clean_dir}: {_listing(unpaired_noisy)}")
    if unpaired_clean:
        problems.append(f"clean files without a noisy file in {noisy_dir}: {_listing(unpaired_clean)}")
    if problems:
        raise DataError("; ".join(problems))

    pairs = [
        Pair(clean=clean[key][0], noisy=path, relpath=path.relative_to(noisy_dir).as_posix())
        for key, paths in noisy.items() for path in paths
    ]
    return sorted(pairs, key=lambda p: p.relpath)


def subset_folders(root, subset: str, layout: str = "default") -> tuple[pathlib.Path, pathlib.Path]:
    """(clean folder, noisy folder) of `ROOT/subset` in a layout; see `LAYOUTS`.

    Raises:
      DataError: unknown layout, or the folders do not exist.
    """
    if layout not in LAYOUTS:
        raise DataError(f"unknown layout {layout!r}; expected one of {sorted(LAYOUTS)}")
    clean_names, noisy_name, _ = LAYOUTS[layout]
    base = pathlib.Path(root) / subset
    noisy_dir = base / noisy_name
    clean_dirs = [base / name for name in clean_names if (base / name).is_dir()]
    if not clean_dirs or not noisy_dir.is_dir():
        wanted = "{" + "|".join(clean_names) + f",{noisy_name}" + "}"
        raise DataError(f"{base}: expected the folders {base}/{wanted} (layout {layout!r})")
    if len(clean_dirs) > 1:
        raise DataError(f"{base}: both {' and '.join(map(str, clean_dirs))} exist; keep one clean folder")
    return clean_dirs[0], noisy_dir


def audio_info(path) -> AudioInfo:
    """Header facts of `path`.

    Raises:
      DataError: the file cannot be read as audio, or it has no samples.
    """
    path = pathlib.Path(path)
    try:
        info = sf.info(str(path))
    except Exception as err:  # libsndfile's errors are RuntimeError/LibsndfileError/TypeError
        raise DataError(f"{path}: not a readable audio file ({err})") from None
    if info.frames <= 0:
        raise DataError(f"{path}: the file has no samples")
    return AudioInfo(path, int(info.frames), int(info.samplerate), int(info.channels), str(info.subtype))


def audio_infos(paths, *, max_workers: int = 16) -> list[AudioInfo]:
    """`audio_info` of many files, read concurrently (headers are I/O-bound on network disks).

    Raises:
      DataError: naming every file that failed (not just the first).
    """
    paths = list(paths)
    if len(paths) < 64:
        results = [_info_or_error(p) for p in paths]
    else:
        with concurrent.futures.ThreadPoolExecutor(max_workers) as pool:
            results = list(pool.map(_info_or_error, paths))
    errors = [r for r in results if isinstance(r, DataError)]
    if errors:
        more = f" ... and {len(errors) - _MAX_LISTED} more" if len(errors) > _MAX_LISTED else ""
        raise DataError("; ".join(str(e) for e in errors[:_MAX_LISTED]) + more)
    return results


def _info_or_error(path):
    try:
        return audio_info(path)
    except DataError as err:
        return err


def check_pairs(pairs: list[Pair], *, sample_rate: int | None = None, infos=None) -> list[Pair]:
    """Reads the headers of every pair and returns the pairs with `num_samples` filled in.

    Args:
      pairs: from `pair_folders`/`find_pairs`.
      sample_rate: the rate every file must have (Hz); None accepts any rate common to a pair.
      infos: (clean infos, noisy infos) already read with `audio_infos`, to not read twice.

    Raises:
      DataError: unreadable or empty files, more than one channel, a sample rate that differs
        within a pair or from `sample_rate`, or clean and noisy lengths that differ. Every
        offending pair is named.
    """
    clean_infos, noisy_infos = infos or (audio_infos([p.clean for p in pairs]), audio_infos([p.noisy for p in pairs]))
    problems = []
    checked = []
    for pair, c, n in zip(pairs, clean_infos, noisy_infos):
        for info in (c, n):
            if info.channels != 1:
                problems.append(f"{info.path}: {info.channels} channels (diffrestore trains on mono files)")
            if sample_rate is not None and info.sample_rate != sample_rate:
                problems.append(f"{info.path}: sample rate {info.sample_rate} Hz, the config says {sample_rate} Hz")
        if c.sample_rate != n.sample_rate:
            problems.append(f"sample rates differ within a pair: {c.path} at {c.sample_rate} Hz, {n.path} at {n.sample_rate} Hz")
        if c.num_samples != n.num_samples:
            problems.append(f"lengths differ within a pair: {c.path} has {c.num_samples} samples, {n.path} has {n.num_samples}")
        checked.append(dataclasses.replace(pair, num_samples=c.num_samples))
    if problems:
        more = f" ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        raise DataError("; ".join(problems[:_MAX_LISTED]) + more)
    return checked


def find_pairs(root, subset: str, layout: str = "default", *, sample_rate: int | None = None, check: bool = True) -> list[Pair]:
    """The clean/noisy pairs of `ROOT/subset` in the sgmse layout.

    Args:
      root: the corpus root holding `train/`, `valid/`, `test/`.
      subset: "train", "valid" or "test" (any folder name works).
      layout: "default" (`clean`, `noisy`), "reverb" (`clean` or `anechoic`, `reverb`) or
        "ears" (`clean`, `noisy` with noisy stems `<clean stem>_<snr>dB`).
      sample_rate: with `check`, the rate every file must have (Hz); None = any common rate.
      check: read every header (sample rate, length, readability); False only pairs names.

    Returns:
      Pairs sorted by relative path; `num_samples` is set when checked.

    Raises:
      DataError: see `subset_folders`, `pair_folders` and `check_pairs`.
    """
    clean_dir, noisy_dir = subset_folders(root, subset, layout)
    pairs = pair_folders(clean_dir, noisy_dir, strip_snr_suffix=LAYOUTS[layout][2])
    return check_pairs(pairs, sample_rate=sample_rate) if check else pairs


def read_mono(path, *, start: int = 0, num_samples: int = -1, channel: int | None = None) -> np.ndarray:
    """Samples [start, start + num_samples) of a file as float32 in [-1, 1] (integer formats are
    scaled by 1/32768 etc. as libsndfile does).

    Args:
      channel: None requires a mono file; an index takes that channel of a multi-channel file.

    Raises:
      DataError: unreadable file, or a multi-channel file with channel None.
    """
    try:
        data, _ = sf.read(str(path), start=int(start), frames=int(num_samples), dtype="float32", always_2d=True)
    except Exception as err:
        raise DataError(f"{path}: not a readable audio file ({err})") from None
    if channel is None:
        if data.shape[1] != 1:
            raise DataError(f"{path}: {data.shape[1]} channels (diffrestore trains on mono files)")
        channel = 0
    return np.ascontiguousarray(data[:, channel])


def read_downmixed(path, *, start: int = 0, num_samples: int = -1) -> np.ndarray:
    """Samples [start, start + num_samples) of a file of any channel count, as float64 mono: the
    mean of the channels (CQT-Diff's and BABE's stereo-to-mono, `np.mean(data, axis=1)`).

    Raises:
      DataError: unreadable file.
    """
    try:
        data, _ = sf.read(str(path), start=int(start), frames=int(num_samples), dtype="float32", always_2d=True)
    except Exception as err:
        raise DataError(f"{path}: not a readable audio file ({err})") from None
    if data.shape[1] == 1:
        return data[:, 0].astype(np.float64)
    return np.mean(data, axis=1, dtype=np.float64)


def clean_subset_folder(root, subset: str) -> pathlib.Path | None:
    """The folder of one subset of a clean-audio corpus (dataset="clean").

    `ROOT/train` is the training set when it exists, else all of ROOT is (a flat folder); the
    validation set is `ROOT/valid` or `ROOT/validation`; any other subset is `ROOT/<subset>`.

    Returns:
      The folder, or None for a held-out subset that does not exist (a flat ROOT has none).

    Raises:
      DataError: ROOT is missing, or it has valid/validation/test folders but no train/.
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    if subset == "train":
        if (root / "train").is_dir():
            return root / "train"
        others = [name for name in ("valid", "validation", "test") if (root / name).is_dir()]
        if others:  # a forgotten train/, not a flat folder: do not train on the held-out files
            raise DataError(f"{root} has {'/, '.join(others)}/ but no train/ subfolder; put the training files into {root}/train/")
        return root
    for name in ("valid", "validation") if subset == "valid" else (subset,):
        if (root / name).is_dir():
            return root / name
    return None
