// SPDX-License-Identifier: Apache-2.0
// `gdp_app run --seq-parallel`: each rank reads its slice of the token axis (every head),
// computes it with SliceComputation and writes its rows of o and ht. The steps that may fail
// on one rank alone run through run_collectively; the scan between them is collective.
#include "sequence_parallel.hpp"

#include "block_slabs.hpp"
#include "collective_failure.hpp"
#include "common/execution_spaces.hpp"
#include "common/gdp_asserts.hpp"
#include "common/useful_work.hpp"
#include "io/exact_conversion.hpp"
#include "mpi_file.hpp"
#include "output_commit.hpp"

#include <chrono>
#include <map>
#include <optional>

namespace gdp::dist {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

template <class Scalar>
class SliceRun {
 public:
  using Real = accumulator_t<Scalar>;

  SliceRun(MPI_Comm comm, const RunConfig& config, const io::ForwardInputFile& input, RankReport& report)
      : comm_(comm), config_(config), input_(input), report_(report) {
    int rank = 0, ranks = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &ranks);
    const auto& shape = input.shape;
    slice_ = partition_slices(shape, ranks, continuing_cost(shape, config.chunk_size))[std::size_t(rank)];
    // The rows a slice reads (h0 of the sequences starting in it) and writes (ht of those
    // ending in it), every head.
    reads_ = {slice_.start_begin, slice_.start_end, 0, shape.heads, slice_.token_begin, slice_.token_end};
    writes_ = {slice_.final_begin, slice_.final_end, 0, shape.heads, slice_.token_begin, slice_.token_end};
    report_.units = double((slice_.continued_tokens() > 0) + (slice_.start_end - slice_.start_begin));
    report_.token_heads = double(slice_.tokens() * shape.heads);
    report_.flops = detail::useful_flops(shape, report_.token_heads);
  }

  void read(MpiFile& file) {
    const auto start = Clock::now();
    std::vector<std::string> names;
    for (const char* name : {"q", "k", "v", "beta", "g", "h0"})
      if (input_.header.find(name)) names.push_back(name);
    run_collectively(comm_, [&] {
      for (const std::string& name : names) {
        slabs_[name] = pack_slabs(*input_.header.find(name), {reads_}, input_.shape.num_householder);
        bytes_[name].resize(slabs_[name].bytes());
      }
    });
    run_collectively(comm_, [&] {
      for (const std::string& name : names) file.read_runs(slabs_[name].runs, bytes_[name].data());
    });
    run_collectively(comm_, [&] { file.close(); });
    run_collectively(comm_, [&] {  // g and h0 are used in the accumulation type
      for (const char* name : {"g", "h0"}) {
        if (!bytes_.count(name)) continue;
        const io::TensorEntry* entry = input_.header.find(name);
        real_[name].resize(bytes_[name].size() / io::dtype_size(entry->dtype));
        io::convert_exactly(input_.header.path, name, entry->dtype, bytes_[name].data(),
                            real_[name].size(), real_[name].data());
      }
    });
    report_.read_seconds = seconds_since(start);
  }

  void compute() {
    const auto start = Clock::now();
    layout_ = io::plan_safetensors(io::forward_output_specs(input_),
                                   io::options_metadata(input_.options, input_.shape.key_dim));
    for (const io::TensorEntry& tensor : layout_.tensors) {
      output_slabs_[tensor.name] = pack_slabs(tensor, {writes_}, input_.shape.num_householder);
      outputs_[tensor.name].resize(output_slabs_[tensor.name].bytes());
    }
    ForwardOptions options = input_.options;
    options.chunk_size = config_.chunk_size;
    SliceHostInputs<Scalar> in;
    in.q = stored("q");
    in.k = stored("k");
    in.v = stored("v");
    in.beta = stored("beta");
    in.g = real_.count("g") ? real_["g"].data() : nullptr;
    in.h0 = real_.count("h0") ? real_["h0"].data() : nullptr;
    SliceHostOutputs<Scalar> out;
    out.o = reinterpret_cast<Scalar*>(outputs_.at("o").data());
    out.ht = reinterpret_cast<Real*>(outputs_.at("ht").data());
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
    std::vector<OutputPart> parts;
    for (const io::TensorEntry& tensor : layout_.tensors)
      parts.push_back({&output_slabs_.at(tensor.name), outputs_.at(tensor.name).data()});
    write_output_file(comm_, config_.output, layout_, parts);
    report_.write_seconds = seconds_since(start);
  }

 private:
  Scalar* stored(const char* name) { return reinterpret_cast<Scalar*>(bytes_.at(name).data()); }

  MPI_Comm comm_;
  const RunConfig& config_;
  const io::ForwardInputFile& input_;
  RankReport& report_;
  SlicePlan slice_;
  WorkBlock reads_, writes_;
  std::map<std::string, PackedSlabs> slabs_, output_slabs_;
  std::map<std::string, std::vector<std::byte>> bytes_, outputs_;
  std::map<std::string, std::vector<Real>> real_;
  io::SafetensorsLayout layout_;
};

}  // namespace

RunResult run_sequence_parallel_file(MPI_Comm comm, const RunConfig& config) {
  const auto start = Clock::now();
  RunResult result;
  RankReport mine;
  std::optional<MpiFile> input;
  run_collectively(comm, [&] {
    GDP_EXPECT(!config.backward, "backward",
               "expected the forward only with the sequence-parallel run, got the backward too");
    input.emplace(comm, config.input, MpiFile::Mode::read);
    result.input = describe_input(*input);
  });
  io::with_storage_type(result.input.storage, [&](auto storage) {
    SliceRun<decltype(storage)> run(comm, config, result.input, mine);
    run.read(*input);
    run.compute();
    run.write();
  });
  mine.total_seconds = seconds_since(start);
  result.ranks = gather_reports(comm, mine);
  return result;
}

}  // namespace gdp::dist
