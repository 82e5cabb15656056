// SPDX-License-Identifier: Apache-2.0
// The forward on Kokkos::Serial, for every storage type.
#include "forward_impl.hpp"

#ifdef KOKKOS_ENABLE_SERIAL
GDP_INSTANTIATE_FORWARD(Kokkos::Serial);
#endif
