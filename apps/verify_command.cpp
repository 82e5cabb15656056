// SPDX-License-Identifier: Apache-2.0
// `gdp_app verify`: the chunked forward against the float64 naive recurrence on random
// inputs, each rank checking its share, the errors gathered on rank 0.
#include "command.hpp"
#include "problem_flags.hpp"
#include "rank_problems.hpp"
#include "report_table.hpp"

#include "common/execution_spaces.hpp"
#include "common/finite_check.hpp"
#include "dist/collective_failure.hpp"
#include "dist/whole_problem_options.hpp"
#include "io/forward_file.hpp"
#include "reference/error_norms.hpp"
#include "reference/naive_recurrence.hpp"

#include <gdp/forward.hpp>

#include <algorithm>
#include <chrono>

namespace gdp::app {

namespace {

/// The tolerance on the relative Frobenius error that the tests use for each storage type.
double default_tolerance(io::DType storage) {
  switch (storage) {
    case io::DType::F64: return 1e-10;
    case io::DType::F32: return 1e-4;
    default: return 1e-2;
  }
}

struct RankErrors {
  double units = 0, blocks = 0, token_heads = 0, error_o = 0, error_ht = 0, seconds = 0;
};

template <class ExecSpace, class Scalar>
RankErrors check_rank(const ProblemFlags& flags, const ForwardOptions& chosen, const dist::Runtime& runtime) {
  const auto start = std::chrono::steady_clock::now();
  const auto problems = make_rank_problems<Scalar, typename ExecSpace::memory_space>(
      flags, runtime.rank(), runtime.size());
  // The options `run` would use, so that the blocks are checked as `run` computes them.
  const ForwardOptions options = dist::whole_problem_options<ExecSpace, Scalar>(problems.shape, chosen);
  RankErrors errors;
  errors.units = double(problems.units.size());
  errors.blocks = double(problems.blocks.size());
  errors.token_heads = double(dist::token_heads(problems.shape, problems.units));
  for (std::size_t b = 0; b < problems.inputs.size(); ++b) {
    const auto& owned = problems.inputs[b];
    const auto result = chunk_gated_delta_product<ExecSpace, Scalar>(owned.inputs(), options);
    // A NaN or an infinity in a result fails the check, named by its index in the whole problem.
    const detail::IndexOrigin origin = dist::block_origin(problems.shape, problems.blocks[b]);
    detail::NonFiniteScans<ExecSpace>()
        .add("o", result.o)
        .add("ht", result.final_state)
        .expect_finite_outputs(origin);
    const auto expected =
        reference::naive_recurrence(reference::make_reference_problem<double>(owned.inputs(), options));
    errors.error_o = std::max(errors.error_o, reference::relative_error(result.o, expected.o));
    errors.error_ht = std::max(errors.error_ht,
                               reference::relative_error(result.final_state, expected.final_state));
  }
  errors.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return errors;
}

class VerifyCommand : public Command {
 public:
  explicit VerifyCommand(CLI::App& app) {
    subcommand_ = app.add_subcommand(
        "verify",
        "Check the chunked forward against the float64 naive recurrence on random inputs of the "
        "given shape: each rank checks its share of the (sequence, head) pairs (as `run` would "
        "share them); rank 0 prints the largest relative Frobenius errors of o and ht, and every "
        "rank exits non-zero when one is above the tolerance or when an output holds a NaN or an "
        "infinity (named by tensor and index).");
    flags_.tokens = 512;
    flags_.heads = 2;
    flags_.key_dim = flags_.value_dim = 64;
    flags_.add_to(*subcommand_);
    add_space_option(*subcommand_, space_);
    subcommand_->add_option("--chunk-size", chunk_size_, "expanded positions per chunk")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    subcommand_->add_option("--tolerance", tolerance_,
                            "largest relative error accepted (default: 1e-10 f64, 1e-4 f32, 1e-2 "
                            "bf16 and f16)");
    add_allow_non_finite_flag(*subcommand_, allow_non_finite_);
  }

  int run(const dist::Runtime& runtime) override {
    RankErrors mine;
    dist::run_collectively(runtime.comm(), [&] {
      ForwardOptions options = flags_.options();
      options.chunk_size = chunk_size_;
      options.allow_non_finite = allow_non_finite_;
      io::with_storage_type(flags_.storage(), [&](auto storage) {
        with_execution_space(space_, [&](auto space) {
          mine = check_rank<decltype(space), decltype(storage)>(flags_, options, runtime);
        });
      });
    });
    std::vector<RankErrors> all(std::size_t(runtime.size()));
    MPI_Allgather(&mine, 6, MPI_DOUBLE, all.data(), 6, MPI_DOUBLE, runtime.comm());
    const double tolerance = tolerance_ > 0 ? tolerance_ : default_tolerance(flags_.storage());
    double error_o = 0, error_ht = 0;
    for (const RankErrors& e : all) {
      error_o = std::max(error_o, e.error_o);
      error_ht = std::max(error_ht, e.error_ht);
    }
    const bool pass = error_o <= tolerance && error_ht <= tolerance;
    if (runtime.rank() == 0) print(all, runtime, error_o, error_ht, tolerance, pass);
    return pass ? 0 : 1;
  }

 private:
  void print(const std::vector<RankErrors>& all, const dist::Runtime& runtime, double error_o,
             double error_ht, double tolerance, bool pass) const {
    std::printf("gdp_app verify: %s; %s\n", flags_.describe().c_str(), placement(runtime, space_).c_str());
    Table table({"rank", "units", "calls", "tokens", "error o", "error ht", "seconds"});
    for (std::size_t r = 0; r < all.size(); ++r) {
      const RankErrors& e = all[r];
      char o[32], ht[32];
      std::snprintf(o, sizeof o, "%.3e", e.error_o);
      std::snprintf(ht, sizeof ht, "%.3e", e.error_ht);
      table.add_row({std::to_string(r), fixed(e.units, 0), fixed(e.blocks, 0),
                     si(e.token_heads / double(flags_.heads)), o, ht, fixed(e.seconds, 3)});
    }
    table.print(stdout);
    std::printf("largest relative error: o %.3e, ht %.3e; tolerance %.1e: %s\n", error_o, error_ht,
                tolerance, pass ? "PASS" : "FAIL");
  }

  ProblemFlags flags_;
  std::string space_;
  int chunk_size_ = 64;
  double tolerance_ = 0;
  bool allow_non_finite_ = false;
};

}  // namespace

std::unique_ptr<Command> verify_command(CLI::App& app) { return std::make_unique<VerifyCommand>(app); }

}  // namespace gdp::app
