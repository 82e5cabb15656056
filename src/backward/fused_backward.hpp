// SPDX-License-Identifier: Apache-2.0
// The backward's stages as CUDA kernels on the tensor cores: the forward quantities from one
// walk of the fused forward, the reverse state pass with dS on chip, and the chunk gradients.
// Only Kokkos::Cuda with bfloat16 storage has them (fused_backward_cuda.hpp); elsewhere
// `available` is false and the driver runs the portable stages.
#pragma once

#include "chunk/chunk_layout.hpp"
#include "common/problem_shape.hpp"
#include "common/workspace_cache.hpp"

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>

namespace gdp::detail {

/// Whether the chunk gradients kernel's 32-bit offsets reach every element it reads: it
/// addresses a chunk's rows of the per-row ([positions, H, K]) and per-pair ([positions, H,
/// chunk_size]) tensors from the chunk's first element, up to chunk_size rows of
/// H max(K, chunk_size) elements. Wider problems take the portable stages.
inline bool chunk_offsets_fit_32_bits(const ProblemShape& shape, std::int64_t chunk_size) {
  const std::int64_t widest_row = shape.heads * std::max(shape.key_dim, chunk_size);
  return chunk_size * widest_row <= std::numeric_limits<std::int32_t>::max();
}

/// What the fused backward's walk of the fused forward leaves for its reverse pass in the
/// 16-bit storage type, beside G and the read-out weights (ChunkWorkspace, float): the
/// operands that pass only multiplies on the tensor cores, as the walk multiplied them. Half
/// the bytes of float copies, and copied into shared memory asynchronously.
template <class Scalar, class MemorySpace>
struct FusedBackwardTiles {
  template <class T>
  using view = Kokkos::View<T, Kokkos::LayoutRight, MemorySpace>;

  view<Scalar***> negated_w;     ///< -W [total_positions, H, K]
  view<Scalar***> tm;            ///< Tm [total_positions, H, chunk_size], zero right of the diagonal
  view<Scalar***> new_values;    ///< Vnew [total_positions, H, V]
  view<Scalar****> entry_states;  ///< S_0 [chunks, H, K, V]

  FusedBackwardTiles() = default;
  FusedBackwardTiles(const ProblemShape& shape, const ChunkLayout& layout,
                     WorkspaceCarver<MemorySpace>& carver)
      : negated_w(carver.template view<Scalar***>(shape.total_positions(), shape.heads,
                                                  shape.key_dim)),
        tm(carver.template view<Scalar***>(shape.total_positions(), shape.heads,
                                           layout.chunk_size)),
        new_values(carver.template view<Scalar***>(shape.total_positions(), shape.heads,
                                                   shape.value_dim)),
        entry_states(carver.template view<Scalar****>(layout.chunks.size(), shape.heads,
                                                      shape.key_dim, shape.value_dim)) {}
};

template <class ExecSpace, class Scalar, class Enable = void>
struct FusedBackward {
  static constexpr bool available = false;
};

}  // namespace gdp::detail

#ifdef KOKKOS_ENABLE_CUDA
#include "fused_backward_cuda.hpp"
#endif
