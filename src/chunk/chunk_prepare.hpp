// SPDX-License-Identifier: Apache-2.0
// Stage 1 of the chunked forward: everything about a chunk that does not depend on the state
// entering it, for all (chunk, head) pairs in parallel (ALGORITHM.md section 4):
//
//   G      cumulative log gate inside the chunk
//   A      strictly_lower(diag(beta) (K K^T) o D),  D_ri = exp(G_r - G_i)
//   U      (I + A)^{-1} (beta o V)
//   W      (I + A)^{-1} (beta o exp(G) o K)
//   intra  scale (Q K^T) o D restricted to i <= r, one row per query in the chunk
//
// (I + A)^{-1} is never formed: U and W come from forward substitution.
#pragma once

#include "chunk_layout.hpp"
#include "chunk_operands.hpp"
#include "chunk_workspace.hpp"
#include "common/kokkos_compat.hpp"
#include "common/launch.hpp"
#include "common/team_dense.hpp"
#include "common/team_scratch.hpp"

#include <Kokkos_Core.hpp>

namespace gdp::detail {

template <class ExecSpace, class Scalar>
struct ChunkPrepare {
  using memory_space = typename ExecSpace::memory_space;
  using Real = accumulator_t<Scalar>;
  using policy_type = Kokkos::TeamPolicy<ExecSpace>;
  using member_type = typename policy_type::member_type;
  using Tile = ScratchTile<ExecSpace, Real>;

  ChunkOperands<Scalar, memory_space> operands;
  DeviceChunkLayout<memory_space> layout;
  ChunkWorkspace<Real, memory_space> workspace;
  int heads, key_dim, value_dim, scratch_level = 0;

  ChunkPrepare(const ChunkOperands<Scalar, memory_space>& ops,
               const DeviceChunkLayout<memory_space>& chunk_layout,
               const ChunkWorkspace<Real, memory_space>& ws)
      : operands(ops), layout(chunk_layout), workspace(ws), heads(ops.heads()),
        key_dim(ops.key_dim()), value_dim(ops.value_dim()) {}

  std::size_t scratch_bytes_per_team() const {
    const int C = layout.chunk_size, Q = layout.max_queries;
    return scratch_bytes<ExecSpace, Real>(C, key_dim)    // keys
           + scratch_bytes<ExecSpace, Real>(key_dim, C)  // keys, transposed
           + scratch_bytes<ExecSpace, Real>(Q, key_dim)  // queries
           + scratch_bytes<ExecSpace, Real>(C, C)        // A
           + scratch_bytes<ExecSpace, Real>(Q, C)        // Q K^T
           + scratch_bytes<ExecSpace, Real>(2, C);       // G and beta
  }

  void run() {
    const std::size_t bytes = scratch_bytes_per_team();
    scratch_level = scratch_level_for<policy_type>(bytes);
    policy_type policy(std::int64_t(layout.chunks.extent(0)) * heads, Kokkos::AUTO);
    launch("gdp::chunk_prepare", policy.set_scratch_size(scratch_level, Kokkos::PerTeam(bytes)),
           *this);
  }

  KOKKOS_INLINE_FUNCTION void operator()(const member_type& member) const {
    const int h = int(member.league_rank() % heads);
    const ChunkDescriptor chunk = layout.chunks(member.league_rank() / heads);
    const int L = chunk.length, num_queries = chunk.num_queries;
    const int C = layout.chunk_size, n = operands.num_householder;
    const std::int64_t p0 = chunk.first_position;

    const auto& scratch = member.team_scratch(scratch_level);
    Tile keys(scratch, C, key_dim), keys_transposed(scratch, key_dim, C);
    Tile queries(scratch, layout.max_queries, key_dim);
    Tile products(scratch, C, C), query_products(scratch, layout.max_queries, C);
    Tile gate_and_step(scratch, 2, C);

    Kokkos::single(Kokkos::PerTeam(member), [&]() {
      Real cumulative = 0;
      for (int r = 0; r < L; ++r) {
        cumulative += operands.log_gate(p0 + r, h);
        gate_and_step(0, r) = cumulative;
        gate_and_step(1, r) = operands.step(p0 + r, h);
        workspace.log_decay(p0 + r, h) = cumulative;
      }
    });
    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, L), [&](const int r) {
      team::scaled_row(member, &keys(r, 0), operands.key_row(p0 + r, h), key_dim,
                       operands.key_factor(p0 + r, h));
    });
    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, num_queries), [&](const int j) {
      const std::int64_t t = chunk.first_query_token + j;
      team::scaled_row(member, &queries(j, 0), operands.query_row(t, h), key_dim,
                       operands.query_factor(t, h));
    });
    member.team_barrier();
    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, key_dim), [&](const int d) {
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, L),
                           [&](const int r) { keys_transposed(d, r) = keys(r, d); });
    });

    const auto rows = Kokkos::make_pair(0, L);
    const auto chunk_keys_transposed = Kokkos::subview(keys_transposed, Kokkos::ALL(), rows);
    const auto A = Kokkos::subview(products, rows, rows);
    team::gemm<ExecSpace, team::NoTranspose>(member, Real(1),
                                             Kokkos::subview(keys, rows, Kokkos::ALL()),
                                             chunk_keys_transposed, Real(0), A);
    if (num_queries > 0) {
      const auto query_rows = Kokkos::make_pair(0, num_queries);
      team::gemm<ExecSpace, team::NoTranspose>(
          member, Real(1), Kokkos::subview(queries, query_rows, Kokkos::ALL()),
          chunk_keys_transposed, Real(0), Kokkos::subview(query_products, query_rows, rows));
    }

    // Gate and mask the products. exp(G_r - G_i) is evaluated only for i <= r: above the
    // diagonal the exponent is positive and may overflow, and inf * 0 would be NaN.
    const auto G = Kokkos::subview(gate_and_step, 0, Kokkos::ALL());
    const auto beta = Kokkos::subview(gate_and_step, 1, Kokkos::ALL());
    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, L), [&](const int r) {
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, L), [&](const int i) {
        A(r, i) = i < r ? beta(r) * compat::exp(G(r) - G(i)) * A(r, i) : Real(0);
      });
    });
    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, num_queries), [&](const int j) {
      const int r = chunk.first_query_local + j * n;
      const std::int64_t t = chunk.first_query_token + j;
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, C), [&](const int i) {
        workspace.intra(t, h, i) =
            i <= r ? operands.scale * compat::exp(G(r) - G(i)) * query_products(j, i) : Real(0);
      });
    });
    // Right-hand sides beta o V and beta o exp(G) o K, solved in place below; when the
    // backward keeps Tm, also the identity, whose solution is Tm.
    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, L), [&](const int r) {
      team::scaled_row(member, &workspace.u(p0 + r, h, 0), &operands.v(p0 + r, h, 0), value_dim,
                       beta(r));
      team::scaled_row(member, &workspace.w(p0 + r, h, 0), &keys(r, 0), key_dim,
                       beta(r) * compat::exp(G(r)));
      if (workspace.tm.data())
        Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, L),
                             [&](const int i) { workspace.tm(p0 + r, h, i) = Real(i == r); });
    });
    member.team_barrier();

    const auto positions = Kokkos::make_pair(p0, p0 + L);
    team::solve_unit_lower<ExecSpace>(member, A, Kokkos::subview(workspace.u, positions, h, Kokkos::ALL()));
    team::solve_unit_lower<ExecSpace>(member, A, Kokkos::subview(workspace.w, positions, h, Kokkos::ALL()));
    if (workspace.tm.data())
      team::solve_unit_lower<ExecSpace>(member, A, Kokkos::subview(workspace.tm, positions, h, rows));
  }
};

}  // namespace gdp::detail
