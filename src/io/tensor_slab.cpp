// SPDX-License-Identifier: Apache-2.0
#include "tensor_slab.hpp"

#include "common/gdp_asserts.hpp"

namespace gdp::io {

namespace {

struct RowsHeadsInner {
  std::int64_t rows = 1, heads = 1, inner = 1;
};

RowsHeadsInner view_of(const TensorEntry& tensor, int head_axis) {
  GDP_EXPECT(head_axis >= 0 && std::size_t(head_axis) < tensor.shape.size(), tensor.name,
             "head axis ", head_axis, " is outside shape ", detail::format_shape(tensor.shape));
  RowsHeadsInner view;
  for (int axis = 0; axis < int(tensor.shape.size()); ++axis) {
    const std::int64_t extent = tensor.shape[std::size_t(axis)];
    if (axis < head_axis) view.rows *= extent;
    else if (axis == head_axis) view.heads = extent;
    else view.inner *= extent;
  }
  return view;
}

}  // namespace

void append_slab_runs(const TensorEntry& tensor, int head_axis, const Slab& slab,
                      std::vector<ByteRun>& runs) {
  const RowsHeadsInner view = view_of(tensor, head_axis);
  GDP_EXPECT(0 <= slab.row_begin && slab.row_begin <= slab.row_end && slab.row_end <= view.rows &&
                 0 <= slab.head_begin && slab.head_begin <= slab.head_end &&
                 slab.head_end <= view.heads,
             tensor.name, "slab of rows [", slab.row_begin, ", ", slab.row_end, ") and heads [",
             slab.head_begin, ", ", slab.head_end, ") lies outside its [rows, heads] = [",
             view.rows, ", ", view.heads, "]");
  const std::uint64_t element = dtype_size(tensor.dtype);
  const std::uint64_t row_bytes = std::uint64_t(view.heads * view.inner) * element;
  const std::uint64_t run_bytes = std::uint64_t(slab.heads() * view.inner) * element;
  if (run_bytes == 0) return;
  for (std::int64_t row = slab.row_begin; row < slab.row_end; ++row) {
    const std::uint64_t offset = tensor.begin + std::uint64_t(row) * row_bytes +
                                 std::uint64_t(slab.head_begin * view.inner) * element;
    if (!runs.empty() && runs.back().offset + runs.back().length == offset)
      runs.back().length += run_bytes;
    else
      runs.push_back({offset, run_bytes});
  }
}

std::uint64_t slab_bytes(const TensorEntry& tensor, int head_axis, const Slab& slab) {
  const RowsHeadsInner view = view_of(tensor, head_axis);
  return std::uint64_t(slab.rows() * slab.heads() * view.inner) * dtype_size(tensor.dtype);
}

}  // namespace gdp::io
