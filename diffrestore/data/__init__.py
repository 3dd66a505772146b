"""Training and evaluation data: paired folders, clean audio, on-the-fly mixing, synthetic corpora, TFDS.

* `find_pairs` pairs `ROOT/<subset>/{clean,noisy}` files by relative path (`pairs`).
* `make_train_iterator` yields numpy batches of fixed-length waveform crops; batch k is a pure
  function of (seed, k), split over processes (`pipeline`, on tf.data).
* `load_eval_pairs` gives the full-length validation/test examples; `load_eval_segments` a few
  fixed clean segments for priors trained on clean audio (data.dataset="clean").
* `write_synthetic_corpus` writes a small speech-in-noise corpus from a seed (`synthetic`);
  `write_synthetic_music` a small polyphonic piano-like music corpus (`synthetic_music`).
* `default_data_config`, `crop_length`: the config's `data` group (`defaults`).
* `tfds_builders` (imported explicitly: it imports TensorFlow) has the TFDS builders.

Importing this package imports nothing else: each name loads its module on first use, so
loading a config needs neither TensorFlow nor soundfile (the GPU benchmark machines have
neither), and building a dataset imports TensorFlow with GPUs hidden.
"""
import importlib

_MODULE_OF = {
    "AUDIO_EXTENSIONS": "pairs", "DataError": "pairs", "Pair": "pairs", "audio_info": "pairs",
    "find_pairs": "pairs", "list_audio_files": "pairs", "pair_folders": "pairs",
    "EvalPair": "pipeline", "load_eval_pairs": "pipeline", "load_eval_segments": "pipeline",
    "make_train_dataset": "pipeline", "make_train_iterator": "pipeline",
    "crop_length": "defaults", "default_data_config": "defaults",
    "write_synthetic_corpus": "synthetic",
    "write_synthetic_music": "synthetic_music",
}

__all__ = sorted(_MODULE_OF)


def __getattr__(name):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'diffrestore.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"diffrestore.data.{_MODULE_OF[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_MODULE_OF))
