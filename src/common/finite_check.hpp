// SPDX-License-Identifier: Apache-2.0
// Finding non-finite values (NaN, +Inf, -Inf) in a tensor, on the tensor's execution space.
// The forward and the backward reject non-finite inputs this way (unless
// ForwardOptions::allow_non_finite), before any other kernel computes; gdp_app checks outputs the
// same way. The message names the tensor, the first non-finite element in row-major order as
// a multi-index with the axes' names, and its value:
//   gdp: k: expected finite values, got nan at [b, p, h, k] = [0, 17, 2, 5] (the first in
//   row-major order; ForwardOptions::allow_non_finite lets non-finite inputs through)
// Every storage type is checked by its exponent bits (all ones: NaN or an infinity), the
// value is widened to double only for the message.
#pragma once

#include <gdp/backward.hpp>
#include <gdp/forward.hpp>
#include <gdp/storage_types.hpp>

#include "common/workspace_cache.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace gdp::detail {

/// A floating-point type's raw bits: the unsigned integer that holds them and the mask of
/// the exponent field, all ones exactly for NaN and the infinities.
template <class Scalar>
struct FloatBits;
template <>
struct FloatBits<float> {
  using type = std::uint32_t;
  static constexpr type exponent = 0x7f800000u;
};
template <>
struct FloatBits<double> {
  using type = std::uint64_t;
  static constexpr type exponent = 0x7ff0000000000000ull;
};
template <>
struct FloatBits<bfloat16> {
  using type = std::uint16_t;
  static constexpr type exponent = 0x7f80u;
};
template <>
struct FloatBits<float16> {
  using type = std::uint16_t;
  static constexpr type exponent = 0x7c00u;
};

/// Lowers `first` to the smallest flat index i < count with data[i] non-finite, by an atomic
/// minimum where an iteration finds one (rare: a scan of finite data writes nothing). Not a
/// Kokkos reduction: Kokkos 3.4's CUDA reduction makes compute-sanitizer's racecheck report
/// thousands of shared-memory hazards in its own tree, and the smallest index is the same
/// whatever order the atomics land in.
///
/// Iteration g tests the 32 bytes from element g * group by their exponent bits, read where
/// `data` is 16-byte aligned as two 16-byte words, both loads issued before any test: the scan
/// is a pass over the inputs' bytes before every call, and on a GPU element-sized loads leave
/// it bound by load instructions (eight 2-byte loads a thread for 16-bit storage ran at about
/// a fifth of an H200's memory bandwidth). Testing bits rather than values also holds under
/// fast-math flags, which let the compiler assume that `x != x` is false.
template <class Scalar, class MemorySpace>
struct FirstNonFinite {
  using Bits = typename FloatBits<Scalar>::type;
  static_assert(sizeof(Bits) == sizeof(Scalar), "a scalar is its raw bits");
  static constexpr Bits exponent = FloatBits<Scalar>::exponent;
  static constexpr int word_bytes = 16, words = 2;
  static constexpr int group = words * word_bytes / int(sizeof(Scalar));
  struct alignas(word_bytes) Word {
    std::uint32_t lanes[word_bytes / 4];
  };

  const Scalar* data;
  std::int64_t count;
  Kokkos::View<unsigned long long, Kokkos::LayoutRight, MemorySpace> first;  ///< lowered when found
  bool aligned;  ///< data on a 16-byte boundary: whole groups load as words

  FirstNonFinite(const Scalar* data_, std::int64_t count_,
                 const Kokkos::View<unsigned long long, Kokkos::LayoutRight, MemorySpace>& first_)
      : data(data_),
        count(count_),
        first(first_),
        aligned(reinterpret_cast<std::uintptr_t>(data_) % word_bytes == 0) {}

  static std::int64_t iterations(std::int64_t count) { return (count + group - 1) / group; }

  KOKKOS_INLINE_FUNCTION static bool non_finite(Bits bits) { return (bits & exponent) == exponent; }

  KOKKOS_INLINE_FUNCTION void operator()(std::int64_t g) const {
    const std::int64_t begin = g * group;
    unsigned bad = 0;  // bit u: element begin + u is non-finite
    if (aligned && begin + group <= count) {
      const Word* const source = reinterpret_cast<const Word*>(data + begin);
      Word loaded[words];
      for (int w = 0; w < words; ++w) loaded[w] = source[w];
      Bits bits[group];
      memcpy(bits, loaded, sizeof bits);
      for (int u = 0; u < group; ++u) bad |= unsigned(non_finite(bits[u])) << u;
    } else {
      for (int u = 0; u < group && begin + u < count; ++u) {
        Bits bits;
        memcpy(&bits, data + begin + u, sizeof bits);
        bad |= unsigned(non_finite(bits)) << u;
      }
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

/// The value of element `index` of the `count` elements at `data` (memory of `MemorySpace`),
/// widened to double: one small copy, on the error path only.
template <class MemorySpace, class Scalar>
double element_value(const Scalar* data, std::int64_t count, std::int64_t index) {
  using Flat = Kokkos::View<const Scalar*, MemorySpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  Kokkos::View<Scalar, Kokkos::HostSpace> value("gdp::non_finite_value");
  Kokkos::deep_copy(value, Kokkos::subview(Flat(data, std::size_t(count)), index));
  return double(widen(value()));
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

/// Scans of several tensors with one wait for all of them: add() starts a tensor's scan on
/// ExecSpace, and first_found() copies every result back at once and names the first tensor
/// added, in the order added, that holds a non-finite element. The forward and the backward
/// check their inputs this way before every call, one wait a call instead of one a tensor.
template <class ExecSpace>
class NonFiniteScans {
  using memory_space = typename ExecSpace::memory_space;
  using index_type = unsigned long long;

 public:
  static constexpr int capacity = 8;  ///< the most tensors one batch scans: the backward's inputs

  /// The first non-finite element of the `tensor`-th tensor scanned (tensors without elements
  /// are not counted).
  struct Found {
    std::size_t tensor = 0;
    std::string name;
    std::vector<std::int64_t> dims;
    NonFiniteElement element;
  };

  NonFiniteScans() : lease_(capacity * sizeof(index_type)) {
    WorkspaceCarver<memory_space> carver(lease_);
    firsts_ = carver.template view<index_type*>(capacity);
    // None found: above every count. Filled on ExecSpace, ahead of the scans on the same
    // instance: the deep_copy without an instance fences before and after its fill, two waits
    // of the host for the device before every call's first scan starts.
    Kokkos::deep_copy(ExecSpace(), firsts_, ~index_type(0));
  }

  /// Starts the scan of the `count` elements at `data` (memory of ExecSpace), row-major with
  /// extents `dims`. Nothing to scan when `count` is 0 or `data` null.
  template <class Scalar>
  NonFiniteScans& add(const char* name, const Scalar* data, std::int64_t count,
                      std::vector<std::int64_t> dims) {
    if (count == 0 || data == nullptr) return *this;
    if (scanned_.size() == std::size_t(capacity))
      throw std::logic_error("gdp: internal error: more tensors than one non-finite scan holds");
    using Scan = FirstNonFinite<Scalar, memory_space>;
    const Scan scan(data, count,
                    Kokkos::View<index_type, Kokkos::LayoutRight, memory_space>(
                        firsts_.data() + scanned_.size()));
    Kokkos::parallel_for(
        "gdp::first_non_finite",
        Kokkos::RangePolicy<ExecSpace, Kokkos::IndexType<std::int64_t>>(0, Scan::iterations(count)),
        scan);
    scanned_.push_back({name, std::move(dims), count, [data, count](std::int64_t index) {
                          return element_value<memory_space>(data, count, index);
                        }});
    return *this;
  }

  /// Starts the scan of every element of `view`.
  template <class View>
  NonFiniteScans& add(const char* name, const View& view) {
    std::vector<std::int64_t> dims;
    for (unsigned r = 0; r < View::rank; ++r) dims.push_back(std::int64_t(view.extent(r)));
    return add(name, view.data(), std::int64_t(view.size()), std::move(dims));
  }

  /// Waits for the scans; the first non-finite element of the first tensor that has one.
  std::optional<Found> first_found() const {
    if (scanned_.empty()) return std::nullopt;
    const auto firsts = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), firsts_);
    for (std::size_t t = 0; t < scanned_.size(); ++t) {
      const Scanned& tensor = scanned_[t];
      if (firsts(t) >= index_type(tensor.count)) continue;
      const auto index = std::int64_t(firsts(t));
      return Found{t, tensor.name, tensor.dims, {index, tensor.value_at(index)}};
    }
    return std::nullopt;
  }

  /// Throws gdp::InvalidArgument naming the first tensor (an input) with a non-finite element.
  void expect_finite_inputs(const IndexOrigin& origin) const {
    if (const auto found = first_found())
      throw_non_finite_input(found->name, describe_non_finite(found->name, found->dims,
                                                              found->element, origin));
  }

  /// Throws std::runtime_error naming the first tensor (an output) with a non-finite element.
  void expect_finite_outputs(const IndexOrigin& origin) const {
    if (const auto found = first_found())
      throw_non_finite_output(found->name, describe_non_finite(found->name, found->dims,
                                                               found->element, origin));
  }

 private:
  struct Scanned {
    std::string name;
    std::vector<std::int64_t> dims;
    std::int64_t count;
    std::function<double(std::int64_t)> value_at;
  };
  WorkspaceLease<memory_space> lease_;
  Kokkos::View<index_type*, Kokkos::LayoutRight, memory_space> firsts_;
  std::vector<Scanned> scanned_;
};

/// The first non-finite element of the `count` elements at `data` (memory of `ExecSpace`),
/// found with one scan on `ExecSpace` (it waits for the result).
template <class ExecSpace, class Scalar>
std::optional<NonFiniteElement> first_non_finite(const Scalar* data, std::int64_t count) {
  const auto found = NonFiniteScans<ExecSpace>().add("data", data, count, {count}).first_found();
  if (!found) return std::nullopt;
  return found->element;
}

/// Starts the scans of every input of the forward (q, k, v, beta, g, h0), in that order.
template <class ExecSpace, class Scalar>
NonFiniteScans<ExecSpace>& add_forward_inputs(
    NonFiniteScans<ExecSpace>& scans,
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& in) {
  return scans.add("q", in.q)
      .add("k", in.k)
      .add("v", in.v)
      .add("beta", in.beta)
      .add("g", in.g)
      .add("h0", in.initial_state);
}

/// Adds the scans of the backward's incoming gradients (do, dht), in that order.
template <class ExecSpace, class Scalar>
NonFiniteScans<ExecSpace>& add_output_gradients(
    NonFiniteScans<ExecSpace>& scans,
    const OutputGradients<Scalar, typename ExecSpace::memory_space>& upstream) {
  return scans.add("do", upstream.o).add("dht", upstream.final_state);
}

/// Scans started and not yet waited for, none where the call allows non-finite values: a call
/// prepares its workspace on the host while they run and calls expect_finite_inputs() before
/// its first kernel that writes anything the caller sees.
template <class ExecSpace>
using PendingScans = std::optional<NonFiniteScans<ExecSpace>>;

/// Starts the scans of every input of the forward, unless options.allow_non_finite.
template <class ExecSpace, class Scalar>
PendingScans<ExecSpace> start_finite_input_scans(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& in,
    const ForwardOptions& options) {
  PendingScans<ExecSpace> scans;
  if (!options.allow_non_finite) add_forward_inputs(scans.emplace(), in);
  return scans;
}

/// Starts the scans of the backward's incoming gradients (do, dht), unless
/// options.allow_non_finite: where the forward that saved for it scanned its inputs.
template <class ExecSpace, class Scalar>
PendingScans<ExecSpace> start_finite_output_gradient_scans(
    const OutputGradients<Scalar, typename ExecSpace::memory_space>& upstream,
    const ForwardOptions& options) {
  PendingScans<ExecSpace> scans;
  if (!options.allow_non_finite) add_output_gradients(scans.emplace(), upstream);
  return scans;
}

/// Waits for `scans`, if any, and throws gdp::InvalidArgument naming the first input with a
/// non-finite element.
template <class ExecSpace>
void expect_finite_inputs(const PendingScans<ExecSpace>& scans, const IndexOrigin& origin = {}) {
  if (scans) scans->expect_finite_inputs(origin);
}

/// Rejects non-finite values in the backward's incoming gradients (do, dht) alone, where the
/// forward that saved for it scanned its inputs; unless options.allow_non_finite.
template <class ExecSpace, class Scalar>
void check_finite_output_gradients(
    const OutputGradients<Scalar, typename ExecSpace::memory_space>& upstream,
    const ForwardOptions& options, const IndexOrigin& origin = {}) {
  expect_finite_inputs(start_finite_output_gradient_scans<ExecSpace>(upstream, options), origin);
}

/// Rejects non-finite values in every input of the forward, unless options.allow_non_finite.
template <class ExecSpace, class Scalar>
void check_finite_inputs(const ForwardInputs<Scalar, typename ExecSpace::memory_space>& in,
                         const ForwardOptions& options, const IndexOrigin& origin = {}) {
  expect_finite_inputs(start_finite_input_scans<ExecSpace>(in, options), origin);
}

/// Rejects non-finite values in every input of the backward: the forward's, then its incoming
/// gradients (do, dht), with one wait; unless options.allow_non_finite.
template <class ExecSpace, class Scalar>
void check_finite_backward_inputs(
    const ForwardInputs<Scalar, typename ExecSpace::memory_space>& in,
    const OutputGradients<Scalar, typename ExecSpace::memory_space>& upstream,
    const ForwardOptions& options, const IndexOrigin& origin = {}) {
  if (options.allow_non_finite) return;
  NonFiniteScans<ExecSpace> scans;
  add_output_gradients(add_forward_inputs(scans, in), upstream).expect_finite_inputs(origin);
}

}  // namespace gdp::detail
