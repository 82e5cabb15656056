// SPDX-License-Identifier: Apache-2.0
// What gdp's forward input and output files hold, on top of the safetensors format:
//
//   input:  q [B,T,Hqk,K], k [B,T*n,Hqk,K], v [B,T*n,H,V], beta [B,T*n,H] (one dtype: F64, F32,
//           BF16 or F16, the storage type), and optionally g [B,T,H], h0 [N,H,K,V] (any float
//           dtype; converted exactly to the accumulation type) and cu_seqlens [N+1] (I32, I64);
//           __metadata__: num_householder, scale, l2norm (strings; defaults 1, 1/sqrt(K), false)
//   output: o [B,T,H,V] in the storage dtype, ht [N,H,K,V] in the accumulation dtype, and the
//           options used in __metadata__.
// For the backward (`gdp_app run --backward`) the input also holds the gradients of the loss
// with respect to the outputs, do [B,T,H,V] (storage dtype, required) and dht [N,H,K,V] (any
// float dtype, optional), and the output also holds the gradients with respect to the inputs:
// dq, dk, dv, dbeta (storage dtype) and dg, dh0 (accumulation dtype, when g, h0 are given).
// The shapes carry the head grouping: H value heads, a multiple of the Hqk q/k heads (equal
// without grouping); dq and dk have Hqk heads like q and k.
#pragma once

#include <gdp/forward.hpp>
#include <gdp/safetensors.hpp>

#include "common/gdp_asserts.hpp"
#include "common/problem_shape.hpp"

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace gdp::io {

/// A checked forward input file: its header, storage dtype, problem shape and options.
struct ForwardInputFile {
  SafetensorsHeader header;
  DType storage = DType::F32;     ///< dtype of q, k, v, beta (and of the output o)
  detail::ProblemShape shape;     ///< the whole problem
  ForwardOptions options;         ///< from the metadata; output_final_state is set
};

/// The cu_seqlens tensor when the file has one (checked: rank 1, dtype I32 or I64), else nullptr.
const TensorEntry* find_cu_seqlens(const SafetensorsHeader& header);

/// Checks that `header` (with the values of its cu_seqlens tensor, empty when it has none)
/// describes a valid forward problem: required tensors present, ranks, dtypes, shapes that
/// agree with each other, options. \throws gdp::InvalidArgument naming the file.
ForwardInputFile describe_forward_input(const SafetensorsHeader& header,
                                        const std::vector<std::int64_t>& cu_seqlens);

/// Checks the backward's part of `input`'s file: do present with o's shape in the storage
/// dtype, dht (when present) with ht's shape in a float dtype.
/// \throws gdp::InvalidArgument naming the file.
void check_backward_input(const ForwardInputFile& input);

/// The options as file metadata (num_householder, scale, l2norm), scale resolved for K.
std::map<std::string, std::string> options_metadata(const ForwardOptions& options,
                                                    std::int64_t key_dim);

/// The tensors of the output file of `input`: o, ht, and with `backward` the gradients dq,
/// dk, dv, dbeta, then dg and dh0 when the input has g and h0.
std::vector<TensorSpec> forward_output_specs(const ForwardInputFile& input, bool backward = false);

/// The dtype holding a storage type's accumulation type: F64 for F64, F32 otherwise.
DType accumulation_dtype(DType storage);

/// The axis of a forward tensor that indexes heads: the tensor is read as
/// [rows, heads, inner] with rows the product of the extents before it (tokens or expanded
/// positions for q, k, v, beta, g, o and their gradients; sequences for h0, ht, dh0, dht) and
/// inner the product after it.
int head_axis(const std::string& tensor_name);

/// Whether a forward tensor has one row per sequence (h0, ht and their gradients), rather than
/// one per token or expanded position.
bool is_state_tensor(const std::string& tensor_name);

/// Whether a forward tensor's heads are q/k heads (q, k, dq, dk) rather than value heads.
bool has_query_key_heads(const std::string& tensor_name);

/// Whether a forward tensor has one row per expanded position (k, v, beta and their gradients).
bool is_substep_tensor(const std::string& tensor_name);

/// Calls body(Scalar()) with the gdp storage type of a storage dtype.
template <class Body>
decltype(auto) with_storage_type(DType storage, Body&& body) {
  switch (storage) {
    case DType::F64: return body(double());
    case DType::F32: return body(float());
    case DType::BF16: return body(bfloat16());
    case DType::F16: return body(float16());
    default: break;
  }
  GDP_EXPECT(false, "dtype", "expected a storage dtype (F64, F32, BF16, F16), got ",
             dtype_name(storage));
}

}  // namespace gdp::io
