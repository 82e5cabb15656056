// SPDX-License-Identifier: Apache-2.0
#include "naive_recurrence.hpp"

#include "recurrence_step.hpp"

#include <vector>

namespace gdp::reference {

template <class Real>
ReferenceResult<Real> naive_recurrence(const ReferenceProblem<Real>& p) {
  const auto& s = p.shape;
  const std::int64_t H = s.heads, K = s.key_dim, V = s.value_dim;
  ReferenceResult<Real> result;
  result.o = decltype(result.o)("reference::o", s.total_tokens(), H, V);
  result.final_state = decltype(result.final_state)("reference::ht", s.num_sequences(), H, K, V);

  Kokkos::parallel_for(
      "gdp::reference::naive_recurrence",
      Kokkos::RangePolicy<Kokkos::DefaultHostExecutionSpace>(0, s.num_sequences() * H),
      [&](const std::int64_t unit) {
        const std::int64_t seq = unit / H, h = unit % H;
        std::vector<Real> S(K * V, Real(0));  // S[d*V + e]
        if (p.h0.data())
          for (std::int64_t i = 0; i < K * V; ++i) S[i] = p.h0(seq, h, i / V, i % V);
        for (std::int64_t t = s.token_offsets[seq]; t < s.token_offsets[seq + 1]; ++t) {
          advance_token(p, t, h, S, [](std::int64_t, const std::vector<Real>&) {});
          const std::vector<Real> query = row<Real>(p.q, t, s.qk_head(h), p.use_qk_l2norm);
          for (std::int64_t e = 0; e < V; ++e) {
            Real sum = 0;
            for (std::int64_t d = 0; d < K; ++d) sum += S[d * V + e] * query[d];
            result.o(t, h, e) = p.scale * sum;
          }
        }
        for (std::int64_t i = 0; i < K * V; ++i) result.final_state(seq, h, i / V, i % V) = S[i];
      });
  Kokkos::DefaultHostExecutionSpace().fence();
  return result;
}

template ReferenceResult<double> naive_recurrence(const ReferenceProblem<double>&);
template ReferenceResult<float> naive_recurrence(const ReferenceProblem<float>&);

}  // namespace gdp::reference
