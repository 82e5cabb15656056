// SPDX-License-Identifier: Apache-2.0
// The recurrence of ALGORITHM.md section 1, token by token and sub-step by sub-step: the
// ground truth every other path is checked against (in double), and the baseline the
// benchmarks compare with (in the storage's accumulation type).
#pragma once

#include "reference_problem.hpp"

namespace gdp::reference {

/// Runs the recurrence for every (sequence, head) pair, in parallel on the host.
template <class Real>
ReferenceResult<Real> naive_recurrence(const ReferenceProblem<Real>& problem);

extern template ReferenceResult<double> naive_recurrence(const ReferenceProblem<double>&);
extern template ReferenceResult<float> naive_recurrence(const ReferenceProblem<float>&);

}  // namespace gdp::reference
