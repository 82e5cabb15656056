// SPDX-License-Identifier: Apache-2.0
// The fused forward: every chunk's stage-1 work and state update in one kernel that keeps the
// state on chip, on the tensor cores, walking the chunks sequentially or chunk-parallel like
// the two-stage forward (chunk-parallel, with the stage-1 tiles of every chunk computed first,
// all at once, by the same kernel). Only Kokkos::Cuda with 16-bit storage has one
// (fused_forward_cuda.hpp); elsewhere `available` is false and the driver runs the stages.
#pragma once

#include <Kokkos_Core.hpp>

namespace gdp::detail {

template <class ExecSpace, class Scalar, class Enable = void>
struct FusedForward {
  static constexpr bool available = false;
};

}  // namespace gdp::detail

#ifdef KOKKOS_ENABLE_CUDA
#include "fused_forward_cuda.hpp"
#endif
