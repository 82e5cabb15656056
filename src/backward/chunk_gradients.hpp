// SPDX-License-Identifier: Apache-2.0
// Stage 4 of the backward: the per-chunk adjoints left by the reverse pass turned into dq, dk,
// dbeta and dg, for all (chunk, head) pairs in parallel (docs/BACKWARD.md). With k, q the
// (normalised) keys and queries of the chunk, D_ri = exp(G_r - G_i), and the slices of the
// BackwardWorkspace summed over value blocks:
//
//   Ad = dA o D (i < r),   Md = scale d intra o D (i <= r_j)       (masked, never exp(> 0))
//   dk   = beta o (Ad K) + (beta o Ad)^T K + Md^T Q + beta exp(G) o dBk + exp(G_L - G) o dKd
//   dq   = Md K + scale exp(G_r) o dQg
//   dbeta = k . (Ad K) + exp(G) k . dBk + sum_e dBv_e v_e
//
// dq and dk then go through the backward of the optional L2 normalisation. With grouped
// value heads (H = group * Hqk) each (chunk, value head) team writes its share of dq and dk to
// arrays of partials in the accumulation type instead, which group_sum.hpp adds per q/k head.
//
// The gates. G_r is the sum of the per-position log gates gamma_p, p <= r, and g_t is the
// gamma of token t's first sub-step. Every exp the forward took is either exp(G_r), reaching
// back to the chunk start (in Bk, Qg and exp(G_L) S_0), or exp(G_r - G_i) for a pair i <= r
// (in A, intra and Kd). With s_r the adjoint times value of the first kind of term and x_ri
// that of the second (e.g. x_ri = dA_ri A_ri),
//
//   dgamma_p = sum_{r >= p} s_r + sum_{i < p <= r} x_ri.
//
// Summing each term once where it spans p matters: the per-position form (dG_r = s_r +
// sum_i x_ri - sum_r' x_r'i, then suffix sums over r) adds and cancels the pair terms of a
// token's own sub-steps, which are O(1) while the true dg of a strongly gated token is
// O(exp(g)) - in float that cancellation left errors of 100x the result.
#pragma once

#include "backward_workspace.hpp"
#include "chunk/chunk_layout.hpp"
#include "chunk/chunk_operands.hpp"
#include "chunk/chunk_workspace.hpp"
#include "common/kokkos_compat.hpp"
#include "common/launch.hpp"
#include "common/team_dense.hpp"
#include "common/team_scratch.hpp"

#include <Kokkos_Core.hpp>

namespace gdp::detail {

template <class ExecSpace, class Scalar>
struct ChunkGradients {
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
  ChunkWorkspace<Real, memory_space> workspace;
  BackwardWorkspace<Real, memory_space> saved;
  unmanaged_view<Scalar***> query_grad;  ///< dq [total_tokens, H, K]; null when grouped
  unmanaged_view<Scalar***> key_grad;    ///< dk [total_positions, H, K]; null when grouped
  /// With grouped value heads, each value head's share of dq and dk (after the backward of
  /// the normalisation), for sum_head_groups; null otherwise.
  unmanaged_view<Real***> query_grad_partial;  ///< [total_tokens, H, K]
  unmanaged_view<Real***> key_grad_partial;    ///< [total_positions, H, K]
  unmanaged_view<Scalar**> step_grad;    ///< dbeta [total_positions, H]
  unmanaged_view<Real**> gate_grad;      ///< dg [total_tokens, H]; null when ungated
  int heads, key_dim, scratch_level = 0;

  ChunkGradients(const ChunkOperands<Scalar, memory_space>& ops,
                 const DeviceChunkLayout<memory_space>& chunk_layout,
                 const ChunkWorkspace<Real, memory_space>& ws,
                 const BackwardWorkspace<Real, memory_space>& backward_ws,
                 unmanaged_view<Scalar***> dq, unmanaged_view<Scalar***> dk,
                 unmanaged_view<Scalar**> dbeta, unmanaged_view<Real**> dg)
      : operands(ops),
        layout(chunk_layout),
        workspace(ws),
        saved(backward_ws),
        query_grad(dq),
        key_grad(dk),
        step_grad(dbeta),
        gate_grad(dg),
        heads(ops.heads()),
        key_dim(ops.key_dim()) {}

  std::size_t scratch_bytes_per_team() const {
    const int C = layout.chunk_size, Q = layout.max_queries;
    return 3 * scratch_bytes<ExecSpace, Real>(C, key_dim)    // keys, their adjoint, products
           + scratch_bytes<ExecSpace, Real>(key_dim, C)      // keys, transposed
           + 2 * scratch_bytes<ExecSpace, Real>(Q, key_dim)  // queries, their adjoint
           + 2 * scratch_bytes<ExecSpace, Real>(C, C)        // Ad, then x of A; K K^T
           + scratch_bytes<ExecSpace, Real>(Q, C)            // Md, then x of intra
           + scratch_bytes<ExecSpace, Real>(5, C);           // G, beta, dbeta, s, x of Kd
  }

  void run() {
    const std::size_t bytes = scratch_bytes_per_team();
    scratch_level = scratch_level_for<policy_type>(bytes);
    policy_type policy(std::int64_t(layout.chunks.extent(0)) * heads, Kokkos::AUTO);
    launch("gdp::chunk_gradients", policy.set_scratch_size(scratch_level, Kokkos::PerTeam(bytes)),
           *this);
  }

  /// Sum over the value-block slices of one element of a BackwardWorkspace adjoint.
  template <class Slices, class... Indices>
  KOKKOS_INLINE_FUNCTION Real summed(const Slices& slices, Indices... indices) const {
    Real sum = 0;
    for (int b = 0; b < saved.value_blocks; ++b) sum += slices(b, indices...);
    return sum;
  }

  /// dst[j] = weight * (sum over the value-block slices of slices(b, row, h, j)) for j < n,
  /// a slice at a time so that the host compiler vectorises each pass over the row.
  template <class Slices>
  KOKKOS_INLINE_FUNCTION void load_summed_row(const member_type& member, Real* destination,
                                              const Slices& slices, std::int64_t row, int h,
                                              int n, Real weight) const {
    team::scaled_row(member, destination, &slices(0, row, h, 0), n, weight);
    for (int b = 1; b < saved.value_blocks; ++b) {
      const Real* source = &slices(b, row, h, 0);
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, n),
                           [&](const int j) { destination[j] += weight * source[j]; });
    }
  }

  /// a . b over the first key_dim entries of two tile rows, by the calling thread's vector lanes.
  template <class ATile, class BTile>
  KOKKOS_INLINE_FUNCTION Real row_dot(const member_type& member, const ATile& a, int i,
                                      const BTile& b, int j) const {
    Real dot = 0;
    Kokkos::parallel_reduce(
        Kokkos::ThreadVectorRange(member, key_dim),
        [&](const int d, Real& sum) { sum += a(i, d) * b(j, d); }, dot);
    return dot;
  }

  /// Writes the gradient with respect to a raw row from the gradient `adjoint` with respect to
  /// its normalised form `normalised` = factor * raw: factor (dy - (y . dy) y), or dy unchanged
  /// without normalisation.
  template <class Destination>
  KOKKOS_INLINE_FUNCTION void write_raw_row_grad(const member_type& member, const Tile& adjoint,
                                                 const Tile& normalised, int i, Real factor,
                                                 bool normalising, Destination* destination) const {
    const Real along = normalising ? row_dot(member, normalised, i, adjoint, i) : Real(0);
    Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, key_dim), [&](const int d) {
      destination[d] = narrow<Destination>(
          normalising ? factor * (adjoint(i, d) - along * normalised(i, d)) : adjoint(i, d));
    });
  }

  /// write_raw_row_grad of tile row i into row `row`, head h of the gradient: of `direct`, or
  /// with grouped value heads of this value head's share `partial`.
  KOKKOS_INLINE_FUNCTION void write_gradient_row(const member_type& member, const Tile& adjoint,
                                                 const Tile& normalised, int i, Real factor,
                                                 bool normalising,
                                                 const unmanaged_view<Real***>& partial,
                                                 const unmanaged_view<Scalar***>& direct,
                                                 std::int64_t row, int h) const {
    if (partial.data())
      write_raw_row_grad(member, adjoint, normalised, i, factor, normalising, &partial(row, h, 0));
    else
      write_raw_row_grad(member, adjoint, normalised, i, factor, normalising, &direct(row, h, 0));
  }

  KOKKOS_INLINE_FUNCTION void operator()(const member_type& member) const {
    const int h = int(member.league_rank() % heads);
    const std::int64_t c = member.league_rank() / heads;
    const ChunkDescriptor chunk = layout.chunks(c);
    const int L = chunk.length, num_queries = chunk.num_queries;
    const int C = layout.chunk_size, Q = layout.max_queries, n = operands.num_householder;
    const std::int64_t p0 = chunk.first_position, t0 = chunk.first_query_token;
    const Real scale = operands.scale;
    const bool normalising = operands.key_norm.data() != nullptr;
    const bool gated = gate_grad.data() != nullptr;

    const auto& scratch = member.team_scratch(scratch_level);
    Tile keys(scratch, C, key_dim), key_adjoint(scratch, C, key_dim), products(scratch, C, key_dim);
    Tile keys_transposed(scratch, key_dim, C);
    Tile queries(scratch, Q, key_dim), query_adjoint(scratch, Q, key_dim);
    Tile coupling(scratch, C, C), key_gram(scratch, C, C), intra(scratch, Q, C);
    Tile per_position(scratch, 5, C);
    const auto G = Kokkos::subview(per_position, 0, Kokkos::ALL());
    const auto beta = Kokkos::subview(per_position, 1, Kokkos::ALL());
    const auto dbeta = Kokkos::subview(per_position, 2, Kokkos::ALL());
    const auto from_start = Kokkos::subview(per_position, 3, Kokkos::ALL());   // s_r
    const auto decay_pairs = Kokkos::subview(per_position, 4, Kokkos::ALL());  // x of Kd
    const auto query_position = [&](const int j) { return chunk.first_query_local + j * n; };

    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, L), [&](const int r) {
      team::scaled_row(member, &keys(r, 0), operands.key_row(p0 + r, h), key_dim,
                       operands.key_factor(p0 + r, h));
      Kokkos::single(Kokkos::PerThread(member), [&]() {
        G(r) = workspace.log_decay(p0 + r, h);
        beta(r) = operands.step(p0 + r, h);
      });
    });
    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, num_queries), [&](const int j) {
      team::scaled_row(member, &queries(j, 0), operands.query_row(t0 + j, h), key_dim,
                       operands.query_factor(t0 + j, h));
    });
    member.team_barrier();
    const Real chunk_decay = G(L - 1);

    // The adjoints with one term per position: Bk = beta exp(G) k and Kd = exp(G_L - G) k.
    // products holds dBk for the dot product below.
    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, L), [&](const int r) {
      const std::int64_t p = p0 + r;
      const Real gate = compat::exp(G(r)), decay = compat::exp(chunk_decay - G(r));
      load_summed_row(member, &products(r, 0), saved.solve_key_grad, p, h, key_dim, Real(1));
      load_summed_row(member, &key_adjoint(r, 0), saved.decayed_key_grad, p, h, key_dim, decay);
      const Real along_solve = row_dot(member, keys, r, products, r);
      const Real along_decayed = row_dot(member, keys, r, key_adjoint, r);
      const Real solve_weight = beta(r) * gate;
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, key_dim), [&](const int d) {
        key_adjoint(r, d) += solve_weight * products(r, d);
      });
      Kokkos::single(Kokkos::PerThread(member), [&]() {
        dbeta(r) = gate * along_solve + summed(saved.value_step_grad, p, h);
        from_start(r) = solve_weight * along_solve;
        decay_pairs(r) = along_decayed;
      });
    });
    member.team_barrier();
    Kokkos::single(Kokkos::PerTeam(member), [&]() {
      from_start(L - 1) += compat::exp(chunk_decay) * summed(saved.entry_decay_grad, c, h);
    });
    member.team_barrier();

    // The gated queries Qg = scale exp(G_r) q, and the masked Ad and Md.
    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, num_queries), [&](const int j) {
      const int r = query_position(j);
      const Real weight = scale * compat::exp(G(r));
      load_summed_row(member, &query_adjoint(j, 0), saved.gated_query_grad, t0 + j, h, key_dim,
                      weight);
      const Real along = row_dot(member, queries, j, query_adjoint, j);
      Kokkos::single(Kokkos::PerThread(member), [&]() { from_start(r) += along; });
      // exp(G_r - G_i) only where i <= r: above, the exponent is positive and may overflow.
      load_summed_row(member, &intra(j, 0), saved.intra_grad, t0 + j, h, L, scale);
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, L), [&](const int i) {
        intra(j, i) = i <= r ? compat::exp(G(r) - G(i)) * intra(j, i) : Real(0);
      });
    });
    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, L), [&](const int r) {
      load_summed_row(member, &coupling(r, 0), saved.coupling_grad, p0 + r, h, L, Real(1));
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, L), [&](const int i) {
        coupling(r, i) = i < r ? compat::exp(G(r) - G(i)) * coupling(r, i) : Real(0);
      });
    });
    member.team_barrier();

    const auto rows = Kokkos::make_pair(0, L);
    const auto query_rows = Kokkos::make_pair(0, num_queries);
    const auto chunk_keys = Kokkos::subview(keys, rows, Kokkos::ALL());
    const auto chunk_queries = Kokkos::subview(queries, query_rows, Kokkos::ALL());
    const auto Ad = Kokkos::subview(coupling, rows, rows);
    const auto Md = Kokkos::subview(intra, query_rows, rows);
    const auto key_products = Kokkos::subview(products, rows, Kokkos::ALL());

    // A_ri = beta_r D_ri (k_r . k_i): the row side, Y = Ad K.
    team::gemm<ExecSpace, team::NoTranspose>(member, Real(1), Ad, chunk_keys, Real(0),
                                             key_products);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, L), [&](const int r) {
      const Real along = row_dot(member, keys, r, products, r);
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, key_dim),
                           [&](const int d) { key_adjoint(r, d) += beta(r) * products(r, d); });
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, L),
                           [&](const int i) { coupling(r, i) *= beta(r); });
      Kokkos::single(Kokkos::PerThread(member), [&]() { dbeta(r) += along; });
    });
    member.team_barrier();

    // The column side of A and the key side of intra: Z = (beta o Ad)^T K + Md^T Q.
    team::gemm<ExecSpace, team::Transpose>(member, Real(1), Ad, chunk_keys, Real(0), key_products);
    if (num_queries > 0)
      team::gemm<ExecSpace, team::Transpose>(member, Real(1), Md, chunk_queries, Real(1),
                                             key_products);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, L), [&](const int r) {
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, key_dim),
                           [&](const int d) { key_adjoint(r, d) += products(r, d); });
    });
    member.team_barrier();

    // The query side of intra: Md K.
    if (num_queries > 0) {
      team::gemm<ExecSpace, team::NoTranspose>(
          member, Real(1), Md, chunk_keys, Real(0),
          Kokkos::subview(products, query_rows, Kokkos::ALL()));
      Kokkos::parallel_for(Kokkos::TeamThreadRange(member, num_queries), [&](const int j) {
        Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, key_dim),
                             [&](const int d) { query_adjoint(j, d) += products(j, d); });
      });
    }

    if (gated) {
      // x_ri = dA_ri A_ri = (beta o Ad)_ri (k_r . k_i), and x of intra = d intra o intra.
      Kokkos::parallel_for(Kokkos::TeamThreadRange(member, key_dim), [&](const int d) {
        Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, L),
                             [&](const int r) { keys_transposed(d, r) = keys(r, d); });
      });
      member.team_barrier();
      const auto gram = Kokkos::subview(key_gram, rows, rows);
      team::gemm<ExecSpace, team::NoTranspose>(
          member, Real(1), chunk_keys, Kokkos::subview(keys_transposed, Kokkos::ALL(), rows),
          Real(0), gram);
      Kokkos::parallel_for(Kokkos::TeamThreadRange(member, L), [&](const int r) {
        Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, L),
                             [&](const int i) { coupling(r, i) *= gram(r, i); });
      });
      Kokkos::parallel_for(Kokkos::TeamThreadRange(member, num_queries), [&](const int j) {
        const int r = query_position(j);
        load_summed_row(member, &intra(j, 0), saved.intra_grad, t0 + j, h, L, Real(1));
        Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, L), [&](const int i) {
          intra(j, i) = i <= r ? intra(j, i) * workspace.intra(t0 + j, h, i) : Real(0);
        });
      });
      member.team_barrier();
      // dg_t = dgamma at token t's first sub-step p: every term spanning p, each once.
      Kokkos::parallel_for(Kokkos::TeamThreadRange(member, L), [&](const int p) {
        if ((p0 + p) % n != 0) return;
        Real spanning = 0;
        Kokkos::parallel_reduce(
            Kokkos::ThreadVectorRange(member, L),
            [&](const int r, Real& sum) {
              if (r >= p) {
                sum += from_start(r);
                for (int i = 0; i < p; ++i) sum += coupling(r, i);
              } else {
                sum += decay_pairs(r);
              }
            },
            spanning);
        Real spanning_queries = 0;
        Kokkos::parallel_reduce(
            Kokkos::ThreadVectorRange(member, num_queries),
            [&](const int j, Real& sum) {
              if (query_position(j) >= p)
                for (int i = 0; i < p; ++i) sum += intra(j, i);
            },
            spanning_queries);
        Kokkos::single(Kokkos::PerThread(member),
                       [&]() { gate_grad((p0 + p) / n, h) = spanning + spanning_queries; });
      });
    }
    member.team_barrier();

    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, L), [&](const int r) {
      write_gradient_row(member, key_adjoint, keys, r, operands.key_factor(p0 + r, h), normalising,
                         key_grad_partial, key_grad, p0 + r, h);
      Kokkos::single(Kokkos::PerThread(member),
                     [&]() { step_grad(p0 + r, h) = narrow<Scalar>(dbeta(r)); });
    });
    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, num_queries), [&](const int j) {
      write_gradient_row(member, query_adjoint, queries, j, operands.query_factor(t0 + j, h),
                         normalising, query_grad_partial, query_grad, t0 + j, h);
    });
  }
};

}  // namespace gdp::detail
