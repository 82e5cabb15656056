// SPDX-License-Identifier: Apache-2.0
// The property behind "the same output for any number of ranks": a (sequence, head) pair gives
// bitwise the same o and ht whether the library computes it in the whole problem or in any
// block of a rank's share. In particular the state pass's value-block width, chosen from the
// problem's size, must change no bit (blocking over value columns leaves each column's
// arithmetic alone); the test checks that the widths really differ here.
#include "chunk/forward_impl.hpp"
#include "common/random_problem.hpp"
#include "common/test_dispatch.hpp"
#include "dist/block_forward.hpp"
#include "dist/block_slabs.hpp"
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

template <class ExecSpace, class Scalar>
void check_blocks(const RandomProblemSpec& spec, const ForwardOptions& options) {
  using Real = accumulator_t<Scalar>;
  const io::DType stored = io::dtype_of<Scalar>(), accumulated = io::accumulation_dtype(stored);
  const auto owned = make_random_problem<Scalar, typename ExecSpace::memory_space>(spec);
  const auto whole = chunk_gated_delta_product<ExecSpace, Scalar>(owned.inputs(), options);
  const detail::ProblemShape shape = detail::check_forward_inputs(owned.inputs(), options);
  std::map<std::string, HostTensor> in{{"q", {"q", stored, owned.q}},       {"k", {"k", stored, owned.k}},
                                       {"v", {"v", stored, owned.v}},       {"beta", {"beta", stored, owned.beta}},
                                       {"g", {"g", accumulated, owned.g}}, {"h0", {"h0", accumulated, owned.initial_state}}};
  const HostTensor o("o", stored, whole.o), ht("ht", accumulated, whole.final_state);
  const int n = options.num_householder;

  const std::int64_t units = shape.num_sequences() * shape.heads;
  bool widths_differ = false;
  for (const int ranks : {2, 3, int(units)}) {
    for (const dist::UnitRange& range : dist::partition_units(shape, ranks)) {
      for (const dist::WorkBlock& block : dist::blocks_of(shape, range)) {
        SCOPED_TRACE(::testing::Message() << ranks << " ranks, sequences [" << block.sequence_begin << ", "
                                          << block.sequence_end << "), heads [" << block.head_begin << ", "
                                          << block.head_end << ")");
        std::map<std::string, std::vector<std::byte>> parts;
        for (const auto& [name, tensor] : in) parts[name] = tensor.slab(block, n);
        dist::BlockHostInputs<Scalar> inputs;
        inputs.shape = dist::block_shape(shape, block);
        inputs.q = reinterpret_cast<Scalar*>(parts["q"].data());
        inputs.k = reinterpret_cast<Scalar*>(parts["k"].data());
        inputs.v = reinterpret_cast<Scalar*>(parts["v"].data());
        inputs.beta = reinterpret_cast<Scalar*>(parts["beta"].data());
        inputs.g = reinterpret_cast<Real*>(parts["g"].data());
        inputs.h0 = reinterpret_cast<Real*>(parts["h0"].data());
        const std::vector<std::byte> expected_o = o.slab(block, n), expected_ht = ht.slab(block, n);
        std::vector<std::byte> block_o(expected_o.size()), block_ht(expected_ht.size());
        dist::forward_block<ExecSpace, Scalar>(
            inputs, options, {reinterpret_cast<Scalar*>(block_o.data()), reinterpret_cast<Real*>(block_ht.data())});
        EXPECT_TRUE(block_o == expected_o) << "o differs";
        EXPECT_TRUE(block_ht == expected_ht) << "ht differs";
        widths_differ |= detail::state_pass_value_block<ExecSpace>(inputs.shape) !=
                         detail::state_pass_value_block<ExecSpace>(shape);
      }
    }
  }
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

TEST(BlockIndependence, EqualLengths) {
  const RandomProblemSpec spec = small_spec();
  for_each_space([&](auto space) {
    for_each_storage([&](auto storage, double) {
      check_blocks<decltype(space), decltype(storage)>(spec, options_for(spec));
    });
  });
}

TEST(BlockIndependence, VariableLengths) {
  RandomProblemSpec spec = small_spec();
  spec.batch = 1;
  spec.tokens = 150;
  spec.num_householder = 3;
  spec.cu_seqlens = {0, 40, 41, 41, 150};
  for_each_space([&](auto space) {
    for_each_storage([&](auto storage, double) {
      check_blocks<decltype(space), decltype(storage)>(spec, options_for(spec));
    });
  });
}

}  // namespace
}  // namespace gdp::test
