// SPDX-License-Identifier: Apache-2.0
// Every test program starts Kokkos once around the whole GoogleTest run, with every later
// allocation poisoned (common/poisoned_allocations.hpp).
#include "common/poisoned_allocations.hpp"

#include <Kokkos_Core.hpp>
#include <gtest/gtest.h>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  Kokkos::ScopeGuard kokkos(argc, argv);
  gdp::test::poison_every_allocation();
  return RUN_ALL_TESTS();
}
