#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run of the default test suite: builds gdp, its
# tests and gdp_app with GCC and -fsanitize=address,undefined (CMake option GDP_SANITIZE: frame
# pointers kept, no recovery, so the first report ends the program) into <repo>/build-asan,
# then runs every test not labelled `long` through CTest: Serial and OpenMP kernels,
# safetensors I/O, the corpus replays, the MPI tests and gdp_app runs with 1, 2 and 3 ranks
# under mpiexec. Leaks are reported too; the only ones suppressed are those allocated inside
# Open MPI's libraries (scripts/lsan.supp). docs/HARDENING.md says more.
#
# Every report of ASan, LSan or UBSan, from any process of any test (MPI ranks included), is
# written to <build>/sanitizer-reports/ (log_path) and fails this script even where the test
# itself passed: some tests pass on a printed pattern whatever the exit status, and the failure
# tests expect status 1, which is also ASan's. The reports are printed at the end.
#
# Usage: scripts/sanitize.sh [extra ctest arguments]   e.g. scripts/sanitize.sh -R io
# Environment: GDP_SANITIZE_BUILD_DIR overrides <repo>/build-asan; GDP_CMAKE_ARGS adds CMake
#   arguments (as for scripts/build.sh); GDP_SANITIZE overrides the list address,undefined;
#   GDP_SANITIZE_TIMEOUT (default 3000) is the CTest timeout in seconds of every test in this
#   run (the instrumented programs run 2 to 5 times slower; the normal suite keeps its own).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${GDP_SANITIZE_BUILD_DIR:-$repo_root/build-asan}
sanitizers=${GDP_SANITIZE:-address,undefined}
timeout=${GDP_SANITIZE_TIMEOUT:-3000}

# GCC, whatever CXX says (it matters when build_dir is configured the first time): the prebuilt
# Kokkos runs OpenMP on GCC's libgomp, and gdp's own OpenMP code must use the same runtime
# (clang would link its libomp beside it). The benchmarks are not tests; -g1 gives the reports
# file and line numbers.
build_start=$SECONDS
CXX=g++ GDP_BUILD_DIR=$build_dir \
  GDP_CMAKE_ARGS="-DGDP_SANITIZE=$sanitizers -DGDP_ENABLE_BENCHMARKS=OFF -DCMAKE_CXX_FLAGS=-g1 -DGDP_MPI_TEST_TIMEOUT=$timeout ${GDP_CMAKE_ARGS:-}" \
  "$repo_root/scripts/build.sh"
echo "[sanitize] build: $((SECONDS - build_start)) s"

source "$repo_root/scripts/sanitizer_env.sh"
reports=$build_dir/sanitizer-reports
rm -rf "$reports"
mkdir -p "$reports"
# Each process writes its reports to <reports>/<sanitizer>.<pid>.
export ASAN_OPTIONS="$ASAN_OPTIONS:log_path=$reports/asan"
export UBSAN_OPTIONS="$UBSAN_OPTIONS:log_path=$reports/ubsan"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "$build_dir"
echo "[sanitize] ctest in $build_dir (ASAN_OPTIONS=$ASAN_OPTIONS)"
run_start=$SECONDS
status=0
if (($#)); then
  ctest --output-on-failure --timeout "$timeout" "$@" || status=$?
else
  ctest --output-on-failure --timeout "$timeout" -LE long || status=$?
fi
echo "[sanitize] ctest: $((SECONDS - run_start)) s, status $status"

shopt -s nullglob
found=("$reports"/*)
if ((${#found[@]})); then
  echo "[sanitize] ${#found[@]} sanitizer report(s):"
  for f in "${found[@]}"; do
    echo "==== $f"
    cat "$f"
  done
  exit 1
fi
echo "[sanitize] no sanitizer report"
exit "$status"
