// SPDX-License-Identifier: Apache-2.0
// Writing one output file from all ranks so that it appears only when complete: every rank
// writes its slabs into `<path>.partial`, and rank 0 renames that to `<path>` once every rank
// has succeeded. On any failure the partial file is deleted and every rank throws
// CollectiveFailure, so no output file is left behind.
#pragma once

#include "block_slabs.hpp"

#include <gdp/safetensors.hpp>

#include <mpi.h>

#include <string>
#include <vector>

namespace gdp::dist {

/// One tensor's part of a rank's output: where it goes and the packed bytes.
struct OutputPart {
  const PackedSlabs* slabs;
  const void* data;
};

/// The temporary name an output is written under.
std::string partial_path(const std::string& path);

/// Writes `layout` to `path` (collective): rank 0 writes the header, every rank its `parts`
/// (one per tensor of the layout, in its order).
/// \throws CollectiveFailure on every rank when any rank failed; nothing is left at
/// `<path>.partial`, and `<path>` is as it was.
void write_output_file(MPI_Comm comm, const std::string& path, const io::SafetensorsLayout& layout,
                       const std::vector<OutputPart>& parts);

}  // namespace gdp::dist
