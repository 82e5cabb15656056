// SPDX-License-Identifier: Apache-2.0
// gdp's input files on top of safetensors: the checks of a forward input (each with its
// message), exact conversion of g, h0 and cu_seqlens, and the byte runs of slabs.
#include <gdp/errors.hpp>

#include "common/random_problem.hpp"
#include "io/exact_conversion.hpp"
#include "io/forward_file.hpp"
#include "io/forward_input_tensors.hpp"
#include "io/temporary_directory.hpp"
#include "io/tensor_slab.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace gdp::test {
namespace {

using io::DType;

/// The header a file of these tensors and metadata would have (nothing is written).
io::SafetensorsHeader header_of(const std::vector<io::TensorSpec>& specs,
                                const std::map<std::string, std::string>& metadata = {}) {
  const io::SafetensorsLayout layout = io::plan_safetensors(specs, metadata);
  return io::parse_safetensors_header("in.safetensors", layout.file_size, layout.header.substr(8));
}

/// A valid gated input with B=2, T=10, H=3, K=4, V=5, n=2 in `dtype`.
std::vector<io::TensorSpec> valid_specs(DType dtype = DType::F32) {
  return {{"q", dtype, {2, 10, 3, 4}}, {"k", dtype, {2, 20, 3, 4}}, {"v", dtype, {2, 20, 3, 5}},
          {"beta", dtype, {2, 20, 3}}, {"g", DType::F32, {2, 10, 3}}};
}

const std::map<std::string, std::string> two_substeps{{"num_householder", "2"}};

/// The message of describing `header` (with `cu_seqlens`), or "" when it is valid.
std::string describe_error(const io::SafetensorsHeader& header, const std::vector<std::int64_t>& cu_seqlens = {}) {
  try {
    io::describe_forward_input(header, cu_seqlens);
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(e.argument(), "in.safetensors") << e.what();
    return e.what();
  }
  return "";
}

TEST(ForwardFile, DescribesAValidInput) {
  const auto file = io::describe_forward_input(
      header_of(valid_specs(DType::BF16),
                {{"num_householder", "2"}, {"scale", "0.5"}, {"l2norm", "true"}, {"format", "pt"}}),
      {});
  EXPECT_EQ(file.storage, DType::BF16);
  EXPECT_EQ(file.shape.batch, 2);
  EXPECT_EQ(file.shape.tokens_per_row, 10);
  EXPECT_EQ(file.shape.heads, 3);
  EXPECT_EQ(file.shape.value_dim, 5);
  EXPECT_TRUE(file.shape.gated);
  EXPECT_EQ(file.options.num_householder, 2);
  EXPECT_EQ(file.options.scale, 0.5);
  EXPECT_TRUE(file.options.use_qk_l2norm);
  const auto outputs = io::forward_output_specs(file);
  ASSERT_EQ(outputs.size(), 2u);
  EXPECT_EQ(outputs[0].dtype, DType::BF16);
  EXPECT_EQ(outputs[0].shape, (std::vector<std::int64_t>{2, 10, 3, 5}));
  EXPECT_EQ(outputs[1].dtype, DType::F32) << "ht is in the accumulation type";
  EXPECT_EQ(outputs[1].shape, (std::vector<std::int64_t>{2, 3, 4, 5}));
}

TEST(ForwardFile, RandomProblemWrittenAndDescribed) {
  RandomProblemSpec spec;
  spec.tokens = 30;
  spec.heads = 2;
  spec.key_dim = 8;
  spec.value_dim = 6;
  spec.num_householder = 3;
  spec.initial_state = true;
  spec.cu_seqlens = {0, 7, 7, 30};
  const auto owned = make_random_problem<double, Kokkos::HostSpace>(spec);
  const io::TensorsToWrite tensors = io::forward_input_tensors(owned.inputs());
  ForwardOptions options;
  options.num_householder = 3;
  TemporaryDirectory dir;
  const std::string path = dir.file("in.safetensors");
  io::write_safetensors(path, io::plan_safetensors(tensors.specs, io::options_metadata(options, 8)),
                        tensors.data);
  const io::SafetensorsHeader header = io::read_safetensors_header(path);
  const io::TensorEntry* cu = io::find_cu_seqlens(header);
  ASSERT_NE(cu, nullptr);
  std::vector<std::int64_t> offsets(4);
  io::convert_exactly(path, "cu_seqlens", cu->dtype, io::read_tensor_bytes(header, *cu).data(), 4,
                      offsets.data());
  EXPECT_EQ(offsets, spec.cu_seqlens);
  const auto file = io::describe_forward_input(header, offsets);
  EXPECT_EQ(file.storage, DType::F64);
  EXPECT_EQ(file.shape.num_sequences(), 3);
  EXPECT_TRUE(file.shape.varlen && file.shape.has_initial_state && file.shape.gated);
  EXPECT_EQ(file.options.num_householder, 3);
  EXPECT_EQ(file.options.scale, 1 / std::sqrt(8.0));
}

TEST(ForwardFile, MissingRequiredTensor) {
  auto specs = valid_specs();
  specs.erase(specs.begin() + 3);  // beta
  EXPECT_NE(describe_error(header_of(specs, two_substeps)).find("missing required tensor \"beta\" [B, T*n, H]"),
            std::string::npos);
}

TEST(ForwardFile, ShapeDisagreeingWithTheOthers) {
  auto specs = valid_specs();
  specs[1].shape = {2, 10, 3, 4};  // k with T rows where n = 2 needs T*n
  const std::string message = describe_error(header_of(specs, two_substeps));
  EXPECT_NE(message.find("k: expected shape [B, T*n, Hqk, K] = [2, 20, 3, 4], got [2, 10, 3, 4]"),
            std::string::npos)
      << message;
}

TEST(ForwardFile, WrongRank) {
  auto specs = valid_specs();
  specs[4].shape = {2, 10, 3, 1};
  EXPECT_NE(describe_error(header_of(specs, two_substeps)).find("tensor \"g\": expected rank 3 [B, T, H], got shape [2, 10, 3, 1]"),
            std::string::npos);
}

TEST(ForwardFile, StorageDtypesMustAgree) {
  auto specs = valid_specs();
  specs[1].dtype = DType::BF16;
  EXPECT_NE(describe_error(header_of(specs, two_substeps)).find("tensor \"k\" is BF16 but q is F32"),
            std::string::npos);
}

TEST(ForwardFile, DtypesGdpDoesNotRead) {
  auto specs = valid_specs();
  specs[4].dtype = DType::I32;
  EXPECT_NE(describe_error(header_of(specs, two_substeps)).find("tensor \"g\": expected a float dtype"),
            std::string::npos);
  specs = valid_specs(DType::U8);
  EXPECT_NE(describe_error(header_of(specs, two_substeps)).find("tensor \"q\": expected dtype F64, F32, BF16 or F16, got U8"),
            std::string::npos);
}

TEST(ForwardFile, CuSeqlens) {
  std::vector<io::TensorSpec> specs{{"q", DType::F32, {1, 10, 1, 4}}, {"k", DType::F32, {1, 10, 1, 4}},
                                    {"v", DType::F32, {1, 10, 1, 4}}, {"beta", DType::F32, {1, 10, 1}},
                                    {"cu_seqlens", DType::F32, {3}}};
  EXPECT_NE(describe_error(header_of(specs)).find("tensor \"cu_seqlens\": expected dtype I32 or I64, got F32"),
            std::string::npos);
  specs[4].dtype = DType::I32;
  EXPECT_NE(describe_error(header_of(specs), {0, 4, 9}).find("expected cu_seqlens[2] = T = 10, got 9"),
            std::string::npos);
  EXPECT_EQ(describe_error(header_of(specs), {0, 4, 10}), "");
}

TEST(ForwardFile, Metadata) {
  EXPECT_NE(describe_error(header_of(valid_specs(), {{"num_householder", "two"}}))
                .find("__metadata__ \"num_householder\" must be an integer >= 1, got \"two\""),
            std::string::npos);
  EXPECT_NE(describe_error(header_of(valid_specs(), {{"num_householder", "2"}, {"scale", "0.5x"}}))
                .find("__metadata__ \"scale\" must be a number"),
            std::string::npos);
  EXPECT_NE(describe_error(header_of(valid_specs(), {{"num_householder", "2"}, {"l2norm", "yes"}}))
                .find("__metadata__ \"l2norm\" must be true or false"),
            std::string::npos);
}

/// The message of checking the backward's tensors of `specs`, or "" when they are valid.
std::string backward_error(const std::vector<io::TensorSpec>& specs) {
  try {
    io::check_backward_input(io::describe_forward_input(header_of(specs, two_substeps), {}));
  } catch (const InvalidArgument& e) {
    EXPECT_EQ(e.argument(), "in.safetensors") << e.what();
    return e.what();
  }
  return "";
}

TEST(ForwardFile, BackwardInputs) {
  auto specs = valid_specs();
  EXPECT_NE(backward_error(specs).find("missing required tensor \"do\" [B, T, H, V]"), std::string::npos);
  specs.push_back({"do", DType::BF16, {2, 10, 3, 5}});
  EXPECT_NE(backward_error(specs).find("tensor \"do\" is BF16 but q is F32"), std::string::npos);
  specs.back() = {"do", DType::F32, {2, 10, 3, 4}};
  EXPECT_NE(backward_error(specs).find("do: expected shape [B, T, H, V] = [2, 10, 3, 5], got [2, 10, 3, 4]"),
            std::string::npos)
      << backward_error(specs);
  specs.back().shape = {2, 10, 3, 5};
  specs.push_back({"dht", DType::I32, {2, 3, 4, 5}});
  EXPECT_NE(backward_error(specs).find("tensor \"dht\": expected a float dtype"), std::string::npos);
  specs.back().dtype = DType::F64;
  EXPECT_EQ(backward_error(specs), "");
  const auto file = io::describe_forward_input(header_of(specs, two_substeps), {});
  std::vector<std::string> names;
  for (const auto& spec : io::forward_output_specs(file, true)) names.push_back(spec.name);
  EXPECT_EQ(names, (std::vector<std::string>{"o", "ht", "dq", "dk", "dv", "dbeta", "dg"}))
      << "dg since g is given, no dh0 without h0";
}

template <class T>
std::vector<std::byte> bytes_of(const std::vector<T>& values) {
  std::vector<std::byte> bytes(values.size() * sizeof(T));
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

TEST(ExactConversion, WideningAndExactNarrowingPass) {
  const std::vector<double> exact{0.5, -3.25, 1e-30f, std::numeric_limits<double>::quiet_NaN()};
  std::vector<float> converted(exact.size());
  io::convert_exactly("f", "g", DType::F64, bytes_of(exact).data(), exact.size(), converted.data());
  EXPECT_EQ(converted[1], -3.25f);
  EXPECT_TRUE(std::isnan(converted[3]));
  const std::vector<std::uint16_t> bf16{bfloat16(1.5f).bits, bfloat16(-0.0078125f).bits};
  std::vector<double> widened(2);
  io::convert_exactly("f", "h0", DType::BF16, bytes_of(bf16).data(), 2, widened.data());
  EXPECT_EQ(widened, (std::vector<double>{1.5, -0.0078125}));
  const std::vector<std::int32_t> offsets{0, 5, 9};
  std::vector<std::int64_t> wide(3);
  io::convert_exactly("f", "cu_seqlens", DType::I32, bytes_of(offsets).data(), 3, wide.data());
  EXPECT_EQ(wide, (std::vector<std::int64_t>{0, 5, 9}));
}

TEST(ExactConversion, LossyValuesAreRejected) {
  for (const double lossy : {0.1, 1e300}) {
    const std::vector<double> values{0.5, lossy};
    std::vector<float> converted(2);
    try {
      io::convert_exactly("in.safetensors", "g", DType::F64, bytes_of(values).data(), 2, converted.data());
      ADD_FAILURE() << lossy << " was accepted";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("in.safetensors: tensor \"g\": F64 value"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("is not exactly representable in float32"), std::string::npos) << e.what();
    }
  }
  std::vector<std::int64_t> integers(1);
  EXPECT_THROW(io::convert_exactly("f", "cu_seqlens", DType::F32, bytes_of(std::vector<float>{1}).data(), 1,
                                   integers.data()),
               InvalidArgument);
}

TEST(TensorSlab, RunsOfRowsAndHeads) {
  io::TensorEntry q{"q", DType::F32, {3, 4, 2}, 100, 100 + 3 * 4 * 2 * 4};  // [rows, H, inner]
  std::vector<io::ByteRun> runs;
  io::append_slab_runs(q, 1, {1, 3, 1, 3}, runs);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].offset, 100u + (1 * 8 + 1 * 2) * 4);
  EXPECT_EQ(runs[0].length, 16u);
  EXPECT_EQ(runs[1].offset, 100u + (2 * 8 + 1 * 2) * 4);
  runs.clear();
  io::append_slab_runs(q, 1, {0, 2, 0, 4}, runs);  // every head: one run
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].offset, 100u);
  EXPECT_EQ(runs[0].length, 64u);
  EXPECT_EQ(io::slab_bytes(q, 1, {0, 2, 0, 4}), 64u);
  io::TensorEntry h0{"h0", DType::F64, {2, 3, 2, 2}, 0, 2 * 3 * 4 * 8};  // [N, H, K, V]
  runs.clear();
  io::append_slab_runs(h0, 1, {1, 2, 2, 3}, runs);
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].offset, (1 * 12 + 2 * 4) * 8u);
  EXPECT_EQ(runs[0].length, 32u);
  EXPECT_THROW(io::append_slab_runs(q, 1, {0, 4, 0, 1}, runs), InvalidArgument);
}

}  // namespace
}  // namespace gdp::test
