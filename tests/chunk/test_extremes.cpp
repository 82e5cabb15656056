// SPDX-License-Identifier: Apache-2.0
// Numerical extremes of the inputs, forward and backward against the float64 references on
// every execution space and storage type: total decay (g = -1e4), no decay (g = 0), beta = 0
// and beta = 2 everywhere, keys longer and shorter than 1 with and without the L2
// normalisation, and a long sequence (T = 65536, n = 4). Every output must be finite and
// within the bound stated for the case (docs/HARDENING.md lists them).
#include <gdp/backward.hpp>
#include <gdp/forward.hpp>

#include "backward/backward_cases.hpp"
#include "common/finite_check.hpp"
#include "common/forward_cases.hpp"
#include "common/test_dispatch.hpp"
#include "reference/error_norms.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace gdp::test {
namespace {

/// Relative Frobenius error bounds per storage. `forward` and `backward` hold against the
/// float64 references of the exact inputs, so they cover the rounding of the inputs to the
/// storage type as well as the arithmetic; the forward and the backward are also held to the
/// default bounds against the float64 recurrence and adjoint of the stored (rounded) inputs,
/// which leaves the arithmetic alone.
struct ExtremeCase {
  ForwardCase problem;
  StorageTolerances forward, backward;
};

std::ostream& operator<<(std::ostream& out, const ExtremeCase& c) { return out << c.problem.name; }

/// The default bounds of the forward and backward tests (test_forward.cpp, test_backward.cpp).
constexpr StorageTolerances forward_bounds = forward_tolerances;
constexpr StorageTolerances backward_bounds{1e-9, 1e-3, 2e-2};

/// B = 2, T = 37, H = 2, K = V = 16, n = 2, gated, h0, dht, adjusted by `adjust`.
template <class Adjust>
ExtremeCase extreme(const std::string& name, Adjust&& adjust,
                    StorageTolerances forward = forward_bounds,
                    StorageTolerances backward = backward_bounds) {
  ForwardCase c = fla_case(2, 37, 2, 16, 0, 2, false, true);
  c.name = name;
  adjust(c);
  c.spec.seed = std::hash<std::string>()(name);
  return {c, forward, backward};
}

std::vector<ExtremeCase> extreme_cases() {
  return {
      extreme("gate_total_decay", [](ForwardCase& c) { c.spec.gate_value = -1e4; }),
      extreme("gate_zero", [](ForwardCase& c) { c.spec.gate_value = 0.0; }),
      extreme("beta_zero", [](ForwardCase& c) { c.spec.beta_value = 0.0; }),
      extreme("beta_two", [](ForwardCase& c) { c.spec.beta_value = 2.0; }),
      // Pure reflections: nothing decays, so every rounding of the 16-bit inputs persists in
      // the state, and the inputs' rounding alone costs about 7e-3 (docs/HARDENING.md): the
      // bound of 16-bit storage against the exact inputs is 2e-2 here for the forward, 3e-2
      // for the backward (1.6e-2 on the host, 2.05e-2 in dg with bfloat16 on Cuda, whose
      // tensor-core backward rounds its intermediates to 16 bits). The arithmetic keeps the
      // default bounds against the rounded inputs.
      extreme(
          "beta_two_no_decay",
          [](ForwardCase& c) {
            c.spec.beta_value = 2.0;
            c.spec.gate_value = 0.0;
          },
          StorageTolerances{forward_bounds.float64, forward_bounds.float32, 2e-2},
          StorageTolerances{backward_bounds.float64, backward_bounds.float32, 3e-2}),
      // |k| = 1.3 with beta <= 1: beta |k|^2 <= 1.69 < 2, the sub-steps stay contractions.
      extreme("keys_longer_than_one", [](ForwardCase& c) { c.spec.key_scale = 1.3; }),
      extreme("keys_shorter_than_one", [](ForwardCase& c) { c.spec.key_scale = 0.25; }),
      extreme("keys_long_l2norm", [](ForwardCase& c) {
        c.spec.raw_keys = true;
        c.spec.key_scale = 30.0;  // |k| about 120 before the normalisation
        c.options.use_qk_l2norm = true;
      }),
      extreme("keys_tiny_l2norm", [](ForwardCase& c) {
        c.spec.raw_keys = true;
        c.spec.key_scale = 1e-3;  // |k|^2 about 1.6e-5, not far above the 1e-6 of the norm
        c.options.use_qk_l2norm = true;
      }),
  };
}

/// T tokens of one sequence, n = 4, small K and V so that the references stay quick. Gates
/// close to 1 (g = -1e-3) keep about a thousand tokens in the state.
ExtremeCase long_sequence(std::int64_t tokens) {
  ExtremeCase c = extreme("T" + std::to_string(tokens) + "_n4", [&](ForwardCase& f) {
    f.spec.batch = 1;
    f.spec.heads = 1;
    f.spec.tokens = tokens;
    f.spec.key_dim = f.spec.value_dim = 8;
    f.spec.num_householder = f.options.num_householder = 4;
    f.spec.gate_value = -1e-3;
  });
  return c;
}

/// Expects every element of `view` to be finite.
template <class ExecSpace, class View>
void expect_finite(const char* name, const View& view) {
  const auto found = detail::first_non_finite<ExecSpace>(view.data(), std::int64_t(view.size()));
  EXPECT_FALSE(found.has_value()) << name << " holds a non-finite value at flat index "
                                  << (found ? found->index : -1);
}

class Extremes : public ::testing::TestWithParam<ExtremeCase> {};

TEST_P(Extremes, FiniteAndWithinTheirBounds) {
  const ExtremeCase& e = GetParam();
  const ForwardCase& c = e.problem;
  const auto& expected = naive_reference(c);
  const auto& expected_gradients = backward_reference(c);
  const bool print = std::getenv("GDP_TEST_PRINT_ERRORS") != nullptr;
  for_each_space([&](auto space) {
    using ExecSpace = decltype(space);
    using Memory = typename ExecSpace::memory_space;
    const auto check = [&](const char* storage, const char* name, const auto& actual,
                           const auto& reference, double bound) {
      expect_finite<ExecSpace>(name, actual);
      const double error = reference::relative_error(actual, reference);
      EXPECT_LE(error, bound) << name;
      if (print)
        std::printf("%s %s %s %s %.3e (bound %.0e)\n", c.name.c_str(), ExecSpace::name(), storage,
                    name, error, bound);
    };
    for_each_storage(
        [&](auto storage, double bound) {
          using Scalar = decltype(storage);
          const auto inputs = make_random_problem<Scalar, Memory>(c.spec);
          const auto result = chunk_gated_delta_product<ExecSpace, Scalar>(inputs.inputs(), c.options);
          check(storage_name<Scalar>(), "o", result.o, expected.o, bound);
          check(storage_name<Scalar>(), "ht", result.final_state, expected.final_state, bound);
          const auto stored = reference::naive_recurrence(
              reference::make_reference_problem<double>(inputs.inputs(), c.options));
          const double arithmetic_bound = storage_bound<Scalar>(forward_bounds);
          check(storage_name<Scalar>(), "o (stored inputs)", result.o, stored.o, arithmetic_bound);
          check(storage_name<Scalar>(), "ht (stored inputs)", result.final_state,
                stored.final_state, arithmetic_bound);
        },
        e.forward);
    for_each_storage(
        [&](auto storage, double bound) {
          using Scalar = decltype(storage);
          const auto inputs = make_random_problem<Scalar, Memory>(c.spec);
          const auto upstream = make_random_output_gradients<Scalar, Memory>(c.spec, true);
          const auto g = chunk_gated_delta_product_backward<ExecSpace, Scalar>(
              inputs.inputs(), upstream.gradients(), c.options);
          const char* s = storage_name<Scalar>();
          const auto check_all = [&](const reference::ReferenceGradients& reference,
                                     const char* against, double limit) {
            check(s, (std::string("dq") + against).c_str(), g.dq, reference.dq, limit);
            check(s, (std::string("dk") + against).c_str(), g.dk, reference.dk, limit);
            check(s, (std::string("dv") + against).c_str(), g.dv, reference.dv, limit);
            check(s, (std::string("dbeta") + against).c_str(), g.dbeta, reference.dbeta, limit);
            check(s, (std::string("dg") + against).c_str(), g.dg, reference.dg, limit);
            check(s, (std::string("dh0") + against).c_str(), g.dh0, reference.dh0, limit);
          };
          check_all(expected_gradients, "", bound);
          // The adjoint of the stored, rounded inputs and do: the arithmetic alone.
          const auto problem = reference::make_reference_problem<double>(inputs.inputs(), c.options);
          const auto stored = reference::naive_backward(
              problem,
              reference::make_reference_output_gradients(upstream.gradients(), problem.shape));
          check_all(stored, " (stored inputs)", storage_bound<Scalar>(backward_bounds));
        },
        e.backward);
  });
}

std::string case_name(const ::testing::TestParamInfo<ExtremeCase>& info) {
  return info.param.problem.name;
}

INSTANTIATE_TEST_SUITE_P(Values, Extremes, ::testing::ValuesIn(extreme_cases()), case_name);
// The default suite's long sequence; the label `long` runs T = 65536.
INSTANTIATE_TEST_SUITE_P(Sequence, Extremes, ::testing::Values(long_sequence(4096)), case_name);
INSTANTIATE_TEST_SUITE_P(LongSequence, Extremes, ::testing::Values(long_sequence(65536)), case_name);

}  // namespace
}  // namespace gdp::test
