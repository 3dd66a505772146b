"""Speed options: FSDP against data parallel, rematerialisation, bfloat16, ahead-of-time
compilation from shapes, and the persistent compilation cache."""
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _tiny(**changes):
    spec = importlib.util.spec_from_file_location("tiny_config", ROOT / "configs" / "tiny.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    for key, value in changes.items():
        group, field = key.split(".")
        config[group][field] = value
    return config


def _losses(workdir):
    lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if "loss" in r}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from diffrestore.data import write_synthetic_corpus

    root = tmp_path_factory.mktemp("corpus")
    write_synthetic_corpus(root, sample_rate=16000, num_train=8, num_valid=2, num_test=1,
                           seconds=(0.8, 1.2), snr_db=(0.0, 10.0), seed=0)
    return root


def test_fsdp_matches_data_parallel_and_shards_the_state(corpus, tmp_path):
    # 4 forced host devices (fixed when JAX starts, hence a subprocess): data=4 against data=2 x fsdp=2.
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(ROOT / "tests")!r})
        import jax
        from test_speed_options import _tiny
        from diffrestore.train import build_programs, make_mesh, mesh as mesh_lib, train_and_evaluate
        mesh_lib.FSDP_MIN_SIZE = 512  # the tiny network's kernels are small; shard them anyway
        assert jax.device_count() == 4
        common = {{"data.data_dir": {str(corpus)!r}, "training.batch_size": 4, "training.num_steps": 3,
                  "training.checkpoint_every_steps": 3, "training.compilation_cache_dir": {str(tmp_path / "xla")!r}}}
        train_and_evaluate(_tiny(**common), {str(tmp_path / "dp")!r})
        config = _tiny(**common, **{{"mesh.data": 2, "mesh.fsdp": 2}})
        programs = build_programs(config, make_mesh(config.mesh))
        specs = [s.spec for s in jax.tree.leaves(programs.state_sharding.params)]
        opt_specs = [s.spec for s in jax.tree.leaves(programs.state_sharding.opt_state)]
        train_and_evaluate(config, {str(tmp_path / "fsdp")!r})
        print("SPECS", json.dumps([sum("fsdp" in str(s) for s in specs), len(specs), sum("fsdp" in str(s) for s in opt_specs)]))
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sharded, total, opt_sharded = json.loads(proc.stdout.split("SPECS")[1])
    assert 0 < sharded < total and opt_sharded >= 2 * sharded  # big kernels split (and Adam's mu, nu), small leaves whole
    dp, fsdp = _losses(tmp_path / "dp"), _losses(tmp_path / "fsdp")
    assert sorted(dp) == sorted(fsdp) == [1, 2, 3]
    for step in dp:
        assert fsdp[step] == pytest.approx(dp[step], rel=1e-5), (dp, fsdp)
    assert len({round(v, 6) for v in dp.values()}) == 3  # the losses move, so agreeing means something
    assert any((tmp_path / "xla").iterdir())  # the persistent compilation cache was written

    # The FSDP checkpoint (written from 4 devices) loads for enhancement on this 1-device process.
    from diffrestore import Enhancer

    enhancer = Enhancer.from_checkpoint(tmp_path / "fsdp")
    x = np.full((1, 1, 64, 64), 0.1 + 0.1j, np.complex64)
    assert np.all(np.isfinite(enhancer.forward(x, x, np.array([0.5]))))


def test_remat_keeps_values_and_gradients():
    from diffrestore.models import build_backbone

    kw = dict(nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(16,), image_size=32)
    x = (jax.random.normal(jax.random.key(0), (2, 1, 32, 32)) * (1 + 0.5j)).astype(jnp.complex64)
    t = jnp.array([0.3, 0.7])
    plain = build_backbone("ncsnpp", **kw)
    params = plain.init(jax.random.key(1), x, x, t)["params"]
    results = {}
    for remat in ("none", "full"):
        module = build_backbone("ncsnpp", remat=remat, **kw)
        loss = lambda p: jnp.mean(jnp.abs(module.apply({"params": p}, x, x, t)) ** 2)
        jaxpr = str(jax.make_jaxpr(jax.grad(loss))(params))
        assert ("remat" in jaxpr or "checkpoint" in jaxpr) == (remat != "none")
        results[remat] = jax.jit(jax.value_and_grad(loss))(params)
    for remat in ("full",):
        assert float(results[remat][0]) == pytest.approx(float(results["none"][0]), rel=1e-6)
        for a, b in zip(jax.tree.leaves(results[remat][1]), jax.tree.leaves(results["none"][1])):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="remat must be one of"):
        build_backbone("ncsnpp", remat="everything", **kw)


def test_ahead_of_time_compile_from_shapes_and_a_bfloat16_step(corpus):
    from diffrestore.data import make_train_iterator
    from diffrestore.train import build_programs, global_batch, make_mesh

    config = _tiny(**{"data.data_dir": str(corpus), "model.dtype": "bfloat16", "model.remat": "full"})
    mesh = make_mesh(config.mesh)
    programs = build_programs(config, mesh)
    samples = (config.data.num_frames - 1) * config.data.hop_length
    compiled, seconds = programs.compile_step_abstract(config.training.batch_size, samples)
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    assert analysis["flops"] > 1e6 and seconds > 0
    assert compiled.memory_analysis() is not None

    # The program compiled from shapes runs on real arguments: one bfloat16 step, finite loss.
    state = programs.initialize(jax.random.key(0))
    batch = global_batch(next(make_train_iterator(config.data, global_batch_size=config.training.batch_size, seed=0)), mesh)
    state, metrics = compiled(state, batch, jax.random.key(1))
    assert np.isfinite(float(metrics["loss"])) and float(metrics["loss"]) > 0
    assert jax.tree.leaves(state.params)[0].dtype == jnp.float32  # parameters stay float32
