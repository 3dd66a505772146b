"""Training and evaluation data: paired folders, on-the-fly mixing, synthetic corpora, TFDS.

* `find_pairs` pairs `ROOT/<subset>/{clean,noisy}` files by relative path (`pairs`).
* `make_train_iterator` yields numpy batches of fixed-length waveform crops; batch k is a pure
  function of (seed, k), split over processes (`pipeline`, on tf.data).
* `load_eval_pairs` gives the full-length validation/test examples.
* `write_synthetic_corpus` writes a small speech-in-noise corpus from a seed (`synthetic`).
* `tfds_builders` (imported explicitly: it imports TensorFlow) has the TFDS builders.

Importing this package does not import TensorFlow; building a dataset does, with GPUs hidden.
"""
from diffrestore.data.pairs import AUDIO_EXTENSIONS, DataError, Pair, audio_info, find_pairs, list_audio_files, pair_folders
from diffrestore.data.pipeline import (
    EvalPair,
    crop_length,
    default_data_config,
    load_eval_pairs,
    make_train_dataset,
    make_train_iterator,
)
from diffrestore.data.synthetic import write_synthetic_corpus

__all__ = [
    "AUDIO_EXTENSIONS", "DataError", "EvalPair", "Pair", "audio_info", "crop_length", "default_data_config",
    "find_pairs", "list_audio_files", "load_eval_pairs", "make_train_dataset", "make_train_iterator",
    "pair_folders", "write_synthetic_corpus",
]
