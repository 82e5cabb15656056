// SPDX-License-Identifier: Apache-2.0
// One work block through the library: the block's parts of a rank's packed host buffers
// become the views of a compact sub-problem on the execution space, and its results (o and
// ht, and with the backward the gradients) are copied back into the rank's packed output
// buffers, which are laid out as the output file's slabs, so they go to the file as they are.
#pragma once

#include <gdp/backward.hpp>
#include <gdp/forward.hpp>

#include "common/finite_check.hpp"
#include "common/problem_shape.hpp"

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace gdp::dist {

/// A block's inputs on the host, each pointing at the block's part of a packed buffer.
template <class Scalar>
struct BlockHostInputs {
  using Real = accumulator_t<Scalar>;
  detail::ProblemShape shape;  ///< the block as a problem of its own (block_shape)
  detail::IndexOrigin origin;  ///< where the block sits in the whole problem (block_origin)
  Scalar* q = nullptr;
  Scalar* k = nullptr;
  Scalar* v = nullptr;
  Scalar* beta = nullptr;
  Real* g = nullptr;      ///< null when ungated
  Real* h0 = nullptr;     ///< null without initial state
  Scalar* d_o = nullptr;  ///< do, the gradient of o: backward only
  Real* dht = nullptr;    ///< the gradient of ht: backward only, null when absent
};

/// Where a block's results go on the host; a null pointer is a result not asked for.
template <class Scalar>
struct BlockHostOutputs {
  using Real = accumulator_t<Scalar>;
  Scalar* o = nullptr;      ///< [B, T, H, V]
  Real* ht = nullptr;       ///< [N, H, K, V]
  Scalar* dq = nullptr;     ///< [B, T, Hqk, K]
  Scalar* dk = nullptr;     ///< [B, T*n, Hqk, K]
  Scalar* dv = nullptr;     ///< [B, T*n, H, V]
  Scalar* dbeta = nullptr;  ///< [B, T*n, H]
  Real* dg = nullptr;       ///< [B, T, H] when gated
  Real* dh0 = nullptr;      ///< [N, H, K, V] with an initial state
};

/// The library calls of one block on `ExecSpace`: its inputs are copied to the space once, for
/// the forward and the backward.
template <class ExecSpace, class Scalar>
class BlockCall {
 public:
  using memory_space = typename ExecSpace::memory_space;
  using Real = accumulator_t<Scalar>;

  BlockCall(const BlockCall&) = delete;  // the views may point into offsets_
  BlockCall& operator=(const BlockCall&) = delete;

  explicit BlockCall(const BlockHostInputs<Scalar>& in) : shape_(in.shape), host_(in) {
    if (empty()) return;
    const auto& s = shape_;
    const std::int64_t B = s.batch, T = s.tokens_per_row, P = T * s.num_householder;
    inputs_.q = device(Host<Scalar****>(in.q, B, T, s.qk_heads, s.key_dim));
    inputs_.k = device(Host<Scalar****>(in.k, B, P, s.qk_heads, s.key_dim));
    inputs_.v = device(Host<Scalar****>(in.v, B, P, s.heads, s.value_dim));
    inputs_.beta = device(Host<Scalar***>(in.beta, B, P, s.heads));
    if (in.g) inputs_.g = device(Host<Real***>(in.g, B, T, s.heads));
    if (in.h0) inputs_.initial_state = device(state(in.h0));
    offsets_ = s.token_offsets;
    if (s.varlen) inputs_.cu_seqlens = device(Host<std::int64_t*>(offsets_.data(), offsets_.size()));
  }

  /// o and ht of the block. Non-finite inputs are rejected (unless options.allow_non_finite)
  /// and, with `check_outputs`, non-finite results too, naming the element by its indices in
  /// the whole problem. With `saved` (a training step, `run --backward`), through
  /// chunk_gated_delta_product_for_backward, which keeps in it what backward() needs.
  void forward(ForwardOptions options, const BlockHostOutputs<Scalar>& out,
               bool check_outputs = false,
               SavedForward<Scalar, memory_space>* saved = nullptr) const {
    if (empty()) {  // empty sequences only: each state passes through unchanged
      copy_or_zero(host_.h0, out.ht);
      return;
    }
    detail::check_finite_inputs<ExecSpace>(inputs_, options, host_.origin);
    options.allow_non_finite = true;  // checked just above, with the whole problem's indices
    options.output_final_state = true;
    const auto result =
        saved ? chunk_gated_delta_product_for_backward<ExecSpace, Scalar>(inputs_, options, *saved)
              : chunk_gated_delta_product<ExecSpace, Scalar>(inputs_, options);
    if (check_outputs) {
      detail::NonFiniteScans<ExecSpace>()
          .add("o", result.o)
          .add("ht", result.final_state)
          .expect_finite_outputs(host_.origin);
    }
    Kokkos::deep_copy(output(out.o, shape_.value_dim), result.o);
    Kokkos::deep_copy(state(out.ht), result.final_state);
  }

  /// The gradients of the block, from its do and dht and what forward() saved in `saved`
  /// with the same `options`; do and dht checked for non-finite values as forward() checks
  /// the inputs.
  void backward(const ForwardOptions& options, const BlockHostOutputs<Scalar>& out,
                const SavedForward<Scalar, memory_space>& saved,
                bool check_outputs = false) const {
    if (empty()) {  // the final state is the initial state: dh0 = dht
      if (out.dh0) copy_or_zero(host_.dht, out.dh0);
      return;
    }
    const auto& s = shape_;
    OutputGradients<Scalar, memory_space> upstream;
    upstream.o = device(Host<Scalar****>(host_.d_o, s.batch, s.tokens_per_row, s.heads, s.value_dim));
    if (host_.dht) upstream.final_state = device(state(host_.dht));
    // The saved options allow non-finite values: forward() scanned the inputs itself.
    detail::check_finite_output_gradients<ExecSpace>(upstream, options, host_.origin);
    const auto gradients = chunk_gated_delta_product_backward<ExecSpace, Scalar>(inputs_, upstream, saved);
    if (check_outputs) {
      detail::NonFiniteScans<ExecSpace>()
          .add("dq", gradients.dq)
          .add("dk", gradients.dk)
          .add("dv", gradients.dv)
          .add("dbeta", gradients.dbeta)
          .add("dg", gradients.dg)
          .add("dh0", gradients.dh0)
          .expect_finite_outputs(host_.origin);
    }
    const std::int64_t B = s.batch, T = s.tokens_per_row, P = T * s.num_householder;
    Kokkos::deep_copy(Host<Scalar****>(out.dq, B, T, s.qk_heads, s.key_dim), gradients.dq);
    Kokkos::deep_copy(Host<Scalar****>(out.dk, B, P, s.qk_heads, s.key_dim), gradients.dk);
    Kokkos::deep_copy(Host<Scalar****>(out.dv, B, P, s.heads, s.value_dim), gradients.dv);
    Kokkos::deep_copy(Host<Scalar***>(out.dbeta, B, P, s.heads), gradients.dbeta);
    if (out.dg) Kokkos::deep_copy(Host<Real***>(out.dg, B, T, s.heads), gradients.dg);
    if (out.dh0) Kokkos::deep_copy(state(out.dh0), gradients.dh0);
  }

 private:
  template <class T>
  using Host = Kokkos::View<T, Kokkos::LayoutRight, Kokkos::HostSpace,
                            Kokkos::MemoryTraits<Kokkos::Unmanaged>>;

  bool empty() const { return shape_.total_tokens() == 0; }

  template <class T>
  static auto device(const Host<T>& host) {
    return Kokkos::create_mirror_view_and_copy(memory_space(), host);
  }

  /// A [B, T, H, width] host view of the block's value-head token rows (o).
  Host<Scalar****> output(Scalar* data, std::int64_t width) const {
    return Host<Scalar****>(data, shape_.batch, shape_.tokens_per_row, shape_.heads, width);
  }

  /// A [N, H, K, V] host view of the block's states (h0, ht and their gradients).
  Host<Real****> state(Real* data) const {
    return Host<Real****>(data, shape_.num_sequences(), shape_.heads, shape_.key_dim,
                          shape_.value_dim);
  }

  void copy_or_zero(const Real* from, Real* to) const {
    const std::size_t count = state(to).size();
    if (from)
      std::copy(from, from + count, to);
    else
      std::fill(to, to + count, Real(0));
  }

  detail::ProblemShape shape_;
  BlockHostInputs<Scalar> host_;
  std::vector<std::int64_t> offsets_;
  ForwardInputs<Scalar, memory_space> inputs_;
};

}  // namespace gdp::dist
