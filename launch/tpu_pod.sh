#!/usr/bin/env bash
# Training on a Cloud TPU VM pod slice: the same command on every worker.
#
#   launch/tpu_pod.sh TPU_NAME ZONE -- --config configs/sgmse_vbd.py --workdir gs://BUCKET/runs/vbd \
#       --config.data.data_dir=/mnt/data/VoiceBank-DEMAND --config.training.batch_size=256
#
# Each worker needs this repository at ~/diffrestore with `make install` and jax[tpu] done (the
# first form below does it) and the data at the same path. On a pod slice JAX finds the
# other workers from the TPU metadata: `diffrestore train` sees TPU_WORKER_HOSTNAMES with
# several hosts and calls jax.distributed.initialize() without arguments. The workdir should
# be a gs:// path (Orbax writes there from every worker); rerunning resumes.
#
#   SETUP=1 REPO_URL=<git url> launch/tpu_pod.sh TPU_NAME ZONE -- ...   # also clone/update and install on every worker
set -euo pipefail

usage() { echo "usage: [SETUP=1] $0 TPU_NAME ZONE -- TRAIN_ARGS..." >&2; exit 2; }
[[ $# -ge 3 && "$3" == "--" ]] || usage
tpu="$1"; zone="$2"; shift 3

quoted=$(printf ' %q' "$@")
setup=""
if [[ "${SETUP:-0}" == 1 ]]; then
  repo="${REPO_URL:?SETUP=1 needs REPO_URL, the git URL every worker clones}"
  setup="(test -d ~/diffrestore || git clone $repo ~/diffrestore) && cd ~/diffrestore && git pull --ff-only && make install && .venv/bin/pip install --quiet -U 'jax[tpu]' && "
fi
gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command \
  "${setup}cd ~/diffrestore && JAX_COMPILATION_CACHE_DIR=\$HOME/.cache/xla .venv/bin/diffrestore train${quoted}"
