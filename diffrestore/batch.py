"""Enhancing and restoring folders of recordings: what `diffrestore enhance` and `restore` run.

Every readable file is processed channel by channel and written to the mirrored relative path
with its sample rate, channel count, length, format and subtype. Files are taken shortest
first in groups, so that each group's signals share length buckets and fill whole batches. Outputs are written
atomically, existing outputs are skipped (so an interrupted job resumes where it stopped),
and a file that cannot be enhanced is reported by name while the others go on.
"""
from __future__ import annotations

import dataclasses
import pathlib
import time
import zlib

import numpy as np

from diffrestore.io import AudioFileError, list_audio_files, read_audio, write_audio_atomic


@dataclasses.dataclass
class BatchReport:
    written: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    failed: dict = dataclasses.field(default_factory=dict)  # path -> reason
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def real_time_factor(self) -> float:
        """Seconds of computation per second of audio (lower is faster)."""
        return self.wall_seconds / self.audio_seconds if self.audio_seconds else float("nan")


def _stable_id(relpath: str, channel: int) -> int:
    # A per-file key that does not depend on which other files are in the job.
    return zlib.crc32(f"{relpath}#{channel}".encode()) & 0x7FFFFFFF


def enhance_path(enhancer, input_path, output_path, *, overwrite=False, files_per_group=None, progress=True, **enhance_kwargs):
    """Enhances a file or a folder tree into `output_path`.

    Args:
      enhancer: an `Enhancer`.
      input_path: a file or a folder (recursive).
      output_path: the output file (for a file input) or folder (mirrors relative paths).
      overwrite: re-enhance files whose output exists.
      files_per_group: files read and enhanced together (their channels share batches);
        default 4 batches' worth, so batches are full without holding the whole job in memory.
      **enhance_kwargs: sampler options for `Enhancer.enhance` (sampler, num_steps, seed, ...).

    Returns:
      BatchReport.
    """
    def process(waves, rate, ids):
        return enhancer.enhance(waves, rate, example_ids=ids, **enhance_kwargs)

    return process_path(process, input_path, output_path, overwrite=overwrite, progress=progress, desc="enhance",
                        files_per_group=files_per_group or 4 * int(enhance_kwargs.get("batch_size", 4)))


def restore_path(prior, input_path, output_path, *, task: str, overwrite=False, files_per_group=None, progress=True,
                 **restore_kwargs):
    """Restores a file or a folder tree with `Prior.restore(task=...)`: the same file handling
    as `enhance_path` (mirrored paths, formats kept, atomic writes, resumable, bad files named)."""
    def process(waves, rate, ids):
        return prior.restore(waves, rate, task=task, example_ids=ids, **restore_kwargs)

    return process_path(process, input_path, output_path, overwrite=overwrite, progress=progress, desc=task,
                        files_per_group=files_per_group or 4 * int(restore_kwargs.get("batch_size", 4)))


def process_path(process, input_path, output_path, *, overwrite=False, files_per_group=16, progress=True, desc="process"):
    """Runs `process(waves, rate, example_ids) -> outputs` (1-D arrays in, same lengths out) over
    a file or a folder tree, channel by channel, writing each output file atomically.

    Returns:
      BatchReport.
    """
    input_path, output_path = pathlib.Path(input_path), pathlib.Path(output_path)
    files = list_audio_files(input_path)
    single = input_path.is_file()
    report = BatchReport()
    todo = []
    for f in files:
        rel = f.name if single else str(f.relative_to(input_path))
        dest = output_path if single else output_path / rel
        if dest.exists() and not overwrite:
            report.skipped.append(dest)
        else:
            todo.append((f, rel, dest))
    # Shortest first: the files of a group then fall into one or two length buckets, so its
    # batches are full and a folder of mixed lengths compiles few (bucket, rows) programs.
    # (Only the header is read; a file whose header cannot be read goes last and fails there.)
    todo.sort(key=lambda item: _duration(item[0]))

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="file", desc=desc)
    start = time.perf_counter()
    for g in range(0, len(todo), files_per_group):
        _process_group(process, todo[g : g + files_per_group], report)
        report.wall_seconds = time.perf_counter() - start
        if bar is not None:
            bar.update(len(todo[g : g + files_per_group]))
            bar.set_postfix(rtf=f"{report.real_time_factor:.2f}", failed=len(report.failed))
    if bar is not None:
        bar.close()
    return report


def _duration(path) -> float:
    """Seconds of audio in a file from its header; infinity if it cannot be read."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
        return info.frames / info.samplerate
    except Exception:  # noqa: BLE001 - read_audio names the problem when the file's turn comes
        return float("inf")


def _process_group(process, group, report):
    loaded = []
    for path, rel, dest in group:
        try:
            data, rate, info = read_audio(path)
        except AudioFileError as err:
            report.failed[path] = str(err)
            continue
        loaded.append((path, rel, dest, data, rate, info))
    # Process all channels of all files of one sample rate together.
    by_rate = {}
    for item in loaded:
        by_rate.setdefault(item[4], []).append(item)
    for rate, items in by_rate.items():
        waves, ids, owners = [], [], []
        for idx, (path, rel, _, data, _, _) in enumerate(items):
            for ch in range(data.shape[1]):
                waves.append(data[:, ch])
                ids.append(_stable_id(rel, ch))
                owners.append(idx)
        try:
            outs = process(waves, rate, ids)
        except ValueError:
            # One bad signal (e.g. silent or too short) must not sink its group: retry per file.
            outs = None
        if outs is None:
            for item in items:
                _process_one(process, item, report)
            continue
        for idx, (path, rel, dest, data, rate_, info) in enumerate(items):
            channels = [o for o, owner in zip(outs, owners) if owner == idx]
            _write(path, dest, np.stack(channels, axis=1), rate_, info, report)


def _process_one(process, item, report):
    path, rel, dest, data, rate, info = item
    try:
        outs = process([data[:, ch] for ch in range(data.shape[1])], rate,
                       [_stable_id(rel, ch) for ch in range(data.shape[1])])
    except ValueError as err:
        report.failed[path] = f"{path}: {err}"
        return
    _write(path, dest, np.stack(outs, axis=1), rate, info, report)


def _write(path, dest, data, rate, info, report):
    try:
        write_audio_atomic(dest, data, rate, subtype=info.subtype, fmt=info.format)
    except (OSError, RuntimeError) as err:
        report.failed[path] = f"{dest}: could not write ({err})"
        return
    report.written.append(dest)
    report.audio_seconds += data.shape[0] / rate
