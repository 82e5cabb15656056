// SPDX-License-Identifier: Apache-2.0
// `gdp_app bench`: the time of the chunked forward on random inputs, each rank timing its
// share of the (sequence, head) pairs; with --baseline also the naive recurrence on the same
// inputs and OpenBLAS sgemm on the same threads, as yardsticks. With --decode, the decode step
// (gdp::recurrent_step) instead, for batches of 1 to 256 sequences.
#include "command.hpp"
#include "problem_flags.hpp"
#include "rank_problems.hpp"
#include "report_table.hpp"

#include "common/execution_spaces.hpp"
#include "common/useful_work.hpp"
#include "dist/collective_failure.hpp"
#include "dist/sequence_parallel.hpp"
#include "dist/whole_problem_options.hpp"
#include "io/forward_file.hpp"
#include "reference/naive_recurrence.hpp"

#include <gdp/backward.hpp>
#include <gdp/decode.hpp>
#include <gdp/forward.hpp>
#include <gdp/workspace.hpp>

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <random>

namespace gdp::app {

namespace {

struct BenchSettings {
  int repeats = 5, warmup = 1, chunk_size = 64, sgemm_size = 2048;
  bool baseline = false, backward = false, seq_parallel = false, allow_non_finite = false;
  bool decode = false, workspace_cache = true, outputs_into = false, gradients_into = false;
  int decode_steps = 20, decode_max_batch = 256;
};

/// This process's CPU time in seconds (all its threads).
double cpu_seconds() {
  timespec now{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return double(now.tv_sec) + 1e-9 * double(now.tv_nsec);
}

/// Median seconds of `repeats` calls of `work` after `warmup` untimed ones; the ranks start
/// each call together, so that they share the machine as they would in a real run. With
/// `cpu_median`, also the median of the process's CPU time per call there: on a machine
/// that other work shares, about what the call would take on cores of its own.
template <class Work>
double median_seconds(MPI_Comm comm, const BenchSettings& settings, Work&& work,
                      double* cpu_median = nullptr) {
  for (int i = 0; i < settings.warmup; ++i) work();
  std::vector<double> times, cpu_times;
  for (int i = 0; i < settings.repeats; ++i) {
    MPI_Barrier(comm);
    const auto start = std::chrono::steady_clock::now();
    const double cpu_start = cpu_seconds();
    work();
    cpu_times.push_back(cpu_seconds() - cpu_start);
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  std::sort(cpu_times.begin(), cpu_times.end());
  if (cpu_median) *cpu_median = cpu_times[cpu_times.size() / 2];
  return times[times.size() / 2];
}

/// One rank's results; the backward and baseline fields stay 0 without --backward and
/// --baseline. `flops` is the forward's useful work.
struct RankTimes {
  double units = 0, blocks = 0, token_heads = 0, flops = 0;
  double chunked_seconds = 0, backward_seconds = 0, naive_seconds = 0, sgemm_gflops = 0;
  double chunked_cpu_seconds = 0;  ///< CPU time per forward call
  /// A training step: the forward that saves for the backward, then the backward from it.
  double training_step_seconds = 0;
};
constexpr int rank_times_fields = 10;

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

/// `--seq-parallel`: this rank's slice of the token axis (random inputs of its own, drawn on
/// the host as `run` reads them), timed through the sequence-parallel driver, scan included.
template <class ExecSpace, class Scalar>
RankTimes bench_slice(const ProblemFlags& flags, const BenchSettings& settings,
                      const dist::Runtime& runtime, Progress& progress) {
  using Real = accumulator_t<Scalar>;
  const detail::ProblemShape shape = flags.shape();
  constexpr bool host_walk =
      Kokkos::SpaceAccessibility<Kokkos::HostSpace, typename ExecSpace::memory_space>::accessible;
  const auto slices = dist::partition_slices(
      shape, runtime.size(), dist::continuing_cost(shape, settings.chunk_size, host_walk));
  const dist::SlicePlan& slice = slices[std::size_t(runtime.rank())];
  RandomProblemSpec spec = flags.spec();
  spec.batch = 1;
  spec.tokens = std::max<std::int64_t>(1, slice.tokens());
  spec.cu_seqlens.clear();
  spec.initial_state = false;
  spec.seed = flags.seed + 0x9e3779b97f4a7c15ull * std::uint64_t(runtime.rank() + 1);
  const auto owned = make_random_problem<Scalar, Kokkos::HostSpace>(spec);
  const std::int64_t H = shape.heads, K = shape.key_dim, V = shape.value_dim;
  std::vector<Real> h0(std::size_t((slice.start_end - slice.start_begin) * H * K * V), Real(0));
  std::mt19937_64 engine(spec.seed + 1);
  std::normal_distribution<double> normal(0.0, 0.1);
  if (flags.initial_state)
    for (Real& x : h0) x = Real(normal(engine));
  std::vector<Scalar> o(std::size_t(slice.tokens() * H * V));
  std::vector<Real> ht(std::size_t((slice.final_end - slice.final_begin) * H * K * V));
  const dist::SliceHostInputs<Scalar> in{owned.q.data(), owned.k.data(), owned.v.data(), owned.beta.data(),
                                         owned.g.data(), h0.data()};
  ForwardOptions options = flags.options();
  options.chunk_size = settings.chunk_size;
  RankTimes times;
  times.units = double((slice.continued_tokens() > 0) + (slice.start_end - slice.start_begin));
  times.blocks = double(dist::SliceComputation<ExecSpace, Scalar>(shape, slice, options, in, {}).calls());
  times.token_heads = double(slice.tokens() * H);
  times.flops = detail::useful_flops(shape, times.token_heads);
  times.chunked_seconds = median_seconds(
      runtime.comm(), settings,
      [&] {
        dist::sequence_parallel_slice<ExecSpace, Scalar>(runtime.comm(), shape, slice, options, in,
                                                         {o.data(), ht.data()});
      },
      &times.chunked_cpu_seconds);
  progress("sequence-parallel forward timed");
  return times;
}

template <class ExecSpace, class Scalar>
RankTimes bench_rank(const ProblemFlags& flags, const BenchSettings& settings,
                     const dist::Runtime& runtime, Progress& progress) {
  using Real = accumulator_t<Scalar>;
  const auto problems = make_rank_problems<Scalar, typename ExecSpace::memory_space>(
      flags, runtime.rank(), runtime.size());
  ForwardOptions chosen = flags.options();
  chosen.chunk_size = settings.chunk_size;
  chosen.allow_non_finite = settings.allow_non_finite;
  // The options `run` would use, so that the blocks are timed as `run` computes them.
  const ForwardOptions options = dist::whole_problem_options<ExecSpace, Scalar>(problems.shape, chosen);
  RankTimes times;
  times.units = double(problems.units.size());
  times.blocks = double(problems.blocks.size());
  times.token_heads = double(dist::token_heads(problems.shape, problems.units));
  times.flops = detail::useful_flops(problems.shape, times.token_heads);
  // With --outputs-into, outputs allocated once (by a first call) are written again by every
  // timed call, as a framework with preallocated output tensors calls it.
  std::vector<ForwardResult<Scalar, typename ExecSpace::memory_space>> outputs;
  if (settings.outputs_into)
    for (const auto& owned : problems.inputs)
      outputs.push_back(chunk_gated_delta_product<ExecSpace, Scalar>(owned.inputs(), options));
  times.chunked_seconds = median_seconds(
      runtime.comm(), settings,
      [&] {
        for (std::size_t b = 0; b < problems.inputs.size(); ++b) {
          if (settings.outputs_into)
            chunk_gated_delta_product_into<ExecSpace, Scalar>(problems.inputs[b].inputs(), options,
                                                              outputs[b]);
          else
            chunk_gated_delta_product<ExecSpace, Scalar>(problems.inputs[b].inputs(), options);
        }
      },
      &times.chunked_cpu_seconds);
  progress("chunked forward timed");
  if (settings.backward) {
    std::vector<OwnedOutputGradients<Scalar, typename ExecSpace::memory_space>> upstream;
    for (const RandomProblemSpec& spec : problems.specs)
      upstream.push_back(make_random_output_gradients<Scalar, typename ExecSpace::memory_space>(spec, true));
    // With --gradients-into, gradients allocated once (by a first call) are written again by
    // every timed call, as a framework with preallocated gradient tensors calls it.
    std::vector<InputGradients<Scalar, typename ExecSpace::memory_space>> gradients;
    if (settings.gradients_into)
      for (std::size_t b = 0; b < problems.inputs.size(); ++b)
        gradients.push_back(chunk_gated_delta_product_backward<ExecSpace, Scalar>(
            problems.inputs[b].inputs(), upstream[b].gradients(), options));
    // Block b's backward, from the forward's options (recomputing) or from what it saved.
    const auto backward = [&](std::size_t b, const auto& options_or_saved) {
      if (settings.gradients_into)
        chunk_gated_delta_product_backward_into<ExecSpace, Scalar>(
            problems.inputs[b].inputs(), upstream[b].gradients(), options_or_saved, gradients[b]);
      else
        chunk_gated_delta_product_backward<ExecSpace, Scalar>(
            problems.inputs[b].inputs(), upstream[b].gradients(), options_or_saved);
    };
    times.backward_seconds = median_seconds(runtime.comm(), settings, [&] {
      for (std::size_t b = 0; b < problems.inputs.size(); ++b) backward(b, options);
    });
    progress("chunked backward timed");
    // A training step keeps what the forward computed for the backward (gdp::SavedForward).
    times.training_step_seconds = median_seconds(runtime.comm(), settings, [&] {
      for (std::size_t b = 0; b < problems.inputs.size(); ++b) {
        SavedForward<Scalar, typename ExecSpace::memory_space> saved;
        if (settings.outputs_into)
          chunk_gated_delta_product_for_backward_into<ExecSpace, Scalar>(
              problems.inputs[b].inputs(), options, outputs[b], saved);
        else
          chunk_gated_delta_product_for_backward<ExecSpace, Scalar>(problems.inputs[b].inputs(),
                                                                    options, saved);
        backward(b, saved);
      }
    });
    progress("training step timed");
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

/// --decode: seconds per decode step of each batch size 1, 2, 4, ..., decode_max_batch
/// (median of `repeats` samples of `decode_steps` steps after `warmup` samples), one token per
/// sequence per step, the states advanced in place.
template <class ExecSpace, class Scalar>
std::vector<double> bench_decode_rank(const ProblemFlags& flags, const BenchSettings& settings,
                                      const dist::Runtime& runtime, Progress& progress) {
  using Memory = typename ExecSpace::memory_space;
  using Real = accumulator_t<Scalar>;
  DecodeOptions options;
  options.num_householder = flags.num_householder;
  options.scale = flags.scale;
  options.use_qk_l2norm = flags.l2norm;
  std::vector<double> seconds;
  for (std::int64_t batch = 1; batch <= settings.decode_max_batch; batch *= 2) {
    // A random problem of one token per sequence has the memory of one decode step's inputs.
    RandomProblemSpec spec = flags.spec();
    spec.batch = batch;
    spec.tokens = 1;
    spec.cu_seqlens.clear();
    spec.initial_state = true;
    spec.seed += std::uint64_t(runtime.rank());
    const auto owned = make_random_problem<Scalar, Memory>(spec);
    const std::int64_t N = batch, H = flags.heads, K = flags.key_dim, V = flags.value_dim;
    DecodeInputs<Scalar, Memory> in;
    // q [N, 1, Hqk, K] is q [N, Hqk, K]; g [N, 1, H] is g [N, H].
    in.q = typename decltype(in)::template view<const Scalar***>(owned.q.data(), N,
                                                                 owned.q.extent(2), K);
    in.k = owned.k;
    in.v = owned.v;
    in.beta = owned.beta;
    if (owned.g.data()) in.g = typename decltype(in)::template view<const Real**>(owned.g.data(), N, H);
    const DecodeState<Scalar, Memory> state = owned.initial_state;
    const DecodeOutput<Scalar, Memory> o("gdp::o", N, H, V);
    const double sample = median_seconds(runtime.comm(), settings, [&] {
      for (int step = 0; step < settings.decode_steps; ++step)
        recurrent_step<ExecSpace, Scalar>(in, state, o, options);
      ExecSpace().fence();
    });
    seconds.push_back(sample / settings.decode_steps);
    progress("decode batch " + std::to_string(batch) + " timed");
  }
  return seconds;
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
                          "as twice the forward's), and a training step: "
                          "gdp::chunk_gated_delta_product_for_backward (_into with --outputs-into), "
                          "then the backward from what it saved (_into with --gradients-into)");
    subcommand_->add_flag("--decode", settings_.decode,
                          "time the decode step gdp::recurrent_step instead: one token per sequence "
                          "per step, the states [N, H, K, V] advanced in place, for batches N = 1, "
                          "2, 4, ... up to --decode-max-batch (-B, -T and the forward's options are "
                          "ignored; every rank decodes a batch of its own). Prints the median time "
                          "per step, tokens/s and the state's traffic (one read and one write of "
                          "every state per step) in GB/s");
    subcommand_->add_option("--decode-steps", settings_.decode_steps,
                            "decode steps per timed sample (the time per step is the sample's / "
                            "this)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    subcommand_->add_option("--decode-max-batch", settings_.decode_max_batch,
                            "largest decode batch")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    subcommand_
        ->add_flag("--seq-parallel", settings_.seq_parallel,
                   "time `run --seq-parallel`'s compute step instead: each rank a slice of the "
                   "token axis (every head), the ordered scan of the state maps included")
        ->excludes("--backward")
        ->excludes("--baseline");
    subcommand_
        ->add_flag("--outputs-into", settings_.outputs_into,
                   "time gdp::chunk_gated_delta_product_into on outputs allocated once, instead "
                   "of a forward call that allocates them")
        ->excludes("--seq-parallel")
        ->excludes("--decode");
    subcommand_
        ->add_flag("--gradients-into", settings_.gradients_into,
                   "with --backward, time gdp::chunk_gated_delta_product_backward_into on "
                   "gradients allocated once, instead of a call that allocates them")
        ->needs("--backward");
    subcommand_->add_flag("!--no-workspace-cache", settings_.workspace_cache,
                          "allocate and free every call's scratch memory in the call, as without "
                          "gdp's workspace cache (gdp/workspace.hpp): what the cache saves");
    add_allow_non_finite_flag(*subcommand_, settings_.allow_non_finite);
  }

  int run(const dist::Runtime& runtime) override {
    set_workspace_caching(settings_.workspace_cache);
    if (settings_.decode) return run_decode(runtime);
    Progress progress(runtime.rank() == 0);
    RankTimes mine;
    dist::run_collectively(runtime.comm(), [&] {
      io::with_storage_type(flags_.storage(), [&](auto storage) {
        with_execution_space(space_, [&](auto space) {
          using Space = decltype(space);
          using Scalar = decltype(storage);
          mine = settings_.seq_parallel
                     ? bench_slice<Space, Scalar>(flags_, settings_, runtime, progress)
                     : bench_rank<Space, Scalar>(flags_, settings_, runtime, progress);
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
  int run_decode(const dist::Runtime& runtime) {
    Progress progress(runtime.rank() == 0);
    std::vector<double> mine;
    dist::run_collectively(runtime.comm(), [&] {
      io::with_storage_type(flags_.storage(), [&](auto storage) {
        with_execution_space(space_, [&](auto space) {
          mine = bench_decode_rank<decltype(space), decltype(storage)>(flags_, settings_, runtime,
                                                                       progress);
        });
      });
    });
    const int batches = int(mine.size());
    std::vector<double> all(std::size_t(batches) * std::size_t(runtime.size()));
    MPI_Allgather(mine.data(), batches, MPI_DOUBLE, all.data(), batches, MPI_DOUBLE, runtime.comm());
    if (runtime.rank() != 0) return 0;
    const double state_bytes = double(flags_.heads) * double(flags_.key_dim) * double(flags_.value_dim) *
                               (flags_.storage() == io::DType::F64 ? 8.0 : 4.0);
    std::printf("gdp_app bench --decode: H=%lld K=%lld V=%lld n=%d %s%s %s; %s; %d steps a sample, "
                "median of %d after %d warm-up\n",
                static_cast<long long>(flags_.heads), static_cast<long long>(flags_.key_dim),
                static_cast<long long>(flags_.value_dim), flags_.num_householder,
                flags_.gated ? "gated" : "ungated", flags_.l2norm ? " l2norm" : "", flags_.dtype.c_str(),
                placement(runtime, space_).c_str(), settings_.decode_steps, settings_.repeats,
                settings_.warmup);
    Table table({"batch", "us/step", "tokens/s", "state GB/s"});
    for (int b = 0; b < batches; ++b) {
      const double batch = double(std::int64_t(1) << b);
      double slowest = 0, tokens_per_second = 0;
      for (int r = 0; r < runtime.size(); ++r) {
        const double s = all[std::size_t(r) * std::size_t(batches) + std::size_t(b)];
        slowest = std::max(slowest, s);
        tokens_per_second += batch / s;
      }
      table.add_row({fixed(batch, 0), fixed(slowest * 1e6, 1), si(tokens_per_second),
                     fixed(2 * state_bytes * tokens_per_second / 1e9, 1)});
    }
    table.print(stdout);
    std::printf("(every rank decodes a batch of its own: us/step is the slowest rank's, tokens/s "
                "and GB/s the sums over ranks)\n");
    return 0;
  }

  void print(const std::vector<RankTimes>& all, const dist::Runtime& runtime) const {
    std::printf("gdp_app bench: %s; %s%s; chunk %d, median of %d after %d warm-up\n",
                flags_.describe().c_str(), placement(runtime, space_).c_str(),
                settings_.seq_parallel ? ", sequence-parallel" : "", settings_.chunk_size,
                settings_.repeats, settings_.warmup);
    std::vector<std::string> headers{"rank", "units", "calls", "tokens", "s/call", "cpu s/call", "tokens/s",
                                     "GFLOP/s"};
    if (settings_.backward)
      headers.insert(headers.end(), {"bwd s/call", "bwd GFLOP/s", "step s/call", "step GFLOP/s"});
    if (settings_.baseline)
      headers.insert(headers.end(), {"naive s", "naive GFLOP/s", "speedup", "sgemm GFLOP/s", "of sgemm"});
    Table table(headers);
    const double heads = double(flags_.heads);
    RankTimes total;
    std::vector<double> seconds;
    const auto row = [&](const std::string& name, const RankTimes& t) {
      std::vector<std::string> cells{name, fixed(t.units, 0), fixed(t.blocks, 0), si(t.token_heads / heads),
                                     fixed(t.chunked_seconds, 4), fixed(t.chunked_cpu_seconds, 4),
                                     si(t.token_heads / heads / t.chunked_seconds),
                                     fixed(t.flops / t.chunked_seconds / 1e9, 2)};
      if (settings_.backward)
        cells.insert(cells.end(), {fixed(t.backward_seconds, 4),
                                   fixed((detail::forward_and_backward_work - 1) * t.flops /
                                             t.backward_seconds / 1e9, 2),
                                   fixed(t.training_step_seconds, 4),
                                   fixed(detail::forward_and_backward_work * t.flops /
                                             t.training_step_seconds / 1e9, 2)});
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
      total.chunked_cpu_seconds = std::max(total.chunked_cpu_seconds, t.chunked_cpu_seconds);
      total.backward_seconds = std::max(total.backward_seconds, t.backward_seconds);
      total.training_step_seconds = std::max(total.training_step_seconds, t.training_step_seconds);
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
