// SPDX-License-Identifier: Apache-2.0
// Sequence parallelism on however many ranks mpiexec starts (CTest runs 1, 2 and 3): the
// token axis cut into slices (a sequence's pieces on several ranks, varlen batches with one
// dominating sequence, equal-length batches), each rank computing its slice with the MPI
// driver, against the float64 naive recurrence of the whole problem within the forward's
// tolerances (double 1e-10, float 1e-4, 16-bit storage 1e-2), gated and ungated, n = 1..3,
// with h0, with grouped value heads; and the same through files (`gdp_app run
// --seq-parallel`). Not bitwise equal to the one-rank result: the pieces restart their chunks
// at the cuts and the entering state reaches the outputs through M and the read-out, so the
// sums associate differently. On the host spaces the continuing pieces take the fused walk
// with [M | R] (host_fused_walk.hpp), with chunk_parallel_walks the two-stage path.
#include "common/execution_spaces.hpp"
#include "common/forward_cases.hpp"
#include "common/test_dispatch.hpp"
#include "dist/sequence_parallel.hpp"
#include "io/forward_input_tensors.hpp"
#include "reference/naive_recurrence.hpp"

#include <gdp/safetensors.hpp>

#include "mpi_world.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <numeric>

namespace gdp::test {
namespace {

TEST(SequenceParallelPartition, SlicesCoverTheTokensAndOwnEveryStateOnce) {
  const std::vector<std::vector<std::int64_t>> offset_cases = {
      {0, 1000}, {0, 7, 7, 400, 430, 450, 450}, {0, 0, 3, 3}, {0, 5, 10, 15}};
  for (const auto& offsets : offset_cases)
    for (int count = 1; count <= 6; ++count) {
      detail::ProblemShape shape;
      shape.batch = 1;
      shape.tokens_per_row = offsets.back();
      shape.heads = 2;
      shape.key_dim = shape.value_dim = 16;
      shape.varlen = true;
      shape.token_offsets = offsets;
      const double ratio = dist::continuing_cost(shape, 64, count % 2 == 0);
      const auto slices = dist::partition_slices(shape, count, ratio);
      ASSERT_EQ(int(slices.size()), count);
      std::vector<int> h0_reads(offsets.size() - 1), ht_writes(offsets.size() - 1);
      std::int64_t next = 0;
      for (const dist::SlicePlan& s : slices) {
        EXPECT_EQ(s.token_begin, next);
        next = s.token_end;
        for (std::int64_t q = s.start_begin; q < s.start_end; ++q) ++h0_reads[std::size_t(q)];
        for (std::int64_t q = s.final_begin; q < s.final_end; ++q) ++ht_writes[std::size_t(q)];
        if (s.continued >= 0) EXPECT_LT(offsets[std::size_t(s.continued)], s.token_begin);
        EXPECT_LE(s.continued_end, s.token_end);
      }
      EXPECT_EQ(next, offsets.back());
      EXPECT_EQ(h0_reads, std::vector<int>(offsets.size() - 1, 1)) << count << " ranks";
      EXPECT_EQ(ht_writes, std::vector<int>(offsets.size() - 1, 1)) << count << " ranks";
    }
  // One sequence on two ranks: the first slice is the cheaper one, so it is longer, by the
  // cost ratio.
  detail::ProblemShape one;
  one.batch = 1;
  one.tokens_per_row = 100000;
  one.heads = 4;
  one.key_dim = one.value_dim = 64;
  one.num_householder = 2;
  one.token_offsets = {0, 100000};
  // The flop counts of docs/PERFORMANCE.md, without the finish (after the scan); on the host
  // spaces stage 1 weighted by 3.
  EXPECT_NEAR(dist::continuing_cost(one, 64, false), 69632.0 / 45056.0, 1e-12);
  const double ratio = dist::continuing_cost(one, 64, true);
  EXPECT_NEAR(ratio, 110592.0 / 86016.0, 1e-12);
  const auto two = dist::partition_slices(one, 2, ratio);
  EXPECT_NEAR(double(two[0].token_end), 100000 * ratio / (1 + ratio), 1.0);
}

struct Case {
  std::string name;
  RandomProblemSpec spec;
  ForwardOptions options;
};

Case make_case(const std::string& name, std::int64_t B, std::int64_t T, int n, bool gated,
               std::vector<std::int64_t> cu_seqlens = {}) {
  Case c{name, {}, {}};
  c.spec.batch = B;
  c.spec.tokens = T;
  c.spec.heads = 2;
  c.spec.key_dim = 32;
  c.spec.value_dim = 24;
  c.spec.num_householder = c.options.num_householder = n;
  c.spec.gated = gated;
  c.spec.initial_state = true;
  c.spec.cu_seqlens = std::move(cu_seqlens);
  c.spec.seed = std::hash<std::string>()(name);
  c.options.output_final_state = true;
  c.options.chunk_size = 32;
  return c;
}

/// Sums of squared differences and of squared references over all ranks: the relative
/// Frobenius error of the whole.
double global_relative_error(double difference, double norm) {
  double sums[2] = {difference, norm}, total[2] = {0, 0};
  MPI_Allreduce(sums, total, 2, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  return std::sqrt(total[0] / total[1]);
}

template <class T>
void accumulate(const T* actual, const double* expected, std::size_t count, double& difference,
                double& norm) {
  for (std::size_t i = 0; i < count; ++i) {
    const double x = double(widen(actual[i]));
    difference += std::isfinite(x) ? (x - expected[i]) * (x - expected[i]) : INFINITY;
    norm += expected[i] * expected[i];
  }
}

/// Every rank computes its slice with the driver on every space; the slices together must
/// give the naive recurrence's o and ht.
template <class Scalar>
void check_slices(const Case& c, double tolerance) {
  using Real = accumulator_t<Scalar>;
  const auto owned = make_random_problem<Scalar, Kokkos::HostSpace>(c.spec);
  const auto whole = owned.inputs();
  const detail::ProblemShape shape = detail::check_forward_inputs(whole, c.options);
  const auto exact = make_random_problem<double, Kokkos::HostSpace>(c.spec);
  const auto expected = reference::naive_recurrence(reference::make_reference_problem<double>(exact.inputs(), c.options));
  const auto slices =
      dist::partition_slices(shape, ranks(), dist::continuing_cost(shape, c.options.chunk_size, true));
  const dist::SlicePlan& s = slices[std::size_t(rank())];
  const std::int64_t H = shape.heads, K = shape.key_dim, V = shape.value_dim, n = shape.num_householder;
  const std::int64_t Hqk = shape.head_group() > 1 ? shape.qk_heads : H;  // q and k heads
  for_each_space([&](auto space) {
    using ExecSpace = decltype(space);
    std::vector<Scalar> o(std::size_t(s.tokens() * H * V));
    std::vector<Real> ht(std::size_t((s.final_end - s.final_begin) * H * K * V));
    dist::SliceHostInputs<Scalar> in;
    in.q = owned.q.data() + s.token_begin * Hqk * K;
    in.k = owned.k.data() + s.token_begin * n * Hqk * K;
    in.v = owned.v.data() + s.token_begin * n * H * V;
    in.beta = owned.beta.data() + s.token_begin * n * H;
    in.g = owned.g.data() ? owned.g.data() + s.token_begin * H : nullptr;
    in.h0 = owned.initial_state.data() + s.start_begin * H * K * V;
    dist::sequence_parallel_slice<ExecSpace, Scalar>(MPI_COMM_WORLD, shape, s, c.options, in, {o.data(), ht.data()});
    double o_difference = 0, o_norm = 0, ht_difference = 0, ht_norm = 0;
    accumulate(o.data(), expected.o.data() + s.token_begin * H * V, o.size(), o_difference, o_norm);
    accumulate(ht.data(), expected.final_state.data() + s.final_begin * H * K * V, ht.size(), ht_difference,
               ht_norm);
    EXPECT_LE(global_relative_error(o_difference, o_norm), tolerance) << "o";
    EXPECT_LE(global_relative_error(ht_difference, ht_norm), tolerance) << "ht";
  });
}

std::vector<Case> cases() {
  std::vector<Case> all;
  for (bool gated : {true, false})
    for (int n : {1, 2, 3})
      all.push_back(make_case(std::string(gated ? "gated" : "ungated") + "_n" + std::to_string(n), 1, 400, n, gated));
  // One sequence dominates, with short and empty ones around it.
  all.push_back(make_case("varlen_dominating", 1, 450, 2, true, {0, 7, 7, 400, 430, 450, 450}));
  all.push_back(make_case("equal_lengths_batch", 3, 130, 3, false));
  // Grouped value heads: 4 value heads sharing 2 q/k heads, with the continuing pieces.
  Case grouped = make_case("grouped_heads", 1, 400, 2, true);
  grouped.spec.heads = 4;
  grouped.spec.qk_heads = 2;
  all.push_back(grouped);
  // Every walk chunk-parallel (as on a GPU), continuing slices included.
  Case parallel = make_case("chunk_parallel_walks", 1, 400, 2, true);
  parallel.options.algorithm = ForwardAlgorithm::chunk_parallel;
  parallel.options.chunks_per_segment = 1;
  all.push_back(parallel);
  return all;
}

class SequenceParallel : public ::testing::TestWithParam<Case> {};

TEST_P(SequenceParallel, SlicesMatchNaiveRecurrence) {
  {
    SCOPED_TRACE("storage float64");
    check_slices<double>(GetParam(), forward_tolerances.float64);
  }
  {
    SCOPED_TRACE("storage float32");
    check_slices<float>(GetParam(), forward_tolerances.float32);
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, SequenceParallel, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

TEST(SequenceParallel, Bfloat16StorageVarlen) {
  check_slices<bfloat16>(make_case("bf16_varlen", 1, 300, 2, true, {0, 250, 260, 300}), forward_tolerances.bits16);
}

/// The file run: make-input's file in, `run --seq-parallel`'s file out, against the naive
/// recurrence.
TEST(SequenceParallel, FileRunMatchesNaiveRecurrence) {
  const Case c = make_case("file_varlen", 1, 300, 2, true, {0, 20, 280, 300});
  std::string directory = (std::filesystem::temp_directory_path() / "gdp-seqpar-XXXXXX").string();
  if (rank() == 0 && !::mkdtemp(directory.data())) directory.clear();
  MPI_Bcast(directory.data(), int(directory.size()), MPI_CHAR, 0, MPI_COMM_WORLD);
  const std::string input = directory + "/in.safetensors", output = directory + "/out.safetensors";
  const auto owned = make_random_problem<float, Kokkos::HostSpace>(c.spec);
  if (rank() == 0)
    io::write_safetensors(input, io::plan_safetensors(io::forward_input_tensors(owned.inputs()).specs,
                                                      io::options_metadata(c.options, c.spec.key_dim)),
                          io::forward_input_tensors(owned.inputs()).data);
  MPI_Barrier(MPI_COMM_WORLD);
  dist::RunConfig config;
  config.input = input;
  config.output = output;
  config.space = default_execution_space_name();
  config.chunk_size = c.options.chunk_size;
  const dist::RunResult result = dist::run_sequence_parallel_file(MPI_COMM_WORLD, config);
  double tokens = 0;
  for (const auto& report : result.ranks) tokens += report.token_heads;
  EXPECT_EQ(tokens, 300.0 * 2);
  if (rank() == 0) {
    const auto exact = make_random_problem<double, Kokkos::HostSpace>(c.spec);
    const auto expected =
        reference::naive_recurrence(reference::make_reference_problem<double>(exact.inputs(), c.options));
    const io::SafetensorsHeader header = io::read_safetensors_header(output);
    const auto check = [&](const char* name, const std::vector<double>& reference) {
      const std::vector<std::byte> bytes = io::read_tensor_bytes(header, *header.find(name));
      ASSERT_EQ(bytes.size(), reference.size() * sizeof(float)) << name;
      double difference = 0, norm = 0;
      accumulate(reinterpret_cast<const float*>(bytes.data()), reference.data(), reference.size(), difference, norm);
      EXPECT_LE(std::sqrt(difference / norm), forward_tolerances.float32) << name;
    };
    check("o", std::vector<double>(expected.o.data(), expected.o.data() + expected.o.size()));
    check("ht", std::vector<double>(expected.final_state.data(), expected.final_state.data() + expected.final_state.size()));
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank() == 0) std::filesystem::remove_all(directory);
}

}  // namespace
}  // namespace gdp::test
