// SPDX-License-Identifier: Apache-2.0
// MPI and Kokkos for one process of an MPI program: MPI on construction, Kokkos when the
// program asks (after it has read its arguments), both stopped on destruction, with each rank
// placed on its own share of the node.
//
// Placement: the ranks of a node are found with MPI_Comm_split_type(MPI_COMM_TYPE_SHARED).
// With Kokkos::Cuda, node-local rank r uses GPU r modulo the GPUs it can see. With
// Kokkos::OpenMP, a rank uses the cores it is bound to, at most cores / ranks-on-the-node
// (so `mpirun -np 2` on 2 cores runs 1 thread a rank rather than 2 threads fighting for each
// core). Either choice is left to the user when they made it: a `--kokkos-device-id` or
// thread-count argument, KOKKOS_DEVICE_ID, KOKKOS_NUM_THREADS or OMP_NUM_THREADS.
#pragma once

#include <mpi.h>

#include <optional>
#include <string>
#include <vector>

namespace gdp::dist {

class Runtime {
 public:
  /// MPI_Init and this rank's placement. The `--kokkos-*` arguments are taken out of
  /// argc/argv for start_kokkos(); the rest are the program's.
  Runtime(int& argc, char** argv);
  /// Kokkos::finalize if Kokkos was started, then MPI_Finalize.
  ~Runtime();
  /// Kokkos::initialize with the `--kokkos-*` arguments and this rank's placement. Separate
  /// from the constructor so that a program can answer --help or a usage error first.
  void start_kokkos();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  MPI_Comm comm() const { return MPI_COMM_WORLD; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  /// The GPU this rank chose, if it chose one.
  std::optional<int> device_id() const { return device_id_; }
  /// The host thread count this rank chose, if it chose one.
  std::optional<int> host_threads() const { return host_threads_; }

 private:
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  std::optional<int> device_id_, host_threads_;
  std::vector<std::string> kokkos_arguments_;
  bool kokkos_started_ = false;
};

}  // namespace gdp::dist
