// SPDX-License-Identifier: Apache-2.0
// A rank's slabs of a run's input and output files, shared by the run over (sequence, head)
// pairs (distributed_forward.cpp) and the sequence-parallel run (sequence_parallel_run.cpp):
// the input tensors' slabs of the rank's work blocks read with collective MPI-IO into packed
// buffers (g, h0 and dht converted to the accumulation type), and the output tensors' slabs
// packed the same way, written into the output file once every rank has its results.
#pragma once

#include "block_slabs.hpp"
#include "collective_failure.hpp"
#include "mpi_file.hpp"
#include "output_commit.hpp"
#include "test_hooks.hpp"

#include "io/exact_conversion.hpp"
#include "io/forward_file.hpp"

#include <mpi.h>

#include <map>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

namespace gdp::dist {

/// `buffer` resized to `bytes`; an allocation failure says what could not be allocated.
inline void allocate_slabs(MPI_Comm comm, std::vector<std::byte>& buffer, std::uint64_t bytes,
                           const std::string& what) {
  try {
    if (test_failure_requested(comm, "allocate")) throw std::bad_alloc();
    buffer.resize(bytes);
  } catch (const std::bad_alloc& e) {
    throw std::runtime_error("gdp: " + what + ": cannot allocate " + std::to_string(bytes) +
                             " bytes for this rank's slabs (" + e.what() + ")");
  }
}

template <class Scalar>
class RankSlabs {
 public:
  using Real = accumulator_t<Scalar>;

  RankSlabs(MPI_Comm comm, const io::ForwardInputFile& input) : comm_(comm), input_(input) {}

  /// Reads the slabs of `blocks` of the tensors `names` that the file holds, then closes
  /// `file` (collective). Returns the bytes read.
  double read(MpiFile& file, const std::vector<std::string>& names, const std::vector<WorkBlock>& blocks) {
    std::vector<std::string> present;
    for (const std::string& name : names)
      if (input_.header.find(name)) present.push_back(name);
    run_collectively(comm_, [&] {
      std::vector<WorkBlock> sliced = blocks;
      if (test_failure_requested(comm_, "slice"))  // test hook: slabs past the tensors' heads
        for (WorkBlock& block : sliced) block.head_end += input_.shape.heads;
      for (const std::string& name : present) {
        slabs_[name] = pack_slabs(*input_.header.find(name), sliced, input_.shape.num_householder);
        allocate_slabs(comm_, bytes_[name], slabs_[name].bytes(), name);
      }
    });
    run_collectively(comm_, [&] {
      for (const std::string& name : present) file.read_runs(slabs_[name].runs, bytes_[name].data());
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
    double total = 0;
    for (const auto& [name, packed] : slabs_) total += double(packed.bytes());
    return total;
  }

  /// Lays out the output file of `specs` and allocates the packed slabs of `blocks` of each
  /// of its tensors.
  void plan_output(const std::vector<io::TensorSpec>& specs, const std::vector<WorkBlock>& blocks) {
    run_collectively(comm_, [&] {
      layout_ = io::plan_safetensors(specs, io::options_metadata(input_.options, input_.shape.key_dim));
      for (const io::TensorEntry& tensor : layout_.tensors) {
        output_slabs_[tensor.name] = pack_slabs(tensor, blocks, input_.shape.num_householder);
        allocate_slabs(comm_, outputs_[tensor.name], output_slabs_[tensor.name].bytes(), tensor.name);
      }
    });
  }

  /// Writes every rank's output slabs into `path` (collective; see output_commit.hpp).
  void write(const std::string& path) const {
    std::vector<OutputPart> parts;
    for (const io::TensorEntry& tensor : layout_.tensors)
      parts.push_back({&output_slabs_.at(tensor.name), outputs_.at(tensor.name).data()});
    write_output_file(comm_, path, layout_, parts);
  }

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

 private:
  MPI_Comm comm_;
  const io::ForwardInputFile& input_;
  std::map<std::string, PackedSlabs> slabs_;
  std::map<std::string, std::vector<std::byte>> bytes_;  // inputs as stored in the file
  std::map<std::string, std::vector<Real>> real_;        // g, h0, dht in the accumulation type
  io::SafetensorsLayout layout_;
  std::map<std::string, PackedSlabs> output_slabs_;
  std::map<std::string, std::vector<std::byte>> outputs_;  // packed, as the file stores them
};

}  // namespace gdp::dist
