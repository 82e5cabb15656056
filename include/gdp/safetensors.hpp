// SPDX-License-Identifier: Apache-2.0
/// \file safetensors.hpp
/// \brief Reading and writing the safetensors file format (the format gdp's inputs and
/// outputs are exchanged in).
///
/// A safetensors file is an 8-byte little-endian length N, N bytes of a JSON header, then
/// the tensors' bytes. The header maps each tensor name to
/// `{"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}` (offsets relative to the
/// first byte after the header) and may hold `"__metadata__": {"key": "value", ...}` with
/// string values only. Tensors are row-major and little-endian.
///
/// The reader validates everything before any tensor byte is used; a malformed file throws
/// gdp::InvalidArgument whose argument is the file's path and whose message names the
/// problem, e.g.
/// `gdp: in.safetensors: header length 4096 runs past the end of the file (1024 bytes)`.
/// Reading is split in two so that parallel readers can fetch only the byte ranges they need:
/// the header first (read_safetensors_header), then any set of byte ranges (read_byte_runs,
/// or an MPI-IO equivalent).
#pragma once

#include <gdp/storage_types.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace gdp::io {

/// The element types of the safetensors format, by their names in the format. gdp reads
/// and writes F64, F32, BF16 and F16 tensors and I32 / I64 offsets; the others are known so
/// that files holding them can still be checked.
enum class DType {
  BOOL,     ///< boolean, 1 byte
  U8,       ///< unsigned 8-bit integer
  I8,       ///< signed 8-bit integer
  F8_E5M2,  ///< 8-bit float, 5 exponent and 2 mantissa bits
  F8_E4M3,  ///< 8-bit float, 4 exponent and 3 mantissa bits
  I16,      ///< signed 16-bit integer
  U16,      ///< unsigned 16-bit integer
  F16,      ///< IEEE binary16 (gdp::float16)
  BF16,     ///< bfloat16 (gdp::bfloat16)
  I32,      ///< signed 32-bit integer
  U32,      ///< unsigned 32-bit integer
  F32,      ///< IEEE binary32 (float)
  F64,      ///< IEEE binary64 (double)
  I64,      ///< signed 64-bit integer
  U64,      ///< unsigned 64-bit integer
};

/// The format's name of a dtype ("F32", "BF16", ...).
const char* dtype_name(DType dtype);
/// Bytes per element.
std::size_t dtype_size(DType dtype);
/// The dtype with this name, or nothing when the format has no such dtype.
std::optional<DType> parse_dtype(const std::string& name);

/// The dtype a gdp storage type is stored as: F64, F32, BF16 or F16.
template <class Scalar>
constexpr DType dtype_of() {
  return std::is_same<Scalar, double>::value    ? DType::F64
         : std::is_same<Scalar, float>::value   ? DType::F32
         : std::is_same<Scalar, bfloat16>::value ? DType::BF16
                                                 : DType::F16;
}

/// One tensor of a file: what it is and where its bytes are.
struct TensorEntry {
  std::string name;                 ///< the tensor's name in the header
  DType dtype = DType::F32;         ///< element type
  std::vector<std::int64_t> shape;  ///< extents, outermost first (row-major)
  std::uint64_t begin = 0;  ///< absolute offset of the first byte in the file
  std::uint64_t end = 0;    ///< absolute offset one past the last byte

  /// The product of the extents (1 for a scalar).
  std::int64_t num_elements() const;
  /// The size of its data: end - begin.
  std::uint64_t num_bytes() const { return end - begin; }
};

/// The validated header of a file.
struct SafetensorsHeader {
  std::string path;                          ///< the file it was read from
  std::uint64_t file_size = 0;               ///< the file's size in bytes
  std::uint64_t data_start = 0;              ///< 8 + header length: where offset 0 of the data is
  std::vector<TensorEntry> tensors;          ///< ordered by position in the file
  std::map<std::string, std::string> metadata;  ///< the "__metadata__" entries

  /// The tensor with this name, or nullptr.
  const TensorEntry* find(const std::string& name) const;
};

/// The header length stored in a file's first 8 bytes, checked against the file size.
/// \throws gdp::InvalidArgument when the file is shorter than 8 bytes, the header runs past
/// the end of the file, or the header is larger than the format's 100 MB limit.
std::uint64_t parse_header_length(const std::string& path, const unsigned char (&prefix)[8],
                                  std::uint64_t file_size);

/// Parses and validates the JSON header (`header_json`: the N bytes after the length) of the
/// file `path` of `file_size` bytes: valid JSON, known dtypes, non-negative shapes whose
/// element count matches the byte range, byte ranges inside the file and not overlapping,
/// metadata values that are strings.
/// \throws gdp::InvalidArgument naming the file and the first problem found.
SafetensorsHeader parse_safetensors_header(const std::string& path, std::uint64_t file_size,
                                           const std::string& header_json);

/// Opens `path` and reads and validates its header (a few kilobytes; no tensor data).
SafetensorsHeader read_safetensors_header(const std::string& path);

/// Reads and validates the header of the file `path` of `file_size` bytes through
/// `read_at(offset, destination, bytes)`, for readers that bring their own I/O (MPI-IO).
SafetensorsHeader read_safetensors_header(
    const std::string& path, std::uint64_t file_size,
    const std::function<void(std::uint64_t offset, void* destination, std::uint64_t bytes)>& read_at);

/// A contiguous range of bytes of a file.
struct ByteRun {
  std::uint64_t offset = 0;  ///< absolute offset in the file
  std::uint64_t length = 0;  ///< number of bytes
};

/// Reads the runs of `path` one after the other into `destination` (which must hold the sum
/// of their lengths).
void read_byte_runs(const std::string& path, const std::vector<ByteRun>& runs, void* destination);

/// The whole of one tensor's bytes.
std::vector<std::byte> read_tensor_bytes(const SafetensorsHeader& header, const TensorEntry& tensor);

/// A tensor to be written: its name, dtype and shape.
struct TensorSpec {
  std::string name;                 ///< the tensor's name in the header
  DType dtype = DType::F32;         ///< element type
  std::vector<std::int64_t> shape;  ///< extents, outermost first (row-major)
};

/// Where everything of a file to be written goes, so that several writers can each write
/// their own part of it at known offsets.
struct SafetensorsLayout {
  /// The file's first bytes: the 8-byte length and the JSON header, padded with spaces so
  /// that the tensor data starts 8-byte aligned.
  std::string header;
  /// Each tensor's absolute byte range, in the order the specs were given (which is also
  /// their order in the file).
  std::vector<TensorEntry> tensors;
  std::uint64_t file_size = 0;  ///< the size of the whole file in bytes

  /// The tensor with this name. \throws gdp::InvalidArgument when there is none.
  const TensorEntry& at(const std::string& name) const;
};

/// Lays out a file holding `tensors` (in this order) and `metadata`.
/// \throws gdp::InvalidArgument on a repeated or reserved name or a negative extent.
SafetensorsLayout plan_safetensors(const std::vector<TensorSpec>& tensors,
                                   const std::map<std::string, std::string>& metadata);

/// Writes a whole file: `layout.header`, then for each tensor i its num_bytes() bytes from
/// `data[i]`. \throws gdp::InvalidArgument when the file cannot be written.
void write_safetensors(const std::string& path, const SafetensorsLayout& layout,
                       const std::vector<const void*>& data);

}  // namespace gdp::io
