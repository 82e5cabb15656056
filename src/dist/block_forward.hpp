// SPDX-License-Identifier: Apache-2.0
// One work block through the library: the block's parts of a rank's packed host buffers
// become the views of a compact sub-problem on the execution space, and its results are
// copied back into the rank's packed output buffers (which are laid out as the output file's
// slabs, so they go to the file as they are).
#pragma once

#include <gdp/forward.hpp>

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
  Scalar* q = nullptr;
  Scalar* k = nullptr;
  Scalar* v = nullptr;
  Scalar* beta = nullptr;
  Real* g = nullptr;   ///< null when ungated
  Real* h0 = nullptr;  ///< null without initial state
};

/// Where a block's outputs go on the host: o [B, T, H, V] and ht [N, H, K, V] of the block.
template <class Scalar>
struct BlockHostOutputs {
  Scalar* o = nullptr;
  accumulator_t<Scalar>* ht = nullptr;
};

/// Runs the forward of one block on `ExecSpace` (final state always on).
template <class ExecSpace, class Scalar>
void forward_block(const BlockHostInputs<Scalar>& in, ForwardOptions options,
                   const BlockHostOutputs<Scalar>& out) {
  using memory_space = typename ExecSpace::memory_space;
  using Real = accumulator_t<Scalar>;
  using Unmanaged = Kokkos::MemoryTraits<Kokkos::Unmanaged>;
  using HostQ = Kokkos::View<Scalar****, Kokkos::LayoutRight, Kokkos::HostSpace, Unmanaged>;
  using HostBeta = Kokkos::View<Scalar***, Kokkos::LayoutRight, Kokkos::HostSpace, Unmanaged>;
  using HostGate = Kokkos::View<Real***, Kokkos::LayoutRight, Kokkos::HostSpace, Unmanaged>;
  using HostState = Kokkos::View<Real****, Kokkos::LayoutRight, Kokkos::HostSpace, Unmanaged>;
  const auto& s = in.shape;
  const std::int64_t B = s.batch, T = s.tokens_per_row, H = s.heads, K = s.key_dim,
                     V = s.value_dim, P = T * s.num_householder, N = s.num_sequences();
  const HostState final_state(out.ht, N, H, K, V);
  if (s.total_tokens() == 0) {  // empty sequences only: each state passes through unchanged
    if (in.h0)
      std::copy(in.h0, in.h0 + final_state.size(), out.ht);
    else
      std::fill(out.ht, out.ht + final_state.size(), Real(0));
    return;
  }
  const auto device = [](const auto& host) {
    return Kokkos::create_mirror_view_and_copy(memory_space(), host);
  };
  ForwardInputs<Scalar, memory_space> inputs;
  inputs.q = device(HostQ(in.q, B, T, H, K));
  inputs.k = device(HostQ(in.k, B, P, H, K));
  inputs.v = device(HostQ(in.v, B, P, H, V));
  inputs.beta = device(HostBeta(in.beta, B, P, H));
  if (in.g) inputs.g = device(HostGate(in.g, B, T, H));
  if (in.h0) inputs.initial_state = device(HostState(in.h0, N, H, K, V));
  std::vector<std::int64_t> offsets = s.token_offsets;
  if (s.varlen)
    inputs.cu_seqlens = device(Kokkos::View<std::int64_t*, Kokkos::HostSpace, Unmanaged>(
        offsets.data(), offsets.size()));
  options.output_final_state = true;
  const auto result = chunk_gated_delta_product<ExecSpace, Scalar>(inputs, options);
  Kokkos::deep_copy(HostQ(out.o, B, T, H, V), result.o);
  Kokkos::deep_copy(final_state, result.final_state);
}

}  // namespace gdp::dist
