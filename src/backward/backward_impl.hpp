// SPDX-License-Identifier: Apache-2.0
// The backward driver: check, recompute the forward's per-chunk quantities, rerun the state
// pass keeping the chunk-entry states, run it in reverse, and finish each chunk's gradients.
// With bfloat16 on Cuda the first two are one walk of the fused forward, and the last two
// tensor-core kernels (fused_backward.hpp); elsewhere the portable stages run.
#pragma once

#include <gdp/backward.hpp>

#include "backward_workspace.hpp"
#include "chunk/chunk_prepare.hpp"
#include "chunk/forward_impl.hpp"
#include "chunk/state_pass.hpp"
#include "chunk_gradients.hpp"
#include "common/view_limits.hpp"
#include "fused_backward.hpp"
#include "group_sum.hpp"
#include "reverse_state_pass.hpp"

#include <Kokkos_Core.hpp>

#include <tuple>
#include <vector>

namespace gdp::detail {

/// What a backward call runs, from its checked arguments.
struct BackwardPlan {
  ProblemShape shape;
  bool fused = false;           ///< the tensor-core stages (fused_backward.hpp)
  int value_block = 0;          ///< value columns per block of the portable state passes
  int reverse_value_block = 0;  ///< value columns per block of the reverse pass
  int value_blocks = 0;         ///< slices of the value-mixing adjoints
};

/// Checks everything the backward reads (the forward's arguments, do, dht, the sizes, and
/// unless allowed, non-finite values) and plans the call.
template <class ExecSpace, class Scalar>
BackwardPlan check_backward(const ForwardInputs<Scalar, typename ExecSpace::memory_space>& in,
                            const OutputGradients<Scalar, typename ExecSpace::memory_space>& upstream,
                            const ForwardOptions& options) {
  BackwardPlan plan;
  plan.shape = check_forward_inputs(in, options);
  const ProblemShape& shape = plan.shape;
  check_output_gradients(shape, extents_of("do", upstream.o),
                         extents_of("dht", upstream.final_state));
  plan.value_block = state_pass_value_block<ExecSpace>(shape, options);
  // The reverse pass splits the value columns into blocks of its own (the fused one by its
  // kernel's rule), and writes one slice of every value-mixing adjoint per block.
  using Fused = FusedBackward<ExecSpace, Scalar>;
  plan.reverse_value_block = plan.value_block;
  if constexpr (Fused::available) {
    plan.fused = Fused::supports(shape, options);
    if (plan.fused) plan.reverse_value_block = Fused::value_block(shape);
  }
  plan.value_blocks =
      int((shape.value_dim + plan.reverse_value_block - 1) / plan.reverse_value_block);
  expect_call_fits(shape, call_limits(shape, options, plan.value_blocks, /*backward=*/true));
  check_finite_backward_inputs<ExecSpace>(in, upstream, options);
  return plan;
}

/// The gradients of a backward of `shape`, allocated uninitialised: the last two stages write
/// every element of each (the tests poison every allocation to check that).
template <class Scalar, class MemorySpace>
InputGradients<Scalar, MemorySpace> allocate_input_gradients(const ProblemShape& shape) {
  const std::int64_t B = shape.batch, T_row = shape.tokens_per_row, n = shape.num_householder,
                     H = shape.heads, Hqk = shape.qk_heads, K = shape.key_dim, V = shape.value_dim;
  InputGradients<Scalar, MemorySpace> result;
  result.dq = decltype(result.dq)(uninitialized("gdp::dq"), B, T_row, Hqk, K);
  result.dk = decltype(result.dk)(uninitialized("gdp::dk"), B, T_row * n, Hqk, K);
  result.dv = decltype(result.dv)(uninitialized("gdp::dv"), B, T_row * n, H, V);
  result.dbeta = decltype(result.dbeta)(uninitialized("gdp::dbeta"), B, T_row * n, H);
  if (shape.gated) result.dg = decltype(result.dg)(uninitialized("gdp::dg"), B, T_row, H);
  if (shape.has_initial_state)
    result.dh0 = decltype(result.dh0)(uninitialized("gdp::dh0"), shape.num_sequences(), H, K, V);
  return result;
}

/// The backward of checked arguments (`plan` from check_backward) into `result`, whose
/// gradients have the shapes allocate_input_gradients gives.
template <class ExecSpace, class Scalar>
void chunked_backward_into(const ForwardInputs<Scalar, typename ExecSpace::memory_space>& in,
                           const OutputGradients<Scalar, typename ExecSpace::memory_space>& upstream,
                           const ForwardOptions& options, const BackwardPlan& plan,
                           const InputGradients<Scalar, typename ExecSpace::memory_space>& result) {
  using memory_space = typename ExecSpace::memory_space;
  using Real = accumulator_t<Scalar>;
  using Fused = FusedBackward<ExecSpace, Scalar>;
  const ProblemShape& shape = plan.shape;
  const bool fused = plan.fused;
  const int value_block = plan.value_block, reverse_value_block = plan.reverse_value_block,
            value_blocks = plan.value_blocks;
  const auto operands = make_operands<ExecSpace>(in, shape, options);
  const ChunkLayout layout = make_chunk_layout(shape, options.chunk_size);
  // The fused stages keep -W, Tm, Vnew and the entry states in 16 bits (FusedBackwardTiles);
  // the portable ones in the accumulator type, in the ChunkWorkspace and BackwardWorkspace.
  using Workspace = ChunkWorkspace<Real, memory_space>;
  using Tiles = FusedBackwardTiles<Scalar, memory_space>;
  const auto leased = lease_workspace<memory_space>([&](WorkspaceCarver<memory_space>& carver) {
    return std::make_tuple(
        DeviceChunkLayout<memory_space>(layout, carver),
        Workspace(shape, layout, carver,
                  fused ? Workspace::Contents::gates_and_read_outs
                        : Workspace::Contents::stage_one_and_tm),
        BackwardWorkspace<Real, memory_space>(shape, layout, value_blocks, carver, !fused),
        fused ? Tiles(shape, layout, carver) : Tiles());
  });
  const auto& [device_layout, workspace, saved, tiles] = leased.parts;
  using Pass = StatePass<ExecSpace, Scalar>;
  const typename Pass::template unmanaged_view<const Real****> h0(in.initial_state.data(),
                                                                  in.initial_state.layout());
  if constexpr (Fused::available) {
    if (fused) Fused::rerun_forward(operands, layout, device_layout, h0, workspace, tiles);
  }
  if (!fused) {
    ChunkPrepare<ExecSpace, Scalar>(operands, device_layout, workspace).run();
    Pass rerun(operands, device_layout, workspace, h0, {}, {}, value_block);
    rerun.entry_states_transposed = saved.entry_states_transposed;
    rerun.new_values = workspace.u;
    rerun.run();
  }

  const std::int64_t T = shape.total_tokens(), P = shape.total_positions(), H = shape.heads,
                     Hqk = shape.qk_heads, K = shape.key_dim, V = shape.value_dim;

  using Reverse = ReverseStatePass<ExecSpace, Scalar>;
  const typename Reverse::template unmanaged_view<const Scalar***> output_grad(upstream.o.data(),
                                                                              T, H, V);
  const typename Reverse::template unmanaged_view<const Real****> final_state_grad(
      upstream.final_state.data(), upstream.final_state.layout());
  const typename Reverse::template unmanaged_view<Scalar***> value_grad(result.dv.data(), P, H, V);
  const typename Reverse::template unmanaged_view<Real****> initial_state_grad(
      result.dh0.data(), result.dh0.layout());
  if constexpr (Fused::available) {
    if (fused)
      Fused::reverse_state_pass(operands, device_layout, workspace, tiles, saved,
                                reverse_value_block,
                                output_grad, final_state_grad, value_grad, initial_state_grad);
  }
  if (!fused)
    Reverse(operands, device_layout, workspace, saved, output_grad, final_state_grad, value_grad,
            initial_state_grad, value_block)
        .run();

  using Finish = ChunkGradients<ExecSpace, Scalar>;
  const bool grouped = Hqk != H;
  const typename Finish::template unmanaged_view<Scalar***> query_grad(
      grouped ? nullptr : result.dq.data(), T, H, K);
  const typename Finish::template unmanaged_view<Scalar***> key_grad(
      grouped ? nullptr : result.dk.data(), P, H, K);
  const typename Finish::template unmanaged_view<Scalar**> step_grad(result.dbeta.data(), P, H);
  const typename Finish::template unmanaged_view<Real**> gate_grad(result.dg.data(),
                                                                   shape.gated ? T : 0, H);
  // With grouped value heads each value head's share of dq and dk goes over the first
  // value-block slice of dQg and dBk: a (chunk, head) team reads those rows of its chunk and
  // head, and only those, before it writes the same rows.
  const typename Finish::template unmanaged_view<Real***> query_grad_partial(
      grouped ? saved.gated_query_grad.data() : nullptr, T, H, K);
  const typename Finish::template unmanaged_view<Real***> key_grad_partial(
      grouped ? saved.solve_key_grad.data() : nullptr, P, H, K);
  if constexpr (Fused::available) {
    if (fused)
      Fused::chunk_gradients(operands, device_layout, workspace, saved, query_grad, key_grad,
                             query_grad_partial, key_grad_partial, step_grad, gate_grad);
  }
  if (!fused) {
    Finish finish(operands, device_layout, workspace, saved, query_grad, key_grad, step_grad,
                  gate_grad);
    finish.query_grad_partial = query_grad_partial;
    finish.key_grad_partial = key_grad_partial;
    finish.run();
  }
  if (grouped) {
    sum_head_groups<ExecSpace>("gdp::dq_group_sum", query_grad_partial,
                               typename Finish::template unmanaged_view<Scalar***>(
                                   result.dq.data(), T, Hqk, K));
    sum_head_groups<ExecSpace>("gdp::dk_group_sum", key_grad_partial,
                               typename Finish::template unmanaged_view<Scalar***>(
                                   result.dk.data(), P, Hqk, K));
  }
  // The workspaces and the caller's inputs must outlive the kernels.
  ExecSpace().fence();
}

template <class ExecSpace, class Scalar>
InputGradients<Scalar, typename ExecSpace::memory_space> chunked_backward(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& in,
    const OutputGradients<Scalar, typename ExecSpace::memory_space>& upstream,
    const ForwardOptions& options) {
  const BackwardPlan plan = check_backward<ExecSpace>(in, upstream, options);
  const auto result =
      allocate_input_gradients<Scalar, typename ExecSpace::memory_space>(plan.shape);
  chunked_backward_into<ExecSpace>(in, upstream, options, plan, result);
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

template <class ExecSpace, class Scalar>
void chunk_gated_delta_product_backward_into(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& inputs,
    const OutputGradients<Scalar, typename ExecSpace::memory_space>& output_gradients,
    const ForwardOptions& options,
    const InputGradients<Scalar, typename ExecSpace::memory_space>& gradients) {
  using namespace detail;
  const BackwardPlan plan = check_backward<ExecSpace>(inputs, output_gradients, options);
  check_input_gradients(plan.shape, extents_of("dq", gradients.dq), extents_of("dk", gradients.dk),
                        extents_of("dv", gradients.dv), extents_of("dbeta", gradients.dbeta),
                        extents_of("dg", gradients.dg), extents_of("dh0", gradients.dh0));
  std::vector<TensorMemory> read = forward_input_memory(inputs);
  read.push_back(memory_of("do", output_gradients.o));
  read.push_back(memory_of("dht", output_gradients.final_state));
  expect_disjoint({memory_of("dq", gradients.dq), memory_of("dk", gradients.dk),
                   memory_of("dv", gradients.dv), memory_of("dbeta", gradients.dbeta),
                   memory_of("dg", gradients.dg), memory_of("dh0", gradients.dh0)},
                  read);
  chunked_backward_into<ExecSpace>(inputs, output_gradients, options, plan, gradients);
}

}  // namespace gdp

/// Instantiates the backward (both entry points) for one execution space and one storage type.
#define GDP_INSTANTIATE_BACKWARD_FOR(ExecSpace, Scalar)               \
  template ::gdp::InputGradients<Scalar, ExecSpace::memory_space>     \
  gdp::chunk_gated_delta_product_backward<ExecSpace, Scalar>(         \
      const ::gdp::ForwardInputs<Scalar, ExecSpace::memory_space>&,   \
      const ::gdp::OutputGradients<Scalar, ExecSpace::memory_space>&, \
      const ::gdp::ForwardOptions&);                                  \
  template void gdp::chunk_gated_delta_product_backward_into<ExecSpace, Scalar>( \
      const ::gdp::ForwardInputs<Scalar, ExecSpace::memory_space>&,   \
      const ::gdp::OutputGradients<Scalar, ExecSpace::memory_space>&, \
      const ::gdp::ForwardOptions&,                                   \
      const ::gdp::InputGradients<Scalar, ExecSpace::memory_space>&)

/// Instantiates the backward for one execution space and every storage type.
#define GDP_INSTANTIATE_BACKWARD(ExecSpace)                 \
  GDP_INSTANTIATE_BACKWARD_FOR(ExecSpace, double);          \
  GDP_INSTANTIATE_BACKWARD_FOR(ExecSpace, float);           \
  GDP_INSTANTIATE_BACKWARD_FOR(ExecSpace, ::gdp::bfloat16); \
  GDP_INSTANTIATE_BACKWARD_FOR(ExecSpace, ::gdp::float16)
