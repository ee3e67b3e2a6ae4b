"""Fixtures shared by the test files: every CPU SIMD path the machine can run, and a seeded
random generator."""

import numpy as np
import pytest

from fusedtrain import _C

SIMD_PATHS = [path for path in ("portable", "avx2+fma") if _C.simd_available(path)]


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
