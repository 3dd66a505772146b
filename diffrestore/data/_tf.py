"""The one place diffrestore imports TensorFlow: lazily, and with its GPUs hidden.

TensorFlow only runs the input pipeline (on the host CPU). Left alone it would reserve the
memory of every GPU it sees and compete with JAX for it, so GPUs are hidden from it before any
TensorFlow op runs.
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger("diffrestore.data")

_configured = False


def import_tf():
    """`tensorflow`, with GPUs hidden from it (done once per process)."""
    global _configured
    # TensorFlow's C++ info lines (CPU feature flags, ...) are noise in training logs; a value
    # the user set is kept.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if not _configured:
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:
            # Someone ran TensorFlow ops before us; the devices can no longer be changed.
            if tf.config.get_visible_devices("GPU"):
                log.warning("TensorFlow was initialised with GPUs visible before diffrestore.data hid them; "
                            "call tf.config.set_visible_devices([], 'GPU') before using TensorFlow")
        _configured = True
    return tf


def import_tfds():
    """`tensorflow_datasets`, after `import_tf` (so its TensorFlow import also hides GPUs)."""
    import_tf()
    import tensorflow_datasets as tfds

    return tfds
