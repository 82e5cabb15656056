// SPDX-License-Identifier: Apache-2.0
// The decode step, token after token, against the float64 naive recurrence over 100 tokens,
// on every execution space and storage type; the chunked forward's final state continued by
// decode steps; and the independence of the result from the width of the column blocks.
#include <gdp/decode.hpp>
#include <gdp/forward.hpp>

#include "common/test_dispatch.hpp"
#include "decode/decode_problem.hpp"
#include "reference/error_norms.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

namespace gdp::test {
namespace {

template <class ExecSpace, class Scalar>
using DeviceState = DecodeState<Scalar, typename ExecSpace::memory_space>;

/// The state a case starts from: h0, or zero.
template <class ExecSpace, class Scalar>
DeviceState<ExecSpace, Scalar> initial_state(
    const DecodeCase& c, const DecodeTokens<Scalar, typename ExecSpace::memory_space>& tokens) {
  DeviceState<ExecSpace, Scalar> state("state", c.sequences, c.value_heads, c.key_dim, c.value_dim);
  if (tokens.h0.data())
    Kokkos::deep_copy(state, tokens.h0);
  else
    Kokkos::deep_copy(state, accumulator_t<Scalar>(0));
  return state;
}

/// The read-outs of every token, token-major: [T, N, Hv, V].
template <class ExecSpace, class Scalar>
using Outputs = Kokkos::View<Scalar****, Kokkos::LayoutRight, typename ExecSpace::memory_space>;

template <class ExecSpace, class Scalar>
Outputs<ExecSpace, Scalar> make_outputs(const DecodeCase& c) {
  return Outputs<ExecSpace, Scalar>("outputs", c.tokens, c.sequences, c.value_heads, c.value_dim);
}

/// Decode steps for tokens [first, last) of the case from `state`, token t's read-out written
/// to outputs(t).
template <class ExecSpace, class Scalar>
void decode_tokens(const DecodeTokens<Scalar, typename ExecSpace::memory_space>& tokens,
                   const DeviceState<ExecSpace, Scalar>& state, std::int64_t first,
                   std::int64_t last, const Outputs<ExecSpace, Scalar>& outputs,
                   const DecodeOptions& options) {
  const auto all = Kokkos::ALL();
  for (std::int64_t t = first; t < last; ++t)
    recurrent_step<ExecSpace, Scalar>(tokens.token(t), state,
                                      Kokkos::subview(outputs, t, all, all, all), options);
  ExecSpace().fence();
}

/// Relative errors of the read-outs of tokens [first, T) and of the final state.
template <class Scalar, class OutputView, class StateView>
std::pair<double, double> errors_from(const DecodeCase& c, std::int64_t first,
                                      const OutputView& outputs, const StateView& state) {
  const auto& expected = decode_reference(c);
  const auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), outputs);
  const std::int64_t rows = c.sequences * (c.tokens - first);
  Kokkos::View<Scalar***, Kokkos::LayoutRight, Kokkos::HostSpace> got("got", rows, c.value_heads,
                                                                     c.value_dim);
  Kokkos::View<double***, Kokkos::LayoutRight, Kokkos::HostSpace> want("want", rows,
                                                                      c.value_heads, c.value_dim);
  for (std::int64_t b = 0; b < c.sequences; ++b)
    for (std::int64_t t = first; t < c.tokens; ++t)
      for (int h = 0; h < c.value_heads; ++h)
        for (int e = 0; e < c.value_dim; ++e) {
          const std::int64_t row = b * (c.tokens - first) + t - first;
          got(row, h, e) = host(t, b, h, e);
          want(row, h, e) = expected.o(b * c.tokens + t, h, e);
        }
  return {reference::relative_error(got, want),
          reference::relative_error(state, expected.final_state)};
}

class DecodeSteps : public ::testing::TestWithParam<DecodeCase> {};

TEST_P(DecodeSteps, MatchNaiveRecurrence) {
  const DecodeCase& c = GetParam();
  for_each_space([&](auto space) {
    using ExecSpace = decltype(space);
    for_each_storage([&](auto storage, double tolerance) {
      using Scalar = decltype(storage);
      const DecodeTokens<Scalar, typename ExecSpace::memory_space> tokens(c);
      const auto state = initial_state<ExecSpace>(c, tokens);
      const auto outputs = make_outputs<ExecSpace, Scalar>(c);
      decode_tokens<ExecSpace>(tokens, state, 0, c.tokens, outputs, c.options());
      const auto [error_o, error_state] = errors_from<Scalar>(c, 0, outputs, state);
      if (std::getenv("GDP_TEST_PRINT_ERRORS"))
        std::printf("%s %s %s o %.3e state %.3e\n", c.name.c_str(), ExecSpace::name(),
                    storage_name<Scalar>(), error_o, error_state);
      EXPECT_LE(error_o, tolerance) << "o";
      EXPECT_LE(error_state, tolerance) << "state";
    });
  });
}

std::vector<DecodeCase> decode_cases() {
  std::vector<DecodeCase> cases;
  for (bool gated : {true, false})
    for (int n : {1, 2, 3}) {
      DecodeCase c;
      c.n = n;
      c.gated = gated;
      c.name = "grouped_n" + std::to_string(n) + (gated ? "_gated" : "_ungated");
      if (!gated && n == 1) {
        c.initial_state = false;
        c.name += "_no_initial_state";
      }
      cases.push_back(c);
    }
  const auto add = [&](const std::string& name, auto&& adjust) {
    DecodeCase c;
    c.name = name;
    adjust(c);
    cases.push_back(c);
  };
  add("ungrouped_n2", [](DecodeCase& c) { c.qk_heads = c.value_heads = 3; });
  add("n5_two_passes", [](DecodeCase& c) { c.n = 5; });
  add("n9_three_passes_ungated", [](DecodeCase& c) {
    c.n = 9;
    c.gated = false;
    c.tokens = 30;
  });
  add("one_query_head_l2norm_explicit_scale", [](DecodeCase& c) {
    c.qk_heads = 1;
    c.l2norm = true;
    c.scale = 0.3;
  });
  add("wide_value_rows", [](DecodeCase& c) {  // several host tiles, a partial last one
    c.key_dim = 24;
    c.value_dim = 100;
    c.sequences = 2;
  });
  add("key_and_value_dim_one", [](DecodeCase& c) { c.key_dim = c.value_dim = 1; });
  return cases;
}

std::string case_name(const ::testing::TestParamInfo<DecodeCase>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(Cases, DecodeSteps, ::testing::ValuesIn(decode_cases()), case_name);

/// Rows [0, rows) of axis 1 of a host view of rank 3 or 4, as a LayoutRight view in Memory.
template <class Memory, class HostView>
auto leading_rows(const HostView& source, std::int64_t rows) {
  const auto all = Kokkos::ALL();
  const auto range = std::make_pair(std::int64_t(0), rows);
  Kokkos::View<typename HostView::non_const_data_type, Kokkos::LayoutRight, Kokkos::HostSpace> copy;
  if constexpr (HostView::rank == 3) {
    copy = decltype(copy)("leading", source.extent(0), rows, source.extent(2));
    Kokkos::deep_copy(copy, Kokkos::subview(source, all, range, all));
  } else {
    copy = decltype(copy)("leading", source.extent(0), rows, source.extent(2), source.extent(3));
    Kokkos::deep_copy(copy, Kokkos::subview(source, all, range, all, all));
  }
  return Kokkos::create_mirror_view_and_copy(Memory(), copy);
}

/// The chunked forward over the first 60 tokens, then decode steps from its final state: the
/// read-outs and final state of the whole 100 tokens' recurrence. Grouped value heads, so that
/// the forward and the decode step must agree on which q/k head a value head reads.
TEST(DecodeContinuation, ForwardFinalStateThenDecodeSteps) {
  DecodeCase c;
  c.name = "continuation";  // grouped: 4 value heads, 2 q/k heads, in the forward and the steps
  c.n = 2;
  const std::int64_t prefix = 60;
  for_each_space([&](auto space) {
    using ExecSpace = decltype(space);
    using Memory = typename ExecSpace::memory_space;
    for_each_storage([&](auto storage, double tolerance) {
      using Scalar = decltype(storage);
      const DecodeTokens<Scalar, Memory> tokens(c);
      // The forward's inputs: the first `prefix` tokens of the same draw.
      const DecodeDraw<Scalar> draw(c);
      OwnedInputs<Scalar, Memory> head;
      head.q = leading_rows<Memory>(draw.queries.q, prefix);
      head.k = leading_rows<Memory>(draw.queries.k, prefix * c.n);
      head.v = leading_rows<Memory>(draw.values.v, prefix * c.n);
      head.beta = leading_rows<Memory>(draw.values.beta, prefix * c.n);
      head.g = leading_rows<Memory>(draw.values.g, prefix);
      head.initial_state = tokens.h0;
      ForwardOptions options;
      options.num_householder = c.n;
      options.output_final_state = true;
      options.chunk_size = 16;
      const auto forward = chunk_gated_delta_product<ExecSpace, Scalar>(head.inputs(), options);
      const DeviceState<ExecSpace, Scalar> state = forward.final_state;

      const auto outputs = make_outputs<ExecSpace, Scalar>(c);
      decode_tokens<ExecSpace>(tokens, state, prefix, c.tokens, outputs, c.options());
      const auto [error_o, error_state] = errors_from<Scalar>(c, prefix, outputs, state);
      EXPECT_LE(error_o, tolerance) << "o of the decoded tokens";
      EXPECT_LE(error_state, tolerance) << "state";
    });
  });
}

/// Every column evolves on its own: any width of the teams' column blocks gives the same bits.
TEST(DecodeBlocks, ResultIndependentOfValueBlock) {
  DecodeCase c;
  c.name = "blocks";
  c.n = 3;
  c.tokens = 8;
  c.value_dim = 70;
  for_each_space([&](auto space) {
    using ExecSpace = decltype(space);
    using Scalar = float;
    const DecodeTokens<Scalar, typename ExecSpace::memory_space> tokens(c);
    std::vector<Outputs<ExecSpace, Scalar>> outputs;
    std::vector<DeviceState<ExecSpace, Scalar>> states;
    for (int block : {0, 1, 7, 16, 33, 70, 500}) {
      DecodeOptions options = c.options();
      options.value_block = block;
      states.push_back(initial_state<ExecSpace>(c, tokens));
      outputs.push_back(make_outputs<ExecSpace, Scalar>(c));
      decode_tokens<ExecSpace>(tokens, states.back(), 0, c.tokens, outputs.back(), options);
    }
    const auto host = [](const auto& view) {
      return Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), view);
    };
    const auto first_state = host(states[0]);
    const auto first_outputs = host(outputs[0]);
    for (std::size_t i = 1; i < states.size(); ++i) {
      const auto state = host(states[i]);
      const auto out = host(outputs[i]);
      for (std::size_t x = 0; x < state.size(); ++x)
        ASSERT_EQ(state.data()[x], first_state.data()[x]) << "state, block choice " << i;
      for (std::size_t x = 0; x < out.size(); ++x)
        ASSERT_EQ(out.data()[x], first_outputs.data()[x]) << "o, block choice " << i;
    }
  });
}

}  // namespace
}  // namespace gdp::test
