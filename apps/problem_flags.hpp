// SPDX-License-Identifier: Apache-2.0
// The flags that describe a random problem, shared by `make-input`, `bench` and `verify`, and
// what they turn into: the random-input recipe, the operator options and the storage dtype.
#pragma once

#include <gdp/forward.hpp>
#include <gdp/safetensors.hpp>

#include "common/problem_shape.hpp"
#include "common/random_problem.hpp"

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace gdp::app {

struct ProblemFlags {
  std::int64_t batch = 1, tokens = 4096, heads = 4, key_dim = 128, value_dim = 128;
  std::int64_t qk_heads = 0;  ///< heads of q and k; 0: as many as heads (no grouping)
  int num_householder = 2;
  bool gated = true, initial_state = false, l2norm = false;
  double scale = 0;
  std::int64_t varlen = 0;
  std::vector<std::int64_t> cu_seqlens;
  std::string dtype = "f32";
  std::uint64_t seed = 42;

  /// Adds the flags to a subcommand.
  void add_to(CLI::App& command);

  /// The storage dtype (F64, F32, BF16, F16).
  io::DType storage() const;
  /// The random-input recipe (with --varlen, the sequence lengths drawn from the seed).
  RandomProblemSpec spec() const;
  ForwardOptions options() const;
  /// The problem's shape, checked like the operator's arguments.
  detail::ProblemShape shape() const;
  /// Heads of q and k: qk_heads, or heads when it is 0.
  std::int64_t query_key_heads() const { return qk_heads > 0 ? qk_heads : heads; }
  /// "B=1 T=4096 H=4 K=128 V=128 n=2 gated f32" and so on (" Hqk=2" after H when grouped).
  std::string describe() const;
};

/// The recipe for the part of `spec` that a sub-problem of shape `block` covers, with its own
/// seed.
RandomProblemSpec block_spec(const RandomProblemSpec& spec, const detail::ProblemShape& block,
                             std::uint64_t seed);

}  // namespace gdp::app
