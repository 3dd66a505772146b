"""CQT-Diff on MAESTRO at 22.05 kHz: the prior of Moliner, Lehtinen & Välimäki (ICASSP 2023).

    diffrestore train --config configs/cqtdiff_maestro.py --workdir runs/cqtdiff_maestro \
        --config.data.tfds_data_dir=/data/tfds

Needs: MAESTRO v3.0.0 built once as the TFDS dataset `maestro_v3/22k_mono_cqtdiff`
(`diffrestore.data.tfds_builders`: the train split of the 44.1-kHz years CQT-Diff uses, mono,
resampled to 22.05 kHz as int16, part of the ~25 GB of all years; see `MaestroV3` for the build
command). TFDS and not
`data.dataset="clean"` because the reference picks its files by MAESTRO's csv (years and the
"train" split), which a folder of wavs does not carry; the split is held in memory
(`data.preload_max_mb`). Accelerators: a 15.5M-parameter network on batch 4 × 65536 samples
(one 16 GB+ GPU or TPU chip).

Recipe (github.com/eloimoliner/CQTdiff e8b6715: conf/conf.yaml, src/learner.py, train.py,
src/dataset_loader.py, scripts/*.sh):
* network: the shipped `Unet_CQT` (`diffrestore.models.cqtdiff.DEFAULTS`: 7
  octaves × 64 bins, Ns 32, 64, 64, 128, 128, 128, 128, depth 6, 8 dilated 5×3 convs per block,
  no norm), 15,487,232 parameters (15,458,368 trainable + the fixed random Fourier features);
* data: `sample_rate: 22050`, `audio_len: 65536` (2.97 s), `resample_factor: 2` (44.1-kHz files
  resampled 2:1); conf/dset/maestro.yaml `years: [2004, 2006, 2008, 2009, 2011, 2013, 2014, 2015]`,
  split "train"; mono = mean of the channels; no normalisation ("#no normalization!!"); random
  segments of randomly drawn files (`random.randint` per file: `data.file_order="uniform"`);
* EDM: `sigma_data: 0.057`; training σ ρ-uniform (`sample_ptrain_alt`) with `ro_train: 10`
  between `sigma_min: 1e-6` and `sigma_max: 10`; loss = `nn.MSELoss()` of F against
  (x − c_skip·(x + n))/c_out (mean over samples and batch);
* optimizer: `torch.optim.Adam(lr=2e-4)` (`lr: 2e-4`, betas 0.9/0.999, eps 1e-8),
  `clip_grad_norm_(…, 1.0)`, `batch_size: 4`, `ema_rate: 0.9999` (updated every step);
* sampling: `inference.T: 35`, scripts/sampling_*.sh `sigma_min=1e-4 sigma_max=1 ro=13 Schurn=5`,
  `Stmin: 0`, `Stmax: 50`, `Snoise: 1` (sampling_unconditional.sh alone uses T=70, Schurn=10);
* run length: conf.yaml names the released checkpoint `weights-200000.pt`: 200k steps.
What differs from the reference (library changes, not made here): its `StepLR(step_size=60000,
gamma=0.8)` learning-rate decay (`diffrestore.train.optimizer` has warm-up only: here the rate
stays 2e-4), and its EMA, which starts at 0.9999 from the first step, while ours warms up as
torch_ema does (min(0.9999, (1 + n)/(10 + n))). `scripts/training.sh` runs batch_size=1 with
10-step logging: a debugging run; conf.yaml's 4 is used.
Reaches: the unconditional piano samples and the restoration results (bandwidth extension,
declipping, inpainting) of the paper with the released 200k-step checkpoint — not yet reproduced
with diffrestore (no accelerator run so far); the released weights load with
`Prior.from_checkpoint("cqt_weights.pt")`.
"""
from diffrestore.train.defaults import prior_training_config


def get_config():
    config = prior_training_config("cqtdiff")  # the shipped Unet_CQT: cqtdiff.DEFAULTS
    d = config.data
    d.dataset = "tfds"
    d.tfds_name = "maestro_v3/22k_mono_cqtdiff"
    d.sample_rate = 22050
    d.segment_length = 65536
    d.normalize = "none"
    d.file_order = "uniform"
    d.preload_max_mb = 30_000.0  # the int16 train split is held in memory (MaestroV3's advice)

    s = config.sde  # prior_config's EDM is CQT-Diff's; spelled out here as the recipe
    s.sigma_data = 0.057
    s.train_distribution = "rho_uniform"
    s.rho_train = 10.0
    s.train_sigma_min = 1e-6
    s.train_sigma_max = 10.0
    s.sigma_min = 1e-4
    s.sigma_max = 1.0
    s.rho = 13.0

    p = config.sampling
    p.sampler = "edm_heun"
    p.num_steps = 35
    p.S_churn = 5.0
    p.S_tmin = 0.0
    p.S_tmax = 50.0
    p.S_noise = 1.0
    p.convention = "cqtdiff"

    o = config.optim
    o.optimizer = "adam"
    o.lr = 2e-4
    o.grad_clip_norm = 1.0

    t = config.training
    t.batch_size = 4
    t.num_steps = 200_000
    t.ema_decay = 0.9999
    t.log_every_steps = 100
    t.checkpoint_every_steps = 10_000  # conf.yaml save_interval
    t.keep_period = 50_000
    t.eval_every_steps = 10_000  # the reference samples unconditionally every save_interval
    t.num_eval_files = 20
    t.eval_num_steps = 35
    t.num_eval_examples = 1  # conf.yaml inference.unconditional.num_samples
    return config
