#!/usr/bin/env bash
# README command 2: install the dependencies, build everything, and run the default test
# suite (every test not labelled `long`) through CTest, then the packaging check (an
# installed gdp and gdp as a subdirectory, each used by a small downstream program).
# Then the fuzzing stage (docs/HARDENING.md): each libFuzzer target built with clang and
# AddressSanitizer + UndefinedBehaviorSanitizer and run for GDP_FUZZ_SECONDS (default 30)
# seconds from its seed corpus (scripts/fuzz.sh, in build-fuzz).
# Where a CUDA toolkit is installed it last compiles the CUDA variant too
# (scripts/ci_cuda_compile.sh: compile only, since CI has no GPU), so that the GPU path cannot
# break unseen. Exits non-zero on any failure.
#
# Usage: scripts/test.sh [extra ctest arguments]   e.g. scripts/test.sh -L long  (the long cases)
# Environment: GDP_SKIP_HARDENING=1 leaves out the fuzzing stage, GDP_SKIP_CUDA_COMPILE=1 the
#   CUDA compile (CI runs both).
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
  if [[ ${GDP_SKIP_HARDENING:-0} != 1 ]]; then
    stage_start=$SECONDS
    "$repo_root/scripts/fuzz.sh" "${GDP_FUZZ_SECONDS:-30}"
    echo "[test] fuzzing stage: $((SECONDS - stage_start)) s"
  fi
  if [[ ${GDP_SKIP_CUDA_COMPILE:-0} != 1 ]]; then
    "$repo_root/scripts/ci_cuda_compile.sh"
  fi
fi
