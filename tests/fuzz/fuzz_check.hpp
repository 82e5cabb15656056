// SPDX-License-Identifier: Apache-2.0
// What the fuzz targets share: a property check that aborts (so that libFuzzer records the
// input as a crash), the fuzzer's bytes read as choices, and one Kokkos initialisation per
// process. The targets are also built without libFuzzer, as programs that replay the corpus
// (replay_main.cpp), so nothing here needs clang's fuzzer headers.
#pragma once

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace gdp::fuzz {

/// Aborts with `what` unless `condition` holds: a broken property is a finding.
inline void check(bool condition, const char* what) {
  if (condition) return;
  std::fprintf(stderr, "gdp fuzz: property broken: %s\n", what);
  std::abort();
}

/// The fuzzer's bytes read front to back as a sequence of choices; once they run out, every
/// choice is its lowest value.
class Choices {
 public:
  Choices(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}

  /// An integer in [low, high], from as many bytes as the span needs.
  template <class Int>
  Int in_range(Int low, Int high) {
    const std::uint64_t span = std::uint64_t(high) - std::uint64_t(low);
    std::uint64_t raw = 0;
    for (std::uint64_t covered = 0; covered < span && offset_ < size_; covered = covered << 8 | 0xff)
      raw = raw << 8 | data_[offset_++];
    if (span != std::numeric_limits<std::uint64_t>::max()) raw %= span + 1;
    return Int(std::uint64_t(low) + raw);
  }
  /// Any value of Int.
  template <class Int>
  Int any() {
    return in_range(std::numeric_limits<Int>::lowest(), std::numeric_limits<Int>::max());
  }
  bool flag() { return in_range<int>(0, 1) == 1; }
  /// A real number in [low, high].
  double real(double low, double high) {
    const auto raw = any<std::uint32_t>();
    return low + (high - low) * (double(raw) / double(std::numeric_limits<std::uint32_t>::max()));
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t offset_ = 0;
};

/// Initialises Kokkos (one thread: the targets run Serial) for the rest of the process.
inline void initialize_kokkos() {
  if (Kokkos::is_initialized()) return;
  ::setenv("OMP_NUM_THREADS", "1", 0);
  ::setenv("OMP_PROC_BIND", "false", 0);
  Kokkos::initialize();
}

}  // namespace gdp::fuzz
