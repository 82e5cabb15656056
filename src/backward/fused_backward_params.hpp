// SPDX-License-Identifier: Apache-2.0
// What the backward's CUDA kernels (reverse_state_pass_cuda.hpp, chunk_gradients_cuda.hpp)
// share: the sizes of a call, the BackwardWorkspace adjoints that the first writes and the
// second reads, as plain pointers for a kernel argument, and how they start.
#pragma once

#include "backward_workspace.hpp"
#include "chunk/chunk_layout.hpp"
#include "chunk/chunk_operands.hpp"
#include "chunk/fused_forward.hpp"

#include <Kokkos_Core.hpp>

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

namespace gdp::detail::fused_backward {

struct CallShape {
  std::int64_t positions, tokens, num_chunks;
  int heads, qk_heads, head_group, key_dim, num_householder;
  int chunk_size;    ///< the row length of the position-indexed workspace tiles
  int value_blocks;  ///< slices of the adjoints
  float scale;
};

/// The value-mixing adjoints, [value_blocks, ...] each (BackwardWorkspace says what they are).
struct AdjointSlices {
  float *solve_key_grad, *decayed_key_grad, *coupling_grad, *intra_grad, *gated_query_grad,
      *value_step_grad, *entry_decay_grad;
};

template <class Scalar, class MemorySpace>
CallShape call_shape(const ChunkOperands<Scalar, MemorySpace>& operands,
                     const DeviceChunkLayout<MemorySpace>& layout,
                     const BackwardWorkspace<float, MemorySpace>& saved) {
  CallShape shape{};
  shape.positions = std::int64_t(saved.value_step_grad.extent(1));
  shape.tokens = std::int64_t(saved.intra_grad.extent(1));
  shape.num_chunks = std::int64_t(layout.chunks.extent(0));
  shape.heads = operands.heads();
  shape.qk_heads = operands.qk_heads();
  shape.head_group = operands.head_group;
  shape.key_dim = operands.key_dim();
  shape.num_householder = operands.num_householder;
  shape.chunk_size = layout.chunk_size;
  shape.value_blocks = saved.value_blocks;
  shape.scale = operands.scale;
  return shape;
}

template <class MemorySpace>
AdjointSlices adjoint_slices(const BackwardWorkspace<float, MemorySpace>& saved) {
  return {saved.solve_key_grad.data(),   saved.decayed_key_grad.data(),
          saved.coupling_grad.data(),    saved.intra_grad.data(),
          saved.gated_query_grad.data(), saved.value_step_grad.data(),
          saved.entry_decay_grad.data()};
}

/// Starts `units` blocks of fused::threads threads of `kernel` with `bytes` of dynamic shared
/// memory (above the default 48 KB, so the limit is raised first) on Kokkos::Cuda's default
/// stream; `name` says which kernel in the errors.
template <class Params>
void launch(void (*kernel)(Params), std::int64_t units, std::size_t bytes, const Params& params,
            const char* name) {
  if (units == 0) return;
  fused::check_cuda(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)),
      (std::string("cannot give ") + name + " its shared memory").c_str());
  kernel<<<dim3(unsigned(units)), dim3(fused::threads), bytes, Kokkos::Cuda().cuda_stream()>>>(
      params);
  fused::check_cuda(cudaGetLastError(), (std::string(name) + " did not start").c_str());
}

}  // namespace gdp::detail::fused_backward
