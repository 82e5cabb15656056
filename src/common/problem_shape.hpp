// SPDX-License-Identifier: Apache-2.0
// The shape of one operator call, checked once on the host before any kernel runs.
#pragma once

#include <gdp/forward.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace gdp::detail {

/// A tensor's name and extents as the caller passed it (present == false: not given).
struct TensorExtents {
  std::string name;
  bool present = false;
  std::vector<std::int64_t> dims;
};

template <class View>
TensorExtents extents_of(const char* name, const View& view) {
  TensorExtents e{name, view.data() != nullptr, {}};
  for (unsigned r = 0; r < View::rank; ++r) e.dims.push_back(std::int64_t(view.extent(r)));
  return e;
}

/// Throws gdp::InvalidArgument naming `tensor` unless its extents are `expected`:
/// "expected shape <expected_symbolic> = [...], got [...]".
void expect_shape(const TensorExtents& tensor, const std::vector<std::int64_t>& expected,
                  const char* expected_symbolic);

/// Everything the kernels need to know about the problem's shape. Batch rows and
/// variable-length sequences are unified: tokens live on one flattened axis of
/// batch * tokens_per_row entries, and sequence s owns tokens
/// [token_offsets[s], token_offsets[s+1]) and expanded positions n times those.
struct ProblemShape {
  std::int64_t batch = 0;           ///< B
  std::int64_t tokens_per_row = 0;  ///< T
  std::int64_t heads = 0;           ///< H: value heads (of v, beta, g, h0, o)
  /// Hqk: heads of q and k, H a multiple of it; value head h reads q/k head
  /// h / (H / Hqk). 0 means Hqk = H (a shape built by hand without groups).
  std::int64_t qk_heads = 0;
  std::int64_t key_dim = 0;         ///< K
  std::int64_t value_dim = 0;       ///< V
  int num_householder = 1;          ///< n
  bool gated = false;
  bool has_initial_state = false;
  bool varlen = false;
  std::vector<std::int64_t> token_offsets;  ///< N+1 offsets into the flattened token axis

  /// Value heads per q/k head: H / Hqk.
  std::int64_t head_group() const { return qk_heads > 0 ? heads / qk_heads : 1; }
  /// The q/k head value head h reads.
  std::int64_t qk_head(std::int64_t h) const { return h / head_group(); }
  std::int64_t num_sequences() const { return std::int64_t(token_offsets.size()) - 1; }
  std::int64_t total_tokens() const { return batch * tokens_per_row; }
  std::int64_t total_positions() const { return total_tokens() * num_householder; }
};

/// Checks the forward arguments (shapes, options, cu_seqlens values) and returns the shape.
/// `cu_seqlens` holds the host copy of the offsets (empty when not given).
/// \throws gdp::InvalidArgument naming the first violated rule.
ProblemShape check_forward_arguments(const TensorExtents& q, const TensorExtents& k,
                                     const TensorExtents& v, const TensorExtents& beta,
                                     const TensorExtents& g, const TensorExtents& initial_state,
                                     const TensorExtents& cu_seqlens_extents,
                                     const std::vector<std::int64_t>& cu_seqlens,
                                     const ForwardOptions& options);

/// Checks the backward's extra arguments against the problem's shape: the gradient of o
/// (required, [B, T, H, V]) and of the final state (optional, [N, H, K, V]).
/// \throws gdp::InvalidArgument naming the offending tensor, its expected and actual shape.
void check_output_gradients(const ProblemShape& shape, const TensorExtents& output_gradient,
                            const TensorExtents& final_state_gradient);

/// Checks outputs given to the forward to write into: o [B, T, H, V], and ht [N, H, K, V]
/// exactly when `final_state_wanted` (a view the call would not write is an error, not
/// silently left alone).
/// \throws gdp::InvalidArgument naming the offending tensor, its expected and actual shape.
void check_forward_outputs(const ProblemShape& shape, bool final_state_wanted,
                           const TensorExtents& o, const TensorExtents& final_state);

/// Checks gradients given to the backward to write into: dq, dk, dv, dbeta each with the
/// shape of its input; dg exactly when g is given, dh0 exactly when h0 is given (a view the
/// call would not write is an error, not silently left alone).
/// \throws gdp::InvalidArgument naming the offending tensor, its expected and actual shape.
void check_input_gradients(const ProblemShape& shape, const TensorExtents& dq,
                           const TensorExtents& dk, const TensorExtents& dv,
                           const TensorExtents& dbeta, const TensorExtents& dg,
                           const TensorExtents& dh0);

/// The bytes a tensor of a call occupies: [begin, end), empty when not given.
struct TensorMemory {
  std::string name;
  const void* begin = nullptr;
  const void* end = nullptr;
};

template <class View>
TensorMemory memory_of(const char* name, const View& view) {
  const auto* begin = reinterpret_cast<const unsigned char*>(view.data());
  return {name, begin, begin ? begin + view.span() * sizeof(typename View::value_type) : begin};
}

/// The memory of every input of the forward, named as in its errors: what an `_into` entry
/// point's outputs must not overlap (the backward's adds do and dht).
template <class Scalar, class MemorySpace>
std::vector<TensorMemory> forward_input_memory(const ForwardInputs<Scalar, MemorySpace>& in) {
  return {memory_of("q", in.q),         memory_of("k", in.k),
          memory_of("v", in.v),         memory_of("beta", in.beta),
          memory_of("g", in.g),         memory_of("h0", in.initial_state),
          memory_of("cu_seqlens", in.cu_seqlens)};
}

/// Throws gdp::InvalidArgument naming `argument` unless the tensors `memory` and `extents`
/// describe are, one by one, those `recorded_memory` and `recorded_extents` describe (the
/// same bytes, the same extents): a call that must read the very tensors an earlier one read.
void expect_same_tensors(const char* argument, const std::vector<TensorMemory>& recorded_memory,
                         const std::vector<TensorExtents>& recorded_extents,
                         const std::vector<TensorMemory>& memory,
                         const std::vector<TensorExtents>& extents);

/// Throws gdp::InvalidArgument naming the first of `written` whose bytes overlap another of
/// `written` or one of `read`: a call must not write where it reads or writes twice.
void expect_disjoint(const std::vector<TensorMemory>& written, const std::vector<TensorMemory>& read);

/// The read-out scale the options select for key size K (1/sqrt(K) when not set).
double resolved_scale(const ForwardOptions& options, std::int64_t key_dim);

}  // namespace gdp::detail
