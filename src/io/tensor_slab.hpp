// SPDX-License-Identifier: Apache-2.0
// Which bytes of a forward tensor hold a given block of rows and heads. Every forward tensor
// is read as [rows, heads, inner] (see head_axis in forward_file.hpp), and a reader that owns
// some (sequence, head) pairs needs a box of it: a range of rows and a range of heads, all of
// the inner extent. That box is one run of bytes when it spans every head, else one run per
// row.
#pragma once

#include <gdp/safetensors.hpp>

#include <cstdint>
#include <vector>

namespace gdp::io {

/// Rows [row_begin, row_end) and heads [head_begin, head_end) of a tensor read as
/// [rows, heads, inner].
struct Slab {
  std::int64_t row_begin = 0, row_end = 0;
  std::int64_t head_begin = 0, head_end = 0;

  std::int64_t rows() const { return row_end - row_begin; }
  std::int64_t heads() const { return head_end - head_begin; }
};

/// Appends to `runs` the byte runs of `slab` in `tensor` (whose heads are indexed by axis
/// `head_axis`), in row-major order so that reading them one after the other gives the slab
/// as a contiguous [rows, heads, inner] array. A run adjacent to the previous one (also one
/// already in `runs`) is merged with it.
/// \throws gdp::InvalidArgument when the slab is not inside the tensor.
void append_slab_runs(const TensorEntry& tensor, int head_axis, const Slab& slab,
                      std::vector<ByteRun>& runs);

/// Bytes in the slab: the sum of the lengths of its runs.
std::uint64_t slab_bytes(const TensorEntry& tensor, int head_axis, const Slab& slab);

}  // namespace gdp::io
