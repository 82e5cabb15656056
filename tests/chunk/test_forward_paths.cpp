// SPDX-License-Identifier: Apache-2.0
// Both walks over the chunks, forced, against the float64 naive recurrence on every execution
// space and storage type (on Kokkos::Cuda with 16-bit storage: the fused kernel's sequential
// walk and its staged chunk-parallel one, which also give the same bits); and the algebra of
// segment maps that the chunk-parallel walk and the multi-rank code share.
#include <gdp/forward.hpp>

#include "chunk/forward_plan.hpp"
#include "chunk/fused_forward.hpp"
#include "chunk/segment_map.hpp"
#include "common/expect_rejected.hpp"
#include "common/forward_cases.hpp"
#include "common/same_bits.hpp"
#include "common/test_dispatch.hpp"
#include "reference/error_norms.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace gdp::test {
namespace {

struct PathCase {
  ForwardCase base;  ///< its name keys the cached reference
  ForwardAlgorithm algorithm;
  int chunks_per_segment;
  std::string name;
};

std::ostream& operator<<(std::ostream& out, const PathCase& c) { return out << c.name; }

std::vector<PathCase> path_cases() {
  std::vector<ForwardCase> bases = edge_cases();
  for (bool gated : {true, false}) {
    bases.push_back(fla_case(2, 200, 3, 60, 0.1, 1, false, gated));
    bases.push_back(fla_case(2, 1024, 4, 64, 1, 2, true, gated));
    bases.push_back(fla_case(1, 2000, 2, 128, 0, 2, false, gated, {0, 100, 300, 800, 1500, 2000}));
  }
  bases.push_back(fla_case(1, 1000, 2, 100, 0, 2, false, true, {0, 63, 100, 500, 1000}));
  bases.push_back(fla_case(1, 700, 2, 128, 0, 3, false, true));
  for (const ForwardCase& grouped : grouped_cases())
    if (grouped.spec.qk_heads != grouped.spec.heads) bases.push_back(grouped);
  std::vector<PathCase> cases;
  for (const ForwardCase& base : bases) {
    cases.push_back({base, ForwardAlgorithm::sequential, 0, base.name + "_sequential"});
    cases.push_back({base, ForwardAlgorithm::chunk_parallel, 0, base.name + "_chunk_parallel"});
    cases.push_back({base, ForwardAlgorithm::chunk_parallel, 1, base.name + "_one_chunk_segments"});
  }
  return cases;
}

class ForcedWalk : public ::testing::TestWithParam<PathCase> {};

TEST_P(ForcedWalk, MatchesNaiveRecurrence) {
  const PathCase& c = GetParam();
  const auto& expected = naive_reference(c.base);
  ForwardOptions options = c.base.options;
  options.algorithm = c.algorithm;
  options.chunks_per_segment = c.chunks_per_segment;
  for_each_space([&](auto space) {
    using ExecSpace = decltype(space);
    for_each_storage([&](auto storage, double tolerance) {
      using Scalar = decltype(storage);
      const auto owned = make_random_problem<Scalar, typename ExecSpace::memory_space>(c.base.spec);
      const auto result = chunk_gated_delta_product<ExecSpace, Scalar>(owned.inputs(), options);
      EXPECT_LE(reference::relative_error(result.o, expected.o), tolerance) << "o";
      if (options.output_final_state)
        EXPECT_LE(reference::relative_error(result.final_state, expected.final_state), tolerance)
            << "final state";
    });
  });
}

INSTANTIATE_TEST_SUITE_P(Walks, ForcedWalk, ::testing::ValuesIn(path_cases()),
                         [](const ::testing::TestParamInfo<PathCase>& info) { return info.param.name; });

#ifdef KOKKOS_ENABLE_CUDA
/// Expects o of the chunk-parallel forward with one segment a sequence to be the sequential
/// forward's to the bit, on Kokkos::Cuda with 16-bit storage `Scalar`.
template <class Scalar>
void expect_staged_outputs_equal_fused(const PathCase& c) {
  static_assert(detail::FusedForward<Kokkos::Cuda, Scalar>::available, "a fused storage type");
  const auto owned = make_random_problem<Scalar, Kokkos::CudaSpace>(c.base.spec);
  ForwardOptions options = c.base.options;
  options.algorithm = ForwardAlgorithm::sequential;
  const auto sequential = chunk_gated_delta_product<Kokkos::Cuda, Scalar>(owned.inputs(), options);
  options.algorithm = ForwardAlgorithm::chunk_parallel;
  options.chunks_per_segment = 1 << 30;
  const auto staged = chunk_gated_delta_product<Kokkos::Cuda, Scalar>(owned.inputs(), options);
  expect_same_bits("o", sequential.o, staged.o);
}
#endif

/// On Kokkos::Cuda with 16-bit storage the chunk-parallel walks read every chunk's stage-1
/// tiles from a launch of their own (fused::Stage::prepare, then Stage::staged), while the
/// sequential walk computes them on the way (Stage::fused) where one block takes all of a
/// head's columns (V <= 64 here: a few walks get blocks of 64), with the same products in the
/// same order: with one segment a sequence, whose outputs walk starts from h0 itself, o must
/// come out the same to the bit. (ht differs: the scan computes it as M h0 + R.) For larger V
/// both walks are staged, and this compares the sequential walk with the scan's.
TEST_P(ForcedWalk, StagedOutputsAreTheFusedWalksBitForBit) {
  const PathCase& c = GetParam();
  if (c.algorithm != ForwardAlgorithm::sequential) GTEST_SKIP() << "one comparison a base";
#ifdef KOKKOS_ENABLE_CUDA
  if (!space_selected(Kokkos::Cuda::name())) GTEST_SKIP() << "Kokkos::Cuda not selected";
  {
    SCOPED_TRACE("storage bfloat16");
    expect_staged_outputs_equal_fused<bfloat16>(c);
  }
  {
    SCOPED_TRACE("storage float16");
    expect_staged_outputs_equal_fused<float16>(c);
  }
#else
  GTEST_SKIP() << "the fused kernel needs Kokkos::Cuda";
#endif
}

/// Segment maps applied, composed and multiplied row-wise, in one team, in Real.
template <class ExecSpace, class Real>
struct ComposeThenApply {
  using Matrix = Kokkos::View<Real**, Kokkos::LayoutRight, typename ExecSpace::memory_space>;
  using member_type = typename Kokkos::TeamPolicy<ExecSpace>::member_type;
  Matrix M1, R1, M2, R2, S, M, R, once, twice, composed, once_by_rows, linear_by_rows, stage,
      unstaged;

  KOKKOS_INLINE_FUNCTION void operator()(const member_type& member) const {
    detail::team::apply_segment_map<ExecSpace>(member, M1, R1, S, once);
    detail::team::apply_segment_map<ExecSpace>(member, M2, R2, once, twice);
    detail::team::compose_segment_maps<ExecSpace>(member, M2, R2, M1, R1, M, R);
    detail::team::apply_segment_map<ExecSpace>(member, M, R, S, composed);
    // The GPU spaces' map product, whatever this space's apply_segment_map uses: M staged
    // through a tile, then read where it is.
    detail::team::affine_map_by_rows(member, M1, &R1, S, once_by_rows, stage);
    detail::team::affine_map_by_rows(member, M1, static_cast<const Matrix*>(nullptr), S,
                                     linear_by_rows, unstaged);
  }
};

/// Composing two segment maps and applying the result equals applying them one after the
/// other, and the row-wise map product (the GPU spaces') equals M S + R and M S computed here,
/// in double and in float. K = 40 takes M in two tiles of columns, the second partial
/// (team::map_tile_depth). V = 19 is not a multiple of the columns a thread accumulates
/// (team::map_row_columns); V = 24 is, and its float rows move in 16-byte words
/// (team::rows_of_words).
class SegmentMaps : public ::testing::TestWithParam<int> {};

TEST_P(SegmentMaps, ComposeThenApplyEqualsApplyTwice) {
  constexpr int K = 40;
  const int V = GetParam();
  const auto check = [&](auto space, auto real, double tolerance) {
    using ExecSpace = decltype(space);
    using Real = decltype(real);
    using Work = ComposeThenApply<ExecSpace, Real>;
    using Matrix = typename Work::Matrix;
    std::mt19937_64 engine(5);
    std::normal_distribution<double> normal(0.0, 1.0);
    const auto random_matrix = [&](const char* label, int rows, int columns) {
      Matrix m(std::string(label), rows, columns);
      const auto host = Kokkos::create_mirror_view(m);
      for (int i = 0; i < rows; ++i)
        for (int j = 0; j < columns; ++j) host(i, j) = Real(normal(engine));
      Kokkos::deep_copy(m, host);
      return m;
    };
    Work work{random_matrix("M1", K, K), random_matrix("R1", K, V), random_matrix("M2", K, K),
              random_matrix("R2", K, V), random_matrix("S", K, V),  Matrix("M", K, K),
              Matrix("R", K, V),         Matrix("once", K, V),      Matrix("twice", K, V),
              Matrix("composed", K, V),  Matrix("once_by_rows", K, V),
              Matrix("linear_by_rows", K, V), Matrix("stage", K, detail::team::map_tile_depth + 1)};
    Kokkos::parallel_for(Kokkos::TeamPolicy<ExecSpace>(1, Kokkos::AUTO), work);
    const auto on_host = [](const Matrix& m) {
      return Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), m);
    };
    const auto twice = on_host(work.twice), composed = on_host(work.composed);
    const auto M1 = on_host(work.M1), R1 = on_host(work.R1), S = on_host(work.S);
    const auto once_by_rows = on_host(work.once_by_rows);
    const auto linear_by_rows = on_host(work.linear_by_rows);
    for (int d = 0; d < K; ++d)
      for (int e = 0; e < V; ++e) {
        EXPECT_NEAR(composed(d, e), twice(d, e), tolerance * K);
        double product = 0;
        for (int j = 0; j < K; ++j) product += double(M1(d, j)) * double(S(j, e));
        EXPECT_NEAR(linear_by_rows(d, e), product, tolerance) << d << "," << e;
        EXPECT_NEAR(once_by_rows(d, e), product + R1(d, e), tolerance) << d << "," << e;
      }
  };
  for_each_space([&](auto space) {
    {
      SCOPED_TRACE("double");
      check(space, double(), 1e-12);
    }
    {
      SCOPED_TRACE("float");
      check(space, float(), 1e-4);
    }
  });
}

INSTANTIATE_TEST_SUITE_P(Columns, SegmentMaps, ::testing::Values(19, 24),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return "V" + std::to_string(info.param);
                         });

/// A chunk-parallel plan whose segment maps [segments, H, K, K + V] would hold more elements
/// than one view can is refused, naming the view and its size, before the walks allocate
/// anything (Kokkos 3.x would wrap the view's size); at the limit it passes, and a sequential
/// plan keeps no maps. Sizes past 2^64 saturate rather than wrap to a small count.
TEST(ForwardPlan, SegmentMapsBeyondOneViewAreRefused) {
  detail::ChunkLayout layout;  // one sequence of 10 chunks
  layout.chunks.resize(10);
  layout.sequence_first_chunk = {0, 10};
  const auto segments = [&](const detail::ForwardPlan& plan) {
    return std::int64_t(detail::walk_segments(layout, plan).segments.size());
  };
  const detail::ForwardPlan plan{true, 1};  // 10 segments: 10 x 2 heads x 4 x (4 + 4) = 640
  ASSERT_EQ(segments(plan), 10);
  EXPECT_NO_THROW(detail::expect_segment_maps_fit(plan, 10, 2, 4, 4, 640));
  expect_rejected([&] { detail::expect_segment_maps_fit(plan, 10, 2, 4, 4, 639); },
                  "problem size",
                  {"at most 639 elements", "got 640 in gdp::segment_maps", "10 segments of up to 1 chunks",
                   "chunks_per_segment"});
  const detail::ForwardPlan halves{true, 5};  // 2 segments: 128 elements
  ASSERT_EQ(segments(halves), 2);
  EXPECT_NO_THROW(detail::expect_segment_maps_fit(halves, 2, 2, 4, 4, 128));
  const detail::ForwardPlan sequential;
  EXPECT_NO_THROW(detail::expect_segment_maps_fit(sequential, segments(sequential), 2, 4, 4, 0));
  const std::int64_t huge = std::int64_t(1) << 31;
  expect_rejected(
      [&] { detail::expect_segment_maps_fit(plan, 10, huge, huge, huge, 1000); },
      "problem size", {"got 18446744073709551615 in gdp::segment_maps"});
}

}  // namespace
}  // namespace gdp::test
