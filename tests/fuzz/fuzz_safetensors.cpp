// SPDX-License-Identifier: Apache-2.0
// libFuzzer target: the fuzzer's bytes are a safetensors file, read the way gdp_app reads its
// input. Whatever the bytes, the reader must either accept the file or throw
// gdp::InvalidArgument (any other exception, crash, hang, leak or sanitizer report is a
// finding), and what it accepts must hold what it promises:
//   - the header asks only for bytes inside the file; every tensor's byte range lies in the
//     data section, holds exactly its shape's elements, and no two ranges overlap;
//   - every tensor converts (or is refused) through the exact conversions gdp_app uses;
//   - a file accepted as a forward input yields output layouts that the reader accepts back,
//     and byte runs of its slabs that stay inside each tensor;
//   - writing the header's tensors and metadata again (plan_safetensors) gives a header the
//     reader reads back as the same tensors and metadata.
#include "fuzz_check.hpp"

#include <gdp/errors.hpp>
#include <gdp/safetensors.hpp>

#include "io/exact_conversion.hpp"
#include "io/forward_file.hpp"
#include "io/tensor_slab.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace {

using namespace gdp;
using gdp::fuzz::check;

const std::string path = "fuzz.safetensors";

/// The header of `bytes`, read through the callback interface of the MPI reader.
io::SafetensorsHeader read_header(const std::uint8_t* data, std::size_t size) {
  return io::read_safetensors_header(
      path, size, [&](std::uint64_t offset, void* destination, std::uint64_t bytes) {
        check(offset <= size && bytes <= size - offset, "the reader asked for bytes past the end");
        std::memcpy(destination, data + offset, bytes);
      });
}

void check_header(const io::SafetensorsHeader& header, std::size_t size) {
  check(header.file_size == size && header.data_start >= 8 && header.data_start <= size,
        "header bounds");
  std::uint64_t previous_end = header.data_start;
  for (const io::TensorEntry& t : header.tensors) {
    check(t.begin >= header.data_start && t.begin <= t.end && t.end <= size,
          "tensor range outside the data section");
    std::uint64_t elements = 1;
    for (const std::int64_t extent : t.shape) {
      check(extent >= 0, "negative extent accepted");
      elements *= std::uint64_t(extent);
    }
    check(t.num_elements() >= 0 && std::uint64_t(t.num_elements()) == elements,
          "num_elements disagrees with the shape");
    check(elements * io::dtype_size(t.dtype) == t.num_bytes(), "byte range does not fit the shape");
    if (t.num_bytes() > 0) {
      check(t.begin >= previous_end, "overlapping tensors accepted");
      previous_end = t.end;
    }
    check(header.find(t.name) == &t, "find() does not find a tensor");
  }
}

/// Every tensor's values through the conversions gdp_app uses (inspect, run).
void convert_tensors(const io::SafetensorsHeader& header, const std::uint8_t* data) {
  std::vector<double> reals;
  std::vector<float> singles;
  std::vector<std::int64_t> integers;
  for (const io::TensorEntry& t : header.tensors) {
    const auto* bytes = reinterpret_cast<const std::byte*>(data + t.begin);
    const std::size_t count = std::size_t(t.num_elements());
    try {
      if (t.dtype == io::DType::I32 || t.dtype == io::DType::I64) {
        integers.resize(count);
        io::convert_exactly(path, t.name, t.dtype, bytes, count, integers.data());
      } else {
        reals.resize(count);
        io::convert_exactly(path, t.name, t.dtype, bytes, count, reals.data());
        singles.resize(count);
        io::convert_exactly(path, t.name, t.dtype, bytes, count, singles.data());
      }
    } catch (const InvalidArgument&) {
    }
  }
}

/// The same tensors and metadata, written by gdp's writer and read back.
void check_rewrite(const io::SafetensorsHeader& header) {
  std::vector<io::TensorSpec> specs;
  for (const io::TensorEntry& t : header.tensors) specs.push_back({t.name, t.dtype, t.shape});
  const io::SafetensorsLayout layout = io::plan_safetensors(specs, header.metadata);
  const std::uint64_t length = layout.header.size() - 8;
  const io::SafetensorsHeader back =
      io::parse_safetensors_header("rewritten", layout.file_size, layout.header.substr(8, length));
  check(back.metadata == header.metadata && back.tensors.size() == header.tensors.size(),
        "rewritten header differs");
  for (const io::TensorEntry& t : layout.tensors) {
    const io::TensorEntry* read = back.find(t.name);
    check(read && read->dtype == t.dtype && read->shape == t.shape && read->begin == t.begin &&
              read->end == t.end,
          "rewritten tensor differs");
  }
}

/// The file as gdp_app's forward input: the checks of `gdp_app run`, then what it derives.
void check_forward_input(const io::SafetensorsHeader& header, const std::uint8_t* data) {
  std::vector<std::int64_t> cu_seqlens;
  io::ForwardInputFile input;
  try {
    if (const io::TensorEntry* entry = io::find_cu_seqlens(header)) {
      cu_seqlens.resize(std::size_t(entry->num_elements()));
      io::convert_exactly(path, entry->name, entry->dtype,
                          reinterpret_cast<const std::byte*>(data + entry->begin),
                          cu_seqlens.size(), cu_seqlens.data());
    }
    input = io::describe_forward_input(header, cu_seqlens);
  } catch (const InvalidArgument&) {
    return;
  }
  const auto& s = input.shape;
  check(s.batch >= 1 && s.tokens_per_row >= 1 && s.heads >= 1 && s.key_dim >= 1 &&
            s.value_dim >= 1 && s.num_householder >= 1 && s.num_sequences() >= 1 &&
            s.token_offsets.front() == 0 && s.token_offsets.back() == s.total_tokens(),
        "accepted forward shape is inconsistent");
  for (std::size_t i = 1; i < s.token_offsets.size(); ++i)
    check(s.token_offsets[i] >= s.token_offsets[i - 1], "decreasing token offsets accepted");

  // Every input tensor's whole [rows, heads] box, as the MPI reader asks for slabs.
  for (const io::TensorEntry& t : header.tensors) {
    if (t.name == "cu_seqlens" || (t.name != "q" && t.name != "k" && t.name != "v" &&
                                   t.name != "beta" && t.name != "g" && t.name != "h0"))
      continue;
    const int axis = io::head_axis(t.name);
    std::int64_t rows = 1;
    for (int a = 0; a < axis; ++a) rows *= t.shape[std::size_t(a)];
    const io::Slab whole{0, rows, 0, t.shape[std::size_t(axis)]};
    std::vector<io::ByteRun> runs;
    io::append_slab_runs(t, axis, whole, runs);
    std::uint64_t total = 0;
    for (const io::ByteRun& run : runs) {
      check(run.offset >= t.begin && run.offset + run.length <= t.end, "slab run outside its tensor");
      total += run.length;
    }
    check(total == t.num_bytes() && total == io::slab_bytes(t, axis, whole),
          "slab of the whole tensor is not the whole tensor");
  }

  try {
    io::check_backward_input(input);
  } catch (const InvalidArgument&) {
  }
  const io::SafetensorsLayout output = io::plan_safetensors(
      io::forward_output_specs(input, true), io::options_metadata(input.options, s.key_dim));
  const io::SafetensorsHeader back = io::parse_safetensors_header(
      "output", output.file_size, output.header.substr(8));
  check(back.tensors.size() == output.tensors.size(), "output layout does not read back");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  io::SafetensorsHeader header;
  try {
    header = read_header(data, size);
  } catch (const InvalidArgument&) {
    return 0;
  }
  check_header(header, size);
  convert_tensors(header, data);
  check_rewrite(header);
  check_forward_input(header, data);
  return 0;
}
