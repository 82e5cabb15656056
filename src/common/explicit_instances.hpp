// SPDX-License-Identifier: Apache-2.0
// Explicit instantiation of the public entry points, as Kokkos Kernels' ETI does it. Each
// stage's implementation header lists its entry points once, in a macro
// GDP_<STAGE>_INSTANCES(prefix, ExecSpace, Scalar) that puts `prefix` before each of them.
// The stage's src/<stage>_<space>.cpp expands it with `template` (the definitions), and the
// header itself, at its end, with `extern template` for every space of the build (the
// declarations). A translation unit that includes an implementation header (the references,
// the tests of internal stages, gdp_app) then links to the library's instances instead of
// compiling the whole stage once more: without the declarations each such test file spent
// about three minutes compiling the forward again, for every space and storage type.
#pragma once

#include <gdp/storage_types.hpp>

#include <Kokkos_Macros.hpp>

/// INSTANCES(prefix, ExecSpace, Scalar) for every storage type.
#define GDP_FOR_EACH_STORAGE(INSTANCES, prefix, ExecSpace)  \
  INSTANCES(prefix, ExecSpace, double);                     \
  INSTANCES(prefix, ExecSpace, float);                      \
  INSTANCES(prefix, ExecSpace, ::gdp::bfloat16);            \
  INSTANCES(prefix, ExecSpace, ::gdp::float16)

#ifdef KOKKOS_ENABLE_SERIAL
#define GDP_IF_SERIAL_ENABLED(...) __VA_ARGS__
#else
#define GDP_IF_SERIAL_ENABLED(...)
#endif
#ifdef KOKKOS_ENABLE_OPENMP
#define GDP_IF_OPENMP_ENABLED(...) __VA_ARGS__
#else
#define GDP_IF_OPENMP_ENABLED(...)
#endif
#ifdef KOKKOS_ENABLE_CUDA
#define GDP_IF_CUDA_ENABLED(...) __VA_ARGS__
#else
#define GDP_IF_CUDA_ENABLED(...)
#endif

/// SPACE_INSTANCES(ExecSpace) for every execution space of the build; with the `extern
/// template` form of a stage's instances, the declarations at the end of its header.
#define GDP_FOR_EACH_ENABLED_SPACE(SPACE_INSTANCES)        \
  GDP_IF_SERIAL_ENABLED(SPACE_INSTANCES(Kokkos::Serial);)  \
  GDP_IF_OPENMP_ENABLED(SPACE_INSTANCES(Kokkos::OpenMP);)  \
  GDP_IF_CUDA_ENABLED(SPACE_INSTANCES(Kokkos::Cuda);)
