// SPDX-License-Identifier: Apache-2.0
// The safetensors header: dtypes, and the validation of a header read from a file. Every
// check here exists because a file that fails it would make a reader read the wrong bytes
// (or bytes that are not there) without noticing.
#include <gdp/safetensors.hpp>

#include "common/gdp_asserts.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <limits>

// Tensor bytes are moved between files and memory as they are, so the host must share the
// format's byte order.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "gdp reads and writes safetensors data as host bytes, which must be little-endian");

namespace gdp::io {

namespace {

struct DTypeInfo {
  DType dtype;
  const char* name;
  std::size_t size;
};

constexpr std::array<DTypeInfo, 15> dtype_table{{
    {DType::BOOL, "BOOL", 1},       {DType::U8, "U8", 1},   {DType::I8, "I8", 1},
    {DType::F8_E5M2, "F8_E5M2", 1}, {DType::F8_E4M3, "F8_E4M3", 1},
    {DType::I16, "I16", 2},         {DType::U16, "U16", 2}, {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},       {DType::I32, "I32", 4}, {DType::U32, "U32", 4},
    {DType::F32, "F32", 4},         {DType::F64, "F64", 8}, {DType::I64, "I64", 8},
    {DType::U64, "U64", 8},
}};

const DTypeInfo& info(DType dtype) {
  return *std::find_if(dtype_table.begin(), dtype_table.end(),
                       [&](const DTypeInfo& i) { return i.dtype == dtype; });
}

// The format's own limit; it also keeps a corrupt length from allocating gigabytes.
constexpr std::uint64_t max_header_length = 100'000'000;

// A safetensors header nests three levels (root, tensor, shape). Deeper JSON is refused while
// it is parsed: nesting thousands of levels deep would exhaust the stack of the recursive
// parts of the JSON library (printing, comparing).
constexpr int max_json_depth = 16;

/// A JSON value for a message: whole when short, else its beginning (a header may hold
/// megabytes).
std::string brief(const nlohmann::json& value) {
  constexpr std::size_t max_length = 80;
  std::string text = value.dump();
  if (text.size() > max_length)
    text = text.substr(0, max_length) + "... (" + std::to_string(text.size()) + " characters)";
  return text;
}

/// A JSON value that must be a non-negative integer (shape extents, byte offsets).
std::uint64_t unsigned_value(const std::string& path, const std::string& tensor, const char* field,
                             const nlohmann::json& value) {
  GDP_EXPECT(value.is_number_unsigned(), path, "tensor \"", tensor, "\": \"", field,
             "\" must hold non-negative integers, got ", brief(value));
  return value.get<std::uint64_t>();
}

TensorEntry parse_entry(const std::string& path, std::uint64_t data_start,
                        std::uint64_t data_size, const std::string& name,
                        const nlohmann::json& entry) {
  GDP_EXPECT(entry.is_object(), path, "tensor \"", name,
             "\": expected an object with dtype, shape and data_offsets, got ", brief(entry));
  for (const char* field : {"dtype", "shape", "data_offsets"})
    GDP_EXPECT(entry.contains(field), path, "tensor \"", name, "\": missing \"", field, "\"");
  const auto& dtype = entry["dtype"];
  GDP_EXPECT(dtype.is_string(), path, "tensor \"", name, "\": dtype must be a string, got ",
             brief(dtype));
  const auto parsed = parse_dtype(dtype.get<std::string>());
  GDP_EXPECT(parsed.has_value(), path, "tensor \"", name, "\": unknown dtype ", brief(dtype));

  TensorEntry tensor;
  tensor.name = name;
  tensor.dtype = *parsed;
  const auto& shape = entry["shape"];
  GDP_EXPECT(shape.is_array(), path, "tensor \"", name, "\": shape must be an array, got ",
             brief(shape));
  // The element count must fit TensorEntry::num_elements(), an int64: so must every product
  // of the leading extents up to a zero extent, which is how num_elements() multiplies.
  constexpr std::uint64_t max_elements = std::numeric_limits<std::int64_t>::max();
  std::uint64_t elements = 1;
  bool overflow = false;
  for (const auto& extent : shape) {
    const std::uint64_t e = unsigned_value(path, name, "shape", extent);
    GDP_EXPECT(e <= std::uint64_t(std::numeric_limits<std::int64_t>::max()), path, "tensor \"",
               name, "\": extent ", e, " is too large");
    tensor.shape.push_back(std::int64_t(e));
    overflow |= e != 0 && elements > max_elements / e;
    elements *= e;
  }
  const auto& offsets = entry["data_offsets"];
  GDP_EXPECT(offsets.is_array() && offsets.size() == 2, path, "tensor \"", name,
             "\": data_offsets must be [begin, end], got ", brief(offsets));
  const std::uint64_t begin = unsigned_value(path, name, "data_offsets", offsets[0]);
  const std::uint64_t end = unsigned_value(path, name, "data_offsets", offsets[1]);
  GDP_EXPECT(begin <= end, path, "tensor \"", name, "\": data_offsets [", begin, ", ", end,
             "] end before they begin");
  GDP_EXPECT(end <= data_size, path, "tensor \"", name, "\": byte range [", begin, ", ", end,
             ") lies outside the file, whose data section holds ", data_size, " bytes");
  const std::uint64_t size = dtype_size(tensor.dtype);
  overflow |= elements > std::numeric_limits<std::uint64_t>::max() / size;
  const std::string needed = overflow ? "more than 2^63" : std::to_string(elements * size);
  GDP_EXPECT(!overflow && elements * size == end - begin, path, "tensor \"", name, "\": shape ",
             detail::format_shape(tensor.shape), " of ", dtype_name(tensor.dtype), " needs ",
             needed, " bytes, but data_offsets [", begin, ", ", end, "] hold ", end - begin);
  tensor.begin = data_start + begin;
  tensor.end = data_start + end;
  return tensor;
}

std::map<std::string, std::string> parse_metadata(const std::string& path,
                                                  const nlohmann::json& metadata) {
  GDP_EXPECT(metadata.is_object(), path, "__metadata__ must be an object, got ", brief(metadata));
  std::map<std::string, std::string> result;
  for (const auto& [key, value] : metadata.items()) {
    GDP_EXPECT(value.is_string(), path, "__metadata__ value of \"", key,
               "\" must be a string (the format allows only strings), got ", brief(value));
    result[key] = value.get<std::string>();
  }
  return result;
}

/// No two tensors may share a byte: a writer filling one would corrupt the other.
void expect_no_overlap(const std::string& path, const std::vector<TensorEntry>& tensors) {
  const TensorEntry* furthest = nullptr;  // the tensor reaching furthest so far
  for (const TensorEntry& t : tensors) {
    if (t.num_bytes() == 0) continue;
    if (furthest)
      GDP_EXPECT(t.begin >= furthest->end, path, "tensors \"", furthest->name, "\" and \"",
                 t.name, "\" overlap: byte ranges [", furthest->begin, ", ", furthest->end,
                 ") and [", t.begin, ", ", t.end, ")");
    if (!furthest || t.end > furthest->end) furthest = &t;
  }
}

}  // namespace

const char* dtype_name(DType dtype) { return info(dtype).name; }

std::size_t dtype_size(DType dtype) { return info(dtype).size; }

std::optional<DType> parse_dtype(const std::string& name) {
  for (const DTypeInfo& i : dtype_table)
    if (name == i.name) return i.dtype;
  return std::nullopt;
}

std::int64_t TensorEntry::num_elements() const {
  std::int64_t n = 1;
  for (const std::int64_t extent : shape) n *= extent;
  return n;
}

const TensorEntry* SafetensorsHeader::find(const std::string& name) const {
  for (const TensorEntry& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

std::uint64_t parse_header_length(const std::string& path, const unsigned char (&prefix)[8],
                                  std::uint64_t file_size) {
  GDP_EXPECT(file_size >= 8, path, "file is ", file_size,
             " bytes, shorter than the 8-byte header length of a safetensors file");
  std::uint64_t length = 0;
  for (int i = 7; i >= 0; --i) length = (length << 8) | prefix[i];  // little-endian
  GDP_EXPECT(length <= file_size - 8, path, "header length ", length,
             " runs past the end of the file (", file_size, " bytes)");
  GDP_EXPECT(length <= max_header_length, path, "header length ", length,
             " exceeds the format's limit of ", max_header_length, " bytes");
  return length;
}

SafetensorsHeader parse_safetensors_header(const std::string& path, std::uint64_t file_size,
                                           const std::string& header_json) {
  nlohmann::json root;
  const auto limit_depth = [&](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
    GDP_EXPECT(depth <= max_json_depth, path, "the JSON header nests deeper than ",
               max_json_depth, " levels");
    return true;
  };
  try {
    root = nlohmann::json::parse(header_json, limit_depth);
  } catch (const nlohmann::json::exception& e) {  // syntax, and numbers out of range (1e999)
    GDP_EXPECT(false, path, "invalid JSON header: ", e.what());
  }
  GDP_EXPECT(root.is_object(), path, "the JSON header must be an object, got a ",
             root.type_name());

  SafetensorsHeader header;
  header.path = path;
  header.file_size = file_size;
  header.data_start = 8 + header_json.size();
  GDP_EXPECT(header.data_start <= file_size, path, "header of ", header_json.size(),
             " bytes runs past the end of the file (", file_size, " bytes)");
  for (const auto& [name, entry] : root.items()) {
    if (name == "__metadata__")
      header.metadata = parse_metadata(path, entry);
    else
      header.tensors.push_back(
          parse_entry(path, header.data_start, file_size - header.data_start, name, entry));
  }
  std::sort(header.tensors.begin(), header.tensors.end(),
            [](const TensorEntry& a, const TensorEntry& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
            });
  expect_no_overlap(path, header.tensors);
  return header;
}

}  // namespace gdp::io
