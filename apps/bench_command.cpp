// SPDX-License-Identifier: Apache-2.0
// `gdp_app bench`: the time of the chunked forward on random inputs, each rank timing its
// share of the (sequence, head) pairs; with --baseline also the naive recurrence on the same
// inputs and OpenBLAS sgemm on the same threads, as yardsticks.
#include "command.hpp"
#include "problem_flags.hpp"
#include "rank_problems.hpp"
#include "report_table.hpp"

#include "common/execution_spaces.hpp"
#include "common/useful_work.hpp"
#include "dist/collective_failure.hpp"
#include "dist/whole_problem_options.hpp"
#include "io/forward_file.hpp"
#include "reference/naive_recurrence.hpp"

#include <gdp/backward.hpp>
#include <gdp/forward.hpp>

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <random>

namespace gdp::app {

namespace {

struct BenchSettings {
  int repeats = 5, warmup = 1, chunk_size = 64, sgemm_size = 2048;
  bool baseline = false, backward = false;
};

/// Median seconds of `repeats` calls of `work` after `warmup` untimed ones; the ranks start
/// each call together, so that they share the machine as they would in a real run.
template <class Work>
double median_seconds(MPI_Comm comm, const BenchSettings& settings, Work&& work) {
  for (int i = 0; i < settings.warmup; ++i) work();
  std::vector<double> times;
  for (int i = 0; i < settings.repeats; ++i) {
    MPI_Barrier(comm);
    const auto start = std::chrono::steady_clock::now();
    work();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

/// One rank's results; the backward and baseline fields stay 0 without --backward and
/// --baseline. `flops` is the forward's useful work.
struct RankTimes {
  double units = 0, blocks = 0, token_heads = 0, flops = 0;
  double chunked_seconds = 0, backward_seconds = 0, naive_seconds = 0, sgemm_gflops = 0;
};
constexpr int rank_times_fields = 8;

/// OpenBLAS sgemm GFLOP/s on size^3, on as many threads as the host execution space has.
double sgemm_gflops(MPI_Comm comm, const BenchSettings& settings) {
  const int n = settings.sgemm_size;
  std::vector<float> a(std::size_t(n) * n), b(a.size()), c(a.size());
  std::mt19937 engine(7);
  std::uniform_real_distribution<float> uniform(-1, 1);
  for (float& x : a) x = uniform(engine);
  for (float& x : b) x = uniform(engine);
  openblas_set_num_threads(Kokkos::DefaultHostExecutionSpace().concurrency());
  const double seconds = median_seconds(comm, settings, [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, c.data(), n);
  });
  return 2.0 * double(n) * n * n / seconds / 1e9;
}

template <class ExecSpace, class Scalar>
RankTimes bench_rank(const ProblemFlags& flags, const BenchSettings& settings,
                     const dist::Runtime& runtime, Progress& progress) {
  using Real = accumulator_t<Scalar>;
  const auto problems = make_rank_problems<Scalar, typename ExecSpace::memory_space>(
      flags, runtime.rank(), runtime.size());
  ForwardOptions chosen = flags.options();
  chosen.chunk_size = settings.chunk_size;
  // The options `run` would use, so that the blocks are timed as `run` computes them.
  const ForwardOptions options = dist::whole_problem_options<ExecSpace>(problems.shape, chosen);
  RankTimes times;
  times.units = double(problems.units.size());
  times.blocks = double(problems.blocks.size());
  times.token_heads = double(dist::token_heads(problems.shape, problems.units));
  times.flops = detail::useful_flops(problems.shape, times.token_heads);
  times.chunked_seconds = median_seconds(runtime.comm(), settings, [&] {
    for (const auto& owned : problems.inputs)
      chunk_gated_delta_product<ExecSpace, Scalar>(owned.inputs(), options);
  });
  progress("chunked forward timed");
  if (settings.backward) {
    std::vector<OwnedOutputGradients<Scalar, typename ExecSpace::memory_space>> upstream;
    for (const RandomProblemSpec& spec : problems.specs)
      upstream.push_back(make_random_output_gradients<Scalar, typename ExecSpace::memory_space>(spec, true));
    times.backward_seconds = median_seconds(runtime.comm(), settings, [&] {
      for (std::size_t b = 0; b < problems.inputs.size(); ++b)
        chunk_gated_delta_product_backward<ExecSpace, Scalar>(problems.inputs[b].inputs(),
                                                              upstream[b].gradients(), options);
    });
    progress("chunked backward timed");
  }
  if (!settings.baseline) return times;
  std::vector<reference::ReferenceProblem<Real>> naive;
  for (const auto& owned : problems.inputs)
    naive.push_back(reference::make_reference_problem<Real>(owned.inputs(), options));
  times.naive_seconds = median_seconds(runtime.comm(), settings, [&] {
    for (const auto& problem : naive) reference::naive_recurrence(problem);
  });
  progress("naive recurrence timed");
  times.sgemm_gflops = sgemm_gflops(runtime.comm(), settings);
  return times;
}

class BenchCommand : public Command {
 public:
  explicit BenchCommand(CLI::App& app) {
    subcommand_ = app.add_subcommand(
        "bench",
        "Time the chunked forward on random inputs of the given shape: each rank times its share "
        "of the (sequence, head) pairs (as `run` would share them). Prints the median time per "
        "call, tokens/s and GFLOP/s of useful work (the naive recurrence's operation count: 4KV "
        "per sub-step, 2KV per read-out, KV per gate, per token and head).");
    flags_.add_to(*subcommand_);
    add_space_option(*subcommand_, space_);
    subcommand_->add_option("--chunk-size", settings_.chunk_size, "expanded positions per chunk")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    subcommand_->add_option("--repeats", settings_.repeats, "timed calls (the median is reported)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    subcommand_->add_option("--warmup", settings_.warmup, "untimed calls first")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    subcommand_->add_flag("--baseline", settings_.baseline,
                          "also time the naive recurrence (in the accumulation type, on the host "
                          "threads) and OpenBLAS sgemm, and print the ratios");
    subcommand_->add_option("--sgemm-size", settings_.sgemm_size, "sgemm baseline size (M = N = K)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    subcommand_->add_flag("--backward", settings_.backward,
                          "also time the backward pass (random do and dht; its useful work counted "
                          "as twice the forward's)");
  }

  int run(const dist::Runtime& runtime) override {
    Progress progress(runtime.rank() == 0);
    RankTimes mine;
    dist::run_collectively(runtime.comm(), [&] {
      io::with_storage_type(flags_.storage(), [&](auto storage) {
        with_execution_space(space_, [&](auto space) {
          mine = bench_rank<decltype(space), decltype(storage)>(flags_, settings_, runtime, progress);
        });
      });
    });
    std::vector<RankTimes> all(std::size_t(runtime.size()));
    MPI_Allgather(&mine, rank_times_fields, MPI_DOUBLE, all.data(), rank_times_fields, MPI_DOUBLE,
                  runtime.comm());
    if (runtime.rank() == 0) print(all, runtime);
    return 0;
  }

 private:
  void print(const std::vector<RankTimes>& all, const dist::Runtime& runtime) const {
    std::printf("gdp_app bench: %s; %s; chunk %d, median of %d after %d warm-up\n",
                flags_.describe().c_str(), placement(runtime, space_).c_str(), settings_.chunk_size,
                settings_.repeats, settings_.warmup);
    std::vector<std::string> headers{"rank", "units", "calls", "tokens", "s/call", "tokens/s", "GFLOP/s"};
    if (settings_.backward) headers.insert(headers.end(), {"bwd s/call", "bwd GFLOP/s"});
    if (settings_.baseline)
      headers.insert(headers.end(), {"naive s", "naive GFLOP/s", "speedup", "sgemm GFLOP/s", "of sgemm"});
    Table table(headers);
    const double heads = double(flags_.heads);
    RankTimes total;
    std::vector<double> seconds;
    const auto row = [&](const std::string& name, const RankTimes& t) {
      std::vector<std::string> cells{name, fixed(t.units, 0), fixed(t.blocks, 0), si(t.token_heads / heads),
                                     fixed(t.chunked_seconds, 4), si(t.token_heads / heads / t.chunked_seconds),
                                     fixed(t.flops / t.chunked_seconds / 1e9, 2)};
      if (settings_.backward)
        cells.insert(cells.end(), {fixed(t.backward_seconds, 4),
                                   fixed((detail::forward_and_backward_work - 1) * t.flops /
                                             t.backward_seconds / 1e9, 2)});
      if (settings_.baseline)
        cells.insert(cells.end(), {fixed(t.naive_seconds, 4), fixed(t.flops / t.naive_seconds / 1e9, 2),
                                   fixed(t.naive_seconds / t.chunked_seconds, 1) + "x",
                                   fixed(t.sgemm_gflops, 1),
                                   fixed(100 * t.flops / t.chunked_seconds / 1e9 / t.sgemm_gflops, 1) + "%"});
      table.add_row(cells);
    };
    for (std::size_t r = 0; r < all.size(); ++r) {
      const RankTimes& t = all[r];
      row(std::to_string(r), t);
      seconds.push_back(t.chunked_seconds);
      total.units += t.units;
      total.blocks += t.blocks;
      total.token_heads += t.token_heads;
      total.flops += t.flops;
      total.chunked_seconds = std::max(total.chunked_seconds, t.chunked_seconds);
      total.backward_seconds = std::max(total.backward_seconds, t.backward_seconds);
      total.naive_seconds = std::max(total.naive_seconds, t.naive_seconds);
      total.sgemm_gflops += t.sgemm_gflops;
    }
    row("all", total);
    table.print(stdout);
    std::printf("(all: sums of units, calls, tokens%s; the slowest rank's times)\n",
                settings_.baseline ? " and sgemm GFLOP/s" : "");
    std::printf("load imbalance (max/mean of s/call): %.3f\n", load_imbalance(seconds));
  }

  ProblemFlags flags_;
  BenchSettings settings_;
  std::string space_;
};

}  // namespace

std::unique_ptr<Command> bench_command(CLI::App& app) { return std::make_unique<BenchCommand>(app); }

}  // namespace gdp::app
