// SPDX-License-Identifier: Apache-2.0
// The one definition of the forward's "useful work", used by every throughput gdp reports
// (GFLOP/s of `gdp_app run`, `bench` and the naive baseline) and by the MPI layer's load
// balance, so that all of them count the same thing.
//
// Useful work is the operation count of the naive recurrence (ALGORITHM.md section 1), with a
// multiply and an add counted as two flops, per token and head:
//   - each of the n sub-steps: S^T k (2KV) and the rank-one update S += beta k (v - S^T k)^T
//     (2KV), so 4KV;
//   - the read-out o = scale S^T q: 2KV;
//   - the gate S <- exp(g) S, when gated: KV.
// The chunked algorithm performs more arithmetic than this (the intra-chunk terms); that
// extra is overhead of the method, not useful work.
//
// The backward's useful work is counted as twice the forward's, the usual convention for a
// reverse pass (each product of the recurrence has two adjoint products: one for the state's
// gradient, one for the gradients of its operands), so a forward and a backward together are
// three times the forward.
#pragma once

#include "problem_shape.hpp"

#include <cstdint>

namespace gdp::detail {

/// Useful flops for one token of one head.
inline double useful_flops_per_token(int num_householder, std::int64_t key_dim,
                                     std::int64_t value_dim, bool gated) {
  const double kv = double(key_dim) * double(value_dim);
  return num_householder * 4.0 * kv + 2.0 * kv + (gated ? kv : 0.0);
}

/// Useful flops of `token_heads` (token, head) pairs of the problem `shape`.
inline double useful_flops(const ProblemShape& shape, double token_heads) {
  return token_heads * useful_flops_per_token(shape.num_householder, shape.key_dim,
                                              shape.value_dim, shape.gated);
}

/// Useful work of a forward and a backward together, in units of the forward's.
inline constexpr double forward_and_backward_work = 3.0;

/// Useful flops of the whole problem.
inline double useful_flops(const ProblemShape& shape) {
  return useful_flops(shape, double(shape.total_tokens()) * double(shape.heads));
}

}  // namespace gdp::detail
