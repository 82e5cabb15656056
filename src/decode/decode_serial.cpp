// SPDX-License-Identifier: Apache-2.0
// The decode step on Kokkos::Serial, for every storage type.
#include "recurrent_step.hpp"

#ifdef KOKKOS_ENABLE_SERIAL
GDP_INSTANTIATE_DECODE(Kokkos::Serial);
#endif
