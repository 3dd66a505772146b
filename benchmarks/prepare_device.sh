#!/usr/bin/env bash
# Prepares what benchmarks/device_run.sh needs on a GPU machine that has JAX, Flax, Optax,
# Orbax and PyTorch but cannot download anything. Run here, from anywhere:
#
#   bash benchmarks/prepare_device.sh SGMSE
#
# SGMSE: a checkout of sp-uhh/sgmse, or its bare git directory (as the search tool's fetch
# leaves it). Writes, inside the repo and ignored by git:
#   .whl/       wheels of the pure-Python packages the GPU image lacks (ml_collections)
#   .ref/sgmse  the reference's `sgmse` package (measured beside ours, never committed)
# Then carry both: device run with carry [".whl", ".ref"] and the command
#   bash benchmarks/device_run.sh all
set -euo pipefail
SRC=${1:?usage: prepare_device.sh SGMSE_CHECKOUT_OR_GIT_DIR}
cd "$(dirname "$0")/.."

rm -rf .whl && mkdir -p .whl
# The GPU image's Python is 3.12; ml_collections is pure Python (its needs, absl-py and PyYAML,
# are on the image).
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux2014_x86_64 -d .whl "ml_collections==1.1.0"

rm -rf .ref/sgmse && mkdir -p .ref/sgmse
if [ -d "$SRC/sgmse" ]; then
  cp -r "$SRC/sgmse" .ref/sgmse/
elif git --git-dir="$SRC" rev-parse HEAD > /dev/null 2>&1; then
  git --git-dir="$SRC" archive HEAD sgmse | tar -x -C .ref/sgmse
else
  echo "$SRC: neither a checkout with sgmse/ nor a git directory" >&2
  exit 2
fi
echo "reference: $(find .ref/sgmse -name '*.py' | wc -l) Python files; wheels: $(ls .whl)"
du -sh .whl .ref
