// SPDX-License-Identifier: Apache-2.0
// Reading safetensors files with plain POSIX I/O (one process; the MPI reader is in src/dist).
#include <gdp/safetensors.hpp>

#include "common/gdp_asserts.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace gdp::io {

namespace {

/// A file opened for reading, closed when it goes out of scope.
class ReadOnlyFile {
 public:
  explicit ReadOnlyFile(const std::string& path) : path_(path), fd_(::open(path.c_str(), O_RDONLY)) {
    GDP_EXPECT(fd_ >= 0, path, "cannot open for reading: ", std::strerror(errno));
  }
  ~ReadOnlyFile() { ::close(fd_); }
  ReadOnlyFile(const ReadOnlyFile&) = delete;
  ReadOnlyFile& operator=(const ReadOnlyFile&) = delete;

  std::uint64_t size() const {
    struct stat status {};
    GDP_EXPECT(::fstat(fd_, &status) == 0, path_, "cannot stat: ", std::strerror(errno));
    return std::uint64_t(status.st_size);
  }

  void read_at(std::uint64_t offset, void* destination, std::uint64_t bytes) const {
    auto* out = static_cast<char*>(destination);
    while (bytes > 0) {
      const ssize_t got = ::pread(fd_, out, bytes, off_t(offset));
      if (got < 0 && errno == EINTR) continue;
      GDP_EXPECT(got > 0, path_, "cannot read ", bytes, " bytes at offset ", offset, ": ",
                 got < 0 ? std::strerror(errno) : "unexpected end of file");
      out += got;
      offset += std::uint64_t(got);
      bytes -= std::uint64_t(got);
    }
  }

 private:
  std::string path_;
  int fd_;
};

}  // namespace

SafetensorsHeader read_safetensors_header(
    const std::string& path, std::uint64_t file_size,
    const std::function<void(std::uint64_t, void*, std::uint64_t)>& read_at) {
  unsigned char prefix[8] = {};
  if (file_size >= 8) read_at(0, prefix, 8);
  const std::uint64_t length = parse_header_length(path, prefix, file_size);
  std::string json(length, '\0');
  read_at(8, json.data(), length);
  return parse_safetensors_header(path, file_size, json);
}

SafetensorsHeader read_safetensors_header(const std::string& path) {
  const ReadOnlyFile file(path);
  return read_safetensors_header(path, file.size(),
                                 [&](std::uint64_t offset, void* destination, std::uint64_t bytes) {
                                   file.read_at(offset, destination, bytes);
                                 });
}

void read_byte_runs(const std::string& path, const std::vector<ByteRun>& runs, void* destination) {
  const ReadOnlyFile file(path);
  auto* out = static_cast<char*>(destination);
  for (const ByteRun& run : runs) {
    file.read_at(run.offset, out, run.length);
    out += run.length;
  }
}

std::vector<std::byte> read_tensor_bytes(const SafetensorsHeader& header, const TensorEntry& tensor) {
  std::vector<std::byte> bytes(tensor.num_bytes());
  read_byte_runs(header.path, {{tensor.begin, tensor.num_bytes()}}, bytes.data());
  return bytes;
}

}  // namespace gdp::io
