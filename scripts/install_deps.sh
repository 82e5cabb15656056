#!/usr/bin/env bash
# Installs everything gdp needs on a fresh Debian 12 machine, offline but for Debian's archive:
#   - Debian packages: compilers, CMake, OpenMPI, GoogleTest, Google Benchmark, nlohmann-json,
#     CLI11, OpenBLAS (benchmark baseline), Doxygen (the docs.doxygen test), PyYAML (the
#     packaging.spack_recipe test reads spack.yaml), clang with its sanitizer and libFuzzer
#     runtimes, OpenMP runtime and llvm-symbolizer (scripts/fuzz.sh, scripts/sanitize.sh);
#   - Kokkos 3.4.01 and Kokkos Kernels 3.4.01 with OpenMP and Serial, built from Debian's
#     trilinos 13.2.0 source package into a git-ignored prefix (Debian's binary Kokkos is
#     Serial-only). A prefix that is already complete is reused.
#   - opt-in (--cuda or GDP_ENABLE_CUDA=1): the same Kokkos with Cuda, OpenMP and Serial, built
#     by its nvcc_wrapper from a copy patched with scripts/patches/kokkos-3.4.01-cuda13.patch
#     (CUDA 13, Hopper), and Kokkos Kernels against it, into <repo>/.deps/kokkos-3.4.01-cuda.
#
# Usage: scripts/install_deps.sh [--cuda]  (prefix: <repo>/.deps/kokkos-3.4.01-openmp)
# Environment: GDP_DEPS_DIR overrides <repo>/.deps; GDP_ENABLE_CUDA=1 is --cuda;
#   GDP_CUDA_ARCH picks the Kokkos GPU arch (default HOPPER90); CUDA_ROOT (else nvcc's place
#   on PATH, else /usr/local/cuda) picks the CUDA toolkit.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
deps_dir=${GDP_DEPS_DIR:-$repo_root/.deps}
prefix=$deps_dir/kokkos-3.4.01-openmp
trilinos_version=13.2.0-4
stamp=$prefix/.gdp-complete

log() { printf '[install_deps] %s\n' "$*"; }

enable_cuda=${GDP_ENABLE_CUDA:-0}
for arg in "$@"; do
  case $arg in
    --cuda) enable_cuda=1 ;;
    *) echo "usage: $0 [--cuda]" >&2; exit 2 ;;
  esac
done
[[ $enable_cuda == 1 ]] || enable_cuda=0
cuda_prefix=$deps_dir/kokkos-3.4.01-cuda
cuda_stamp=$cuda_prefix/.gdp-complete
cuda_patch=$repo_root/scripts/patches/kokkos-3.4.01-cuda13.patch
# The CUDA prefix is complete when its stamp names this arch and this patch.
cuda_want=
if ((enable_cuda)); then
  cuda_want="${GDP_CUDA_ARCH:-HOPPER90} $(sha256sum <"$cuda_patch" | cut -d' ' -f1)"
fi
cuda_done() {
  ((!enable_cuda)) || [[ -f $cuda_stamp && $(<"$cuda_stamp") == "$cuda_want" ]]
}

debian_packages=(
  build-essential cmake ninja-build pkg-config dpkg-dev xz-utils
  openmpi-bin libopenmpi-dev
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev libopenblas-dev
  doxygen python3-yaml
  clang libclang-rt-14-dev libomp-dev llvm
)

missing=()
for p in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [[ -f $stamp ]] && cuda_done; then
  log "Kokkos and Kokkos Kernels already in $prefix"
  ((!enable_cuda)) || log "Kokkos (CUDA) and Kokkos Kernels already in $cuda_prefix"
  exit 0
fi

# Debian's trilinos source package carries Kokkos and Kokkos Kernels 3.4.01.
src_dir=$deps_dir/src
mkdir -p "$src_dir"
orig=$(ls "$src_dir"/trilinos_13.2.0.orig.tar.* 2>/dev/null | head -n 1 || true)
if [[ -z $orig ]]; then
  list=/etc/apt/sources.list.d/gdp-deb-src.sources
  if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
    log "adding a deb-src entry ($list)"
    cat >"$list" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  fi
  apt-get update -q
  log "downloading the trilinos $trilinos_version source package"
  (cd "$src_dir" && apt-get source --download-only "trilinos=$trilinos_version")
  orig=$(ls "$src_dir"/trilinos_13.2.0.orig.tar.* | head -n 1)
fi

tree=$src_dir/trilinos-13.2.0
if [[ ! -d $tree/packages/kokkos-kernels ]]; then
  log "extracting Kokkos and Kokkos Kernels from $(basename "$orig")"
  rm -rf "$tree" && mkdir -p "$tree"
  top=$( (tar -tf "$orig" || true) | head -n 1 | cut -d/ -f1)
  tar -xf "$orig" -C "$tree" --strip-components=1 \
    "$top/packages/kokkos" "$top/packages/kokkos-kernels"
fi

jobs=$(nproc)

# build_kokkos SOURCE PREFIX BUILD_DIR LOG_NAME [CMAKE_ARGS...]
build_kokkos() {
  local src=$1 dest=$2 build=$3 name=$4
  shift 4
  cmake -S "$src" -B "$build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$dest" \
    -DCMAKE_CXX_STANDARD=17 -DBUILD_SHARED_LIBS=ON \
    -DKokkos_ENABLE_OPENMP=ON -DKokkos_ENABLE_SERIAL=ON \
    -DKokkos_ENABLE_TESTS=OFF -DKokkos_ENABLE_EXAMPLES=OFF "$@" >"$deps_dir/$name-configure.log"
  cmake --build "$build" -j "$jobs" >"$deps_dir/$name-build.log"
  cmake --install "$build" >/dev/null
}

# build_kokkos_kernels SOURCE PREFIX BUILD_DIR LOG_NAME [CMAKE_ARGS...]
build_kokkos_kernels() {
  local src=$1 dest=$2 build=$3 name=$4
  shift 4
  cmake -S "$src" -B "$build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$dest" \
    -DCMAKE_CXX_STANDARD=17 -DBUILD_SHARED_LIBS=ON -DKokkos_ROOT="$dest" \
    -DKokkosKernels_ENABLE_TESTS=OFF -DKokkosKernels_ENABLE_EXAMPLES=OFF \
    -DKokkosKernels_INST_DOUBLE=OFF -DKokkosKernels_INST_FLOAT=OFF \
    -DKokkosKernels_INST_COMPLEX_DOUBLE=OFF -DKokkosKernels_INST_COMPLEX_FLOAT=OFF \
    -DKokkosKernels_INST_ORDINAL_INT=OFF -DKokkosKernels_INST_ORDINAL_INT64_T=OFF \
    -DKokkosKernels_INST_OFFSET_INT=OFF -DKokkosKernels_INST_OFFSET_SIZE_T=OFF \
    -DKokkosKernels_INST_LAYOUTLEFT=OFF -DKokkosKernels_INST_LAYOUTRIGHT=OFF \
    -DKokkosKernels_INST_EXECSPACE_OPENMP=OFF -DKokkosKernels_INST_EXECSPACE_SERIAL=OFF \
    -DKokkosKernels_ENABLE_TPL_BLAS=OFF "$@" >"$deps_dir/$name-configure.log"
  cmake --build "$build" -j "$jobs" >"$deps_dir/$name-build.log"
  cmake --install "$build" >/dev/null
}

if [[ ! -f $stamp ]]; then
  log "building Kokkos 3.4.01 (OpenMP, Serial) into $prefix"
  build_kokkos "$tree/packages/kokkos" "$prefix" "$deps_dir/build-kokkos" kokkos

  log "building Kokkos Kernels 3.4.01 (header-only use, ETI off) into $prefix"
  build_kokkos_kernels "$tree/packages/kokkos-kernels" "$prefix" \
    "$deps_dir/build-kokkos-kernels" kokkos-kernels

  touch "$stamp"
  log "done: Kokkos_ROOT=$prefix"
fi

if ! cuda_done; then
  cuda_arch=${GDP_CUDA_ARCH:-HOPPER90}
  if [[ -z ${CUDA_ROOT:-} ]]; then
    nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
    CUDA_ROOT=$(cd "$(dirname "$nvcc")/.." && pwd)
  fi
  [[ -x $CUDA_ROOT/bin/nvcc ]] || { log "no nvcc in $CUDA_ROOT/bin: set CUDA_ROOT"; exit 1; }
  export CUDA_ROOT # nvcc_wrapper runs $CUDA_ROOT/bin/nvcc

  # Patch a copy; the pristine tree stays as Debian ships it. Anything built from another
  # patch or arch is stale.
  cuda_src=$src_dir/kokkos-3.4.01-cuda13
  build_cuda=$deps_dir/build-kokkos-cuda
  build_kk_cuda=$deps_dir/build-kokkos-kernels-cuda
  rm -rf "$cuda_prefix"
  if [[ $(cat "$cuda_src/.gdp-patch" 2>/dev/null) != "${cuda_want#* }" ]]; then
    log "patching a copy of Kokkos with $(basename "$cuda_patch") into $cuda_src"
    rm -rf "$cuda_src" "$cuda_src.tmp" "$build_cuda" "$build_kk_cuda"
    cp -a "$tree/packages/kokkos" "$cuda_src.tmp"
    patch -d "$cuda_src.tmp" -p1 -s --no-backup-if-mismatch <"$cuda_patch"
    printf '%s\n' "${cuda_want#* }" >"$cuda_src.tmp/.gdp-patch"
    mv "$cuda_src.tmp" "$cuda_src"
  fi
  if [[ $(cat "$build_cuda/.gdp-arch" 2>/dev/null) != "$cuda_arch" ]]; then
    rm -rf "$build_cuda" "$build_kk_cuda"
  fi
  mkdir -p "$build_cuda"
  printf '%s\n' "$cuda_arch" >"$build_cuda/.gdp-arch"

  log "building Kokkos 3.4.01 (Cuda $cuda_arch, OpenMP, Serial) into $cuda_prefix"
  build_kokkos "$cuda_src" "$cuda_prefix" "$build_cuda" kokkos-cuda \
    -DCMAKE_CXX_COMPILER="$cuda_src/bin/nvcc_wrapper" \
    -DKokkos_ENABLE_CUDA=ON -DKokkos_ENABLE_CUDA_LAMBDA=ON -DKokkos_ARCH_"$cuda_arch"=ON

  log "building Kokkos Kernels 3.4.01 (header-only use, ETI off) into $cuda_prefix"
  build_kokkos_kernels "$tree/packages/kokkos-kernels" "$cuda_prefix" "$build_kk_cuda" \
    kokkos-kernels-cuda -DCMAKE_CXX_COMPILER="$cuda_src/bin/nvcc_wrapper" \
    -DKokkosKernels_INST_EXECSPACE_CUDA=OFF -DKokkosKernels_INST_MEMSPACE_CUDASPACE=OFF \
    -DKokkosKernels_INST_MEMSPACE_CUDAUVMSPACE=OFF \
    -DKokkosKernels_ENABLE_TPL_CUBLAS=OFF -DKokkosKernels_ENABLE_TPL_CUSPARSE=OFF

  printf '%s\n' "$cuda_want" >"$cuda_stamp"
  log "done: Kokkos_ROOT=$cuda_prefix (CXX=$cuda_src/bin/nvcc_wrapper, CUDA_ROOT=$CUDA_ROOT)"
fi
