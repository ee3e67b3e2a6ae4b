"""The CUDA backend: CuPy arrays on one GPU. Parameters, gradients, optimizer state, the data
of a fit and every per-batch buffer live on the device; a training step launches kernels on
CuPy's current stream and reads nothing back.

- Data: NumPy inputs are copied to the GPU once per fit, evaluate or predict call; CuPy
  arrays on the model's GPU are used in place. Data larger than the GPU's free memory raises
  RuntimeError (streaming from the host is not supported yet).
- Shuffling: the permutation is drawn on the host by the same NumPy generator as on the CPU
  (so both devices see the same batches and a checkpoint's generator state is portable), copied
  to the GPU once per epoch, and the batch gather (cupy.take) runs on the GPU.
- Running sums: each loss and metric op stores its batch value into a float64 slot on the
  device (loss_out=, out=), and two small kernels add the slots, weighted by the batch size, to
  the epoch's sums. The sums are read (one synchronisation) when a callback reads the batch
  logs, at the end of an epoch, and every NAN_CHECK_BATCHES batches for terminate_on_nan: on
  the GPU a non-finite loss is found at the next check, not before its batch's update."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Dict, Iterator, List

import numpy as np

# Batches between two reads of the running loss for terminate_on_nan (one 8-byte read each).
NAN_CHECK_BATCHES = 100
# The share of the GPU's free memory that a fit's data may take (the rest: weights, buffers).
DATA_MEMORY_SHARE = 0.8


class DeviceTotals:
    """The weighted sums of a fit's or an evaluation's loss and metrics, on the GPU."""

    def __init__(self, xp: Any, count: int):
        self.xp = xp
        self.values = xp.zeros(count, dtype=xp.float64)
        self.sums = xp.zeros(count, dtype=xp.float64)
        self.scratch = xp.zeros(count, dtype=xp.float64)
        self.seen = 0

    def slot(self, index: int) -> Any:
        return self.values[index:index + 1]

    def finite(self, loss: Any, penalty: Any) -> bool:
        # Known only at the next check (check_due): nothing is read back per batch.
        return True

    def add(self, values: List[Any], penalty: Any, rows: int) -> None:
        if not (isinstance(penalty, float) and penalty == 0.0):
            self.xp.add(self.values[:1], penalty, out=self.values[:1])
        self.xp.multiply(self.values, float(rows), out=self.scratch)
        self.xp.add(self.sums, self.scratch, out=self.sums)
        self.seen += rows

    def check_due(self, batch: int) -> bool:
        return (batch + 1) % NAN_CHECK_BATCHES == 0

    def loss_is_finite(self) -> bool:
        return math.isfinite(float(self.sums[0].get()))

    def means(self, names: List[str]) -> Dict[str, float]:
        sums = self.sums.get()
        return {name: float(total) / self.seen for name, total in zip(names, sums)}

    def batch_logs(self, names: List[str]) -> "LazyLogs":
        return LazyLogs(self, names)


class LazyLogs(Mapping):
    """A batch's logs that read the running sums from the GPU only when a callback looks."""

    def __init__(self, totals: DeviceTotals, names: List[str]):
        self._totals = totals
        self._names = list(names)
        self._seen = totals.seen
        self._values = None

    def _read(self) -> Dict[str, float]:
        if self._values is None:
            sums = self._totals.sums.get()
            self._values = {name: float(total) / self._seen for name, total in zip(self._names, sums)}
        return self._values

    def __getitem__(self, key: str) -> float:
        return self._read()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class CudaBackend:
    """CuPy on GPU ``index``."""

    kind = "cuda"
    reason = None

    def __init__(self, index: int):
        import cupy

        self.xp = cupy
        self.index = index
        self.name = f"cuda:{index}"

    def scope(self):
        """Makes the model's GPU current (CuPy's device context)."""
        return self.xp.cuda.Device(self.index)

    def is_device_array(self, value: Any) -> bool:
        return isinstance(value, self.xp.ndarray) and value.device.id == self.index

    def to_device(self, array: Any, name: str = "x") -> Any:
        """A NumPy array copied to the GPU; a CuPy array on this GPU as it is."""
        if self.is_device_array(array):
            return array
        free, _ = self.xp.cuda.runtime.memGetInfo()
        if array.nbytes > DATA_MEMORY_SHARE * free:
            gib = 2.0 ** 30
            raise RuntimeError(f"{name}: {array.nbytes / gib:.3g} GiB does not fit in the "
                               f"{free / gib:.3g} GiB free on GPU {self.index} (streaming data from the "
                               f"host is not supported yet); train on a part of it, or on device='cpu'")
        with self.scope():
            return self.xp.asarray(array)

    def to_host(self, array: Any, copy: bool = False) -> np.ndarray:
        return self.xp.asnumpy(array)

    def assign(self, target: Any, values: Any) -> None:
        """Copies host (or device) values into the device array ``target`` in place."""
        if isinstance(values, self.xp.ndarray):
            self.xp.copyto(target, values)
            return
        target.set(np.ascontiguousarray(np.broadcast_to(np.asarray(values, dtype=target.dtype), target.shape)))

    def indices(self, order: np.ndarray) -> Any:
        return self.xp.asarray(order)

    def take_rows(self, source: Any, indices: Any, out: Any) -> Any:
        return self.xp.take(source, indices, axis=0, out=out)

    def scalar_slot(self) -> Any:
        return self.xp.zeros(1, dtype=self.xp.float64)

    def read(self, value: Any) -> float:
        if isinstance(value, self.xp.ndarray):
            # A one-element slot (shape (1,)) or a scalar: NumPy 2 converts neither with float().
            return float(value.get().item())
        return float(value)

    def totals(self, count: int) -> DeviceTotals:
        return DeviceTotals(self.xp, count)

    def __repr__(self) -> str:
        return f"CudaBackend({self.index})"
