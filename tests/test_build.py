"""The build and its switches: the SIMD path chosen at run time (and forced by FUSEDTRAIN_SIMD),
importing without a GPU, and the FUSEDTRAIN_CUDA CMake option."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fusedtrain as ft

ROOT = Path(__file__).resolve().parents[1]


def _run_python(code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_fusedtrain_simd_portable_forces_the_portable_kernels():
    result = _run_python("import fusedtrain; print(fusedtrain.info()['simd'])", FUSEDTRAIN_SIMD="portable")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "portable"


def test_simd_path_can_be_switched_and_restored():
    before = ft._C.simd_path()
    try:
        ft._C.set_simd_path("portable")
        assert ft.info()["simd"] == "portable"
    finally:
        ft._C.set_simd_path(before)
    with pytest.raises(ValueError, match="not available"):
        ft._C.set_simd_path("avx512")


def test_import_and_info_work_without_a_gpu():
    report = ft.info()
    if not report["gpu_found"]:
        assert report["gpu_reason"], "a missing GPU must come with the reason"
    if not report["cuda_compiled"]:
        assert "without CUDA" in report["gpu_reason"]


def _configure(tmp_path, option):
    """Configures the project with CUDACXX pointing at a compiler that always fails, which is
    how a machine without nvcc looks to CMake's language check."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not on PATH")
    pybind11 = pytest.importorskip("pybind11")
    broken = tmp_path / "nvcc"
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)
    return subprocess.run(
        ["cmake", "-S", str(ROOT), "-B", str(tmp_path / "build"), f"-DFUSEDTRAIN_CUDA={option}",
         f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", f"-DPython_EXECUTABLE={sys.executable}"],
        capture_output=True, text=True, env={**os.environ, "CUDACXX": str(broken)}, timeout=300)


@pytest.mark.skipif(not (ROOT / "CMakeLists.txt").exists(), reason="needs the source tree")
def test_cuda_on_without_nvcc_fails_clearly(tmp_path):
    result = _configure(tmp_path, "ON")
    assert result.returncode != 0
    assert "FUSEDTRAIN_CUDA=ON but no CUDA compiler was found" in result.stdout + result.stderr


@pytest.mark.skipif(not (ROOT / "CMakeLists.txt").exists(), reason="needs the source tree")
def test_cuda_auto_without_nvcc_builds_cpu_only(tmp_path):
    result = _configure(tmp_path, "AUTO")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "building the CPU kernels only" in result.stdout


@pytest.mark.skipif(not (ROOT / "CMakeLists.txt").exists(), reason="needs the source tree")
def test_cuda_option_rejects_unknown_values(tmp_path):
    result = _configure(tmp_path, "MAYBE")
    assert result.returncode != 0
    assert "FUSEDTRAIN_CUDA must be AUTO, ON or OFF" in result.stdout + result.stderr
