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
           + scratch_bytes<ExecSpace, Real>(Q, key_dim)  // queries
           + scratch_bytes<ExecSpace, Real>(C, C)        // A
           + scratch_bytes<ExecSpace, Real>(Q, C)        // Q K^T
           + scratch_bytes<ExecSpace, Real>(2, C);       // G and beta
  }

  void run() {
    const std::size_t bytes = scratch_bytes_per_team();
    scratch_level = scratch_level_for<policy_type>(bytes);
    policy_type policy(std::int64_t(layout.chunks.extent(0)) * heads, Kokkos::AUTO);
    Kokkos::parallel_for("gdp::chunk_prepare",
                         policy.set_scratch_size(scratch_level, Kokkos::PerTeam(bytes)), *this);
  }

  KOKKOS_INLINE_FUNCTION void operator()(const member_type& member) const {
    const int h = int(member.league_rank() % heads);
    const ChunkDescriptor chunk = layout.chunks(member.league_rank() / heads);
    const int L = chunk.length, num_queries = chunk.num_queries;
    const int C = layout.chunk_size, n = operands.num_householder;
    const std::int64_t p0 = chunk.first_position;

    const auto& scratch = member.team_scratch(scratch_level);
    Tile keys(scratch, C, key_dim), queries(scratch, layout.max_queries, key_dim);
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
      const Real factor = operands.key_factor(p0 + r, h);
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, key_dim), [&](const int d) {
        keys(r, d) = factor * operands.key(p0 + r, h, d);
      });
    });
    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, num_queries), [&](const int j) {
      const std::int64_t t = chunk.first_query_token + j;
      const Real factor = operands.query_factor(t, h);
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, key_dim), [&](const int d) {
        queries(j, d) = factor * operands.query(t, h, d);
      });
    });
    member.team_barrier();

    const auto rows = Kokkos::make_pair(0, L);
    const auto chunk_keys = Kokkos::subview(keys, rows, Kokkos::ALL());
    const auto A = Kokkos::subview(products, rows, rows);
    team::gemm<team::NoTranspose, team::Transpose>(member, Real(1), chunk_keys, chunk_keys, Real(0),
                                                   A);
    if (num_queries > 0)
      team::gemm<team::NoTranspose, team::Transpose>(
          member, Real(1), Kokkos::subview(queries, Kokkos::make_pair(0, num_queries), Kokkos::ALL()),
          chunk_keys, Real(0), Kokkos::subview(query_products, Kokkos::make_pair(0, num_queries), rows));

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
    // Right-hand sides beta o V and beta o exp(G) o K, solved in place below.
    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, L), [&](const int r) {
      const Real key_weight = beta(r) * compat::exp(G(r));
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, value_dim), [&](const int e) {
        workspace.u(p0 + r, h, e) = beta(r) * operands.value(p0 + r, h, e);
      });
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, key_dim), [&](const int d) {
        workspace.w(p0 + r, h, d) = key_weight * keys(r, d);
      });
    });
    member.team_barrier();

    const auto positions = Kokkos::make_pair(p0, p0 + L);
    team::solve_unit_lower(member, A, Kokkos::subview(workspace.u, positions, h, Kokkos::ALL()));
    team::solve_unit_lower(member, A, Kokkos::subview(workspace.w, positions, h, Kokkos::ALL()));
  }
};

}  // namespace gdp::detail
