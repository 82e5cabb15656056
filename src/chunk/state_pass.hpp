// SPDX-License-Identifier: Apache-2.0
// Stage 2 of the chunked forward: the sequential pass over each sequence's chunks that
// carries the state and produces the outputs (ALGORITHM.md section 4):
//
//   Vnew  = U - W S_0
//   O_r   = scale exp(G_r) q_r^T S_0 + sum_{i<=r} intra_ri Vnew_i
//   S_end = exp(G_L) S_0 + sum_i exp(G_L - G_i) k_i Vnew_i^T
//
// Every product acts on the value columns independently, so one team owns one
// (sequence, head, block of value columns) and keeps that block of the state in scratch.
// The chunk-parallel forward runs the same pass over segments of sequences instead, once for
// the segments' affine state maps and once for the outputs (segment_map.hpp).
//
// The backward reruns this pass without the read-out, keeping what its reverse pass needs:
// the state entering every chunk and Vnew.
#pragma once

#include "chunk_layout.hpp"
#include "chunk_operands.hpp"
#include "chunk_workspace.hpp"
#include "segment_map.hpp"
#include "common/kokkos_compat.hpp"
#include "common/launch.hpp"
#include "common/team_dense.hpp"
#include "common/team_scratch.hpp"

#include <Kokkos_Core.hpp>

namespace gdp::detail {

template <class ExecSpace, class Scalar>
struct StatePass {
  using memory_space = typename ExecSpace::memory_space;
  using Real = accumulator_t<Scalar>;
  using policy_type = Kokkos::TeamPolicy<ExecSpace>;
  using member_type = typename policy_type::member_type;
  using Tile = ScratchTile<ExecSpace, Real>;
  template <class T>
  using view = Kokkos::View<T, Kokkos::LayoutRight, memory_space>;
  template <class T>
  using unmanaged_view =
      Kokkos::View<T, Kokkos::LayoutRight, memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;

  ChunkOperands<Scalar, memory_space> operands;
  DeviceChunkLayout<memory_space> layout;
  ChunkWorkspace<Real, memory_space> workspace;
  /// [N, H, K, V] or null; in a segment-map walk [segments, H, K, K + V], the augmented state
  /// entering each segment (null: [I | 0]).
  unmanaged_view<const Real****> initial_state;
  unmanaged_view<Scalar***> output;              ///< o [total_tokens, H, V]; null: no read-out
  unmanaged_view<Real****> final_state;          ///< [N, H, K, V] or null
  /// Segment-map walks only (null otherwise): the read-out of every column of [M | R], in the
  /// accumulation type, [total_tokens, H, K + V]. A token's output from the true state S_in
  /// entering its segment is its R columns plus its M columns times S_in
  /// (sequence_parallel_impl.hpp).
  unmanaged_view<Real***> map_output;
  /// For the backward, null in the forward: S_0^T of every chunk, and Vnew. new_values may be
  /// workspace.u, since each team reads a chunk's U before it writes Vnew over it.
  unmanaged_view<Real****> entry_states_transposed;  ///< [num_chunks, H, V, K]
  unmanaged_view<Real***> new_values;                ///< [total_positions, H, V]
  /// For the chunk-parallel forward (segment_map.hpp): the teams walk these segments instead
  /// of whole sequences, and initial_state / final_state are indexed by segment.
  DeviceSegmentLayout<memory_space> segments;
  /// Walk each segment with the augmented state [M | R] from [I | 0] (or from initial_state)
  /// and write it to final_state [segments, H, K, K + V]: the segment maps.
  bool segment_maps = false;
  int heads, key_dim, value_dim, value_block, value_blocks, scratch_level = 0;

  StatePass(const ChunkOperands<Scalar, memory_space>& ops,
            const DeviceChunkLayout<memory_space>& chunk_layout,
            const ChunkWorkspace<Real, memory_space>& ws, unmanaged_view<const Real****> h0,
            unmanaged_view<Scalar***> o, unmanaged_view<Real****> ht, int value_block_size)
      : operands(ops), layout(chunk_layout), workspace(ws), initial_state(h0), output(o),
        final_state(ht), heads(ops.heads()), key_dim(ops.key_dim()),
        value_dim(ops.value_dim()), value_block(value_block_size),
        value_blocks((ops.value_dim() + value_block_size - 1) / value_block_size) {}

  std::size_t scratch_bytes_per_team() const {
    const int C = layout.chunk_size, Q = layout.max_queries;
    return scratch_bytes<ExecSpace, Real>(key_dim, value_block)  // S
           + scratch_bytes<ExecSpace, Real>(C, value_block)      // Vnew
           + scratch_bytes<ExecSpace, Real>(C, key_dim)          // decayed keys
           + scratch_bytes<ExecSpace, Real>(Q, key_dim)          // gated queries
           + scratch_bytes<ExecSpace, Real>(Q, value_block);     // outputs
  }

  KOKKOS_INLINE_FUNCTION ColumnBlocking column_blocking() const {
    return ColumnBlocking(key_dim, value_dim, value_block, segment_maps);
  }

  void run() {
    const std::int64_t walks = segments.segments.data()
                                   ? segments.count()
                                   : std::int64_t(layout.sequence_first_chunk.extent(0)) - 1;
    const std::size_t bytes = scratch_bytes_per_team();
    scratch_level = scratch_level_for<policy_type>(bytes);
    policy_type policy(walks * heads * column_blocking().count(), Kokkos::AUTO);
    launch("gdp::state_pass", policy.set_scratch_size(scratch_level, Kokkos::PerTeam(bytes)),
           *this);
  }

  KOKKOS_INLINE_FUNCTION void operator()(const member_type& member) const {
    const ColumnBlocking blocking = column_blocking();
    const std::int64_t unit = member.league_rank();
    const ColumnBlock owned = blocking(int(unit % blocking.count()));
    const int h = int((unit / blocking.count()) % heads);
    const std::int64_t walk = unit / (std::int64_t(blocking.count()) * heads);
    const SegmentDescriptor range =
        segments.segments.data()
            ? segments.segments(walk)
            : SegmentDescriptor{walk, layout.sequence_first_chunk(walk),
                                layout.sequence_first_chunk(walk + 1)};
    const int e0 = owned.value_first, width = owned.width;
    const int C = layout.chunk_size, n = operands.num_householder;

    const auto& scratch = member.team_scratch(scratch_level);
    Tile state_tile(scratch, key_dim, value_block), vnew_tile(scratch, C, value_block);
    Tile decayed_keys(scratch, C, key_dim), gated_queries(scratch, layout.max_queries, key_dim);
    Tile out_tile(scratch, layout.max_queries, value_block);
    const auto columns = Kokkos::make_pair(0, width);
    const auto S = Kokkos::subview(state_tile, Kokkos::ALL(), columns);

    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, key_dim), [&](const int d) {
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, width), [&](const int e) {
        S(d, e) = initial_state.data() ? initial_state(walk, h, d, owned.state_first + e)
                  : owned.carries_map    ? Real(owned.identity(d, e))
                                         : Real(0);
      });
    });
    member.team_barrier();

    for (std::int64_t c = range.first_chunk; c < range.end_chunk; ++c) {
      const ChunkDescriptor chunk = layout.chunks(c);
      const int L = chunk.length,
                num_queries = output.data() || map_output.data() ? chunk.num_queries : 0;
      const std::int64_t p0 = chunk.first_position;
      const Real chunk_decay = workspace.log_decay(p0 + L - 1, h);

      if (entry_states_transposed.data())
        Kokkos::parallel_for(Kokkos::TeamThreadRange(member, width), [&](const int e) {
          Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, key_dim), [&](const int d) {
            entry_states_transposed(c, h, e0 + e, d) = S(d, e);
          });
        });

      Kokkos::parallel_for(Kokkos::TeamThreadRange(member, L), [&](const int r) {
        const Real G = workspace.log_decay(p0 + r, h);
        team::scaled_row(member, &decayed_keys(r, 0), operands.key_row(p0 + r, h), key_dim,
                         compat::exp(chunk_decay - G) * operands.key_factor(p0 + r, h));
        if (owned.carries_map)  // the M columns' values are zero: Vnew = -W S
          Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, width),
                               [&](const int e) { vnew_tile(r, e) = Real(0); });
        else
          team::scaled_row(member, &vnew_tile(r, 0), &workspace.u(p0 + r, h, e0), width, Real(1));
      });
      Kokkos::parallel_for(Kokkos::TeamThreadRange(member, num_queries), [&](const int j) {
        const std::int64_t t = chunk.first_query_token + j;
        const Real G = workspace.log_decay(p0 + chunk.first_query_local + j * n, h);
        team::scaled_row(member, &gated_queries(j, 0), operands.query_row(t, h), key_dim,
                         operands.scale * compat::exp(G) * operands.query_factor(t, h));
      });
      member.team_barrier();

      const auto rows = Kokkos::make_pair(0, L);
      const auto positions = Kokkos::make_pair(p0, p0 + L);
      const auto vnew = Kokkos::subview(vnew_tile, rows, columns);
      team::gemm<ExecSpace, team::NoTranspose>(
          member, Real(-1), Kokkos::subview(workspace.w, positions, h, Kokkos::ALL()), S, Real(1),
          vnew);
      if (num_queries > 0) {
        const auto query_rows = Kokkos::make_pair(0, num_queries);
        const auto tokens = Kokkos::make_pair(chunk.first_query_token,
                                              chunk.first_query_token + num_queries);
        const auto out = Kokkos::subview(out_tile, query_rows, columns);
        team::gemm<ExecSpace, team::NoTranspose>(
            member, Real(1), Kokkos::subview(gated_queries, query_rows, Kokkos::ALL()), S, Real(0),
            out);
        team::gemm<ExecSpace, team::NoTranspose>(
            member, Real(1), Kokkos::subview(workspace.intra, tokens, h, rows), vnew, Real(1), out);
        Kokkos::parallel_for(Kokkos::TeamThreadRange(member, num_queries), [&](const int j) {
          Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, width), [&](const int e) {
            if (map_output.data())
              map_output(chunk.first_query_token + j, h, owned.state_first + e) = out(j, e);
            else
              output(chunk.first_query_token + j, h, e0 + e) = narrow<Scalar>(out(j, e));
          });
        });
      }
      if (new_values.data())
        Kokkos::parallel_for(Kokkos::TeamThreadRange(member, L), [&](const int r) {
          Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, width),
                               [&](const int e) { new_values(p0 + r, h, e0 + e) = vnew(r, e); });
        });
      team::gemm<ExecSpace, team::Transpose>(
          member, Real(1), Kokkos::subview(decayed_keys, rows, Kokkos::ALL()), vnew,
          compat::exp(chunk_decay), S);
    }

    if (final_state.data()) {
      Kokkos::parallel_for(Kokkos::TeamThreadRange(member, key_dim), [&](const int d) {
        Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, width), [&](const int e) {
          final_state(walk, h, d, owned.state_first + e) = S(d, e);
        });
      });
    }
  }
};

}  // namespace gdp::detail
