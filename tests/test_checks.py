"""The argument checks every op shares: the overlap test against NumPy's own."""

import numpy as np
import pytest

from fusedtrain.ops import _checks as check


def _views(base):
    """Views of one buffer: whole, slices, strided, reversed, transposed, empty, reshaped."""
    matrix = base[:60].reshape(6, 10)
    return [base, base[:30], base[30:], base[10:40], base[::2], base[1::2], base[::-1], base[40:20:-3],
            base[5:5], matrix, matrix.T, matrix[:, 3:7], matrix[2:4], matrix[::-1, ::2], matrix[:, :0],
            base[:60].reshape(3, 4, 5)[:, 1:3, ::2]]


def test_overlap_agrees_with_numpy_bounds():
    base = np.arange(64, dtype=np.float32)
    other = np.zeros(64, np.float32)
    views = _views(base) + [other, other[3:9], base.view(np.int32)[7:20], base.view(np.uint8)[41:43]]
    for first in views:
        for second in views:
            expected = np.may_share_memory(first, second)
            code = check.overlap(first, second)
            assert (code != 0) == expected, (first.shape, first.strides, second.shape, second.strides)
            same = (first.__array_interface__["data"][0] == second.__array_interface__["data"][0]
                    and first.shape == second.shape and first.strides == second.strides
                    and first.itemsize == second.itemsize and first.size > 0)
            assert (code == 2) == same


def test_in_place_allowance_needs_the_same_elements():
    base = np.zeros(20, np.float32)
    check.no_overlap(base, "out", {"x": base}, in_place=("x",))
    with pytest.raises(ValueError, match="out: shares memory with x; pass a separate array"):
        check.no_overlap(base[1:], "out", {"x": base[:-1]}, in_place=("x",))
    with pytest.raises(ValueError, match="out: shares memory with grad"):
        check.no_overlap(base, "out", {"x": np.ones(3, np.float32), "grad": base}, in_place=("x",))
