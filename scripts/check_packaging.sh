#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Checks both ways a downstream project consumes gdp (docs/INSTALL.md), with the same program
# (examples/downstream/downstream_example.cpp), which compares gdp's output with its own host
# recurrence and exits non-zero above tolerance:
#   1. installed package: `cmake --install` of the already-built tree into a temporary prefix,
#      then examples/downstream configured with only that prefix (find_package(gdp) must find
#      Kokkos and Kokkos Kernels itself), built and run;
#   2. source tree: examples/as_subdirectory, which add_subdirectory()s this gdp tree, built
#      (gdp's library and the example only) and run.
# Reuses the build's compiler, Kokkos prefix and GDP_* options. The as_subdirectory build stays
# in <build>/check_packaging so that a second run only recompiles what changed.
#
# Usage: scripts/check_packaging.sh      (after scripts/build.sh)
# Environment: GDP_BUILD_DIR overrides <repo>/build.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${GDP_BUILD_DIR:-$repo_root/build}
cache=$build_dir/CMakeCache.txt

log() { printf '[check_packaging] %s\n' "$*"; }
fail() {
  log "FAILED: $*"
  exit 1
}
[[ -f $cache ]] || fail "no configured build in $build_dir (run scripts/build.sh first)"

cache_value() { sed -n "s/^$1:[A-Z]*=//p" "$cache"; }
cxx=$(cache_value CMAKE_CXX_COMPILER)
build_type=$(cache_value CMAKE_BUILD_TYPE)
# The compiler and language level of the build, for both projects; the GDP_* options too for
# the one that builds gdp again, so that it builds the same library.
common_options=(-G Ninja "-DCMAKE_CXX_COMPILER=$cxx" "-DCMAKE_BUILD_TYPE=$build_type")
gdp_options=()
for variable in CMAKE_CXX_STANDARD GDP_ENABLE_CUDA GDP_CUDA_ARCH GDP_ENABLE_NATIVE_ARCH; do
  value=$(cache_value "$variable")
  [[ -z $value ]] && continue
  if [[ $variable == CMAKE_* ]]; then
    common_options+=("-D$variable=$value")
  else
    gdp_options+=("-D$variable=$value")
  fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Runs a step with its output in a log, shown only when the step fails.
step() {
  local name=$1
  shift
  "$@" >"$work/$name.log" 2>&1 || {
    cat "$work/$name.log"
    fail "$name: $*"
  }
}
run_example() {
  local name=$1 program=$2
  step "$name" env OMP_NUM_THREADS=2 OMP_PROC_BIND=false "$program"
  cat "$work/$name.log"
  grep -q 'OK$' "$work/$name.log" || fail "$name printed no OK"
}

prefix=$work/prefix
log "installing $build_dir into a temporary prefix"
step install cmake --install "$build_dir" --prefix "$prefix"
for file in include/gdp/forward.hpp include/gdp/config.hpp lib/cmake/gdp/gdpConfig.cmake \
  lib/cmake/gdp/gdpConfigVersion.cmake lib/cmake/gdp/gdpTargets.cmake; do
  [[ -f $prefix/$file ]] || fail "the install has no $file"
done
# The installed targets must stand on the installed headers alone, never on the source tree.
if grep -q -e "$repo_root/include" -e "$repo_root/src" "$prefix"/lib/cmake/gdp/gdpTargets*.cmake; then
  fail "the installed gdpTargets*.cmake name the source tree"
fi

log "downstream project against the installed package (find_package)"
step downstream-configure cmake -S "$repo_root/examples/downstream" -B "$work/downstream" \
  "${common_options[@]}" "-DCMAKE_PREFIX_PATH=$prefix"
step downstream-build cmake --build "$work/downstream" -j 2
run_example downstream-run "$work/downstream/downstream_example"

log "downstream project with gdp's source tree as a subdirectory (add_subdirectory)"
subdirectory_build=$build_dir/check_packaging/as_subdirectory
step subdirectory-configure cmake -S "$repo_root/examples/as_subdirectory" -B "$subdirectory_build" \
  "${common_options[@]}" "${gdp_options[@]}" "-DCMAKE_PREFIX_PATH=$(cache_value CMAKE_PREFIX_PATH)"
step subdirectory-build cmake --build "$subdirectory_build" -j 2
run_example subdirectory-run "$subdirectory_build/downstream_example"

log "both ways of consuming gdp work"
