// SPDX-License-Identifier: Apache-2.0
#include "command.hpp"

#include "common/execution_spaces.hpp"

#include <Kokkos_Core.hpp>

namespace gdp::app {

void add_space_option(CLI::App& command, std::string& space) {
  space = default_execution_space_name();
  command.add_option("--space", space, "execution space to run on")
      ->check(CLI::IsMember(execution_space_names()))
      ->capture_default_str();
}

void add_allow_non_finite_flag(CLI::App& command, bool& allow) {
  command.add_flag("--allow-non-finite", allow,
                   "let NaN and infinite input values through; by default the first one fails "
                   "the command, named by tensor and index");
}

std::string placement(const dist::Runtime& runtime, const std::string& space) {
  std::string where = space + ", " + std::to_string(runtime.size()) + " rank" +
                      (runtime.size() > 1 ? "s" : "");
  if (space == "cuda") return where + " x 1 GPU";
  const int threads = space == "openmp" ? Kokkos::DefaultHostExecutionSpace().concurrency() : 1;
  return where + " x " + std::to_string(threads) + " thread" + (threads > 1 ? "s" : "");
}

}  // namespace gdp::app
