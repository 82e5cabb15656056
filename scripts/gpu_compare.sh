#!/usr/bin/env bash
# Runs on the GPU machine, from the repo root: the forward of two packed builds on the same
# machine in the same run, so that a change is measured against its baseline and not against
# figures of another machine or session (METHOD.md).
#   - the current build, .gpu (scripts/build_cuda.sh), and a baseline packed the same way
#     earlier, GDP_BASE_DIR (default .gpu-base: at least bin/gdp_perf_forward, bin/gdp_app and
#     lib/ copied from an older .gpu before rebuilding);
#   - gdp_perf_forward of each (the kernels: tests/perf/perf_forward.cpp), in the order base,
#     current, base, current, so that a drift of the machine shows as a difference between
#     the two runs of one build;
#   - `gdp_app bench` of each on GDP_COMPARE_APP_SHAPES (a user's whole call, the input check
#     and the allocations included).
# Prints the medians side by side last, also into $OUT/compare.txt; the logs and JSON go to
# $OUT/compare.tgz (the device tool brings back at most 8 files).
#
# Usage: bash scripts/gpu_compare.sh
# Environment: OUT (default <repo>/build-cuda/gpu_compare), GDP_BASE_DIR, GDP_PERF_ARGS (more
#   arguments of gdp_perf_forward, e.g. --benchmark_filter=automatic),
#   GDP_COMPARE_APP_SHAPES (";"-separated gdp_app problem flags; default the FLA shapes in bf16).
set -uo pipefail
repo_root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$repo_root/build-cuda/gpu_compare}
base=${GDP_BASE_DIR:-$repo_root/.gpu-base}
app_shapes=${GDP_COMPARE_APP_SHAPES:-"-B 8 -T 2048 -H 16 -K 128 -V 128 -n 2;-B 8 -T 2048 -H 16 -K 128 -V 128 -n 2 --no-gated;-B 1 -T 32768 -H 16 -K 128 -V 128 -n 2;-B 4 -T 4096 -H 16 -K 128 -V 128 -n 3"}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
results=$work/results
mkdir -p "$results"

# Each build gets its own unpacked libraries (gpu_env.sh unpacks into $work/lib).
declare -A library_path
for build in base current; do
  gpu=$([[ $build == base ]] && echo "$base" || echo "$repo_root/.gpu")
  [[ -d $gpu ]] || { echo "gpu_compare: no packed build at $gpu" >&2; exit 2; }
  work_build=$work/$build
  (
    work=$work_build
    # shellcheck source=scripts/gpu_env.sh
    source "$repo_root/scripts/gpu_env.sh"
    echo "$LD_LIBRARY_PATH" >"$work_build/library_path"
  )
  library_path[$build]=$(cat "$work_build/library_path")
done
base_commit=$(sed -n 's/^commit \([0-9a-f]*\).*/\1/p' "$base/manifest")
current_commit=$(sed -n 's/^commit \([0-9a-f]*\).*/\1/p' "$repo_root/.gpu/manifest")
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$results/machine.txt"

run_build() {  # build, round
  local build=$1 round=$2
  local gpu
  gpu=$([[ $build == base ]] && echo "$base" || echo "$repo_root/.gpu")
  # shellcheck disable=SC2086 # GDP_PERF_ARGS holds several arguments
  LD_LIBRARY_PATH=${library_path[$build]} "$gpu/bin/gdp_perf_forward" \
    --benchmark_out="$results/perf_${build}_$round.json" --benchmark_out_format=json ${GDP_PERF_ARGS:-} \
    </dev/null >"$results/perf_${build}_$round.log" 2>&1
  echo "perf $build round $round: exit $?"
}
for round in 1 2; do
  run_build base "$round"
  run_build current "$round"
done

IFS=';' read -r -a shapes <<<"$app_shapes"
for build in base current; do
  gpu=$([[ $build == base ]] && echo "$base" || echo "$repo_root/.gpu")
  for shape in "${shapes[@]}"; do
    # shellcheck disable=SC2086
    LD_LIBRARY_PATH=${library_path[$build]} "$gpu/bin/gdp_app" bench $shape --dtype bf16 \
      --space cuda --repeats 20 --warmup 3 </dev/null >>"$results/app_$build.log" 2>&1
  done
done

python3 - "$results" "$base_commit" "$current_commit" >"$results/compare.txt" <<'EOF'
import json, sys
out, base_commit, current_commit = sys.argv[1:]
medians = {}
for build in ("base", "current"):
    for round in (1, 2):
        try:
            data = json.load(open(f"{out}/perf_{build}_{round}.json"))
        except (OSError, ValueError):
            continue
        for b in data.get("benchmarks", []):
            name = b["name"].split("/iterations")[0].replace("forward/", "")
            if "median_ms" in b:
                medians.setdefault(name, {}).setdefault(build, []).append(b["median_ms"])
print(f"\ngdp_perf_forward medians (ms), base {base_commit} against current {current_commit}, two rounds each")
print(f"{'shape':48} {'base':>15} {'current':>15} {'current/base':>12}")
for name, by in medians.items():
    b, c = by.get("base", []), by.get("current", [])
    cell = lambda v: " / ".join(f"{x:.3f}" for x in v) if v else "-"
    ratio = f"{min(c) / min(b):.3f}" if b and c else "-"
    print(f"{name:48} {cell(b):>15} {cell(c):>15} {ratio:>12}")
print("\ngdp_app bench (a user's call): the 'all' row under its header (GFLOP/s are useful work;")
print("the times they give are finer than s/call's four decimals)")
for build in ("base", "current"):
    try:
        text = open(f"{out}/app_{build}.log").read()
    except OSError:
        continue
    for block in text.split("gdp_app bench: ")[1:]:
        lines = block.splitlines()
        title = lines[0].split(";")[0]
        header = [line for line in lines if line.startswith("rank ")]
        row = [line for line in lines if line.strip().startswith("all")]
        print(f"  {build:8} {title}")
        if header and row:
            print(f"           {' '.join(header[0].split()[1:])}")
            print(f"           {' '.join(row[0].split()[1:])}")
        else:
            print("           no result")
EOF
cp "$results/compare.txt" "$out/compare.txt"
tar -czf "$out/compare.tgz" -C "$work" results
cat "$out/compare.txt"
