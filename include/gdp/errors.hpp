// SPDX-License-Identifier: Apache-2.0
/// \file errors.hpp
/// \brief The exception gdp throws for invalid input.
#pragma once

#include <stdexcept>
#include <string>

namespace gdp {

/// Thrown before any kernel runs when an argument is invalid. `what()` names the argument,
/// the expected and the actual value, e.g.
/// `gdp: k: expected shape [B, T*n, Hqk, K] = [2, 400, 3, 60], got [2, 200, 3, 60]`, followed by
/// the source file and line of the check.
class InvalidArgument : public std::invalid_argument {
 public:
  /// `what()` becomes "gdp: <argument>: <message>".
  InvalidArgument(std::string argument, const std::string& message)
      : std::invalid_argument("gdp: " + argument + ": " + message), argument_(std::move(argument)) {}

  /// The name of the offending argument ("q", "cu_seqlens", "num_householder", ...).
  const std::string& argument() const noexcept { return argument_; }

 private:
  std::string argument_;
};

}  // namespace gdp
