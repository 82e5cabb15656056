// SPDX-License-Identifier: Apache-2.0
// Every difference between the Kokkos versions gdp supports (3.4.01 from Debian's trilinos,
// 4.x and 5.x from Spack) lives in this header, so the rest of the code is written once.
#pragma once

#include <Kokkos_Core.hpp>

#if KOKKOS_VERSION < 30401
#error "gdp needs Kokkos 3.4.01 or newer"
#endif

namespace gdp::compat {

// Mathematical functions moved from Kokkos::Experimental to Kokkos in 3.7.
#if KOKKOS_VERSION >= 30700
using Kokkos::exp;
using Kokkos::sqrt;
#else
using Kokkos::Experimental::exp;
using Kokkos::Experimental::sqrt;
#endif

}  // namespace gdp::compat
