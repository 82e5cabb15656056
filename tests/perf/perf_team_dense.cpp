// SPDX-License-Identifier: Apache-2.0
// Team-level dense routines on the host execution space: Kokkos Kernels' batched TeamGemm /
// TeamTrsm against gdp's own register-blocked loops (src/common/team_dense.hpp), on the tile
// shapes the forward uses (64 x 128 x 128 products, 64-row unit-lower solves on 256 columns).
// The forward picks the faster one per space; this program is the measurement behind that.
//
//   OMP_NUM_THREADS=2 OMP_PROC_BIND=false build/tests/perf/gdp_perf_team_dense
#include "common/team_dense.hpp"
#include "common/team_scratch.hpp"

#include <Kokkos_Core.hpp>
#include <benchmark/benchmark.h>

namespace {

using ExecSpace = Kokkos::DefaultHostExecutionSpace;
using Policy = Kokkos::TeamPolicy<ExecSpace>;
using Member = Policy::member_type;
namespace kb = KokkosBatched;

constexpr int tiles = 64;  // independent team problems per launch

struct Kokkos_Kernels {};
struct Gdp {};

template <class Impl>
void gemm_64x128x128(benchmark::State& state) {
  constexpr int m = 64, k = 128, n = 128;
  Kokkos::View<float***, Kokkos::LayoutRight> a("a", tiles, m, k), b("b", tiles, k, n),
      c("c", tiles, m, n);
  Kokkos::deep_copy(a, 0.5f);
  Kokkos::deep_copy(b, 0.25f);
  for (auto _ : state) {
    Kokkos::parallel_for(Policy(tiles, 1), [=](const Member& member) {
      const int t = member.league_rank();
      const auto A = Kokkos::subview(a, t, Kokkos::ALL(), Kokkos::ALL());
      const auto B = Kokkos::subview(b, t, Kokkos::ALL(), Kokkos::ALL());
      const auto C = Kokkos::subview(c, t, Kokkos::ALL(), Kokkos::ALL());
      if constexpr (std::is_same<Impl, Gdp>::value)
        gdp::detail::team::gemm<ExecSpace, gdp::detail::team::NoTranspose>(member, 1.0f, A, B,
                                                                           0.0f, C);
      else
        kb::TeamGemm<Member, kb::Trans::NoTranspose, kb::Trans::NoTranspose,
                     kb::Algo::Gemm::Blocked>::invoke(member, 1.0f, A, B, 0.0f, C);
    });
    ExecSpace().fence();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * m * n * k * tiles * state.iterations(),
                                                 benchmark::Counter::kIsRate,
                                                 benchmark::Counter::kIs1000);
}

template <class Impl>
void solve_unit_lower_64x256(benchmark::State& state) {
  constexpr int m = 64, n = 256;
  Kokkos::View<float***, Kokkos::LayoutRight> a("a", tiles, m, m), x("x", tiles, m, n);
  Kokkos::deep_copy(a, 1.0f / m);
  for (auto _ : state) {
    Kokkos::deep_copy(x, 1.0f);
    Kokkos::parallel_for(Policy(tiles, 1), [=](const Member& member) {
      const int t = member.league_rank();
      const auto A = Kokkos::subview(a, t, Kokkos::ALL(), Kokkos::ALL());
      const auto X = Kokkos::subview(x, t, Kokkos::ALL(), Kokkos::ALL());
      if constexpr (std::is_same<Impl, Gdp>::value)
        gdp::detail::team::solve_unit_lower<ExecSpace>(member, A, X);
      else
        kb::TeamTrsm<Member, kb::Side::Left, kb::Uplo::Lower, kb::Trans::NoTranspose,
                     kb::Diag::Unit, kb::Algo::Trsm::Blocked>::invoke(member, 1.0f, A, X);
    });
    ExecSpace().fence();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(double(m) * (m - 1) * n * tiles * state.iterations(),
                                                 benchmark::Counter::kIsRate,
                                                 benchmark::Counter::kIs1000);
}

BENCHMARK_TEMPLATE(gemm_64x128x128, Kokkos_Kernels)->UseRealTime();
BENCHMARK_TEMPLATE(gemm_64x128x128, Gdp)->UseRealTime();
BENCHMARK_TEMPLATE(solve_unit_lower_64x256, Kokkos_Kernels)->UseRealTime();
BENCHMARK_TEMPLATE(solve_unit_lower_64x256, Gdp)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
