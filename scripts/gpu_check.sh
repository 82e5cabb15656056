#!/usr/bin/env bash
# Runs on the GPU machine, from the repo root, what scripts/build_cuda.sh packed into .gpu:
#   1. the machine (nvidia-smi), and whether every program finds its libraries;
#   2. the whole test suite (.gpu/tests.tsv) once per execution space compiled in, each run
#      limited to its space by GDP_TEST_SPACES, all at the same time (the host runs on the CPU
#      cores the Cuda run leaves). Cuda runs every test, those labelled `long` last; the host
#      spaces skip `long` ones. Tests that run no kernel on a selected space (argument checks,
#      host references, file formats) run once, in the last host suite; gdp_app's and the MPI
#      tests, which pick their space themselves (Cuda first), once, in the Cuda suite;
#   3. compute-sanitizer memcheck and racecheck on the forward's edge cases on Cuda;
#   4. `gdp_app verify --space cuda` (one rank, then two sharing the GPU);
#   5. the forward benchmark (tests/perf/perf_forward.cpp: a float64 check first, then the
#      FLA shapes in bf16), alone on the machine;
# and prints a table last: tests passed and failed per space, sanitizer and verify results,
# and the forward's median time per shape against FLA's. Logs and the benchmark's JSON go to
# $OUT (the device tool brings back at most 8 files: the names below are all there are).
#
# Usage: bash scripts/gpu_check.sh
# Environment: OUT (default <repo>/build-cuda/gpu_check), GDP_GPU_DIR (default <repo>/.gpu),
#   GDP_CHECK_SPACES (default: the packed build's spaces, e.g. "Cuda OpenMP Serial"),
#   GDP_PERF_ARGS (more arguments of gdp_perf_forward, e.g. --shapes=1-256-2-64-2),
#   GDP_CHECK_STAGES (default "tests sanitizer verify bench"),
#   GDP_CHECK_HOST_ONLY, GDP_CHECK_ONCE (the two lists of test name patterns above),
#   GDP_CHECK_TESTS (test name patterns, default none: every test; else the suites run only
#   the tests matching one, e.g. "chunk.forward.* chunk.sequence_parallel" after a change to
#   the forward alone),
#   GDP_CHECK_BUDGET_S (default 300; device time is scarce): the script ends within it, each
#   stage cut at its share (Cuda suite 55%, memcheck 60%, racecheck 72%, host suites and
#   verify 76%, the benchmark the rest).
set -uo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
gpu=${GDP_GPU_DIR:-$repo_root/.gpu}
out=${OUT:-$repo_root/build-cuda/gpu_check}
budget=${GDP_CHECK_BUDGET_S:-300}
stages=" ${GDP_CHECK_STAGES:-tests sanitizer verify bench} "
host_only=${GDP_CHECK_HOST_ONLY:-common reference chunk.layout io dist.partition backward.arguments packaging.* docs.*}
once_on_cuda=${GDP_CHECK_ONCE:-app.* dist.mpi.*}
selected=${GDP_CHECK_TESTS:-}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

[[ -f $gpu/tests.tsv ]] || { echo "no $gpu/tests.tsv: run scripts/build_cuda.sh first" >&2; exit 1; }
spaces=${GDP_CHECK_SPACES:-$(sed -n 's/^spaces //p' "$gpu/manifest")}
info=$out/info.log
: >"$info"
say() { printf '%s\n' "$*" | tee -a "$info"; }
# Seconds left before the stage that must end at second $1 of the budget.
until_s() { local left=$(($1 - SECONDS)); ((left > 5)) && echo "$left" || echo 5; }

# ---- 1. the machine and the libraries -------------------------------------------------------
say "== $(date -u +%Y-%m-%dT%H:%M:%SZ) $(hostname); packed: $(head -n 2 "$gpu/manifest" | tr '\n' ';')"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader \
  >"$work/gpu" 2>/dev/null || echo "no GPU seen by nvidia-smi" >"$work/gpu"
say "gpu: $(head -n 1 "$work/gpu")"
# shellcheck source=scripts/gpu_env.sh
source "$repo_root/scripts/gpu_env.sh"
say "$gpu_env_report"
export OMP_PROC_BIND=false
# Half the cores to the Cuda run (its float64 references run on the host), the rest shared
# by the host runs, which yield to it.
cores=$(nproc)
cuda_threads=$((cores / 2 > 1 ? cores / 2 : 1))
host_threads=$((cores / 4 > 1 ? cores / 4 : 1))

# ---- 2. the suite, once per space -------------------------------------------------------------
# matches NAME PATTERNS: whether the test NAME matches one of the glob PATTERNS.
matches() {
  local - pattern
  set -f  # the patterns are globs for names, not for this folder's files
  for pattern in $2; do
    # shellcheck disable=SC2053 # the pattern is a glob
    [[ $1 == $pattern ]] && return 0
  done
  return 1
}

# output_matches REGEX FILE: whether REGEX (\n, \t as tests.tsv writes them) occurs in FILE.
output_matches() {
  python3 -c 'import re, sys
text = open(sys.argv[2], errors="replace").read()
sys.exit(0 if re.search(sys.argv[1], text, re.S) else 1)' "$1" "$2"
}

# run_suite SPACE DEADLINE_S ROLE THREADS: the tests of tests.tsv for SPACE, each cut at the
# deadline, in a scratch folder of its own (the spaces run at the same time). ROLE: "cuda"
# (every test but the host-only ones, `long` last), "host" (no `long`, no host-only), or
# "host-last" (also the host-only ones). A line per test in $work/results-SPACE: name, exit
# status ("notrun" when out of time, "notbuilt", "notool:PROGRAM"), seconds.
run_suite() {
  local space=$1 deadline=$2 role=$3 threads=$4 log=$out/tests-$1.log scratch=$work/space-$1
  : >"$log"
  : >"$work/results-$space"
  local pass name labels env pass_regex will_fail directory args_line
  for pass in short long; do
    [[ $pass == short || $role == cuda ]] || continue
    while IFS=$'\t' read -r name labels env pass_regex will_fail directory args_line; do
      [[ -z $selected ]] || matches "$name" "$selected" || continue
      if [[ ",$labels," == *,long,* ]]; then [[ $pass == long ]] || continue
      else [[ $pass == short ]] || continue; fi
      if matches "$name" "$host_only"; then [[ $role == host-last ]] || continue; fi
      if matches "$name" "$once_on_cuda"; then
        [[ $role == cuda || ($role == host-last && " $spaces " != *" Cuda "*) ]] || continue
      fi
      local -a command=() environment=()
      IFS=$'\t' read -r -a command <<<"${args_line//@BIN@/$gpu/bin}"
      command=("${command[@]//@SRC@/$repo_root}")
      command=("${command[@]//@WORK@/$scratch}")
      directory=${directory//@WORK@/$scratch}
      [[ $env == - ]] || IFS=';' read -r -a environment <<<"$env"
      environment+=("GDP_TEST_SPACES=$space" "OMP_NUM_THREADS=$threads")
      local left=$((deadline - SECONDS)) status start=$SECONDS
      if [[ -z $args_line ]]; then
        echo "=== $name: not built" >>"$log"
        printf '%s\t%s\t%s\n' "$name" notbuilt 0 >>"$work/results-$space"
        continue
      fi
      if ! command -v "${command[0]}" >/dev/null; then
        echo "=== $name: not run, no ${command[0]} on this machine" >>"$log"
        printf '%s\t%s\t%s\n' "$name" "notool:${command[0]}" 0 >>"$work/results-$space"
        continue
      fi
      if ((left < 10)); then
        echo "=== $name: not run, out of time" >>"$log"
        printf '%s\t%s\t%s\n' "$name" notrun 0 >>"$work/results-$space"
        continue
      fi
      echo "=== $name: ${command[*]}" >>"$log"
      mkdir -p "$directory"
      # The outer subshell keeps bash's own "Aborted" notices out of the terminal, and stdin is
      # closed so that no test (mpiexec reads it) eats the rest of the list.
      ( (cd "$directory" && env "${environment[@]}" timeout -k 5 "$left" "${command[@]}") \
        </dev/null >"$scratch.output" 2>&1) 2>/dev/null
      status=$?
      cat "$scratch.output" >>"$log"
      # CTest's rules: a pass regex, when given, decides instead of the exit status, searched
      # in the whole output at once ("." crosses lines, as in CMake's expressions); WILL_FAIL
      # turns the verdict round.
      if [[ $pass_regex != - ]] && ((status != 124 && status != 137)); then
        output_matches "$pass_regex" "$scratch.output" && status=0 || status=1
      fi
      if [[ $will_fail == 1 ]]; then ((status == 0)) && status=1 || status=0; fi
      echo "=== $name: status $status after $((SECONDS - start)) s" >>"$log"
      printf '%s\t%s\t%s\n' "$name" "$status" "$((SECONDS - start))" >>"$work/results-$space"
    done <"$gpu/tests.tsv"
  done
}

pids=()
if [[ $stages == *" tests "* ]]; then
  read -r -a host_spaces <<<"${spaces//Cuda/}"
  for space in "${host_spaces[@]}"; do
    role=host
    [[ $space == "${host_spaces[-1]}" ]] && role=host-last
    run_suite "$space" $((budget * 76 / 100)) "$role" "$host_threads" &
    pids+=($!)
    renice -n 10 -p "$!" >/dev/null
  done
  if [[ " $spaces " == *" Cuda "* ]]; then
    run_suite Cuda $((budget * 55 / 100)) cuda "$cuda_threads"
  fi
fi

# ---- 3. compute-sanitizer on the edge cases ---------------------------------------------------
sanitizer=$(command -v compute-sanitizer || true)
for candidate in /usr/local/cuda*/bin/compute-sanitizer; do
  [[ -z $sanitizer && -x $candidate ]] && sanitizer=$candidate
done
: >"$work/sanitizer"
if [[ $stages != *" sanitizer "* ]]; then
  :
elif [[ " $spaces " == *" Cuda "* && -n $sanitizer ]]; then
  for tool in memcheck racecheck; do
    case $tool in memcheck) deadline=$((budget * 60 / 100)) ;; *) deadline=$((budget * 72 / 100)) ;; esac
    say "--- compute-sanitizer --tool $tool, the forward's edge cases on Cuda"
    ( (GDP_TEST_SPACES=Cuda OMP_NUM_THREADS=$cuda_threads timeout -k 5 "$(until_s "$deadline")" \
      "$sanitizer" --tool "$tool" --error-exitcode 99 "$gpu/bin/gdp_test_chunk" \
      --gtest_filter='EdgeCases/*' </dev/null >"$work/$tool.log" 2>&1)) 2>/dev/null
    status=$?
    grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|========= (Invalid|Error|Race)|^\[  (PASSED|FAILED)' \
      "$work/$tool.log" | head -n 20 | tee -a "$info"
    tail -n 5 "$work/$tool.log" >>"$info"
    printf '%s\t%s\n' "$tool" "$status" >>"$work/sanitizer"
  done
elif [[ " $spaces " == *" Cuda "* ]]; then
  say "--- compute-sanitizer not found"
fi

# ---- 4. gdp_app verify ---------------------------------------------------------------------------
: >"$work/verify"
if [[ $stages == *" verify "* && -x $gpu/bin/gdp_app && " $spaces " == *" Cuda "* ]]; then
  for ranks in 1 2; do
    for dtype in bf16 f32; do
      command=("$gpu/bin/gdp_app" verify --space cuda --dtype "$dtype" -n 2 --h0)
      ((ranks == 1)) || command=(mpiexec -n "$ranks" "${command[@]}")
      say "--- ${command[*]}"
      ( (OMP_NUM_THREADS=$cuda_threads timeout -k 5 "$(until_s $((budget * 76 / 100)))" \
        "${command[@]}" </dev/null >"$work/verify.log" 2>&1)) 2>/dev/null
      status=$?
      tee -a "$info" <"$work/verify.log" | tail -n 3
      printf '%s\t%s\n' "$ranks rank(s) $dtype" "$status" >>"$work/verify"
    done
  done
fi

# The host suites end before the benchmark starts: it must have the machine to itself.
for pid in "${pids[@]}"; do wait "$pid"; done

# ---- 5. the forward benchmark -----------------------------------------------------------------
bench_status=skipped
if [[ $stages == *" bench "* && -x $gpu/bin/gdp_perf_forward ]]; then
  say "--- gdp_perf_forward ${GDP_PERF_ARGS:-}"
  # shellcheck disable=SC2086 # GDP_PERF_ARGS is a list of arguments
  ( (OMP_NUM_THREADS=$cores timeout -k 5 "$(until_s $((budget - 10)))" "$gpu/bin/gdp_perf_forward" \
    --benchmark_out="$out/perf_forward.json" --benchmark_out_format=json ${GDP_PERF_ARGS:-} \
    </dev/null >"$out/perf_forward.log" 2>&1)) 2>/dev/null
  bench_status=$?
  tail -n 12 "$out/perf_forward.log" >>"$info"
fi

# ---- the table ----------------------------------------------------------------------------------
python3 - "$work" "$out" "$bench_status" "$spaces" "$(head -n 1 "$work/gpu")" <<'PY' | tee "$out/summary.txt"
import glob, json, os, re, sys
work, out, bench_status, spaces, gpu = sys.argv[1:6]
print(f"\n== gdp GPU check on {gpu}")
print(f"{'space':8} {'ctest ok/all':>12} {'gtest passed':>12} {'gtest failed':>12}  failures")
for space in spaces.split():
    path = f"{work}/results-{space}"
    if not os.path.exists(path):
        continue
    rows = [line.rstrip("\n").split("\t") for line in open(path) if line.strip()]
    ok = sum(1 for r in rows if r[1] == "0")
    log = open(f"{out}/tests-{space}.log", errors="replace").read()
    passed = sum(int(n) for n in re.findall(r"^\[  PASSED  \] (\d+) test", log, re.M))
    failed_names = sorted(set(re.findall(r"^\[  FAILED  \] ([^ \n,]+)(?:,| \(|$)", log, re.M)))
    failed_names = [n for n in failed_names if not n[0].isdigit()]
    unrun = {"notrun": "out of time", "notbuilt": "not built"}
    broken = [f"{r[0]}(exit {r[1]})" for r in rows if r[1] != "0" and r[1] not in unrun and not r[1].startswith("notool")]
    skipped = [f"{r[0]}({unrun[r[1]]})" for r in rows if r[1] in unrun]
    skipped += [f"{r[0]}(no {r[1][7:]} here)" for r in rows if r[1].startswith("notool")]
    notes = failed_names + broken + skipped
    print(f"{space:8} {f'{ok}/{len(rows)}':>12} {passed:>12} {len(failed_names):>12}  {' '.join(notes) or '-'}")
for name in ("sanitizer", "verify"):
    path = f"{work}/{name}"
    if os.path.exists(path):
        for line in open(path):
            what, status = line.rstrip("\n").split("\t")
            verdict = {"0": "ok", "124": "TIMEOUT", "137": "TIMEOUT"}.get(status, f"FAILED (exit {status})")
            label = "compute-sanitizer " + what if name == "sanitizer" else "gdp_app verify --space cuda, " + what
            print(f"{label}: {verdict}")
path = f"{out}/perf_forward.json"
if os.path.exists(path):
    try:
        runs = json.load(open(path))["benchmarks"]
    except (ValueError, KeyError):
        runs = []
    print(f"\nforward, bf16 storage ({runs[0]['iterations'] if runs else '?'} timed calls each; benchmark exit {bench_status})")
    print(f"{'shape B-T-H-D-n':26} {'median ms':>10} {'min ms':>9} {'FLA ms':>8} {'gdp/FLA':>8}")
    for run in runs:
        shape = run["name"].split("/")[2]
        if run.get("error_occurred"):
            print(f"{shape:26} error: {run.get('error_message')}")
            continue
        fla = run.get("fla_ms", 0)
        ratio = f"{run['vs_fla']:.2f}" if fla else "-"
        print(f"{shape:26} {run['median_ms']:>10.3f} {run['min_ms']:>9.3f} {fla or '-':>8} {ratio:>8}")
elif bench_status == "skipped":
    print("\nforward benchmark: not run (GDP_CHECK_STAGES)")
else:
    print(f"\nforward benchmark: no results (exit {bench_status}); see perf_forward.log")
PY
