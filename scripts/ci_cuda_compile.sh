#!/usr/bin/env bash
# CI's check that the CUDA variant still compiles (CI has no GPU, so nothing is run): builds the
# CUDA Kokkos if missing (scripts/install_deps.sh --cuda) and every target of gdp against it
# (library, tests, benchmarks, gdp_app), as scripts/build_cuda.sh does, without packing.
# Without a CUDA toolkit there is nothing to check: it says so and succeeds.
#
# Usage: scripts/ci_cuda_compile.sh
# Environment: as scripts/build_cuda.sh (GDP_CUDA_BUILD_DIR, GDP_CUDA_ARCH, GDP_BUILD_JOBS,
#   GDP_CMAKE_ARGS, GDP_DEPS_DIR); CUDA_ROOT as scripts/install_deps.sh.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if ! command -v nvcc >/dev/null && [[ ! -x ${CUDA_ROOT:-/usr/local/cuda}/bin/nvcc ]]; then
  echo "[ci_cuda_compile] no CUDA toolkit (nvcc) here: the CUDA variant was not compiled"
  exit 0
fi
export PATH=$PATH:${CUDA_ROOT:-/usr/local/cuda}/bin

start=$SECONDS
GDP_BUILD_JOBS=${GDP_BUILD_JOBS:-$(nproc)} "$repo_root/scripts/build_cuda.sh" --no-pack
echo "[ci_cuda_compile] the CUDA variant compiled in $((SECONDS - start)) s"
