// SPDX-License-Identifier: Apache-2.0
#include "forward_file.hpp"

#include <algorithm>
#include <cctype>
#include <sstream>

namespace gdp::io {

namespace {

struct InputTensorRule {
  const char* name;
  bool required;
  std::size_t rank;
  const char* symbolic_shape;
};

constexpr InputTensorRule input_rules[] = {
    {"q", true, 4, "[B, T, Hqk, K]"},       {"k", true, 4, "[B, T*n, Hqk, K]"},
    {"v", true, 4, "[B, T*n, H, V]"},       {"beta", true, 3, "[B, T*n, H]"},
    {"g", false, 3, "[B, T, H]"},           {"h0", false, 4, "[N, H, K, V]"},
    {"cu_seqlens", false, 1, "[N+1]"},
};

bool is_float(DType d) {
  return d == DType::F64 || d == DType::F32 || d == DType::BF16 || d == DType::F16;
}

std::string lowercase(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  return text;
}

/// The options stored in the metadata; anything else in it is left alone.
ForwardOptions options_from_metadata(const SafetensorsHeader& header) {
  const auto& path = header.path;
  ForwardOptions options;
  options.output_final_state = true;
  const auto value = [&](const char* key) -> const std::string* {
    const auto found = header.metadata.find(key);
    return found == header.metadata.end() ? nullptr : &found->second;
  };
  if (const std::string* text = value("num_householder")) {
    std::size_t used = 0;
    long parsed = 0;
    try {
      parsed = std::stol(*text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    GDP_EXPECT(used == text->size() && used > 0 && parsed >= 1 && parsed <= 1'000'000, path,
               "__metadata__ \"num_householder\" must be an integer >= 1, got \"", *text, "\"");
    options.num_householder = int(parsed);
  }
  if (const std::string* text = value("scale")) {
    std::size_t used = 0;
    try {
      options.scale = std::stod(*text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    GDP_EXPECT(used == text->size() && used > 0, path,
               "__metadata__ \"scale\" must be a number, got \"", *text, "\"");
  }
  if (const std::string* text = value("l2norm")) {
    const std::string flag = lowercase(*text);
    GDP_EXPECT(flag == "true" || flag == "false" || flag == "1" || flag == "0", path,
               "__metadata__ \"l2norm\" must be true or false, got \"", *text, "\"");
    options.use_qk_l2norm = flag == "true" || flag == "1";
  }
  return options;
}

/// The library's argument error again, naming the file, with the library's own message
/// (argument, expected and actual value).
[[noreturn]] void rethrow_naming_file(const std::string& path, const InvalidArgument& error) {
  const std::string message = error.what();
  GDP_EXPECT(false, path, message.substr(message.rfind("gdp: ", 0) == 0 ? 5 : 0));
}

}  // namespace

const TensorEntry* find_cu_seqlens(const SafetensorsHeader& header) {
  const TensorEntry* entry = header.find("cu_seqlens");
  if (!entry) return nullptr;
  GDP_EXPECT(entry->shape.size() == 1, header.path, "tensor \"cu_seqlens\": expected rank 1 [N+1], got shape ",
             detail::format_shape(entry->shape));
  GDP_EXPECT(entry->dtype == DType::I32 || entry->dtype == DType::I64, header.path,
             "tensor \"cu_seqlens\": expected dtype I32 or I64, got ", dtype_name(entry->dtype));
  return entry;
}

ForwardInputFile describe_forward_input(const SafetensorsHeader& header,
                                        const std::vector<std::int64_t>& cu_seqlens) {
  const auto& path = header.path;
  std::map<std::string, detail::TensorExtents> extents;
  for (const InputTensorRule& rule : input_rules) {
    const TensorEntry* entry = header.find(rule.name);
    GDP_EXPECT(entry || !rule.required, path, "missing required tensor \"", rule.name, "\" ",
               rule.symbolic_shape);
    auto& e = extents[rule.name];
    e.name = rule.name;
    if (!entry) continue;
    GDP_EXPECT(entry->shape.size() == rule.rank, path, "tensor \"", rule.name,
               "\": expected rank ", rule.rank, " ", rule.symbolic_shape, ", got shape ",
               detail::format_shape(entry->shape));
    e.present = true;
    e.dims = entry->shape;
  }
  find_cu_seqlens(header);

  ForwardInputFile file;
  file.header = header;
  file.storage = header.find("q")->dtype;
  GDP_EXPECT(is_float(file.storage), path, "tensor \"q\": expected dtype F64, F32, BF16 or F16, got ",
             dtype_name(file.storage));
  for (const char* name : {"k", "v", "beta"}) {
    const DType dtype = header.find(name)->dtype;
    GDP_EXPECT(dtype == file.storage, path, "tensor \"", name, "\" is ", dtype_name(dtype),
               " but q is ", dtype_name(file.storage), ": q, k, v and beta must share one dtype");
  }
  for (const char* name : {"g", "h0"})
    if (const TensorEntry* entry = header.find(name))
      GDP_EXPECT(is_float(entry->dtype), path, "tensor \"", name,
                 "\": expected a float dtype (F64, F32, BF16, F16), got ", dtype_name(entry->dtype));

  file.options = options_from_metadata(header);
  try {
    file.shape = detail::check_forward_arguments(
        extents["q"], extents["k"], extents["v"], extents["beta"], extents["g"], extents["h0"],
        extents["cu_seqlens"], cu_seqlens, file.options);
  } catch (const InvalidArgument& e) {
    rethrow_naming_file(path, e);
  }
  return file;
}

void check_backward_input(const ForwardInputFile& input) {
  const SafetensorsHeader& header = input.header;
  const auto& path = header.path;
  const TensorEntry* gradient = header.find("do");
  GDP_EXPECT(gradient, path, "missing required tensor \"do\" [B, T, H, V]: the gradient of o, "
             "which the backward needs");
  GDP_EXPECT(gradient->dtype == input.storage, path, "tensor \"do\" is ", dtype_name(gradient->dtype),
             " but q is ", dtype_name(input.storage), ": do must have the dtype of q, k, v and beta");
  const TensorEntry* state_gradient = header.find("dht");
  if (state_gradient)
    GDP_EXPECT(is_float(state_gradient->dtype), path,
               "tensor \"dht\": expected a float dtype (F64, F32, BF16, F16), got ",
               dtype_name(state_gradient->dtype));
  const auto extents = [](const char* name, const TensorEntry* entry) {
    return detail::TensorExtents{name, entry != nullptr, entry ? entry->shape : std::vector<std::int64_t>{}};
  };
  try {
    detail::check_output_gradients(input.shape, extents("do", gradient), extents("dht", state_gradient));
  } catch (const InvalidArgument& e) {
    rethrow_naming_file(path, e);
  }
}

std::map<std::string, std::string> options_metadata(const ForwardOptions& options,
                                                    std::int64_t key_dim) {
  std::ostringstream scale;
  scale.precision(17);
  scale << detail::resolved_scale(options, key_dim);
  return {{"num_householder", std::to_string(options.num_householder)},
          {"scale", scale.str()},
          {"l2norm", options.use_qk_l2norm ? "true" : "false"}};
}

DType accumulation_dtype(DType storage) { return storage == DType::F64 ? DType::F64 : DType::F32; }

std::vector<TensorSpec> forward_output_specs(const ForwardInputFile& input, bool backward) {
  const auto& s = input.shape;
  const DType stored = input.storage, accumulated = accumulation_dtype(stored);
  const std::int64_t B = s.batch, T = s.tokens_per_row, P = T * s.num_householder, H = s.heads,
                     Hqk = s.qk_heads, K = s.key_dim, V = s.value_dim, N = s.num_sequences();
  std::vector<TensorSpec> specs{{"o", stored, {B, T, H, V}}, {"ht", accumulated, {N, H, K, V}}};
  if (!backward) return specs;
  specs.insert(specs.end(), {{"dq", stored, {B, T, Hqk, K}},
                             {"dk", stored, {B, P, Hqk, K}},
                             {"dv", stored, {B, P, H, V}},
                             {"dbeta", stored, {B, P, H}}});
  if (s.gated) specs.push_back({"dg", accumulated, {B, T, H}});
  if (s.has_initial_state) specs.push_back({"dh0", accumulated, {N, H, K, V}});
  return specs;
}

bool is_state_tensor(const std::string& tensor_name) {
  return tensor_name == "h0" || tensor_name == "ht" || tensor_name == "dh0" || tensor_name == "dht";
}

bool has_query_key_heads(const std::string& tensor_name) {
  for (const char* name : {"q", "k", "dq", "dk"})
    if (tensor_name == name) return true;
  return false;
}

bool is_substep_tensor(const std::string& tensor_name) {
  for (const char* name : {"k", "v", "beta", "dk", "dv", "dbeta"})
    if (tensor_name == name) return true;
  return false;
}

int head_axis(const std::string& tensor_name) { return is_state_tensor(tensor_name) ? 1 : 2; }

}  // namespace gdp::io
