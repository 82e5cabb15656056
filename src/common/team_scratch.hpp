// SPDX-License-Identifier: Apache-2.0
// Team scratch tiles: sizing them on the host and carving them out inside a team.
#pragma once

#include <Kokkos_Core.hpp>

#include <cstddef>

namespace gdp::detail {

/// A row-major tile in the team scratch of execution space `ExecSpace`.
template <class ExecSpace, class Real>
using ScratchTile = Kokkos::View<Real**, Kokkos::LayoutRight,
                                 typename ExecSpace::scratch_memory_space,
                                 Kokkos::MemoryTraits<Kokkos::Unmanaged>>;

template <class ExecSpace, class Real>
std::size_t scratch_bytes(std::size_t rows, std::size_t cols) {
  return ScratchTile<ExecSpace, Real>::shmem_size(rows, cols);
}

/// The scratch level that holds `bytes` per team: the fast level 0 when it fits, else level 1.
template <class Policy>
int scratch_level_for(std::size_t bytes) {
  return bytes <= std::size_t(Policy::scratch_size_max(0)) ? 0 : 1;
}

}  // namespace gdp::detail
