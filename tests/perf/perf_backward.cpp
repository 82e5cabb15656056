// SPDX-License-Identifier: Apache-2.0
// The backward's cost against the forward's, on the host's default execution space: forward
// alone, backward alone, forward + backward, and a training step (the forward that saves for the
// backward, then the backward from it), at B=1 T=4096 H=4 K=V=128 n=2, gated, float
// (the shape of the backward issue's CPU target: backward <= 3x forward).
//
//   OMP_NUM_THREADS=2 OMP_PROC_BIND=false build/tests/perf/gdp_perf_backward
#include <gdp/backward.hpp>
#include <gdp/forward.hpp>

#include "common/random_problem.hpp"

#include <Kokkos_Core.hpp>
#include <benchmark/benchmark.h>

namespace {

using ExecSpace = Kokkos::DefaultHostExecutionSpace;
using Memory = ExecSpace::memory_space;
using Scalar = float;

gdp::RandomProblemSpec target_shape() {
  gdp::RandomProblemSpec spec;
  spec.batch = 1;
  spec.tokens = 4096;
  spec.heads = 4;
  spec.key_dim = spec.value_dim = 128;
  spec.num_householder = 2;
  spec.gated = true;
  return spec;
}

gdp::ForwardOptions target_options() {
  gdp::ForwardOptions options;
  options.num_householder = 2;
  return options;
}

void forward(benchmark::State& state) {
  const auto inputs = gdp::make_random_problem<Scalar, Memory>(target_shape());
  for (auto _ : state)
    benchmark::DoNotOptimize(
        gdp::chunk_gated_delta_product<ExecSpace, Scalar>(inputs.inputs(), target_options()));
}

void backward(benchmark::State& state) {
  const auto spec = target_shape();
  const auto inputs = gdp::make_random_problem<Scalar, Memory>(spec);
  const auto upstream = gdp::make_random_output_gradients<Scalar, Memory>(spec, false);
  for (auto _ : state)
    benchmark::DoNotOptimize(gdp::chunk_gated_delta_product_backward<ExecSpace, Scalar>(
        inputs.inputs(), upstream.gradients(), target_options()));
}

void forward_and_backward(benchmark::State& state) {
  const auto spec = target_shape();
  const auto inputs = gdp::make_random_problem<Scalar, Memory>(spec);
  const auto upstream = gdp::make_random_output_gradients<Scalar, Memory>(spec, false);
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        gdp::chunk_gated_delta_product<ExecSpace, Scalar>(inputs.inputs(), target_options()));
    benchmark::DoNotOptimize(gdp::chunk_gated_delta_product_backward<ExecSpace, Scalar>(
        inputs.inputs(), upstream.gradients(), target_options()));
  }
}

/// A training step: the forward keeps what the backward would recompute (gdp::SavedForward).
void training_step(benchmark::State& state) {
  const auto spec = target_shape();
  const auto inputs = gdp::make_random_problem<Scalar, Memory>(spec);
  const auto upstream = gdp::make_random_output_gradients<Scalar, Memory>(spec, false);
  for (auto _ : state) {
    gdp::SavedForward<Scalar, Memory> saved;
    benchmark::DoNotOptimize(gdp::chunk_gated_delta_product_for_backward<ExecSpace, Scalar>(
        inputs.inputs(), target_options(), saved));
    benchmark::DoNotOptimize(gdp::chunk_gated_delta_product_backward<ExecSpace, Scalar>(
        inputs.inputs(), upstream.gradients(), saved));
  }
}

BENCHMARK(forward)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK(backward)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK(forward_and_backward)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);
BENCHMARK(training_step)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);

}  // namespace

int main(int argc, char** argv) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
