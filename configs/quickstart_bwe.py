"""Quickstart for zero-shot restoration: a small CQT-Diff prior of synthetic piano music, then
bandwidth extension of held-out pieces by posterior sampling, on a CPU.

    diffrestore quickstart --task bwe --workdir runs/quickstart_bwe   # corpus, train, restore, evaluate
    # or only the training part, on a corpus that exists:
    diffrestore train --config configs/quickstart_bwe.py --workdir runs/quickstart_bwe \
        --config.data.data_dir=runs/quickstart_bwe/data

Needs: nothing but this package; 2 CPU cores and ~2 GB of memory. The corpus
(`quickstart.corpus`: 48 training pieces of 6–10 s of piano-like music in small rooms, 22.05 kHz,
`diffrestore.data.write_synthetic_music`) is written by `diffrestore quickstart --task bwe`.
Recipe: CQT-Diff's U-Net and EDM (σ_data 0.057, ρ-uniform training σ, the stochastic Heun
sampler on CQT-Diff's grid with S_churn 5) scaled down towards what trains in minutes on 2
cores: 5 octaves × 16 bins per octave (the CQT covers 345 Hz–11 kHz, below that is its DC
band), 5 levels of 8–32 channels with 2 dilated convolutions per block (0.25 M parameters), on
segments of 8192 samples (0.37 s), batch 4 (23 GFLOP per step), Adam 1e-3 with warm-up and
clipping, EMA 0.99. Training stops after
`training.max_minutes` (10) or `training.num_steps`; running again continues it.
The test: the 4 held-out pieces (first `quickstart.seconds` s) low-passed by CQT-Diff's FIR
(firwin 500 taps, kaiser, width 1 Hz) at `quickstart.cutoff_hz`, restored with reconstruction
guidance (ξ 0.2, gradients clipped to ±1, T `quickstart.num_steps`), scored with the
log-spectral distance and SI-SDR against the clean pieces.
Reaches: NOT its target yet (restored LSD 30 % below the low-passed one). On the 2-core AMD
EPYC (2026-12-01) the training step runs at 0.5 steps/s (12 GFLOP/s; elementwise passes are 42 %
of the forward, `benchmarks/profile_ops.py --config configs/quickstart_bwe.py`), so the 10
minutes (220 s of them compiling) gave 151 steps (loss 4.1 -> 1.3), a prior that has not learnt
music: with T = 10 the restored pieces were worse than the low-passed ones (LSD 3.74 against
1.56, SI-SDR -4.11 against 11.90 dB; `python benchmarks/restoration.py --checkpoint
runs/quickstart_bwe --clean runs/quickstart_bwe/data/test --tasks bwe --filters fir --cutoff 2000
--steps 10 --seconds 3 --out benchmarks/results/restoration/quickstart_bwe_151steps`). Making the CQT U-Net's training step fast on a CPU is the
open work.
"""
import ml_collections

from diffrestore.train.defaults import prior_training_config


def get_config():
    config = prior_training_config(
        "cqtdiff", Ns=(8, 16, 16, 32, 32, 32), depth=5, num_layers=2, emb_dim=64, rff_dim=16,
        freq_encoding_dim=8, num_octaves=5, bins_per_octave=16,
    )
    d = config.data
    d.data_dir = "runs/quickstart_bwe/data"
    d.sample_rate = 22050
    d.segment_length = 8192

    config.sampling.num_steps = 35

    o = config.optim
    o.lr = 1e-3
    o.warmup_steps = 50
    o.grad_clip_norm = 1.0

    t = config.training
    t.batch_size = 4
    t.num_steps = 20_000
    t.max_minutes = 10.0
    t.ema_decay = 0.99
    t.log_every_steps = 50
    t.checkpoint_every_steps = 500
    t.keep_checkpoints = 2
    t.keep_period = 0
    t.eval_every_steps = 0  # `diffrestore quickstart --task bwe` restores the test set after training
    t.num_eval_files = 4
    t.eval_num_steps = 8
    t.num_eval_examples = 1
    t.tensorboard = False

    # Read by `diffrestore quickstart --task bwe` (diffrestore/quickstart.py).
    q = config.quickstart = ml_collections.ConfigDict()
    q.corpus = ml_collections.ConfigDict(
        {"sample_rate": 22050, "num_train": 48, "num_valid": 2, "num_test": 4, "seconds": (6.0, 10.0), "seed": 0}
    )
    q.task = "bwe"
    q.filter = "fir"
    q.cutoff_hz = 2000.0
    q.seconds = 3.0  # of each held-out piece
    q.num_steps = config.sampling.num_steps
    q.xi = 0.2
    q.batch_size = 4
    return config
