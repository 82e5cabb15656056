// SPDX-License-Identifier: Apache-2.0
// Bitwise comparison of two results, for the tests that promise the same bits (repeated calls,
// reused workspace blocks, the backward into caller-owned gradients).
#pragma once

#include <gdp/backward.hpp>

#include <Kokkos_Core.hpp>
#include <gtest/gtest.h>

#include <cstring>

namespace gdp::test {

/// Expects `a` and `b` (views of one type, any memory space, both null or both not) to hold
/// the same bytes.
template <class View>
void expect_same_bits(const char* name, const View& a, const View& b) {
  ASSERT_EQ(a.data() != nullptr, b.data() != nullptr) << name;
  if (!a.data()) return;
  const auto x = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), a);
  const auto y = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), b);
  ASSERT_EQ(x.size(), y.size()) << name;
  EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * sizeof(*x.data())), 0)
      << name << " differs";
}

/// Expects every gradient of `a` and `b` to hold the same bytes.
template <class Scalar, class MemorySpace>
void expect_same_bits(const InputGradients<Scalar, MemorySpace>& a,
                      const InputGradients<Scalar, MemorySpace>& b) {
  expect_same_bits("dq", a.dq, b.dq);
  expect_same_bits("dk", a.dk, b.dk);
  expect_same_bits("dv", a.dv, b.dv);
  expect_same_bits("dbeta", a.dbeta, b.dbeta);
  expect_same_bits("dg", a.dg, b.dg);
  expect_same_bits("dh0", a.dh0, b.dh0);
}

}  // namespace gdp::test
