// SPDX-License-Identifier: Apache-2.0
#include "distributed_forward.hpp"

#include "block_call.hpp"
#include "block_slabs.hpp"
#include "collective_failure.hpp"
#include "common/execution_spaces.hpp"
#include "common/useful_work.hpp"
#include "io/exact_conversion.hpp"
#include "mpi_file.hpp"
#include "output_commit.hpp"
#include "whole_problem_options.hpp"
#include "work_partition.hpp"

#include <array>
#include <chrono>
#include <cstdio>
#include <map>
#include <optional>

namespace gdp::dist {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

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
      : comm_(comm), config_(config), input_(input), report_(report) {
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
    const int n = input_.shape.num_householder;
    std::vector<std::string> names;
    for (const char* name : {"q", "k", "v", "beta", "g", "h0"})
      if (input_.header.find(name)) names.push_back(name);
    if (config_.backward)
      for (const char* name : {"do", "dht"})
        if (input_.header.find(name)) names.push_back(name);
    run_collectively(comm_, [&] {
      for (const std::string& name : names) {
        slabs_[name] = pack_slabs(*input_.header.find(name), blocks_, n);
        bytes_[name].resize(slabs_[name].bytes());
      }
    });
    run_collectively(comm_, [&] {
      for (const std::string& name : names) file.read_runs(slabs_[name].runs, bytes_[name].data());
    });
    run_collectively(comm_, [&] { file.close(); });
    // g, h0 and dht are used in the accumulation type, whatever float type the file holds.
    run_collectively(comm_, [&] {
      for (const char* name : {"g", "h0", "dht"}) {
        if (!bytes_.count(name)) continue;
        const io::TensorEntry* entry = input_.header.find(name);
        const std::size_t count = bytes_[name].size() / io::dtype_size(entry->dtype);
        real_[name].resize(count);
        io::convert_exactly(input_.header.path, name, entry->dtype, bytes_[name].data(), count,
                            real_[name].data());
        bytes_.erase(name);
      }
    });
    report_.read_seconds = seconds_since(start);
    double total = 0;
    for (const auto& [name, packed] : slabs_) total += double(packed.bytes());
    progress("rank 0 read " + formatted("%.1f MB", total / 1e6) + " of input slabs in " +
             formatted("%.2f s", report_.read_seconds));
  }

  void compute() {
    const auto start = Clock::now();
    output_layout_ = io::plan_safetensors(io::forward_output_specs(input_, config_.backward),
                                          io::options_metadata(input_.options, input_.shape.key_dim));
    for (const io::TensorEntry& tensor : output_layout_.tensors) {
      output_slabs_[tensor.name] = pack_slabs(tensor, blocks_, input_.shape.num_householder);
      outputs_[tensor.name].resize(output_slabs_[tensor.name].bytes());
    }
    ForwardOptions chosen = input_.options;
    chosen.chunk_size = config_.chunk_size;
    run_collectively(comm_, [&] {
      with_execution_space(config_.space, [&](auto space) {
        using ExecSpace = decltype(space);
        const ForwardOptions options = whole_problem_options<ExecSpace>(input_.shape, chosen);
        for (std::size_t b = 0; b < blocks_.size(); ++b) {
          const BlockCall<ExecSpace, Scalar> call(block_inputs(b));
          call.forward(options, block_outputs(b));
          if (config_.backward) call.backward(options, block_outputs(b));
        }
      });
    });
    report_.compute_seconds = seconds_since(start);
    progress("rank 0 computed " + std::to_string(blocks_.size()) + " blocks in " +
             formatted("%.2f s", report_.compute_seconds));
  }

  void write() {
    const auto start = Clock::now();
    std::vector<OutputPart> parts;
    for (const io::TensorEntry& tensor : output_layout_.tensors)
      parts.push_back({&output_slabs_.at(tensor.name), outputs_.at(tensor.name).data()});
    write_output_file(comm_, config_.output, output_layout_, parts);
    report_.write_seconds = seconds_since(start);
  }

 private:
  /// Block b's part of a packed input of the storage type, or nullptr when absent.
  Scalar* stored(const char* name, std::size_t b) {
    if (!bytes_.count(name)) return nullptr;
    return reinterpret_cast<Scalar*>(bytes_[name].data() + slabs_[name].block_begin[b]);
  }

  /// Block b's part of a packed input converted to the accumulation type, or nullptr.
  Real* converted(const char* name, std::size_t b) {
    if (!real_.count(name)) return nullptr;
    return real_[name].data() + slabs_[name].block_begin[b] / io::dtype_size(input_.header.find(name)->dtype);
  }

  /// Block b's part of an output buffer, or nullptr when the output has no such tensor.
  template <class T>
  T* output(const char* name, std::size_t b) {
    if (!outputs_.count(name)) return nullptr;
    return reinterpret_cast<T*>(outputs_[name].data() + output_slabs_[name].block_begin[b]);
  }

  BlockHostInputs<Scalar> block_inputs(std::size_t b) {
    BlockHostInputs<Scalar> in;
    in.shape = block_shape(input_.shape, blocks_[b]);
    in.q = stored("q", b);
    in.k = stored("k", b);
    in.v = stored("v", b);
    in.beta = stored("beta", b);
    in.g = converted("g", b);
    in.h0 = converted("h0", b);
    in.d_o = stored("do", b);
    in.dht = converted("dht", b);
    return in;
  }

  BlockHostOutputs<Scalar> block_outputs(std::size_t b) {
    BlockHostOutputs<Scalar> out;
    out.o = output<Scalar>("o", b);
    out.ht = output<Real>("ht", b);
    out.dq = output<Scalar>("dq", b);
    out.dk = output<Scalar>("dk", b);
    out.dv = output<Scalar>("dv", b);
    out.dbeta = output<Scalar>("dbeta", b);
    out.dg = output<Real>("dg", b);
    out.dh0 = output<Real>("dh0", b);
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
  std::map<std::string, PackedSlabs> slabs_;
  std::map<std::string, std::vector<std::byte>> bytes_;  // inputs as stored in the file
  std::map<std::string, std::vector<Real>> real_;        // g, h0, dht in the accumulation type
  io::SafetensorsLayout output_layout_;
  std::map<std::string, PackedSlabs> output_slabs_;
  std::map<std::string, std::vector<std::byte>> outputs_;  // packed, as the file stores them
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
  const auto start = Clock::now();
  RunResult result;
  RankReport mine;
  std::optional<MpiFile> input;
  run_collectively(comm, [&] {
    input.emplace(comm, config.input, MpiFile::Mode::read);
    result.input = describe_input(*input);
    if (config.backward) io::check_backward_input(result.input);
  });
  io::with_storage_type(result.input.storage, [&](auto storage) {
    RankRun<decltype(storage)> run(comm, config, result.input, mine);
    run.read(*input);
    run.compute();
    run.write();
  });
  mine.total_seconds = seconds_since(start);
  result.ranks = gather_reports(comm, mine);
  return result;
}

}  // namespace gdp::dist
