"""Training the supervised family beyond SGMSE+ with the same loop: StoRM (joint and with a
frozen denoiser), conditional flow matching and CRP fine-tuning from a trained BBED run
(`training.init_from`), each on configs/tiny.py:<family>.

For each: real update steps, the same losses on 1 and on 4 devices, a stopped-and-resumed run
equal to a straight one; and what each loss promises of the weights (a frozen denoiser does
not move, CRP starts from the BBED weights and moves them by at most lr).
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

# One xdist worker runs this module (`make test` uses --dist loadgroup): its module fixtures
# (a BBED run, two steps of every family, a 4-device subprocess) would otherwise be built on
# every worker that draws one of its tests.
pytestmark = pytest.mark.xdist_group("train_families")

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.py"
BATCH = 4
FAMILIES = ("storm", "storm_frozen", "flow", "crp")


def load(family, data_dir, init_from="", **training):
    spec = importlib.util.spec_from_file_location("tiny_config", TINY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("storm" if family == "storm_frozen" else family)
    if family == "storm_frozen":
        config.model.storm_mode = "frozen_denoiser"
    config.data.data_dir = str(data_dir)
    config.training.batch_size = BATCH
    config.training.checkpoint_every_steps = 1
    config.training.keep_checkpoints = 0
    config.training.init_from = str(init_from)
    for key, value in training.items():
        config.training[key] = value
    return config


def losses(workdir):
    lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if "loss" in r}


def params_at(workdir, step):
    with checkpoint.make_manager(workdir, enable_async=False) as manager:
        return manager.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore()))["params"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from diffrestore.data import write_synthetic_corpus

    root = tmp_path_factory.mktemp("corpus")
    write_synthetic_corpus(root, sample_rate=16000, num_train=8, num_valid=2, num_test=1, seconds=(0.8, 1.2), seed=0)
    return root


@pytest.fixture(scope="module")
def bbed_run(corpus, tmp_path_factory):
    """One BBED step: the trained model CRP fine-tunes."""
    from diffrestore.train import train_and_evaluate

    workdir = tmp_path_factory.mktemp("bbed")
    train_and_evaluate(load("bbed", corpus, num_steps=1), workdir)
    return workdir


@pytest.fixture(scope="module")
def four_device_runs(corpus, bbed_run, tmp_path_factory):
    """Two steps of every family on 4 forced host devices, in one background process."""
    root = tmp_path_factory.mktemp("four_devices")
    script = textwrap.dedent(
        f"""
        import importlib.util, jax
        assert jax.device_count() == 4, jax.devices()
        spec = importlib.util.spec_from_file_location("families", {str(pathlib.Path(__file__))!r})
        mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
        from diffrestore.train import train_and_evaluate
        for family in mod.FAMILIES:
            init = {str(bbed_run)!r} if family == "crp" else ""
            train_and_evaluate(mod.load(family, {str(corpus)!r}, init, num_steps=2), {str(root)!r} + "/" + family)
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    yield proc, root
    if proc.poll() is None:
        proc.kill()


@pytest.fixture(scope="module")
def runs(corpus, bbed_run, four_device_runs, tmp_path_factory):
    """Per family: 2 straight steps, and 1 step then a resumed second (same programs, memoised)."""
    from diffrestore.train import train_and_evaluate

    out = {}
    for family in FAMILIES:
        init = bbed_run if family == "crp" else ""
        straight = tmp_path_factory.mktemp(f"{family}_straight")
        resumed = tmp_path_factory.mktemp(f"{family}_resumed")
        train_and_evaluate(load(family, corpus, init, num_steps=2), straight)
        train_and_evaluate(load(family, corpus, init, num_steps=1), resumed)
        train_and_evaluate(load(family, corpus, init, num_steps=2), resumed)
        out[family] = straight, resumed
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_steps_are_finite_and_resume_equals_straight(runs, family):
    straight, resumed = runs[family]
    a, b = losses(straight), losses(resumed)
    assert sorted(a) == [1, 2] and all(np.isfinite(v) and v > 0 for v in a.values())
    assert a == b
    for x, y in zip(jax.tree.leaves(params_at(straight, 2)), jax.tree.leaves(params_at(resumed, 2))):
        np.testing.assert_array_equal(x, y)


def test_same_losses_on_one_and_four_devices(runs, four_device_runs):
    proc, root = four_device_runs
    output, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, output[-3000:]
    for family in FAMILIES:
        one, four = losses(runs[family][0]), losses(root / family)
        np.testing.assert_allclose([four[1], four[2]], [one[1], one[2]], rtol=1e-4, err_msg=family)


def test_storm_modes_move_what_they_train(runs):
    """Joint training moves both networks; a frozen denoiser stays exactly where it was."""
    for family, denoiser_moves in (("storm", True), ("storm_frozen", False)):
        p1, p2 = params_at(runs[family][0], 1), params_at(runs[family][0], 2)
        moved = {name: any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(p1[name]), jax.tree.leaves(p2[name])))
                 for name in ("denoiser", "score")}
        assert moved == {"denoiser": denoiser_moves, "score": True}, family


def test_crp_starts_from_the_bbed_weights(runs, bbed_run):
    """init_from: CRP's first Adam step moves each weight of the BBED model by at most lr (1e-5)."""
    base = params_at(bbed_run, 1)
    tuned = params_at(runs["crp"][0], 1)
    moves = np.concatenate([np.abs(a - b).ravel() for a, b in zip(jax.tree.leaves(tuned), jax.tree.leaves(base))])
    largest = max(float(np.max(np.abs(a))) for a in jax.tree.leaves(base))
    # lr, plus the float32 rounding of the weights themselves (one ulp of the largest)
    assert 0 < moves.max() <= 1e-5 * (1 + 1e-3) + largest * 2**-23


def test_crp_without_init_from_is_refused(corpus, tmp_path):
    from diffrestore.train import train_and_evaluate

    with pytest.raises(ValueError, match="init_from"):
        train_and_evaluate(load("crp", corpus, num_steps=1), tmp_path / "crp")


def test_init_from_that_does_not_fit_names_the_problem(corpus, bbed_run, tmp_path):
    from diffrestore.train import train_and_evaluate

    with pytest.raises(ValueError, match="do not fit"):
        train_and_evaluate(load("storm", corpus, bbed_run, num_steps=1), tmp_path / "storm")
