"""fusedtrain embedded in other projects, from the installed package: the C++ headers, kernel
library and CMake package that ``python -m fusedtrain --cmake-dir`` points to, the pure C++
example (a small MLP trained on the kernels, and the API's error contract) and a third-party
pybind11 extension, each configured, built and run with CMake."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import ops

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
HEADERS = ("cpu.h", "cpu_kernels.inc", "types.h")
PACKAGE_FILES = ("fusedtrainConfig.cmake", "fusedtrainConfigVersion.cmake", "fusedtrainTargets.cmake")

needs_examples = pytest.mark.skipif(not EXAMPLES.is_dir(),
                                    reason="needs the examples/ folder of the source tree")


def _fusedtrain_cli(*arguments):
    result = subprocess.run([sys.executable, "-m", "fusedtrain", *arguments], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="module")
def cmake_dir():
    """The installed CMake package, located the way a user's build would locate it."""
    return Path(_fusedtrain_cli("--cmake-dir"))


@pytest.fixture(scope="module")
def cmake():
    """The cmake command and its generator arguments; skips where no cmake or C++ compiler exists."""
    executable = shutil.which("cmake")
    if executable is None:
        pytest.skip("cmake is not on PATH")
    compilers = [os.environ["CXX"]] if os.environ.get("CXX") else ["c++", "g++", "clang++"]
    if not any(shutil.which(compiler.split()[0]) for compiler in compilers):
        pytest.skip(f"no C++ compiler found (tried {', '.join(compilers)})")
    generator = ["-G", "Ninja"] if shutil.which("ninja") and "CMAKE_GENERATOR" not in os.environ else []
    return [executable], generator


def _run(command, **kwargs):
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=300,
                            **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _build(cmake, source, build, *defines):
    """Configures `source` into `build` (Release) with the given -D definitions, builds it and
    returns what the configure step printed."""
    executable, generator = cmake
    configure = _run([*executable, "-S", source, "-B", build, *generator, "-DCMAKE_BUILD_TYPE=Release",
                      *defines])
    _run([*executable, "--build", build, "--parallel", "2"])
    return configure.stdout


# ---- the installed files ------------------------------------------------------------------------


def test_cli_and_functions_name_the_installed_directories(cmake_dir):
    include_dir = Path(_fusedtrain_cli("--include-dir"))
    assert cmake_dir == Path(ft.get_cmake_dir())
    assert include_dir == Path(ft.get_include())
    # Both sit beside the compiled module, in the installed package.
    package = Path(ft._C.__file__).resolve().parent
    assert cmake_dir == package / "share" / "cmake" / "fusedtrain"
    assert include_dir == package / "include"


def test_cli_rejects_a_path_flag_with_a_command():
    result = subprocess.run([sys.executable, "-m", "fusedtrain", "--cmake-dir", "info"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert "take no command" in result.stderr


def test_installed_package_holds_headers_library_and_cmake_files(cmake_dir):
    include_dir = Path(_fusedtrain_cli("--include-dir"))
    for header in HEADERS:
        assert (include_dir / "fusedtrain" / header).is_file(), header
    for name in PACKAGE_FILES:
        assert (cmake_dir / name).is_file(), name
    library_dir = cmake_dir.parents[2] / "lib"
    libraries = {path.name for path in library_dir.iterdir()}
    assert libraries & {"libfusedtrain_kernels.a", "fusedtrain_kernels.lib"}, libraries


def test_public_headers_need_no_python():
    include_dir = Path(_fusedtrain_cli("--include-dir")) / "fusedtrain"
    for header in HEADERS:
        text = (include_dir / header).read_text()
        assert "Python.h" not in text and "pybind11" not in text, header
        # Every include of the public headers is the standard library or another public header.
        for included in re.findall(r'#include\s+[<"]([^>"]+)[>"]', text):
            assert included.startswith("fusedtrain/") or "/" not in included, (header, included)


# ---- the CMake package ----------------------------------------------------------------------


CONSUMER = """
cmake_minimum_required(VERSION 3.18)
project(consumer LANGUAGES CXX)
find_package(fusedtrain ${REQUESTED_VERSION} CONFIG REQUIRED)
get_target_property(include_dirs fusedtrain::kernels INTERFACE_INCLUDE_DIRECTORIES)
get_target_property(location fusedtrain::kernels IMPORTED_LOCATION_RELEASE)
message(STATUS "found fusedtrain ${fusedtrain_VERSION} in ${fusedtrain_DIR}")
message(STATUS "include: ${include_dirs}")
message(STATUS "library: ${location}")
add_executable(consumer main.cpp)
target_link_libraries(consumer PRIVATE fusedtrain::kernels)
"""

CONSUMER_MAIN = """
#include <fusedtrain/cpu.h>
#include <cstdio>
int main() {
  float x[3] = {-1.0f, 0.0f, 2.0f};
  fusedtrain::cpu::activation_forward(fusedtrain::Activation::Relu, 0.0f, x, x, 3);
  std::printf("%s %g %g %g\\n", fusedtrain::cpu::simd_path(), x[0], x[1], x[2]);
  return 0;
}
"""


@pytest.fixture(scope="module")
def relocated_package(cmake_dir, tmp_path_factory):
    """A copy of the installed C++ files in an unrelated directory, as another site-packages
    (or a moved virtual environment) would hold them."""
    package = tmp_path_factory.mktemp("elsewhere") / "site-packages" / "fusedtrain"
    installed = cmake_dir.parents[2]
    for folder in ("include", "lib", "share"):
        shutil.copytree(installed / folder, package / folder)
    return package


@pytest.fixture(scope="module")
def consumer_source(tmp_path_factory):
    source = tmp_path_factory.mktemp("consumer")
    (source / "CMakeLists.txt").write_text(CONSUMER)
    (source / "main.cpp").write_text(CONSUMER_MAIN)
    return source


def test_package_is_relocatable(cmake, relocated_package, consumer_source, tmp_path):
    build = tmp_path / "build"
    configure_output = _build(cmake, consumer_source, build,
                              f"-Dfusedtrain_DIR={relocated_package / 'share' / 'cmake' / 'fusedtrain'}",
                              "-DREQUESTED_VERSION=0.1")
    assert f"include: {relocated_package / 'include'}" in configure_output
    assert f"library: {relocated_package / 'lib'}" in configure_output
    assert f"found fusedtrain {ft.__version__}" in configure_output
    output = _run([build / "consumer"]).stdout.split()
    assert output[1:] == ["0", "0", "2"]


def test_package_is_found_through_cmake_prefix_path(cmake, relocated_package, consumer_source, tmp_path):
    executable, generator = cmake
    result = _run([*executable, "-S", consumer_source, "-B", tmp_path / "build", *generator,
                   f"-DCMAKE_PREFIX_PATH={relocated_package}"])
    assert f"include: {relocated_package / 'include'}" in result.stdout


def test_package_refuses_an_incompatible_version(cmake, cmake_dir, consumer_source, tmp_path):
    executable, generator = cmake
    result = subprocess.run([executable[0], "-S", str(consumer_source), "-B", str(tmp_path / "build"),
                             *generator, f"-Dfusedtrain_DIR={cmake_dir}", "-DREQUESTED_VERSION=99.0"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "99.0" in result.stderr and "fusedtrain" in result.stderr


# ---- examples/cpp: a pure C++ training loop -------------------------------------------------


@pytest.fixture(scope="module")
def cpp_example(cmake, cmake_dir, tmp_path_factory):
    build = tmp_path_factory.mktemp("cpp_example")
    _build(cmake, EXAMPLES / "cpp", build, f"-Dfusedtrain_DIR={cmake_dir}")
    return build


@needs_examples
@pytest.mark.parametrize("simd", ["default", "portable"])
def test_cpp_example_trains_an_mlp(cpp_example, simd):
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    if simd == "portable":
        env["FUSEDTRAIN_SIMD"] = "portable"
    output = _run([cpp_example / "train_mlp"], env=env).stdout
    first, last = map(float, re.search(r"loss ([0-9.]+) -> ([0-9.]+)", output).groups())
    assert last < 0.5 * first, output
    if simd == "portable":
        assert "simd portable" in output


@needs_examples
def test_cpp_api_reports_every_misuse_by_exception(cpp_example):
    result = subprocess.run([str(cpp_example / "check_errors")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed: 0 failure(s)" in result.stdout
    assert "FAIL" not in result.stdout
    # One line per case: a check that silently stopped running would show up here.
    assert sum(line.startswith("ok ") for line in result.stdout.splitlines()) >= 40


# ---- examples/pybind11_extension: a third-party module on the kernels -----------------------


@pytest.fixture(scope="module")
def fused_linear(cmake, tmp_path_factory):
    """The example extension, built with CMake alone: it finds fusedtrain by running
    ``python -m fusedtrain --cmake-dir`` itself."""
    pybind11 = pytest.importorskip("pybind11", reason="the extension example needs pybind11 to build")
    build = tmp_path_factory.mktemp("pybind11_extension")
    _build(cmake, EXAMPLES / "pybind11_extension", build, f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
           f"-DPython_EXECUTABLE={sys.executable}")
    (path,) = [*build.glob("fused_linear*.so"), *build.glob("fused_linear*.pyd")]
    spec = importlib.util.spec_from_file_location("fused_linear", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build_dir = build
    return module


REFERENCE_ACTIVATIONS = {
    "none": lambda z: z,
    "relu": lambda z: np.maximum(z, 0.0),
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "tanh": np.tanh,
    "gelu": lambda z: 0.5 * z * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (z + 0.044715 * z ** 3))),
}


@needs_examples
@pytest.mark.parametrize("activation", sorted(REFERENCE_ACTIVATIONS))
@pytest.mark.parametrize("rows, inputs, outputs", [(1, 1, 1), (3, 17, 5), (33, 257, 7)])
def test_extension_matches_float64_and_fusedtrain_ops(fused_linear, rng, activation, rows, inputs, outputs):
    x = rng.standard_normal((rows, inputs)).astype(np.float32)
    weight = (rng.standard_normal((inputs, outputs)) / np.sqrt(inputs)).astype(np.float32)
    bias = rng.standard_normal(outputs).astype(np.float32)
    result = fused_linear.forward(x, weight, bias, activation)

    assert result.dtype == np.float32 and result.shape == (rows, outputs)
    z = x.astype(np.float64) @ weight.astype(np.float64) + bias
    # float32 dot products of length `inputs`: rounding ~sqrt(inputs) * 2^-24 times the sum of
    # |terms| (x 8 for a margin); the activations are at most ~1.13-Lipschitz and accurate to a
    # few 1e-7 in float32.
    scale = np.abs(x.astype(np.float64)) @ np.abs(weight.astype(np.float64)) + np.abs(bias)
    tolerance = 1.2 * scale * np.sqrt(inputs) * 5e-7 + 1e-6 * (1.0 + np.abs(z))
    assert np.all(np.abs(result - REFERENCE_ACTIVATIONS[activation](z)) <= tolerance)
    # The same kernel, path and thread count as fusedtrain.ops: the same bits.
    expected = ops.matmul(x, weight, bias=bias, activation=None if activation == "none" else activation)
    np.testing.assert_array_equal(result, expected)


@needs_examples
def test_extension_without_bias_and_with_empty_batch(fused_linear, rng):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    weight = rng.standard_normal((3, 2)).astype(np.float32)
    expected = x.astype(np.float64) @ weight
    np.testing.assert_allclose(fused_linear.forward(x, weight), expected, rtol=1e-5, atol=1e-6)
    assert fused_linear.forward(np.zeros((0, 3), np.float32), weight).shape == (0, 2)


@needs_examples
def test_extension_errors(fused_linear):
    x = np.ones((4, 3), np.float32)
    weight = np.ones((3, 2), np.float32)
    with pytest.raises(TypeError):
        fused_linear.forward(x.astype(np.float64), weight)
    with pytest.raises(TypeError):
        fused_linear.forward(np.ones((3, 4), np.float32).T, weight)
    with pytest.raises(TypeError, match="bias"):
        fused_linear.forward(x, weight, np.ones(2))
    with pytest.raises(ValueError, match="weight: expected 3 rows"):
        fused_linear.forward(x, np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"bias: expected shape \(2,\)"):
        fused_linear.forward(x, weight, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="activation"):
        fused_linear.forward(x, weight, activation="swish")
    # The kernel library's own std::invalid_argument, translated by pybind11.
    with pytest.raises(ValueError, match="fusedtrain::cpu::set_num_threads: threads must be >= 1"):
        fused_linear.set_num_threads(0)


@needs_examples
def test_extension_runs_without_fusedtrain_installed(fused_linear):
    # The kernels are linked in statically: with fusedtrain unimportable the module still works.
    code = ("import sys; sys.modules['fusedtrain'] = None; import numpy as np, fused_linear;"
            "print(fused_linear.forward(np.eye(2, dtype=np.float32), np.full((2, 1), -3, np.float32),"
            " activation='relu').ravel())")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=fused_linear.build_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[0.", "0.]"]
