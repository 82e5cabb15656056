// SPDX-License-Identifier: Apache-2.0
// One token of the recurrence of ALGORITHM.md section 1 on a host state: the step shared by
// the naive forward and the naive backward (which replays it to recover the states it needs).
#pragma once

#include "reference_problem.hpp"

#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

namespace gdp::reference {

/// Advances the state S (K x V, row-major) of head h over token t: the gate, then the n
/// sub-steps S <- S + beta k (v - S^T k)^T. Calls before_sub_step(j, S) with the state each
/// sub-step j starts from (after the gate for j = 0).
template <class Real, class Observer>
void advance_token(const ReferenceProblem<Real>& p, std::int64_t t, std::int64_t h,
                   std::vector<Real>& S, Observer&& before_sub_step) {
  const std::int64_t K = p.shape.key_dim, V = p.shape.value_dim, n = p.shape.num_householder;
  if (p.g.data()) {
    const Real decay = std::exp(p.g(t, h));
    for (Real& x : S) x *= decay;
  }
  std::vector<Real> projection(V);
  for (std::int64_t j = 0; j < n; ++j) {
    before_sub_step(j, std::as_const(S));
    const std::int64_t pos = t * n + j;
    const std::vector<Real> key = row<Real>(p.k, pos, p.shape.qk_head(h), p.use_qk_l2norm);
    for (std::int64_t e = 0; e < V; ++e) projection[e] = p.v(pos, h, e);
    for (std::int64_t d = 0; d < K; ++d)
      for (std::int64_t e = 0; e < V; ++e) projection[e] -= S[d * V + e] * key[d];
    const Real step = p.beta(pos, h);
    for (std::int64_t d = 0; d < K; ++d)
      for (std::int64_t e = 0; e < V; ++e) S[d * V + e] += step * key[d] * projection[e];
  }
}

}  // namespace gdp::reference
