// SPDX-License-Identifier: Apache-2.0
#include "collective_failure.hpp"

#include <vector>

namespace gdp::dist {

CollectiveFailure::CollectiveFailure(int failed_rank, int ranks, const std::string& message)
    : std::runtime_error("rank " + std::to_string(failed_rank) + " of " + std::to_string(ranks) +
                         ": " + message),
      failed_rank_(failed_rank),
      message_(message) {}

void agree_on_failure(MPI_Comm comm, const std::optional<std::string>& local_error) {
  int rank = 0, ranks = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &ranks);
  const int mine = local_error ? rank : ranks;
  int first = ranks;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm);
  if (first == ranks) return;
  int length = rank == first ? int(local_error->size()) : 0;
  MPI_Bcast(&length, 1, MPI_INT, first, comm);
  std::vector<char> text(std::size_t(length) + 1, '\0');
  if (rank == first) local_error->copy(text.data(), std::size_t(length));
  MPI_Bcast(text.data(), length, MPI_CHAR, first, comm);
  throw CollectiveFailure(first, ranks, std::string(text.data(), std::size_t(length)));
}

}  // namespace gdp::dist
