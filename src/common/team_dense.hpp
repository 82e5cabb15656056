// SPDX-License-Identifier: Apache-2.0
// Team-level dense building blocks shared by every stage: products of small tiles and the
// unit-lower-triangular solve. They call Kokkos Kernels' batched team routines; keeping the
// calls here means a backend-specific variant (tensor cores on CUDA) replaces one function,
// not every stage. Every function ends with a team barrier, so its result is visible to the
// whole team when it returns.
#pragma once

#include <KokkosBatched_Gemm_Decl.hpp>
#include <KokkosBatched_Trsm_Decl.hpp>

#include <Kokkos_Core.hpp>

namespace gdp::detail::team {

namespace kb = KokkosBatched;

/// C <- alpha * op(A) * op(B) + beta * C, with op chosen by the transpose tags.
template <class TransA, class TransB, class Member, class Real, class AView, class BView,
          class CView>
KOKKOS_INLINE_FUNCTION void gemm(const Member& member, Real alpha, const AView& a,
                                 const BView& b, Real beta, const CView& c) {
  kb::TeamGemm<Member, TransA, TransB, kb::Algo::Gemm::Blocked>::invoke(member, alpha, a, b, beta,
                                                                        c);
  member.team_barrier();
}

using NoTranspose = kb::Trans::NoTranspose;
using Transpose = kb::Trans::Transpose;

/// B <- (I + strictly_lower(A))^{-1} B: forward substitution with an implicit unit diagonal
/// (the diagonal and upper part of A are never read).
template <class Member, class AView, class BView>
KOKKOS_INLINE_FUNCTION void solve_unit_lower(const Member& member, const AView& a,
                                             const BView& b) {
  using Real = typename BView::non_const_value_type;
  kb::TeamTrsm<Member, kb::Side::Left, kb::Uplo::Lower, kb::Trans::NoTranspose, kb::Diag::Unit,
               kb::Algo::Trsm::Blocked>::invoke(member, Real(1), a, b);
  member.team_barrier();
}

}  // namespace gdp::detail::team
