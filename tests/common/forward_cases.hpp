// SPDX-License-Identifier: Apache-2.0
// The forward test matrix: the twelve shapes of the best-known implementation's own test
// file (each gated and ungated) and the edge cases of the operator's contract.
#pragma once

#include <gdp/forward.hpp>

#include "common/random_problem.hpp"
#include "reference/naive_recurrence.hpp"

#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

namespace gdp::test {

struct ForwardCase {
  std::string name;
  RandomProblemSpec spec;
  ForwardOptions options;
};

inline std::ostream& operator<<(std::ostream& out, const ForwardCase& c) { return out << c.name; }

/// (B, T, H, D, scale, n, l2norm) with K = V = D, gated or not.
inline ForwardCase fla_case(std::int64_t B, std::int64_t T, std::int64_t H, std::int64_t D,
                            double scale, int n, bool l2norm, bool gated,
                            std::vector<std::int64_t> cu_seqlens = {}) {
  ForwardCase c;
  c.name = "B" + std::to_string(B) + "_T" + std::to_string(T) + "_H" + std::to_string(H) + "_D" +
           std::to_string(D) + "_n" + std::to_string(n) + (l2norm ? "_l2norm" : "") +
           (cu_seqlens.empty() ? "" : "_varlen" + std::to_string(cu_seqlens.size() - 1)) +
           (gated ? "_gated" : "_ungated");
  c.spec.batch = B;
  c.spec.tokens = T;
  c.spec.heads = H;
  c.spec.key_dim = c.spec.value_dim = D;
  c.spec.num_householder = n;
  c.spec.gated = gated;
  c.spec.raw_keys = l2norm;
  c.spec.cu_seqlens = std::move(cu_seqlens);
  c.spec.initial_state = true;
  c.spec.seed = std::hash<std::string>()(c.name);
  c.options.num_householder = n;
  c.options.scale = scale;
  c.options.use_qk_l2norm = l2norm;
  c.options.output_final_state = true;
  return c;
}

inline std::vector<ForwardCase> fla_cases() {
  std::vector<ForwardCase> cases;
  for (bool gated : {true, false}) {
    cases.push_back(fla_case(1, 63, 1, 64, 0.1, 1, false, gated));
    cases.push_back(fla_case(2, 200, 3, 60, 0.1, 1, false, gated));
    cases.push_back(fla_case(2, 1000, 4, 64, 0.1, 2, false, gated));
    cases.push_back(fla_case(2, 1024, 4, 64, 1, 2, true, gated));
    cases.push_back(fla_case(2, 1024, 6, 100, 1, 2, false, gated));
    cases.push_back(fla_case(4, 1500, 8, 128, 0.1, 3, false, gated));
    cases.push_back(fla_case(2, 2048, 8, 128, 1, 3, false, gated));
    cases.push_back(fla_case(2, 2048, 8, 128, 1, 3, true, gated));
    cases.push_back(fla_case(1, 63, 2, 64, 0, 3, false, gated, {0, 63}));
    cases.push_back(fla_case(1, 1000, 2, 100, 0, 2, false, gated, {0, 63, 100, 500, 1000}));
    cases.push_back(fla_case(1, 2000, 2, 128, 0, 2, false, gated, {0, 100, 300, 800, 1500, 2000}));
    cases.push_back(
        fla_case(1, 2048, 2, 256, 0, 3, false, gated, {0, 100, 123, 300, 500, 800, 1000, 1500, 2048}));
  }
  return cases;
}

/// Edge cases of the contract, all small.
inline std::vector<ForwardCase> edge_cases() {
  std::vector<ForwardCase> cases;
  const auto add = [&](const std::string& name, auto&& adjust) {
    ForwardCase c = fla_case(2, 37, 2, 16, 0, 2, false, true);
    c.name = name;
    adjust(c);
    c.spec.seed = std::hash<std::string>()(name);
    cases.push_back(c);
  };
  add("single_token", [](ForwardCase& c) { c.spec.tokens = 1; });
  add("shorter_than_chunk", [](ForwardCase& c) { c.spec.tokens = 10; });
  add("key_dim_differs_from_value_dim", [](ForwardCase& c) {
    c.spec.key_dim = 24;
    c.spec.value_dim = 40;
  });
  add("key_dim_one", [](ForwardCase& c) { c.spec.key_dim = 1; });
  add("value_dim_one", [](ForwardCase& c) { c.spec.value_dim = 1; });
  add("beta_zero", [](ForwardCase& c) { c.spec.beta_value = 0.0; });
  add("beta_two", [](ForwardCase& c) { c.spec.beta_value = 2.0; });
  add("near_total_decay", [](ForwardCase& c) { c.spec.gate_value = -20.0; });
  add("no_initial_state", [](ForwardCase& c) { c.spec.initial_state = false; });
  add("no_final_state", [](ForwardCase& c) { c.options.output_final_state = false; });
  add("ungated_n4", [](ForwardCase& c) {
    c.spec.gated = false;
    c.spec.num_householder = c.options.num_householder = 4;
  });
  add("chunk_not_multiple_of_n", [](ForwardCase& c) {
    c.spec.num_householder = c.options.num_householder = 3;
    c.options.chunk_size = 8;
  });
  add("chunk_of_one_position", [](ForwardCase& c) { c.options.chunk_size = 1; });
  add("chunk_longer_than_sequence", [](ForwardCase& c) { c.options.chunk_size = 128; });
  add("empty_sequences_in_cu_seqlens", [](ForwardCase& c) {
    c.spec.batch = 1;
    c.spec.tokens = 50;
    c.spec.cu_seqlens = {0, 0, 20, 20, 50, 50};
  });
  add("l2norm_unnormalised_keys", [](ForwardCase& c) {
    c.spec.raw_keys = true;
    c.options.use_qk_l2norm = true;
  });
  add("explicit_scale", [](ForwardCase& c) { c.options.scale = 0.37; });
  return cases;
}

/// Grouped value heads: H = group * Hqk value heads, each group of `group` consecutive ones
/// reading one of the Hqk q/k heads, for groups of 1, 2 and 4: per group n = 1 gated with
/// equal lengths, n = 2 ungated and L2-normalised with variable lengths (an empty sequence
/// among them), n = 3 gated with variable lengths, chunks of 16 and value blocks of 8 columns.
inline std::vector<ForwardCase> grouped_cases() {
  std::vector<ForwardCase> cases;
  for (const std::int64_t group : {1, 2, 4}) {
    const std::int64_t qk_heads = group == 4 ? 1 : 2;
    const auto add = [&](int n, bool gated, bool l2norm, std::vector<std::int64_t> cu_seqlens,
                         auto&& adjust) {
      ForwardCase c = fla_case(cu_seqlens.empty() ? 2 : 1, cu_seqlens.empty() ? 37 : cu_seqlens.back(),
                               group * qk_heads, 16, 0, n, l2norm, gated, cu_seqlens);
      c.name = "group" + std::to_string(group) + "_Hqk" + std::to_string(qk_heads) + "_" + c.name;
      c.spec.qk_heads = qk_heads;
      c.spec.value_dim = 24;
      adjust(c);
      c.spec.seed = std::hash<std::string>()(c.name);
      cases.push_back(c);
    };
    add(1, true, false, {}, [](ForwardCase&) {});
    add(2, false, true, {0, 20, 20, 70}, [](ForwardCase&) {});
    add(3, true, false, {0, 9, 40}, [](ForwardCase& c) {
      c.options.chunk_size = 16;
      c.options.value_block = 8;
    });
  }
  return cases;
}

/// What make() returns for the case called `name`, computed once per process.
template <class Result, class Make>
const Result& computed_once(const std::string& name, Make&& make) {
  static std::map<std::string, std::unique_ptr<Result>> cache;
  // The cached views must go before Kokkos does.
  static const bool registered = (Kokkos::push_finalize_hook([] { cache.clear(); }), true);
  (void)registered;
  auto& slot = cache[name];
  if (!slot) slot = std::make_unique<Result>(make());
  return *slot;
}

/// The float64 naive-recurrence result of a case, computed once per process.
inline const reference::ReferenceResult<double>& naive_reference(const ForwardCase& c) {
  return computed_once<reference::ReferenceResult<double>>(c.name, [&] {
    const auto inputs = make_random_problem<double, Kokkos::HostSpace>(c.spec);
    return reference::naive_recurrence(
        reference::make_reference_problem<double>(inputs.inputs(), c.options));
  });
}

}  // namespace gdp::test
