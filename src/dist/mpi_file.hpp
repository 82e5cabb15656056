// SPDX-License-Identifier: Apache-2.0
// MPI-IO access to one file shared by all ranks of a communicator: independent reads of
// small pieces at explicit offsets (the safetensors header), and collective reads and writes
// in which every rank moves its own list of byte runs (its slabs of the tensors) through one
// derived datatype, so that no rank touches bytes it does not own.
#pragma once

#include <gdp/safetensors.hpp>

#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace gdp::dist {

class MpiFile {
 public:
  enum class Mode { read, create };

  /// Opens `path` on every rank of `comm` (collective). `Mode::create` creates or reuses the
  /// file for writing. \throws gdp::InvalidArgument naming the path when MPI cannot open it.
  MpiFile(MPI_Comm comm, std::string path, Mode mode);
  /// Closes the file if still open (collective, like close()).
  ~MpiFile();
  MpiFile(const MpiFile&) = delete;
  MpiFile& operator=(const MpiFile&) = delete;

  const std::string& path() const { return path_; }
  std::uint64_t size() const;
  /// Sets the file's size (collective).
  void set_size(std::uint64_t bytes);

  /// Reads or writes `bytes` bytes at absolute `offset` (independent: this rank only).
  void read_at(std::uint64_t offset, void* data, std::uint64_t bytes);
  void write_at(std::uint64_t offset, const void* data, std::uint64_t bytes);

  /// Reads this rank's `runs` (ascending, disjoint) one after the other into `destination`
  /// (collective: every rank calls it, with its own runs, possibly none).
  void read_runs(const std::vector<io::ByteRun>& runs, void* destination);
  /// Writes `source` to this rank's `runs` (collective, like read_runs).
  void write_runs(const std::vector<io::ByteRun>& runs, const void* source);

  /// Closes the file (collective).
  void close();

 private:
  void transfer_runs(const std::vector<io::ByteRun>& runs, void* data, bool write);
  void expect_success(int code, const std::string& what) const;

  MPI_Comm comm_;
  std::string path_;
  MPI_File file_ = MPI_FILE_NULL;
};

/// Reads and validates the safetensors header of `file` (independent: this rank only).
io::SafetensorsHeader read_header(MpiFile& file);

/// Deletes `path` if it exists (this rank only); true when something was deleted.
bool delete_file(const std::string& path);

}  // namespace gdp::dist
