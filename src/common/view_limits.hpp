// SPDX-License-Identifier: Apache-2.0
// The largest views one operator call allocates, against the most elements one Kokkos view
// can hold (compat::max_view_elements): a problem too large for one call is refused with a
// clear error before anything is allocated, and gdp_app cuts its calls so that each fits.
#pragma once

#include "gdp_asserts.hpp"
#include "kokkos_compat.hpp"
#include "problem_shape.hpp"

#include <algorithm>
#include <cstdint>

namespace gdp::detail {

/// What sets the size of a call's views: its tokens, chunks and sequences (summed over the
/// sequences it holds) and its heads; the operator's sizes and options.
struct CallExtent {
  std::int64_t tokens = 0, chunks = 0, sequences = 0, heads = 0;
};

/// The sizes that do not depend on which sequences a call holds.
struct CallLimits {
  std::int64_t key_dim = 1, value_dim = 1;
  int num_householder = 1, chunk_size = 64;
  /// Blocks of state columns of the state passes (the backward keeps one partial adjoint per
  /// block); use worst_case_value_blocks when the execution space's choice is not known.
  std::int64_t value_blocks = 1;
  bool backward = false;
  std::uint64_t max_elements = compat::max_view_elements;
};

/// The most blocks of state columns the state passes use for V value columns: the width the
/// caller fixed in `options`, else the narrowest the library picks by itself (16 columns).
inline std::int64_t worst_case_value_blocks(std::int64_t value_dim, const ForwardOptions& options) {
  const std::int64_t width = options.value_block > 0 ? options.value_block : 16;
  return (value_dim + std::min(width, value_dim) - 1) / std::min(width, value_dim);
}

inline std::int64_t chunks_of_sequence(std::int64_t tokens, int num_householder, int chunk_size) {
  return (tokens * num_householder + chunk_size - 1) / chunk_size;
}

/// The extent of a whole problem (every sequence and head).
inline CallExtent extent_of(const ProblemShape& shape, int chunk_size) {
  CallExtent e{shape.total_tokens(), 0, shape.num_sequences(), shape.heads};
  for (std::int64_t s = 0; s < shape.num_sequences(); ++s)
    e.chunks += chunks_of_sequence(shape.token_offsets[std::size_t(s) + 1] - shape.token_offsets[std::size_t(s)],
                                   shape.num_householder, chunk_size);
  return e;
}

/// The largest view of rank >= 3 that a call of `extent` allocates: its name and elements.
/// Forward: o [tokens, H, V], ht [N, H, K, V], W [positions, H, K], U [positions, H, V], the
/// intra-chunk weights [tokens, H, C]; the backward adds Tm [positions, H, C], the chunk-entry
/// states [chunks, H, V, K], the input gradients (as large as the inputs) and its partial
/// adjoints, one per value block: [blocks, positions, H, K], [blocks, positions, H, C],
/// [blocks, tokens, H, K], [blocks, tokens, H, C].
struct LargestView {
  const char* name = "";
  std::uint64_t elements = 0;
};
inline LargestView largest_view(const CallLimits& l, const CallExtent& e) {
  const std::uint64_t T = std::uint64_t(e.tokens), P = T * std::uint64_t(l.num_householder),
                      H = std::uint64_t(e.heads), K = std::uint64_t(l.key_dim),
                      V = std::uint64_t(l.value_dim), C = std::uint64_t(l.chunk_size),
                      N = std::uint64_t(e.sequences), blocks = std::uint64_t(l.value_blocks);
  LargestView largest;
  const auto consider = [&](const char* name, std::uint64_t elements) {
    if (elements > largest.elements) largest = {name, elements};
  };
  consider("o", T * H * V);
  consider("ht", N * H * K * V);
  consider("gdp::W", P * H * K);
  consider("gdp::U", P * H * V);
  consider("gdp::intra", T * H * C);
  if (l.backward) {
    consider("dk", P * H * K);
    consider("gdp::Tm", P * H * C);
    consider("gdp::entry_states_transposed", std::uint64_t(e.chunks) * H * V * K);
    consider("gdp::solve_key_grad", blocks * P * H * K);
    consider("gdp::coupling_grad", blocks * P * H * C);
    consider("gdp::gated_query_grad", blocks * T * H * K);
    consider("gdp::intra_grad", blocks * T * H * C);
  }
  return largest;
}

inline bool fits_in_one_call(const CallLimits& limits, const CallExtent& extent) {
  return largest_view(limits, extent).elements <= limits.max_elements;
}

/// The limits of a call of `shape` with `options`.
inline CallLimits call_limits(const ProblemShape& shape, const ForwardOptions& options,
                              std::int64_t value_blocks, bool backward) {
  return {shape.key_dim, shape.value_dim, shape.num_householder, options.chunk_size,
          value_blocks, backward, compat::max_view_elements};
}

/// \throws gdp::InvalidArgument ("problem size") unless `view`'s `elements` fit one Kokkos
/// view (`max_elements`); the message goes on with `what` (what the view is for, then what
/// to do), evaluated only on failure.
template <class... What>
void expect_view_fits(const char* view, std::uint64_t elements, std::uint64_t max_elements,
                      const What&... what) {
  GDP_EXPECT(elements <= max_elements, "problem size",
             "expected every view of one call to hold at most ", max_elements,
             " elements (the most one view of this Kokkos version can hold), got ", elements,
             " in ", view, " for ", what...);
}

/// \throws gdp::InvalidArgument, before anything is allocated, when a view the call of
/// `shape` needs would hold more elements than one Kokkos view can.
inline void expect_call_fits(const ProblemShape& shape, const CallLimits& limits) {
  const LargestView largest = largest_view(limits, extent_of(shape, limits.chunk_size));
  expect_view_fits(largest.name, largest.elements, limits.max_elements, shape.num_sequences(),
                   " sequences x ", shape.heads, " heads of ", shape.total_tokens(),
                   " tokens in all: split the batch or the heads into several calls (gdp_app "
                   "does so itself), or build gdp against Kokkos 4 or newer");
}

}  // namespace gdp::detail
