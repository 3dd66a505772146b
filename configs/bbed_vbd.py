"""BBED (Brownian bridge with exploding diffusion) on VoiceBank-DEMAND at 16 kHz: the recipe of
Lay, Welker, Richter, Gerkmann ("Reducing the prior mismatch of stochastic differential
equations for diffusion-based speech enhancement", Interspeech 2023; sp-uhh/sgmse-bbed).

    diffrestore train --config configs/bbed_vbd.py --workdir runs/bbed_vbd \
        --config.data.data_dir=/data/VoiceBank-DEMAND

Needs: VB-DMD at 16 kHz as DIR/{train,valid,test}/{clean,noisy}/*.wav; accelerators as
configs/sgmse_vbd.py (the same 65M-parameter NCSN++ at batch 16 × 256 frames).
Recipe (sgmse-bbed's train.py defaults and README): BBED k = 2.6, c = 0.51 (README; its argparse
default is 0.52), T_sampling 0.999; sgmse's centred NCSN++ (nf 128, ch_mult 1,1,2,2,2,2,2,
2 res blocks, attention at 16) dividing by t, fir_kernel [1, 3, 3, 1]; denoising score matching
|σ·s + z|² with t ~ U(0.03, 0.999); Adam 1e-4, EMA 0.999, batch 16; compression 0.15·|X|^0.5.
Enhancement: the PC sampler (reverse diffusion + ALD, snr 0.5) from the reverse starting point
T' = 0.5 with N = 15 (eval.py's N = int(0.5 / (1/30))), 30 network calls per file.
Reaches: the VB-DMD figures the paper reports for BBED at T' = 0.5 (look them up there; not
yet reproduced with diffrestore, which needs an accelerator run).
"""
from diffrestore.config import set_family
from diffrestore.train.defaults import training_config


def get_config():
    config = set_family(training_config(), "bbed")  # k 2.6, c 0.51, T 0.999; PC from 0.5, N 15
    t = config.training
    t.batch_size = 16
    t.num_steps = 250_000
    t.log_every_steps = 100
    t.checkpoint_every_steps = 5_000
    t.keep_period = 50_000
    t.eval_every_steps = 724  # one epoch of VB-DMD at batch 16
    t.num_eval_files = 20
    t.eval_num_steps = 15
    return config
