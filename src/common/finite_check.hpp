// SPDX-License-Identifier: Apache-2.0
// Finding non-finite values (NaN, +Inf, -Inf) in a tensor, on the tensor's execution space.
// The forward and the backward reject non-finite inputs this way (unless
// ForwardOptions::allow_non_finite), before any other kernel runs; gdp_app checks outputs the
// same way. The message names the tensor, the first non-finite element in row-major order as
// a multi-index with the axes' names, and its value:
//   gdp: k: expected finite values, got nan at [b, p, h, k] = [0, 17, 2, 5] (the first in
//   row-major order; ForwardOptions::allow_non_finite lets non-finite inputs through)
// 16-bit storage is checked through its value widened to float (the two agree: a 16-bit
// value is non-finite exactly when its widened float is).
#pragma once

#include <gdp/backward.hpp>
#include <gdp/forward.hpp>
#include <gdp/storage_types.hpp>

#include "common/workspace_cache.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace gdp::detail {

/// Whether `x` is finite, from its exponent bits (so also under fast-math flags, which let
/// the compiler assume that `x != x` is false).
KOKKOS_INLINE_FUNCTION bool is_finite_value(float x) {
  std::uint32_t bits;
  memcpy(&bits, &x, sizeof bits);
  return (bits & 0x7f800000u) != 0x7f800000u;
}
KOKKOS_INLINE_FUNCTION bool is_finite_value(double x) {
  std::uint64_t bits;
  memcpy(&bits, &x, sizeof bits);
  return (bits & 0x7ff0000000000000ull) != 0x7ff0000000000000ull;
}

/// Lowers `first` to the smallest flat index i < count with data[i] non-finite, by an atomic
/// minimum where an iteration finds one (rare: a scan of finite data writes nothing). Not a
/// Kokkos reduction: Kokkos 3.4's CUDA reduction makes compute-sanitizer's racecheck report
/// thousands of shared-memory hazards in its own tree, and the smallest index is the same
/// whatever order the atomics land in. Iteration g reads the `group` consecutive elements from
/// g * group before testing any: on a GPU one element a thread leaves the scan latency-bound
/// (about a tenth of the memory bandwidth on the H100), and contiguous groups keep a warp's
/// loads contiguous.
template <class Scalar, class MemorySpace>
struct FirstNonFinite {
  static constexpr int group = 8;
  const Scalar* data;
  std::int64_t count;
  Kokkos::View<unsigned long long, Kokkos::LayoutRight, MemorySpace> first;  ///< count while none is found

  static std::int64_t iterations(std::int64_t count) { return (count + group - 1) / group; }

  KOKKOS_INLINE_FUNCTION void operator()(std::int64_t g) const {
    const std::int64_t begin = g * group;
    unsigned bad = 0;  // bit u: element begin + u is non-finite
    if (begin + group <= count) {
      for (int u = 0; u < group; ++u) bad |= unsigned(!is_finite_value(widen(data[begin + u]))) << u;
    } else {
      for (int u = 0; begin + u < count; ++u)
        bad |= unsigned(!is_finite_value(widen(data[begin + u]))) << u;
    }
    if (bad == 0) return;
    int u = 0;
    while (!((bad >> u) & 1u)) ++u;
    Kokkos::atomic_fetch_min(&first(), static_cast<unsigned long long>(begin + u));
  }
};

/// A non-finite element: its flat (row-major) index and its value.
struct NonFiniteElement {
  std::int64_t index = 0;
  double value = 0;
};

/// The first non-finite element of the `count` elements at `data` (memory of `ExecSpace`),
/// found with one scan on `ExecSpace` (it waits for the result).
template <class ExecSpace, class Scalar>
std::optional<NonFiniteElement> first_non_finite(const Scalar* data, std::int64_t count) {
  if (count == 0 || data == nullptr) return std::nullopt;
  using Scan = FirstNonFinite<Scalar, typename ExecSpace::memory_space>;
  const WorkspaceLease<typename ExecSpace::memory_space> lease(sizeof(unsigned long long));
  WorkspaceCarver<typename ExecSpace::memory_space> carver(lease);
  const Scan scan{data, count, carver.template view<unsigned long long>()};
  Kokkos::deep_copy(scan.first, static_cast<unsigned long long>(count));
  Kokkos::parallel_for(
      "gdp::first_non_finite",
      Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<std::int64_t>>(0, Scan::iterations(count)),
      scan);
  unsigned long long found = 0;
  Kokkos::deep_copy(found, scan.first);
  const auto first = static_cast<std::int64_t>(found);
  if (first >= count) return std::nullopt;
  using Flat = Kokkos::View<const Scalar*, typename ExecSpace::memory_space,
                            Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  Kokkos::View<Scalar, Kokkos::HostSpace> value("gdp::non_finite_value");
  Kokkos::deep_copy(value, Kokkos::subview(Flat(data, std::size_t(count)), first));
  return NonFiniteElement{first, double(widen(value()))};
}

/// Where a sub-problem's tensors sit in a larger problem, so that messages give the indices
/// the user knows: gdp_app runs blocks of (sequence, head) pairs of a file. The offsets of
/// the batch-row, token, head and sequence axes; all zero for a whole problem.
struct IndexOrigin {
  std::int64_t row = 0, token = 0, head = 0, sequence = 0;
  int num_householder = 1;  ///< n: the token offset of k, v, beta is token * n
  std::int64_t qk_head = 0;  ///< the head offset of q, k (and dq, dk) with grouped heads
};

/// "nan at [b, t, h, k] = [0, 3, 1, 2]": element `element` of tensor `name` (one of the
/// operator's tensors: q k v beta g h0 do dht o ht dq dk dv dbeta dg dh0) of extents `dims`,
/// with `origin` added to its indices.
std::string describe_non_finite(const std::string& name, const std::vector<std::int64_t>& dims,
                                const NonFiniteElement& element, const IndexOrigin& origin);

/// Throws gdp::InvalidArgument for a non-finite input "gdp: <name>: expected finite values, got
/// <found> ...".
[[noreturn]] void throw_non_finite_input(const std::string& name, const std::string& found);

/// Throws std::runtime_error "gdp: <name>: non-finite output: <found>".
[[noreturn]] void throw_non_finite_output(const std::string& name, const std::string& found);

/// describe_non_finite of the first non-finite element of `view`, or nothing when all are
/// finite.
template <class ExecSpace, class View>
std::optional<std::string> find_non_finite(const char* name, const View& view,
                                           const IndexOrigin& origin) {
  const auto found = first_non_finite<ExecSpace>(view.data(), std::int64_t(view.size()));
  if (!found) return std::nullopt;
  std::vector<std::int64_t> dims;
  for (unsigned r = 0; r < View::rank; ++r) dims.push_back(std::int64_t(view.extent(r)));
  return describe_non_finite(name, dims, *found, origin);
}

/// Throws gdp::InvalidArgument naming `name` when the input `view` holds a non-finite value.
template <class ExecSpace, class View>
void expect_finite_input(const char* name, const View& view, const IndexOrigin& origin) {
  if (const auto found = find_non_finite<ExecSpace>(name, view, origin))
    throw_non_finite_input(name, *found);
}

/// Throws std::runtime_error naming `name` when the output `view` holds a non-finite value.
template <class ExecSpace, class View>
void expect_finite_output(const char* name, const View& view, const IndexOrigin& origin) {
  if (const auto found = find_non_finite<ExecSpace>(name, view, origin))
    throw_non_finite_output(name, *found);
}

/// Rejects non-finite values in every input of the forward (q, k, v, beta, g, h0), unless
/// options.allow_non_finite. One reduction per tensor on `ExecSpace`.
template <class ExecSpace, class Scalar>
void check_finite_inputs(const ForwardInputs<Scalar, typename ExecSpace::memory_space>& in,
                         const ForwardOptions& options, const IndexOrigin& origin = {}) {
  if (options.allow_non_finite) return;
  expect_finite_input<ExecSpace>("q", in.q, origin);
  expect_finite_input<ExecSpace>("k", in.k, origin);
  expect_finite_input<ExecSpace>("v", in.v, origin);
  expect_finite_input<ExecSpace>("beta", in.beta, origin);
  expect_finite_input<ExecSpace>("g", in.g, origin);
  expect_finite_input<ExecSpace>("h0", in.initial_state, origin);
}

/// Rejects non-finite values in the backward's incoming gradients (do, dht), unless
/// options.allow_non_finite.
template <class ExecSpace, class Scalar>
void check_finite_output_gradients(
    const OutputGradients<Scalar, typename ExecSpace::memory_space>& upstream,
    const ForwardOptions& options, const IndexOrigin& origin = {}) {
  if (options.allow_non_finite) return;
  expect_finite_input<ExecSpace>("do", upstream.o, origin);
  expect_finite_input<ExecSpace>("dht", upstream.final_state, origin);
}

}  // namespace gdp::detail
