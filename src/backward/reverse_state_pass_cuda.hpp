// SPDX-License-Identifier: Apache-2.0
// Stage 3 of the backward on Kokkos::Cuda for bfloat16 storage, K <= 128 and chunks of at most
// 64 positions: the products of reverse_state_pass.hpp on the tensor cores, dS kept on chip.
//
// Not float16: the gradients carried back through strongly gated chunks scale like exp(G)
// (dS leaving a chunk is a sum of terms with exp(G_r) <= exp(g) of the chunk's first token),
// and with g = -20 they are about 1e-9, below float16's smallest subnormal (6e-8), so their
// 16-bit copies vanish (dh0 came out zero on an H200, relative error 1). bfloat16 has float's
// exponent range; float16 storage keeps the portable ReverseStatePass, all in float.
//
// One block of 512 threads walks the chunks of one (segment, head, block of value columns)
// from the last to the first (a segment being a whole sequence in the sequential pass; the
// chunk-parallel one walks each segment twice, as reverse_state_pass.hpp says: first for its
// offset alone, Offsets, which loads and computes only what carries dS), carrying dS, the
// gradient with respect to the state leaving the chunk, in float accumulators: each warp owns
// a fixed 32-row block of it, as in the fused forward, and a 16-bit copy in shared memory
// feeds the products that read it. Per chunk, with
// Kd = exp(G_L - G) o K and Qg = scale exp(G_r) o Q (both times the L2 normalisation factors;
// Kd's factors applied to the rows of the float product K dS, Qg's to the 16-bit copy of Q),
// -W, Tm and the entering state S_0 as the saving walk of the fused forward left them in
// 16 bits (copied asynchronously, all at once), and the intra-chunk read-out weights `intra`
// rounded to 16 bits as they are loaded:
//
//   dVnew = Kd dS + intra^T dO
//   <dS, S_0>                                       (before dS moves on)
//   dS   <- exp(G_L) dS + Qg^T dO - W^T dVnew
//   dBv   = Tm^T dVnew,  dv = beta o dBv,  sum_e dBv_e v_e
//
// Every product is an mma.sync with 16-bit operands and float accumulation. sum_e dBv_e v_e and
// <dS, S_0> leave in float into this block's slice of the BackwardWorkspace; dBv and the dS
// entering each chunk's products leave in 16 bits, as the products here read them. The
// adjoints that mix the value columns and do not feed dS (dKd = Vnew dS^T, dBk = -dBv S_0^T,
// dA = -dBv Vnew^T, d intra = dO Vnew^T, dQg = dO S_0^T) the chunk gradients kernel
// multiplies from them, in parallel over the chunks: on this sequential walk they took more
// than a third of its time a chunk. Like the fused forward this is a plain CUDA kernel on the
// stream of Kokkos::Cuda's default instance: its tiles take 174 KB of shared memory, above the
// 48 KB Kokkos 3.4 gives a team.
#pragma once

#include "chunk/chunk_layout.hpp"
#include "chunk/fused_forward.hpp"
#include "chunk/segment_map.hpp"
#include "common/team_dense_cuda.hpp"
#include "fused_backward_params.hpp"

#include <cuda_runtime.h>

#include <cstdint>

namespace gdp::detail {

namespace reverse_state_pass {

using fused::chunk_capacity;
using fused::key_capacity;
using fused::threads;
using fused::warps;

/// Byte offsets of the tiles in shared memory, for blocks of 16 * ValueTiles value columns;
/// leading dimensions padded against bank conflicts as in the fused forward.
template <int ValueTiles>
struct SharedLayout {
  static constexpr int value_capacity = 16 * ValueTiles;
  static constexpr int ldk = key_capacity + 8, ldv = value_capacity + 8, ldc = chunk_capacity + 8;
  static constexpr std::size_t key_tile = std::size_t(chunk_capacity) * ldk * 2;
  static constexpr std::size_t value_tile = std::size_t(chunk_capacity) * ldv * 2;
  static constexpr std::size_t position_tile = std::size_t(chunk_capacity) * ldc * 2;
  static constexpr std::size_t per_position = std::size_t(chunk_capacity) * 4;
  static constexpr std::size_t state_grad = 0;  ///< dS [K][value block]
  static constexpr std::size_t entry_state =
      state_grad + std::size_t(key_capacity) * ldv * 2;  ///< S_0 [K][value block]
  static constexpr std::size_t keys =
      entry_state + std::size_t(key_capacity) * ldv * 2;        ///< K, unscaled
  static constexpr std::size_t gated_queries = keys + key_tile;  ///< Qg
  static constexpr std::size_t negated_w = gated_queries + key_tile;     ///< -W
  static constexpr std::size_t output_grad = negated_w + key_tile;      ///< dO
  static constexpr std::size_t new_value_grad = output_grad + value_tile;       ///< dVnew
  static constexpr std::size_t tm = new_value_grad + value_tile;                ///< Tm
  static constexpr std::size_t intra = tm + position_tile;  ///< read-out weights [query][position]
  /// A chunk's log decay at its end and its per-position factors.
  struct ChunkFactors {
    float key_scales[chunk_capacity];    ///< exp(G_L - G) times the key's normalisation
    float query_scales[chunk_capacity];  ///< scale exp(G_r) times the query's normalisation
    float steps[chunk_capacity];         ///< beta
    float chunk_log_decay;               ///< G_L
  };
  /// ChunkFactors twice: the chunk being walked and the next, which the last warp prepares
  /// once the current chunk has computed dBv.
  static constexpr std::size_t factors = intra + position_tile;
  static constexpr std::size_t value_step_sums =
      factors + (2 * sizeof(ChunkFactors) + 15) / 16 * 16;  ///< sum_e dBv_e v_e, per quarter
  static constexpr std::size_t entry_partials = value_step_sums + 4 * per_position;  ///< per warp
  static constexpr std::size_t bytes = entry_partials + warps * 4;
};

/// What one launch walks. T is __nv_bfloat16; every tensor is row-major, the workspace
/// ones as ChunkWorkspace, FusedBackwardTiles and BackwardWorkspace lay them out.
template <class T>
struct Params {
  fused_backward::CallShape shape;
  fused_backward::AdjointSlices adjoints;  ///< written
  const T *q, *k, *v, *beta;  ///< [tokens, Hqk, K], [positions, Hqk, K], [positions, H, V], [positions, H]
  const float *query_norm, *key_norm;  ///< [tokens, Hqk], [positions, Hqk], or null
  const T* output_grad;                ///< do [tokens, H, V]
  bool vector_output_grad;             ///< do's rows start on 16-byte boundaries
  bool vector_v;                       ///< v's rows start on 16-byte boundaries, V % 8 == 0
  bool vector_keys, vector_queries;    ///< k's, q's rows start on 16-byte boundaries
  const T *negated_w, *tm;  ///< [positions, H, K / chunk_size]
  const T* entry_states;                 ///< S_0 [chunks, H, K, V]
  bool vector_w, vector_states, vector_tm;  ///< K, V, chunk_size multiples of 8, rows aligned
  const float *intra, *log_decay;        ///< the forward's workspace
  /// dS entering each walk [walks, H, K, V] or null (zero): dht in the sequential pass
  const float* entering_grad;
  const ChunkDescriptor* chunks;
  const SegmentDescriptor* segments;  ///< what each walk takes
  T* value_grad;              ///< dv [positions, H, V]
  bool paired_value_grad;     ///< dv's rows start on 4-byte boundaries, V even
  T* value_solve_grad;        ///< dBv [positions, H, V], for the chunk gradients
  bool paired_value_solve_grad;  ///< the same for dBv
  T* state_grads;             ///< dS leaving each chunk [chunks, H, K, V], for the chunk gradients
  bool paired_state_grads;    ///< its rows start on 4-byte boundaries, V even
  /// dS each walk leaves [walks, H, K, V] or null: dh0 in the sequential pass
  float* leaving_grad;
  int value_dim;
};

/// Warp w owns band w / 4 (16 positions or queries; 32 rows of dS) and quarter w % 4 of the
/// columns of every product. Offsets: carry dS from entering_grad to leaving_grad and write
/// nothing else (a compile-time choice, so that the full walk carries none of its branches).
template <int ValueTiles, bool Offsets, class T>
__global__ void __launch_bounds__(threads, 1) reverse_kernel(const Params<T> p) {
  namespace tc = tensor_core;
  using Layout = SharedLayout<ValueTiles>;
  static_assert(Layout::value_tile <= Layout::key_tile, "v's rows must fit in the tile of K");
  constexpr int C = chunk_capacity, ldk = Layout::ldk, ldv = Layout::ldv, ldc = Layout::ldc;
  constexpr int value_tiles = ValueTiles / 2;  ///< 8-column tiles of a warp's value columns
  constexpr int quarter_columns = Layout::value_capacity / 4;
  extern __shared__ __align__(128) unsigned char shared[];
  T* const state_grad16 = reinterpret_cast<T*>(shared + Layout::state_grad);
  T* const entry_state = reinterpret_cast<T*>(shared + Layout::entry_state);
  T* const keys = reinterpret_cast<T*>(shared + Layout::keys);
  T* const gated_queries = reinterpret_cast<T*>(shared + Layout::gated_queries);
  T* const negated_w = reinterpret_cast<T*>(shared + Layout::negated_w);
  T* const output_grad = reinterpret_cast<T*>(shared + Layout::output_grad);
  T* const new_value_grad = reinterpret_cast<T*>(shared + Layout::new_value_grad);
  T* const tm = reinterpret_cast<T*>(shared + Layout::tm);
  T* const intra = reinterpret_cast<T*>(shared + Layout::intra);
  using ChunkFactors = typename Layout::ChunkFactors;
  ChunkFactors* const factors = reinterpret_cast<ChunkFactors*>(shared + Layout::factors);
  float* const value_step_sums = reinterpret_cast<float*>(shared + Layout::value_step_sums);
  float* const entry_partials = reinterpret_cast<float*>(shared + Layout::entry_partials);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int band = warp / 4, quarter = warp % 4;

  const fused_backward::CallShape& shape = p.shape;
  const int blocks = shape.value_blocks, H = shape.heads, Hqk = shape.qk_heads, K = shape.key_dim,
            V = p.value_dim, n = shape.num_householder, CW = shape.chunk_size;
  const std::int64_t unit = blockIdx.x, P = shape.positions;
  const int block = int(unit % blocks), h = int((unit / blocks) % H), hq = h / shape.head_group;
  const std::int64_t walk = unit / (std::int64_t(blocks) * H);
  const SegmentDescriptor segment = p.segments[walk];
  const int e0 = block * Layout::value_capacity;
  const int width = min(Layout::value_capacity, V - e0);
  const int key_extent = 16 * ((K + 15) / 16);
  // This block's slices of the adjoints that ChunkGradients adds over the value blocks.
  const fused_backward::AdjointSlices& adjoints = p.adjoints;
  float* const value_step_grad = adjoints.value_step_grad + std::int64_t(block) * P * H;
  float* const entry_decay_grad =
      adjoints.entry_decay_grad + std::int64_t(block) * shape.num_chunks * H;

  // dS: this warp's 32 x quarter_columns block in float accumulators.
  const int state_row0 = 32 * band, state_column0 = quarter_columns * quarter;
  tc::Block<2, value_tiles> grad;
  tc::warp_for_each(grad, state_row0, state_column0, [&](int d, int e, float& x) {
    x = d < K && e < width && p.entering_grad
            ? p.entering_grad[((walk * H + h) * K + d) * V + e0 + e]
            : 0.0f;
  });
  const auto as_is = [](int, int, float x) { return x; };
  tc::warp_store(grad, state_grad16, ldv, state_row0, state_column0, as_is);

  // One warp: chunk c's factors into f. They depend on loads from global memory, one after
  // the other; prepared a chunk ahead, by the last warp while the others start the next
  // chunk's copies, they no longer hold up the start of every chunk.
  const auto prepare_chunk = [&](const ChunkDescriptor& chunk, ChunkFactors& f) {
    const int L = chunk.length, num_queries = chunk.num_queries;
    const std::int64_t p0 = chunk.first_position, t0 = chunk.first_query_token;
    const float chunk_log_decay = p.log_decay[(p0 + L - 1) * H + h];
    for (int r = lane; r < C; r += 32) {
      const std::int64_t position = p0 + r;
      const float key_factor = p.key_norm && r < L ? p.key_norm[position * Hqk + hq] : 1.0f;
      f.key_scales[r] =
          r < L ? expf(chunk_log_decay - p.log_decay[position * H + h]) * key_factor : 0.0f;
      f.steps[r] = r < L ? tc::to_float(p.beta[position * H + h]) : 0.0f;
      const std::int64_t token = t0 + r;
      const float query_factor =
          p.query_norm && r < num_queries ? p.query_norm[token * Hqk + hq] : 1.0f;
      f.query_scales[r] =
          r < num_queries
              ? shape.scale * expf(p.log_decay[(p0 + chunk.first_query_local + r * n) * H + h]) *
                    query_factor
              : 0.0f;
    }
    if (lane == 0) f.chunk_log_decay = chunk_log_decay;
  };
  // Chunk c's operands, copied (asynchronously but for intra, rounded to 16 bits on the way)
  // once chunk c + 1 has computed dBv: nothing after that reads the tiles, and the copies
  // are in flight while the last warp prepares c's factors and the others wait for it.
  const auto load_operands = [&](const ChunkDescriptor& chunk, std::int64_t c) {
    const std::int64_t p0 = chunk.first_position, t0 = chunk.first_query_token;
    tc::block_load_rows<C, key_capacity>(keys, ldk, p.k + (p0 * Hqk + hq) * K,
                                         std::int64_t(Hqk) * K, chunk.length, K, p.vector_keys,
                                         nullptr, 0);
    if (chunk.num_queries > 0)
      tc::block_load_rows<C, key_capacity>(gated_queries, ldk, p.q + (t0 * Hqk + hq) * K,
                                           std::int64_t(Hqk) * K, chunk.num_queries, K,
                                           p.vector_queries, nullptr, 0);
    tc::block_load_rows<C, key_capacity>(negated_w, ldk, p.negated_w + (p0 * H + h) * K,
                                         std::int64_t(H) * K, chunk.length, K, p.vector_w,
                                         nullptr, 0);
    if constexpr (!Offsets) {  // what only the gradients read
      tc::block_load_rows<C, C>(tm, ldc, p.tm + (p0 * H + h) * CW, std::int64_t(H) * CW,
                                chunk.length, CW, p.vector_tm, nullptr, 0);
      tc::block_load_rows<key_capacity, Layout::value_capacity>(
          entry_state, ldv, p.entry_states + (c * H + h) * K * V + e0, V, K, width,
          p.vector_states, nullptr, 0);
    }
    if (chunk.num_queries > 0) {
      tc::block_load_rows<C, Layout::value_capacity>(
          output_grad, ldv, p.output_grad + (t0 * H + h) * V + e0, std::int64_t(H) * V,
          chunk.num_queries, width, p.vector_output_grad, nullptr, 0);
      tc::block_load_float_rows<C, C>(intra, ldc, p.intra + (t0 * H + h) * CW,
                                      std::int64_t(H) * CW, chunk.num_queries, chunk.length,
                                      1.0f);
    }
  };
  const std::int64_t first_chunk = segment.first_chunk, last_chunk = segment.end_chunk - 1;
  // Every thread holds the chunk it walks, and loads the next one's descriptor itself, so no
  // barrier need publish it.
  ChunkDescriptor chunk{};
  if (last_chunk >= first_chunk) {
    chunk = p.chunks[last_chunk];
    load_operands(chunk, last_chunk);
    if (warp == warps - 1) prepare_chunk(chunk, factors[0]);
  }

  const int band_row = 16 * band, value_column0 = quarter_columns * quarter;
  int current = 0;  ///< which of `factors` holds chunk c's
  for (std::int64_t c = last_chunk; c >= first_chunk; --c, current ^= 1) {
    const ChunkFactors& prepared = factors[current];
    const int L = chunk.length, num_queries = chunk.num_queries;
    const int query_tiles = (num_queries + 15) / 16, position_extent = 16 * ((L + 15) / 16);
    const std::int64_t p0 = chunk.first_position;
    // Chunk c - 1's descriptor, loaded a chunk ahead: its copies start from it, and waiting for
    // it there held every thread's first copy back by a load from memory.
    const ChunkDescriptor previous = c > first_chunk ? p.chunks[c - 1] : ChunkDescriptor{};

    tc::block_wait_copies();  // the copies load_operands() started
    __syncthreads();

    {  // dVnew = Kd dS + intra^T dO, Kd's row factors applied to the float K dS: scaling the
       // 16-bit K in place took a pass over the tile and a barrier every chunk
      tc::Block<1, value_tiles> acc;
      tc::warp_fill(acc, 0.0f);
      tc::warp_mma<1, value_tiles, false, false>(acc, keys, ldk, band_row, state_grad16, ldv,
                                                 value_column0, 0, key_extent);
      tc::warp_for_each(acc, band_row, value_column0,
                        [&](int r, int, float& x) { x *= prepared.key_scales[r]; });
      if (num_queries > 0)
        tc::warp_mma<1, value_tiles, true, false>(acc, intra, ldc, band_row, output_grad, ldv,
                                                  value_column0, 0, 16 * query_tiles);
      tc::warp_store(acc, new_value_grad, ldv, band_row, value_column0, as_is);
    }
    if constexpr (!Offsets) {
      // dS in 16 bits, the bits of state_grad16, for the chunk gradients' dKd = Vnew dS^T.
      tc::warp_store_global(grad, p.state_grads + (c * H + h) * K * V + e0, V, state_row0,
                            state_column0, K, width, p.paired_state_grads, as_is);
      // <dS, S_0>, from the float dS and the 16-bit S_0
      float inner = 0.0f;
      tc::warp_for_each(grad, state_row0, state_column0, [&](int d, int e, float& x) {
        inner += x * tc::to_float(entry_state[d * ldv + e]);
      });
      inner = fused_backward::warp_sum(inner);
      if (lane == 0) entry_partials[warp] = inner;
    }
    // Qg's factors, in place: Q^T dO below sums over the queries, so they cannot wait for the
    // product; nothing reads Q before the barrier.
    if (num_queries > 0)
      tc::block_scale_rows<C, key_capacity>(gated_queries, ldk, prepared.query_scales);
    __syncthreads();

    // The rows and columns of v that this warp's block of dBv meets, copied into the tile of
    // K (read last before the barrier above) while dS and dBv are computed: loaded element
    // by element where they were used, they stalled the pass on memory latency every chunk.
    // Where v's rows do not allow 16-byte copies, they are copied an element at a time.
    T* const band_values = keys;
    if constexpr (!Offsets) {
      if (p.vector_v) {
        constexpr int per_row = quarter_columns / 8;
        for (int index = lane; index < 16 * per_row; index += 32) {
          const int r = band_row + index / per_row, e = value_column0 + (index % per_row) * 8;
          const bool inside = r < L && e < width;
          tc::copy_16_bytes_async(band_values + r * ldv + e,
                                  inside ? p.v + ((p0 + r) * H + h) * V + e0 + e : p.v, inside);
        }
      } else {
        for (int index = lane; index < 16 * quarter_columns; index += 32) {
          const int r = band_row + index / quarter_columns;
          const int e = value_column0 + index % quarter_columns;
          if (r < L && e < width) band_values[r * ldv + e] = p.v[((p0 + r) * H + h) * V + e0 + e];
        }
      }
    }
    {  // dS <- exp(G_L) dS + Qg^T dO - W^T dVnew, then its 16-bit copy
      const float decay = expf(prepared.chunk_log_decay);
      tc::warp_for_each(grad, 0, 0, [&](int, int, float& x) { x *= decay; });
      if (num_queries > 0)
        tc::warp_mma<2, value_tiles, true, false>(grad, gated_queries, ldk, state_row0,
                                                  output_grad, ldv, state_column0, 0,
                                                  16 * query_tiles);
      tc::warp_mma<2, value_tiles, true, false>(grad, negated_w, ldk, state_row0, new_value_grad,
                                                ldv, state_column0, 0, position_extent);
      tc::warp_store(grad, state_grad16, ldv, state_row0, state_column0, as_is);
    }
    if constexpr (!Offsets) {  // dBv = Tm^T dVnew (Tm^T is upper triangular), in 16 bits for
                               // the chunk gradients; dv = beta o dBv; sum_e dBv_e v_e
      tc::Block<1, value_tiles> acc;
      tc::warp_fill(acc, 0.0f);
      tc::warp_mma<1, value_tiles, true, false>(acc, tm, ldc, band_row, new_value_grad, ldv,
                                                value_column0, band_row, position_extent);
      if (p.vector_v) tc::block_wait_copies();
      __syncwarp();  // the other lanes' copies
      // A lane's two adjacent columns of dv in one 4-byte store where dv allows it (one
      // 2-byte store each wrote every sector of dv twice).
      tc::warp_store_global(acc, p.value_grad + (p0 * H + h) * V + e0, std::int64_t(H) * V,
                            band_row, value_column0, L, width, p.paired_value_grad,
                            [&](int r, int, float x) { return prepared.steps[r] * x; });
      float row_sums[2] = {0.0f, 0.0f};
      tc::warp_for_each_pair(acc, band_row, value_column0, [&](int r, int e, float x0, float x1) {
        if (r >= L || e >= width) return;
        const T* const v = band_values + r * ldv + e;
        float& row_sum = row_sums[(r - band_row) / 8];
        row_sum += x0 * tc::to_float(v[0]);
        if (e + 1 < width) row_sum += x1 * tc::to_float(v[1]);
      });
      fused_backward::warp_store_band_row_sums<C>(row_sums, band_row, quarter, value_step_sums);
      tc::warp_store_global(acc, p.value_solve_grad + (p0 * H + h) * V + e0, std::int64_t(H) * V,
                            band_row, value_column0, L, width, p.paired_value_solve_grad, as_is);
    }
    __syncthreads();
    if (c > first_chunk) {
      chunk = previous;
      load_operands(chunk, c - 1);
    }

    if constexpr (!Offsets) {
      if (threadIdx.x < L)
        value_step_grad[(p0 + threadIdx.x) * H + h] =
            fused_backward::band_row_sum<C>(value_step_sums, threadIdx.x);
      if (threadIdx.x == warps) {
        float inner = 0.0f;
        for (int w = 0; w < warps; ++w) inner += entry_partials[w];
        entry_decay_grad[c * H + h] = inner;
      }
    }
    if (warp == warps - 1 && c > first_chunk) prepare_chunk(chunk, factors[current ^ 1]);
    // No barrier ends the chunk: what it writes since the last one (the sums' stores aside:
    // the next factors, the copies' tiles) the next chunk reads only after the barrier that
    // follows the copies.
  }

  if (p.leaving_grad)
    tc::warp_for_each(grad, state_row0, state_column0, [&](int d, int e, float& x) {
      if (d < K && e < width) p.leaving_grad[((walk * H + h) * K + d) * V + e0 + e] = x;
    });
}

/// Starts one walk per (segment, head, value block) on Kokkos::Cuda's default stream.
template <int ValueTiles, bool Offsets, class T>
void launch(const Params<T>& params, std::int64_t walks) {
  fused::launch_kernel<reverse_kernel<ValueTiles, Offsets, T>>(
      walks * params.shape.heads * params.shape.value_blocks, SharedLayout<ValueTiles>::bytes,
      params, Offsets ? "the fused reverse pass's offsets" : "the fused reverse pass");
}

}  // namespace reverse_state_pass

}  // namespace gdp::detail
