// SPDX-License-Identifier: Apache-2.0
#include "common/workspace_cache.hpp"

#include <gdp/workspace.hpp>

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

namespace gdp::detail {
namespace {

bool same_space(const WorkspaceSpace* a, const WorkspaceSpace* b) {
  return std::strcmp(a->name, b->name) == 0;
}

/// The process's cached blocks: the free ones wait in `free_blocks_`, those in use by calls
/// are only counted. Allocations and frees run under the mutex too: they happen on misses
/// only, and a concurrent call then waits instead of allocating beside them.
class BlockCache {
 public:
  /// Never destroyed: a process may exit without Kokkos::finalize (libFuzzer targets do), and
  /// a destroyed cache would drop its blocks' addresses, leaking them unseen; a finalize hook
  /// run from another static's destructor must still find the cache too.
  static BlockCache& instance() {
    static BlockCache* const cache = new BlockCache;
    return *cache;
  }

  WorkspaceBlock acquire(const WorkspaceSpace& space, std::size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (enabled_) {
      // The smallest free block that holds `bytes` and is at most twice as large: a small
      // request must not take the block a large one will want next.
      auto best = free_blocks_.end();
      for (auto it = free_blocks_.begin(); it != free_blocks_.end(); ++it)
        if (same_space(it->space, &space) && it->bytes >= bytes && it->bytes / 2 <= bytes &&
            (best == free_blocks_.end() || it->bytes < best->bytes))
          best = it;
      if (best != free_blocks_.end()) {
        const WorkspaceBlock block = *best;
        free_blocks_.erase(best);
        if (handout_observer_ != nullptr)
          handout_observer_(space.name, block.data, block.bytes);
        return block;
      }
      // A miss. The free blocks from half this size up have been outgrown: the block about to
      // be allocated serves every request they would. Smaller ones serve other requests (the
      // non-finite scans' 8 bytes beside a backward's gigabytes) and stay; so, one call at a
      // time, no two free blocks are within a factor 2 and the cache holds less than twice
      // its largest block.
      free_where([&](const WorkspaceBlock& b) {
        return same_space(b.space, &space) && b.bytes < bytes && 2 * b.bytes >= bytes;
      });
    }
    WorkspaceBlock block{&space, nullptr, bytes};
    try {
      block.data = space.allocate(bytes);
    } catch (const std::bad_alloc&) {
      // Memory held by free blocks might be what is missing.
      free_where([&](const WorkspaceBlock& b) { return same_space(b.space, &space); });
      block.data = space.allocate(bytes);
    }
    held_bytes_ += bytes;
    if (handout_observer_ != nullptr) handout_observer_(space.name, block.data, block.bytes);
    if (!finalize_hook_pushed_) {
      // Kokkos frees its memory spaces in finalize: the cache must be empty before that.
      Kokkos::push_finalize_hook([] { instance().release_free(/*after_finalize_hook=*/true); });
      finalize_hook_pushed_ = true;
    }
    return block;
  }

  void give_back(const WorkspaceBlock& block) {
    // The call's kernels may still be reading or writing the block (Cuda runs them
    // asynchronously); the next call to get it must not start before they end.
    Kokkos::fence();
    std::lock_guard<std::mutex> lock(mutex_);
    if (enabled_) {
      free_blocks_.push_back(block);
    } else {
      block.space->deallocate(block.data);
      held_bytes_ -= block.bytes;
    }
  }

  void release_free(bool after_finalize_hook = false) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_where([](const WorkspaceBlock&) { return true; });
    // Kokkos drops its hooks in finalize: a later Kokkos::initialize needs a new one.
    if (after_finalize_hook) finalize_hook_pushed_ = false;
  }

  std::size_t held_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return held_bytes_;
  }

  void set_enabled(bool enabled) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      enabled_ = enabled;
    }
    if (!enabled) release_free();
  }

  void set_handout_observer(WorkspaceHandoutObserver observer) {
    std::lock_guard<std::mutex> lock(mutex_);
    handout_observer_ = observer;
  }

 private:
  /// Frees the free blocks for which `doomed` holds. The caller holds the mutex.
  template <class Predicate>
  void free_where(Predicate doomed) {
    auto keep = std::stable_partition(free_blocks_.begin(), free_blocks_.end(),
                                      [&](const WorkspaceBlock& b) { return !doomed(b); });
    for (auto it = keep; it != free_blocks_.end(); ++it) {
      it->space->deallocate(it->data);
      held_bytes_ -= it->bytes;
    }
    free_blocks_.erase(keep, free_blocks_.end());
  }

  std::mutex mutex_;
  std::vector<WorkspaceBlock> free_blocks_;
  std::size_t held_bytes_ = 0;
  bool enabled_ = true;
  bool finalize_hook_pushed_ = false;
  WorkspaceHandoutObserver handout_observer_ = nullptr;
};

}  // namespace

WorkspaceBlock acquire_workspace_block(const WorkspaceSpace& space, std::size_t bytes) {
  return BlockCache::instance().acquire(space, bytes);
}

void return_workspace_block(const WorkspaceBlock& block) noexcept {
  BlockCache::instance().give_back(block);
}

void set_workspace_handout_observer(WorkspaceHandoutObserver observer) {
  BlockCache::instance().set_handout_observer(observer);
}

}  // namespace gdp::detail

namespace gdp {

void release_cached_workspaces() { detail::BlockCache::instance().release_free(); }

std::size_t cached_workspace_bytes() { return detail::BlockCache::instance().held_bytes(); }

void set_workspace_caching(bool enabled) { detail::BlockCache::instance().set_enabled(enabled); }

}  // namespace gdp
