// SPDX-License-Identifier: Apache-2.0
// This rank's share of a random problem, for `bench` and `verify`: the problem described by
// the flags is partitioned among the ranks exactly as `run` partitions a file, and each of
// this rank's blocks gets random inputs of its own (drawn on this rank: no rank holds the
// whole problem).
#pragma once

#include "problem_flags.hpp"

#include "common/random_problem.hpp"
#include "dist/work_partition.hpp"

#include <cstdint>
#include <vector>

namespace gdp::app {

template <class Scalar, class MemorySpace>
struct RankProblems {
  detail::ProblemShape shape;  ///< the whole problem
  dist::UnitRange units;       ///< this rank's (sequence, head) pairs
  std::vector<dist::WorkBlock> blocks;
  std::vector<RandomProblemSpec> specs;                   ///< one sub-problem per block
  std::vector<OwnedInputs<Scalar, MemorySpace>> inputs;  ///< its inputs
};

template <class Scalar, class MemorySpace>
RankProblems<Scalar, MemorySpace> make_rank_problems(const ProblemFlags& flags, int rank, int ranks) {
  RankProblems<Scalar, MemorySpace> p;
  p.shape = flags.shape();
  p.units = dist::partition_units(p.shape, ranks)[std::size_t(rank)];
  // A block of empty sequences only has no work and is no valid operator call (T >= 1).
  // Cut as `run --backward` would cut them, so that bench times the calls run makes.
  for (const dist::WorkBlock& block :
       dist::blocks_of(p.shape, p.units, dist::app_call_limits(p.shape, flags.options(), true)))
    if (block.tokens() > 0) p.blocks.push_back(block);
  const RandomProblemSpec spec = flags.spec();
  for (const dist::WorkBlock& block : p.blocks) {
    // A seed per block, from the first unit it holds: the same block draws the same inputs.
    const std::uint64_t first_unit = std::uint64_t(block.sequence_begin * p.shape.heads + block.head_begin);
    const std::uint64_t seed = flags.seed + 0x9e3779b97f4a7c15ull * (first_unit + 1);
    p.specs.push_back(block_spec(spec, dist::block_shape(p.shape, block), seed));
    p.inputs.push_back(make_random_problem<Scalar, MemorySpace>(p.specs.back()));
  }
  return p;
}

}  // namespace gdp::app
