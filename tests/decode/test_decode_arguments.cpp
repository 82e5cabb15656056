// SPDX-License-Identifier: Apache-2.0
// Every argument rule of the decode step has a test that checks its message, through the
// public entry point, and that a rejected call leaves the state and o as they were.
#include <gdp/decode.hpp>

#include "common/expect_rejected.hpp"
#include "decode/decode_arguments.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>

namespace gdp::test {
namespace {

using Space = Kokkos::DefaultHostExecutionSpace;
using Memory = Space::memory_space;
template <class T>
using View = Kokkos::View<T, Kokkos::LayoutRight, Memory>;

/// N = 2, Hqk = 2, Hv = 4, K = 4, V = 5, n = 2, gated; every element 0.25, the state 1.
struct ValidStep {
  View<double***> q{"q", 2, 2, 4};
  View<double****> k{"k", 2, 2, 2, 4}, v{"v", 2, 2, 4, 5};
  View<double***> beta{"beta", 2, 2, 4};
  View<double**> g{"g", 2, 4};
  View<double****> state{"state", 2, 4, 4, 5};
  View<double***> o{"o", 2, 4, 5};
  DecodeOptions options;

  ValidStep() {
    for (auto* x : {&q, &beta}) Kokkos::deep_copy(*x, 0.25);
    for (auto* x : {&k, &v}) Kokkos::deep_copy(*x, 0.25);
    Kokkos::deep_copy(g, -0.5);
    Kokkos::deep_copy(state, 1.0);
    Kokkos::deep_copy(o, 7.0);
    options.num_householder = 2;
  }
  DecodeInputs<double, Memory> inputs() const { return {q, k, v, beta, g}; }
};

/// Expects the step to throw for `argument` with every fragment in its message, and the
/// state and o to be untouched.
void expect_step_rejected(const ValidStep& step, const DecodeInputs<double, Memory>& in,
                          const View<double****>& state, const View<double***>& o,
                          const DecodeOptions& options, const std::string& argument,
                          std::initializer_list<std::string> fragments) {
  expect_rejected([&] { recurrent_step<Space, double>(in, state, o, options); }, argument,
                  fragments);
  Space().fence();
  for (std::size_t i = 0; i < step.state.size(); ++i)
    ASSERT_EQ(step.state.data()[i], 1.0) << "the state changed";
  for (std::size_t i = 0; i < step.o.size(); ++i) ASSERT_EQ(step.o.data()[i], 7.0) << "o changed";
}

void expect_step_rejected(const ValidStep& step, const DecodeInputs<double, Memory>& in,
                          const std::string& argument, std::initializer_list<std::string> fragments) {
  expect_step_rejected(step, in, step.state, step.o, step.options, argument, fragments);
}

TEST(DecodeArguments, ValidStepRunsAndChangesState) {
  ValidStep step;
  recurrent_step<Space, double>(step.inputs(), step.state, step.o, step.options);
  Space().fence();
  EXPECT_NE(step.state(0, 0, 0, 0), 1.0);
  EXPECT_NE(step.o(0, 0, 0), 7.0);
  auto ungated = step.inputs();
  ungated.g = {};
  EXPECT_NO_THROW((recurrent_step<Space, double>(ungated, step.state, step.o, step.options)));
}

TEST(DecodeArguments, NumHouseholderAtLeastOne) {
  ValidStep step;
  DecodeOptions options = step.options;
  options.num_householder = 0;
  expect_step_rejected(step, step.inputs(), step.state, step.o, options, "num_householder",
                       {"expected >= 1", "got 0"});
}

TEST(DecodeArguments, ValueBlockNotNegative) {
  ValidStep step;
  DecodeOptions options = step.options;
  options.value_block = -3;
  expect_step_rejected(step, step.inputs(), step.state, step.o, options, "value_block",
                       {"expected >= 0", "got -3"});
}

TEST(DecodeArguments, ScaleFinite) {
  ValidStep step;
  DecodeOptions options = step.options;
  options.scale = std::numeric_limits<double>::infinity();
  expect_step_rejected(step, step.inputs(), step.state, step.o, options, "scale",
                       {"expected a finite value", "got inf"});
}

TEST(DecodeArguments, RequiredTensorsPresent) {
  ValidStep step;
  const auto missing = [&](const std::string& name, auto&& drop) {
    auto in = step.inputs();
    View<double****> state = step.state;
    View<double***> o = step.o;
    drop(in, state, o);
    expect_step_rejected(step, in, state, o, step.options, name,
                         {"required tensor is missing (null view)"});
  };
  missing("q", [](auto& in, auto&, auto&) { in.q = {}; });
  missing("k", [](auto& in, auto&, auto&) { in.k = {}; });
  missing("v", [](auto& in, auto&, auto&) { in.v = {}; });
  missing("beta", [](auto& in, auto&, auto&) { in.beta = {}; });
  missing("state", [](auto&, auto& state, auto&) { state = {}; });
  missing("o", [](auto&, auto&, auto& o) { o = {}; });
}

TEST(DecodeArguments, QueryExtentsAtLeastOne) {
  const auto tensor = [](const char* name, std::vector<std::int64_t> dims) {
    return detail::TensorExtents{name, true, std::move(dims)};
  };
  expect_rejected(
      [&] {
        detail::check_decode_arguments(tensor("q", {2, 0, 4}), tensor("k", {2, 1, 0, 4}),
                                       tensor("v", {2, 1, 4, 5}), tensor("beta", {2, 1, 4}),
                                       detail::TensorExtents{"g", false, {}},
                                       tensor("state", {2, 4, 4, 5}), tensor("o", {2, 4, 5}), {});
      },
      "q", {"expected shape [N, Hqk, K] with every extent >= 1", "got [2, 0, 4]"});
}

TEST(DecodeArguments, ValueShape) {
  ValidStep step;
  auto in = step.inputs();
  in.v = View<double****>("v", 3, 2, 4, 5);
  expect_step_rejected(step, in, "v", {"expected shape [N, n, Hv, V] = [2, 2, Hv >= 1, V >= 1]",
                                       "got [3, 2, 4, 5]"});
  in.v = View<double****>("v", 2, 1, 4, 5);
  expect_step_rejected(step, in, "v", {"= [2, 2, Hv >= 1, V >= 1]", "got [2, 1, 4, 5]"});
}

TEST(DecodeArguments, ValueHeadsMultipleOfQueryHeads) {
  ValidStep step;
  auto in = step.inputs();
  in.v = View<double****>("v", 2, 2, 3, 5);
  expect_step_rejected(step, in, "v", {"expected Hv (extent 2) a multiple of Hqk = 2", "got Hv = 3"});
}

TEST(DecodeArguments, KeyShape) {
  ValidStep step;
  auto in = step.inputs();
  in.k = View<double****>("k", 2, 1, 2, 4);
  expect_step_rejected(step, in, "k", {"expected shape [N, n, Hqk, K] = [2, 2, 2, 4]", "got [2, 1, 2, 4]"});
  in.k = View<double****>("k", 2, 2, 4, 4);  // keys with Hv heads
  expect_step_rejected(step, in, "k", {"= [2, 2, 2, 4]", "got [2, 2, 4, 4]"});
}

TEST(DecodeArguments, BetaShape) {
  ValidStep step;
  auto in = step.inputs();
  in.beta = View<double***>("beta", 2, 2, 2);
  expect_step_rejected(step, in, "beta", {"expected shape [N, n, Hv] = [2, 2, 4]", "got [2, 2, 2]"});
}

TEST(DecodeArguments, GateShape) {
  ValidStep step;
  auto in = step.inputs();
  in.g = View<double**>("g", 2, 2);
  expect_step_rejected(step, in, "g", {"expected shape [N, Hv] = [2, 4]", "got [2, 2]"});
}

TEST(DecodeArguments, StateShape) {
  ValidStep step;
  View<double****> state("state", 2, 4, 5, 4);
  expect_step_rejected(step, step.inputs(), state, step.o, step.options, "state",
                       {"expected shape [N, Hv, K, V] = [2, 4, 4, 5]", "got [2, 4, 5, 4]"});
}

TEST(DecodeArguments, OutputShape) {
  ValidStep step;
  View<double***> o("o", 2, 2, 5);
  expect_step_rejected(step, step.inputs(), step.state, o, step.options, "o",
                       {"expected shape [N, Hv, V] = [2, 4, 5]", "got [2, 2, 5]"});
}

}  // namespace
}  // namespace gdp::test
