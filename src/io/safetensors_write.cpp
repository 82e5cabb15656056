// SPDX-License-Identifier: Apache-2.0
// Laying out and writing safetensors files. The layout is separate from the writing so that
// every MPI rank can compute the same offsets and write its own part.
#include <gdp/safetensors.hpp>

#include "common/gdp_asserts.hpp"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>

namespace gdp::io {

const TensorEntry& SafetensorsLayout::at(const std::string& name) const {
  for (const TensorEntry& t : tensors)
    if (t.name == name) return t;
  GDP_EXPECT(false, name, "no such tensor in the file layout");
}

SafetensorsLayout plan_safetensors(const std::vector<TensorSpec>& tensors,
                                   const std::map<std::string, std::string>& metadata) {
  // ordered_json keeps the tensors in the order given, which is also their order in the data.
  nlohmann::ordered_json root = nlohmann::ordered_json::object();
  if (!metadata.empty()) root["__metadata__"] = metadata;
  SafetensorsLayout layout;
  std::set<std::string> names;
  std::uint64_t offset = 0;
  for (const TensorSpec& spec : tensors) {
    GDP_EXPECT(spec.name != "__metadata__" && names.insert(spec.name).second, spec.name,
               "tensor names must be unique and not \"__metadata__\"");
    TensorEntry entry;
    entry.name = spec.name;
    entry.dtype = spec.dtype;
    entry.shape = spec.shape;
    std::uint64_t bytes = dtype_size(spec.dtype);
    for (const std::int64_t extent : spec.shape) {
      GDP_EXPECT(extent >= 0, spec.name, "expected non-negative extents, got shape ",
                 detail::format_shape(spec.shape));
      bytes *= std::uint64_t(extent);
    }
    entry.begin = offset;
    entry.end = offset + bytes;
    offset = entry.end;
    root[spec.name] = {{"dtype", dtype_name(spec.dtype)},
                       {"shape", spec.shape},
                       {"data_offsets", {entry.begin, entry.end}}};
    layout.tensors.push_back(std::move(entry));
  }
  std::string json = root.dump();
  json.append((8 - json.size() % 8) % 8, ' ');  // the format's padding: data starts aligned
  const std::uint64_t length = json.size();
  layout.header.resize(8);
  for (int i = 0; i < 8; ++i) layout.header[i] = char((length >> (8 * i)) & 0xffu);
  layout.header += json;
  for (TensorEntry& entry : layout.tensors) {
    entry.begin += layout.header.size();
    entry.end += layout.header.size();
  }
  layout.file_size = layout.header.size() + offset;
  return layout;
}

void write_safetensors(const std::string& path, const SafetensorsLayout& layout,
                       const std::vector<const void*>& data) {
  GDP_EXPECT(data.size() == layout.tensors.size(), path, "expected data for ",
             layout.tensors.size(), " tensors, got ", data.size());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  GDP_EXPECT(out.good(), path, "cannot open for writing: ", std::strerror(errno));
  out.write(layout.header.data(), std::streamsize(layout.header.size()));
  for (std::size_t i = 0; i < data.size(); ++i)
    out.write(static_cast<const char*>(data[i]), std::streamsize(layout.tensors[i].num_bytes()));
  out.close();
  GDP_EXPECT(out.good(), path, "cannot write ", layout.file_size, " bytes: ", std::strerror(errno));
}

}  // namespace gdp::io
