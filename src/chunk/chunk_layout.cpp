// SPDX-License-Identifier: Apache-2.0
#include "chunk_layout.hpp"

#include <algorithm>

namespace gdp::detail {

ChunkLayout make_chunk_layout(const ProblemShape& shape, int chunk_size) {
  const std::int64_t n = shape.num_householder;
  ChunkLayout layout;
  layout.chunk_size = chunk_size;
  layout.max_queries = int((chunk_size + n - 1) / n);
  for (std::int64_t s = 0; s < shape.num_sequences(); ++s) {
    layout.sequence_first_chunk.push_back(std::int64_t(layout.chunks.size()));
    const std::int64_t begin = n * shape.token_offsets[s], end = n * shape.token_offsets[s + 1];
    for (std::int64_t p0 = begin; p0 < end; p0 += chunk_size) {
      ChunkDescriptor c{};
      c.sequence = s;
      c.first_position = p0;
      c.length = std::int32_t(std::min<std::int64_t>(chunk_size, end - p0));
      // First position at or after p0 that is a token's last sub-step (p % n == n-1).
      const std::int64_t first_query = p0 + (n - 1 - p0 % n);
      c.first_query_local = std::int32_t(first_query - p0);
      c.first_query_token = first_query / n;
      c.num_queries =
          first_query < p0 + c.length ? std::int32_t((p0 + c.length - 1 - first_query) / n + 1) : 0;
      layout.chunks.push_back(c);
    }
  }
  layout.sequence_first_chunk.push_back(std::int64_t(layout.chunks.size()));
  return layout;
}

}  // namespace gdp::detail
