// SPDX-License-Identifier: Apache-2.0
// What the backward's stages hand to each other beyond the forward's per-chunk workspace: the
// chunk-entry states (rerun forward state pass -> reverse pass) and the per-chunk adjoints
// that mix all value columns (reverse pass -> chunk gradients).
#pragma once

#include "chunk/chunk_layout.hpp"
#include "common/problem_shape.hpp"
#include "common/workspace_cache.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>
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

  /// Where dBk, dKd, dA, d intra and dQg are computed (products of dBv, dS or dO, ALGORITHM.md
  /// section 4): the portable reverse pass leaves them in the slices below for ChunkGradients;
  /// the fused chunk gradients kernel (chunk_gradients_cuda.hpp) multiplies them itself from
  /// the fused reverse pass's 16-bit dBv and dS, so they need no slices.
  enum class MixingProducts { in_reverse_pass, in_chunk_gradients };

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
  /// read (the tests poison every allocation to check that). With the mixing products in the
  /// chunk gradients, decayed_key_grad, coupling_grad and intra_grad are empty, and
  /// solve_key_grad and gated_query_grad hold one slice where the value heads are grouped (the
  /// storage of dk's and dq's float partials, backward_impl.hpp), else none.
  BackwardWorkspace(const ProblemShape& shape, const ChunkLayout& layout, int blocks,
                    MixingProducts mixing, WorkspaceCarver<MemorySpace>& carver)
      : value_blocks(blocks) {
    const bool in_reverse_pass = mixing == MixingProducts::in_reverse_pass;
    const int partial_slices = shape.qk_heads != shape.heads ? 1 : 0;
    const int mixing_slices = in_reverse_pass ? blocks : partial_slices;
    const int reverse_pass_slices = in_reverse_pass ? blocks : 0;
    const std::int64_t P = shape.total_positions(), T = shape.total_tokens(), H = shape.heads;
    solve_key_grad = carver.template view<Real****>(mixing_slices, P, H, shape.key_dim);
    decayed_key_grad = carver.template view<Real****>(reverse_pass_slices, P, H, shape.key_dim);
    coupling_grad = carver.template view<Real****>(reverse_pass_slices, P, H, layout.chunk_size);
    intra_grad = carver.template view<Real****>(reverse_pass_slices, T, H, layout.chunk_size);
    gated_query_grad = carver.template view<Real****>(mixing_slices, T, H, shape.key_dim);
    value_step_grad = carver.template view<Real***>(blocks, P, H);
    entry_decay_grad = carver.template view<Real***>(blocks, layout.chunks.size(), H);
  }
};

}  // namespace gdp::detail
