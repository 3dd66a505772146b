"""CQTdiff+ on MAESTRO at 22.05 kHz: the prior of BABE (Moliner, Elvander & Välimäki, 2023).

    diffrestore train --config configs/cqtdiffplus_maestro.py --workdir runs/cqtdiffplus_maestro \
        --config.data.tfds_data_dir=/data/tfds

Needs: MAESTRO v3.0.0 built once as the TFDS dataset `maestro_v3/22k_mono`
(`diffrestore.data.tfds_builders`: every year, mono, resampled to 22.05 kHz as int16, about 25 GB
for the train split; see `MaestroV3` for the build command). TFDS and not `data.dataset="clean"`
because the reference picks its files by MAESTRO's csv ("train" split), which a folder of wavs
does not carry; the split is held in memory (`data.preload_max_mb`). Accelerators: a
44.5M-parameter network on batch 4 × 184184 samples (8.35 s), a large-memory GPU or TPU chip
(or `mesh.fsdp` / `optim.grad_accum_steps`).

Recipe (github.com/eloimoliner/BABE 777b624: conf/network/cqtdiff+.yaml, conf/diff_params/edm.yaml,
conf/exp/maestro22k_8s.yaml, conf/dset/maestro_allyears.yaml, conf/tester/blind_bwe_denoise.yaml,
training/trainer.py, training.sh):
* network: `Unet_CQT_oct_with_attention` as cqtdiff+.yaml ships it (`diffrestore.models.cqtdiffplus.DEFAULTS`:
  `Ns: [64, 96, 96, 128, 128, 256, 256]`, `num_dils: [2, 3, 4, 5, 6, 7, 7]`, `emb_dim: 256`,
  `use_norm: True`, `use_fencoding: False`, attention off, res_dil_convs bottleneck, CQT 7 octaves
  × 64 bins, kaiser β 1), 44,498,528 parameters (44,498,496 trainable + the fixed Fourier features);
* data: maestro22k_8s.yaml `sample_rate: 22050`, `audio_len: 184184`; maestro_allyears.yaml `years:
  [2004, 2006, 2008, 2009, 2011, 2013, 2014, 2015, 2017, 2018]` (every year), split "train"; mono
  = mean of the channels; no normalisation; randomly drawn files (`data.file_order="uniform"`);
  `augmentations.rev_polarity` is in the yaml but the trainer applies none ("TODO: add augmentation");
* EDM (edm.yaml): `sigma_data: 0.063`, training σ ρ-uniform (`sample_ptrain_safe`) with `ro_train: 10`
  between `sigma_min: 1e-5` and `sigma_max: 10`; loss = mean of (F − target)²;
* optimizer (maestro22k_8s.yaml): Adam `lr: 2e-4`, `beta1: 0.9`, `beta2: 0.999`, `eps: 1e-8`, linear
  warm-up `lr_rampup_it: 10000`, `use_grad_clip: True`, `max_grad_norm: 1`, `batch: 4` (training.sh
  `exp.batch=4`), `ema_rate: 0.9999`; `scheduler_step_size`/`scheduler_gamma` are in the yaml but
  the trainer makes no scheduler: the rate stays 2e-4 after the warm-up, as here;
* sampling (blind_bwe_denoise.yaml, the tester testing_blindbwe.sh runs for this model): `T: 35`,
  `diff_params`: `sigma_min: 1e-4`, `sigma_max: 1`, `ro: 8`, `Schurn: 20`, `Snoise: 1`, `Stmin: 0`,
  `Stmax: 50`, churn noise drawn every step as BABE's `move_timestep` does (`convention="babe"`);
* run length: training.sh's checkpoint `MAESTRO_22k_8s-850000.pt`: 850k iterations.
What differs from the reference (library changes, not made here): its EMA ramps its decay linearly
from 0 over `ema_rampup: 10000` examples (2.5k steps at batch 4), ours warms up as torch_ema does
(min(0.9999, (1 + n)/(10 + n))); BABE's sampler removes the CQT's DC and Nyquist bands from every
denoised estimate (`filter_out_cqt_DC_Nyq: True`, `apply_hpf_DC`), `Prior.sample` does not.
Reaches: the blind bandwidth extension results of the BABE paper with the released 850k-iteration
checkpoint — not yet reproduced with diffrestore (no accelerator run so far); the released
weights load with `Prior.from_checkpoint("MAESTRO_22k_8s-850000.pt")`.
"""
from diffrestore.train.defaults import prior_training_config


def get_config():
    config = prior_training_config("cqtdiffplus")  # cqtdiff+.yaml: cqtdiffplus.DEFAULTS
    d = config.data
    d.dataset = "tfds"
    d.tfds_name = "maestro_v3/22k_mono"
    d.sample_rate = 22050
    d.segment_length = 184184
    d.normalize = "none"
    d.file_order = "uniform"
    d.preload_max_mb = 30_000.0  # the int16 train split is held in memory (MaestroV3's advice)

    s = config.sde
    s.sigma_data = 0.063
    s.train_distribution = "rho_uniform"
    s.rho_train = 10.0
    s.train_sigma_min = 1e-5
    s.train_sigma_max = 10.0
    s.sigma_min = 1e-4  # the tester's sampling grid
    s.sigma_max = 1.0
    s.rho = 8.0

    p = config.sampling
    p.sampler = "edm_heun"
    p.num_steps = 35
    p.S_churn = 20.0
    p.S_tmin = 0.0
    p.S_tmax = 50.0
    p.S_noise = 1.0
    p.convention = "babe"

    o = config.optim
    o.optimizer = "adam"
    o.lr = 2e-4
    o.b1, o.b2, o.eps = 0.9, 0.999, 1e-8
    o.warmup_steps = 10_000
    o.grad_clip_norm = 1.0

    t = config.training
    t.batch_size = 4
    t.num_steps = 850_000
    t.ema_decay = 0.9999
    t.log_every_steps = 100
    t.checkpoint_every_steps = 10_000
    t.keep_period = 50_000
    t.eval_every_steps = 10_000
    t.num_eval_files = 20
    t.eval_num_steps = 35
    t.num_eval_examples = 1
    return config
