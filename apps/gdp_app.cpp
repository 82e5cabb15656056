// SPDX-License-Identifier: Apache-2.0
// gdp_app: the Gated DeltaProduct operator as an MPI program. See `gdp_app --help` and the
// --help of each subcommand.
#include "command.hpp"

#include "dist/collective_failure.hpp"

#include <cstdio>
#include <fstream>
#include <vector>

int main(int argc, char** argv) {
  gdp::dist::Runtime runtime(argc, argv);
  CLI::App app{
      "gdp_app: the chunked Gated DeltaProduct operator on Kokkos, shared among MPI ranks.\n"
      "Run it under mpirun (or alone, as one rank). Arguments starting with --kokkos- go to Kokkos."};
  app.require_subcommand(1);
  std::vector<std::unique_ptr<gdp::app::Command>> commands;
  commands.push_back(gdp::app::make_input_command(app));
  commands.push_back(gdp::app::run_command(app));
  commands.push_back(gdp::app::bench_command(app));
  commands.push_back(gdp::app::verify_command(app));
  commands.push_back(gdp::app::inspect_command(app));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Every rank parses the same arguments; only rank 0 says so.
    if (runtime.rank() == 0) return app.exit(e);
    std::ofstream discard;
    return app.exit(e, discard, discard);
  }
  runtime.start_kokkos();
  for (const auto& command : commands) {
    if (!command->chosen()) continue;
    try {
      return command->run(runtime);
    } catch (const gdp::dist::CollectiveFailure& e) {
      // Every rank is here with the same message: the failing rank's.
      std::fprintf(stderr, "gdp_app (rank %d): error: %s\n", runtime.rank(), e.what());
      return 1;
    } catch (const std::exception& e) {
      // An error on this rank alone: the others cannot be told, so stop them all.
      std::fprintf(stderr, "gdp_app (rank %d): error: %s\n", runtime.rank(), e.what());
      MPI_Abort(runtime.comm(), 1);
    }
  }
  return 1;
}
