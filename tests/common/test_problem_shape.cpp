// SPDX-License-Identifier: Apache-2.0
// Every argument rule of the forward has a test that checks its message, through the public
// entry point: the error names the argument, the expected and the actual value.
#include <gdp/forward.hpp>

#include "common/expect_rejected.hpp"
#include "common/random_problem.hpp"
#include "common/same_bits.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <limits>
#include <string>

namespace gdp {
namespace {

using Space = Kokkos::DefaultHostExecutionSpace;
using Memory = Space::memory_space;
using Owned = OwnedInputs<double, Memory>;

Owned valid_problem(bool varlen = false, std::int64_t qk_heads = 0) {
  RandomProblemSpec spec;
  spec.qk_heads = qk_heads;
  spec.batch = varlen ? 1 : 2;
  spec.tokens = 10;
  spec.heads = 3;
  spec.key_dim = 4;
  spec.value_dim = 5;
  spec.num_householder = 2;
  spec.initial_state = true;
  if (varlen) spec.cu_seqlens = {0, 4, 10};
  return make_random_problem<double, Memory>(spec);
}

ForwardOptions valid_options() {
  ForwardOptions options;
  options.num_householder = 2;
  return options;
}

/// Expects the forward to throw InvalidArgument for `argument` with every fragment in its
/// message.
void expect_rejected(const ForwardInputs<double, Memory>& in, const ForwardOptions& options,
                     const std::string& argument, std::initializer_list<std::string> fragments) {
  test::expect_rejected([&] { chunk_gated_delta_product<Space, double>(in, options); }, argument,
                        fragments);
}


TEST(ForwardArguments, ValidProblemRuns) {
  const auto owned = valid_problem();
  EXPECT_NO_THROW((chunk_gated_delta_product<Space, double>(owned.inputs(), valid_options())));
  const auto varlen = valid_problem(true);
  EXPECT_NO_THROW((chunk_gated_delta_product<Space, double>(varlen.inputs(), valid_options())));
  const auto grouped = valid_problem(false, 1);  // 3 value heads share one q/k head
  EXPECT_NO_THROW((chunk_gated_delta_product<Space, double>(grouped.inputs(), valid_options())));
}

TEST(ForwardArguments, NumHouseholderAtLeastOne) {
  auto options = valid_options();
  options.num_householder = 0;
  expect_rejected(valid_problem().inputs(), options, "num_householder", {"expected >= 1", "got 0"});
}

TEST(ForwardArguments, ChunkSizeAtLeastOne) {
  auto options = valid_options();
  options.chunk_size = -3;
  expect_rejected(valid_problem().inputs(), options, "chunk_size", {"expected >= 1", "got -3"});
}

TEST(ForwardArguments, ValueBlockNotNegative) {
  auto options = valid_options();
  options.value_block = -16;
  expect_rejected(valid_problem().inputs(), options, "value_block", {"expected >= 0", "got -16"});
}

TEST(ForwardArguments, ScaleFinite) {
  auto options = valid_options();
  options.scale = std::numeric_limits<double>::infinity();
  expect_rejected(valid_problem().inputs(), options, "scale", {"finite", "inf"});
}

TEST(ForwardArguments, RequiredTensorMissing) {
  auto in = valid_problem().inputs();
  in.v = {};
  expect_rejected(in, valid_options(), "v", {"missing"});
}

TEST(ForwardArguments, QueryExtentsPositive) {
  auto in = valid_problem().inputs();
  in.q = Owned::view<double****>("q", 2, 10, 3, 0);
  expect_rejected(in, valid_options(), "q", {"every extent >= 1", "[2, 10, 3, 0]"});
}

TEST(ForwardArguments, KeyShapeFollowsQueryAndN) {
  auto in = valid_problem().inputs();
  in.k = Owned::view<double****>("k", 2, 10, 3, 4);
  expect_rejected(in, valid_options(), "k", {"[B, T*n, Hqk, K] = [2, 20, 3, 4]", "got [2, 10, 3, 4]"});
  in.k = Owned::view<double****>("k", 2, 20, 1, 4);  // q and k must have the same heads
  expect_rejected(in, valid_options(), "k", {"[B, T*n, Hqk, K] = [2, 20, 3, 4]", "got [2, 20, 1, 4]"});
}

TEST(ForwardArguments, ValueShape) {
  auto in = valid_problem().inputs();
  in.v = Owned::view<double****>("v", 2, 19, 3, 5);
  expect_rejected(in, valid_options(), "v", {"[2, 20, H >= 1, V >= 1]", "got [2, 19, 3, 5]"});
  in.v = Owned::view<double****>("v", 2, 20, 3, 0);
  expect_rejected(in, valid_options(), "v", {"got [2, 20, 3, 0]"});
}

TEST(ForwardArguments, ValueHeadsMultipleOfQueryKeyHeads) {
  auto in = valid_problem().inputs();  // Hqk = 3
  in.v = Owned::view<double****>("v", 2, 20, 4, 5);
  expect_rejected(in, valid_options(), "v",
                  {"heads H (axis 2) to be a multiple of the q/k heads Hqk = 3", "got H = 4"});
}

TEST(ForwardArguments, GroupedValueHeadsShapeTheValueTensors) {
  auto in = valid_problem(false, 1).inputs();  // H = 3 value heads, Hqk = 1
  in.beta = Owned::view<double***>("beta", 2, 20, 1);
  expect_rejected(in, valid_options(), "beta", {"[B, T*n, H] = [2, 20, 3]", "got [2, 20, 1]"});
}

TEST(ForwardArguments, BetaShape) {
  auto in = valid_problem().inputs();
  in.beta = Owned::view<double***>("beta", 2, 10, 3);
  expect_rejected(in, valid_options(), "beta", {"[B, T*n, H] = [2, 20, 3]", "got [2, 10, 3]"});
}

TEST(ForwardArguments, GateShape) {
  auto in = valid_problem().inputs();
  in.g = Owned::view<double***>("g", 2, 20, 3);
  expect_rejected(in, valid_options(), "g", {"[B, T, H] = [2, 10, 3]", "got [2, 20, 3]"});
}

TEST(ForwardArguments, InitialStateCountIsSequenceCount) {
  auto in = valid_problem().inputs();
  in.initial_state = Owned::view<double****>("h0", 3, 3, 4, 5);
  expect_rejected(in, valid_options(), "h0", {"[N, H, K, V] = [2, 3, 4, 5]", "got [3, 3, 4, 5]"});
  auto varlen = valid_problem(true).inputs();
  varlen.initial_state = Owned::view<double****>("h0", 1, 3, 4, 5);
  expect_rejected(varlen, valid_options(), "h0", {"= [2, 3, 4, 5]", "got [1, 3, 4, 5]"});
}

Owned::view<std::int64_t*> offsets(std::initializer_list<std::int64_t> values) {
  Owned::view<std::int64_t*> view("cu_seqlens", values.size());
  std::size_t i = 0;
  for (auto value : values) view(i++) = value;
  return view;
}

TEST(ForwardArguments, CuSeqlensNeedsBatchOne) {
  auto in = valid_problem().inputs();
  in.initial_state = {};
  in.cu_seqlens = offsets({0, 10});
  expect_rejected(in, valid_options(), "cu_seqlens", {"batch size B = 1", "got B = 2"});
}

TEST(ForwardArguments, CuSeqlensStartsAtZero) {
  auto in = valid_problem(true).inputs();
  in.cu_seqlens = offsets({1, 4, 10});
  expect_rejected(in, valid_options(), "cu_seqlens", {"cu_seqlens[0] = 0", "got 1"});
}

TEST(ForwardArguments, CuSeqlensNonDecreasing) {
  auto in = valid_problem(true).inputs();
  in.cu_seqlens = offsets({0, 6, 4, 10});
  in.initial_state = {};
  expect_rejected(in, valid_options(), "cu_seqlens",
                  {"non-decreasing", "cu_seqlens[2] = 4 < cu_seqlens[1] = 6"});
}

TEST(ForwardArguments, CuSeqlensEndsAtT) {
  auto in = valid_problem(true).inputs();
  in.cu_seqlens = offsets({0, 4, 9});
  expect_rejected(in, valid_options(), "cu_seqlens", {"cu_seqlens[2] = T = 10", "got 9"});
}

TEST(ForwardArguments, CuSeqlensHasTwoEntries) {
  auto in = valid_problem(true).inputs();
  in.cu_seqlens = offsets({0});
  in.initial_state = {};
  expect_rejected(in, valid_options(), "cu_seqlens", {"at least 2 offsets", "got 1"});
}

TEST(ForwardArguments, MessageNamesTheCheckSite) {
  auto options = valid_options();
  options.num_householder = 0;
  try {
    chunk_gated_delta_product<Space, double>(valid_problem().inputs(), options);
    FAIL();
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("src/common/problem_shape.cpp:"), std::string::npos)
        << e.what();
  }
}

// chunk_gated_delta_product_into: the caller's outputs.

template <class T>
using HostView = Kokkos::View<T, Kokkos::LayoutRight, Memory>;

/// Outputs of valid_problem() for the _into entry point, every element `fill`.
ForwardResult<double, Memory> caller_outputs(bool final_state, double fill = 0.0) {
  ForwardResult<double, Memory> outputs;
  outputs.o = HostView<double****>("o", 2, 10, 3, 5);
  Kokkos::deep_copy(outputs.o, fill);
  if (final_state) {
    outputs.final_state = HostView<double****>("ht", 2, 3, 4, 5);
    Kokkos::deep_copy(outputs.final_state, fill);
  }
  return outputs;
}

void expect_into_rejected(const ForwardInputs<double, Memory>& in, const ForwardOptions& options,
                          const ForwardResult<double, Memory>& outputs,
                          const std::string& argument,
                          std::initializer_list<std::string> fragments) {
  test::expect_rejected(
      [&] { chunk_gated_delta_product_into<Space, double>(in, options, outputs); }, argument,
      fragments);
}

TEST(ForwardArguments, IntoWritesWhatTheAllocatingCallReturns) {
  const auto owned = valid_problem();
  for (const bool final_state : {false, true}) {
    SCOPED_TRACE(final_state ? "with ht" : "without ht");
    auto options = valid_options();
    options.output_final_state = final_state;
    const auto expected = chunk_gated_delta_product<Space, double>(owned.inputs(), options);
    // NaN everywhere first: an element the call did not write would stay NaN.
    const auto outputs = caller_outputs(final_state, std::numeric_limits<double>::quiet_NaN());
    chunk_gated_delta_product_into<Space, double>(owned.inputs(), options, outputs);
    test::expect_same_bits("o", expected.o, outputs.o);
    test::expect_same_bits("ht", expected.final_state, outputs.final_state);
  }
}

TEST(ForwardArguments, IntoChecksTheOutputsShapes) {
  const auto owned = valid_problem();
  auto options = valid_options();
  auto outputs = caller_outputs(false);
  outputs.o = HostView<double****>("o", 2, 10, 3, 4);
  expect_into_rejected(owned.inputs(), options, outputs, "o",
                       {"[B, T, H, V] = [2, 10, 3, 5]", "got [2, 10, 3, 4]"});
  outputs.o = {};
  expect_into_rejected(owned.inputs(), options, outputs, "o", {"missing"});
  // ht exactly when the options ask for it: a view the call would not write is an error.
  expect_into_rejected(owned.inputs(), options, caller_outputs(true), "ht",
                       {"expected a null view (output_final_state is not set)"});
  options.output_final_state = true;
  expect_into_rejected(owned.inputs(), options, caller_outputs(false), "ht", {"missing"});
  outputs = caller_outputs(true);
  outputs.final_state = HostView<double****>("ht", 2, 3, 5, 4);
  expect_into_rejected(owned.inputs(), options, outputs, "ht",
                       {"[N, H, K, V] = [2, 3, 4, 5]", "got [2, 3, 5, 4]"});
}

TEST(ForwardArguments, IntoRejectsOverlappingMemory) {
  const auto owned = valid_problem();
  auto options = valid_options();
  options.output_final_state = true;
  // o and ht in one buffer, ht starting inside o.
  HostView<double*> buffer("buffer", 1000);
  auto outputs = caller_outputs(true);
  outputs.o = HostView<double****>(buffer.data(), 2, 10, 3, 5);
  outputs.final_state = HostView<double****>(buffer.data() + 200, 2, 3, 4, 5);
  expect_into_rejected(owned.inputs(), options, outputs, "o",
                       {"expected memory of its own", "overlapping ht"});
  // o inside v: the call would overwrite an input it still reads. (v holds 600 elements, o
  // 300: inside q, of 240, o would reach past it into whatever the allocator put next, which
  // on one machine was ht, named first.)
  const auto in = owned.inputs();
  outputs = caller_outputs(true);
  outputs.o = HostView<double****>(const_cast<double*>(in.v.data()), 2, 10, 3, 5);
  expect_into_rejected(in, options, outputs, "o", {"overlapping v"});
}

TEST(ForwardArguments, IntoLeavesTheOutputsAloneWhenRejected) {
  const auto owned = valid_problem();
  const auto in = owned.inputs();
  // A NaN in v is found by the scan of the values, the last check before the kernels.
  const_cast<double*>(in.v.data())[7] = std::numeric_limits<double>::quiet_NaN();
  auto options = valid_options();
  options.output_final_state = true;
  const auto outputs = caller_outputs(true, 42.0);
  expect_into_rejected(in, options, outputs, "v", {"expected finite values", "nan"});
  for (std::size_t i = 0; i < outputs.o.span(); ++i) ASSERT_EQ(outputs.o.data()[i], 42.0) << i;
  for (std::size_t i = 0; i < outputs.final_state.span(); ++i)
    ASSERT_EQ(outputs.final_state.data()[i], 42.0) << i;
}

}  // namespace
}  // namespace gdp
