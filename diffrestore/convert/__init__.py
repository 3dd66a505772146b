"""Reading the PyTorch references' checkpoints without PyTorch.

`load_lightning_checkpoint(path)` reads any supported Lightning `.ckpt` and returns a
diffrestore config with the raw and EMA parameter trees: sgmse `ScoreModel`s (also those of
sgmse-bbed and sgmse_crp, told apart by their SDE and hyper-parameters, `convert.sgmse`) and
StoRM's `StochasticRegenerationModel` (`convert.storm`). CQT-Diff / BABE `.pt` priors are read
by `convert.cqtdiff`.
"""
from __future__ import annotations

import pathlib
from typing import Mapping


def load_lightning_checkpoint(path):
    """(config, params, ema_params) of an sgmse-family or StoRM Lightning checkpoint.

    Raises:
      CheckpointError: not a Lightning checkpoint of a supported model (the message names
        the file and what is wrong).
    """
    from diffrestore.convert import sgmse, storm
    from diffrestore.convert.torch_pickle import CheckpointError, load_torch_checkpoint

    path = pathlib.Path(path)
    ckpt = load_torch_checkpoint(path)
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, Mapping) else None
    if hparams is None:
        raise CheckpointError(f"{path}: no hyper_parameters; is this a Lightning checkpoint of sgmse or StoRM?")
    hparams = dict(hparams) if isinstance(hparams, Mapping) else dict(vars(hparams))
    # The file is read once (a published checkpoint is hundreds of MB); the loaders take its contents.
    if storm.is_storm_checkpoint(hparams):
        return storm.load_storm_model(path, ckpt)
    return sgmse.load_sgmse_checkpoint(path, ckpt)
