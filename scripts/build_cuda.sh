#!/usr/bin/env bash
# Builds the CUDA variant of gdp here (Kokkos::Cuda + OpenMP + Serial, for the Kokkos arch
# GDP_CUDA_ARCH, HOPPER90 = sm_90 by default) in <repo>/build-cuda, then packs into the
# git-ignored <repo>/.gpu everything a run on a GPU machine needs, for `run`'s carry:
#   .gpu/bin/      the test programs, the benchmarks and gdp_app, stripped;
#   .gpu/lib/      the shared libraries they need beyond glibc, libstdc++ and libgcc_s
#                  (Kokkos, the CUDA runtime, libgomp, Google Benchmark, OpenBLAS, ...);
#                  files over 4 MB of both xz-compressed;
#   .gpu/lib-mpi/  OpenMPI's libraries, used there only where the machine has none;
#   .gpu/tests.tsv the CTest suite as plain commands (scripts/gpu_check.sh runs them);
#   .gpu/manifest  what was packed, from which commit, for which arch.
# The GPU machine cannot use this build's CMake package or CTest files (its CMake is newer and
# its paths differ), hence the plain list. scripts/gpu_check.sh runs it all there.
#
# Usage: scripts/build_cuda.sh [--pack-only | --no-pack]
#   --pack-only: pack an existing build; --no-pack: build only (CI's compile check)
# Environment: GDP_CUDA_BUILD_DIR (default <repo>/build-cuda), GDP_GPU_DIR (default
#   <repo>/.gpu), GDP_CUDA_ARCH (default HOPPER90), GDP_BUILD_JOBS (default 2: nvcc is
#   memory- and CPU-hungry), GDP_CMAKE_ARGS (more CMake arguments), GDP_DEPS_DIR,
#   GDP_CUDA_LINEINFO (default 1: device code carries its source lines, -lineinfo, which leaves
#   the machine code as it is and lets Nsight Compute's source view of a report, such as
#   scripts/gpu_profile.sh's GDP_PROFILE_SOURCE writes, show the source beside the SASS).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${GDP_CUDA_BUILD_DIR:-$repo_root/build-cuda}
pack_dir=${GDP_GPU_DIR:-$repo_root/.gpu}
deps_dir=${GDP_DEPS_DIR:-$repo_root/.deps}
arch=${GDP_CUDA_ARCH:-HOPPER90}
jobs=${GDP_BUILD_JOBS:-2}

build=1 pack=1
for arg in "$@"; do
  case $arg in
    --pack-only) build=0 ;;
    --no-pack) pack=0 ;;
    *) echo "usage: $0 [--pack-only | --no-pack]" >&2; exit 2 ;;
  esac
done

log() { printf '[build_cuda] %s\n' "$*"; }

if ((build)); then
  GDP_CUDA_ARCH=$arch "$repo_root/scripts/install_deps.sh" --cuda
  log "configuring $build_dir (Kokkos arch $arch)"
  line_info=()
  [[ ${GDP_CUDA_LINEINFO:-1} == 1 ]] && line_info=("-DCMAKE_CXX_FLAGS_RELEASE=-O3 -DNDEBUG -lineinfo")
  # shellcheck disable=SC2086 # GDP_CMAKE_ARGS is a list of arguments
  cmake -S "$repo_root" -B "$build_dir" -G Ninja \
    -DCMAKE_CXX_COMPILER="$deps_dir/src/kokkos-3.4.01-cuda13/bin/nvcc_wrapper" \
    -DCMAKE_PREFIX_PATH="$deps_dir/kokkos-3.4.01-cuda" \
    -DGDP_ENABLE_CUDA=ON -DGDP_CUDA_ARCH="$arch" "${line_info[@]}" ${GDP_CMAKE_ARGS:-} \
    >"$build_dir.configure.log" 2>&1 || {
    cat "$build_dir.configure.log"
    exit 1
  }
  log "building with $jobs jobs (log: $build_dir.build.log)"
  cmake --build "$build_dir" -j "$jobs" >"$build_dir.build.log" 2>&1 || {
    grep -E -m 40 'error|Error' "$build_dir.build.log" || tail -n 60 "$build_dir.build.log"
    exit 1
  }
  log "built $build_dir"
fi
((pack)) || exit 0

log "packing $pack_dir"
rm -rf "$pack_dir"
mkdir -p "$pack_dir/bin" "$pack_dir/lib" "$pack_dir/lib-mpi"

# The programs: every executable the build made (tests, benchmarks, gdp_app).
while IFS= read -r program; do
  cp "$program" "$pack_dir/bin/"
  strip --strip-unneeded "$pack_dir/bin/$(basename "$program")"
done < <(find "$build_dir" -path "$build_dir/CMakeFiles" -prune -o \
  -type f -perm -u+x -name 'gdp_*' ! -name '*.so*' -print | grep -v '/CMakeFiles/')

# Their libraries. glibc, libstdc++ and libgcc_s come with any machine that can run CUDA 13
# programs; OpenMPI's come with the GPU machine too (4.1.6, the same libmpi.so.40), so they go
# to a folder gpu_check.sh adds to the search path only when the machine lacks them.
is_system_lib() {
  case $1 in
    linux-vdso.so.* | ld-linux-x86-64.so.* | libc.so.* | libm.so.* | libdl.so.* | \
      libpthread.so.* | librt.so.* | libstdc++.so.* | libgcc_s.so.*) return 0 ;;
  esac
  return 1
}
is_mpi_lib() {
  case $1 in
    libmpi* | libopen-rte* | libopen-pal* | libhwloc* | libevent* | libudev* | libz.so.* | \
      libpmix* | libfabric* | libucp* | libucs* | libuct* | libnl-*) return 0 ;;
  esac
  return 1
}
for program in "$pack_dir"/bin/*; do
  ldd "$program" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }'
done | sort -u | while read -r name path; do
  is_system_lib "$name" && continue
  if is_mpi_lib "$name"; then dest=$pack_dir/lib-mpi; else dest=$pack_dir/lib; fi
  cp -L "$path" "$dest/$name"
  chmod u+w "$dest/$name"
  strip --strip-unneeded "$dest/$name" 2>/dev/null || true
done
if ldd "$pack_dir"/bin/* | grep -q 'not found'; then
  ldd "$pack_dir"/bin/* | grep 'not found' >&2
  log "unresolved libraries here: fix the build before packing"
  exit 1
fi

# Files too large to carry as they are (OpenBLAS is 36 MB, gdp_app 13 MB) travel
# xz-compressed, which keeps .gpu near 25 MB; gpu_check.sh unpacks them.
find "$pack_dir/lib" "$pack_dir/bin" -type f -size +4M -exec xz -9 -T 0 {} +

# The suite as commands, one a line, tab-separated: name, labels, environment, the regular
# expression the output must match ("-": the exit status decides; newlines and tabs in it as
# \n and \t), WILL_FAIL (0 or 1), the working directory, then the arguments (none: the
# program was not built). Paths are rewritten for the GPU machine: a program of
# this build becomes @BIN@/name, another path of the build @WORK@/path (a scratch folder
# there), a file of the source tree @SRC@/path, and a tool outside both (mpiexec, cmake,
# python3) its bare name, found on that machine's PATH.
source_dir=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build_dir/CMakeCache.txt")
(cd "$build_dir" && ctest --show-only=json-v1) | python3 -c '
import json, os, re, sys
build, src = (os.path.realpath(p) for p in sys.argv[1:3])
programs = set(sys.argv[3].split())
class NotBuilt(Exception):
    pass
def place(path):
    real = os.path.realpath(path)
    if real == build or real.startswith(build + "/"):
        name = os.path.basename(real)
        if name in programs:
            return "@BIN@/" + name
        if name.startswith("gdp_") and "." not in name:
            raise NotBuilt(name)
        return "@WORK@/" + os.path.relpath(real, build)
    if real.startswith(src + "/"):
        return "@SRC@/" + os.path.relpath(real, src)
    if os.path.isfile(real) and os.access(real, os.X_OK):
        return os.path.basename(path)
    return path
def escaped(text):
    # A line of the list is one test: control characters in a field (CTest pass expressions
    # may hold newlines) go as the escapes that Python regular expressions read back.
    return text.replace("\n", "\\n").replace("\t", "\\t")
def rewrite(arg):
    return re.sub(r"/[^\s;=\"]+", lambda m: place(m.group(0)), arg)
for test in json.load(sys.stdin)["tests"]:
    properties = {p["name"]: p["value"] for p in test.get("properties", [])}
    fields = [
        test["name"],
        ",".join(properties.get("LABELS", [])) or "-",
        ";".join(properties.get("ENVIRONMENT", [])) or "-",
        escaped("|".join(properties.get("PASS_REGULAR_EXPRESSION", []))) or "-",
        "1" if properties.get("WILL_FAIL") else "0",
        rewrite(properties.get("WORKING_DIRECTORY", build)),
    ]
    try:
        command = [rewrite(a) for a in test.get("command", [])]
    except NotBuilt:
        command = []
    print("\t".join(fields + command))
 ' "$build_dir" "$source_dir" "$(find "$pack_dir/bin" -type f -printf '%f\n' | sed 's/[.]xz$//')" >"$pack_dir/tests.tsv"

{
  echo "commit $(git -C "$source_dir" rev-parse --short HEAD)$(git -C "$source_dir" diff --quiet HEAD -- src include tests apps CMakeLists.txt cmake || echo ' (with uncommitted changes)') of $source_dir"
  echo "built $(date -u +%Y-%m-%dT%H:%MZ) on $(hostname)"
  echo "kokkos_arch $arch"
  kokkos_dir=$(sed -n 's/^Kokkos_DIR:PATH=//p' "$build_dir/CMakeCache.txt")
  devices=$(sed -n 's/^SET(Kokkos_DEVICES \(.*\))$/\1/p' "$kokkos_dir/KokkosConfigCommon.cmake")
  # The execution spaces as Kokkos names them (ExecSpace::name()), fastest first.
  spaces=
  for device in CUDA OPENMP SERIAL; do
    case ";$devices;" in *";$device;"*) ;; *) continue ;; esac
    case $device in CUDA) spaces+=" Cuda" ;; OPENMP) spaces+=" OpenMP" ;; SERIAL) spaces+=" Serial" ;; esac
  done
  echo "spaces${spaces}"
  echo "tests $(wc -l <"$pack_dir/tests.tsv")"
  (cd "$pack_dir" && du -b bin/* lib/* lib-mpi/*)
} >"$pack_dir/manifest"
log "packed $(du -sh "$pack_dir" | cut -f1) into $pack_dir ($(wc -l <"$pack_dir/tests.tsv") tests)"
