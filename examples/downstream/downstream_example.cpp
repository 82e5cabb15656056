// SPDX-License-Identifier: Apache-2.0
// A Kokkos program of its own that calls gdp the way a downstream code does: it allocates
// Views in its default execution space, fills them with random inputs, calls
// gdp::chunk_gated_delta_product and checks o and ht against a plain host recurrence written
// here from the formula in gdp/forward.hpp. Built twice by scripts/check_packaging.sh: against
// an installed gdp (examples/downstream, find_package) and with gdp's source tree added as a
// subdirectory (examples/as_subdirectory).
#include <gdp/config.hpp>
#include <gdp/forward.hpp>

#include <Kokkos_Core.hpp>
#include <Kokkos_Random.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

namespace {

using ExecSpace = Kokkos::DefaultExecutionSpace;
using MemorySpace = ExecSpace::memory_space;
// gdp takes row-major tensors; LayoutRight must be spelled out because it is not the default
// layout of every memory space (CudaSpace defaults to LayoutLeft).
template <class T>
using View = Kokkos::View<T, Kokkos::LayoutRight, MemorySpace>;

constexpr int B = 2, T = 100, H = 3, K = 16, V = 24, n = 2;

// The float storage tolerance of gdp's own tests (relative Frobenius error).
constexpr double tolerance = 1e-4;

double relative_error(const std::vector<double>& reference, const std::vector<double>& actual) {
  double difference = 0, norm = 0;
  for (std::size_t i = 0; i < reference.size(); ++i) {
    difference += (actual[i] - reference[i]) * (actual[i] - reference[i]);
    norm += reference[i] * reference[i];
  }
  return std::sqrt(difference / norm);
}

template <class HostView>
std::vector<double> to_vector(const HostView& view) {
  std::vector<double> values(view.span());
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = view.data()[i];
  return values;
}

// x / sqrt(|x|^2 + 1e-6), the normalisation of ForwardOptions::use_qk_l2norm.
std::vector<double> l2_normalized(const float* x, int size) {
  double squares = 0;
  for (int i = 0; i < size; ++i) squares += double(x[i]) * x[i];
  std::vector<double> y(size);
  for (int i = 0; i < size; ++i) y[i] = x[i] / std::sqrt(squares + 1e-6);
  return y;
}

}  // namespace

int main(int argc, char* argv[]) {
  Kokkos::ScopeGuard kokkos(argc, argv);
  if (KOKKOS_VERSION != GDP_KOKKOS_VERSION) {
    std::printf("downstream example: compiled against Kokkos %d, but gdp %s was built against %s\n",
                KOKKOS_VERSION, GDP_VERSION_STRING, GDP_KOKKOS_VERSION_STRING);
    return 1;
  }

  View<float****> q("q", B, T, H, K), k("k", B, T * n, H, K), v("v", B, T * n, H, V);
  View<float***> beta("beta", B, T * n, H), g("g", B, T, H);
  View<float****> h0("h0", B, H, K, V);
  Kokkos::Random_XorShift64_Pool<ExecSpace> pool(20240607);
  Kokkos::fill_random(q, pool, -1.0f, 1.0f);
  Kokkos::fill_random(k, pool, -1.0f, 1.0f);
  Kokkos::fill_random(v, pool, -1.0f, 1.0f);
  Kokkos::fill_random(beta, pool, 0.0f, 1.0f);
  Kokkos::fill_random(g, pool, -0.2f, 0.0f);
  Kokkos::fill_random(h0, pool, -0.1f, 0.1f);

  gdp::ForwardInputs<float, MemorySpace> inputs;
  inputs.q = q;
  inputs.k = k;
  inputs.v = v;
  inputs.beta = beta;
  inputs.g = g;
  inputs.initial_state = h0;
  gdp::ForwardOptions options;
  options.num_householder = n;
  options.output_final_state = true;
  // Unit-length keys keep every Householder factor I - beta k k^T a contraction for beta in
  // [0, 1], so random inputs give a bounded state.
  options.use_qk_l2norm = true;
  const auto result = gdp::chunk_gated_delta_product<ExecSpace>(inputs, options);
  ExecSpace().fence();

  const auto o = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), result.o);
  const auto ht = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), result.final_state);
  const auto hq = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), q);
  const auto hk = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), k);
  const auto hv = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
  const auto hbeta = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), beta);
  const auto hg = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), g);
  const auto hh0 = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), h0);

  // The recurrence of gdp/forward.hpp in double, one (sequence, head) at a time.
  const double scale = 1.0 / std::sqrt(double(K));
  std::vector<double> o_reference(o.span()), ht_reference(ht.span());
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < H; ++h) {
      std::vector<double> S(K * V);
      for (int i = 0; i < K; ++i)
        for (int j = 0; j < V; ++j) S[i * V + j] = hh0(b, h, i, j);
      for (int t = 0; t < T; ++t) {
        const double decay = std::exp(double(hg(b, t, h)));
        for (double& s : S) s *= decay;
        for (int sub = 0; sub < n; ++sub) {
          const int p = t * n + sub;
          const std::vector<double> kp = l2_normalized(&hk(b, p, h, 0), K);
          for (int j = 0; j < V; ++j) {
            double kS = 0;  // (S^T k)_j
            for (int i = 0; i < K; ++i) kS += S[i * V + j] * kp[i];
            const double update = hbeta(b, p, h) * (hv(b, p, h, j) - kS);
            for (int i = 0; i < K; ++i) S[i * V + j] += kp[i] * update;
          }
        }
        const std::vector<double> qt = l2_normalized(&hq(b, t, h, 0), K);
        for (int j = 0; j < V; ++j) {
          double read = 0;
          for (int i = 0; i < K; ++i) read += S[i * V + j] * qt[i];
          o_reference[((std::size_t(b) * T + t) * H + h) * V + j] = scale * read;
        }
      }
      for (int i = 0; i < K * V; ++i) ht_reference[(std::size_t(b) * H + h) * K * V + i] = S[i];
    }
  }

  const std::vector<double> o_values = to_vector(o), ht_values = to_vector(ht);
  double checksum = 0;
  for (double x : o_values) checksum += x;
  const double o_error = relative_error(o_reference, o_values);
  const double ht_error = relative_error(ht_reference, ht_values);
  const bool ok = o_error <= tolerance && ht_error <= tolerance;
  std::printf("downstream example: gdp %s on %s (Kokkos %s)\n", GDP_VERSION_STRING,
              ExecSpace::name(), GDP_KOKKOS_VERSION_STRING);
  std::printf("downstream example: o[%d,%d,%d,%d] = checksum %.6f, relative error o %.2e ht %.2e "
              "(tolerance %.0e) %s\n",
              B, T, H, V, checksum, o_error, ht_error, tolerance, ok ? "OK" : "FAILED");
  return ok ? 0 : 1;
}
