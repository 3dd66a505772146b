"""Tiny SGMSE+ (NCSN++ with 8 filters, two resolutions, 64×64 spectrograms): < 1 s per step on a CPU.

For tests and smoke runs, not for results.

    diffrestore train --config configs/tiny.py --workdir /tmp/tiny \
        --config.data.data_dir=runs/quickstart/data --config.training.num_steps=20

Other families of the supervised half at the same size (`diffrestore.config.set_family`):
`configs/tiny.py:sb`, `:bbed`, `:storm` (joint; `--config.model.storm_mode=frozen_denoiser`
freezes D), `:flow` (conditional flow matching), `:crp` (CRP fine-tuning; give
`--config.training.init_from=CK`, a BBED model of this size).

Needs: a corpus DIR/{train,valid}/{clean,noisy}/*.wav with the same file names in clean/ and
noisy/ (`diffrestore.data.write_synthetic_corpus` writes one).
Reaches: nothing audible; it shows that training runs end to end (finite, decreasing loss,
checkpoints, resume) on 2 CPU cores; most of its first minute is XLA compiling the programs.
"""
import ml_collections

from diffrestore.config import set_family
from diffrestore.train.defaults import training_config


def get_config(family: str = "sgmse"):
    config = training_config()
    config.model.backbone_kwargs = ml_collections.ConfigDict(
        {"nf": 8, "ch_mult": (1, 2), "num_res_blocks": 1, "attn_resolutions": (), "centered": True}
    )
    # A coarse STFT keeps the step cheap: 64 bins × 64 frames (crops of 63 hops of 32 samples,
    # 0.13 s at 16 kHz).
    config.data.n_fft = 126
    config.data.hop_length = 32
    config.data.num_frames = 64

    t = config.training
    t.batch_size = 2
    t.num_steps = 10
    t.log_every_steps = 1
    t.checkpoint_every_steps = 5
    t.keep_checkpoints = 2
    t.keep_period = 0
    t.eval_every_steps = 0
    t.num_eval_files = 2
    t.eval_num_steps = 2
    t.tensorboard = False
    if family != "sgmse":
        set_family(config, family, num_steps=2)
        if family == "crp":
            config.model.crp.update(num_steps_min=1, num_steps_max=3)
    return config
