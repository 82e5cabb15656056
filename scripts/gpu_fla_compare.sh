#!/usr/bin/env bash
# Runs on the GPU machine, from the repo root: FLA's chunk_gated_delta_product and the packed
# gdp build (.gpu, from scripts/build_cuda.sh) on the same GPU in one run, accuracy first, then
# the times of issue 6's shapes and their ratios (scripts/fla_compare.py says what is timed).
# FLA is not part of gdp and nothing of it is committed: FLA_SRC names a folder holding its
# `fla` package (a checkout of fla-org/flash-linear-attention carried to the machine); it
# runs on the machine's PyTorch and Triton. Triton compiles FLA's kernels on their first call:
# most of a first run's 9 minutes on an H200, 72 s once they were compiled (docs/PERFORMANCE.md,
# eighteenth session).
#
# Usage: FLA_SRC=<folder> bash scripts/gpu_fla_compare.sh [fla_compare.py options]
#   e.g. FLA_SRC=.fla bash scripts/gpu_fla_compare.sh --shapes 8-2048-16-128-2 --rounds 3
# Environment: OUT (default <repo>/build-cuda/gpu_fla_compare), GDP_GPU_DIR (default <repo>/.gpu).
# The table printed last is also in $OUT/fla_compare.txt.
set -uo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
gpu=${GDP_GPU_DIR:-$repo_root/.gpu}
out=${OUT:-$repo_root/build-cuda/gpu_fla_compare}
[[ -n ${FLA_SRC:-} && -d $FLA_SRC/fla ]] || {
  echo "gpu_fla_compare: FLA_SRC must name a folder holding FLA's fla package (got '${FLA_SRC:-}')" >&2
  exit 2
}
[[ -d $gpu/bin ]] || { echo "gpu_fla_compare: no packed build at $gpu" >&2; exit 2; }
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck source=scripts/gpu_env.sh
source "$repo_root/scripts/gpu_env.sh"
echo "$gpu_env_report"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
sed -n 1,2p "$gpu/manifest"
PYTHONUNBUFFERED=1 python3 "$repo_root/scripts/fla_compare.py" --fla-src "$FLA_SRC" \
  --gdp-app "$gpu/bin/gdp_app" "$@" 2>&1 | grep --line-buffered -v -i "warning" | tee "$out/fla_compare.txt"
