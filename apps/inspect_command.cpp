// SPDX-License-Identifier: Apache-2.0
// `gdp_app inspect`: a short printed check of a safetensors file (an input, or the output of
// `run`): its metadata, each tensor's dtype and shape, and a summary of its values; with
// --against, how far each tensor is from the same tensor of another file.
#include "command.hpp"
#include "report_table.hpp"

#include "common/gdp_asserts.hpp"
#include "dist/collective_failure.hpp"
#include "io/exact_conversion.hpp"

#include <gdp/safetensors.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>

namespace gdp::app {

namespace {

/// A tensor's values as doubles (every dtype gdp reads converts exactly).
std::vector<double> values_of(const io::SafetensorsHeader& header, const io::TensorEntry& tensor,
                              const std::vector<std::byte>& bytes) {
  const std::size_t count = std::size_t(tensor.num_elements());
  std::vector<double> values(count);
  if (tensor.dtype == io::DType::I32 || tensor.dtype == io::DType::I64) {
    std::vector<std::int64_t> integers(count);
    io::convert_exactly(header.path, tensor.name, tensor.dtype, bytes.data(), count, integers.data());
    std::copy(integers.begin(), integers.end(), values.begin());
  } else {
    io::convert_exactly(header.path, tensor.name, tensor.dtype, bytes.data(), count, values.data());
  }
  return values;
}

void inspect(const std::string& path, const std::string& against) {
  const io::SafetensorsHeader header = io::read_safetensors_header(path);
  std::printf("%s: %zu tensors, %llu bytes\n", path.c_str(), header.tensors.size(),
              (unsigned long long)header.file_size);
  for (const auto& [key, value] : header.metadata) std::printf("  %s = %s\n", key.c_str(), value.c_str());
  std::optional<io::SafetensorsHeader> other;
  if (!against.empty()) other = io::read_safetensors_header(against);
  Table table({"tensor", "dtype", "shape", "min", "max", "rms", "non-finite"});
  if (other) table = Table({"tensor", "dtype", "shape", "min", "max", "rms", "non-finite", "max |diff|", "bitwise"});
  for (const io::TensorEntry& tensor : header.tensors) {
    const std::vector<std::byte> bytes = io::read_tensor_bytes(header, tensor);
    const std::vector<double> values = values_of(header, tensor, bytes);
    double low = INFINITY, high = -INFINITY, squares = 0;
    std::size_t non_finite = 0;
    for (const double x : values) {
      if (!std::isfinite(x)) {
        ++non_finite;
        continue;
      }
      low = std::min(low, x);
      high = std::max(high, x);
      squares += x * x;
    }
    std::vector<std::string> row{tensor.name, io::dtype_name(tensor.dtype),
                                 detail::format_shape(tensor.shape), si(low), si(high),
                                 si(std::sqrt(squares / double(std::max<std::size_t>(values.size(), 1)))),
                                 std::to_string(non_finite)};
    if (other) {
      const io::TensorEntry* match = other->find(tensor.name);
      if (!match || match->shape != tensor.shape || match->dtype != tensor.dtype) {
        row.insert(row.end(), {"-", "differs"});
      } else {
        const std::vector<std::byte> their_bytes = io::read_tensor_bytes(*other, *match);
        const std::vector<double> theirs = values_of(*other, *match, their_bytes);
        double difference = 0;
        for (std::size_t i = 0; i < values.size(); ++i)
          difference = std::max(difference, std::fabs(values[i] - theirs[i]));
        const bool same = bytes == their_bytes;
        row.insert(row.end(), {si(difference), same ? "identical" : "differs"});
      }
    }
    table.add_row(row);
  }
  table.print(stdout);
}

class InspectCommand : public Command {
 public:
  explicit InspectCommand(CLI::App& app) {
    subcommand_ = app.add_subcommand(
        "inspect",
        "Print a short check of a safetensors file: metadata, and each tensor's dtype, shape, "
        "min, max, rms and count of non-finite values. Rank 0 reads the whole file.");
    subcommand_->add_option("file", path_, "safetensors file")->required();
    subcommand_->add_option("--against", against_,
                            "another file: also print each tensor's largest absolute difference "
                            "from it and whether the bytes are identical");
  }

  int run(const dist::Runtime& runtime) override {
    dist::run_collectively(runtime.comm(), [&] {
      if (runtime.rank() == 0) inspect(path_, against_);
    });
    return 0;
  }

 private:
  std::string path_, against_;
};

}  // namespace

std::unique_ptr<Command> inspect_command(CLI::App& app) { return std::make_unique<InspectCommand>(app); }

}  // namespace gdp::app
