"""Data sets shipped inside the package, so that examples and ``fusedtrain train`` run without a
network or any extra dependency."""

from __future__ import annotations

from importlib import resources
from typing import Tuple

import numpy as np

__all__ = ["load_digits"]

DIGITS_SAMPLES = 1797
DIGITS_FEATURES = 64


def load_digits() -> Tuple[np.ndarray, np.ndarray]:
    """The optical recognition of handwritten digits data set (UCI Machine Learning Repository,
    E. Alpaydin and C. Kaynak, 1998, CC BY 4.0; the copy scikit-learn's ``load_digits`` returns):
    1797 images of 8x8 pixels whose values are counts in 0..16.

    Returns ``(x, y)``: x float32 of shape (1797, 64), the images row by row; y int64 of shape
    (1797,), the digits 0..9. Each call returns new arrays. The attribution and licence are in
    the package's ``_data/DIGITS_LICENSE.txt``."""
    source = resources.files(__package__) / "_data" / "digits.npz"
    with source.open("rb") as handle, np.load(handle) as stored:
        x = stored["x"].astype(np.float32)
        y = stored["y"].astype(np.int64)
    return x, y
