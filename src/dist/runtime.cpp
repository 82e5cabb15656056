// SPDX-License-Identifier: Apache-2.0
#include "runtime.hpp"

#include "common/kokkos_compat.hpp"

#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace gdp::dist {

namespace {

bool starts_with(const char* text, const char* prefix) {
  return std::strncmp(text, prefix, std::strlen(prefix)) == 0;
}

bool user_chose(const std::vector<std::string>& arguments, const char* flag, const char* variable) {
  if (std::getenv(variable)) return true;
  return std::any_of(arguments.begin(), arguments.end(),
                     [&](const std::string& a) { return starts_with(a.c_str(), flag); });
}

/// Cores this process may run on (its affinity mask, e.g. the core mpirun bound it to).
int cores_available() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return int(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace

}  // namespace gdp::dist

#if defined(__has_feature)
#if __has_feature(address_sanitizer)  // clang's spelling of GCC's __SANITIZE_ADDRESS__
#define GDP_ADDRESS_SANITIZER 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(GDP_ADDRESS_SANITIZER)
/// AddressSanitizer builds (GDP_SANITIZE, scripts/sanitize.sh; docs/HARDENING.md): every
/// program that starts MPI through gdp unwinds the stack of each allocation fully, through
/// Open MPI's libraries, which have no frame pointers. Open MPI keeps allocations of MPI_Init
/// until exit, some made in components it unloads in MPI_Finalize; with the fast unwinder their
/// stacks stop in those unloaded modules, and LeakSanitizer's suppressions (scripts/lsan.supp),
/// which name Open MPI's libraries, cannot match. ASAN_OPTIONS still overrides this default.
extern "C" const char* __asan_default_options() { return "fast_unwind_on_malloc=0"; }
#endif

namespace gdp::dist {

Runtime::Runtime(int& argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &local_rank_);
  MPI_Comm_size(node, &local_size_);
  MPI_Comm_free(&node);

  // Kokkos gets argv[0] and the --kokkos-* arguments; the program keeps the others.
  std::vector<std::string>& kokkos_arguments = kokkos_arguments_;
  kokkos_arguments.push_back(argc > 0 ? argv[0] : "gdp");
  int kept = std::min(argc, 1);
  for (int i = 1; i < argc; ++i) {
    if (starts_with(argv[i], "--kokkos-"))
      kokkos_arguments.push_back(argv[i]);
    else
      argv[kept++] = argv[i];
  }
  argc = kept;
  argv[argc] = nullptr;

#ifdef KOKKOS_ENABLE_CUDA
  int devices = 0;
  if (!user_chose(kokkos_arguments, compat::device_id_flag, "KOKKOS_DEVICE_ID") &&
      cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0)
    device_id_ = local_rank_ % devices;
#endif
#ifdef KOKKOS_ENABLE_OPENMP
  if (!user_chose(kokkos_arguments, compat::host_threads_flag, "KOKKOS_NUM_THREADS") &&
      !std::getenv("OMP_NUM_THREADS")) {
    const int per_rank = int(std::thread::hardware_concurrency()) / local_size_;
    host_threads_ = std::max(1, std::min(cores_available(), per_rank));
  }
#endif
}

void Runtime::start_kokkos() {
  compat::initialize(kokkos_arguments_, device_id_, host_threads_);
  kokkos_started_ = true;
}

Runtime::~Runtime() {
  if (kokkos_started_) Kokkos::finalize();
  MPI_Finalize();
}

}  // namespace gdp::dist
