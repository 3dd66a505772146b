"""Unconditional clean-speech prior at 16 kHz: BUDDy's recipe (sp-uhh/buddy, `conf/conf_VCTK.yaml`).

    diffrestore train --config configs/prior_speech.py --workdir runs/prior_speech \
        --config.data.data_dir=VCTK_WAV16

    diffrestore sample --checkpoint runs/prior_speech --seconds 4 --num 4 samples/   # T = 201

What it is (each value from BUDDy's conf files, github.com/sp-uhh/buddy c7fa951):
* network "ncsnpp_stft" = BUDDy's `NCSNppTime` (`conf/network/ncsnpp.yaml`): STFT (n_fft 510,
  hop 128, Hann, centred; frames zero-padded to a multiple of 16) -> unconditional NCSN++
  (nf 128, ch_mult (1, 2, 2, 2), one residual block per level, attention in the middle only,
  no FIR, 2 input channels, Fourier embedding of c_noise) -> iSTFT; 27.7 M parameters.
* EDM (`conf/diff_params/edm_VCTK.yaml`, `diff_params/edm.py`): σ_data 0.05; training σ
  ρ-uniform in [1e-5, 10] with ρ 10 (`sample_time_training`), the EDM loss as a plain mean of
  (F − F*)² over every sample.
* data (`conf/exp/VCTK_16k_4s_time.yaml`, `conf/dset/vctk_16k_4s.yaml`): 65536-sample
  segments (4.1 s) of clean speech at 16 kHz, not normalised.
* optimizer (`conf/exp/VCTK_16k_4s_time.yaml`, `training/trainer.py`): Adam 1e-4, betas
  (0.9, 0.999), eps 1e-8, gradient clipping at global norm 1, batch 16, seed 1, EMA 0.9999.
* sampler (`conf/tester/only_unconditional.yaml`, `testing/EulerHeunSampler.py`): stochastic
  Heun, T = 201, σ 5e-4 … 1, ρ 10, S_churn 30, S_tmin 0, S_tmax 10, S_noise 1, churn noise
  drawn at every step ("babe" convention).

Needs: VCTK_WAV16, a folder of clean speech at 16 kHz (VCTK's wav16; BUDDy's training set
leaves out speakers p280, p315, p351 and p360, `conf/dset/vctk_16k_4s.yaml`), as `DIR/train/...` and
`DIR/valid/...` or flat (then all of it trains and validation has no segments); any folder of
clean speech works (`diffrestore.data.write_synthetic_corpus` writes speech-like test data;
use its `*/clean` folders). A large accelerator: a segment is 256 × 528 spectrogram pixels
(513 frames padded to 528), so at batch 16 each 128-channel activation of the top level is
1 GiB in float32 (`--config.model.dtype=bfloat16` and `--config.model.remat=dots` lower that).

Differences from the reference, all deliberate:
* files shorter than a segment (many VCTK utterances are shorter than 4.1 s) are centred in
  zeros (`data.short_files="pad"`); BUDDy pads them by wrapping, at a random offset.
* the EMA warms up as torch_ema does, decay min(0.9999, (1 + n)/(10 + n)); BUDDy ramps it
  linearly over the first 10000 examples (625 steps of 16).
* BUDDy's trainer has no step limit (it runs until stopped); `training.num_steps` here is a
  budget of ours, as are validation every 10000 steps on 8 files with 2 samples of 201 steps.

Run time: not measured here (no accelerator run yet).

Reaches: NOT yet reproduced here. No run of this recipe has been made in diffrestore, and no
BUDDy checkpoint has been compared with one; the network, its STFT wrapper and the weight
import match BUDDy's PyTorch code numerically (random weights, float32), and a tiny variant
trains, checkpoints and samples end to end on CPU (tests/test_speech_prior.py). A trained prior
is what BUDDy's blind dereverberation samples from. Files in the format of BUDDy's trainer
(`{'it', 'network', 'ema', 'args'}`) load with `Prior.from_checkpoint(file.pt)` (its 'ema'
weights, as BUDDy's tester); the checkpoint BUDDy publishes has not been tried here.
"""
from diffrestore.train.defaults import prior_training_config


def get_config():
    config = prior_training_config(
        "ncsnpp_stft", nf=128, ch_mult=(1, 2, 2, 2), num_res_blocks=1, attn_resolutions=(0,), fir=False,
        input_channels=2, time_conditional=True, n_fft=510, hop_length=128,
    )
    # EDM and sampler: prior_config("ncsnpp_stft") already holds BUDDy's values
    # (config.BUDDY_SDE, config.BUDDY_SAMPLING); restated here so the recipe reads whole.
    s = config.sde
    s.sigma_data = 0.05
    s.train_distribution = "rho_uniform"
    s.train_sigma_min, s.train_sigma_max, s.rho_train = 1e-5, 10.0, 10.0
    s.sigma_min, s.sigma_max, s.rho = 5e-4, 1.0, 10.0
    sm = config.sampling
    sm.sampler = "edm_heun"
    sm.num_steps = 201
    sm.S_churn, sm.S_tmin, sm.S_tmax, sm.S_noise = 30.0, 0.0, 10.0, 1.0
    sm.convention = "babe"

    d = config.data
    d.dataset = "clean"
    d.sample_rate = 16000
    d.segment_length = 65536
    d.normalize = "none"
    d.short_files = "pad"

    o = config.optim
    o.optimizer = "adam"
    o.lr = 1e-4
    o.b1, o.b2, o.eps = 0.9, 0.999, 1e-8
    o.grad_clip_norm = 1.0
    o.warmup_steps = 0  # conf/exp's lr_rampup_it is never read by BUDDy's trainer

    t = config.training
    t.seed = 1
    t.batch_size = 16
    t.ema_decay = 0.9999
    t.num_steps = 400_000
    t.checkpoint_every_steps = 10_000  # conf/logging: save_interval
    t.keep_period = 50_000
    t.eval_every_steps = 10_000  # conf/logging: heavy_log_interval
    t.num_eval_files = 8
    t.eval_num_steps = 201
    t.num_eval_examples = 2
    return config
