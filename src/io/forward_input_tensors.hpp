// SPDX-License-Identifier: Apache-2.0
// The tensors of a forward input file, taken from host views: what `gdp_app make-input`
// writes, and what tests start from when they need a particular file.
#pragma once

#include <gdp/forward.hpp>
#include <gdp/safetensors.hpp>

#include "forward_file.hpp"

#include <Kokkos_Core.hpp>

#include <string>
#include <vector>

namespace gdp::io {

/// Tensors to write: their specs and, for each, its data.
struct TensorsToWrite {
  std::vector<TensorSpec> specs;
  std::vector<const void*> data;

  /// Adds a contiguous host view as tensor `name` of dtype `dtype` (its extents as shape).
  template <class View>
  void add(const std::string& name, DType dtype, const View& view) {
    TensorSpec spec{name, dtype, {}};
    for (unsigned r = 0; r < View::rank; ++r) spec.shape.push_back(std::int64_t(view.extent(r)));
    specs.push_back(std::move(spec));
    data.push_back(view.data());
  }
};

/// q, k, v and beta in the storage dtype, g and h0 (when present) in the accumulation dtype,
/// and cu_seqlens (when present) as I64.
template <class Scalar>
TensorsToWrite forward_input_tensors(const ForwardInputs<Scalar, Kokkos::HostSpace>& in) {
  const DType stored = dtype_of<Scalar>(), accumulated = accumulation_dtype(stored);
  TensorsToWrite tensors;
  tensors.add("q", stored, in.q);
  tensors.add("k", stored, in.k);
  tensors.add("v", stored, in.v);
  tensors.add("beta", stored, in.beta);
  if (in.g.data()) tensors.add("g", accumulated, in.g);
  if (in.initial_state.data()) tensors.add("h0", accumulated, in.initial_state);
  if (in.cu_seqlens.data()) tensors.add("cu_seqlens", DType::I64, in.cu_seqlens);
  return tensors;
}

}  // namespace gdp::io
