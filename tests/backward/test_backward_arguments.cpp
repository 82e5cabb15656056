// SPDX-License-Identifier: Apache-2.0
// The backward's own argument rules (do, dht; and the caller's gradients of the _into entry
// point), and the forward's rules applied by the backward too, through the public entry points.
#include <gdp/backward.hpp>

#include "common/expect_rejected.hpp"
#include "common/random_problem.hpp"
#include "common/same_bits.hpp"

#include <gtest/gtest.h>

namespace gdp::test {
namespace {

using Space = Kokkos::DefaultHostExecutionSpace;
using Memory = Space::memory_space;
template <class T>
using View = Kokkos::View<T, Kokkos::LayoutRight, Memory>;

struct ValidProblem {
  OwnedInputs<double, Memory> inputs;
  OwnedOutputGradients<double, Memory> upstream;
  ForwardOptions options;
};

/// B = 2, T = 10, H = 3, K = 4, V = 5, n = 2, with h0 and dht.
ValidProblem valid_problem() {
  RandomProblemSpec spec;
  spec.batch = 2;
  spec.tokens = 10;
  spec.heads = 3;
  spec.key_dim = 4;
  spec.value_dim = 5;
  spec.num_householder = 2;
  spec.initial_state = true;
  ValidProblem p{make_random_problem<double, Memory>(spec),
                 make_random_output_gradients<double, Memory>(spec, true),
                 {}};
  p.options.num_householder = 2;
  return p;
}

void expect_backward_rejected(const ForwardInputs<double, Memory>& in,
                              const OutputGradients<double, Memory>& upstream,
                              const ForwardOptions& options, const std::string& argument,
                              std::initializer_list<std::string> fragments) {
  expect_rejected([&] { chunk_gated_delta_product_backward<Space, double>(in, upstream, options); },
                  argument, fragments);
}

TEST(BackwardArguments, ValidProblemRunsWithAndWithoutFinalStateGradient) {
  const ValidProblem p = valid_problem();
  EXPECT_NO_THROW((chunk_gated_delta_product_backward<Space, double>(
      p.inputs.inputs(), p.upstream.gradients(), p.options)));
  auto without_dht = p.upstream.gradients();
  without_dht.final_state = {};
  EXPECT_NO_THROW((chunk_gated_delta_product_backward<Space, double>(p.inputs.inputs(), without_dht,
                                                                     p.options)));
}

TEST(BackwardArguments, OutputGradientRequired) {
  const ValidProblem p = valid_problem();
  auto upstream = p.upstream.gradients();
  upstream.o = {};
  expect_backward_rejected(p.inputs.inputs(), upstream, p.options, "do", {"missing"});
}

TEST(BackwardArguments, OutputGradientShape) {
  const ValidProblem p = valid_problem();
  auto upstream = p.upstream.gradients();
  upstream.o = View<double****>("do", 2, 10, 3, 4);
  expect_backward_rejected(p.inputs.inputs(), upstream, p.options, "do",
                           {"[B, T, H, V] = [2, 10, 3, 5]", "got [2, 10, 3, 4]"});
}

TEST(BackwardArguments, FinalStateGradientShape) {
  const ValidProblem p = valid_problem();
  auto upstream = p.upstream.gradients();
  upstream.final_state = View<double****>("dht", 2, 3, 5, 4);
  expect_backward_rejected(p.inputs.inputs(), upstream, p.options, "dht",
                           {"[N, H, K, V] = [2, 3, 4, 5]", "got [2, 3, 5, 4]"});
}

TEST(BackwardArguments, ForwardRulesApply) {
  const ValidProblem p = valid_problem();
  auto in = p.inputs.inputs();
  in.k = View<double****>("k", 2, 10, 3, 4);
  expect_backward_rejected(in, p.upstream.gradients(), p.options, "k",
                           {"[B, T*n, Hqk, K] = [2, 20, 3, 4]", "got [2, 10, 3, 4]"});
}

/// Gradients of valid_problem()'s shape, allocated by the caller.
InputGradients<double, Memory> caller_gradients() {
  InputGradients<double, Memory> gradients;
  gradients.dq = View<double****>("dq", 2, 10, 3, 4);
  gradients.dk = View<double****>("dk", 2, 20, 3, 4);
  gradients.dv = View<double****>("dv", 2, 20, 3, 5);
  gradients.dbeta = View<double***>("dbeta", 2, 20, 3);
  gradients.dg = View<double***>("dg", 2, 10, 3);
  gradients.dh0 = View<double****>("dh0", 2, 3, 4, 5);
  return gradients;
}

void expect_backward_into_rejected(const ValidProblem& p, const ForwardInputs<double, Memory>& in,
                                   const InputGradients<double, Memory>& gradients,
                                   const std::string& argument,
                                   std::initializer_list<std::string> fragments) {
  expect_rejected(
      [&] {
        chunk_gated_delta_product_backward_into<Space, double>(in, p.upstream.gradients(),
                                                               p.options, gradients);
      },
      argument, fragments);
}

TEST(BackwardArguments, IntoWritesWhatTheAllocatingCallReturns) {
  const ValidProblem p = valid_problem();
  const auto expected =
      chunk_gated_delta_product_backward<Space, double>(p.inputs.inputs(), p.upstream.gradients(),
                                                        p.options);
  const auto gradients = caller_gradients();
  chunk_gated_delta_product_backward_into<Space, double>(p.inputs.inputs(), p.upstream.gradients(),
                                                         p.options, gradients);
  expect_same_bits(expected, gradients);
}

TEST(BackwardArguments, IntoChecksTheGradientsShapes) {
  const ValidProblem p = valid_problem();
  auto gradients = caller_gradients();
  gradients.dk = View<double****>("dk", 2, 10, 3, 4);
  expect_backward_into_rejected(p, p.inputs.inputs(), gradients, "dk",
                                {"[B, T*n, Hqk, K] = [2, 20, 3, 4]", "got [2, 10, 3, 4]"});
  gradients = caller_gradients();
  gradients.dh0 = {};
  expect_backward_into_rejected(p, p.inputs.inputs(), gradients, "dh0", {"missing"});
}

TEST(BackwardArguments, IntoRejectsAGradientTheCallWouldNotWrite) {
  const ValidProblem p = valid_problem();
  auto in = p.inputs.inputs();
  in.g = {};
  expect_backward_into_rejected(p, in, caller_gradients(), "dg",
                                {"expected a null view (g was not given)"});
}

TEST(BackwardArguments, IntoRejectsOverlappingMemory) {
  const ValidProblem p = valid_problem();
  // dq and dk in one buffer, dk starting inside dq.
  View<double*> buffer("buffer", 1000);
  auto gradients = caller_gradients();
  gradients.dq = View<double****>(buffer.data(), 2, 10, 3, 4);
  gradients.dk = View<double****>(buffer.data() + 100, 2, 20, 3, 4);
  expect_backward_into_rejected(p, p.inputs.inputs(), gradients, "dq",
                                {"expected memory of its own", "overlapping dk"});
  // dv where v is: the backward would overwrite an input it still reads.
  gradients = caller_gradients();
  const auto in = p.inputs.inputs();
  gradients.dv = View<double****>(const_cast<double*>(in.v.data()), 2, 20, 3, 5);
  expect_backward_into_rejected(p, in, gradients, "dv", {"overlapping v"});
}

}  // namespace
}  // namespace gdp::test
