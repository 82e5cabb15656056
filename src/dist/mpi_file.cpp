// SPDX-License-Identifier: Apache-2.0
#include "mpi_file.hpp"

#include "common/gdp_asserts.hpp"

#include <algorithm>
#include <climits>
#include <cstdio>

namespace gdp::dist {

namespace {

// MPI counts are ints: move at most this many bytes per call and per datatype block.
constexpr std::uint64_t max_piece = std::uint64_t(1) << 30;

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  return std::string(text, std::size_t(length));
}

}  // namespace

MpiFile::MpiFile(MPI_Comm comm, std::string path, Mode mode) : comm_(comm), path_(std::move(path)) {
  const int access = mode == Mode::read ? MPI_MODE_RDONLY : (MPI_MODE_CREATE | MPI_MODE_WRONLY);
  const int code = MPI_File_open(comm_, path_.c_str(), access, MPI_INFO_NULL, &file_);
  if (code != MPI_SUCCESS) file_ = MPI_FILE_NULL;
  expect_success(code, mode == Mode::read ? "cannot open for reading" : "cannot open for writing");
}

MpiFile::~MpiFile() {
  if (file_ != MPI_FILE_NULL) MPI_File_close(&file_);
}

void MpiFile::expect_success(int code, const std::string& what) const {
  GDP_EXPECT(code == MPI_SUCCESS, path_, what, ": ", mpi_error_text(code));
}

std::uint64_t MpiFile::size() const {
  MPI_Offset bytes = 0;
  expect_success(MPI_File_get_size(file_, &bytes), "cannot get the file size");
  return std::uint64_t(bytes);
}

void MpiFile::set_size(std::uint64_t bytes) {
  expect_success(MPI_File_set_size(file_, MPI_Offset(bytes)), "cannot set the file size");
}

void MpiFile::read_at(std::uint64_t offset, void* data, std::uint64_t bytes) {
  for (std::uint64_t done = 0; done < bytes;) {
    const std::uint64_t piece = std::min(max_piece, bytes - done);
    MPI_Status status;
    expect_success(MPI_File_read_at(file_, MPI_Offset(offset + done), static_cast<char*>(data) + done,
                                    int(piece), MPI_BYTE, &status),
                   "cannot read " + std::to_string(piece) + " bytes at offset " +
                       std::to_string(offset + done));
    int got = 0;
    MPI_Get_count(&status, MPI_BYTE, &got);
    GDP_EXPECT(std::uint64_t(got) == piece, path_, "read ", got, " bytes at offset ", offset + done,
               " where ", piece, " were expected: the file is shorter than its header says");
    done += piece;
  }
}

void MpiFile::write_at(std::uint64_t offset, const void* data, std::uint64_t bytes) {
  for (std::uint64_t done = 0; done < bytes;) {
    const std::uint64_t piece = std::min(max_piece, bytes - done);
    MPI_Status status;
    expect_success(MPI_File_write_at(file_, MPI_Offset(offset + done),
                                     static_cast<const char*>(data) + done, int(piece), MPI_BYTE,
                                     &status),
                   "cannot write " + std::to_string(piece) + " bytes at offset " +
                       std::to_string(offset + done));
    done += piece;
  }
}

void MpiFile::read_runs(const std::vector<io::ByteRun>& runs, void* destination) {
  transfer_runs(runs, destination, false);
}

void MpiFile::write_runs(const std::vector<io::ByteRun>& runs, const void* source) {
  transfer_runs(runs, const_cast<void*>(source), true);
}

void MpiFile::transfer_runs(const std::vector<io::ByteRun>& runs, void* data, bool write) {
  // The file view: this rank's runs as one hindexed datatype of bytes (displacements ascend,
  // as MPI requires), so each collective call moves exactly the bytes this rank owns.
  std::vector<int> lengths;
  std::vector<MPI_Aint> displacements;
  std::uint64_t total = 0;
  for (const io::ByteRun& run : runs)
    for (std::uint64_t done = 0; done < run.length; done += max_piece) {
      lengths.push_back(int(std::min(max_piece, run.length - done)));
      displacements.push_back(MPI_Aint(run.offset + done));
      total += std::uint64_t(lengths.back());
    }
  MPI_Datatype filetype = MPI_BYTE;  // a rank without runs moves nothing through a plain view
  if (!lengths.empty()) {
    MPI_Type_create_hindexed(int(lengths.size()), lengths.data(), displacements.data(), MPI_BYTE,
                             &filetype);
    MPI_Type_commit(&filetype);
  }
  const std::string what = write ? "collective write" : "collective read";
  int code = MPI_File_set_view(file_, 0, MPI_BYTE, filetype, "native", MPI_INFO_NULL);
  // Every rank makes the same number of calls, each moving at most max_piece bytes.
  const long long mine = (long long)((total + max_piece - 1) / max_piece);
  long long rounds = 0;
  MPI_Allreduce(&mine, &rounds, 1, MPI_LONG_LONG, MPI_MAX, comm_);
  std::uint64_t done = 0;
  for (long long round = 0; round < rounds && code == MPI_SUCCESS; ++round) {
    const int piece = int(std::min(max_piece, total - done));
    char* at = static_cast<char*>(data) + done;
    MPI_Status status;
    code = write ? MPI_File_write_all(file_, at, piece, MPI_BYTE, &status)
                 : MPI_File_read_all(file_, at, piece, MPI_BYTE, &status);
    done += std::uint64_t(piece);
  }
  // Back to the plain byte view in which read_at / write_at offsets are absolute.
  const int reset = MPI_File_set_view(file_, 0, MPI_BYTE, MPI_BYTE, "native", MPI_INFO_NULL);
  if (filetype != MPI_BYTE) MPI_Type_free(&filetype);
  expect_success(code, what + " of " + std::to_string(total) + " bytes in " +
                           std::to_string(runs.size()) + " runs");
  expect_success(reset, "cannot reset the file view");
}

void MpiFile::close() {
  if (file_ == MPI_FILE_NULL) return;
  expect_success(MPI_File_close(&file_), "cannot close");
}

io::SafetensorsHeader read_header(MpiFile& file) {
  return io::read_safetensors_header(
      file.path(), file.size(), [&](std::uint64_t offset, void* destination, std::uint64_t bytes) {
        file.read_at(offset, destination, bytes);
      });
}

bool delete_file(const std::string& path) { return std::remove(path.c_str()) == 0; }

}  // namespace gdp::dist
