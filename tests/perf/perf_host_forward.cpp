// SPDX-License-Identifier: Apache-2.0
// The forward on the host execution space, interleaved with its yardsticks, for a machine
// shared with other work: each round times, one after the other,
//   fused      the driver's sequential walk on the host (src/chunk/host_fused_walk.hpp),
//   stages     the two-stage path (ChunkPrepare, then StatePass) that it replaces,
//   naive      the naive recurrence (src/reference/naive_recurrence.cpp) in float,
//   sgemm      OpenBLAS sgemm on size^3,
// so that a change of load hits all four alike; medians over the rounds are printed, of the
// wall time and of the process's CPU time (user + system, all threads) divided by the thread
// count, which other processes on the machine do not inflate. The forward writes into
// preallocated outputs. Errors of fused and stages against the float64 recurrence come first.
//
// Usage: gdp_perf_host_forward [-B 1] [-T 4096] [-H 4] [-D 128] [-n 2] [--ungated]
//                              [--rounds 7] [--sgemm-size 2048]
// The OpenBLAS figure means something only with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE
// unset (docs/PERFORMANCE.md).
#include <gdp/forward.hpp>

#include "chunk/forward_impl.hpp"
#include "common/random_problem.hpp"
#include "common/useful_work.hpp"
#include "reference/error_norms.hpp"
#include "reference/naive_recurrence.hpp"
#include "reference/reference_problem.hpp"

#include <Kokkos_Core.hpp>
#include <cblas.h>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace {

using namespace gdp;
using Space = Kokkos::DefaultHostExecutionSpace;
using Memory = Space::memory_space;

extern "C" void openblas_set_num_threads(int);

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         1e-6 * double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

struct Timed {
  std::string name;
  std::function<void()> work;
  double flops;  ///< per call, for the GFLOP/s column
  std::vector<double> wall, cpu;
};

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

/// The two stages as the driver ran them before the fused host walk.
template <class Scalar>
void two_stages(const ForwardInputs<Scalar, Memory>& in, const ForwardOptions& options,
                const detail::ProblemShape& shape, const ForwardResult<Scalar, Memory>& result) {
  using Real = accumulator_t<Scalar>;
  const auto operands = detail::make_operands<Space>(in, shape, options);
  const detail::ChunkLayout layout = detail::make_chunk_layout(shape, options.chunk_size);
  const auto leased = detail::lease_walk_workspace<Real, Memory>(shape, layout, true);
  const auto& [device_layout, workspace] = leased.parts;
  using Pass = detail::StatePass<Space, Scalar>;
  const typename Pass::template unmanaged_view<const Real****> h0(in.initial_state.data(),
                                                                  in.initial_state.layout());
  const typename Pass::template unmanaged_view<Scalar***> o(
      result.o.data(), shape.total_tokens(), shape.heads, shape.value_dim);
  const typename Pass::template unmanaged_view<Real****> ht(result.final_state.data(),
                                                            result.final_state.layout());
  detail::ChunkPrepare<Space, Scalar>(operands, device_layout, workspace).run();
  Pass(operands, device_layout, workspace, h0, o, ht,
       detail::state_pass_value_block<Space>(shape, options))
      .run();
  Space().fence();
}

}  // namespace

int main(int argc, char** argv) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  RandomProblemSpec spec;
  spec.batch = 1;
  spec.tokens = 4096;
  spec.heads = 4;
  spec.key_dim = spec.value_dim = 128;
  spec.num_householder = 2;
  spec.initial_state = true;
  int rounds = 7, sgemm_size = 2048;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    const auto next = [&] { return i + 1 < argc ? std::atol(argv[++i]) : 0L; };
    if (flag == "-B") spec.batch = next();
    else if (flag == "-T") spec.tokens = next();
    else if (flag == "-H") spec.heads = next();
    else if (flag == "-D") spec.key_dim = spec.value_dim = next();
    else if (flag == "-n") spec.num_householder = int(next());
    else if (flag == "--ungated") spec.gated = false;
    else if (flag == "--rounds") rounds = int(next());
    else if (flag == "--sgemm-size") sgemm_size = int(next());
    else {
      std::fprintf(stderr, "unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  const int threads = Space().concurrency();

  const auto owned = make_random_problem<float, Memory>(spec);
  const ForwardInputs<float, Memory> in = owned.inputs();
  ForwardOptions options;
  options.num_householder = spec.num_householder;
  options.output_final_state = true;
  const detail::ProblemShape shape = detail::check_forward_inputs(in, options);
  const auto fused = detail::allocate_forward_result<float, Memory>(shape, options);
  const auto staged = detail::allocate_forward_result<float, Memory>(shape, options);

  {  // errors first, on this problem, against the float64 recurrence
    const auto owned64 = make_random_problem<double, Memory>(spec);
    const auto expected =
        reference::naive_recurrence(reference::make_reference_problem<double>(owned64.inputs(), options));
    detail::chunked_forward_into<Space>(in, options, shape, fused);
    two_stages(in, options, shape, staged);
    std::printf("relative error vs float64: fused o %.2e ht %.2e; stages o %.2e ht %.2e\n",
                reference::relative_error(fused.o, expected.o),
                reference::relative_error(fused.final_state, expected.final_state),
                reference::relative_error(staged.o, expected.o),
                reference::relative_error(staged.final_state, expected.final_state));
  }

  const auto naive_problem = reference::make_reference_problem<float>(in, options);
  std::vector<float> a(std::size_t(sgemm_size) * sgemm_size), b(a.size()), c(a.size());
  std::mt19937 engine(7);
  std::uniform_real_distribution<float> uniform(-1, 1);
  for (float& x : a) x = uniform(engine);
  for (float& x : b) x = uniform(engine);
  openblas_set_num_threads(threads);

  const double useful = detail::useful_flops(shape);
  std::vector<Timed> timed = {
      {"fused (host walk)", [&] { detail::chunked_forward_into<Space>(in, options, shape, fused); },
       useful, {}, {}},
      {"stages (before)", [&] { two_stages(in, options, shape, staged); }, useful, {}, {}},
      {"naive recurrence", [&] { reference::naive_recurrence(naive_problem); }, useful, {}, {}},
      {"OpenBLAS sgemm", [&] {
         cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, sgemm_size, sgemm_size, sgemm_size,
                     1.0f, a.data(), sgemm_size, b.data(), sgemm_size, 0.0f, c.data(), sgemm_size);
       },
       2.0 * double(sgemm_size) * sgemm_size * sgemm_size, {}, {}}};
  for (Timed& t : timed) t.work();  // warm-up
  for (int round = 0; round < rounds; ++round)
    for (Timed& t : timed) {
      const double cpu0 = cpu_seconds();
      const auto wall0 = std::chrono::steady_clock::now();
      t.work();
      t.wall.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count());
      t.cpu.push_back((cpu_seconds() - cpu0) / threads);
    }

  std::printf("B=%lld T=%lld H=%lld K=V=%lld n=%d %s, float, %d threads, %d rounds (medians)\n",
              (long long)spec.batch, (long long)spec.tokens, (long long)spec.heads,
              (long long)spec.key_dim, spec.num_householder, spec.gated ? "gated" : "ungated",
              threads, rounds);
  std::printf("%-20s %10s %10s %14s %14s\n", "", "wall ms", "cpu ms", "GFLOP/s wall",
              "GFLOP/s cpu");
  for (const Timed& t : timed)
    std::printf("%-20s %10.2f %10.2f %14.1f %14.1f\n", t.name.c_str(), 1e3 * median(t.wall),
                1e3 * median(t.cpu), t.flops / median(t.wall) / 1e9, t.flops / median(t.cpu) / 1e9);
  std::printf("(GFLOP/s of the forwards: useful work; of sgemm: 2 size^3)\n");
  std::printf("naive / fused: wall %.2fx, cpu %.2fx; stages / fused: wall %.2fx, cpu %.2fx\n",
              median(timed[2].wall) / median(timed[0].wall), median(timed[2].cpu) / median(timed[0].cpu),
              median(timed[1].wall) / median(timed[0].wall), median(timed[1].cpu) / median(timed[0].cpu));
  std::printf("fused useful GFLOP/s / sgemm GFLOP/s: wall %.1f%%, cpu %.1f%%\n",
              100.0 * (useful / median(timed[0].wall)) / (timed[3].flops / median(timed[3].wall)),
              100.0 * (useful / median(timed[0].cpu)) / (timed[3].flops / median(timed[3].cpu)));
  return 0;
}
