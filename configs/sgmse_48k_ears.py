"""SGMSE+ at 48 kHz on EARS-WHAM: the recipe of Richter et al. (Interspeech 2024, "EARS").

    diffrestore train --config configs/sgmse_48k_ears.py --workdir runs/sgmse_48k_ears \
        --config.data.data_dir=/data/EARS-WHAM

Needs: EARS-WHAM (48 kHz) as DIR/{train,valid,test}/{clean,noisy}/*.wav; accelerators with room
for NCSN++ on 768-bin spectrograms (n_fft 1534): plan for ≥ 40 GB per chip at batch 8, or add
devices (`config.mesh.data=-1` splits the batch over all of them) or gradient accumulation
(`--config.optim.grad_accum_steps=2`).
Recipe (the reference README's 48 kHz line): `--backbone ncsnpp_48k --n_fft 1534
--hop_length 384 --spec_factor 0.065 --spec_abs_exponent 0.667 --sigma-min 0.1
--sigma-max 1.0 --theta 2.0`; everything else as SGMSE+ (Adam 1e-4, EMA 0.999, batch 8,
256 frames ≈ 2 s crops, t_eps 0.03, PC sampler N = 30, snr 0.5). ncsnpp_48k has no attention.
Reaches: the EARS paper's SGMSE+ EARS-WHAM figures (PESQ computed at 16 kHz after
resampling, as here); on the way, validation SI-SDR should climb well above the noisy input's
within ~50k steps.
"""
from diffrestore.train.defaults import training_config


def get_config():
    config = training_config()
    config.model.backbone = "ncsnpp_48k"
    config.model.backbone_kwargs.attn_resolutions = ()  # ncsnpp_48k's default: no attention
    config.sde.theta = 2.0
    config.sde.sigma_min = 0.1
    config.sde.sigma_max = 1.0
    d = config.data
    d.sample_rate = 48000
    d.n_fft = 1534
    d.hop_length = 384
    d.spec_factor = 0.065
    d.spec_abs_exponent = 0.667
    d.num_frames = 256
    config.sampling.pad_mode = "reflection"  # the reference's enhancement pads ncsnpp_48k by reflection
    t = config.training
    t.batch_size = 8
    t.num_steps = 400_000
    t.log_every_steps = 100
    t.eval_every_steps = 5_000
    t.num_eval_files = 20
    t.eval_num_steps = 30
    return config
