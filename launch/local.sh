#!/usr/bin/env bash
# Starts NPROC processes of one multi-process JAX job on this machine.
#
#   launch/local.sh NPROC -- diffrestore train --config configs/tiny.py --workdir runs/mp
#   DEVICES_PER_PROCESS=2 launch/local.sh 2 -- diffrestore train ...   # 2 x 2 forced CPU devices
#
# Each process gets DIFFRESTORE_COORDINATOR (127.0.0.1 and a free port),
# DIFFRESTORE_NUM_PROCESSES and DIFFRESTORE_PROCESS_ID, which `diffrestore train` hands to
# jax.distributed.initialize. DEVICES_PER_PROCESS > 0 forces that many host (CPU) devices per
# process, the way to test multi-host code without accelerators. Output lines are prefixed
# with the process id. If one process fails the others are stopped; the exit status is the
# first non-zero one (0 if all succeeded).
set -euo pipefail
set -m  # each process (and its pipeline) in its own process group, so it can be stopped whole

usage() { echo "usage: $0 NPROC -- COMMAND [ARGS...]" >&2; exit 2; }
[[ $# -ge 3 && "$1" =~ ^[1-9][0-9]*$ && "$2" == "--" ]] || usage
nproc="$1"; shift 2

port="${COORDINATOR_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
xla_flags="${XLA_FLAGS:-}"
if [[ "${DEVICES_PER_PROCESS:-0}" -gt 0 ]]; then
  xla_flags="$xla_flags --xla_force_host_platform_device_count=${DEVICES_PER_PROCESS}"
  export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill -- "-$p" 2>/dev/null || true; done; }
trap cleanup INT TERM

for ((i = 0; i < nproc; i++)); do
  (
    export DIFFRESTORE_COORDINATOR="127.0.0.1:${port}" DIFFRESTORE_NUM_PROCESSES="$nproc" DIFFRESTORE_PROCESS_ID="$i"
    export XLA_FLAGS="$xla_flags"
    # pipefail: the subshell exits with the command's status, its output prefixed line by line.
    "$@" 2>&1 | sed -u "s/^/[$i] /"
  ) &
  pids+=("$!")
done

status=0
remaining=("${pids[@]}")
while [[ ${#remaining[@]} -gt 0 ]]; do
  wait -n "${remaining[@]}" && code=0 || code=$?
  still=()
  for p in "${remaining[@]}"; do kill -0 "$p" 2>/dev/null && still+=("$p"); done
  remaining=("${still[@]+"${still[@]}"}")
  if [[ $code -ne 0 && $status -eq 0 ]]; then
    status=$code
    echo "launch/local.sh: a process exited with status $code; stopping the others" >&2
    cleanup
  fi
done
exit "$status"
