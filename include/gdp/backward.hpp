// SPDX-License-Identifier: Apache-2.0
/// \file backward.hpp
/// \brief The chunked Gated DeltaProduct backward operator: gradients of a scalar loss with
/// respect to every input of the forward (gdp/forward.hpp), given the loss's gradients with
/// respect to the forward's outputs.
///
/// Inputs: the forward's inputs and options unchanged, plus
///
///     do   [B, T, H, V]     (Scalar, required)    gradient with respect to o
///     dht  [N, H, K, V]     (accumulator, optional) gradient with respect to the final state
///
/// `dht` may be given whether or not ForwardOptions::output_final_state is set; absent, the
/// final state is taken not to reach the loss. Outputs, allocated by the operator:
///
///     dq [B, T, Hqk, K] dk [B, T*n, Hqk, K] dv [B, T*n, H, V]   dbeta [B, T*n, H]   (Scalar)
///     dg [B, T, H]      only when g is given                                  (accumulator)
///     dh0 [N, H, K, V]  only when h0 is given                                 (accumulator)
///
/// With ForwardOptions::use_qk_l2norm, dq and dk are the gradients with respect to the raw
/// (unnormalised) q and k, i.e. the backward of the normalisation is included. With grouped
/// value heads (Hqk < H, see forward.hpp) a row of dq or dk is the sum of the shares of the
/// H / Hqk value heads that read it, each computed in the accumulator type and added in
/// value-head order, then rounded once: no atomics, the same bits on every run.
///
/// Algorithm (design/ALGORITHM.md sections 4 and 5, docs/BACKWARD.md). The backward needs the
/// per-chunk quantities of the forward (W, U, G, the intra-chunk read-out weights and
/// Tm = (I + A)^{-1}) and the state entering every chunk. Given only the inputs it recomputes
/// them (a rerun of the forward's walk that stores them); a training step instead calls
/// chunk_gated_delta_product_for_backward, a forward that keeps them in a SavedForward, and
/// then the backward overloads that take it, which skip the rerun and the scan of the inputs.
/// Then the backward runs the state pass in reverse over each sequence's chunks carrying dS,
/// and finally turns the per-chunk adjoints into dq, dk, dbeta and dg, all chunks in
/// parallel. ForwardOptions::value_block sets the width of the
/// blocks of value columns both state passes split V into; algorithm and chunks_per_segment
/// do not change the backward.
///
/// Memory, in the accumulator type, beyond the inputs and the gradients, per head with
/// P = T*n expanded positions and C = chunk_size (the first two kept by a SavedForward from
/// its forward until it is destroyed, the third only during the backward call):
///   - the stored chunk-entry states: one K x V state per chunk, K*V/C values per position;
///   - the recomputed per-chunk quantities: (K + V + 1 + C) per position and C per token;
///   - the per-chunk adjoints from the reverse pass to the last stage: (2K + C + 1) per
///     position and (K + C) per token, once per block of value columns the reverse pass
///     splits V into (one block whenever there are at least twice as many (sequence, head)
///     pairs as the execution space runs threads at once).
/// At B=1, T=4096, H=4, K=V=128, n=2, C=64 in float that is 32 MiB per head. Grouped value
/// heads need no more: each value head's share of dq and dk goes over the first value block's
/// slice of the adjoints of the gated queries and of beta o exp(G) o K, once those are read.
/// On Kokkos::Cuda with bfloat16 storage W, Vnew, Tm and the chunk-entry states are kept in
/// bfloat16 instead, and the last stage computes most of the per-chunk adjoints itself: the
/// reverse pass hands on V (dBv) per position and the gradient of each chunk's leaving state
/// (K*V/C per position) in bfloat16, and one float per position and block of value columns
/// (with grouped value heads also one float slice of K per position and per token for the
/// shares of dq and dk). The memory comes from gdp's workspace cache (gdp/workspace.hpp):
/// repeated calls of one shape reuse it instead of allocating it again.
///
/// Every argument is checked before any kernel computes; a violation throws
/// gdp::InvalidArgument naming the argument ("do", "dht", or a forward argument), the expected
/// and the actual value. Non-finite values in any input, do and dht included, are rejected as
/// in the forward unless ForwardOptions::allow_non_finite.
#pragma once

#include <gdp/errors.hpp>
#include <gdp/forward.hpp>
#include <gdp/storage_types.hpp>

#include <Kokkos_Core.hpp>

#include <memory>

namespace gdp {

namespace detail {
template <class Scalar, class MemorySpace>
struct SavedForwardState;
struct SavedForwardAccess;
}  // namespace detail

/// What chunk_gated_delta_product_for_backward keeps from its forward for the backward of the
/// same call: the per-chunk quantities and chunk-entry states (memory above), the shape, the
/// options, the execution space, and which tensors the forward read. Copies share the memory;
/// it goes back to gdp's workspace cache (gdp/workspace.hpp) when the last copy is destroyed
/// or reset. Filling one replaces what it held.
///
/// The backward that takes it must get the very same input views (the same memory, the same
/// shapes), with the values the forward read: the saved quantities are functions of them, and
/// only the memory is checked, not the values.
template <class Scalar, class MemorySpace>
class SavedForward {
 public:
  /// Whether it holds nothing (default-constructed, or reset).
  bool empty() const noexcept { return state_ == nullptr; }
  /// Lets the memory go (once no copy holds it).
  void reset() noexcept { state_.reset(); }

 private:
  friend struct detail::SavedForwardAccess;
  std::shared_ptr<const detail::SavedForwardState<Scalar, MemorySpace>> state_;
};

/// Gradients of the loss with respect to the forward's outputs, in `MemorySpace`. A null
/// `final_state` means the final state does not reach the loss.
template <class Scalar, class MemorySpace>
struct OutputGradients {
  /// Element type of dht: accumulator_t<Scalar>.
  using accumulator_type = accumulator_t<Scalar>;
  /// A row-major view in `MemorySpace`, the type of every member.
  template <class T>
  using view = Kokkos::View<T, Kokkos::LayoutRight, MemorySpace>;

  view<const Scalar****> o;                         ///< do [B, T, H, V]
  view<const accumulator_type****> final_state;     ///< dht [N, H, K, V], optional
};

/// Gradients of the loss with respect to the forward's inputs in `MemorySpace`, each with the
/// shape of its input: allocated by chunk_gated_delta_product_backward, or given by the caller
/// to chunk_gated_delta_product_backward_into.
template <class Scalar, class MemorySpace>
struct InputGradients {
  /// Element type of dg and dh0: accumulator_t<Scalar>.
  using accumulator_type = accumulator_t<Scalar>;
  /// A row-major view in `MemorySpace`, the type of every member.
  template <class T>
  using view = Kokkos::View<T, Kokkos::LayoutRight, MemorySpace>;

  view<Scalar****> dq;                 ///< [B, T, Hqk, K]
  view<Scalar****> dk;                 ///< [B, T*n, Hqk, K]
  view<Scalar****> dv;                 ///< [B, T*n, H, V]
  view<Scalar***> dbeta;               ///< [B, T*n, H]
  view<accumulator_type***> dg;        ///< [B, T, H]; null unless g was given
  view<accumulator_type****> dh0;      ///< [N, H, K, V]; null unless h0 was given
};

/// The chunked Gated DeltaProduct backward on execution space `ExecSpace`.
///
/// Instantiated for every enabled Kokkos execution space and every storage type. Runs on a
/// default instance of `ExecSpace` and fences before returning.
/// \throws gdp::InvalidArgument on any invalid input (see the file comment and forward.hpp).
template <class ExecSpace, class Scalar>
InputGradients<Scalar, typename ExecSpace::memory_space> chunk_gated_delta_product_backward(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& inputs,
    const OutputGradients<Scalar, typename ExecSpace::memory_space>& output_gradients,
    const ForwardOptions& options = {});

/// The same backward into gradients the caller owns (a framework's preallocated tensors, or
/// buffers reused across training steps), every element of which it overwrites: dq, dk, dv,
/// dbeta each with the shape of its input, dg exactly when g is given and dh0 exactly when h0
/// is given (null otherwise). Each must have memory of its own, overlapping neither another
/// gradient nor any input, do or dht. The gradients are checked with the other arguments,
/// before any kernel runs. Saves the call the allocation of its gradients and their freeing
/// (cudaMalloc, and cudaFree, which waits for the device): on an H200, a training step of
/// 8-2048-16-128-2 bf16 took 3.9 to 4.6 ms allocating its outputs and gradients and 3.05 to
/// 3.12 ms into given ones (docs/PERFORMANCE.md).
/// \throws gdp::InvalidArgument on any invalid argument, naming it ("dq" ... "dh0" included).
template <class ExecSpace, class Scalar>
void chunk_gated_delta_product_backward_into(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& inputs,
    const OutputGradients<Scalar, typename ExecSpace::memory_space>& output_gradients,
    const ForwardOptions& options,
    const InputGradients<Scalar, typename ExecSpace::memory_space>& gradients);

/// The forward of chunk_gated_delta_product (its inputs, options, checks and outputs) that also
/// fills `saved` with what the backward of the same inputs needs, so that the backward
/// overloads taking `saved` do not recompute it. It walks the chunks as the forward would
/// (ForwardOptions::algorithm and chunks_per_segment; chunk-parallel, it keeps the segments'
/// maps too, for the backward's reverse scan: docs/BACKWARD.md), the walk the backward would
/// rerun. On an error `saved` is left as it was.
/// \throws gdp::InvalidArgument on any invalid input, as chunk_gated_delta_product.
template <class ExecSpace, class Scalar>
ForwardResult<Scalar, typename ExecSpace::memory_space> chunk_gated_delta_product_for_backward(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& inputs,
    const ForwardOptions& options, SavedForward<Scalar, typename ExecSpace::memory_space>& saved);

/// The same forward for the backward into outputs the caller owns, as
/// chunk_gated_delta_product_into takes them (checked with the other arguments: on an error
/// nothing is written and `saved` is left as it was).
/// \throws gdp::InvalidArgument on any invalid argument, naming it ("o" and "ht" included).
template <class ExecSpace, class Scalar>
void chunk_gated_delta_product_for_backward_into(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& inputs,
    const ForwardOptions& options,
    const ForwardResult<Scalar, typename ExecSpace::memory_space>& outputs,
    SavedForward<Scalar, typename ExecSpace::memory_space>& saved);

/// The backward from what chunk_gated_delta_product_for_backward saved: the same gradients, bit
/// for bit, as chunk_gated_delta_product_backward(inputs, output_gradients, options) with the
/// options of that forward. Scans only do and dht for non-finite values (the forward scanned
/// its inputs, unless its options allowed them).
/// \throws gdp::InvalidArgument naming "saved" when it is empty, was filled on another
/// execution space, or for other inputs (naming the tensor whose memory or shape differs);
/// otherwise as the backward above.
template <class ExecSpace, class Scalar>
InputGradients<Scalar, typename ExecSpace::memory_space> chunk_gated_delta_product_backward(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& inputs,
    const OutputGradients<Scalar, typename ExecSpace::memory_space>& output_gradients,
    const SavedForward<Scalar, typename ExecSpace::memory_space>& saved);

/// The backward from `saved` into gradients the caller owns (as
/// chunk_gated_delta_product_backward_into).
template <class ExecSpace, class Scalar>
void chunk_gated_delta_product_backward_into(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& inputs,
    const OutputGradients<Scalar, typename ExecSpace::memory_space>& output_gradients,
    const SavedForward<Scalar, typename ExecSpace::memory_space>& saved,
    const InputGradients<Scalar, typename ExecSpace::memory_space>& gradients);

}  // namespace gdp
