"""SGMSE+ on VoiceBank-DEMAND at 16 kHz: the recipe of Richter et al. (TASLP 2023).

    diffrestore train --config configs/sgmse_vbd.py --workdir runs/sgmse_vbd \
        --config.data.data_dir=/data/VoiceBank-DEMAND

Needs: VB-DMD at 16 kHz laid out as DIR/{train,valid,test}/{clean,noisy}/*.wav (the
reference's `--base_dir` layout); accelerators: the step holds a 65M-parameter NCSN++ at
batch 8 × 256 frames (a single 40 GB+ GPU/TPU chip is enough; more devices split the batch).
Recipe (the reference's defaults, `python train.py --base_dir ...`): NCSN++ (nf 128,
ch_mult 1,1,2,2,2,2,2, 2 res blocks, attention at 16), OUVE SDE θ = 1.5, σ 0.05–0.5,
denoising score matching with t_eps 0.03, Adam lr 1e-4, EMA 0.999, batch 8, 256-frame crops,
n_fft 510 / hop 128, compression 0.15·|X|^0.5, PC sampling (reverse diffusion + ALD,
snr 0.5, N = 30) for validation on 20 files.
Reaches: the VB-DMD test-set figures that Richter et al. (IEEE/ACM TASLP 2023) report for
SGMSE+ with the PC sampler at N = 30 (look them up there; not yet reproduced with diffrestore,
which needs an accelerator run). `training.num_steps` = 250k is about 170 epochs of the 11.5k
training utterances at batch 8.
"""
from diffrestore.train.defaults import training_config


def get_config():
    config = training_config()  # default_config() is this recipe; training adds the loop
    t = config.training
    t.batch_size = 8
    t.num_steps = 250_000
    t.log_every_steps = 100
    t.checkpoint_every_steps = 5_000
    t.keep_period = 50_000
    t.eval_every_steps = 1_447  # one epoch of VB-DMD at batch 8, as the reference validates per epoch
    t.num_eval_files = 20
    t.eval_num_steps = 30
    return config
