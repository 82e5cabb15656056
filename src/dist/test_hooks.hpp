// SPDX-License-Identifier: Apache-2.0
// Test-only fault injection for the MPI layer: the tests make one rank fail at a chosen step
// to check that every rank then exits non-zero with that rank's message and that no output
// file is left (tests/dist/check_failed_run.cmake). Not for production use.
//
//   GDP_TEST_FAIL_RANK=<rank>:<stage>
//
// makes `stage` fail on rank `rank` of the communicator; the stages are
//   slice     the rank's slabs of the input reach past the tensors' heads (a bad slice),
//             rejected when the slabs are packed, before anything is read;
//   allocate  allocating the rank's buffers for its slabs fails (std::bad_alloc), at the
//             first of them (an input's, before anything is read).
// Unset (the normal case), nothing changes. The variable is read here and nowhere else.
#pragma once

#include <mpi.h>

namespace gdp::dist {

/// Whether GDP_TEST_FAIL_RANK asks `stage` to fail on this rank of `comm`.
bool test_failure_requested(MPI_Comm comm, const char* stage);

}  // namespace gdp::dist
