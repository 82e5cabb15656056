// SPDX-License-Identifier: Apache-2.0
// Sharing (sequence, head) pairs among ranks: coverage, balance by token count, idle ranks,
// uneven splits, and the blocks and slabs a rank's share becomes.
#include "dist/block_slabs.hpp"
#include "dist/work_partition.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

namespace gdp::test {
namespace {

detail::ProblemShape shape_of(std::int64_t heads, std::vector<std::int64_t> lengths, bool varlen) {
  detail::ProblemShape s;
  s.heads = heads;
  s.key_dim = 4;
  s.value_dim = 4;
  s.varlen = varlen;
  s.token_offsets = {0};
  for (const std::int64_t length : lengths) s.token_offsets.push_back(s.token_offsets.back() + length);
  s.batch = varlen ? 1 : std::int64_t(lengths.size());
  s.tokens_per_row = varlen ? s.token_offsets.back() : lengths.front();
  return s;
}

/// Limits no test problem here comes near: blocks are never cut for size.
const detail::CallLimits no_cut{};

/// Ranges are in rank order, contiguous and cover every unit exactly once.
void expect_cover(const detail::ProblemShape& s, const std::vector<dist::UnitRange>& ranges, int ranks) {
  ASSERT_EQ(int(ranges.size()), ranks);
  EXPECT_EQ(ranges.front().begin, 0);
  EXPECT_EQ(ranges.back().end, s.num_sequences() * s.heads);
  for (std::size_t r = 0; r < ranges.size(); ++r) {
    EXPECT_LE(ranges[r].begin, ranges[r].end);
    if (r) EXPECT_EQ(ranges[r].begin, ranges[r - 1].end);
  }
}

TEST(Partition, EqualLengthsAreBalanced) {
  const auto s = shape_of(3, {100, 100, 100, 100}, false);  // 12 units of 100 tokens
  for (int ranks : {1, 2, 3, 4, 5, 12}) {
    SCOPED_TRACE(ranks);
    const auto ranges = dist::partition_units(s, ranks);
    expect_cover(s, ranges, ranks);
    std::int64_t most = 0, least = 1 << 30;
    for (const auto& r : ranges) {
      most = std::max(most, dist::token_heads(s, r));
      least = std::min(least, dist::token_heads(s, r));
    }
    EXPECT_LE(most - least, 100) << "loads differ by more than one unit";
  }
}

TEST(Partition, MoreRanksThanUnitsLeavesRanksIdle) {
  const auto s = shape_of(2, {5, 5, 5}, false);  // 6 units
  const auto ranges = dist::partition_units(s, 10);
  expect_cover(s, ranges, 10);
  EXPECT_EQ(std::count_if(ranges.begin(), ranges.end(), [](const dist::UnitRange& r) { return r.size() == 0; }), 4);
  for (const auto& r : ranges) EXPECT_LE(r.size(), 1);
}

TEST(Partition, VariableLengthsAreBalancedByTokens) {
  // One long sequence and many short ones: equal unit counts would be far from equal work.
  const auto s = shape_of(2, {1000, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100}, true);
  const auto ranges = dist::partition_units(s, 2);
  expect_cover(s, ranges, 2);
  EXPECT_EQ(ranges[0].size(), 2) << "the long sequence's two heads: 2000 of 4000 tokens";
  EXPECT_EQ(dist::token_heads(s, ranges[0]), 2000);
  EXPECT_EQ(dist::token_heads(s, ranges[1]), 2000);
}

TEST(Partition, UnevenSplitsAndEmptySequences) {
  const auto s = shape_of(3, {7, 0, 13, 1}, true);
  for (int ranks : {2, 3, 5, 7}) {
    SCOPED_TRACE(ranks);
    const auto ranges = dist::partition_units(s, ranks);
    expect_cover(s, ranges, ranks);
    std::int64_t total = 0;
    for (const auto& r : ranges) total += dist::token_heads(s, r);
    EXPECT_EQ(total, 21 * 3);
  }
}

TEST(Partition, GroupsOfValueHeadsAreNeverSplit) {
  auto s = shape_of(6, {7, 0, 13, 1, 30}, true);
  s.qk_heads = 2;  // groups of 3 value heads
  for (int ranks : {2, 3, 4, 5, 7, 20}) {
    SCOPED_TRACE(ranks);
    const auto ranges = dist::partition_units(s, ranks);
    expect_cover(s, ranges, ranks);
    for (const auto& r : ranges) {
      EXPECT_EQ(r.begin % 3, 0);
      EXPECT_EQ(r.end % 3, 0);
      // Without a view limit, and with one that cuts sequence 4 (30 tokens x 6 heads) by heads.
      for (const detail::CallLimits& limits : {no_cut, detail::CallLimits{4, 4, 1, 4, 1, false, 400}})
        for (const dist::WorkBlock& block : dist::blocks_of(s, r, limits)) {
          EXPECT_EQ(block.head_begin % 3, 0);
          EXPECT_EQ(block.head_end % 3, 0);
          EXPECT_GT(block.heads(), 0);
          const auto sub = dist::block_shape(s, block);
          EXPECT_EQ(sub.qk_heads * 3, sub.heads);
          EXPECT_EQ(block.qk_head_begin(), block.head_begin / 3);
        }
    }
  }
}

TEST(Blocks, ARangeIsAtMostThreeBlocks) {
  const auto s = shape_of(4, {10, 20, 30, 40}, true);
  // Units 2..13: heads 2-3 of sequence 0, all of sequences 1 and 2, head 0-1 of sequence 3.
  const auto blocks = dist::blocks_of(s, {2, 14}, no_cut);
  ASSERT_EQ(blocks.size(), 3u);
  EXPECT_EQ(blocks[0].sequence_begin, 0);
  EXPECT_EQ(blocks[0].head_begin, 2);
  EXPECT_EQ(blocks[0].head_end, 4);
  EXPECT_EQ(blocks[1].sequence_begin, 1);
  EXPECT_EQ(blocks[1].sequence_end, 3);
  EXPECT_EQ(blocks[1].heads(), 4);
  EXPECT_EQ(blocks[1].token_begin, 10);
  EXPECT_EQ(blocks[1].token_end, 60);
  EXPECT_EQ(blocks[2].sequence_begin, 3);
  EXPECT_EQ(blocks[2].head_end, 2);
  const auto middle = dist::block_shape(s, blocks[1]);
  EXPECT_EQ(middle.token_offsets, (std::vector<std::int64_t>{0, 20, 50}));
  EXPECT_EQ(middle.tokens_per_row, 50);
  EXPECT_EQ(middle.heads, 4);
  // Inside one sequence: one block.
  const auto inside = dist::blocks_of(s, {5, 7}, no_cut);
  ASSERT_EQ(inside.size(), 1u);
  EXPECT_EQ(inside[0].head_begin, 1);
  EXPECT_EQ(inside[0].head_end, 3);
  EXPECT_TRUE(dist::blocks_of(s, {3, 3}, no_cut).empty());
}

TEST(Blocks, EqualLengthBlocksKeepTheirRows) {
  const auto s = shape_of(2, {8, 8, 8}, false);
  const auto blocks = dist::blocks_of(s, {1, 6}, no_cut);
  ASSERT_EQ(blocks.size(), 2u);
  const auto rows = dist::block_shape(s, blocks[1]);
  EXPECT_EQ(rows.batch, 2);
  EXPECT_EQ(rows.tokens_per_row, 8);
  EXPECT_FALSE(rows.varlen);
}

TEST(Blocks, CutWhereACallWouldExceedTheViewLimit) {
  // 4 heads, K = V = 4, n = 1, chunks of 4: a call's largest view is o or W, tokens x H x 4
  // elements, or ht, sequences x H x 16. A limit of 400 elements takes 100 token-heads a call.
  const auto s = shape_of(4, {10, 10, 10, 40, 5}, true);
  detail::CallLimits limits{4, 4, 1, 4, 1, false, 400};
  const auto blocks = dist::blocks_of(s, {1, 20}, limits);
  // Heads 1-3 of sequence 0; sequences 1 and 2 whole (80 token-heads; with sequence 3 they
  // would be 240); sequence 3 (160 token-heads) cut by heads into 2 + 2; sequence 4 whole.
  ASSERT_EQ(blocks.size(), 5u);
  EXPECT_EQ(blocks[0].head_begin, 1);
  EXPECT_EQ(blocks[0].head_end, 4);
  EXPECT_EQ(blocks[1].sequence_begin, 1);
  EXPECT_EQ(blocks[1].sequence_end, 3);
  EXPECT_EQ(blocks[1].heads(), 4);
  EXPECT_EQ(blocks[2].sequence_begin, 3);
  EXPECT_EQ(blocks[2].head_begin, 0);
  EXPECT_EQ(blocks[2].head_end, 2);
  EXPECT_EQ(blocks[3].sequence_begin, 3);
  EXPECT_EQ(blocks[3].head_begin, 2);
  EXPECT_EQ(blocks[3].head_end, 4);
  EXPECT_EQ(blocks[4].sequence_begin, 4);
  EXPECT_EQ(blocks[4].heads(), 4);
  std::int64_t covered = 1;
  for (const dist::WorkBlock& b : blocks) {
    EXPECT_EQ(b.sequence_begin * 4 + b.head_begin, covered) << "blocks in unit order, no gap";
    covered += b.sequences() * b.heads();
    EXPECT_TRUE(detail::fits_in_one_call(limits, detail::extent_of(dist::block_shape(s, b), 4)));
  }
  EXPECT_EQ(covered, 20);
  // One pair larger than the limit stays one block: the library call refuses it by name.
  limits.max_elements = 100;
  const auto single = dist::blocks_of(s, {12, 13}, limits);
  ASSERT_EQ(single.size(), 1u);
  EXPECT_EQ(single[0].heads(), 1);
}

TEST(Blocks, TheLibraryRefusesACallLargerThanOneView) {
  const auto s = shape_of(4, {10, 10, 10, 40, 5}, true);
  const detail::CallLimits limits{4, 4, 1, 4, 1, false, 400};
  try {
    detail::expect_call_fits(s, limits);
    FAIL() << "a call of 300 token-heads x 4 elements passed a limit of 400";
  } catch (const InvalidArgument& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("problem size"), std::string::npos) << message;
    EXPECT_NE(message.find("at most 400 elements"), std::string::npos) << message;
    EXPECT_NE(message.find("got 1200 in o"), std::string::npos) << message;
    EXPECT_NE(message.find("5 sequences x 4 heads of 75 tokens"), std::string::npos) << message;
  }
}

TEST(BlockSlabs, PackedInBlockOrder) {
  const auto s = shape_of(2, {3, 3}, false);  // B=2, T=3, H=2, n=2
  const auto blocks = dist::blocks_of(s, {1, 4}, no_cut);  // (0,1) then (1,0..1)
  io::TensorEntry k{"k", io::DType::F32, {2, 6, 2, 4}, 0, 2 * 6 * 2 * 4 * 4};
  const dist::PackedSlabs packed = dist::pack_slabs(k, blocks, 2);
  // Block 0: head 1 of rows 0..5 (16 bytes each); block 1: rows 6..11, every head (32 each).
  EXPECT_EQ(packed.block_begin, (std::vector<std::uint64_t>{0, 6 * 16, 6 * 16 + 6 * 32}));
  ASSERT_EQ(packed.runs.size(), 6u) << "5 single-head runs, then row 5's merged with block 1's";
  EXPECT_EQ(packed.runs.back().length, 16u + 6 * 32u);
  io::TensorEntry h0{"h0", io::DType::F32, {2, 2, 4, 4}, 0, 2 * 2 * 16 * 4};
  const dist::PackedSlabs states = dist::pack_slabs(h0, blocks, 2);
  ASSERT_EQ(states.runs.size(), 1u) << "state (0,1) adjoins sequence 1's states";
  EXPECT_EQ(states.runs[0].offset, 64u);
  EXPECT_EQ(states.bytes(), 3 * 64u);
}

TEST(BlockSlabs, QueryKeyTensorsTakeTheGroupsQueryKeyHeads) {
  auto s = shape_of(4, {3, 3}, false);  // B=2, T=3, H=4, n=2
  s.qk_heads = 2;                       // value heads 0-1 read q/k head 0, 2-3 head 1
  const auto blocks = dist::blocks_of(s, {2, 6}, no_cut);  // (0, heads 2..3) then (1, heads 0..1)
  ASSERT_EQ(blocks.size(), 2u);
  const io::Slab q = dist::block_slab("dq", blocks[0], 2);
  EXPECT_EQ(q.head_begin, 1);
  EXPECT_EQ(q.head_end, 2);
  const io::Slab v = dist::block_slab("v", blocks[0], 2);
  EXPECT_EQ(v.head_begin, 2);
  EXPECT_EQ(v.head_end, 4);
  io::TensorEntry k{"k", io::DType::F32, {2, 6, 2, 4}, 0, 2 * 6 * 2 * 4 * 4};
  const dist::PackedSlabs packed = dist::pack_slabs(k, blocks, 2);
  // Block 0: q/k head 1 of rows 0..5 (16 bytes each); block 1: q/k head 0 of rows 6..11.
  EXPECT_EQ(packed.block_begin, (std::vector<std::uint64_t>{0, 6 * 16, 12 * 16}));
}

}  // namespace
}  // namespace gdp::test
