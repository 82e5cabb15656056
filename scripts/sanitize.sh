#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run of the default test suite: builds gdp, its
# tests and gdp_app with GCC and -fsanitize=address,undefined (CMake option GDP_SANITIZE: frame
# pointers kept, no recovery, so the first report ends the program) into <repo>/build-asan,
# then runs every test not labelled `long` through CTest: Serial and OpenMP kernels,
# safetensors I/O, the corpus replays, the MPI tests and gdp_app runs with 1, 2 and 3 ranks
# under mpiexec. Leaks are reported too; the only ones suppressed are those allocated inside
# Open MPI's libraries (scripts/lsan.supp). docs/HARDENING.md says more.
#
# Every report of ASan, LSan or UBSan, from any process of any test (MPI ranks included),
# fails its test: each report ends its program with status 86 (not 1, gdp_app's error status,
# which the failure tests expect of every rank), and in this build every test fails when its
# output holds a report (FAIL_REGULAR_EXPRESSION, cmake/GdpSanitizers.cmake), even a test that
# passes on a printed pattern whatever the status.
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
# file and line numbers. Optimisation: -O1 (GDP_SANITIZE_OPTIMIZATION, cmake/GdpSanitizers.cmake,
# placed after Release's -O3 -DNDEBUG so it wins), the level the AddressSanitizer documentation
# recommends: accurate reports at a reasonable speed. With Release's -O3 and the sanitizers GCC
# took 5 to over 25 minutes for single objects and the build did not finish in 72 minutes on
# two cores; at -O1 the whole build takes the time docs/HARDENING.md records.
build_start=$SECONDS
CXX=g++ GDP_BUILD_DIR=$build_dir \
  GDP_CMAKE_ARGS="-DGDP_SANITIZE=$sanitizers -DGDP_ENABLE_BENCHMARKS=OFF -DCMAKE_CXX_FLAGS=-g1 -DGDP_MPI_TEST_TIMEOUT=$timeout ${GDP_CMAKE_ARGS:-}" \
  "$repo_root/scripts/build.sh"
echo "[sanitize] build: $((SECONDS - build_start)) s"

source "$repo_root/scripts/sanitizer_env.sh"
export ASAN_OPTIONS="$ASAN_OPTIONS:exitcode=86" UBSAN_OPTIONS="$UBSAN_OPTIONS:exitcode=86"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "$build_dir"
echo "[sanitize] ctest in $build_dir (ASAN_OPTIONS=$ASAN_OPTIONS UBSAN_OPTIONS=$UBSAN_OPTIONS)"
run_start=$SECONDS
status=0
if (($#)); then
  ctest --output-on-failure --timeout "$timeout" "$@" || status=$?
else
  ctest --output-on-failure --timeout "$timeout" -LE long || status=$?
fi
echo "[sanitize] ctest: $((SECONDS - run_start)) s, status $status"
exit "$status"
