// SPDX-License-Identifier: Apache-2.0
// The fused forward walk of the host execution spaces (Serial, OpenMP): what chunk_prepare.hpp
// and state_pass.hpp do in two kernels, done chunk after chunk by one thread per
// (sequence, head, block of value columns), with every tile of the chunk in the thread's
// scratch (a few hundred KB at K = V = 128: the core's L2) instead of a workspace the size of
// the problem. Per chunk (ALGORITHM.md section 4; D_ri = exp(G_r - G_i)):
//
//   G, beta   cumulative log gates, steps
//   -A        -strictly_lower(diag(beta) (K K^T) o D)         (only the lower blocks formed)
//   P         scale (Q K^T) o D for i <= r, 0 after
//   [-W | U]  (I + A)^{-1} [-diag(beta exp(G)) K | diag(beta) V]   (blocked substitution)
//   Vnew      U + (-W) S
//   O         diag(scale exp(G)) Q S + P Vnew
//   S         exp(G_L) S + K^T (exp(G_L - G) o Vnew)
//
// Every product is host::Block's register-blocked loop (common/host_microkernels.hpp) on
// row-major tiles whose rows are padded to whole SIMD vectors. The driver takes this walk
// for the sequential plan on host spaces; the chunk-parallel plan keeps the two stages.
//
// The same walk gives a sequence-parallel slice's map (segment_map, sequence_parallel_impl.hpp):
// one thread per (sequence, head) carries the augmented state [R | M] (the value columns, then
// K columns started from the identity whose values are zero: Vnew = -W M), so that stage 1 is
// done once for all K + V columns, and keeps every column's read-out instead of the outputs.
#pragma once

#include "chunk_layout.hpp"
#include "chunk_operands.hpp"
#include "segment_map.hpp"
#include "common/host_microkernels.hpp"
#include "common/kokkos_compat.hpp"
#include "common/launch.hpp"

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace gdp::detail {

template <class ExecSpace, class Scalar>
struct HostFusedWalk {
  using memory_space = typename ExecSpace::memory_space;
  using Real = accumulator_t<Scalar>;
  using policy_type = Kokkos::TeamPolicy<ExecSpace, Kokkos::Schedule<Kokkos::Dynamic>>;
  using member_type = typename policy_type::member_type;
  template <class T>
  using unmanaged_view =
      Kokkos::View<T, Kokkos::LayoutRight, memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  static constexpr int lanes = host::lanes<Real>;

  /// Where each tile lives in a thread's scratch, in Reals from a 64-byte boundary, and the
  /// padded leading dimensions.
  struct Tiles {
    int Kp, Wp, Cp, ldx;  ///< K, state columns, chunk padded to vectors; ldx = Kp + Wp
    std::size_t state, keys, keys_t, queries, products, query_products, rhs, decayed, gates,
        steps, tail_decays, query_gates, readouts, size;

    /// W state columns; readout_rows rows of read-outs kept in scratch (segment maps: Q).
    Tiles(int C, int Q, int K, int W, int readout_rows)
        : Kp(host::padded<Real>(K)), Wp(host::padded<Real>(W)), Cp(host::padded<Real>(C)),
          ldx(Kp + Wp) {
      std::size_t at = 0;
      const auto take = [&](std::size_t reals) {
        const std::size_t start = at;
        at += std::size_t(host::padded<Real>(int(reals)));
        return start;
      };
      state = take(std::size_t(K) * Wp);                                  // S
      keys = take(std::size_t(C) * Kp);                                   // K
      keys_t = take(std::size_t(K) * Cp);                                 // K^T
      queries = take(std::size_t(Q) * Kp);                                // Q, then gated
      products = take(std::size_t(Cp + host::block_rows) * Cp);           // -A
      query_products = take(std::size_t(Q) * Cp);                        // P
      rhs = take(std::size_t(C) * ldx);                                   // [-W | U], then Vnew
      decayed = take(std::size_t(C) * Wp);                                // exp(G_L - G) o Vnew
      gates = take(C);                                                    // G
      steps = take(C);                                                    // beta
      tail_decays = take(C);                                              // exp(G_L - G)
      query_gates = take(Q);                                              // scale exp(G_r)
      readouts = take(std::size_t(readout_rows) * Wp);                    // [R | M] read-outs
      size = at;
    }
    std::size_t bytes() const { return size * sizeof(Real) + host::vector_bytes; }
  };

  ChunkOperands<Scalar, memory_space> operands;
  DeviceChunkLayout<memory_space> layout;
  unmanaged_view<const Real****> initial_state;  ///< [N, H, K, V] or null
  unmanaged_view<Scalar***> output;              ///< o [total_tokens, H, V]
  /// [N, H, K, V] or null; in a segment-map walk [N, H, K, K + V], the final [M | R].
  unmanaged_view<Real****> final_state;
  /// Segment-map walks only (null otherwise): the read-out of every column of [M | R],
  /// [total_tokens, H, K + V], as StatePass::map_output.
  unmanaged_view<Real***> map_output;
  ColumnBlocking blocking;
  Tiles tiles;
  int heads, key_dim, value_dim;

  /// The forward: o and ht from h0, one thread per (sequence, head, block of value columns).
  HostFusedWalk(const ChunkOperands<Scalar, memory_space>& ops,
                const DeviceChunkLayout<memory_space>& chunk_layout,
                unmanaged_view<const Real****> h0, unmanaged_view<Scalar***> o,
                unmanaged_view<Real****> ht, int value_block)
      : operands(ops), layout(chunk_layout), initial_state(h0), output(o), final_state(ht),
        blocking(ops.key_dim(), ops.value_dim(), value_block, false),
        tiles(chunk_layout.chunk_size, chunk_layout.max_queries, ops.key_dim(), value_block, 0),
        heads(ops.heads()), key_dim(ops.key_dim()), value_dim(ops.value_dim()) {}

  /// The segment maps: every sequence walked with [M | R] from [I | 0], its final [M | R] into
  /// `maps` [N, H, K, K + V] and every token's read-outs into `readout` [total_tokens, H, K + V].
  HostFusedWalk(const ChunkOperands<Scalar, memory_space>& ops,
                const DeviceChunkLayout<memory_space>& chunk_layout, unmanaged_view<Real****> maps,
                unmanaged_view<Real***> readout)
      : operands(ops), layout(chunk_layout), final_state(maps), map_output(readout),
        blocking(ops.key_dim(), ops.value_dim(), ops.value_dim(), false),
        tiles(chunk_layout.chunk_size, chunk_layout.max_queries, ops.key_dim(),
              host::padded<Real>(ops.value_dim()) + ops.key_dim(), chunk_layout.max_queries),
        heads(ops.heads()), key_dim(ops.key_dim()), value_dim(ops.value_dim()) {}

  void run() {
    const std::int64_t sequences = std::int64_t(layout.sequence_first_chunk.extent(0)) - 1;
    policy_type policy(sequences * heads * blocking.count(), 1);
    launch("gdp::host_fused_walk",
           policy.set_scratch_size(1, Kokkos::PerThread(tiles.bytes())), *this);
  }

  KOKKOS_INLINE_FUNCTION void operator()(const member_type& member) const {
    GDP_IF_ON_HOST((walk(member.league_rank(), member.thread_scratch(1).get_shmem(tiles.bytes()));))
  }

  /// The walk of one (sequence, head, block of value columns) through its sequence's chunks.
  /// A segment-map walk owns every value column and, after them from column map_first of
  /// the state tiles on, the K columns of M.
  void walk(const std::int64_t unit, void* scratch_memory) const {
    const ColumnBlock owned = blocking(int(unit % blocking.count()));
    const int h = int((unit / blocking.count()) % heads);
    const std::int64_t sequence = unit / (std::int64_t(blocking.count()) * heads);
    const int K = key_dim, width = owned.width, e0 = owned.value_first;
    const int n = operands.num_householder;
    const int Kp = tiles.Kp, Wp = tiles.Wp, Cp = tiles.Cp, ldx = tiles.ldx;
    const bool maps = map_output.data() != nullptr;
    const int map_first = host::padded<Real>(width);
    // Columns of the state products (value block, then M), and of the substitution ([-W | U]).
    const int width_vectors = (maps ? map_first + Kp : map_first) / lanes;
    const int solve_vectors = (Kp + map_first) / lanes;

    std::uintptr_t address = reinterpret_cast<std::uintptr_t>(scratch_memory);
    address = (address + host::vector_bytes - 1) / host::vector_bytes * host::vector_bytes;
    Real* const base = reinterpret_cast<Real*>(address);
    // Zero once: the padding columns then stay zero through every product of the walk.
    std::memset(static_cast<void*>(base), 0, tiles.size * sizeof(Real));
    Real* const S = base + tiles.state;
    Real* const keys = base + tiles.keys;
    Real* const keys_t = base + tiles.keys_t;
    Real* const queries = base + tiles.queries;
    Real* const negated_a = base + tiles.products;
    Real* const P = base + tiles.query_products;
    Real* const X = base + tiles.rhs;
    Real* const decayed = base + tiles.decayed;
    Real* const G = base + tiles.gates;
    Real* const beta = base + tiles.steps;
    Real* const tail_decay = base + tiles.tail_decays;
    Real* const query_gate = base + tiles.query_gates;
    Real* const readouts = base + tiles.readouts;

    for (int d = 0; d < K; ++d) {
      for (int e = 0; e < width; ++e)
        S[d * Wp + e] = initial_state.data() ? initial_state(sequence, h, d, owned.state_first + e)
                                             : Real(0);
      if (maps) S[d * Wp + map_first + d] = Real(1);  // M from the identity
    }

    const std::int64_t end = layout.sequence_first_chunk(sequence + 1);
    for (std::int64_t c = layout.sequence_first_chunk(sequence); c < end; ++c) {
      const ChunkDescriptor chunk = layout.chunks(c);
      const int L = chunk.length, Q = chunk.num_queries, first = chunk.first_query_local;
      const std::int64_t p0 = chunk.first_position, t0 = chunk.first_query_token;

      // Operands of the chunk.
      Real cumulative = 0;
      for (int r = 0; r < L; ++r) {
        cumulative += operands.log_gate(p0 + r, h);
        G[r] = cumulative;
        beta[r] = operands.step(p0 + r, h);
      }
      const Real chunk_decay = compat::exp(cumulative);
      for (int r = 0; r < L; ++r) {
        tail_decay[r] = host::exp_lanes(cumulative - G[r]);
        copy_row(keys + r * Kp, operands.key_row(p0 + r, h), K, operands.key_factor(p0 + r, h));
      }
      for (int d = 0; d < K; ++d)
        for (int r = 0; r < L; ++r) keys_t[d * Cp + r] = keys[r * Kp + d];
      for (int j = 0; j < Q; ++j)
        copy_row(queries + j * Kp, operands.query_row(t0 + j, h), K,
                 operands.query_factor(t0 + j, h));

      // The next chunk's rows of k, v and q start their way from memory while this one computes.
      if (c + 1 < end) {
        const ChunkDescriptor next = layout.chunks(c + 1);
        for (int r = 0; r < next.length; ++r) {
          host::prefetch(operands.key_row(next.first_position + r, h), K * sizeof(Scalar));
          host::prefetch(&operands.v(next.first_position + r, h, e0), width * sizeof(Scalar));
        }
        for (int j = 0; j < next.num_queries; ++j)
          host::prefetch(operands.query_row(next.first_query_token + j, h), K * sizeof(Scalar));
      }

      // K K^T below the diagonal and Q K^T up to each query's position.
      host::for_lower_blocks<Real>(
          L, [&](int row0, int rows) { return (row0 + rows - 1 + lanes - 1) / lanes; },
          [&](int column0, int row0, int rows, auto& block) {
            block.multiply_add(keys + row0 * Kp, Kp, 1, rows, keys_t + column0, Cp, K);
            block.store(negated_a + row0 * Cp + column0, Cp, rows);
          });
      host::for_lower_blocks<Real>(
          Q, [&](int row0, int rows) { return (first + (row0 + rows - 1) * n + lanes) / lanes; },
          [&](int column0, int row0, int rows, auto& block) {
            block.multiply_add(queries + row0 * Kp, Kp, 1, rows, keys_t + column0, Cp, K);
            block.store(P + row0 * Cp + column0, Cp, rows);
          });

      // Gates and masks. exp(G_r - G_i) is evaluated only for i <= r: above the diagonal the
      // exponent may be positive and overflow.
      for (int r = 0; r < L; ++r) {
        Real* const row = negated_a + r * Cp;
        const Real g = G[r], b = -beta[r];
GDP_HOST_SIMD
        for (int i = 0; i < r; ++i) row[i] = b * host::exp_lanes(g - G[i]) * row[i];
      }
      for (int j = 0; j < Q; ++j) {
        const int r = first + j * n;
        Real* const row = P + j * Cp;
        const Real g = G[r], scale = operands.scale;
GDP_HOST_SIMD
        for (int i = 0; i < L; ++i)
          row[i] = i <= r ? scale * host::exp_lanes(i <= r ? g - G[i] : Real(0)) * row[i] : Real(0);
        query_gate[j] = scale * compat::exp(g);
      }
      for (int j = 0; j < Q; ++j) {
        Real* const row = queries + j * Kp;
        const Real factor = query_gate[j];
GDP_HOST_SIMD
        for (int d = 0; d < K; ++d) row[d] *= factor;
      }

      // [-W | U] = (I + A)^{-1} [-diag(beta exp(G)) K | diag(beta) V].
      for (int r = 0; r < L; ++r) {
        Real* const row = X + r * ldx;
        const Real key_weight = -beta[r] * compat::exp(G[r]);
        const Real* const key = keys + r * Kp;
GDP_HOST_SIMD
        for (int d = 0; d < K; ++d) row[d] = key_weight * key[d];
        copy_row(row + Kp, &operands.v(p0 + r, h, e0), width, beta[r]);
      }
      host::for_blocks<Real>(
          L, solve_vectors,
          [&](int column0, int row0, int rows, auto& block) {
            Real* const x = X + row0 * ldx + column0;
            block.load(x, ldx, rows);
            block.multiply_add(negated_a + row0 * Cp, Cp, 1, rows, X + column0, ldx, row0);
            block.substitute(negated_a + row0 * Cp + row0, Cp);
            block.store(x, ldx, rows);
          });

      // The values of the M columns are zero (their Vnew of the previous chunk is there).
      if (maps)
        for (int r = 0; r < L; ++r)
          std::memset(static_cast<void*>(X + r * ldx + Kp + map_first), 0, Kp * sizeof(Real));

      // Vnew = U + (-W) S, over U; and exp(G_L - G) o Vnew for the state update.
      host::for_blocks<Real>(
          L, width_vectors,
          [&](int column0, int row0, int rows, auto& block) {
            Real* const u = X + row0 * ldx + Kp + column0;
            block.load(u, ldx, rows);
            block.multiply_add(X + row0 * ldx, ldx, 1, rows, S + column0, Wp, K);
            block.store(u, ldx, rows);
            block.store_scaled(decayed + row0 * Wp + column0, Wp, rows, tail_decay + row0);
          });

      // O = (gated Q) S + P Vnew.
      host::for_blocks<Real>(
          Q, width_vectors,
          [&](int column0, int row0, int rows, auto& block) {
            block.multiply_add(queries + row0 * Kp, Kp, 1, rows, S + column0, Wp, K);
            block.multiply_add(P + row0 * Cp, Cp, 1, rows, X + Kp + column0, ldx, L);
            if (maps)
              block.store(readouts + row0 * Wp + column0, Wp, rows);
            else
              block.store_to(&output(t0 + row0, h, e0 + column0), long(heads) * value_dim, rows,
                             std::min(block.columns, width - column0),
                             [](Real x) { return narrow<Scalar>(x); });
          });
      if (maps)  // [R | M] in scratch, [M | R] in map_output
        for (int j = 0; j < Q; ++j) {
          Real* const readout = &map_output(t0 + j, h, 0);
          std::memcpy(static_cast<void*>(readout), readouts + j * Wp + map_first, K * sizeof(Real));
          std::memcpy(static_cast<void*>(readout + K), readouts + j * Wp, width * sizeof(Real));
        }

      // S = exp(G_L) S + K^T (exp(G_L - G) o Vnew).
      host::for_blocks<Real>(
          K, width_vectors,
          [&](int column0, int row0, int rows, auto& block) {
            Real* const s = S + row0 * Wp + column0;
            block.load(s, Wp, rows);
            block.scale(chunk_decay);
            block.multiply_add(keys_t + row0 * Cp, Cp, 1, rows, decayed + column0, Wp, L);
            block.store(s, Wp, rows);
          });
    }

    if (final_state.data())
      for (int d = 0; d < K; ++d) {
        for (int e = 0; e < width; ++e)
          final_state(sequence, h, d, (maps ? K : 0) + owned.state_first + e) = S[d * Wp + e];
        if (maps)
          for (int c = 0; c < K; ++c) final_state(sequence, h, d, c) = S[d * Wp + map_first + c];
      }
  }

 private:
  /// dst[j] = factor * src[j], widened to Real.
  static void copy_row(Real* dst, const Scalar* src, int count, Real factor) {
GDP_HOST_SIMD
    for (int j = 0; j < count; ++j) dst[j] = factor * widen(src[j]);
  }
};

}  // namespace gdp::detail
