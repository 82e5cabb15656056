# Sanitizer and fuzzing builds of gdp's own targets (docs/HARDENING.md).
#
#   GDP_SANITIZE=address,undefined   compiles and links every gdp target (library, tests,
#                                    gdp_app) with -fsanitize=<list>, frame pointers kept and
#                                    no recovery: the first report aborts the program, so a
#                                    test with a finding fails (scripts/sanitize.sh).
#                                    Compiled at GDP_SANITIZE_OPTIMIZATION (default -O1).
#   GDP_ENABLE_FUZZING=ON            (clang only) also builds the libFuzzer targets of
#                                    tests/fuzz, everything instrumented for coverage
#                                    (-fsanitize=fuzzer-no-link); GDP_SANITIZE defaults to
#                                    address,undefined there (scripts/fuzz.sh).
#
# Kokkos, Kokkos Kernels, MPI and GoogleTest are prebuilt and stay uninstrumented; the
# sanitizers see gdp's code and every Kokkos template instantiated in it.
set(GDP_SANITIZE "" CACHE STRING
    "Sanitizers for gdp's own targets, a -fsanitize= list such as address,undefined (empty: none)")
option(GDP_ENABLE_FUZZING "Build the libFuzzer targets of tests/fuzz (clang only)" OFF)
# -O1, the level the AddressSanitizer documentation recommends: reports stay accurate (stack
# frames and variables are not inlined or folded away) and the programs still run reasonably
# fast. Release's -O3 with -fsanitize=address,undefined made GCC 12 take 5 to over 25 minutes
# for single objects of gdp (docs/HARDENING.md). It is added after CMAKE_CXX_FLAGS and
# CMAKE_CXX_FLAGS_<CONFIG> on every compile line, so it overrides the build type's -O (GCC and
# clang keep the last -O); the build type's other flags (Release: -DNDEBUG) stay.
set(GDP_SANITIZE_OPTIMIZATION -O1 CACHE STRING
    "Optimisation flag of a GDP_SANITIZE build without GDP_ENABLE_FUZZING, placed after the build type's flags (empty: the build type's own level)")

function(gdp_enable_sanitizers)
  if(GDP_ENABLE_FUZZING)
    if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
      message(FATAL_ERROR "GDP_ENABLE_FUZZING needs clang (libFuzzer); CMAKE_CXX_COMPILER is "
                          "${CMAKE_CXX_COMPILER_ID}: configure with -DCMAKE_CXX_COMPILER=clang++")
    endif()
    if(GDP_SANITIZE STREQUAL "")
      set(GDP_SANITIZE address,undefined CACHE STRING "" FORCE)
    endif()
    add_compile_options(-fsanitize=fuzzer-no-link)
  endif()
  if(NOT GDP_SANITIZE STREQUAL "")
    set(flags -fsanitize=${GDP_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
    add_compile_options(${flags})
    add_link_options(${flags})
    # The fuzzing build keeps its build type's level (scripts/fuzz.sh, measured with it).
    set(level "${CMAKE_BUILD_TYPE}'s level")
    if(NOT GDP_ENABLE_FUZZING AND NOT GDP_SANITIZE_OPTIMIZATION STREQUAL "")
      add_compile_options(${GDP_SANITIZE_OPTIMIZATION})
      set(level ${GDP_SANITIZE_OPTIMIZATION})
    endif()
    message(STATUS "gdp: sanitizers ${GDP_SANITIZE} on gdp's targets, ${level}")
  endif()
endfunction()

# Called at the end of each CMakeLists.txt whose tests run gdp's programs (tests/,
# tests/fuzz/): in a sanitizer build, every test of that directory fails when its output holds
# a sanitizer report, whatever its exit status (some tests pass on a printed pattern,
# PASS_REGULAR_EXPRESSION, and ignore it). scripts/sanitize.sh also makes every report exit
# with status 86, apart from gdp_app's error status 1 that the failure tests expect
# (docs/HARDENING.md).
function(gdp_fail_tests_on_sanitizer_reports)
  get_property(tests DIRECTORY PROPERTY TESTS)
  if(NOT GDP_SANITIZE STREQUAL "" AND tests)
    set_tests_properties(${tests} PROPERTIES FAIL_REGULAR_EXPRESSION
      "ERROR: AddressSanitizer;ERROR: LeakSanitizer;runtime error: ;SUMMARY: UndefinedBehaviorSanitizer")
  endif()
endfunction()
