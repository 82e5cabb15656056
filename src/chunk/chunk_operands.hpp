// SPDX-License-Identifier: Apache-2.0
// Read access to the operator's inputs on the flattened token / expanded-position axes, in
// the accumulation type, with the optional L2 normalisation applied as a per-row factor.
// Shared by every stage of the forward and the backward so that each reads its operands the
// same way.
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

  view<const Scalar***> q;     ///< [total_tokens, H, K]
  view<const Scalar***> k;     ///< [total_positions, H, K]
  view<const Scalar***> v;     ///< [total_positions, H, V]
  view<const Scalar**> beta;   ///< [total_positions, H]
  view<const accumulator_type**> g;  ///< [total_tokens, H], null when ungated
  /// 1 / sqrt(|x|^2 + eps) per row of q and k; null when L2 normalisation is off.
  Kokkos::View<accumulator_type**, Kokkos::LayoutRight, MemorySpace> query_norm, key_norm;
  int num_householder = 1;
  accumulator_type scale = 1;

  ChunkOperands() = default;
  ChunkOperands(const ForwardInputs<Scalar, MemorySpace>& in, const ProblemShape& shape,
                double read_out_scale)
      : q(in.q.data(), shape.total_tokens(), shape.heads, shape.key_dim),
        k(in.k.data(), shape.total_positions(), shape.heads, shape.key_dim),
        v(in.v.data(), shape.total_positions(), shape.heads, shape.value_dim),
        beta(in.beta.data(), shape.total_positions(), shape.heads),
        g(in.g.data(), shape.gated ? shape.total_tokens() : 0, shape.heads),
        num_householder(shape.num_householder),
        scale(accumulator_type(read_out_scale)) {}

  int key_dim() const { return int(k.extent(2)); }
  int value_dim() const { return int(v.extent(2)); }
  int heads() const { return int(k.extent(1)); }

  /// Factor that turns row t of q into its normalised form (1 without normalisation).
  KOKKOS_INLINE_FUNCTION accumulator_type query_factor(std::int64_t t, int h) const {
    return query_norm.data() ? query_norm(t, h) : accumulator_type(1);
  }
  KOKKOS_INLINE_FUNCTION accumulator_type key_factor(std::int64_t p, int h) const {
    return key_norm.data() ? key_norm(p, h) : accumulator_type(1);
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
