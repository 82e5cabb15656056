// SPDX-License-Identifier: Apache-2.0
// Every difference between the Kokkos versions gdp supports (3.4.01 from Debian's trilinos,
// 4.x and 5.x from Spack) lives in this header, so the rest of the code is written once.
#pragma once

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#if KOKKOS_VERSION < 30401
#error "gdp needs Kokkos 3.4.01 or newer"
#endif

// GDP_IF_ON_HOST((statements;)) keeps host-only code out of the device pass of a function that
// is compiled for both (KOKKOS_INLINE_FUNCTION): nvcc warns about, and cannot run, a host
// function called there, even from a branch only host spaces take. Kokkos says this with
// KOKKOS_IF_ON_HOST since 3.6; before that, the device compilers' own macros do.
#if defined(KOKKOS_IF_ON_HOST)
#define GDP_IF_ON_HOST(code) KOKKOS_IF_ON_HOST(code)
#elif defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
#define GDP_IF_ON_HOST(code)
#else
#define GDP_IMPL_STRIP_PARENS(...) __VA_ARGS__
#define GDP_IF_ON_HOST(code) {GDP_IMPL_STRIP_PARENS code}
#endif

namespace gdp::compat {

/// The most elements one Kokkos::View may hold. Kokkos 3.x keeps the extents of a view with
/// three or more runtime extents as 32-bit unsigned numbers and multiplies them in that type
/// for the allocation's size: past 2^32 - 1 elements the size wraps (2^32 elements allocate
/// nothing) and kernels then write outside the allocation. Kokkos 4.x multiplies in 64 bits.
#if KOKKOS_VERSION < 40000
inline constexpr std::uint64_t max_view_elements = std::numeric_limits<std::uint32_t>::max();
#else
inline constexpr std::uint64_t max_view_elements = std::numeric_limits<std::uint64_t>::max();
#endif

// Mathematical functions moved from Kokkos::Experimental to Kokkos in 3.7.
#if KOKKOS_VERSION >= 30700
using Kokkos::exp;
using Kokkos::sqrt;
#else
using Kokkos::Experimental::exp;
using Kokkos::Experimental::sqrt;
#endif

// The command-line flag for the host thread count was renamed in 3.7 (Kokkos 4.6 no longer
// knows the old name); the device id flag is spelled the same in every supported version.
#if KOKKOS_VERSION >= 30700
inline constexpr const char* host_threads_flag = "--kokkos-num-threads";
#else
inline constexpr const char* host_threads_flag = "--kokkos-threads";
#endif
inline constexpr const char* device_id_flag = "--kokkos-device-id";

/// Kokkos::initialize with the command line `arguments` (program name first), plus a device
/// id and a host thread count when given. Going through the command line rather than
/// Kokkos::InitArguments (3.x) or Kokkos::InitializationSettings (3.7 on) keeps the user's own
/// `--kokkos-*` arguments working with every version.
inline void initialize(std::vector<std::string> arguments, std::optional<int> device_id,
                       std::optional<int> host_threads) {
  if (device_id) arguments.push_back(std::string(device_id_flag) + "=" + std::to_string(*device_id));
  if (host_threads)
    arguments.push_back(std::string(host_threads_flag) + "=" + std::to_string(*host_threads));
  std::vector<char*> argv;
  for (std::string& argument : arguments) argv.push_back(argument.data());
  argv.push_back(nullptr);
  int argc = int(arguments.size());
  Kokkos::initialize(argc, argv.data());
}

}  // namespace gdp::compat
