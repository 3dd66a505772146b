"""Quickstart: a small Schrödinger-bridge enhancer trained on the synthetic corpus on a CPU.

    diffrestore quickstart --workdir runs/quickstart     # writes the corpus, trains, evaluates
    # or only the training part, on a corpus that exists:
    diffrestore train --config configs/quickstart.py --workdir runs/quickstart \
        --config.data.data_dir=runs/quickstart/data

Needs: nothing but this package; 2 CPU cores and ~1 GB of memory. The corpus
(`quickstart.corpus`: 64 training files of 2–4 s of synthetic speech in white/pink/brown/
babble/hum/click noise at −5…10 dB SNR, 16 kHz) is written by `diffrestore quickstart`.
Recipe: what learns fastest per CPU second. A bridge with data prediction (SBVE, the
reference's SB recipe) is trained like a denoiser and samples in a few steps, where a score
model needs far more training and ~60 network calls per file. The network is NCSN++ v2 at
nf 16 on three resolutions without attention or FIR resampling (0.31M parameters; FIR
resampling is several times slower on CPU), on 128-bin spectrograms (n_fft 254, hop 64) of
0.25 s crops, batch 4 (15.7 GFLOP per step), Adam 1e-3 with a 50-step warm-up and clipping,
EMA 0.99 (0.999 would still be averaging the first minutes). Training stops after
`training.max_minutes` (8) or `training.num_steps`; running again continues it.
Reaches (measured on 2 shared CPU cores, 10.5 minutes end to end: ~1 min corpus and
compilation, 8 min / ~480 steps of training at ~1.3 steps/s, ~1.5 min enhancing): the loss
falls from 0.058 to ~0.001 within 150 steps; on the 6 held-out test files the bridge ODE in
8 steps takes SI-SDR from 3.0 to 6.7 dB, PESQ from 1.12 to 1.37, ESTOI from 0.517 to 0.533,
with the noise above the speech band removed (WORKDIR/spectrograms.png). On a 2-core Intel
Xeon VM (2026-11-24, commit c6ec0db) the 8 minutes gave 1751 steps (~3.7 steps/s) and
SI-SDR 7.1 dB, PESQ 1.46, ESTOI 0.591 (9 min 14 s end to end).

`get_config("sgmse")` gives the SGMSE+ (score matching, OUVE) variant of the same network
for comparison; it needs much longer to enhance.
"""
import ml_collections

from diffrestore.train.defaults import training_config


def get_config(variant: str = "sb"):
    config = training_config()
    m = config.model
    m.backbone_kwargs = ml_collections.ConfigDict(
        {"nf": 16, "ch_mult": (1, 2, 2), "num_res_blocks": 1, "attn_resolutions": (), "fir": False}
    )
    if variant == "sb":
        m.backbone = "ncsnpp_v2"
        m.loss_type = "data_prediction"
        config.sde.name = "sbve"
        config.sde.N = 8
        config.sampling.sampler = "sb_ode"
        config.sampling.num_steps = 8
    elif variant == "sgmse":
        m.backbone_kwargs.centered = True
        config.sampling.sampler = "pc"
        config.sampling.num_steps = 16
    else:
        raise ValueError(f"unknown quickstart variant {variant!r}: sb or sgmse")

    d = config.data
    d.data_dir = "runs/quickstart/data"
    d.n_fft = 254  # 128 bins
    d.hop_length = 64
    d.num_frames = 64  # crops of 63 hops = 0.25 s

    o = config.optim
    o.lr = 1e-3
    o.warmup_steps = 50
    o.grad_clip_norm = 1.0

    t = config.training
    t.batch_size = 4
    t.num_steps = 2_000
    t.max_minutes = 8.0
    t.ema_decay = 0.99
    t.log_every_steps = 25
    t.checkpoint_every_steps = 250
    t.keep_checkpoints = 2
    t.keep_period = 0
    t.eval_every_steps = 0  # `diffrestore quickstart` evaluates the test set after training
    t.num_eval_files = 4
    t.eval_num_steps = config.sampling.num_steps

    # Read by `diffrestore quickstart` (diffrestore/quickstart.py).
    config.quickstart = ml_collections.ConfigDict()
    config.quickstart.corpus = ml_collections.ConfigDict(
        {"sample_rate": 16000, "num_train": 64, "num_valid": 4, "num_test": 6, "seconds": (2.0, 4.0),
         "snr_db": (-5.0, 10.0), "seed": 0}
    )
    config.quickstart.num_steps = config.sampling.num_steps  # reverse steps when enhancing the test set
    config.quickstart.batch_size = 3
    return config
