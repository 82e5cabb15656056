# shellcheck shell=bash
# Sourced by the scripts that run the packed GPU build (.gpu, from scripts/build_cuda.sh) on a
# GPU machine: makes its programs runnable there and sets the MPI environment.
# Expects: $gpu (the packed folder) and $work (a scratch folder the caller removes).
# Sets: LD_LIBRARY_PATH, the MPI variables, and $gpu_env_report (what was missing, if anything).

# Programs and libraries packed xz-compressed (too large as they are) are unpacked: programs
# in place (this is the machine's own copy of .gpu), libraries into $work/lib.
mkdir -p "$work/lib"
unxz_to() {
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"
}
for packed in "$gpu"/lib/*.xz; do
  [[ -e $packed ]] && unxz_to "$packed" "$work/lib/$(basename "$packed" .xz)"
done
for packed in "$gpu"/bin/*.xz; do
  [[ -e $packed ]] || continue
  unxz_to "$packed" "${packed%.xz}" && chmod +x "${packed%.xz}" && rm "$packed"
done
export LD_LIBRARY_PATH=$work/lib:$gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
gpu_env_report="libraries: all found"
if ldd "$gpu"/bin/* 2>/dev/null | grep -q 'not found'; then
  gpu_env_report="libraries missing here, taking the packed ones from lib-mpi: $(ldd "$gpu"/bin/* | awk '/not found/ {print $1}' | sort -u | tr '\n' ' ')"
  export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$gpu/lib-mpi
fi
still_missing=$(ldd "$gpu"/bin/* 2>&1 | grep 'not found' | sort -u | tr -s ' \t' ' ')
[[ -z $still_missing ]] || gpu_env_report+="; still missing: $still_missing"
# MPI refuses root unless told; the machine's commands run as root. No NVLink multicast.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 NCCL_NVLS_ENABLE=0
