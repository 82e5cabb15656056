// SPDX-License-Identifier: Apache-2.0
// The sequence-parallel building blocks (gdp/sequence_parallel.hpp) without MPI, on every
// execution space and storage type: a sequence cut into slices, the first slice through the
// ordinary forward, the others through segment_map, their maps scanned in order with
// compose_state_maps and each slice finished from its entering state, must give the float64
// naive recurrence's outputs and final state within the forward's tolerances. Not bit for
// bit the one-call forward: the chunks restart at every slice and the entering state reaches
// the outputs through M and the read-out, so the floating-point sums associate differently.
// Also the algebra of the maps and the argument checks.
#include <gdp/sequence_parallel.hpp>

#include "common/expect_rejected.hpp"
#include "common/forward_cases.hpp"
#include "common/test_dispatch.hpp"
#include "reference/error_norms.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace gdp::test {
namespace {

template <class Scalar, class MemorySpace>
using Inputs = ForwardInputs<Scalar, MemorySpace>;

/// Tokens [t0, t1) of the one-row problem `whole` as a problem of their own (no h0).
template <class Scalar, class MemorySpace>
Inputs<Scalar, MemorySpace> slice(const Inputs<Scalar, MemorySpace>& whole, std::int64_t t0,
                                  std::int64_t t1, int n) {
  using Real = accumulator_t<Scalar>;
  const std::int64_t H = whole.q.extent(2), K = whole.q.extent(3), V = whole.v.extent(3), T = t1 - t0;
  Inputs<Scalar, MemorySpace> s;
  s.q = decltype(s.q)(whole.q.data() + t0 * H * K, 1, T, H, K);
  s.k = decltype(s.k)(whole.k.data() + t0 * n * H * K, 1, T * n, H, K);
  s.v = decltype(s.v)(whole.v.data() + t0 * n * H * V, 1, T * n, H, V);
  s.beta = decltype(s.beta)(whole.beta.data() + t0 * n * H, 1, T * n, H);
  if (whole.g.data()) s.g = Kokkos::View<const Real***, Kokkos::LayoutRight, MemorySpace>(whole.g.data() + t0 * H, 1, T, H);
  return s;
}

/// The forward of `whole` (one sequence) as `cuts.size() - 1` processes would compute it:
/// slice 0 ordinary, the others as segments; the scan and the finishes in slice order.
template <class ExecSpace, class Scalar>
ForwardResult<Scalar, typename ExecSpace::memory_space> sliced_forward(
    const Inputs<Scalar, typename ExecSpace::memory_space>& whole, const ForwardOptions& options,
    const std::vector<std::int64_t>& cuts) {
  using memory_space = typename ExecSpace::memory_space;
  using Real = accumulator_t<Scalar>;
  const int n = options.num_householder;
  const int H = int(whole.q.extent(2)), V = int(whole.v.extent(3));
  ForwardResult<Scalar, memory_space> out;
  out.o = decltype(out.o)("o", 1, whole.q.extent(1), H, V);
  auto first = slice(whole, cuts[0], cuts[1], n);
  first.initial_state = whole.initial_state;
  ForwardOptions with_state = options;
  with_state.output_final_state = true;
  const auto start = chunk_gated_delta_product<ExecSpace, Scalar>(first, with_state);
  Kokkos::deep_copy(Kokkos::subview(out.o, Kokkos::ALL(), Kokkos::make_pair(cuts[0], cuts[1]),
                                    Kokkos::ALL(), Kokkos::ALL()),
                    start.o);
  StateMap<Real, memory_space> prefix = known_state_map<ExecSpace, Real>(start.final_state);
  out.final_state = start.final_state;
  for (std::size_t s = 1; s + 1 < cuts.size(); ++s) {
    const auto segment = segment_map<ExecSpace, Scalar>(slice(whole, cuts[s], cuts[s + 1], n), options);
    // The prefix of every slice after the first has M = 0: its R is the entering state.
    const auto entering = apply_state_map<ExecSpace>(prefix, out.final_state);
    const auto finished = finish_segment<ExecSpace, Scalar>(segment, entering);
    Kokkos::deep_copy(Kokkos::subview(out.o, Kokkos::ALL(), Kokkos::make_pair(cuts[s], cuts[s + 1]),
                                      Kokkos::ALL(), Kokkos::ALL()),
                      finished.o);
    out.final_state = finished.final_state;
    prefix = compose_state_maps<ExecSpace>(prefix, segment.map);
  }
  return out;
}

struct SliceCase {
  ForwardCase base;
  std::vector<std::int64_t> cuts;
};

std::ostream& operator<<(std::ostream& out, const SliceCase& c) { return out << c.base.name; }

std::vector<SliceCase> slice_cases() {
  std::vector<SliceCase> cases;
  for (bool gated : {true, false})
    for (int n : {1, 2, 3}) {
      // Slices longer and shorter than a chunk, one of a single token, cuts off chunk bounds.
      SliceCase c{fla_case(1, 300, 2, 32, 0, n, false, gated), {0, 97, 98, 130, 300}};
      c.base.spec.value_dim = 24;
      c.base.name += "_V24";
      c.base.spec.seed = std::hash<std::string>()(c.base.name);
      cases.push_back(c);
    }
  // The segments' own walk chunk-parallel (as on a GPU), in segments of 1 and 2 chunks.
  for (int chunks : {1, 2}) {
    SliceCase c{fla_case(1, 300, 2, 32, 0, 2, false, true), {0, 61, 300}};
    c.base.options.algorithm = ForwardAlgorithm::chunk_parallel;
    c.base.options.chunks_per_segment = chunks;
    c.base.name += "_chunk_parallel" + std::to_string(chunks);
    c.base.spec.seed = std::hash<std::string>()(c.base.name);
    cases.push_back(c);
  }
  SliceCase l2norm{fla_case(1, 200, 2, 16, 0, 2, true, true), {0, 50, 200}};
  l2norm.base.options.chunk_size = 16;
  l2norm.base.name += "_chunk16";
  cases.push_back(l2norm);
  return cases;
}

class SlicedSequence : public ::testing::TestWithParam<SliceCase> {};

TEST_P(SlicedSequence, MatchesNaiveRecurrence) {
  const SliceCase& c = GetParam();
  const auto& expected = naive_reference(c.base);
  for_each_space([&](auto space) {
    using ExecSpace = decltype(space);
    for_each_storage([&](auto storage, double tolerance) {
      using Scalar = decltype(storage);
      const auto owned = make_random_problem<Scalar, typename ExecSpace::memory_space>(c.base.spec);
      const auto result = sliced_forward<ExecSpace, Scalar>(owned.inputs(), c.base.options, c.cuts);
      EXPECT_LE(reference::relative_error(result.o, expected.o), tolerance) << "o";
      EXPECT_LE(reference::relative_error(result.final_state, expected.final_state), tolerance)
          << "final state";
    });
  });
}

INSTANTIATE_TEST_SUITE_P(SequenceParallel, SlicedSequence, ::testing::ValuesIn(slice_cases()),
                         [](const ::testing::TestParamInfo<SliceCase>& info) { return info.param.base.name; });

/// A random map of H heads, K x (K + V).
template <class ExecSpace>
StateMap<double, typename ExecSpace::memory_space> random_map(int H, int K, int V, std::uint64_t seed) {
  StateMap<double, typename ExecSpace::memory_space> map;
  map.matrix = decltype(map.matrix)("map", H, K, K + V);
  map.value_dim = V;
  const auto host = Kokkos::create_mirror_view(map.matrix);
  std::mt19937_64 engine(seed);
  std::normal_distribution<double> normal(0.0, 0.5);
  for (std::size_t i = 0; i < host.size(); ++i) host.data()[i] = normal(engine);
  Kokkos::deep_copy(map.matrix, host);
  return map;
}

double max_difference(const Kokkos::View<double***, Kokkos::LayoutRight, Kokkos::HostSpace>& a,
                      const Kokkos::View<double***, Kokkos::LayoutRight, Kokkos::HostSpace>& b) {
  double largest = 0;
  for (std::size_t i = 0; i < a.size(); ++i) largest = std::max(largest, std::abs(a.data()[i] - b.data()[i]));
  return largest;
}

TEST(StateMaps, ComposeIsAssociativeWithIdentityAndAppliesInOrder) {
  constexpr int H = 3, K = 5, V = 7;
  for_each_space([&](auto space) {
    using ExecSpace = decltype(space);
    const auto host = [](const auto& map) {
      return Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), map.matrix);
    };
    const auto a = random_map<ExecSpace>(H, K, V, 1), b = random_map<ExecSpace>(H, K, V, 2),
               c = random_map<ExecSpace>(H, K, V, 3);
    const auto left = compose_state_maps<ExecSpace>(compose_state_maps<ExecSpace>(a, b), c);
    const auto right = compose_state_maps<ExecSpace>(a, compose_state_maps<ExecSpace>(b, c));
    EXPECT_LE(max_difference(host(left), host(right)), 1e-12);
    const auto identity = identity_state_map<ExecSpace, double>(H, K, V);
    EXPECT_EQ(max_difference(host(compose_state_maps<ExecSpace>(identity, a)), host(a)), 0.0);
    EXPECT_EQ(max_difference(host(compose_state_maps<ExecSpace>(a, identity)), host(a)), 0.0);
    // Not commutative: b o a differs from a o b.
    EXPECT_GT(max_difference(host(compose_state_maps<ExecSpace>(a, b)),
                             host(compose_state_maps<ExecSpace>(b, a))), 1e-3);
    // (b o a) S = b (a S).
    Kokkos::View<double****, Kokkos::LayoutRight, typename ExecSpace::memory_space> S("S", 1, H, K, V);
    Kokkos::deep_copy(S, 0.25);
    const auto once = apply_state_map<ExecSpace>(compose_state_maps<ExecSpace>(a, b), S);
    const auto twice = apply_state_map<ExecSpace>(b, apply_state_map<ExecSpace>(a, S));
    const auto x = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), once);
    const auto y = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), twice);
    for (std::size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(x.data()[i], y.data()[i], 1e-12);
    // A known state's map ignores what enters: (0, S).
    const auto known = apply_state_map<ExecSpace>(known_state_map<ExecSpace, double>(twice), once);
    const auto z = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), known);
    for (std::size_t i = 0; i < z.size(); ++i) EXPECT_EQ(z.data()[i], y.data()[i]);
  });
}

TEST(StateMaps, ArgumentsAreChecked) {
  using ExecSpace = Kokkos::DefaultHostExecutionSpace;
  using Memory = ExecSpace::memory_space;
  ForwardCase c = fla_case(2, 20, 2, 8, 0, 2, false, true);
  ForwardOptions options = c.options;
  const auto owned = make_random_problem<double, Memory>(c.spec);
  expect_rejected([&] { segment_map<ExecSpace, double>(owned.inputs(), options); }, "h0",
                  {"expected none", "[2, 2, 8, 8]"});
  auto inputs = owned.inputs();
  inputs.initial_state = {};
  expect_rejected([&] { segment_map<ExecSpace, double>(inputs, options); }, "q",
                  {"B = 1", "got B = 2"});
  ForwardCase one = fla_case(1, 20, 2, 8, 0, 2, false, true, {0, 5, 20});
  one.spec.initial_state = false;
  const auto varlen = make_random_problem<double, Memory>(one.spec);
  expect_rejected([&] { segment_map<ExecSpace, double>(varlen.inputs(), options); }, "cu_seqlens",
                  {"expected none", "got 3 offsets"});
  auto single = varlen.inputs();
  single.cu_seqlens = {};
  const auto segment = segment_map<ExecSpace, double>(single, options);
  Kokkos::View<double****, Kokkos::LayoutRight, Memory> wrong("wrong", 1, 2, 8, 7);
  expect_rejected([&] { finish_segment<ExecSpace, double>(segment, wrong); }, "entering_state",
                  {"[1, 2, 8, 8]", "[1, 2, 8, 7]"});
  expect_rejected([&] { compose_state_maps<ExecSpace>(segment.map, random_map<ExecSpace>(2, 8, 7, 1)); },
                  "earlier", {"[2, 8, 7]", "[2, 8, 8]"});
  // finish_segment_into: the caller's outputs checked, and written as finish_segment's.
  Kokkos::View<double****, Kokkos::LayoutRight, Memory> entering("entering", 1, 2, 8, 8), leaving("leaving", 1, 2, 8, 8);
  Kokkos::deep_copy(entering, 0.5);
  Kokkos::View<double****, Kokkos::LayoutRight, Memory> o("o", 1, 20, 2, 8), short_o("short_o", 1, 19, 2, 8);
  expect_rejected([&] { finish_segment_into<ExecSpace, double>(segment, entering, short_o, leaving); }, "o",
                  {"[1, 20, 2, 8]", "[1, 19, 2, 8]"});
  expect_rejected([&] { finish_segment_into<ExecSpace, double>(segment, entering, o, wrong); }, "final_state",
                  {"[1, 2, 8, 8]", "[1, 2, 8, 7]"});
  finish_segment_into<ExecSpace, double>(segment, entering, o, leaving);
  const auto finished = finish_segment<ExecSpace, double>(segment, entering);
  for (std::size_t i = 0; i < o.size(); ++i) EXPECT_EQ(o.data()[i], finished.o.data()[i]);
  for (std::size_t i = 0; i < leaving.size(); ++i) EXPECT_EQ(leaving.data()[i], finished.final_state.data()[i]);
  double largest = 0;
  for (std::size_t i = 0; i < o.size(); ++i) largest = std::max(largest, std::abs(o.data()[i]));
  EXPECT_GT(largest, 0.0);
}

}  // namespace
}  // namespace gdp::test
