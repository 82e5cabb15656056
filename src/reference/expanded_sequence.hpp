// SPDX-License-Identifier: Apache-2.0
// The cross-check of ALGORITHM.md section 3: every sub-step laid out as one position of an
// expanded sequence (gate only at a token's first sub-step, query only at its last), then
// the plain chunked gated delta rule over it, with (I + A)^{-1} formed explicitly. It shares
// nothing with the fast path beyond the problem description, so agreement between the two
// and the naive recurrence checks the Householder products and the chunk algebra at once.
#pragma once

#include "reference_problem.hpp"

namespace gdp::reference {

/// The chunked gated delta rule over the expanded sequence, `chunk_size` positions a chunk.
ReferenceResult<double> expanded_sequence_forward(const ReferenceProblem<double>& problem,
                                                  int chunk_size);

}  // namespace gdp::reference
