# SPDX-License-Identifier: Apache-2.0
"""Spack recipe of gdp, kept in gdp's own repository (spack/repo, namespace `gdp`).

Usage (docs/INSTALL.md): `spack repo add spack/repo`, then `spack install gdp +cuda cuda_arch=90`,
or `spack env activate .` at the top of the repository for the environment in spack.yaml.
Checked without Spack by tests/packaging/test_spack_recipe.py.
"""
import os

try:  # Spack 1.0 and later: the build systems live in the builtin package repository.
    from spack_repo.builtin.build_systems.cmake import CMakePackage
    from spack_repo.builtin.build_systems.cuda import CudaPackage
except ImportError:  # Spack 0.22 and 0.23 export them from spack.package.
    from spack.package import CMakePackage, CudaPackage

from spack.package import *

# The Kokkos architecture name, as gdp's GDP_CUDA_ARCH (and Kokkos_ARCH_*) spell it, of each CUDA
# compute capability gdp builds for.
CUDA_ARCH_TO_KOKKOS = {
    "70": "VOLTA70",
    "72": "VOLTA72",
    "75": "TURING75",
    "80": "AMPERE80",
    "86": "AMPERE86",
    "89": "ADA89",
    "90": "HOPPER90",
}

# The gdp checkout this recipe belongs to: spack/repo/packages/gdp/ is four levels below it.
_SOURCE_TREE = os.path.abspath(os.path.join(os.path.dirname(__file__), *[os.pardir] * 4))


class Gdp(CMakePackage, CudaPackage):
    """gdp: the chunked Gated DeltaProduct operator (forward and backward) on Kokkos, as a C++
    library for Kokkos programs, and gdp_app, an MPI application that runs it on safetensors
    files."""

    # Sources come from the clone the repository was added from, so that machines without
    # access to a code host can build it.
    git = "file://" + _SOURCE_TREE

    license("Apache-2.0")

    # The branch is preferred until a release is tagged v<version>.
    version("main", branch="main", preferred=True)
    version("0.1.0", tag="v0.1.0")

    variant("openmp", default=True, description="Kokkos' OpenMP execution space")
    variant("mpi", default=True, description="The MPI layer (gdp_dist) that gdp_app runs on")
    variant("apps", default=True, description="gdp_app (make-input, run, bench, verify, inspect)")
    variant("tests", default=False, description="Build the GoogleTest suite and benchmarks")
    # Kokkos builds for a single GPU architecture; gdp must name the same one.
    variant(
        "cuda_arch",
        default="90",
        values=tuple(CUDA_ARCH_TO_KOKKOS),
        multi=False,
        sticky=True,
        when="+cuda",
        description="CUDA compute capability (90: H100)",
    )
    conflicts("+apps", when="~mpi", msg="gdp_app runs under MPI: +apps needs +mpi")

    depends_on("cxx", type="build")
    depends_on("cmake@3.16:", type="build")

    # libgdp holds instantiations for the execution spaces of the Kokkos it is built against,
    # so Kokkos and Kokkos Kernels carry exactly the backends asked of gdp.
    depends_on("kokkos@3.4.01:")
    depends_on("kokkos-kernels@3.4.01:")
    depends_on("kokkos+openmp", when="+openmp")
    depends_on("kokkos-kernels+openmp", when="+openmp")
    # gdp's CMake refuses a CUDA Kokkos without GDP_ENABLE_CUDA, and the reverse.
    depends_on("kokkos~cuda", when="~cuda")
    # gdp compiles its CUDA code with Kokkos' nvcc_wrapper as the C++ compiler.
    depends_on("kokkos+cuda+wrapper", when="+cuda")
    depends_on("kokkos-kernels+cuda", when="+cuda")
    requires("^kokkos+cuda_lambda", when="+cuda ^kokkos@:4")
    for _arch in CUDA_ARCH_TO_KOKKOS:
        depends_on(f"kokkos cuda_arch={_arch}", when=f"+cuda cuda_arch={_arch}")
        depends_on(f"kokkos-kernels cuda_arch={_arch}", when=f"+cuda cuda_arch={_arch}")

    # gdp_io (safetensors) parses JSON with this header-only library; the installed CMake
    # package finds it for gdp's consumers, hence a link dependency.
    depends_on("nlohmann-json@3.2:", type=("build", "link"))
    depends_on("mpi", when="+mpi")
    depends_on("cli11@2:", when="+apps", type="build")
    # The sgemm yardstick of `gdp_app bench --baseline`.
    depends_on("openblas", when="+apps")
    # Found by CMake when the tests are configured, so build (and link) dependencies rather
    # than test-only ones, which a plain `spack install` leaves out.
    depends_on("googletest", when="+tests", type=("build", "link"))
    depends_on("benchmark", when="+tests", type=("build", "link"))

    def cmake_args(self):
        spec = self.spec
        args = [
            self.define_from_variant("GDP_ENABLE_CUDA", "cuda"),
            self.define_from_variant("GDP_ENABLE_MPI", "mpi"),
            self.define_from_variant("GDP_ENABLE_APPS", "apps"),
            self.define_from_variant("GDP_ENABLE_TESTS", "tests"),
            self.define_from_variant("GDP_ENABLE_BENCHMARKS", "tests"),
            # Spack compiles for the spec's target; -march=native would bind the binaries to
            # the build host instead.
            self.define("GDP_ENABLE_NATIVE_ARCH", False),
        ]
        if spec.satisfies("^kokkos@5:"):
            args.append(self.define("CMAKE_CXX_STANDARD", "20"))
        if spec.satisfies("+cuda"):
            cuda_arch = spec.variants["cuda_arch"].value
            args.append(self.define("GDP_CUDA_ARCH", CUDA_ARCH_TO_KOKKOS[cuda_arch]))
            args.append(self.define("CMAKE_CXX_COMPILER", self.kokkos_cxx()))
        return args

    def kokkos_cxx(self):
        """The C++ compiler Kokkos was built with: its nvcc_wrapper for a CUDA Kokkos."""
        kokkos = self.spec["kokkos"]
        # Spack 1.x has it as a property of the Kokkos package; Spack 0.22 and 0.23 set it on
        # the Kokkos spec when preparing the dependent's build.
        return getattr(kokkos.package, "kokkos_cxx", None) or kokkos.kokkos_cxx
