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


def _cpu_flags():
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


def test_the_widest_path_the_cpu_offers_is_chosen():
    flags = _cpu_flags()
    if flags is None:
        pytest.skip("no /proc/cpuinfo to compare CPUID with")
    if ft._C.avx512_compiled and {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        expected = "avx512"
    elif ft._C.avx2_compiled and {"avx2", "fma"} <= flags:
        expected = "avx2+fma"
    else:
        expected = "portable"
    result = _run_python("import fusedtrain; print(fusedtrain.info()['simd'])", FUSEDTRAIN_SIMD="")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


@pytest.mark.parametrize("value, expected", [("avx2", "avx2+fma"), ("avx2+fma", "avx2+fma"),
                                             ("portable", "portable"), ("avx512", "avx512")])
def test_fusedtrain_simd_forces_a_path_no_wider_than_the_cpu(value, expected):
    order = ["portable", "avx2+fma", "avx512"]
    widest = max((path for path in order if ft._C.simd_available(path)), key=order.index)
    if order.index(expected) > order.index(widest):
        expected = widest
    result = _run_python("import fusedtrain; print(fusedtrain.info()['simd'])", FUSEDTRAIN_SIMD=value)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_an_unknown_fusedtrain_simd_value_is_reported_and_ignored():
    code = "import warnings; warnings.simplefilter('always'); import fusedtrain; print(fusedtrain.info()['simd'])"
    result = _run_python(code, FUSEDTRAIN_SIMD="sse9")
    assert result.returncode == 0, result.stderr
    assert "FUSEDTRAIN_SIMD='sse9'" in result.stderr and "avx512, avx2, avx2+fma, portable" in result.stderr
    assert result.stdout.strip() == ft._C.simd_path() or ft._C.simd_available(result.stdout.strip())


def test_simd_path_can_be_switched_and_restored():
    before = ft._C.simd_path()
    try:
        for path in ("portable", "avx2+fma", "avx512"):
            if ft._C.simd_available(path):
                ft._C.set_simd_path(path)
                assert ft.info()["simd"] == path
            else:
                with pytest.raises(ValueError, match="not available"):
                    ft._C.set_simd_path(path)
    finally:
        ft._C.set_simd_path(before)
    assert ft._C.simd_path() == before
    with pytest.raises(ValueError, match="not available"):
        ft._C.set_simd_path("avx1024")


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


_SPIN_CHECK = ("import ctypes, fusedtrain; value = ctypes.CDLL(None).getenv; value.restype = ctypes.c_char_p; "
               "print(value(b'GOMP_SPINCOUNT'))")


def test_openmp_threads_spin_briefly_unless_the_user_chose():
    # A short spin before OpenMP's idle threads sleep (see fusedtrain/__init__.py); a setting of
    # the user's own, spin count or wait policy, is kept.
    env = {key: value for key, value in os.environ.items() if key not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    result = subprocess.run([sys.executable, "-c", _SPIN_CHECK], capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "b'10000'"
    for setting in ({"GOMP_SPINCOUNT": "77"}, {"OMP_WAIT_POLICY": "active"}):
        result = subprocess.run([sys.executable, "-c", _SPIN_CHECK], capture_output=True, text=True,
                                env={**env, **setting}, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == ("b'77'" if "GOMP_SPINCOUNT" in setting else "None")
