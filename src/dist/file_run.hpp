// SPDX-License-Identifier: Apache-2.0
// The frame of a run of an input file into an output file, shared by the run over
// (sequence, head) pairs and the sequence-parallel run: open and describe the input on every
// rank, then the rank's part for the file's storage type (read, compute, write), then every
// rank's report.
#pragma once

#include "collective_failure.hpp"
#include "distributed_forward.hpp"
#include "mpi_file.hpp"

#include <chrono>
#include <optional>

namespace gdp::dist {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

/// Runs `config.input` into `config.output` on all ranks of `comm` (collective) with
/// `RankPart<Scalar>(comm, config, input, report)`, which reads, computes and writes its part;
/// `check(input)` rejects inputs the run cannot take (on every rank alike).
template <template <class> class RankPart, class Check>
RunResult run_input_file(MPI_Comm comm, const RunConfig& config, Check&& check) {
  const auto start = Clock::now();
  RunResult result;
  RankReport mine;
  std::optional<MpiFile> input;
  run_collectively(comm, [&] {
    input.emplace(comm, config.input, MpiFile::Mode::read);
    result.input = describe_input(*input);
    check(result.input);
  });
  io::with_storage_type(result.input.storage, [&](auto storage) {
    RankPart<decltype(storage)> part(comm, config, result.input, mine);
    part.read(*input);
    part.compute();
    part.write();
  });
  mine.total_seconds = seconds_since(start);
  result.ranks = gather_reports(comm, mine);
  return result;
}

}  // namespace gdp::dist
