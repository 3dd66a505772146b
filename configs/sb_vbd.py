"""Schrödinger bridge (SBVE) with data prediction on VoiceBank-DEMAND at 16 kHz.

The recipe of Richter, de Oliveira & Gerkmann (ICASSP 2025, "Investigating training objectives
for generative speech enhancement") and the reference README's SB line:
`--backbone ncsnpp_v2 --sde sbve --loss_type data_prediction` (the README adds
`--pesq_weight 5e-4`, a differentiable-PESQ term that diffrestore does not implement; the loss
here is the reference's data-prediction loss without it).

    diffrestore train --config configs/sb_vbd.py --workdir runs/sb_vbd \
        --config.data.data_dir=/data/VoiceBank-DEMAND

Needs: VB-DMD at 16 kHz as DIR/{train,valid,test}/{clean,noisy}/*.wav; accelerators: NCSN++ v2
(65M parameters) at a global batch of 32 (the reference's pretrained SB used 16 per GPU on
2 GPUs); on one chip with less memory use `--config.optim.grad_accum_steps=2` with
`--config.training.batch_size=16` for the same effective batch.
Recipe: SBVE k = 2.6, c = 0.4, eps 1e-8; loss = ‖x̂ − x0‖²/(F·T) + 0.001·L1 of the waveforms;
c_in = c_out = 1, c_skip = 0, no network scaling; Adam 1e-4, EMA 0.999; the bridge's ODE
sampler with N = 50 for validation and enhancement.
Reaches: the VB-DMD figures the ICASSP 2025 paper reports for the bridge with data prediction
(look them up there; not yet reproduced with diffrestore, which needs an accelerator run),
in 50 network evaluations per file instead of SGMSE+'s 60.
"""
import ml_collections

from diffrestore.train.defaults import training_config


def get_config():
    config = training_config()
    config.model.backbone = "ncsnpp_v2"
    kwargs = config.model.backbone_kwargs.to_dict()
    kwargs.pop("centered", None)  # ncsnpp_v2 has no `centered` argument
    config.model.backbone_kwargs = ml_collections.ConfigDict(kwargs)
    config.model.loss_type = "data_prediction"
    config.model.loss_weighting = "sigma^2"  # unused by data_prediction
    config.model.c_in = "1"
    config.model.c_out = "1"
    config.model.c_skip = "0"
    config.model.network_scaling = ""
    config.model.l1_weight = 0.001
    config.sde.name = "sbve"
    config.sde.k = 2.6
    config.sde.c = 0.4
    config.sde.eps = 1e-8
    config.sde.N = 50
    config.sampling.sampler = "sb_ode"
    config.sampling.num_steps = 50
    config.sampling.pad_mode = "reflection"  # the reference's enhancement pads ncsnpp_v2 by reflection
    t = config.training
    t.batch_size = 32
    t.num_steps = 900_000
    t.log_every_steps = 100
    t.eval_every_steps = 5_000
    t.num_eval_files = 20
    t.eval_num_steps = 50
    return config
