"""The training input: fixed-length waveform crops, a pure function of (seed, step), on tf.data.

Batch k of a run is computed from (seed, k, row) alone: tf.data counts steps from `start_step`,
and every choice for an example (which file, where to crop, which noise, SNR, room) comes from
stateless random ops seeded by (seed, k, row). So

* a run resumed at step k sees exactly the batches an uninterrupted run would have seen;
* process p of P computes only rows [p B/P, (p+1) B/P) of the same global batch, and the
  processes' slices concatenate to the one-process batch;
* files are visited in epochs (each file once per epoch, a fresh random order each epoch, via
  `tf.random.experimental.index_shuffle`) without any shuffle buffer or iterator state.

The pipeline yields waveforms, not spectrograms: the STFT runs on the accelerator inside the
train step, which keeps the host's work to a gather, a few random draws and (for on-the-fly
mixing) one FFT convolution per example.

Sources are paired (clean/noisy folders, TFDS), mixed on the fly ("mix"), or clean audio alone
("clean", and TFDS datasets without a "noisy" feature such as `maestro_v3`): the training data of
unconditional priors, whose batches are {"clean"} only. See `make_train_dataset`.

TensorFlow is imported only when a dataset is built, with GPUs hidden from it (`_tf.import_tf`).
"""
from __future__ import annotations

import functools
import logging
import zlib

import numpy as np

from diffrestore.data import mixing
from diffrestore.data.defaults import crop_length, default_data_config  # noqa: F401  (re-exported)
from diffrestore.data.corpus import (
    FileStore, MemoryStore, ResampledFileStore, estimate_nbytes, load_clean_store, load_store, resampled_length,
)
from diffrestore.data.pairs import (
    LAYOUTS, DataError, audio_infos, check_pairs, clean_subset_folder, find_pairs, list_audio_files, read_mono,
)

log = logging.getLogger("diffrestore.data")

DATASETS = ("folder", "synthetic", "mix", "tfds", "clean")
NORMALIZE = ("noisy", "clean", "none")
FILE_ORDERS = ("epoch", "uniform")
SHORT_FILES = ("skip", "pad")

# Tags folded into an example's seed, one per independent choice, so adding a choice later does
# not change the others.
_TAG_FILE, _TAG_CROP, _TAG_NOISE, _TAG_NOISE_START, _TAG_SNR, _TAG_RIR, _TAG_RIR_USE = range(1, 8)
_SEED_SALT = 0x64696666  # second word of the base seed ("diff"): keeps our streams apart from
# other users of the same integer seed.
_EVAL_MIX_SEED = 20240  # validation/test mixtures are fixed: one seed for every run


def _get(cfg, name, default=None):
    value = getattr(cfg, name, default) if not isinstance(cfg, dict) else cfg.get(name, default)
    return default if value is None else value


def _normalize_mode(cfg) -> str:
    mode = str(_get(cfg, "normalize", "noisy"))
    mode = "none" if mode == "not" else mode  # the reference's name for it
    if mode not in NORMALIZE:
        raise ValueError(f"data.normalize must be one of {NORMALIZE}, not {mode!r}")
    return mode


def _check_clean_normalize(cfg) -> None:
    if _normalize_mode(cfg) == "noisy":
        raise ValueError("data.normalize='noisy' divides by the peak of the noisy audio, and clean-only data has none: "
                         "set data.normalize='none' (as CQT-Diff and BABE train) or 'clean' (the peak of each segment)")


def _check_config(cfg) -> None:
    dataset = str(_get(cfg, "dataset", "folder"))
    if dataset not in DATASETS:
        raise ValueError(f"data.dataset must be one of {DATASETS}, not {dataset!r}")
    if str(_get(cfg, "short_files", "skip")) not in SHORT_FILES:
        raise ValueError(f"data.short_files must be one of {SHORT_FILES}, not {_get(cfg, 'short_files')!r}")
    if dataset == "clean":
        _check_clean_normalize(cfg)
    if str(_get(cfg, "layout", "default")) not in LAYOUTS:
        raise ValueError(f"data.layout must be one of {sorted(LAYOUTS)}, not {_get(cfg, 'layout')!r}")
    if str(_get(cfg, "file_order", "epoch")) not in FILE_ORDERS:
        raise ValueError(f"data.file_order must be one of {FILE_ORDERS}, not {_get(cfg, 'file_order')!r}")
    _normalize_mode(cfg)
    if crop_length(cfg) <= 0:
        raise ValueError(f"data.num_frames={cfg.num_frames} and data.hop_length={cfg.hop_length} give an empty crop")
    if dataset in ("folder", "synthetic", "mix", "clean") and not _get(cfg, "data_dir", ""):
        raise ValueError(f"data.data_dir must be set for dataset={dataset!r}")
    if dataset == "mix":
        if not _get(cfg, "noise_dir", ""):
            raise ValueError("data.noise_dir must be set for dataset='mix'")
        low, high = (float(v) for v in cfg.snr_db)
        if not low <= high:
            raise ValueError(f"data.snr_db must be (low, high) with low <= high, not {tuple(cfg.snr_db)}")
        if str(_get(cfg, "mix_target", "dry")) not in mixing.MIX_TARGETS:
            raise ValueError(f"data.mix_target must be one of {mixing.MIX_TARGETS}, not {cfg.mix_target!r}")


def _budget_bytes(cfg) -> int:
    return int(float(_get(cfg, "preload_max_mb", 4096)) * 2**20)


# ---------------------------------------------------------------------------------------------
# Sources: what the examples are drawn from


class _PairedSource:
    """Clean/noisy pairs of equal length, read at the same offsets."""

    kind = "paired"

    def __init__(self, clean, noisy, names):
        self.clean, self.noisy, self.names = clean, noisy, list(names)
        self.lengths = clean.lengths


class _CleanSource:
    """Clean audio alone (the training data of unconditional priors), at the config's rate."""

    kind = "clean"

    def __init__(self, audio, names):
        self.audio, self.names = audio, list(names)
        self.lengths = audio.lengths


class _MixSource:
    """Speech, noise and impulse responses that are combined per example."""

    kind = "mix"

    def __init__(self, speech, noise, rirs: np.ndarray | None, names):
        self.speech, self.noise, self.rirs, self.names = speech, noise, rirs, list(names)
        self.lengths = speech.lengths


def _paired_folder_source(cfg, subset: str) -> _PairedSource:
    pairs = find_pairs(cfg.data_dir, subset, str(_get(cfg, "layout", "default")), check=False)
    if not pairs:
        raise DataError(f"{cfg.data_dir}/{subset}: no audio files")
    clean_infos = audio_infos([p.clean for p in pairs])
    noisy_infos = audio_infos([p.noisy for p in pairs])
    # The headers are read once: for the checks and for the memory estimate.
    check_pairs(pairs, sample_rate=int(cfg.sample_rate), infos=(clean_infos, noisy_infos))
    budget = _budget_bytes(cfg)
    if estimate_nbytes(clean_infos) + estimate_nbytes(noisy_infos) <= budget:
        clean, noisy = MemoryStore.from_files(clean_infos), MemoryStore.from_files(noisy_infos)
    else:
        log.info("%s/%s is larger than data.preload_max_mb: reading crops from disk", cfg.data_dir, subset)
        clean, noisy = FileStore(clean_infos), FileStore(noisy_infos)
    return _PairedSource(clean, noisy, [p.relpath for p in pairs])


def _long_enough(names, lengths, cfg, where: str) -> np.ndarray:
    """Which waveforms a clean source keeps: all with data.short_files="pad", else those of at
    least one crop. CQT-Diff and BABE skip short files instead of padding them (every file with
    fewer than 5 whole segments, `if num_frames>4:` ... `else: pass`, since they draw 8 segments
    per file read); one segment is enough here, where each example reads one.

    Raises:
      DataError: every waveform is too short.
    """
    lengths = np.asarray(lengths, np.int64)
    length = crop_length(cfg)
    if str(_get(cfg, "short_files", "skip")) == "pad":
        return np.ones(lengths.shape, bool)
    keep = lengths >= length
    if not keep.any():
        raise DataError(
            f"{where}: none of its {len(names)} files is a whole segment long ({length} samples at {cfg.sample_rate} Hz; "
            f"the longest has {int(lengths.max())}); lower data.segment_length or set data.short_files='pad'"
        )
    if not keep.all():
        short = [n for n, k in zip(names, keep) if not k]
        log.warning("%s: skipping %d of %d files shorter than a segment (%d samples): %s%s", where, len(short), len(names),
                    length, ", ".join(short[:5]), " ..." if len(short) > 5 else "")
    return keep


def _clean_infos(cfg, subset: str):
    """(folder, headers, relative names) of a clean corpus's subset, short files handled.

    Raises:
      DataError: no such subset, no audio files, unreadable or empty files, none long enough.
    """
    folder = clean_subset_folder(cfg.data_dir, subset)
    if folder is None:
        raise DataError(f"{cfg.data_dir}: no {subset} folder (see diffrestore.data.pairs.clean_subset_folder)")
    paths = list_audio_files(folder)
    if not paths:
        raise DataError(f"{folder}: no audio files")
    infos = audio_infos(paths)  # names every unreadable or empty file
    names = [i.path.relative_to(folder).as_posix() for i in infos]
    lengths = [resampled_length(i.num_samples, i.sample_rate, int(cfg.sample_rate)) for i in infos]
    keep = _long_enough(names, lengths, cfg, str(folder))
    return folder, [i for i, k in zip(infos, keep) if k], [n for n, k in zip(names, keep) if k]


def _clean_folder_source(cfg, subset: str) -> _CleanSource:
    folder, infos, names = _clean_infos(cfg, subset)
    audio = load_clean_store(infos, sample_rate=int(cfg.sample_rate), budget_bytes=_budget_bytes(cfg))
    if isinstance(audio, ResampledFileStore):
        log.info("%s is larger than data.preload_max_mb: reading (and resampling) segments from disk", folder)
    return _CleanSource(audio, names)


def _load_rirs(infos, *, sample_rate: int, max_seconds: float) -> np.ndarray:
    """(K, R) float32 impulse responses from `mixing.prepare_rir`, zero-padded to a common R."""
    max_samples = max(1, int(round(max_seconds * sample_rate)))
    rirs = []
    for info in infos:
        try:
            rirs.append(mixing.prepare_rir(read_mono(info.path, channel=0), max_samples=max_samples))
        except ValueError as err:
            raise DataError(f"{info.path}: {err}") from None
    out = np.zeros((len(rirs), max(r.shape[0] for r in rirs)), np.float32)
    for k, rir in enumerate(rirs):
        out[k, : rir.shape[0]] = rir
    return out


def _mix_source(cfg, subset: str) -> _MixSource:
    sources = mixing.find_mix_sources(cfg.data_dir, cfg.noise_dir, _get(cfg, "rir_dir", ""), subset, sample_rate=int(cfg.sample_rate))
    rirs = None
    if sources.rirs:
        rirs = _load_rirs(sources.rirs, sample_rate=int(cfg.sample_rate), max_seconds=float(_get(cfg, "rir_max_seconds", 1.0)))
    budget = _budget_bytes(cfg) - (rirs.nbytes if rirs is not None else 0)
    # Speech first: it is read at every example; noise corpora are often the larger ones.
    speech = load_store(sources.speech, budget_bytes=budget, channel=0)
    noise = load_store(sources.noise, budget_bytes=budget - speech.nbytes, channel=0)
    names = [i.path.relative_to(sources.speech_root).as_posix() for i in sources.speech]
    return _MixSource(speech, noise, rirs, names)


def _tfds_split(builder, subset: str) -> str:
    splits = set(builder.info.splits.keys())
    wanted = {"train": ["train"], "valid": ["validation", "valid"], "test": ["test"]}.get(subset, [subset])
    for name in wanted:
        if name in splits:
            return name
    if subset == "valid" and "test" in splits:
        # VoiceBank-DEMAND has no validation split; the sgmse recipes validate on its test set.
        log.warning("%s has no validation split: validating on its test split", builder.info.full_name)
        return "test"
    raise DataError(f"{builder.info.full_name} has no {subset} split (it has {sorted(splits)})")


def _tfds_builder(cfg):
    from diffrestore.data._tf import import_tfds

    tfds = import_tfds()
    import diffrestore.data.tfds_builders  # noqa: F401  (registers our builders)

    data_dir = _get(cfg, "tfds_data_dir", "") or None
    try:
        return tfds.builder(str(cfg.tfds_name), data_dir=data_dir)
    except Exception as err:
        raise DataError(f"cannot open the TFDS dataset {cfg.tfds_name!r} in {data_dir or 'the default data dir'}: {err}") from None


def _tfds_source(cfg, subset: str):
    """A prepared TFDS split, read into memory once (its examples are then cropped like files).

    Datasets with "clean" and "noisy" features give a paired source; datasets without "noisy"
    (e.g. `maestro_v3`, whose feature is "audio") give a clean source.
    """
    from diffrestore.data._tf import import_tfds

    tfds = import_tfds()
    builder = _tfds_builder(cfg)
    split = _tfds_split(builder, subset)
    info = builder.info
    if not info.splits[split].num_examples:
        raise DataError(f"{info.full_name} split {split!r} is empty or not prepared in {builder.data_dir}")
    num_bytes = int(info.splits[split].num_bytes)
    if num_bytes > _budget_bytes(cfg):
        raise DataError(
            f"{info.full_name} split {split!r} takes {num_bytes / 2**20:.0f} MB, more than data.preload_max_mb="
            f"{_get(cfg, 'preload_max_mb')}; raise it (the split is held in memory) or train from a folder"
        )
    clean_only = "noisy" not in info.features
    if clean_only:
        _check_clean_normalize(cfg)
    audio_key = "audio" if clean_only and "audio" in info.features else "clean"
    examples = []
    for ex in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)):
        name = ex["id"].decode() if isinstance(ex["id"], bytes) else str(ex["id"])
        if "sample_rate" in ex and int(ex["sample_rate"]) != int(cfg.sample_rate):
            raise DataError(f"{info.full_name}/{split} example {name} is at {int(ex['sample_rate'])} Hz, the config says {cfg.sample_rate} Hz")
        if clean_only:
            examples.append((name, ex[audio_key].reshape(-1)))
            continue
        if ex["clean"].shape != ex["noisy"].shape:
            raise DataError(f"{info.full_name}/{split} example {name}: clean {ex['clean'].shape} and noisy {ex['noisy'].shape} differ")
        examples.append((name, ex["clean"].reshape(-1), ex["noisy"].reshape(-1)))
    examples.sort(key=lambda e: e[0])  # independent of shard order, the same on every host
    if clean_only:
        keep = _long_enough([e[0] for e in examples], [e[1].shape[0] for e in examples], cfg, f"{info.full_name}/{split}")
        examples = [e for e, k in zip(examples, keep) if k]
        return _CleanSource(MemoryStore.from_waves([e[1] for e in examples]), [e[0] for e in examples])
    return _PairedSource(
        MemoryStore.from_waves([e[1] for e in examples]),
        MemoryStore.from_waves([e[2] for e in examples]),
        [e[0] for e in examples],
    )


def _train_source(cfg):
    dataset = str(cfg.dataset)
    if dataset in ("folder", "synthetic"):
        return _paired_folder_source(cfg, "train")
    if dataset == "mix":
        return _mix_source(cfg, "train")
    if dataset == "clean":
        return _clean_folder_source(cfg, "train")
    return _tfds_source(cfg, "train")


# ---------------------------------------------------------------------------------------------
# Per-example graph functions


def _uniform_int(tf, seed, low, high):
    """Stateless int64 uniform on [low, high)."""
    return tf.random.stateless_uniform([], seed, tf.cast(low, tf.int64), tf.cast(high, tf.int64), dtype=tf.int64)


def _pick_file(tf, *, order: str, order_seed, example_seed, global_index, num_files: int):
    """Index of the file that global example `global_index` uses.

    "epoch": position global_index mod N of epoch (global_index div N)'s permutation; every file
    once per epoch. "uniform": an independent draw per example.
    """
    if order == "uniform":
        return _uniform_int(tf, tf.random.experimental.stateless_fold_in(example_seed, _TAG_FILE), 0, num_files)
    n = tf.constant(num_files, tf.int64)
    epoch_seed = tf.random.experimental.stateless_fold_in(order_seed, global_index // n)
    return tf.random.experimental.index_shuffle(global_index % n, epoch_seed, n - 1)


def _crop_start(tf, seed, num_samples, length: int):
    """First sample of the crop: uniform on [0, n - length] for a long enough file, else
    -(pad // 2), which centres the file in zeros as the reference pads (pad//2 left, rest right)."""
    random_start = _uniform_int(tf, seed, 0, tf.maximum(num_samples - length, 0) + 1)
    return tf.where(num_samples >= length, random_start, -((length - num_samples) // 2))


def _normalise(tf, clean, noisy, mode: str):
    """Divides both by the peak of the reference signal; a silent reference leaves them as they
    are (the reference's division would give NaNs). `noisy` is None for clean-only sources."""
    if mode == "none":
        return clean, noisy, tf.constant(1.0)
    peak = tf.reduce_max(tf.abs(noisy if mode == "noisy" else clean))
    factor = tf.where(peak > 0, peak, 1.0)
    return clean / factor, (None if noisy is None else noisy / factor), factor


def _clean_example(tf, source: _CleanSource, tensors, *, length, index, seed_fn):
    """A random segment of clean audio: uniform over the file's whole segments' starts (files
    kept shorter than a segment, with short_files="pad", are centred in zeros)."""
    n = tf.gather(tensors["lengths"], index)
    start = _crop_start(tf, seed_fn(_TAG_CROP), n, length)
    return source.audio.read_tf(tf, index, start, length), {"start": start}


def _paired_example(tf, source: _PairedSource, tensors, *, length, index, seed_fn):
    n = tf.gather(tensors["lengths"], index)
    start = _crop_start(tf, seed_fn(_TAG_CROP), n, length)
    clean = source.clean.read_tf(tf, index, start, length)
    noisy = source.noisy.read_tf(tf, index, start, length)
    return clean, noisy, {"start": start}


def _mix_example(tf, source: _MixSource, tensors, cfg, *, length, index, seed_fn):
    n = tf.gather(tensors["lengths"], index)
    start = _crop_start(tf, seed_fn(_TAG_CROP), n, length)
    info = {"start": start}
    if source.rirs is None:
        dry = source.speech.read_tf(tf, index, start, length)
        speech = dry
        info["rir_index"] = tf.constant(-1, tf.int64)
    else:
        num_taps = source.rirs.shape[1]
        # The excerpt's reverberation includes the tail of the R - 1 samples before it.
        extended = source.speech.read_tf(tf, index, start - (num_taps - 1), length + num_taps - 1)
        dry = extended[num_taps - 1:]
        rir_index = _uniform_int(tf, seed_fn(_TAG_RIR), 0, source.rirs.shape[0])
        use_rir = tf.random.stateless_uniform([], seed_fn(_TAG_RIR_USE)) < float(_get(cfg, "rir_probability", 1.0))
        reverberant = mixing.tf_reverberate_valid(tf, extended, tf.gather(tensors["rirs"], rir_index), length)
        speech = tf.where(use_rir, reverberant, dry)
        info["rir_index"] = tf.where(use_rir, rir_index, -1)

    noise_index = _uniform_int(tf, seed_fn(_TAG_NOISE), 0, len(source.noise))
    noise_len = tf.gather(tensors["noise_lengths"], noise_index)
    # Long noise: an excerpt that fits; short noise: looped from any start.
    noise_start = _uniform_int(tf, seed_fn(_TAG_NOISE_START), 0, tf.where(noise_len >= length, noise_len - length + 1, noise_len))
    noise = source.noise.read_looped_tf(tf, noise_index, noise_start, length)
    low, high = (float(v) for v in cfg.snr_db)
    snr_db = low + (high - low) * tf.random.stateless_uniform([], seed_fn(_TAG_SNR), dtype=tf.float32)
    noisy, _ = mixing.tf_mix_at_snr(tf, speech, noise, snr_db)
    target = dry if str(_get(cfg, "mix_target", "dry")) == "dry" else speech
    info.update(snr_db=snr_db, noise_index=noise_index, noise_start=noise_start)
    return target, noisy, info


def _example_fn(tf, source, cfg, *, seed: int, global_batch_size: int, with_info: bool):
    """(step, row) -> {"clean"[, "noisy"][, info...]}: one example, from stateless draws only."""
    length = crop_length(cfg)
    mode = _normalize_mode(cfg)
    order = str(_get(cfg, "file_order", "epoch"))
    base = tf.constant([seed, _SEED_SALT], tf.int64)
    examples_seed = tf.random.experimental.stateless_fold_in(base, 0)
    order_seed = tf.random.experimental.stateless_fold_in(base, 1)
    num_files = int(source.lengths.shape[0])
    # Made here, outside the traced function, so the dataset captures them instead of copying
    # them into its graph as constants.
    tensors = {"lengths": tf.constant(source.lengths)}
    if source.kind == "mix":
        tensors["noise_lengths"] = tf.constant(source.noise.lengths)
        if source.rirs is not None:
            tensors["rirs"] = tf.constant(source.rirs)

    def fn(step, row):
        example_seed = tf.random.experimental.stateless_fold_in(tf.random.experimental.stateless_fold_in(examples_seed, step), row)
        seed_fn = functools.partial(tf.random.experimental.stateless_fold_in, example_seed)
        index = _pick_file(tf, order=order, order_seed=order_seed, example_seed=example_seed,
                           global_index=step * global_batch_size + row, num_files=num_files)
        if source.kind == "clean":
            (clean, info), noisy = _clean_example(tf, source, tensors, length=length, index=index, seed_fn=seed_fn), None
        elif source.kind == "paired":
            clean, noisy, info = _paired_example(tf, source, tensors, length=length, index=index, seed_fn=seed_fn)
        else:
            clean, noisy, info = _mix_example(tf, source, tensors, cfg, length=length, index=index, seed_fn=seed_fn)
        clean, noisy, factor = _normalise(tf, clean, noisy, mode)
        out = {"clean": tf.ensure_shape(clean, [length])}
        if noisy is not None:
            out["noisy"] = tf.ensure_shape(noisy, [length])
        if with_info:
            out.update(info, index=index, step=step, row=row, scale=factor)
        return out

    return fn


# ---------------------------------------------------------------------------------------------
# Public API


def local_batch_size(global_batch_size: int, process_count: int) -> int:
    """Rows per process. Raises ValueError unless the global batch splits evenly."""
    if global_batch_size <= 0:
        raise ValueError(f"global_batch_size must be positive, not {global_batch_size}")
    if global_batch_size % process_count:
        raise ValueError(
            f"global_batch_size={global_batch_size} does not split over {process_count} processes; "
            f"use a multiple of {process_count}"
        )
    return global_batch_size // process_count


def make_train_dataset(data_config, *, global_batch_size: int, seed: int, start_step: int = 0,
                       process_index: int = 0, process_count: int = 1, with_info: bool = False):
    """The training input of this process as an (endless) `tf.data.Dataset`.

    data.dataset="clean" (or a TFDS dataset without "noisy") trains a prior on clean audio:
    `data.data_dir` is a folder of audio files of any format soundfile reads, searched
    recursively (`DIR/train` when it exists, else all of DIR). Files are downmixed to mono (the
    mean of the channels, as CQT-Diff and BABE do) and resampled from their own rate to
    `data.sample_rate` (`diffrestore.audio.resample.resample`): once, when the corpus fits in
    `data.preload_max_mb` and is read into memory, else per segment (the matching span is read
    at the file's rate and resampled). Segments are `crop_length` samples (`data.segment_length`)
    drawn uniformly from each file; files shorter than a segment are skipped (as CQT-Diff and
    BABE skip theirs) or, with `data.short_files="pad"`, centred in zeros. `data.normalize`
    is "none" (as the references: they never scale the audio) or "clean" (each segment divided
    by its peak).

    Args:
      data_config: the `data` group (see `default_data_config`).
      global_batch_size: B, examples per step over all processes.
      seed: the run's seed (0 <= seed < 2**63); batch k is a function of (seed, k) alone.
      start_step: the first step to produce (the restored step when resuming).
      process_index, process_count: this process's rows are [p B/P, (p+1) B/P).
      with_info: also yield each example's draws ("index", "start", "step", "row", "scale",
        and for mixing "snr_db", "noise_index", "noise_start", "rir_index"), for tests and
        debugging; the train step must not receive them.

    Returns:
      A dataset of dicts {"clean", "noisy"}: float32 (B/P, L) waveforms, L = crop_length; for
      clean-only sources {"clean"} alone.

    Raises:
      ValueError: bad arguments or config fields. DataError: problems with the data (named: an
        empty folder, unreadable or empty files, no file long enough; NaN/infinite samples when
        the files are read, which for corpora read from disk is when a segment holds them).
    """
    _check_config(data_config)
    if not 0 <= int(seed) < 2**63:
        raise ValueError(f"seed must be in [0, 2**63), not {seed}")
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, not {start_step}")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index={process_index} is not in [0, process_count={process_count})")
    rows = local_batch_size(int(global_batch_size), int(process_count))

    from diffrestore.data._tf import import_tf

    tf = import_tf()
    source = _train_source(data_config)
    example_fn = _example_fn(tf, source, data_config, seed=int(seed), global_batch_size=int(global_batch_size), with_info=with_info)
    first_row = process_index * rows
    workers = int(_get(data_config, "num_workers", 0))

    def step_and_row(j):
        # Element j is row (j mod rows) of step start_step + (j div rows); batching `rows`
        # elements then gives exactly one step per batch.
        return int(start_step) + j // rows, first_row + j % rows

    # No autograph: the functions have no tensor-dependent Python control flow to convert.
    no_autograph = tf.autograph.experimental.do_not_convert
    ds = tf.data.Dataset.counter(0).map(no_autograph(step_and_row))
    ds = ds.map(no_autograph(example_fn), num_parallel_calls=workers if workers > 0 else tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(rows, drop_remainder=True)  # static shapes: one compiled train step
    ds = ds.prefetch(int(_get(data_config, "prefetch_batches", 2)))
    options = tf.data.Options()
    options.deterministic = True
    if workers > 0:
        options.threading.private_threadpool_size = workers
    return ds.with_options(options)


def make_train_iterator(data_config, *, global_batch_size: int, seed: int, start_step: int = 0,
                        process_index: int = 0, process_count: int = 1):
    """Numpy batches of the training input, from `start_step` on, forever.

    Each element is {"clean": float32 (B/P, L), "noisy": float32 (B/P, L)} with L = crop_length
    samples ((num_frames - 1) * hop_length, or data.segment_length): random crops (files shorter
    than L are centred in zeros), both divided by the noisy peak (data.normalize). Clean-only
    data (data.dataset="clean", MAESTRO from TFDS) gives {"clean": float32 (B/P, L)} alone.
    See `make_train_dataset`.
    """
    ds = make_train_dataset(
        data_config, global_batch_size=global_batch_size, seed=seed, start_step=start_step,
        process_index=process_index, process_count=process_count,
    )
    return ds.as_numpy_iterator()


class EvalPair:
    """A validation/test example: `clean`, `noisy` float32 (T,) waveforms (read on first use,
    then kept) and `relpath`, a name unique within the subset.

    Attributes:
      relpath: the noisy file's relative path (folder), speech file's (mix) or the TFDS id.
      clean_path, noisy_path: the files, where there are files (None for mixtures and TFDS).
      snr_db: the mixture's SNR for dataset="mix", else None.
    """

    def __init__(self, relpath: str, load_fn, *, clean_path=None, noisy_path=None, snr_db=None):
        self.relpath = relpath
        self.clean_path = clean_path
        self.noisy_path = noisy_path
        self.snr_db = snr_db
        self._load_fn = load_fn

    @functools.cached_property
    def _waves(self):
        clean, noisy = self._load_fn()
        return np.asarray(clean, np.float32), np.asarray(noisy, np.float32)

    @property
    def clean(self) -> np.ndarray:
        return self._waves[0]

    @property
    def noisy(self) -> np.ndarray:
        return self._waves[1]

    def __repr__(self) -> str:
        return f"EvalPair({self.relpath!r})"


def _read_pair(clean_path, noisy_path):
    return read_mono(clean_path), read_mono(noisy_path)


def _eval_mixture(sources: mixing.MixSources, rirs, cfg, k: int):
    """Mixture k of a validation/test subset: full-length, the same in every run."""
    speech_info = sources.speech[k]
    relpath = speech_info.path.relative_to(sources.speech_root).as_posix()
    # Seeded by the file's name, so adding files does not change the others' mixtures.
    rng = np.random.default_rng([_EVAL_MIX_SEED, zlib.crc32(relpath.encode())])
    noise_info = sources.noise[int(rng.integers(len(sources.noise)))]
    n, nn = speech_info.num_samples, noise_info.num_samples
    noise_start = int(rng.integers(nn - n + 1 if nn >= n else nn))
    low, high = (float(v) for v in cfg.snr_db)
    snr_db = float(rng.uniform(low, high))
    rir = None
    if rirs is not None and rng.uniform() < float(_get(cfg, "rir_probability", 1.0)):
        rir = rirs[int(rng.integers(rirs.shape[0]))]
    target = str(_get(cfg, "mix_target", "dry"))

    def load():
        clean = read_mono(speech_info.path, channel=0)
        noise = mixing.looped_excerpt(read_mono(noise_info.path, channel=0), noise_start, n)
        return mixing.mix_example(clean, noise, snr_db, rir=rir, target=target)

    return EvalPair(relpath, load, clean_path=speech_info.path, snr_db=snr_db)


def load_eval_pairs(data_config, subset: str = "valid") -> list[EvalPair]:
    """The validation/test examples of a subset, full length, sorted by `relpath`.

    Folder corpora give their files (read lazily); "mix" gives fixed mixtures of the subset's
    speech (a seed per file name, so every run validates on the same mixtures); "tfds" gives
    the split ("valid" falls back to "test" when there is no validation split, with a warning).

    Raises:
      DataError: missing folders/splits or broken files (named).
    """
    _check_config(data_config)
    dataset = str(data_config.dataset)
    cfg = data_config
    if dataset == "clean":
        raise ValueError("data.dataset='clean' has no noisy audio to enhance: a prior validates on load_eval_segments")
    if dataset in ("folder", "synthetic"):
        pairs = find_pairs(cfg.data_dir, subset, str(_get(cfg, "layout", "default")), sample_rate=int(cfg.sample_rate))
        return [EvalPair(p.relpath, functools.partial(_read_pair, p.clean, p.noisy), clean_path=p.clean, noisy_path=p.noisy) for p in pairs]
    if dataset == "mix":
        sources = mixing.find_mix_sources(cfg.data_dir, cfg.noise_dir, _get(cfg, "rir_dir", ""), subset, sample_rate=int(cfg.sample_rate))
        rirs = None
        if sources.rirs:
            rirs = _load_rirs(sources.rirs, sample_rate=int(cfg.sample_rate), max_seconds=float(_get(cfg, "rir_max_seconds", 1.0)))
        return sorted((_eval_mixture(sources, rirs, cfg, k) for k in range(len(sources.speech))), key=lambda p: p.relpath)
    source = _tfds_source(cfg, subset)
    if source.kind == "clean":
        raise ValueError(f"{cfg.tfds_name} has no noisy audio to enhance: a prior validates on load_eval_segments")
    return [
        EvalPair(name, functools.partial(lambda k: (source.clean.wave(k), source.noisy.wave(k)), k))
        for k, name in enumerate(source.names)
    ]


def load_eval_segments(data_config, subset: str = "valid", num_segments: int = 8, length: int | None = None) -> np.ndarray:
    """A few fixed clean segments of a subset (the same in every run), for priors trained on
    clean audio (dataset="clean", or a clean-only TFDS dataset such as `maestro_v3`): they
    validate by unconditional sampling and need only a little real audio to compare with.

    One segment per file, from `num_segments` files spread evenly over the sorted subset (fewer
    when it has fewer files): the middle `length` samples of each (BABE's validation also takes
    one segment per piece, from 10 s in; CQT-Diff's, consecutive segments of every piece).
    Short files, resampling and normalisation are as in training (files shorter than `length`
    that are kept are centred in zeros).

    Args:
      data_config: the `data` group.
      subset: "valid" (`DIR/valid` or `DIR/validation`; TFDS "validation"), "test", ...
      num_segments: at most this many segments.
      length: samples per segment; crop_length (the training segment) if None.

    Returns:
      (K, length) float32, K <= num_segments; K = 0 (with a warning) when a clean folder has no
      such subset (a flat folder is all training data).

    Raises:
      ValueError: a dataset with noisy audio (use `load_eval_pairs`), or bad config fields.
      DataError: an empty subset folder, a missing TFDS split, broken files (named).
    """
    _check_config(data_config)
    cfg = data_config
    dataset = str(cfg.dataset)
    length = crop_length(cfg) if length is None else int(length)
    if dataset == "clean":
        if clean_subset_folder(cfg.data_dir, subset) is None:
            log.warning("%s has no %s folder: no %s segments", cfg.data_dir, subset, subset)
            return np.zeros((0, length), np.float32)
        _, infos, names = _clean_infos(cfg, subset)
        store = ResampledFileStore(infos, sample_rate=int(cfg.sample_rate))  # reads only the segments
    elif dataset == "tfds":
        source = _tfds_source(cfg, subset)
        if source.kind != "clean":
            raise ValueError(f"{cfg.tfds_name} is paired: validate on load_eval_pairs")
        store, names = source.audio, source.names
    else:
        raise ValueError(f"data.dataset={dataset!r} is paired: validate on load_eval_pairs")
    count = min(int(num_segments), len(names))
    chosen = sorted(set(np.linspace(0, len(names) - 1, count).round().astype(int).tolist())) if count > 0 else []
    mode = _normalize_mode(cfg)
    segments = np.zeros((len(chosen), length), np.float32)
    for row, k in enumerate(chosen):
        n = int(store.lengths[k])
        start = (n - length) // 2 if n >= length else -((length - n) // 2)  # centred, as training pads
        segments[row] = store.read(k, start, length)
        peak = float(np.max(np.abs(segments[row])))
        if mode == "clean" and peak > 0:
            segments[row] /= np.float32(peak)
    return segments
