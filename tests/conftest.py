"""Fixtures shared by the test files: every CPU SIMD path the machine can run, a seeded random
generator, and one kernel thread for the files that train tiny models."""

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import _C

SIMD_PATHS = [path for path in ("portable", "avx2+fma", "avx512") if _C.simd_available(path)]


@pytest.fixture(params=SIMD_PATHS)
def simd_path(request):
    """Runs the test once per available CPU kernel path, restoring the previous path after."""
    previous = _C.simd_path()
    _C.set_simd_path(request.param)
    yield request.param
    _C.set_simd_path(previous)


@pytest.fixture
def rng():
    """A generator with a fixed seed, so that every failure reproduces."""
    return np.random.default_rng(20240607)


@pytest.fixture(scope="module")
def one_thread():
    """One kernel thread for a test file of tiny models (use with pytest.mark.usefixtures): a
    second thread gains nothing there, and on a loaded machine every parallel region waits for
    a time slice. The threaded kernel paths have their own tests."""
    previous = ft.get_num_threads()
    ft.set_num_threads(1)
    yield
    ft.set_num_threads(previous)
