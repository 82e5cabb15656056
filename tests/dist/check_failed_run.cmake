# A failing `mpiexec gdp_app run`, from the outside: every rank must exit with status 1 and
# print the failing rank's message, and no output file (final or partial) may be left.
#   cmake -DLAUNCHER="mpiexec -n 2 ..." -DGDP_APP=... -DRANKS=2 -DWORK_DIR=...
#         [-DMAKE_INPUT="-T 64 ..."] [-DFAIL_RANK=<rank>:<stage>] [-DRUN_ARGS="--check-outputs"]
#         [-DEXPECTED="rank 1 of 2: gdp: ..."] -P check_failed_run.cmake
# Without MAKE_INPUT the input is a missing file. With it, `gdp_app make-input` writes the input
# first with those arguments. FAIL_RANK sets the test hook GDP_TEST_FAIL_RANK
# (src/dist/test_hooks.hpp). EXPECTED is the start of what every rank must print after
# "gdp_app (rank R): error: ".
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
separate_arguments(launcher UNIX_COMMAND "${LAUNCHER}")
if(DEFINED MAKE_INPUT)
  set(input "${WORK_DIR}/input.safetensors")
  separate_arguments(make_input UNIX_COMMAND "${MAKE_INPUT}")
  execute_process(COMMAND "${GDP_APP}" make-input -o "${input}" ${make_input}
    RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "gdp_app make-input failed:\n${out}\n${err}")
  endif()
else()
  set(input "${WORK_DIR}/absent.safetensors")
endif()
if(NOT DEFINED EXPECTED)
  set(EXPECTED "rank 0 of ${RANKS}: gdp: ${input}: cannot open for reading")
endif()
if(DEFINED FAIL_RANK)
  set(ENV{GDP_TEST_FAIL_RANK} "${FAIL_RANK}")
endif()
separate_arguments(run_args UNIX_COMMAND "${RUN_ARGS}")
# Each rank reports its own exit status, so that a rank killed by another's MPI_Abort (the
# path of an error on one rank alone) shows.
execute_process(
  COMMAND ${launcher} sh -c "\"$0\" \"$@\"; echo \"gdp_app exit status $?\"" "${GDP_APP}" run
    --input "${input}" --output "${WORK_DIR}/out.safetensors" ${run_args}
  RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
unset(ENV{GDP_TEST_FAIL_RANK})
string(REGEX MATCHALL "gdp_app exit status 1" failed "${out}")
list(LENGTH failed failed_ranks)
if(NOT failed_ranks EQUAL RANKS)
  message(FATAL_ERROR "${failed_ranks} of ${RANKS} ranks exited with status 1:\n${out}\n${err}")
endif()
math(EXPR last "${RANKS} - 1")
foreach(rank RANGE ${last})
  set(expected "gdp_app (rank ${rank}): error: ${EXPECTED}")
  string(FIND "${err}" "${expected}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "rank ${rank} did not report the failure as\n  ${expected}\nstderr:\n${err}")
  endif()
endforeach()
file(GLOB left "${WORK_DIR}/*")
list(REMOVE_ITEM left "${input}")
if(left)
  message(FATAL_ERROR "files left after a failed run: ${left}")
endif()
file(REMOVE_RECURSE "${WORK_DIR}")
