"""Conditional flow matching for speech enhancement on VoiceBank-DEMAND at 16 kHz: NVIDIA
NeMo's `FlowMatchingAudioToAudioModel` (`examples/audio/conf/flow_matching_generative.yaml`)
on the path of FlowSE (Lee et al., 2025), which starts at the noisy spectrogram.

    diffrestore train --config configs/fm_vbd.py --workdir runs/fm_vbd \
        --config.data.data_dir=/data/VoiceBank-DEMAND

Needs: VB-DMD at 16 kHz as DIR/{train,valid,test}/{clean,noisy}/*.wav; accelerators as
configs/sb_vbd.py (NCSN++ v2, 65M parameters, batch 16 × 256 frames).
Recipe: the optimal-transport path x_t = (1 − t)·x_start + t·x0 + ((1 − t)·σ_start + t·σ_end)·z
from x_start = y (`--config.sde.start=zero` gives NeMo's x_start = 0, with y only as the
network's condition), σ_start = 1, σ_end = 1e-4, t ~ U(1e-8, 1); the network on (x_t, y, t)
regresses the conditional vector field (NeMo's estimator_target; `data` regresses x0 instead),
y dropped to zeros for 10 % of the examples (p_cond 0.9), mean squared error over all bins;
Adam 1e-4, EMA 0.999; SGMSE's STFT and compression.
Enhancement: NeMo's Euler sampler, N = 20 network calls per file (N a runtime value).
Reaches: not yet measured with diffrestore (needs an accelerator run); NeMo and FlowSE
report quality near SGMSE+'s in a few Euler steps.
"""
from diffrestore.config import set_family
from diffrestore.train.defaults import training_config


def get_config():
    config = set_family(training_config(), "flow")  # NCSN++ v2; OT path from y; Euler, N 20
    t = config.training
    t.batch_size = 16
    t.num_steps = 250_000
    t.log_every_steps = 100
    t.checkpoint_every_steps = 5_000
    t.keep_period = 50_000
    t.eval_every_steps = 724
    t.num_eval_files = 20
    t.eval_num_steps = 20
    return config
