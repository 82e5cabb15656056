// SPDX-License-Identifier: Apache-2.0
// Reproducible random inputs for the tests, `gdp_app verify` and the benchmarks, drawn the
// way the field tests this operator: q, v ~ N(0, 1); k ~ N(0, 1) rows scaled to unit length
// unless the operator normalises them itself; beta ~ U(0, beta_max); g = logsigmoid(N(0, 1));
// h0 ~ 0.1 N(0, 1). For the backward, the gradients of the outputs: do, dht ~ N(0, 1).
#pragma once

#include <gdp/backward.hpp>
#include <gdp/forward.hpp>

#include <Kokkos_Core.hpp>

#include <cmath>
#include <cstdint>
#include <optional>
#include <random>
#include <vector>

namespace gdp {

struct RandomProblemSpec {
  std::int64_t batch = 1, tokens = 64, heads = 1, key_dim = 64, value_dim = 64;
  /// Heads of q and k (heads must be a multiple of it); 0: as many as heads.
  std::int64_t qk_heads = 0;
  int num_householder = 1;
  bool gated = true;
  bool initial_state = false;
  /// Offsets of variable-length sequences (then batch must be 1); empty: equal lengths.
  std::vector<std::int64_t> cu_seqlens;
  /// Keep k rows as drawn (for use_qk_l2norm); otherwise they are scaled to unit length.
  bool raw_keys = false;
  /// Length of every k row (raw_keys: factor on every row as drawn instead).
  double key_scale = 1.0;
  double beta_max = 1.0;
  std::optional<double> beta_value;  ///< every beta equal to this, when set
  std::optional<double> gate_value;  ///< every g equal to this, when set
  std::uint64_t seed = 42;
};

/// Inputs that own their storage; `inputs()` gives the views the operator takes.
template <class Scalar, class MemorySpace>
struct OwnedInputs {
  using Real = accumulator_t<Scalar>;
  template <class T>
  using view = Kokkos::View<T, Kokkos::LayoutRight, MemorySpace>;
  view<Scalar****> q, k, v;
  view<Scalar***> beta;
  view<Real***> g;
  view<Real****> initial_state;
  view<std::int64_t*> cu_seqlens;

  ForwardInputs<Scalar, MemorySpace> inputs() const {
    return {q, k, v, beta, g, initial_state, cu_seqlens};
  }
};

namespace detail {

template <class T, class Fill>
void fill_host(const T& host, Fill&& value) {
  for (std::size_t i = 0; i < host.size(); ++i) host.data()[i] = value(i);
}

template <class DeviceView, class Fill, class... Extents>
DeviceView make_filled(const char* label, Fill&& value, Extents... extents) {
  DeviceView device(std::string(label), static_cast<std::size_t>(extents)...);
  auto host = Kokkos::create_mirror_view(device);
  fill_host(host, value);
  Kokkos::deep_copy(device, host);
  return device;
}

}  // namespace detail

template <class Scalar, class MemorySpace>
OwnedInputs<Scalar, MemorySpace> make_random_problem(const RandomProblemSpec& spec) {
  using Owned = OwnedInputs<Scalar, MemorySpace>;
  using Real = typename Owned::Real;
  std::mt19937_64 engine(spec.seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  const std::int64_t B = spec.batch, T = spec.tokens, H = spec.heads, K = spec.key_dim,
                     V = spec.value_dim, n = spec.num_householder;
  const std::int64_t Hqk = spec.qk_heads > 0 ? spec.qk_heads : H;
  const auto gaussian = [&](std::size_t) { return narrow<Scalar>(normal(engine)); };

  Owned out;
  out.q = detail::make_filled<typename Owned::template view<Scalar****>>("gdp::q", gaussian, B, T, Hqk, K);
  // Keys are drawn a row at a time so that each row can be scaled to unit length.
  std::vector<double> key_row(K);
  out.k = detail::make_filled<typename Owned::template view<Scalar****>>(
      "gdp::k",
      [&](std::size_t i) {
        const std::size_t d = i % K;
        if (d == 0) {
          double sum = 0;
          for (auto& x : key_row) sum += (x = normal(engine)) * x;
          const double factor = spec.key_scale * (spec.raw_keys ? 1.0 : 1.0 / std::sqrt(sum));
          for (auto& x : key_row) x *= factor;
        }
        return narrow<Scalar>(key_row[d]);
      },
      B, T * n, Hqk, K);
  out.v = detail::make_filled<typename Owned::template view<Scalar****>>("gdp::v", gaussian, B, T * n, H, V);
  out.beta = detail::make_filled<typename Owned::template view<Scalar***>>(
      "gdp::beta",
      [&](std::size_t) {
        return narrow<Scalar>(spec.beta_value ? *spec.beta_value : spec.beta_max * uniform(engine));
      },
      B, T * n, H);
  if (spec.gated)
    out.g = detail::make_filled<typename Owned::template view<Real***>>(
        "gdp::g",
        [&](std::size_t) {
          if (spec.gate_value) return Real(*spec.gate_value);
          const double x = normal(engine);  // logsigmoid(x) = -log(1 + exp(-x)), stably
          return Real(x >= 0 ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x)));
        },
        B, T, H);
  const std::int64_t N = spec.cu_seqlens.empty() ? B : std::int64_t(spec.cu_seqlens.size()) - 1;
  if (spec.initial_state)
    out.initial_state = detail::make_filled<typename Owned::template view<Real****>>(
        "gdp::h0", [&](std::size_t) { return Real(0.1 * normal(engine)); }, N, H, K, V);
  if (!spec.cu_seqlens.empty())
    out.cu_seqlens = detail::make_filled<typename Owned::template view<std::int64_t*>>(
        "gdp::cu_seqlens", [&](std::size_t i) { return spec.cu_seqlens[i]; },
        spec.cu_seqlens.size());
  return out;
}

/// Output gradients that own their storage; `gradients()` gives the views the backward takes.
template <class Scalar, class MemorySpace>
struct OwnedOutputGradients {
  using Real = accumulator_t<Scalar>;
  Kokkos::View<Scalar****, Kokkos::LayoutRight, MemorySpace> o;
  Kokkos::View<Real****, Kokkos::LayoutRight, MemorySpace> final_state;

  OutputGradients<Scalar, MemorySpace> gradients() const { return {o, final_state}; }
};

/// Gradients of the outputs of the problem `spec` describes: do, and dht when
/// `final_state_gradient`. Drawn from their own stream (seed spec.seed + 1), so the inputs of
/// a spec are the same whether or not its gradients are drawn.
template <class Scalar, class MemorySpace>
OwnedOutputGradients<Scalar, MemorySpace> make_random_output_gradients(
    const RandomProblemSpec& spec, bool final_state_gradient) {
  using Owned = OwnedOutputGradients<Scalar, MemorySpace>;
  std::mt19937_64 engine(spec.seed + 1);
  std::normal_distribution<double> normal(0.0, 1.0);
  Owned out;
  out.o = detail::make_filled<decltype(out.o)>(
      "gdp::do", [&](std::size_t) { return narrow<Scalar>(normal(engine)); }, spec.batch,
      spec.tokens, spec.heads, spec.value_dim);
  const std::int64_t N =
      spec.cu_seqlens.empty() ? spec.batch : std::int64_t(spec.cu_seqlens.size()) - 1;
  if (final_state_gradient)
    out.final_state = detail::make_filled<decltype(out.final_state)>(
        "gdp::dht", [&](std::size_t) { return typename Owned::Real(normal(engine)); }, N,
        spec.heads, spec.key_dim, spec.value_dim);
  return out;
}

}  // namespace gdp
