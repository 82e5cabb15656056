// SPDX-License-Identifier: Apache-2.0
// How the expanded sequence of every (sequence, head) is cut into chunks.
//
// Chunks restart at every sequence start and hold `chunk_size` expanded positions (the last
// one of a sequence fewer). Position p = t*n + j of the flattened expanded axis carries
// sub-step j of token t; the query of token t sits at its last sub-step p = t*n + n-1, so a
// chunk holds the queries of the tokens whose last sub-step falls inside it, and a token's
// sub-steps may straddle two chunks.
#pragma once

#include "common/problem_shape.hpp"
#include "common/workspace_cache.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace gdp::detail {

struct ChunkDescriptor {
  std::int64_t sequence;           ///< which sequence the chunk belongs to
  std::int64_t first_position;     ///< first expanded position (flattened axis)
  std::int32_t length;             ///< positions in the chunk, 1..chunk_size
  std::int32_t first_query_local;  ///< local index of the first query position
  std::int64_t first_query_token;  ///< token whose query is at first_query_local
  std::int32_t num_queries;        ///< tokens read out in this chunk (may be 0)
};

/// The chunks of every sequence, in sequence order, and where each sequence's chunks start.
struct ChunkLayout {
  int chunk_size = 0;
  int max_queries = 0;  ///< most queries any chunk can hold: ceil(chunk_size / n)
  std::vector<ChunkDescriptor> chunks;
  std::vector<std::int64_t> sequence_first_chunk;  ///< N+1 entries
};

ChunkLayout make_chunk_layout(const ProblemShape& shape, int chunk_size);

/// The chunk layout copied into memory space `MemorySpace` for the kernels.
template <class MemorySpace>
struct DeviceChunkLayout {
  Kokkos::View<const ChunkDescriptor*, MemorySpace> chunks;
  Kokkos::View<const std::int64_t*, MemorySpace> sequence_first_chunk;
  int chunk_size = 0;
  int max_queries = 0;

  DeviceChunkLayout() = default;
  /// `host` copied into views laid out by `carver` (when it only counts, nothing is copied).
  DeviceChunkLayout(const ChunkLayout& host, WorkspaceCarver<MemorySpace>& carver)
      : chunks(carve_copy(carver, host.chunks)),
        sequence_first_chunk(carve_copy(carver, host.sequence_first_chunk)),
        chunk_size(host.chunk_size),
        max_queries(host.max_queries) {}
};

}  // namespace gdp::detail
