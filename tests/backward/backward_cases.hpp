// SPDX-License-Identifier: Apache-2.0
// The backward test matrix: the forward's edge cases (all small), a few cases that only the
// backward needs, and a handful of the best-known implementation's shapes for the long run.
// The final state's gradient dht is given exactly when the case asks for the final state.
#pragma once

#include "common/forward_cases.hpp"
#include "reference/naive_backward.hpp"

#include <string>
#include <vector>

namespace gdp::test {

/// The default suite: every forward edge case, plus what the backward adds.
inline std::vector<ForwardCase> backward_cases() {
  std::vector<ForwardCase> cases = edge_cases();
  const auto add = [&](ForwardCase c, const std::string& name, auto&& adjust) {
    c.name = name;
    adjust(c);
    c.spec.seed = std::hash<std::string>()(name);
    cases.push_back(c);
  };
  add(fla_case(2, 37, 2, 16, 0, 1, false, true), "gated_n1", [](ForwardCase&) {});
  add(fla_case(2, 37, 2, 16, 0, 3, true, false), "ungated_n3_l2norm_no_dht",
      [](ForwardCase& c) { c.options.output_final_state = false; });
  // Value blocks of 16 columns, the last one narrower (V = 56): the reverse pass writes four
  // slices of every adjoint that the last stage must add.
  add(fla_case(1, 100, 1, 64, 0, 2, true, true), "value_blocks_l2norm_varlen",
      [](ForwardCase& c) {
        c.spec.key_dim = 40;
        c.spec.value_dim = 56;
        c.spec.cu_seqlens = {0, 100};
        c.spec.beta_max = 2.0;
        c.options.value_block = 16;
      });
  // More value columns than the CUDA chunk gradients take at a time (128), and not a multiple
  // of 8: they multiply dBv, dS, do, Vnew and S_0 in two slabs, copied element by element, and
  // the reverse pass writes three blocks of value columns.
  add(fla_case(1, 90, 2, 32, 0.1, 2, false, true), "wide_values",
      [](ForwardCase& c) { c.spec.value_dim = 150; });
  add(fla_case(1, 63, 1, 64, 0.1, 1, false, true), "fla_B1_T63_H1_D64_n1_gated",
      [](ForwardCase&) {});
  add(fla_case(2, 150, 3, 48, 0.1, 2, false, true), "B2_T150_H3_D48_n2_chunk32",
      [](ForwardCase& c) { c.options.chunk_size = 32; });
  add(fla_case(1, 300, 2, 32, 0, 3, false, true, {0, 63, 100, 100, 300}), "varlen_n3_ungated",
      [](ForwardCase& c) { c.spec.gated = false; });
  // The chunk-parallel walk (ForwardAlgorithm::chunk_parallel) in the backward: segments of
  // two chunks over sequences of 3, 2, 0 and 10 chunks (one segment shorter than the others,
  // an empty sequence); segments of one chunk; and the segment length chosen from the work.
  add(fla_case(1, 300, 2, 32, 0, 3, false, true, {0, 63, 100, 100, 300}),
      "chunk_parallel_gated_n3_varlen", [](ForwardCase& c) {
        c.options.algorithm = ForwardAlgorithm::chunk_parallel;
        c.options.chunks_per_segment = 2;
      });
  add(fla_case(2, 150, 2, 48, 0.1, 2, true, true), "chunk_parallel_one_chunk_segments_n2",
      [](ForwardCase& c) {
        c.options.algorithm = ForwardAlgorithm::chunk_parallel;
        c.options.chunks_per_segment = 1;
        c.spec.value_dim = 40;
      });
  add(fla_case(1, 400, 1, 64, 0, 2, false, false), "chunk_parallel_chosen_segments_n2_ungated",
      [](ForwardCase& c) { c.options.algorithm = ForwardAlgorithm::chunk_parallel; });
  return cases;
}

/// Some of the best-known implementation's shapes, under the CTest label `long`.
inline std::vector<ForwardCase> backward_long_cases() {
  return {fla_case(2, 1000, 4, 64, 0.1, 2, false, true),
          fla_case(2, 1024, 4, 64, 1, 2, true, false),
          fla_case(1, 2000, 2, 128, 0, 2, false, true, {0, 100, 300, 800, 1500, 2000}),
          fla_case(2, 2048, 8, 128, 1, 3, true, true)};
}

/// The float64 naive-adjoint gradients of a case, computed once per process.
inline const reference::ReferenceGradients& backward_reference(const ForwardCase& c) {
  return computed_once<reference::ReferenceGradients>(c.name, [&] {
    const auto inputs = make_random_problem<double, Kokkos::HostSpace>(c.spec);
    const auto problem = reference::make_reference_problem<double>(inputs.inputs(), c.options);
    const auto upstream = make_random_output_gradients<double, Kokkos::HostSpace>(
        c.spec, c.options.output_final_state);
    return reference::naive_backward(
        problem, reference::make_reference_output_gradients(upstream.gradients(), problem.shape));
  });
}

}  // namespace gdp::test
