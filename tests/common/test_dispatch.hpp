// SPDX-License-Identifier: Apache-2.0
// Runs a generic test body on every execution space compiled into Kokkos and every storage
// type, so each test case covers all of them without a copy per space.
#pragma once

#include <gdp/storage_types.hpp>

#include <Kokkos_Core.hpp>
#include <gtest/gtest.h>

#include <cstdlib>
#include <sstream>
#include <string>
#include <type_traits>

namespace gdp::test {

/// Whether the tests run on the execution space `name` ("Serial", "OpenMP", "Cuda"): all of
/// them unless GDP_TEST_SPACES names some, comma-separated, so that a GPU run can count the
/// results of each space apart.
inline bool space_selected(const std::string& name) {
  const char* selection = std::getenv("GDP_TEST_SPACES");
  if (!selection || !*selection) return true;
  std::istringstream names(selection);
  for (std::string selected; std::getline(names, selected, ',');)
    if (selected == name) return true;
  return false;
}

/// body(space) under a SCOPED_TRACE naming it, when the space is selected.
template <class ExecSpace, class Body>
void run_on_space(Body&& body) {
  if (!space_selected(ExecSpace::name())) return;
  SCOPED_TRACE(std::string("space ") + ExecSpace::name());
  body(ExecSpace());
}

/// Calls body(ExecSpace{}) for every enabled and selected execution space.
template <class Body>
void for_each_space(Body&& body) {
#ifdef KOKKOS_ENABLE_SERIAL
  run_on_space<Kokkos::Serial>(body);
#endif
#ifdef KOKKOS_ENABLE_OPENMP
  run_on_space<Kokkos::OpenMP>(body);
#endif
#ifdef KOKKOS_ENABLE_CUDA
  run_on_space<Kokkos::Cuda>(body);
#endif
}

/// The relative Frobenius error a result may have against its float64 reference, per storage.
struct StorageTolerances {
  double float64, float32, bits16;
};

/// The forward's: 1e-10 in double, 1e-4 in float, 1e-2 with 16-bit storage (its inputs are
/// rounded to 16 bits, so this bound covers the input rounding as well as the float
/// accumulation).
inline constexpr StorageTolerances forward_tolerances{1e-10, 1e-4, 1e-2};

/// The bound of `tolerances` for storage type Scalar.
template <class Scalar>
constexpr double storage_bound(const StorageTolerances& tolerances) {
  return std::is_same<Scalar, double>::value  ? tolerances.float64
         : std::is_same<Scalar, float>::value ? tolerances.float32
                                              : tolerances.bits16;
}

/// Calls body(Scalar{}, tolerance) for every storage type with its tolerance.
template <class Body>
void for_each_storage(Body&& body, const StorageTolerances& tolerances = forward_tolerances) {
  {
    SCOPED_TRACE("storage float64");
    body(double(), storage_bound<double>(tolerances));
  }
  {
    SCOPED_TRACE("storage float32");
    body(float(), storage_bound<float>(tolerances));
  }
  {
    SCOPED_TRACE("storage bfloat16");
    body(bfloat16(), storage_bound<bfloat16>(tolerances));
  }
  {
    SCOPED_TRACE("storage float16");
    body(float16(), storage_bound<float16>(tolerances));
  }
}

}  // namespace gdp::test
