// SPDX-License-Identifier: Apache-2.0
// The backward on Kokkos::Cuda for bfloat16 storage, K <= 128 and chunks of at most 64
// positions, where the fused forward runs: its stages 1 and 2 as one walk of the fused forward
// kernel that saves what the backward reads, stage 3 (reverse_state_pass_cuda.hpp) and stage
// 4 (chunk_gradients_cuda.hpp) as tensor-core kernels. The driver (backward_impl.hpp) calls
// them in that order. They share the portable stages' G, read-out weights and scalar
// adjoints (in float); -W, Tm, Vnew and the chunk-entry states, which the kernels only
// multiply in 16 bits, they keep in 16 bits (FusedBackwardTiles), as the walk multiplied them,
// and the reverse pass hands dBv and each chunk's dS to the chunk gradients in 16 bits too.
//
// Not float16: the gradients carried back through strongly gated chunks scale like exp(G)
// (dS leaving a chunk is a sum of terms with exp(G_r) <= exp(g) of the chunk's first token),
// and with g = -20 they are about 1e-9, below float16's smallest subnormal (6e-8), so their
// 16-bit copies vanish (dh0 came out zero on an H200, relative error 1). bfloat16 has float's
// exponent range; float16 storage keeps the portable stages, all in float.
#pragma once

#include "backward_workspace.hpp"
#include "chunk/chunk_layout.hpp"
#include "chunk/chunk_operands.hpp"
#include "chunk/chunk_workspace.hpp"
#include "chunk/forward_plan.hpp"
#include "chunk/fused_forward.hpp"
#include "chunk/segment_map.hpp"
#include "chunk_gradients_cuda.hpp"
#include "common/problem_shape.hpp"
#include "fused_backward_params.hpp"
#include "reverse_state_pass_cuda.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <type_traits>

namespace gdp::detail {

template <class Scalar>
struct FusedBackward<Kokkos::Cuda, Scalar, std::enable_if_t<std::is_same<Scalar, bfloat16>::value>> {
  static constexpr bool available = true;
  using memory_space = Kokkos::CudaSpace;
  using Forward = FusedForward<Kokkos::Cuda, Scalar>;
  using Operands = ChunkOperands<Scalar, memory_space>;
  using Layout = DeviceChunkLayout<memory_space>;
  using Workspace = ChunkWorkspace<float, memory_space>;
  using Saved = BackwardWorkspace<float, memory_space>;
  using Tiles = FusedBackwardTiles<Scalar, memory_space>;
  template <class T>
  using unmanaged_view =
      Kokkos::View<T, Kokkos::LayoutRight, memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  using T = tensor_core::device_type_t<Scalar>;

  /// The fused forward's limits, and offsets inside a chunk's rows of every head that fit 32
  /// bits (the chunk gradients kernel's).
  static bool supports(const ProblemShape& shape, const ForwardOptions& options) {
    return Forward::supports(shape, options) &&
           chunk_offsets_fit_32_bits(shape, options.chunk_size);
  }

  /// Value columns per reverse walk of `walks` segments (sequences in the sequential pass) a
  /// head, by the fused forward's rule (128 where the walks fill the multiprocessors, else
  /// 64); the BackwardWorkspace has ceil(V / value_block) slices.
  static int value_block(const ProblemShape& shape, std::int64_t walks) {
    return 16 * Forward::value_tiles(walks * shape.heads, int(shape.value_dim),
                                     concurrent_walks<Kokkos::Cuda>());
  }

  /// Stages 1 and 2 in one walk of the fused forward under `plan` over the segments of
  /// `states` (FusedForward::save_for_backward): every chunk's G and read-out weights into
  /// `workspace` (ChunkWorkspace::Contents::gates_and_read_outs), its -W, Tm, Vnew and
  /// entering state into `tiles`; o and ht too where not null.
  static void rerun_forward(const Operands& operands, const ChunkLayout& layout,
                            const Layout& device_layout, const ForwardPlan& plan,
                            const SegmentStates<float, memory_space>& states,
                            const unmanaged_view<const float****>& h0,
                            const unmanaged_view<Scalar***>& o, const unmanaged_view<float****>& ht,
                            int scan_value_block, const Workspace& workspace, const Tiles& tiles) {
    fused::SavedForBackward<T> keep;
    keep.log_decay = workspace.log_decay.data();
    keep.intra = workspace.intra.data();
    keep.negated_w = reinterpret_cast<T*>(tiles.negated_w.data());
    keep.tm = reinterpret_cast<T*>(tiles.tm.data());
    keep.new_values = reinterpret_cast<T*>(tiles.new_values.data());
    keep.entry_states = reinterpret_cast<T*>(tiles.entry_states.data());
    keep.chunk_size = layout.chunk_size;
    Forward::save_for_backward(operands, layout, device_layout, plan, states, h0, o, ht,
                               scan_value_block, keep);
  }

  /// Stage 3 for every (segment of `segments`, head, value block of value_block() columns),
  /// from the dS `entering` each walk to the dS it leaves, `leaving`: dv, the scalar adjoints
  /// of `saved` (made with MixingProducts::in_chunk_gradients), dBv [positions, H, V] into
  /// `value_solve_grad` and the dS leaving each chunk [chunks, H, K, V] into `state_grads`;
  /// with `offsets_only`, `leaving` alone. The other arguments as ReverseStatePass's.
  static void reverse_state_pass(const Operands& operands, const Layout& layout,
                                 const DeviceSegmentLayout<memory_space>& segments,
                                 const Workspace& workspace, const Tiles& tiles,
                                 const Saved& saved, int value_block_width,
                                 const unmanaged_view<const Scalar***>& output_grad,
                                 const unmanaged_view<const float****>& entering,
                                 const unmanaged_view<Scalar***>& value_grad,
                                 const unmanaged_view<float****>& leaving,
                                 const unmanaged_view<Scalar***>& value_solve_grad,
                                 const unmanaged_view<Scalar****>& state_grads,
                                 bool offsets_only) {
    reverse_state_pass::Params<T> params{};
    params.shape = fused_backward::call_shape(operands, layout, saved);
    params.adjoints = fused_backward::adjoint_slices(saved);
    params.q = reinterpret_cast<const T*>(operands.query_rows.data());
    params.k = reinterpret_cast<const T*>(operands.key_rows.data());
    params.v = reinterpret_cast<const T*>(operands.v.data());
    params.beta = reinterpret_cast<const T*>(operands.beta.data());
    params.query_norm = operands.query_norm.data();
    params.key_norm = operands.key_norm.data();
    params.output_grad = reinterpret_cast<const T*>(output_grad.data());
    const int K = operands.key_dim(), V = operands.value_dim();
    params.vector_output_grad = fused::vector_rows(params.output_grad, V);
    params.vector_v = fused::vector_rows(params.v, V);
    params.vector_keys = fused::vector_rows(params.k, K);
    params.vector_queries = fused::vector_rows(params.q, K);
    params.negated_w = reinterpret_cast<const T*>(tiles.negated_w.data());
    params.tm = reinterpret_cast<const T*>(tiles.tm.data());
    params.entry_states = reinterpret_cast<const T*>(tiles.entry_states.data());
    params.vector_w = fused::vector_rows(params.negated_w, K);
    params.vector_states = fused::vector_rows(params.entry_states, V);
    params.vector_tm = fused::vector_rows(params.tm, layout.chunk_size);
    params.intra = workspace.intra.data();
    params.log_decay = workspace.log_decay.data();
    params.entering_grad = entering.data();
    params.chunks = layout.chunks.data();
    params.segments = segments.segments.data();
    params.value_grad = reinterpret_cast<T*>(value_grad.data());
    params.paired_value_grad = fused::grouped_rows(params.value_grad, V, 2, sizeof(T));
    params.leaving_grad = leaving.data();
    params.value_solve_grad = reinterpret_cast<T*>(value_solve_grad.data());
    params.paired_value_solve_grad = fused::grouped_rows(params.value_solve_grad, V, 2, sizeof(T));
    params.state_grads = reinterpret_cast<T*>(state_grads.data());
    params.paired_state_grads = fused::grouped_rows(params.state_grads, V, 2, sizeof(T));
    params.value_dim = operands.value_dim();
    const std::int64_t walks = segments.count();
    if (value_block_width == 128) {
      if (offsets_only)
        reverse_state_pass::launch<8, true>(params, walks);
      else
        reverse_state_pass::launch<8, false>(params, walks);
    } else {
      if (offsets_only)
        reverse_state_pass::launch<4, true>(params, walks);
      else
        reverse_state_pass::launch<4, false>(params, walks);
    }
  }

  /// Stage 4 for every (chunk, head): dq, dk, dbeta and dg (null when ungated) from the
  /// scalar adjoints of `saved`, and from dBv and the chunks' dS (reverse_state_pass()), do
  /// and the rerun forward's Vnew and S_0 for the adjoints that mix the value columns; with
  /// grouped value heads dq and dk are null and each value head's share goes to the float
  /// partials instead (ChunkGradients's arguments).
  static void chunk_gradients(const Operands& operands, const Layout& layout,
                              const Workspace& workspace, const Tiles& tiles, const Saved& saved,
                              const unmanaged_view<Scalar***>& value_solve_grad,
                              const unmanaged_view<Scalar****>& state_grads,
                              const unmanaged_view<const Scalar***>& output_grad,
                              const unmanaged_view<Scalar***>& query_grad,
                              const unmanaged_view<Scalar***>& key_grad,
                              const unmanaged_view<float***>& query_grad_partial,
                              const unmanaged_view<float***>& key_grad_partial,
                              const unmanaged_view<Scalar**>& step_grad,
                              const unmanaged_view<float**>& gate_grad) {
    chunk_gradients::Params<T> params{};
    params.shape = fused_backward::call_shape(operands, layout, saved);
    params.adjoints = fused_backward::adjoint_slices(saved);
    params.q = reinterpret_cast<const T*>(operands.query_rows.data());
    params.k = reinterpret_cast<const T*>(operands.key_rows.data());
    params.beta = reinterpret_cast<const T*>(operands.beta.data());
    params.query_norm = operands.query_norm.data();
    params.key_norm = operands.key_norm.data();
    params.vector_keys = fused::vector_rows(params.k, operands.key_dim());
    params.vector_queries = fused::vector_rows(params.q, operands.key_dim());
    params.value_solve_grad = reinterpret_cast<const T*>(value_solve_grad.data());
    params.new_values = reinterpret_cast<const T*>(tiles.new_values.data());
    params.entry_states = reinterpret_cast<const T*>(tiles.entry_states.data());
    params.state_grads = reinterpret_cast<const T*>(state_grads.data());
    params.output_grad = reinterpret_cast<const T*>(output_grad.data());
    const int V = operands.value_dim();
    params.vector_value_operands = fused::vector_rows(params.value_solve_grad, V) &&
                                   fused::vector_rows(params.new_values, V) &&
                                   fused::vector_rows(params.entry_states, V) &&
                                   fused::vector_rows(params.state_grads, V);
    params.vector_output_grad = fused::vector_rows(params.output_grad, V);
    params.value_dim = V;
    params.log_decay = workspace.log_decay.data();
    params.intra = workspace.intra.data();
    params.chunks = layout.chunks.data();
    params.query_grad = reinterpret_cast<T*>(query_grad.data());
    params.key_grad = reinterpret_cast<T*>(key_grad.data());
    params.query_grad_partial = query_grad_partial.data();
    params.key_grad_partial = key_grad_partial.data();
    params.step_grad = reinterpret_cast<T*>(step_grad.data());
    params.gate_grad = gate_grad.data();
    const int K = operands.key_dim(), CW = layout.chunk_size;
    const auto floats = [](const float* rows, int length) {
      return fused::grouped_rows(rows, length, 4, sizeof(float));
    };
    const auto storage = [](const T* rows, int length) {
      return fused::grouped_rows(rows, length, 4, sizeof(T));
    };
    params.four_wide_read_outs = floats(params.intra, CW);
    params.four_wide_grads = storage(params.query_grad, K) && storage(params.key_grad, K) &&
                             floats(params.query_grad_partial, K) &&
                             floats(params.key_grad_partial, K);
    chunk_gradients::launch(params);
  }
};

}  // namespace gdp::detail
