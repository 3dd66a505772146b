"""Training and sampling a prior of clean audio: configs/tiny_prior.py on synthetic music.

A straight run against a stopped-and-resumed one, the same global batch on 1 and 4 devices,
validation (EDM loss at fixed noise levels, unconditional samples), `Prior` loading the run
directory, `diffrestore sample`, and a folder with a broken file named in the error.
"""
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY_PRIOR = ROOT / "configs" / "tiny_prior.py"
BATCH = 4  # divisible by the 4 forced host devices


def load_tiny_prior(data_dir, **training):
    spec = importlib.util.spec_from_file_location("tiny_prior_config", TINY_PRIOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.data.data_dir = str(data_dir)
    config.training.batch_size = BATCH
    config.training.checkpoint_every_steps = 2
    for key, value in training.items():
        config.training[key] = value
    return config


def logged(workdir, key="loss"):
    lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r[key] for r in map(json.loads, lines) if key in r}


@pytest.fixture(scope="module")
def music(tmp_path_factory):
    from diffrestore.data import write_synthetic_music

    root = tmp_path_factory.mktemp("music")
    write_synthetic_music(root, sample_rate=22050, num_train=4, num_valid=2, num_test=0, seconds=(1.0, 1.5), seed=0)
    return root


@pytest.fixture(scope="module")
def four_device_run(music, tmp_path_factory):
    """3 steps on 4 forced host devices in the background (the device count is fixed when JAX
    starts, hence a subprocess); the other tests run meanwhile."""
    workdir = tmp_path_factory.mktemp("prior_four_devices")
    script = textwrap.dedent(
        f"""
        import importlib.util, jax
        assert jax.device_count() == 4, jax.devices()
        spec = importlib.util.spec_from_file_location("test_prior", {str(pathlib.Path(__file__))!r})
        mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
        from diffrestore.train import train_and_evaluate
        train_and_evaluate(mod.load_tiny_prior({str(music)!r}, num_steps=3), {str(workdir)!r})
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    yield proc, workdir
    if proc.poll() is None:
        proc.kill()


@pytest.fixture(scope="module")
def straight_run(music, tmp_path_factory, four_device_run):
    """4 uninterrupted steps, validated at the end."""
    from diffrestore.train import train_and_evaluate

    workdir = tmp_path_factory.mktemp("prior_straight")
    result = train_and_evaluate(load_tiny_prior(music, num_steps=4, eval_every_steps=4), workdir)
    return workdir, result


def test_a_prior_trains_validates_and_resumes_exactly(music, straight_run, tmp_path):
    from diffrestore.train import train_and_evaluate

    workdir, result = straight_run
    straight = logged(workdir)
    assert sorted(straight) == [1, 2, 3, 4] and all(np.isfinite(v) and v > 0 for v in straight.values())
    # Validation of a prior: the EDM loss at fixed noise levels on the valid/ segments, and samples.
    for key in ("valid/loss", "valid/loss_sigma_0.01", "valid/loss_sigma_1", "valid/sample_rms"):
        assert np.isfinite(result[key]), key
    assert result["valid/sample_rms"] > 0
    # Stopped after 2 steps and resumed: the same losses as the straight run.
    resumed = tmp_path / "resumed"
    train_and_evaluate(load_tiny_prior(music, num_steps=2, eval_every_steps=0), resumed)
    train_and_evaluate(load_tiny_prior(music, num_steps=4, eval_every_steps=0), resumed)
    again = logged(resumed)
    np.testing.assert_allclose([again[s] for s in (1, 2, 3, 4)], [straight[s] for s in (1, 2, 3, 4)], rtol=1e-5)


def test_one_and_four_devices_give_the_same_losses(straight_run, four_device_run):
    proc, workdir = four_device_run
    output, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, output
    four, one = logged(workdir), logged(straight_run[0])
    np.testing.assert_allclose([four[s] for s in (1, 2, 3)], [one[s] for s in (1, 2, 3)], rtol=1e-4)


def test_the_run_directory_loads_as_a_prior_that_denoises_and_samples(straight_run, tmp_path, capsys):
    from diffrestore import Prior
    from diffrestore.cli import main as cli_main

    prior = Prior.from_checkpoint(straight_run[0])
    assert prior.sample_rate == 22050 and prior.sampler_settings()[:2] == ("edm_heun", 4)
    rng = np.random.default_rng(0)
    x = (0.05 * rng.standard_normal((2, 8192))).astype(np.float32)
    # σ → 0: the preconditioning makes D the identity (c_skip → 1, c_out → 0), whatever the weights.
    np.testing.assert_allclose(prior.denoise(x, 1e-6), x, atol=1e-6)
    assert np.all(np.isfinite(prior.denoise(x, [0.1, 1.0])))
    a = prior.sample(3, length=8192, batch_size=2, seed=5)
    b = prior.sample(1, length=8192, batch_size=1, seed=5)  # sample 0 again, alone in its batch
    assert a.shape == (3, 8192) and np.all(np.isfinite(a)) and prior.last_network_evaluations == 2 * 4 - 1
    np.testing.assert_allclose(b[0], a[0], atol=1e-5)
    assert not np.allclose(a[0], a[1])
    with pytest.raises(ValueError, match="takes no option"):
        prior.sample(1, length=8192, corrector="ald")

    out = tmp_path / "samples"
    code = cli_main(["sample", "--checkpoint", str(straight_run[0]), "--seconds", "0.4", "--num", "2",
                     "--num-steps", "3", str(out)])
    assert code == 0, capsys.readouterr().err
    import soundfile as sf

    files = sorted(out.glob("*.wav"))
    assert len(files) == 2
    data, rate = sf.read(files[0])
    assert rate == 22050 and data.shape == (int(round(0.4 * 22050)),) and np.all(np.isfinite(data))


def test_a_broken_file_in_the_folder_is_named(music, tmp_path, capsys):
    import shutil

    from diffrestore.cli import main as cli_main

    folder = tmp_path / "music"
    shutil.copytree(music, folder)
    (folder / "train" / "broken.wav").write_text("not audio")
    code = cli_main(["train", "--config", str(TINY_PRIOR), "--workdir", str(tmp_path / "run"),
                     f"--config.data.data_dir={folder}"])
    assert code == 2
    assert "broken.wav" in capsys.readouterr().err


def test_a_reference_pt_file_loads_as_a_prior_with_the_references_output(cqtdiff_fixtures):
    # small_cqtdiff.pt as CQT-Diff's learner writes it: Prior reads it without PyTorch, infers
    # the network from the weights, samples with the weights the reference samples with, and
    # its denoiser is the reference's D(x, σ).
    from diffrestore import Prior

    expected = np.load(cqtdiff_fixtures / "small_cqtdiff_expected.npz")
    prior = Prior.from_checkpoint(cqtdiff_fixtures / "small_cqtdiff.pt")
    assert prior.config.model.backbone == "cqtdiff" and prior.sample_rate == 22050
    assert prior.sde.sigma_data == pytest.approx(float(expected["sigma_data"]))
    got = prior.denoise(expected["x"], expected["sigma"])
    err = np.max(np.abs(got - expected["denoised"])) / np.max(np.abs(expected["denoised"]))
    assert err < 1e-4, err
