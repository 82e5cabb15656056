// SPDX-License-Identifier: Apache-2.0
// Non-finite inputs: the forward and the backward reject a NaN or an infinity in any input
// tensor, naming the tensor, the first offending element as a multi-index and its value,
// unless ForwardOptions::allow_non_finite; on every execution space and storage type.
#include <gdp/backward.hpp>
#include <gdp/forward.hpp>

#include "common/expect_rejected.hpp"
#include "common/finite_check.hpp"
#include "common/random_problem.hpp"
#include "common/test_dispatch.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

namespace gdp::test {
namespace {

constexpr double nan = std::numeric_limits<double>::quiet_NaN();
constexpr double inf = std::numeric_limits<double>::infinity();

/// B = 2, T = 6, H = 3, K = 4, V = 5, n = 2, gated, with h0; do and dht.
RandomProblemSpec small_spec() {
  RandomProblemSpec spec;
  spec.batch = 2;
  spec.tokens = 6;
  spec.heads = 3;
  spec.key_dim = 4;
  spec.value_dim = 5;
  spec.num_householder = 2;
  spec.initial_state = true;
  return spec;
}

/// Sets view(index...) = value through a host copy (the view may live on a device).
template <class View, class... Index>
void poke(const View& view, double value, Index... index) {
  const auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), view);
  host(index...) = narrow<typename View::non_const_value_type>(value);
  Kokkos::deep_copy(view, host);
}

template <class Scalar, class Memory>
struct Problem {
  OwnedInputs<Scalar, Memory> in = make_random_problem<Scalar, Memory>(small_spec());
  OwnedOutputGradients<Scalar, Memory> upstream =
      make_random_output_gradients<Scalar, Memory>(small_spec(), true);
};

/// One poisoned tensor: where the values go and the message expected.
template <class Scalar, class Memory>
struct Poison {
  const char* tensor;
  std::function<void(const Problem<Scalar, Memory>&)> apply;
  std::string found;  ///< "nan at [b, t, h, k] = [1, 3, 2, 0]"
  bool forward_input;  ///< false: a gradient the backward alone takes
};

template <class Scalar, class Memory>
std::vector<Poison<Scalar, Memory>> poisons() {
  using P = Problem<Scalar, Memory>;
  return {
      // Two bad elements: the first in row-major order is named.
      {"q", [](const P& p) { poke(p.in.q, inf, 1, 4, 0, 0); poke(p.in.q, nan, 1, 3, 2, 0); },
       "nan at [b, t, h, k] = [1, 3, 2, 0]", true},
      {"k", [](const P& p) { poke(p.in.k, inf, 0, 7, 1, 3); }, "inf at [b, p, h, k] = [0, 7, 1, 3]",
       true},
      {"v", [](const P& p) { poke(p.in.v, -inf, 1, 11, 0, 4); },
       "-inf at [b, p, h, v] = [1, 11, 0, 4]", true},
      {"beta", [](const P& p) { poke(p.in.beta, nan, 0, 5, 2); }, "nan at [b, p, h] = [0, 5, 2]",
       true},
      {"g", [](const P& p) { poke(p.in.g, -inf, 1, 0, 1); }, "-inf at [b, t, h] = [1, 0, 1]", true},
      {"h0", [](const P& p) { poke(p.in.initial_state, nan, 1, 2, 3, 4); },
       "nan at [s, h, k, v] = [1, 2, 3, 4]", true},
      {"do", [](const P& p) { poke(p.upstream.o, inf, 0, 5, 2, 1); },
       "inf at [b, t, h, v] = [0, 5, 2, 1]", false},
      {"dht", [](const P& p) { poke(p.upstream.final_state, nan, 1, 0, 0, 0); },
       "nan at [s, h, k, v] = [1, 0, 0, 0]", false},
  };
}

ForwardOptions options_n2() {
  ForwardOptions options;
  options.num_householder = 2;
  options.output_final_state = true;
  return options;
}

TEST(NonFinite, EveryTensorRejectedWithItsFirstIndex) {
  for_each_space([](auto space) {
    using ExecSpace = decltype(space);
    using Memory = typename ExecSpace::memory_space;
    for_each_storage([](auto storage, double) {
      using Scalar = decltype(storage);
      for (const auto& poison : poisons<Scalar, Memory>()) {
        SCOPED_TRACE(poison.tensor);
        const Problem<Scalar, Memory> p;
        SavedForward<Scalar, Memory> saved;  // of the inputs before the poison
        chunk_gated_delta_product_for_backward<ExecSpace, Scalar>(p.in.inputs(), options_n2(),
                                                                  saved);
        poison.apply(p);
        const std::initializer_list<std::string> fragments{
            "expected finite values, got " + poison.found, "allow_non_finite"};
        if (poison.forward_input) {
          expect_rejected(
              [&] { chunk_gated_delta_product<ExecSpace, Scalar>(p.in.inputs(), options_n2()); },
              poison.tensor, fragments);
          SavedForward<Scalar, Memory> unfilled;
          expect_rejected(
              [&] {
                chunk_gated_delta_product_for_backward<ExecSpace, Scalar>(p.in.inputs(),
                                                                          options_n2(), unfilled);
              },
              poison.tensor, fragments);
          EXPECT_TRUE(unfilled.empty());
        } else {
          expect_rejected(
              [&] {
                chunk_gated_delta_product_backward<ExecSpace, Scalar>(
                    p.in.inputs(), p.upstream.gradients(), saved);
              },
              poison.tensor, fragments);
        }
        expect_rejected(
            [&] {
              chunk_gated_delta_product_backward<ExecSpace, Scalar>(
                  p.in.inputs(), p.upstream.gradients(), options_n2());
            },
            poison.tensor, fragments);
      }
    });
  });
}

template <class View>
void fill(const View& view, double value) {
  if (view.data() != nullptr)
    Kokkos::deep_copy(view, narrow<typename View::non_const_value_type>(value));
}

/// Expects every element of `view` (on any memory space) to equal `value`.
template <class View>
void expect_all(const View& view, double value, const char* name) {
  if (view.data() == nullptr) return;
  const auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), view);
  std::size_t changed = 0;
  for (std::size_t i = 0; i < host.span(); ++i)
    if (double(widen(host.data()[i])) != value) ++changed;
  EXPECT_EQ(changed, 0u) << name << ": elements written by a rejected call";
}

TEST(NonFinite, CallsIntoGivenOutputsRejectBeforeWritingThem) {
  // These calls start the scans, lay out their workspace while the scans run and wait for
  // them only before their first kernel that computes: a rejected call leaves every output as
  // it was, and a SavedForward it would have filled empty.
  for_each_space([](auto space) {
    using ExecSpace = decltype(space);
    using Memory = typename ExecSpace::memory_space;
    for_each_storage([](auto storage, double) {
      using Scalar = decltype(storage);
      constexpr double untouched = 7.0;
      for (const auto& poison : poisons<Scalar, Memory>()) {
        SCOPED_TRACE(poison.tensor);
        const Problem<Scalar, Memory> p;
        const ForwardOptions options = options_n2();
        SavedForward<Scalar, Memory> saved;
        const auto outputs = chunk_gated_delta_product_for_backward<ExecSpace, Scalar>(
            p.in.inputs(), options, saved);
        const auto gradients = chunk_gated_delta_product_backward<ExecSpace, Scalar>(
            p.in.inputs(), p.upstream.gradients(), saved);
        // Every output of the three calls, with its name.
        const auto each_output = [&](auto&& visit) {
          visit(outputs.o, "o");
          visit(outputs.final_state, "ht");
          visit(gradients.dq, "dq");
          visit(gradients.dk, "dk");
          visit(gradients.dv, "dv");
          visit(gradients.dbeta, "dbeta");
          visit(gradients.dg, "dg");
          visit(gradients.dh0, "dh0");
        };
        each_output([&](const auto& view, const char*) { fill(view, untouched); });
        poison.apply(p);
        const std::initializer_list<std::string> fragments{"expected finite values, got " +
                                                           poison.found};
        if (poison.forward_input) {
          expect_rejected(
              [&] {
                chunk_gated_delta_product_into<ExecSpace, Scalar>(p.in.inputs(), options, outputs);
              },
              poison.tensor, fragments);
          SavedForward<Scalar, Memory> unfilled;
          expect_rejected(
              [&] {
                chunk_gated_delta_product_for_backward_into<ExecSpace, Scalar>(
                    p.in.inputs(), options, outputs, unfilled);
              },
              poison.tensor, fragments);
          EXPECT_TRUE(unfilled.empty());
        } else {
          expect_rejected(
              [&] {
                chunk_gated_delta_product_backward_into<ExecSpace, Scalar>(
                    p.in.inputs(), p.upstream.gradients(), saved, gradients);
              },
              poison.tensor, fragments);
        }
        each_output([&](const auto& view, const char* name) { expect_all(view, untouched, name); });
      }
    });
  });
}

TEST(NonFinite, AllowedWhenAsked) {
  for_each_space([](auto space) {
    using ExecSpace = decltype(space);
    using Memory = typename ExecSpace::memory_space;
    const Problem<double, Memory> p;
    poke(p.in.v, nan, 0, 0, 0, 0);
    ForwardOptions options = options_n2();
    options.allow_non_finite = true;
    const auto result = chunk_gated_delta_product<ExecSpace, double>(p.in.inputs(), options);
    // The NaN reaches the output: the first output row of that (sequence, head) reads it.
    const auto o = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), result.o);
    EXPECT_TRUE(std::isnan(o(0, 0, 0, 0)));
    EXPECT_NO_THROW((chunk_gated_delta_product_backward<ExecSpace, double>(
        p.in.inputs(), p.upstream.gradients(), options)));
  });
}

TEST(NonFinite, FiniteExtremesAccepted) {
  // The largest finite values and subnormals are finite: no rejection (the result may
  // overflow, which is the caller's business).
  for_each_space([](auto space) {
    using ExecSpace = decltype(space);
    using Memory = typename ExecSpace::memory_space;
    const Problem<float, Memory> p;
    poke(p.in.v, std::numeric_limits<float>::max(), 0, 0, 0, 0);
    poke(p.in.q, std::numeric_limits<float>::denorm_min(), 0, 0, 0, 0);
    poke(p.in.g, -std::numeric_limits<float>::max(), 0, 0, 0);
    EXPECT_NO_THROW((chunk_gated_delta_product<ExecSpace, float>(p.in.inputs(), options_n2())));
  });
}

TEST(NonFinite, FirstIndexOfALargeTensor) {
  // Many bad elements spread over a tensor far larger than one thread's share: the reduction
  // must return the smallest index whatever the order the threads find them in.
  for_each_space([](auto space) {
    using ExecSpace = decltype(space);
    using Memory = typename ExecSpace::memory_space;
    const std::int64_t count = 1 << 20;
    Kokkos::View<float*, Memory> data("data", count);
    const auto host = Kokkos::create_mirror_view(data);
    for (std::int64_t i = 0; i < count; ++i) host(i) = float(i);
    for (std::int64_t i = count - 1; i >= 700001; i -= 997) host(i) = float(i % 2 ? nan : -inf);
    Kokkos::deep_copy(data, host);
    auto found = detail::first_non_finite<ExecSpace>(data.data(), count);
    ASSERT_TRUE(found.has_value());
    std::int64_t expected = count - 1;
    while (expected - 997 >= 700001) expected -= 997;
    EXPECT_EQ(found->index, expected);
    Kokkos::deep_copy(data, 0.f);
    EXPECT_FALSE(detail::first_non_finite<ExecSpace>(data.data(), count).has_value());
  });
}

TEST(NonFinite, EveryPositionOfShortTensors) {
  // The scan reads groups of 32 bytes (4 to 16 elements), as two 16-byte words where the data
  // is 16-byte aligned and element by element elsewhere: a bad element at every position of a
  // group, in a last group cut short, and before a second bad one, in every storage type,
  // from an aligned start and from one element past it.
  for_each_space([](auto space) {
    using ExecSpace = decltype(space);
    using Memory = typename ExecSpace::memory_space;
    for_each_storage([](auto storage, double) {
      using Scalar = decltype(storage);
      for (const std::int64_t offset : {0, 1})
        for (const std::int64_t count : {1, 7, 8, 9, 16, 23, 32, 33, 47}) {
          Kokkos::View<Scalar*, Memory> storage_view("data", offset + count);
          const Scalar* const data = storage_view.data() + offset;
          const auto host = Kokkos::create_mirror_view(storage_view);
          for (std::int64_t bad = 0; bad < count; ++bad) {
            for (std::int64_t i = 0; i < offset + count; ++i)
              host(i) = narrow<Scalar>(double(i % 5) - 2.0);
            host(offset + bad) = narrow<Scalar>(bad % 2 ? nan : -inf);
            if (bad + 3 < count) host(offset + bad + 3) = narrow<Scalar>(inf);
            Kokkos::deep_copy(storage_view, host);
            const auto found = detail::first_non_finite<ExecSpace>(data, count);
            ASSERT_TRUE(found.has_value())
                << "count " << count << ", offset " << offset << ", bad at " << bad;
            EXPECT_EQ(found->index, bad) << "count " << count << ", offset " << offset;
            EXPECT_EQ(std::isnan(found->value), bad % 2 == 1);
          }
          for (std::int64_t i = 0; i < offset + count; ++i) host(i) = narrow<Scalar>(1.0);
          if (offset > 0) host(0) = narrow<Scalar>(nan);  // before the scanned elements
          Kokkos::deep_copy(storage_view, host);
          EXPECT_FALSE(detail::first_non_finite<ExecSpace>(data, count).has_value())
              << "count " << count << ", offset " << offset;
        }
    });
  });
}

TEST(NonFinite, TheFirstTensorInTheCallsOrderIsNamed) {
  // One wait for the scans of all inputs: with v and q both bad, q (scanned first) is named,
  // and its own first element, whatever order the scans finish in.
  for_each_space([](auto space) {
    using ExecSpace = decltype(space);
    using Memory = typename ExecSpace::memory_space;
    const Problem<float, Memory> p;
    poke(p.in.v, nan, 0, 0, 0, 0);
    poke(p.in.q, inf, 1, 5, 2, 3);
    poke(p.in.initial_state, nan, 0, 0, 0, 0);
    expect_rejected([&] { chunk_gated_delta_product<ExecSpace, float>(p.in.inputs(), options_n2()); },
                    "q", {"expected finite values, got inf at [b, t, h, k] = [1, 5, 2, 3]"});
    const auto found = detail::NonFiniteScans<ExecSpace>()
                           .add("g", p.in.g)
                           .add("v", p.in.v)
                           .add("q", p.in.q)
                           .first_found();
    ASSERT_TRUE(found.has_value());
    EXPECT_EQ(found->name, "v");
    EXPECT_EQ(found->tensor, 1u);
    EXPECT_EQ(found->element.index, 0);
  });
}

TEST(NonFinite, IndicesOfABlockAreThoseOfTheWholeProblem) {
  // gdp_app's blocks: the block starts at batch row 1, token 10, head 3 (q/k head 3: no
  // groups), sequence 2, n = 2.
  const detail::IndexOrigin origin{1, 10, 3, 2, 2, 3};
  const std::vector<std::int64_t> tokens{2, 4, 2, 5}, states{2, 2, 4, 5};
  // Flat index of [1, 2, 1, 3] in [2, 4, 2, 5]: ((1*4 + 2)*2 + 1)*5 + 3 = 68.
  EXPECT_EQ(detail::describe_non_finite("q", tokens, {68, nan}, origin),
            "nan at [b, t, h, k] = [2, 12, 4, 3]");
  EXPECT_EQ(detail::describe_non_finite("dv", tokens, {68, inf}, origin),
            "inf at [b, p, h, v] = [2, 22, 4, 3]");
  EXPECT_EQ(detail::describe_non_finite("ht", states, {68, -inf}, origin),
            "-inf at [s, h, k, v] = [3, 4, 1, 3]");
  EXPECT_EQ(detail::describe_non_finite("dbeta", {2, 4, 2}, {13, nan}, origin),
            "nan at [b, p, h] = [2, 22, 4]");
}

}  // namespace
}  // namespace gdp::test
