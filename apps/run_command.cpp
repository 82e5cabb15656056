// SPDX-License-Identifier: Apache-2.0
// `gdp_app run`: the forward of an input file, shared among the ranks, into one output file.
#include "command.hpp"
#include "report_table.hpp"

#include "dist/distributed_forward.hpp"
#include "dist/sequence_parallel.hpp"

#include <algorithm>
#include <string>

namespace gdp::app {

namespace {

void print_closing_table(const dist::RunResult& result) {
  const auto& shape = result.input.shape;
  const double heads = double(shape.heads);
  Table table({"rank", "units", "calls", "tokens", "read s", "compute s", "write s", "total s",
               "tokens/s", "GFLOP/s"});
  std::vector<double> work, compute;
  dist::RankReport all;
  for (std::size_t r = 0; r < result.ranks.size(); ++r) {
    const dist::RankReport& rank = result.ranks[r];
    const double tokens = rank.token_heads / heads;
    const double seconds = std::max(rank.compute_seconds, 1e-12);
    table.add_row({std::to_string(r), fixed(rank.units, 0), fixed(rank.blocks, 0), si(tokens),
                   fixed(rank.read_seconds, 3), fixed(rank.compute_seconds, 3),
                   fixed(rank.write_seconds, 3), fixed(rank.total_seconds, 3),
                   si(tokens / seconds), fixed(rank.flops / seconds / 1e9, 2)});
    work.push_back(rank.token_heads);
    compute.push_back(rank.compute_seconds);
    all.units += rank.units;
    all.blocks += rank.blocks;
    all.token_heads += rank.token_heads;
    all.flops += rank.flops;
    all.read_seconds = std::max(all.read_seconds, rank.read_seconds);
    all.compute_seconds = std::max(all.compute_seconds, rank.compute_seconds);
    all.write_seconds = std::max(all.write_seconds, rank.write_seconds);
    all.total_seconds = std::max(all.total_seconds, rank.total_seconds);
  }
  const double tokens = all.token_heads / heads;
  const double seconds = std::max(all.compute_seconds, 1e-12);
  table.add_row({"all", fixed(all.units, 0), fixed(all.blocks, 0), si(tokens),
                 fixed(all.read_seconds, 3), fixed(all.compute_seconds, 3),
                 fixed(all.write_seconds, 3), fixed(all.total_seconds, 3), si(tokens / seconds),
                 fixed(all.flops / seconds / 1e9, 2)});
  table.print(stdout);
  std::printf("(all: sums of units, calls and tokens; the slowest rank's times; throughput over "
              "the slowest rank's compute time)\n");
  std::printf("load imbalance (max/mean): work %.3f, compute time %.3f\n", load_imbalance(work),
              load_imbalance(compute));
  std::printf("end to end, I/O included: %.3f s, %s tokens/s, %.2f GFLOP/s\n", all.total_seconds,
              si(tokens / std::max(all.total_seconds, 1e-12)).c_str(),
              all.flops / std::max(all.total_seconds, 1e-12) / 1e9);
}

class RunCommand : public Command {
 public:
  explicit RunCommand(CLI::App& app) {
    subcommand_ = app.add_subcommand(
        "run",
        "Compute the forward of an input file into an output file, each rank reading, computing "
        "and writing only its share of the (sequence, head) pairs. The input holds q, k, v, beta "
        "(one dtype: F64, F32, BF16 or F16) and optionally g, h0, cu_seqlens; __metadata__ may set "
        "num_householder, scale and l2norm. The output holds o and ht (the final states), with "
        "--backward also the gradients, and appears only when every rank succeeded.");
    subcommand_->add_option("-i,--input", config_.input, "input safetensors file")->required();
    subcommand_->add_option("-o,--output", config_.output, "output safetensors file")->required();
    add_space_option(*subcommand_, config_.space);
    subcommand_->add_option("--chunk-size", config_.chunk_size, "expanded positions per chunk")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    subcommand_->add_flag("--backward", config_.backward,
                          "also compute the gradients dq, dk, dv, dbeta, dg, dh0 into the output: "
                          "the input must then hold do, and may hold dht (the loss's gradients "
                          "with respect to o and ht; `make-input --backward` writes them), as a "
                          "training step: each block's forward keeps what its backward needs "
                          "(gdp::chunk_gated_delta_product_for_backward)");
    subcommand_
        ->add_flag("--seq-parallel", seq_parallel_,
                   "share the token axis among the ranks instead of the (sequence, head) pairs: "
                   "each rank computes a slice of the tokens of every head, a sequence's pieces on "
                   "later ranks starting from the state an ordered scan of the ranks' state maps "
                   "gives them (for few long sequences; the same output within rounding)")
        ->excludes("--backward");
    add_allow_non_finite_flag(*subcommand_, config_.allow_non_finite);
    subcommand_->add_flag("--check-outputs", config_.check_outputs,
                          "fail when an output holds a NaN or an infinity, naming the tensor and "
                          "the first such element (no output file is then written)");
  }

  int run(const dist::Runtime& runtime) override {
    Progress progress(runtime.rank() == 0);
    config_.progress = [&](const std::string& message) { progress(message); };
    const dist::RunResult result = seq_parallel_
                                       ? dist::run_sequence_parallel_file(runtime.comm(), config_)
                                       : dist::run_forward_file(runtime.comm(), config_);
    if (runtime.rank() == 0) {
      const auto& s = result.input.shape;
      std::printf("gdp_app run: %s -> %s\n", config_.input.c_str(), config_.output.c_str());
      const std::string qk_heads =
          s.head_group() > 1 ? " Hqk=" + std::to_string(s.qk_heads) : std::string();
      std::printf("problem: B=%lld T=%lld H=%lld%s K=%lld V=%lld n=%d, %lld sequences, %s%s, %s, %s; %s\n",
                  (long long)s.batch, (long long)s.tokens_per_row, (long long)s.heads, qk_heads.c_str(),
                  (long long)s.key_dim, (long long)s.value_dim, s.num_householder,
                  (long long)s.num_sequences(), s.gated ? "gated" : "ungated",
                  s.has_initial_state ? ", h0" : "", io::dtype_name(result.input.storage),
                  config_.backward ? "forward and backward"
                  : seq_parallel_  ? "forward, sequence-parallel"
                                   : "forward",
                  placement(runtime, config_.space).c_str());
      print_closing_table(result);
    }
    return 0;
  }

 private:
  dist::RunConfig config_;
  bool seq_parallel_ = false;
};

}  // namespace

std::unique_ptr<Command> run_command(CLI::App& app) { return std::make_unique<RunCommand>(app); }

}  // namespace gdp::app
