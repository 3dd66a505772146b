"""Loading sgmse checkpoints (through Enhancer and `diffrestore convert`) and enhancing."""
import json

import jax.numpy as jnp
import numpy as np
import pytest

from diffrestore import Enhancer
from diffrestore.cli import main as cli_main


def _close(a, b, tol=1e-4):
    err = float(np.max(np.abs(np.asarray(a) - b)))
    assert err <= tol * float(np.max(np.abs(b))), err


@pytest.fixture(scope="module")
def small_enhancer(sgmse_fixtures):
    return Enhancer.from_checkpoint(sgmse_fixtures / "sgmse_small.ckpt")


def test_sgmse_checkpoint_forward_matches_reference(sgmse_fixtures, small_enhancer):
    ref = np.load(sgmse_fixtures / "sgmse_small_expected.npz")
    cfg = small_enhancer.config
    assert (cfg.model.backbone, cfg.sde.name) == ("ncsnpp", "ouve")
    _close(small_enhancer.forward(ref["x"], ref["y"], ref["t"]), ref["score"])


def test_raw_weights_differ_from_ema(sgmse_fixtures):
    # Guards the test above: the non-EMA weights give a different score.
    from diffrestore.convert.sgmse import load_sgmse_checkpoint

    config, params, _ = load_sgmse_checkpoint(sgmse_fixtures / "sgmse_small.ckpt")
    ref = np.load(sgmse_fixtures / "sgmse_small_expected.npz")
    raw = Enhancer(config, params).forward(ref["x"], ref["y"], ref["t"])
    assert np.max(np.abs(raw - ref["score"])) > 1e-2 * np.max(np.abs(ref["score"]))


def test_convert_cli_writes_loadable_checkpoint(sgmse_fixtures, tmp_path, capsys):
    dest = tmp_path / "converted"
    assert cli_main(["convert", str(sgmse_fixtures / "sgmse_small.ckpt"), str(dest)]) == 0
    saved = json.loads((dest / "config.json").read_text())
    assert saved["model"]["backbone"] == "ncsnpp" and saved["sde"]["name"] == "ouve"
    ref = np.load(sgmse_fixtures / "sgmse_small_expected.npz")
    _close(Enhancer.from_checkpoint(dest).forward(ref["x"], ref["y"], ref["t"]), ref["score"])
    # Refuses to overwrite a non-empty destination.
    assert cli_main(["convert", str(sgmse_fixtures / "sgmse_small.ckpt"), str(dest)]) == 2
    assert "not empty" in capsys.readouterr().err


def _noisy_speech(seconds, seed, rate=16000):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    voice = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    return (voice + 0.05 * rng.normal(size=t.shape)).astype(np.float32)


def test_enhance_lengths_determinism_and_batch_independence(small_enhancer):
    # Both signals fall into the 64-frame bucket: one compiled program serves the whole test.
    a, b = _noisy_speech(0.45, 0), _noisy_speech(0.3, 1)
    opts = dict(num_steps=3, seed=5, batch_size=2)
    out_ab = small_enhancer.enhance([a, b], 16000, **opts)
    assert [o.shape for o in out_ab] == [a.shape, b.shape]
    assert all(np.all(np.isfinite(o)) for o in out_ab)
    # Signal 1 alone, with the same id, gives the same result as in the pair.
    out_b = small_enhancer.enhance([b], 16000, example_ids=[1], **opts)
    np.testing.assert_allclose(out_b[0], out_ab[1], atol=1e-5)
    # Another seed gives another sample; the same seed gives the same.
    assert not np.allclose(small_enhancer.enhance([b], 16000, example_ids=[1], **{**opts, "seed": 6})[0], out_b[0])
    np.testing.assert_array_equal(small_enhancer.enhance([b], 16000, example_ids=[1], **opts)[0], out_b[0])


def test_enhance_other_rate_and_bad_input(small_enhancer):
    w = _noisy_speech(0.5, 2, rate=8000)
    out = small_enhancer.enhance([w], 8000, num_steps=2, seed=5, batch_size=2)  # same program as above
    assert out[0].shape == w.shape
    # Silence (e.g. one dead channel of a stereo file) comes back as silence, without sampling.
    np.testing.assert_array_equal(small_enhancer.enhance([np.zeros(4000, np.float32)], 16000)[0], 0.0)
    with pytest.raises(ValueError, match="signal 0: 10 samples is shorter"):
        small_enhancer.enhance([np.ones(10, np.float32)], 16000, num_steps=2)
    with pytest.raises(ValueError, match="NaN"):
        small_enhancer.enhance([np.full(4000, np.nan, np.float32)], 16000, num_steps=2)


# --- other backbones, sizes and SDEs than the shipped checkpoint ------------------------------

_BASE_HPARAMS = dict(
    lr=1e-4, ema_decay=0.999, t_eps=0.03, num_eval_files=0, loss_weighting="sigma^2", network_scaling=None,
    c_in="1", c_out="1", c_skip="0", sigma_data=0.1, l1_weight=0.001, sr=16000, batch_size=8,
    n_fft=510, hop_length=128, num_frames=256, window="hann", spec_factor=0.15, spec_abs_exponent=0.5,
    transform_type="exponent", normalize="noisy",
)


@pytest.mark.parametrize(
    "fixture,hparams,sign",
    [
        # ncsnpp_v2 Schrödinger bridge with data prediction: forward = x̂ = net(x, y, t).
        ("net_ncsnpp_v2", dict(backbone="ncsnpp_v2", sde="sbve", k=2.6, c=0.4, N=50, loss_type="data_prediction"), 1),
        # 48 kHz backbone with OUVE: forward = score = −net([x, y], t).
        ("net_ncsnpp_48k", dict(backbone="ncsnpp_48k", sde="ouve", theta=1.5, sigma_min=0.05, sigma_max=0.5,
                                 N=30, loss_type="score_matching", n_fft=1534, hop_length=384, spec_factor=0.065,
                                 spec_abs_exponent=0.667, sr=48000), -1),
        # uncentered NCSN++ (older sgmse checkpoints had no loss_type at all).
        ("net_ncsnpp_uncentered", dict(backbone="ncsnpp", sde="ouve", theta=1.5, sigma_min=0.05, sigma_max=0.5, N=30), -1),
    ],
)
def test_other_checkpoints_load_and_match(sgmse_fixtures, tmp_path, fixture, hparams, sign):
    from lightning_ckpt import write_lightning_checkpoint

    manifest = json.loads((sgmse_fixtures / "MANIFEST.json").read_text())[fixture]
    ref = np.load(sgmse_fixtures / f"{fixture}.npz")
    weights = {k[len("param/"):]: ref[k] for k in ref.files if k.startswith("param/")}
    hp = {**_BASE_HPARAMS, **hparams, **{k: v for k, v in manifest["kwargs"].items()}}
    # The EMA carries the fixture weights; the raw state_dict is perturbed, so using it would fail.
    state = {f"dnn.{k}": v * 0.5 + 0.01 for k, v in weights.items()}
    path = write_lightning_checkpoint(tmp_path / "model.ckpt", state, list(weights.values()), hp)
    enhancer = Enhancer.from_checkpoint(path)
    assert enhancer.config.model.backbone == hparams["backbone"]
    if hparams["backbone"] == "ncsnpp_48k":
        assert enhancer.config.data.sample_rate == 48000 and enhancer.config.data.n_fft == 1534
    _close(enhancer.forward(ref["x"], ref["y"], ref["t"]), sign * ref["out"])


# --- many lengths: buckets, chunks and devices -----------------------------------------------
def test_chunks_cover_and_crossfade_has_no_seam():
    from diffrestore.enhancer import chunk_starts, crossfade_join

    rng = np.random.default_rng(0)
    for length in (100, 1000, 1001, 2345):
        starts = chunk_starts(length, chunk=300, overlap=40)
        assert starts[0] == 0 and starts[-1] == length - 300 if length > 300 else starts == [0]
        assert all(b - a <= 300 - 40 for a, b in zip(starts, starts[1:]))  # overlap >= 40
        signal = rng.normal(size=length).astype(np.float32)
        pieces = [signal[s : s + 300] for s in starts]
        # Agreeing pieces: the join is the signal itself (the fades sum to one).
        np.testing.assert_allclose(crossfade_join(pieces, starts, length), signal, atol=1e-6)
    # Disagreeing pieces (each chunk off by its own constant) meet without a step: the largest
    # sample-to-sample change is the offset spread over the overlap, not the offset.
    starts = chunk_starts(2345, chunk=300, overlap=40)
    joined = crossfade_join([np.full(300, float(k), np.float32) for k in range(len(starts))], starts, 2345)
    assert joined[0] == 0 and joined[-1] == len(starts) - 1
    assert np.max(np.abs(np.diff(joined))) < 2 * np.pi / (2 * 40)  # a hard cut would give 1.0


def test_default_buckets_pad_little_and_match_the_reference_at_10_s():
    from diffrestore.enhancer import DEFAULT_BUCKETS, bucket_for, check_buckets

    assert check_buckets(DEFAULT_BUCKETS) == DEFAULT_BUCKETS  # sorted multiples of 64
    # Above 2 s (256 frames) no signal is padded by more than a third of its length.
    worst = max(bucket_for(f, DEFAULT_BUCKETS) / f for f in range(257, DEFAULT_BUCKETS[-1] + 1))
    assert worst <= 4 / 3, worst
    # A 10 s recording at 16 kHz (hop 128: 1251 frames) gets the reference's padding, the next
    # multiple of 64 (sgmse pad_spec), not a doubling bucket's 2048.
    frames = 1 + 10 * 16000 // 128
    assert bucket_for(frames, DEFAULT_BUCKETS) == -(-frames // 64) * 64 == 1280


class _IdentityEnhancer(Enhancer):
    """Returns the noisy spectrogram as the estimate: enhancement must give the input back."""

    def _sample_fn(self, settings):
        return lambda model_fn, sde, y, draw, num_steps: (y, jnp.int32(0))


def test_long_signal_in_chunks_keeps_length_and_samples(small_enhancer):
    identity = _IdentityEnhancer(small_enhancer.config, small_enhancer.params)
    long = _noisy_speech(2.3, 7)  # 288 frames at hop 128: five chunks of the 64-frame bucket
    out = identity.enhance([long, long[:5000]], 16000, buckets=(64,), overlap_frames=8)
    assert [o.shape for o in out] == [long.shape, (5000,)]
    np.testing.assert_allclose(out[0], long, atol=1e-5)  # normalisation, chunking and join undone
    # Unchunked and padded to the bucket: exact up to the first padded frame's window (as in
    # the reference, which also inverts its padded spectrogram).
    exact = 40 * 128 - 510 // 2  # frame 40 (the first padded one) starts here (n_fft 510)
    np.testing.assert_allclose(out[1][:exact], long[:exact], atol=1e-5)


def test_twenty_random_lengths_compile_few_programs(small_enhancer):
    rng = np.random.default_rng(3)
    lengths = rng.integers(300, 20000, size=20)  # 0.02 s to 1.25 s; > 1.02 s is chunked
    waves = [_noisy_speech(n / 16000, int(n)) for n in lengths]
    before = small_enhancer.compiled_programs
    out = small_enhancer.enhance(waves, 16000, sampler="pc", corrector="none", num_steps=1,
                                 buckets=(64, 128), batch_size=4, seed=1)
    assert small_enhancer.compiled_programs - before <= 2  # one per bucket, whatever the lengths
    assert [o.shape for o in out] == [w.shape for w in waves]
    assert all(np.all(np.isfinite(o)) for o in out)
    # The chunked signals got a real estimate, not silence or the input.
    long = [i for i, w in enumerate(waves) if len(w) > 127 * 128]
    assert long and all(0.1 < np.std(out[i]) and not np.allclose(out[i], waves[i]) for i in long)


def test_batches_are_sharded_over_local_devices_with_the_same_result(sgmse_fixtures):
    # The device count is fixed when JAX starts, hence a subprocess with 4 forced host devices.
    import os
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        f"""
        import jax, numpy as np
        from diffrestore import Enhancer
        assert jax.local_device_count() == 4
        ckpt = {str(sgmse_fixtures / "sgmse_small.ckpt")!r}
        rng = np.random.default_rng(0)
        waves = [rng.normal(size=n).astype(np.float32) * 0.1 for n in (4000, 6000, 7000)]
        opts = dict(sampler="pc", corrector="none", num_steps=2, seed=3, batch_size=3, buckets=(64,))
        four = Enhancer.from_checkpoint(ckpt)
        one = Enhancer.from_checkpoint(ckpt, devices=jax.local_devices()[:1])
        x, _ = four.sample_spectrograms(np.zeros((4, 1, 256, 64), np.complex64) + 0.1, sampler="pc",
                                        corrector="none", num_steps=1)
        assert len(x.sharding.device_set) == 4, x.sharding
        a, b = four.enhance(waves, 16000, **opts), one.enhance(waves, 16000, **opts)
        print("maxdiff", max(float(np.max(np.abs(u - v))) for u, v in zip(a, b)))
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert float(proc.stdout.split("maxdiff")[1]) < 1e-5
