// SPDX-License-Identifier: Apache-2.0
// The two references against each other and against values worked out by hand.
#include "common/forward_cases.hpp"
#include "reference/error_norms.hpp"
#include "reference/expanded_sequence.hpp"
#include "reference/naive_recurrence.hpp"

#include <gtest/gtest.h>

#include <cmath>

namespace gdp::test {
namespace {

using Memory = Kokkos::HostSpace;

TEST(NaiveRecurrence, OneTokenByHand) {
  // K = V = 1, n = 2, S0 = 0.5, g = log(0.5): S = 0.25, then two delta steps.
  RandomProblemSpec spec;
  spec.tokens = 1;
  spec.key_dim = spec.value_dim = 1;
  spec.num_householder = 2;
  spec.initial_state = true;
  auto owned = make_random_problem<double, Memory>(spec);
  owned.q(0, 0, 0, 0) = 2.0;
  owned.k(0, 0, 0, 0) = 1.0;
  owned.k(0, 1, 0, 0) = 0.5;
  owned.v(0, 0, 0, 0) = 3.0;
  owned.v(0, 1, 0, 0) = -1.0;
  owned.beta(0, 0, 0) = 0.5;
  owned.beta(0, 1, 0) = 1.0;
  owned.g(0, 0, 0) = std::log(0.5);
  owned.initial_state(0, 0, 0, 0) = 0.5;
  ForwardOptions options;
  options.num_householder = 2;
  options.scale = 0.5;
  const auto r = reference::naive_recurrence(reference::make_reference_problem<double>(owned.inputs(), options));
  double S = 0.25;
  S += 0.5 * 1.0 * (3.0 - S * 1.0);   // 1.625
  S += 1.0 * 0.5 * (-1.0 - S * 0.5);  // 0.71875
  EXPECT_DOUBLE_EQ(r.final_state(0, 0, 0, 0), S);
  EXPECT_DOUBLE_EQ(r.o(0, 0, 0), 0.5 * S * 2.0);
}

/// q or k [B, rows, Hqk, K] with every q/k head repeated for the `group` value heads that read
/// it: [B, rows, Hqk * group, K].
template <class View>
View repeated_heads(const View& x, std::int64_t group) {
  View out("repeated", x.extent(0), x.extent(1), x.extent(2) * group, x.extent(3));
  for (std::size_t b = 0; b < out.extent(0); ++b)
    for (std::size_t r = 0; r < out.extent(1); ++r)
      for (std::size_t h = 0; h < out.extent(2); ++h)
        for (std::size_t d = 0; d < out.extent(3); ++d) out(b, r, h, d) = x(b, r, h / group, d);
  return out;
}

// The convention of grouped value heads: value head h reads q/k head h / (H / Hqk), so a
// grouped problem is the ungrouped one with each q/k head repeated for its group.
TEST(NaiveRecurrence, GroupedHeadsReadTheirGroupsQueryKeyHead) {
  for (const ForwardCase& c : grouped_cases()) {
    if (c.spec.qk_heads == c.spec.heads) continue;
    SCOPED_TRACE(c.name);
    const auto grouped = make_random_problem<double, Memory>(c.spec);
    auto repeated = grouped;
    const std::int64_t group = c.spec.heads / c.spec.qk_heads;
    repeated.q = repeated_heads(grouped.q, group);
    repeated.k = repeated_heads(grouped.k, group);
    const auto expected =
        reference::naive_recurrence(reference::make_reference_problem<double>(repeated.inputs(), c.options));
    const auto& actual = naive_reference(c);
    EXPECT_EQ(reference::relative_error(actual.o, expected.o), 0.0);
    EXPECT_EQ(reference::relative_error(actual.final_state, expected.final_state), 0.0);
  }
}

class ExpandedSequence : public ::testing::TestWithParam<ForwardCase> {};

TEST_P(ExpandedSequence, MatchesNaiveRecurrence) {
  const ForwardCase& c = GetParam();
  const auto owned = make_random_problem<double, Memory>(c.spec);
  const auto problem = reference::make_reference_problem<double>(owned.inputs(), c.options);
  const auto expanded = reference::expanded_sequence_forward(problem, c.options.chunk_size);
  const auto& naive = naive_reference(c);
  EXPECT_LE(reference::relative_error(expanded.o, naive.o), 1e-10);
  EXPECT_LE(reference::relative_error(expanded.final_state, naive.final_state), 1e-10);
}

std::string case_name(const ::testing::TestParamInfo<ForwardCase>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(FlaShapes, ExpandedSequence, ::testing::ValuesIn(fla_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(EdgeCases, ExpandedSequence, ::testing::ValuesIn(edge_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(GroupedHeads, ExpandedSequence, ::testing::ValuesIn(grouped_cases()),
                         case_name);

}  // namespace
}  // namespace gdp::test
