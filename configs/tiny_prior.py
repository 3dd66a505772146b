"""Tiny CQT-Diff prior (a few channels per level, 3 levels, 2 octaves of 16 bins) for tests.

    diffrestore train --config configs/tiny_prior.py --workdir /tmp/tiny_prior \
        --config.data.data_dir=DIR

Needs: DIR, a folder of clean audio at any rate (e.g. `diffrestore.data.write_synthetic_music`
writes DIR/{train,valid,test}); segments of 8192 samples at 22.05 kHz are cut from it.
Reaches: nothing audible; it shows that a prior trains end to end on 2 CPU cores (finite
loss, checkpoints, exact resume, unconditional samples at validation).
"""
from diffrestore.train.defaults import prior_training_config


def get_config():
    config = prior_training_config(
        "cqtdiff", Ns=(4, 8, 8, 8), depth=3, num_layers=2, emb_dim=32, rff_dim=8, freq_encoding_dim=4,
        num_octaves=2, bins_per_octave=16,
    )
    config.data.segment_length = 8192
    config.sampling.num_steps = 4
    t = config.training
    t.batch_size = 2
    t.num_steps = 10
    t.log_every_steps = 1
    t.checkpoint_every_steps = 5
    t.keep_checkpoints = 2
    t.keep_period = 0
    t.eval_every_steps = 0
    t.num_eval_files = 2
    t.eval_num_steps = 4
    t.num_eval_examples = 1
    t.tensorboard = False
    return config
