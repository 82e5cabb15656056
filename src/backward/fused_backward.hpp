// SPDX-License-Identifier: Apache-2.0
// The backward's stages as CUDA kernels on the tensor cores: the forward quantities from one
// walk of the fused forward, the reverse state pass with dS on chip, and the chunk gradients.
// Only Kokkos::Cuda with bfloat16 storage has them (fused_backward_cuda.hpp); elsewhere
// `available` is false and the driver runs the portable stages.
#pragma once

#include <Kokkos_Core.hpp>

namespace gdp::detail {

template <class ExecSpace, class Scalar, class Enable = void>
struct FusedBackward {
  static constexpr bool available = false;
};

}  // namespace gdp::detail

#ifdef KOKKOS_ENABLE_CUDA
#include "fused_backward_cuda.hpp"
#endif
