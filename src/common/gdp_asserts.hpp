// SPDX-License-Identifier: Apache-2.0
// The one place where gdp turns a failed argument check into an exception. Every entry point
// checks its arguments through GDP_EXPECT, so every message has the same shape:
//   gdp: <argument>: <what was expected and what was found> [<file>:<line>]
#pragma once

#include <gdp/errors.hpp>

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

namespace gdp::detail {

[[noreturn]] void throw_invalid_argument(const char* file, int line, const std::string& argument,
                                         const std::string& message);

/// "[2, 400, 3, 64]"
std::string format_shape(const std::vector<std::int64_t>& dims);

/// Streams its arguments into one string (for messages).
template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

}  // namespace gdp::detail

/// Throws gdp::InvalidArgument naming `argument` unless `condition` holds. The message parts
/// are only evaluated on failure.
#define GDP_EXPECT(condition, argument, ...)                                                    \
  do {                                                                                          \
    if (!(condition))                                                                           \
      ::gdp::detail::throw_invalid_argument(__FILE__, __LINE__, argument,                      \
                                            ::gdp::detail::concat(__VA_ARGS__));                \
  } while (false)
