"""The CPU backend: NumPy arrays in host memory. Moving data to "the device" is the identity,
and the running sums of a fit are Python floats, so that every batch's loss is known on the
host at once (terminate_on_nan checks each batch before its update)."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

import numpy as np

from .. import _C


class HostTotals:
    """The weighted sums of a fit's or an evaluation's loss and metrics, as Python floats.
    ``slot(i)`` is where an op would store value i: None, the ops return Python numbers here."""

    def __init__(self, count: int):
        self.sums = [0.0] * count
        self.seen = 0

    def slot(self, index: int) -> None:
        return None

    def finite(self, loss: float, penalty: float) -> bool:
        return math.isfinite(loss + penalty)

    def add(self, values: List[Any], penalty: float, rows: int) -> None:
        sums = self.sums
        sums[0] += (values[0] + penalty) * rows
        for index in range(1, len(sums)):
            sums[index] += values[index] * rows
        self.seen += rows

    def check_due(self, batch: int) -> bool:
        """Whether the loss should be read for a divergence check after this batch (never:
        ``finite`` checked it before the update)."""
        return False

    def means(self, names: List[str]) -> Dict[str, float]:
        return {name: total / self.seen for name, total in zip(names, self.sums)}

    def batch_logs(self, names: List[str]) -> Dict[str, float]:
        return self.means(names)


class CpuBackend:
    """NumPy on the host. ``reason``: why device="auto" chose the CPU (None when asked for)."""

    kind = "cpu"
    name = "cpu"
    xp = np

    def __init__(self, reason: Optional[str] = None):
        self.reason = reason

    def scope(self):
        return _NoScope()

    def to_device(self, array: np.ndarray, name: str = "x") -> np.ndarray:
        return array

    def to_host(self, array: np.ndarray, copy: bool = False) -> np.ndarray:
        return np.array(array) if copy else array

    def assign(self, target: np.ndarray, values: Any) -> None:
        target[...] = values

    def indices(self, order: np.ndarray) -> np.ndarray:
        return order

    def take_rows(self, source: np.ndarray, indices: np.ndarray, out: np.ndarray) -> np.ndarray:
        # The loader's arrays are C-contiguous and its permutations int64. The kernel copies the
        # rows on the kernels' threads (numpy.take uses one): 256 MNIST rows out of 60,000 in
        # 55 us instead of 86 on two.
        _C.gather_rows(source, indices, out)
        return out

    def scalar_slot(self) -> None:
        """Where an op may store a reduced value without a read-back: nowhere on the CPU."""
        return None

    def read(self, value: Any) -> float:
        return float(value)

    def totals(self, count: int) -> HostTotals:
        return HostTotals(count)

    def __repr__(self) -> str:
        return "CpuBackend()"


class _NoScope:
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False
