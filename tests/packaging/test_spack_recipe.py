#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Checks gdp's Spack recipe (spack/repo/packages/gdp/package.py) without Spack.

Spack cannot run here, so `spack.package` (and, for Spack 1.x, `spack_repo.builtin.build_systems`)
are replaced by stubs that record the recipe's directives and reproduce what the recipe relies
on: CMakePackage.define / define_from_variant as Spack documents them, spec.satisfies for the
constraint forms the recipe uses, and the Kokkos package's `kokkos_cxx` in both its Spack 1.x
and Spack 0.22 forms. The recipe is then imported and its variants, dependencies and the CMake
arguments of several specs are compared with what gdp's CMakeLists.txt expects; spack.yaml is
checked against the recipe.
"""
import importlib.util
import re
import sys
import types
import unittest
from pathlib import Path

import yaml

# Importing the recipe must leave no __pycache__ in the source tree.
sys.dont_write_bytecode = True

REPO_ROOT = Path(__file__).resolve().parents[2]
RECIPE = REPO_ROOT / "spack" / "repo" / "packages" / "gdp" / "package.py"
TOP_CMAKELISTS = (REPO_ROOT / "CMakeLists.txt").read_text()

# Spack's CudaPackage.cuda_arch_values (Spack 0.23): the compute capabilities Spack knows.
SPACK_CUDA_ARCH_VALUES = ("50", "52", "53", "60", "61", "62", "70", "72", "75", "80", "86",
                          "87", "89", "90", "90a", "100", "120")


class Directives:
    """What a recipe's class body declared."""

    def __init__(self):
        self.versions = {}
        self.variants = {}
        self.depends = []
        self.conflicts = []
        self.requires = []


def make_build_systems(directives):
    """Stub CMakePackage and CudaPackage that know the variants `directives` records."""

    class CudaPackage:
        cuda_arch_values = SPACK_CUDA_ARCH_VALUES

    class CMakePackage:
        def __init__(self, spec):
            self.spec = spec

        @staticmethod
        def has_variant(name):
            # CudaPackage itself declares `cuda`.
            return name == "cuda" or name in directives.variants

        @staticmethod
        def define(cmake_var, value):
            if isinstance(value, bool):
                return f"-D{cmake_var}:BOOL={'ON' if value else 'OFF'}"
            return f"-D{cmake_var}:STRING={value}"

        def define_from_variant(self, cmake_var, variant=None):
            variant = variant or cmake_var.lower()
            if not self.has_variant(variant):
                raise KeyError(f'"{variant}" is not a variant of "gdp"')
            if variant not in self.spec.variants:
                return ""
            return self.define(cmake_var, self.spec.variants[variant].value)

    return CMakePackage, CudaPackage


def make_spack_package(directives, with_build_systems):
    module = types.ModuleType("spack.package")

    def version(name, **kwargs):
        directives.versions[name] = kwargs

    def variant(name, default=None, description="", **kwargs):
        directives.variants[name] = dict(default=default, description=description, **kwargs)

    def depends_on(spec, when=None, type=("build", "link")):
        directives.depends.append((spec, when, type))

    def conflicts(spec, when=None, msg=None):
        directives.conflicts.append((spec, when))

    def requires(spec, when=None, msg=None):
        directives.requires.append((spec, when))

    def license(name):
        directives.license = name

    for function in (version, variant, depends_on, conflicts, requires, license):
        setattr(module, function.__name__, function)
    module.__all__ = [name for name in vars(module) if not name.startswith("_")]
    if with_build_systems:
        module.CMakePackage, module.CudaPackage = make_build_systems(directives)
        module.__all__ += ["CMakePackage", "CudaPackage"]
    return module


def load_recipe(spack_1):
    """Imports the recipe against stubs of Spack 1.x (build systems in spack_repo.builtin) or of
    Spack 0.22 (build systems in spack.package). Returns the module, what it declared, and the
    build system classes it was offered."""
    directives = Directives()
    stubs = {
        "spack": types.ModuleType("spack"),
        "spack.package": make_spack_package(directives, with_build_systems=not spack_1),
    }
    if spack_1:
        cmake_package, cuda_package = make_build_systems(directives)
        for name in ("spack_repo", "spack_repo.builtin", "spack_repo.builtin.build_systems"):
            stubs[name] = types.ModuleType(name)
        stubs["spack_repo.builtin.build_systems.cmake"] = types.ModuleType("cmake")
        stubs["spack_repo.builtin.build_systems.cmake"].CMakePackage = cmake_package
        stubs["spack_repo.builtin.build_systems.cuda"] = types.ModuleType("cuda")
        stubs["spack_repo.builtin.build_systems.cuda"].CudaPackage = cuda_package
    else:
        stubs["spack_repo"] = None  # makes `import spack_repo...` raise ImportError
    offered = (cmake_package, cuda_package) if spack_1 else (
        stubs["spack.package"].CMakePackage, stubs["spack.package"].CudaPackage)
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        spec = importlib.util.spec_from_file_location("gdp_spack_recipe", RECIPE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
    return module, directives, offered


class Variant:
    def __init__(self, value):
        self.value = value


class Spec:
    """A concrete gdp spec: its variant values and its Kokkos."""

    def __init__(self, kokkos_version="4.6.01", **variants):
        values = dict(cuda=False, openmp=True, mpi=True, apps=True, tests=False)
        values.update(variants)
        if not values["cuda"]:
            values.pop("cuda_arch", None)
        self.variants = {name: Variant(value) for name, value in values.items()}
        self.kokkos_version = tuple(int(part) for part in kokkos_version.split("."))
        # Spack 1.x: Kokkos' compiler is a property of its package.
        self.kokkos = types.SimpleNamespace(
            package=types.SimpleNamespace(kokkos_cxx="/kokkos/bin/nvcc_wrapper"))

    def __getitem__(self, name):
        assert name == "kokkos", name
        return self.kokkos

    def satisfies(self, constraint):
        return all(self._term(term) for term in constraint.split())

    def _term(self, term):
        if term[0] in "+~":
            wanted = term[0] == "+"
            return term[1:] in self.variants and self.variants[term[1:]].value is wanted
        match = re.fullmatch(r"\^kokkos@(\d*):(\d*)", term)
        if match is None:
            raise ValueError(f"the stub spec does not understand {term!r}: extend it")
        low, high = match.groups()
        major = self.kokkos_version[0]
        return (not low or major >= int(low)) and (not high or major <= int(high))


class RecipeImport(unittest.TestCase):
    def test_spack_1_build_systems_come_from_the_builtin_repository(self):
        module, _, offered = load_recipe(spack_1=True)
        self.assertEqual(module.Gdp.__bases__, offered)

    def test_spack_0_22_build_systems_come_from_spack_package(self):
        module, _, offered = load_recipe(spack_1=False)
        self.assertEqual(module.Gdp.__bases__, offered)

    def test_sources_come_from_this_checkout(self):
        module, _, _ = load_recipe(spack_1=True)
        self.assertEqual(module.Gdp.git, "file://" + str(REPO_ROOT))


class Declarations(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.module, cls.directives, _ = load_recipe(spack_1=True)

    def test_versions_include_the_cmake_project_version(self):
        project_version = re.search(r"project\(gdp VERSION ([0-9.]+)", TOP_CMAKELISTS).group(1)
        self.assertIn(project_version, self.directives.versions)
        self.assertEqual(self.directives.versions[project_version], {"tag": f"v{project_version}"})
        self.assertEqual(self.directives.versions["main"]["branch"], "main")

    def test_variants(self):
        variants = self.directives.variants
        for name in ("openmp", "mpi", "apps", "tests", "cuda_arch"):
            self.assertIn(name, variants)
        self.assertEqual(variants["cuda_arch"]["default"], "90")
        self.assertEqual(variants["cuda_arch"]["when"], "+cuda")
        self.assertFalse(variants["cuda_arch"]["multi"])
        for arch in variants["cuda_arch"]["values"]:
            self.assertIn(arch, SPACK_CUDA_ARCH_VALUES)

    def test_default_cuda_arch_is_the_cmake_default(self):
        cmake_default = re.search(r"set\(GDP_CUDA_ARCH (\w+) CACHE", TOP_CMAKELISTS).group(1)
        default = self.directives.variants["cuda_arch"]["default"]
        self.assertEqual(self.module.CUDA_ARCH_TO_KOKKOS[default], cmake_default)

    def test_kokkos_backends_follow_the_variants(self):
        depends = {(spec, when) for spec, when, _ in self.directives.depends}
        for expected in [
            ("kokkos@3.4.01:", None),
            ("kokkos-kernels@3.4.01:", None),
            ("kokkos+openmp", "+openmp"),
            ("kokkos-kernels+openmp", "+openmp"),
            ("kokkos~cuda", "~cuda"),
            ("kokkos+cuda+wrapper", "+cuda"),
            ("kokkos-kernels+cuda", "+cuda"),
        ]:
            self.assertIn(expected, depends)
        for arch in self.directives.variants["cuda_arch"]["values"]:
            self.assertIn((f"kokkos cuda_arch={arch}", f"+cuda cuda_arch={arch}"), depends)
            self.assertIn((f"kokkos-kernels cuda_arch={arch}", f"+cuda cuda_arch={arch}"), depends)
        self.assertIn(("^kokkos+cuda_lambda", "+cuda ^kokkos@:4"), self.directives.requires)

    def test_other_dependencies(self):
        by_name = {}
        for spec, when, dependency_type in self.directives.depends:
            name = re.match(r"[a-z0-9-]+", spec).group(0)
            by_name.setdefault(name, []).append((when, dependency_type))
        self.assertIn(("+mpi", ("build", "link")), by_name["mpi"])
        self.assertIn(("+apps", "build"), by_name["cli11"])
        self.assertIn(("+apps", ("build", "link")), by_name["openblas"])
        # The installed CMake package finds nlohmann_json for consumers of gdp::io.
        self.assertIn((None, ("build", "link")), by_name["nlohmann-json"])
        # CMake needs the test frameworks when it configures the tests.
        for name in ("googletest", "benchmark"):
            self.assertEqual(by_name[name], [("+tests", ("build", "link"))])
        self.assertIn(("+apps", "~mpi"), self.directives.conflicts)


class Environment(unittest.TestCase):
    """spack.yaml at the top: a ready environment that builds this checkout with the recipe."""

    @classmethod
    def setUpClass(cls):
        cls.env = yaml.safe_load((REPO_ROOT / "spack.yaml").read_text())["spack"]
        _, cls.directives, _ = load_recipe(spack_1=True)

    def test_specs_are_strings(self):
        # An unquoted `- kokkos@4: +openmp` is a YAML mapping, which Spack rejects.
        for spec in self.env["specs"]:
            self.assertIsInstance(spec, str)

    def test_repository_is_the_recipe_repository(self):
        repos = [Path(repo.replace("$env", str(REPO_ROOT))) for repo in self.env["repos"]]
        self.assertEqual(repos, [RECIPE.parents[2]])
        config = yaml.safe_load((RECIPE.parents[2] / "repo.yaml").read_text())["repo"]
        self.assertEqual(config["namespace"], "gdp")

    def test_gdp_spec_uses_declared_versions_and_variants(self):
        gdp_specs = [spec for spec in self.env["specs"] if spec.startswith("gdp")]
        self.assertEqual(len(gdp_specs), 1)
        name, *variants = gdp_specs[0].split()
        self.assertIn(name.partition("@")[2], self.directives.versions)
        for variant in variants:
            self.assertRegex(variant, r"^[+~]")
            self.assertIn(variant[1:], self.directives.variants)

    def test_develop_builds_this_checkout(self):
        develop = self.env["develop"]["gdp"]
        self.assertEqual((REPO_ROOT / develop["path"]).resolve(), REPO_ROOT)
        self.assertIn(develop["spec"].partition("@=")[2], self.directives.versions)


class CMakeArguments(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.module, _, _ = load_recipe(spack_1=True)

    def cmake_args(self, spec):
        return self.module.Gdp(spec).cmake_args()

    def test_default_host_build(self):
        self.assertEqual(self.cmake_args(Spec()), [
            "-DGDP_ENABLE_CUDA:BOOL=OFF",
            "-DGDP_ENABLE_MPI:BOOL=ON",
            "-DGDP_ENABLE_APPS:BOOL=ON",
            "-DGDP_ENABLE_TESTS:BOOL=OFF",
            "-DGDP_ENABLE_BENCHMARKS:BOOL=OFF",
            "-DGDP_ENABLE_NATIVE_ARCH:BOOL=OFF",
        ])

    def test_variants_map_to_options(self):
        args = self.cmake_args(Spec(mpi=False, apps=False, tests=True))
        for expected in ("-DGDP_ENABLE_MPI:BOOL=OFF", "-DGDP_ENABLE_APPS:BOOL=OFF",
                         "-DGDP_ENABLE_TESTS:BOOL=ON", "-DGDP_ENABLE_BENCHMARKS:BOOL=ON"):
            self.assertIn(expected, args)

    def test_cuda_arch_maps_to_the_kokkos_arch(self):
        for arch, kokkos_arch in (("90", "HOPPER90"), ("80", "AMPERE80"), ("70", "VOLTA70")):
            args = self.cmake_args(Spec(cuda=True, cuda_arch=arch))
            self.assertIn("-DGDP_ENABLE_CUDA:BOOL=ON", args)
            self.assertIn(f"-DGDP_CUDA_ARCH:STRING={kokkos_arch}", args)
            self.assertIn("-DCMAKE_CXX_COMPILER:STRING=/kokkos/bin/nvcc_wrapper", args)
            self.assertIn("-DGDP_ENABLE_NATIVE_ARCH:BOOL=OFF", args)

    def test_host_build_keeps_spack_compiler(self):
        self.assertFalse([arg for arg in self.cmake_args(Spec()) if "CMAKE_CXX_COMPILER" in arg])

    def test_nvcc_wrapper_from_spack_0_22_kokkos(self):
        spec = Spec(cuda=True, cuda_arch="90")
        # Spack 0.22: the Kokkos package has no kokkos_cxx; its spec carries it.
        spec.kokkos = types.SimpleNamespace(package=types.SimpleNamespace(),
                                            kokkos_cxx="/old/bin/nvcc_wrapper")
        self.assertIn("-DCMAKE_CXX_COMPILER:STRING=/old/bin/nvcc_wrapper", self.cmake_args(spec))

    def test_kokkos_5_needs_cxx20(self):
        self.assertIn("-DCMAKE_CXX_STANDARD:STRING=20", self.cmake_args(Spec(kokkos_version="5.0.1")))
        self.assertFalse([arg for arg in self.cmake_args(Spec(kokkos_version="4.6.01"))
                          if "CMAKE_CXX_STANDARD" in arg])


if __name__ == "__main__":
    unittest.main(verbosity=2)
