// SPDX-License-Identifier: Apache-2.0
// The forward in bf16 on the default execution space (the GPU in a CUDA build) against the
// anchors of ../shared/bench/fla_h100.md (FLA's Triton chunk_gated_delta_product on an H100).
//
// First, printed: the relative Frobenius error against the float64 naive recurrence on small
// shapes for each walk over the chunks, against the unrounded draws and against the
// bf16-rounded inputs. Then one benchmark per shape and walk (automatic, sequential,
// chunk-parallel): the forward into preallocated outputs, `--warmup` untimed calls, then
// `--repeats` timed ones, the calls cycling over `--sets` input sets drawn on the device
// (q, v ~ N(0, 1); k ~ N(0, 1) rows scaled to unit length; beta ~ U(0, 1);
// g = logsigmoid(N(0, 1)); h0 ~ 0.1 N(0, 1); scale 1/sqrt(K); final state returned). Counters:
// median_ms, min_ms, fla_ms (0 where FLA has no figure) and vs_fla = median_ms / fla_ms.
// scripts/gpu_check.sh reads them from the JSON output; a table with FLA / gdp is printed last.
//
// Usage: gdp_perf_forward [--shapes=B-T-H-D-n[-ungated],...] [--repeats=N] [--warmup=N]
//                         [--sets=N] [Google Benchmark flags]
#include <gdp/forward.hpp>

#include "chunk/forward_impl.hpp"
#include "common/random_problem.hpp"
#include "common/useful_work.hpp"
#include "reference/error_norms.hpp"
#include "reference/naive_recurrence.hpp"

#include <Kokkos_Core.hpp>
#include <Kokkos_Random.hpp>
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace gdp;
using Space = Kokkos::DefaultExecutionSpace;
using Memory = Space::memory_space;
using Scalar = bfloat16;

struct Shape {
  std::int64_t B, T, H, D;
  int n;
  bool gated;
  double fla_ms;  ///< FLA's forward on the H100, 0 where none was measured

  std::string name() const {
    return std::to_string(B) + "-" + std::to_string(T) + "-" + std::to_string(H) + "-" +
           std::to_string(D) + "-" + std::to_string(n) + (gated ? "" : "-ungated");
  }
};

const std::vector<Shape> fla_shapes = {{8, 2048, 16, 128, 2, true, 1.363},
                                       {8, 2048, 16, 128, 2, false, 1.109},
                                       {1, 32768, 16, 128, 2, true, 3.343},
                                       {4, 4096, 16, 128, 3, true, 1.598}};

struct Settings {
  int repeats = 20, warmup = 3, sets = 2;
};

const char* walk_name(ForwardAlgorithm a) {
  return a == ForwardAlgorithm::automatic    ? "automatic"
         : a == ForwardAlgorithm::sequential ? "sequential"
                                             : "chunk-parallel";
}

/// Inputs drawn on the device, as the anchors were (see the file comment).
OwnedInputs<Scalar, Memory> device_inputs(const Shape& s, std::uint64_t seed) {
  const std::int64_t P = s.T * s.n, K = s.D, V = s.D, H = s.H, n = s.n;
  OwnedInputs<Scalar, Memory> in;
  const auto uninitialised = [](const char* label) {
    return Kokkos::view_alloc(Kokkos::WithoutInitializing, std::string(label));
  };
  in.q = decltype(in.q)(uninitialised("q"), s.B, s.T, H, K);
  in.k = decltype(in.k)(uninitialised("k"), s.B, P, H, K);
  in.v = decltype(in.v)(uninitialised("v"), s.B, P, H, V);
  in.beta = decltype(in.beta)(uninitialised("beta"), s.B, P, H);
  if (s.gated) in.g = decltype(in.g)(uninitialised("g"), s.B, s.T, H);
  in.initial_state = decltype(in.initial_state)(uninitialised("h0"), s.B, H, K, V);
  const Kokkos::Random_XorShift64_Pool<Space> pool(seed);
  const auto q = in.q, k = in.k, v = in.v;
  const auto beta = in.beta;
  const auto g = in.g;
  const auto h0 = in.initial_state;
  Kokkos::parallel_for(
      "draw_rows", Kokkos::RangePolicy<Space>(0, s.B * P * H), KOKKOS_LAMBDA(const std::int64_t row) {
        auto generator = pool.get_state();
        const std::int64_t b = row / (P * H), p = (row / H) % P, h = row % H;
        double sum = 0;
        for (std::int64_t d = 0; d < K; ++d) {
          const double x = generator.normal();
          k(b, p, h, d) = narrow<Scalar>(x);
          sum += x * x;
        }
        const double factor = 1.0 / sqrt(sum);
        for (std::int64_t d = 0; d < K; ++d)
          k(b, p, h, d) = narrow<Scalar>(factor * double(widen(k(b, p, h, d))));
        for (std::int64_t e = 0; e < V; ++e) v(b, p, h, e) = narrow<Scalar>(generator.normal());
        beta(b, p, h) = narrow<Scalar>(generator.drand());
        if (p % n == 0) {
          for (std::int64_t d = 0; d < K; ++d) q(b, p / n, h, d) = narrow<Scalar>(generator.normal());
          if (g.data()) {
            const double x = generator.normal();
            g(b, p / n, h) = float(x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)));  // logsigmoid
          }
        }
        pool.free_state(generator);
      });
  Kokkos::parallel_for(
      "draw_h0", Kokkos::RangePolicy<Space>(0, s.B * H * K), KOKKOS_LAMBDA(const std::int64_t row) {
        auto generator = pool.get_state();
        for (std::int64_t e = 0; e < V; ++e)
          h0(row / (H * K), (row / K) % H, row % K, e) = float(0.1 * generator.normal());
        pool.free_state(generator);
      });
  Kokkos::fence();
  return in;
}

/// Errors of o and ht for both walks on a small shape against the float64 naive recurrence,
/// on the unrounded draws and on the bf16-rounded inputs; whether all are within the tests'
/// bf16 tolerance (1e-2), so that nothing wrong is ever timed.
bool print_accuracy(bool gated) {
  RandomProblemSpec spec;
  spec.batch = 2;
  spec.tokens = 300;
  spec.heads = 3;
  spec.key_dim = spec.value_dim = 128;
  spec.num_householder = 2;
  spec.gated = gated;
  spec.initial_state = true;
  spec.seed = 11;
  ForwardOptions options;
  options.num_householder = spec.num_householder;
  options.output_final_state = true;
  const auto draws = make_random_problem<double, Kokkos::HostSpace>(spec);
  const auto exact =
      reference::naive_recurrence(reference::make_reference_problem<double>(draws.inputs(), options));
  const auto inputs = make_random_problem<Scalar, Memory>(spec);
  const auto rounded =
      reference::naive_recurrence(reference::make_reference_problem<double>(inputs.inputs(), options));
  bool within = true;
  for (ForwardAlgorithm walk : {ForwardAlgorithm::sequential, ForwardAlgorithm::chunk_parallel}) {
    options.algorithm = walk;
    const auto result = chunk_gated_delta_product<Space, Scalar>(inputs.inputs(), options);
    const double errors[] = {reference::relative_error(result.o, exact.o),
                             reference::relative_error(result.final_state, exact.final_state),
                             reference::relative_error(result.o, rounded.o),
                             reference::relative_error(result.final_state, rounded.final_state)};
    std::printf("float64 check 2-300-3-128-2%s %-14s: o %.2e, ht %.2e; against the rounded "
                "inputs: o %.2e, ht %.2e\n",
                gated ? "" : "-ungated", walk_name(walk), errors[0], errors[1], errors[2], errors[3]);
    for (double error : errors) within = within && error <= 1e-2;
  }
  return within;
}

struct Measured {
  std::string shape;
  double fla_ms, median_ms[3] = {0, 0, 0}, useful_flops;
};
std::vector<Measured> measured;

void forward(benchmark::State& state, Shape shape, int walk_index, Settings settings) {
  const ForwardAlgorithm walks[] = {ForwardAlgorithm::automatic, ForwardAlgorithm::sequential,
                                    ForwardAlgorithm::chunk_parallel};
  std::vector<OwnedInputs<Scalar, Memory>> inputs;
  for (int s = 0; s < settings.sets; ++s) inputs.push_back(device_inputs(shape, 1000 + s));
  ForwardOptions options;
  options.num_householder = shape.n;
  options.output_final_state = true;
  options.algorithm = walks[walk_index];
  const auto problem = detail::check_forward_inputs(inputs[0].inputs(), options);
  const auto result = detail::allocate_forward_result<Scalar, Memory>(problem, options);
  int call = 0;
  const auto timed_call = [&] {
    Kokkos::fence();
    Kokkos::Timer timer;
    detail::chunked_forward_into<Space>(inputs[call++ % settings.sets].inputs(), options, problem,
                                        result);
    return timer.seconds();  // chunked_forward_into fences before it returns
  };
  for (int i = 0; i < settings.warmup; ++i) timed_call();
  std::vector<double> times;
  for (auto _ : state) {
    times.push_back(timed_call());
    state.SetIterationTime(times.back());
  }
  std::sort(times.begin(), times.end());
  const double median_ms = 1e3 * times[times.size() / 2];
  state.counters["median_ms"] = median_ms;
  state.counters["min_ms"] = 1e3 * times.front();
  state.counters["fla_ms"] = shape.fla_ms;
  state.counters["vs_fla"] = shape.fla_ms > 0 ? median_ms / shape.fla_ms : 0.0;
  const std::string name = shape.name();
  auto row = std::find_if(measured.begin(), measured.end(),
                          [&](const Measured& m) { return m.shape == name; });
  if (row == measured.end()) {
    measured.push_back({name, shape.fla_ms, {0, 0, 0}, detail::useful_flops(problem)});
    row = measured.end() - 1;
  }
  row->median_ms[walk_index] = median_ms;
}

/// Removes --name=value from the arguments and returns value, or "" when absent.
std::string take_flag(int& argc, char** argv, const std::string& name) {
  const std::string prefix = "--" + name + "=";
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]).rfind(prefix, 0) == 0) {
      const std::string value = argv[i] + prefix.size();
      std::copy(argv + i + 1, argv + argc, argv + i);
      --argc;
      return value;
    }
  return "";
}

std::vector<Shape> parse_shapes(const std::string& list) {
  std::vector<Shape> shapes;
  std::stringstream items(list);
  for (std::string item; std::getline(items, item, ',');) {
    Shape s{0, 0, 0, 0, 0, true, 0.0};
    char dash;
    std::stringstream fields(item);
    fields >> s.B >> dash >> s.T >> dash >> s.H >> dash >> s.D >> dash >> s.n;
    s.gated = item.find("ungated") == std::string::npos;
    for (const Shape& fla : fla_shapes)
      if (fla.name() == s.name()) s.fla_ms = fla.fla_ms;
    shapes.push_back(s);
  }
  return shapes;
}

}  // namespace

int main(int argc, char** argv) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  Settings settings;
  const std::string shapes_flag = take_flag(argc, argv, "shapes");
  for (auto [flag, value] : {std::pair{"repeats", &settings.repeats},
                             std::pair{"warmup", &settings.warmup}, std::pair{"sets", &settings.sets}}) {
    const std::string text = take_flag(argc, argv, flag);
    if (!text.empty()) *value = std::max(1, std::atoi(text.c_str()));
  }
  const std::vector<Shape> shapes = shapes_flag.empty() ? fla_shapes : parse_shapes(shapes_flag);
  benchmark::Initialize(&argc, argv);

  std::printf("gdp forward, bf16 storage, space %s\n", Space::name());
  const bool accurate = print_accuracy(true) & print_accuracy(false);
  if (!accurate) {
    std::printf("float64 check FAILED (relative error above 1e-2): nothing timed\n");
    return 1;
  }
  for (const Shape& shape : shapes)
    for (int walk = 0; walk < 3; ++walk)
      benchmark::RegisterBenchmark(("forward/bf16/" + shape.name() + "-" +
                                    walk_name(walk == 0   ? ForwardAlgorithm::automatic
                                              : walk == 1 ? ForwardAlgorithm::sequential
                                                          : ForwardAlgorithm::chunk_parallel))
                                       .c_str(),
                                   forward, shape, walk, settings)
          ->UseManualTime()
          ->Iterations(settings.repeats)
          ->Unit(benchmark::kMillisecond);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();

  std::printf("\n| shape B-T-H-K=V-n | FLA ms | gdp ms (automatic) | FLA / gdp | sequential ms | "
              "chunk-parallel ms | useful TFLOP/s |\n|---|---|---|---|---|---|---|\n");
  for (const Measured& m : measured)
    std::printf("| %s | %s | %.3f | %s | %.3f | %.3f | %.1f |\n", m.shape.c_str(),
                m.fla_ms > 0 ? std::to_string(m.fla_ms).substr(0, 5).c_str() : "-", m.median_ms[0],
                m.fla_ms > 0 ? (std::to_string(m.fla_ms / m.median_ms[0]).substr(0, 4) + "x").c_str()
                             : "-",
                m.median_ms[1], m.median_ms[2], m.useful_flops / (m.median_ms[0] * 1e-3) / 1e12);
  return 0;
}
