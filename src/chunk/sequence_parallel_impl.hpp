// SPDX-License-Identifier: Apache-2.0
// The sequence-parallel building blocks of include/gdp/sequence_parallel.hpp on any execution
// space. They reuse the pieces of the forward: segment_map() walks the slice with [M | R] from
// [I | 0] and keeps the read-out of every column, on the host spaces in the fused walk of the
// forward (host_fused_walk.hpp, one thread per head owning all K + V columns), elsewhere as
// stage 1 (ChunkPrepare) and the state pass in segment-map mode (StatePass::map_output), or
// chunk-parallel as the forward would (segment_map.hpp); the maps compose and apply with
// team::compose_segment_maps and team::apply_segment_map.
//
// Why the read-out of the M columns gives the outputs: entering chunk c the state is
// S_c = M_c S_in + R_c, and a token's output scale exp(G) q^T S_c + intra (U - W S_c) is
// affine in S_c, so it is the read-out of the R columns (the zero-state output) plus the
// read-out of the M columns (a K-vector, the query carried back to the slice's start) times
// S_in. finish_segment() adds that product, one small GEMM per tile of tokens.
#pragma once

#include <gdp/sequence_parallel.hpp>

#include "chunk_layout.hpp"
#include "chunk_prepare.hpp"
#include "chunk_workspace.hpp"
#include "common/explicit_instances.hpp"
#include "common/gdp_asserts.hpp"
#include "common/host_microkernels.hpp"
#include "common/kokkos_compat.hpp"
#include "common/launch.hpp"
#include "common/team_dense.hpp"
#include "common/team_scratch.hpp"
#include "common/view_limits.hpp"
#include "forward_impl.hpp"
#include "forward_plan.hpp"
#include "segment_map.hpp"
#include "state_pass.hpp"

#include <Kokkos_Core.hpp>

#include <algorithm>

namespace gdp::detail {

template <class Real, class MemorySpace>
using state_view = Kokkos::View<const Real****, Kokkos::LayoutRight, MemorySpace>;

/// Checks that `state` is [1, H, K, V] for the given sizes.
template <class View>
void expect_state_shape(const char* name, const View& state, int H, int K, int V) {
  GDP_EXPECT(state.data() && state.extent(0) == 1 && int(state.extent(1)) == H &&
                 int(state.extent(2)) == K && int(state.extent(3)) == V,
             name, "expected shape [1, H, K, V] = ", format_shape({1, H, K, V}), ", got ",
             state.data() ? format_shape({std::int64_t(state.extent(0)), std::int64_t(state.extent(1)),
                                          std::int64_t(state.extent(2)), std::int64_t(state.extent(3))})
                          : std::string("none"));
}

template <class Real, class MemorySpace>
StateMap<Real, MemorySpace> allocate_state_map(int H, int K, int V) {
  StateMap<Real, MemorySpace> map;
  map.matrix = decltype(map.matrix)(Kokkos::view_alloc(Kokkos::WithoutInitializing, "gdp::state_map"),
                                    H, K, K + V);
  map.value_dim = V;
  return map;
}

/// The M and R parts of head h of a map.
template <class Matrix>
KOKKOS_INLINE_FUNCTION auto transition_of(const Matrix& matrix, int h, int K) {
  return Kokkos::subview(matrix, h, Kokkos::ALL(), Kokkos::make_pair(0, K));
}
template <class Matrix>
KOKKOS_INLINE_FUNCTION auto offset_of(const Matrix& matrix, int h, int K, int V) {
  return Kokkos::subview(matrix, h, Kokkos::ALL(), Kokkos::make_pair(K, K + V));
}

/// One team per head: out = later o earlier, or out = map applied to a state.
template <class ExecSpace, class Real>
struct StateMapKernel {
  using memory_space = typename ExecSpace::memory_space;
  using member_type = typename Kokkos::TeamPolicy<ExecSpace>::member_type;
  Kokkos::View<const Real***, Kokkos::LayoutRight, memory_space> earlier, later;  ///< maps
  Kokkos::View<const Real****, Kokkos::LayoutRight, memory_space> state;  ///< apply only
  Kokkos::View<Real***, Kokkos::LayoutRight, memory_space> composed;      ///< compose only
  Kokkos::View<Real****, Kokkos::LayoutRight, memory_space> applied;      ///< apply only
  int K = 0, V = 0;

  void run(const char* label) const {
    launch(label, Kokkos::TeamPolicy<ExecSpace>(int(later.extent(0)), Kokkos::AUTO), *this);
    ExecSpace().fence();
  }

  KOKKOS_INLINE_FUNCTION void operator()(const member_type& member) const {
    const int h = member.league_rank();
    if (applied.data())
      team::apply_segment_map<ExecSpace>(
          member, transition_of(later, h, K), offset_of(later, h, K, V),
          Kokkos::subview(state, 0, h, Kokkos::ALL(), Kokkos::ALL()),
          Kokkos::subview(applied, 0, h, Kokkos::ALL(), Kokkos::ALL()));
    else
      team::compose_segment_maps<ExecSpace>(
          member, transition_of(later, h, K), offset_of(later, h, K, V),
          transition_of(earlier, h, K), offset_of(earlier, h, K, V), transition_of(composed, h, K),
          offset_of(composed, h, K, V));
  }
};

/// o = narrow(readout_R + readout_M S_in), one team per (tile of tokens, head).
template <class ExecSpace, class Scalar>
struct FinishSegment {
  using memory_space = typename ExecSpace::memory_space;
  using Real = accumulator_t<Scalar>;
  using policy_type = Kokkos::TeamPolicy<ExecSpace>;
  using member_type = typename policy_type::member_type;
  static constexpr int tile_rows = 64;

  Kokkos::View<const Real***, Kokkos::LayoutRight, memory_space> readout;  ///< [T, H, K + V]
  Kokkos::View<const Real****, Kokkos::LayoutRight, memory_space> entering;
  Kokkos::View<Scalar***, Kokkos::LayoutRight, memory_space> o;  ///< [T, H, V]
  int heads = 0, K = 0, V = 0, scratch_level = 0;

  void run() {
    const std::int64_t tiles = (std::int64_t(o.extent(0)) + tile_rows - 1) / tile_rows;
    const std::size_t bytes = scratch_bytes<ExecSpace, Real>(tile_rows, V);
    scratch_level = scratch_level_for<policy_type>(bytes);
    launch("gdp::finish_segment",
           policy_type(tiles * heads, Kokkos::AUTO)
               .set_scratch_size(scratch_level, Kokkos::PerTeam(bytes)),
           *this);
  }

  KOKKOS_INLINE_FUNCTION void operator()(const member_type& member) const {
    const int h = int(member.league_rank() % heads);
    const std::int64_t t0 = (member.league_rank() / heads) * tile_rows;
    const std::int64_t T = std::int64_t(o.extent(0));
    const int rows = int(T - t0 < tile_rows ? T - t0 : tile_rows);
    ScratchTile<ExecSpace, Real> tile(member.team_scratch(scratch_level), tile_rows, V);
    const auto out = Kokkos::subview(tile, Kokkos::make_pair(0, rows), Kokkos::ALL());
    const auto tokens = Kokkos::make_pair(t0, t0 + rows);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, rows), [&](const int j) {
      team::scaled_row(member, &out(j, 0), &readout(t0 + j, h, K), V, Real(1));
    });
    member.team_barrier();
    team::gemm<ExecSpace, team::NoTranspose>(
        member, Real(1), Kokkos::subview(readout, tokens, h, Kokkos::make_pair(0, K)),
        Kokkos::subview(entering, 0, h, Kokkos::ALL(), Kokkos::ALL()), Real(1), out);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, rows), [&](const int j) {
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, V),
                           [&](const int e) { o(t0 + j, h, e) = narrow<Scalar>(out(j, e)); });
    });
  }
};

/// FinishSegment on the host spaces: one thread per (tile of tokens, head) multiplies the
/// tile's M read-outs by S_in with host::Block's register-blocked loop (the team gemm's
/// generic loop took about a fifth of the forward's time there, four times its share of flops),
/// then adds the R read-outs.
template <class ExecSpace, class Scalar>
struct HostFinishSegment {
  using memory_space = typename ExecSpace::memory_space;
  using Real = accumulator_t<Scalar>;
  using policy_type = Kokkos::TeamPolicy<ExecSpace, Kokkos::Schedule<Kokkos::Dynamic>>;
  using member_type = typename policy_type::member_type;
  static constexpr int tile_rows = 16 * host::block_rows;
  static constexpr int lanes = host::lanes<Real>;

  Kokkos::View<const Real***, Kokkos::LayoutRight, memory_space> readout;  ///< [T, H, K + V]
  Kokkos::View<const Real****, Kokkos::LayoutRight, memory_space> entering;
  Kokkos::View<Scalar***, Kokkos::LayoutRight, memory_space> o;  ///< [T, H, V]
  int heads = 0, K = 0, V = 0;

  int padded_values() const { return host::padded<Real>(V); }
  /// S_in padded to whole vectors, then the tile's products.
  std::size_t bytes() const {
    return std::size_t(K + tile_rows) * padded_values() * sizeof(Real) + host::vector_bytes;
  }

  void run() const {
    const std::int64_t tiles = (std::int64_t(o.extent(0)) + tile_rows - 1) / tile_rows;
    policy_type policy(tiles * heads, 1);
    launch("gdp::host_finish_segment", policy.set_scratch_size(1, Kokkos::PerThread(bytes())),
           *this);
  }

  KOKKOS_INLINE_FUNCTION void operator()(const member_type& member) const {
    GDP_IF_ON_HOST((finish(member.league_rank(), member.thread_scratch(1).get_shmem(bytes()));))
  }

  void finish(const std::int64_t unit, void* scratch_memory) const {
    const int Vp = padded_values(), h = int(unit % heads);
    const std::int64_t t0 = (unit / heads) * tile_rows, T = std::int64_t(o.extent(0));
    const int rows = int(T - t0 < tile_rows ? T - t0 : tile_rows);
    std::uintptr_t address = reinterpret_cast<std::uintptr_t>(scratch_memory);
    address = (address + host::vector_bytes - 1) / host::vector_bytes * host::vector_bytes;
    Real* const S = reinterpret_cast<Real*>(address);
    Real* const out = S + std::size_t(K) * Vp;
    for (int d = 0; d < K; ++d)
      for (int e = 0; e < Vp; ++e) S[d * Vp + e] = e < V ? entering(0, h, d, e) : Real(0);
    host::for_blocks<Real>(rows, Vp / lanes, [&](int column0, int row0, int count, auto& block) {
      block.multiply_add(&readout(t0 + row0, h, 0), long(heads) * (K + V), 1, count, S + column0, Vp, K);
      block.store(out + row0 * Vp + column0, Vp, count);
    });
    for (int j = 0; j < rows; ++j) {
      const Real* const offset = &readout(t0 + j, h, K);
      Scalar* const row = &o(t0 + j, h, 0);
      for (int e = 0; e < V; ++e) row[e] = narrow<Scalar>(out[j * Vp + e] + offset[e]);
    }
  }
};

template <class ExecSpace, class Scalar>
SegmentMap<Scalar, typename ExecSpace::memory_space> segment_map(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& in,
    const ForwardOptions& options) {
  using memory_space = typename ExecSpace::memory_space;
  using Real = accumulator_t<Scalar>;
  using Pass = StatePass<ExecSpace, Scalar>;
  GDP_EXPECT(!in.cu_seqlens.data(), "cu_seqlens",
             "expected none: a slice of one sequence (call segment_map per sequence), got ",
             in.cu_seqlens.extent(0), " offsets");
  GDP_EXPECT(!in.initial_state.data(), "h0",
             "expected none: the state entering a slice is what finish_segment takes, got ",
             format_shape({std::int64_t(in.initial_state.extent(0)), std::int64_t(in.initial_state.extent(1)),
                           std::int64_t(in.initial_state.extent(2)), std::int64_t(in.initial_state.extent(3))}));
  const ProblemShape shape = check_forward_inputs(in, options);
  GDP_EXPECT(shape.batch == 1, "q", "expected one batch row (B = 1) of one sequence's tokens, got B = ",
             shape.batch);
  const int H = int(shape.heads), K = int(shape.key_dim), V = int(shape.value_dim);
  expect_call_fits(shape, call_limits(shape, options, 1, /*backward=*/false));
  const std::uint64_t readouts = std::uint64_t(shape.total_tokens()) * std::uint64_t(H) * std::uint64_t(K + V);
  GDP_EXPECT(readouts <= compat::max_view_elements, "problem size",
             "expected the read-outs [T, H, K + V] of the slice to hold at most ",
             compat::max_view_elements, " elements (the most one view of this Kokkos version can hold), got ",
             readouts, ": cut the sequence into more, shorter slices");
  const auto operands = make_operands<ExecSpace>(in, shape, options);
  const ChunkLayout layout = make_chunk_layout(shape, options.chunk_size);

  SegmentMap<Scalar, memory_space> result;
  result.options = options;
  result.map = allocate_state_map<Real, memory_space>(H, K, V);
  result.readout = decltype(result.readout)(
      Kokkos::view_alloc(Kokkos::WithoutInitializing, "gdp::segment_readout"), shape.total_tokens(), H,
      K + V);
  const int value_block = state_pass_value_block<ExecSpace>(shape, options);
  const typename Pass::template unmanaged_view<Real****> map(result.map.matrix.data(), 1, H, K, K + V);
  const ForwardPlan plan = plan_forward(layout, options, H, 1, concurrent_walks<ExecSpace>());
  // One segment, the whole slice, where the plan is sequential.
  const SegmentLayout segment_layout = walk_segments(layout, plan);
  // The entering maps [segments, H, K, K + V] are as large as the maps.
  expect_segment_maps_fit(plan, std::int64_t(segment_layout.segments.size()), H, K, V);
  // As the forward: host spaces walk the chunks sequentially in one fused pass, one thread
  // per head carrying all K + V columns (stage 1 done once for them); otherwise stage 1, then
  // the state pass.
  const bool two_stages = !(team::runs_on_host<ExecSpace> && !plan.chunk_parallel);
  const auto leased = lease_walk_workspace<Real, memory_space>(shape, layout, two_stages);
  const auto& [device_layout, workspace] = leased.parts;
  if constexpr (team::runs_on_host<ExecSpace>) {
    if (!two_stages) {
      HostFusedWalk<ExecSpace, Scalar>(operands, device_layout, map, result.readout).run();
      ExecSpace().fence();
      return result;
    }
  }
  ChunkPrepare<ExecSpace, Scalar>(operands, device_layout, workspace).run();
  if (!plan.chunk_parallel) {
    // The whole slice, walked once by each (head, block of [M | R] columns).
    const auto leased_segments = lease_segments<memory_space>(segment_layout);
    Pass pass(operands, device_layout, workspace, {}, {}, map, value_block);
    pass.segments = leased_segments.parts;
    pass.segment_maps = true;
    pass.map_output = result.readout;
    pass.run();
  } else {
    // As the chunk-parallel forward, one level up: every segment's map of [M | R], the scan of
    // the maps (each segment's entering [M | R] from [I | 0]), then every segment's walk from
    // its entering [M | R] with the read-out kept.
    const auto leased_states =
        lease_segment_states<Real, memory_space>(segment_layout, H, K, V, K + V);
    const auto& [segments, maps, entering] = leased_states.parts;
    Pass map_pass(operands, device_layout, workspace, {}, {}, maps, value_block);
    map_pass.segments = segments;
    map_pass.segment_maps = true;
    map_pass.run();
    SegmentScan<ExecSpace, Real>(maps, {}, entering, map, segments, value_block, true).run();
    Pass output_pass(operands, device_layout, workspace, entering, {}, {}, value_block);
    output_pass.segments = segments;
    output_pass.segment_maps = true;
    output_pass.map_output = result.readout;
    output_pass.run();
  }
  ExecSpace().fence();
  return result;
}

template <class ExecSpace, class Scalar>
void finish_segment_into(
    const SegmentMap<Scalar, typename ExecSpace::memory_space>& segment,
    const state_view<accumulator_t<Scalar>, typename ExecSpace::memory_space>& entering,
    const Kokkos::View<Scalar****, Kokkos::LayoutRight, typename ExecSpace::memory_space>& o,
    const Kokkos::View<accumulator_t<Scalar>****, Kokkos::LayoutRight,
                       typename ExecSpace::memory_space>& final_state) {
  using memory_space = typename ExecSpace::memory_space;
  using Real = accumulator_t<Scalar>;
  const int H = segment.map.heads(), K = segment.map.key_dim(), V = segment.map.value_dim;
  const std::int64_t T = std::int64_t(segment.readout.extent(0));
  expect_state_shape("entering_state", entering, H, K, V);
  expect_state_shape("final_state", final_state, H, K, V);
  GDP_EXPECT(o.data() && o.extent(0) == 1 && std::int64_t(o.extent(1)) == T && int(o.extent(2)) == H &&
                 int(o.extent(3)) == V,
             "o", "expected shape [1, T, H, V] = ", format_shape({1, T, H, V}), ", got ",
             o.data() ? format_shape({std::int64_t(o.extent(0)), std::int64_t(o.extent(1)),
                                      std::int64_t(o.extent(2)), std::int64_t(o.extent(3))})
                      : std::string("none"));
  const Kokkos::View<Scalar***, Kokkos::LayoutRight, memory_space> rows(o.data(), T, H, V);
  if constexpr (team::runs_on_host<ExecSpace>)
    HostFinishSegment<ExecSpace, Scalar>{segment.readout, entering, rows, H, K, V}.run();
  else
    FinishSegment<ExecSpace, Scalar>{segment.readout, entering, rows, H, K, V}.run();
  StateMapKernel<ExecSpace, Real> kernel;
  kernel.later = segment.map.matrix;
  kernel.state = entering;
  kernel.applied = final_state;
  kernel.K = K;
  kernel.V = V;
  kernel.run("gdp::apply_state_map");  // fences
}

template <class ExecSpace, class Scalar>
ForwardResult<Scalar, typename ExecSpace::memory_space> finish_segment(
    const SegmentMap<Scalar, typename ExecSpace::memory_space>& segment,
    const state_view<accumulator_t<Scalar>, typename ExecSpace::memory_space>& entering) {
  const int H = segment.map.heads(), K = segment.map.key_dim(), V = segment.map.value_dim;
  expect_state_shape("entering_state", entering, H, K, V);
  ForwardResult<Scalar, typename ExecSpace::memory_space> result;
  result.o = decltype(result.o)(Kokkos::view_alloc(Kokkos::WithoutInitializing, "gdp::o"), 1,
                                segment.readout.extent(0), H, V);
  result.final_state = decltype(result.final_state)(
      Kokkos::view_alloc(Kokkos::WithoutInitializing, "gdp::leaving_state"), 1, H, K, V);
  detail::finish_segment_into<ExecSpace, Scalar>(segment, entering, result.o, result.final_state);
  return result;
}

template <class ExecSpace, class Real>
StateMap<Real, typename ExecSpace::memory_space> compose_state_maps(
    const StateMap<Real, typename ExecSpace::memory_space>& earlier,
    const StateMap<Real, typename ExecSpace::memory_space>& later) {
  const int H = later.heads(), K = later.key_dim(), V = later.value_dim;
  GDP_EXPECT(earlier.heads() == H && earlier.key_dim() == K && earlier.value_dim == V, "earlier",
             "expected a map of the later map's [H, K, V] = ", format_shape({H, K, V}), ", got ",
             format_shape({earlier.heads(), earlier.key_dim(), earlier.value_dim}));
  auto composed = allocate_state_map<Real, typename ExecSpace::memory_space>(H, K, V);
  StateMapKernel<ExecSpace, Real> kernel;
  kernel.earlier = earlier.matrix;
  kernel.later = later.matrix;
  kernel.composed = composed.matrix;
  kernel.K = K;
  kernel.V = V;
  kernel.run("gdp::compose_state_maps");
  return composed;
}

template <class ExecSpace, class Real>
Kokkos::View<Real****, Kokkos::LayoutRight, typename ExecSpace::memory_space> apply_state_map(
    const StateMap<Real, typename ExecSpace::memory_space>& map,
    const state_view<Real, typename ExecSpace::memory_space>& state) {
  const int H = map.heads(), K = map.key_dim(), V = map.value_dim;
  expect_state_shape("state", state, H, K, V);
  StateMapKernel<ExecSpace, Real> kernel;
  kernel.later = map.matrix;
  kernel.state = state;
  kernel.applied = decltype(kernel.applied)(
      Kokkos::view_alloc(Kokkos::WithoutInitializing, "gdp::leaving_state"), 1, H, K, V);
  kernel.K = K;
  kernel.V = V;
  kernel.run("gdp::apply_state_map");
  return kernel.applied;
}

template <class ExecSpace, class Real>
StateMap<Real, typename ExecSpace::memory_space> identity_state_map(int H, int K, int V) {
  GDP_EXPECT(H >= 1 && K >= 1 && V >= 1, "heads, key_dim, value_dim", "expected each >= 1, got ",
             format_shape({H, K, V}));
  auto map = allocate_state_map<Real, typename ExecSpace::memory_space>(H, K, V);
  const auto matrix = map.matrix;
  Kokkos::parallel_for(
      "gdp::identity_state_map",
      Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>>({0, 0, 0}, {H, K, K + V}),
      KOKKOS_LAMBDA(const int h, const int d, const int c) { matrix(h, d, c) = Real(d == c); });
  ExecSpace().fence();
  return map;
}

template <class ExecSpace, class Real>
StateMap<Real, typename ExecSpace::memory_space> known_state_map(
    const state_view<Real, typename ExecSpace::memory_space>& state) {
  GDP_EXPECT(state.data() && state.extent(0) == 1, "state", "expected shape [1, H, K, V], got ",
             format_shape({std::int64_t(state.extent(0)), std::int64_t(state.extent(1)),
                           std::int64_t(state.extent(2)), std::int64_t(state.extent(3))}));
  const int H = int(state.extent(1)), K = int(state.extent(2)), V = int(state.extent(3));
  auto map = allocate_state_map<Real, typename ExecSpace::memory_space>(H, K, V);
  const auto matrix = map.matrix;
  Kokkos::parallel_for(
      "gdp::known_state_map",
      Kokkos::MDRangePolicy<ExecSpace, Kokkos::Rank<3>>({0, 0, 0}, {H, K, K + V}),
      KOKKOS_LAMBDA(const int h, const int d, const int c) {
        matrix(h, d, c) = c < K ? Real(0) : state(0, h, d, c - K);
      });
  ExecSpace().fence();
  return map;
}

}  // namespace gdp::detail

namespace gdp {

template <class ExecSpace, class Scalar>
SegmentMap<Scalar, typename ExecSpace::memory_space> segment_map(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& inputs,
    const ForwardOptions& options) {
  return detail::segment_map<ExecSpace, Scalar>(inputs, options);
}

template <class ExecSpace, class Scalar>
ForwardResult<Scalar, typename ExecSpace::memory_space> finish_segment(
    const SegmentMap<Scalar, typename ExecSpace::memory_space>& segment,
    const Kokkos::View<const accumulator_t<Scalar>****, Kokkos::LayoutRight,
                       typename ExecSpace::memory_space>& entering_state) {
  return detail::finish_segment<ExecSpace, Scalar>(segment, entering_state);
}

template <class ExecSpace, class Scalar>
void finish_segment_into(
    const SegmentMap<Scalar, typename ExecSpace::memory_space>& segment,
    const Kokkos::View<const accumulator_t<Scalar>****, Kokkos::LayoutRight,
                       typename ExecSpace::memory_space>& entering_state,
    const Kokkos::View<Scalar****, Kokkos::LayoutRight, typename ExecSpace::memory_space>& o,
    const Kokkos::View<accumulator_t<Scalar>****, Kokkos::LayoutRight,
                       typename ExecSpace::memory_space>& final_state) {
  detail::finish_segment_into<ExecSpace, Scalar>(segment, entering_state, o, final_state);
}

template <class ExecSpace, class Real>
StateMap<Real, typename ExecSpace::memory_space> compose_state_maps(
    const StateMap<Real, typename ExecSpace::memory_space>& earlier,
    const StateMap<Real, typename ExecSpace::memory_space>& later) {
  return detail::compose_state_maps<ExecSpace, Real>(earlier, later);
}

template <class ExecSpace, class Real>
Kokkos::View<Real****, Kokkos::LayoutRight, typename ExecSpace::memory_space> apply_state_map(
    const StateMap<Real, typename ExecSpace::memory_space>& map,
    const typename StateMap<Real, typename ExecSpace::memory_space>::state_view& state) {
  return detail::apply_state_map<ExecSpace, Real>(map, state);
}

template <class ExecSpace, class Real>
StateMap<Real, typename ExecSpace::memory_space> identity_state_map(int heads, int key_dim,
                                                                    int value_dim) {
  return detail::identity_state_map<ExecSpace, Real>(heads, key_dim, value_dim);
}

template <class ExecSpace, class Real>
StateMap<Real, typename ExecSpace::memory_space> known_state_map(
    const Kokkos::View<const Real****, Kokkos::LayoutRight, typename ExecSpace::memory_space>&
        state) {
  return detail::known_state_map<ExecSpace, Real>(state);
}

}  // namespace gdp

/// The sequence-parallel building blocks of one storage type (segment_map, finish_segment) and
/// those of one accumulation type (the map operations), for one execution space, each after
/// `prefix` (common/explicit_instances.hpp).
#define GDP_SEGMENT_INSTANCES(prefix, ExecSpace, Scalar)                                            \
  prefix ::gdp::SegmentMap<Scalar, ExecSpace::memory_space>                                         \
  gdp::segment_map<ExecSpace, Scalar>(const ::gdp::ForwardInputs<Scalar, ExecSpace::memory_space>&, \
                                      const ::gdp::ForwardOptions&);                                \
  prefix ::gdp::ForwardResult<Scalar, ExecSpace::memory_space>                                      \
  gdp::finish_segment<ExecSpace, Scalar>(                                                           \
      const ::gdp::SegmentMap<Scalar, ExecSpace::memory_space>&,                                    \
      const Kokkos::View<const ::gdp::accumulator_t<Scalar>****, Kokkos::LayoutRight,               \
                         ExecSpace::memory_space>&);                                                \
  prefix void gdp::finish_segment_into<ExecSpace, Scalar>(                                          \
      const ::gdp::SegmentMap<Scalar, ExecSpace::memory_space>&,                                    \
      const Kokkos::View<const ::gdp::accumulator_t<Scalar>****, Kokkos::LayoutRight,               \
                         ExecSpace::memory_space>&,                                                 \
      const Kokkos::View<Scalar****, Kokkos::LayoutRight, ExecSpace::memory_space>&,                \
      const Kokkos::View<::gdp::accumulator_t<Scalar>****, Kokkos::LayoutRight,                     \
                         ExecSpace::memory_space>&)
#define GDP_STATE_MAP_INSTANCES(prefix, ExecSpace, Real)                                           \
  prefix ::gdp::StateMap<Real, ExecSpace::memory_space> gdp::compose_state_maps<ExecSpace, Real>(  \
      const ::gdp::StateMap<Real, ExecSpace::memory_space>&,                                       \
      const ::gdp::StateMap<Real, ExecSpace::memory_space>&);                                      \
  prefix Kokkos::View<Real****, Kokkos::LayoutRight, ExecSpace::memory_space>                      \
  gdp::apply_state_map<ExecSpace, Real>(                                                           \
      const ::gdp::StateMap<Real, ExecSpace::memory_space>&,                                       \
      const ::gdp::StateMap<Real, ExecSpace::memory_space>::state_view&);                          \
  prefix ::gdp::StateMap<Real, ExecSpace::memory_space>                                            \
  gdp::identity_state_map<ExecSpace, Real>(int, int, int);                                         \
  prefix ::gdp::StateMap<Real, ExecSpace::memory_space> gdp::known_state_map<ExecSpace, Real>(     \
      const Kokkos::View<const Real****, Kokkos::LayoutRight, ExecSpace::memory_space>&)
#define GDP_SEQUENCE_PARALLEL_INSTANCES(prefix, ExecSpace)         \
  GDP_FOR_EACH_STORAGE(GDP_SEGMENT_INSTANCES, prefix, ExecSpace);  \
  GDP_STATE_MAP_INSTANCES(prefix, ExecSpace, double);              \
  GDP_STATE_MAP_INSTANCES(prefix, ExecSpace, float)

/// Instantiates the sequence-parallel building blocks for one execution space.
#define GDP_INSTANTIATE_SEQUENCE_PARALLEL(ExecSpace) GDP_SEQUENCE_PARALLEL_INSTANCES(template, ExecSpace)
#define GDP_DECLARE_SEQUENCE_PARALLEL(ExecSpace)  \
  GDP_SEQUENCE_PARALLEL_INSTANCES(extern template, ExecSpace)
GDP_FOR_EACH_ENABLED_SPACE(GDP_DECLARE_SEQUENCE_PARALLEL)
