// SPDX-License-Identifier: Apache-2.0
// The ordered scan of the ranks' state maps: MPI_Exscan with a user-defined operation that is
// declared non-commutative, so MPI combines the elements in rank order. The operation is
// the library's compose_state_maps on the host; it learns H, K and V from an attribute of the
// message's datatype (an MPI operation gets no other context).
#include "sequence_parallel.hpp"

#include <gdp/sequence_parallel.hpp>

#include <algorithm>
#include <type_traits>
#include <vector>

namespace gdp::dist {

namespace {

struct MapShape {
  int heads, key_dim, value_dim;
};

/// The datatype attribute that carries a MapShape (created once).
int map_shape_keyval() {
  static const int keyval = [] {
    int key = MPI_KEYVAL_INVALID;
    MPI_Type_create_keyval(MPI_TYPE_NULL_COPY_FN, MPI_TYPE_NULL_DELETE_FN, &key, nullptr);
    return key;
  }();
  return keyval;
}

/// inout <- inout o in, for each of `count` maps: MPI hands the lower ranks' maps as `in`.
template <class Real>
void compose_in_rank_order(void* in, void* inout, int* count, MPI_Datatype* type) {
  MapShape* shape = nullptr;
  int found = 0;
  MPI_Type_get_attr(*type, map_shape_keyval(), &shape, &found);
  if (!found) MPI_Abort(MPI_COMM_WORLD, 1);  // not a datatype of exclusive_scan_maps
  using HostSpace = Kokkos::DefaultHostExecutionSpace;
  const int H = shape->heads, K = shape->key_dim, V = shape->value_dim;
  const std::size_t size = std::size_t(H) * K * (K + V);
  for (int i = 0; i < *count; ++i) {
    StateMap<Real, Kokkos::HostSpace> earlier, later;
    earlier.matrix = decltype(earlier.matrix)(static_cast<Real*>(in) + i * size, H, K, K + V);
    later.matrix = decltype(later.matrix)(static_cast<Real*>(inout) + i * size, H, K, K + V);
    earlier.value_dim = later.value_dim = V;
    const auto composed = compose_state_maps<HostSpace>(earlier, later);
    Kokkos::deep_copy(later.matrix, composed.matrix);
  }
}

}  // namespace

template <class Real>
void exclusive_scan_maps(MPI_Comm comm, Real* element, int heads, int key_dim, int value_dim) {
  MapShape shape{heads, key_dim, value_dim};
  const int size = heads * key_dim * (key_dim + value_dim);
  MPI_Datatype type = MPI_DATATYPE_NULL;
  MPI_Type_contiguous(size, std::is_same<Real, double>::value ? MPI_DOUBLE : MPI_FLOAT, &type);
  MPI_Type_commit(&type);
  MPI_Type_set_attr(type, map_shape_keyval(), &shape);
  MPI_Op op = MPI_OP_NULL;
  MPI_Op_create(&compose_in_rank_order<Real>, /*commute=*/0, &op);
  std::vector<Real> prefix(static_cast<std::size_t>(size));
  MPI_Exscan(element, prefix.data(), 1, type, op, comm);
  MPI_Op_free(&op);
  MPI_Type_free(&type);
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  if (rank == 0) {  // MPI leaves rank 0's result undefined: the empty composition
    const auto identity = identity_state_map<Kokkos::DefaultHostExecutionSpace, Real>(heads, key_dim, value_dim);
    std::copy(identity.matrix.data(), identity.matrix.data() + size, element);
  } else {
    std::copy(prefix.begin(), prefix.end(), element);
  }
}

template void exclusive_scan_maps<double>(MPI_Comm, double*, int, int, int);
template void exclusive_scan_maps<float>(MPI_Comm, float*, int, int, int);

}  // namespace gdp::dist
