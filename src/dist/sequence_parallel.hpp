// SPDX-License-Identifier: Apache-2.0
// Sequence parallelism across the ranks of a communicator (ALGORITHM.md section 6), built on
// the library's building blocks (gdp/sequence_parallel.hpp):
//
//   1. the flattened token axis of all sequences is cut into one contiguous slice per rank,
//      balanced by estimated cost (partition_slices): a token of a piece that starts in the
//      middle of a sequence costs about 1.3 (host spaces) to 1.55 (flop count) times one of
//      a piece that starts at its sequence's start, since the former walks [M | R] (K + V
//      state columns) instead of S;
//   2. each rank computes its slice's pieces: the one that continues a sequence started on an
//      earlier rank (at most one, at the slice's start) through segment_map(), the sequences
//      that start in the slice (the last one maybe cut at the slice's end) through the
//      ordinary forward with their h0;
//   3. every rank contributes the map from the state entering its slice to the state leaving
//      it: (0, S) when a sequence starts in the slice (S: the state leaving the slice's last
//      piece), the segment's (M, R) when the whole slice continues one sequence, (I, 0) when
//      the slice is empty. One MPI_Exscan with a non-commutative operation composing them in
//      rank order gives every rank the state entering its first piece (the composition is
//      constant, M = 0, from the first rank on, which holds token 0). The scan thus runs per
//      sequence across the ranks that hold pieces of it, without splitting the communicator;
//   4. the continuing piece is finished from that state.
//
// Results equal the one-rank forward within rounding, not bit for bit: pieces restart their
// chunks at the cuts, and the entering state reaches the outputs through M and the read-out,
// so the floating-point sums associate differently for each number of ranks.
#pragma once

#include "block_call.hpp"
#include "distributed_forward.hpp"

#include <gdp/sequence_parallel.hpp>

#include "common/problem_shape.hpp"

#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <vector>

namespace gdp::dist {

/// One rank's slice of the flattened token axis and the pieces it holds.
struct SlicePlan {
  std::int64_t token_begin = 0, token_end = 0;
  /// Tokens [token_begin, continued_end) continue sequence `continued` begun on an earlier
  /// rank (continued_end == token_begin: no such piece).
  std::int64_t continued = -1, continued_end = 0;
  /// Sequences [start_begin, start_end) start in the slice (their h0 rows); the last one may
  /// go on past token_end.
  std::int64_t start_begin = 0, start_end = 0;
  /// Sequences [final_begin, final_end) end in the slice (their ht rows).
  std::int64_t final_begin = 0, final_end = 0;

  std::int64_t tokens() const { return token_end - token_begin; }
  std::int64_t continued_tokens() const { return continued_end - token_begin; }
};

/// Estimated cost of a token of a continuing piece before the scan relative to one of a piece
/// that starts at its sequence's start (the flop counts of the chunked stages, for K, V, n and
/// chunk_size; with `host_walk`, as the host spaces' fused walk runs them, stage 1 weighted
/// by 3).
double continuing_cost(const detail::ProblemShape& shape, int chunk_size, bool host_walk);

/// One slice per rank, in rank order, covering the flattened token axis, such that the
/// largest estimated cost (tokens, weighted by `continuing` for continuing pieces) is
/// smallest. Ranks past the tokens get empty slices.
std::vector<SlicePlan> partition_slices(const detail::ProblemShape& shape, int ranks,
                                        double continuing);

/// The sequences that start in `slice` as a problem of their own: one row, cu_seqlens from
/// 0, the last sequence cut at the slice's end.
detail::ProblemShape start_block_shape(const detail::ProblemShape& shape, const SlicePlan& slice);

/// Replaces `element` ([H, K, K + V] host values: this rank's map) by the composition of the
/// lower ranks' maps in rank order (MPI_Exscan; on rank 0: the identity). Collective.
template <class Real>
void exclusive_scan_maps(MPI_Comm comm, Real* element, int heads, int key_dim, int value_dim);

/// A rank's slice inputs on the host: q, k, v, beta, g rows of the slice's tokens (all
/// heads); h0 rows [start_begin, start_end), or null.
template <class Scalar>
struct SliceHostInputs {
  using Real = accumulator_t<Scalar>;
  Scalar *q = nullptr, *k = nullptr, *v = nullptr, *beta = nullptr;
  Real *g = nullptr, *h0 = nullptr;
};

/// Where a rank's results go on the host: o rows of the slice's tokens, ht rows
/// [final_begin, final_end).
template <class Scalar>
struct SliceHostOutputs {
  Scalar* o = nullptr;
  accumulator_t<Scalar>* ht = nullptr;
};

template <class T>
using UnmanagedHostView =
    Kokkos::View<T, Kokkos::LayoutRight, Kokkos::HostSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;

/// Steps 2 to 4 above for this rank's `slice` of the problem `shape`, in three calls: the
/// local work (compute), the scan (collective over the communicator: every rank calls it,
/// with its own slice), and the finish. The library runs on `ExecSpace` with `options`
/// (num_householder, scale, use_qk_l2norm, chunk_size; the final states are always computed).
template <class ExecSpace, class Scalar>
class SliceComputation {
 public:
  using memory_space = typename ExecSpace::memory_space;
  using Real = accumulator_t<Scalar>;

  SliceComputation(const detail::ProblemShape& shape, const SlicePlan& slice, ForwardOptions options,
                   const SliceHostInputs<Scalar>& in, const SliceHostOutputs<Scalar>& out)
      : slice_(slice), block_(start_block_shape(shape, slice)), options_(options), in_(in), out_(out),
        H_(int(shape.heads)), Hqk_(int(shape.head_group() > 1 ? shape.qk_heads : shape.heads)),
        K_(int(shape.key_dim)), V_(int(shape.value_dim)),
        n_(shape.num_householder), C_(slice.continued_tokens()),
        state_size_(std::int64_t(H_) * K_ * V_) {
    options_.output_final_state = true;
  }

  /// Library calls this rank's pieces make: the continuing one, and the forward of the
  /// sequences starting in the slice.
  int calls() const { return (C_ > 0) + (block_.total_tokens() > 0); }

  /// The pieces' work, and this rank's map (the scan's element).
  void compute() {
    using HostSpace = Kokkos::DefaultHostExecutionSpace;
    if (C_ > 0) {  // the piece that continues a sequence: its map and read-outs
      ForwardInputs<Scalar, memory_space> piece;
      piece.q = device(UnmanagedHostView<Scalar****>(in_.q, 1, C_, Hqk_, K_));
      piece.k = device(UnmanagedHostView<Scalar****>(in_.k, 1, C_ * n_, Hqk_, K_));
      piece.v = device(UnmanagedHostView<Scalar****>(in_.v, 1, C_ * n_, H_, V_));
      piece.beta = device(UnmanagedHostView<Scalar***>(in_.beta, 1, C_ * n_, H_));
      if (in_.g) piece.g = device(UnmanagedHostView<Real***>(in_.g, 1, C_, H_));
      segment_ = segment_map<ExecSpace, Scalar>(piece, options_);
    }
    // The sequences that start in the slice: the ordinary forward from their h0.
    block_states_.assign(std::size_t(block_.num_sequences() * state_size_), Real(0));
    if (block_.num_sequences() > 0) {
      BlockHostInputs<Scalar> block_in;
      block_in.shape = block_;
      block_in.q = in_.q + C_ * Hqk_ * K_;
      block_in.k = in_.k + C_ * n_ * Hqk_ * K_;
      block_in.v = in_.v + C_ * n_ * H_ * V_;
      block_in.beta = in_.beta + C_ * n_ * H_;
      block_in.g = in_.g ? in_.g + C_ * H_ : nullptr;
      block_in.h0 = in_.h0;
      BlockHostOutputs<Scalar> block_out;
      block_out.o = out_.o + C_ * H_ * V_;
      block_out.ht = block_states_.data();
      BlockCall<ExecSpace, Scalar>(block_in).forward(options_, block_out);
    }
    StateMap<Real, Kokkos::HostSpace> mine;
    if (block_.total_tokens() > 0)  // the state leaving the slice is known: (0, S)
      mine = known_state_map<HostSpace, Real>(UnmanagedHostView<Real****>(
          block_states_.data() + (block_.num_sequences() - 1) * state_size_, 1, H_, K_, V_));
    else if (segment_)
      mine.matrix = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), segment_->map.matrix);
    else
      mine = identity_state_map<HostSpace, Real>(H_, K_, V_);
    element_.assign(mine.matrix.data(), mine.matrix.data() + mine.matrix.size());
  }

  /// The exclusive scan of the ranks' maps (collective).
  void scan(MPI_Comm comm) { exclusive_scan_maps(comm, element_.data(), H_, K_, V_); }

  /// The continuing piece from its true entering state (the scanned map's R, its M being 0),
  /// and the final states into the outputs.
  void finish() {
    const bool continued_ends_here =
        slice_.final_end > slice_.final_begin && slice_.final_begin == slice_.continued;
    if (segment_) {
      StateMap<Real, memory_space> prefix;
      prefix.value_dim = V_;
      prefix.matrix = device(UnmanagedHostView<Real***>(element_.data(), H_, K_, K_ + V_));
      const Kokkos::View<Real****, Kokkos::LayoutRight, memory_space> zero("gdp::zero_state", 1, H_, K_, V_);
      const auto entering = apply_state_map<ExecSpace>(prefix, zero);
      const UnmanagedHostView<Scalar****> o(out_.o, 1, C_, H_, V_);
      const Kokkos::View<Real****, Kokkos::LayoutRight, memory_space> leaving(
          Kokkos::view_alloc(Kokkos::WithoutInitializing, "gdp::leaving_state"), 1, H_, K_, V_);
      if constexpr (std::is_same<memory_space, Kokkos::HostSpace>::value) {
        finish_segment_into<ExecSpace, Scalar>(*segment_, entering, o, leaving);  // no copy of o
      } else {
        const Kokkos::View<Scalar****, Kokkos::LayoutRight, memory_space> rows(
            Kokkos::view_alloc(Kokkos::WithoutInitializing, "gdp::o"), 1, C_, H_, V_);
        finish_segment_into<ExecSpace, Scalar>(*segment_, entering, rows, leaving);
        Kokkos::deep_copy(o, rows);
      }
      if (continued_ends_here) Kokkos::deep_copy(UnmanagedHostView<Real****>(out_.ht, 1, H_, K_, V_), leaving);
      segment_.reset();
    }
    // The final states of the sequences that start and end in the slice.
    const std::int64_t skipped = continued_ends_here ? 1 : 0;
    std::copy(block_states_.begin(),
              block_states_.begin() + (slice_.final_end - slice_.final_begin - skipped) * state_size_,
              out_.ht + skipped * state_size_);
  }

 private:
  template <class View>
  static auto device(const View& host) {
    return Kokkos::create_mirror_view_and_copy(memory_space(), host);
  }

  SlicePlan slice_;
  detail::ProblemShape block_;
  ForwardOptions options_;
  SliceHostInputs<Scalar> in_;
  SliceHostOutputs<Scalar> out_;
  int H_, Hqk_, K_, V_, n_;  ///< value heads, q/k heads (grouped value heads: fewer), ...
  std::int64_t C_, state_size_;
  std::optional<SegmentMap<Scalar, memory_space>> segment_;
  std::vector<Real> block_states_, element_;
};

/// The three steps of SliceComputation in one call (collective over `comm`).
template <class ExecSpace, class Scalar>
void sequence_parallel_slice(MPI_Comm comm, const detail::ProblemShape& shape, const SlicePlan& slice,
                             const ForwardOptions& options, const SliceHostInputs<Scalar>& in,
                             const SliceHostOutputs<Scalar>& out) {
  SliceComputation<ExecSpace, Scalar> computation(shape, slice, options, in, out);
  computation.compute();
  computation.scan(comm);
  computation.finish();
}

/// `gdp_app run --seq-parallel`: run_forward_file with the token axis shared among the ranks
/// as above instead of the (sequence, head) pairs; the same output file, within rounding.
/// RankReport::units counts the rank's pieces (a continuing one and the sequences starting
/// in its slice), `blocks` its library calls. The backward is not supported.
RunResult run_sequence_parallel_file(MPI_Comm comm, const RunConfig& config);

}  // namespace gdp::dist
