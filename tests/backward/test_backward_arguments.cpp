// SPDX-License-Identifier: Apache-2.0
// The backward's own argument rules (do, dht; the caller's gradients of the _into entry point;
// the SavedForward of a training step), and the forward's rules applied by the backward too,
// through the public entry points.
#include <gdp/backward.hpp>

#include "backward/fused_backward.hpp"
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

TEST(BackwardArguments, SavedForwardMustBeFilled) {
  const ValidProblem p = valid_problem();
  expect_rejected(
      [&] {
        chunk_gated_delta_product_backward<Space, double>(p.inputs.inputs(), p.upstream.gradients(),
                                                          SavedForward<double, Memory>());
      },
      "saved", {"got an empty SavedForward"});
}

TEST(BackwardArguments, SavedForwardBelongsToItsInputs) {
  const ValidProblem p = valid_problem();
  SavedForward<double, Memory> saved;
  chunk_gated_delta_product_for_backward<Space, double>(p.inputs.inputs(), p.options, saved);
  // The same values in other memory are other inputs: only the memory can be checked.
  const ValidProblem copy = valid_problem();
  auto in = p.inputs.inputs();
  in.v = copy.inputs.inputs().v;
  expect_rejected(
      [&] {
        chunk_gated_delta_product_backward<Space, double>(in, p.upstream.gradients(), saved);
      },
      "saved", {"expected the v it was made for", "shape [2, 20, 3, 5] at"});
  in = p.inputs.inputs();
  in.g = {};
  expect_rejected(
      [&] {
        chunk_gated_delta_product_backward<Space, double>(in, p.upstream.gradients(), saved);
      },
      "saved", {"expected the g it was made for", "got none"});
  // Its own inputs still pass, with the do and dht rules of the backward.
  auto upstream = p.upstream.gradients();
  upstream.o = View<double****>("do", 2, 10, 3, 4);
  expect_rejected(
      [&] { chunk_gated_delta_product_backward<Space, double>(p.inputs.inputs(), upstream, saved); },
      "do", {"[B, T, H, V] = [2, 10, 3, 5]", "got [2, 10, 3, 4]"});
  EXPECT_NO_THROW((chunk_gated_delta_product_backward<Space, double>(
      p.inputs.inputs(), p.upstream.gradients(), saved)));
}

TEST(BackwardArguments, ForwardForBackwardIntoChecksTheOutputs) {
  const ValidProblem p = valid_problem();
  SavedForward<double, Memory> saved;
  ForwardResult<double, Memory> outputs;
  outputs.o = View<double****>("o", 2, 10, 3, 4);
  expect_rejected(
      [&] {
        chunk_gated_delta_product_for_backward_into<Space, double>(p.inputs.inputs(), p.options,
                                                                   outputs, saved);
      },
      "o", {"[B, T, H, V] = [2, 10, 3, 5]", "got [2, 10, 3, 4]"});
  EXPECT_TRUE(saved.empty());
  // o where v is: the forward would overwrite an input it still reads.
  const auto in = p.inputs.inputs();
  outputs.o = View<double****>(const_cast<double*>(in.v.data()), 2, 10, 3, 5);
  expect_rejected(
      [&] { chunk_gated_delta_product_for_backward_into<Space, double>(in, p.options, outputs, saved); },
      "o", {"overlapping v"});
  EXPECT_TRUE(saved.empty());
}

#if defined(KOKKOS_ENABLE_SERIAL) && defined(KOKKOS_ENABLE_OPENMP)
TEST(BackwardArguments, SavedForwardBelongsToItsExecutionSpace) {
  // Serial and OpenMP share host memory, so a SavedForward's type does not tell them apart.
  const ValidProblem p = valid_problem();
  SavedForward<double, Kokkos::HostSpace> saved;
  chunk_gated_delta_product_for_backward<Kokkos::Serial, double>(p.inputs.inputs(), p.options,
                                                                 saved);
  expect_rejected(
      [&] {
        chunk_gated_delta_product_backward<Kokkos::OpenMP, double>(p.inputs.inputs(),
                                                                   p.upstream.gradients(), saved);
      },
      "saved", {"expected a forward on OpenMP, got one on Serial"});
}
#endif

TEST(BackwardArguments, RejectedForwardForBackwardKeepsTheSavedForward) {
  const ValidProblem p = valid_problem();
  SavedForward<double, Memory> saved;
  chunk_gated_delta_product_for_backward<Space, double>(p.inputs.inputs(), p.options, saved);
  const auto expected = chunk_gated_delta_product_backward<Space, double>(
      p.inputs.inputs(), p.upstream.gradients(), saved);
  auto in = p.inputs.inputs();
  in.k = View<double****>("k", 2, 10, 3, 4);
  expect_rejected(
      [&] { chunk_gated_delta_product_for_backward<Space, double>(in, p.options, saved); }, "k",
      {"[B, T*n, Hqk, K] = [2, 20, 3, 4]", "got [2, 10, 3, 4]"});
  ASSERT_FALSE(saved.empty());
  expect_same_bits(expected, chunk_gated_delta_product_backward<Space, double>(
                                 p.inputs.inputs(), p.upstream.gradients(), saved));
  saved.reset();
  EXPECT_TRUE(saved.empty());
}

// The CUDA backward's chunk gradients kernel addresses a chunk's rows of every head with 32-bit
// offsets; FusedBackward::supports sends wider problems to the portable stages by this rule.
TEST(BackwardArguments, FusedOffsetsFit32BitsUpToTheLimit) {
  detail::ProblemShape shape;
  shape.key_dim = 128;
  shape.heads = (std::int64_t(1) << 31) / (64 * 128) - 1;  // 64 rows of H * 128 below 2^31
  EXPECT_TRUE(detail::chunk_offsets_fit_32_bits(shape, 64));
  shape.heads += 1;  // exactly 2^31 elements
  EXPECT_FALSE(detail::chunk_offsets_fit_32_bits(shape, 64));
  EXPECT_TRUE(detail::chunk_offsets_fit_32_bits(shape, 32));  // half the rows
  shape.key_dim = 16;  // the per-pair tensors' rows of 64 positions are now the widest
  EXPECT_TRUE(detail::chunk_offsets_fit_32_bits(shape, 64));
  shape.heads *= 2;
  EXPECT_FALSE(detail::chunk_offsets_fit_32_bits(shape, 64));
}

}  // namespace
}  // namespace gdp::test
