// SPDX-License-Identifier: Apache-2.0
// Which part of each forward tensor a rank's work blocks read or write, and where those parts
// sit in the file and in the rank's packed buffer. A block of sequences [s0, s1), heads
// [h0, h1) and tokens [t0, t1) owns rows [t0, t1) of q, g and o, rows [n t0, n t1) of k, v and
// beta, and rows [s0, s1) of h0 and ht (and the same rows of their gradients), each for heads
// [h0, h1) - q/k heads [h0, h1) / group for q, k, dq and dk with grouped value heads. Packed
// one block after the other, each part is exactly the block's tensor as a compact sub-problem
// expects it.
#pragma once

#include "io/tensor_slab.hpp"
#include "work_partition.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace gdp::dist {

/// The slab of forward tensor `tensor_name` that `block` owns.
io::Slab block_slab(const std::string& tensor_name, const WorkBlock& block, int num_householder);

/// One tensor's slabs for a rank's blocks.
struct PackedSlabs {
  std::vector<io::ByteRun> runs;           ///< file byte runs, in block order
  std::vector<std::uint64_t> block_begin;  ///< byte offset of each block's part, then the total

  std::uint64_t bytes() const { return block_begin.back(); }
};

/// The slabs of `tensor` that `blocks` own, packed in block order.
PackedSlabs pack_slabs(const io::TensorEntry& tensor, const std::vector<WorkBlock>& blocks,
                       int num_householder);

}  // namespace gdp::dist
