# A failing `mpiexec gdp_app run`, from the outside: every rank must exit non-zero and print
# the failing rank's message, and no output file (final or partial) may be left.
#   cmake -DLAUNCHER="mpiexec -n 2 ..." -DGDP_APP=... -DRANKS=2 -DWORK_DIR=... -P check_failed_run.cmake
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
separate_arguments(launcher UNIX_COMMAND "${LAUNCHER}")
set(input "${WORK_DIR}/absent.safetensors")
execute_process(
  COMMAND ${launcher} "${GDP_APP}" run --input "${input}" --output "${WORK_DIR}/out.safetensors"
  RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(status EQUAL 0)
  message(FATAL_ERROR "gdp_app run succeeded on a missing input:\n${out}\n${err}")
endif()
math(EXPR last "${RANKS} - 1")
foreach(rank RANGE ${last})
  set(expected "gdp_app (rank ${rank}): error: rank 0 of ${RANKS}: gdp: ${input}: cannot open for reading")
  string(FIND "${err}" "${expected}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "rank ${rank} did not report the failure as\n  ${expected}\nstderr:\n${err}")
  endif()
endforeach()
file(GLOB left "${WORK_DIR}/*")
if(left)
  message(FATAL_ERROR "files left after a failed run: ${left}")
endif()
file(REMOVE_RECURSE "${WORK_DIR}")
