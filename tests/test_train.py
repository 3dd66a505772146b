"""Training on configs/tiny.py with a real synthetic corpus.

One real update step checked against closed forms (Adam's first step, torch_ema's warm-up),
the same global batch on 1 and on 4 devices, a stopped-and-resumed run against a straight one,
and a NaN loss stopping the run with the step named.
"""
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from diffrestore import checkpoint

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.py"
BATCH = 4  # divisible by the 4 forced host devices


def load_tiny(data_dir, **training):
    spec = importlib.util.spec_from_file_location("tiny_config", TINY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.data.data_dir = str(data_dir)
    config.training.batch_size = BATCH
    config.training.checkpoint_every_steps = 3
    for key, value in training.items():
        config.training[key] = value
    return config


def logged_losses(workdir):
    lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if "loss" in r}


def restore_item(workdir, step, item):
    with checkpoint.make_manager(workdir, enable_async=False) as manager:
        return manager.restore(step, args=ocp.args.Composite(**{item: ocp.args.StandardRestore()}))[item]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from diffrestore.data import write_synthetic_corpus

    root = tmp_path_factory.mktemp("corpus")
    write_synthetic_corpus(
        root, sample_rate=16000, num_train=8, num_valid=2, num_test=1, seconds=(0.8, 1.2), snr_db=(0.0, 10.0), seed=0
    )
    return root


@pytest.fixture(scope="module")
def four_device_run(corpus, tmp_path_factory):
    """3 steps on 4 forced host devices, started in the background (the device count is fixed
    when JAX starts, hence a subprocess); the other tests run meanwhile."""
    workdir = tmp_path_factory.mktemp("four_devices")
    script = textwrap.dedent(
        f"""
        import importlib.util, jax
        assert jax.device_count() == 4, jax.devices()
        spec = importlib.util.spec_from_file_location("test_train", {str(pathlib.Path(__file__))!r})
        mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
        from diffrestore.train import train_and_evaluate
        train_and_evaluate(mod.load_tiny({str(corpus)!r}, num_steps=3), {str(workdir)!r})
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield proc, workdir
    if proc.poll() is None:
        proc.kill()


@pytest.fixture(scope="module")
def straight_run(corpus, tmp_path_factory, four_device_run):
    """6 uninterrupted steps."""
    from diffrestore.train import train_and_evaluate

    workdir = tmp_path_factory.mktemp("straight")
    result = train_and_evaluate(load_tiny(corpus, num_steps=6), workdir)
    return workdir, result


def test_one_real_step_moves_params_and_ema_follows_warmup(corpus, four_device_run):
    # (four_device_run is requested only to start the background run early.)
    from diffrestore.data import make_train_iterator
    from diffrestore.train import build_programs, global_batch, make_mesh

    config = load_tiny(corpus)
    mesh = make_mesh(config.mesh)
    programs = build_programs(config, mesh)  # the loop's programs: compiled once for the module
    state = programs.initialize(jax.random.key(0))
    p0 = jax.device_get(state.params)

    batch = global_batch(next(make_train_iterator(config.data, global_batch_size=BATCH, seed=0)), mesh)
    assert batch["clean"].shape == (BATCH, (config.data.num_frames - 1) * config.data.hop_length)
    assert batch["clean"].sharding == programs.batch_sharding
    train_step, _ = programs.compiled_step(state, batch, jax.random.key(1))
    state, metrics = train_step(state, batch, jax.random.key(1))
    metrics = jax.device_get(metrics)
    assert np.isfinite(metrics["loss"]) and metrics["loss"] > 0
    assert int(state.step) == 1
    assert metrics["learning_rate"] == pytest.approx(config.optim.lr)
    p1, ema1 = jax.device_get(state.params), jax.device_get(state.ema_params)

    # Adam's first update is −lr·g/(|g| + eps): no entry moves by more than lr, and entries
    # with a gradient well above eps move by lr (init_scale=0 layers have tiny gradients).
    lr = config.optim.lr
    moves = np.concatenate([np.abs(a - b).ravel() for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p0))])
    assert moves.max() <= lr * (1 + 1e-3)
    assert np.mean(moves > 0.99 * lr) > 0.2
    assert np.mean(moves > 0) > 0.9

    # torch_ema: n = 1, decay = min(0.999, (1 + n)/(10 + n)) = 2/11, shadow −= (1 − decay)(shadow − param).
    decay = 2 / 11
    assert metrics["ema_decay"] == pytest.approx(decay)
    for e, a, b in zip(jax.tree.leaves(ema1), jax.tree.leaves(p0), jax.tree.leaves(p1)):
        np.testing.assert_allclose(e, a - (1 - decay) * (a - b), rtol=1e-6, atol=1e-9)


def test_same_losses_on_one_and_four_devices(straight_run, four_device_run):
    proc, workdir = four_device_run
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output[-3000:]
    one = logged_losses(straight_run[0])
    four = logged_losses(workdir)
    assert sorted(four) == [1, 2, 3]
    assert all(np.isfinite(v) for v in four.values())
    # Same batch, same keys (partitionable threefry); only the reduction order differs.
    np.testing.assert_allclose([four[s] for s in (1, 2, 3)], [one[s] for s in (1, 2, 3)], rtol=1e-4)
    # Guard: the losses differ from step to step, so agreeing is not trivial.
    assert len({round(v, 6) for v in four.values()}) == 3


def test_resume_matches_uninterrupted_run(corpus, straight_run, tmp_path):
    from diffrestore.train import train_and_evaluate

    straight_dir, straight_result = straight_run
    workdir = tmp_path / "resumed"
    first = train_and_evaluate(load_tiny(corpus, num_steps=3), workdir)
    assert first["step"] == 3
    assert checkpoint.make_manager(workdir, enable_async=False).latest_step() == 3
    second = train_and_evaluate(load_tiny(corpus, num_steps=6), workdir)  # resumes at 3
    assert second["step"] == 6

    straight, resumed = logged_losses(straight_dir), logged_losses(workdir)
    assert sorted(resumed) == [1, 2, 3, 4, 5, 6]
    assert resumed == straight
    for item in ("params", "ema_params"):
        a, b = restore_item(straight_dir, 6, item), restore_item(workdir, 6, item)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            np.testing.assert_array_equal(x, y)
    # The run directory is loadable by the Enhancer path (config.json + ema_params).
    config, ema, step = checkpoint.restore_ema_params(workdir)
    assert step == 6 and config.model.backbone_kwargs.nf == 8
    # Running again with the same num_steps has nothing to do.
    assert train_and_evaluate(load_tiny(corpus, num_steps=6), workdir)["step"] == 6


def _poison_step_2(monkeypatch, value):
    import diffrestore.data

    real = diffrestore.data.make_train_iterator

    def poisoned(*args, start_step=0, **kwargs):
        for index, batch in enumerate(real(*args, start_step=start_step, **kwargs), start=start_step):
            if index == 1:  # the batch of step 2
                batch = dict(batch, clean=np.full_like(batch["clean"], value))
            yield batch

    monkeypatch.setattr(diffrestore.data, "make_train_iterator", poisoned)


@pytest.mark.parametrize(
    "value, message",
    [
        # Finite but overflowing in the STFT: the loss itself becomes NaN.
        (1e38, r"non-finite loss \((nan|inf)\) at step 2\b"),
        # NaN samples (which the spectrogram compression would silently turn into zeros).
        (np.nan, r"non-finite input \(\d+ NaN/inf samples in the batch\) at step 2\b"),
    ],
)
def test_non_finite_values_stop_with_the_step_named(corpus, tmp_path, monkeypatch, value, message):
    from diffrestore.train import train_and_evaluate
    from diffrestore.train.loop import NonFiniteLossError

    _poison_step_2(monkeypatch, value)
    # Measurements are fetched only at step 3 (log_every 10): the check must still name step 2.
    config = load_tiny(corpus, num_steps=3, log_every_steps=10, checkpoint_every_steps=0)
    with pytest.raises(NonFiniteLossError, match=message):
        train_and_evaluate(config, tmp_path)
    # Nothing after the bad step was saved.
    assert checkpoint.make_manager(tmp_path, enable_async=False).latest_step() is None


def test_cli_parses_config_file_and_overrides(tmp_path):
    from diffrestore.train import main_train, parse_train_args

    config, workdir = parse_train_args(
        ["--config", str(TINY), "--workdir", str(tmp_path), "--config.training.num_steps=6", "--config.optim.lr=3e-4"]
    )
    assert (config.training.num_steps, config.optim.lr, workdir) == (6, 3e-4, str(tmp_path))
    assert config.mesh.data == -1 and "data_dir" in config.data
    with pytest.raises(ValueError):
        parse_train_args(["--config", str(TINY), "--workdir", str(tmp_path), "--config.training.num_stepz=6"])
    assert main_train(["--config", str(TINY)]) == 2  # no --workdir


def test_cli_trains_with_overrides(corpus, tmp_path, capsys):
    from diffrestore.train import main_train

    workdir = tmp_path / "cli"
    argv = [
        "--config", str(TINY), "--workdir", str(workdir), f"--config.data.data_dir={corpus}",
        f"--config.training.batch_size={BATCH}", "--config.training.num_steps=2", "--config.training.checkpoint_every_steps=3",
    ]
    assert main_train(argv) == 0  # same programs as the tests above: nothing to compile
    assert "at step 2" in capsys.readouterr().out
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["training"]["num_steps"] == 2 and saved["data"]["data_dir"] == str(corpus)
    assert sorted(logged_losses(workdir)) == [1, 2]
    assert checkpoint.make_manager(workdir, enable_async=False).latest_step() == 2
