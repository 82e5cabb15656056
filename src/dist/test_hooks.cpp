// SPDX-License-Identifier: Apache-2.0
#include "test_hooks.hpp"

#include <cstdlib>
#include <string>

namespace gdp::dist {

bool test_failure_requested(MPI_Comm comm, const char* stage) {
  const char* request = std::getenv("GDP_TEST_FAIL_RANK");
  if (!request) return false;
  const std::string text(request);
  const std::size_t colon = text.find(':');
  if (colon == std::string::npos || text.compare(colon + 1, std::string::npos, stage) != 0)
    return false;
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  return text.substr(0, colon) == std::to_string(rank);
}

}  // namespace gdp::dist
