// SPDX-License-Identifier: Apache-2.0
// The adjoint of the recurrence of ALGORITHM.md section 1, written by hand: the recurrence run
// backwards token by token and sub-step by sub-step, in double. The ground truth of the
// chunked backward's tests; itself checked against central finite differences of
// naive_recurrence.
#pragma once

#include <gdp/backward.hpp>

#include "reference_problem.hpp"

#include <Kokkos_Core.hpp>

namespace gdp::reference {

/// Gradients of the loss with respect to the forward's outputs, on the flattened axes.
struct ReferenceOutputGradients {
  Kokkos::View<double***, Kokkos::LayoutRight, Kokkos::HostSpace> o;  ///< [total_tokens, H, V]
  /// [N, H, K, V]; null when the final state does not reach the loss.
  Kokkos::View<double****, Kokkos::LayoutRight, Kokkos::HostSpace> final_state;
};

/// Gradients with respect to every input, on the flattened axes of ReferenceProblem.
struct ReferenceGradients {
  template <class T>
  using view = Kokkos::View<T, Kokkos::LayoutRight, Kokkos::HostSpace>;
  view<double***> dq;    ///< [total_tokens, Hqk, K] (with respect to the raw q)
  view<double***> dk;    ///< [total_positions, Hqk, K] (with respect to the raw k)
  view<double***> dv;    ///< [total_positions, H, V]
  view<double**> dbeta;  ///< [total_positions, H]
  view<double**> dg;     ///< [total_tokens, H]; null when ungated
  view<double****> dh0;  ///< [N, H, K, V]; null without an initial state
};

/// The host float64 copy of the output gradients of a problem of shape `shape`.
template <class Scalar, class MemorySpace>
ReferenceOutputGradients make_reference_output_gradients(
    const OutputGradients<Scalar, MemorySpace>& gradients, const detail::ProblemShape& shape) {
  ReferenceOutputGradients out;
  out.o = decltype(out.o)("reference::do", shape.total_tokens(), shape.heads, shape.value_dim);
  copy_converted<double>(out.o, gradients.o);
  if (gradients.final_state.data()) {
    out.final_state = decltype(out.final_state)("reference::dht", shape.num_sequences(),
                                                shape.heads, shape.key_dim, shape.value_dim);
    copy_converted<double>(out.final_state, gradients.final_state);
  }
  return out;
}

/// Runs the adjoint for every (sequence, value head) pair, in parallel on the host. States are
/// recomputed from checkpoints kept every few tokens, so memory stays far below T states.
/// With grouped value heads, dq and dk of a q/k head are the sums of its value heads' shares.
ReferenceGradients naive_backward(const ReferenceProblem<double>& problem,
                                  const ReferenceOutputGradients& output_gradients);

}  // namespace gdp::reference
