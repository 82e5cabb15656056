// SPDX-License-Identifier: Apache-2.0
// The MPI layer on however many ranks mpiexec starts (CTest runs 1, 2 and 3): collective slab
// I/O, the distributed forward against one library call on the whole problem (bitwise), and
// the failure paths, where every rank must fail with the failing rank's message and no output
// file may be left.
#include "chunk/forward_impl.hpp"
#include "common/execution_spaces.hpp"
#include "common/random_problem.hpp"
#include "dist/collective_failure.hpp"
#include "dist/distributed_forward.hpp"
#include "dist/mpi_file.hpp"
#include "dist/output_commit.hpp"
#include "dist/whole_problem_options.hpp"
#include "dist/work_partition.hpp"
#include "io/forward_input_tensors.hpp"
#include "io/tensor_slab.hpp"

#include "mpi_world.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <limits>

namespace gdp::test {
namespace {

/// A directory that rank 0 creates and every rank uses; removed at the end.
class SharedDirectory {
 public:
  SharedDirectory() {
    std::string path = (std::filesystem::temp_directory_path() / "gdp-mpi-test-XXXXXX").string();
    if (rank() == 0 && !::mkdtemp(path.data())) path.clear();
    int length = int(path.size());
    MPI_Bcast(&length, 1, MPI_INT, 0, MPI_COMM_WORLD);
    path.resize(std::size_t(length));
    MPI_Bcast(path.data(), length, MPI_CHAR, 0, MPI_COMM_WORLD);
    path_ = path;
  }
  ~SharedDirectory() {
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank() == 0) std::filesystem::remove_all(path_);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  /// The names of the files in the directory (the same on every rank after a barrier).
  std::vector<std::string> files() const {
    MPI_Barrier(MPI_COMM_WORLD);
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(path_))
      names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  std::filesystem::path path_;
};

/// Rank 0 writes `tensors` with `metadata` to `path`; every rank returns when it is there.
void write_on_rank0(const std::string& path, const io::TensorsToWrite& tensors,
                    const std::map<std::string, std::string>& metadata) {
  if (rank() == 0) io::write_safetensors(path, io::plan_safetensors(tensors.specs, metadata), tensors.data);
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST(MpiFile, CollectiveSlabReadsAndWritesMatchPosix) {
  SharedDirectory dir;
  std::vector<float> values(20 * 3 * 5);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = float(i);
  const auto layout = io::plan_safetensors({{"x", io::DType::F32, {20, 3, 5}}}, {});
  write_on_rank0(dir.file("x.safetensors"), {{{"x", io::DType::F32, {20, 3, 5}}}, {values.data()}}, {});
  // Rank r reads heads [r % 3, 3) of rows [2r, 2r + 5): different, overlapping, or none.
  std::vector<io::ByteRun> runs;
  const std::int64_t first = 2 * rank();
  if (first < 20)
    io::append_slab_runs(layout.at("x"), 1, {first, std::min<std::int64_t>(first + 5, 20), rank() % 3, 3}, runs);
  std::uint64_t bytes = 0;
  for (const auto& run : runs) bytes += run.length;
  std::vector<float> collective(bytes / 4), posix(bytes / 4);
  {
    dist::MpiFile file(MPI_COMM_WORLD, dir.file("x.safetensors"), dist::MpiFile::Mode::read);
    file.read_runs(runs, collective.data());
  }
  io::read_byte_runs(dir.file("x.safetensors"), runs, posix.data());
  EXPECT_EQ(collective, posix);

  // Every rank writes its rows of a partition of x; the file must equal the serial one.
  const std::int64_t rows_each = (20 + ranks() - 1) / ranks();
  const std::int64_t begin = std::min<std::int64_t>(20, rank() * rows_each);
  const std::int64_t end = std::min<std::int64_t>(20, begin + rows_each);
  dist::PackedSlabs mine;
  io::append_slab_runs(layout.at("x"), 1, {begin, end, 0, 3}, mine.runs);
  dist::write_output_file(MPI_COMM_WORLD, dir.file("y.safetensors"), layout,
                          {{&mine, values.data() + begin * 15}});
  if (rank() == 0) {
    std::vector<float> written(values.size());
    io::read_byte_runs(dir.file("y.safetensors"), {{layout.at("x").begin, values.size() * 4}}, written.data());
    EXPECT_EQ(written, values);
  }
  EXPECT_EQ(dir.files(), (std::vector<std::string>{"x.safetensors", "y.safetensors"}));
}

TEST(CollectiveFailure, EveryRankGetsTheFailingRanksMessage) {
  const int failing = ranks() - 1;
  try {
    dist::run_collectively(MPI_COMM_WORLD, [&] {
      if (rank() == failing) throw std::runtime_error("disk on fire on rank " + std::to_string(failing));
    });
    ADD_FAILURE() << "no rank threw";
  } catch (const dist::CollectiveFailure& e) {
    EXPECT_EQ(e.failed_rank(), failing);
    EXPECT_EQ(e.message(), "disk on fire on rank " + std::to_string(failing));
  }
  EXPECT_NO_THROW(dist::run_collectively(MPI_COMM_WORLD, [] {}));
}

struct Problem {
  RandomProblemSpec spec;
  ForwardOptions options;
};

/// The inputs of `owned` (host views) copied into the memory space of `ExecSpace`.
template <class ExecSpace, class Scalar>
ForwardInputs<Scalar, typename ExecSpace::memory_space> on_space(
    const OwnedInputs<Scalar, Kokkos::HostSpace>& owned) {
  using memory_space = typename ExecSpace::memory_space;
  const auto copy = [](const auto& view) {
    return Kokkos::create_mirror_view_and_copy(memory_space(), view);
  };
  ForwardInputs<Scalar, memory_space> in;
  in.q = copy(owned.q);
  in.k = copy(owned.k);
  in.v = copy(owned.v);
  in.beta = copy(owned.beta);
  if (owned.g.data()) in.g = copy(owned.g);
  if (owned.initial_state.data()) in.initial_state = copy(owned.initial_state);
  if (owned.cu_seqlens.data()) in.cu_seqlens = copy(owned.cu_seqlens);
  return in;
}

/// Writes the problem as `make-input` does (with do and dht for the backward), runs it on
/// every rank on each execution space into an output file, and compares the outputs with one
/// library call on the whole problem on that space, with the options gdp_app runs every block
/// with, bitwise.
template <class Scalar>
void check_against_one_call(const Problem& problem, bool backward = false) {
  SharedDirectory dir;
  const auto owned = make_random_problem<Scalar, Kokkos::HostSpace>(problem.spec);
  const auto upstream = make_random_output_gradients<Scalar, Kokkos::HostSpace>(problem.spec, true);
  io::TensorsToWrite tensors = io::forward_input_tensors(owned.inputs());
  if (backward) {
    tensors.add("do", io::dtype_of<Scalar>(), upstream.o);
    tensors.add("dht", io::accumulation_dtype(io::dtype_of<Scalar>()), upstream.final_state);
  }
  write_on_rank0(dir.file("in.safetensors"), tensors,
                 io::options_metadata(problem.options, problem.spec.key_dim));
  std::size_t outputs = 0;
  for (const std::string& space_name : execution_space_names()) {
    SCOPED_TRACE("space " + space_name);
    dist::RunConfig config;
    config.input = dir.file("in.safetensors");
    config.output = dir.file(space_name + ".safetensors");
    config.space = space_name;
    config.backward = backward;
    const dist::RunResult result = dist::run_forward_file(MPI_COMM_WORLD, config);
    ++outputs;
    ASSERT_EQ(int(result.ranks.size()), ranks());
    double token_heads = 0;
    for (const auto& report : result.ranks) token_heads += report.token_heads;
    EXPECT_EQ(token_heads, double(problem.spec.tokens * problem.spec.batch * problem.spec.heads));
    if (rank() != 0) continue;
    ForwardOptions options = problem.options;
    options.output_final_state = true;
    with_execution_space(space_name, [&](auto space) {
      using Space = decltype(space);
      const auto inputs = on_space<Space>(owned);
      const detail::ProblemShape shape = detail::check_forward_inputs(inputs, options);
      options = dist::whole_problem_options<Space, Scalar>(shape, options);
      const io::SafetensorsHeader header = io::read_safetensors_header(config.output);
      const auto expect_bytes = [&](const char* name, const auto& view) {
        SCOPED_TRACE(name);
        const auto host = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), view);
        const io::TensorEntry* entry = header.find(name);
        ASSERT_NE(entry, nullptr);
        const std::vector<std::byte> bytes = io::read_tensor_bytes(header, *entry);
        ASSERT_EQ(bytes.size(), host.span() * sizeof(*host.data()));
        EXPECT_EQ(std::memcmp(bytes.data(), host.data(), bytes.size()), 0) << "not bitwise identical";
      };
      // With the backward, run takes a training step: the forward that saves for it.
      SavedForward<Scalar, typename Space::memory_space> saved;
      const auto whole =
          backward ? chunk_gated_delta_product_for_backward<Space, Scalar>(inputs, options, saved)
                   : chunk_gated_delta_product<Space, Scalar>(inputs, options);
      expect_bytes("o", whole.o);
      expect_bytes("ht", whole.final_state);
      EXPECT_EQ(header.metadata.at("num_householder"), std::to_string(problem.options.num_householder));
      if (backward) {
        OutputGradients<Scalar, typename Space::memory_space> gradients;
        gradients.o = Kokkos::create_mirror_view_and_copy(typename Space::memory_space(), upstream.o);
        gradients.final_state =
            Kokkos::create_mirror_view_and_copy(typename Space::memory_space(), upstream.final_state);
        const auto grads = chunk_gated_delta_product_backward<Space, Scalar>(inputs, gradients, saved);
        expect_bytes("dq", grads.dq);
        expect_bytes("dk", grads.dk);
        expect_bytes("dv", grads.dv);
        expect_bytes("dbeta", grads.dbeta);
        if (problem.spec.gated) expect_bytes("dg", grads.dg);
        if (problem.spec.initial_state) expect_bytes("dh0", grads.dh0);
        EXPECT_EQ(header.tensors.size(), 6u + problem.spec.gated + problem.spec.initial_state);
      }
    });
  }
  EXPECT_EQ(dir.files().size(), 1 + outputs) << "an input and one output a space";
}

Problem equal_lengths() {
  Problem p;
  p.spec.batch = 3;
  p.spec.tokens = 90;
  p.spec.heads = 2;
  p.spec.key_dim = 16;
  p.spec.value_dim = 24;
  p.spec.num_householder = 2;
  p.spec.initial_state = true;
  p.options.num_householder = 2;
  return p;
}

TEST(DistributedForward, EqualLengthsFloat32) { check_against_one_call<float>(equal_lengths()); }

TEST(DistributedForward, VariableLengthsBfloat16) {
  Problem p = equal_lengths();
  p.spec.batch = 1;
  p.spec.tokens = 200;
  p.spec.heads = 3;
  p.spec.num_householder = p.options.num_householder = 3;
  p.spec.cu_seqlens = {0, 120, 120, 150, 200};
  check_against_one_call<bfloat16>(p);
}

TEST(DistributedForward, BackwardEqualLengthsFloat32) { check_against_one_call<float>(equal_lengths(), true); }

TEST(DistributedForward, BackwardVariableLengthsFloat64) {
  Problem p = equal_lengths();
  p.spec.batch = 1;
  p.spec.tokens = 160;
  p.spec.heads = 3;
  p.spec.cu_seqlens = {0, 10, 10, 100, 160};
  check_against_one_call<double>(p, true);
}

TEST(DistributedForward, BackwardGroupedValueHeadsFloat32) {
  Problem p = equal_lengths();
  p.spec.batch = 1;
  p.spec.tokens = 160;
  p.spec.heads = 4;
  p.spec.qk_heads = 2;
  p.spec.cu_seqlens = {0, 10, 10, 100, 160};
  check_against_one_call<float>(p, true);
}

TEST(DistributedForward, Float64WithL2NormUngated) {
  Problem p = equal_lengths();
  p.spec.gated = false;
  p.spec.raw_keys = true;
  p.options.use_qk_l2norm = true;
  p.options.scale = 0.3;
  check_against_one_call<double>(p);
}

/// Runs `input` and expects every rank to fail with rank `failing`'s message containing
/// `message`, leaving only the files `left`.
void expect_failed_run(const SharedDirectory& dir, const std::string& input, const std::string& output,
                       int failing, const std::string& message, const std::vector<std::string>& left,
                       bool check_outputs = false) {
  dist::RunConfig config;
  config.input = input;
  config.output = output;
  config.space = "serial";
  config.check_outputs = check_outputs;
  try {
    dist::run_forward_file(MPI_COMM_WORLD, config);
    ADD_FAILURE() << "the run succeeded";
  } catch (const dist::CollectiveFailure& e) {
    EXPECT_EQ(e.failed_rank(), failing) << e.what();
    EXPECT_NE(e.message().find(message), std::string::npos) << e.what();
  }
  EXPECT_EQ(dir.files(), left);
}

TEST(DistributedForward, LossySlabOnTheLastRankFailsEveryRank) {
  // g stored as F64 for F32 inputs: fine while every value is a float, except one value in the
  // last rank's share: only that rank reads it, and every rank must fail with its message.
  SharedDirectory dir;
  const Problem p = equal_lengths();
  const auto owned = make_random_problem<float, Kokkos::HostSpace>(p.spec);
  Kokkos::View<double***, Kokkos::LayoutRight, Kokkos::HostSpace> g("g", owned.g.extent(0), owned.g.extent(1),
                                                                    owned.g.extent(2));
  for (std::size_t i = 0; i < g.size(); ++i) g.data()[i] = owned.g.data()[i];
  const detail::ProblemShape shape = detail::check_forward_inputs(owned.inputs(), p.options);
  const dist::UnitRange last = dist::partition_units(shape, ranks()).back();
  const std::int64_t sequence = last.begin / shape.heads, head = last.begin % shape.heads;
  g(sequence, 5, head) = 0.1;  // token 5 of the last rank's first unit
  io::TensorsToWrite tensors = io::forward_input_tensors(owned.inputs());
  for (std::size_t i = 0; i < tensors.specs.size(); ++i)
    if (tensors.specs[i].name == "g") {
      tensors.specs[i].dtype = io::DType::F64;
      tensors.data[i] = g.data();
    }
  write_on_rank0(dir.file("in.safetensors"), tensors, io::options_metadata(p.options, p.spec.key_dim));
  expect_failed_run(dir, dir.file("in.safetensors"), dir.file("out.safetensors"), ranks() - 1,
                    "F64 value 0.10000000000000001 is not exactly representable in float32",
                    {"in.safetensors"});
}

TEST(DistributedForward, MissingTensorFailsEveryRank) {
  SharedDirectory dir;
  const Problem p = equal_lengths();
  const auto owned = make_random_problem<float, Kokkos::HostSpace>(p.spec);
  io::TensorsToWrite tensors = io::forward_input_tensors(owned.inputs());
  tensors.specs.erase(tensors.specs.begin() + 3);  // beta
  tensors.data.erase(tensors.data.begin() + 3);
  write_on_rank0(dir.file("in.safetensors"), tensors, io::options_metadata(p.options, p.spec.key_dim));
  expect_failed_run(dir, dir.file("in.safetensors"), dir.file("out.safetensors"), 0,
                    "missing required tensor \"beta\"", {"in.safetensors"});
}

TEST(DistributedForward, UnwritableOutputLeavesNothing) {
  SharedDirectory dir;
  const Problem p = equal_lengths();
  const auto owned = make_random_problem<float, Kokkos::HostSpace>(p.spec);
  write_on_rank0(dir.file("in.safetensors"), io::forward_input_tensors(owned.inputs()),
                 io::options_metadata(p.options, p.spec.key_dim));
  expect_failed_run(dir, dir.file("in.safetensors"), dir.file("no-such-directory/out.safetensors"), 0,
                    "cannot open for writing", {"in.safetensors"});
  expect_failed_run(dir, dir.file("absent.safetensors"), dir.file("out.safetensors"), 0,
                    "cannot open for reading", {"in.safetensors"});
}

/// Writes the equal-lengths problem in float32 with `poke` applied to its host inputs, and
/// the options `options`.
template <class Poke>
std::string write_poked_problem(const SharedDirectory& dir, const Problem& p, Poke&& poke) {
  const auto owned = make_random_problem<float, Kokkos::HostSpace>(p.spec);
  poke(owned);
  write_on_rank0(dir.file("in.safetensors"), io::forward_input_tensors(owned.inputs()),
                 io::options_metadata(p.options, p.spec.key_dim));
  return dir.file("in.safetensors");
}

TEST(DistributedForward, NonFiniteInputOnTheLastRankFailsEveryRank) {
  // A NaN in v in the last rank's share: every rank fails with its message, which names the
  // element by its index in the file's tensor (not in the rank's block).
  SharedDirectory dir;
  const Problem p = equal_lengths();
  std::int64_t sequence = 0, head = 0;
  const std::string input = write_poked_problem(dir, p, [&](const OwnedInputs<float, Kokkos::HostSpace>& owned) {
    const detail::ProblemShape shape = detail::check_forward_inputs(owned.inputs(), p.options);
    const dist::UnitRange last = dist::partition_units(shape, ranks()).back();
    sequence = last.begin / shape.heads;
    head = last.begin % shape.heads;
    owned.v(sequence, 11, head, 3) = std::numeric_limits<float>::quiet_NaN();
  });
  expect_failed_run(dir, input, dir.file("out.safetensors"), ranks() - 1,
                    "gdp: v: expected finite values, got nan at [b, p, h, v] = [" +
                        std::to_string(sequence) + ", 11, " + std::to_string(head) + ", 3]",
                    {"in.safetensors"});
}

TEST(DistributedForward, NonFiniteOutputFailsACheckedRun) {
  // A read-out scale beyond float's range (it becomes an infinity in float): no o is finite.
  // `run` writes the file as it is, unless asked to check the outputs.
  SharedDirectory dir;
  Problem p = equal_lengths();
  p.options.scale = 1e300;
  const std::string input = write_poked_problem(dir, p, [](const auto&) {});
  expect_failed_run(dir, input, dir.file("out.safetensors"), 0,
                    "gdp: o: non-finite output: ", {"in.safetensors"}, true);
  expect_failed_run(dir, input, dir.file("out.safetensors"), 0,
                    " at [b, t, h, v] = [0, 0, 0, 0] (the first", {"in.safetensors"}, true);
  dist::RunConfig config;
  config.input = input;
  config.output = dir.file("out.safetensors");
  config.space = "serial";
  EXPECT_NO_THROW(dist::run_forward_file(MPI_COMM_WORLD, config));
  EXPECT_EQ(dir.files(), (std::vector<std::string>{"in.safetensors", "out.safetensors"}));
}

/// Runs with the test hook GDP_TEST_FAIL_RANK=<last rank>:<stage> set.
void expect_forced_failure(const std::string& stage, const std::string& message) {
  SharedDirectory dir;
  const std::string input = write_poked_problem(dir, equal_lengths(), [](const auto&) {});
  const std::string request = std::to_string(ranks() - 1) + ":" + stage;
  ::setenv("GDP_TEST_FAIL_RANK", request.c_str(), 1);
  expect_failed_run(dir, input, dir.file("out.safetensors"), ranks() - 1, message, {"in.safetensors"});
  ::unsetenv("GDP_TEST_FAIL_RANK");
}

TEST(DistributedForward, BadSliceOnTheLastRankFailsEveryRank) {
  expect_forced_failure("slice", "gdp: q: slab of rows");
}

TEST(DistributedForward, AllocationFailureOnTheLastRankFailsEveryRank) {
  expect_forced_failure("allocate", "gdp: q: cannot allocate");
}

}  // namespace
}  // namespace gdp::test
