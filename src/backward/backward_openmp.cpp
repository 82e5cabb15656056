// SPDX-License-Identifier: Apache-2.0
// The backward on Kokkos::OpenMP, for every storage type.
#include "backward_impl.hpp"

#ifdef KOKKOS_ENABLE_OPENMP
GDP_INSTANTIATE_BACKWARD(Kokkos::OpenMP);
#endif
