// SPDX-License-Identifier: Apache-2.0
// The chunked forward against the float64 naive recurrence, on every execution space and
// storage type.
#include <gdp/forward.hpp>

#include "common/forward_cases.hpp"
#include "common/test_dispatch.hpp"
#include "reference/error_norms.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>

namespace gdp::test {
namespace {

class ChunkedForward : public ::testing::TestWithParam<ForwardCase> {};

TEST_P(ChunkedForward, MatchesNaiveRecurrence) {
  const ForwardCase& c = GetParam();
  const auto& expected = naive_reference(c);
  for_each_space([&](auto space) {
    using ExecSpace = decltype(space);
    for_each_storage([&](auto storage, double tolerance) {
      using Scalar = decltype(storage);
      const auto owned = make_random_problem<Scalar, typename ExecSpace::memory_space>(c.spec);
      const auto result = chunk_gated_delta_product<ExecSpace, Scalar>(owned.inputs(), c.options);
      const double error_o = reference::relative_error(result.o, expected.o);
      EXPECT_LE(error_o, tolerance) << "o";
      if (std::getenv("GDP_TEST_PRINT_ERRORS"))
        std::printf("%s %s %s o %.3e ht %.3e\n", c.name.c_str(), ExecSpace::name(), storage_name<Scalar>(), error_o,
                    c.options.output_final_state ? reference::relative_error(result.final_state, expected.final_state) : 0.0);
      if (c.options.output_final_state)
        EXPECT_LE(reference::relative_error(result.final_state, expected.final_state), tolerance)
            << "final state";
      else
        EXPECT_EQ(result.final_state.data(), nullptr);
    });
  });
}

std::string case_name(const ::testing::TestParamInfo<ForwardCase>& info) {
  return info.param.name;
}

INSTANTIATE_TEST_SUITE_P(FlaShapes, ChunkedForward, ::testing::ValuesIn(fla_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(EdgeCases, ChunkedForward, ::testing::ValuesIn(edge_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(GroupedHeads, ChunkedForward, ::testing::ValuesIn(grouped_cases()),
                         case_name);

}  // namespace
}  // namespace gdp::test
