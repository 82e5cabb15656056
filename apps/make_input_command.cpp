// SPDX-License-Identifier: Apache-2.0
// `gdp_app make-input`: a random valid input file, for demos, tests and benchmarks.
#include "command.hpp"
#include "problem_flags.hpp"

#include "dist/collective_failure.hpp"
#include "io/forward_input_tensors.hpp"

#include <cstdio>

namespace gdp::app {

namespace {

/// Draws the inputs (random_problem.hpp), with `gradients` also do and dht, and writes them
/// with the options as metadata; returns the file size.
std::uint64_t write_random_input(const ProblemFlags& flags, bool gradients, const std::string& path) {
  const detail::ProblemShape shape = flags.shape();
  return io::with_storage_type(flags.storage(), [&](auto storage) {
    using Scalar = decltype(storage);
    const auto owned = make_random_problem<Scalar, Kokkos::HostSpace>(flags.spec());
    io::TensorsToWrite tensors = io::forward_input_tensors(owned.inputs());
    OwnedOutputGradients<Scalar, Kokkos::HostSpace> upstream;
    if (gradients) {
      upstream = make_random_output_gradients<Scalar, Kokkos::HostSpace>(flags.spec(), true);
      tensors.add("do", io::dtype_of<Scalar>(), upstream.o);
      tensors.add("dht", io::accumulation_dtype(io::dtype_of<Scalar>()), upstream.final_state);
    }
    const io::SafetensorsLayout layout =
        io::plan_safetensors(tensors.specs, io::options_metadata(flags.options(), shape.key_dim));
    io::write_safetensors(path, layout, tensors.data);
    return layout.file_size;
  });
}

class MakeInputCommand : public Command {
 public:
  explicit MakeInputCommand(CLI::App& app) {
    subcommand_ = app.add_subcommand(
        "make-input",
        "Write a random valid input file for `run`: q, v ~ N(0,1), k ~ N(0,1) rows of unit length "
        "(raw with --l2norm), beta ~ U(0,1), g = logsigmoid(N(0,1)) in the accumulation type, h0 "
        "~ 0.1 N(0,1), cu_seqlens as I64, and the options in __metadata__. Rank 0 writes it.");
    flags_.add_to(*subcommand_);
    subcommand_->add_option("-o,--output", output_, "file to write")->required();
    subcommand_->add_flag("--backward", gradients_,
                          "also write do and dht ~ N(0,1), the gradients of a loss with respect to "
                          "o and ht, for `run --backward`");
  }

  int run(const dist::Runtime& runtime) override {
    std::uint64_t bytes = 0;
    dist::run_collectively(runtime.comm(), [&] {
      if (runtime.rank() == 0) bytes = write_random_input(flags_, gradients_, output_);
    });
    if (runtime.rank() == 0)
      std::printf("wrote %s: %s%s, %.1f MB\n", output_.c_str(), flags_.describe().c_str(),
                  gradients_ ? " with do and dht" : "", double(bytes) / 1e6);
    return 0;
  }

 private:
  ProblemFlags flags_;
  std::string output_;
  bool gradients_ = false;
};

}  // namespace

std::unique_ptr<Command> make_input_command(CLI::App& app) {
  return std::make_unique<MakeInputCommand>(app);
}

}  // namespace gdp::app
