"""StoRM (stochastic regeneration) on VoiceBank-DEMAND at 16 kHz: the recipe of Lemercier,
Richter, Welker, Gerkmann (IEEE/ACM TASLP 2023; sp-uhh/storm, `train.py` with its defaults).

    diffrestore train --config configs/storm_vbd.py --workdir runs/storm_vbd \
        --config.data.data_dir=/data/VoiceBank-DEMAND

Needs: VB-DMD at 16 kHz as DIR/{train,valid,test}/{clean,noisy}/*.wav; accelerators: two
NCSN++ (StoRM's light configuration, nf 128, ch_mult 1,2,2,2, one res block, attention only in
the middle; 55.1M parameters for the pair) at batch 8 × 256 frames, one 24 GB+ chip.
Recipe: a predictive NCSN++ D(y) (2 input channels, no time input) and a score NCSN++ on
[x_t, y, D(y)] (6 channels, inputs mapped to 2v − 1), trained jointly ("regen-joint-training")
with loss ½·(½Σ|D(y) − x0|²) + ½·(½Σ|σ s + z|²) summed over the batch; OUVE θ = 1.5, σ 0.05–0.5
with D(y) in place of y in the mean and the prior; t_eps 0.03; Adam 1e-4, one EMA 0.999 over
both networks; compression 0.33·|X|^0.5 (StoRM's argparse default, not SGMSE's 0.15).
`--config.model.storm_mode=frozen_denoiser` trains the score network with D frozen (the
reference's "regen-freeze-denoiser"; start it from a trained model with
`--config.training.init_from=CK`).
Enhancement: D(y), then the PC sampler from D(y) + σ(1)·z (ALD snr 0.5, then reverse
diffusion with dt = 1/N), N = 50: 101 network calls per file.
Reaches: the VB-DMD figures the paper reports for StoRM (look them up there; not yet
reproduced with diffrestore, which needs an accelerator run).
"""
import ml_collections

from diffrestore.config import set_family
from diffrestore.train.defaults import training_config


def get_config():
    config = training_config()
    # StoRM's light NCSN++ for both networks (its constructor defaults).
    config.model.backbone_kwargs = ml_collections.ConfigDict(
        {"nf": 128, "ch_mult": (1, 2, 2, 2), "num_res_blocks": 1, "attn_resolutions": (0,)}
    )
    set_family(config, "storm")  # joint training, weight 0.5; PC + ALD, dt = 1/N, N 50
    config.data.spec_factor = 0.33
    t = config.training
    t.batch_size = 8
    t.num_steps = 250_000
    t.log_every_steps = 100
    t.checkpoint_every_steps = 5_000
    t.keep_period = 50_000
    t.eval_every_steps = 1_447
    t.num_eval_files = 20
    t.eval_num_steps = 50
    return config
