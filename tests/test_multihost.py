"""Multi-process training: detection of the job's environment, and 2 processes × 2 devices
on localhost (launch/local.sh, gloo collectives) against 1 process × 4 devices."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from diffrestore.train.distributed import detect_cluster, initialize_kwargs

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "env,kind",
    [
        ({}, None),
        ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}, None),  # one task: nothing to join
        ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "8", "SLURM_STEP_NUM_TASKS": "8"}, "slurm"),
        ({"OMPI_COMM_WORLD_SIZE": "4"}, "ompi"),
        ({"TPU_WORKER_HOSTNAMES": "t-0,t-1,t-2,t-3"}, "tpu"),
        ({"TPU_WORKER_HOSTNAMES": "localhost"}, None),  # a single TPU VM
        ({"DIFFRESTORE_NUM_PROCESSES": "1"}, None),
        ({"DIFFRESTORE_NUM_PROCESSES": "2", "DIFFRESTORE_PROCESS_ID": "0", "DIFFRESTORE_COORDINATOR": "h:1",
          "SLURM_JOB_ID": "7", "SLURM_NTASKS": "8"}, "explicit"),  # explicit wins
    ],
)
def test_detects_the_job_environment(env, kind):
    assert detect_cluster(env) == kind
    assert (initialize_kwargs(env) is None) == (kind is None)
    if kind not in (None, "explicit"):
        assert initialize_kwargs(env) == {}  # JAX's own cluster detection fills everything in


def test_explicit_variables_and_their_errors():
    env = {"DIFFRESTORE_COORDINATOR": "10.0.0.1:1234", "DIFFRESTORE_NUM_PROCESSES": "4",
           "DIFFRESTORE_PROCESS_ID": "3", "DIFFRESTORE_LOCAL_DEVICE_IDS": "0,1"}
    assert initialize_kwargs(env) == dict(coordinator_address="10.0.0.1:1234", num_processes=4, process_id=3,
                                          local_device_ids=[0, 1])
    for change, message in [
        ({"DIFFRESTORE_PROCESS_ID": "4"}, "DIFFRESTORE_PROCESS_ID=4 is outside 0..3"),
        ({"DIFFRESTORE_PROCESS_ID": ""}, "DIFFRESTORE_PROCESS_ID .* is not set"),
        ({"DIFFRESTORE_COORDINATOR": ""}, "DIFFRESTORE_COORDINATOR .* is not set"),
        ({"DIFFRESTORE_COORDINATOR": "10.0.0.1"}, "must be host:port"),
        ({"DIFFRESTORE_NUM_PROCESSES": "four"}, "DIFFRESTORE_NUM_PROCESSES='four' is not an integer"),
    ]:
        with pytest.raises(ValueError, match=message):
            initialize_kwargs({**env, **change})


def _losses(workdir):
    lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if "loss" in r}


def test_two_processes_of_two_devices_match_one_process_of_four(tmp_path):
    from diffrestore.data import write_synthetic_corpus

    corpus = tmp_path / "corpus"
    write_synthetic_corpus(corpus, sample_rate=16000, num_train=8, num_valid=2, num_test=1,
                           seconds=(0.8, 1.2), snr_db=(0.0, 10.0), seed=0)

    def train(workdir):
        return [sys.executable, "-m", "diffrestore.cli", "train", "--config", str(ROOT / "configs" / "tiny.py"),
                "--workdir", str(workdir), f"--config.data.data_dir={corpus}", "--config.training.batch_size=4",
                "--config.training.num_steps=3", "--config.training.checkpoint_every_steps=3"]

    base = {k: v for k, v in os.environ.items() if not k.startswith(("DIFFRESTORE_", "XLA_FLAGS"))}
    base["JAX_PLATFORMS"] = "cpu"
    # Both jobs run at once: the 2-process job through the launcher, the reference in one process.
    multi = subprocess.Popen(
        ["bash", str(ROOT / "launch" / "local.sh"), "2", "--", *train(tmp_path / "two_by_two")],
        env={**base, "DEVICES_PER_PROCESS": "2"}, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    single = subprocess.run(
        train(tmp_path / "one_by_four"), env={**base, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    multi_out, _ = multi.communicate(timeout=900)
    assert single.returncode == 0, single.stdout + single.stderr
    assert multi.returncode == 0, multi_out
    assert "mesh {'data': 4, 'fsdp': 1}, 2 process(es)" in multi_out  # really 2 processes sharing a 4-device mesh

    one, two = _losses(tmp_path / "one_by_four"), _losses(tmp_path / "two_by_two")
    assert sorted(one) == sorted(two) == [1, 2, 3]
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-5), (step, one, two)
    assert len({round(v, 6) for v in one.values()}) == 3  # the losses change, so agreeing means something
    # Every process took part in the checkpoint: step 3 is complete and restorable.
    assert (tmp_path / "two_by_two" / "checkpoints" / "3").is_dir()
