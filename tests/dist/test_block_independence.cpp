// SPDX-License-Identifier: Apache-2.0
// The property behind "the same output for any number of ranks": a (sequence, head) pair gives
// bitwise the same o and ht, and the same gradients, whether the library computes it in the
// whole problem or in any block of a rank's share, with the options gdp_app gives every block
// (dist/whole_problem_options.hpp), by the forward alone and by a training step (the forward
// that saves for the backward, then the backward from it, as `gdp_app run --backward` computes
// them). On the host spaces the forward's bits do not even depend
// on the state pass's value-block width, chosen from the problem's size (blocking over value
// columns leaves each column's arithmetic alone); the backward's do (it sums one partial per
// block of columns), and so do Cuda's, which is why gdp_app fixes the width.
#include "chunk/forward_impl.hpp"
#include "common/random_problem.hpp"
#include "common/test_dispatch.hpp"
#include "dist/block_call.hpp"
#include "dist/block_slabs.hpp"
#include "dist/whole_problem_options.hpp"
#include "io/forward_file.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <map>

namespace gdp::test {
namespace {

/// A contiguous host array seen as a tensor "file" starting at byte 0, to cut slabs from.
struct HostTensor {
  io::TensorEntry entry;
  std::vector<std::byte> bytes;

  template <class View>
  HostTensor(const std::string& name, io::DType dtype, const View& view) {
    const auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), view);
    entry = {name, dtype, {}, 0, host.size() * io::dtype_size(dtype)};
    for (unsigned r = 0; r < View::rank; ++r) entry.shape.push_back(std::int64_t(view.extent(r)));
    bytes.resize(entry.end);
    std::memcpy(bytes.data(), host.data(), bytes.size());
  }

  /// The slab of `block`, packed.
  std::vector<std::byte> slab(const dist::WorkBlock& block, int n) const {
    const dist::PackedSlabs packed = dist::pack_slabs(entry, {block}, n);
    std::vector<std::byte> out;
    for (const io::ByteRun& run : packed.runs)
      out.insert(out.end(), bytes.begin() + std::ptrdiff_t(run.offset),
                 bytes.begin() + std::ptrdiff_t(run.offset + run.length));
    return out;
  }
};

/// The bytes of a packed part as the elements they hold.
template <class T>
T* as(std::vector<std::byte>& bytes) {
  return reinterpret_cast<T*>(bytes.data());
}

/// Checks that every block of partitions among 2, 3 and one rank a unit computes what the
/// whole problem does. Every block runs with the options the whole problem gets
/// (whole_problem_options), except that with `free_value_block` each call chooses its own
/// value block: then only the forward is compared (its bits must not depend on the width),
/// and the widths must really differ somewhere. Without, the backward is compared as well.
template <class ExecSpace, class Scalar>
void check_blocks(const RandomProblemSpec& spec, const ForwardOptions& chosen, bool free_value_block) {
  using Real = accumulator_t<Scalar>;
  using memory_space = typename ExecSpace::memory_space;
  const io::DType stored = io::dtype_of<Scalar>(), accumulated = io::accumulation_dtype(stored);
  const auto owned = make_random_problem<Scalar, memory_space>(spec);
  const auto upstream = make_random_output_gradients<Scalar, memory_space>(spec, true);
  const detail::ProblemShape shape = detail::check_forward_inputs(owned.inputs(), chosen);
  ForwardOptions options = dist::whole_problem_options<ExecSpace, Scalar>(shape, chosen);
  if (free_value_block) options.value_block = 0;
  std::map<std::string, HostTensor> in{
      {"q", {"q", stored, owned.q}},         {"k", {"k", stored, owned.k}},
      {"v", {"v", stored, owned.v}},         {"beta", {"beta", stored, owned.beta}},
      {"g", {"g", accumulated, owned.g}},    {"h0", {"h0", accumulated, owned.initial_state}},
      {"do", {"do", stored, upstream.o}},    {"dht", {"dht", accumulated, upstream.final_state}}};
  // Every result of the whole problem, by name.
  std::map<std::string, HostTensor> whole;
  const auto forward = chunk_gated_delta_product<ExecSpace, Scalar>(owned.inputs(), options);
  whole.emplace("o", HostTensor("o", stored, forward.o));
  whole.emplace("ht", HostTensor("ht", accumulated, forward.final_state));
  const bool backward = !free_value_block;
  if (backward) {
    // gdp_app's training step: the forward that saves for the backward (its o and ht by
    // another walk than the forward's on some spaces), then the backward from what it saved.
    SavedForward<Scalar, memory_space> saved;
    const auto training = chunk_gated_delta_product_for_backward<ExecSpace, Scalar>(
        owned.inputs(), options, saved);
    whole.emplace("training o", HostTensor("o", stored, training.o));
    whole.emplace("training ht", HostTensor("ht", accumulated, training.final_state));
    const auto gradients = chunk_gated_delta_product_backward<ExecSpace, Scalar>(
        owned.inputs(), upstream.gradients(), saved);
    whole.emplace("dq", HostTensor("dq", stored, gradients.dq));
    whole.emplace("dk", HostTensor("dk", stored, gradients.dk));
    whole.emplace("dv", HostTensor("dv", stored, gradients.dv));
    whole.emplace("dbeta", HostTensor("dbeta", stored, gradients.dbeta));
    whole.emplace("dg", HostTensor("dg", accumulated, gradients.dg));
    whole.emplace("dh0", HostTensor("dh0", accumulated, gradients.dh0));
  }
  const int n = options.num_householder;

  const std::int64_t units = shape.num_sequences() * shape.heads;
  bool widths_differ = false;
  for (const int ranks : {2, 3, int(units)}) {
    for (const dist::UnitRange& range : dist::partition_units(shape, ranks)) {
      for (const dist::WorkBlock& block : dist::blocks_of(shape, range, dist::app_call_limits(shape, options, true))) {
        SCOPED_TRACE(::testing::Message() << ranks << " ranks, sequences [" << block.sequence_begin << ", "
                                          << block.sequence_end << "), heads [" << block.head_begin << ", "
                                          << block.head_end << ")");
        std::map<std::string, std::vector<std::byte>> parts, results;
        for (const auto& [name, tensor] : in) parts[name] = tensor.slab(block, n);
        for (const auto& [name, tensor] : whole) results[name].resize(tensor.slab(block, n).size());
        dist::BlockHostInputs<Scalar> inputs;
        inputs.shape = dist::block_shape(shape, block);
        inputs.q = as<Scalar>(parts["q"]);
        inputs.k = as<Scalar>(parts["k"]);
        inputs.v = as<Scalar>(parts["v"]);
        inputs.beta = as<Scalar>(parts["beta"]);
        inputs.g = as<Real>(parts["g"]);
        inputs.h0 = as<Real>(parts["h0"]);
        inputs.d_o = as<Scalar>(parts["do"]);
        inputs.dht = as<Real>(parts["dht"]);
        dist::BlockHostOutputs<Scalar> outputs;
        outputs.o = as<Scalar>(results["o"]);
        outputs.ht = as<Real>(results["ht"]);
        const dist::BlockCall<ExecSpace, Scalar> call(inputs);
        call.forward(options, outputs);
        if (backward) {
          dist::BlockHostOutputs<Scalar> training;
          training.o = as<Scalar>(results["training o"]);
          training.ht = as<Real>(results["training ht"]);
          training.dq = as<Scalar>(results["dq"]);
          training.dk = as<Scalar>(results["dk"]);
          training.dv = as<Scalar>(results["dv"]);
          training.dbeta = as<Scalar>(results["dbeta"]);
          training.dg = as<Real>(results["dg"]);
          training.dh0 = as<Real>(results["dh0"]);
          SavedForward<Scalar, memory_space> saved;
          call.forward(options, training, false, &saved);
          call.backward(options, training, saved);
        }
        for (const auto& [name, tensor] : whole)
          EXPECT_TRUE(results[name] == tensor.slab(block, n)) << name << " differs";
        widths_differ |= detail::state_pass_value_block<ExecSpace>(inputs.shape, options) !=
                         detail::state_pass_value_block<ExecSpace>(shape, options);
      }
    }
  }
  if (free_value_block)
    EXPECT_TRUE(widths_differ) << "no block ran with another value-block width than the whole problem";
}

RandomProblemSpec small_spec() {
  RandomProblemSpec spec;
  spec.batch = 2;
  spec.tokens = 70;
  spec.heads = 3;
  spec.key_dim = 16;
  spec.value_dim = 64;
  spec.num_householder = 2;
  spec.initial_state = true;
  return spec;
}

ForwardOptions options_for(const RandomProblemSpec& spec) {
  ForwardOptions options;
  options.num_householder = spec.num_householder;
  options.output_final_state = true;
  options.chunk_size = 16;
  return options;
}

/// Runs check_blocks on every space and storage type.
void check_everywhere(const RandomProblemSpec& spec, const ForwardOptions& options, bool free_value_block) {
  for_each_space([&](auto space) {
    for_each_storage([&](auto storage, double) {
      check_blocks<decltype(space), decltype(storage)>(spec, options, free_value_block);
    });
  });
}

RandomProblemSpec variable_lengths() {
  RandomProblemSpec spec = small_spec();
  spec.batch = 1;
  spec.tokens = 150;
  spec.num_householder = 3;
  spec.cu_seqlens = {0, 40, 41, 41, 150};
  return spec;
}

// On the host spaces the forward's bits do not depend on the value block. On Cuda they do (its
// kernels split the work of a column differently for other widths), which is one more reason
// why gdp_app fixes the width: the tests below hold on every space.
TEST(BlockIndependence, HostForwardBitsDoNotDependOnTheValueBlock) {
  for (const RandomProblemSpec& spec : {small_spec(), variable_lengths()}) {
    const auto check = [&](auto space) {
      for_each_storage([&](auto storage, double) {
        check_blocks<decltype(space), decltype(storage)>(spec, options_for(spec), true);
      });
    };
#ifdef KOKKOS_ENABLE_SERIAL
    run_on_space<Kokkos::Serial>(check);
#endif
#ifdef KOKKOS_ENABLE_OPENMP
    run_on_space<Kokkos::OpenMP>(check);
#endif
  }
}

TEST(BlockIndependence, EqualLengths) { check_everywhere(small_spec(), options_for(small_spec()), false); }

TEST(BlockIndependence, VariableLengths) {
  check_everywhere(variable_lengths(), options_for(variable_lengths()), false);
}

TEST(BlockIndependence, GroupedValueHeads) {
  for (const std::int64_t qk_heads : {1, 2}) {
    RandomProblemSpec spec = variable_lengths();
    spec.heads = 4;
    spec.qk_heads = qk_heads;
    spec.raw_keys = qk_heads == 2;
    ForwardOptions options = options_for(spec);
    options.use_qk_l2norm = spec.raw_keys;
    check_everywhere(spec, options, false);
  }
}

TEST(BlockIndependence, ChunkParallelWalk) {
  ForwardOptions options = options_for(variable_lengths());
  options.algorithm = ForwardAlgorithm::chunk_parallel;
  options.chunks_per_segment = 2;
  check_everywhere(variable_lengths(), options, false);
}

}  // namespace
}  // namespace gdp::test
