// SPDX-License-Identifier: Apache-2.0
// Choosing an execution space at run time by name, among those compiled into Kokkos
// ("serial", "openmp", "cuda"), for the programs that let the user pick one.
#pragma once

#include "gdp_asserts.hpp"

#include <Kokkos_Core.hpp>

#include <string>
#include <vector>

namespace gdp {

/// The names of the execution spaces this build can run on, fastest first.
inline std::vector<std::string> execution_space_names() {
  std::vector<std::string> names;
#ifdef KOKKOS_ENABLE_CUDA
  names.push_back("cuda");
#endif
#ifdef KOKKOS_ENABLE_OPENMP
  names.push_back("openmp");
#endif
#ifdef KOKKOS_ENABLE_SERIAL
  names.push_back("serial");
#endif
  return names;
}

/// The fastest execution space of this build.
inline std::string default_execution_space_name() { return execution_space_names().front(); }

/// Calls body(Space()) with the execution space called `name`.
/// \throws gdp::InvalidArgument when this build has no such space.
template <class Body>
void with_execution_space(const std::string& name, Body&& body) {
#ifdef KOKKOS_ENABLE_CUDA
  if (name == "cuda") return body(Kokkos::Cuda());
#endif
#ifdef KOKKOS_ENABLE_OPENMP
  if (name == "openmp") return body(Kokkos::OpenMP());
#endif
#ifdef KOKKOS_ENABLE_SERIAL
  if (name == "serial") return body(Kokkos::Serial());
#endif
  std::string known;
  for (const std::string& n : execution_space_names()) known += (known.empty() ? "" : ", ") + n;
  GDP_EXPECT(false, "space", "expected one of the execution spaces of this build (", known,
             "), got \"", name, "\"");
}

}  // namespace gdp
