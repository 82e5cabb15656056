// SPDX-License-Identifier: Apache-2.0
// The backward driver: check; recompute the forward's per-chunk quantities and rerun the state
// pass keeping the chunk-entry states (stages 1 and 2, or take them from a SavedForward that
// chunk_gated_delta_product_for_backward filled, its outputs written by the same walk); run the
// state pass in reverse and finish each chunk's gradients (stages 3 and 4). Where the forward
// walks chunk-parallel (forward_plan.hpp), so do both passes over the state: the reverse one
// walks every segment from a zero dS for its offset, scans the segments backwards with the
// forward's segment maps transposed (segment_map.hpp), then walks every segment again from
// its true dS. With bfloat16 on
// Cuda stages 1 and 2 are one walk of the fused forward, and the last two tensor-core kernels
// (fused_backward.hpp); elsewhere the portable stages run.
#pragma once

#include <gdp/backward.hpp>

#include "backward_workspace.hpp"
#include "chunk/chunk_parallel.hpp"
#include "chunk/chunk_prepare.hpp"
#include "chunk/forward_impl.hpp"
#include "chunk/state_pass.hpp"
#include "chunk_gradients.hpp"
#include "common/explicit_instances.hpp"
#include "common/finite_check.hpp"
#include "common/gdp_asserts.hpp"
#include "common/view_limits.hpp"
#include "common/workspace_cache.hpp"
#include "fused_backward.hpp"
#include "group_sum.hpp"
#include "reverse_state_pass.hpp"

#include <Kokkos_Core.hpp>

#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace gdp::detail {

/// What a backward call runs, from its checked arguments.
struct BackwardPlan {
  ProblemShape shape;
  ForwardPlan walk;  ///< the forward's walk over the chunks, which the reverse pass follows
  std::int64_t walks = 0;  ///< segments of the walk (sequences where it is sequential)
  bool fused = false;           ///< the tensor-core stages (fused_backward.hpp)
  int value_block = 0;          ///< value columns per block of the portable state passes
  int reverse_value_block = 0;  ///< value columns per block of the reverse pass
  int value_blocks = 0;         ///< slices of the value-mixing adjoints
};

/// Checks the forward's arguments of a backward (shapes, options, the call's size) and plans
/// it; do, dht and the values are checked apart.
template <class ExecSpace, class Scalar>
BackwardPlan plan_backward(const ForwardInputs<Scalar, typename ExecSpace::memory_space>& in,
                           const ForwardOptions& options) {
  BackwardPlan plan;
  plan.shape = check_forward_inputs(in, options);
  const ProblemShape& shape = plan.shape;
  const ChunkLayout layout = make_chunk_layout(shape, options.chunk_size);
  plan.walk = forward_plan<ExecSpace, Scalar>(layout, shape, options);
  plan.walks = std::int64_t(walk_segments(layout, plan.walk).segments.size());
  plan.value_block = state_pass_value_block<ExecSpace>(shape, options);
  // The reverse pass splits the value columns into blocks of its own (the fused one by its
  // kernel's rule), and writes one slice of every value-mixing adjoint per block.
  using Fused = FusedBackward<ExecSpace, Scalar>;
  plan.reverse_value_block = plan.value_block;
  if constexpr (Fused::available) {
    plan.fused = Fused::supports(shape, options);
    if (plan.fused) plan.reverse_value_block = Fused::value_block(shape, plan.walks);
  }
  plan.value_blocks =
      int((shape.value_dim + plan.reverse_value_block - 1) / plan.reverse_value_block);
  expect_call_fits(shape, call_limits(shape, options, plan.value_blocks, /*backward=*/true));
  expect_segment_maps_fit(plan.walk, plan.walks, shape.heads, shape.key_dim, shape.value_dim);
  return plan;
}

/// Checks everything the backward reads (the forward's arguments, do, dht, the sizes, and
/// unless allowed, non-finite values) and plans the call.
template <class ExecSpace, class Scalar>
BackwardPlan check_backward(const ForwardInputs<Scalar, typename ExecSpace::memory_space>& in,
                            const OutputGradients<Scalar, typename ExecSpace::memory_space>& upstream,
                            const ForwardOptions& options) {
  const BackwardPlan plan = plan_backward<ExecSpace>(in, options);
  check_output_gradients(plan.shape, extents_of("do", upstream.o),
                         extents_of("dht", upstream.final_state));
  check_finite_backward_inputs<ExecSpace>(in, upstream, options);
  return plan;
}

/// What stages 1 and 2 of the backward (the forward's per-chunk quantities and its walk,
/// keeping every chunk's entering state) leave for stages 3 and 4, with what identifies the
/// call they belong to: behind gdp::SavedForward.
template <class Scalar, class MemorySpace>
struct SavedForwardState {
  using Real = accumulator_t<Scalar>;
  /// The fused stages keep -W, Tm, Vnew and the entry states in 16 bits (FusedBackwardTiles)
  /// and G and the read-out weights in the ChunkWorkspace; the portable ones all of them in
  /// the accumulator type, the entry states transposed (BackwardWorkspace's view). Both keep
  /// the segments of the walk, and where it is chunk-parallel their maps, which the reverse
  /// pass scans.
  using Parts = std::tuple<DeviceChunkLayout<MemorySpace>, ChunkWorkspace<Real, MemorySpace>,
                           Kokkos::View<Real****, Kokkos::LayoutRight, MemorySpace>,
                           FusedBackwardTiles<Scalar, MemorySpace>,
                           SegmentStates<Real, MemorySpace>>;

  std::string space;  ///< the execution space's name
  ForwardOptions options;
  BackwardPlan plan;
  ChunkLayout layout;
  std::vector<TensorMemory> input_memory;    ///< forward_input_memory of the inputs
  std::vector<TensorExtents> input_extents;  ///< the inputs' extents, in the same order
  LeasedWorkspace<MemorySpace, Parts> memory;
  /// The inverse L2 norms of the rows of q and k (ChunkOperands), null without
  /// use_qk_l2norm: the backward takes them instead of reading q and k once more for them.
  Kokkos::View<Real**, Kokkos::LayoutRight, MemorySpace> query_norm, key_norm;
};

/// The only door to SavedForward's state.
struct SavedForwardAccess {
  template <class Scalar, class MemorySpace>
  static const SavedForwardState<Scalar, MemorySpace>* get(
      const SavedForward<Scalar, MemorySpace>& saved) {
    return saved.state_.get();
  }
  template <class Scalar, class MemorySpace>
  static void set(SavedForward<Scalar, MemorySpace>& saved,
                  std::shared_ptr<const SavedForwardState<Scalar, MemorySpace>> state) {
    saved.state_ = std::move(state);
  }
};

/// The extents of every input of the forward, in forward_input_memory's order.
template <class Scalar, class MemorySpace>
std::vector<TensorExtents> forward_input_extents(const ForwardInputs<Scalar, MemorySpace>& in) {
  return {extents_of("q", in.q),       extents_of("k", in.k),
          extents_of("v", in.v),       extents_of("beta", in.beta),
          extents_of("g", in.g),       extents_of("h0", in.initial_state),
          extents_of("cu_seqlens", in.cu_seqlens)};
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

/// Stages 1 and 2 of the backward of checked arguments (`plan` from plan_backward): every
/// chunk's per-chunk quantities and entering state, kept in the returned state; o and ht
/// written too where given (chunk_gated_delta_product_for_backward), not where null (the
/// backward's own rerun). `input_scans`, the scans of the inputs' values where they still run,
/// are waited for once the workspace is laid out, before the first kernel that computes.
template <class ExecSpace, class Scalar>
std::shared_ptr<const SavedForwardState<Scalar, typename ExecSpace::memory_space>> save_forward(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& in,
    const ForwardOptions& options, const BackwardPlan& plan,
    const ForwardResult<Scalar, typename ExecSpace::memory_space>& outputs,
    const PendingScans<ExecSpace>& input_scans) {
  using memory_space = typename ExecSpace::memory_space;
  using Real = accumulator_t<Scalar>;
  using State = SavedForwardState<Scalar, memory_space>;
  using Fused = FusedBackward<ExecSpace, Scalar>;
  const ProblemShape& shape = plan.shape;
  const bool fused = plan.fused;
  ChunkLayout layout = make_chunk_layout(shape, options.chunk_size);
  using Workspace = ChunkWorkspace<Real, memory_space>;
  using Tiles = FusedBackwardTiles<Scalar, memory_space>;
  auto memory = lease_workspace<memory_space>([&](WorkspaceCarver<memory_space>& carver) {
    using EntryStates = std::tuple_element_t<2, typename State::Parts>;
    return typename State::Parts(
        DeviceChunkLayout<memory_space>(layout, carver),
        Workspace(shape, layout, carver,
                  fused ? Workspace::Contents::gates_and_read_outs
                        : Workspace::Contents::stage_one_and_tm),
        fused ? EntryStates()
              : carver.template view<Real****>(layout.chunks.size(), shape.heads,
                                               shape.value_dim, shape.key_dim),
        fused ? Tiles(shape, layout, carver) : Tiles(),
        carve_segment_states<Real>(carver, walk_segments(layout, plan.walk), int(shape.heads),
                                   int(shape.key_dim), int(shape.value_dim),
                                   int(shape.value_dim), plan.walk.chunk_parallel));
  });
  const auto& [device_layout, workspace, entry_states_transposed, tiles, segment_states] =
      memory.parts;
  expect_finite_inputs(input_scans);
  const auto operands = make_operands<ExecSpace>(in, shape, options);
  using Pass = StatePass<ExecSpace, Scalar>;
  const typename Pass::template unmanaged_view<const Real****> h0(in.initial_state.data(),
                                                                  in.initial_state.layout());
  const typename Pass::template unmanaged_view<Scalar***> o(
      outputs.o.data(), outputs.o.data() ? shape.total_tokens() : 0, shape.heads,
      shape.value_dim);
  const typename Pass::template unmanaged_view<Real****> ht(outputs.final_state.data(),
                                                            outputs.final_state.layout());
  if constexpr (Fused::available) {
    if (fused)
      Fused::rerun_forward(operands, layout, device_layout, plan.walk, segment_states, h0, o, ht,
                           plan.value_block, workspace, tiles);
  }
  if (!fused) {
    ChunkPrepare<ExecSpace, Scalar>(operands, device_layout, workspace).run();
    Pass rerun(operands, device_layout, workspace, h0, o, ht, plan.value_block);
    rerun.entry_states_transposed = entry_states_transposed;
    rerun.new_values = workspace.u;
    if (plan.walk.chunk_parallel)
      run_chunk_parallel(rerun, segment_states);
    else
      rerun.run();
  }
  auto state = std::make_shared<State>();
  state->space = ExecSpace::name();
  state->options = options;
  state->plan = plan;
  state->layout = std::move(layout);
  state->input_memory = forward_input_memory(in);
  state->input_extents = forward_input_extents(in);
  state->memory = std::move(memory);
  state->query_norm = operands.query_norm;
  state->key_norm = operands.key_norm;
  // The caller may drop the inputs and read the outputs as soon as this returns.
  ExecSpace().fence();
  return state;
}

/// The state `saved` holds, checked against the backward's execution space and inputs.
/// \throws gdp::InvalidArgument naming "saved".
template <class ExecSpace, class Scalar>
const SavedForwardState<Scalar, typename ExecSpace::memory_space>& expect_saved_for(
    const SavedForward<Scalar, typename ExecSpace::memory_space>& saved,
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& in) {
  const auto* state = SavedForwardAccess::get(saved);
  GDP_EXPECT(state != nullptr, "saved",
             "expected what chunk_gated_delta_product_for_backward saved, got an empty "
             "SavedForward");
  GDP_EXPECT(state->space == ExecSpace::name(), "saved", "expected a forward on ",
             ExecSpace::name(), ", got one on ", state->space);
  expect_same_tensors("saved", state->input_memory, state->input_extents,
                      forward_input_memory(in), forward_input_extents(in));
  return *state;
}

/// Stages 3 and 4 of the backward from stages 1 and 2's `state` into `result`, whose
/// gradients have the shapes allocate_input_gradients gives. `gradient_scans`, the scans of do
/// and dht where they still run, are waited for once the workspace is laid out, before the
/// first kernel (the reverse pass writes dv and dh0).
template <class ExecSpace, class Scalar>
void backward_from_saved(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& in,
    const OutputGradients<Scalar, typename ExecSpace::memory_space>& upstream,
    const SavedForwardState<Scalar, typename ExecSpace::memory_space>& state,
    const InputGradients<Scalar, typename ExecSpace::memory_space>& result,
    const PendingScans<ExecSpace>& gradient_scans) {
  using memory_space = typename ExecSpace::memory_space;
  using Real = accumulator_t<Scalar>;
  using Fused = FusedBackward<ExecSpace, Scalar>;
  const BackwardPlan& plan = state.plan;
  const ProblemShape& shape = plan.shape;
  const bool fused = plan.fused;
  const int value_block = plan.value_block;
  const auto& [device_layout, workspace, entry_states_transposed, tiles, segment_states] =
      state.memory.parts;
  ChunkOperands<Scalar, memory_space> operands(in, shape, state.options);
  operands.query_norm = state.query_norm;
  operands.key_norm = state.key_norm;
  using Adjoints = BackwardWorkspace<Real, memory_space>;
  // The fused reverse pass leaves dBv and every chunk's dS in 16 bits, which the fused chunk
  // gradients multiply.
  const auto leased = lease_workspace<memory_space>([&](WorkspaceCarver<memory_space>& carver) {
    Adjoints adjoints(shape, state.layout, plan.value_blocks,
                      fused ? Adjoints::MixingProducts::in_chunk_gradients
                            : Adjoints::MixingProducts::in_reverse_pass,
                      carver);
    auto value_solve_grad = carver.template view<Scalar***>(
        fused ? shape.total_positions() : 0, shape.heads, shape.value_dim);
    auto state_grads = carver.template view<Scalar****>(
        fused ? state.layout.chunks.size() : 0, shape.heads, shape.key_dim, shape.value_dim);
    // Chunk-parallel: the dS each segment's first reverse walk leaves (its offset E), then
    // the dS entering each segment's second walk (the reverse scan's).
    const std::size_t segments = plan.walk.chunk_parallel ? std::size_t(plan.walks) : 0;
    auto offsets = carver.template view<Real****>(segments, shape.heads, shape.key_dim,
                                                  shape.value_dim);
    auto entering = carver.template view<Real****>(segments, shape.heads, shape.key_dim,
                                                   shape.value_dim);
    return std::make_tuple(adjoints, value_solve_grad, state_grads, offsets, entering);
  });
  auto [saved, value_solve_grad, state_grads, offsets, entering] = leased.parts;
  saved.entry_states_transposed = entry_states_transposed;

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
  expect_finite_inputs(gradient_scans);
  // Reverse walks over the segments of the forward's walk, from the dS `from` to `to`. (C++17
  // lambdas cannot capture structured bindings: those it reads are captured by name.)
  const auto reverse_walks = [&, &layout = device_layout, &workspace = workspace,
                              &tiles = tiles, &segments = segment_states.segments, &saved = saved,
                              &value_solve_grad = value_solve_grad, &state_grads = state_grads](
                                 typename Reverse::template unmanaged_view<const Real****> from,
                                 typename Reverse::template unmanaged_view<Real****> to,
                                 bool offsets_only) {
    if constexpr (Fused::available) {
      if (fused) {
        Fused::reverse_state_pass(operands, layout, segments, workspace, tiles, saved,
                                  plan.reverse_value_block, output_grad, from, value_grad, to,
                                  value_solve_grad, state_grads, offsets_only);
        return;
      }
    }
    Reverse pass(operands, layout, workspace, saved, output_grad, segments, from, value_grad, to,
                 value_block);
    pass.offsets_only = offsets_only;
    pass.run();
  };
  if (plan.walk.chunk_parallel) {
    reverse_walks({}, offsets, true);
    SegmentScan<ExecSpace, Real> scan(segment_states.maps, final_state_grad, entering,
                                      initial_state_grad, segment_states.segments, value_block);
    scan.offsets = offsets;
    scan.direction = ScanDirection::reverse;
    scan.run();
    reverse_walks(entering, {}, false);
  } else {
    reverse_walks(final_state_grad, initial_state_grad, false);
  }

  using Finish = ChunkGradients<ExecSpace, Scalar>;
  const bool grouped = Hqk != H;
  const typename Finish::template unmanaged_view<Scalar***> query_grad(
      grouped ? nullptr : result.dq.data(), T, H, K);
  const typename Finish::template unmanaged_view<Scalar***> key_grad(
      grouped ? nullptr : result.dk.data(), P, H, K);
  const typename Finish::template unmanaged_view<Scalar**> step_grad(result.dbeta.data(), P, H);
  const typename Finish::template unmanaged_view<Real**> gate_grad(result.dg.data(),
                                                                   shape.gated ? T : 0, H);
  // With grouped value heads each value head's share of dq and dk goes into the first
  // value-block slice of dQg and dBk. The portable stages' (chunk, head) team reads those rows
  // of its chunk and head, and only those, before it writes the same rows; the fused stages
  // keep that slice for the partials alone (BackwardWorkspace::MixingProducts).
  const typename Finish::template unmanaged_view<Real***> query_grad_partial(
      grouped ? saved.gated_query_grad.data() : nullptr, T, H, K);
  const typename Finish::template unmanaged_view<Real***> key_grad_partial(
      grouped ? saved.solve_key_grad.data() : nullptr, P, H, K);
  if constexpr (Fused::available) {
    if (fused)
      Fused::chunk_gradients(operands, device_layout, workspace, tiles, saved, value_solve_grad,
                             state_grads, output_grad, query_grad, key_grad, query_grad_partial,
                             key_grad_partial, step_grad, gate_grad);
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

/// The backward of checked arguments (`plan` from check_backward) into `result`, whose
/// gradients have the shapes allocate_input_gradients gives: stages 1 and 2, then 3 and 4.
template <class ExecSpace, class Scalar>
void chunked_backward_into(const ForwardInputs<Scalar, typename ExecSpace::memory_space>& in,
                           const OutputGradients<Scalar, typename ExecSpace::memory_space>& upstream,
                           const ForwardOptions& options, const BackwardPlan& plan,
                           const InputGradients<Scalar, typename ExecSpace::memory_space>& result) {
  // check_backward scanned every input, do and dht included.
  const auto state = save_forward<ExecSpace>(in, options, plan, {}, {});
  backward_from_saved<ExecSpace>(in, upstream, *state, result, {});
}

/// Checks the gradients given to an `_into` backward and that they overlap nothing it reads.
template <class Scalar, class MemorySpace>
void expect_writable_gradients(const ProblemShape& shape,
                               const ForwardInputs<Scalar, MemorySpace>& inputs,
                               const OutputGradients<Scalar, MemorySpace>& output_gradients,
                               const InputGradients<Scalar, MemorySpace>& gradients) {
  check_input_gradients(shape, extents_of("dq", gradients.dq), extents_of("dk", gradients.dk),
                        extents_of("dv", gradients.dv), extents_of("dbeta", gradients.dbeta),
                        extents_of("dg", gradients.dg), extents_of("dh0", gradients.dh0));
  std::vector<TensorMemory> read = forward_input_memory(inputs);
  read.push_back(memory_of("do", output_gradients.o));
  read.push_back(memory_of("dht", output_gradients.final_state));
  expect_disjoint({memory_of("dq", gradients.dq), memory_of("dk", gradients.dk),
                   memory_of("dv", gradients.dv), memory_of("dbeta", gradients.dbeta),
                   memory_of("dg", gradients.dg), memory_of("dh0", gradients.dh0)},
                  read);
}

/// The state `saved` holds, checked against the backward's arguments, do's and dht's shapes
/// included (their values are scanned by the caller).
template <class ExecSpace, class Scalar>
const SavedForwardState<Scalar, typename ExecSpace::memory_space>& check_backward_from_saved(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& in,
    const OutputGradients<Scalar, typename ExecSpace::memory_space>& upstream,
    const SavedForward<Scalar, typename ExecSpace::memory_space>& saved) {
  const auto& state = expect_saved_for<ExecSpace>(saved, in);
  check_output_gradients(state.plan.shape, extents_of("do", upstream.o),
                         extents_of("dht", upstream.final_state));
  return state;
}

}  // namespace gdp::detail

namespace gdp {

template <class ExecSpace, class Scalar>
InputGradients<Scalar, typename ExecSpace::memory_space> chunk_gated_delta_product_backward(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& inputs,
    const OutputGradients<Scalar, typename ExecSpace::memory_space>& output_gradients,
    const ForwardOptions& options) {
  using namespace detail;
  const BackwardPlan plan = check_backward<ExecSpace>(inputs, output_gradients, options);
  const auto result =
      allocate_input_gradients<Scalar, typename ExecSpace::memory_space>(plan.shape);
  chunked_backward_into<ExecSpace>(inputs, output_gradients, options, plan, result);
  return result;
}

template <class ExecSpace, class Scalar>
void chunk_gated_delta_product_backward_into(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& inputs,
    const OutputGradients<Scalar, typename ExecSpace::memory_space>& output_gradients,
    const ForwardOptions& options,
    const InputGradients<Scalar, typename ExecSpace::memory_space>& gradients) {
  using namespace detail;
  const BackwardPlan plan = check_backward<ExecSpace>(inputs, output_gradients, options);
  expect_writable_gradients(plan.shape, inputs, output_gradients, gradients);
  chunked_backward_into<ExecSpace>(inputs, output_gradients, options, plan, gradients);
}

template <class ExecSpace, class Scalar>
ForwardResult<Scalar, typename ExecSpace::memory_space> chunk_gated_delta_product_for_backward(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& inputs,
    const ForwardOptions& options, SavedForward<Scalar, typename ExecSpace::memory_space>& saved) {
  using namespace detail;
  const BackwardPlan plan = plan_backward<ExecSpace>(inputs, options);
  // Allocated while the scans run, as chunk_gated_delta_product's outputs are.
  const auto input_scans = start_finite_input_scans<ExecSpace>(inputs, options);
  const auto result =
      allocate_forward_result<Scalar, typename ExecSpace::memory_space>(plan.shape, options);
  SavedForwardAccess::set(saved,
                          save_forward<ExecSpace>(inputs, options, plan, result, input_scans));
  return result;
}

template <class ExecSpace, class Scalar>
void chunk_gated_delta_product_for_backward_into(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& inputs,
    const ForwardOptions& options,
    const ForwardResult<Scalar, typename ExecSpace::memory_space>& outputs,
    SavedForward<Scalar, typename ExecSpace::memory_space>& saved) {
  using namespace detail;
  const BackwardPlan plan = plan_backward<ExecSpace>(inputs, options);
  expect_writable_outputs(plan.shape, options, inputs, outputs);
  const auto input_scans = start_finite_input_scans<ExecSpace>(inputs, options);
  SavedForwardAccess::set(saved,
                          save_forward<ExecSpace>(inputs, options, plan, outputs, input_scans));
}

template <class ExecSpace, class Scalar>
InputGradients<Scalar, typename ExecSpace::memory_space> chunk_gated_delta_product_backward(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& inputs,
    const OutputGradients<Scalar, typename ExecSpace::memory_space>& output_gradients,
    const SavedForward<Scalar, typename ExecSpace::memory_space>& saved) {
  using namespace detail;
  const auto& state = check_backward_from_saved<ExecSpace>(inputs, output_gradients, saved);
  // Allocated while the scans run, as chunk_gated_delta_product's outputs are.
  const auto gradient_scans =
      start_finite_output_gradient_scans<ExecSpace>(output_gradients, state.options);
  const auto result =
      allocate_input_gradients<Scalar, typename ExecSpace::memory_space>(state.plan.shape);
  backward_from_saved<ExecSpace>(inputs, output_gradients, state, result, gradient_scans);
  return result;
}

template <class ExecSpace, class Scalar>
void chunk_gated_delta_product_backward_into(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& inputs,
    const OutputGradients<Scalar, typename ExecSpace::memory_space>& output_gradients,
    const SavedForward<Scalar, typename ExecSpace::memory_space>& saved,
    const InputGradients<Scalar, typename ExecSpace::memory_space>& gradients) {
  using namespace detail;
  const auto& state = check_backward_from_saved<ExecSpace>(inputs, output_gradients, saved);
  expect_writable_gradients(state.plan.shape, inputs, output_gradients, gradients);
  const auto gradient_scans =
      start_finite_output_gradient_scans<ExecSpace>(output_gradients, state.options);
  backward_from_saved<ExecSpace>(inputs, output_gradients, state, gradients, gradient_scans);
}

}  // namespace gdp

/// The backward's entry points (the forward for it included) for one execution space and one
/// storage type, each after `prefix` (common/explicit_instances.hpp).
#define GDP_BACKWARD_INSTANCES(prefix, ExecSpace, Scalar)                                          \
  prefix ::gdp::InputGradients<Scalar, ExecSpace::memory_space>                                    \
  gdp::chunk_gated_delta_product_backward<ExecSpace, Scalar>(                                      \
      const ::gdp::ForwardInputs<Scalar, ExecSpace::memory_space>&,                                \
      const ::gdp::OutputGradients<Scalar, ExecSpace::memory_space>&,                              \
      const ::gdp::ForwardOptions&);                                                               \
  prefix void gdp::chunk_gated_delta_product_backward_into<ExecSpace, Scalar>(                     \
      const ::gdp::ForwardInputs<Scalar, ExecSpace::memory_space>&,                                \
      const ::gdp::OutputGradients<Scalar, ExecSpace::memory_space>&,                              \
      const ::gdp::ForwardOptions&,                                                                \
      const ::gdp::InputGradients<Scalar, ExecSpace::memory_space>&);                              \
  prefix ::gdp::ForwardResult<Scalar, ExecSpace::memory_space>                                     \
  gdp::chunk_gated_delta_product_for_backward<ExecSpace, Scalar>(                                  \
      const ::gdp::ForwardInputs<Scalar, ExecSpace::memory_space>&,                                \
      const ::gdp::ForwardOptions&, ::gdp::SavedForward<Scalar, ExecSpace::memory_space>&);        \
  prefix void gdp::chunk_gated_delta_product_for_backward_into<ExecSpace, Scalar>(                 \
      const ::gdp::ForwardInputs<Scalar, ExecSpace::memory_space>&,                                \
      const ::gdp::ForwardOptions&, const ::gdp::ForwardResult<Scalar, ExecSpace::memory_space>&,  \
      ::gdp::SavedForward<Scalar, ExecSpace::memory_space>&);                                      \
  prefix ::gdp::InputGradients<Scalar, ExecSpace::memory_space>                                    \
  gdp::chunk_gated_delta_product_backward<ExecSpace, Scalar>(                                      \
      const ::gdp::ForwardInputs<Scalar, ExecSpace::memory_space>&,                                \
      const ::gdp::OutputGradients<Scalar, ExecSpace::memory_space>&,                              \
      const ::gdp::SavedForward<Scalar, ExecSpace::memory_space>&);                                \
  prefix void gdp::chunk_gated_delta_product_backward_into<ExecSpace, Scalar>(                     \
      const ::gdp::ForwardInputs<Scalar, ExecSpace::memory_space>&,                                \
      const ::gdp::OutputGradients<Scalar, ExecSpace::memory_space>&,                              \
      const ::gdp::SavedForward<Scalar, ExecSpace::memory_space>&,                                 \
      const ::gdp::InputGradients<Scalar, ExecSpace::memory_space>&)

/// Instantiates the backward for one execution space and every storage type.
#define GDP_INSTANTIATE_BACKWARD(ExecSpace)  \
  GDP_FOR_EACH_STORAGE(GDP_BACKWARD_INSTANCES, template, ExecSpace)
#define GDP_DECLARE_BACKWARD(ExecSpace)  \
  GDP_FOR_EACH_STORAGE(GDP_BACKWARD_INSTANCES, extern template, ExecSpace)
GDP_FOR_EACH_ENABLED_SPACE(GDP_DECLARE_BACKWARD)
