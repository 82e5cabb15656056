// SPDX-License-Identifier: Apache-2.0
// The shape of one decode step, checked once on the host before any kernel runs.
#pragma once

#include <gdp/decode.hpp>

#include "common/problem_shape.hpp"

#include <cstdint>

namespace gdp::detail {

/// Everything the decode kernel needs to know about a step's shape.
struct DecodeShape {
  std::int64_t sequences = 0;  ///< N
  int num_householder = 1;     ///< n
  int qk_heads = 0;            ///< Hqk: heads of q and k
  int value_heads = 0;         ///< Hv: heads of v, beta, g, the state and o
  int key_dim = 0;             ///< K
  int value_dim = 0;           ///< V
  bool gated = false;

  /// Value heads that share one query/key head: Hv / Hqk.
  int head_group() const { return value_heads / qk_heads; }
};

/// Checks the decode arguments (presence, shapes, options) and returns the shape.
/// \throws gdp::InvalidArgument naming the first violated rule.
DecodeShape check_decode_arguments(const TensorExtents& q, const TensorExtents& k,
                                   const TensorExtents& v, const TensorExtents& beta,
                                   const TensorExtents& g, const TensorExtents& state,
                                   const TensorExtents& output, const DecodeOptions& options);

/// Checks every argument of gdp::recurrent_step.
template <class Scalar, class MemorySpace>
DecodeShape check_decode_inputs(const DecodeInputs<Scalar, MemorySpace>& in,
                                const DecodeState<Scalar, MemorySpace>& state,
                                const DecodeOutput<Scalar, MemorySpace>& output,
                                const DecodeOptions& options) {
  return check_decode_arguments(extents_of("q", in.q), extents_of("k", in.k),
                                extents_of("v", in.v), extents_of("beta", in.beta),
                                extents_of("g", in.g), extents_of("state", state),
                                extents_of("o", output), options);
}

/// The read-out scale the options select for key size K (1/sqrt(K) when not set).
double resolved_scale(const DecodeOptions& options, std::int64_t key_dim);

}  // namespace gdp::detail
