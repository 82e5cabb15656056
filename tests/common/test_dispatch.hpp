// SPDX-License-Identifier: Apache-2.0
// Runs a generic test body on every execution space compiled into Kokkos and every storage
// type, so each test case covers all of them without a copy per space.
#pragma once

#include <gdp/storage_types.hpp>

#include <Kokkos_Core.hpp>
#include <gtest/gtest.h>

#include <string>

namespace gdp::test {

/// Calls body(ExecSpace{}) for every enabled execution space, each under a SCOPED_TRACE.
template <class Body>
void for_each_space(Body&& body) {
#ifdef KOKKOS_ENABLE_SERIAL
  {
    SCOPED_TRACE("space Serial");
    body(Kokkos::Serial());
  }
#endif
#ifdef KOKKOS_ENABLE_OPENMP
  {
    SCOPED_TRACE("space OpenMP");
    body(Kokkos::OpenMP());
  }
#endif
#ifdef KOKKOS_ENABLE_CUDA
  {
    SCOPED_TRACE("space Cuda");
    body(Kokkos::Cuda());
  }
#endif
}

/// Calls body(Scalar{}, tolerance) for every storage type with the relative Frobenius error
/// allowed against the float64 reference on the same inputs: 1e-10 in double, 1e-4 in float,
/// 1e-2 with 16-bit storage (its inputs are rounded to 16 bits, so this bound covers the
/// input rounding as well as the float accumulation).
template <class Body>
void for_each_storage(Body&& body) {
  {
    SCOPED_TRACE("storage float64");
    body(double(), 1e-10);
  }
  {
    SCOPED_TRACE("storage float32");
    body(float(), 1e-4);
  }
  {
    SCOPED_TRACE("storage bfloat16");
    body(bfloat16(), 1e-2);
  }
  {
    SCOPED_TRACE("storage float16");
    body(float16(), 1e-2);
  }
}

}  // namespace gdp::test
