// SPDX-License-Identifier: Apache-2.0
// Every allocation a test program makes after Kokkos starts, the operator's outputs and
// workspaces included, begins filled with 0xFF bytes: a NaN in every floating-point type gdp
// stores or computes in. An element that a kernel never writes, or a workspace entry read
// before it is written, then turns the result non-finite instead of passing as a zero that
// happens to be close enough. Blocks of gdp's workspace cache are poisoned each time a call
// takes one, new or reused.
//
// A limit of the Kokkos Tools callback (Kokkos 3.4.01 to 5.x): for a View's allocation it
// passes the start of the allocation, where Kokkos then writes its 128-byte header, with the
// size of the data alone, and a raw allocation (no header) looks the same, so the callback
// cannot add the header's size. The fill covers the header (rewritten by Kokkos afterwards)
// and all of a View's data but its last 128 bytes: a View of 128 bytes or less is not
// poisoned. Workspace blocks, whose data the cache points to, are poisoned whole.
#pragma once

#include "common/workspace_cache.hpp"

#include <Kokkos_Core.hpp>

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace gdp::test {

namespace detail {

/// Fills [ptr, ptr + size) with 0xFF when the allocation lives in `MemorySpace`.
template <class MemorySpace>
bool poison_if_in(const char* space_name, const void* ptr, std::uint64_t size) {
  if (std::strcmp(space_name, MemorySpace::name()) != 0) return false;
  if constexpr (std::is_same<MemorySpace, Kokkos::HostSpace>::value) {
    // No Kokkos call here: the callback also runs inside Kokkos::OpenMP's own thread-data
    // allocation, under the lock a fence takes, and Kokkos 4.6 deadlocks on it.
    std::memset(const_cast<void*>(ptr), 0xFF, size);
  } else {
    Kokkos::View<unsigned char*, MemorySpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>> bytes(
        static_cast<unsigned char*>(const_cast<void*>(ptr)), size);
    Kokkos::deep_copy(bytes, static_cast<unsigned char>(0xFF));
    Kokkos::fence();
  }
  return true;
}

inline void poison(const char* space_name, const void* ptr, std::uint64_t size) {
  if (poison_if_in<Kokkos::HostSpace>(space_name, ptr, size)) return;
#ifdef KOKKOS_ENABLE_CUDA
  poison_if_in<Kokkos::CudaSpace>(space_name, ptr, size);
#endif
}

inline void poison_allocation(Kokkos::Tools::SpaceHandle space, const char* /*label*/,
                              const void* ptr, std::uint64_t size) {
  poison(space.name, ptr, size);
}

inline void poison_workspace_block(const char* space_name, void* ptr, std::uint64_t size) {
  poison(space_name, ptr, size);
}

}  // namespace detail

/// Poisons every later allocation in the host and device memory spaces (a Kokkos Tools
/// allocation callback, so it reaches allocations inside the library too), and every block of
/// gdp's workspace cache each time a call takes it (common/workspace_cache.hpp).
inline void poison_every_allocation() {
  Kokkos::Tools::Experimental::set_allocate_data_callback(detail::poison_allocation);
  gdp::detail::set_workspace_handout_observer(detail::poison_workspace_block);
}

}  // namespace gdp::test
