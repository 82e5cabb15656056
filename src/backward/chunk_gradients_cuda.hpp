// SPDX-License-Identifier: Apache-2.0
// Stage 4 of the backward on Kokkos::Cuda for bfloat16 storage, K <= 128 and chunks of at
// most 64 positions: chunk_gradients.hpp's formulas with its four products on the tensor
// cores, one block of 512 threads per (chunk, head). Notation as there (k, q the normalised
// keys and queries, D_ri = exp(G_r - G_i), the adjoints summed over the value-block slices):
//
//   mixing      dKd = Vnew dS^T,  dBk = -dBv S_0^T,  dA = -dBv Vnew^T,  d intra = dO Vnew^T,
//               dQg = dO S_0^T
//   per row     dk  = exp(G_L - G) o dKd + beta exp(G) o dBk      dq = scale exp(G_r) o dQg
//               dbeta = exp(G) k . dBk + sum_e dBv_e v_e,  and the gate terms s_r, x of Kd
//   masks       Ad = dA o D (i < r),  Md = scale d intra o D (i <= r_j)
//   products    Y = Ad K:  dk += beta o Y, dbeta += k . Y       K K^T (gated: x of A)
//               dk += (beta o Ad)^T K + Md^T Q                  dq += Md K
//   dg          every term spanning a token's first sub-step, once (chunk_gradients.hpp)
//
// The mixing products come first, from the reverse pass's 16-bit dBv and dS (the state's
// gradient leaving the chunk), do and the rerun forward's 16-bit Vnew and S_0: none of them
// feeds dS, and on the reverse pass's sequential walk they took more than a third of its
// time. K, Q, Ad, beta o Ad and Md enter the later products in 16 bits (bfloat16: the adjoints
// keep float's exponent range), the products accumulate in float, and everything else is
// float.
// dq and dk then go through the backward of the optional L2 normalisation, into dq and dk or,
// with grouped value heads, into float partials that group_sum.hpp adds.
#pragma once

#include "chunk/chunk_layout.hpp"
#include "chunk/fused_forward.hpp"
#include "common/team_dense_cuda.hpp"
#include "fused_backward_params.hpp"

#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

namespace gdp::detail::chunk_gradients {

using fused::chunk_capacity;
using fused::key_capacity;
using fused::threads;
using fused::warps;

/// The value columns the mixing products take at a time.
constexpr int value_slab = 128;

/// Byte offsets of the tiles in shared memory: 16-bit tiles of K columns ldk, of chunk
/// positions ldc, of a slab of value columns ldv; float tiles of K columns ldkf, of chunk
/// positions ldf.
struct SharedLayout {
  static constexpr int ldk = key_capacity + 8, ldc = chunk_capacity + 8, ldv = value_slab + 8;
  static constexpr int ldkf = key_capacity + 4, ldf = chunk_capacity + 4;
  static constexpr std::size_t key_tile = std::size_t(chunk_capacity) * ldk * 2;
  static constexpr std::size_t position_tile = std::size_t(chunk_capacity) * ldc * 2;
  static constexpr std::size_t value_tile = std::size_t(chunk_capacity) * ldv * 2;
  static constexpr std::size_t key_float_tile = std::size_t(chunk_capacity) * ldkf * 4;
  static constexpr std::size_t float_tile = std::size_t(chunk_capacity) * ldf * 4;
  static constexpr std::size_t per_position = std::size_t(chunk_capacity) * 4;
  static constexpr std::size_t keys = 0;                                 ///< K, normalised
  static constexpr std::size_t queries = keys + key_tile;                ///< Q, normalised
  // The mixing products' operands, a slab of value columns at a time; read before the masks
  // are applied, whose 16-bit tiles then take their bytes.
  static constexpr std::size_t value_solve16 = queries + key_tile;       ///< dBv
  static constexpr std::size_t new_values16 = value_solve16 + value_tile;   ///< Vnew
  static constexpr std::size_t output_grad16 = new_values16 + value_tile;   ///< dO
  static constexpr std::size_t entry_state16 = output_grad16 + value_tile;  ///< S_0 [K][slab]
  static constexpr std::size_t coupling16 = value_solve16;                  ///< Ad
  static constexpr std::size_t scaled_coupling16 = coupling16 + position_tile;  ///< beta o Ad
  static constexpr std::size_t intra16 = scaled_coupling16 + position_tile;     ///< Md
  static constexpr std::size_t state_tile = std::size_t(key_capacity) * ldv * 2;
  static constexpr std::size_t key_adjoint = entry_state16 + state_tile;  ///< dk before L2
  /// dS [K][slab], read by the mixing products before dk's adjoint is written over it.
  static constexpr std::size_t state_grad16 = key_adjoint;
  static constexpr std::size_t query_adjoint =
      key_adjoint + (state_tile > key_float_tile ? state_tile : key_float_tile);  ///< dq before L2
  static constexpr std::size_t coupling = query_adjoint + key_float_tile;  ///< x of A
  static constexpr std::size_t intra = coupling + float_tile;              ///< x of intra
  static constexpr std::size_t gates = intra + float_tile;                 ///< G
  static constexpr std::size_t steps = gates + per_position;               ///< beta
  static constexpr std::size_t step_grads = steps + per_position;          ///< dbeta
  static constexpr std::size_t from_start = step_grads + per_position;     ///< s_r
  static constexpr std::size_t decay_pairs = from_start + per_position;    ///< x of Kd
  static constexpr std::size_t query_starts = decay_pairs + per_position;  ///< q . dQg terms
  static constexpr std::size_t step_grad_quarters = query_starts + per_position;  ///< k . Y
  /// k . dBk and k . (exp(G_L - G) o dKd) per quarter of the columns.
  static constexpr std::size_t solve_quarters = step_grad_quarters + 4 * per_position;
  static constexpr std::size_t decayed_quarters = solve_quarters + 4 * per_position;
  static constexpr std::size_t bytes = decayed_quarters + 4 * per_position;
  static_assert(intra16 + position_tile <= key_adjoint, "the masks' tiles fit the operands'");
  static_assert(bytes <= 227 * 1024, "an H100 block's shared memory");
};

/// What one launch computes. T is __nv_bfloat16; tensors row-major, the workspace ones as
/// ChunkWorkspace and BackwardWorkspace lay them out.
template <class T>
struct Params {
  fused_backward::CallShape shape;
  fused_backward::AdjointSlices adjoints;  ///< read (and, grouped, the partials' storage)
  const T *q, *k, *beta;  ///< [tokens, Hqk, K], [positions, Hqk, K], [positions, H]
  const float *query_norm, *key_norm;  ///< [tokens, Hqk], [positions, Hqk], or null
  bool vector_keys, vector_queries;    ///< rows start on 16-byte boundaries
  /// The read-out weights' rows move four floats a load (fused::grouped_rows).
  bool four_wide_read_outs;
  /// dq's and dk's rows (or their partials') move four elements a store.
  bool four_wide_grads;
  /// The mixing products' operands: dBv [positions, H, V] and dS [chunks, H, K, V] (the
  /// reverse pass's), Vnew [positions, H, V] and S_0 [chunks, H, K, V] (the rerun forward's),
  /// do [tokens, H, V].
  const T *value_solve_grad, *state_grads, *new_values, *entry_states, *output_grad;
  bool vector_value_operands;  ///< dBv's, dS's, Vnew's, S_0's rows start on 16-byte boundaries
  bool vector_output_grad;     ///< do's likewise
  int value_dim;
  const float *log_decay, *intra;      ///< the forward's G and read-out weights
  const ChunkDescriptor* chunks;
  T *query_grad, *key_grad;  ///< dq [tokens, H, K], dk [positions, H, K]; null when grouped
  float *query_grad_partial, *key_grad_partial;  ///< the same in float when grouped, else null
  T* step_grad;      ///< dbeta [positions, H]
  float* gate_grad;  ///< dg [tokens, H] or null
};

/// Four consecutive elements of a row, in float, as a lane holds them.
struct Four {
  float x[4];
};

__device__ __forceinline__ void accumulate(float& sum, float x) { sum += x; }
__device__ __forceinline__ void accumulate(Four& sum, const Four& x) {
#pragma unroll
  for (int e = 0; e < 4; ++e) sum.x[e] += x.x[e];
}

/// from[0, 4): one 16-byte load where `whole` (from 16-byte aligned, all four inside the
/// row), else from[0, available) one float a load and zeros after them.
__device__ __forceinline__ Four load_four(const float* from, bool whole, int available) {
  if (whole) {
    const float4 all = __ldg(reinterpret_cast<const float4*>(from));
    return {{all.x, all.y, all.z, all.w}};
  }
  Four values{};
#pragma unroll
  for (int e = 0; e < 4; ++e)
    if (e < available) values.x[e] = __ldg(from + e);
  return values;
}

/// The four floats at `four` (16-byte aligned, shared memory), loaded at once.
__device__ __forceinline__ Four four_floats(const float* four) {
  const float4 all = *reinterpret_cast<const float4*>(four);
  return {{all.x, all.y, all.z, all.w}};
}

/// The four 16-bit elements at `four` (8-byte aligned, shared memory), loaded at once, in float.
template <class T>
__device__ __forceinline__ Four four_as_floats(const T* four) {
  const uint2 bits = *reinterpret_cast<const uint2*>(four);
  T all[4];
  memcpy(all, &bits, sizeof bits);
  return {{tensor_core::to_float(all[0]), tensor_core::to_float(all[1]),
           tensor_core::to_float(all[2]), tensor_core::to_float(all[3])}};
}

/// values[i] = the sum over the value-block slices (slice b at base + b * slice_size) of
/// load(slice, i) (a float or a Four), with every load of a slice issued before any of them is
/// used. Loaded one at a time where they are used, between stores to shared memory that the
/// compiler must assume may alias them, each waited for the last: the kernel then spent most
/// of its 2.8 ms (8-2048-16-128-2 on an H200) waiting on L2 latency.
template <int N, class Value, class Load>
__device__ __forceinline__ void gather_summed(const float* base, std::int64_t slice_size,
                                              int blocks, Load load, Value (&values)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) values[i] = load(base, i);
  for (int b = 1; b < blocks; ++b) {
    const float* const slice = base + b * slice_size;
    Value more[N];
#pragma unroll
    for (int i = 0; i < N; ++i) more[i] = load(slice, i);
#pragma unroll
    for (int i = 0; i < N; ++i) accumulate(values[i], more[i]);
  }
}

/// Row `row` (K entries, lane l holding columns 4 l to 4 l + 3) of the gradient with respect
/// to a raw row whose normalised form y = factor * raw is `normalised` (16 bits) and whose
/// adjoint is `adjoint` (both in shared memory): factor (dy - (y . dy) y), or dy unchanged
/// without normalisation; four elements a store where `whole_rows`.
template <class T, class Destination>
__device__ __forceinline__ void warp_write_raw_row_grad(const float* adjoint, const T* normalised,
                                                        int K, float factor, bool normalising,
                                                        bool whole_rows, Destination* destination) {
  const int column = 4 * (threadIdx.x % 32);
  const float4 dy = *reinterpret_cast<const float4*>(adjoint + column);
  const float adjoints[4] = {dy.x, dy.y, dy.z, dy.w};
  const Four y = four_as_floats(normalised + column);
  float along = 0.0f;
  if (normalising) {
#pragma unroll
    for (int e = 0; e < 4; ++e)
      if (column + e < K) along += y.x[e] * adjoints[e];
    along = fused_backward::warp_sum(along);
  }
  float values[4];
#pragma unroll
  for (int e = 0; e < 4; ++e)
    values[e] = normalising ? factor * (adjoints[e] - along * y.x[e]) : adjoints[e];
  tensor_core::store_four(destination + column, values, K - column, whole_rows && column < K);
}

/// The 16-bit pair at `pair` (4-byte aligned), loaded at once, in float.
template <class T>
__device__ __forceinline__ float2 pair_as_floats(const T* pair) {
  T both[2];
  *reinterpret_cast<std::uint32_t*>(both) = *reinterpret_cast<const std::uint32_t*>(pair);
  return make_float2(tensor_core::to_float(both[0]), tensor_core::to_float(both[1]));
}

/// to[0] += x0 and, where `both`, to[1] += x1: one 8-byte access to shared memory (to 8-byte
/// aligned) rather than two 4-byte ones. A lane's pairs of an mma block (rows g and g + 8 of a
/// band, columns 2t and 2t + 1) one float at a time met in the same banks two ways, in rows
/// of 4 mod 32 floats: 18% of the kernel's shared wavefronts were that excess (ncu,
/// 8-2048-16-128-2).
__device__ __forceinline__ void add_to_pair(float* to, float x0, float x1, bool both) {
  if (both) {
    float2& pair = *reinterpret_cast<float2*>(to);
    pair = make_float2(pair.x + x0, pair.y + x1);
  } else {
    to[0] += x0;
  }
}

/// The warp's 16 x 8 Columns block at (band_row, column0) of sign A B^T (A and B 16-bit tiles
/// in shared memory, leading dimension ld, the sum over [0, extent)) into the float tile `to`
/// (leading dimension ld_to): stored where `first`, else added to what the same lanes stored.
template <int Columns, class T>
__device__ __forceinline__ void warp_product_into(const T* A, const T* B, int ld, int band_row,
                                                  int column0, int extent, float sign, bool first,
                                                  float* to, int ld_to) {
  namespace tc = tensor_core;
  tc::Block<1, Columns> acc;
  tc::warp_fill(acc, 0.0f);
  tc::warp_mma<1, Columns, false, true>(acc, A, ld, band_row, B, ld, column0, 0, extent);
  tc::warp_for_each_pair(acc, band_row, column0, [&](int r, int i, float x0, float x1) {
    if (first)
      tc::store_pair(to + r * ld_to + i, sign * x0, sign * x1, true, true);
    else
      add_to_pair(to + r * ld_to + i, sign * x0, sign * x1, true);
  });
}

/// Warp w owns band w / 4 (16 positions or queries) and quarter w % 4 of the columns of every
/// product.
template <class T>
__global__ void __launch_bounds__(threads, 1) gradients_kernel(const Params<T> p) {
  namespace tc = tensor_core;
  using Layout = SharedLayout;
  constexpr int ldk = Layout::ldk, ldc = Layout::ldc, ldv = Layout::ldv, ldkf = Layout::ldkf,
                ldf = Layout::ldf;
  constexpr int C = chunk_capacity;
  extern __shared__ __align__(128) unsigned char shared[];
  T* const keys = reinterpret_cast<T*>(shared + Layout::keys);
  T* const queries = reinterpret_cast<T*>(shared + Layout::queries);
  T* const coupling16 = reinterpret_cast<T*>(shared + Layout::coupling16);
  T* const scaled_coupling16 = reinterpret_cast<T*>(shared + Layout::scaled_coupling16);
  T* const intra16 = reinterpret_cast<T*>(shared + Layout::intra16);
  float* const key_adjoint = reinterpret_cast<float*>(shared + Layout::key_adjoint);
  float* const query_adjoint = reinterpret_cast<float*>(shared + Layout::query_adjoint);
  float* const coupling = reinterpret_cast<float*>(shared + Layout::coupling);
  float* const intra = reinterpret_cast<float*>(shared + Layout::intra);
  T* const value_solve16 = reinterpret_cast<T*>(shared + Layout::value_solve16);
  T* const new_values16 = reinterpret_cast<T*>(shared + Layout::new_values16);
  T* const output_grad16 = reinterpret_cast<T*>(shared + Layout::output_grad16);
  T* const entry_state16 = reinterpret_cast<T*>(shared + Layout::entry_state16);
  T* const state_grad16 = reinterpret_cast<T*>(shared + Layout::state_grad16);
  float* const G = reinterpret_cast<float*>(shared + Layout::gates);
  float* const beta = reinterpret_cast<float*>(shared + Layout::steps);
  float* const dbeta = reinterpret_cast<float*>(shared + Layout::step_grads);
  float* const from_start = reinterpret_cast<float*>(shared + Layout::from_start);
  float* const decay_pairs = reinterpret_cast<float*>(shared + Layout::decay_pairs);
  float* const query_starts = reinterpret_cast<float*>(shared + Layout::query_starts);
  float* const solve_quarters = reinterpret_cast<float*>(shared + Layout::solve_quarters);
  float* const decayed_quarters = reinterpret_cast<float*>(shared + Layout::decayed_quarters);
  // dbeta's k . Y, per quarter of Y's columns (fused_backward::warp_store_band_row_sums).
  float* const step_grad_quarters = reinterpret_cast<float*>(shared + Layout::step_grad_quarters);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int band = warp / 4, quarter = warp % 4, band_row = 16 * band;

  const fused_backward::CallShape& shape = p.shape;
  const fused_backward::AdjointSlices& adjoints = p.adjoints;
  const int H = shape.heads, Hqk = shape.qk_heads, K = shape.key_dim, n = shape.num_householder,
            CW = shape.chunk_size, blocks = shape.value_blocks, V = p.value_dim;
  const int h = int(blockIdx.x % H), hq = h / shape.head_group;
  const std::int64_t c = blockIdx.x / H, P = shape.positions;
  const ChunkDescriptor chunk = p.chunks[c];
  const int L = chunk.length, num_queries = chunk.num_queries;
  const int first_query = chunk.first_query_local, query_tiles = (num_queries + 15) / 16;
  const int position_extent = 16 * ((L + 15) / 16), key_extent = 16 * ((K + 15) / 16);
  const std::int64_t p0 = chunk.first_position, t0 = chunk.first_query_token;
  const bool normalising = p.key_norm != nullptr, gated = p.gate_grad != nullptr;
  const auto query_position = [&](int j) { return first_query + j * n; };
  // The per-pair tensors are read from this block's (chunk, head) on, with 32-bit offsets
  // inside the chunk (FusedBackward::supports keeps them below 2^31): 64-bit index arithmetic
  // for every element was much of the kernel's integer work.
  const std::int64_t first_row = p0 * H + h, first_query_row = t0 * H + h;
  const int pair_row_stride = H * CW;

  // The scalar adjoints of row threadIdx.x and the chunk, summed over the value blocks.
  float value_step[1], entry_decay[1];
  gather_summed(adjoints.value_step_grad + first_row, P * H, blocks,
                [&](const float* slice, int) {
                  return int(threadIdx.x) < L ? __ldg(slice + threadIdx.x * H) : 0.0f;
                },
                value_step);
  gather_summed(adjoints.entry_decay_grad + c * H + h, shape.num_chunks * H, blocks,
                [](const float* slice, int) { return __ldg(slice); }, entry_decay);

  // The position-pair adjoints by 16 x 16 blocks of the C x C tiles: warp w takes block (band,
  // quarter), a lane its quads m = 0, 1 (four consecutive entries, i0 to i0 + 3 of row r), the
  // rows band_row + block_row + 8 m. Whole warps then skip the blocks that lie outside a mask
  // (6 of Ad's 16 and, at n = 2, about 10 of Md's): mapped row by row, every warp met both
  // sides of the masks and computed every quad's exponent. block_row spreads a quarter-warp's
  // 16-byte accesses to the float tiles over rows {r, r + 4} and a half-warp's 8-byte stores
  // to the 16-bit tiles over rows {r, r + 2, r + 4, r + 6}: 32 distinct banks each, as
  // row-major quads had. The masks below select a quad's entries (selected, not multiplied:
  // the entries past a row's end are not written).
  constexpr int pair_quads = 2;
  static_assert(16 * 16 == 4 * 32 * pair_quads, "a warp's lanes hold its 16 x 16 block");
  const int block_row = 4 * ((lane / 4) % 2) + 2 * ((lane / 8) % 2) + lane / 16;
  const int block_column = 16 * quarter + 4 * (lane % 4);
  struct Pair {
    int row, first;
  };
  const auto pair = [&](int m) { return Pair{band_row + block_row + 8 * m, block_column}; };
  const auto inside_intra = [&](int j, int i) {
    return j < num_queries && i < L && i <= query_position(j);
  };
  const bool four_wide = p.four_wide_read_outs;
  // Whether this warp's block holds an entry of Ad (i < r < L) or of Md (i <= r_j, j <
  // num_queries): the warp's rows are positions r, or queries j, from band_row.
  const int last_band_query = min(band_row + 15, num_queries - 1);
  const int last_band_query_position = query_position(last_band_query);
  const bool coupling_block = band_row < L && 16 * quarter < min(band_row + 15, L - 1);
  const bool intra_block = band_row < num_queries && 16 * quarter <= last_band_query_position;
  Four intra_weights[pair_quads] = {};
  if (gated && intra_block)
    gather_summed(p.intra + first_query_row * CW, 0, 1,
                  [&](const float* slice, int m) {
                    const auto [j, i0] = pair(m);
                    return inside_intra(j, i0)
                               ? load_four(slice + j * pair_row_stride + i0, four_wide, CW - i0)
                               : Four{};
                  },
                  intra_weights);

  tc::block_load_rows<C, key_capacity>(keys, ldk, p.k + (p0 * Hqk + hq) * K,
                                       std::int64_t(Hqk) * K, L, K, p.vector_keys && !normalising,
                                       normalising ? p.key_norm + p0 * Hqk + hq : nullptr, Hqk);
  tc::block_load_rows<C, key_capacity>(queries, ldk, p.q + (t0 * Hqk + hq) * K,
                                       std::int64_t(Hqk) * K, num_queries, K,
                                       p.vector_queries && !normalising,
                                       normalising ? p.query_norm + t0 * Hqk + hq : nullptr, Hqk);

  // The mixing products, a slab of value_slab value columns at a time (one below 129): dBk and
  // dKd in this warp's accumulators, the others into the float tiles that the stages below
  // read element by element and overwrite in place: dQg into dq's adjoint, dA into x of A's,
  // d intra into x of intra's. Each warp computes the blocks it reads below (dA's and d
  // intra's only inside the masks), the later slabs added by the lanes that stored the first.
  // Rows past L (or the queries) and columns past K come out zero: the operands' padding is
  // zeros.
  tc::Block<1, 4> solve_grad, decayed_grad;  ///< -dBk and dKd, rows band_row, columns 32 quarter
  tc::warp_fill(solve_grad, 0.0f);
  tc::warp_fill(decayed_grad, 0.0f);
  const std::int64_t value_row_stride = std::int64_t(H) * V;
  const auto load_value_slab = [&](int e0) {
    const int width = min(value_slab, V - e0);
    tc::block_load_rows<C, value_slab>(value_solve16, ldv,
                                       p.value_solve_grad + (p0 * H + h) * V + e0,
                                       value_row_stride, L, width, p.vector_value_operands,
                                       nullptr, 0);
    tc::block_load_rows<C, value_slab>(new_values16, ldv, p.new_values + (p0 * H + h) * V + e0,
                                       value_row_stride, L, width, p.vector_value_operands,
                                       nullptr, 0);
    if (num_queries > 0)
      tc::block_load_rows<C, value_slab>(output_grad16, ldv,
                                         p.output_grad + (t0 * H + h) * V + e0, value_row_stride,
                                         num_queries, width, p.vector_output_grad, nullptr, 0);
    tc::block_load_rows<key_capacity, value_slab>(
        entry_state16, ldv, p.entry_states + (c * H + h) * K * V + e0, V, K, width,
        p.vector_value_operands, nullptr, 0);
    tc::block_load_rows<key_capacity, value_slab>(
        state_grad16, ldv, p.state_grads + (c * H + h) * K * V + e0, V, K, width,
        p.vector_value_operands, nullptr, 0);
  };
  const auto multiply_value_slab = [&](int e0) {
    const int extent = 16 * ((min(value_slab, V - e0) + 15) / 16);
    const bool first = e0 == 0;
    tc::warp_mma<1, 4, false, true>(solve_grad, value_solve16, ldv, band_row, entry_state16, ldv,
                                    32 * quarter, 0, extent);
    tc::warp_mma<1, 4, false, true>(decayed_grad, new_values16, ldv, band_row, state_grad16, ldv,
                                    32 * quarter, 0, extent);
    if (coupling_block)
      warp_product_into<2>(value_solve16, new_values16, ldv, band_row, 16 * quarter, extent,
                           -1.0f, first, coupling, ldf);
    if (intra_block)
      warp_product_into<2>(output_grad16, new_values16, ldv, band_row, 16 * quarter, extent, 1.0f,
                           first, intra, ldf);
    if (band < query_tiles)
      warp_product_into<4>(output_grad16, entry_state16, ldv, band_row, 32 * quarter, extent,
                           1.0f, first, query_adjoint, ldkf);
  };
  load_value_slab(0);
  // G and beta after the copies are on their way: their stores into shared memory wait for the
  // loads, which held the copies of the first two warps back.
  for (int r = threadIdx.x; r < C; r += blockDim.x) {
    G[r] = r < L ? p.log_decay[first_row + r * H] : 0.0f;
    beta[r] = r < L ? tc::to_float(p.beta[first_row + r * H]) : 0.0f;
  }
  tc::block_wait_copies();
  __syncthreads();
  for (int e0 = 0;;) {
    multiply_value_slab(e0);
    e0 += value_slab;
    if (e0 >= V) break;
    __syncthreads();
    load_value_slab(e0);
    tc::block_wait_copies();
    __syncthreads();
  }
  __syncthreads();  // the last reads of dS, whose bytes dk's adjoint takes
  const float chunk_decay = G[L - 1];

  // Bk = beta exp(G) k and Kd = exp(G_L - G) k: dk's direct terms into its adjoint, and the
  // row sums k . dBk and k . (exp(G_L - G) o dKd), by quarters, for dbeta and the gate terms
  // s_r and x of Kd. Rows past L hold zero keys.
  {
    // A lane's rows are band_row + lane / 4 and 8 below (tensor_core::warp_for_each); its
    // factors and sums are named per row: arrays indexed by the row went to local memory.
    const int upper_row = band_row + lane / 4, lower_row = upper_row + 8;
    const float upper_decay = expf(chunk_decay - G[upper_row]),
                lower_decay = expf(chunk_decay - G[lower_row]);
    const float upper_weight = beta[upper_row] * expf(G[upper_row]),
                lower_weight = beta[lower_row] * expf(G[lower_row]);
    float upper_solve = 0.0f, lower_solve = 0.0f, upper_decayed = 0.0f, lower_decayed = 0.0f;
    tc::warp_for_each_pair(decayed_grad, band_row, 32 * quarter,
                           [&](int r, int d, float& x0, float& x1) {
                             const bool upper = r == upper_row;
                             const float2 key = pair_as_floats(keys + r * ldk + d);
                             x0 *= upper ? upper_decay : lower_decay;
                             x1 *= upper ? upper_decay : lower_decay;
                             (upper ? upper_decayed : lower_decayed) += key.x * x0 + key.y * x1;
                           });
    tc::warp_for_each_pair(solve_grad, band_row, 32 * quarter,
                           [&](int r, int d, float& x0, float& x1) {
                             const bool upper = r == upper_row;
                             const float2 key = pair_as_floats(keys + r * ldk + d);
                             x0 = -x0;
                             x1 = -x1;
                             (upper ? upper_solve : lower_solve) += key.x * x0 + key.y * x1;
                             x0 *= upper ? upper_weight : lower_weight;
                             x1 *= upper ? upper_weight : lower_weight;
                           });
    // The blocks are alike laid out: the direct terms are their sum, element by element.
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) decayed_grad[0][j][e] += solve_grad[0][j][e];
    tc::warp_for_each_pair(decayed_grad, band_row, 32 * quarter,
                           [&](int r, int d, float x0, float x1) {
                             tc::store_pair(key_adjoint + r * ldkf + d, x0, x1, true, true);
                           });
    float along_solve[2] = {upper_solve, lower_solve},
          along_decayed[2] = {upper_decayed, lower_decayed};
    fused_backward::warp_store_band_row_sums<C>(along_solve, band_row, quarter, solve_quarters);
    fused_backward::warp_store_band_row_sums<C>(along_decayed, band_row, quarter,
                                                decayed_quarters);
  }
  // Ad (i < r) and its beta-scaled form, exp(G_r - G_i) only where i <= r; the blocks outside
  // the masks hold zeros, which the products and dg's prefix sums read.
#pragma unroll
  for (int m = 0; m < pair_quads; ++m) {
    const auto [r, i0] = pair(m);
    float value[4] = {}, scaled[4] = {};
    if (coupling_block) {
      const Four coupling_grad = four_floats(coupling + r * ldf + i0);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = i0 + e;
        value[e] = r < L && i < r ? expf(G[r] - G[i]) * coupling_grad.x[e] : 0.0f;
        scaled[e] = beta[r] * value[e];
      }
    }
    tc::store_four(coupling16 + r * ldc + i0, value, 4, true);
    tc::store_four(scaled_coupling16 + r * ldc + i0, scaled, 4, true);
    tc::store_four(coupling + r * ldf + i0, scaled, 4, true);
  }
  // Md (i <= r_j), and with gates x of intra = d intra o intra.
#pragma unroll
  for (int m = 0; m < pair_quads; ++m) {
    const auto [j, i0] = pair(m);
    float masked[4] = {}, weighted[4] = {};
    if (intra_block) {
      const int r = query_position(j);
      const Four intra_grad = four_floats(intra + j * ldf + i0);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const bool inside = inside_intra(j, i0 + e);
        masked[e] = inside ? shape.scale * expf(G[r] - G[i0 + e]) * intra_grad.x[e] : 0.0f;
        weighted[e] = inside ? intra_grad.x[e] * intra_weights[m].x[e] : 0.0f;
      }
    }
    tc::store_four(intra16 + j * ldc + i0, masked, 4, true);
    if (gated) tc::store_four(intra + j * ldf + i0, weighted, 4, true);
  }
  // The products' sums stop where the masked operand's 16-wide blocks hold only zeros: Ad's
  // rows r of this band have entries at i < r only, so Y = Ad K needs i below band_row + 16
  // and (beta o Ad)^T K's rows i need r from band_row; Md's rows j, entries at i <= r_j only,
  // so Md K needs i up to r of the band's last query and Md^T Q's rows i need the queries from
  // the first with r_j >= band_row.
  const int coupling_columns_end = min(position_extent, band_row + 16);
  const int intra_columns_end =
      band_row < num_queries ? min(position_extent, 16 * (last_band_query_position / 16 + 1)) : 0;
  const int first_intra_row =
      band_row <= first_query ? 0 : (band_row - first_query + n - 1) / n;
  const int intra_rows_begin = min(16 * (first_intra_row / 16), 16 * query_tiles);
  __syncthreads();
  // A row's scalar terms, a thread a row: dbeta's exp(G) k . dBk + sum_e dBv_e v_e, the gate
  // terms s_r (Bk's, and exp(G_L) S_0's at the last row) and x of Kd.
  if (int(threadIdx.x) < L) {
    const int r = threadIdx.x;
    const float gate = expf(G[r]);
    const float along_solve = fused_backward::band_row_sum<C>(solve_quarters, r);
    dbeta[r] = gate * along_solve + value_step[0];
    from_start[r] = beta[r] * gate * along_solve +
                    (r == L - 1 ? expf(chunk_decay) * entry_decay[0] : 0.0f);
    decay_pairs[r] = fused_backward::band_row_sum<C>(decayed_quarters, r);
  }
  // dq's gated term, a warp a query (lane l its columns 4 l to 4 l + 3): Qg = scale exp(G_r)
  // q, whose adjoint q . dQg reaches back to the chunk start (s at the query's position).
  static_assert(key_capacity == 4 * 32, "a warp's lanes hold a row four columns each");
  constexpr int rows_per_warp = C / warps;
  const int column = 4 * lane;
#pragma unroll
  for (int k = 0; k < rows_per_warp; ++k) {
    const int j = warp + warps * k;
    if (j < num_queries) {
      const int r = query_position(j);
      const float weight = shape.scale * expf(G[r]);
      const Four query = four_as_floats(queries + j * ldk + column);
      const Four gated_query_grad = four_floats(query_adjoint + j * ldkf + column);
      float along = 0.0f, adjoint[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        adjoint[e] = weight * gated_query_grad.x[e];
        along += query.x[e] * adjoint[e];
      }
      tc::store_four(query_adjoint + j * ldkf + column, adjoint, 4, true);
      along = fused_backward::warp_sum(along);
      if (lane == 0) query_starts[j] = along;
    }
  }

  {  // Y = Ad K: dk += beta o Y, dbeta += k . Y
    tc::Block<1, 4> acc;
    tc::warp_fill(acc, 0.0f);
    tc::warp_mma<1, 4, false, false>(acc, coupling16, ldc, band_row, keys, ldk, 32 * quarter, 0,
                                     coupling_columns_end);
    float along[2] = {0.0f, 0.0f};
    tc::warp_for_each_pair(acc, band_row, 32 * quarter, [&](int r, int d, float y0, float y1) {
      if (r >= L || d >= K) return;
      const float2 key = pair_as_floats(keys + r * ldk + d);
      add_to_pair(key_adjoint + r * ldkf + d, beta[r] * y0, beta[r] * y1, d + 1 < K);
      along[(r - band_row) / 8] += key.x * y0;
      if (d + 1 < K) along[(r - band_row) / 8] += key.y * y1;
    });
    fused_backward::warp_store_band_row_sums<C>(along, band_row, quarter, step_grad_quarters);
  }
  if (gated && coupling_block) {  // x of A = (beta o Ad) o (K K^T), this warp's block
    tc::Block<1, 2> gram;
    tc::warp_fill(gram, 0.0f);
    tc::warp_mma<1, 2, false, true>(gram, keys, ldk, band_row, keys, ldk, 16 * quarter, 0,
                                    key_extent);
    tc::warp_for_each_pair(gram, band_row, 16 * quarter, [&](int r, int i, float x0, float x1) {
      float2& entries = *reinterpret_cast<float2*>(coupling + r * ldf + i);
      entries.x *= x0;
      entries.y *= x1;
    });
  }
  __syncthreads();

  {  // dk += (beta o Ad)^T K + Md^T Q; dq += Md K
    tc::Block<1, 4> acc;
    tc::warp_fill(acc, 0.0f);
    tc::warp_mma<1, 4, true, false>(acc, scaled_coupling16, ldc, band_row, keys, ldk, 32 * quarter,
                                    band_row, position_extent);
    tc::warp_mma<1, 4, true, false>(acc, intra16, ldc, band_row, queries, ldk, 32 * quarter,
                                    intra_rows_begin, 16 * query_tiles);
    tc::warp_for_each_pair(acc, band_row, 32 * quarter, [&](int i, int d, float z0, float z1) {
      if (i < L && d < K) add_to_pair(key_adjoint + i * ldkf + d, z0, z1, d + 1 < K);
    });
    if (band < query_tiles) {
      tc::warp_fill(acc, 0.0f);
      tc::warp_mma<1, 4, false, false>(acc, intra16, ldc, band_row, keys, ldk, 32 * quarter, 0,
                                       intra_columns_end);
      tc::warp_for_each_pair(acc, band_row, 32 * quarter, [&](int j, int d, float x0, float x1) {
        if (j < num_queries && d < K) add_to_pair(query_adjoint + j * ldkf + d, x0, x1, d + 1 < K);
      });
    }
  }
  // dg_t = dgamma at token t's first sub-step p: every term spanning p, each once
  // (chunk_gradients.hpp): sum_{r >= p} (s_r + sum_{i < p} x_ri of A) + sum_{r < p} x_r of Kd
  // + sum over the queries j at or after p of (Qg's s term, q_j . dQg_j, and sum_{i < p} x_ji
  // of intra). The inner sums over i < p, summed for each p on its own, took most of the
  // kernel's instructions (O(L^2) loads a position); they are the exclusive prefix sums along
  // the rows of x of A and x of intra, computed once, in place (a warp a row), and then each p
  // adds O(L) of them. Every dg_t remains a sum of its own terms: differences of running
  // totals instead (spanning(p + 1) - spanning(p)) lost all precision where the gates decay by
  // e^-20 a token.
  if (gated) {
    const auto prefix_rows = [&](float* tile, int rows) {
      for (int row = warp; row < rows; row += warps) {
        float2& entries = reinterpret_cast<float2*>(tile + row * ldf)[lane];
        const float first = entries.x, second = entries.y;
        const float inclusive = tc::warp_inclusive_sum(first + second);
        const float shifted = __shfl_up_sync(0xffffffffu, inclusive, 1);
        const float before = lane == 0 ? 0.0f : shifted;
        entries = make_float2(before, before + first);
      }
    };
    prefix_rows(coupling, L);
    prefix_rows(intra, num_queries);
  }
  __syncthreads();
  // The chunk's token starts are first_start + n s, the s spread over every warp, found with
  // one 64-bit division. Tested position by position, the divisions and the token's index took
  // 208 of the kernel's 3345 instructions a warp (ncu source counters, 8-2048-16-128-2), and
  // with n = 2 half the warps found no start among their positions.
  const int first_start = int((n - p0 % n) % n);
  const std::int64_t first_token = (p0 + first_start) / n;
  if (gated)
    for (int start = warp; first_start + n * start < L; start += warps) {
      const int position = first_start + n * start;
      float spanning = 0.0f;
      for (int r = lane; r < L; r += 32)
        spanning += r >= position ? from_start[r] + coupling[r * ldf + position] : decay_pairs[r];
      for (int j = lane; j < num_queries; j += 32)
        if (query_position(j) >= position) spanning += query_starts[j] + intra[j * ldf + position];
      spanning = fused_backward::warp_sum(spanning);
      if (lane == 0) p.gate_grad[(first_token + start) * H + h] = spanning;
    }

  // The rows, through the backward of the L2 normalisation.
  for (int r = warp; r < L; r += warps) {
    const std::int64_t row = (p0 + r) * H + h;
    const float factor = normalising ? p.key_norm[(p0 + r) * Hqk + hq] : 1.0f;
    if (p.key_grad_partial)
      warp_write_raw_row_grad(&key_adjoint[r * ldkf], &keys[r * ldk], K, factor, normalising,
                              p.four_wide_grads, p.key_grad_partial + row * K);
    else
      warp_write_raw_row_grad(&key_adjoint[r * ldkf], &keys[r * ldk], K, factor, normalising,
                              p.four_wide_grads, p.key_grad + row * K);
    if (lane == 0)
      p.step_grad[row] = tc::from_float<T>(
          dbeta[r] + fused_backward::band_row_sum<C>(step_grad_quarters, r));
  }
  for (int j = warp; j < num_queries; j += warps) {
    const std::int64_t row = (t0 + j) * H + h;
    const float factor = normalising ? p.query_norm[(t0 + j) * Hqk + hq] : 1.0f;
    if (p.query_grad_partial)
      warp_write_raw_row_grad(&query_adjoint[j * ldkf], &queries[j * ldk], K, factor,
                              normalising, p.four_wide_grads, p.query_grad_partial + row * K);
    else
      warp_write_raw_row_grad(&query_adjoint[j * ldkf], &queries[j * ldk], K, factor,
                              normalising, p.four_wide_grads, p.query_grad + row * K);
  }
}

/// Starts one block per (chunk, head) on Kokkos::Cuda's default stream.
template <class T>
void launch(const Params<T>& params) {
  fused::launch_kernel<gradients_kernel<T>>(params.shape.num_chunks * params.shape.heads,
                                            SharedLayout::bytes, params,
                                            "the chunk gradients kernel");
}

}  // namespace gdp::detail::chunk_gradients
