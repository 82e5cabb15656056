// SPDX-License-Identifier: Apache-2.0
// The safetensors reader and writer: round trips of every dtype gdp uses, and each kind of
// malformed file, whose message must name the file and the problem.
#include <gdp/errors.hpp>
#include <gdp/safetensors.hpp>

#include "io/temporary_directory.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <fstream>

namespace gdp::test {
namespace {

using io::DType;

/// Writes a file of a length prefix, `json` and `data` as they are (well formed or not).
void write_raw(const std::string& path, const std::string& json, std::size_t data_bytes,
               std::uint64_t stated_length) {
  std::ofstream out(path, std::ios::binary);
  for (int i = 0; i < 8; ++i) out.put(char((stated_length >> (8 * i)) & 0xff));
  out << json << std::string(data_bytes, '\0');
}

void write_raw(const std::string& path, const std::string& json, std::size_t data_bytes) {
  write_raw(path, json, data_bytes, json.size());
}

/// The message of the InvalidArgument that reading `path`'s header throws ("" if none).
std::string header_error(const std::string& path) {
  try {
    io::read_safetensors_header(path);
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(e.argument(), path);
    return e.what();
  }
  return "";
}

TEST(Safetensors, RoundTripOfEveryDtype) {
  TemporaryDirectory dir;
  const std::string path = dir.file("round_trip.safetensors");
  std::vector<io::TensorSpec> specs;
  std::vector<std::vector<unsigned char>> contents;
  for (const DType dtype : {DType::F64, DType::F32, DType::BF16, DType::F16, DType::I32, DType::I64}) {
    specs.push_back({std::string("t_") + io::dtype_name(dtype), dtype, {2, 3}});
    std::vector<unsigned char> bytes(6 * io::dtype_size(dtype));
    for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = (unsigned char)(i * 7 + specs.size());
    contents.push_back(bytes);
  }
  specs.push_back({"empty", DType::F32, {0, 4}});
  contents.emplace_back();
  std::vector<const void*> data;
  for (const auto& c : contents) data.push_back(c.data());
  const std::map<std::string, std::string> metadata{{"num_householder", "2"}, {"scale", "0.125"}};
  const io::SafetensorsLayout layout = io::plan_safetensors(specs, metadata);
  io::write_safetensors(path, layout, data);

  const io::SafetensorsHeader header = io::read_safetensors_header(path);
  EXPECT_EQ(header.file_size, layout.file_size);
  EXPECT_EQ(header.data_start % 8, 0u) << "the data must start 8-byte aligned";
  EXPECT_EQ(header.metadata, metadata);
  ASSERT_EQ(header.tensors.size(), specs.size());
  for (std::size_t i = 0; i < specs.size(); ++i) {
    SCOPED_TRACE(specs[i].name);
    const io::TensorEntry* entry = header.find(specs[i].name);
    ASSERT_NE(entry, nullptr);
    EXPECT_EQ(entry->dtype, specs[i].dtype);
    EXPECT_EQ(entry->shape, specs[i].shape);
    EXPECT_EQ(entry->begin, layout.at(specs[i].name).begin);
    const std::vector<std::byte> bytes = io::read_tensor_bytes(header, *entry);
    ASSERT_EQ(bytes.size(), contents[i].size());
    // std::equal, not memcmp: the empty tensor's vectors have no data (memcmp(nullptr, ...)
    // is undefined even for 0 bytes; UBSan's nonnull-attribute check found it).
    EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), contents[i].begin(),
                           [](std::byte a, unsigned char b) { return std::to_integer<unsigned char>(a) == b; }));
  }
}

TEST(Safetensors, ReadsAByteRangeOnly) {
  TemporaryDirectory dir;
  const std::string path = dir.file("runs.safetensors");
  std::vector<float> values(24);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = float(i);
  const auto layout = io::plan_safetensors({{"x", DType::F32, {24}}}, {});
  io::write_safetensors(path, layout, {values.data()});
  const std::uint64_t begin = layout.at("x").begin;
  std::vector<float> read(5);
  io::read_byte_runs(path, {{begin + 4 * 3, 8}, {begin + 4 * 20, 12}}, read.data());
  EXPECT_EQ(read, (std::vector<float>{3, 4, 20, 21, 22}));
}

TEST(Safetensors, WriterRejectsRepeatedNames) {
  EXPECT_THROW(io::plan_safetensors({{"q", DType::F32, {1}}, {"q", DType::F32, {2}}}, {}),
               InvalidArgument);
  EXPECT_THROW(io::plan_safetensors({{"__metadata__", DType::F32, {1}}}, {}), InvalidArgument);
}

struct MalformedCase {
  const char* name;
  std::string json;
  std::size_t data_bytes;
  const char* message;
};

class MalformedFile : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(MalformedFile, IsRejectedWithAClearMessage) {
  TemporaryDirectory dir;
  const std::string path = dir.file("bad.safetensors");
  write_raw(path, GetParam().json, GetParam().data_bytes);
  const std::string message = header_error(path);
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find(GetParam().message), std::string::npos) << message;
}

INSTANTIATE_TEST_SUITE_P(
    Safetensors, MalformedFile,
    ::testing::Values(
        MalformedCase{"InvalidJson", R"({"q": {"dtype": "F32", "shape": [2])", 8, "invalid JSON header"},
        MalformedCase{"NotAnObject", R"([1, 2])", 0, "must be an object"},
        MalformedCase{"UnknownDtype", R"({"q": {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}})",
                      8, "unknown dtype \"F33\""},
        MalformedCase{"ShapeDisagreesWithBytes",
                      R"({"q": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8,
                      "shape [3] of F32 needs 12 bytes, but data_offsets [0, 8] hold 8"},
        MalformedCase{"RangeOutsideTheFile",
                      R"({"q": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", 8,
                      "byte range [0, 16) lies outside the file"},
        MalformedCase{"Overlap",
                      R"({"k": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},)"
                      R"( "q": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})",
                      12, "tensors \"q\" and \"k\" overlap"},
        MalformedCase{"NegativeExtent", R"({"q": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})",
                      8, "\"shape\" must hold non-negative integers"},
        MalformedCase{"MissingField", R"({"q": {"dtype": "F32", "shape": [2]}})", 8,
                      "missing \"data_offsets\""},
        MalformedCase{"MetadataNotAString", R"({"__metadata__": {"num_householder": 2}})", 0,
                      "must be a string"},
        // Found by tests/fuzz (gdp_fuzz_safetensors): a number beyond double's range threw the
        // JSON library's out_of_range rather than gdp::InvalidArgument,
        MalformedCase{"NumberOutOfRange", R"({"q": {"dtype": "F32", "shape": [1e999], "data_offsets": [0, 4]}})",
                      4, "invalid JSON header"},
        // deep nesting overflowed the stack when the message printed the value,
        MalformedCase{"DeepNesting", "{\"q\": " + std::string(100000, '[') + std::string(100000, ']') + "}",
                      0, "the JSON header nests deeper than 16 levels"},
        // and an element count past int64 overflowed TensorEntry::num_elements().
        MalformedCase{"ElementCountPastInt64",
                      R"({"q": {"dtype": "U8", "shape": [4611686018427387904, 3, 0], "data_offsets": [0, 0]}})",
                      0, "needs more than 2^63 bytes"}),
    [](const ::testing::TestParamInfo<MalformedCase>& info) { return info.param.name; });

TEST(Safetensors, MessagesCutLongValues) {
  TemporaryDirectory dir;
  const std::string path = dir.file("long.safetensors");
  std::string shape = "[1";
  for (int i = 0; i < 20000; ++i) shape += ", 1";
  write_raw(path, R"({"q": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "r": )" + shape + "]}", 4);
  const std::string message = header_error(path);
  EXPECT_NE(message.find("expected an object with dtype, shape and data_offsets, got [1,1,1"),
            std::string::npos) << message;
  EXPECT_NE(message.find("... (40003 characters)"), std::string::npos) << message;
  EXPECT_LT(message.size(), 400u) << message;
}

TEST(Safetensors, HeaderLengthPastTheEnd) {
  TemporaryDirectory dir;
  const std::string path = dir.file("long.safetensors");
  write_raw(path, "{}", 0, 4096);
  const std::string message = header_error(path);
  EXPECT_NE(message.find("header length 4096 runs past the end of the file (10 bytes)"),
            std::string::npos)
      << message;
}

TEST(Safetensors, ShorterThanTheLengthPrefix) {
  TemporaryDirectory dir;
  const std::string path = dir.file("short.safetensors");
  std::ofstream(path) << "abc";
  EXPECT_NE(header_error(path).find("shorter than the 8-byte header length"), std::string::npos);
}

TEST(Safetensors, MissingFile) {
  TemporaryDirectory dir;
  EXPECT_NE(header_error(dir.file("absent.safetensors")).find("cannot open for reading"),
            std::string::npos);
}

}  // namespace
}  // namespace gdp::test
