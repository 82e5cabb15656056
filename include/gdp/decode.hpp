// SPDX-License-Identifier: Apache-2.0
/// \file decode.hpp
/// \brief One token of the Gated DeltaProduct for a batch of sequences: the decode step.
///
/// For each sequence i and value head h, with its state S = state(i, h) (K x V), updated in
/// place, and the query/key head c = h / (Hv / Hqk) that value head reads:
///
///     S <- exp(g(i, h)) S                                     (only when g is given)
///     for j in 0..n-1:
///         S <- S + beta(i, j, h) k(i, j, c) (v(i, j, h) - S^T k(i, j, c))^T
///     o(i, h) = scale * S^T q(i, c)
///
/// which is one token of the recurrence gdp::chunk_gated_delta_product computes (design
/// ALGORITHM.md section 1): a forward's final state `ht` is the state to continue from.
///
/// Tensor layout (row-major `Kokkos::LayoutRight`): the forward's for one token per sequence
/// with the token axis dropped (a forward tensor [B, 1, H, ...] has the same memory):
///
///     q    [N, Hqk, K]        k    [N, n, Hqk, K]     v [N, n, Hv, V]
///     beta [N, n, Hv]         g    [N, Hv]            (optional)
///     state [N, Hv, K, V]     (read and written)      o [N, Hv, V]     (written)
///
/// Grouped value heads: q and k have Hqk heads, v, beta, g, the state and o have Hv heads,
/// Hv a multiple of Hqk; consecutive value heads share a query/key head (value head h reads
/// query/key head h / (Hv / Hqk)). Hqk = Hv is the ungrouped operator.
///
/// Storage types: q, k, v, beta and o are `Scalar` (double, float, gdp::bfloat16,
/// gdp::float16); g and the state are `accumulator_t<Scalar>`, the type every computation runs
/// in, so a state never passes through 16 bits between steps.
///
/// All arguments are checked on the host before any kernel runs; a violation throws
/// gdp::InvalidArgument naming the argument, the expected and the actual value, and leaves
/// the state and o untouched.
#pragma once

#include <gdp/errors.hpp>
#include <gdp/storage_types.hpp>

#include <Kokkos_Core.hpp>

namespace gdp {

/// Options of the decode step (the forward's that apply to one token, with the same meaning
/// and defaults as in gdp::ForwardOptions).
struct DecodeOptions {
  /// n: Householder sub-steps per token (>= 1).
  int num_householder = 1;
  /// Read-out scale; a value <= 0 selects the default 1/sqrt(K).
  double scale = 0.0;
  /// Replace q and every k by x / sqrt(|x|^2 + 1e-6) first (the forward's epsilon).
  bool use_qk_l2norm = false;
  /// State columns one team updates (>= 0; 0 chooses from the batch and the execution space).
  /// Every column of the state evolves on its own, so the result is the same, bit for bit,
  /// for every width.
  int value_block = 0;
};

/// The inputs of one decode step, as views in the memory space `MemorySpace`. A
/// default-constructed (null) `g` means "no gate".
template <class Scalar, class MemorySpace>
struct DecodeInputs {
  /// Element type of g: accumulator_t<Scalar>.
  using accumulator_type = accumulator_t<Scalar>;
  /// A row-major view in `MemorySpace`, the type of every member.
  template <class T>
  using view = Kokkos::View<T, Kokkos::LayoutRight, MemorySpace>;

  view<const Scalar***> q;                  ///< [N, Hqk, K]
  view<const Scalar****> k;                 ///< [N, n, Hqk, K]; sub-step j at index j
  view<const Scalar****> v;                 ///< [N, n, Hv, V]
  view<const Scalar***> beta;               ///< [N, n, Hv]
  view<const accumulator_type**> g;         ///< [N, Hv] log gates, optional
};

/// The state of a batch of sequences: [N, Hv, K, V] in the accumulation type.
template <class Scalar, class MemorySpace>
using DecodeState = Kokkos::View<accumulator_t<Scalar>****, Kokkos::LayoutRight, MemorySpace>;

/// The read-out of a decode step: [N, Hv, V] in the storage type.
template <class Scalar, class MemorySpace>
using DecodeOutput = Kokkos::View<Scalar***, Kokkos::LayoutRight, MemorySpace>;

/// One token of the Gated DeltaProduct for every sequence of the batch, on execution space
/// `ExecSpace`: advances `state` in place and writes the read-out to `o` (see the file
/// comment). `o` must not overlap the state or the inputs.
///
/// Instantiated for every enabled Kokkos execution space and every storage type. Runs
/// asynchronously on a default instance of `ExecSpace` and allocates nothing; `state` and `o`
/// are ready after `ExecSpace().fence()`.
/// \throws gdp::InvalidArgument on any invalid argument, before anything is written.
template <class ExecSpace, class Scalar>
void recurrent_step(const DecodeInputs<Scalar, typename ExecSpace::memory_space>& inputs,
                    const DecodeState<Scalar, typename ExecSpace::memory_space>& state,
                    const DecodeOutput<Scalar, typename ExecSpace::memory_space>& o,
                    const DecodeOptions& options = {});

}  // namespace gdp
