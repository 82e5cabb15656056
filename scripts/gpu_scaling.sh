#!/usr/bin/env bash
# Scaling of `mpirun gdp_app bench` over the GPUs of one host, one rank per GPU (the node-local
# rank picks its device; the units are independent, so no NCCL), from the packed build in .gpu
# (scripts/build_cuda.sh): for 1, 2, 4, 8 ranks up to the GPUs present,
#   strong  fixed B=32 T=8192 H=16 K=V=128 n=2, gated, bf16: forward and forward+backward;
#   weak    B=8 per GPU, the same T, H, K, V, n;
#   seq     sequence-parallel B=1 T=2^22 (when this gdp_app has --seq-parallel).
# Each bench prints the median time per call of every rank; the table printed last gives the
# slowest rank's time, tokens/s, the efficiency against 1 GPU and the load imbalance (max/mean
# of the ranks' times). Logs: $OUT/scaling-*.log, the table: $OUT/scaling.md.
#
# Usage: bash scripts/gpu_scaling.sh
# Environment: OUT (default <repo>/build-cuda/gpu_scaling), GDP_GPU_DIR (default <repo>/.gpu),
#   GDP_SCALING_CASES (default "strong weak seq"), GDP_SCALING_REPEATS (default 5),
#   GDP_SCALING_SEQ_TOKENS (default 4194304), GDP_SCALING_SEQ_SHAPE (default
#   "-H 16 -K 128 -V 128 -n 2 --gated --dtype bf16"), GDP_SCALING_BUDGET_S (default 420: cases not
#   started by then are reported as not run).
set -uo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
gpu=${GDP_GPU_DIR:-$repo_root/.gpu}
out=${OUT:-$repo_root/build-cuda/gpu_scaling}
cases=" ${GDP_SCALING_CASES:-strong weak seq} "
repeats=${GDP_SCALING_REPEATS:-5}
seq_tokens=${GDP_SCALING_SEQ_TOKENS:-4194304}
read -r -a seq_shape <<<"${GDP_SCALING_SEQ_SHAPE:--H 16 -K 128 -V 128 -n 2 --gated --dtype bf16}"
budget=${GDP_SCALING_BUDGET_S:-420}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
[[ -x $gpu/bin/gdp_app || -f $gpu/bin/gdp_app.xz ]] || { echo "no gdp_app in $gpu: run scripts/build_cuda.sh first" >&2; exit 1; }

# shellcheck source=scripts/gpu_env.sh
source "$repo_root/scripts/gpu_env.sh"
echo "$gpu_env_report"
app=$gpu/bin/gdp_app
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ) $(hostname): $gpus GPU(s): $(nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c | tr -s ' ' | tr '\n' ';')"
counts=()
for count in 1 2 4 8; do ((count <= gpus)) && counts+=("$count"); done
has_seq_parallel=0
"$app" bench --help 2>/dev/null | grep -q -- '--seq-parallel' && has_seq_parallel=1

# bench NAME RANKS ARGS...: one bench run; appends "name ranks s/call tokens/s bwd-s imbalance"
# to $work/results (fields "-" where absent, "failed" or "notrun" when it did not finish).
bench() {
  local name=$1 ranks=$2
  shift 2
  local log=$out/scaling-$name-np$ranks.log
  if ((SECONDS > budget)); then
    printf '%s\t%s\tnotrun\t-\t-\t-\n' "$name" "$ranks" >>"$work/results"
    return
  fi
  echo "--- $name on $ranks GPU(s): gdp_app bench --space cuda $*"
  if ! timeout -k 5 $((budget + 120 - SECONDS)) mpiexec -n "$ranks" --oversubscribe --bind-to none \
      "$app" bench --space cuda --repeats "$repeats" "$@" >"$log" 2>&1 </dev/null; then
    tail -n 5 "$log"
    printf '%s\t%s\tfailed\t-\t-\t-\n' "$name" "$ranks" >>"$work/results"
    return
  fi
  # The table's columns are 2 or more spaces apart (a value such as "16.4 M" holds one):
  # the header row names them, the "all" row holds the slowest rank's times.
  python3 - "$log" "$name" "$ranks" >>"$work/results" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
split = lambda line: re.split(r"\s{2,}", line.strip())
header = next((split(l) for l in lines if l.strip().startswith("rank ")), None)
row = next((split(l) for l in lines if l.strip().startswith("all ")), None)
imbalance = next((l.rsplit(":", 1)[1].strip() for l in lines if l.startswith("load imbalance")), "-")
cells = dict(zip(header, row)) if header and row else {}
fields = [cells.get("s/call", "unparsed"), cells.get("tokens/s", "-").replace(" ", ""), cells.get("bwd s/call", "-")]
print("\t".join([sys.argv[2], sys.argv[3]] + fields + [imbalance]))
PY
  tail -n 3 "$log"
}

: >"$work/results"
shape=(-T 8192 -H 16 -K 128 -V 128 -n 2 --gated --dtype bf16)
for ranks in "${counts[@]}"; do
  [[ $cases == *" strong "* ]] && bench strong "$ranks" -B 32 "${shape[@]}" --backward
  [[ $cases == *" weak "* ]] && bench weak "$ranks" -B $((8 * ranks)) "${shape[@]}" --backward
  if [[ $cases == *" seq "* ]]; then
    if ((has_seq_parallel)); then
      bench seq "$ranks" -B 1 -T "$seq_tokens" "${seq_shape[@]}" --seq-parallel
    else
      printf '%s\t%s\tno --seq-parallel in this gdp_app\t-\t-\t-\n' seq "$ranks" >>"$work/results"
    fi
  fi
done

# The table: efficiency against the same case on 1 GPU (strong and seq: t1 / (P t_P); weak:
# t1 / t_P, the work growing with P).
python3 - "$work/results" "$out/scaling.md" <<'PY'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
base = {}
for name, ranks, s, tps, bwd, imb in rows:
    if ranks == "1":
        base[name] = (s, bwd)
def number(x):
    try:
        return float(x)
    except ValueError:
        return None
lines = ["| case | GPUs | fwd s/call | tokens/s | fwd efficiency | fwd+bwd s | fwd+bwd efficiency | load imbalance |",
         "|---|---|---|---|---|---|---|---|"]
for name, ranks, s, tps, bwd, imb in rows:
    p = int(ranks)
    def efficiency(now, one):
        now, one = number(now), number(one)
        if now is None or one is None or now == 0:
            return "-"
        return "%.0f%%" % (100 * one / now / (1 if name == "weak" else p))
    s1, b1 = base.get(name, ("-", "-"))
    both = "-"
    if number(s) is not None and number(bwd) is not None:
        both = "%.4f" % (number(s) + number(bwd))
    both1 = "-"
    if number(s1) is not None and number(b1) is not None:
        both1 = "%.4f" % (number(s1) + number(b1))
    lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
        name, ranks, s, tps, efficiency(s, s1), both, efficiency(both, both1), imb))
open(sys.argv[2], "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
