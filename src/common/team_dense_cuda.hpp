// SPDX-License-Identifier: Apache-2.0
// Dense building blocks on the tensor cores, for kernels on Kokkos::Cuda (compiled by nvcc for
// sm_80 or newer): products of 16-bit matrices held in shared memory with float accumulation in
// registers, through mma.sync (m16n8k16) fed by ldmatrix, and asynchronous row copies from
// global to shared memory. Kokkos 3.4 exposes no tensor-core operation; the portable team
// routines are in team_dense.hpp.
//
// Conventions. A matrix in shared memory is row-major with a leading dimension (elements per
// row) that is a multiple of 8, so that every 8-element row segment is 16-byte aligned as
// ldmatrix needs, and that is an odd multiple of 8 modulo 64 (columns + 8, say), so that the 8
// rows an ldmatrix reads fall into distinct banks. An operand op(X) of a product is X, or X^T
// read through ldmatrix's transposition. The accumulator of a 16 x 8 output tile is float[4]
// per lane: with g = lane / 4 and t = lane % 4, elements 0 and 1 sit at (g, 2t) and (g, 2t+1),
// elements 2 and 3 at (g + 8, 2t) and (g + 8, 2t+1) (the PTX ISA's mma.m16n8k16 layout).
// Functions named warp_* are called by all 32 lanes of a warp; block_* by the whole block.
#pragma once

#include <gdp/storage_types.hpp>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace gdp::detail::tensor_core {

/// The CUDA type whose bits a 16-bit storage type of gdp holds.
template <class Storage>
struct device_type;
template <>
struct device_type<bfloat16> {
  using type = __nv_bfloat16;
};
template <>
struct device_type<float16> {
  using type = __half;
};
template <class Storage>
using device_type_t = typename device_type<Storage>::type;

__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
template <class T>
__device__ T from_float(float x);
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __half from_float<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}

/// Two floats rounded to 16 bits and packed, the first in the low half.
template <class T>
__device__ __forceinline__ std::uint32_t pack(float low, float high) {
  const T values[2] = {from_float<T>(low), from_float<T>(high)};
  std::uint32_t packed;
  memcpy(&packed, values, sizeof packed);
  return packed;
}

/// x0 into to[0] and, where `second`, x1 into to[1], as Element (float, or a 16-bit type:
/// rounded): in one store where both go and `paired` (`to` aligned to two elements), else one
/// element a store.
template <class Element>
__device__ __forceinline__ void store_pair(Element* to, float x0, float x1, bool second,
                                           bool paired) {
  if (second && paired) {
    if constexpr (std::is_same<Element, float>::value)
      *reinterpret_cast<float2*>(to) = make_float2(x0, x1);
    else
      *reinterpret_cast<std::uint32_t*>(to) = pack<Element>(x0, x1);
    return;
  }
  to[0] = from_float<Element>(x0);
  if (second) to[1] = from_float<Element>(x1);
}

/// x[0, count) into to[0, count) as Element, as store_pair does two: in one store (16 bytes of
/// float, 8 of a 16-bit type) where `whole` (all four go, `to` aligned to four elements),
/// else one element a store.
template <class Element>
__device__ __forceinline__ void store_four(Element* to, const float (&x)[4], int count,
                                           bool whole) {
  if (whole) {
    if constexpr (std::is_same<Element, float>::value)
      *reinterpret_cast<float4*>(to) = make_float4(x[0], x[1], x[2], x[3]);
    else
      *reinterpret_cast<uint2*>(to) =
          make_uint2(pack<Element>(x[0], x[1]), pack<Element>(x[2], x[3]));
    return;
  }
#pragma unroll
  for (int e = 0; e < 4; ++e)
    if (e < count) to[e] = from_float<Element>(x[e]);
}

__device__ __forceinline__ std::uint32_t shared_address(const void* pointer) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(pointer));
}

/// Four 8 x 8 16-bit matrices: lane l gives the address of row l % 8 of matrix l / 8 and
/// receives two elements of each, transposed on the way when Transpose.
template <bool Transpose>
__device__ __forceinline__ void load_matrices(std::uint32_t (&r)[4], const void* row) {
  if constexpr (Transpose)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_address(row)));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(shared_address(row)));
}

/// ldmatrix of the 16 x 16 tile of X (row-major, leading dimension ld) at (row0, column0), as
/// four 8 x 8 matrices: matrix j covers the rows half (j % 2) and the columns half (j / 2) when
/// RowsFirst, else the rows half (j / 2) and the columns half (j % 2).
template <bool Transpose, bool RowsFirst, class T>
__device__ __forceinline__ void load_tile(std::uint32_t (&r)[4], const T* X, int ld, int row0,
                                          int column0) {
  const int lane = threadIdx.x % 32, matrix = lane / 8, row = lane % 8;
  const int row_half = RowsFirst ? matrix % 2 : matrix / 2;
  const int column_half = RowsFirst ? matrix / 2 : matrix % 2;
  load_matrices<Transpose>(r, X + (row0 + 8 * row_half + row) * ld + column0 + 8 * column_half);
}

/// The A operand of one mma: the 16 x 16 tile of op(A) at (m0, k0), A row-major with leading
/// dimension ld (op(A) = A^T when Transposed, A then holding [k][m]).
template <bool Transposed, class T>
__device__ __forceinline__ void load_a(std::uint32_t (&a)[4], const T* A, int ld, int m0, int k0) {
  if constexpr (Transposed)
    load_tile<true, false>(a, A, ld, k0, m0);
  else
    load_tile<false, true>(a, A, ld, m0, k0);
}

/// The B operands of two mmas: the 16 x 16 tile of op(B) at (k0, n0), B row-major with leading
/// dimension ld (op(B) = B^T when Transposed, B then holding [n][k]). b[0], b[1] feed columns
/// n0..n0+7, b[2], b[3] columns n0+8..n0+15.
template <bool Transposed, class T>
__device__ __forceinline__ void load_b(std::uint32_t (&b)[4], const T* B, int ld, int k0, int n0) {
  if constexpr (Transposed)
    load_tile<false, false>(b, B, ld, n0, k0);
  else
    load_tile<true, true>(b, B, ld, k0, n0);
}

// c += a b for one 16 x 8 x 16 tile of 16-bit inputs of the PTX type `type` (bf16 or f16).
#define GDP_MMA_M16N8K16(type, c, a, b0, b1)                                                      \
  asm("mma.sync.aligned.m16n8k16.row.col.f32." type "." type                            \
               ".f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"          \
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                                 \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1))

/// c += a b for one 16 x 8 x 16 tile.
template <class T>
__device__ __forceinline__ void mma(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                    std::uint32_t b1) {
  if constexpr (std::is_same<T, __nv_bfloat16>::value)
    GDP_MMA_M16N8K16("bf16", c, a, b0, b1);
  else
    GDP_MMA_M16N8K16("f16", c, a, b0, b1);
}

/// The accumulators of a warp's Rows x Columns block of 16 x 8 output tiles.
template <int Rows, int Columns>
using Block = float[Rows][Columns][4];

template <int Rows, int Columns>
__device__ __forceinline__ void warp_fill(Block<Rows, Columns>& acc, float value) {
#pragma unroll
  for (int i = 0; i < Rows; ++i)
#pragma unroll
    for (int j = 0; j < Columns; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[i][j][e] = value;
}

/// acc += op(A)[m0 .. m0 + 16 Rows, k] op(B)[k, n0 .. n0 + 8 Columns] over k in [k_begin, k_end)
/// (multiples of 16; Columns even). Each step loads Rows A tiles and Columns / 2 B tiles for
/// Rows * Columns mmas.
template <int Rows, int Columns, bool TransposeA, bool TransposeB, class T>
__device__ __forceinline__ void warp_mma(Block<Rows, Columns>& acc, const T* A, int lda, int m0,
                                         const T* B, int ldb, int n0, int k_begin, int k_end) {
  static_assert(Columns % 2 == 0, "B tiles come in pairs of 8 columns");
#pragma unroll 2
  for (int k = k_begin; k < k_end; k += 16) {
    std::uint32_t a[Rows][4], b[Columns / 2][4];
#pragma unroll
    for (int i = 0; i < Rows; ++i) load_a<TransposeA>(a[i], A, lda, m0 + 16 * i, k);
#pragma unroll
    for (int j = 0; j < Columns / 2; ++j) load_b<TransposeB>(b[j], B, ldb, k, n0 + 16 * j);
#pragma unroll
    for (int i = 0; i < Rows; ++i)
#pragma unroll
      for (int j = 0; j < Columns; ++j)
        mma<T>(acc[i][j], a[i], b[j / 2][(j % 2) * 2], b[j / 2][(j % 2) * 2 + 1]);
  }
}

/// Calls f(row, column, acc_element&) for every element of the block, rows from m0 and
/// columns from n0.
template <int Rows, int Columns, class F>
__device__ __forceinline__ void warp_for_each(Block<Rows, Columns>& acc, int m0, int n0, F&& f) {
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
#pragma unroll
  for (int i = 0; i < Rows; ++i)
#pragma unroll
    for (int j = 0; j < Columns; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        f(m0 + 16 * i + g + 8 * (e / 2), n0 + 8 * j + 2 * t + e % 2, acc[i][j][e]);
}

/// Calls f(row, column, acc(row, column), acc(row, column + 1)) for every pair of adjacent
/// elements a lane holds (column even), rows from m0 and columns from n0; the two elements as
/// references where the block is not const.
template <int Rows, int Columns, class Element, class F>
__device__ __forceinline__ void warp_for_each_pair(Element (&acc)[Rows][Columns][4], int m0,
                                                   int n0, F&& f) {
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
#pragma unroll
  for (int i = 0; i < Rows; ++i)
#pragma unroll
    for (int j = 0; j < Columns; ++j)
#pragma unroll
      for (int half = 0; half < 2; ++half)
        f(m0 + 16 * i + g + 8 * half, n0 + 8 * j + 2 * t, acc[i][j][2 * half],
          acc[i][j][2 * half + 1]);
}

/// dst(row, column) = 16-bit value(row, column, acc element) for the whole block, two columns
/// per 32-bit store (dst row-major, leading dimension ld, even).
template <int Rows, int Columns, class T, class F>
__device__ __forceinline__ void warp_store(const Block<Rows, Columns>& acc, T* dst, int ld, int m0,
                                           int n0, F&& value) {
  warp_for_each_pair(acc, m0, n0, [&](int row, int column, float x0, float x1) {
    *reinterpret_cast<std::uint32_t*>(dst + row * ld + column) =
        pack<T>(value(row, column, x0), value(row, column + 1, x1));
  });
}

/// Starts an asynchronous copy of the 16 bytes at `from` (global) to `to` (shared), or of
/// zeros when not `inside` (then `from` is only a valid address, never read).
__device__ __forceinline__ void copy_16_bytes_async(void* to, const void* from, bool inside) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(to)),
               "l"(from), "r"(inside ? 16 : 0));
}

/// The RowsTotal x ColumnsTotal tile at dst (ColumnsTotal a multiple of 8) receives rows
/// [0, rows) and columns [0, columns) of a global matrix (row r at src + r * stride), each row
/// times factors[r * factor_stride] when factors is not null, and zeros elsewhere. With
/// `vectors` (every row start 16-byte aligned, columns a multiple of 8) and no factors, the
/// copies are asynchronous (cp.async, zero-filling the padding): block_wait_copies() before
/// the barrier that publishes them. A thread keeps its 8 columns and steps down the rows, its
/// addresses advanced rather than recomputed from (row, column) for every 16 bytes.
template <int RowsTotal, int ColumnsTotal, class T>
__device__ __forceinline__ void block_load_rows(T* dst, int ld, const T* src, std::int64_t stride,
                                                int rows, int columns, bool vectors,
                                                const float* factors, std::int64_t factor_stride) {
  constexpr int per_row = ColumnsTotal / 8;
  static_assert(32 % per_row == 0, "a block of whole warps covers whole rows");
  const int c0 = (threadIdx.x % per_row) * 8, row_step = blockDim.x / per_row;
  const std::int64_t source_step = row_step * stride;
  int r = threadIdx.x / per_row;
  T* to = dst + r * ld + c0;
  const T* from = src + r * stride + c0;
  if (vectors && !factors) {
    for (; r < RowsTotal; r += row_step, to += row_step * ld, from += source_step) {
      const bool inside = r < rows && c0 < columns;
      copy_16_bytes_async(to, inside ? from : src, inside);
    }
    return;
  }
  for (; r < RowsTotal; r += row_step, to += row_step * ld, from += source_step) {
    const float factor = r < rows && factors ? factors[r * factor_stride] : 1.0f;
    alignas(16) T chunk[8];
#pragma unroll
    for (int c = 0; c < 8; ++c)
      chunk[c] = r < rows && c0 + c < columns ? from_float<T>(factor * to_float(from[c]))
                                              : from_float<T>(0.0f);
    *reinterpret_cast<uint4*>(to) = *reinterpret_cast<const uint4*>(chunk);
  }
}

/// Row r of the Rows x Columns 16-bit tile at `tile` (leading dimension ld, Columns a multiple
/// of 8) times scales[r], in place, rounded as block_load_rows rounds its factors in: rows can
/// then be copied asynchronously before their factors are known.
template <int Rows, int Columns, class T>
__device__ __forceinline__ void block_scale_rows(T* tile, int ld, const float* scales) {
  constexpr int per_row = Columns / 8;
  for (int index = threadIdx.x; index < Rows * per_row; index += blockDim.x) {
    const int r = index / per_row, c0 = (index % per_row) * 8;
    alignas(16) T chunk[8];
    *reinterpret_cast<uint4*>(chunk) = *reinterpret_cast<const uint4*>(tile + r * ld + c0);
#pragma unroll
    for (int c = 0; c < 8; ++c) chunk[c] = from_float<T>(scales[r] * to_float(chunk[c]));
    *reinterpret_cast<uint4*>(tile + r * ld + c0) = *reinterpret_cast<const uint4*>(chunk);
  }
}

/// Rows [0, rows) and columns [0, columns) (columns <= ColumnsTotal) of the 16-bit tile at src
/// (leading dimension ld) into a global matrix (row r at dst + r * stride), the whole block
/// taking part: 16-byte stores with `vectors` (every row start 16-byte aligned, columns a
/// multiple of 8), a thread keeping its 8 columns down the rows as block_load_rows does; else
/// one element at a time.
template <int ColumnsTotal, class T>
__device__ __forceinline__ void block_store_rows(const T* src, int ld, T* dst, std::int64_t stride,
                                                 int rows, int columns, bool vectors) {
  if (vectors) {
    constexpr int per_row = ColumnsTotal / 8;
    static_assert(32 % per_row == 0, "a block of whole warps covers whole rows");
    const int c0 = (threadIdx.x % per_row) * 8, row_step = blockDim.x / per_row;
    if (c0 >= columns) return;
    const std::int64_t destination_step = row_step * stride;
    int r = threadIdx.x / per_row;
    const T* from = src + r * ld + c0;
    T* to = dst + r * stride + c0;
    for (; r < rows; r += row_step, from += row_step * ld, to += destination_step)
      *reinterpret_cast<uint4*>(to) = *reinterpret_cast<const uint4*>(from);
    return;
  }
  for (int index = threadIdx.x; index < rows * columns; index += blockDim.x) {
    const int r = index / columns, c = index % columns;
    dst[r * stride + c] = src[r * ld + c];
  }
}

/// The RowsTotal x ColumnsTotal 16-bit tile at dst receives `factor` times rows [0, rows) and
/// columns [0, columns) of a float matrix (row r at src + r * stride), and zeros elsewhere.
template <int RowsTotal, int ColumnsTotal, class T>
__device__ __forceinline__ void block_load_float_rows(T* dst, int ld, const float* src,
                                                      std::int64_t stride, int rows, int columns,
                                                      float factor) {
  constexpr int per_row = ColumnsTotal / 8;
  for (int index = threadIdx.x; index < RowsTotal * per_row; index += blockDim.x) {
    const int r = index / per_row, c0 = (index % per_row) * 8;
    alignas(16) T chunk[8];
#pragma unroll
    for (int c = 0; c < 8; ++c)
      chunk[c] = from_float<T>(
          r < rows && c0 + c < columns ? factor * __ldg(src + r * stride + c0 + c) : 0.0f);
    *reinterpret_cast<uint4*>(dst + r * ld + c0) = *reinterpret_cast<const uint4*>(chunk);
  }
}

/// value(row, column, x) for every element x of a warp's block of accumulators (rows from m0,
/// columns from n0) into rows [0, rows) and columns [0, columns) of a row-major matrix of
/// Element (float, or a 16-bit type: rounded) in global memory, row r at dst + r * stride; a
/// lane's two adjacent elements in one store where `pairs` (dst aligned to two elements, stride
/// and n0 even). Each of a lane's rows has its address computed once, its columns then constant
/// offsets, and a block wholly inside is stored with no test an element: with both per element
/// (and block_load_rows' addresses recomputed for every 16 bytes), the reverse pass executed
/// 446 million instructions at 8-2048-16-128-2, 330 million without (1.21 -> 1.10 ms, H100).
template <int Rows, int Columns, class Element, class F>
__device__ __forceinline__ void warp_store_global(const Block<Rows, Columns>& acc, Element* dst,
                                                  std::int64_t stride, int m0, int n0, int rows,
                                                  int columns, bool pairs, F&& value) {
  const int lane = threadIdx.x % 32, g = lane / 4, column0 = n0 + 2 * (lane % 4);
  const auto store = [&](auto whole_block) {
    constexpr bool whole = decltype(whole_block)::value;
#pragma unroll
    for (int i = 0; i < Rows; ++i)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = m0 + 16 * i + g + 8 * half;
        if (!whole && r >= rows) continue;
        Element* const row = dst + r * stride + column0;
#pragma unroll
        for (int j = 0; j < Columns; ++j) {
          const int c = column0 + 8 * j;
          // `whole ||` makes the tests compile-time constants in the whole block's branch
          // (which only `pairs` takes), where `pairs` alone would be a run-time test a store.
          if (whole || c < columns)
            store_pair(row + 8 * j, value(r, c, acc[i][j][2 * half]),
                       value(r, c + 1, acc[i][j][2 * half + 1]), whole || c + 1 < columns,
                       whole || pairs);
        }
      }
  };
  if (pairs && m0 + 16 * Rows <= rows && n0 + 8 * Columns <= columns)
    store(std::true_type{});
  else
    store(std::false_type{});
}

/// The sum of `x` over lanes 0 to this one of the (whole, converged) warp.
__device__ __forceinline__ float warp_inclusive_sum(float x) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int offset = 1; offset < 32; offset *= 2) {
    const float before = __shfl_up_sync(0xffffffffu, x, offset);
    if (lane >= offset) x += before;
  }
  return x;
}

/// Waits for this thread's asynchronous copies (a barrier must follow to publish them).
__device__ __forceinline__ void block_wait_copies() {
  asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;\n" ::: "memory");
}

/// Closes this thread's group of asynchronous copies issued since the last group closed, so
/// that block_wait_copies_before_newest() can tell them from later ones.
__device__ __forceinline__ void block_commit_copies() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

/// Closes this thread's newest group of asynchronous copies (as block_commit_copies()) and
/// waits for every earlier group, the newest left in flight (a barrier must follow to publish
/// what arrived): double buffering, the next chunk's copies overlapping this one's work.
__device__ __forceinline__ void block_wait_copies_before_newest() {
  asm volatile("cp.async.commit_group;\ncp.async.wait_group 1;\n" ::: "memory");
}

/// dst = the eight floats at src (shared or global, 16-byte aligned), in two 16-byte loads.
__device__ __forceinline__ void load_8_floats(float (&dst)[8], const float* src) {
  *reinterpret_cast<float4*>(dst) = *reinterpret_cast<const float4*>(src);
  *reinterpret_cast<float4*>(dst + 4) = *reinterpret_cast<const float4*>(src + 4);
}

/// x rounded to the tensor cores' tf32 (float with a 10-bit mantissa), as the bits of a float.
__device__ __forceinline__ std::uint32_t to_tf32(float x) {
  std::uint32_t rounded;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(rounded) : "f"(x));
  return rounded;
}

/// c += a b for one 16 x 8 x 8 tile of tf32 inputs (fragments as the PTX ISA's m16n8k8 lays
/// them out: with g = lane / 4 and t = lane % 4, a holds A's (g, t), (g + 8, t), (g, t + 4),
/// (g + 8, t + 4), b0 and b1 B's (t, g) and (t + 4, g)).
__device__ __forceinline__ void mma_tf32(float (&c)[4], const std::uint32_t (&a)[4],
                                         std::uint32_t b0, std::uint32_t b1) {
  asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/// c += A B for the float 16 x 8 block of A at `a` (row-major, leading dimension lda) and the
/// float 8 x 8 block of B at `b` (ldb), c in the accumulator layout of a 16 x 8 tile, to about
/// float's precision: each operand is split into a tf32 part and the tf32 rounding of the
/// rest, and three products are taken (the two rests' product lies below float's rounding).
/// The small products go first, so that they are not lost against the large one.
__device__ __forceinline__ void warp_mma_float_k8(float (&c)[4], const float* a, int lda,
                                                  const float* b, int ldb) {
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const float a_values[4] = {a[g * lda + t], a[(g + 8) * lda + t], a[g * lda + t + 4],
                             a[(g + 8) * lda + t + 4]};
  const float b_values[2] = {b[t * ldb + g], b[(t + 4) * ldb + g]};
  std::uint32_t a_big[4], a_small[4], b_big[2], b_small[2];
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    a_big[e] = to_tf32(a_values[e]);
    a_small[e] = to_tf32(a_values[e] - __uint_as_float(a_big[e]));
  }
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    b_big[e] = to_tf32(b_values[e]);
    b_small[e] = to_tf32(b_values[e] - __uint_as_float(b_big[e]));
  }
  mma_tf32(c, a_small, b_big[0], b_big[1]);
  mma_tf32(c, a_big, b_small[0], b_small[1]);
  mma_tf32(c, a_big, b_big[0], b_big[1]);
}

/// tm = (I + A)^{-1} in float (leading dimension ldt) for the 64 x 64 strictly lower
/// triangular float A (leading dimension lda; its diagonal and upper part are not read; a and
/// tm 16-byte aligned, lda and ldt multiples of 4), and entries(row, column0, values) once for
/// every eight consecutive elements of a row of the inverse (column0 a multiple of 8, values
/// a float[8]), zeros included (tm itself is left unwritten above the diagonal blocks).
/// By 16 x 16 blocks: the diagonal blocks by forward substitution (a thread per column), then
/// block row b from Tm_bj = -Tm_bb sum_{k=j}^{b-1} A_bk Tm_kj, on the tensor cores in three
/// tf32 products a float product (warp_mma_float_k8): warp 2 j + h takes columns 16 j + 8 h
/// to 16 j + 8 h + 7 of block row b, its sums passing through its own columns of `partial`
/// (16 x 48 floats, leading dimension inverse_partial_ld) into the second product's layout.
/// The entries last, by the whole block. Ends with a barrier. Needs at least six warps.
///
/// The substitution is the serial part (64 threads, the rest of the block waiting at the next
/// barrier), so it does nothing else: its rows of A come four floats a load, and the entries
/// (the callers' weighted 16-bit copies) wait for the last pass, where every thread takes
/// eight, for 16-byte stores. On the H100 the inversion with the entries in it was a third of
/// the stall samples of the prepare and of the fused walk; the block rows, as sums of float
/// products a thread an element, were then a quarter of the prepare's instructions, bound by
/// their shared-memory loads (docs/PERFORMANCE.md).
inline constexpr int inverse_partial_ld = 52;
template <class Entries>
__device__ __forceinline__ void block_invert_unit_lower_64(const float* a, int lda, float* tm,
                                                           int ldt, float* partial,
                                                           Entries&& entries) {
  constexpr int n = 64, block = 16;
  const int thread = threadIdx.x;
  if (thread < n) {
    const int base = (thread / block) * block, j = thread % block;
    float x[block];
#pragma unroll
    for (int r = 0; r < block; ++r) {
      const float* a_row = a + (base + r) * lda + base;
      float row[block];
#pragma unroll
      for (int q = 0; q < block; q += 4)
        if (q < r) *reinterpret_cast<float4*>(row + q) = *reinterpret_cast<const float4*>(a_row + q);
      float value = r == j ? 1.0f : 0.0f;
#pragma unroll
      for (int i = 0; i < r; ++i) value -= row[i] * x[i];
      x[r] = r < j ? 0.0f : value;
      tm[(base + r) * ldt + base + j] = x[r];
    }
  }
  __syncthreads();
  const int warp = thread / 32, lane = thread % 32, g = lane / 4, t = lane % 4;
#pragma unroll
  for (int b = 1; b < n / block; ++b) {
    const int row0 = block * b;
    if (warp < 2 * b) {
      const int j = warp / 2, column0 = block * j + 8 * (warp % 2);
      // sum_{k=j}^{b-1} A_bk Tm_kj: Tm_kj for k >= j only, Tm being unwritten above its
      // diagonal blocks (right of the diagonal, Tm_jj holds the zeros written above).
      float sums[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      for (int k = block * j; k < row0; k += 8)
        warp_mma_float_k8(sums, a + row0 * lda + k, lda, tm + k * ldt + column0, ldt);
      float* const own = partial + column0;
      own[g * inverse_partial_ld + 2 * t] = sums[0];
      own[g * inverse_partial_ld + 2 * t + 1] = sums[1];
      own[(g + 8) * inverse_partial_ld + 2 * t] = sums[2];
      own[(g + 8) * inverse_partial_ld + 2 * t + 1] = sums[3];
      __syncwarp();
      float block_row[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
      for (int k = 0; k < block; k += 8)
        warp_mma_float_k8(block_row, tm + row0 * ldt + row0 + k, ldt,
                          own + k * inverse_partial_ld, inverse_partial_ld);
      store_pair(tm + (row0 + g) * ldt + column0 + 2 * t, -block_row[0], -block_row[1], true,
                 true);
      store_pair(tm + (row0 + g + 8) * ldt + column0 + 2 * t, -block_row[2], -block_row[3],
                 true, true);
    }
    __syncthreads();
  }
  // The entries: eight consecutive columns of one row a thread, zeros above the diagonal blocks.
  for (int index = thread; index < n * n / 8; index += blockDim.x) {
    const int r = index / (n / 8), column0 = (index % (n / 8)) * 8;
    float values[8] = {};
    if (column0 / block <= r / block) load_8_floats(values, tm + r * ldt + column0);
    entries(r, column0, values);
  }
  __syncthreads();
}

}  // namespace gdp::detail::tensor_core
