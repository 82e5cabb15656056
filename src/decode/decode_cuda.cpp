// SPDX-License-Identifier: Apache-2.0
// The decode step on Kokkos::Cuda, for every storage type.
#include "recurrent_step.hpp"

#ifdef KOKKOS_ENABLE_CUDA
GDP_INSTANTIATE_DECODE(Kokkos::Cuda);
#endif
