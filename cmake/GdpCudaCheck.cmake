# SPDX-License-Identifier: Apache-2.0
# The CUDA build is opt-in and must match the Kokkos it is built against: every source is
# compiled for the devices Kokkos was built with, so a CUDA Kokkos without GDP_ENABLE_CUDA
# (or the reverse) would silently build a different library than the one asked for.
function(gdp_check_cuda)
  kokkos_check(DEVICES CUDA RETURN_VALUE kokkos_has_cuda)
  if(GDP_ENABLE_CUDA AND NOT kokkos_has_cuda)
    message(FATAL_ERROR "GDP_ENABLE_CUDA=ON but Kokkos at ${Kokkos_DIR} has no CUDA "
                        "(devices: ${Kokkos_DEVICES}); build one with scripts/install_deps.sh --cuda")
  endif()
  if(NOT GDP_ENABLE_CUDA AND kokkos_has_cuda)
    message(FATAL_ERROR "Kokkos at ${Kokkos_DIR} was built with CUDA: configure with "
                        "-DGDP_ENABLE_CUDA=ON, or point CMAKE_PREFIX_PATH at a host-only Kokkos")
  endif()
  if(NOT GDP_ENABLE_CUDA)
    return()
  endif()
  kokkos_check(ARCH ${GDP_CUDA_ARCH} RETURN_VALUE kokkos_has_arch)
  if(NOT kokkos_has_arch)
    message(FATAL_ERROR "GDP_CUDA_ARCH=${GDP_CUDA_ARCH} but Kokkos was built for ${Kokkos_ARCH}; "
                        "rebuild it with GDP_CUDA_ARCH=${GDP_CUDA_ARCH} scripts/install_deps.sh --cuda")
  endif()
  message(STATUS "gdp: CUDA build for Kokkos arch ${GDP_CUDA_ARCH}")
endfunction()
