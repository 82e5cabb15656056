// SPDX-License-Identifier: Apache-2.0
// The backward driver: check, recompute the forward's per-chunk quantities, rerun the state
// pass keeping the chunk-entry states, run it in reverse, and finish each chunk's gradients.
#pragma once

#include <gdp/backward.hpp>

#include "backward_workspace.hpp"
#include "chunk/chunk_prepare.hpp"
#include "chunk/forward_impl.hpp"
#include "chunk/state_pass.hpp"
#include "chunk_gradients.hpp"
#include "common/view_limits.hpp"
#include "group_sum.hpp"
#include "reverse_state_pass.hpp"

#include <Kokkos_Core.hpp>

namespace gdp::detail {

template <class ExecSpace, class Scalar>
InputGradients<Scalar, typename ExecSpace::memory_space> chunked_backward(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& in,
    const OutputGradients<Scalar, typename ExecSpace::memory_space>& upstream,
    const ForwardOptions& options) {
  using memory_space = typename ExecSpace::memory_space;
  using Real = accumulator_t<Scalar>;
  const ProblemShape shape = check_forward_inputs(in, options);
  check_output_gradients(shape, extents_of("do", upstream.o),
                         extents_of("dht", upstream.final_state));
  const int value_block = state_pass_value_block<ExecSpace>(shape, options);
  const int value_blocks = int((shape.value_dim + value_block - 1) / value_block);
  expect_call_fits(shape, call_limits(shape, options, value_blocks, /*backward=*/true));
  check_finite_inputs<ExecSpace>(in, options);
  check_finite_output_gradients<ExecSpace>(upstream, options);

  const auto operands = make_operands<ExecSpace>(in, shape, options);
  const ChunkLayout layout = make_chunk_layout(shape, options.chunk_size);
  const DeviceChunkLayout<memory_space> device_layout(layout);
  const ChunkWorkspace<Real, memory_space> workspace(shape, layout, /*keep_tm=*/true);
  ChunkPrepare<ExecSpace, Scalar>(operands, device_layout, workspace).run();

  const BackwardWorkspace<Real, memory_space> saved(shape, layout, value_blocks);
  {
    using Pass = StatePass<ExecSpace, Scalar>;
    Pass rerun(operands, device_layout, workspace,
               typename Pass::template unmanaged_view<const Real****>(in.initial_state.data(),
                                                                      in.initial_state.layout()),
               {}, {}, value_block);
    rerun.entry_states_transposed = saved.entry_states_transposed;
    rerun.new_values = workspace.u;
    rerun.run();
  }

  const std::int64_t T = shape.total_tokens(), P = shape.total_positions(), H = shape.heads,
                     Hqk = shape.qk_heads, K = shape.key_dim, V = shape.value_dim;
  const std::int64_t B = shape.batch, T_row = shape.tokens_per_row, n = shape.num_householder;
  // The last two stages write every element of every gradient.
  InputGradients<Scalar, memory_space> result;
  result.dq = decltype(result.dq)(uninitialized("gdp::dq"), B, T_row, Hqk, K);
  result.dk = decltype(result.dk)(uninitialized("gdp::dk"), B, T_row * n, Hqk, K);
  result.dv = decltype(result.dv)(uninitialized("gdp::dv"), B, T_row * n, H, V);
  result.dbeta = decltype(result.dbeta)(uninitialized("gdp::dbeta"), B, T_row * n, H);
  if (shape.gated) result.dg = decltype(result.dg)(uninitialized("gdp::dg"), B, T_row, H);
  if (shape.has_initial_state)
    result.dh0 = decltype(result.dh0)(uninitialized("gdp::dh0"), shape.num_sequences(), H, K, V);

  using Reverse = ReverseStatePass<ExecSpace, Scalar>;
  Reverse(
      operands, device_layout, workspace, saved,
      typename Reverse::template unmanaged_view<const Scalar***>(upstream.o.data(), T, H, V),
      typename Reverse::template unmanaged_view<const Real****>(upstream.final_state.data(),
                                                                upstream.final_state.layout()),
      typename Reverse::template unmanaged_view<Scalar***>(result.dv.data(), P, H, V),
      typename Reverse::template unmanaged_view<Real****>(result.dh0.data(), result.dh0.layout()),
      value_block)
      .run();
  using Finish = ChunkGradients<ExecSpace, Scalar>;
  const bool grouped = Hqk != H;
  Finish finish(
      operands, device_layout, workspace, saved,
      typename Finish::template unmanaged_view<Scalar***>(grouped ? nullptr : result.dq.data(), T, H, K),
      typename Finish::template unmanaged_view<Scalar***>(grouped ? nullptr : result.dk.data(), P, H, K),
      typename Finish::template unmanaged_view<Scalar**>(result.dbeta.data(), P, H),
      typename Finish::template unmanaged_view<Real**>(result.dg.data(), shape.gated ? T : 0, H));
  if (grouped) {
    // Each value head's share of dq and dk goes over the first value-block slice of dQg and
    // dBk: a (chunk, head) team reads those rows of its chunk and head, and only those, before
    // it writes the same rows.
    finish.query_grad_partial = typename Finish::template unmanaged_view<Real***>(
        saved.gated_query_grad.data(), T, H, K);
    finish.key_grad_partial =
        typename Finish::template unmanaged_view<Real***>(saved.solve_key_grad.data(), P, H, K);
  }
  finish.run();
  if (grouped) {
    sum_head_groups<ExecSpace>("gdp::dq_group_sum", finish.query_grad_partial,
                               typename Finish::template unmanaged_view<Scalar***>(
                                   result.dq.data(), T, Hqk, K));
    sum_head_groups<ExecSpace>("gdp::dk_group_sum", finish.key_grad_partial,
                               typename Finish::template unmanaged_view<Scalar***>(
                                   result.dk.data(), P, Hqk, K));
  }
  // The workspaces and the caller's inputs must outlive the kernels.
  ExecSpace().fence();
  return result;
}

}  // namespace gdp::detail

namespace gdp {

template <class ExecSpace, class Scalar>
InputGradients<Scalar, typename ExecSpace::memory_space> chunk_gated_delta_product_backward(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& inputs,
    const OutputGradients<Scalar, typename ExecSpace::memory_space>& output_gradients,
    const ForwardOptions& options) {
  return detail::chunked_backward<ExecSpace, Scalar>(inputs, output_gradients, options);
}

}  // namespace gdp

/// Instantiates the backward for one execution space and one storage type.
#define GDP_INSTANTIATE_BACKWARD_FOR(ExecSpace, Scalar)               \
  template ::gdp::InputGradients<Scalar, ExecSpace::memory_space>     \
  gdp::chunk_gated_delta_product_backward<ExecSpace, Scalar>(         \
      const ::gdp::ForwardInputs<Scalar, ExecSpace::memory_space>&,   \
      const ::gdp::OutputGradients<Scalar, ExecSpace::memory_space>&, \
      const ::gdp::ForwardOptions&)

/// Instantiates the backward for one execution space and every storage type.
#define GDP_INSTANTIATE_BACKWARD(ExecSpace)                 \
  GDP_INSTANTIATE_BACKWARD_FOR(ExecSpace, double);          \
  GDP_INSTANTIATE_BACKWARD_FOR(ExecSpace, float);           \
  GDP_INSTANTIATE_BACKWARD_FOR(ExecSpace, ::gdp::bfloat16); \
  GDP_INSTANTIATE_BACKWARD_FOR(ExecSpace, ::gdp::float16)
