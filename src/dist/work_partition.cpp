// SPDX-License-Identifier: Apache-2.0
#include "work_partition.hpp"

#include "common/gdp_asserts.hpp"

#include <algorithm>

namespace gdp::dist {

namespace {

std::int64_t sequence_tokens(const detail::ProblemShape& shape, std::int64_t sequence) {
  return shape.token_offsets[std::size_t(sequence + 1)] - shape.token_offsets[std::size_t(sequence)];
}

}  // namespace

std::vector<UnitRange> partition_units(const detail::ProblemShape& shape, int ranks) {
  GDP_EXPECT(ranks >= 1, "ranks", "expected >= 1, got ", ranks);
  // The ranges are cut between groups of value heads (of one head each without grouping).
  const std::int64_t group = shape.head_group();
  const std::int64_t units = shape.num_sequences() * shape.heads / group;
  // Cumulative work before each group boundary; a problem of empty sequences only (no work)
  // is shared by unit count instead.
  std::vector<double> before(std::size_t(units) + 1, 0.0);
  for (std::int64_t u = 0; u < units; ++u)
    before[std::size_t(u) + 1] =
        before[std::size_t(u)] + double(sequence_tokens(shape, u * group / shape.heads));
  if (before.back() == 0)
    for (std::int64_t u = 0; u <= units; ++u) before[std::size_t(u)] = double(u);

  std::vector<UnitRange> ranges(static_cast<std::size_t>(ranks));
  std::int64_t boundary = 0;
  for (int r = 0; r < ranks; ++r) {
    ranges[std::size_t(r)].begin = boundary;
    if (r == ranks - 1) {
      boundary = units;
    } else {
      const double target = before.back() * double(r + 1) / double(ranks);
      // The first boundary at or past the target, or the one before it if that is nearer.
      auto at = std::lower_bound(before.begin() + boundary, before.end(), target);
      std::int64_t next = std::int64_t(at - before.begin());
      if (next > boundary &&
          target - before[std::size_t(next) - 1] <= before[std::size_t(next)] - target)
        --next;
      boundary = next;
    }
    ranges[std::size_t(r)].end = boundary;
  }
  for (UnitRange& range : ranges) {
    range.begin *= group;
    range.end *= group;
  }
  return ranges;
}

std::int64_t token_heads(const detail::ProblemShape& shape, const UnitRange& range) {
  std::int64_t sum = 0;
  for (std::int64_t u = range.begin; u < range.end; ++u) sum += sequence_tokens(shape, u / shape.heads);
  return sum;
}

namespace {

/// `extent` with sequence s added.
detail::CallExtent with_sequence(detail::CallExtent extent, const detail::ProblemShape& shape,
                                 const detail::CallLimits& limits, std::int64_t s) {
  extent.tokens += sequence_tokens(shape, s);
  extent.chunks += detail::chunks_of_sequence(sequence_tokens(shape, s), limits.num_householder,
                                              limits.chunk_size);
  extent.sequences += 1;
  return extent;
}

/// How many heads of sequence s, at most `wanted`, fit in one call: whole groups of value heads
/// (`wanted` is a multiple of the group), at least one group.
std::int64_t heads_that_fit(const detail::ProblemShape& shape, const detail::CallLimits& limits,
                            std::int64_t s, std::int64_t wanted) {
  const std::int64_t group = shape.head_group();
  std::int64_t groups = wanted / group;
  while (groups > 1 &&
         !detail::fits_in_one_call(limits, with_sequence(detail::CallExtent{0, 0, 0, groups * group}, shape, limits, s)))
    groups = (groups + 1) / 2;
  return groups * group;
}

}  // namespace

std::vector<WorkBlock> blocks_of(const detail::ProblemShape& shape, const UnitRange& range,
                                 const detail::CallLimits& limits) {
  const std::int64_t H = shape.heads;
  std::vector<WorkBlock> blocks;
  for (std::int64_t u = range.begin; u < range.end;) {
    WorkBlock b;
    b.head_group = shape.head_group();
    b.sequence_begin = u / H;
    b.head_begin = u % H;
    b.sequence_end = b.sequence_begin + 1;
    if (b.head_begin != 0 || range.end - u < H) {  // some heads of one sequence
      const std::int64_t wanted = std::min(H - b.head_begin, range.end - u);
      b.head_end = b.head_begin + heads_that_fit(shape, limits, b.sequence_begin, wanted);
    } else {  // every head of as many whole sequences as fit, else some heads of one
      detail::CallExtent extent{0, 0, 0, H};
      for (std::int64_t s = b.sequence_begin; s < range.end / H; ++s) {
        const detail::CallExtent grown = with_sequence(extent, shape, limits, s);
        if (!detail::fits_in_one_call(limits, grown)) break;
        extent = grown;
      }
      if (extent.sequences > 0) {
        b.sequence_end = b.sequence_begin + extent.sequences;
        b.head_end = H;
      } else {
        b.head_end = heads_that_fit(shape, limits, b.sequence_begin, H);
      }
    }
    b.token_begin = shape.token_offsets[std::size_t(b.sequence_begin)];
    b.token_end = shape.token_offsets[std::size_t(b.sequence_end)];
    u = b.sequence_begin * H + b.head_begin + b.sequences() * b.heads();
    blocks.push_back(b);
  }
  return blocks;
}

detail::CallLimits app_call_limits(const detail::ProblemShape& shape, const ForwardOptions& options,
                                   bool backward) {
  return detail::call_limits(shape, options, detail::worst_case_value_blocks(shape.value_dim, options),
                             backward);
}

detail::ProblemShape block_shape(const detail::ProblemShape& shape, const WorkBlock& block) {
  detail::ProblemShape s = shape;
  s.heads = block.heads();
  if (shape.qk_heads > 0) s.qk_heads = block.qk_head_end() - block.qk_head_begin();
  s.token_offsets.clear();
  if (shape.varlen) {
    s.batch = 1;
    s.tokens_per_row = block.tokens();
    for (std::int64_t i = block.sequence_begin; i <= block.sequence_end; ++i)
      s.token_offsets.push_back(shape.token_offsets[std::size_t(i)] - block.token_begin);
  } else {
    s.batch = block.sequences();
    for (std::int64_t b = 0; b <= s.batch; ++b) s.token_offsets.push_back(b * s.tokens_per_row);
  }
  return s;
}

detail::IndexOrigin block_origin(const detail::ProblemShape& shape, const WorkBlock& block) {
  detail::IndexOrigin origin;
  // Equal lengths: the block's batch rows are sequences; variable: one row of the block's tokens.
  origin.row = shape.varlen ? 0 : block.sequence_begin;
  origin.token = shape.varlen ? block.token_begin : 0;
  origin.head = block.head_begin;
  origin.qk_head = block.qk_head_begin();
  origin.sequence = block.sequence_begin;
  origin.num_householder = shape.num_householder;
  return origin;
}

}  // namespace gdp::dist
