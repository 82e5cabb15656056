// SPDX-License-Identifier: Apache-2.0
// The backward on Kokkos::Cuda, for every storage type.
#include "backward_impl.hpp"

#ifdef KOKKOS_ENABLE_CUDA
GDP_INSTANTIATE_BACKWARD(Kokkos::Cuda);
#endif
