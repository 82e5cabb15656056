#!/usr/bin/env bash
# README command 2: install the dependencies, build everything, and run the default test
# suite (every test not labelled `long`) through CTest, then the packaging check (an
# installed gdp and gdp as a subdirectory, each used by a small downstream program).
# Where a CUDA toolkit is installed it last compiles the CUDA variant too
# (scripts/ci_cuda_compile.sh: compile only, since CI has no GPU), so that the GPU path cannot
# break unseen. Exits non-zero on any failure.
#
# Usage: scripts/test.sh [extra ctest arguments]   e.g. scripts/test.sh -L long  (the long cases)
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${GDP_BUILD_DIR:-$repo_root/build}

"$repo_root/scripts/build.sh"

# The tests run as root here; OpenMPI refuses that unless told.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "$build_dir"
if (($#)); then
  ctest --output-on-failure "$@"
else
  ctest --output-on-failure -LE long
  # Both ways a downstream project consumes gdp: the installed package and the source tree.
  "$repo_root/scripts/check_packaging.sh"
  "$repo_root/scripts/ci_cuda_compile.sh"
fi
