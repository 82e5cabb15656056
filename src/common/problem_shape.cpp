// SPDX-License-Identifier: Apache-2.0
#include "problem_shape.hpp"

#include "gdp_asserts.hpp"

#include <cmath>
#include <sstream>
#include <string>

namespace gdp::detail {

void expect_shape(const TensorExtents& tensor, const std::vector<std::int64_t>& expected,
                  const char* expected_symbolic) {
  GDP_EXPECT(tensor.dims == expected, tensor.name, "expected shape ", expected_symbolic, " = ",
             format_shape(expected), ", got ", format_shape(tensor.dims));
}

ProblemShape check_forward_arguments(const TensorExtents& q, const TensorExtents& k,
                                     const TensorExtents& v, const TensorExtents& beta,
                                     const TensorExtents& g, const TensorExtents& initial_state,
                                     const TensorExtents& cu_seqlens_extents,
                                     const std::vector<std::int64_t>& cu_seqlens,
                                     const ForwardOptions& options) {
  GDP_EXPECT(options.num_householder >= 1, "num_householder", "expected >= 1, got ",
             options.num_householder);
  GDP_EXPECT(options.chunk_size >= 1, "chunk_size", "expected >= 1, got ", options.chunk_size);
  GDP_EXPECT(options.chunks_per_segment >= 0, "chunks_per_segment", "expected >= 0, got ",
             options.chunks_per_segment);
  GDP_EXPECT(options.value_block >= 0, "value_block", "expected >= 0, got ", options.value_block);
  GDP_EXPECT(std::isfinite(options.scale), "scale", "expected a finite value, got ",
             options.scale);
  for (const TensorExtents* required : {&q, &k, &v, &beta})
    GDP_EXPECT(required->present, required->name, "required tensor is missing (null view)");

  ProblemShape shape;
  shape.batch = q.dims[0];
  shape.tokens_per_row = q.dims[1];
  shape.qk_heads = q.dims[2];
  shape.key_dim = q.dims[3];
  shape.num_householder = options.num_householder;
  shape.gated = g.present;
  shape.has_initial_state = initial_state.present;
  shape.varlen = cu_seqlens_extents.present;

  GDP_EXPECT(shape.batch >= 1 && shape.tokens_per_row >= 1 && shape.qk_heads >= 1 &&
                 shape.key_dim >= 1,
             q.name, "expected shape [B, T, Hqk, K] with every extent >= 1, got ",
             format_shape(q.dims));
  const std::int64_t B = shape.batch, T = shape.tokens_per_row, Hqk = shape.qk_heads,
                     K = shape.key_dim, n = shape.num_householder;
  expect_shape(k, {B, T * n, Hqk, K}, "[B, T*n, Hqk, K]");
  GDP_EXPECT(v.dims[0] == B && v.dims[1] == T * n && v.dims[2] >= 1 && v.dims[3] >= 1, v.name,
             "expected shape [B, T*n, H, V] = [", B, ", ", T * n,
             ", H >= 1, V >= 1], got ", format_shape(v.dims));
  shape.heads = v.dims[2];
  shape.value_dim = v.dims[3];
  const std::int64_t H = shape.heads;
  GDP_EXPECT(H % Hqk == 0, v.name, "expected its heads H (axis 2) to be a multiple of the q/k ",
             "heads Hqk = ", Hqk, " (axis 2 of q and k), got H = ", H);
  expect_shape(beta, {B, T * n, H}, "[B, T*n, H]");
  if (g.present) expect_shape(g, {B, T, H}, "[B, T, H]");

  if (shape.varlen) {
    GDP_EXPECT(B == 1, cu_seqlens_extents.name,
               "variable-length input needs batch size B = 1, got B = ", B);
    GDP_EXPECT(cu_seqlens.size() >= 2, cu_seqlens_extents.name,
               "expected at least 2 offsets (N+1 for N >= 1 sequences), got ", cu_seqlens.size());
    GDP_EXPECT(cu_seqlens.front() == 0, cu_seqlens_extents.name,
               "expected cu_seqlens[0] = 0, got ", cu_seqlens.front());
    for (std::size_t i = 1; i < cu_seqlens.size(); ++i)
      GDP_EXPECT(cu_seqlens[i] >= cu_seqlens[i - 1], cu_seqlens_extents.name,
                 "expected non-decreasing offsets, got cu_seqlens[", i, "] = ", cu_seqlens[i],
                 " < cu_seqlens[", i - 1, "] = ", cu_seqlens[i - 1]);
    GDP_EXPECT(cu_seqlens.back() == T, cu_seqlens_extents.name, "expected cu_seqlens[",
               cu_seqlens.size() - 1, "] = T = ", T, ", got ", cu_seqlens.back());
    shape.token_offsets = cu_seqlens;
  } else {
    for (std::int64_t b = 0; b <= B; ++b) shape.token_offsets.push_back(b * T);
  }

  if (initial_state.present)
    expect_shape(initial_state, {shape.num_sequences(), H, K, shape.value_dim},
                 "[N, H, K, V]");
  return shape;
}

namespace {

/// Throws naming `tensor` unless it is given with the extents `expected`.
void expect_required_shape(const TensorExtents& tensor, const std::vector<std::int64_t>& expected,
                           const char* expected_symbolic) {
  GDP_EXPECT(tensor.present, tensor.name, "required tensor is missing (null view)");
  expect_shape(tensor, expected, expected_symbolic);
}

}  // namespace

void check_output_gradients(const ProblemShape& shape, const TensorExtents& output_gradient,
                            const TensorExtents& final_state_gradient) {
  expect_required_shape(output_gradient,
                        {shape.batch, shape.tokens_per_row, shape.heads, shape.value_dim},
                        "[B, T, H, V]");
  if (final_state_gradient.present)
    expect_shape(final_state_gradient,
                 {shape.num_sequences(), shape.heads, shape.key_dim, shape.value_dim},
                 "[N, H, K, V]");
}

void check_forward_outputs(const ProblemShape& shape, bool final_state_wanted,
                           const TensorExtents& o, const TensorExtents& final_state) {
  expect_required_shape(o, {shape.batch, shape.tokens_per_row, shape.heads, shape.value_dim},
                        "[B, T, H, V]");
  if (final_state_wanted)
    expect_required_shape(final_state,
                          {shape.num_sequences(), shape.heads, shape.key_dim, shape.value_dim},
                          "[N, H, K, V]");
  else
    GDP_EXPECT(!final_state.present, final_state.name,
               "expected a null view (output_final_state is not set), got a view");
}

void check_input_gradients(const ProblemShape& shape, const TensorExtents& dq,
                           const TensorExtents& dk, const TensorExtents& dv,
                           const TensorExtents& dbeta, const TensorExtents& dg,
                           const TensorExtents& dh0) {
  const std::int64_t B = shape.batch, T = shape.tokens_per_row, H = shape.heads,
                     Hqk = shape.qk_heads, P = T * shape.num_householder, K = shape.key_dim,
                     V = shape.value_dim;
  expect_required_shape(dq, {B, T, Hqk, K}, "[B, T, Hqk, K]");
  expect_required_shape(dk, {B, P, Hqk, K}, "[B, T*n, Hqk, K]");
  expect_required_shape(dv, {B, P, H, V}, "[B, T*n, H, V]");
  expect_required_shape(dbeta, {B, P, H}, "[B, T*n, H]");
  if (shape.gated)
    expect_required_shape(dg, {B, T, H}, "[B, T, H]");
  else
    GDP_EXPECT(!dg.present, dg.name, "expected a null view (g was not given), got a view");
  if (shape.has_initial_state)
    expect_required_shape(dh0, {shape.num_sequences(), H, K, V}, "[N, H, K, V]");
  else
    GDP_EXPECT(!dh0.present, dh0.name, "expected a null view (h0 was not given), got a view");
}

void expect_disjoint(const std::vector<TensorMemory>& written,
                     const std::vector<TensorMemory>& read) {
  const auto overlap = [](const TensorMemory& a, const TensorMemory& b) {
    return a.begin != a.end && b.begin != b.end && a.begin < b.end && b.begin < a.end;
  };
  for (std::size_t i = 0; i < written.size(); ++i) {
    for (std::size_t j = 0; j < written.size(); ++j)
      GDP_EXPECT(i == j || !overlap(written[i], written[j]), written[i].name,
                 "expected memory of its own, got memory overlapping ", written[j].name);
    for (const TensorMemory& input : read)
      GDP_EXPECT(!overlap(written[i], input), written[i].name,
                 "expected memory of its own, got memory overlapping ", input.name);
  }
}

void expect_same_tensors(const char* argument, const std::vector<TensorMemory>& recorded_memory,
                         const std::vector<TensorExtents>& recorded_extents,
                         const std::vector<TensorMemory>& memory,
                         const std::vector<TensorExtents>& extents) {
  const auto describe = [](const TensorMemory& bytes, const TensorExtents& tensor) {
    if (!tensor.present) return std::string("none");
    std::ostringstream text;
    text << "shape " << format_shape(tensor.dims) << " at " << bytes.begin;
    return text.str();
  };
  for (std::size_t i = 0; i < recorded_memory.size(); ++i)
    GDP_EXPECT(memory[i].begin == recorded_memory[i].begin &&
                   memory[i].end == recorded_memory[i].end &&
                   extents[i].dims == recorded_extents[i].dims,
               argument, "expected the ", recorded_memory[i].name, " it was made for (",
               describe(recorded_memory[i], recorded_extents[i]), "), got ",
               describe(memory[i], extents[i]));
}

double resolved_scale(const ForwardOptions& options, std::int64_t key_dim) {
  return options.scale > 0 ? options.scale : 1.0 / std::sqrt(double(key_dim));
}

}  // namespace gdp::detail
