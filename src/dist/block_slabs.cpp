// SPDX-License-Identifier: Apache-2.0
#include "block_slabs.hpp"

#include "io/forward_file.hpp"

namespace gdp::dist {

io::Slab block_slab(const std::string& tensor_name, const WorkBlock& block, int num_householder) {
  io::Slab slab;
  const bool qk = io::has_query_key_heads(tensor_name);
  slab.head_begin = qk ? block.qk_head_begin() : block.head_begin;
  slab.head_end = qk ? block.qk_head_end() : block.head_end;
  if (io::is_state_tensor(tensor_name)) {
    slab.row_begin = block.sequence_begin;
    slab.row_end = block.sequence_end;
  } else if (io::is_substep_tensor(tensor_name)) {
    slab.row_begin = block.token_begin * num_householder;
    slab.row_end = block.token_end * num_householder;
  } else {
    slab.row_begin = block.token_begin;
    slab.row_end = block.token_end;
  }
  return slab;
}

PackedSlabs pack_slabs(const io::TensorEntry& tensor, const std::vector<WorkBlock>& blocks,
                       int num_householder) {
  const int axis = io::head_axis(tensor.name);
  PackedSlabs packed;
  packed.block_begin.push_back(0);
  for (const WorkBlock& block : blocks) {
    const io::Slab slab = block_slab(tensor.name, block, num_householder);
    io::append_slab_runs(tensor, axis, slab, packed.runs);
    packed.block_begin.push_back(packed.block_begin.back() + io::slab_bytes(tensor, axis, slab));
  }
  return packed;
}

}  // namespace gdp::dist
