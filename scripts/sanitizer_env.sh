# Sourced by scripts/sanitize.sh and scripts/fuzz.sh: the run-time options of the sanitizers.
# Every report is fatal (non-zero exit) and symbolized; leak reports skip only the suppressions
# of scripts/lsan.supp (Open MPI's and its helper libraries' own allocations, still held at
# exit by design). Options already set in the environment come last, so they win (the
# sanitizers take the last value of an option given twice).
sanitizer_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$sanitizer_dir/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
if command -v llvm-symbolizer >/dev/null; then
  export ASAN_SYMBOLIZER_PATH=${ASAN_SYMBOLIZER_PATH:-$(command -v llvm-symbolizer)}
fi
unset sanitizer_dir
