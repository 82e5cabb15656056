// SPDX-License-Identifier: Apache-2.0
// A forward problem held on the host in one real type (double for ground truth), on the
// flattened token / expanded-position axes, for the reference implementations.
#pragma once

#include <gdp/forward.hpp>

#include "chunk/forward_impl.hpp"
#include "common/problem_shape.hpp"

#include <Kokkos_Core.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

namespace gdp::reference {

template <class Real>
struct ReferenceProblem {
  template <class T>
  using view = Kokkos::View<T, Kokkos::LayoutRight, Kokkos::HostSpace>;

  detail::ProblemShape shape;
  Real scale = 1;
  bool use_qk_l2norm = false;
  view<Real***> q;      ///< [total_tokens, Hqk, K]: value head h reads shape.qk_head(h)
  view<Real***> k;      ///< [total_positions, Hqk, K]
  view<Real***> v;      ///< [total_positions, H, V]
  view<Real**> beta;    ///< [total_positions, H]
  view<Real**> g;       ///< [total_tokens, H], null when ungated
  view<Real****> h0;    ///< [N, H, K, V], null when absent
};

template <class Real>
struct ReferenceResult {
  Kokkos::View<Real***, Kokkos::LayoutRight, Kokkos::HostSpace> o;            ///< [total_tokens, H, V]
  Kokkos::View<Real****, Kokkos::LayoutRight, Kokkos::HostSpace> final_state;  ///< [N, H, K, V]
};

/// Copies `source` (any memory space, any storage type) element by element into the
/// host view `destination` of the same number of elements, converting to Real.
template <class Real, class HostView, class View>
void copy_converted(const HostView& destination, const View& source) {
  const auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), source);
  const auto* from = host.data();
  auto* to = destination.data();
  for (std::size_t i = 0; i < destination.size(); ++i) to[i] = Real(static_cast<double>(widen(from[i])));
}

/// The problem of `inputs` and `options` on the host in type Real (checked like the forward).
template <class Real, class Scalar, class MemorySpace>
ReferenceProblem<Real> make_reference_problem(const ForwardInputs<Scalar, MemorySpace>& in,
                                              const ForwardOptions& options) {
  ReferenceProblem<Real> p;
  p.shape = detail::check_forward_inputs(in, options);
  const auto& s = p.shape;
  p.scale = Real(detail::resolved_scale(options, s.key_dim));
  p.use_qk_l2norm = options.use_qk_l2norm;
  using view3 = typename ReferenceProblem<Real>::template view<Real***>;
  using view2 = typename ReferenceProblem<Real>::template view<Real**>;
  p.q = view3("reference::q", s.total_tokens(), s.qk_heads, s.key_dim);
  p.k = view3("reference::k", s.total_positions(), s.qk_heads, s.key_dim);
  p.v = view3("reference::v", s.total_positions(), s.heads, s.value_dim);
  p.beta = view2("reference::beta", s.total_positions(), s.heads);
  copy_converted<Real>(p.q, in.q);
  copy_converted<Real>(p.k, in.k);
  copy_converted<Real>(p.v, in.v);
  copy_converted<Real>(p.beta, in.beta);
  if (s.gated) {
    p.g = view2("reference::g", s.total_tokens(), s.heads);
    copy_converted<Real>(p.g, in.g);
  }
  if (s.has_initial_state) {
    p.h0 = typename ReferenceProblem<Real>::template view<Real****>(
        "reference::h0", s.num_sequences(), s.heads, s.key_dim, s.value_dim);
    copy_converted<Real>(p.h0, in.initial_state);
  }
  return p;
}

/// Row x of a [rows, H, D] tensor for head h, L2-normalised when `normalise` (eps 1e-6).
template <class Real, class View>
std::vector<Real> row(const View& x, std::int64_t r, std::int64_t h, bool normalise) {
  std::vector<Real> out(x.extent(2));
  Real sum = 0;
  for (std::size_t d = 0; d < out.size(); ++d) {
    out[d] = x(r, h, d);
    sum += out[d] * out[d];
  }
  if (normalise) {
    const Real factor = Real(1) / std::sqrt(sum + Real(detail::l2_norm_eps));
    for (Real& value : out) value *= factor;
  }
  return out;
}

}  // namespace gdp::reference
