// SPDX-License-Identifier: Apache-2.0
// Determinism: the forward and the backward called twice on the same inputs give the same
// bits, on every execution space, storage type and walk over the chunks. The problems are
// shaped so that OpenMP splits the work every way it can (chunk-parallel segments, several
// blocks of value columns, varlen sequences of different lengths). docs/HARDENING.md says
// what holds on CUDA.
#include <gdp/backward.hpp>
#include <gdp/forward.hpp>

#include "common/random_problem.hpp"
#include "common/same_bits.hpp"
#include "common/test_dispatch.hpp"

#include <gtest/gtest.h>

#include <string>

namespace gdp::test {
namespace {

struct RepeatCase {
  std::string name;
  RandomProblemSpec spec;
  ForwardOptions options;
};

std::vector<RepeatCase> repeat_cases() {
  RandomProblemSpec few_pairs;  // one (sequence, head) pair: chunk-parallel, split columns
  few_pairs.tokens = 200;
  few_pairs.key_dim = 32;
  few_pairs.value_dim = 48;
  few_pairs.num_householder = 2;
  few_pairs.initial_state = true;
  RandomProblemSpec varlen = few_pairs;  // sequences of different lengths, two heads
  varlen.tokens = 150;
  varlen.heads = 2;
  varlen.cu_seqlens = {0, 17, 90, 91, 150};
  varlen.raw_keys = true;
  std::vector<RepeatCase> all;
  for (const ForwardAlgorithm algorithm :
       {ForwardAlgorithm::sequential, ForwardAlgorithm::chunk_parallel}) {
    const std::string walk =
        algorithm == ForwardAlgorithm::sequential ? "sequential" : "chunk_parallel";
    RepeatCase one{"one_pair_" + walk, few_pairs, {}};
    one.options.num_householder = 2;
    one.options.output_final_state = true;
    one.options.algorithm = algorithm;
    one.options.chunk_size = 32;
    all.push_back(one);
    RepeatCase two{"varlen_l2norm_" + walk, varlen, one.options};
    two.options.use_qk_l2norm = true;
    two.options.value_block = 16;
    all.push_back(two);
  }
  return all;
}

TEST(Determinism, RepeatedCallsGiveTheSameBits) {
  for (const RepeatCase& setup : repeat_cases()) {
    SCOPED_TRACE(setup.name);
    for_each_space([&](auto space) {
      using ExecSpace = decltype(space);
      using Memory = typename ExecSpace::memory_space;
      for_each_storage([&](auto storage, double) {
        using Scalar = decltype(storage);
        const auto in = make_random_problem<Scalar, Memory>(setup.spec);
        const auto upstream = make_random_output_gradients<Scalar, Memory>(setup.spec, true);
        const auto first = chunk_gated_delta_product<ExecSpace, Scalar>(in.inputs(), setup.options);
        const auto second = chunk_gated_delta_product<ExecSpace, Scalar>(in.inputs(), setup.options);
        expect_same_bits("o", first.o, second.o);
        expect_same_bits("ht", first.final_state, second.final_state);
        const auto a = chunk_gated_delta_product_backward<ExecSpace, Scalar>(
            in.inputs(), upstream.gradients(), setup.options);
        const auto b = chunk_gated_delta_product_backward<ExecSpace, Scalar>(
            in.inputs(), upstream.gradients(), setup.options);
        expect_same_bits(a, b);
      });
    });
  }
}

}  // namespace
}  // namespace gdp::test
