// SPDX-License-Identifier: Apache-2.0
// The hand-written adjoint of the naive recurrence against central finite differences of the
// recurrence itself, on problems small enough to perturb every input element.
#include "common/random_problem.hpp"
#include "reference/error_norms.hpp"
#include "reference/naive_backward.hpp"
#include "reference/naive_recurrence.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <ostream>
#include <string>
#include <vector>

namespace gdp::test {
namespace {

using Memory = Kokkos::HostSpace;

struct FiniteDifferenceCase {
  std::string name;
  RandomProblemSpec spec;
  ForwardOptions options;
  bool final_state_gradient = true;
};

std::ostream& operator<<(std::ostream& out, const FiniteDifferenceCase& c) { return out << c.name; }

/// The loss the gradients belong to: <do, o> + <dht, ht>.
double loss(const reference::ReferenceProblem<double>& problem,
            const reference::ReferenceOutputGradients& upstream) {
  const auto result = reference::naive_recurrence(problem);
  double sum = 0;
  for (std::size_t i = 0; i < result.o.size(); ++i)
    sum += result.o.data()[i] * upstream.o.data()[i];
  if (upstream.final_state.data())
    for (std::size_t i = 0; i < result.final_state.size(); ++i)
      sum += result.final_state.data()[i] * upstream.final_state.data()[i];
  return sum;
}

/// d loss / d x for every element x of `input` (a tensor of `problem`), by central differences.
template <class View>
Kokkos::View<double*, Memory> finite_differences(
    const reference::ReferenceProblem<double>& problem, const View& input,
    const reference::ReferenceOutputGradients& upstream) {
  constexpr double step = 1e-6;
  Kokkos::View<double*, Memory> gradient("finite_differences", input.size());
  for (std::size_t i = 0; i < input.size(); ++i) {
    double& x = input.data()[i];
    const double original = x;
    x = original + step;
    const double above = loss(problem, upstream);
    x = original - step;
    const double below = loss(problem, upstream);
    x = original;
    gradient(i) = (above - below) / (2 * step);
  }
  return gradient;
}

class NaiveBackward : public ::testing::TestWithParam<FiniteDifferenceCase> {};

TEST_P(NaiveBackward, MatchesFiniteDifferences) {
  const FiniteDifferenceCase& c = GetParam();
  const auto owned = make_random_problem<double, Memory>(c.spec);
  const auto problem = reference::make_reference_problem<double>(owned.inputs(), c.options);
  const auto upstream = reference::make_reference_output_gradients(
      make_random_output_gradients<double, Memory>(c.spec, c.final_state_gradient).gradients(),
      problem.shape);
  const auto analytic = reference::naive_backward(problem, upstream);

  constexpr double tolerance = 1e-6;
  const auto check = [&](const char* name, const auto& input, const auto& gradient) {
    const double error =
        reference::relative_error(gradient, finite_differences(problem, input, upstream));
    EXPECT_LE(error, tolerance) << name;
    if (std::getenv("GDP_TEST_PRINT_ERRORS"))
      std::printf("%s %s %.3e\n", c.name.c_str(), name, error);
  };
  check("dq", problem.q, analytic.dq);
  check("dk", problem.k, analytic.dk);
  check("dv", problem.v, analytic.dv);
  check("dbeta", problem.beta, analytic.dbeta);
  ASSERT_EQ(analytic.dg.data() != nullptr, c.spec.gated);
  if (c.spec.gated) check("dg", problem.g, analytic.dg);
  ASSERT_EQ(analytic.dh0.data() != nullptr, c.spec.initial_state);
  if (c.spec.initial_state) check("dh0", problem.h0, analytic.dh0);
}

std::vector<FiniteDifferenceCase> finite_difference_cases() {
  std::vector<FiniteDifferenceCase> cases;
  const auto add = [&](const std::string& name, auto&& adjust) {
    FiniteDifferenceCase c;
    c.name = name;
    c.spec.batch = 2;
    c.spec.tokens = 3;
    c.spec.heads = 2;
    c.spec.key_dim = 3;
    c.spec.value_dim = 2;
    c.spec.num_householder = c.options.num_householder = 2;
    c.spec.initial_state = true;
    adjust(c);
    c.spec.seed = std::hash<std::string>()(name);
    cases.push_back(c);
  };
  add("gated_n2_h0_dht", [](FiniteDifferenceCase&) {});
  add("ungated_n1_without_h0_and_dht", [](FiniteDifferenceCase& c) {
    c.spec.gated = false;
    c.spec.initial_state = false;
    c.final_state_gradient = false;
    c.spec.num_householder = c.options.num_householder = 1;
  });
  add("l2norm_n3", [](FiniteDifferenceCase& c) {
    c.spec.raw_keys = true;
    c.options.use_qk_l2norm = true;
    c.spec.num_householder = c.options.num_householder = 3;
  });
  add("varlen_with_empty_sequence_beta_up_to_two", [](FiniteDifferenceCase& c) {
    c.spec.batch = 1;
    c.spec.tokens = 5;
    c.spec.cu_seqlens = {0, 2, 2, 5};
    c.spec.beta_max = 2.0;
  });
  add("n4_beta_up_to_two_explicit_scale", [](FiniteDifferenceCase& c) {
    c.spec.tokens = 2;
    c.spec.beta_max = 2.0;
    c.spec.num_householder = c.options.num_householder = 4;
    c.options.scale = 0.7;
  });
  add("grouped_heads_l2norm", [](FiniteDifferenceCase& c) {
    c.spec.heads = 4;
    c.spec.qk_heads = 2;  // dq and dk sum two value heads each
    c.spec.raw_keys = true;
    c.options.use_qk_l2norm = true;
  });
  add("grouped_heads_one_qk_head_varlen", [](FiniteDifferenceCase& c) {
    c.spec.heads = 3;
    c.spec.qk_heads = 1;
    c.spec.batch = 1;
    c.spec.tokens = 4;
    c.spec.cu_seqlens = {0, 1, 4};
  });
  return cases;
}

std::string case_name(const ::testing::TestParamInfo<FiniteDifferenceCase>& info) {
  return info.param.name;
}

INSTANTIATE_TEST_SUITE_P(FiniteDifferences, NaiveBackward,
                         ::testing::ValuesIn(finite_difference_cases()), case_name);

}  // namespace
}  // namespace gdp::test
