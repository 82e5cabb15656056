// SPDX-License-Identifier: Apache-2.0
// The decode step: one token of the recurrence for every (sequence, value head), the state
// updated in place (include/gdp/decode.hpp).
//
// Each column e of a K x V state evolves on its own: with s = S[:, e], the token's n sub-steps
// and read-out only need the products of s with the keys and the query. Writing
// u_j = beta_j (v_j[e] - k_j . s_j) for the correction of sub-step j (s_j the column before it,
// s_0 = exp(g) s), the sub-steps add up to s_n = s_0 + sum_j u_j k_j, so
//
//     k_j . s_j = exp(g) (k_j . s) + sum_{i<j} (k_j . k_i) u_i
//     o[e]      = scale (exp(g) (q . s) + sum_j (q . k_j) u_j)
//     s        <- exp(g) s + sum_j u_j k_j
//
// One pass over the column forms the n + 1 products k_j . s and q . s, the u_j follow from the
// small Gram matrix of the keys and the query (shared by the team), and a second pass writes
// the column back: the state is read twice and written once per token however large n is
// (up to max_group sub-steps per pair of passes; a longer token takes several). This is the
// chunked form of ALGORITHM.md section 4 for a chunk of one token.
//
// A team owns one (sequence, value head, block of value columns). It loads the (normalised)
// keys and query of its query/key head into scratch and forms their products; then
//  - on host spaces (a team is one thread) it walks the block in tiles of 64 bytes of
//    columns, with the tile's n + 1 products per column in registers and the passes streaming
//    rows of the tile, which the compiler vectorises;
//  - on device spaces each thread owns a column and its vector lanes split the column's rows:
//    a warp reads whole 32-byte sectors of consecutive columns, and the products are summed
//    across the lanes.
#pragma once

#include <gdp/decode.hpp>

#include "chunk/l2_normalize.hpp"
#include "common/explicit_instances.hpp"
#include "common/kokkos_compat.hpp"
#include "common/launch.hpp"
#include "common/team_dense.hpp"
#include "common/team_scratch.hpp"
#include "decode_arguments.hpp"

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cstdint>

namespace gdp::detail {

namespace decode {

/// Sub-steps one pair of passes over the state takes; a token with more takes several.
inline constexpr int max_group = 4;
/// Device spaces: vector lanes that split a column's rows, and columns (threads) per team.
inline constexpr int device_lanes = 4;
inline constexpr int device_columns = 32;
/// Host spaces: columns of a tile (64 bytes of them), and the narrowest automatic block.
template <class Real>
inline constexpr int host_tile = int(64 / sizeof(Real));
inline constexpr int host_min_block = 16;

/// Count sums, added up element by element: the products of one column, summed across the
/// vector lanes that formed them.
template <int Count, class Real>
struct Sums {
  Real value[Count];
  KOKKOS_INLINE_FUNCTION Sums() {
    for (int i = 0; i < Count; ++i) value[i] = Real(0);
  }
  KOKKOS_INLINE_FUNCTION Sums& operator+=(const Sums& other) {
    for (int i = 0; i < Count; ++i) value[i] += other.value[i];
    return *this;
  }
};

}  // namespace decode

/// Columns of the state one team updates: DecodeOptions::value_block when set (at most V);
/// on device spaces decode::device_columns; on host spaces the whole row when there are enough
/// (sequence, head) pairs to occupy every thread twice, else halved until there are (16
/// columns at least).
template <class ExecSpace>
int decode_value_block(const DecodeShape& shape, const DecodeOptions& options) {
  if (options.value_block > 0) return std::min(options.value_block, shape.value_dim);
  if constexpr (!team::runs_on_host<ExecSpace>)
    return std::min(decode::device_columns, shape.value_dim);
  const std::int64_t pairs = shape.sequences * shape.value_heads;
  const std::int64_t wanted = 2 * std::int64_t(ExecSpace().concurrency());
  int block = shape.value_dim;
  while (pairs * ((shape.value_dim + block - 1) / block) < wanted &&
         block / 2 >= decode::host_min_block)
    block = (block + 1) / 2;
  return block;
}

template <class ExecSpace, class Scalar>
struct RecurrentStep {
  using memory_space = typename ExecSpace::memory_space;
  using Real = accumulator_t<Scalar>;
  using policy_type = Kokkos::TeamPolicy<ExecSpace>;
  using member_type = typename policy_type::member_type;
  using Tile = ScratchTile<ExecSpace, Real>;
  template <class T>
  using view = Kokkos::View<T, Kokkos::LayoutRight, memory_space,
                            Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  static constexpr bool on_host = team::runs_on_host<ExecSpace>;
  /// Host spaces: rows of K after the keys and the query that hold a padded K x W tile.
  static constexpr int padding_rows = on_host ? decode::host_tile<Real> : 0;

  view<const Scalar***> q;      ///< [N, Hqk, K]
  view<const Scalar****> k;     ///< [N, n, Hqk, K]
  view<const Scalar****> v;     ///< [N, n, Hv, V]
  view<const Scalar***> beta;   ///< [N, n, Hv]
  view<const Real**> g;         ///< [N, Hv] or null
  view<Real****> state;         ///< [N, Hv, K, V]
  view<Scalar***> output;       ///< [N, Hv, V]
  int n, value_heads, head_group, key_dim, value_dim, value_block, value_blocks;
  Real scale;
  bool normalise;
  int scratch_level = 0;

  RecurrentStep(const DecodeInputs<Scalar, memory_space>& in,
                const DecodeState<Scalar, memory_space>& s,
                const DecodeOutput<Scalar, memory_space>& o, const DecodeShape& shape,
                const DecodeOptions& options, int block)
      : q(in.q.data(), in.q.layout()), k(in.k.data(), in.k.layout()),
        v(in.v.data(), in.v.layout()), beta(in.beta.data(), in.beta.layout()),
        g(in.g.data(), in.g.layout()), state(s.data(), s.layout()),
        output(o.data(), o.layout()), n(shape.num_householder), value_heads(shape.value_heads),
        head_group(shape.head_group()), key_dim(shape.key_dim), value_dim(shape.value_dim),
        value_block(block), value_blocks((shape.value_dim + block - 1) / block),
        scale(Real(resolved_scale(options, shape.key_dim))), normalise(options.use_qk_l2norm) {}

  /// Scratch per team: the n keys and the query (rows 0..n-1 and n), on host spaces a padded
  /// K x W tile after them, and the products of the rows.
  std::size_t scratch_bytes_per_team() const {
    return scratch_bytes<ExecSpace, Real>(n + 1 + padding_rows, key_dim) +
           scratch_bytes<ExecSpace, Real>(n + 1, n + 1);
  }

  void run(std::int64_t sequences) {
    const std::size_t bytes = scratch_bytes_per_team();
    const std::int64_t league = sequences * value_heads * value_blocks;
    policy_type policy = on_host ? policy_type(league, 1, 1)
                                 : policy_type(league, std::min(value_block, decode::device_columns),
                                               decode::device_lanes);
    scratch_level = scratch_level_for<policy_type>(bytes);
    launch("gdp::recurrent_step", policy.set_scratch_size(scratch_level, Kokkos::PerTeam(bytes)),
           *this);
  }

  /// What one group of sub-steps of one team needs besides the column(s).
  struct Group {
    const Real* rows;      ///< (n + 1) x K: the keys, then the query
    const Real* products;  ///< (n + 1) x (n + 1): row a, column b < a holds row_a . row_b
    std::int64_t sequence;
    int head, first;       ///< value head; first sub-step of the group
    Real decay;            ///< exp(g) in the token's first group, 1 after it
    bool reads_out;        ///< the token's last group: write o
  };

  /// From the column products (sums[j] = k_j . s for the group's sub-steps, sums[GS] = q . s,
  /// for W columns from e, `width` of them real) the corrections u[j].
  template <int GS, int W>
  KOKKOS_INLINE_FUNCTION void corrections(const Group& group, int e, int width,
                                          const Real (&sums)[GS + 1][W], Real (&u)[GS][W]) const {
    const int stride = n + 1;
    for (int j = 0; j < GS; ++j) {
      const int jj = group.first + j;
      const Real step = widen(beta(group.sequence, jj, group.head));
      for (int w = 0; w < W; ++w) {
        Real projection = group.decay * sums[j][w];
        for (int i = 0; i < j; ++i)
          projection += group.products[jj * stride + group.first + i] * u[i][w];
        const Real value = w < width ? widen(v(group.sequence, jj, group.head, e + w)) : Real(0);
        u[j][w] = step * (value - projection);
      }
    }
  }

  /// o[e .. e + width) = scale q . s_n, from the same sums and the corrections.
  template <int GS, int W>
  KOKKOS_INLINE_FUNCTION void read_out(const Group& group, int e, int width,
                                       const Real (&sums)[GS + 1][W],
                                       const Real (&u)[GS][W]) const {
    const Real* query_products = group.products + n * (n + 1) + group.first;
    for (int w = 0; w < width && w < W; ++w) {
      Real out = group.decay * sums[GS][w];
      for (int j = 0; j < GS; ++j) out += query_products[j] * u[j][w];
      output(group.sequence, group.head, e + w) = narrow<Scalar>(scale * out);
    }
  }

  /// Host spaces: one group of sub-steps on a tile of W columns of the state, `column` pointing
  /// at its row 0; the first `width` of them are the state's columns [e, e + width) (the others
  /// padding, see operator()).
  template <int GS, int W>
  KOKKOS_INLINE_FUNCTION void host_group(const Group& group, Real* column, std::int64_t row_stride,
                                         int e, int width) const {
    constexpr int w_end = W;
    const Real* query = group.rows + std::int64_t(n) * key_dim;
    const Real* keys = group.rows + std::int64_t(group.first) * key_dim;
    Real sums[GS + 1][W] = {};
    for (int d = 0; d < key_dim; ++d) {
      const Real* row = column + d * row_stride;
      for (int j = 0; j < GS; ++j) {
        const Real key = keys[j * key_dim + d];
        for (int w = 0; w < w_end; ++w) sums[j][w] += key * row[w];
      }
      const Real query_d = query[d];
      for (int w = 0; w < w_end; ++w) sums[GS][w] += query_d * row[w];
    }
    Real u[GS][W];
    corrections<GS, W>(group, e, width, sums, u);
    if (group.reads_out) read_out<GS, W>(group, e, width, sums, u);
    for (int d = 0; d < key_dim; ++d) {
      Real* row = column + d * row_stride;
      Real updated[W];
      for (int w = 0; w < w_end; ++w) updated[w] = group.decay * row[w];
      for (int j = 0; j < GS; ++j) {
        const Real key = keys[j * key_dim + d];
        for (int w = 0; w < w_end; ++w) updated[w] += key * u[j][w];
      }
      for (int w = 0; w < w_end; ++w) row[w] = updated[w];
    }
  }

  /// Device spaces: one group of sub-steps on column e, the calling thread's vector lanes
  /// splitting its rows.
  template <int GS>
  KOKKOS_INLINE_FUNCTION void device_group(const member_type& member, const Group& group,
                                           Real* column, std::int64_t row_stride, int e) const {
    const Real* query = group.rows + std::int64_t(n) * key_dim;
    const Real* keys = group.rows + std::int64_t(group.first) * key_dim;
    decode::Sums<GS + 1, Real> total;
    Kokkos::parallel_reduce(
        Kokkos::ThreadVectorRange(member, key_dim),
        [&](const int d, decode::Sums<GS + 1, Real>& partial) {
          const Real x = column[d * row_stride];
          for (int j = 0; j < GS; ++j) partial.value[j] += keys[j * key_dim + d] * x;
          partial.value[GS] += query[d] * x;
        },
        total);
    Real sums[GS + 1][1], u[GS][1];
    for (int j = 0; j <= GS; ++j) sums[j][0] = total.value[j];
    corrections<GS, 1>(group, e, 1, sums, u);  // on every lane: each updates its rows
    if (group.reads_out)
      Kokkos::single(Kokkos::PerThread(member), [&]() { read_out<GS, 1>(group, e, 1, sums, u); });
    Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, key_dim), [&](const int d) {
      Real x = group.decay * column[d * row_stride];
      for (int j = 0; j < GS; ++j) x += keys[j * key_dim + d] * u[j][0];
      column[d * row_stride] = x;
    });
  }

  /// One group of GS = min(max_group, n - first) sub-steps on the columns [e, e + width).
  template <int W>
  KOKKOS_INLINE_FUNCTION void group_on_columns(const member_type& member, const Group& group,
                                               Real* column, std::int64_t row_stride, int e,
                                               int width) const {
    const int size = n - group.first < decode::max_group ? n - group.first : decode::max_group;
    if constexpr (on_host) {
      switch (size) {
        case 1: return host_group<1, W>(group, column, row_stride, e, width);
        case 2: return host_group<2, W>(group, column, row_stride, e, width);
        case 3: return host_group<3, W>(group, column, row_stride, e, width);
        default: return host_group<4, W>(group, column, row_stride, e, width);
      }
    } else {
      (void)width;
      switch (size) {
        case 1: return device_group<1>(member, group, column, row_stride, e);
        case 2: return device_group<2>(member, group, column, row_stride, e);
        case 3: return device_group<3>(member, group, column, row_stride, e);
        default: return device_group<4>(member, group, column, row_stride, e);
      }
    }
  }

  /// Every group of the token on the columns [e, e + width).
  template <int W>
  KOKKOS_INLINE_FUNCTION void token_on_columns(const member_type& member, Group group,
                                               Real* column, std::int64_t row_stride, int e,
                                               int width) const {
    const Real decay = group.decay;
    for (int first = 0; first < n; first += decode::max_group) {
      group.first = first;
      group.decay = first == 0 ? decay : Real(1);
      group.reads_out = first + decode::max_group >= n;
      group_on_columns<W>(member, group, column, row_stride, e, width);
    }
  }

  KOKKOS_INLINE_FUNCTION void operator()(const member_type& member) const {
    const std::int64_t unit = member.league_rank();
    const int block = int(unit % value_blocks);
    const int h = int((unit / value_blocks) % value_heads);
    const std::int64_t seq = unit / (std::int64_t(value_blocks) * value_heads);
    const int c = h / head_group;  // the query/key head of value head h
    const int e0 = block * value_block;
    const int width = value_dim - e0 < value_block ? value_dim - e0 : value_block;

    const auto& scratch = member.team_scratch(scratch_level);
    // rows: the keys and the query, then (host spaces) room for a padded K x W tile.
    Tile rows(scratch, n + 1 + padding_rows, key_dim);
    Tile products(scratch, n + 1, n + 1);

    // The keys and the query, widened and normalised.
    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, n + 1), [&](const int r) {
      const Scalar* source = r < n ? &k(seq, r, c, 0) : &q(seq, c, 0);
      Real factor = 1;
      if (normalise) {
        Real sum = 0;
        Kokkos::parallel_reduce(
            Kokkos::ThreadVectorRange(member, key_dim),
            [&](const int d, Real& partial) {
              const Real x = widen(source[d]);
              partial += x * x;
            },
            sum);
        factor = Real(1) / compat::sqrt(sum + Real(l2_norm_eps));
      }
      team::scaled_row(member, &rows(r, 0), source, key_dim, factor);
    });
    member.team_barrier();
    // Their products: row a . row b for b < a.
    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, (n + 1) * (n + 1)), [&](const int p) {
      const int a = p / (n + 1), b = p % (n + 1);
      if (b >= a) return;
      Real dot = 0;
      Kokkos::parallel_reduce(
          Kokkos::ThreadVectorRange(member, key_dim),
          [&](const int d, Real& partial) { partial += rows(a, d) * rows(b, d); }, dot);
      Kokkos::single(Kokkos::PerThread(member), [&]() { products(a, b) = dot; });
    });
    member.team_barrier();

    Group group{rows.data(), products.data(), seq, h, 0,
                g.data() ? compat::exp(g(seq, h)) : Real(1), false};
    const std::int64_t row_stride = std::int64_t(state.stride_2());
    Real* const first_column = &state(seq, h, 0, e0);
    if constexpr (on_host) {
      constexpr int W = decode::host_tile<Real>;
      int e = 0;
      for (; e + W <= width; e += W)
        token_on_columns<W>(member, group, first_column + e, row_stride, e0 + e, W);
      if (e < width) {
        // The last, narrower tile goes through the same code on a copy padded with zero
        // columns, so that a column's bits do not depend on its place in the blocks.
        const int rest = width - e;
        Real* const padded = &rows(0, 0) + (n + 1) * key_dim;  // K x W after the rows
        for (int d = 0; d < key_dim; ++d)
          for (int w = 0; w < W; ++w)
            padded[d * W + w] = w < rest ? first_column[d * row_stride + e + w] : Real(0);
        token_on_columns<W>(member, group, padded, W, e0 + e, rest);
        for (int d = 0; d < key_dim; ++d)
          for (int w = 0; w < rest; ++w) first_column[d * row_stride + e + w] = padded[d * W + w];
      }
    } else {
      Kokkos::parallel_for(Kokkos::TeamThreadRange(member, width), [&](const int e) {
        token_on_columns<1>(member, group, first_column + e, row_stride, e0 + e, 1);
      });
    }
  }
};

/// gdp::recurrent_step after the checks.
template <class ExecSpace, class Scalar>
void recurrent_step_unchecked(const DecodeInputs<Scalar, typename ExecSpace::memory_space>& in,
                              const DecodeState<Scalar, typename ExecSpace::memory_space>& state,
                              const DecodeOutput<Scalar, typename ExecSpace::memory_space>& o,
                              const DecodeShape& shape, const DecodeOptions& options) {
  RecurrentStep<ExecSpace, Scalar> step(in, state, o, shape, options,
                                        decode_value_block<ExecSpace>(shape, options));
  step.run(shape.sequences);
}

}  // namespace gdp::detail

namespace gdp {

template <class ExecSpace, class Scalar>
void recurrent_step(const DecodeInputs<Scalar, typename ExecSpace::memory_space>& inputs,
                    const DecodeState<Scalar, typename ExecSpace::memory_space>& state,
                    const DecodeOutput<Scalar, typename ExecSpace::memory_space>& o,
                    const DecodeOptions& options) {
  const detail::DecodeShape shape = detail::check_decode_inputs(inputs, state, o, options);
  detail::recurrent_step_unchecked<ExecSpace, Scalar>(inputs, state, o, shape, options);
}

}  // namespace gdp

/// The decode step for one execution space and one storage type, after `prefix`
/// (common/explicit_instances.hpp).
#define GDP_DECODE_INSTANCES(prefix, ExecSpace, Scalar)             \
  prefix void gdp::recurrent_step<ExecSpace, Scalar>(               \
      const ::gdp::DecodeInputs<Scalar, ExecSpace::memory_space>&,  \
      const ::gdp::DecodeState<Scalar, ExecSpace::memory_space>&,   \
      const ::gdp::DecodeOutput<Scalar, ExecSpace::memory_space>&, const ::gdp::DecodeOptions&)

/// Instantiates the decode step for one execution space and every storage type.
#define GDP_INSTANTIATE_DECODE(ExecSpace)  \
  GDP_FOR_EACH_STORAGE(GDP_DECODE_INSTANCES, template, ExecSpace)
#define GDP_DECLARE_DECODE(ExecSpace)  \
  GDP_FOR_EACH_STORAGE(GDP_DECODE_INSTANCES, extern template, ExecSpace)
GDP_FOR_EACH_ENABLED_SPACE(GDP_DECLARE_DECODE)
