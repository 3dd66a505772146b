"""Training: state, optimizer, mesh, update step and the `train_and_evaluate` loop.

    diffrestore train --config configs/sgmse_vbd.py --workdir runs/vbd \\
        --config.data.data_dir=/data/VoiceBank-DEMAND --config.training.batch_size=16

`main_train(argv)` is that command; `train_and_evaluate(config, workdir)` is the same from
Python. Building blocks for custom loops: `TrainState`, `make_init_fn`, `make_optimizer`,
`make_train_step`, `make_mesh`, and `build_programs` (the sharded init and update step of a
config, jitted and memoised).
"""
from __future__ import annotations

import logging
import sys

from diffrestore.train.mesh import batch_sharding, global_batch, make_mesh, replicated
from diffrestore.train.optimizer import ema_decay_at, ema_update, make_optimizer
from diffrestore.train.programs import TrainPrograms, build_programs
from diffrestore.train.state import TrainState, make_init_fn
from diffrestore.train.step import batch_to_spectrograms, make_train_step

USAGE = "diffrestore train --config configs/X.py[:ARG] --workdir DIR [--config.group.field=value ...]"


def train_and_evaluate(config, workdir) -> dict:
    """See `diffrestore.train.loop.train_and_evaluate`."""
    from diffrestore.train.loop import train_and_evaluate as _train_and_evaluate

    return _train_and_evaluate(config, workdir)


def parse_train_args(argv):
    """Parses `--config FILE --workdir DIR [--config.a.b=v ...]` into (config, workdir).

    The config file is an ml_collections `get_config()` file; every `--config.a.b=v` overrides
    an existing field (a misspelt field is an error, not a silent no-op).
    """
    from absl import flags
    from ml_collections import config_flags

    full_argv = ["diffrestore train", *argv]
    flag_values = flags.FlagValues()  # private: does not clash with any global absl flags
    config_flag = config_flags.DEFINE_config_file(
        "config", None, "an ml_collections config file (configs/*.py), optionally FILE:ARG",
        flag_values=flag_values, lock_config=True, sys_argv=full_argv,
    )
    workdir_flag = flags.DEFINE_string("workdir", None, "run directory (resumes if it has checkpoints)", flag_values=flag_values)
    try:
        rest = flag_values(full_argv)
    except (flags.Error, AttributeError, KeyError, TypeError) as e:
        # flags.Error: unknown or malformed flag; Attribute/KeyError: a misspelt config field
        # (ml_collections suggests the right name); TypeError: a value of the wrong type.
        raise ValueError(f"{e}\nusage: {USAGE}") from None
    if len(rest) > 1:
        raise ValueError(f"unexpected arguments {rest[1:]}\nusage: {USAGE}")
    if config_flag.value is None or workdir_flag.value is None:
        raise ValueError(f"--config and --workdir are required\nusage: {USAGE}")
    return config_flag.value, workdir_flag.value


def main_train(argv=None) -> int:
    """`diffrestore train` (argv without the program and sub-command names). Returns an exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(f"usage: {USAGE}\n\n{__doc__}")
        return 0
    try:
        config, workdir = parse_train_args(argv)
    except ValueError as e:
        print(f"diffrestore train: {e}", file=sys.stderr)
        return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("diffrestore").setLevel(logging.INFO)
    logging.getLogger("absl").setLevel(logging.WARNING)  # Orbax narrates every save at INFO
    from diffrestore.train.distributed import initialize_if_needed
    from diffrestore.train.loop import NonFiniteLossError

    try:
        initialize_if_needed()  # before any device is touched: a multi-process job connects here
    except ValueError as e:
        print(f"diffrestore train: {e}", file=sys.stderr)
        return 2
    try:
        result = train_and_evaluate(config, workdir)
    except NonFiniteLossError as e:
        print(f"diffrestore train: {e}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as e:
        # Bad data or settings (a broken file named by the data loader, a wrong field value):
        # a clear message, not a traceback; the workdir's checkpoints are untouched.
        print(f"diffrestore train: error: {e}", file=sys.stderr)
        return 2
    summary = "  ".join(f"{k} {v:.4g}" for k, v in sorted(result.items()) if isinstance(v, float))
    print(f"done: {workdir} at step {result.get('step')}  {summary}")
    return 0


__all__ = [
    "TrainState", "TrainPrograms", "build_programs", "make_init_fn", "make_optimizer", "make_train_step", "make_mesh", "replicated",
    "batch_sharding", "global_batch", "batch_to_spectrograms", "ema_decay_at", "ema_update",
    "train_and_evaluate", "main_train", "parse_train_args",
]
