// SPDX-License-Identifier: Apache-2.0
// This process's place in MPI_COMM_WORLD, for the MPI test programs.
#pragma once

#include <mpi.h>

namespace gdp::test {

inline int rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

inline int ranks() {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

}  // namespace gdp::test
