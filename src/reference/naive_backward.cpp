// SPDX-License-Identifier: Apache-2.0
#include "naive_backward.hpp"

#include "recurrence_step.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace gdp::reference {

namespace {

/// Tokens between two states kept by the forward sweep. The backward replays one such segment
/// at a time, holding (n + 1) states per token of it: memory is O((T / interval + interval n) K V)
/// per (sequence, head) instead of O(T n K V).
constexpr std::int64_t checkpoint_interval = 16;

using State = std::vector<double>;  // K x V, row-major

/// Turns row r, head h of `gradient` (with respect to the normalised row x / sqrt(|x|^2 + eps)
/// of `raw`'s row r, head raw_head) into the gradient with respect to the raw row:
/// (dy - (y . dy) y) / sqrt(|x|^2 + eps).
template <class View>
void normalisation_backward(const View& raw, std::int64_t raw_head, const View& gradient,
                            std::int64_t r, std::int64_t h) {
  const std::int64_t D = std::int64_t(raw.extent(2));
  const std::vector<double> normalised = row<double>(raw, r, raw_head, true);
  double sum = 0, projection = 0;
  for (std::int64_t d = 0; d < D; ++d) {
    sum += raw(r, raw_head, d) * raw(r, raw_head, d);
    projection += normalised[d] * gradient(r, h, d);
  }
  const double factor = 1.0 / std::sqrt(sum + detail::l2_norm_eps);
  for (std::int64_t d = 0; d < D; ++d)
    gradient(r, h, d) = factor * (gradient(r, h, d) - projection * normalised[d]);
}

/// out(r, hq, d) = the sum over the value heads h of q/k head hq of shares(r, h, d).
void sum_head_groups(const detail::ProblemShape& s, const ReferenceGradients::view<double***>& shares,
                     const ReferenceGradients::view<double***>& out) {
  for (std::size_t r = 0; r < shares.extent(0); ++r)
    for (std::int64_t h = 0; h < s.heads; ++h)
      for (std::size_t d = 0; d < shares.extent(2); ++d) out(r, s.qk_head(h), d) += shares(r, h, d);
}

/// The adjoint of one (sequence, value head): reads the upstream gradients, writes every
/// gradient of the sequence's rows, dq and dk as the value head's share ([rows, H, K]).
void sequence_adjoint(const ReferenceProblem<double>& p, const ReferenceOutputGradients& up,
                      std::int64_t seq, std::int64_t h, const ReferenceGradients& out) {
  const auto& s = p.shape;
  const std::int64_t K = s.key_dim, V = s.value_dim, n = s.num_householder;
  const std::int64_t first = s.token_offsets[seq], last = s.token_offsets[seq + 1];
  const std::int64_t hq = s.qk_head(h);
  const auto ignore = [](std::int64_t, const State&) {};

  State S(K * V, 0.0);
  if (p.h0.data())
    for (std::int64_t i = 0; i < K * V; ++i) S[i] = p.h0(seq, h, i / V, i % V);
  std::vector<State> checkpoints;  // the state entering every segment
  for (std::int64_t t = first; t < last; ++t) {
    if ((t - first) % checkpoint_interval == 0) checkpoints.push_back(S);
    advance_token(p, t, h, S, ignore);
  }

  State dS(K * V, 0.0);  // gradient with respect to the current state
  if (up.final_state.data())
    for (std::int64_t i = 0; i < K * V; ++i) dS[i] = up.final_state(seq, h, i / V, i % V);
  std::vector<double> state_key(V), residual(V);
  for (std::int64_t segment = std::int64_t(checkpoints.size()) - 1; segment >= 0; --segment) {
    const std::int64_t t0 = first + segment * checkpoint_interval;
    const std::int64_t t1 = std::min(t0 + checkpoint_interval, last);
    // Replay the segment: per token, the state each sub-step starts from, then the state after.
    std::vector<State> states;
    State replay = checkpoints[segment];
    for (std::int64_t t = t0; t < t1; ++t) {
      advance_token(p, t, h, replay, [&](std::int64_t, const State& x) { states.push_back(x); });
      states.push_back(replay);
    }
    for (std::int64_t t = t1 - 1; t >= t0; --t) {
      const State* token_states = &states[(t - t0) * (n + 1)];
      // o_t = scale S^T q_t, S the state after the token.
      const std::vector<double> query = row<double>(p.q, t, hq, p.use_qk_l2norm);
      for (std::int64_t d = 0; d < K; ++d) {
        double sum = 0;
        for (std::int64_t e = 0; e < V; ++e) sum += token_states[n][d * V + e] * up.o(t, h, e);
        out.dq(t, h, d) = p.scale * sum;
        for (std::int64_t e = 0; e < V; ++e) dS[d * V + e] += p.scale * query[d] * up.o(t, h, e);
      }
      // Sub-step j: S' = S + beta k r^T with residual r = v - S^T k, S its starting state.
      for (std::int64_t j = n - 1; j >= 0; --j) {
        const std::int64_t pos = t * n + j;
        const State& before = token_states[j];
        const std::vector<double> key = row<double>(p.k, pos, hq, p.use_qk_l2norm);
        const double step = p.beta(pos, h);
        for (std::int64_t e = 0; e < V; ++e) {
          double projected = 0, gradient_key = 0;
          for (std::int64_t d = 0; d < K; ++d) {
            projected += before[d * V + e] * key[d];
            gradient_key += dS[d * V + e] * key[d];
          }
          residual[e] = p.v(pos, h, e) - projected;
          state_key[e] = gradient_key;  // dS'^T k
          out.dv(pos, h, e) = step * gradient_key;
        }
        double step_gradient = 0;
        for (std::int64_t d = 0; d < K; ++d) {
          double along_residual = 0, along_state_key = 0;
          for (std::int64_t e = 0; e < V; ++e) {
            along_residual += dS[d * V + e] * residual[e];
            along_state_key += before[d * V + e] * state_key[e];
          }
          step_gradient += key[d] * along_residual;
          out.dk(pos, h, d) = step * (along_residual - along_state_key);
        }
        out.dbeta(pos, h) = step_gradient;
        // dS <- (I - beta k k^T) dS'
        for (std::int64_t d = 0; d < K; ++d)
          for (std::int64_t e = 0; e < V; ++e) dS[d * V + e] -= step * key[d] * state_key[e];
      }
      // Gate S_gated = exp(g_t) S: dg_t = <dS_gated, S_gated>, dS = exp(g_t) dS_gated.
      if (p.g.data()) {
        double inner = 0;
        for (std::int64_t i = 0; i < K * V; ++i) inner += dS[i] * token_states[0][i];
        out.dg(t, h) = inner;
        const double decay = std::exp(p.g(t, h));
        for (double& x : dS) x *= decay;
      }
    }
  }
  if (out.dh0.data())
    for (std::int64_t i = 0; i < K * V; ++i) out.dh0(seq, h, i / V, i % V) = dS[i];
  if (p.use_qk_l2norm) {
    for (std::int64_t t = first; t < last; ++t) normalisation_backward(p.q, hq, out.dq, t, h);
    for (std::int64_t pos = first * n; pos < last * n; ++pos)
      normalisation_backward(p.k, hq, out.dk, pos, h);
  }
}

}  // namespace

ReferenceGradients naive_backward(const ReferenceProblem<double>& p,
                                  const ReferenceOutputGradients& output_gradients) {
  const auto& s = p.shape;
  const std::int64_t H = s.heads, K = s.key_dim, V = s.value_dim;
  ReferenceGradients out;  // dq and dk per value head first
  out.dq = decltype(out.dq)("reference::dq", s.total_tokens(), H, K);
  out.dk = decltype(out.dk)("reference::dk", s.total_positions(), H, K);
  out.dv = decltype(out.dv)("reference::dv", s.total_positions(), H, V);
  out.dbeta = decltype(out.dbeta)("reference::dbeta", s.total_positions(), H);
  if (s.gated) out.dg = decltype(out.dg)("reference::dg", s.total_tokens(), H);
  if (s.has_initial_state)
    out.dh0 = decltype(out.dh0)("reference::dh0", s.num_sequences(), H, K, V);
  Kokkos::parallel_for(
      "gdp::reference::naive_backward",
      Kokkos::RangePolicy<Kokkos::DefaultHostExecutionSpace>(0, s.num_sequences() * H),
      [&](const std::int64_t unit) {
        sequence_adjoint(p, output_gradients, unit / H, unit % H, out);
      });
  Kokkos::DefaultHostExecutionSpace().fence();
  if (s.head_group() > 1) {
    const auto shares_q = out.dq, shares_k = out.dk;
    out.dq = decltype(out.dq)("reference::dq", s.total_tokens(), s.qk_heads, K);
    out.dk = decltype(out.dk)("reference::dk", s.total_positions(), s.qk_heads, K);
    sum_head_groups(s, shares_q, out.dq);
    sum_head_groups(s, shares_k, out.dk);
  }
  return out;
}

}  // namespace gdp::reference
