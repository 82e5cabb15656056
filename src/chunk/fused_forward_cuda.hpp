// SPDX-License-Identifier: Apache-2.0
// The fused forward on Kokkos::Cuda for 16-bit storage (bfloat16, float16), K <= 128 and
// chunks of at most 64 positions.
//
// One block of 512 threads walks the chunks of one (segment, head, block of state columns),
// a segment being a whole sequence in the sequential walk. Per chunk, all in shared memory and
// registers (ALGORITHM.md section 4; `o` the elementwise product, D_ri = exp(G_r - G_i)):
//
//   G, beta        cumulative log gates (a warp prefix sum) and steps
//   A              strictly_lower(diag(beta) (K K^T) o D), masked as it leaves the accumulators
//   QKm            scale (Q K^T) o D for i <= r, likewise
//   Tm             (I + A)^{-1} in float, by 16 x 16 blocks
//   -W, U          -(Tm diag(beta exp(G))) K,  (Tm diag(beta)) V
//   Vnew           U - W S
//   O              diag(scale exp(G)) (Q S) + QKm Vnew          (forward walks only)
//   S              exp(G_L) S + K^T (exp(G_L - G) o Vnew)
//
// The products run on the tensor cores (mma.sync with 16-bit operands in the storage type,
// float accumulation); G, beta, the gates, the masks and Tm's solve stay in float (the
// solve's block products on the tensor cores too, each a sum of three tf32 products to keep
// float's precision), and the gates are applied to float accumulators or folded into Tm's
// columns rather than to 16-bit copies of K, Q and V. The state lives in float accumulators
// for the whole walk, each warp owning a fixed 32-row block of it; a 16-bit copy in shared
// memory feeds the products that read it. exp(G_r - G_i) is evaluated only where r >= i.
//
// Where few walks would leave multiprocessors idle (the chunk-parallel plan: a few long
// sequences; or blocks of 64 state columns, two walks a head), the chunk's stage-1 work above
// (G to U) would sit on every walk's critical path, once per column block (and once more in
// the chunk-parallel outputs walk). There it runs instead as
// its own launch of the same kernel over every chunk at once, a few chunks a block
// (Stage::prepare, into StagedTiles: -W and QKm in 16 bits, U in float, the copies the walk
// would have multiplied or added), and the walks read the tiles (Stage::staged), their step
// per chunk reduced to Vnew, O and the state update, the next chunk's tiles copied in
// meanwhile. The staged walk gives the fused walk's
// results bit for bit: the same products in the same order, U never rounded. The backward's
// chunk-parallel saving walk is staged the same way (Stage::prepare_saving, whose blocks also
// save G, the read-out weights, Tm and -W, and Stage::staged_saving, which saves S_0 and Vnew).
//
// This is a plain CUDA kernel launched on the stream of Kokkos::Cuda's default instance
// rather than a Kokkos team functor: Kokkos 3.4 caps a team's shared memory at 48 KB (it never
// raises cudaFuncAttributeMaxDynamicSharedMemorySize), and one chunk's tiles take 185 KB.
#pragma once

#include <gdp/forward.hpp>

#include "chunk_layout.hpp"
#include "chunk_operands.hpp"
#include "common/problem_shape.hpp"
#include "common/team_dense_cuda.hpp"
#include "forward_plan.hpp"
#include "segment_map.hpp"

#include <Kokkos_Core.hpp>

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace gdp::detail {

namespace fused {

inline constexpr int chunk_capacity = 64;  ///< positions per chunk (chunk_size <= 64)
inline constexpr int key_capacity = 128;   ///< K <= 128, zero-padded to a multiple of 16
inline constexpr int warps = 16, threads = 32 * warps;

/// What one launch of forward_kernel does with each chunk it takes.
enum class Stage {
  fused,    ///< the forward: the chunk's stage-1 tiles, then its step of the walk
  saving,   ///< as fused, writing what the backward reads too (SavedForBackward)
  prepare,  ///< the stage-1 tiles alone, into StagedTiles; no state
  staged,   ///< the forward's walk, its stage-1 tiles read from StagedTiles
  /// The chunk-parallel saving walk's two halves: prepare writing also what the backward
  /// reads of each chunk alone (G, the read-out weights, Tm, -W), then staged writing also
  /// the chunk-entry states and Vnew.
  prepare_saving,
  staged_saving,
};

/// Whether a stage computes the stage-1 tiles itself (else reads them from StagedTiles).
__host__ __device__ constexpr bool stage_computes_tiles(Stage mode) {
  return mode != Stage::staged && mode != Stage::staged_saving;
}
/// Whether a stage carries a state through the chunks.
__host__ __device__ constexpr bool stage_walks(Stage mode) {
  return mode != Stage::prepare && mode != Stage::prepare_saving;
}
/// Whether a stage writes (its part of) SavedForBackward.
__host__ __device__ constexpr bool stage_saves(Stage mode) {
  return mode == Stage::saving || mode == Stage::prepare_saving || mode == Stage::staged_saving;
}

/// Byte offsets of the tiles in shared memory, for blocks of 16 * ValueTiles state columns.
/// Leading dimensions: 16-bit tiles of K columns ldk, of value columns ldv, of chunk
/// positions ldc; float tiles of chunk positions ldf (all padded against bank conflicts).
/// A stage gets only the tiles it uses. Stage::staged reads its -W and QKm, so it has no A,
/// Tm or weighted copies of Tm, and it keeps two of each tile it copies in (K, Q, -W, QKm):
/// the next chunk's arrive while this one's are multiplied. Stage::prepare carries no state
/// and reads out nothing, so it has neither S nor exp(G_L - G) o Vnew, and two pairs of its
/// tiles share their bytes: Tm takes Q's (Q is dead once QKm is in shared memory, a barrier
/// before the inversion writes Tm) and -W takes A's (the inversion, the last reader of A,
/// ends with a barrier). For 128 columns the fused and saving walks take 185 KB and the
/// staged walk 189 KB, one block a multiprocessor; the prepare takes 100 KB, two blocks.
template <int ValueTiles, Stage Mode>
struct SharedLayout {
  static constexpr bool walks = stage_walks(Mode);                    ///< S, exp(G_L - G) o Vnew
  static constexpr bool computes_tiles = stage_computes_tiles(Mode);  ///< A, Tm, its copies
  static constexpr int value_capacity = 16 * ValueTiles;
  static constexpr int ldk = key_capacity + 8, ldv = value_capacity + 8;
  static constexpr int ldc = chunk_capacity + 8, ldf = chunk_capacity + 4;
  static constexpr std::size_t key_tile = std::size_t(chunk_capacity) * ldk * 2;
  static constexpr std::size_t value_tile = std::size_t(chunk_capacity) * ldv * 2;
  static constexpr std::size_t position_tile = std::size_t(chunk_capacity) * ldc * 2;
  static constexpr std::size_t float_tile = std::size_t(chunk_capacity) * ldf * 4;
  static constexpr std::size_t state_tile = std::size_t(key_capacity) * ldv * 2;
  static_assert(key_tile == float_tile, "Tm and -W take the bytes of Q and A in Stage::prepare");
  /// `bytes` where the stage uses the tile, else nothing.
  static constexpr std::size_t when(bool used, std::size_t bytes) { return used ? bytes : 0; }

  /// Copies of K, Q, -W and QKm: the one being multiplied and the one being copied in.
  static constexpr int buffers = computes_tiles ? 1 : 2;
  static constexpr std::size_t keys = 0;                           ///< K
  static constexpr std::size_t queries = keys + buffers * key_tile;        ///< Q
  static constexpr std::size_t negated_w = queries + buffers * key_tile;   ///< -W
  static constexpr std::size_t values = negated_w + buffers * key_tile;    ///< V, then Vnew
  static constexpr std::size_t decayed = values + value_tile;      ///< exp(G_L - G) o Vnew
  static constexpr std::size_t state = decayed + when(walks, value_tile);  ///< S, 16 bits
  static constexpr std::size_t products =                          ///< A
      walks ? state + state_tile : negated_w;
  static constexpr std::size_t tm =                                ///< Tm in float
      walks ? products + when(computes_tiles, float_tile) : queries;
  static constexpr std::size_t tm_keys =                           ///< Tm diag(beta exp(G))
      walks ? tm + when(computes_tiles, float_tile) : state;
  static constexpr std::size_t tm_values =                         ///< Tm diag(beta)
      tm_keys + when(computes_tiles, position_tile);
  static constexpr std::size_t masked_query_products =             ///< QKm
      tm_values + when(computes_tiles, position_tile);
  static constexpr std::size_t partial = masked_query_products + buffers * position_tile;
  static constexpr std::size_t gates =                             ///< G
      partial + when(computes_tiles, std::size_t(16) * tensor_core::inverse_partial_ld * 4);
  static constexpr std::size_t steps = gates + chunk_capacity * 4;        ///< beta
  static constexpr std::size_t key_weights = steps + chunk_capacity * 4;  ///< beta exp(G)
  static constexpr std::size_t tail_decays = key_weights + chunk_capacity * 4;  ///< exp(G_L - G)
  static constexpr std::size_t query_gates = tail_decays + chunk_capacity * 4;  ///< scale exp(G_r)
  static constexpr std::size_t bytes = query_gates + chunk_capacity * 4;
  /// Blocks a multiprocessor holds (227 KB of shared memory for blocks, 1 KB of it reserved
  /// for each): the kernel's register budget follows (64K registers for 512 threads each).
  static constexpr int blocks_per_multiprocessor = 2 * (bytes + 1024) <= 227 * 1024 ? 2 : 1;
};

/// What a sequential walk leaves for the backward (fused_backward_cuda.hpp): G [positions, H]
/// and the intra-chunk read-out weights [tokens, H, chunk_size] in float (the chunk gradients
/// compute with them), and in 16 bits the operands the reverse pass only multiplies on the
/// tensor cores, the very copies the walk multiplies: -W [positions, H, K], Tm [positions, H,
/// chunk_size] (zero right of the diagonal to the row's end), Vnew [positions, H, V] and the
/// chunk-entry states S_0 [chunks, H, K, V]. The backward then needs neither its per-chunk
/// stage nor a rerun of the state pass.
template <class T>
struct SavedForBackward {
  float *log_decay = nullptr, *intra = nullptr;
  T *negated_w = nullptr, *tm = nullptr, *new_values = nullptr, *entry_states = nullptr;
  int chunk_size = 0;  ///< the row length of tm and intra
  bool vector_w = false, vector_values = false;  ///< K, resp. V, a multiple of 8, rows aligned
  bool vector_tm = false;                        ///< chunk_size a multiple of 8, rows aligned
};

/// The stage-1 tiles of every chunk, written by Stage::prepare and read by Stage::staged:
/// -W [positions, H, K] and QKm [tokens, H, chunk_capacity] (row j: the query of token j
/// against its chunk's positions, zero beyond) in 16 bits, U [positions, H, V] in float.
template <class T>
struct StagedTiles {
  T* negated_w = nullptr;
  T* query_products = nullptr;
  float* values = nullptr;
  bool vector_w = false;  ///< K a multiple of 8, rows aligned
};

/// What one launch walks. T is the CUDA 16-bit type; every tensor is row-major.
template <class T>
struct Params {
  const T *q, *k, *v, *beta;  ///< [tokens, Hqk, K], [positions, Hqk, K], [positions, H, V], [positions, H]
  const float *g, *query_norm, *key_norm;  ///< [tokens, H]; [tokens, Hqk]; [positions, Hqk]; or null
  bool vector_keys, vector_queries, vector_values;  ///< rows start on 16-byte boundaries
  bool vector_output;  ///< o's rows and value blocks start on 4-byte boundaries
  const ChunkDescriptor* chunks;
  const SegmentDescriptor* segments;
  const float* initial_state;  ///< [walks, H, K, initial_columns] or null (zero)
  int initial_columns;
  float* final_state;  ///< [walks, H, K, final_columns] or null
  int final_columns;
  T* output;  ///< o [tokens, H, V] or null (no read-out)
  ColumnBlocking blocking;
  int heads, key_dim, value_dim, num_householder;
  int qk_heads, head_group;  ///< Hqk; H / Hqk: value head h reads q/k head h / head_group
  float scale;
  SavedForBackward<T> saved;  ///< read by the kernel that saves for the backward only
  StagedTiles<T> staged;      ///< Stage::prepare and Stage::staged only
};

/// Asks L2 for what `chunk` will load: the rows of K, V (this block's columns) and Q, one
/// 128-byte line a thread (at most 2 lines a row for K <= 128 and 128 value columns), then
/// beta and g, a thread a position: at most 3 * 128 + 2 * 64 = 512 threads.
template <class T>
__device__ __forceinline__ void prefetch_chunk(const Params<T>& p, const ChunkDescriptor& chunk,
                                               int h, const ColumnBlock& owned) {
  constexpr int line = 128 / sizeof(T);
  const int H = p.heads, Hqk = p.qk_heads, hq = h / p.head_group, K = p.key_dim,
            V = p.value_dim, L = chunk.length;
  const int key_lines = (K + line - 1) / line, value_lines = (owned.width + line - 1) / line;
  const int value_rows = owned.carries_map ? 0 : L;
  const int query_rows = p.output ? chunk.num_queries : 0;
  const std::int64_t p0 = chunk.first_position;
  const void* address = nullptr;
  int index = threadIdx.x;
  if (index < L * key_lines) {
    address = p.k + ((p0 + index / key_lines) * Hqk + hq) * K + (index % key_lines) * line;
  } else if ((index -= L * key_lines) < value_rows * value_lines) {
    address = p.v + ((p0 + index / value_lines) * H + h) * V + owned.value_first +
              (index % value_lines) * line;
  } else if ((index -= value_rows * value_lines) < query_rows * key_lines) {
    address = p.q + ((chunk.first_query_token + index / key_lines) * Hqk + hq) * K +
              (index % key_lines) * line;
  } else if ((index -= query_rows * key_lines) < L) {
    address = p.beta + (p0 + index) * H + h;
  } else if ((index -= L) < L && p.g) {
    address = p.g + ((p0 + index) / p.num_householder) * H + h;
  }
  if (address) asm volatile("prefetch.global.L2 [%0];\n" ::"l"(address));
}

/// prefetch_chunk for Stage::staged: what its walk loads where it uses it, not copied a chunk
/// ahead as K, Q, -W and QKm are: the rows of U (this block's columns: at most four 128-byte
/// lines a row), then beta and g of `chunk`, one line a thread. Thread t takes line t / 64 of
/// U's row t % 64, or (t >= 256) a row of beta or of g, with no divisions by run-time values.
template <class T>
__device__ __forceinline__ void prefetch_staged_chunk(const Params<T>& p,
                                                      const ChunkDescriptor& chunk, int h,
                                                      const ColumnBlock& owned) {
  static_assert(chunk_capacity == 64 && threads >= 4 * 64 + 2 * 64 + 1,
                "a thread a line: four of U's lines a row, beta's and g's rows");
  const int H = p.heads, V = p.value_dim, L = chunk.length, n = p.num_householder;
  const std::int64_t p0 = chunk.first_position;
  const int index = threadIdx.x, row = index % 64, value_lines = (owned.width + 31) / 32;
  const void* address = nullptr;
  if (index < 4 * 64) {
    if (!owned.carries_map && row < L && index / 64 < value_lines)
      address = p.staged.values + ((p0 + row) * H + h) * V + owned.value_first + (index / 64) * 32;
  } else if (index < 5 * 64) {
    if (row < L) address = p.beta + (p0 + row) * H + h;
  } else if (index < 6 * 64 + 1) {
    if (p.g && index - 5 * 64 < (L + n - 1) / n + 1) address = p.g + (p0 / n + index - 5 * 64) * H + h;
  }
  if (address) asm volatile("prefetch.global.L2 [%0];\n" ::"l"(address));
}

/// Warp w owns band w / 4 (16 positions or queries; 32 rows of the state) and quarter w % 4 of
/// the columns of every product. Mode (Stage) is a compile-time choice, so that the forward's
/// own kernel carries none of the others' work (as run-time branches, saving for the backward
/// cost the forward 16% on an H200).
template <int ValueTiles, Stage Mode, class T>
__global__ void __launch_bounds__(threads, (SharedLayout<ValueTiles, Mode>::blocks_per_multiprocessor))
    forward_kernel(const Params<T> p) {
  constexpr bool SavesForBackward = stage_saves(Mode);
  constexpr bool computes_tiles = stage_computes_tiles(Mode);  ///< A, QKm, Tm, -W and U
  constexpr bool walks = stage_walks(Mode);                    ///< carries a state
  namespace tc = tensor_core;
  using Layout = SharedLayout<ValueTiles, Mode>;
  constexpr int C = chunk_capacity, ldk = Layout::ldk, ldv = Layout::ldv, ldc = Layout::ldc,
                ldf = Layout::ldf;
  constexpr int value_tiles = ValueTiles / 2;  ///< 8-column tiles of a warp's value columns
  constexpr int quarter_columns = Layout::value_capacity / 4;
  extern __shared__ __align__(128) unsigned char shared[];
  // K, Q, -W and QKm: Layout::buffers copies of each (Stage::staged: a segment's chunk i in
  // copy i % 2), each taken for the chunk at hand below.
  T* const key_copies = reinterpret_cast<T*>(shared + Layout::keys);
  T* const query_copies = reinterpret_cast<T*>(shared + Layout::queries);
  T* const negated_w_copies = reinterpret_cast<T*>(shared + Layout::negated_w);
  T* const query_product_copies = reinterpret_cast<T*>(shared + Layout::masked_query_products);
  constexpr std::size_t key_copy = Layout::key_tile / sizeof(T);
  constexpr std::size_t position_copy = Layout::position_tile / sizeof(T);
  T* const values = reinterpret_cast<T*>(shared + Layout::values);
  T* const decayed = reinterpret_cast<T*>(shared + Layout::decayed);
  T* const state16 = reinterpret_cast<T*>(shared + Layout::state);
  float* const products = reinterpret_cast<float*>(shared + Layout::products);
  float* const tm = reinterpret_cast<float*>(shared + Layout::tm);
  T* const tm_keys = reinterpret_cast<T*>(shared + Layout::tm_keys);
  T* const tm_values = reinterpret_cast<T*>(shared + Layout::tm_values);
  float* const partial = reinterpret_cast<float*>(shared + Layout::partial);
  float* const gates = reinterpret_cast<float*>(shared + Layout::gates);
  float* const steps = reinterpret_cast<float*>(shared + Layout::steps);
  float* const key_weights = reinterpret_cast<float*>(shared + Layout::key_weights);
  float* const tail_decays = reinterpret_cast<float*>(shared + Layout::tail_decays);
  float* const query_gates = reinterpret_cast<float*>(shared + Layout::query_gates);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int band = warp / 4, quarter = warp % 4;

  const int blocks = p.blocking.count(), H = p.heads, K = p.key_dim, V = p.value_dim,
            n = p.num_householder;
  const std::int64_t unit = blockIdx.x;
  const ColumnBlock owned = p.blocking(int(unit % blocks));
  const int h = int((unit / blocks) % H), Hqk = p.qk_heads, hq = h / p.head_group;
  const std::int64_t walk = unit / (std::int64_t(blocks) * H);
  const SegmentDescriptor segment = p.segments[walk];
  const int key_extent = 16 * ((K + 15) / 16), width = owned.width;
  const SavedForBackward<T>& saved = p.saved;
  // What depends on the (chunk, head) only is saved (or staged) by the first column block.
  const bool saves_chunk = SavesForBackward && owned.value_first == 0;
  const int CW = saved.chunk_size;
  // The queries a chunk reads out: the backward's walk has no output but saves the read-out
  // weights where it computes them; the prepare computes QKm for the staged outputs walk.
  const auto queries_of = [&](const ChunkDescriptor& chunk) {
    return (SavesForBackward && computes_tiles) || !walks || p.output ? chunk.num_queries : 0;
  };
  // Copies the rows of K and Q that `chunk` multiplies into copy `copy`.
  const auto copy_keys_and_queries = [&](const ChunkDescriptor& chunk, int copy) {
    const std::int64_t first_position = chunk.first_position, first_token = chunk.first_query_token;
    tc::block_load_rows<C, key_capacity>(
        key_copies + copy * key_copy, ldk, p.k + (first_position * Hqk + hq) * K,
        std::int64_t(Hqk) * K, chunk.length, K, p.vector_keys,
        p.key_norm ? p.key_norm + first_position * Hqk + hq : nullptr, Hqk);
    if (queries_of(chunk) > 0)
      tc::block_load_rows<C, key_capacity>(
          query_copies + copy * key_copy, ldk, p.q + (first_token * Hqk + hq) * K,
          std::int64_t(Hqk) * K, queries_of(chunk), K, p.vector_queries,
          p.query_norm ? p.query_norm + first_token * Hqk + hq : nullptr, Hqk);
  };
  // Stage::staged: K, Q and the staged -W and QKm of `chunk` into copy `copy`.
  const auto copy_staged_tiles = [&](const ChunkDescriptor& chunk, int copy) {
    const std::int64_t first_position = chunk.first_position, first_token = chunk.first_query_token;
    copy_keys_and_queries(chunk, copy);
    tc::block_load_rows<C, key_capacity>(
        negated_w_copies + copy * key_copy, ldk, p.staged.negated_w + (first_position * H + h) * K,
        std::int64_t(H) * K, chunk.length, K, p.staged.vector_w, nullptr, 0);
    if (queries_of(chunk) > 0)
      tc::block_load_rows<C, C>(query_product_copies + copy * position_copy, ldc,
                                p.staged.query_products + (first_token * H + h) * C,
                                std::int64_t(H) * C, queries_of(chunk), C, true, nullptr, 0);
  };

  // S_0 of chunk c, from the 16-bit copy the last barrier published: its 16-byte stores queue
  // behind this chunk's copies in, not ahead of them.
  const auto save_entry_state = [&](std::int64_t c) {
    tc::block_store_rows<Layout::value_capacity>(
        state16, ldv, saved.entry_states + (c * H + h) * K * V + owned.value_first, V, K,
        width, saved.vector_values);
  };

  // The state: this warp's 32 x quarter_columns block in float accumulators, all of it in 16
  // bits in shared memory.
  const int state_row0 = 32 * band, state_column0 = quarter_columns * quarter;
  tc::Block<2, value_tiles> state;
  const auto as_is = [](int, int, float x) { return x; };
  if constexpr (walks) {
    tc::warp_for_each(state, state_row0, state_column0, [&](int d, int e, float& x) {
      x = d >= K || e >= width ? 0.0f
          : owned.carries_map  ? owned.identity(d, e)
          : p.initial_state
              ? p.initial_state[((walk * H + h) * K + d) * p.initial_columns + owned.state_first + e]
              : 0.0f;
    });
    tc::warp_store(state, state16, ldv, state_row0, state_column0, as_is);
    __syncthreads();
  }

  const int band_row = 16 * band, value_column0 = quarter_columns * quarter;
  // Warp 0's inputs to G (log gates on the token starts, else 0) and beta for positions
  // 2 lane and 2 lane + 1 of a chunk. The walks load them a chunk ahead: loaded where they are
  // used, the whole block waited for them at the step's first barrier. The prepare (64
  // registers) loads them there, as four more live registers spilled; its other block a
  // multiprocessor covers the wait.
  constexpr bool gates_ahead = walks;
  float gate_inputs[2] = {}, step_inputs[2] = {};
  const auto load_gate_inputs = [&](const ChunkDescriptor& chunk) {
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int r = 2 * lane + u;
      const std::int64_t position = chunk.first_position + r;
      const bool inside = r < chunk.length;
      gate_inputs[u] = inside && p.g && position % n == 0 ? p.g[(position / n) * H + h] : 0.0f;
      step_inputs[u] = inside ? tc::to_float(p.beta[position * H + h]) : 0.0f;
    }
  };
  if (gates_ahead && warp == 0 && segment.first_chunk < segment.end_chunk)
    load_gate_inputs(p.chunks[segment.first_chunk]);
  if constexpr (!computes_tiles) {  // the first chunk's tiles, in their own group
    if (segment.first_chunk < segment.end_chunk) copy_staged_tiles(p.chunks[segment.first_chunk], 0);
    tc::block_commit_copies();
  }
  for (std::int64_t c = segment.first_chunk; c < segment.end_chunk; ++c) {
    const ChunkDescriptor chunk = p.chunks[c];
    const int copy = Layout::buffers == 2 ? int((c - segment.first_chunk) % 2) : 0;
    T* const keys = key_copies + copy * key_copy;
    T* const queries = query_copies + copy * key_copy;
    T* const negated_w = negated_w_copies + copy * key_copy;
    T* const masked_query_products = query_product_copies + copy * position_copy;
    const int L = chunk.length, num_queries = queries_of(chunk);
    const int query_tiles = (num_queries + 15) / 16, first_query = chunk.first_query_local;
    const std::int64_t p0 = chunk.first_position, t0 = chunk.first_query_token;

    if (warp == 0) {  // G (a prefix sum over the lanes, two positions each) and what it gives
      if (!gates_ahead) load_gate_inputs(chunk);
      const float pair_sum = gate_inputs[0] + gate_inputs[1];
      steps[2 * lane] = step_inputs[0];
      steps[2 * lane + 1] = step_inputs[1];
      const float inclusive = tc::warp_inclusive_sum(pair_sum);
      gates[2 * lane] = inclusive - pair_sum + gate_inputs[0];
      gates[2 * lane + 1] = inclusive;
      __syncwarp();
      const float last = gates[L - 1];
#pragma unroll
      for (int u = 0; u < 2; ++u) {
        const int r = 2 * lane + u;
        key_weights[r] = steps[r] * expf(gates[r]);
        tail_decays[r] = expf(last - gates[r]);
        query_gates[r] =
            r < num_queries ? p.scale * expf(gates[first_query + r * n]) : 0.0f;
      }
    }
    tc::Block<1, value_tiles> fresh;  // U, then Vnew
    if constexpr (computes_tiles) {
      copy_keys_and_queries(chunk, copy);
      tc::block_load_rows<C, Layout::value_capacity>(
          values, ldv, p.v + (p0 * H + h) * V + owned.value_first, std::int64_t(H) * V,
          owned.carries_map ? 0 : L, width, p.vector_values, nullptr, 0);
      if constexpr (SavesForBackward && walks) save_entry_state(c);
      tc::block_wait_copies();
    } else {
      // This chunk's tiles were copied during the last one; the next chunk's go into the
      // other copy (whose last readers finished before the last barrier) during this one.
      // (Its descriptor copied first: read through p.chunks, every field would be loaded again
      // after each asynchronous copy, whose asm may write memory.)
      if (c + 1 < segment.end_chunk) {
        const ChunkDescriptor next = p.chunks[c + 1];
        copy_staged_tiles(next, copy ^ 1);
      }
      if constexpr (SavesForBackward) save_entry_state(c);
      // U straight into the accumulators, its loads in flight with the copies above.
      // One float a load: paired loads make the compiler zero both registers first, and
      // those moves wait on the loads still in flight into them (profiled, sixth session).
      tc::warp_for_each(fresh, band_row, value_column0, [&](int i, int e, float& x) {
        x = !owned.carries_map && i < L && e < width
                ? p.staged.values[((p0 + i) * H + h) * V + owned.value_first + e]
                : 0.0f;
      });
      tc::block_wait_copies_before_newest();
    }
    __syncthreads();
    if (computes_tiles && saves_chunk && threadIdx.x < L)
      saved.log_decay[(p0 + threadIdx.x) * H + h] = gates[threadIdx.x];
    if (c + 1 < segment.end_chunk) {  // the next chunk's operands, into L2 while this one computes
      const ChunkDescriptor next = p.chunks[c + 1];
      if constexpr (computes_tiles)
        prefetch_chunk(p, next, h, owned);
      else
        prefetch_staged_chunk(p, next, h, owned);
      if (gates_ahead && warp == 0) load_gate_inputs(next);
    }

    if constexpr (computes_tiles) {
      {  // A (blocks on and below the diagonal) and QKm (bands holding queries), masked
        const int column0 = 16 * quarter;
        if (quarter <= band) {
          tc::Block<1, 2> acc;
          tc::warp_fill(acc, 0.0f);
          tc::warp_mma<1, 2, false, true>(acc, keys, ldk, band_row, keys, ldk, column0, 0, key_extent);
          // A lane's two adjacent entries in one 8-byte store: one at a time, a lane's columns
          // 2t and 2t + 1 met in the same banks two ways in rows of 4 mod 32 floats.
          tc::warp_for_each_pair(acc, band_row, column0, [&](int r, int i, float x0, float x1) {
            *reinterpret_cast<float2*>(products + r * ldf + i) =
                make_float2(i < r ? steps[r] * expf(gates[r] - gates[i]) * x0 : 0.0f,
                            i + 1 < r ? steps[r] * expf(gates[r] - gates[i + 1]) * x1 : 0.0f);
          });
        }
        if (band < query_tiles) {
          tc::Block<1, 2> acc;
          tc::warp_fill(acc, 0.0f);
          tc::warp_mma<1, 2, false, true>(acc, queries, ldk, band_row, keys, ldk, column0, 0,
                                          key_extent);
          // The saving walk keeps the weights in float too.
          tc::warp_for_each_pair(acc, band_row, column0, [&](int j, int i, float x0, float x1) {
            const int r = first_query + j * n;
            const bool query = j < num_queries;
            const float w0 = query && i <= r ? p.scale * expf(gates[r] - gates[i]) * x0 : 0.0f;
            const float w1 =
                query && i + 1 <= r ? p.scale * expf(gates[r] - gates[i + 1]) * x1 : 0.0f;
            *reinterpret_cast<std::uint32_t*>(masked_query_products + j * ldc + i) =
                tc::pack<T>(w0, w1);
            if (saves_chunk && query && i < L)
              tc::store_pair(saved.intra + ((t0 + j) * H + h) * CW + i, w0, w1, i + 1 < L,
                             CW % 2 == 0);
          });
        }
      }
      __syncthreads();

      // Tm, and its columns weighted in 16 bits: beta exp(G) for W, beta for U.
      tc::block_invert_unit_lower_64(products, ldf, tm, ldf, partial,
                                     [&](int r, int i0, const float (&t)[8]) {
        float weights[8], betas[8];  // columns i0 .. i0 + 7 of beta exp(G) and beta
        tc::load_8_floats(weights, key_weights + i0);
        tc::load_8_floats(betas, steps + i0);
        alignas(16) T weighted_keys[8], weighted_values[8];
#pragma unroll
        for (int c = 0; c < 8; ++c) {
          weighted_keys[c] = tc::from_float<T>(t[c] * weights[c]);
          weighted_values[c] = tc::from_float<T>(t[c] * betas[c]);
        }
        *reinterpret_cast<uint4*>(tm_keys + r * ldc + i0) = *reinterpret_cast<const uint4*>(weighted_keys);
        *reinterpret_cast<uint4*>(tm_values + r * ldc + i0) = *reinterpret_cast<const uint4*>(weighted_values);
        if (saves_chunk && r < L && i0 < CW) {
          T* const row = saved.tm + ((p0 + r) * H + h) * CW;
          alignas(16) T rounded[8];
#pragma unroll
          for (int c = 0; c < 8; ++c) rounded[c] = tc::from_float<T>(t[c]);
          // Eight elements a store: stored one at a time, they held up the next stage
          // (long-scoreboard stalls), most of the saving walk's 1.05 -> 0.92 ms (H100).
          if (saved.vector_tm) {
            *reinterpret_cast<uint4*>(row + i0) = *reinterpret_cast<const uint4*>(rounded);
          } else {
#pragma unroll
            for (int c = 0; c < 8; ++c)
              if (i0 + c < CW) row[i0 + c] = rounded[c];
          }
        }
      });

      {  // -W = -(Tm diag(beta exp(G))) K; Tm is lower triangular
        tc::Block<1, 4> w;
        tc::warp_fill(w, 0.0f);
        tc::warp_mma<1, 4, false, false>(w, tm_keys, ldc, band_row, keys, ldk, 32 * quarter, 0,
                                         band_row + 16);
        tc::warp_store(w, negated_w, ldk, band_row, 32 * quarter, [](int, int, float x) { return -x; });
      }
      tc::warp_fill(fresh, 0.0f);
      if (!owned.carries_map)
        tc::warp_mma<1, value_tiles, false, false>(fresh, tm_values, ldc, band_row, values, ldv,
                                                   value_column0, 0, band_row + 16);
      __syncthreads();
      if (saves_chunk)
        tc::block_store_rows<key_capacity>(negated_w, ldk, saved.negated_w + (p0 * H + h) * K,
                                           std::int64_t(H) * K, L, K, saved.vector_w);
    }
    if constexpr (!walks) {
      if (owned.value_first == 0) {  // -W and QKm depend on the (chunk, head) only
        tc::block_store_rows<key_capacity>(negated_w, ldk, p.staged.negated_w + (p0 * H + h) * K,
                                           std::int64_t(H) * K, L, K, p.staged.vector_w);
        tc::block_store_rows<C>(masked_query_products, ldc,
                                p.staged.query_products + (t0 * H + h) * C, std::int64_t(H) * C,
                                num_queries, C, true);
      }
      tc::warp_store_global(fresh, p.staged.values + (p0 * H + h) * V + owned.value_first,
                            std::int64_t(H) * V, band_row, value_column0, L, width, V % 2 == 0,
                            as_is);
      __syncthreads();  // the tiles are read before the next chunk's loads replace them
      continue;         // no state
    }

    // Vnew = U - W S, over the V it replaces (read by every warp before the barrier).
    tc::warp_mma<1, value_tiles, false, false>(fresh, negated_w, ldk, band_row, state16, ldv,
                                               value_column0, 0, key_extent);
    tc::warp_store(fresh, values, ldv, band_row, value_column0, as_is);
    tc::warp_store(fresh, decayed, ldv, band_row, value_column0,
                   [&](int i, int, float x) { return tail_decays[i] * x; });
    __syncthreads();
    if constexpr (SavesForBackward && walks)
      tc::block_store_rows<Layout::value_capacity>(
          values, ldv, saved.new_values + (p0 * H + h) * V + owned.value_first,
          std::int64_t(H) * V, L, width, saved.vector_values);

    // O = diag(scale exp(G)) (Q S) + QKm Vnew (the saving walk only for a forward's call)
    // Each band of queries is read out by the warps of one band of positions, or, with half
    // the bands or fewer holding queries (n >= 2) and value blocks that halve into whole mma
    // tiles, by those of two bands, each taking half of the quarter's columns: the other
    // warps would otherwise wait at the barrier below. For 128-column blocks this took the
    // four fused walks of an 8-2048-16-128-2 training step from 4.36 to 4.01 ms (H100); for
    // 64-column blocks, odd tiles a half, it gained nothing and is not done.
    const auto read_out = [&](auto columns, int query_band, int column0) {
      constexpr int tiles = decltype(columns)::value;
      const int query_row = 16 * query_band;
      tc::Block<1, tiles> out;
      tc::warp_fill(out, 0.0f);
      tc::warp_mma<1, tiles, false, false>(out, queries, ldk, query_row, state16, ldv, column0, 0,
                                           key_extent);
      tc::warp_for_each(out, query_row, column0, [&](int j, int, float& x) { x *= query_gates[j]; });
      const int last_position = first_query + min(query_row + 15, num_queries - 1) * n;
      tc::warp_mma<1, tiles, false, false>(out, masked_query_products, ldc, query_row, values, ldv,
                                           column0, 0, 16 * (last_position / 16 + 1));
      tc::warp_store_global(out, p.output + (t0 * H + h) * V + owned.value_first,
                            std::int64_t(H) * V, query_row, column0, num_queries, width,
                            p.vector_output, as_is);
    };
    if (!SavesForBackward || p.output) {
      constexpr int half_tiles = value_tiles / 2;
      bool halved = false;
      if constexpr (half_tiles % 2 == 0) {  // warp_mma takes pairs of 8-column tiles
        halved = query_tiles <= 2;
        if (halved && band % 2 < query_tiles)
          read_out(std::integral_constant<int, half_tiles>{}, band % 2,
                   value_column0 + (band / 2) * 8 * half_tiles);
      }
      if (!halved && band < query_tiles)
        read_out(std::integral_constant<int, value_tiles>{}, band, value_column0);
    }
    __syncthreads();

    // S = exp(G_L) S + K^T (exp(G_L - G) o Vnew), then its 16-bit copy.
    const float decay = expf(gates[L - 1]);
    tc::warp_for_each(state, 0, 0, [&](int, int, float& x) { x *= decay; });
    tc::warp_mma<2, value_tiles, true, false>(state, keys, ldk, state_row0, decayed, ldv,
                                              state_column0, 0, 16 * ((L + 15) / 16));
    tc::warp_store(state, state16, ldv, state_row0, state_column0, as_is);
    __syncthreads();
  }

  if (walks && p.final_state)
    tc::warp_for_each(state, state_row0, state_column0, [&](int d, int e, float& x) {
      if (d < K && e < width)
        p.final_state[((walk * H + h) * K + d) * p.final_columns + owned.state_first + e] = x;
    });
}

inline void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string("gdp: ") + what + ": " + cudaGetErrorName(status) +
                             ": " + cudaGetErrorString(status));
}

/// Starts `units` blocks of `threads` threads of Kernel with `bytes` of dynamic shared memory
/// on Kokkos::Cuda's default stream. Above 48 KB a kernel must be allowed its shared memory
/// first, once per kernel; `name` says which kernel in the errors. Shared by the fused
/// forward and the backward's kernels (src/backward/).
template <auto Kernel, class KernelParams>
void launch_kernel(std::int64_t units, std::size_t bytes, const KernelParams& params,
                   const char* name) {
  if (units == 0) return;
  static const cudaError_t configured =
      cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  if (configured != cudaSuccess)
    check_cuda(configured, (std::string("cannot give ") + name + " its shared memory").c_str());
  Kernel<<<dim3(unsigned(units)), dim3(threads), bytes, Kokkos::Cuda().cuda_stream()>>>(params);
  const cudaError_t started = cudaGetLastError();
  if (started != cudaSuccess) check_cuda(started, (std::string(name) + " did not start").c_str());
}

/// Starts one walk per (segment, head, column block) on Kokkos::Cuda's default stream.
template <int ValueTiles, Stage Mode, class T>
void launch(const Params<T>& params, std::int64_t walks) {
  launch_kernel<forward_kernel<ValueTiles, Mode, T>>(
      walks * params.heads * params.blocking.count(), SharedLayout<ValueTiles, Mode>::bytes, params,
      "the fused forward kernel");
}

template <Stage Mode = Stage::fused, class T>
void launch(int value_tiles, const Params<T>& params, std::int64_t walks) {
  if (value_tiles == 8)
    launch<8, Mode>(params, walks);
  else
    launch<4, Mode>(params, walks);
}

/// Whether rows of `row_length` elements of `element_bytes` each from `base` (a row-major
/// tensor) can move `group` elements at a time: every row start aligned to `group` elements.
inline bool grouped_rows(const void* base, std::int64_t row_length, int group,
                         std::size_t element_bytes) {
  return row_length % group == 0 &&
         reinterpret_cast<std::uintptr_t>(base) % (group * element_bytes) == 0;
}

/// Whether rows of `row_length` 16-bit elements from `base` (a row-major tensor) can move 16
/// bytes at a time: every row start 16-byte aligned.
inline bool vector_rows(const void* base, std::int64_t row_length) {
  return grouped_rows(base, row_length, 8, 2);
}

}  // namespace fused

template <class Scalar>
struct FusedForward<Kokkos::Cuda, Scalar,
                    std::enable_if_t<std::is_same<Scalar, bfloat16>::value ||
                                     std::is_same<Scalar, float16>::value>> {
  static constexpr bool available = true;
  using memory_space = Kokkos::CudaSpace;
  template <class T>
  using unmanaged_view =
      Kokkos::View<T, Kokkos::LayoutRight, memory_space, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  using T = tensor_core::device_type_t<Scalar>;

  static bool supports(const ProblemShape& shape, const ForwardOptions& options) {
    return shape.key_dim <= fused::key_capacity && options.chunk_size <= fused::chunk_capacity;
  }

  /// Blocks of 128 state columns where the (segment, head) walks then fill three quarters of
  /// the multiprocessors (one block each), else of 64: more walks, each redoing its chunks'
  /// stage-1 work.
  static int value_tiles(std::int64_t walks, int V, std::int64_t multiprocessors) {
    return V > 64 && 4 * walks * ((V + 127) / 128) >= 3 * multiprocessors ? 8 : 4;
  }

  /// The most walks a (sequence, head) pair of value size V takes: blocks of 64 columns.
  static std::int64_t walks_per_pair(int V) { return (V + 63) / 64; }

  /// The forward under `plan` (forward_plan(), made with walks_per_pair).
  static void run(const ChunkOperands<Scalar, memory_space>& operands, const ChunkLayout& layout,
                  const DeviceChunkLayout<memory_space>& device_layout, const ForwardPlan& plan,
                  const unmanaged_view<const float****>& h0, const unmanaged_view<Scalar***>& o,
                  const unmanaged_view<float****>& ht, int scan_value_block) {
    const int H = operands.heads(), K = operands.key_dim(), V = operands.value_dim();
    const std::int64_t multiprocessors = concurrent_walks<Kokkos::Cuda>();
    const SegmentLayout segment_layout = walk_segments(layout, plan);
    const std::int64_t walks = std::int64_t(segment_layout.segments.size());
    const int tiles = value_tiles(walks * H, V, multiprocessors);
    // The walk that reads out o, from h0 or from each segment's entering state.
    const auto output_walk = [&](const DeviceSegmentLayout<memory_space>& segments) {
      fused::Params<T> walk = common_params(operands, device_layout, segments);
      reads_out(walk, o, {});
      walk.blocking = ColumnBlocking(K, V, 16 * tiles, false);
      return walk;
    };
    if (!plan.chunk_parallel) {
      const auto leased = lease_segments<memory_space>(segment_layout);
      fused::Params<T> walk = output_walk(leased.parts);
      walk.initial_state = h0.data();
      walk.final_state = ht.data();
      if (walk.blocking.count() == 1) {
        fused::launch(tiles, walk, walks);
        return;
      }
      // Several column blocks a head would each redo the chunks' stage-1 work: staged once.
      const auto staged = stage_tiles(operands, layout, device_layout);
      walk.staged = staged.parts.first;
      fused::launch<fused::Stage::staged>(tiles, walk, walks);
      return;
    }
    // Few walks: the segments' entering states, then the walks read the staged tiles.
    const auto leased = lease_segment_states<float, memory_space>(segment_layout, H, K, V, V);
    const SegmentStates<float, memory_space>& states = leased.parts;
    const auto staged =
        enter_segments(operands, layout, device_layout, states, tiles, h0, ht, scan_value_block);
    fused::Params<T> walk = output_walk(states.segments);
    walk.staged = staged.parts.first;
    walk.initial_state = states.entering.data();
    fused::launch<fused::Stage::staged>(tiles, walk, walks);
  }

  /// The backward's forward under `plan` (forward_plan(), as the forward's): a walk of every
  /// segment of `states` (every sequence, or chunk-parallel from each segment's entering
  /// state, enter_segments(), which leaves the segments' maps in `states` for the backward's
  /// reverse scan) that writes what `saved` points to (fused::SavedForBackward), and o and ht
  /// where not null (a forward for the backward; the backward's own rerun reads out nothing).
  /// Chunk-parallel, the prepare saves what depends on each chunk alone and the walks read
  /// the staged tiles (Stage::prepare_saving, Stage::staged_saving); the sequential walk
  /// computes its chunks' tiles itself.
  static void save_for_backward(const ChunkOperands<Scalar, memory_space>& operands,
                                const ChunkLayout& layout,
                                const DeviceChunkLayout<memory_space>& device_layout,
                                const ForwardPlan& plan,
                                const SegmentStates<float, memory_space>& states,
                                const unmanaged_view<const float****>& h0,
                                const unmanaged_view<Scalar***>& o,
                                const unmanaged_view<float****>& ht, int scan_value_block,
                                fused::SavedForBackward<T> saved) {
    const int K = operands.key_dim(), V = operands.value_dim();
    saved.vector_w = fused::vector_rows(saved.negated_w, K);
    saved.vector_tm = fused::vector_rows(saved.tm, saved.chunk_size);
    saved.vector_values =
        fused::vector_rows(saved.new_values, V) && fused::vector_rows(saved.entry_states, V);
    const std::int64_t walks = states.segments.count();
    const int tiles = value_tiles(walks * operands.heads(), V, concurrent_walks<Kokkos::Cuda>());
    fused::Params<T> walk = common_params(operands, device_layout, states.segments);
    reads_out(walk, o, ht);
    walk.initial_state = h0.data();
    walk.blocking = ColumnBlocking(K, V, 16 * tiles, false);
    walk.saved = saved;
    if (!plan.chunk_parallel) {
      fused::launch<fused::Stage::saving>(tiles, walk, walks);
      return;
    }
    const auto staged = enter_segments(operands, layout, device_layout, states, tiles, h0, ht,
                                       scan_value_block, &saved);
    walk.staged = staged.parts.first;
    walk.initial_state = states.entering.data();
    walk.final_state = nullptr;  // the scan wrote ht
    fused::launch<fused::Stage::staged_saving>(tiles, walk, walks);
  }

 private:
  /// Chunks one block of Stage::prepare takes in turn, so that each chunk's loads are in L2
  /// (prefetched during the previous one) rather than waited for: with one chunk a block,
  /// 1-32768-16-128-2's prepare took 14.5 us a chunk on each multiprocessor of an H200.
  static constexpr std::int64_t prepare_chunks = 8;

  /// Stage::prepare over every chunk of the call into tiles leased from the workspace cache
  /// (they must outlive the walks that read them): one block a (run of prepare_chunks chunks,
  /// head, column block). Given `saved`, Stage::prepare_saving: what the backward reads of
  /// each chunk alone goes there too.
  static auto stage_tiles(const ChunkOperands<Scalar, memory_space>& operands,
                          const ChunkLayout& layout,
                          const DeviceChunkLayout<memory_space>& device_layout,
                          const fused::SavedForBackward<T>* saved = nullptr) {
    const int H = operands.heads(), K = operands.key_dim(), V = operands.value_dim();
    const std::int64_t positions = std::int64_t(operands.key_rows.extent(0)),
                       tokens = std::int64_t(operands.query_rows.extent(0));
    const SegmentLayout runs = make_segment_layout(layout, prepare_chunks);
    auto leased = lease_workspace<memory_space>([&](WorkspaceCarver<memory_space>& carver) {
      fused::StagedTiles<T> tiles;
      tiles.negated_w = carver.template view<T*>(positions * H * K).data();
      tiles.query_products = carver.template view<T*>(tokens * H * fused::chunk_capacity).data();
      tiles.values = carver.template view<float*>(positions * H * V).data();
      tiles.vector_w = fused::vector_rows(tiles.negated_w, K);
      return std::make_pair(tiles, DeviceSegmentLayout<memory_space>(runs, carver));
    });
    const auto& [tiles, chunks] = leased.parts;
    const int value_tiles_each = value_tiles(chunks.count() * H, V, concurrent_walks<Kokkos::Cuda>());
    fused::Params<T> prepare = common_params(operands, device_layout, chunks);
    prepare.staged = tiles;
    prepare.blocking = ColumnBlocking(K, V, 16 * value_tiles_each, false);
    if (saved) {
      prepare.saved = *saved;
      fused::launch<fused::Stage::prepare_saving>(value_tiles_each, prepare, chunks.count());
    } else {
      fused::launch<fused::Stage::prepare>(value_tiles_each, prepare, chunks.count());
    }
    return leased;
  }

  /// The first half of the chunk-parallel plan over the segments of `states`: every chunk's
  /// stage-1 tiles (stage_tiles(), returned: the walks of the segments may read them), each
  /// segment's map [M | R] into states.maps by a staged walk from [I | 0] over `tiles` value
  /// tiles a block, then the scan of the maps over each sequence's segments (SegmentScan,
  /// blocks of `scan_value_block` columns), which gives the state entering every segment
  /// (states.entering) and ht (where not null). `saved`: as stage_tiles's.
  static auto enter_segments(const ChunkOperands<Scalar, memory_space>& operands,
                             const ChunkLayout& layout,
                             const DeviceChunkLayout<memory_space>& device_layout,
                             const SegmentStates<float, memory_space>& states, int tiles,
                             const unmanaged_view<const float****>& h0,
                             const unmanaged_view<float****>& ht, int scan_value_block,
                             const fused::SavedForBackward<T>* saved = nullptr) {
    const int K = operands.key_dim(), V = operands.value_dim();
    auto staged = stage_tiles(operands, layout, device_layout, saved);
    fused::Params<T> map_walk = common_params(operands, device_layout, states.segments);
    map_walk.staged = staged.parts.first;
    map_walk.final_state = states.maps.data();
    map_walk.final_columns = K + V;
    map_walk.blocking = ColumnBlocking(K, V, 16 * tiles, true);
    fused::launch<fused::Stage::staged>(tiles, map_walk, states.segments.count());
    SegmentScan<Kokkos::Cuda, float>(states.maps, h0, states.entering, ht, states.segments,
                                     scan_value_block)
        .run();
    return staged;
  }

  /// Makes `walk` read out o (null: no read-out) and leave ht (null: no final state), both
  /// [.., H, V] with whole rows of state columns; its initial state likewise.
  static void reads_out(fused::Params<T>& walk, const unmanaged_view<Scalar***>& o,
                        const unmanaged_view<float****>& ht) {
    const int V = walk.value_dim;
    walk.output = reinterpret_cast<T*>(o.data());
    walk.vector_output = V % 2 == 0 && reinterpret_cast<std::uintptr_t>(o.data()) % 4 == 0;
    walk.final_state = ht.data();
    walk.initial_columns = walk.final_columns = V;
  }

  /// The operands and shape of every walk of a call.
  static fused::Params<T> common_params(const ChunkOperands<Scalar, memory_space>& operands,
                                        const DeviceChunkLayout<memory_space>& device_layout,
                                        const DeviceSegmentLayout<memory_space>& segments) {
    const int K = operands.key_dim(), V = operands.value_dim();
    fused::Params<T> params{};
    params.q = reinterpret_cast<const T*>(operands.query_rows.data());
    params.k = reinterpret_cast<const T*>(operands.key_rows.data());
    params.v = reinterpret_cast<const T*>(operands.v.data());
    params.beta = reinterpret_cast<const T*>(operands.beta.data());
    params.g = operands.g.data();
    params.query_norm = operands.query_norm.data();
    params.key_norm = operands.key_norm.data();
    params.vector_keys = fused::vector_rows(params.k, K);
    params.vector_queries = fused::vector_rows(params.q, K);
    params.vector_values = fused::vector_rows(params.v, V);
    params.chunks = device_layout.chunks.data();
    params.segments = segments.segments.data();
    params.heads = operands.heads();
    params.qk_heads = operands.qk_heads();
    params.head_group = operands.head_group;
    params.key_dim = K;
    params.value_dim = V;
    params.num_householder = operands.num_householder;
    params.scale = operands.scale;
    return params;
  }
};

}  // namespace gdp::detail
