"""Audio file input/output for batch enhancement: listing, reading, atomic writing."""
from __future__ import annotations

import os
import pathlib
import tempfile

import numpy as np
import soundfile as sf


class AudioFileError(ValueError):
    """A file that cannot be enhanced; the message names the file and the reason."""


def list_audio_files(root) -> list[pathlib.Path]:
    """Every file under `root` (recursive, sorted) that is not hidden; a file root lists itself.

    Files that soundfile cannot read are kept in the list on purpose: they are reported as
    failures by name instead of vanishing silently.
    """
    root = pathlib.Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such file or directory")
    return sorted(
        p for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def read_audio(path) -> tuple[np.ndarray, int, sf._SoundFileInfo]:
    """Reads a file as float32 (frames, channels). Raises AudioFileError with the reason."""
    path = pathlib.Path(path)
    try:
        info = sf.info(str(path))
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, TypeError) as err:
        raise AudioFileError(f"{path}: not a readable audio file ({err})") from None
    if data.shape[0] == 0:
        raise AudioFileError(f"{path}: the file has no samples")
    if not np.all(np.isfinite(data)):
        raise AudioFileError(f"{path}: the file contains NaN or infinite samples")
    return data, rate, info


def write_audio_atomic(path, data: np.ndarray, rate: int, *, subtype: str | None, fmt: str | None) -> None:
    """Writes through a temporary file in the same folder and renames it into place, so an
    interrupted job never leaves a truncated output that a resumed job would skip."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        if subtype in ("PCM_16", "PCM_24", "PCM_32", "PCM_S8", "PCM_U8"):
            data = np.clip(data, -1.0, 1.0)  # integer formats cannot hold values beyond full scale
        sf.write(tmp, data, rate, subtype=subtype, format=fmt)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
