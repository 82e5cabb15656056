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
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
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

/// Columns of S_out one thread accumulates in registers in the map product.
constexpr int map_row_columns = 8;
/// Columns of M that the map product takes at a time (and stages, given a tile).
constexpr int map_tile_depth = 32;
/// Elements of a tile of M a thread holds in registers between their load and their store.
constexpr int map_stage_batch = 16;

/// The scratch tile the map product stages M in: `rows` x (map_tile_depth + 1), the extra
/// column putting consecutive rows in consecutive shared-memory banks.
template <class ExecSpace, class Real>
std::size_t map_stage_bytes(int rows) {
  return scratch_bytes<ExecSpace, Real>(rows, map_tile_depth + 1);
}

/// Columns of a state tile that the map product reads and writes, for `width` columns used.
/// float: a multiple of 4 (rows of 16-byte words) and an odd number of them, so that eight
/// threads, a row each, read or write a 16-byte word each in 32 different banks. double: odd,
/// for the same with one element a thread.
template <class Real>
KOKKOS_INLINE_FUNCTION int map_state_stride(int width) {
  if constexpr (std::is_same<Real, float>::value)
    return (width + 7) / 8 * 8 + 4;
  else
    return width % 2 == 0 ? width + 1 : width;
}

/// One thread's share of a tile of M's columns [first, first + width) on its way to the
/// stage tile. Its elements are numbered along M's unit-stride dimension (along rows of M, or
/// along columns where M is a transposed view), so that a warp's loads are coalesced either
/// way; thread t takes elements t, t + team size, ... The first map_stage_batch of them wait
/// in registers between load() and store(), so that a team can issue the loads of the next
/// tile (of the same M or of the next segment's) before it multiplies with this one; a team
/// of fewer than rows x width / map_stage_batch threads copies the rest at the store.
template <class Real>
class MapTileCopy {
 public:
  KOKKOS_INLINE_FUNCTION int width() const { return width_; }

  /// Loads this thread's first elements of the tile of M's columns from `first_column`.
  template <class Member, class MView, class StageView>
  KOKKOS_INLINE_FUNCTION void load(const Member& member, const MView& M, int first_column,
                                   const StageView& stage) {
    const int depth = int(M.extent(1));
    width_ = depth - first_column < map_tile_depth ? depth - first_column : map_tile_depth;
    walk_.locate(member, M, width_, int(stage.stride(0)));
    source_ = &M(0, first_column);
    walk_.visit([&](int u, bool inside, std::ptrdiff_t from, int) {
      held_[u] = inside ? Real(source_[from]) : Real(0);
    });
  }

  /// Stores the tile into `stage` (rows x (map_tile_depth + 1)): what load() held, then what
  /// it did not, straight from M.
  template <class StageView>
  KOKKOS_INLINE_FUNCTION void store(const StageView& stage) const {
    Real* const to = stage.data();
    walk_.visit([&](int u, bool inside, std::ptrdiff_t, int at) {
      if (inside) to[at] = held_[u];
    });
    walk_.visit_rest([&](std::ptrdiff_t from, int at) { to[at] = Real(source_[from]); });
  }

 private:
  /// Element t + k x (team size) of the tile, k = 0, 1, ...: (fast, slow) indices along M's
  /// unit-stride dimension and the other, with their offsets in M and in the stage.
  struct Walk {
    int first_fast = 0, first_slow = 0, fast_extent = 0, slow_extent = 0;
    int rest_fast = 0, rest_slow = 0;  ///< element map_stage_batch, the first not held
    int step_fast = 0, step_slow = 0;  ///< (team size) in (fast, slow) steps
    std::ptrdiff_t source_fast = 1, source_slow = 0;  ///< M's strides
    int stage_fast = 1, stage_slow = 0;               ///< the stage's strides

    /// This thread's first element of a tile of `width` columns of M; the divisions only
    /// where the tile's shape differs from the last one's.
    template <class Member, class MView>
    KOKKOS_INLINE_FUNCTION void locate(const Member& member, const MView& M, int width,
                                       int stage_stride) {
      const bool by_rows = M.stride(1) == 1;
      const int rows = int(M.extent(0)), extent = by_rows ? width : rows;
      source_fast = by_rows ? M.stride(1) : M.stride(0);
      source_slow = by_rows ? M.stride(0) : M.stride(1);
      stage_fast = by_rows ? 1 : stage_stride;
      stage_slow = by_rows ? stage_stride : 1;
      slow_extent = by_rows ? rows : width;
      if (extent != fast_extent) {
        fast_extent = extent;
        const int threads = member.team_size();
        step_fast = threads % fast_extent;
        step_slow = threads / fast_extent;
        first_fast = member.team_rank() % fast_extent;
        first_slow = member.team_rank() / fast_extent;
        const std::int64_t rest = member.team_rank() + std::int64_t(map_stage_batch) * threads;
        rest_fast = int(rest % fast_extent);
        rest_slow = int(rest / fast_extent);
      }
    }

    /// f(u, inside, offset in M, offset in the stage) for this thread's first
    /// map_stage_batch elements. Where the team size is a multiple of the fast extent (the
    /// usual case), a thread's elements share their fast index.
    template <class F>
    KOKKOS_INLINE_FUNCTION void visit(const F& f) const {
      int fast = first_fast, slow = first_slow;
      if (step_fast == 0) {
#pragma unroll
        for (int u = 0; u < map_stage_batch; ++u) {
          f(u, slow < slow_extent, offset(fast, slow), at(fast, slow));
          slow += step_slow;
        }
      } else {
#pragma unroll
        for (int u = 0; u < map_stage_batch; ++u) {
          f(u, slow < slow_extent, offset(fast, slow), at(fast, slow));
          advance(fast, slow);
        }
      }
    }
    /// f(offset in M, offset in the stage) for this thread's other elements.
    template <class F>
    KOKKOS_INLINE_FUNCTION void visit_rest(const F& f) const {
      for (int fast = rest_fast, slow = rest_slow; slow < slow_extent; advance(fast, slow))
        f(offset(fast, slow), at(fast, slow));
    }

   private:
    KOKKOS_INLINE_FUNCTION std::ptrdiff_t offset(int fast, int slow) const {
      return fast * source_fast + slow * source_slow;
    }
    KOKKOS_INLINE_FUNCTION int at(int fast, int slow) const {
      return fast * stage_fast + slow * stage_slow;
    }
    KOKKOS_INLINE_FUNCTION void advance(int& fast, int& slow) const {
      fast += step_fast;
      slow += step_slow;
      if (fast >= fast_extent) {
        fast -= fast_extent;
        ++slow;
      }
    }
  };

  Real held_[map_stage_batch];
  Walk walk_;
  const Real* source_ = nullptr;
  int width_ = 0;
};

/// Row d of a tile of M's columns, element j at m[j * step].
template <class T>
struct MapRow {
  const T* m;
  int step;
};

/// Four floats that move as one 16-byte word.
struct alignas(16) FloatWord {
  float lanes[4];
};

/// sum[e] += sum over the tile's `depth` columns j of m_j S_in(j, e), e < map_row_columns
/// (the first `columns` of them unless `Full`): S_in's rows are the same for every thread of a
/// group, a broadcast from scratch. `Words`: each row's columns read as two 16-byte words
/// (float rows of whole words from a 16-byte boundary, rows_of_words), else an element at a
/// time.
template <bool Words, bool Full, class T, class Real>
KOKKOS_INLINE_FUNCTION void accumulate_row(const MapRow<T>& row, const Real* s_in, int in_stride,
                                           int depth, int columns, Real (&sum)[map_row_columns]) {
#pragma unroll 4
  for (int j = 0; j < depth; ++j) {
    const Real m = Real(row.m[j * row.step]);
    const Real* in = s_in + j * in_stride;
    if constexpr (Words) {
      static_assert(std::is_same<Real, float>::value && map_row_columns == 8, "two words");
      const FloatWord low = reinterpret_cast<const FloatWord*>(in)[0];
      const FloatWord high = reinterpret_cast<const FloatWord*>(in)[1];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        sum[e] += m * low.lanes[e];
        sum[4 + e] += m * high.lanes[e];
      }
    } else {
#pragma unroll
      for (int e = 0; e < map_row_columns; ++e)
        if (Full || e < columns) sum[e] += m * in[e];
    }
  }
}

/// Whether the rows of `tile` are float rows of whole 16-byte words from a 16-byte boundary
/// (map_state_stride, scratch carved at 16 bytes), read and written in words.
template <class View>
KOKKOS_INLINE_FUNCTION bool rows_of_words(const View& tile) {
  return std::is_same<typename View::non_const_value_type, float>::value &&
         tile.stride(0) % 4 == 0 && reinterpret_cast<std::uintptr_t>(tile.data()) % 16 == 0;
}

/// S_out += M(:, tile) S_in(tile, :), over the tile of M's columns [first, first + depth):
/// S_out <- R (when `add_R`, else 0) + the tile's product at the first tile (`first` == 0).
/// Each thread accumulates one row of S_out, map_row_columns columns at a time, in registers;
/// row d of the tile is m_row(d). S_in and S_out are tiles with unit column stride (S_out
/// must not alias S_in). A team barrier must separate the tiles.
template <class Member, class RowOfM, class RView, class InView, class OutView>
KOKKOS_INLINE_FUNCTION void accumulate_map_tile(const Member& member, const RowOfM& m_row,
                                                int first, int depth, const RView& R, bool add_R,
                                                const InView& s_in, const OutView& s_out) {
  using Real = typename OutView::non_const_value_type;
  const int rows = int(s_out.extent(0)), width = int(s_out.extent(1));
  const int groups = (width + map_row_columns - 1) / map_row_columns;
  const int in_stride = int(s_in.stride(0)), out_stride = int(s_out.stride(0));
  const bool words = rows_of_words(s_in) && rows_of_words(s_out);
  Kokkos::parallel_for(Kokkos::TeamThreadRange(member, rows * groups), [&](const int item) {
    const int d = item % rows, e0 = (item / rows) * map_row_columns;
    const int columns = width - e0 < map_row_columns ? width - e0 : map_row_columns;
    Real* out = s_out.data() + std::ptrdiff_t(d) * out_stride + e0;
    const Real* in = s_in.data() + std::ptrdiff_t(first) * in_stride + e0;
    Real sum[map_row_columns];
#pragma unroll
    for (int e = 0; e < map_row_columns; ++e)
      sum[e] = e >= columns ? Real(0) : first > 0 ? out[e] : add_R ? Real(R(d, e0 + e)) : Real(0);
    if constexpr (std::is_same<Real, float>::value) {
      if (words && columns == map_row_columns) {
        accumulate_row<true, true>(m_row(d), in, in_stride, depth, columns, sum);
        reinterpret_cast<FloatWord*>(out)[0] = {{sum[0], sum[1], sum[2], sum[3]}};
        reinterpret_cast<FloatWord*>(out)[1] = {{sum[4], sum[5], sum[6], sum[7]}};
        return;
      }
    }
    if (columns == map_row_columns)
      accumulate_row<false, true>(m_row(d), in, in_stride, depth, columns, sum);
    else
      accumulate_row<false, false>(m_row(d), in, in_stride, depth, columns, sum);
    for (int e = 0; e < columns; ++e) out[e] = sum[e];
  });
}

/// Row d of M(:, [first, ...)) where M is: `stage` (rows x (map_tile_depth + 1)) holding the
/// tile, or M itself, read where it is.
template <class StageView>
KOKKOS_INLINE_FUNCTION auto staged_rows(const StageView& stage) {
  return [stage](int d) {
    return MapRow<typename StageView::value_type>{&stage(d, 0), 1};
  };
}
template <class MView>
KOKKOS_INLINE_FUNCTION auto rows_in_place(const MView& M, int first) {
  return [M, first](int d) {
    return MapRow<typename MView::value_type>{&M(d, first), int(M.stride(1))};
  };
}

/// S_out <- M S_in, plus R when `R` is not null (S_out must not alias S_in; both with unit
/// column stride), by accumulate_map_tile over map_tile_depth columns of M at a time. Given
/// a `stage` tile (map_stage_bytes), each tile of M is first copied there by the team
/// (MapTileCopy, coalesced, the next tile's loads issued before this tile's product),
/// otherwise every thread reads its row of M from global memory. This is the GPU spaces' map
/// product; written for any space, so that the tests check it on the host ones too. Kokkos
/// Kernels' unblocked team gemm there computes each element of S_out as its own dot product
/// over a row of M: the chunk-parallel forward's segment scan took about 130 us a step on an
/// H200 with it (1-32768-16-128-2: 1.05 ms of the 6.3 ms forward).
template <class Member, class MView, class InView, class OutView, class RView, class StageView>
KOKKOS_INLINE_FUNCTION void affine_map_by_rows(const Member& member, const MView& M,
                                               const RView* R, const InView& s_in,
                                               const OutView& s_out, const StageView& stage) {
  using Real = typename OutView::non_const_value_type;
  const int depth = int(M.extent(1));
  const RView offset = R != nullptr ? *R : RView();
  if (stage.data() == nullptr) {
    for (int first = 0; first < depth; first += map_tile_depth) {
      const int tile = depth - first < map_tile_depth ? depth - first : map_tile_depth;
      accumulate_map_tile(member, rows_in_place(M, first), first, tile, offset, R != nullptr, s_in,
                          s_out);
    }
    member.team_barrier();
    return;
  }
  MapTileCopy<Real> copy;
  copy.load(member, M, 0, stage);
  for (int first = 0; first < depth; first += map_tile_depth) {
    const int tile = copy.width();
    copy.store(stage);
    member.team_barrier();
    if (first + map_tile_depth < depth) copy.load(member, M, first + map_tile_depth, stage);
    accumulate_map_tile(member, staged_rows(stage), first, tile, offset, R != nullptr, s_in, s_out);
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

  /// Columns of each of the team's two state tiles (team::map_state_stride).
  KOKKOS_INLINE_FUNCTION int state_stride() const {
    return team::map_state_stride<Real>(value_block);
  }
  /// Bytes of one state tile, with room to start it at 16 bytes (team::rows_of_words).
  std::size_t state_tile_bytes() const {
    return scratch_bytes<ExecSpace, Real>(key_dim, state_stride()) + 16;
  }

  void run() {
    const std::int64_t sequences = std::int64_t(sequence_first_segment.extent(0)) - 1;
    const std::int64_t teams = sequences * heads * blocking.count();
    std::size_t bytes = 2 * state_tile_bytes();
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

  /// f(d, e) for every element of a key_dim x `width` block, consecutive threads taking
  /// consecutive columns (so that the copies to and from the state arrays are coalesced).
  template <class F>
  KOKKOS_INLINE_FUNCTION static void for_each_entry(const member_type& member, int rows,
                                                    int width, const F& f) {
    Kokkos::parallel_for(Kokkos::TeamThreadRange(member, rows * width),
                         [&](const int i) { f(i / width, i % width); });
  }

  KOKKOS_INLINE_FUNCTION void operator()(const member_type& member) const {
    const std::int64_t unit = member.league_rank();
    const ColumnBlock owned = blocking(int(unit % blocking.count()));
    const int e0 = owned.value_first, c0 = owned.state_first, width = owned.width;
    const int h = int((unit / blocking.count()) % heads);
    const std::int64_t sequence = unit / (std::int64_t(blocking.count()) * heads);
    const auto& scratch = member.team_scratch(scratch_level);
    const auto state_tile = [&] {
      const std::size_t bytes = std::size_t(key_dim) * state_stride() * sizeof(Real);
      return Tile(static_cast<Real*>(scratch.get_shmem_aligned(bytes, 16)), key_dim,
                  state_stride());
    };
    const Tile first_tile = state_tile(), second_tile = state_tile();
    const auto columns = Kokkos::make_pair(0, width);
    auto state = Kokkos::subview(first_tile, Kokkos::ALL(), columns);
    auto next = Kokkos::subview(second_tile, Kokkos::ALL(), columns);

    for_each_entry(member, key_dim, width, [&](const int d, const int e) {
      state(d, e) = owned.carries_map      ? Real(owned.identity(d, e))
                    : initial_state.data() ? initial_state(sequence, h, d, c0 + e)
                                           : Real(0);
    });
    const std::int64_t first = sequence_first_segment(sequence),
                       count = sequence_first_segment(sequence + 1) - first;
    const bool reverse = direction == ScanDirection::reverse;
    const auto segment = [&](std::int64_t i) { return reverse ? first + count - 1 - i : first + i; };
    // The GPU spaces stage M in scratch a tile of columns at a time (team::MapTileCopy), the
    // loads of the next tile, of this segment's M or the next one's, issued before the
    // product with this one: the maps do not depend on the state, so only the products wait
    // for each other.
    [[maybe_unused]] team::MapTileCopy<Real> copy;
    [[maybe_unused]] Tile stage;
    if constexpr (!team::runs_on_host<ExecSpace>) {
      stage = Tile(scratch, key_dim, team::map_tile_depth + 1);
      if (count > 0) copy.load(member, linear_map(segment(0), h), 0, stage);
    }
    for (std::int64_t i = 0; i < count; ++i) {
      const std::int64_t s = segment(i);
      member.team_barrier();  // the state entering s is complete
      for_each_entry(member, key_dim, width,
                     [&](const int d, const int e) { entering(s, h, d, c0 + e) = state(d, e); });
      const LinearMap M = linear_map(s, h);
      const auto R =
          reverse ? Kokkos::subview(offsets, s, h, Kokkos::ALL(), Kokkos::make_pair(e0, e0 + width))
                  : Kokkos::subview(maps, s, h, Kokkos::ALL(),
                                    Kokkos::make_pair(key_dim + e0, key_dim + e0 + width));
      // M columns of an augmented scan: M_s times the block, no R_s
      const bool add_R = !owned.carries_map;
      if constexpr (team::runs_on_host<ExecSpace>) {
        if (add_R)
          team::apply_segment_map<ExecSpace>(member, M, R, state, next);
        else
          team::apply_linear_map<ExecSpace>(member, M, state, next);
      } else {
        for (int j0 = 0; j0 < key_dim; j0 += team::map_tile_depth) {
          if (j0 > 0) member.team_barrier();  // the stage's last tile is used
          const int depth = copy.width();
          copy.store(stage);
          member.team_barrier();
          if (j0 + team::map_tile_depth < key_dim)
            copy.load(member, M, j0 + team::map_tile_depth, stage);
          else if (i + 1 < count)
            copy.load(member, linear_map(segment(i + 1), h), 0, stage);
          team::accumulate_map_tile(member, team::staged_rows(stage), j0, depth, R, add_R, state,
                                    next);
        }
      }
      const auto previous = state;
      state = next;
      next = previous;
    }
    member.team_barrier();
    if (final_state.data())
      for_each_entry(member, key_dim, width, [&](const int d, const int e) {
        final_state(sequence, h, d, c0 + e) = state(d, e);
      });
  }
};

}  // namespace gdp::detail
