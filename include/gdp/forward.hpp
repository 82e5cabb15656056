// SPDX-License-Identifier: Apache-2.0
/// \file forward.hpp
/// \brief The chunked Gated DeltaProduct forward operator.
///
/// For each sequence and head, with state S (K x V, initially h0 or zero):
///
///     for t in tokens:
///         S <- exp(g_t) S                                   (only when g is given)
///         for j in 0..n-1:
///             S <- S + beta_{t,j} k_{t,j} (v_{t,j} - S^T k_{t,j})^T
///         o_t = scale * S^T q_t
///
/// computed in chunks of `chunk_size` expanded positions (position p = t*n + j), as fixed in
/// design/ALGORITHM.md of the project.
///
/// Tensor layout (row-major `Kokkos::LayoutRight`, like contiguous PyTorch tensors):
///
///     q    [B, T, Hqk, K]     k    [B, T*n, Hqk, K]   v [B, T*n, H, V]
///     beta [B, T*n, H]        g    [B, T,   H]        (optional)
///     h0   [N, H, K, V]       (optional)              cu_seqlens [N+1] (optional)
///     o    [B, T,   H, V]     ht   [N, H, K, V]       (when output_final_state)
///
/// Hqk, the heads of q and k, equals H as a rule. It may be smaller with H a multiple of it
/// (grouped value heads): value head h then reads q/k head h / (H / Hqk), i.e. each group of
/// H / Hqk consecutive value heads shares one q/k head, while each value head keeps its own
/// v, beta, g, state and output. The recurrence above runs per (sequence, value head).
///
/// With `cu_seqlens`, B must be 1 and sequence i owns tokens [cu[i], cu[i+1]); otherwise the
/// N = B batch rows are the sequences. An empty sequence (cu[i] == cu[i+1]) is allowed: it
/// produces no output rows and its final state is its initial state.
///
/// Storage types: q, k, v, beta and o are `Scalar` (double, float, gdp::bfloat16,
/// gdp::float16); g, h0 and ht are `accumulator_t<Scalar>` (double for double, float
/// otherwise), which is also the type every computation runs in.
///
/// All inputs are checked before any kernel computes; a violation throws gdp::InvalidArgument
/// naming the argument, the expected and the actual value. Shapes and options are checked
/// before anything is allocated. The values are checked too: a NaN or an infinity in any
/// input is rejected with the tensor's name and the element's index unless
/// ForwardOptions::allow_non_finite; an allocating call allocates its outputs while that scan
/// runs and frees them, unwritten, before it throws.
#pragma once

#include <gdp/errors.hpp>
#include <gdp/storage_types.hpp>

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace gdp {

/// How the forward walks each sequence's chunks. Both give the same function. The backward
/// (gdp/backward.hpp) follows the forward's choice: chunk-parallel, its reverse walk over the
/// chunks is cut into the same segments (docs/BACKWARD.md).
enum class ForwardAlgorithm {
  /// Chunk-parallel when the (sequence, head) pairs are too few to keep the execution space
  /// busy, else sequential (docs/PERFORMANCE.md has the rule).
  automatic,
  /// One walk over each sequence's chunks per (sequence, head, block of value columns),
  /// carrying the state.
  sequential,
  /// Each sequence cut into segments of chunks: every segment's affine state map
  /// S_out = M S_in + R in parallel, a scan of the maps over each sequence's segments, then
  /// every segment's outputs in parallel from its true entering state.
  chunk_parallel,
};

/// Options of the forward operator.
struct ForwardOptions {
  /// n: Householder sub-steps per token (>= 1).
  int num_householder = 1;
  /// Read-out scale; a value <= 0 selects the default 1/sqrt(K).
  double scale = 0.0;
  /// Return the final state of every sequence in ForwardResult::final_state.
  bool output_final_state = false;
  /// Replace q_t and every k_{t,j} by x / sqrt(|x|^2 + 1e-6) before the recurrence.
  bool use_qk_l2norm = false;
  /// Expanded positions per chunk (>= 1; 64 is customary).
  int chunk_size = 64;
  /// Sequential or chunk-parallel walk over the chunks.
  ForwardAlgorithm algorithm = ForwardAlgorithm::automatic;
  /// Chunk-parallel only: chunks per segment (>= 0; 0 chooses it from the parallel work).
  int chunks_per_segment = 0;
  /// State columns one team of the state passes carries (>= 0; 0 chooses from the problem's
  /// size and the execution space). The backward sums one partial of the gradients of q, k,
  /// beta and g per block of columns, so their last bits depend on this width: fix it to get
  /// the same bits for a (sequence, head) pair in problems of different sizes (gdp_app does,
  /// so that its results do not depend on the number of ranks).
  int value_block = 0;
  /// Accept NaN and infinite values in the inputs. By default (false) every input tensor
  /// (q, k, v, beta, g, h0, and the backward's do and dht) is scanned before any other kernel
  /// computes, and the first non-finite element throws gdp::InvalidArgument naming the tensor,
  /// the element's multi-index and its value, e.g.
  /// `gdp: v: expected finite values, got nan at [b, p, h, v] = [0, 17, 2, 5] ...`
  /// (p is the expanded position t*n + j). The scan is one kernel per tensor; the calls lay
  /// out their workspace (and the allocating ones allocate their outputs) while the scans
  /// run, then wait for their results. true skips them (docs/HARDENING.md gives their cost).
  bool allow_non_finite = false;
};

/// The inputs, as views in the memory space `MemorySpace`. A default-constructed (null) view
/// means "absent" for the optional tensors g, initial_state and cu_seqlens.
template <class Scalar, class MemorySpace>
struct ForwardInputs {
  /// Element type of g and h0: accumulator_t<Scalar>.
  using accumulator_type = accumulator_t<Scalar>;
  /// A row-major view in `MemorySpace`, the type of every member.
  template <class T>
  using view = Kokkos::View<T, Kokkos::LayoutRight, MemorySpace>;

  view<const Scalar****> q;     ///< [B, T, Hqk, K]; H a multiple of Hqk
  view<const Scalar****> k;     ///< [B, T*n, Hqk, K]
  view<const Scalar****> v;     ///< [B, T*n, H, V]
  view<const Scalar***> beta;   ///< [B, T*n, H]
  view<const accumulator_type***> g;              ///< [B, T, H] log gates, optional
  view<const accumulator_type****> initial_state; ///< h0 [N, H, K, V], optional
  view<const std::int64_t*> cu_seqlens;           ///< [N+1], optional
};

/// The outputs: allocated by chunk_gated_delta_product, or given by the caller to
/// chunk_gated_delta_product_into.
template <class Scalar, class MemorySpace>
struct ForwardResult {
  Kokkos::View<Scalar****, Kokkos::LayoutRight, MemorySpace> o;  ///< [B, T, H, V]
  /// ht [N, H, K, V]; null unless ForwardOptions::output_final_state.
  Kokkos::View<accumulator_t<Scalar>****, Kokkos::LayoutRight, MemorySpace> final_state;
};

/// The chunked Gated DeltaProduct forward on execution space `ExecSpace`.
///
/// Instantiated for every enabled Kokkos execution space and every storage type. Runs
/// asynchronously on a default instance of `ExecSpace` except for the validation: the small
/// host-side check of cu_seqlens and the scan of the inputs for non-finite values (see
/// ForwardOptions::allow_non_finite); results are ready after `ExecSpace().fence()`.
/// \throws gdp::InvalidArgument on any invalid input (see the file comment).
template <class ExecSpace, class Scalar>
ForwardResult<Scalar, typename ExecSpace::memory_space> chunk_gated_delta_product(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& inputs,
    const ForwardOptions& options = {});

/// The same forward into outputs the caller owns (a framework's preallocated tensors, or
/// buffers reused across calls), every element of which it overwrites: `outputs.o`
/// [B, T, H, V], and `outputs.final_state` [N, H, K, V] exactly when
/// ForwardOptions::output_final_state (a null view otherwise). Each must have memory of its
/// own, overlapping neither the other nor any input. The outputs are checked with the other
/// arguments, before any kernel runs: on an error nothing is written. Saves the call the
/// allocation of its outputs (on an H100, 0.21 ms of an 8-2048-16-128-2 bf16 call's 1.37 ms:
/// docs/PERFORMANCE.md).
/// \throws gdp::InvalidArgument on any invalid argument, naming it ("o" and "ht" included).
template <class ExecSpace, class Scalar>
void chunk_gated_delta_product_into(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& inputs,
    const ForwardOptions& options,
    const ForwardResult<Scalar, typename ExecSpace::memory_space>& outputs);

}  // namespace gdp
