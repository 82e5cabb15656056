# The Kokkos versions gdp is written for: 3.4.01 (Debian's trilinos) up to the 5.x series.
# Differences between them live in src/common/kokkos_compat.hpp.
set(GDP_KOKKOS_MIN_VERSION 3.4.1)
set(GDP_KOKKOS_MAX_MAJOR 5)

function(gdp_check_kokkos_version)
  if(Kokkos_VERSION VERSION_LESS GDP_KOKKOS_MIN_VERSION)
    message(FATAL_ERROR "gdp needs Kokkos >= ${GDP_KOKKOS_MIN_VERSION}, found ${Kokkos_VERSION}")
  endif()
  string(REGEX MATCH "^[0-9]+" major "${Kokkos_VERSION}")
  if(major GREATER GDP_KOKKOS_MAX_MAJOR)
    message(WARNING "gdp is tested with Kokkos up to ${GDP_KOKKOS_MAX_MAJOR}.x, found ${Kokkos_VERSION}")
  endif()
  if(Kokkos_VERSION VERSION_GREATER_EQUAL 5 AND CMAKE_CXX_STANDARD LESS 20)
    message(FATAL_ERROR "Kokkos ${Kokkos_VERSION} needs C++20: configure with -DCMAKE_CXX_STANDARD=20")
  endif()
  message(STATUS "gdp: Kokkos ${Kokkos_VERSION}, Kokkos Kernels ${KokkosKernels_VERSION}")
endfunction()
