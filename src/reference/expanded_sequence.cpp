// SPDX-License-Identifier: Apache-2.0
#include "expanded_sequence.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace gdp::reference {

namespace {

/// One (sequence, head) laid out as an expanded sequence of P = tokens * n positions.
struct ExpandedSequence {
  std::int64_t positions = 0, K = 0, V = 0;
  std::vector<double> gamma;                 // [P] log gate
  std::vector<double> beta;                  // [P]
  std::vector<std::vector<double>> keys;     // [P][K]
  std::vector<std::vector<double>> values;   // [P][V]
  std::vector<std::vector<double>> queries;  // [P][K], empty where no query is read
  std::vector<std::int64_t> output_token;    // [P] token read out at p, or -1
};

ExpandedSequence expand(const ReferenceProblem<double>& p, std::int64_t seq, std::int64_t h) {
  const auto& s = p.shape;
  const std::int64_t n = s.num_householder;
  ExpandedSequence x;
  x.K = s.key_dim;
  x.V = s.value_dim;
  for (std::int64_t t = s.token_offsets[seq]; t < s.token_offsets[seq + 1]; ++t)
    for (std::int64_t j = 0; j < n; ++j) {
      const std::int64_t pos = t * n + j;
      x.gamma.push_back(j == 0 && p.g.data() ? p.g(t, h) : 0.0);
      x.beta.push_back(p.beta(pos, h));
      x.keys.push_back(row<double>(p.k, pos, s.qk_head(h), p.use_qk_l2norm));
      std::vector<double> value(x.V);
      for (std::int64_t e = 0; e < x.V; ++e) value[e] = p.v(pos, h, e);
      x.values.push_back(value);
      const bool reads = j == n - 1;
      x.queries.push_back(reads ? row<double>(p.q, t, s.qk_head(h), p.use_qk_l2norm) : std::vector<double>{});
      x.output_token.push_back(reads ? t : -1);
    }
  x.positions = std::int64_t(x.gamma.size());
  return x;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double sum = 0;
  for (std::size_t i = 0; i < a.size(); ++i) sum += a[i] * b[i];
  return sum;
}

}  // namespace

ReferenceResult<double> expanded_sequence_forward(const ReferenceProblem<double>& p,
                                                  int chunk_size) {
  const auto& s = p.shape;
  const std::int64_t H = s.heads, K = s.key_dim, V = s.value_dim;
  ReferenceResult<double> result;
  result.o = decltype(result.o)("reference::o", s.total_tokens(), H, V);
  result.final_state = decltype(result.final_state)("reference::ht", s.num_sequences(), H, K, V);

  Kokkos::parallel_for(
      "gdp::reference::expanded_sequence",
      Kokkos::RangePolicy<Kokkos::DefaultHostExecutionSpace>(0, s.num_sequences() * H),
      [&](const std::int64_t unit) {
        const std::int64_t seq = unit / H, h = unit % H;
        const ExpandedSequence x = expand(p, seq, h);
        std::vector<std::vector<double>> S(K, std::vector<double>(V, 0.0));
        if (p.h0.data())
          for (std::int64_t d = 0; d < K; ++d)
            for (std::int64_t e = 0; e < V; ++e) S[d][e] = p.h0(seq, h, d, e);

        for (std::int64_t start = 0; start < x.positions; start += chunk_size) {
          const std::int64_t L = std::min<std::int64_t>(chunk_size, x.positions - start);
          std::vector<double> G(L);
          for (std::int64_t r = 0; r < L; ++r) G[r] = (r ? G[r - 1] : 0.0) + x.gamma[start + r];
          // Tm = (I + A)^{-1}, column by column from (I + A) Tm = I.
          std::vector<std::vector<double>> A(L, std::vector<double>(L, 0.0)), Tm = A;
          for (std::int64_t r = 0; r < L; ++r)
            for (std::int64_t i = 0; i < r; ++i)
              A[r][i] = x.beta[start + r] * dot(x.keys[start + r], x.keys[start + i]) *
                        std::exp(G[r] - G[i]);
          for (std::int64_t c = 0; c < L; ++c)
            for (std::int64_t r = 0; r < L; ++r) {
              double value = r == c ? 1.0 : 0.0;
              for (std::int64_t i = 0; i < r; ++i) value -= A[r][i] * Tm[i][c];
              Tm[r][c] = value;
            }
          // Vnew = Tm (beta o V) - Tm (beta o exp(G) o K) S_0
          std::vector<std::vector<double>> keys_state(L, std::vector<double>(V, 0.0));
          for (std::int64_t i = 0; i < L; ++i)
            for (std::int64_t d = 0; d < K; ++d)
              for (std::int64_t e = 0; e < V; ++e) keys_state[i][e] += x.keys[start + i][d] * S[d][e];
          std::vector<std::vector<double>> vnew(L, std::vector<double>(V, 0.0));
          for (std::int64_t r = 0; r < L; ++r)
            for (std::int64_t i = 0; i <= r; ++i) {
              const double weight = Tm[r][i] * x.beta[start + i];
              for (std::int64_t e = 0; e < V; ++e)
                vnew[r][e] += weight * (x.values[start + i][e] - std::exp(G[i]) * keys_state[i][e]);
            }
          // O_r = scale (exp(G_r) q_r^T S_0 + sum_{i<=r} exp(G_r - G_i) (q_r . k_i) Vnew_i)
          for (std::int64_t r = 0; r < L; ++r) {
            const std::int64_t t = x.output_token[start + r];
            if (t < 0) continue;
            const auto& query = x.queries[start + r];
            std::vector<double> weights(r + 1);
            for (std::int64_t i = 0; i <= r; ++i)
              weights[i] = std::exp(G[r] - G[i]) * dot(query, x.keys[start + i]);
            for (std::int64_t e = 0; e < V; ++e) {
              double sum = 0;
              for (std::int64_t d = 0; d < K; ++d) sum += query[d] * S[d][e];
              sum *= std::exp(G[r]);
              for (std::int64_t i = 0; i <= r; ++i) sum += weights[i] * vnew[i][e];
              result.o(t, h, e) = p.scale * sum;
            }
          }
          // S_end = exp(G_L) S_0 + sum_i exp(G_L - G_i) k_i Vnew_i^T
          const double GL = G[L - 1];
          for (std::int64_t d = 0; d < K; ++d)
            for (std::int64_t e = 0; e < V; ++e) {
              double sum = std::exp(GL) * S[d][e];
              for (std::int64_t i = 0; i < L; ++i)
                sum += std::exp(GL - G[i]) * x.keys[start + i][d] * vnew[i][e];
              S[d][e] = sum;
            }
        }
        for (std::int64_t d = 0; d < K; ++d)
          for (std::int64_t e = 0; e < V; ++e) result.final_state(seq, h, d, e) = S[d][e];
      });
  Kokkos::DefaultHostExecutionSpace().fence();
  return result;
}

}  // namespace gdp::reference
