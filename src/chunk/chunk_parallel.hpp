// SPDX-License-Identifier: Apache-2.0
// The chunk-parallel state passes on any execution space (ForwardAlgorithm::chunk_parallel):
// the state pass over segments in segment-map mode gives every segment's [M | R], the scan
// gives every segment's entering state and the final states, and the state pass over the
// segments again gives the outputs (and, for the backward, the entering states and Vnew it
// keeps). Stage 1 (ChunkPrepare) has run before, as for the sequential walk.
#pragma once

#include "segment_map.hpp"
#include "state_pass.hpp"

#include <Kokkos_Core.hpp>

namespace gdp::detail {

/// Runs `pass`, a state pass over whole sequences from its initial_state to its final_state
/// with its read-outs set, over the segments of `states` instead: their maps and entering
/// states are written there (the backward keeps the maps for its reverse scan).
template <class ExecSpace, class Scalar>
void run_chunk_parallel(
    StatePass<ExecSpace, Scalar> pass,
    const SegmentStates<accumulator_t<Scalar>, typename ExecSpace::memory_space>& states) {
  StatePass<ExecSpace, Scalar> map_pass(pass.operands, pass.layout, pass.workspace, {}, {},
                                        states.maps, pass.value_block);
  map_pass.segments = states.segments;
  map_pass.segment_maps = true;
  map_pass.run();
  SegmentScan<ExecSpace, accumulator_t<Scalar>>(states.maps, pass.initial_state, states.entering,
                                                pass.final_state, states.segments,
                                                pass.value_block)
      .run();
  pass.initial_state = states.entering;
  pass.final_state = {};  // the scan wrote it
  pass.segments = states.segments;
  pass.run();
}

}  // namespace gdp::detail
