// SPDX-License-Identifier: Apache-2.0
#include "problem_flags.hpp"

#include "common/gdp_asserts.hpp"

#include <algorithm>
#include <map>
#include <random>
#include <sstream>

namespace gdp::app {

namespace {

const std::map<std::string, io::DType>& dtype_names() {
  static const std::map<std::string, io::DType> names{
      {"f64", io::DType::F64}, {"f32", io::DType::F32}, {"bf16", io::DType::BF16}, {"f16", io::DType::F16}};
  return names;
}

/// Offsets of `count` sequences of random lengths >= 1 that together hold `tokens` tokens.
std::vector<std::int64_t> random_offsets(std::int64_t tokens, std::int64_t count, std::uint64_t seed) {
  GDP_EXPECT(count >= 1 && count <= tokens, "varlen", "expected 1 <= sequences <= T = ", tokens,
             ", got ", count);
  std::mt19937_64 engine(seed);
  std::vector<std::int64_t> cuts(std::size_t(tokens - 1));
  for (std::size_t i = 0; i < cuts.size(); ++i) cuts[i] = std::int64_t(i) + 1;
  std::shuffle(cuts.begin(), cuts.end(), engine);
  std::vector<std::int64_t> offsets{0, tokens};
  offsets.insert(offsets.begin() + 1, cuts.begin(), cuts.begin() + (count - 1));
  std::sort(offsets.begin(), offsets.end());
  return offsets;
}

}  // namespace

void ProblemFlags::add_to(CLI::App& command) {
  command.add_option("-B,--batch", batch, "batch size B (1 with --varlen or --cu-seqlens)")->capture_default_str();
  command.add_option("-T,--tokens", tokens, "tokens per batch row T (all tokens with varlen)")->capture_default_str();
  command.add_option("-H,--heads", heads, "heads H (value heads with --qk-heads)")->capture_default_str();
  command.add_option("--qk-heads", qk_heads,
                     "heads Hqk of q and k, H a multiple of it: each group of H/Hqk consecutive "
                     "value heads shares one q/k head (0: Hqk = H)")
      ->capture_default_str();
  command.add_option("-K,--key-dim", key_dim, "key size K")->capture_default_str();
  command.add_option("-V,--value-dim", value_dim, "value size V")->capture_default_str();
  command.add_option("-n,--householder", num_householder, "Householder sub-steps per token n")
      ->capture_default_str();
  command.add_flag("--gated,!--no-gated", gated, "with log gates g (default) or without");
  command.add_flag("--h0", initial_state, "with an initial state h0");
  command.add_flag("--l2norm", l2norm, "L2-normalise q and k inside the operator");
  command.add_option("--scale", scale, "read-out scale (0: 1/sqrt(K))")->capture_default_str();
  command.add_option("--varlen", varlen, "cut the T tokens into this many sequences of random lengths");
  command.add_option("--cu-seqlens", cu_seqlens, "explicit sequence offsets 0,...,T (instead of --varlen)")
      ->delimiter(',')
      ->excludes("--varlen");
  command.add_option("--dtype", dtype, "storage type of q, k, v, beta and o")
      ->check(CLI::IsMember({"f64", "f32", "bf16", "f16"}))
      ->capture_default_str();
  command.add_option("--seed", seed, "random seed")->capture_default_str();
}

io::DType ProblemFlags::storage() const { return dtype_names().at(dtype); }

RandomProblemSpec ProblemFlags::spec() const {
  RandomProblemSpec s;
  s.batch = batch;
  s.tokens = tokens;
  s.heads = heads;
  s.qk_heads = qk_heads;
  s.key_dim = key_dim;
  s.value_dim = value_dim;
  s.num_householder = num_householder;
  s.gated = gated;
  s.initial_state = initial_state;
  s.raw_keys = l2norm;
  s.cu_seqlens = varlen > 0 ? random_offsets(tokens, varlen, seed) : cu_seqlens;
  s.seed = seed;
  return s;
}

ForwardOptions ProblemFlags::options() const {
  ForwardOptions o;
  o.num_householder = num_householder;
  o.scale = scale;
  o.use_qk_l2norm = l2norm;
  o.output_final_state = true;
  return o;
}

detail::ProblemShape ProblemFlags::shape() const {
  const RandomProblemSpec s = spec();
  const std::int64_t P = tokens * num_householder;
  const std::int64_t N = s.cu_seqlens.empty() ? batch : std::int64_t(s.cu_seqlens.size()) - 1;
  const auto tensor = [](const char* name, bool present, std::vector<std::int64_t> dims) {
    return detail::TensorExtents{name, present, present ? std::move(dims) : std::vector<std::int64_t>{}};
  };
  return detail::check_forward_arguments(
      tensor("q", true, {batch, tokens, query_key_heads(), key_dim}),
      tensor("k", true, {batch, P, query_key_heads(), key_dim}),
      tensor("v", true, {batch, P, heads, value_dim}), tensor("beta", true, {batch, P, heads}),
      tensor("g", gated, {batch, tokens, heads}), tensor("h0", initial_state, {N, heads, key_dim, value_dim}),
      tensor("cu_seqlens", !s.cu_seqlens.empty(), {std::int64_t(s.cu_seqlens.size())}), s.cu_seqlens,
      options());
}

std::string ProblemFlags::describe() const {
  std::ostringstream out;
  out << "B=" << batch << " T=" << tokens << " H=" << heads;
  if (query_key_heads() != heads) out << " Hqk=" << query_key_heads();
  out << " K=" << key_dim << " V=" << value_dim
      << " n=" << num_householder << (gated ? " gated" : " ungated") << (initial_state ? " h0" : "")
      << (l2norm ? " l2norm" : "") << " " << dtype;
  const auto offsets = spec().cu_seqlens;
  if (!offsets.empty()) out << " varlen(" << offsets.size() - 1 << " sequences)";
  return out.str();
}

RandomProblemSpec block_spec(const RandomProblemSpec& spec, const detail::ProblemShape& block,
                             std::uint64_t seed) {
  RandomProblemSpec s = spec;
  s.batch = block.batch;
  s.tokens = block.tokens_per_row;
  s.heads = block.heads;
  s.qk_heads = block.qk_heads;
  s.cu_seqlens = block.varlen ? block.token_offsets : std::vector<std::int64_t>{};
  s.seed = seed;
  return s;
}

}  // namespace gdp::app
