// SPDX-License-Identifier: Apache-2.0
// Read access to the operator's inputs on the flattened token / expanded-position axes, in
// the accumulation type, with the optional L2 normalisation applied as a per-row factor.
// Shared by every stage of the forward and the backward so that each reads its operands the
// same way. The stages index by value head h; q and k may have fewer heads (grouped value
// heads), and query_row / key_row / query_factor / key_factor are the one place that maps a
// value head to the q/k head it reads: h / (H / Hqk).
#pragma once

#include <gdp/forward.hpp>

#include "common/problem_shape.hpp"

#include <Kokkos_Core.hpp>

namespace gdp::detail {

template <class Scalar, class MemorySpace>
struct ChunkOperands {
  using accumulator_type = accumulator_t<Scalar>;
  template <class T>
  using view = Kokkos::View<T, Kokkos::LayoutRight, MemorySpace,
                            Kokkos::MemoryTraits<Kokkos::Unmanaged>>;

  /// q [total_tokens, Hqk, K] and k [total_positions, Hqk, K]: the stages index by value head,
  /// so they read rows through query_row / key_row, never these directly.
  view<const Scalar***> query_rows;
  view<const Scalar***> key_rows;
  view<const Scalar***> v;     ///< [total_positions, H, V]
  view<const Scalar**> beta;   ///< [total_positions, H]
  view<const accumulator_type**> g;  ///< [total_tokens, H], null when ungated
  /// 1 / sqrt(|x|^2 + eps) per row of q and k ([rows, Hqk]); null when L2 normalisation is
  /// off.
  Kokkos::View<accumulator_type**, Kokkos::LayoutRight, MemorySpace> query_norm, key_norm;
  int num_householder = 1;
  int head_group = 1;  ///< value heads per q/k head, H / Hqk
  accumulator_type scale = 1;

  ChunkOperands() = default;
  /// Views of `in` with the read-out scale `options` resolve to; the L2 normalisation factors
  /// are left null for the caller to compute (make_operands) or take from a saved forward.
  ChunkOperands(const ForwardInputs<Scalar, MemorySpace>& in, const ProblemShape& shape,
                const ForwardOptions& options)
      : query_rows(in.q.data(), shape.total_tokens(), shape.qk_heads, shape.key_dim),
        key_rows(in.k.data(), shape.total_positions(), shape.qk_heads, shape.key_dim),
        v(in.v.data(), shape.total_positions(), shape.heads, shape.value_dim),
        beta(in.beta.data(), shape.total_positions(), shape.heads),
        g(in.g.data(), shape.gated ? shape.total_tokens() : 0, shape.heads),
        num_householder(shape.num_householder),
        head_group(int(shape.head_group())),
        scale(accumulator_type(resolved_scale(options, shape.key_dim))) {}

  int key_dim() const { return int(key_rows.extent(2)); }
  int value_dim() const { return int(v.extent(2)); }
  /// H, the value heads: the heads the stages walk.
  int heads() const { return int(v.extent(1)); }
  /// Hqk, the heads of q and k.
  int qk_heads() const { return int(key_rows.extent(1)); }

  /// The q/k head value head h reads.
  KOKKOS_INLINE_FUNCTION int qk_head(int h) const { return h / head_group; }
  /// Row t of q as value head h reads it (raw; scale by query_factor to normalise).
  KOKKOS_INLINE_FUNCTION const Scalar* query_row(std::int64_t t, int h) const {
    return &query_rows(t, qk_head(h), 0);
  }
  /// Row p of k as value head h reads it (raw; scale by key_factor to normalise).
  KOKKOS_INLINE_FUNCTION const Scalar* key_row(std::int64_t p, int h) const {
    return &key_rows(p, qk_head(h), 0);
  }
  /// Factor that turns row t of q, as value head h reads it, into its normalised form (1
  /// without normalisation).
  KOKKOS_INLINE_FUNCTION accumulator_type query_factor(std::int64_t t, int h) const {
    return query_norm.data() ? query_norm(t, qk_head(h)) : accumulator_type(1);
  }
  KOKKOS_INLINE_FUNCTION accumulator_type key_factor(std::int64_t p, int h) const {
    return key_norm.data() ? key_norm(p, qk_head(h)) : accumulator_type(1);
  }
  KOKKOS_INLINE_FUNCTION accumulator_type value(std::int64_t p, int h, int e) const {
    return widen(v(p, h, e));
  }
  KOKKOS_INLINE_FUNCTION accumulator_type step(std::int64_t p, int h) const {
    return widen(beta(p, h));
  }
  /// Log gate of expanded position p: g of its token at the token's first sub-step, else 0.
  KOKKOS_INLINE_FUNCTION accumulator_type log_gate(std::int64_t p, int h) const {
    return (g.data() && p % num_householder == 0) ? g(p / num_householder, h)
                                                  : accumulator_type(0);
  }
};

}  // namespace gdp::detail
