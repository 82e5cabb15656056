#!/usr/bin/env bash
# Installs the dependencies (scripts/install_deps.sh) and builds gdp, its tests, benchmarks
# and gdp_app against Kokkos 3.4.01 (OpenMP + Serial) in <repo>/build.
#
# Usage: scripts/build.sh
# Environment: GDP_BUILD_DIR overrides <repo>/build; GDP_CMAKE_ARGS adds CMake arguments;
#   GDP_BUILD_TARGETS builds only these targets (default: all).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${GDP_BUILD_DIR:-$repo_root/build}

"$repo_root/scripts/install_deps.sh"

echo "[build] configuring $build_dir"
# shellcheck disable=SC2086 # GDP_CMAKE_ARGS is a list of arguments
cmake -S "$repo_root" -B "$build_dir" -G Ninja \
  -DCMAKE_PREFIX_PATH="${GDP_DEPS_DIR:-$repo_root/.deps}/kokkos-3.4.01-openmp" \
  ${GDP_CMAKE_ARGS:-} >"$build_dir.configure.log" 2>&1 || {
  cat "$build_dir.configure.log"
  exit 1
}
echo "[build] building (log: $build_dir.build.log)"
# shellcheck disable=SC2086 # GDP_BUILD_TARGETS is a list of targets
cmake --build "$build_dir" -j "$(nproc)" ${GDP_BUILD_TARGETS:+--target $GDP_BUILD_TARGETS} \
  >"$build_dir.build.log" 2>&1 || {
  tail -n 60 "$build_dir.build.log"
  exit 1
}
echo "[build] done"
