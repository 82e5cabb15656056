// SPDX-License-Identifier: Apache-2.0
// A decode test problem: T tokens of N sequences with grouped heads, drawn like the forward's
// random problems, fed to gdp::recurrent_step one token at a time, and its float64 ground
// truth: the naive recurrence over all T tokens with each value head given its query/key head.
#pragma once

#include <gdp/decode.hpp>
#include <gdp/forward.hpp>

#include "common/forward_cases.hpp"
#include "common/random_problem.hpp"
#include "reference/naive_recurrence.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <string>

namespace gdp::test {

struct DecodeCase {
  std::string name;
  std::int64_t sequences = 3, tokens = 100;
  int qk_heads = 2, value_heads = 4, key_dim = 32, value_dim = 40, n = 2;
  bool gated = true, l2norm = false, initial_state = true;
  double scale = 0;

  DecodeOptions options() const {
    DecodeOptions o;
    o.num_householder = n;
    o.scale = scale;
    o.use_qk_l2norm = l2norm;
    return o;
  }
  /// The recipe of v, beta, g and h0 (heads = Hv); q and k come from query_spec().
  RandomProblemSpec value_spec() const {
    RandomProblemSpec s;
    s.batch = sequences;
    s.tokens = tokens;
    s.heads = value_heads;
    s.key_dim = key_dim;
    s.value_dim = value_dim;
    s.num_householder = n;
    s.gated = gated;
    s.initial_state = initial_state;
    s.raw_keys = l2norm;
    s.seed = std::hash<std::string>()(name);
    return s;
  }
  /// The recipe of q and k (heads = Hqk), from its own seed.
  RandomProblemSpec query_spec() const {
    RandomProblemSpec s = value_spec();
    s.heads = qk_heads;
    s.seed += 1;
    return s;
  }
};

inline std::ostream& operator<<(std::ostream& out, const DecodeCase& c) { return out << c.name; }

/// The case's random inputs in storage type Scalar on the host, as the forward takes them:
/// v, beta, g, h0 with Hv heads (`values`), q and k with Hqk heads (`queries`).
template <class Scalar>
struct DecodeDraw {
  OwnedInputs<Scalar, Kokkos::HostSpace> values, queries;
  explicit DecodeDraw(const DecodeCase& c)
      : values(make_random_problem<Scalar, Kokkos::HostSpace>(c.value_spec())),
        queries(make_random_problem<Scalar, Kokkos::HostSpace>(c.query_spec())) {}
};

/// The same inputs laid out token-major in `MemorySpace`, so that token t's decode inputs are
/// contiguous subviews: q [T, N, Hqk, K], k [T, N, n, Hqk, K], v [T, N, n, Hv, V],
/// beta [T, N, n, Hv], g [T, N, Hv].
template <class Scalar, class MemorySpace>
struct DecodeTokens {
  template <class T>
  using view = Kokkos::View<T, Kokkos::LayoutRight, MemorySpace>;
  view<Scalar****> q;
  view<Scalar*****> k, v;
  view<Scalar****> beta;
  view<accumulator_t<Scalar>***> g;
  view<accumulator_t<Scalar>****> h0;  ///< [N, Hv, K, V] or null

  explicit DecodeTokens(const DecodeCase& c) {
    const DecodeDraw<Scalar> draw(c);
    const std::int64_t N = c.sequences, T = c.tokens;
    const int n = c.n;
    typename view<Scalar****>::HostMirror hq("q", T, N, c.qk_heads, c.key_dim);
    typename view<Scalar*****>::HostMirror hk("k", T, N, n, c.qk_heads, c.key_dim),
        hv("v", T, N, n, c.value_heads, c.value_dim);
    typename view<Scalar****>::HostMirror hbeta("beta", T, N, n, c.value_heads);
    typename view<accumulator_t<Scalar>***>::HostMirror hg("g", c.gated ? T : 0, N, c.value_heads);
    for (std::int64_t t = 0; t < T; ++t)
      for (std::int64_t b = 0; b < N; ++b) {
        for (int h = 0; h < c.qk_heads; ++h)
          for (int d = 0; d < c.key_dim; ++d) {
            hq(t, b, h, d) = draw.queries.q(b, t, h, d);
            for (int j = 0; j < n; ++j) hk(t, b, j, h, d) = draw.queries.k(b, t * n + j, h, d);
          }
        for (int h = 0; h < c.value_heads; ++h) {
          if (c.gated) hg(t, b, h) = draw.values.g(b, t, h);
          for (int j = 0; j < n; ++j) {
            hbeta(t, b, j, h) = draw.values.beta(b, t * n + j, h);
            for (int e = 0; e < c.value_dim; ++e) hv(t, b, j, h, e) = draw.values.v(b, t * n + j, h, e);
          }
        }
      }
    q = Kokkos::create_mirror_view_and_copy(MemorySpace(), hq);
    k = Kokkos::create_mirror_view_and_copy(MemorySpace(), hk);
    v = Kokkos::create_mirror_view_and_copy(MemorySpace(), hv);
    beta = Kokkos::create_mirror_view_and_copy(MemorySpace(), hbeta);
    if (c.gated) g = Kokkos::create_mirror_view_and_copy(MemorySpace(), hg);
    if (c.initial_state) h0 = Kokkos::create_mirror_view_and_copy(MemorySpace(), draw.values.initial_state);
  }

  /// Token t's inputs (views into this object's storage).
  DecodeInputs<Scalar, MemorySpace> token(std::int64_t t) const {
    const auto all = Kokkos::ALL();
    DecodeInputs<Scalar, MemorySpace> in;
    in.q = Kokkos::subview(q, t, all, all, all);
    in.k = Kokkos::subview(k, t, all, all, all, all);
    in.v = Kokkos::subview(v, t, all, all, all, all);
    in.beta = Kokkos::subview(beta, t, all, all, all);
    if (g.data()) in.g = Kokkos::subview(g, t, all, all);
    return in;
  }
};

/// The float64 naive recurrence over all the case's tokens, q and k repeated for the value
/// heads that share them (computed once per process).
inline const reference::ReferenceResult<double>& decode_reference(const DecodeCase& c) {
  return computed_once<reference::ReferenceResult<double>>("decode " + c.name, [&] {
    const DecodeDraw<double> tokens(c);
    OwnedInputs<double, Kokkos::HostSpace> expanded = tokens.values;
    const std::int64_t P = c.tokens * c.n, group = c.value_heads / c.qk_heads;
    expanded.q = decltype(expanded.q)("q", c.sequences, c.tokens, c.value_heads, c.key_dim);
    expanded.k = decltype(expanded.k)("k", c.sequences, P, c.value_heads, c.key_dim);
    for (std::int64_t b = 0; b < c.sequences; ++b)
      for (int h = 0; h < c.value_heads; ++h)
        for (int d = 0; d < c.key_dim; ++d) {
          for (std::int64_t t = 0; t < c.tokens; ++t)
            expanded.q(b, t, h, d) = tokens.queries.q(b, t, h / group, d);
          for (std::int64_t p = 0; p < P; ++p)
            expanded.k(b, p, h, d) = tokens.queries.k(b, p, h / group, d);
        }
    ForwardOptions options;
    options.num_householder = c.n;
    options.scale = c.scale;
    options.use_qk_l2norm = c.l2norm;
    options.output_final_state = true;
    return reference::naive_recurrence(
        reference::make_reference_problem<double>(expanded.inputs(), options));
  });
}

}  // namespace gdp::test
