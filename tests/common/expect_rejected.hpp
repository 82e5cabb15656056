// SPDX-License-Identifier: Apache-2.0
// The check every argument-rule test makes: the call throws gdp::InvalidArgument for the
// expected argument, and the message names it, the expected and the actual value.
#pragma once

#include <gdp/errors.hpp>

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>

namespace gdp::test {

/// Expects call() to throw InvalidArgument for `argument` with every fragment in its message.
template <class Call>
void expect_rejected(Call&& call, const std::string& argument,
                     std::initializer_list<std::string> fragments) {
  try {
    call();
    ADD_FAILURE() << "no exception for " << argument;
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(e.argument(), argument) << e.what();
    const std::string message = e.what();
    EXPECT_EQ(message.rfind("gdp: " + argument + ": ", 0), 0u) << message;
    for (const auto& fragment : fragments)
      EXPECT_NE(message.find(fragment), std::string::npos) << "'" << fragment << "' in " << message;
  }
}

}  // namespace gdp::test
