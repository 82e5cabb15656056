// SPDX-License-Identifier: Apache-2.0
#include "chunk/chunk_layout.hpp"

#include <gtest/gtest.h>

namespace gdp::detail {
namespace {

ProblemShape shape_with(std::vector<std::int64_t> offsets, int n) {
  ProblemShape s;
  s.batch = 1;
  s.tokens_per_row = offsets.back();
  s.num_householder = n;
  s.token_offsets = std::move(offsets);
  return s;
}

TEST(ChunkLayout, ChunksRestartAtEverySequence) {
  const auto layout = make_chunk_layout(shape_with({0, 5, 5, 12}, 2), 4);
  // Sequence 0: positions [0, 10) -> chunks of 4, 4, 2; sequence 1 empty; sequence 2: [10, 24).
  ASSERT_EQ(layout.sequence_first_chunk, (std::vector<std::int64_t>{0, 3, 3, 7}));
  EXPECT_EQ(layout.chunks[2].first_position, 8);
  EXPECT_EQ(layout.chunks[2].length, 2);
  EXPECT_EQ(layout.chunks[3].first_position, 10);
  EXPECT_EQ(layout.chunks[6].length, 2);
  for (const auto& c : layout.chunks) EXPECT_EQ(c.sequence, &c < &layout.chunks[3] ? 0 : 2);
}

TEST(ChunkLayout, QueriesSitAtEachTokensLastSubStep) {
  // n = 3, chunk of 4 positions: tokens straddle chunk boundaries.
  const auto layout = make_chunk_layout(shape_with({0, 4}, 3), 4);
  ASSERT_EQ(layout.chunks.size(), 3u);  // positions [0,4) [4,8) [8,12)
  EXPECT_EQ(layout.max_queries, 2);
  // Chunk 0 holds position 2 (token 0); chunk 1 holds 5 (token 1); chunk 2 holds 8 and 11.
  EXPECT_EQ(layout.chunks[0].num_queries, 1);
  EXPECT_EQ(layout.chunks[0].first_query_local, 2);
  EXPECT_EQ(layout.chunks[0].first_query_token, 0);
  EXPECT_EQ(layout.chunks[1].num_queries, 1);
  EXPECT_EQ(layout.chunks[1].first_query_local, 1);
  EXPECT_EQ(layout.chunks[1].first_query_token, 1);
  EXPECT_EQ(layout.chunks[2].num_queries, 2);
  EXPECT_EQ(layout.chunks[2].first_query_local, 0);
  EXPECT_EQ(layout.chunks[2].first_query_token, 2);
}

TEST(ChunkLayout, ChunkWithoutQuery) {
  const auto layout = make_chunk_layout(shape_with({0, 1}, 4), 2);
  ASSERT_EQ(layout.chunks.size(), 2u);
  EXPECT_EQ(layout.chunks[0].num_queries, 0);
  EXPECT_EQ(layout.chunks[1].num_queries, 1);
  EXPECT_EQ(layout.chunks[1].first_query_local, 1);
}

}  // namespace
}  // namespace gdp::detail
