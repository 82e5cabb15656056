// SPDX-License-Identifier: Apache-2.0
// Turning an error on some ranks into the same error on every rank. A rank that fails on its
// own while the others go on would leave them waiting in the next collective call forever;
// instead every step that can fail runs through run_collectively, which lets all ranks agree
// on whether anyone failed and, if so, makes each rank throw the first failing rank's message.
#pragma once

#include <mpi.h>

#include <optional>
#include <stdexcept>
#include <string>

namespace gdp::dist {

/// Thrown on every rank when a step failed on at least one rank.
class CollectiveFailure : public std::runtime_error {
 public:
  CollectiveFailure(int failed_rank, int ranks, const std::string& message);
  /// The lowest rank that failed.
  int failed_rank() const noexcept { return failed_rank_; }
  /// Its own error message (what() adds "rank R of N: " in front).
  const std::string& message() const noexcept { return message_; }

 private:
  int failed_rank_;
  std::string message_;
};

/// Collective over `comm`: returns normally when no rank has an error, else throws
/// CollectiveFailure with the message of the lowest failing rank on every rank.
void agree_on_failure(MPI_Comm comm, const std::optional<std::string>& local_error);

/// Runs `step` on this rank and agrees with the others on its outcome (collective over
/// `comm`). Any collective MPI call inside `step` must come before anything that can throw on
/// one rank alone, so that every rank reaches the agreement.
template <class Step>
void run_collectively(MPI_Comm comm, Step&& step) {
  std::optional<std::string> error;
  try {
    step();
  } catch (const CollectiveFailure& e) {
    error = e.message();
  } catch (const std::exception& e) {
    error = e.what();
  }
  agree_on_failure(comm, error);
}

}  // namespace gdp::dist
