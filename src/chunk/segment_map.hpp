// SPDX-License-Identifier: Apache-2.0
// Segments of chunks and their affine state maps (ALGORITHM.md section 6, applied to chunks).
//
// The state leaving a segment of a sequence is S_out = M S_in + R, with M (K x K) the gated
// Householder product over the segment and R (K x V) what the segment adds to a zero entering
// state. Maps compose associatively, (M2, R2) o (M1, R1) = (M2 M1, M2 R1 + R2), so the state
// entering every segment follows from a scan over its sequence's segments. The chunk-parallel
// forward uses this inside one device (segments of one sequence run on different teams); the
// multi-rank sequence-parallel code uses the same pieces across ranks.
//
// The backward carries dS, the gradient with respect to the state leaving a chunk, backwards
// through the same maps transposed: dS entering a segment (leaving the one before) is
// M^T dS_out + E, E what the segment's outputs give with a zero dS_out. The reverse scan
// (ScanDirection::reverse) gives every segment's dS_out from the forward's M and E.
//
// A segment's map is computed by the state pass itself, walking the segment's chunks with the
// augmented state [M | R] (K x (K + V)) started from [I | 0], the values of the M columns
// taken as zero: every chunk maps S to exp(G_L) S + Kd^T (U - W S), which is linear in S for
// the M columns and affine for the R columns. ColumnBlocking says which columns a team owns.
#pragma once

#include "chunk_layout.hpp"
#include "common/launch.hpp"
#include "common/team_dense.hpp"
#include "common/team_scratch.hpp"
#include "common/workspace_cache.hpp"

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace gdp::detail {

/// A range of one sequence's chunks that one team walks.
struct SegmentDescriptor {
  std::int64_t sequence;
  std::int64_t first_chunk;
  std::int64_t end_chunk;  ///< one past the last
};

/// The segments of every sequence, in sequence order.
struct SegmentLayout {
  std::vector<SegmentDescriptor> segments;
  std::vector<std::int64_t> sequence_first_segment;  ///< N+1 entries
};

/// Cuts every sequence's chunks into segments of `chunks_per_segment` chunks (the last one of
/// a sequence fewer). A sequence without chunks gets one empty segment, whose map is (I, 0),
/// so that every sequence's final state flows through the same scan.
inline SegmentLayout make_segment_layout(const ChunkLayout& layout,
                                         std::int64_t chunks_per_segment) {
  SegmentLayout result;
  const std::int64_t sequences = std::int64_t(layout.sequence_first_chunk.size()) - 1;
  for (std::int64_t s = 0; s < sequences; ++s) {
    result.sequence_first_segment.push_back(std::int64_t(result.segments.size()));
    const std::int64_t first = layout.sequence_first_chunk[s],
                       end = layout.sequence_first_chunk[s + 1];
    std::int64_t c = first;
    do {
      const std::int64_t stop = std::min(end, c + chunks_per_segment);
      result.segments.push_back({s, c, stop});
      c = stop;
    } while (c < end);
  }
  result.sequence_first_segment.push_back(std::int64_t(result.segments.size()));
  return result;
}

/// A segment layout copied into memory space `MemorySpace`; default-constructed: none (the
/// walks are whole sequences).
template <class MemorySpace>
struct DeviceSegmentLayout {
  Kokkos::View<const SegmentDescriptor*, MemorySpace> segments;
  Kokkos::View<const std::int64_t*, MemorySpace> sequence_first_segment;

  DeviceSegmentLayout() = default;
  /// `host` copied into views laid out by `carver` (when it only counts, nothing is copied).
  DeviceSegmentLayout(const SegmentLayout& host, WorkspaceCarver<MemorySpace>& carver)
      : segments(carve_copy(carver, host.segments)),
        sequence_first_segment(carve_copy(carver, host.sequence_first_segment)) {}

  std::int64_t count() const { return std::int64_t(segments.extent(0)); }
};

/// What a chunk-parallel walk keeps per segment, beside the segments themselves: the maps
/// [M | R] [segments, H, K, K + V] and what enters each segment [segments, H, K,
/// entering_columns] (the state, V columns, or the map from the sequence's start, K + V).
template <class Real, class MemorySpace>
struct SegmentStates {
  DeviceSegmentLayout<MemorySpace> segments;
  Kokkos::View<Real****, Kokkos::LayoutRight, MemorySpace> maps, entering;
};

/// `layout` on the device, from the workspace cache: every call of a walk needs it, and a
/// fresh allocation's free waits for the device.
template <class MemorySpace>
auto lease_segments(const SegmentLayout& layout) {
  return lease_workspace<MemorySpace>([&](WorkspaceCarver<MemorySpace>& carver) {
    return DeviceSegmentLayout<MemorySpace>(layout, carver);
  });
}

/// `layout` and its SegmentStates carved by `carver`; without `with_maps`, the segments alone
/// (a sequential walk's, one a sequence).
template <class Real, class MemorySpace>
SegmentStates<Real, MemorySpace> carve_segment_states(WorkspaceCarver<MemorySpace>& carver,
                                                      const SegmentLayout& layout, int heads,
                                                      int key_dim, int value_dim,
                                                      int entering_columns, bool with_maps = true) {
  SegmentStates<Real, MemorySpace> states;
  states.segments = DeviceSegmentLayout<MemorySpace>(layout, carver);
  const std::size_t count = with_maps ? layout.segments.size() : 0;
  states.maps = carver.template view<Real****>(count, heads, key_dim, key_dim + value_dim);
  states.entering = carver.template view<Real****>(count, heads, key_dim, entering_columns);
  return states;
}

/// `layout` and its SegmentStates, from the workspace cache in one block.
template <class Real, class MemorySpace>
auto lease_segment_states(const SegmentLayout& layout, int heads, int key_dim, int value_dim,
                          int entering_columns) {
  return lease_workspace<MemorySpace>([&](WorkspaceCarver<MemorySpace>& carver) {
    return carve_segment_states<Real>(carver, layout, heads, key_dim, value_dim,
                                      entering_columns);
  });
}

/// The state columns one team of a walk owns.
struct ColumnBlock {
  int value_first;   ///< first value column it reads values of and writes outputs to
  int state_first;   ///< first column of its block in the initial / final state arrays
  int width;         ///< columns owned
  bool carries_map;  ///< M columns of a segment-map walk: start from I, values zero

  /// Entry (d, e) of the block's starting state when it carries part of M.
  KOKKOS_INLINE_FUNCTION float identity(int d, int e) const {
    return d == state_first + e ? 1.0f : 0.0f;
  }
};

/// How the state columns of a walk are split among teams. A forward walk owns the V value
/// columns; a segment-map walk owns the K + V columns of [M | R]: the first key_blocks blocks
/// cover M, the others R, so that no block straddles the two.
struct ColumnBlocking {
  int key_dim = 0, value_dim = 0, block = 1;
  int key_blocks = 0;  ///< 0 in a forward walk
  int value_blocks = 0;

  ColumnBlocking() = default;
  KOKKOS_INLINE_FUNCTION ColumnBlocking(int K, int V, int block_width, bool segment_maps)
      : key_dim(K), value_dim(V), block(block_width),
        key_blocks(segment_maps ? (K + block_width - 1) / block_width : 0),
        value_blocks((V + block_width - 1) / block_width) {}

  KOKKOS_INLINE_FUNCTION int count() const { return key_blocks + value_blocks; }
  /// Columns of the state arrays: V, or K + V for [M | R].
  KOKKOS_INLINE_FUNCTION int state_columns() const {
    return key_blocks > 0 ? key_dim + value_dim : value_dim;
  }
  KOKKOS_INLINE_FUNCTION ColumnBlock operator()(int b) const {
    if (b < key_blocks) {
      const int first = b * block;
      return {0, first, key_dim - first < block ? key_dim - first : block, true};
    }
    const int first = (b - key_blocks) * block;
    return {first, (key_blocks > 0 ? key_dim : 0) + first,
            value_dim - first < block ? value_dim - first : block, false};
  }
};

namespace team {

/// Columns of S_out one thread accumulates in registers in affine_map_by_rows.
constexpr int map_row_columns = 8;
/// Columns of M that affine_map_by_rows takes at a time (and stages, given a tile).
constexpr int map_tile_depth = 32;
/// Elements of M a thread loads before it stores any of them into the stage tile.
constexpr int map_stage_batch = 16;

/// The scratch tile affine_map_by_rows stages M in: `rows` x (map_tile_depth + 1), the extra
/// column putting consecutive rows in consecutive shared-memory banks.
template <class ExecSpace, class Real>
std::size_t map_stage_bytes(int rows) {
  return scratch_bytes<ExecSpace, Real>(rows, map_tile_depth + 1);
}

/// S_out <- M S_in, plus R when `R` is not null (S_out must not alias S_in), each thread
/// accumulating one row of S_out, map_row_columns columns at a time, in registers, over
/// map_tile_depth columns of M at a time: S_in's rows are the same for every thread (a
/// broadcast from scratch). Given a `stage` tile (map_stage_bytes), each tile of M is first
/// copied there by the team in rows of consecutive elements (coalesced), otherwise every thread
/// reads its row of M from global memory, 32 rows of a warp in 32 cache lines at a time.
/// This is the GPU spaces' map product. Kokkos Kernels' unblocked team gemm there computes each
/// element of S_out as its own dot product over a row of M: the chunk-parallel forward's
/// segment scan took about 130 us a step on an H200 with it (1-32768-16-128-2: 1.05 ms of
/// the 6.3 ms forward), 62 us with unstaged rows. Written for any space, so that the tests
/// check it on the host ones too.
template <class Member, class MView, class InView, class OutView, class RView, class StageView>
KOKKOS_INLINE_FUNCTION void affine_map_by_rows(const Member& member, const MView& M,
                                               const RView* R, const InView& s_in,
                                               const OutView& s_out, const StageView& stage) {
  using Real = typename OutView::non_const_value_type;
  const int rows = int(s_out.extent(0)), width = int(s_out.extent(1)), depth = int(M.extent(1));
  const int groups = (width + map_row_columns - 1) / map_row_columns;
  const bool staged = stage.data() != nullptr;
  for (int j0 = 0; j0 < depth; j0 += map_tile_depth) {
    const int tile = depth - j0 < map_tile_depth ? depth - j0 : map_tile_depth;
    if (staged) {
      // Each thread's loads are all issued before the first store: element by element, every
      // load waited for the store before it (the compiler cannot tell scratch from M), about
      // 16 latencies of L2 a tile, which made the chunk-parallel forward's segment scan 56 us
      // a step (1-32768-16-128-2 on an H200). Consecutive threads read consecutive elements.
      const int count = rows * tile, items = (count + map_stage_batch - 1) / map_stage_batch;
      Kokkos::parallel_for(Kokkos::TeamThreadRange(member, items), [&](const int item) {
        Real batch[map_stage_batch];
#pragma unroll
        for (int u = 0; u < map_stage_batch; ++u) {
          const int i = u * items + item;
          batch[u] = i < count ? Real(M(i / tile, j0 + i % tile)) : Real(0);
        }
#pragma unroll
        for (int u = 0; u < map_stage_batch; ++u) {
          const int i = u * items + item;
          if (i < count) stage(i / tile, i % tile) = batch[u];
        }
      });
      member.team_barrier();
    }
    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, rows * groups), [&](const int item) {
      const int d = item % rows, first = (item / rows) * map_row_columns;
      const int columns = width - first < map_row_columns ? width - first : map_row_columns;
      Real sum[map_row_columns];
#pragma unroll
      for (int e = 0; e < map_row_columns; ++e)
        sum[e] = e >= columns        ? Real(0)
                 : j0 > 0            ? s_out(d, first + e)
                 : R != nullptr      ? Real((*R)(d, first + e))
                                     : Real(0);
      for (int j = 0; j < tile; ++j) {
        const Real m = staged ? stage(d, j) : M(d, j0 + j);
#pragma unroll
        for (int e = 0; e < map_row_columns; ++e)
          if (e < columns) sum[e] += m * s_in(j0 + j, first + e);
      }
      for (int e = 0; e < columns; ++e) s_out(d, first + e) = sum[e];
    });
    member.team_barrier();
  }
}

/// S_out <- M S_in: the linear part of a segment map (the M columns of [M | R]) applied to a
/// block of state columns (S_out must not alias S_in). `stage`: as for affine_map_by_rows, on
/// the GPU spaces; the host spaces ignore it.
template <class ExecSpace, class Member, class MView, class InView, class OutView,
          class StageView = OutView>
KOKKOS_INLINE_FUNCTION void apply_linear_map(const Member& member, const MView& M,
                                             const InView& s_in, const OutView& s_out,
                                             const StageView& stage = {}) {
  using Real = typename OutView::non_const_value_type;
  if constexpr (runs_on_host<ExecSpace>)
    gemm<ExecSpace, NoTranspose>(member, Real(1), M, s_in, Real(0), s_out);
  else
    affine_map_by_rows(member, M, static_cast<const OutView*>(nullptr), s_in, s_out, stage);
}

/// S_out <- M S_in + R: one segment's map applied to a block of state columns (S_out must
/// not alias S_in). `stage`: as for apply_linear_map.
template <class ExecSpace, class Member, class MView, class RView, class InView, class OutView,
          class StageView = OutView>
KOKKOS_INLINE_FUNCTION void apply_segment_map(const Member& member, const MView& M,
                                              const RView& R, const InView& s_in,
                                              const OutView& s_out, const StageView& stage = {}) {
  using Real = typename OutView::non_const_value_type;
  if constexpr (runs_on_host<ExecSpace>) {
    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, int(s_out.extent(0))), [&](const int d) {
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, int(s_out.extent(1))),
                           [&](const int e) { s_out(d, e) = R(d, e); });
    });
    member.team_barrier();
    gemm<ExecSpace, NoTranspose>(member, Real(1), M, s_in, Real(1), s_out);
  } else {
    affine_map_by_rows(member, M, &R, s_in, s_out, stage);
  }
}

/// (M, R) <- (M2, R2) o (M1, R1) = (M2 M1, M2 R1 + R2): the map of segment 1 followed by
/// segment 2 (M and R must not alias the operands).
template <class ExecSpace, class Member, class M2View, class R2View, class M1View, class R1View,
          class MView, class RView>
KOKKOS_INLINE_FUNCTION void compose_segment_maps(const Member& member, const M2View& M2,
                                                 const R2View& R2, const M1View& M1,
                                                 const R1View& R1, const MView& M,
                                                 const RView& R) {
  apply_linear_map<ExecSpace>(member, M2, M1, M);
  apply_segment_map<ExecSpace>(member, M2, R2, R1, R);
}

}  // namespace team

/// Which way a SegmentScan takes each sequence's segments.
enum class ScanDirection {
  forward,  ///< the states: entering(s + 1) = M_s entering(s) + R_s
  reverse,  ///< the state gradients: entering(s - 1) = M_s^T entering(s) + E_s
};

/// The scan over each sequence's segments: entering(first) = h0 (or 0), entering(s + 1) =
/// M_s entering(s) + R_s, and the final state after the last segment. One team per
/// (sequence, head, block of value columns); the block of the state stays in scratch.
/// Augmented, it scans maps instead of states: entering(first) = [I | 0] and
/// entering(s + 1) = (M_s, R_s) o entering(s), [K, K + V] each (the M columns get no R_s),
/// for the chunk-parallel walk of a sequence-parallel segment (sequence_parallel_impl.hpp).
/// Reverse (the backward's, with `offsets` set): from the last segment to the first, the
/// state gradient dS entering each segment's reverse walk (leaving the segment) from dht (or
/// 0), with M_s transposed and E_s = offsets(s) for R_s; the final one is dh0.
template <class ExecSpace, class Real>
struct SegmentScan {
  using policy_type = Kokkos::TeamPolicy<ExecSpace>;
  using member_type = typename policy_type::member_type;
  using memory_space = typename ExecSpace::memory_space;
  using Tile = ScratchTile<ExecSpace, Real>;
  template <class T>
  using unmanaged_view =
      Kokkos::View<T, Kokkos::LayoutRight, memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;

  unmanaged_view<const Real****> maps;           ///< [segments, H, K, K + V]: [M | R]
  unmanaged_view<const Real****> initial_state;  ///< [N, H, K, V] or null
  unmanaged_view<Real****> entering;             ///< [segments, H, K, V] ([.., K + V] augmented)
  unmanaged_view<Real****> final_state;          ///< [N, H, K, V] ([.., K + V] augmented) or null
  /// Reverse only: E_s, the state gradient each segment's reverse walk leaves from a zero one
  /// [segments, H, K, V].
  unmanaged_view<const Real****> offsets;
  ScanDirection direction = ScanDirection::forward;
  Kokkos::View<const std::int64_t*, memory_space> sequence_first_segment;
  ColumnBlocking blocking;
  int heads, key_dim, value_dim, value_block, scratch_level = 0;

  SegmentScan(unmanaged_view<const Real****> segment_maps, unmanaged_view<const Real****> h0,
              unmanaged_view<Real****> entering_states, unmanaged_view<Real****> ht,
              const DeviceSegmentLayout<memory_space>& segments, int value_block_size,
              bool augmented = false)
      : maps(segment_maps), initial_state(h0), entering(entering_states), final_state(ht),
        sequence_first_segment(segments.sequence_first_segment),
        heads(int(entering_states.extent(1))), key_dim(int(entering_states.extent(2))),
        value_dim(int(segment_maps.extent(3)) - int(entering_states.extent(2))),
        value_block(value_block_size) {
    blocking = ColumnBlocking(key_dim, value_dim, value_block, augmented);
  }

  /// M_s of segment s for head h, or M_s^T in a reverse scan: a view of the M columns of
  /// maps(s, h), strided either way.
  using LinearMap = Kokkos::View<const Real**, Kokkos::LayoutStride, memory_space,
                                 Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  KOKKOS_INLINE_FUNCTION LinearMap linear_map(std::int64_t s, int h) const {
    const std::size_t K = std::size_t(key_dim), row = maps.extent(3);
    return direction == ScanDirection::forward
               ? LinearMap(&maps(s, h, 0, 0), Kokkos::LayoutStride(K, row, K, 1))
               : LinearMap(&maps(s, h, 0, 0), Kokkos::LayoutStride(K, 1, K, row));
  }

  void run() {
    const std::int64_t sequences = std::int64_t(sequence_first_segment.extent(0)) - 1;
    const std::int64_t teams = sequences * heads * blocking.count();
    std::size_t bytes = 2 * scratch_bytes<ExecSpace, Real>(key_dim, value_block);
    if constexpr (team::runs_on_host<ExecSpace>) {
      scratch_level = scratch_level_for<policy_type>(bytes);
      launch("gdp::segment_scan",
             policy_type(teams, Kokkos::AUTO)
                 .set_scratch_size(scratch_level, Kokkos::PerTeam(bytes)),
             *this);
    } else {
      // A thread for each row and group of columns of the map product: with as many teams as
      // (head, column block) pairs, about one a multiprocessor, the team is all the
      // multiprocessor has to hide its latencies with.
      bytes += team::map_stage_bytes<ExecSpace, Real>(key_dim);
      scratch_level = scratch_level_for<policy_type>(bytes);
      const int wanted =
          key_dim * ((value_block + team::map_row_columns - 1) / team::map_row_columns);
      const int most = policy_type(teams, 1)
                           .set_scratch_size(scratch_level, Kokkos::PerTeam(bytes))
                           .team_size_max(*this, Kokkos::ParallelForTag());
      launch("gdp::segment_scan",
             policy_type(teams, std::min(wanted, most))
                 .set_scratch_size(scratch_level, Kokkos::PerTeam(bytes)),
             *this);
    }
  }

  KOKKOS_INLINE_FUNCTION void operator()(const member_type& member) const {
    const std::int64_t unit = member.league_rank();
    const ColumnBlock owned = blocking(int(unit % blocking.count()));
    const int e0 = owned.value_first, c0 = owned.state_first, width = owned.width;
    const int h = int((unit / blocking.count()) % heads);
    const std::int64_t sequence = unit / (std::int64_t(blocking.count()) * heads);
    const auto& scratch = member.team_scratch(scratch_level);
    Tile first_tile(scratch, key_dim, value_block), second_tile(scratch, key_dim, value_block);
    // The GPU spaces stage M's columns in scratch for the map product (team::affine_map_by_rows).
    Tile stage;
    if constexpr (!team::runs_on_host<ExecSpace>)
      stage = Tile(scratch, key_dim, team::map_tile_depth + 1);
    const auto columns = Kokkos::make_pair(0, width);
    auto state = Kokkos::subview(first_tile, Kokkos::ALL(), columns);
    auto next = Kokkos::subview(second_tile, Kokkos::ALL(), columns);

    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, key_dim), [&](const int d) {
      Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, width), [&](const int e) {
        state(d, e) = owned.carries_map      ? Real(owned.identity(d, e))
                      : initial_state.data() ? initial_state(sequence, h, d, c0 + e)
                                             : Real(0);
      });
    });
    member.team_barrier();
    const std::int64_t first = sequence_first_segment(sequence),
                       count = sequence_first_segment(sequence + 1) - first;
    const bool reverse = direction == ScanDirection::reverse;
    for (std::int64_t i = 0; i < count; ++i) {
      const std::int64_t s = reverse ? first + count - 1 - i : first + i;
      Kokkos::parallel_for(Kokkos::TeamThreadRange(member, key_dim), [&](const int d) {
        Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, width),
                             [&](const int e) { entering(s, h, d, c0 + e) = state(d, e); });
      });
      const LinearMap M = linear_map(s, h);
      const auto R =
          reverse ? Kokkos::subview(offsets, s, h, Kokkos::ALL(), Kokkos::make_pair(e0, e0 + width))
                  : Kokkos::subview(maps, s, h, Kokkos::ALL(),
                                    Kokkos::make_pair(key_dim + e0, key_dim + e0 + width));
      if (owned.carries_map)  // M columns: M_s times the block, no R_s
        team::apply_linear_map<ExecSpace>(member, M, state, next, stage);
      else
        team::apply_segment_map<ExecSpace>(member, M, R, state, next, stage);
      const auto previous = state;
      state = next;
      next = previous;
    }
    if (final_state.data())
      Kokkos::parallel_for(Kokkos::TeamThreadRange(member, key_dim), [&](const int d) {
        Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, width), [&](const int e) {
          final_state(sequence, h, d, c0 + e) = state(d, e);
        });
      });
  }
};

}  // namespace gdp::detail
