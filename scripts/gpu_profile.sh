#!/usr/bin/env bash
# Runs on the GPU machine, from the repo root, with the packed build (.gpu, from
# scripts/build_cuda.sh): where the time of one `gdp_app bench` call goes, kernel by kernel.
# Nsight Compute (ncu) times every kernel of the command (gpu__time_duration, clocks left
# alone as the machine's METHOD.md asks); the table printed last sums them per kernel, the
# largest first, with each kernel's share of the summed time. Kernels are profiled one at a
# time, so the sum is the GPU's busy time without overlap between kernels, and it includes
# the warm-up call and every timed call of the bench (pass --warmup 0 --repeats 1 to see one).
# Logs and ncu's raw CSV go to $OUT.
#
# Usage: bash scripts/gpu_profile.sh [gdp_app bench arguments]
#   e.g. bash scripts/gpu_profile.sh --backward -B 8 -T 2048 -H 16 -K 128 -V 128 -n 2 \
#          --dtype bf16 --space cuda --warmup 0 --repeats 1
# Environment: OUT (default <repo>/build-cuda/gpu_profile), GDP_GPU_DIR (default <repo>/.gpu),
#   GDP_PROFILE_DETAIL: a regex over demangled kernel names, so that it also finds Kokkos
#   kernels by their functor (e.g. 'gradients_kernel|reverse_kernel' or 'SegmentScan'); the
#   first launch of each matching kernel is then profiled again with ncu's speed-of-light,
#   occupancy, warp-state and launch sections, printed after the table (details.txt in $OUT).
#   GDP_PROFILE_SOURCE: a kernel-name regex; its launch number GDP_PROFILE_SOURCE_SKIP
#   (default 0, the first) is profiled again with the scheduler, instruction and source-counter
#   sections (source.ncu-rep in $OUT), and its machine code summarised per instruction
#   (sass.csv): the warp-stall samples by reason and by opcode, the hottest instructions, and
#   the stretches between block barriers, each with its instructions per warp and step (the
#   barrier's executions count the warp-steps) and its share of the samples: which stage of a
#   chunk's step the time goes to; then the same counters per line of CUDA source
#   (cuda_sass.csv), the lines with the most instructions first. The "by opcode" shares are of
#   the stall samples, not of the instructions: a barrier's wait is sampled on a BRA.
set -uo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
gpu=${GDP_GPU_DIR:-$repo_root/.gpu}
out=${OUT:-$repo_root/build-cuda/gpu_profile}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# shellcheck source=scripts/gpu_env.sh
source "$repo_root/scripts/gpu_env.sh"
echo "$gpu_env_report"

ncu=$(command -v ncu || true)
for candidate in /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu; do
  [[ -z $ncu && -x $candidate ]] && ncu=$candidate
done
[[ -n $ncu ]] || { echo "no ncu on this machine" >&2; exit 1; }

"$ncu" --clock-control none --metrics gpu__time_duration.sum --csv --print-units base \
  "$gpu/bin/gdp_app" bench "$@" >"$out/ncu.csv" 2>"$out/ncu.log"
status=$?
grep -v '^==PROF==' "$out/ncu.log" | tail -n 20
python3 - "$out/ncu.csv" "$status" "$*" <<'PY'
import collections, csv, re, sys
path, status, arguments = sys.argv[1:4]
rows = [line for line in open(path, errors="replace") if line.startswith('"')]
totals, counts = collections.defaultdict(float), collections.Counter()
for row in csv.DictReader(rows):
    if row.get("Metric Name") != "gpu__time_duration.sum":
        continue
    name = row["Kernel Name"]
    # Kokkos launches name the functor: keep gdp's class name (ncu drops the leading gdp::),
    # else Kokkos's own functor (view initialisation, copies), else the kernel's name.
    found = re.findall(r"(?:detail|fused)::(\w+)", name) or re.findall(r"Impl::(View\w+)", name)
    short = found[0] if found else re.sub(r"[<(].*", "", name)[:60]
    totals[short] += float(row["Metric Value"].replace(",", "")) * 1e-6  # ns -> ms
    counts[short] += 1
whole = sum(totals.values())
print(f"\n== ncu, gdp_app bench {arguments} (exit {status})")
print(f"{'kernel':44} {'launches':>8} {'total ms':>10} {'share':>6}")
for name, ms in sorted(totals.items(), key=lambda item: -item[1]):
    print(f"{name:44} {counts[name]:>8} {ms:>10.3f} {100 * ms / whole:>5.1f}%")
print(f"{'all kernels':44} {sum(counts.values()):>8} {whole:>10.3f}")
PY

if [[ -n ${GDP_PROFILE_DETAIL:-} ]]; then
  echo
  echo "== ncu details, kernels matching '$GDP_PROFILE_DETAIL' (first launch of each)"
  "$ncu" --clock-control none --kernel-name-base demangled \
    --kernel-name "regex:$GDP_PROFILE_DETAIL" --launch-count 4 \
    --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats \
    "$gpu/bin/gdp_app" bench "$@" >"$out/details.txt" 2>&1
  grep -E '^  [a-z_:]+.*\(|^    (Duration|Compute \(SM\) Throughput|Memory Throughput|DRAM Throughput|Achieved Occupancy|Theoretical Occupancy|Registers Per Thread|Dynamic Shared Memory Per Block|Warp Cycles Per Issued Instruction|Block Limit Shared Mem|Block Limit Registers|Issue Slots Busy|L1/TEX Cache Throughput)' \
    "$out/details.txt" | head -n 80
fi

if [[ -n ${GDP_PROFILE_SOURCE:-} ]]; then
  echo
  echo "== ncu source counters, launch ${GDP_PROFILE_SOURCE_SKIP:-0} of the kernels matching '$GDP_PROFILE_SOURCE'"
  "$ncu" --clock-control none --kernel-name-base demangled --kernel-name "regex:$GDP_PROFILE_SOURCE" \
    --launch-skip "${GDP_PROFILE_SOURCE_SKIP:-0}" --launch-count 1 --section SpeedOfLight \
    --section SchedulerStats --section WarpStateStats --section InstructionStats \
    --section SourceCounters -f -o "$out/source" "$gpu/bin/gdp_app" bench "$@" >"$out/source.log" 2>&1
  "$ncu" -i "$out/source.ncu-rep" --page details >"$out/source_details.txt" 2>&1
  grep -E '^  [a-z_:]+.*\(|^    (Duration|Executed Ipc Active|Issue Slots Busy|No Eligible|Eligible Warps Per Scheduler|Warp Cycles Per Issued Instruction|Executed Instructions  )' \
    "$out/source_details.txt" | head -n 12
  "$ncu" -i "$out/source.ncu-rep" --page source --csv --print-source sass >"$out/sass.csv" 2>&1
  "$ncu" -i "$out/source.ncu-rep" --page source --csv --print-source cuda,sass \
    >"$out/cuda_sass.csv" 2>&1
  python3 - "$out/sass.csv" "$out/cuda_sass.csv" <<'PY'
import collections, csv, re, sys
lines = [line for line in open(sys.argv[1], errors="replace") if line.startswith('"')]
rows = list(csv.DictReader(lines[1:]))  # the first line names the kernel
if not rows or "Warp Stall Sampling (All Samples)" not in rows[0]:
    sys.exit("no per-instruction samples in sass.csv (see the file)")
def number(text):
    try:
        return float(text.replace(",", ""))
    except (AttributeError, ValueError):
        return 0.0
samples = [number(r["Warp Stall Sampling (All Samples)"]) for r in rows]
executed = [number(r["Instructions Executed"]) for r in rows]
opcodes = [re.sub(r"^@!?U?P\w+\s+", "", r["Source"].strip()).split(" ")[0] for r in rows]
total = sum(samples) or 1.0
reasons = [k for k in rows[0] if k.startswith("stall_") and "Not Issued" not in k]
by_reason = collections.Counter({k[6:]: sum(number(r[k]) for r in rows) for k in reasons})
print("stall samples by reason: " + ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in by_reason.most_common(8)))
by_opcode = collections.Counter()
for opcode, count in zip(opcodes, samples):
    by_opcode[opcode.split(".")[0]] += count
print("by opcode: " + ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in by_opcode.most_common(10)))
barriers = [i for i, op in enumerate(opcodes) if op.startswith("BAR.SYNC")]
steps = max((executed[i] for i in barriers), default=0.0) or max(executed) or 1.0
print(f"stretches between block barriers (instructions per warp and step; {steps:.0f} warp-steps):")
start = 0
for end in barriers + [len(rows) - 1]:
    stretch = range(start, end + 1)
    share = 100 * sum(samples[i] for i in stretch) / total
    if share >= 0.5:
        print(f"  SASS {start:5d}-{end:5d}: {sum(executed[i] for i in stretch) / steps:7.1f} instructions, {share:5.1f}% of samples")
    start = end + 1
print("hottest instructions:")
for i in sorted(range(len(rows)), key=lambda i: -samples[i])[:12]:
    top = max(reasons, key=lambda k: number(rows[i][k]))
    print(f"  {i:5d} {100 * samples[i] / total:5.1f}% ({top[6:]})  {rows[i]['Source'].strip()[:70]}")
# The same counters per line of CUDA source (inlined helpers under their own lines): which
# lines of code the instructions and the samples belong to. In cuda_sass.csv, "File Path" names
# a file, a row with a line number starts a source line, and the rows under it (line number
# empty, an address) are its SASS instructions. An instruction that belongs to several lines is
# listed under each, so the lines' counts overlap (by about 15% in the reverse pass); the total
# printed counts each instruction once.
header, path, line = None, "", ""
line_executed, line_samples = collections.Counter(), collections.Counter()
texts, by_address = {}, {}
for row in csv.reader(open(sys.argv[2], errors="replace")):
    if not row or row[0] == "Function Name":
        continue
    if row[0] == "File Path":
        path = row[1].rsplit("/", 1)[-1]
    elif row[0] == "Line No":
        header = row
    elif row[0]:
        line = row[0]
        texts[(path, line)] = row[1].strip()
    elif header and len(row) > 7 and row[2] != "-":
        count = number(row[header.index("Instructions Executed")])
        line_executed[(path, line)] += count
        by_address[row[2]] = count
        line_samples[(path, line)] += number(row[header.index("Warp Stall Sampling (All Samples)")])
if not line_executed:
    sys.exit("no per-line counters in cuda_sass.csv (see the file)")
line_total = sum(line_samples.values()) or 1.0
print(f"source lines by instructions per warp and step (of {sum(by_address.values()) / steps:.0f}):")
for key, count in line_executed.most_common(15):
    print(f"  {key[0]}:{key[1]:<5} {count / steps:7.1f} instructions, "
          f"{100 * line_samples[key] / line_total:5.1f}% of samples  {texts.get(key, '')[:60]}")
PY
fi
