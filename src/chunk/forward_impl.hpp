// SPDX-License-Identifier: Apache-2.0
// The forward driver: check, lay out the chunks, then either the fused kernel (where the
// space and storage type have one) or the two stages, walking the chunks sequentially or
// chunk-parallel (forward_plan.hpp).
#pragma once

#include <gdp/forward.hpp>

#include "chunk_layout.hpp"
#include "chunk_operands.hpp"
#include "chunk_parallel.hpp"
#include "chunk_prepare.hpp"
#include "chunk_workspace.hpp"
#include "common/explicit_instances.hpp"
#include "common/finite_check.hpp"
#include "common/problem_shape.hpp"
#include "common/view_limits.hpp"
#include "forward_plan.hpp"
#include "fused_forward.hpp"
#include "host_fused_walk.hpp"
#include "l2_normalize.hpp"
#include "state_pass.hpp"

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <vector>

namespace gdp::detail {

/// The host copy of an optional offsets view (empty when absent).
template <class View>
std::vector<std::int64_t> host_offsets(const View& offsets) {
  if (!offsets.data()) return {};
  const auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), offsets);
  return std::vector<std::int64_t>(host.data(), host.data() + host.extent(0));
}

/// Checks every forward argument; shared by every entry point that takes ForwardInputs.
template <class Scalar, class MemorySpace>
ProblemShape check_forward_inputs(const ForwardInputs<Scalar, MemorySpace>& in,
                                  const ForwardOptions& options) {
  return check_forward_arguments(
      extents_of("q", in.q), extents_of("k", in.k), extents_of("v", in.v),
      extents_of("beta", in.beta), extents_of("g", in.g), extents_of("h0", in.initial_state),
      extents_of("cu_seqlens", in.cu_seqlens), host_offsets(in.cu_seqlens), options);
}

/// Columns of the state one state-pass team owns: ForwardOptions::value_block when set (at
/// most V), else the whole row when there are enough (sequence, head) pairs to fill the space,
/// else halved until there are (16 at least).
template <class ExecSpace>
int state_pass_value_block(const ProblemShape& shape, const ForwardOptions& options) {
  if (options.value_block > 0)
    return int(std::min<std::int64_t>(options.value_block, shape.value_dim));
  const std::int64_t pairs = shape.num_sequences() * shape.heads;
  const std::int64_t wanted = 2 * std::int64_t(ExecSpace().concurrency());
  int block = int(shape.value_dim);
  while (pairs * ((shape.value_dim + block - 1) / block) < wanted && block / 2 >= 16)
    block = (block + 1) / 2;
  return block;
}

/// Operands with the optional L2 normalisation factors computed.
template <class ExecSpace, class Scalar>
ChunkOperands<Scalar, typename ExecSpace::memory_space> make_operands(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& in, const ProblemShape& shape,
    const ForwardOptions& options) {
  ChunkOperands<Scalar, typename ExecSpace::memory_space> operands(in, shape, options);
  if (options.use_qk_l2norm) {
    operands.query_norm = inverse_l2_norms<ExecSpace>(operands.query_rows);
    operands.key_norm = inverse_l2_norms<ExecSpace>(operands.key_rows);
  }
  return operands;
}

/// The outputs of a forward of `shape`, allocated uninitialised: the state passes write every
/// element of o and ht (the tests poison every allocation to check that).
template <class Scalar, class MemorySpace>
ForwardResult<Scalar, MemorySpace> allocate_forward_result(const ProblemShape& shape,
                                                           const ForwardOptions& options) {
  ForwardResult<Scalar, MemorySpace> result;
  result.o = decltype(result.o)(Kokkos::view_alloc(Kokkos::WithoutInitializing, "gdp::o"),
                                shape.batch, shape.tokens_per_row, shape.heads, shape.value_dim);
  if (options.output_final_state)
    result.final_state = decltype(result.final_state)(
        Kokkos::view_alloc(Kokkos::WithoutInitializing, "gdp::ht"), shape.num_sequences(),
        shape.heads, shape.key_dim, shape.value_dim);
  return result;
}

/// The walk over the chunks the forward takes for `shape` on ExecSpace with storage Scalar.
/// The fused Cuda kernel may walk a (sequence, head) pair's state columns in several blocks,
/// each a walk of its own; the other paths walk a pair's columns together. gdp_app fixes this
/// choice for the whole problem before cutting it into blocks (dist/whole_problem_options.hpp).
template <class ExecSpace, class Scalar>
ForwardPlan forward_plan(const ChunkLayout& layout, const ProblemShape& shape,
                         const ForwardOptions& options) {
  using Fused = FusedForward<ExecSpace, Scalar>;
  std::int64_t walks_per_pair = 1;
  if constexpr (Fused::available)
    if (Fused::supports(shape, options)) walks_per_pair = Fused::walks_per_pair(int(shape.value_dim));
  return plan_forward(layout, options, shape.num_sequences() * shape.heads, walks_per_pair,
                      concurrent_walks<ExecSpace>());
}

/// The forward into outputs from allocate_forward_result(shape, options), `shape` being what
/// check_forward_inputs(in, options) returned; the benchmarks time this part alone.
/// `input_scans`, the scans of the inputs' values where they still run, are waited for once
/// the workspace is laid out, before the first kernel that computes.
template <class ExecSpace, class Scalar>
void chunked_forward_into(const ForwardInputs<Scalar, typename ExecSpace::memory_space>& in,
                          const ForwardOptions& options, const ProblemShape& shape,
                          const ForwardResult<Scalar, typename ExecSpace::memory_space>& result,
                          const PendingScans<ExecSpace>& input_scans = {}) {
  using memory_space = typename ExecSpace::memory_space;
  using Real = accumulator_t<Scalar>;
  const ChunkLayout layout = make_chunk_layout(shape, options.chunk_size);
  using Fused = FusedForward<ExecSpace, Scalar>;
  bool fused = false;
  if constexpr (Fused::available) fused = Fused::supports(shape, options);
  const ForwardPlan plan = forward_plan<ExecSpace, Scalar>(layout, shape, options);
  // The fused CUDA kernel and the host spaces' sequential fused walk (host_fused_walk.hpp)
  // keep each chunk's stage-1 quantities on chip; the chunk-parallel plan and the portable
  // device path run two stages with the workspace between them.
  const bool two_stages = !fused && !(team::runs_on_host<ExecSpace> && !plan.chunk_parallel);
  const auto leased = lease_walk_workspace<Real, memory_space>(shape, layout, two_stages);
  const auto& [device_layout, workspace] = leased.parts;
  expect_finite_inputs(input_scans);
  const SegmentLayout segments = walk_segments(layout, plan);
  expect_segment_maps_fit(plan, std::int64_t(segments.segments.size()), shape.heads,
                          shape.key_dim, shape.value_dim);
  const auto operands = make_operands<ExecSpace>(in, shape, options);

  using Pass = StatePass<ExecSpace, Scalar>;
  const typename Pass::template unmanaged_view<const Real****> h0(in.initial_state.data(),
                                                                  in.initial_state.layout());
  const typename Pass::template unmanaged_view<Scalar***> o(result.o.data(), shape.total_tokens(),
                                                            shape.heads, shape.value_dim);
  const typename Pass::template unmanaged_view<Real****> ht(result.final_state.data(),
                                                            result.final_state.layout());
  const int value_block = state_pass_value_block<ExecSpace>(shape, options);
  if constexpr (Fused::available) {
    if (fused) {
      Fused::run(operands, layout, device_layout, plan, h0, o, ht, value_block);
      ExecSpace().fence();
      return;
    }
  }
  if constexpr (team::runs_on_host<ExecSpace>) {
    if (!two_stages) {
      HostFusedWalk<ExecSpace, Scalar>(operands, device_layout, h0, o, ht, value_block).run();
      ExecSpace().fence();
      return;
    }
  }
  ChunkPrepare<ExecSpace, Scalar>(operands, device_layout, workspace).run();
  Pass pass(operands, device_layout, workspace, h0, o, ht, value_block);
  if (plan.chunk_parallel) {
    const auto leased = lease_segment_states<Real, memory_space>(
        segments, int(shape.heads), int(shape.key_dim), int(shape.value_dim),
        int(shape.value_dim));
    run_chunk_parallel(pass, leased.parts);
  } else {
    pass.run();
  }
  // Callers may drop their inputs as soon as this returns; the kernels read them directly.
  ExecSpace().fence();
}

/// Checks outputs given to an `_into` forward (their shapes, and that they overlap neither
/// each other nor any input).
template <class Scalar, class MemorySpace>
void expect_writable_outputs(const ProblemShape& shape, const ForwardOptions& options,
                             const ForwardInputs<Scalar, MemorySpace>& inputs,
                             const ForwardResult<Scalar, MemorySpace>& outputs) {
  check_forward_outputs(shape, options.output_final_state, extents_of("o", outputs.o),
                        extents_of("ht", outputs.final_state));
  expect_disjoint({memory_of("o", outputs.o), memory_of("ht", outputs.final_state)},
                  forward_input_memory(inputs));
}

}  // namespace gdp::detail

namespace gdp {

template <class ExecSpace, class Scalar>
ForwardResult<Scalar, typename ExecSpace::memory_space> chunk_gated_delta_product(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& inputs,
    const ForwardOptions& options) {
  using namespace detail;
  const ProblemShape shape = check_forward_inputs(inputs, options);
  expect_call_fits(shape, call_limits(shape, options, 1, /*backward=*/false));
  // The outputs are allocated on the host while the scans run on the device; a rejected call
  // frees them before it throws, unwritten.
  const auto input_scans = start_finite_input_scans<ExecSpace>(inputs, options);
  const auto result =
      allocate_forward_result<Scalar, typename ExecSpace::memory_space>(shape, options);
  chunked_forward_into<ExecSpace>(inputs, options, shape, result, input_scans);
  return result;
}

template <class ExecSpace, class Scalar>
void chunk_gated_delta_product_into(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& inputs,
    const ForwardOptions& options,
    const ForwardResult<Scalar, typename ExecSpace::memory_space>& outputs) {
  using namespace detail;
  const ProblemShape shape = check_forward_inputs(inputs, options);
  expect_writable_outputs(shape, options, inputs, outputs);
  expect_call_fits(shape, call_limits(shape, options, 1, /*backward=*/false));
  // The workspace is laid out while the scans run; they are waited for before the kernels.
  chunked_forward_into<ExecSpace>(inputs, options, shape, outputs,
                                  start_finite_input_scans<ExecSpace>(inputs, options));
}

}  // namespace gdp

/// The forward's entry points for one execution space and one storage type, each after
/// `prefix` (common/explicit_instances.hpp).
#define GDP_FORWARD_INSTANCES(prefix, ExecSpace, Scalar)               \
  prefix ::gdp::ForwardResult<Scalar, ExecSpace::memory_space>         \
  gdp::chunk_gated_delta_product<ExecSpace, Scalar>(                   \
      const ::gdp::ForwardInputs<Scalar, ExecSpace::memory_space>&,    \
      const ::gdp::ForwardOptions&);                                   \
  prefix void gdp::chunk_gated_delta_product_into<ExecSpace, Scalar>(  \
      const ::gdp::ForwardInputs<Scalar, ExecSpace::memory_space>&,    \
      const ::gdp::ForwardOptions&, const ::gdp::ForwardResult<Scalar, ExecSpace::memory_space>&)

/// Instantiates the forward for one execution space and every storage type.
#define GDP_INSTANTIATE_FORWARD(ExecSpace)  \
  GDP_FOR_EACH_STORAGE(GDP_FORWARD_INSTANCES, template, ExecSpace)
#define GDP_DECLARE_FORWARD(ExecSpace)  \
  GDP_FOR_EACH_STORAGE(GDP_FORWARD_INSTANCES, extern template, ExecSpace)
GDP_FOR_EACH_ENABLED_SPACE(GDP_DECLARE_FORWARD)
