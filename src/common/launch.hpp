// SPDX-License-Identifier: Apache-2.0
// Starting a kernel, and making sure it started. Kokkos (3.4 up to 5.x) reads CUDA's launch
// status only in builds with bounds checking, so a kernel that cannot start (a block asking
// for more registers or shared memory than the device has) is skipped without a word and
// leaves its outputs unwritten. Every gdp kernel starts through launch(), which turns that
// into an exception naming the kernel. Errors while a kernel runs surface at the next fence,
// where Kokkos itself checks.
#pragma once

#include <Kokkos_Core.hpp>

#ifdef KOKKOS_ENABLE_CUDA
#include <cuda_runtime.h>
#endif

#include <stdexcept>
#include <string>
#include <type_traits>

namespace gdp::detail {

/// Throws std::runtime_error when the last kernel started on `ExecSpace` did not start.
template <class ExecSpace>
void check_launch([[maybe_unused]] const std::string& label) {
#ifdef KOKKOS_ENABLE_CUDA
  if constexpr (std::is_same<ExecSpace, Kokkos::Cuda>::value) {
    const cudaError_t status = cudaGetLastError();
    if (status != cudaSuccess)
      throw std::runtime_error("gdp: kernel " + label + " did not start on Cuda: " +
                               cudaGetErrorName(status) + ": " + cudaGetErrorString(status));
  }
#endif
}

/// Kokkos::parallel_for(label, policy, functor), then check_launch.
template <class Policy, class Functor>
void launch(const std::string& label, const Policy& policy, const Functor& functor) {
  Kokkos::parallel_for(label, policy, functor);
  check_launch<typename Policy::execution_space>(label);
}

}  // namespace gdp::detail
