"""fusedtrain.info() and `python -m fusedtrain info`, the thread-count controls, and the promise
that importing fusedtrain starts no threads."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fusedtrain as ft

ROOT = Path(__file__).resolve().parents[1]


def _run_python(*args, **env):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_info_keys_and_types():
    report = ft.info()
    assert isinstance(report, dict)
    assert report["version"] == ft.__version__
    assert report["simd"] in {"avx512", "avx2+fma", "portable"}
    assert report["simd"] == ft._C.simd_path()
    assert isinstance(report["threads"], int) and report["threads"] >= 1
    assert report["threads"] == ft.get_num_threads()
    for key in ("cuda_compiled", "gpu_found", "cupy"):
        assert isinstance(report[key], bool), key
    if report["gpu_found"]:
        assert report["cuda_compiled"], "a GPU can only be found by a build with CUDA"
        assert isinstance(report["gpus"], list) and report["gpus"]
        assert "gpu_reason" not in report
    else:
        assert isinstance(report["gpu_reason"], str) and report["gpu_reason"].strip()
    assert isinstance(report["python"], str) and isinstance(report["machine"], str)


def test_version_matches_pyproject():
    pyproject = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'^version\s*=\s*"([^"]+)"', pyproject, re.MULTILINE)
    assert match, "pyproject.toml has no version line"
    assert ft.__version__ == match.group(1)


def test_info_follows_the_simd_path_and_thread_count():
    previous_path, previous_threads = ft._C.simd_path(), ft.get_num_threads()
    try:
        ft._C.set_simd_path("portable")
        ft.set_num_threads(3)
        report = ft.info()
        assert report["simd"] == "portable"
        assert report["threads"] == 3
    finally:
        ft._C.set_simd_path(previous_path)
        ft.set_num_threads(previous_threads)


def test_info_prints_one_line_per_fact():
    report = ft.info()
    lines = str(report).splitlines()
    assert len(lines) == len(report)
    for line, (key, value) in zip(lines, report.items()):
        assert line.startswith(key)
        if isinstance(value, bool):
            assert line.split()[-1] == ("yes" if value else "no")


def test_command_line_info():
    result = _run_python("-m", "fusedtrain", "info")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    facts = {line.split()[0]: line.split(None, 1)[1].strip() for line in lines if line.strip()}
    for key in ("version", "simd", "threads", "cuda_compiled", "gpu_found", "cupy"):
        assert key in facts, f"{key} missing from:\n{result.stdout}"
    assert facts["version"] == ft.__version__
    assert facts["simd"] in {"avx512", "avx2+fma", "portable"}
    assert int(facts["threads"]) >= 1
    for key in ("cuda_compiled", "gpu_found", "cupy"):
        assert facts[key] in {"yes", "no"}
    if facts["gpu_found"] == "no":
        assert facts.get("gpu_reason")


def test_command_line_without_a_command_prints_help():
    result = _run_python("-m", "fusedtrain")
    assert result.returncode == 2
    assert "info" in result.stdout and "bench" in result.stdout


def test_omp_num_threads_sets_the_initial_count():
    code = "import fusedtrain; print(fusedtrain.get_num_threads(), fusedtrain.info()['threads'])"
    result = _run_python("-c", code, OMP_NUM_THREADS="3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3", "3"]


def test_set_num_threads_round_trip():
    previous = ft.get_num_threads()
    try:
        for threads in (1, 3, 2):
            ft.set_num_threads(threads)
            assert ft.get_num_threads() == threads
    finally:
        ft.set_num_threads(previous)
    assert ft.get_num_threads() == previous


@pytest.mark.parametrize("threads, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError),
                                            (True, TypeError), ("2", TypeError), (None, TypeError)])
def test_set_num_threads_rejects_bad_counts(threads, error):
    previous = ft.get_num_threads()
    with pytest.raises(error, match="threads"):
        ft.set_num_threads(threads)
    assert ft.get_num_threads() == previous


def test_set_num_threads_accepts_numpy_integers():
    import numpy as np

    previous = ft.get_num_threads()
    try:
        ft.set_num_threads(np.int64(1))
        assert ft.get_num_threads() == 1
    finally:
        ft.set_num_threads(previous)


def test_importing_fusedtrain_starts_no_threads():
    # NumPy is imported first: its BLAS may start a thread pool of its own.
    code = (
        "import os, threading\n"
        "import numpy\n"
        "def native():\n"
        "    return len(os.listdir('/proc/self/task')) if os.path.isdir('/proc/self/task') else None\n"
        "before = (threading.active_count(), native())\n"
        "import fusedtrain\n"
        "after = (threading.active_count(), native())\n"
        "print(before == after, before, after)\n"
    )
    result = _run_python("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("True"), result.stdout


def test_thread_count_holds_in_every_python_thread():
    # The probe returns the multiply-adds its OpenMP region did: 160 (AVX2) or 20 (portable) per
    # round per thread, so it tells how many threads a kernel called from that thread used.
    import threading

    previous = ft.get_num_threads()
    per_thread = ft._C.fma_probe(10) // previous
    results = {}

    def worker():
        results["count"] = ft.get_num_threads()
        results["flops"] = ft._C.fma_probe(10)

    try:
        for threads in (1, 2, 3):
            ft.set_num_threads(threads)
            thread = threading.Thread(target=worker)
            thread.start()
            thread.join()
            assert results == {"count": threads, "flops": per_thread * threads}
    finally:
        ft.set_num_threads(previous)


@pytest.mark.parametrize("threads, error", [(0, ValueError), (1025, ValueError), (2 ** 40, ValueError),
                                            (1.5, TypeError), (True, TypeError)])
def test_thread_count_is_checked(threads, error):
    with pytest.raises(error, match="threads"):
        ft.set_num_threads(threads)
