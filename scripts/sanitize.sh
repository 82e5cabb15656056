#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run of the default test suite: builds gdp, its
# tests and gdp_app with -fsanitize=address,undefined (CMake option GDP_SANITIZE, no recovery:
# the first report aborts the program and fails its test) into <repo>/build-asan, then runs
# every test not labelled `long` through CTest: Serial and OpenMP kernels, safetensors I/O,
# the MPI runs with 1, 2 and 3 ranks. Leaks are reported too; the only ones suppressed are
# Open MPI's own (scripts/lsan.supp). docs/HARDENING.md says more.
#
# Usage: scripts/sanitize.sh [extra ctest arguments]   e.g. scripts/sanitize.sh -R io
# Environment: GDP_SANITIZE_BUILD_DIR overrides <repo>/build-asan; GDP_CMAKE_ARGS adds CMake
#   arguments (as for scripts/build.sh); GDP_SANITIZE overrides the list address,undefined.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${GDP_SANITIZE_BUILD_DIR:-$repo_root/build-asan}
sanitizers=${GDP_SANITIZE:-address,undefined}

# The benchmarks are not tests; -g1 gives the reports file and line numbers.
GDP_BUILD_DIR=$build_dir \
  GDP_CMAKE_ARGS="-DGDP_SANITIZE=$sanitizers -DGDP_ENABLE_BENCHMARKS=OFF -DCMAKE_CXX_FLAGS=-g1 ${GDP_CMAKE_ARGS:-}" \
  "$repo_root/scripts/build.sh"

source "$repo_root/scripts/sanitizer_env.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "$build_dir"
echo "[sanitize] ctest in $build_dir (ASAN_OPTIONS=$ASAN_OPTIONS)"
if (($#)); then
  ctest --output-on-failure "$@"
else
  ctest --output-on-failure -LE long
fi
