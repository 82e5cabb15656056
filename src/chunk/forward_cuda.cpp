// SPDX-License-Identifier: Apache-2.0
// The forward on Kokkos::Cuda, for every storage type.
#include "forward_impl.hpp"

#ifdef KOKKOS_ENABLE_CUDA
GDP_INSTANTIATE_FORWARD(Kokkos::Cuda);
#endif
