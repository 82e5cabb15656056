// SPDX-License-Identifier: Apache-2.0
// What the per-chunk stage hands to the state pass: everything about a chunk that does not
// depend on the state entering it.
#pragma once

#include "chunk_layout.hpp"
#include "common/problem_shape.hpp"
#include "common/workspace_cache.hpp"

#include <Kokkos_Core.hpp>

#include <utility>

namespace gdp::detail {

template <class Real, class MemorySpace>
struct ChunkWorkspace {
  template <class T>
  using view = Kokkos::View<T, Kokkos::LayoutRight, MemorySpace>;

  /// W = Tm (beta o exp(G) o K) per position: the state's contribution to Vnew is -W S_0.
  view<Real***> w;  ///< [total_positions, H, K]
  /// U = Tm (beta o V) per position (the backward's rerun of the state pass replaces it by
  /// Vnew = U - W S_0).
  view<Real***> u;  ///< [total_positions, H, V]
  /// G: cumulative log gate since the start of the position's chunk.
  view<Real**> log_decay;  ///< [total_positions, H]
  /// Intra-chunk read-out weights of token t's query: scale (q_t . k_i) exp(G_r - G_i) for
  /// chunk positions i <= r (r = the query's position), 0 after.
  view<Real***> intra;  ///< [total_tokens, H, chunk_size]
  /// Tm = (I + A)^{-1} (unit lower triangular), row r of a chunk at its position, for the
  /// backward's products with Tm^T; null in the forward, which only solves with I + A.
  view<Real***> tm;  ///< [total_positions, H, chunk_size]

  /// Which of the views above a workspace holds (the others stay empty).
  enum class Contents {
    stage_one,             ///< W, U, G, intra: what stage 1 hands the state pass
    stage_one_and_tm,      ///< and Tm: the portable backward
    gates_and_read_outs,   ///< G and intra: the fused backward (FusedBackwardTiles has the rest)
  };

  ChunkWorkspace() = default;
  /// The views laid out by `carver` (uninitialised: stage 1 writes every element).
  ChunkWorkspace(const ProblemShape& shape, const ChunkLayout& layout,
                 WorkspaceCarver<MemorySpace>& carver, Contents contents = Contents::stage_one)
      : log_decay(carver.template view<Real**>(shape.total_positions(), shape.heads)),
        intra(carver.template view<Real***>(shape.total_tokens(), shape.heads, layout.chunk_size)) {
    if (contents == Contents::gates_and_read_outs) return;
    w = carver.template view<Real***>(shape.total_positions(), shape.heads, shape.key_dim);
    u = carver.template view<Real***>(shape.total_positions(), shape.heads, shape.value_dim);
    if (contents == Contents::stage_one_and_tm)
      tm = carver.template view<Real***>(shape.total_positions(), shape.heads, layout.chunk_size);
  }
};

/// The device copy of `layout` and, when `with_workspace`, a ChunkWorkspace for it (empty
/// otherwise), in one leased block: what a forward walk needs beyond its inputs and outputs.
template <class Real, class MemorySpace>
auto lease_walk_workspace(const ProblemShape& shape, const ChunkLayout& layout,
                         bool with_workspace) {
  return lease_workspace<MemorySpace>([&](WorkspaceCarver<MemorySpace>& carver) {
    DeviceChunkLayout<MemorySpace> device_layout(layout, carver);
    ChunkWorkspace<Real, MemorySpace> workspace;
    if (with_workspace) workspace = ChunkWorkspace<Real, MemorySpace>(shape, layout, carver);
    return std::make_pair(device_layout, workspace);
  });
}

}  // namespace gdp::detail
