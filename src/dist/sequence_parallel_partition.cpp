// SPDX-License-Identifier: Apache-2.0
// The slices of the sequence-parallel run: the cost model, the balanced cut of the token
// axis, and which pieces, h0 rows and ht rows each slice holds.
#include "sequence_parallel.hpp"

#include "common/gdp_asserts.hpp"

#include <algorithm>

namespace gdp::dist {

double continuing_cost(const detail::ProblemShape& shape, int chunk_size, bool host_walk) {
  // Flops per expanded position (ALGORITHM.md section 4, chunk C, n sub-steps per token):
  // stage 1 forms K K^T (2CK), the queries' Q K^T (2CK/n) and solves for U and W (C(K + V));
  // the state pass costs 4K + 2K/n + 2C/n per state column (W S, the read-out's q S and
  // intra Vnew, the update K^T Vnew); a continuing piece walks K + V columns instead of V.
  // Its finish (a K x V product per token) comes after the scan, when the slices before it
  // are done whatever the cut: it is left out, the cut balances the work before the scan.
  // The host spaces' fused walk runs stage 1 (exponentials of the masks, the blocked
  // substitution) at about a third of the flop rate of the state products (register-blocked
  // products): measured at K = V = 64, n = 2, chunk 64 on the development machine,
  // 2026-11-26, the K columns of M add 0.29 of the forward's time where the flop count says
  // 0.55 (docs/PERFORMANCE.md).
  const double K = double(shape.key_dim), V = double(shape.value_dim), C = chunk_size,
               n = shape.num_householder;
  const double stage1_weight = host_walk ? 3.0 : 1.0;
  const double prepare = stage1_weight * C * (3 * K + 2 * K / n + V),
               column = 4 * K + 2 * K / n + 2 * C / n;
  return (prepare + (K + V) * column) / (prepare + V * column);
}

namespace {

/// The sequence holding token t (the last sequence starting at or before it).
std::int64_t sequence_of(const std::vector<std::int64_t>& offsets, std::int64_t t) {
  return std::int64_t(std::upper_bound(offsets.begin(), offsets.end(), t) - offsets.begin()) - 1;
}

/// Estimated cost of the slice [a, b).
double slice_cost(const std::vector<std::int64_t>& offsets, std::int64_t a, std::int64_t b,
                  double continuing) {
  if (a >= b) return 0;
  const std::int64_t s = sequence_of(offsets, a);
  if (offsets[std::size_t(s)] == a) return double(b - a);
  const std::int64_t end = std::min(b, offsets[std::size_t(s) + 1]);
  return continuing * double(end - a) + double(b - end);
}

/// The cuts when each slice but the last takes as many tokens as cost `budget` allows; the
/// last cut is where the tokens ran out (the total when they all fit).
std::vector<std::int64_t> greedy_cuts(const std::vector<std::int64_t>& offsets, int ranks,
                                      double continuing, double budget) {
  const std::int64_t total = offsets.back();
  std::vector<std::int64_t> cuts{0};
  for (int r = 0; r < ranks; ++r) {
    const std::int64_t a = cuts.back();
    std::int64_t low = a, high = total;  // the largest b with slice_cost(a, b) <= budget
    while (low < high) {
      const std::int64_t middle = low + (high - low + 1) / 2;
      if (slice_cost(offsets, a, middle, continuing) <= budget)
        low = middle;
      else
        high = middle - 1;
    }
    cuts.push_back(low);
  }
  return cuts;
}

}  // namespace

std::vector<SlicePlan> partition_slices(const detail::ProblemShape& shape, int ranks,
                                        double continuing) {
  GDP_EXPECT(ranks >= 1, "ranks", "expected >= 1, got ", ranks);
  const std::vector<std::int64_t>& offsets = shape.token_offsets;
  const std::int64_t total = offsets.back(), N = shape.num_sequences();
  // The smallest budget under which the greedy cut covers every token, to a token's cost.
  double low = 0, high = continuing * double(total) + 1;
  while (high - low > 0.5) {
    const double middle = 0.5 * (low + high);
    (greedy_cuts(offsets, ranks, continuing, middle).back() == total ? high : low) = middle;
  }
  const std::vector<std::int64_t> cuts = greedy_cuts(offsets, ranks, continuing, high);

  std::vector<SlicePlan> slices(static_cast<std::size_t>(ranks));
  const auto first_starting_at_or_after = [&](std::int64_t t) {
    return std::int64_t(std::lower_bound(offsets.begin(), offsets.end() - 1, t) - offsets.begin());
  };
  for (int r = 0; r < ranks; ++r) {
    SlicePlan& p = slices[std::size_t(r)];
    p.token_begin = cuts[std::size_t(r)];
    p.token_end = cuts[std::size_t(r) + 1];
    p.continued_end = p.token_begin;
    const bool last = r == ranks - 1;
    if (p.tokens() > 0) {
      const std::int64_t s = sequence_of(offsets, p.token_begin);
      if (offsets[std::size_t(s)] < p.token_begin) {
        p.continued = s;
        p.continued_end = std::min(p.token_end, offsets[std::size_t(s) + 1]);
      }
    }
    p.start_begin = first_starting_at_or_after(p.token_begin);
    // The last slice also holds the empty sequences at the very end.
    p.start_end = last ? N : std::max(p.start_begin, first_starting_at_or_after(p.token_end));
    if (p.continued >= 0 && offsets[std::size_t(p.continued) + 1] > p.token_end) {
      p.final_begin = p.final_end = p.continued;  // the slice is inside one sequence
    } else {
      p.final_begin = p.continued >= 0 ? p.continued : p.start_begin;
      const bool cut = p.start_end > p.start_begin && offsets[std::size_t(p.start_end)] > p.token_end;
      p.final_end = p.start_end - (cut ? 1 : 0);
    }
  }
  return slices;
}

detail::ProblemShape start_block_shape(const detail::ProblemShape& shape, const SlicePlan& slice) {
  detail::ProblemShape block = shape;
  block.varlen = true;
  block.batch = 1;
  block.token_offsets.clear();
  const std::int64_t first = shape.token_offsets[std::size_t(std::min(slice.start_begin, shape.num_sequences()))];
  for (std::int64_t s = slice.start_begin; s <= slice.start_end && slice.start_end > slice.start_begin; ++s)
    block.token_offsets.push_back(std::min(shape.token_offsets[std::size_t(s)], slice.token_end) - first);
  if (block.token_offsets.empty()) block.token_offsets.push_back(0);
  block.tokens_per_row = block.token_offsets.back();
  return block;
}

}  // namespace gdp::dist
