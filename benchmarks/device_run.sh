#!/usr/bin/env bash
# The GPU measurements of benchmarks/RESULTS.md, for a machine that has JAX with CUDA and
# PyTorch but nothing else of ours (no venv, no network). From the repo root:
#
#   bash benchmarks/device_run.sh [MEASUREMENT ...]
#
#   fp32        diffrestore forward + enhancement, float32 (TF32 convolutions)  -> ours_fp32.json
#   bf16        the same in bfloat16                                            -> ours_bf16.json
#   train       bf16 training steps/s, FLOPs, MFU                               -> train_bf16.json
#   reference   the PyTorch reference's forward + enhancement                   -> reference.json
#   profile     which ops take the time: forward fp32, bf16 training step       -> profile_*.json
#   ours        fp32 bf16 train;   all (the default): fp32 bf16 train reference
#
# after `bash benchmarks/prepare_device.sh SGMSE_CHECKOUT` has put the wheels this needs into
# .whl/ and the reference's code into .ref/sgmse (both ignored by git; carry them along).
# Results (JSON, one log, and compare.md from benchmarks/compare.py) go to $OUT, else
# benchmarks/results/device/. Each measurement has its own time limit (STEP_TIMEOUT), so one
# that hangs or runs out of memory costs its own figures only; the exit status is the number
# of failed measurements. A device call lasts at most 10 minutes: give it the measurements
# that fit (each logs its time; on a GPU most of it is compilation and cuDNN autotuning).
#
# Sizes are the issue's: 10 s of 16 kHz audio (1280 frames after padding), the default
# SGMSE+ sampler (N = 30 + ALD: 60 network calls) at batch 1 and 16, bf16 training at global
# batch 32 of 256-frame crops. Environment overrides (for a CPU smoke run of the script):
# PYTHON, CONFIG, AUDIO_SECONDS, NUM_STEPS, BATCH_SIZES, TRAIN_BATCH, TRAIN_STEPS, REPEATS,
# STEP_TIMEOUT (seconds per measurement), DEVICE (torch device for the reference), WHEELS.
set -uo pipefail
cd "$(dirname "$0")/.."

MEASUREMENTS=("${@:-all}")
OUT_DIR=${OUT:-benchmarks/results/device}
PYTHON=${PYTHON:-python3}
CONFIG=${CONFIG:-configs/sgmse_vbd.py}
AUDIO_SECONDS=${AUDIO_SECONDS:-10}  # not SECONDS: bash's own clock
NUM_STEPS=${NUM_STEPS:-30}
BATCH_SIZES=${BATCH_SIZES:-1,16}
TRAIN_BATCH=${TRAIN_BATCH:-32}
TRAIN_STEPS=${TRAIN_STEPS:-20}
REPEATS=${REPEATS:-3}
STEP_TIMEOUT=${STEP_TIMEOUT:-280}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/device_run.log"
export PYTHONUNBUFFERED=1
# JAX and PyTorch run one after the other; neither keeps the GPU's memory from the other.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

# Packages the machine lacks (ml_collections) travel as wheels in .whl/ (WHEELS).
WHEELS=${WHEELS:-.whl}
if compgen -G "$WHEELS/*.whl" > /dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/diffrestore_site "$WHEELS"/*.whl || exit 90
  export PYTHONPATH="/tmp/diffrestore_site${PYTHONPATH:+:$PYTHONPATH}"
fi

failures=0
measure() {  # measure NAME COMMAND...: runs it with the time limit, logs, counts a failure
  local name=$1; shift
  echo "== $(date -u +%FT%TZ) $name: $*" | tee -a "$LOG"
  local start=$SECONDS
  timeout "$STEP_TIMEOUT" "$@" >> "$LOG" 2>&1
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$LOG"
  [ "$rc" -eq 0 ] || failures=$((failures + 1))
}

{
  echo "== machine"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  "$PYTHON" -c "import jax; print('jax', jax.__version__, jax.devices())" 2>&1
} | tee -a "$LOG"

common=(--config "$CONFIG" --seconds "$AUDIO_SECONDS" --num-steps "$NUM_STEPS"
        --batch-sizes "$BATCH_SIZES" --repeats "$REPEATS" --warmup 1)
run_one() {
  case "$1" in
    fp32) measure ours_fp32 "$PYTHON" benchmarks/throughput.py "${common[@]}" --what forward,enhance \
              --out "$OUT_DIR/ours_fp32.json" ;;
    bf16) measure ours_bf16 "$PYTHON" benchmarks/throughput.py "${common[@]}" --what forward,enhance \
              --override model.dtype=bfloat16 --out "$OUT_DIR/ours_bf16.json" ;;
    train) measure train_bf16 "$PYTHON" benchmarks/throughput.py --config "$CONFIG" --what train \
              --override model.dtype=bfloat16 --batch-size "$TRAIN_BATCH" --steps "$TRAIN_STEPS" --warmup 2 \
              --out "$OUT_DIR/train_bf16.json" ;;
    reference)
      if [ ! -d .ref/sgmse/sgmse ]; then
        echo "no .ref/sgmse: run benchmarks/prepare_device.sh and carry .ref" | tee -a "$LOG"
        failures=$((failures + 1))
      else
        # On CUDA the reference compiles its upfirdn2d extension (nvcc, ninja) on first import.
        measure reference "$PYTHON" benchmarks/torch_reference.py --sgmse .ref/sgmse --device "$DEVICE" \
            --what forward,enhance --seconds "$AUDIO_SECONDS" --num-steps "$NUM_STEPS" \
            --batch-sizes "$BATCH_SIZES" --repeats "$REPEATS" --warmup 1 --out "$OUT_DIR/reference.json"
      fi ;;
    profile)
      measure profile_forward "$PYTHON" benchmarks/profile_ops.py --config "$CONFIG" --what forward \
          --seconds "$AUDIO_SECONDS" --out "$OUT_DIR/profile_forward_fp32.json"
      measure profile_train "$PYTHON" benchmarks/profile_ops.py --config "$CONFIG" --what train \
          --override model.dtype=bfloat16 --batch-size "$TRAIN_BATCH" --out "$OUT_DIR/profile_train_bf16.json" ;;
    ours) run_one fp32; run_one bf16; run_one train ;;
    all) run_one ours; run_one reference ;;
    *) echo "unknown measurement: $1 (fp32, bf16, train, reference, profile, ours, all)" | tee -a "$LOG"
       failures=$((failures + 1)) ;;
  esac
}
for m in "${MEASUREMENTS[@]}"; do run_one "$m"; done

"$PYTHON" benchmarks/compare.py --dir "$OUT_DIR" | tee "$OUT_DIR/compare.md"
echo "failed measurements: $failures" | tee -a "$LOG"
exit "$failures"
