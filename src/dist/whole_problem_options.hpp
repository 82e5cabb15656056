// SPDX-License-Identifier: Apache-2.0
// The operator options under which a (sequence, head) pair gives the same bits in every
// block of every partition. The library chooses some things from the size of the problem it
// is given: the walk over the chunks (sequential or chunk-parallel, and the segment length)
// and the width of the state passes' value blocks, which sets how the backward sums its
// partial gradients. A block of a rank's share is a smaller problem than the whole, so those
// choices are made once, for the whole problem on the execution space, and fixed in the
// options that every block runs with.
#pragma once

#include <gdp/forward.hpp>

#include "chunk/chunk_layout.hpp"
#include "chunk/forward_impl.hpp"
#include "chunk/forward_plan.hpp"
#include "common/problem_shape.hpp"

namespace gdp::dist {

/// `options` with the walk and the value block the library would choose for `whole` on
/// `ExecSpace` with storage `Scalar` made explicit (choices already explicit in `options` stay).
template <class ExecSpace, class Scalar>
ForwardOptions whole_problem_options(const detail::ProblemShape& whole, ForwardOptions options) {
  const detail::ForwardPlan plan = detail::forward_plan<ExecSpace, Scalar>(
      detail::make_chunk_layout(whole, options.chunk_size), whole, options);
  options.algorithm = plan.chunk_parallel ? ForwardAlgorithm::chunk_parallel : ForwardAlgorithm::sequential;
  options.chunks_per_segment = int(plan.chunks_per_segment);
  options.value_block = detail::state_pass_value_block<ExecSpace>(whole, options);
  return options;
}

}  // namespace gdp::dist
