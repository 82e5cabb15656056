// SPDX-License-Identifier: Apache-2.0
// The chunked backward against the float64 naive adjoint, on every execution space and
// storage type, every gradient the case has; and the training step (the forward that saves for
// the backward, then the backward from it) against the forward's reference and the
// recomputing backward.
#include <gdp/backward.hpp>

#include "backward/backward_cases.hpp"
#include "common/same_bits.hpp"
#include "common/test_dispatch.hpp"
#include "reference/error_norms.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace gdp::test {
namespace {

/// 1e-9 in double, 1e-3 in float. With 16-bit storage the inputs and do are rounded to 16
/// bits before the backward sees them while the reference keeps them exact; the gradients
/// amplify that rounding (they are products of several rounded inputs), hence 2e-2.
constexpr StorageTolerances backward_tolerances{1e-9, 1e-3, 2e-2};

class ChunkedBackward : public ::testing::TestWithParam<ForwardCase> {};

TEST_P(ChunkedBackward, MatchesNaiveAdjoint) {
  const ForwardCase& c = GetParam();
  const auto& expected = backward_reference(c);
  const bool print = std::getenv("GDP_TEST_PRINT_ERRORS") != nullptr;
  for_each_space([&](auto space) {
    using ExecSpace = decltype(space);
    using Memory = typename ExecSpace::memory_space;
    for_each_storage(
        [&](auto storage, double tolerance) {
          using Scalar = decltype(storage);
          const auto inputs = make_random_problem<Scalar, Memory>(c.spec);
          const auto upstream =
              make_random_output_gradients<Scalar, Memory>(c.spec, c.options.output_final_state);
          const auto result = chunk_gated_delta_product_backward<ExecSpace, Scalar>(
              inputs.inputs(), upstream.gradients(), c.options);
          const auto check = [&](const char* name, const auto& actual, const auto& reference) {
            const double error = reference::relative_error(actual, reference);
            EXPECT_LE(error, tolerance) << name;
            if (print)
              std::printf("%s %s %s %s %.3e\n", c.name.c_str(), ExecSpace::name(),
                          storage_name<Scalar>(), name, error);
          };
          check("dq", result.dq, expected.dq);
          check("dk", result.dk, expected.dk);
          check("dv", result.dv, expected.dv);
          check("dbeta", result.dbeta, expected.dbeta);
          ASSERT_EQ(result.dg.data() != nullptr, c.spec.gated);
          if (c.spec.gated) check("dg", result.dg, expected.dg);
          ASSERT_EQ(result.dh0.data() != nullptr, c.spec.initial_state);
          if (c.spec.initial_state) check("dh0", result.dh0, expected.dh0);
        },
        backward_tolerances);
  });
}

/// A training step: the forward that saves for the backward reads out what the forward does,
/// and the backward from what it saved gives the recomputing backward's bits; each allocating
/// or into the caller's views.
class SavedForwardBackward : public ::testing::TestWithParam<ForwardCase> {};

TEST_P(SavedForwardBackward, MatchesTheRecomputingBackward) {
  const ForwardCase& c = GetParam();
  const auto& expected = naive_reference(c);
  for_each_space([&](auto space) {
    using ExecSpace = decltype(space);
    using Memory = typename ExecSpace::memory_space;
    for_each_storage([&](auto storage, double tolerance) {
      using Scalar = decltype(storage);
      const auto inputs = make_random_problem<Scalar, Memory>(c.spec);
      const auto upstream =
          make_random_output_gradients<Scalar, Memory>(c.spec, c.options.output_final_state);
      SavedForward<Scalar, Memory> saved;
      const auto outputs =
          chunk_gated_delta_product_for_backward<ExecSpace, Scalar>(inputs.inputs(), c.options, saved);
      ASSERT_FALSE(saved.empty());
      EXPECT_LE(reference::relative_error(outputs.o, expected.o), tolerance) << "o";
      ASSERT_EQ(outputs.final_state.data() != nullptr, c.options.output_final_state);
      if (c.options.output_final_state)
        EXPECT_LE(reference::relative_error(outputs.final_state, expected.final_state), tolerance)
            << "final state";
      const auto recomputed = chunk_gated_delta_product_backward<ExecSpace, Scalar>(
          inputs.inputs(), upstream.gradients(), c.options);
      expect_same_bits(recomputed, chunk_gated_delta_product_backward<ExecSpace, Scalar>(
                                       inputs.inputs(), upstream.gradients(), saved));
      // Twice from one SavedForward, the second into the first's gradients.
      const auto into = chunk_gated_delta_product_backward<ExecSpace, Scalar>(
          inputs.inputs(), upstream.gradients(), saved);
      chunk_gated_delta_product_backward_into<ExecSpace, Scalar>(inputs.inputs(),
                                                                 upstream.gradients(), saved, into);
      expect_same_bits(recomputed, into);
      // Into the caller's outputs: the same outputs, and a SavedForward as good.
      ForwardResult<Scalar, Memory> caller;
      caller.o = decltype(caller.o)("o", outputs.o.layout());
      if (c.options.output_final_state)
        caller.final_state = decltype(caller.final_state)("ht", outputs.final_state.layout());
      SavedForward<Scalar, Memory> saved_into;
      chunk_gated_delta_product_for_backward_into<ExecSpace, Scalar>(inputs.inputs(), c.options,
                                                                     caller, saved_into);
      expect_same_bits("o", outputs.o, caller.o);
      expect_same_bits("ht", outputs.final_state, caller.final_state);
      expect_same_bits(recomputed, chunk_gated_delta_product_backward<ExecSpace, Scalar>(
                                       inputs.inputs(), upstream.gradients(), saved_into));
    });
  });
}

std::string case_name(const ::testing::TestParamInfo<ForwardCase>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(Cases, ChunkedBackward, ::testing::ValuesIn(backward_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(GroupedHeads, ChunkedBackward, ::testing::ValuesIn(grouped_cases()),
                         case_name);
INSTANTIATE_TEST_SUITE_P(FlaShapes, ChunkedBackward, ::testing::ValuesIn(backward_long_cases()),
                         case_name);
/// The backward's own cases (gated and not, h0 and dht or not, varlen, blocks of value
/// columns, chunks of 32) and grouped value heads: a training step's paths, at a fraction of
/// the suite's time.
std::vector<ForwardCase> saved_forward_cases() {
  std::vector<ForwardCase> cases;
  for (const ForwardCase& c : backward_cases())
    for (const char* part : {"gated", "_n", "value_blocks"})
      if (c.name.find(part) != std::string::npos) {
        cases.push_back(c);
        break;
      }
  cases.push_back(grouped_cases().back());
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Cases, SavedForwardBackward, ::testing::ValuesIn(saved_forward_cases()),
                         case_name);
INSTANTIATE_TEST_SUITE_P(FlaShapes, SavedForwardBackward,
                         ::testing::ValuesIn(backward_long_cases()), case_name);

}  // namespace
}  // namespace gdp::test
