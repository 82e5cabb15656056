// SPDX-License-Identifier: Apache-2.0
// The subcommands of gdp_app. Each registers its flags on the CLI11 app when constructed;
// run() is then called on every rank for the one the user chose.
#pragma once

#include "dist/runtime.hpp"

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

namespace gdp::app {

class Command {
 public:
  virtual ~Command() = default;
  /// True when the user chose this subcommand.
  bool chosen() const { return subcommand_->parsed(); }
  /// Runs on every rank; returns the exit status (the same on every rank).
  virtual int run(const dist::Runtime& runtime) = 0;

 protected:
  CLI::App* subcommand_ = nullptr;
};

std::unique_ptr<Command> make_input_command(CLI::App& app);
std::unique_ptr<Command> run_command(CLI::App& app);
std::unique_ptr<Command> bench_command(CLI::App& app);
std::unique_ptr<Command> verify_command(CLI::App& app);
std::unique_ptr<Command> inspect_command(CLI::App& app);

/// Adds `--space` (the execution spaces of this build, the fastest by default).
void add_space_option(CLI::App& command, std::string& space);
/// Adds `--allow-non-finite` (ForwardOptions::allow_non_finite).
void add_allow_non_finite_flag(CLI::App& command, bool& allow);
/// "openmp, 2 ranks x 1 thread" or "cuda, 2 ranks x 1 GPU": where the work runs.
std::string placement(const dist::Runtime& runtime, const std::string& space);

}  // namespace gdp::app
