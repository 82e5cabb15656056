// SPDX-License-Identifier: Apache-2.0
// The backward on Kokkos::Serial, for every storage type.
#include "backward_impl.hpp"

#ifdef KOKKOS_ENABLE_SERIAL
GDP_INSTANTIATE_BACKWARD(Kokkos::Serial);
#endif
