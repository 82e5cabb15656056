// SPDX-License-Identifier: Apache-2.0
// The sequence-parallel building blocks on every execution space of the build.
#include "sequence_parallel_impl.hpp"

#ifdef KOKKOS_ENABLE_SERIAL
GDP_INSTANTIATE_SEQUENCE_PARALLEL(Kokkos::Serial);
#endif
#ifdef KOKKOS_ENABLE_OPENMP
GDP_INSTANTIATE_SEQUENCE_PARALLEL(Kokkos::OpenMP);
#endif
#ifdef KOKKOS_ENABLE_CUDA
GDP_INSTANTIATE_SEQUENCE_PARALLEL(Kokkos::Cuda);
#endif
