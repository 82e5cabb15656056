// SPDX-License-Identifier: Apache-2.0
// `gdp_app run` as a library function: the forward (and optionally the backward) of one
// safetensors input file, shared among the ranks of a communicator, into one safetensors
// output file.
//
//   1. every rank reads the header (and cu_seqlens) and checks the problem;
//   2. the (sequence, head) pairs are partitioned by token count (work_partition.hpp);
//   3. each rank reads only its slabs of the inputs, with collective MPI-IO;
//   4. each rank runs the library on its blocks (at most three calls each of the forward and,
//      with `backward`, of the backward) on its execution space;
//   5. all ranks write their slabs of the outputs into `<output>.partial`, which rank 0 renames
//      to `<output>` once every rank has succeeded.
//
// Every step ends with an agreement among the ranks (collective_failure.hpp): when any rank
// fails, every rank throws CollectiveFailure with that rank's message and the partial file is
// deleted, so no output is left. A file already at `<output>` is replaced only on success.
// Each (sequence, head) pair is computed the same way whatever block it falls in (the
// library's size-dependent choices are made once for the whole problem:
// whole_problem_options.hpp), so the output is bitwise the same for any number of ranks.
#pragma once

#include "io/forward_file.hpp"

#include <mpi.h>

#include <functional>
#include <string>
#include <vector>

namespace gdp::dist {

struct RunConfig {
  std::string input;   ///< safetensors input (see io/forward_file.hpp)
  std::string output;  ///< safetensors output: o and ht
  std::string space;   ///< execution space name (execution_spaces.hpp)
  int chunk_size = 64;
  /// Also compute the gradients (the input then holds do and maybe dht; the output gets dq,
  /// dk, dv, dbeta, dg, dh0).
  bool backward = false;
  /// Let NaN and infinite inputs through (ForwardOptions::allow_non_finite); otherwise the
  /// first one fails the run, named by tensor and index in the file's tensor.
  bool allow_non_finite = false;
  /// Fail the run when an output holds a NaN or an infinity, naming the first.
  bool check_outputs = false;
  /// Called on rank 0 after each step with a short description of it.
  std::function<void(const std::string&)> progress;
};

/// One rank's share of the work and how long its steps took.
struct RankReport {
  double units = 0;        ///< (sequence, head) pairs
  double blocks = 0;       ///< library calls
  double token_heads = 0;  ///< tokens times heads computed
  double flops = 0;        ///< useful flops (common/useful_work.hpp), backward included
  double read_seconds = 0, compute_seconds = 0, write_seconds = 0, total_seconds = 0;
};

struct RunResult {
  io::ForwardInputFile input;    ///< the input's description (shape, dtype, options)
  std::vector<RankReport> ranks;  ///< every rank's report, on every rank
};

/// Runs `config.input` into `config.output` on all ranks of `comm` (collective).
/// \throws CollectiveFailure on every rank when any rank failed.
RunResult run_forward_file(MPI_Comm comm, const RunConfig& config);

/// Every rank's report, on every rank (collective).
std::vector<RankReport> gather_reports(MPI_Comm comm, const RankReport& mine);

class MpiFile;
/// Reads the header and the cu_seqlens values of an input file and checks the problem
/// (this rank only).
io::ForwardInputFile describe_input(MpiFile& file);

}  // namespace gdp::dist
