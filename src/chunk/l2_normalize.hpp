// SPDX-License-Identifier: Apache-2.0
// The optional in-kernel L2 normalisation, as one factor per row: x / sqrt(|x|^2 + eps).
#pragma once

#include <gdp/storage_types.hpp>

#include "common/kokkos_compat.hpp"
#include "common/launch.hpp"

#include <Kokkos_Core.hpp>

namespace gdp::detail {

/// eps of the normalisation x / sqrt(|x|^2 + eps).
inline constexpr double l2_norm_eps = 1e-6;

/// 1 / sqrt(|x_{r,h}|^2 + eps) for every row r and head h of x [rows, H, D].
template <class ExecSpace, class XView>
Kokkos::View<accumulator_t<typename XView::non_const_value_type>**, Kokkos::LayoutRight,
             typename ExecSpace::memory_space>
inverse_l2_norms(const XView& x) {
  using Real = accumulator_t<typename XView::non_const_value_type>;
  const std::int64_t rows = x.extent(0), heads = x.extent(1), dim = x.extent(2);
  Kokkos::View<Real**, Kokkos::LayoutRight, typename ExecSpace::memory_space> factors(
      Kokkos::view_alloc(Kokkos::WithoutInitializing, "gdp::inverse_l2_norms"), rows, heads);
  launch("gdp::inverse_l2_norms", Kokkos::RangePolicy<ExecSpace>(0, rows * heads),
      KOKKOS_LAMBDA(const std::int64_t i) {
        const std::int64_t r = i / heads;
        const int h = int(i % heads);
        Real sum = 0;
        for (std::int64_t d = 0; d < dim; ++d) {
          const Real value = widen(x(r, h, d));
          sum += value * value;
        }
        factors(r, h) = Real(1) / compat::sqrt(sum + Real(l2_norm_eps));
      });
  return factors;
}

}  // namespace gdp::detail
