// SPDX-License-Identifier: Apache-2.0
// Stage 3 of the backward: the state pass run in reverse over each sequence's chunks, carrying
// dS, the gradient with respect to the state leaving the current chunk (docs/BACKWARD.md).
// Per chunk, with S_0 its entering state, Kd_i = exp(G_L - G_i) k_i the decayed keys and
// Qg_j = scale exp(G_r) q_j the gated queries of the forward state pass:
//
//   dVnew = intra^T dO + Kd dS
//   dS   <- exp(G_L) dS + Qg^T dO - W^T dVnew        (now: leaving the previous chunk)
//   dBv   = Tm^T dVnew,   dv = beta o dBv
//
// These act on every value column on its own, so one team owns one (sequence, head, block of
// value columns), like the forward state pass. Chunk-parallel (backward_impl.hpp), a team
// walks one segment of a sequence instead: first from a zero dS writing nothing but the dS it
// leaves (offsets_only: the segment's E of segment_map.hpp's reverse scan), then, once the
// scan has given the dS entering every segment, from that dS writing every gradient. The
// chunk's other adjoints are sums over all value columns; each team writes its block's share
// into its own slice of the BackwardWorkspace and ChunkGradients adds the slices:
//
//   dBk = -dBv S_0^T   dKd = Vnew dS^T   dA = -dBv Vnew^T   d intra = dO Vnew^T   dQg = dO S_0^T
//   <dS, S_0>          sum_e dBv_e v_e
#pragma once

#include "backward_workspace.hpp"
#include "chunk/chunk_layout.hpp"
#include "chunk/chunk_operands.hpp"
#include "chunk/chunk_workspace.hpp"
#include "chunk/segment_map.hpp"
#include "common/kokkos_compat.hpp"
#include "common/launch.hpp"
#include "common/team_dense.hpp"
#include "common/team_scratch.hpp"

#include <Kokkos_Core.hpp>

namespace gdp::detail {

template <class ExecSpace, class Scalar>
struct ReverseStatePass {
  using memory_space = typename ExecSpace::memory_space;
  using Real = accumulator_t<Scalar>;
  using policy_type = Kokkos::TeamPolicy<ExecSpace>;
  using member_type = typename policy_type::member_type;
  using Tile = ScratchTile<ExecSpace, Real>;
  template <class T>
  using unmanaged_view =
      Kokkos::View<T, Kokkos::LayoutRight, memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;

  ChunkOperands<Scalar, memory_space> operands;
  DeviceChunkLayout<memory_space> layout;
  /// The forward workspace after the rerun state pass: u holds Vnew, tm holds Tm.
  ChunkWorkspace<Real, memory_space> workspace;
  BackwardWorkspace<Real, memory_space> saved;
  unmanaged_view<const Scalar***> output_grad;  ///< do [total_tokens, H, V]
  /// The segments the teams walk (one a sequence in the sequential pass); the two state
  /// gradients below are indexed by segment.
  DeviceSegmentLayout<memory_space> segments;
  /// dS entering each walk (at its last chunk's end) [walks, H, K, V], null: zero. dht in the
  /// sequential pass.
  unmanaged_view<const Real****> entering_grad;
  unmanaged_view<Scalar***> value_grad;  ///< dv [total_positions, H, V]
  /// dS each walk leaves (at its first chunk's start) [walks, H, K, V], or null. dh0 in the
  /// sequential pass.
  unmanaged_view<Real****> leaving_grad;
  /// Walk from entering_grad to leaving_grad without writing any gradient or adjoint.
  bool offsets_only = false;
  int heads, key_dim, value_dim, value_block, scratch_level = 0;

  ReverseStatePass(const ChunkOperands<Scalar, memory_space>& ops,
                   const DeviceChunkLayout<memory_space>& chunk_layout,
                   const ChunkWorkspace<Real, memory_space>& ws,
                   const BackwardWorkspace<Real, memory_space>& backward_ws,
                   unmanaged_view<const Scalar***> d_o,
                   const DeviceSegmentLayout<memory_space>& walks,
                   unmanaged_view<const Real****> entering, unmanaged_view<Scalar***> dv,
                   unmanaged_view<Real****> leaving, int value_block_size)
      : operands(ops),
        layout(chunk_layout),
        workspace(ws),
        saved(backward_ws),
        output_grad(d_o),
        segments(walks),
        entering_grad(entering),
        value_grad(dv),
        leaving_grad(leaving),
        heads(ops.heads()),
        key_dim(ops.key_dim()),
        value_dim(ops.value_dim()),
        value_block(value_block_size) {}

  std::size_t scratch_bytes_per_team() const {
    const int C = layout.chunk_size, Q = layout.max_queries;
    return scratch_bytes<ExecSpace, Real>(key_dim, value_block)    // dS
           + scratch_bytes<ExecSpace, Real>(value_block, key_dim)  // dS^T
           + scratch_bytes<ExecSpace, Real>(C, value_block)        // dVnew
           + scratch_bytes<ExecSpace, Real>(C, value_block)        // dBv
           + scratch_bytes<ExecSpace, Real>(value_block, C)        // Vnew^T
           + scratch_bytes<ExecSpace, Real>(C, key_dim)            // decayed keys
           + scratch_bytes<ExecSpace, Real>(Q, key_dim)            // gated queries
           + scratch_bytes<ExecSpace, Real>(Q, value_block);       // dO
  }

  void run() {
    const std::size_t bytes = scratch_bytes_per_team();
    scratch_level = scratch_level_for<policy_type>(bytes);
    policy_type policy(segments.count() * heads * saved.value_blocks, Kokkos::AUTO);
    launch("gdp::reverse_state_pass",
           policy.set_scratch_size(scratch_level, Kokkos::PerTeam(bytes)), *this);
  }

  KOKKOS_INLINE_FUNCTION void operator()(const member_type& member) const {
    const int value_blocks = saved.value_blocks;
    const std::int64_t unit = member.league_rank();
    const int block = int(unit % value_blocks);
    const int h = int((unit / value_blocks) % heads);
    const std::int64_t walk = unit / (std::int64_t(value_blocks) * heads);
    const SegmentDescriptor segment = segments.segments(walk);
    const int e0 = block * value_block;
    const int width = value_dim - e0 < value_block ? value_dim - e0 : value_block;
    const int C = layout.chunk_size, n = operands.num_householder;

    const auto& scratch = member.team_scratch(scratch_level);
    Tile state_grad_tile(scratch, key_dim, value_block);
    Tile state_grad_transposed_tile(scratch, value_block, key_dim);
    Tile new_value_grad_tile(scratch, C, value_block),
        value_solve_grad_tile(scratch, C, value_block);
    Tile new_values_transposed_tile(scratch, value_block, C);
    Tile decayed_keys(scratch, C, key_dim), gated_queries(scratch, layout.max_queries, key_dim);
    Tile output_grad_tile(scratch, layout.max_queries, value_block);
    const auto columns = Kokkos::make_pair(0, width);
    const auto block_columns = Kokkos::make_pair(e0, e0 + width);
    const auto dS = Kokkos::subview(state_grad_tile, Kokkos::ALL(), columns);
    const auto dS_transposed = Kokkos::subview(state_grad_transposed_tile, columns, Kokkos::ALL());

    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, key_dim), [&](const int d) {
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, width), [&](const int e) {
        dS(d, e) = entering_grad.data() ? entering_grad(walk, h, d, e0 + e) : Real(0);
      });
    });
    member.team_barrier();

    for (std::int64_t c = segment.end_chunk - 1; c >= segment.first_chunk; --c) {
      const ChunkDescriptor chunk = layout.chunks(c);
      const int L = chunk.length, num_queries = chunk.num_queries;
      const std::int64_t p0 = chunk.first_position, t0 = chunk.first_query_token;
      const Real chunk_decay = workspace.log_decay(p0 + L - 1, h);

      Kokkos::parallel_for(Kokkos::TeamThreadRange(member, L), [&](const int r) {
        const Real G = workspace.log_decay(p0 + r, h);
        team::scaled_row(member, &decayed_keys(r, 0), operands.key_row(p0 + r, h), key_dim,
                         compat::exp(chunk_decay - G) * operands.key_factor(p0 + r, h));
      });
      // The transposed copies store contiguously and gather their reads. Only the gradients
      // read them.
      if (!offsets_only)
        Kokkos::parallel_for(Kokkos::TeamThreadRange(member, width), [&](const int e) {
          Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, L), [&](const int r) {
            new_values_transposed_tile(e, r) = workspace.u(p0 + r, h, e0 + e);
          });
          Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, key_dim),
                               [&](const int d) { dS_transposed(e, d) = dS(d, e); });
        });
      Kokkos::parallel_for(Kokkos::TeamThreadRange(member, num_queries), [&](const int j) {
        const std::int64_t t = t0 + j;
        const Real G = workspace.log_decay(p0 + chunk.first_query_local + j * n, h);
        team::scaled_row(member, &gated_queries(j, 0), operands.query_row(t, h), key_dim,
                         operands.scale * compat::exp(G) * operands.query_factor(t, h));
        team::scaled_row(member, &output_grad_tile(j, 0), &output_grad(t, h, e0), width, Real(1));
      });
      member.team_barrier();

      const auto rows = Kokkos::make_pair(0, L);
      const auto positions = Kokkos::make_pair(p0, p0 + L);
      const auto query_rows = Kokkos::make_pair(0, num_queries);
      const auto tokens = Kokkos::make_pair(t0, t0 + num_queries);
      const auto dO = Kokkos::subview(output_grad_tile, query_rows, columns);
      const auto new_values_transposed = Kokkos::subview(new_values_transposed_tile, columns, rows);
      const auto dVnew = Kokkos::subview(new_value_grad_tile, rows, columns);
      const auto dBv = Kokkos::subview(value_solve_grad_tile, rows, columns);
      const auto entry_state_transposed =
          Kokkos::subview(saved.entry_states_transposed, c, h, block_columns, Kokkos::ALL());

      // dVnew = intra^T dO + Kd dS
      if (num_queries > 0)
        team::gemm<ExecSpace, team::Transpose>(
            member, Real(1), Kokkos::subview(workspace.intra, tokens, h, rows), dO, Real(0), dVnew);
      team::gemm<ExecSpace, team::NoTranspose>(member, Real(1),
                                               Kokkos::subview(decayed_keys, rows, Kokkos::ALL()),
                                               dS, Real(num_queries > 0 ? 1 : 0), dVnew);
      if (!offsets_only) {
        // dKd = Vnew dS^T and <dS, S_0>, both needing dS before the update below.
        team::gemm<ExecSpace, team::Transpose>(
            member, Real(1), new_values_transposed, dS_transposed, Real(0),
            Kokkos::subview(saved.decayed_key_grad, block, positions, h, Kokkos::ALL()));
        Real entry_inner = 0;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(member, width),
            [&](const int e, Real& sum) {
              Real row = 0;
              Kokkos::parallel_reduce(
                  Kokkos::ThreadVectorRange(member, key_dim),
                  [&](const int d, Real& partial) {
                    partial += dS_transposed(e, d) * entry_state_transposed(e, d);
                  },
                  row);
              sum += row;
            },
            entry_inner);
        Kokkos::single(Kokkos::PerTeam(member),
                       [&]() { saved.entry_decay_grad(block, c, h) = entry_inner; });
      }

      // dS <- exp(G_L) dS + Qg^T dO - W^T dVnew
      team::gemm<ExecSpace, team::Transpose>(
          member, Real(-1), Kokkos::subview(workspace.w, positions, h, Kokkos::ALL()), dVnew,
          compat::exp(chunk_decay), dS);
      if (num_queries > 0)
        team::gemm<ExecSpace, team::Transpose>(
            member, Real(1), Kokkos::subview(gated_queries, query_rows, Kokkos::ALL()), dO, Real(1),
            dS);
      if (offsets_only) continue;

      // dBv = Tm^T dVnew; dv = beta o dBv and the beta o V part of dbeta.
      team::gemm<ExecSpace, team::Transpose>(
          member, Real(1), Kokkos::subview(workspace.tm, positions, h, rows), dVnew, Real(0), dBv);
      Kokkos::parallel_for(Kokkos::TeamThreadRange(member, L), [&](const int r) {
        const Real beta = operands.step(p0 + r, h);
        Real along_values = 0;
        Kokkos::parallel_reduce(
            Kokkos::ThreadVectorRange(member, width),
            [&](const int e, Real& sum) {
              value_grad(p0 + r, h, e0 + e) = narrow<Scalar>(beta * dBv(r, e));
              sum += dBv(r, e) * operands.value(p0 + r, h, e0 + e);
            },
            along_values);
        Kokkos::single(Kokkos::PerThread(member),
                       [&]() { saved.value_step_grad(block, p0 + r, h) = along_values; });
      });

      // This block's share of the adjoints that mix the value columns.
      team::gemm<ExecSpace, team::NoTranspose>(
          member, Real(-1), dBv, entry_state_transposed, Real(0),
          Kokkos::subview(saved.solve_key_grad, block, positions, h, Kokkos::ALL()));
      team::gemm<ExecSpace, team::NoTranspose>(
          member, Real(-1), dBv, new_values_transposed, Real(0),
          Kokkos::subview(saved.coupling_grad, block, positions, h, rows));
      if (num_queries > 0) {
        team::gemm<ExecSpace, team::NoTranspose>(
            member, Real(1), dO, new_values_transposed, Real(0),
            Kokkos::subview(saved.intra_grad, block, tokens, h, rows));
        team::gemm<ExecSpace, team::NoTranspose>(
            member, Real(1), dO, entry_state_transposed, Real(0),
            Kokkos::subview(saved.gated_query_grad, block, tokens, h, Kokkos::ALL()));
      }
    }

    if (leaving_grad.data()) {
      Kokkos::parallel_for(Kokkos::TeamThreadRange(member, key_dim), [&](const int d) {
        Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, width),
                             [&](const int e) { leaving_grad(walk, h, d, e0 + e) = dS(d, e); });
      });
    }
  }
};

}  // namespace gdp::detail
