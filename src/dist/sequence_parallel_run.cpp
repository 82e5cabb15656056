// SPDX-License-Identifier: Apache-2.0
// `gdp_app run --seq-parallel`: each rank reads its slice of the token axis (every head),
// computes it with SliceComputation and writes its rows of o and ht. The steps that may fail
// on one rank alone run through run_collectively; the scan between them is collective.
#include "sequence_parallel.hpp"

#include "collective_failure.hpp"
#include "common/execution_spaces.hpp"
#include "common/gdp_asserts.hpp"
#include "common/useful_work.hpp"
#include "file_run.hpp"
#include "rank_slabs.hpp"

namespace gdp::dist {

namespace {

template <class Scalar>
class SliceRun {
 public:
  using Real = accumulator_t<Scalar>;

  SliceRun(MPI_Comm comm, const RunConfig& config, const io::ForwardInputFile& input, RankReport& report)
      : comm_(comm), config_(config), input_(input), report_(report), slabs_(comm, input) {
    int rank = 0, ranks = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &ranks);
    const auto& shape = input.shape;
    const bool host_walk = config.space != "cuda";  // an unknown name fails in compute()
    slice_ = partition_slices(shape, ranks, continuing_cost(shape, config.chunk_size, host_walk))[std::size_t(rank)];
    // The rows a slice reads (h0 of the sequences starting in it) and writes (ht of those
    // ending in it), every head.
    reads_ = {slice_.start_begin, slice_.start_end, 0, shape.heads, slice_.token_begin, slice_.token_end};
    writes_ = {slice_.final_begin, slice_.final_end, 0, shape.heads, slice_.token_begin, slice_.token_end};
    reads_.head_group = writes_.head_group = shape.head_group();  // q and k: every q/k head
    report_.units = double((slice_.continued_tokens() > 0) + (slice_.start_end - slice_.start_begin));
    report_.token_heads = double(slice_.tokens() * shape.heads);
    report_.flops = detail::useful_flops(shape, report_.token_heads);
  }

  void read(MpiFile& file) {
    const auto start = Clock::now();
    slabs_.read(file, {"q", "k", "v", "beta", "g", "h0"}, {reads_});
    report_.read_seconds = seconds_since(start);
  }

  void compute() {
    const auto start = Clock::now();
    slabs_.plan_output(io::forward_output_specs(input_), {writes_});
    ForwardOptions options = input_.options;
    options.chunk_size = config_.chunk_size;
    SliceHostInputs<Scalar> in;
    in.q = slabs_.stored("q", 0);
    in.k = slabs_.stored("k", 0);
    in.v = slabs_.stored("v", 0);
    in.beta = slabs_.stored("beta", 0);
    in.g = slabs_.converted("g", 0);
    in.h0 = slabs_.converted("h0", 0);
    const SliceHostOutputs<Scalar> out{slabs_.template output<Scalar>("o", 0),
                                       slabs_.template output<Real>("ht", 0)};
    run_collectively(comm_, [&] { with_execution_space(config_.space, [](auto) {}); });
    with_execution_space(config_.space, [&](auto space) {
      SliceComputation<decltype(space), Scalar> computation(input_.shape, slice_, options, in, out);
      report_.blocks = computation.calls();
      run_collectively(comm_, [&] { computation.compute(); });
      computation.scan(comm_);
      run_collectively(comm_, [&] { computation.finish(); });
    });
    report_.compute_seconds = seconds_since(start);
  }

  void write() {
    const auto start = Clock::now();
    slabs_.write(config_.output);
    report_.write_seconds = seconds_since(start);
  }

 private:
  MPI_Comm comm_;
  const RunConfig& config_;
  const io::ForwardInputFile& input_;
  RankReport& report_;
  SlicePlan slice_;
  WorkBlock reads_, writes_;
  RankSlabs<Scalar> slabs_;
};

}  // namespace

RunResult run_sequence_parallel_file(MPI_Comm comm, const RunConfig& config) {
  return run_input_file<SliceRun>(comm, config, [&](const io::ForwardInputFile&) {
    GDP_EXPECT(!config.backward, "backward",
               "expected the forward only with the sequence-parallel run, got the backward too");
  });
}

}  // namespace gdp::dist
