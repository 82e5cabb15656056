// SPDX-License-Identifier: Apache-2.0
#include "gdp_asserts.hpp"

#include <cstring>

namespace gdp::detail {

void throw_invalid_argument(const char* file, int line, const std::string& argument,
                            const std::string& message) {
  // Keep the path from "src/" on: enough to find the check, independent of the build tree.
  const char* shown = std::strstr(file, "src/");
  throw InvalidArgument(argument, concat(message, " [", shown ? shown : file, ":", line, "]"));
}

std::string format_shape(const std::vector<std::int64_t>& dims) {
  std::ostringstream out;
  out << '[';
  for (std::size_t i = 0; i < dims.size(); ++i) out << (i ? ", " : "") << dims[i];
  out << ']';
  return out.str();
}

}  // namespace gdp::detail
