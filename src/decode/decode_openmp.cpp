// SPDX-License-Identifier: Apache-2.0
// The decode step on Kokkos::OpenMP, for every storage type.
#include "recurrent_step.hpp"

#ifdef KOKKOS_ENABLE_OPENMP
GDP_INSTANTIATE_DECODE(Kokkos::OpenMP);
#endif
