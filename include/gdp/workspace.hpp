// SPDX-License-Identifier: Apache-2.0
/// \file workspace.hpp
/// \brief The memory gdp keeps between calls.
///
/// Every operator call needs scratch memory beyond its inputs and outputs: the backward about
/// 2.5 GB in float at B=8, T=2048, H=16, K=V=128, n=2, the chunked forward's portable path
/// less, every call a few small buffers (the chunk layout, the non-finite scans' results).
/// Allocating and freeing that on a GPU every call costs milliseconds (cudaMalloc and the
/// device-wide synchronisation of cudaFree: 2 to 3.5 ms per backward call of that shape on
/// an H200, docs/PERFORMANCE.md), so gdp keeps the blocks it allocated, per memory space,
/// and hands them to later calls that fit in them, as PyTorch's caching allocator does:
///
///   - a call takes the smallest free block of its memory space that holds its scratch
///     memory and is at most twice as large; otherwise it frees the free blocks from half
///     its size up to its size (outgrown: the new block serves every call they would) and
///     allocates a new block. One call at a time, the cache so holds less than twice its
///     largest block;
///   - if that allocation fails, every free block of the space is freed and it is tried once
///     more before the call throws;
///   - a block goes back to the cache when its call returns (or throws), after the call's
///     kernels have finished; concurrent calls from several host threads each get their own.
///     The block of what chunk_gated_delta_product_for_backward keeps for the backward
///     (gdp/backward.hpp) goes back when the last copy of its gdp::SavedForward is destroyed
///     or reset;
///   - everything cached is freed by Kokkos::finalize, or earlier by
///     release_cached_workspaces().
///
/// Outputs are never cached: they are the caller's views. Scratch memory is never read before
/// the call writes it, so a reused block gives the same results as a fresh one.
#pragma once

#include <cstddef>

namespace gdp {

/// Frees every cached block that no running call is using, in every memory space; for a
/// caller that needs the memory for something else. Thread-safe.
void release_cached_workspaces();

/// The bytes of the cached blocks (free ones and those in use by running calls), in every
/// memory space.
std::size_t cached_workspace_bytes();

/// Turns the cache off (false: every call allocates its own scratch memory and frees it on
/// return, and the free blocks are freed now) or back on (true, the default).
void set_workspace_caching(bool enabled);

}  // namespace gdp
