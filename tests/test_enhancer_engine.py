"""The inference engine: defaults from the checkpoint, batches sized to the work, the
persistent compilation cache, and the memory check."""
import json
import os
import subprocess
import sys
import textwrap

import jax
import ml_collections
import numpy as np
import pytest

from diffrestore import Enhancer
from diffrestore import config as config_lib
from diffrestore.enhancer import BatchTooLargeError, batch_rows, row_counts

RATE = 16000
BUCKETS = (64,)  # one bucket: tiny programs, signals up to 64 frames of 32 samples


def _tiny_bridge_config():
    """configs/tiny.py as a Schrödinger bridge whose config samples with the 5-step ODE."""
    from diffrestore.quickstart import load_config_file

    config = load_config_file(os.path.join(os.path.dirname(__file__), "..", "configs", "tiny.py"))
    config.model.backbone = "ncsnpp_v2"
    kwargs = config.model.backbone_kwargs.to_dict()
    kwargs.pop("centered")  # ncsnpp_v2 is always centred
    config.model.backbone_kwargs = ml_collections.ConfigDict(kwargs)
    config.model.loss_type = "data_prediction"
    config.sde.name = "sbve"
    config.sampling.sampler = "sb_ode"
    config.sampling.num_steps = 5
    return config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from diffrestore import checkpoint

    config = _tiny_bridge_config()
    module = config_lib.build_backbone(config)
    x = np.zeros((1, 1, config_lib.spectrogram_config(config).num_freqs, 64), np.complex64)
    params = jax.jit(lambda k: module.init(k, x, x, np.ones(1, np.float32))["params"])(jax.random.key(0))
    path = tmp_path_factory.mktemp("tiny_bridge")
    checkpoint.save_parameters(path, config, params, params)
    return path


@pytest.fixture(scope="module")
def bridge(run_dir):
    return Enhancer.from_checkpoint(run_dir)


def _signals(count, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(1500) / RATE
    return [(0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.05 * rng.normal(size=t.size)).astype(np.float32)
            for i in range(count)]


def test_defaults_come_from_the_checkpoint(bridge, sgmse_fixtures):
    # The run directory's config samples with sb_ode in 5 steps: so does enhance(), unless told.
    assert bridge.sampler_settings().describe() == "sb_ode N=5"
    wave = _signals(1)
    bridge.enhance(wave, RATE, buckets=BUCKETS)
    assert bridge.last_network_evaluations == 5
    bridge.enhance(wave, RATE, buckets=BUCKETS, num_steps=3)
    assert bridge.last_network_evaluations == 3
    # An sgmse checkpoint samples as the reference's recipe: PC + ALD, snr 0.5, N = the SDE's N.
    sgmse = Enhancer.from_checkpoint(sgmse_fixtures / "sgmse_small.ckpt")
    settings = dict(sgmse.sampler_settings().options)
    assert sgmse.sampler_settings().sampler == "pc" and sgmse.sampler_settings().num_steps == int(sgmse.config.sde.N)
    assert (settings["corrector"], settings["snr"], settings["predictor"]) == ("ald", 0.5, "reverse_diffusion")
    assert sgmse.sampler_settings(corrector="none", num_steps=2).describe().startswith("pc N=2")


@pytest.mark.parametrize("bad,message", [
    (dict(num_steps=0), "num_steps must be a positive integer"),
    (dict(num_steps=-3), "num_steps must be a positive integer"),
    (dict(corrector="ald"), "takes no option"),  # a PC option for the bridge's ODE
    (dict(sampler="pc"), "does not fit this model"),
])
def test_bad_sampler_settings_are_clear_errors(bridge, bad, message):
    with pytest.raises(ValueError, match=message):
        bridge.enhance(_signals(1), RATE, buckets=BUCKETS, **bad)


def test_row_counts_are_powers_of_two_times_the_devices():
    assert row_counts(4) == (1, 2, 4) and row_counts(6) == (1, 2, 4, 6) and row_counts(8, devices=4) == (4, 8)
    assert [batch_rows(n, 8) for n in range(1, 9)] == [1, 2, 4, 4, 8, 8, 8, 8]
    assert batch_rows(3, 8, devices=4) == 4
    with pytest.raises(ValueError):
        batch_rows(9, 8)


def test_a_lone_signal_runs_on_one_row_and_equals_its_batched_result(bridge):
    waves = _signals(3)
    batched = bridge.enhance(waves, RATE, buckets=BUCKETS, batch_size=4, num_steps=2)
    assert bridge.last_batches == [(64, 4, 3)]  # three signals on 4 rows, the next row count
    alone = bridge.enhance(waves[1:2], RATE, buckets=BUCKETS, batch_size=4, num_steps=2, example_ids=[1])
    assert bridge.last_batches == [(64, 1, 1)]  # a lone signal on one row, not four
    np.testing.assert_allclose(alone[0], batched[1], atol=1e-5)
    # Chunks of a long signal fill rows like separate signals: 0.5 s -> 5 chunks of 64 frames.
    long = np.tile(waves[0], 25)[: int(0.5 * RATE)]
    out = bridge.enhance([long], RATE, buckets=BUCKETS, batch_size=4, num_steps=1)
    assert bridge.last_batches == [(64, 4, 4), (64, 1, 1)]
    assert out[0].shape == long.shape and np.all(np.isfinite(out[0]))


def test_one_array_in_gives_one_array_out_and_pcm_is_scaled(bridge):
    """A 1-D array (not a list) is one signal; int16 PCM is the same signal as its float
    reading (soundfile's scaling); a 2-D array is refused with what to do instead."""
    wave = _signals(1)[0]
    as_list = bridge.enhance([wave], RATE, buckets=BUCKETS, num_steps=1, example_ids=[1])
    single = bridge.enhance(wave, RATE, buckets=BUCKETS, num_steps=1, example_ids=[1])
    assert isinstance(single, np.ndarray) and single.shape == wave.shape
    np.testing.assert_array_equal(single, as_list[0])
    pcm = np.round(wave / np.max(np.abs(wave)) * 0.5 * 32767).astype(np.int16)
    from_pcm = bridge.enhance(pcm, RATE, buckets=BUCKETS, num_steps=1, example_ids=[1])
    from_float = bridge.enhance(pcm.astype(np.float32) / 32768, RATE, buckets=BUCKETS, num_steps=1, example_ids=[1])
    np.testing.assert_allclose(from_pcm, from_float, atol=1e-6)
    with pytest.raises(ValueError, match="one 1-D array per channel"):
        bridge.enhance(np.stack([wave, wave]), RATE)


def test_a_batch_that_cannot_fit_in_memory_is_a_clear_error(run_dir, monkeypatch):
    from diffrestore import inference

    monkeypatch.setattr(inference, "available_memory_bytes", lambda device: 2**20)  # 1 MiB free
    fresh = Enhancer.from_checkpoint(run_dir)
    with pytest.raises(BatchTooLargeError, match=r"sb_ode for 2 row\(s\) x 64 frames needs .* GiB .* available"):
        fresh.enhance(_signals(2), RATE, buckets=BUCKETS, batch_size=2)
    monkeypatch.undo()  # memory is back: the failed program is not remembered
    assert fresh.enhance(_signals(2), RATE, buckets=BUCKETS, batch_size=2)[0].shape == (1500,)


def test_a_second_process_loads_the_programs_from_the_compilation_cache(run_dir, tmp_path):
    # Compiles are counted through JAX's monitoring events, not timed.
    script = textwrap.dedent(
        f"""
        import json, numpy as np
        from diffrestore import Enhancer, xla_cache
        enhancer = Enhancer.from_checkpoint({str(run_dir)!r}, compilation_cache={str(tmp_path / "cache")!r})
        counter = xla_cache.CompileCounter()
        rng = np.random.default_rng(0)
        waves = [rng.normal(size=n).astype(np.float32) * 0.1 for n in (1500, 900, 1900)]
        out = enhancer.enhance(waves, 16000, buckets=(64,), batch_size=2, num_steps=2)
        print(json.dumps({{"compiled": counter.compiled, "loaded": counter.loaded_from_cache,
                           "log": enhancer.compile_log, "out": float(sum(np.sum(o) for o in out))}}))
        """
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    runs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert first["compiled"] >= 2 and not any(e["from_cache"] for e in first["log"])  # rows 2 and 1
    assert second["compiled"] == 0 and second["loaded"] >= 2
    assert all(e["from_cache"] for e in second["log"]) and len(second["log"]) == len(first["log"])
    assert second["out"] == first["out"]  # the loaded programs compute the same
