// SPDX-License-Identifier: Apache-2.0
// What the backward's stages hand to each other beyond the forward's per-chunk workspace: the
// chunk-entry states (rerun forward state pass -> reverse pass) and the per-chunk adjoints
// that mix all value columns (reverse pass -> chunk gradients).
#pragma once

#include "chunk/chunk_layout.hpp"
#include "common/problem_shape.hpp"
#include "common/workspace_cache.hpp"

#include <Kokkos_Core.hpp>

#include <string>

namespace gdp::detail {

/// Allocation properties of a view whose every element is written before it is read (the
/// tests poison every allocation to check that), so it is not zeroed first.
inline auto uninitialized(const char* label) {
  return Kokkos::view_alloc(Kokkos::WithoutInitializing, std::string(label));
}

template <class Real, class MemorySpace>
struct BackwardWorkspace {
  template <class T>
  using view = Kokkos::View<T, Kokkos::LayoutRight, MemorySpace>;

  /// S_0^T, the state entering each chunk, transposed: every product that reads it wants it
  /// as a right operand with its value index first. One K x V state per chunk and head. Not
  /// laid out here: the portable backward sets it to the SavedForwardState's copy, which
  /// outlives the call (backward_impl.hpp); the fused one keeps S_0 in 16 bits instead.
  view<Real****> entry_states_transposed;  ///< [num_chunks, H, V, K]

  // The adjoints below are sums over the value columns. The reverse pass splits V into
  // value_blocks blocks and each block writes its share into its own slice (leading index);
  // ChunkGradients adds the slices. With dBv = Tm^T dVnew (ALGORITHM.md section 4 notation):
  int value_blocks = 1;
  /// dBk = -dBv S_0^T, the adjoint of Bk = beta o exp(G) o K.  [blocks, P, H, K]
  view<Real****> solve_key_grad;
  /// dKd = Vnew dS_end^T, the adjoint of the decayed keys Kd_i = exp(G_L - G_i) k_i.
  /// [blocks, P, H, K]
  view<Real****> decayed_key_grad;
  /// dA = -dBv Vnew^T (its strictly lower part is used).  [blocks, P, H, C]
  view<Real****> coupling_grad;
  /// d intra = dO Vnew^T (its part i <= r is used).  [blocks, T, H, C]
  view<Real****> intra_grad;
  /// dQg = dO S_0^T, the adjoint of the gated queries Qg_j = scale exp(G_r) q_j.
  /// [blocks, T, H, K]
  view<Real****> gated_query_grad;
  /// sum_e dBv_e v_e: the beta o V part of dbeta.  [blocks, P, H]
  view<Real***> value_step_grad;
  /// <dS_end, S_0>: the adjoint of exp(G_L) in exp(G_L) S_0.  [blocks, num_chunks, H]
  view<Real***> entry_decay_grad;

  BackwardWorkspace() = default;
  /// The adjoints laid out by `carver`, uninitialised: every element is written before it is
  /// read (the tests poison every allocation to check that).
  BackwardWorkspace(const ProblemShape& shape, const ChunkLayout& layout, int blocks,
                    WorkspaceCarver<MemorySpace>& carver)
      : value_blocks(blocks),
        solve_key_grad(carver.template view<Real****>(blocks, shape.total_positions(),
                                                      shape.heads, shape.key_dim)),
        decayed_key_grad(carver.template view<Real****>(blocks, shape.total_positions(),
                                                        shape.heads, shape.key_dim)),
        coupling_grad(carver.template view<Real****>(blocks, shape.total_positions(),
                                                     shape.heads, layout.chunk_size)),
        intra_grad(carver.template view<Real****>(blocks, shape.total_tokens(), shape.heads,
                                                  layout.chunk_size)),
        gated_query_grad(carver.template view<Real****>(blocks, shape.total_tokens(),
                                                        shape.heads, shape.key_dim)),
        value_step_grad(
            carver.template view<Real***>(blocks, shape.total_positions(), shape.heads)),
        entry_decay_grad(
            carver.template view<Real***>(blocks, layout.chunks.size(), shape.heads)) {}
};

}  // namespace gdp::detail
