// SPDX-License-Identifier: Apache-2.0
// The scratch memory of one operator call, taken from the per-memory-space block cache that
// include/gdp/workspace.hpp describes: a WorkspaceLease holds a block for the call, and a
// WorkspaceCarver lays the call's views out in it, one after the other.
#pragma once

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <utility>
#include <vector>

namespace gdp::detail {

/// How the cache allocates and frees in one memory space (type-erased, so that one cache
/// serves every space; spaces are told apart by name).
struct WorkspaceSpace {
  const char* name;
  void* (*allocate)(std::size_t bytes);
  void (*deallocate)(void* data);
};

template <class MemorySpace>
const WorkspaceSpace& workspace_space() {
  static const WorkspaceSpace space{
      MemorySpace::name(),
      [](std::size_t bytes) { return Kokkos::kokkos_malloc<MemorySpace>("gdp::workspace", bytes); },
      [](void* data) { Kokkos::kokkos_free<MemorySpace>(data); }};
  return space;
}

struct WorkspaceBlock {
  const WorkspaceSpace* space = nullptr;
  void* data = nullptr;
  std::size_t bytes = 0;
};

/// A block of at least `bytes` bytes in `space`, cached or new (the rules in
/// include/gdp/workspace.hpp). Throws what the space's allocation throws.
WorkspaceBlock acquire_workspace_block(const WorkspaceSpace& space, std::size_t bytes);

/// Gives a block back once every kernel that used it has finished (this fences).
void return_workspace_block(const WorkspaceBlock& block) noexcept;

/// Called with every block handed to a call, new or reused: the tests poison it, so that a
/// kernel reading scratch memory before writing it fails either way. (Kokkos Tools' allocation
/// callback, which the tests also poison through, gets a new block's header address with its
/// data size, so it misses the block's last 128 bytes: tests/common/poisoned_allocations.hpp.)
/// Null (the default): nothing.
using WorkspaceHandoutObserver = void (*)(const char* space_name, void* data,
                                          std::uint64_t bytes);
void set_workspace_handout_observer(WorkspaceHandoutObserver observer);

/// One call's hold on a block of `MemorySpace`; the block goes back to the cache when the
/// lease ends. Move-only.
template <class MemorySpace>
class WorkspaceLease {
 public:
  WorkspaceLease() = default;
  explicit WorkspaceLease(std::size_t bytes)
      : block_(bytes == 0 ? WorkspaceBlock{}
                          : acquire_workspace_block(workspace_space<MemorySpace>(), bytes)) {}
  WorkspaceLease(WorkspaceLease&& other) noexcept : block_(std::exchange(other.block_, {})) {}
  WorkspaceLease& operator=(WorkspaceLease&& other) noexcept {
    if (this != &other) {
      release();
      block_ = std::exchange(other.block_, {});
    }
    return *this;
  }
  WorkspaceLease(const WorkspaceLease&) = delete;
  WorkspaceLease& operator=(const WorkspaceLease&) = delete;
  ~WorkspaceLease() { release(); }

  void* data() const { return block_.data; }
  std::size_t bytes() const { return block_.bytes; }

 private:
  void release() noexcept {
    if (block_.data != nullptr) return_workspace_block(block_);
    block_ = {};
  }
  WorkspaceBlock block_;
};

/// Lays views out one after the other in a leased block. Built without a lease it only
/// counts the bytes (and hands out empty views), so that a workspace is described once and
/// built twice: counting, then carving the lease sized by the count.
template <class MemorySpace>
class WorkspaceCarver {
 public:
  /// Every view starts on a 256-byte boundary of the block (a whole number of 128-byte lines,
  /// as a fresh cudaMalloc allocation does), so vector loads never straddle views.
  static constexpr std::size_t alignment = 256;

  WorkspaceCarver() = default;
  explicit WorkspaceCarver(const WorkspaceLease<MemorySpace>& lease)
      : base_(static_cast<unsigned char*>(lease.data())), capacity_(lease.bytes()) {}

  /// The next view of `extents` (LayoutRight, uninitialised); an empty view when counting.
  template <class DataType, class... Extents>
  Kokkos::View<DataType, Kokkos::LayoutRight, MemorySpace> view(Extents... extents) {
    using View = Kokkos::View<DataType, Kokkos::LayoutRight, MemorySpace>;
    using value_type = typename View::non_const_value_type;
    const std::size_t count = (std::size_t(1) * ... * std::size_t(extents));
    const std::size_t offset = used_, view_bytes = count * sizeof(value_type);
    used_ += (view_bytes + alignment - 1) / alignment * alignment;
    if (base_ == nullptr) return View();
    if (offset + view_bytes > capacity_)
      throw std::logic_error("gdp: internal error: a workspace outgrew the block counted for it");
    return View(reinterpret_cast<value_type*>(base_ + offset), std::size_t(extents)...);
  }

  /// The bytes laid out so far.
  std::size_t bytes() const { return used_; }

 private:
  unsigned char* base_ = nullptr;
  std::size_t capacity_ = 0;
  std::size_t used_ = 0;
};

/// A device copy of `values` carved by `carver` (when it only counts, nothing is copied):
/// the small host-built tables the kernels read, such as the chunk and segment layouts. The
/// copy is queued on the memory space's default execution space instance, the one the kernels
/// run on, without waiting for the device: a call lays out its workspace while the scans of
/// its inputs run (finite_check.hpp). `values` may go as soon as this returns: a copy from
/// pageable host memory is staged before cudaMemcpyAsync returns.
template <class MemorySpace, class T>
Kokkos::View<const T*, MemorySpace> carve_copy(WorkspaceCarver<MemorySpace>& carver,
                                               const std::vector<T>& values) {
  const auto device = carver.template view<T*>(values.size());
  if (device.data() != nullptr)
    Kokkos::deep_copy(typename MemorySpace::execution_space(), device,
                      Kokkos::View<const T*, Kokkos::HostSpace,
                                   Kokkos::MemoryTraits<Kokkos::Unmanaged>>(values.data(),
                                                                            values.size()));
  return device;
}

/// Workspace parts built by `build(carver)` (a callable returning them by value) in one
/// leased block that lives as long as they do.
template <class MemorySpace, class Parts>
struct LeasedWorkspace {
  WorkspaceLease<MemorySpace> lease;
  Parts parts;
};

template <class MemorySpace, class Build>
auto lease_workspace(Build&& build) {
  WorkspaceCarver<MemorySpace> counting;
  build(counting);
  WorkspaceLease<MemorySpace> lease(counting.bytes());
  WorkspaceCarver<MemorySpace> carving(lease);
  auto parts = build(carving);
  return LeasedWorkspace<MemorySpace, decltype(parts)>{std::move(lease), std::move(parts)};
}

}  // namespace gdp::detail
