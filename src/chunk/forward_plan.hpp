// SPDX-License-Identifier: Apache-2.0
// Choosing between the sequential and the chunk-parallel walk over the chunks, and the segment
// length of the chunk-parallel one, from the amount of parallel work.
#pragma once

#include <gdp/forward.hpp>

#include "chunk_layout.hpp"
#include "common/kokkos_compat.hpp"
#include "common/view_limits.hpp"
#include "segment_map.hpp"

#include <Kokkos_Core.hpp>

#ifdef KOKKOS_ENABLE_CUDA
#include <cuda_runtime.h>
#endif

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace gdp::detail {

struct ForwardPlan {
  bool chunk_parallel = false;
  std::int64_t chunks_per_segment = 0;  ///< chunk-parallel only
};

/// How many walks (teams that carry a state through chunks) `ExecSpace` runs at once: its
/// multiprocessors on Cuda (the walks are large teams, one or a few per multiprocessor), its
/// threads on the host spaces.
template <class ExecSpace>
std::int64_t concurrent_walks() {
#ifdef KOKKOS_ENABLE_CUDA
  if constexpr (std::is_same<ExecSpace, Kokkos::Cuda>::value) {
    int multiprocessors = 0;
    if (cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount,
                               ExecSpace().cuda_device()) == cudaSuccess)
      return multiprocessors;
  }
#endif
  return std::max<std::int64_t>(1, ExecSpace().concurrency());
}

/// The rule. A sequential walk has `pairs` (sequence, head) pairs times `walks_per_pair`
/// (blocks of value columns) teams, each walking a whole sequence. The chunk-parallel forward
/// does about 2.5 times the work (the segment maps carry K + V state columns instead of V and
/// redo each chunk's stage-1 work, then the outputs pass walks the chunks again), so it is
/// chosen only where the sequential walk would leave more than half of the `walkers` idle.
/// It then cuts every sequence into about walkers / pairs segments (at least 2), so that the
/// output pass alone fills the space.
inline ForwardPlan plan_forward(const ChunkLayout& layout, const ForwardOptions& options,
                                std::int64_t pairs, std::int64_t walks_per_pair,
                                std::int64_t walkers) {
  if (options.algorithm == ForwardAlgorithm::sequential) return {};
  const bool automatic = options.algorithm == ForwardAlgorithm::automatic;
  if (automatic && 2 * pairs * walks_per_pair >= walkers) return {};
  std::int64_t longest = 0;
  for (std::size_t s = 0; s + 1 < layout.sequence_first_chunk.size(); ++s)
    longest = std::max(longest, layout.sequence_first_chunk[s + 1] - layout.sequence_first_chunk[s]);
  const std::int64_t segments_per_sequence =
      std::max<std::int64_t>(2, walkers / std::max<std::int64_t>(1, pairs));
  const std::int64_t chunks_per_segment =
      options.chunks_per_segment > 0
          ? options.chunks_per_segment
          : std::max<std::int64_t>(1, (longest + segments_per_sequence - 1) / segments_per_sequence);
  if (automatic && chunks_per_segment >= longest) return {};
  return {true, chunks_per_segment};
}

/// What the walks of `plan` take: segments of its length, or each sequence whole.
inline SegmentLayout walk_segments(const ChunkLayout& layout, const ForwardPlan& plan) {
  return make_segment_layout(layout, plan.chunk_parallel
                                         ? plan.chunks_per_segment
                                         : std::int64_t(layout.chunks.size()) + 1);
}

/// \throws gdp::InvalidArgument, before the walks allocate or compute anything, when a
/// chunk-parallel `plan`'s segment maps [segments, H, K, K + V] (no smaller than any other
/// per-segment view; `segments`: walk_segments(layout, plan)'s count) would hold more
/// elements than one Kokkos view can (`max_elements`): Kokkos 3.x would wrap that view's size
/// and the walks would write past it. Short segments of a long sequence get there first:
/// chunks_per_segment = 1 over 8192 chunks of 16 heads with K = V = 128 is 2^32 elements. A
/// sequential plan keeps no maps.
inline void expect_segment_maps_fit(const ForwardPlan& plan, std::int64_t segments,
                                    std::int64_t heads, std::int64_t key_dim,
                                    std::int64_t value_dim,
                                    std::uint64_t max_elements = compat::max_view_elements) {
  if (!plan.chunk_parallel) return;
  const auto times = [](std::uint64_t a, std::uint64_t b) {  // saturating
    return b != 0 && a > std::numeric_limits<std::uint64_t>::max() / b
               ? std::numeric_limits<std::uint64_t>::max()
               : a * b;
  };
  const std::uint64_t elements =
      times(times(times(std::uint64_t(segments), std::uint64_t(heads)), std::uint64_t(key_dim)),
            std::uint64_t(key_dim + value_dim));
  expect_view_fits("gdp::segment_maps", elements, max_elements, segments, " segments of up to ",
                   plan.chunks_per_segment, " chunks x ", heads,
                   " heads: take longer segments (ForwardOptions::chunks_per_segment) or the "
                   "sequential algorithm, or build gdp against Kokkos 4 or newer");
}

}  // namespace gdp::detail
