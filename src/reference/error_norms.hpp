// SPDX-License-Identifier: Apache-2.0
// How far a result is from the ground truth: relative Frobenius error, on the host in double.
#pragma once

#include <gdp/storage_types.hpp>

#include <Kokkos_Core.hpp>

#include <cmath>
#include <limits>

namespace gdp::reference {

/// |a - b|_F / |b|_F over all elements (|a - b|_F when b is zero). `a` may live in any memory
/// space and hold any storage type; `b` is the host reference. Non-finite values give +inf.
template <class AView, class BView>
double relative_error(const AView& a, const BView& b) {
  const auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), a);
  double difference = 0, norm = 0;
  for (std::size_t i = 0; i < b.size(); ++i) {
    const double x = static_cast<double>(widen(host.data()[i])), y = b.data()[i];
    if (!std::isfinite(x)) return std::numeric_limits<double>::infinity();
    difference += (x - y) * (x - y);
    norm += y * y;
  }
  return norm > 0 ? std::sqrt(difference / norm) : std::sqrt(difference);
}

}  // namespace gdp::reference
