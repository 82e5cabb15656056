// SPDX-License-Identifier: Apache-2.0
// Register-blocked building blocks for products of small row-major tiles on the host: a block
// of Rows x (Vectors SIMD vectors) accumulators that stays in registers while the depth loop
// streams rows of B and broadcasts entries of A, with the loads, stores and epilogues the
// host walk needs (src/chunk/host_fused_walk.hpp), and an exp that vectorises.
//
// The vectors are 64 bytes (an AVX-512 register; with narrower hardware the compiler splits
// them). With GCC or Clang they are the compilers' vector extensions, so that the
// accumulators are registers whatever the compiler's cost model thinks of the loops; other
// compilers (and nvcc, whose front end this header does not bet on) get arrays of lanes and
// `GDP_HOST_SIMD` loops, the same arithmetic.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

namespace gdp::detail::host {

inline constexpr int vector_bytes = 64;
/// Reals per SIMD vector: 16 floats, 8 doubles.
template <class Real>
inline constexpr int lanes = vector_bytes / int(sizeof(Real));

/// n rounded up to whole vectors of Real: the leading dimension of every tile, so that rows
/// start on a vector boundary and a row's last vector never reaches into the next row.
template <class Real>
constexpr int padded(int n) {
  return (n + lanes<Real> - 1) / lanes<Real> * lanes<Real>;
}

#if (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#define GDP_HOST_VECTOR_EXTENSIONS 1
#endif
// Full unrolling of the loops over a block's rows and vectors (their bounds are template
// arguments), so that every accumulator is a register of its own.
#if defined(GDP_HOST_VECTOR_EXTENSIONS) && defined(__clang__)
#define GDP_HOST_UNROLL _Pragma("unroll")
#elif defined(GDP_HOST_VECTOR_EXTENSIONS)
#define GDP_HOST_UNROLL _Pragma("GCC unroll 16")
#else
#define GDP_HOST_UNROLL
#endif
// Inlined into the callers' loops whatever the inliner's budget says: an exp that is called
// stays scalar, and a block whose methods are called keeps its accumulators in memory.
#if defined(GDP_HOST_VECTOR_EXTENSIONS)
#define GDP_HOST_INLINE inline __attribute__((always_inline))
#else
#define GDP_HOST_INLINE inline
#endif
// Vectorise a loop over independent lanes (OpenMP's simd directive, where OpenMP is on).
#if defined(_OPENMP) && !defined(__CUDACC__)
#define GDP_HOST_SIMD _Pragma("omp simd")
#else
#define GDP_HOST_SIMD
#endif

/// One SIMD vector of Real.
template <class Real>
struct Pack {
#ifdef GDP_HOST_VECTOR_EXTENSIONS
  typedef Real native __attribute__((vector_size(vector_bytes)));
  native v;
  GDP_HOST_INLINE static Pack zero() { return Pack{native{}}; }
  GDP_HOST_INLINE static Pack load(const Real* p) {
    Pack r;
    std::memcpy(&r.v, p, sizeof r.v);
    return r;
  }
  GDP_HOST_INLINE void store(Real* p) const { std::memcpy(p, &v, sizeof v); }
  GDP_HOST_INLINE void add_product(Real a, const Pack& b) { v += a * b.v; }
  GDP_HOST_INLINE void add_product(const Pack& a, const Pack& b) { v += a.v * b.v; }
  GDP_HOST_INLINE void scale(Real a) { v *= a; }
  Real operator[](int i) const { return v[i]; }
#else
  Real v[lanes<Real>];
  GDP_HOST_INLINE static Pack zero() {
    Pack r;
    for (int i = 0; i < lanes<Real>; ++i) r.v[i] = Real(0);
    return r;
  }
  GDP_HOST_INLINE static Pack load(const Real* p) {
    Pack r;
GDP_HOST_SIMD
    for (int i = 0; i < lanes<Real>; ++i) r.v[i] = p[i];
    return r;
  }
  GDP_HOST_INLINE void store(Real* p) const {
GDP_HOST_SIMD
    for (int i = 0; i < lanes<Real>; ++i) p[i] = v[i];
  }
  GDP_HOST_INLINE void add_product(Real a, const Pack& b) {
GDP_HOST_SIMD
    for (int i = 0; i < lanes<Real>; ++i) v[i] += a * b.v[i];
  }
  GDP_HOST_INLINE void add_product(const Pack& a, const Pack& b) {
GDP_HOST_SIMD
    for (int i = 0; i < lanes<Real>; ++i) v[i] += a.v[i] * b.v[i];
  }
  GDP_HOST_INLINE void scale(Real a) {
GDP_HOST_SIMD
    for (int i = 0; i < lanes<Real>; ++i) v[i] *= a;
  }
  Real operator[](int i) const { return v[i]; }
#endif
};

/// A block of C: Rows rows (row r at c + r * ldc) by Vectors vectors of columns, in
/// registers. Blocks at the bottom edge of a tile hold fewer rows (`rows` <= Rows): the
/// missing rows repeat the last one on input and are never stored.
template <class Real, int Rows, int Vectors>
struct Block {
  static constexpr int columns = Vectors * lanes<Real>;
  Pack<Real> acc[Rows][Vectors];

  GDP_HOST_INLINE void zero() {
GDP_HOST_UNROLL
    for (int r = 0; r < Rows; ++r)
GDP_HOST_UNROLL
      for (int j = 0; j < Vectors; ++j) acc[r][j] = Pack<Real>::zero();
  }

  /// acc = factor_r * C, factor_r = factors[r] (or 1 when factors is null).
  GDP_HOST_INLINE void load(const Real* c, long ldc, int rows, const Real* factors = nullptr) {
GDP_HOST_UNROLL
    for (int r = 0; r < Rows; ++r) {
      const int row = r < rows ? r : rows - 1;
GDP_HOST_UNROLL
      for (int j = 0; j < Vectors; ++j) {
        acc[r][j] = Pack<Real>::load(c + row * ldc + j * lanes<Real>);
        if (factors) acc[r][j].scale(factors[row]);
      }
    }
  }

  GDP_HOST_INLINE void scale(Real factor) {
GDP_HOST_UNROLL
    for (int r = 0; r < Rows; ++r)
GDP_HOST_UNROLL
      for (int j = 0; j < Vectors; ++j) acc[r][j].scale(factor);
  }

  /// acc += A B over `depth`: A(r, p) = a[r * a_row + p * a_depth], B row p at b + p * ldb.
  GDP_HOST_INLINE void multiply_add(const Real* a, long a_row, long a_depth, int rows, const Real* b, long ldb,
                    int depth) {
    const Real* a_rows[Rows];
GDP_HOST_UNROLL
    for (int r = 0; r < Rows; ++r) a_rows[r] = a + (r < rows ? r : rows - 1) * a_row;
    // Local accumulators: stores to the members could alias a and b, so the compiler would
    // write them back on every step.
    Pack<Real> sum[Rows][Vectors];
GDP_HOST_UNROLL
    for (int r = 0; r < Rows; ++r)
GDP_HOST_UNROLL
      for (int j = 0; j < Vectors; ++j) sum[r][j] = acc[r][j];
    for (int p = 0; p < depth; ++p) {
      Pack<Real> b_row[Vectors];
GDP_HOST_UNROLL
      for (int j = 0; j < Vectors; ++j) b_row[j] = Pack<Real>::load(b + p * ldb + j * lanes<Real>);
GDP_HOST_UNROLL
      for (int r = 0; r < Rows; ++r) {
        const Real a_value = a_rows[r][p * a_depth];
GDP_HOST_UNROLL
        for (int j = 0; j < Vectors; ++j) sum[r][j].add_product(a_value, b_row[j]);
      }
    }
GDP_HOST_UNROLL
    for (int r = 0; r < Rows; ++r)
GDP_HOST_UNROLL
      for (int j = 0; j < Vectors; ++j) acc[r][j] = sum[r][j];
  }

  /// Forward substitution inside the block: row r += sum_{i<r} L(r, i) row i, in order, with
  /// L(r, i) = l[r * ldl + i]; the rows above the block are already folded in.
  GDP_HOST_INLINE void substitute(const Real* l, long ldl) {
GDP_HOST_UNROLL
    for (int r = 1; r < Rows; ++r)
GDP_HOST_UNROLL
      for (int i = 0; i < r; ++i) {
        const Real factor = l[r * ldl + i];
GDP_HOST_UNROLL
        for (int j = 0; j < Vectors; ++j) acc[r][j].add_product(factor, acc[i][j]);
      }
  }

  /// C = acc for the block's rows (all `columns` columns: C's rows are padded).
  GDP_HOST_INLINE void store(Real* c, long ldc, int rows) const {
GDP_HOST_UNROLL
    for (int r = 0; r < Rows; ++r)
      if (r < rows)
GDP_HOST_UNROLL
        for (int j = 0; j < Vectors; ++j) acc[r][j].store(c + r * ldc + j * lanes<Real>);
  }

  /// C = factor_r * acc for the block's rows.
  GDP_HOST_INLINE void store_scaled(Real* c, long ldc, int rows, const Real* factors) const {
GDP_HOST_UNROLL
    for (int r = 0; r < Rows; ++r)
      if (r < rows)
GDP_HOST_UNROLL
        for (int j = 0; j < Vectors; ++j) {
          Pack<Real> scaled = acc[r][j];
          scaled.scale(factors[r]);
          scaled.store(c + r * ldc + j * lanes<Real>);
        }
  }

  /// out_r[e] = convert(acc(r, e)) for e < width <= columns, row r at out + r * ld: the
  /// block's rows leaving for an array that is not padded (and maybe of another type).
  template <class Out, class Convert>
  void store_to(Out* out, long ld, int rows, int width, Convert&& convert) const {
    for (int r = 0; r < rows; ++r) {
      Real row[columns];
GDP_HOST_UNROLL
      for (int j = 0; j < Vectors; ++j) acc[r][j].store(row + j * lanes<Real>);
      for (int e = 0; e < width; ++e) out[r * ld + e] = convert(row[e]);
    }
  }
};

/// Rows of a product tile in blocks of block_rows, columns in blocks of block_vectors
/// vectors (the last one narrower).
inline constexpr int block_rows = 6;
inline constexpr int block_vectors = 4;

/// Calls body(first_column, std::integral_constant<int, Vectors>) for the column blocks
/// covering `vectors` vectors: full blocks of block_vectors, then the remainder.
template <class Real, class Body>
inline void for_column_blocks(int vectors, Body&& body) {
  int j = 0;
  for (; j + block_vectors <= vectors; j += block_vectors)
    body(j * lanes<Real>, std::integral_constant<int, block_vectors>());
  static_assert(block_vectors == 4, "the remainder below covers 1 to 3 vectors");
  switch (vectors - j) {
    case 1: body(j * lanes<Real>, std::integral_constant<int, 1>()); break;
    case 2: body(j * lanes<Real>, std::integral_constant<int, 2>()); break;
    case 3: body(j * lanes<Real>, std::integral_constant<int, 3>()); break;
    default: break;
  }
}

/// Calls body(column0, row0, rows, Block<Real, block_rows, Vectors>&) over the blocks of an
/// m-row tile of `vectors` vectors of columns; body fills the zeroed block. Column blocks
/// outside, so that one block of B's columns stays in L1 across the rows.
template <class Real, class Body>
inline void for_blocks(int m, int vectors, Body&& body) {
  for_column_blocks<Real>(vectors, [&](const int column0, auto width) {
    for (int row0 = 0; row0 < m; row0 += block_rows) {
      Block<Real, block_rows, decltype(width)::value> block;
      block.zero();
      body(column0, row0, std::min(block_rows, m - row0), block);
    }
  });
}

/// for_blocks for a tile of which the row block starting at row0 needs only its first
/// vectors_of(row0, rows) vectors of columns (products below a diagonal): rows outside.
template <class Real, class VectorsOf, class Body>
inline void for_lower_blocks(int m, VectorsOf&& vectors_of, Body&& body) {
  for (int row0 = 0; row0 < m; row0 += block_rows) {
    const int rows = std::min(block_rows, m - row0);
    for_column_blocks<Real>(vectors_of(row0, rows), [&](const int column0, auto width) {
      Block<Real, block_rows, decltype(width)::value> block;
      block.zero();
      body(column0, row0, rows, block);
    });
  }
}

/// Asks for the cache lines of [p, p + bytes) ahead of their use (nothing where the compiler
/// has no prefetch builtin).
GDP_HOST_INLINE void prefetch(const void* p, std::size_t bytes) {
#ifdef GDP_HOST_VECTOR_EXTENSIONS
  const char* const first = static_cast<const char*>(p);
  for (std::size_t at = 0; at < bytes; at += 64) __builtin_prefetch(first + at, 0, 2);
#else
  (void)p;
  (void)bytes;
#endif
}

/// exp(x) for float with about 2 ulp of error, written so that loops over it vectorise
/// (Cephes' expf polynomial, 2^k built in the exponent bits); 0 below -87.3, inf above 88.7
/// (between 88.3 and 88.7, exp(88.3)).
GDP_HOST_INLINE float exp_lanes(float x) {
  float clamped = x < -87.3f ? -87.3f : x;  // plain selects, which the vectoriser takes
  clamped = clamped > 88.3f ? 88.3f : clamped;
  // k = round(x / ln 2) by adding and removing 1.5 * 2^23 (floor does not vectorise: it must
  // not raise the inexact exception; nor does a conversion under a branch).
  const float k = (clamped * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const std::int32_t ki = std::int32_t(k);
  const float r = clamped - k * 0.693359375f + k * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const std::int32_t bits = (ki + 127) << 23;
#ifdef GDP_HOST_VECTOR_EXTENSIONS
  const float power = __builtin_bit_cast(float, bits);  // memcpy here stops the vectoriser
#else
  float power;
  std::memcpy(&power, &bits, sizeof power);
#endif
  const float y = p * power;
  const float high = x > 88.7f ? HUGE_VALF : y;
  return x < -87.3f ? 0.0f : high;
}
/// double keeps the library's exp: the float64 path is the accurate one, not the fast one.
GDP_HOST_INLINE double exp_lanes(double x) { return std::exp(x); }

}  // namespace gdp::detail::host
