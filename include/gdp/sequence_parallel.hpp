// SPDX-License-Identifier: Apache-2.0
/// \file sequence_parallel.hpp
/// \brief Building blocks for splitting one sequence's tokens among processes (sequence or
/// context parallelism), without MPI: the caller's communicator runs the scan.
///
/// The state leaving a token range of a sequence is an affine function of the state
/// entering it, `S_out = M S_in + R` for every head, with `M` (K x K) the gated Householder
/// product over the range and `R` (K x V) what the range adds to a zero state. Maps compose
/// associatively but not commutatively: the range `a` followed by the range `b` maps as
/// `b o a = (M_b M_a, M_b R_a + R_b)`. For P processes holding consecutive slices of one
/// sequence (slice 0 at its start):
///
///  1. the process of slice 0 knows its entering state (h0, or zero): it runs the ordinary
///     forward (chunk_gated_delta_product with output_final_state) and its scan element is
///     known_state_map(final_state) = (0, final state); every other process calls
///     segment_map() on its slice, which walks the slice once and keeps, besides its map,
///     each token's output as a function of the unknown entering state;
///  2. the processes scan their elements exclusively in slice order with compose_state_maps()
///     (MPI_Exscan with a non-commutative operation, for example); since element 0 has
///     M = 0, every prefix has M = 0 and its R is the state entering that process's slice
///     (apply_state_map() of the prefix to anything gives it);
///  3. every process but the first calls finish_segment() with that entering state: its
///     outputs and the state leaving its slice (the sequence's final state on the last one).
///
/// An empty slice's element is identity_state_map(). The result equals the one-process
/// forward within rounding, not bit for bit: the slices' sums of floating-point products are
/// associated differently (the chunks restart at each slice, and the entering state reaches
/// a token's output through M and the read-out rather than through the walk).
///
/// States are [1, H, K, V] views, as ForwardInputs::initial_state and
/// ForwardResult::final_state of a one-sequence call; all arithmetic runs in
/// accumulator_t<Scalar>. Every function checks its arguments on the host first (throwing
/// gdp::InvalidArgument), runs on a default instance of `ExecSpace` and returns after a
/// fence of it.
#pragma once

#include <gdp/errors.hpp>
#include <gdp/forward.hpp>
#include <gdp/storage_types.hpp>

#include <Kokkos_Core.hpp>

namespace gdp {

/// The affine state maps of the H heads of a token range: `matrix(h, d, c)` is row d of
/// `[M | R]` of head h, columns [0, K) holding M and [K, K + V) holding R.
template <class Real, class MemorySpace>
struct StateMap {
  /// [H, K, K + V], row-major; one contiguous block (a message buffer as it is).
  Kokkos::View<Real***, Kokkos::LayoutRight, MemorySpace> matrix;
  /// V: the value size (the key size K is matrix.extent(1)).
  int value_dim = 0;
  /// A state [1, H, K, V] that the map applies to.
  using state_view = Kokkos::View<const Real****, Kokkos::LayoutRight, MemorySpace>;

  /// H: the number of heads.
  int heads() const { return int(matrix.extent(0)); }
  /// K: the key size.
  int key_dim() const { return int(matrix.extent(1)); }
};

/// What segment_map() returns: a slice's map and each token's read-out as a function of the
/// state entering the slice.
template <class Scalar, class MemorySpace>
struct SegmentMap {
  /// The accumulation type, of the map and the read-outs.
  using Real = accumulator_t<Scalar>;
  /// (M, R) of the slice for every head.
  StateMap<Real, MemorySpace> map;
  /// [T, H, K + V]: token t's output from entering state S is `readout(t, h, K + e) +
  /// sum_d readout(t, h, d) S(d, e)`: columns [0, K) are the read-out of M (scale times the
  /// query carried back to the slice's start), columns [K, K + V) the output from a zero
  /// entering state.
  Kokkos::View<Real***, Kokkos::LayoutRight, MemorySpace> readout;
  /// The options the slice was computed with (for finish_segment()).
  ForwardOptions options;
};

/// Walks the slice `inputs` of one sequence once with the augmented state `[M | R]` started
/// from `[I | 0]`, giving its map and the read-outs that finish_segment() turns into outputs.
/// About 1.55 times the flops of the ordinary forward on the slice at K = V = 64, n = 2 (K + V
/// state columns instead of V); on the host spaces, whose fused walk does stage 1 once for
/// all K + V columns, about 1.2 to 1.3 times its time.
///
/// `inputs`: one batch row (B = 1) of consecutive tokens of one sequence: q, k, v, beta, g as
/// for chunk_gated_delta_product; no cu_seqlens and no initial_state (the entering state is
/// what finish_segment() takes). `options` as for the forward (output_final_state is ignored).
/// \throws gdp::InvalidArgument on invalid inputs, B != 1, cu_seqlens or initial_state given.
template <class ExecSpace, class Scalar>
SegmentMap<Scalar, typename ExecSpace::memory_space> segment_map(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& inputs,
    const ForwardOptions& options = {});

/// The outputs of a slice from the true state entering it: `o` [1, T, H, V] and
/// `final_state` [1, H, K, V], the state leaving the slice.
/// \throws gdp::InvalidArgument when `entering_state` is not [1, H, K, V].
template <class ExecSpace, class Scalar>
ForwardResult<Scalar, typename ExecSpace::memory_space> finish_segment(
    const SegmentMap<Scalar, typename ExecSpace::memory_space>& segment,
    const Kokkos::View<const accumulator_t<Scalar>****, Kokkos::LayoutRight,
                       typename ExecSpace::memory_space>& entering_state);

/// finish_segment() into outputs the caller holds: `o` [1, T, H, V] and `final_state`
/// [1, H, K, V], both overwritten (a process that gathers its outputs in a buffer of its own
/// spares the allocation and a copy, after the scan, where the slices before it wait).
/// \throws gdp::InvalidArgument when `entering_state`, `o` or `final_state` has another shape.
template <class ExecSpace, class Scalar>
void finish_segment_into(
    const SegmentMap<Scalar, typename ExecSpace::memory_space>& segment,
    const Kokkos::View<const accumulator_t<Scalar>****, Kokkos::LayoutRight,
                       typename ExecSpace::memory_space>& entering_state,
    const Kokkos::View<Scalar****, Kokkos::LayoutRight, typename ExecSpace::memory_space>& o,
    const Kokkos::View<accumulator_t<Scalar>****, Kokkos::LayoutRight,
                       typename ExecSpace::memory_space>& final_state);

/// `later o earlier` = (M_l M_e, M_l R_e + R_l): the map of the range `earlier` followed by
/// the range `later`.
/// \throws gdp::InvalidArgument when the two maps' H, K or V differ.
template <class ExecSpace, class Real>
StateMap<Real, typename ExecSpace::memory_space> compose_state_maps(
    const StateMap<Real, typename ExecSpace::memory_space>& earlier,
    const StateMap<Real, typename ExecSpace::memory_space>& later);

/// M S + R for every head: the state leaving a range entered with `state` [1, H, K, V].
/// \throws gdp::InvalidArgument when `state` is not [1, H, K, V].
template <class ExecSpace, class Real>
Kokkos::View<Real****, Kokkos::LayoutRight, typename ExecSpace::memory_space> apply_state_map(
    const StateMap<Real, typename ExecSpace::memory_space>& map,
    const typename StateMap<Real, typename ExecSpace::memory_space>::state_view& state);

/// (I, 0) for H heads: the map of an empty range.
template <class ExecSpace, class Real>
StateMap<Real, typename ExecSpace::memory_space> identity_state_map(int heads, int key_dim,
                                                                    int value_dim);

/// (0, state): the map of a range whose leaving state is known whatever enters it, such as
/// a slice that starts at its sequence's start. `state` is [1, H, K, V].
template <class ExecSpace, class Real>
StateMap<Real, typename ExecSpace::memory_space> known_state_map(
    const Kokkos::View<const Real****, Kokkos::LayoutRight, typename ExecSpace::memory_space>&
        state);

}  // namespace gdp
