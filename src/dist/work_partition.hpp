// SPDX-License-Identifier: Apache-2.0
// How the (sequence, head) pairs of a problem are shared among ranks, and how one rank's
// share becomes a few library calls.
//
// Work units are the pairs u = sequence * H + head (sequence-major, the order of the tensors
// in memory). Each rank gets one contiguous range of units, balanced by token count
// (variable lengths make equal unit counts unequal work). A contiguous range is at most: the
// trailing heads of one sequence, then whole sequences, then the leading heads of one more
// sequence; each of those is one WorkBlock and one call of the library on a compact
// sub-problem, so a rank makes at most three calls, and reads and writes at most three boxes
// of each tensor, unless a call would need a view larger than one Kokkos view can hold
// (common/view_limits.hpp): then those blocks are cut further, by sequences and then by heads.
// Different pairs never interact, so the split changes no result.
//
// With grouped value heads (H = group * Hqk, value head h reading q/k head h / group), the
// ranges start and end only at group boundaries, and so do the blocks: the value heads of a
// group all read the same q and k rows and together make its dq and dk rows (summed in a fixed
// order inside one call), so a group is never split between ranks or calls; each block is then
// a grouped problem of its own, with heads [head_begin, head_end) and q/k heads
// [head_begin, head_end) / group.
#pragma once

#include "common/finite_check.hpp"
#include "common/problem_shape.hpp"
#include "common/view_limits.hpp"

#include <cstdint>
#include <vector>

namespace gdp::dist {

/// Units [begin, end) in sequence-major order.
struct UnitRange {
  std::int64_t begin = 0, end = 0;
  std::int64_t size() const { return end - begin; }
};

/// One contiguous range of units per rank (empty for idle ranks, when there are more ranks
/// than units), in rank order, covering all units. Rank r's range ends at the unit boundary
/// (a group boundary, with grouped value heads) whose cumulative token count is nearest to
/// r+1 / ranks of the total.
std::vector<UnitRange> partition_units(const detail::ProblemShape& shape, int ranks);

/// Tokens of each sequence times heads, summed over `range`: the range's share of the work.
std::int64_t token_heads(const detail::ProblemShape& shape, const UnitRange& range);

/// Sequences [sequence_begin, sequence_end) x heads [head_begin, head_end): either several
/// whole sequences (every head) or some heads of one sequence.
struct WorkBlock {
  std::int64_t sequence_begin = 0, sequence_end = 0;
  std::int64_t head_begin = 0, head_end = 0;
  std::int64_t token_begin = 0, token_end = 0;  ///< on the flattened token axis
  std::int64_t head_group = 1;  ///< value heads per q/k head; head_begin, head_end multiples

  std::int64_t sequences() const { return sequence_end - sequence_begin; }
  std::int64_t heads() const { return head_end - head_begin; }
  /// The q/k heads the block reads: [qk_head_begin(), qk_head_end()).
  std::int64_t qk_head_begin() const { return head_begin / head_group; }
  std::int64_t qk_head_end() const { return head_end / head_group; }
  std::int64_t tokens() const { return token_end - token_begin; }
};

/// The blocks of a range, in unit order: at most three, more where a block would not fit in
/// one call under `limits` (a block of one (sequence, head) pair is never cut: if it does not
/// fit, the library call refuses it).
std::vector<WorkBlock> blocks_of(const detail::ProblemShape& shape, const UnitRange& range,
                                 const detail::CallLimits& limits);

/// The limits of gdp_app's calls for `shape` with `options` on any execution space: the
/// narrowest value blocks the library may pick, and the backward's views when `backward`.
detail::CallLimits app_call_limits(const detail::ProblemShape& shape, const ForwardOptions& options,
                                   bool backward);

/// The shape of a block as a problem of its own: B rows of T tokens when the problem has
/// equal lengths, else one row with the block's sequences as cu_seqlens (from 0).
detail::ProblemShape block_shape(const detail::ProblemShape& shape, const WorkBlock& block);

/// Where element [0, ...] of each of a block's tensors sits in the whole problem's (for
/// messages that name an element: detail::describe_non_finite).
detail::IndexOrigin block_origin(const detail::ProblemShape& shape, const WorkBlock& block);

}  // namespace gdp::dist
