// SPDX-License-Identifier: Apache-2.0
// The chunk-parallel state passes on any execution space (ForwardAlgorithm::chunk_parallel):
// the state pass over segments in segment-map mode gives every segment's [M | R], the scan
// gives every segment's entering state and the final states, and the state pass over the
// segments again gives the outputs. Stage 1 (ChunkPrepare) has run before, as for the
// sequential walk.
#pragma once

#include "chunk_layout.hpp"
#include "chunk_operands.hpp"
#include "chunk_workspace.hpp"
#include "segment_map.hpp"
#include "state_pass.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace gdp::detail {

template <class ExecSpace, class Scalar>
void chunk_parallel_state_passes(
    const ChunkOperands<Scalar, typename ExecSpace::memory_space>& operands,
    const ChunkLayout& layout, const DeviceChunkLayout<typename ExecSpace::memory_space>& device_layout,
    const ChunkWorkspace<accumulator_t<Scalar>, typename ExecSpace::memory_space>& workspace,
    const typename StatePass<ExecSpace, Scalar>::template unmanaged_view<const accumulator_t<Scalar>****>& h0,
    const typename StatePass<ExecSpace, Scalar>::template unmanaged_view<Scalar***>& o,
    const typename StatePass<ExecSpace, Scalar>::template unmanaged_view<accumulator_t<Scalar>****>& ht,
    std::int64_t chunks_per_segment, int value_block) {
  using Real = accumulator_t<Scalar>;
  using Pass = StatePass<ExecSpace, Scalar>;
  const int H = operands.heads(), K = operands.key_dim(), V = operands.value_dim();
  const auto leased = lease_segment_states<Real, typename ExecSpace::memory_space>(
      make_segment_layout(layout, chunks_per_segment), H, K, V, V);
  const auto& [segments, maps, entering] = leased.parts;

  Pass map_pass(operands, device_layout, workspace, {}, {}, maps, value_block);
  map_pass.segments = segments;
  map_pass.segment_maps = true;
  map_pass.run();
  SegmentScan<ExecSpace, Real>(maps, h0, entering, ht, segments, value_block).run();
  Pass output_pass(operands, device_layout, workspace, entering, o, {}, value_block);
  output_pass.segments = segments;
  output_pass.run();
}

}  // namespace gdp::detail
