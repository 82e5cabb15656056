#!/usr/bin/env bash
# README command 1: install the dependencies, build everything, and run the main job:
# `gdp_app run` on the OpenMP space with 2 MPI ranks on a default problem (B=4, T=2048, H=8,
# K=V=128, n=2, gated, with h0, float32), then print a summary of the output file and check
# the chunked operator against the float64 recurrence with 2 ranks.
#
# Usage: scripts/run.sh
# Environment: GDP_BUILD_DIR overrides <repo>/build; GDP_RANKS the rank count (default 2).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${GDP_BUILD_DIR:-$repo_root/build}
ranks=${GDP_RANKS:-2}

"$repo_root/scripts/build.sh"

# As root, OpenMPI needs to be told that is fine; --oversubscribe lets 2 ranks share few cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OMP_PROC_BIND=${OMP_PROC_BIND:-false}
mpirun=(mpirun -np "$ranks" --oversubscribe)
app=$build_dir/apps/gdp_app
work=$build_dir/demo
mkdir -p "$work"
shape=(-B 4 -T 2048 -H 8 -K 128 -V 128 -n 2 --h0 --dtype f32)

echo
echo "== gdp_app make-input ${shape[*]}"
"$app" make-input "${shape[@]}" -o "$work/input.safetensors"
echo
echo "== ${mpirun[*]} gdp_app run --space openmp"
rm -f "$work/output.safetensors"
"${mpirun[@]}" "$app" run --space openmp -i "$work/input.safetensors" -o "$work/output.safetensors"
echo
echo "== gdp_app inspect (the output file)"
"$app" inspect "$work/output.safetensors"
echo
echo "== ${mpirun[*]} gdp_app verify (chunked vs float64 recurrence, T=512)"
"${mpirun[@]}" "$app" verify --space openmp -B 4 -T 512 -H 8 -K 128 -V 128 -n 2 --h0 --dtype f32
