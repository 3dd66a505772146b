"""StoRM's two networks as one Flax module (Lemercier et al., "StoRM: a diffusion-based
stochastic regeneration model for speech enhancement and dereverberation", TASLP 2023;
sp-uhh/storm `sgmse/model.py: StochasticRegenerationModel`).

A predictive network D(y) first estimates the clean spectrogram; a score network then
regenerates it, conditioned on [y, D(y)], with D(y) in place of y in the OUVE drift and
prior. Holding both in one module keeps one parameter tree, {"denoiser": ..., "score": ...},
so training, the EMA (one over both networks, as the reference's torch_ema), sharding and
checkpoints treat StoRM like any other model.

    module = StochasticRegeneration(denoiser=..., score=...)   # two `ncsnpp_storm` NCSNpp
    out = module.apply(v, x, y, t)                      # score net on [x, y, D(y)], D inside
    dy = module.apply(v, y, method="predict")           # D(y)
    out = module.apply(v, x, cond, t, method="score_given")  # cond = [y, D(y)], D computed once

All spectrograms complex64 (B, 1, F, T) (cond (B, 2, F, T)); outputs are the raw networks'
(the score is minus the score network's output, `score.make_model_fn`).
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


def storm_condition(y, dy):
    """The score network's conditioning for StoRM's condition 'both': [y, D(y)], (B, 2, F, T)."""
    return jnp.concatenate([y, dy], axis=1)


class StochasticRegeneration(nn.Module):
    """Predictive denoiser plus score network; see the module docstring for the calls."""

    denoiser: nn.Module
    score: nn.Module

    def predict(self, y, train: bool = False):
        """D(y): the predictive network on the noisy spectrogram (no time input)."""
        return self.denoiser(y, None, None, train=train)

    def score_given(self, x, cond, t, train: bool = False):
        """The score network on [x, cond] at time t (B,)."""
        return self.score(x, cond, t, train=train)

    def __call__(self, x, y, t, train: bool = False):
        """The reference's `forward_score(x, t, [y, D(y)], D(y))` before its sign: the score
        network's output with D(y) computed inside (also what `init` traces, so both
        networks get parameters)."""
        return self.score_given(x, storm_condition(y, self.predict(y, train)), t, train)
