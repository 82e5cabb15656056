// SPDX-License-Identifier: Apache-2.0
// What the backward's CUDA kernels (reverse_state_pass_cuda.hpp, chunk_gradients_cuda.hpp)
// share: the sizes of a call, the BackwardWorkspace adjoints that the first writes and the
// second reads (beside the 16-bit dBv and dS), as plain pointers for a kernel argument, and two
// warp reductions. They start through fused::launch_kernel, as the fused forward does.
#pragma once

#include "backward_workspace.hpp"
#include "chunk/chunk_layout.hpp"
#include "chunk/chunk_operands.hpp"

#include <cstdint>

namespace gdp::detail::fused_backward {

struct CallShape {
  std::int64_t positions, tokens, num_chunks;
  int heads, qk_heads, head_group, key_dim, num_householder;
  int chunk_size;    ///< the row length of the position-indexed workspace tiles
  int value_blocks;  ///< slices of the adjoints
  float scale;
};

/// The scalar adjoints that mix the value columns, [value_blocks, ...] each
/// (BackwardWorkspace says what they are). The others the chunk gradients kernel multiplies
/// from the reverse pass's 16-bit dBv and dS.
struct AdjointSlices {
  float *value_step_grad, *entry_decay_grad;
};

template <class Scalar, class MemorySpace>
CallShape call_shape(const ChunkOperands<Scalar, MemorySpace>& operands,
                     const DeviceChunkLayout<MemorySpace>& layout,
                     const BackwardWorkspace<float, MemorySpace>& saved) {
  CallShape shape{};
  shape.positions = std::int64_t(operands.key_rows.extent(0));
  shape.tokens = std::int64_t(operands.query_rows.extent(0));
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
  return {saved.value_step_grad.data(), saved.entry_decay_grad.data()};
}

/// Sum of x over the 32 lanes of the warp, in every lane.
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

/// Stores this warp's partial sums of rows band_row + i, i < 16, over the columns it holds of
/// a 16-row band of mma accumulators (tensor_core::warp_for_each's layout: a lane holds rows g
/// and g + 8, g = lane / 4; partial[0] and partial[1] are its sums of them), the four lanes
/// of a row added first, at quarter_sums[quarter * Rows + row]: the warp holding quarter
/// `quarter` of the band's columns is the one writer of its entries. After a barrier,
/// band_row_sum() adds the four quarters in a fixed order. (Atomics in shared memory added
/// them in the order the warps arrived, and the last bits could vary from run to run.)
template <int Rows>
__device__ __forceinline__ void warp_store_band_row_sums(float (&partial)[2], int band_row,
                                                         int quarter, float* quarter_sums) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    partial[half] += __shfl_xor_sync(0xffffffffu, partial[half], 1);
    partial[half] += __shfl_xor_sync(0xffffffffu, partial[half], 2);
    if (lane % 4 == 0) quarter_sums[quarter * Rows + band_row + lane / 4 + 8 * half] = partial[half];
  }
}

/// Row r's sum over the four quarters warp_store_band_row_sums<Rows> stored.
template <int Rows>
__device__ __forceinline__ float band_row_sum(const float* quarter_sums, int r) {
  return (quarter_sums[r] + quarter_sums[Rows + r]) +
         (quarter_sums[2 * Rows + r] + quarter_sums[3 * Rows + r]);
}

}  // namespace gdp::detail::fused_backward
