// SPDX-License-Identifier: Apache-2.0
// The MPI test programs start MPI and Kokkos (as gdp_app does) around the GoogleTest run, on
// every rank. Rank 0 prints the usual report; the other ranks print only their failures, each
// line marked with the rank. The program fails on every rank when a test failed on any.
#include "dist/runtime.hpp"

#include <gtest/gtest.h>

#include <cstdio>

namespace {

class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (result.failed())
      std::printf("[rank %d] %s:%d: failure\n%s\n", rank_, result.file_name() ? result.file_name() : "?",
                  result.line_number(), result.summary());
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  int status = 0;
  {
    gdp::dist::Runtime runtime(argc, argv);
    runtime.start_kokkos();
    ::testing::InitGoogleTest(&argc, argv);
    if (runtime.rank() != 0) {
      auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
      delete listeners.Release(listeners.default_result_printer());
      listeners.Append(new FailurePrinter(runtime.rank()));
    }
    const int mine = RUN_ALL_TESTS();
    MPI_Allreduce(&mine, &status, 1, MPI_INT, MPI_MAX, runtime.comm());
  }
  return status;
}
