// SPDX-License-Identifier: Apache-2.0
#include "output_commit.hpp"

#include "collective_failure.hpp"
#include "common/gdp_asserts.hpp"
#include "mpi_file.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>

namespace gdp::dist {

std::string partial_path(const std::string& path) { return path + ".partial"; }

void write_output_file(MPI_Comm comm, const std::string& path, const io::SafetensorsLayout& layout,
                       const std::vector<OutputPart>& parts) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  const std::string partial = partial_path(path);
  std::optional<MpiFile> file;
  try {
    run_collectively(comm, [&] {
      GDP_EXPECT(parts.size() == layout.tensors.size(), path, "expected ", layout.tensors.size(),
                 " output parts, got ", parts.size());
    });
    run_collectively(comm, [&] {
      file.emplace(comm, partial, MpiFile::Mode::create);
      file->set_size(layout.file_size);  // also drops whatever an earlier run left there
    });
    run_collectively(comm, [&] {
      for (const OutputPart& part : parts) file->write_runs(part.slabs->runs, part.data);
    });
    run_collectively(comm, [&] {
      if (rank == 0) file->write_at(0, layout.header.data(), layout.header.size());
    });
    run_collectively(comm, [&] { file->close(); });
    run_collectively(comm, [&] {
      if (rank == 0)
        GDP_EXPECT(std::rename(partial.c_str(), path.c_str()) == 0, path, "cannot rename ",
                   partial, " to it: ", std::strerror(errno));
    });
  } catch (...) {
    file.reset();  // closes it on every rank (all ranks are here together)
    if (rank == 0) std::remove(partial.c_str());
    MPI_Barrier(comm);  // no rank returns while the partial file may still exist
    throw;
  }
}

}  // namespace gdp::dist
