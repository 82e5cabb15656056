// SPDX-License-Identifier: Apache-2.0
#include "distributed_forward.hpp"

#include "block_call.hpp"
#include "block_slabs.hpp"
#include "collective_failure.hpp"
#include "common/execution_spaces.hpp"
#include "common/useful_work.hpp"
#include "file_run.hpp"
#include "io/exact_conversion.hpp"
#include "mpi_file.hpp"
#include "rank_slabs.hpp"
#include "whole_problem_options.hpp"
#include "work_partition.hpp"

#include <array>
#include <cstdio>
#include <map>

namespace gdp::dist {

namespace {

std::string formatted(const char* format, double value) {
  char text[48];
  std::snprintf(text, sizeof text, format, value);
  return text;
}

}  // namespace

io::ForwardInputFile describe_input(MpiFile& file) {
  const io::SafetensorsHeader header = read_header(file);
  std::vector<std::int64_t> cu_seqlens;
  if (const io::TensorEntry* entry = io::find_cu_seqlens(header)) {
    std::vector<std::byte> bytes(entry->num_bytes());
    file.read_at(entry->begin, bytes.data(), bytes.size());
    cu_seqlens.resize(std::size_t(entry->num_elements()));
    io::convert_exactly(header.path, entry->name, entry->dtype, bytes.data(), cu_seqlens.size(),
                        cu_seqlens.data());
  }
  return io::describe_forward_input(header, cu_seqlens);
}

namespace {

/// A rank's part of the run for storage type Scalar: read its slabs, run its blocks, write
/// its slabs of the output.
template <class Scalar>
class RankRun {
 public:
  using Real = accumulator_t<Scalar>;

  RankRun(MPI_Comm comm, const RunConfig& config, const io::ForwardInputFile& input,
              RankReport& report)
      : comm_(comm), config_(config), input_(input), report_(report), slabs_(comm, input) {
    MPI_Comm_rank(comm, &rank_);
    int ranks = 1;
    MPI_Comm_size(comm, &ranks);
    const UnitRange range = partition_units(input.shape, ranks)[std::size_t(rank_)];
    ForwardOptions chosen = input.options;
    chosen.chunk_size = config.chunk_size;
    blocks_ = blocks_of(input.shape, range, app_call_limits(input.shape, chosen, config.backward));
    report_.units = double(range.size());
    report_.blocks = double(blocks_.size());
    report_.token_heads = double(token_heads(input.shape, range));
    report_.flops = detail::useful_flops(input.shape, report_.token_heads) *
                    (config.backward ? detail::forward_and_backward_work : 1.0);
  }

  void read(MpiFile& file) {
    const auto start = Clock::now();
    std::vector<std::string> names{"q", "k", "v", "beta", "g", "h0"};
    if (config_.backward) names.insert(names.end(), {"do", "dht"});
    const double total = slabs_.read(file, names, blocks_);
    report_.read_seconds = seconds_since(start);
    progress("rank 0 read " + formatted("%.1f MB", total / 1e6) + " of input slabs in " +
             formatted("%.2f s", report_.read_seconds));
  }

  void compute() {
    const auto start = Clock::now();
    slabs_.plan_output(io::forward_output_specs(input_, config_.backward), blocks_);
    ForwardOptions chosen = input_.options;
    chosen.chunk_size = config_.chunk_size;
    chosen.allow_non_finite = config_.allow_non_finite;
    run_collectively(comm_, [&] {
      with_execution_space(config_.space, [&](auto space) {
        using ExecSpace = decltype(space);
        const ForwardOptions options = whole_problem_options<ExecSpace, Scalar>(input_.shape, chosen);
        for (std::size_t b = 0; b < blocks_.size(); ++b) {
          const BlockCall<ExecSpace, Scalar> call(block_inputs(b));
          // With the backward, a training step: the forward keeps what the backward needs.
          SavedForward<Scalar, typename ExecSpace::memory_space> saved;
          call.forward(options, block_outputs(b), config_.check_outputs,
                       config_.backward ? &saved : nullptr);
          if (config_.backward)
            call.backward(options, block_outputs(b), saved, config_.check_outputs);
        }
      });
    });
    report_.compute_seconds = seconds_since(start);
    progress("rank 0 computed " + std::to_string(blocks_.size()) + " blocks in " +
             formatted("%.2f s", report_.compute_seconds));
  }

  void write() {
    const auto start = Clock::now();
    slabs_.write(config_.output);
    report_.write_seconds = seconds_since(start);
  }

 private:
  BlockHostInputs<Scalar> block_inputs(std::size_t b) {
    BlockHostInputs<Scalar> in;
    in.shape = block_shape(input_.shape, blocks_[b]);
    in.origin = block_origin(input_.shape, blocks_[b]);
    in.q = slabs_.stored("q", b);
    in.k = slabs_.stored("k", b);
    in.v = slabs_.stored("v", b);
    in.beta = slabs_.stored("beta", b);
    in.g = slabs_.converted("g", b);
    in.h0 = slabs_.converted("h0", b);
    in.d_o = slabs_.stored("do", b);
    in.dht = slabs_.converted("dht", b);
    return in;
  }

  BlockHostOutputs<Scalar> block_outputs(std::size_t b) {
    BlockHostOutputs<Scalar> out;
    out.o = slabs_.template output<Scalar>("o", b);
    out.ht = slabs_.template output<Real>("ht", b);
    out.dq = slabs_.template output<Scalar>("dq", b);
    out.dk = slabs_.template output<Scalar>("dk", b);
    out.dv = slabs_.template output<Scalar>("dv", b);
    out.dbeta = slabs_.template output<Scalar>("dbeta", b);
    out.dg = slabs_.template output<Real>("dg", b);
    out.dh0 = slabs_.template output<Real>("dh0", b);
    return out;
  }

  void progress(const std::string& message) const {
    if (rank_ == 0 && config_.progress) config_.progress(message);
  }

  MPI_Comm comm_;
  const RunConfig& config_;
  const io::ForwardInputFile& input_;
  RankReport& report_;
  int rank_ = 0;
  std::vector<WorkBlock> blocks_;
  RankSlabs<Scalar> slabs_;
};

}  // namespace

std::vector<RankReport> gather_reports(MPI_Comm comm, const RankReport& mine) {
  constexpr int fields = 8;
  const std::array<double, fields> packed{mine.units,          mine.blocks,
                                          mine.token_heads,    mine.flops,
                                          mine.read_seconds,   mine.compute_seconds,
                                          mine.write_seconds,  mine.total_seconds};
  int ranks = 1;
  MPI_Comm_size(comm, &ranks);
  std::vector<double> all(std::size_t(ranks) * fields);
  MPI_Allgather(packed.data(), fields, MPI_DOUBLE, all.data(), fields, MPI_DOUBLE, comm);
  std::vector<RankReport> reports(static_cast<std::size_t>(ranks));
  for (std::size_t r = 0; r < reports.size(); ++r) {
    const double* f = all.data() + r * fields;
    reports[r] = {f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]};
  }
  return reports;
}

RunResult run_forward_file(MPI_Comm comm, const RunConfig& config) {
  return run_input_file<RankRun>(comm, config, [&](const io::ForwardInputFile& input) {
    if (config.backward) io::check_backward_input(input);
  });
}

}  // namespace gdp::dist
