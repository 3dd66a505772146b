"""CRP (correcting the reverse process) fine-tuning of a BBED model on VoiceBank-DEMAND at
16 kHz, for one- or few-step enhancement: Lay, Lemercier, Richter, Gerkmann ("Single and
few-step diffusion for generative speech enhancement", ICASSP 2024; sp-uhh/sgmse_crp).

    diffrestore train --config configs/crp_bbed_vbd.py --workdir runs/crp_bbed_vbd \
        --config.data.data_dir=/data/VoiceBank-DEMAND --config.training.init_from=runs/bbed_vbd

Needs: a trained BBED model of configs/bbed_vbd.py (`init_from`: its run directory, or a
sgmse-bbed `.ckpt`); VB-DMD as there; accelerators as configs/bbed_vbd.py (each step runs up
to 15 network calls forward, one with gradient).
Recipe (sgmse_crp train_resume.py, README): per batch a start time t' ~ U(0.4, 0.7) and a
step count N uniform in 5 … 15; N Euler–Maruyama steps of the reverse BBED SDE from
y + σ(t')·z, the first N − 1 without gradient; loss ½Σ|μ − x0|² (mean over the batch) on the
last step's mean, which lands at t = 0; lr 1e-5 (README; the script's default is 1e-4),
batch 2 × 256 frames (train_resume.py), EMA 0.999.
Enhancement: one reverse step from T' = 0.5 without corrector (the checkpoint's
inference_N = 1, inference_start = 0.5): 1 network call per file.
Reaches: the single-step VB-DMD figures of the paper (look them up there; not yet reproduced
with diffrestore, which needs an accelerator run).
"""
from diffrestore.config import set_family
from diffrestore.train.defaults import training_config


def get_config():
    # t' in [0.4, 0.7], N in 5 … 15, lr 1e-5; enhancement: 1 step from 0.5, no corrector
    config = set_family(training_config(), "crp")
    t = config.training
    t.batch_size = 2
    t.num_steps = 20_000
    t.eval_every_steps = 1_000
    t.eval_num_steps = 1
    t.init_from = ""  # required: the BBED model to fine-tune
    return config
