#!/usr/bin/env bash
# Runs on the GPU machine, from the repo root, with the packed build (.gpu, from
# scripts/build_cuda.sh): the backward on Kokkos::Cuda, checked, then timed.
#  1. check: gdp_test_backward on Cuda alone (every storage type against the float64 naive
#     adjoint; the default cases and the grouped heads, and the long FLA shapes unless
#     GDP_BACKWARD_SKIP_LONG is set), errors printed;
#  2. bench: `gdp_app bench --backward` on the issue's shapes, bf16, forward and backward
#     medians (warm-up first, fresh inputs per call as the bench does), and 8-2048 gated again
#     with --no-workspace-cache (every call allocating its scratch memory: what the cache saves)
#     and with --gradients-into (the gradients preallocated: what their allocation costs), and
#     both gate settings with --outputs-into too (a framework's training step: o, ht and the
#     gradients preallocated);
#  3. profile (GDP_BACKWARD_PROFILE=1): scripts/gpu_profile.sh on one backward call of
#     8-2048-16-128-2, per-kernel times from Nsight Compute;
#  4. sanitizers (GDP_BACKWARD_SANITIZE=1 or a gtest filter): compute-sanitizer memcheck on the
#     default cases, racecheck on three (or the filter's), after the check.
# Logs go to $OUT; the last lines are a table: shape, forward ms, backward ms, their sum, and a
# training step's ms (gdp::chunk_gated_delta_product_for_backward, then the backward from what
# it saved: the forward's work is not done twice).
#
# Usage: bash scripts/gpu_backward.sh
# Environment: OUT (default <repo>/build-cuda/gpu_backward), GDP_GPU_DIR (default <repo>/.gpu),
#   GDP_BACKWARD_REPEATS (default 10), GDP_BACKWARD_SKIP_LONG, GDP_BACKWARD_PROFILE,
#   GDP_BACKWARD_SANITIZE.
set -uo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
gpu=${GDP_GPU_DIR:-$repo_root/.gpu}
out=${OUT:-$repo_root/build-cuda/gpu_backward}
repeats=${GDP_BACKWARD_REPEATS:-10}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck source=scripts/gpu_env.sh
source "$repo_root/scripts/gpu_env.sh"
echo "$gpu_env_report"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
grep commit "$gpu/manifest"
status=0

filter='Cases/*:GroupedHeads/*'
[[ -n ${GDP_BACKWARD_SKIP_LONG:-} ]] || filter+=':FlaShapes/*'
echo "== check: gdp_test_backward --gtest_filter=$filter on Cuda"
GDP_TEST_SPACES=Cuda GDP_TEST_PRINT_ERRORS=1 "$gpu/bin/gdp_test_backward" \
  --gtest_filter="$filter" >"$out/check.log" 2>&1 || status=1
grep -E '^\[  (PASSED|FAILED) |^\[==========\]' "$out/check.log" | tail -n 3
grep -E '^\[  FAILED  \]' "$out/check.log" | head -n 20
# The largest error of each gradient over the 16-bit cases.
awk '$3 == "bfloat16" || $3 == "float16" {
       if ($5 > worst[$4]) { worst[$4] = $5; where[$4] = $1 " " $3 } }
     END { for (g in worst) printf "  largest 16-bit error of %-6s %.3e (%s)\n", g, worst[g], where[g] }' \
  "$out/check.log" | sort

if [[ -n ${GDP_BACKWARD_SANITIZE:-} ]]; then
  # compute-sanitizer on the backward's kernels: memcheck on every default case, racecheck
  # (slow) on the cases named by GDP_BACKWARD_SANITIZE (a gtest filter; 1 picks three).
  sanitizer=$(command -v compute-sanitizer || true)
  for candidate in /usr/local/cuda*/bin/compute-sanitizer; do
    [[ -z $sanitizer && -x $candidate ]] && sanitizer=$candidate
  done
  race_filter=${GDP_BACKWARD_SANITIZE}
  [[ $race_filter == 1 ]] && race_filter='Cases/*/gated_n1:Cases/*/value_blocks_l2norm_varlen:GroupedHeads/*/group2_Hqk2_B2_*'
  for tool in memcheck racecheck; do
    tool_filter='Cases/*:GroupedHeads/*'
    [[ $tool == racecheck ]] && tool_filter=$race_filter
    echo "== compute-sanitizer --tool $tool, gdp_test_backward --gtest_filter=$tool_filter on Cuda"
    GDP_TEST_SPACES=Cuda "$sanitizer" --tool "$tool" --error-exitcode 99 \
      "$gpu/bin/gdp_test_backward" --gtest_filter="$tool_filter" >"$out/$tool.log" 2>&1 || status=1
    grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|^\[  (PASSED|FAILED)' "$out/$tool.log" | head -n 6
    grep -E '^========= .*(Invalid|Race|hazard)' "$out/$tool.log" | sort | uniq -c | head -n 5
  done
fi

echo "== bench: gdp_app bench --backward (bf16, Cuda, warm-up 2, median of $repeats)"
table="$out/table.txt"
printf '%-52s %-6s %10s %10s %10s %10s\n' shape gate 'fwd ms' 'bwd ms' 'fwd+bwd' 'step ms' >"$table"
bench() {  # B T H K n gate [more gdp_app bench flags]
  local name="$1-$2-$3-$4-$5" gate_flag=--gated log flags="${*:7}"
  [[ $6 == no ]] && gate_flag=--no-gated
  log="$out/bench_$name-$6${flags// /}.log"
  "$gpu/bin/gdp_app" bench --backward --space cuda --dtype bf16 -B "$1" -T "$2" -H "$3" -K "$4" \
    -V "$4" -n "$5" "$gate_flag" --warmup 2 --repeats "$repeats" "${@:7}" >"$log" 2>&1 || {
    status=1
    tail -n 5 "$log"
  }
  python3 - "$log" "$name${flags:+ $flags}" "$6" "${@:1:5}" >>"$table" <<'PY'
import re, sys
path, name, gate = sys.argv[1:4]
B, T, H, K, n = (int(x) for x in sys.argv[4:9])
# The times from the GFLOP/s columns, which carry more digits than s/call: gdp_app counts
# 4KV per sub-step, 2KV per read-out and KV per gate per token and head, the backward twice.
flops = B * T * H * (n * 4.0 * K * K + 2.0 * K * K + (K * K if gate == "yes" else 0.0))
lines = open(path).read().splitlines()
header = next((re.split(r"\s{2,}", l.strip()) for l in lines if l.startswith("rank ")), None)
row = next((re.split(r"\s{2,}", l.strip()) for l in lines if l.startswith("   0 ")), None)
if not header or not row or len(row) != len(header):
    print(f"{name:<52} {gate:<6} {'?':>10} {'?':>10} {'?':>10} {'?':>10}")
else:
    cells = dict(zip(header, row))
    f = flops / float(cells["GFLOP/s"]) / 1e6
    b = 2 * flops / float(cells["bwd GFLOP/s"]) / 1e6
    step = 3 * flops / float(cells["step GFLOP/s"]) / 1e6
    print(f"{name:<52} {gate:<6} {f:10.3f} {b:10.3f} {f + b:10.3f} {step:10.3f}")
PY
}
bench 8 2048 16 128 2 yes
bench 8 2048 16 128 2 no
bench 1 32768 16 128 2 yes
bench 4 4096 16 128 3 yes
bench 8 2048 16 128 2 yes --no-workspace-cache
bench 8 2048 16 128 2 yes --gradients-into
bench 8 2048 16 128 2 yes --gradients-into --outputs-into
bench 8 2048 16 128 2 no --gradients-into --outputs-into

if [[ -n ${GDP_BACKWARD_PROFILE:-} ]]; then
  echo "== profile: one backward call of 8-2048-16-128-2 gated bf16"
  OUT=$out/profile bash "$repo_root/scripts/gpu_profile.sh" --backward -B 8 -T 2048 -H 16 \
    -K 128 -V 128 -n 2 --dtype bf16 --space cuda --warmup 0 --repeats 1 | tail -n 14
fi

echo
cat "$table"
exit "$status"
