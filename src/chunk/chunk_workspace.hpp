// SPDX-License-Identifier: Apache-2.0
// What the per-chunk stage hands to the state pass: everything about a chunk that does not
// depend on the state entering it.
#pragma once

#include "chunk_layout.hpp"
#include "common/problem_shape.hpp"

#include <Kokkos_Core.hpp>

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

  ChunkWorkspace(const ProblemShape& shape, const ChunkLayout& layout, bool keep_tm = false)
      : w(Kokkos::view_alloc(Kokkos::WithoutInitializing, "gdp::W"), shape.total_positions(),
          shape.heads, shape.key_dim),
        u(Kokkos::view_alloc(Kokkos::WithoutInitializing, "gdp::U"), shape.total_positions(),
          shape.heads, shape.value_dim),
        log_decay(Kokkos::view_alloc(Kokkos::WithoutInitializing, "gdp::G"),
                  shape.total_positions(), shape.heads),
        intra(Kokkos::view_alloc(Kokkos::WithoutInitializing, "gdp::intra"),
              shape.total_tokens(), shape.heads, layout.chunk_size) {
    if (keep_tm)
      tm = view<Real***>(Kokkos::view_alloc(Kokkos::WithoutInitializing, "gdp::Tm"),
                         shape.total_positions(), shape.heads, layout.chunk_size);
  }
};

}  // namespace gdp::detail
