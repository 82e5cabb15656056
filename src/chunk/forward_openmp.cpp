// SPDX-License-Identifier: Apache-2.0
// The forward on Kokkos::OpenMP, for every storage type.
#include "forward_impl.hpp"

#ifdef KOKKOS_ENABLE_OPENMP
GDP_INSTANTIATE_FORWARD(Kokkos::OpenMP);
#endif
