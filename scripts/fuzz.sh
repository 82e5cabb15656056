#!/usr/bin/env bash
# Builds gdp's libFuzzer targets (clang, AddressSanitizer + UndefinedBehaviorSanitizer, CMake
# option GDP_ENABLE_FUZZING) into <repo>/build-fuzz and runs each for a bounded time, starting
# from its committed seed corpus tests/fuzz/corpus/<target>:
#   gdp_fuzz_safetensors         the safetensors reader and gdp_app's input checks, on bytes
#   gdp_fuzz_forward_arguments   the forward's and backward's argument validation, on calls
# Fails (non-zero exit) on any crash, uncaught exception, broken property, leak, sanitizer
# report, input slower than the timeout (30 s) or memory over the limit; the input that did it is
# left in <build>/fuzz/<target>/artifacts/ (replay: <build>/tests/fuzz/<target> <file>).
# New inputs the fuzzer finds collect in <build>/fuzz/<target>/corpus, never in the
# committed seeds. docs/HARDENING.md says more.
#
# Usage: scripts/fuzz.sh [seconds per target]     (default 30, or GDP_FUZZ_SECONDS)
# Environment: GDP_FUZZ_BUILD_DIR overrides <repo>/build-fuzz; GDP_CMAKE_ARGS adds CMake
#   arguments (as for scripts/build.sh); GDP_FUZZ_TARGETS picks targets (space-separated).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${GDP_FUZZ_BUILD_DIR:-$repo_root/build-fuzz}
seconds=${1:-${GDP_FUZZ_SECONDS:-30}}
targets=${GDP_FUZZ_TARGETS:-gdp_fuzz_safetensors gdp_fuzz_forward_arguments}

# Only the targets and the libraries they need: no tests, gdp_app or benchmarks.
GDP_BUILD_DIR=$build_dir GDP_BUILD_TARGETS=$targets \
  GDP_CMAKE_ARGS="-DCMAKE_CXX_COMPILER=clang++ -DGDP_ENABLE_FUZZING=ON -DGDP_ENABLE_TESTS=OFF -DGDP_ENABLE_APPS=OFF -DGDP_ENABLE_BENCHMARKS=OFF -DCMAKE_CXX_FLAGS=-gline-tables-only ${GDP_CMAKE_ARGS:-}" \
  "$repo_root/scripts/build.sh"

source "$repo_root/scripts/sanitizer_env.sh"
# One OpenMP thread: the targets run Kokkos::Serial.
export OMP_NUM_THREADS=1 OMP_PROC_BIND=false

failed=()
for target in $targets; do
  work=$build_dir/fuzz/$target
  mkdir -p "$work/corpus" "$work/artifacts"
  echo "[fuzz] $target for ${seconds}s (seeds: tests/fuzz/corpus/$target, log: $work/log)"
  # -timeout: an input running 30 s is a hang (one takes milliseconds; the margin is for
  # loaded machines); -rss_limit_mb / -malloc_limit_mb: a run or
  # one allocation over 2 GiB is a finding; -max_len bounds the inputs' size.
  if "$build_dir/tests/fuzz/$target" "$work/corpus" "$repo_root/tests/fuzz/corpus/$target" \
      -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
      -max_len=16384 -detect_leaks=1 -print_final_stats=1 \
      -artifact_prefix="$work/artifacts/" >"$work/log" 2>&1; then
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)' "$work/log" | tr '\n' ' '
    echo
  else
    tail -n 60 "$work/log"
    echo "[fuzz] $target FAILED: input in $work/artifacts/"
    failed+=("$target")
  fi
done
if ((${#failed[@]})); then
  echo "[fuzz] findings in: ${failed[*]}"
  exit 1
fi
echo "[fuzz] no findings"
