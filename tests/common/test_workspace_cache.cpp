// SPDX-License-Identifier: Apache-2.0
// The workspace cache (include/gdp/workspace.hpp, src/common/workspace_cache.hpp): which block
// a call gets, what is freed when, and that the operator reuses its blocks across calls.
#include <gdp/backward.hpp>
#include <gdp/forward.hpp>
#include <gdp/workspace.hpp>

#include "common/random_problem.hpp"
#include "common/same_bits.hpp"
#include "common/workspace_cache.hpp"

#include <Kokkos_Core.hpp>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <tuple>

namespace gdp {
namespace {

using Memory = Kokkos::HostSpace;
using Lease = detail::WorkspaceLease<Memory>;
using Carver = detail::WorkspaceCarver<Memory>;

constexpr std::size_t MiB = std::size_t(1) << 20;

class WorkspaceCache : public ::testing::Test {
 protected:
  // Every case starts from an empty cache, whatever ran before it in this program.
  void SetUp() override { release_cached_workspaces(); }
  void TearDown() override {
    set_workspace_caching(true);
    release_cached_workspaces();
  }
};

TEST_F(WorkspaceCache, ReusesTheBlockOfAnEndedCallAndPoisonsItAgain) {
  void* first = nullptr;
  {
    const Lease lease(MiB);
    first = lease.data();
    std::memset(first, 0, MiB);
  }
  EXPECT_EQ(cached_workspace_bytes(), MiB);
  const Lease again(MiB);
  EXPECT_EQ(again.data(), first);
  EXPECT_EQ(cached_workspace_bytes(), MiB);
  // The test programs' handout observer (common/poisoned_allocations.hpp) fills it with 0xFF,
  // as it does a new block: scratch left by the last call must not pass for a result.
  const auto* bytes = static_cast<const unsigned char*>(again.data());
  EXPECT_EQ(bytes[0], 0xFF);
  EXPECT_EQ(bytes[MiB - 1], 0xFF);
}

TEST_F(WorkspaceCache, ANewBlockIsPoisonedWhole) {
  // Smaller than the View header that Kokkos Tools' allocation callback poisons instead of the
  // data (common/poisoned_allocations.hpp): only the handout observer reaches these bytes.
  constexpr std::size_t small = 64;
  const Lease lease(small);
  const auto* bytes = static_cast<const unsigned char*>(lease.data());
  for (std::size_t i = 0; i < small; ++i) ASSERT_EQ(bytes[i], 0xFF) << "byte " << i;
}

TEST_F(WorkspaceCache, ConcurrentCallsGetTheirOwnBlocks) {
  const Lease first(MiB), second(MiB);
  EXPECT_NE(first.data(), second.data());
  EXPECT_EQ(cached_workspace_bytes(), 2 * MiB);
}

TEST_F(WorkspaceCache, ASmallCallLeavesAMuchLargerBlockAlone) {
  { const Lease large(4 * MiB); }
  const Lease small(MiB);
  EXPECT_EQ(small.bytes(), MiB);
  EXPECT_EQ(cached_workspace_bytes(), 5 * MiB);
  // At most twice as large is taken.
  release_cached_workspaces();
  { const Lease block(2 * MiB); }
  const Lease half(MiB);
  EXPECT_EQ(half.bytes(), 2 * MiB);
}

TEST_F(WorkspaceCache, AMissFreesTheOutgrownBlocksOnly) {
  {
    const Lease small(MiB), outgrown(3 * MiB);
  }
  EXPECT_EQ(cached_workspace_bytes(), 4 * MiB);
  { const Lease large(4 * MiB); }
  // 3 MiB is at least half of 4: outgrown. 1 MiB serves calls the 4 MiB block would not take.
  EXPECT_EQ(cached_workspace_bytes(), 5 * MiB);
}

TEST_F(WorkspaceCache, ReleaseFreesOnlyBlocksNoCallUses) {
  const Lease in_use(MiB);
  { const Lease ended(3 * MiB); }
  EXPECT_EQ(cached_workspace_bytes(), 4 * MiB);
  release_cached_workspaces();
  EXPECT_EQ(cached_workspace_bytes(), MiB);
}

TEST_F(WorkspaceCache, TurnedOffEveryCallFreesItsBlock) {
  { const Lease cached(MiB); }
  set_workspace_caching(false);
  EXPECT_EQ(cached_workspace_bytes(), 0u);
  {
    const Lease own(MiB);
    EXPECT_EQ(cached_workspace_bytes(), MiB);
  }
  EXPECT_EQ(cached_workspace_bytes(), 0u);
}

TEST(WorkspaceCarver, CountsThenLaysOutAlignedDisjointViews) {
  const auto describe = [](Carver& carver) {
    const auto a = carver.view<float***>(3, 5, 7);
    const auto b = carver.view<double*>(1);
    const auto c = carver.view<unsigned long long>();
    return std::make_tuple(a, b, c);
  };
  Carver counting;
  const auto empty = describe(counting);
  EXPECT_EQ(std::get<0>(empty).data(), nullptr);
  EXPECT_EQ(counting.bytes(), 512u + 256u + 256u);  // 420 bytes, 8, 8, each to 256

  const Lease lease(counting.bytes());
  Carver carving(lease);
  const auto [a, b, c] = describe(carving);
  EXPECT_EQ(carving.bytes(), counting.bytes());
  const auto base = reinterpret_cast<std::uintptr_t>(lease.data());
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a.data()), base);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(b.data()), base + 512);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(c.data()), base + 768);
  EXPECT_EQ(a.extent(0), 3u);
  EXPECT_EQ(a.extent(2), 7u);
  EXPECT_EQ(&a(2, 4, 6) - a.data(), 104);  // LayoutRight

  // A view past the counted block is an internal error, never a write outside it.
  EXPECT_THROW(carving.view<float*>(1), std::logic_error);
}

TEST_F(WorkspaceCache, TheOperatorReusesItsBlocksAcrossCalls) {
  using Space = Kokkos::DefaultHostExecutionSpace;
  RandomProblemSpec spec;
  spec.batch = 2;
  spec.tokens = 40;
  spec.heads = 2;
  spec.key_dim = spec.value_dim = 8;
  spec.num_householder = 2;
  spec.initial_state = true;
  const auto owned = make_random_problem<float, Memory>(spec);
  ForwardOptions options;
  options.num_householder = 2;
  options.chunk_size = 16;
  options.output_final_state = true;

  const auto first = chunk_gated_delta_product<Space>(owned.inputs(), options);
  const std::size_t after_forward = cached_workspace_bytes();
  EXPECT_GT(after_forward, 0u);

  OutputGradients<float, Memory> upstream;
  upstream.o = first.o;
  upstream.final_state = first.final_state;
  const auto gradients = chunk_gated_delta_product_backward<Space>(owned.inputs(), upstream, options);
  const std::size_t after_backward = cached_workspace_bytes();
  EXPECT_GT(after_backward, after_forward);

  // The same calls again take the blocks the first ones left and allocate nothing more, and
  // give the same bits from reused (poisoned again) blocks as from fresh ones.
  const auto second = chunk_gated_delta_product<Space>(owned.inputs(), options);
  const auto gradients_again =
      chunk_gated_delta_product_backward<Space>(owned.inputs(), upstream, options);
  EXPECT_EQ(cached_workspace_bytes(), after_backward);
  test::expect_same_bits("o", first.o, second.o);
  test::expect_same_bits("ht", first.final_state, second.final_state);
  test::expect_same_bits(gradients, gradients_again);
}

}  // namespace
}  // namespace gdp
