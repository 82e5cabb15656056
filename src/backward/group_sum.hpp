// SPDX-License-Identifier: Apache-2.0
// Stage 5 of the backward with grouped value heads (H = group * Hqk): every value head of a
// group reads the same q/k rows, so dq and dk of a q/k head are sums over its group's value
// heads. ChunkGradients writes each value head's share, in the accumulation type, to a
// [rows, H, K] array of partials; this stage adds the group's partials in value-head order and
// rounds once to the storage type. The order is fixed, so the sums are the same bits on every
// run and every execution space's thread count (no atomics).
#pragma once

#include <gdp/storage_types.hpp>

#include "common/launch.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace gdp::detail {

/// sums(r, hq, d) = sum over i < group, in order, of partials(r, hq * group + i, d).
template <class ExecSpace, class PartialView, class SumView>
void sum_head_groups(const char* label, const PartialView& partials, const SumView& sums) {
  using Scalar = typename SumView::non_const_value_type;
  using Real = typename PartialView::non_const_value_type;
  const std::int64_t rows = std::int64_t(sums.extent(0)), qk_heads = std::int64_t(sums.extent(1)),
                     dim = std::int64_t(sums.extent(2));
  const int group = int(partials.extent(1) / sums.extent(1));
  launch(label, Kokkos::RangePolicy<ExecSpace>(0, rows * qk_heads * dim),
         KOKKOS_LAMBDA(const std::int64_t index) {
           const std::int64_t d = index % dim, row_head = index / dim;
           const std::int64_t hq = row_head % qk_heads, r = row_head / qk_heads;
           Real sum = 0;
           for (int i = 0; i < group; ++i) sum += partials(r, hq * group + i, d);
           sums(r, hq, d) = narrow<Scalar>(sum);
         });
}

}  // namespace gdp::detail
