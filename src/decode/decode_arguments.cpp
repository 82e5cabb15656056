// SPDX-License-Identifier: Apache-2.0
#include "decode_arguments.hpp"

#include "common/gdp_asserts.hpp"

#include <climits>
#include <cmath>

namespace gdp::detail {

DecodeShape check_decode_arguments(const TensorExtents& q, const TensorExtents& k,
                                   const TensorExtents& v, const TensorExtents& beta,
                                   const TensorExtents& g, const TensorExtents& state,
                                   const TensorExtents& output, const DecodeOptions& options) {
  GDP_EXPECT(options.num_householder >= 1, "num_householder", "expected >= 1, got ",
             options.num_householder);
  GDP_EXPECT(options.value_block >= 0, "value_block", "expected >= 0, got ", options.value_block);
  GDP_EXPECT(std::isfinite(options.scale), "scale", "expected a finite value, got ",
             options.scale);
  for (const TensorExtents* required : {&q, &k, &v, &beta, &state, &output})
    GDP_EXPECT(required->present, required->name, "required tensor is missing (null view)");

  const std::int64_t N = q.dims[0], Hqk = q.dims[1], K = q.dims[2];
  GDP_EXPECT(N >= 1 && Hqk >= 1 && K >= 1 && Hqk <= INT_MAX && K <= INT_MAX, q.name,
             "expected shape [N, Hqk, K] with every extent >= 1, got ", format_shape(q.dims));
  const std::int64_t n = options.num_householder, Hv = v.dims[2], V = v.dims[3];
  GDP_EXPECT(v.dims[0] == N && v.dims[1] == n && Hv >= 1 && V >= 1 && Hv <= INT_MAX &&
                 V <= INT_MAX,
             v.name, "expected shape [N, n, Hv, V] = [", N, ", ", n, ", Hv >= 1, V >= 1], got ",
             format_shape(v.dims));
  GDP_EXPECT(Hv % Hqk == 0, v.name, "expected Hv (extent 2) a multiple of Hqk = ", Hqk,
             " (the heads of q and k), got Hv = ", Hv);
  expect_shape(k, {N, n, Hqk, K}, "[N, n, Hqk, K]");
  expect_shape(beta, {N, n, Hv}, "[N, n, Hv]");
  if (g.present) expect_shape(g, {N, Hv}, "[N, Hv]");
  expect_shape(state, {N, Hv, K, V}, "[N, Hv, K, V]");
  expect_shape(output, {N, Hv, V}, "[N, Hv, V]");

  DecodeShape shape;
  shape.sequences = N;
  shape.num_householder = options.num_householder;
  shape.qk_heads = int(Hqk);
  shape.value_heads = int(Hv);
  shape.key_dim = int(K);
  shape.value_dim = int(V);
  shape.gated = g.present;
  return shape;
}

double resolved_scale(const DecodeOptions& options, std::int64_t key_dim) {
  return options.scale > 0 ? options.scale : 1.0 / std::sqrt(double(key_dim));
}

}  // namespace gdp::detail
