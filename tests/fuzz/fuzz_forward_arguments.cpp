// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the forward's and the backward's input validation, through the public
// API on Kokkos::Serial. The fuzzer's bytes choose a problem (B, T, Hqk, K, V, n and the value
// heads H = Hqk times 1 to 3, grouped value heads), the extents
// of every tensor (each possibly off by one from the problem's), whether g, h0, cu_seqlens
// and the backward's dht are given, the cu_seqlens values (sorted or raw 64-bit integers) and
// every option (num_householder, chunk_size, chunks_per_segment, value_block, algorithm,
// scale including NaN and infinities, l2 normalisation). Then:
//   - the operator must accept exactly the calls that the documented rules (forward.hpp,
//     backward.hpp) allow, checked here independently, and refuse every other one with
//     gdp::InvalidArgument before any kernel runs;
//   - what it accepts must run clean under the sanitizers and agree with the float64
//     references (naive recurrence, naive adjoint) to the storage type's accuracy.
// Extents stay small (at most 3 x 20 tokens of 8 x 8 heads) so that one run takes
// milliseconds; the workspace grows with chunk_size by design, which stays below 80.
#include "fuzz_check.hpp"

#include <gdp/backward.hpp>
#include <gdp/errors.hpp>
#include <gdp/forward.hpp>

#include "reference/error_norms.hpp"
#include "reference/naive_backward.hpp"
#include "reference/naive_recurrence.hpp"

#include <cmath>
#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <random>
#include <vector>

namespace {

using namespace gdp;
using gdp::fuzz::check;
using gdp::fuzz::Choices;
using Dims = std::vector<std::int64_t>;

/// The extents a tensor gets: the problem's, or (one time in eight) one extent off by one.
Dims extents_for(Choices& in, Dims dims) {
  if (in.in_range<int>(0, 7) == 0) {
    auto& extent = dims[in.in_range<std::size_t>(0, dims.size() - 1)];
    extent = std::max<std::int64_t>(0, extent + in.in_range<int>(-1, 1));
  }
  return dims;
}

template <class View>
Dims dims_of(const View& view) {
  Dims dims;
  for (unsigned r = 0; r < View::rank; ++r) dims.push_back(std::int64_t(view.extent(r)));
  return dims;
}

/// A view of the extents `dims` (rank of View) holding values drawn by `draw`.
template <class View, std::size_t... Axis>
View allocate(const char* label, const Dims& dims, std::index_sequence<Axis...>) {
  return View(std::string(label), std::size_t(dims[Axis])...);
}

template <class View, class Draw>
View filled(const char* label, const Dims& dims, Draw&& draw) {
  const View view = allocate<View>(label, dims, std::make_index_sequence<View::rank>());
  for (std::size_t i = 0; i < view.size(); ++i) view.data()[i] = draw(i);
  return view;
}

/// The rules of forward.hpp, written out independently of src/common/problem_shape.cpp.
template <class Inputs>
bool forward_allowed(const Inputs& in, const ForwardOptions& o) {
  if (o.num_householder < 1 || o.chunk_size < 1 || o.chunks_per_segment < 0 || o.value_block < 0 ||
      !std::isfinite(o.scale))
    return false;
  if (!in.q.data() || !in.k.data() || !in.v.data() || !in.beta.data()) return false;
  const Dims q = dims_of(in.q), v = dims_of(in.v);
  for (const std::int64_t extent : q)
    if (extent < 1) return false;
  const std::int64_t B = q[0], T = q[1], Hqk = q[2], K = q[3], n = o.num_householder;
  if (dims_of(in.k) != Dims{B, T * n, Hqk, K}) return false;
  const std::int64_t H = v[2];  // value heads: a multiple of the q/k heads
  if (v[0] != B || v[1] != T * n || H < 1 || H % Hqk != 0 || v[3] < 1) return false;
  if (dims_of(in.beta) != Dims{B, T * n, H}) return false;
  if (in.g.data() && dims_of(in.g) != Dims{B, T, H}) return false;
  std::int64_t N = B;
  if (in.cu_seqlens.data()) {
    const auto& cu = in.cu_seqlens;
    if (B != 1 || cu.extent(0) < 2 || cu(0) != 0 || cu(cu.extent(0) - 1) != T) return false;
    for (std::size_t i = 1; i < cu.extent(0); ++i)
      if (cu(i) < cu(i - 1)) return false;
    N = std::int64_t(cu.extent(0)) - 1;
  }
  return !in.initial_state.data() || dims_of(in.initial_state) == Dims{N, H, K, v[3]};
}

template <class Scalar>
void run(Choices& in) {
  using Memory = Kokkos::HostSpace;
  using Real = accumulator_t<Scalar>;
  using Inputs = ForwardInputs<Scalar, Memory>;
  const std::int64_t B = in.in_range<int>(0, 3), T = in.in_range<int>(0, 20),
                     H = in.in_range<int>(0, 3), K = in.in_range<int>(0, 8),
                     V = in.in_range<int>(0, 8), n = in.in_range<int>(1, 3);
  const std::int64_t Hv = H * in.in_range<int>(1, 3);  // value heads
  std::mt19937_64 engine(in.any<std::uint32_t>());
  const auto uniform = [&](double low, double high) {
    return [&engine, low, high](std::size_t) {
      return low + (high - low) * std::uniform_real_distribution<double>(0.0, 1.0)(engine);
    };
  };
  const auto storage = [](auto draw) { return [draw](std::size_t i) mutable { return narrow<Scalar>(draw(i)); }; };
  const auto real = [](auto draw) { return [draw](std::size_t i) mutable { return Real(draw(i)); }; };

  ForwardOptions options;
  options.num_householder = in.flag() ? int(n) : in.in_range<int>(-1, 4);
  options.chunk_size = in.in_range<int>(-2, 80);
  options.chunks_per_segment = in.in_range<int>(-1, 4);
  options.value_block = in.in_range<int>(-1, 10);
  options.algorithm = ForwardAlgorithm(in.in_range<int>(0, 2));
  switch (in.in_range<int>(0, 5)) {
    case 0: options.scale = 0; break;
    case 1: options.scale = 0.5; break;
    case 2: options.scale = -1; break;
    case 3: options.scale = std::numeric_limits<double>::quiet_NaN(); break;
    case 4: options.scale = -std::numeric_limits<double>::infinity(); break;
    default: options.scale = in.real(-1e3, 1e3); break;
  }
  options.use_qk_l2norm = in.flag();
  options.output_final_state = in.flag();

  Inputs inputs;
  using Q = Kokkos::View<Scalar****, Kokkos::LayoutRight, Memory>;
  using B3 = Kokkos::View<Scalar***, Kokkos::LayoutRight, Memory>;
  using G = Kokkos::View<Real***, Kokkos::LayoutRight, Memory>;
  using H0 = Kokkos::View<Real****, Kokkos::LayoutRight, Memory>;
  inputs.q = filled<Q>("q", extents_for(in, {B, T, H, K}), storage(uniform(-1, 1)));
  // Keys of length at most 1, so that beta in [0, 2) keeps every step a contraction.
  const double key_bound = 1.0 / std::sqrt(double(std::max<std::int64_t>(K, 1)));
  inputs.k = filled<Q>("k", extents_for(in, {B, T * n, H, K}), storage(uniform(-key_bound, key_bound)));
  inputs.v = filled<Q>("v", extents_for(in, {B, T * n, Hv, V}), storage(uniform(-1, 1)));
  inputs.beta = filled<B3>("beta", extents_for(in, {B, T * n, Hv}), storage(uniform(0, 2)));
  if (in.flag()) inputs.g = filled<G>("g", extents_for(in, {B, T, Hv}), real(uniform(-2, 0)));
  std::int64_t N = B;
  if (in.flag()) {
    const std::size_t count = in.in_range<std::size_t>(0, 6);
    std::vector<std::int64_t> cu(count);
    if (in.flag()) {
      for (auto& offset : cu) offset = in.any<std::int64_t>();
    } else {
      for (auto& offset : cu) offset = in.in_range<std::int64_t>(0, T);
      std::sort(cu.begin(), cu.end());
      if (count) cu.front() = 0, cu.back() = T;
    }
    inputs.cu_seqlens = filled<Kokkos::View<std::int64_t*, Kokkos::LayoutRight, Memory>>(
        "cu_seqlens", {std::int64_t(count)}, [&](std::size_t i) { return cu[i]; });
    N = std::int64_t(count) - 1;
  }
  const std::int64_t n_states = std::max<std::int64_t>(N, 0);
  if (in.flag())
    inputs.initial_state = filled<H0>("h0", extents_for(in, {n_states, Hv, K, V}), real(uniform(-0.5, 0.5)));

  const bool allowed = forward_allowed(inputs, options);
  ForwardResult<Scalar, Memory> result;
  try {
    result = chunk_gated_delta_product<Kokkos::Serial>(inputs, options);
  } catch (const InvalidArgument&) {
    check(!allowed, "the forward refused a valid call");
    return;
  }
  check(allowed, "the forward accepted an invalid call");
  Kokkos::fence();

  const double tolerance = std::is_same<Scalar, double>::value ? 1e-9 : 1e-3;
  const auto problem = reference::make_reference_problem<double>(inputs, options);
  const auto expected = reference::naive_recurrence(problem);
  check(reference::relative_error(result.o, expected.o) <= tolerance, "o differs from the reference");
  if (options.output_final_state)
    check(reference::relative_error(result.final_state, expected.final_state) <= tolerance,
          "ht differs from the reference");

  if (!in.flag()) return;
  OutputGradients<Scalar, Memory> gradients;
  gradients.o = filled<Q>("do", extents_for(in, dims_of(result.o)), storage(uniform(-1, 1)));
  if (in.flag())
    gradients.final_state = filled<H0>("dht", extents_for(in, {n_states, dims_of(inputs.v)[2],
                                                               dims_of(inputs.q)[3], dims_of(inputs.v)[3]}),
                                       real(uniform(-1, 1)));
  const auto& s = problem.shape;
  const bool backward_allowed =
      gradients.o.data() && dims_of(gradients.o) == Dims{s.batch, s.tokens_per_row, s.heads, s.value_dim} &&
      (!gradients.final_state.data() ||
       dims_of(gradients.final_state) == Dims{s.num_sequences(), s.heads, s.key_dim, s.value_dim});
  InputGradients<Scalar, Memory> computed;
  try {
    computed = chunk_gated_delta_product_backward<Kokkos::Serial>(inputs, gradients, options);
  } catch (const InvalidArgument&) {
    check(!backward_allowed, "the backward refused a valid call");
    return;
  }
  check(backward_allowed, "the backward accepted an invalid call");
  Kokkos::fence();
  const auto adjoint =
      reference::naive_backward(problem, reference::make_reference_output_gradients(gradients, s));
  // Gradients sum many terms: a looser bound than the forward's.
  const double gradient_tolerance = 100 * tolerance;
  check(reference::relative_error(computed.dq, adjoint.dq) <= gradient_tolerance, "dq differs");
  check(reference::relative_error(computed.dk, adjoint.dk) <= gradient_tolerance, "dk differs");
  check(reference::relative_error(computed.dv, adjoint.dv) <= gradient_tolerance, "dv differs");
  check(reference::relative_error(computed.dbeta, adjoint.dbeta) <= gradient_tolerance, "dbeta differs");
  if (s.gated) check(reference::relative_error(computed.dg, adjoint.dg) <= gradient_tolerance, "dg differs");
  if (s.has_initial_state)
    check(reference::relative_error(computed.dh0, adjoint.dh0) <= gradient_tolerance, "dh0 differs");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  gdp::fuzz::initialize_kokkos();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Choices in(data, size);
  if (in.flag())
    run<double>(in);
  else
    run<float>(in);
  return 0;
}
