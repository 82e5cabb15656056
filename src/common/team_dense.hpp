// SPDX-License-Identifier: Apache-2.0
// Team-level dense building blocks shared by every stage: products of small tiles and the
// unit-lower-triangular solve. Every function ends with a team barrier, so its result is
// visible to the whole team when it returns.
//
// Two implementations, chosen by the execution space at compile time:
//  - host spaces (Serial, OpenMP): register-blocked loops written here. A team is one thread
//    there, and Kokkos Kernels' TeamGemm spent about 3/4 of the forward's time at
//    B=1 T=4096 H=4 K=V=128 n=2 (float, OpenMP, 2 threads): these loops keep a 4 x (128
//    bytes) block of C in registers and stream rows of B, which the compiler vectorises
//    (docs/PERFORMANCE.md has the measurement, tests/perf/perf_team_dense.cpp repeats it);
//  - device spaces: Kokkos Kernels' batched TeamGemm / TeamTrsm, one output per thread.
// Only op(B) = B is needed (callers keep a transposed copy of a tile where a product wants
// B^T), so every inner loop runs over contiguous columns.
#pragma once

#include <KokkosBatched_Gemm_Decl.hpp>
#include <KokkosBatched_Trsm_Decl.hpp>

#include <gdp/storage_types.hpp>

#include "kokkos_compat.hpp"

#include <Kokkos_Core.hpp>

#include <type_traits>

namespace gdp::detail::team {

namespace kb = KokkosBatched;
using NoTranspose = kb::Trans::NoTranspose;
using Transpose = kb::Trans::Transpose;

template <class ExecSpace>
inline constexpr bool runs_on_host =
    Kokkos::SpaceAccessibility<Kokkos::HostSpace, typename ExecSpace::memory_space>::accessible;

namespace host {

/// A block of C is block_rows x block_columns: 4 rows of 128 bytes of Real (two AVX-512
/// vectors each), eight independent accumulators.
inline constexpr int block_rows = 4;
template <class Real>
inline constexpr int block_columns = int(128 / sizeof(Real));

/// A matrix as pointer and strides, with op(A)(i, p) folded into the strides.
template <class Real>
struct Strided {
  const Real* data;
  long row_stride, depth_stride;
};

/// C[i0 .. i0+rows, j0 .. j0+width) = alpha op(A) B + beta C, for rows <= Rows and
/// width <= Columns. With Exact the width is the compile-time Columns, so the accumulators
/// stay in registers; the narrower last block of a row passes its width at run time.
template <int Rows, int Columns, bool Exact, class Real>
inline void gemm_block(int i0, int rows, int j0, int width, int depth, const Strided<Real>& a,
                       const Real* b, long b_stride, Real* c, long c_stride, Real alpha,
                       Real beta) {
  const int w = Exact ? Columns : width;
  Real accumulator[Rows][Columns] = {};
  const Real* a_rows[Rows];
  for (int r = 0; r < Rows; ++r)  // rows past the end repeat the last one and are not stored
    a_rows[r] = a.data + long(i0 + (r < rows ? r : rows - 1)) * a.row_stride;
  for (int p = 0; p < depth; ++p) {
    const Real* b_row = b + long(p) * b_stride + j0;
    for (int r = 0; r < Rows; ++r) {
      const Real a_value = a_rows[r][long(p) * a.depth_stride];
      for (int j = 0; j < w; ++j) accumulator[r][j] += a_value * b_row[j];
    }
  }
  for (int r = 0; r < rows; ++r) {
    Real* c_row = c + long(i0 + r) * c_stride + j0;
    if (beta == Real(0))
      for (int j = 0; j < w; ++j) c_row[j] = alpha * accumulator[r][j];
    else
      for (int j = 0; j < w; ++j) c_row[j] = alpha * accumulator[r][j] + beta * c_row[j];
  }
}

/// Rows i0 .. i0+rows of C, all n columns, in blocks of Columns.
template <int Rows, int Columns, class Real>
inline void gemm_rows(int i0, int rows, int n, int depth, const Strided<Real>& a, const Real* b,
                      long b_stride, Real* c, long c_stride, Real alpha, Real beta) {
  int j0 = 0;
  for (; j0 + Columns <= n; j0 += Columns)
    gemm_block<Rows, Columns, true>(i0, rows, j0, Columns, depth, a, b, b_stride, c, c_stride,
                                    alpha, beta);
  if (j0 < n)
    gemm_block<Rows, Columns, false>(i0, rows, j0, n - j0, depth, a, b, b_stride, c, c_stride,
                                     alpha, beta);
}

template <class TransA, class Member, class Real, class AView, class BView, class CView>
inline void gemm(const Member& member, Real alpha, const AView& A, const BView& B, Real beta,
                 const CView& C) {
  constexpr bool transposed = std::is_same<TransA, Transpose>::value;
  const int m = int(C.extent(0)), n = int(C.extent(1));
  const int depth = int(transposed ? A.extent(0) : A.extent(1));
  const Strided<Real> a{A.data(), long(transposed ? A.stride_1() : A.stride_0()),
                        long(transposed ? A.stride_0() : A.stride_1())};
  constexpr int R = block_rows;
  Kokkos::parallel_for(Kokkos::TeamThreadRange(member, (m + R - 1) / R), [&](const int block) {
    const int i0 = block * R;
    gemm_rows<R, block_columns<Real>>(i0, m - i0 < R ? m - i0 : R, n, depth, a, B.data(),
                                      long(B.stride_0()), C.data(), long(C.stride_0()), alpha,
                                      beta);
  });
}

/// Forward substitution X_r <- X_r - sum_{i<r} A_ri X_i, row after row. Each row is a
/// one-row product over the rows already solved, with 512 bytes of the row in registers.
template <class Member, class AView, class BView>
inline void solve_unit_lower(const Member& member, const AView& A, const BView& X) {
  using Real = typename BView::non_const_value_type;
  const int m = int(X.extent(0)), n = int(X.extent(1));
  const Strided<Real> a{A.data(), long(A.stride_0()), long(A.stride_1())};
  Kokkos::single(Kokkos::PerTeam(member), [&]() {
    for (int r = 1; r < m; ++r)
      gemm_rows<1, 4 * block_columns<Real>>(r, 1, n, r, a, X.data(), long(X.stride_0()), X.data(),
                                            long(X.stride_0()), Real(-1), Real(1));
  });
}

}  // namespace host

/// dst[j] = factor * src[j] for j < n, widening the source to Real: how every stage moves a
/// row of an input or of the workspace into a tile. Raw restrict pointers let the host
/// compiler vectorise the copy, which it does not do through the views' index arithmetic.
template <class Member, class Real, class Source>
KOKKOS_INLINE_FUNCTION void scaled_row(const Member& member, Real* KOKKOS_RESTRICT dst,
                                       const Source* KOKKOS_RESTRICT src, int n, Real factor) {
  Kokkos::parallel_for(Kokkos::ThreadVectorRange(member, n),
                       [&](const int j) { dst[j] = factor * widen(src[j]); });
}

/// C <- alpha * op(A) * B + beta * C (op chosen by TransA; every view has unit column stride).
template <class ExecSpace, class TransA, class Member, class Real, class AView, class BView,
          class CView>
KOKKOS_INLINE_FUNCTION void gemm(const Member& member, Real alpha, const AView& a,
                                 const BView& b, Real beta, const CView& c) {
  if constexpr (runs_on_host<ExecSpace>) {
    GDP_IF_ON_HOST((host::gemm<TransA>(member, alpha, a, b, beta, c);))
  } else {
    kb::TeamGemm<Member, TransA, NoTranspose, kb::Algo::Gemm::Unblocked>::invoke(member, alpha, a,
                                                                                 b, beta, c);
  }
  member.team_barrier();
}

/// B <- (I + strictly_lower(A))^{-1} B: forward substitution with an implicit unit diagonal
/// (the diagonal and upper part of A are never read).
template <class ExecSpace, class Member, class AView, class BView>
KOKKOS_INLINE_FUNCTION void solve_unit_lower(const Member& member, const AView& a,
                                             const BView& b) {
  if constexpr (runs_on_host<ExecSpace>) {
    GDP_IF_ON_HOST((host::solve_unit_lower(member, a, b);))
  } else {
    using Real = typename BView::non_const_value_type;
    kb::TeamTrsm<Member, kb::Side::Left, kb::Uplo::Lower, kb::Trans::NoTranspose, kb::Diag::Unit,
                 kb::Algo::Trsm::Unblocked>::invoke(member, Real(1), a, b);
  }
  member.team_barrier();
}

}  // namespace gdp::detail::team
