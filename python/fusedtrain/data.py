"""Data handling for training: the input conversion rule, a seeded train/validation/test split
(optionally stratified), and a batch loader that shuffles through an index permutation and
gathers each batch into buffers allocated once, so that an epoch never copies the data set.

Conversion rule: features and float targets are used as float32. A float32 array is used as
is (a non-contiguous or unaligned one is copied once into a contiguous, aligned array); any
other numeric array (float64, integers, booleans) is converted once with
``np.asarray(x, dtype=np.float32)``, which rounds to float32 precision. A value that overflows
float32, a NaN or an infinity raises ValueError naming the argument and the position."""

from __future__ import annotations

from typing import Any, Iterator, Optional, Sequence, Tuple

import numpy as np

from .backends import CpuBackend
from .ops import _checks as check
from .tables import TablePreprocessor  # noqa: F401  (fusedtrain.data.TablePreprocessor)


def _as_array(values: Any, name: str) -> np.ndarray:
    """np.asarray(values), with the argument named when NumPy cannot read it (ragged lists)."""
    if values is None:
        raise TypeError(f"{name}: expected an array of numbers, got None")
    try:
        return np.asarray(values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: cannot be read as an array of numbers ({error})") from None


def _numeric(array: np.ndarray, name: str) -> None:
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected numeric values, got dtype {array.dtype}")


def to_float32(values: Any, name: str) -> np.ndarray:
    """``values`` as a float32 array (the array itself when it already is one), all finite."""
    array = _as_array(values, name)
    _numeric(array, name)
    with np.errstate(over="ignore"):
        result = np.asarray(array, dtype=np.float32)
    finite = np.isfinite(result)
    if not finite.all():
        position = tuple(int(i) for i in np.argwhere(~finite)[0])
        where = _describe_position(position)
        original = array[position]
        if array.dtype.kind == "f" and np.isfinite(original):
            raise ValueError(f"{name}: the value {float(original):g} at {where} overflows float32 (largest "
                             f"magnitude {np.finfo(np.float32).max:.4g}); rescale the data")
        raise ValueError(f"{name}: contains {float(result[position])} at {where}; remove or impute non-finite "
                         f"values first")
    return result


def _describe_position(position: Tuple[int, ...]) -> str:
    if len(position) == 1:
        return f"index {position[0]}"
    if len(position) == 2:
        return f"row {position[0]}, column {position[1]}"
    return f"index {position}"


def features(x: Any, name: str = "x", input_dim: Optional[int] = None) -> np.ndarray:
    """``x`` checked to be a non-empty 2-D numeric array (of ``input_dim`` columns when given),
    returned as a C-contiguous, aligned float32 array (converted once, see the module's rule)."""
    array = _as_array(x, name)
    # The type first: a string or an object is not data of the wrong shape.
    _numeric(array, name)
    if array.ndim == 1 and array.size and (input_dim is None or array.size == input_dim):
        raise ValueError(f"{name}: expected a 2-D array (samples, features), got shape {array.shape}; for one "
                         f"sample pass {name}.reshape(1, -1), for one feature {name}.reshape(-1, 1)")
    if array.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (samples, features), got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name}: empty data (0 samples)")
    if array.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one feature column, got shape {array.shape}")
    if input_dim is not None and array.shape[1] != input_dim:
        raise ValueError(f"{name}: the model takes {input_dim} features per sample, got {array.shape[1]} "
                         f"(shape {array.shape})")
    return np.require(to_float32(array, name), requirements="CA")


def _fractions(fractions: Sequence[float]) -> Tuple[float, float, float]:
    if isinstance(fractions, (str, bytes)) or not isinstance(fractions, Sequence) or len(fractions) != 3:
        raise ValueError(f"fractions: expected three numbers (train, validation, test), got {fractions!r}")
    values = tuple(check.real(value, f"fractions[{index}]", low=0.0, high=1.0)
                   for index, value in enumerate(fractions))
    if abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(f"fractions: expected fractions that sum to 1, got {fractions!r} (sum {sum(values):g})")
    if values[0] == 0.0:
        raise ValueError("fractions: the training fraction must be positive")
    return values


def _split_counts(count: int, fractions: Tuple[float, float, float]) -> Tuple[int, int, int]:
    """Sizes of the three parts of ``count`` items: validation and test are rounded, training
    takes the rest."""
    validation = int(round(count * fractions[1]))
    test = int(round(count * fractions[2]))
    return count - validation - test, validation, test


def train_val_test_split(x: Any, y: Any, fractions: Sequence[float] = (0.7, 0.15, 0.15), *,
                         stratify: Any = None, seed: Optional[int] = None, shuffle: bool = True):
    """Splits ``x`` and ``y`` into ``(x_train, y_train), (x_val, y_val), (x_test, y_test)``.

    ``fractions`` (non-negative, summing to 1) give the share of each part; validation and test
    sizes are rounded and training takes the rest. ``shuffle`` permutes the samples with a NumPy
    Generator seeded by ``seed`` first (without it the parts are consecutive slices).
    ``stratify`` (usually ``y``) is a label per sample: the split is then made class by class,
    so each part keeps the class proportions. The parts are new arrays of x's and y's types."""
    x_array, y_array = np.asarray(x), np.asarray(y)
    if x_array.ndim == 0 or y_array.ndim == 0:
        raise ValueError("x, y: expected arrays with one entry per sample, got a scalar")
    count = x_array.shape[0]
    if y_array.shape[0] != count:
        raise ValueError(f"y: expected {count} samples (as many as x), got {y_array.shape[0]}")
    if count == 0:
        raise ValueError("x: empty data (0 samples)")
    values = _fractions(fractions)
    if seed is not None:
        seed = check.integer(seed, "seed", low=0)
    rng = np.random.default_rng(seed)
    if stratify is None:
        order = rng.permutation(count) if shuffle else np.arange(count)
        train, validation, _ = _split_counts(count, values)
        parts = np.split(order, [train, train + validation])
    else:
        parts = _stratified_parts(np.asarray(stratify), count, values, rng, shuffle)
    return tuple((x_array[indices], y_array[indices]) for indices in parts)


def _stratified_parts(labels: np.ndarray, count: int, fractions, rng, shuffle: bool):
    if labels.ndim != 1 or labels.shape[0] != count:
        raise ValueError(f"stratify: expected one label per sample, shape ({count},), got shape {labels.shape}")
    _, inverse = np.unique(labels, return_inverse=True)
    parts = ([], [], [])
    for group in range(int(inverse.max()) + 1):
        members = np.flatnonzero(inverse == group)
        if shuffle:
            members = rng.permutation(members)
        train, validation, _ = _split_counts(members.size, fractions)
        for part, indices in zip(parts, np.split(members, [train, train + validation])):
            part.append(indices)
    result = []
    for part in parts:
        indices = np.concatenate(part)
        # Interleave the classes again so that consecutive samples are not sorted by class.
        result.append(rng.permutation(indices) if shuffle else np.sort(indices))
    return result


class BatchLoader:
    """Yields ``(x_batch, y_batch)`` for one pass over ``x`` and ``y`` (arrays with one row per
    sample) per iteration, in batches of ``batch_size`` rows; the last batch holds the rest.

    With ``shuffle`` each pass draws a new permutation from ``rng`` and gathers the rows into
    buffers allocated once (``take`` with ``out=``); the batches are views of those buffers,
    valid until the next batch. Without it the batches are slices of ``x`` and ``y``.
    With ``sample_weight`` (one weight per sample) it yields ``(x_batch, y_batch, w_batch)``,
    as a Keras data set of (x, y, sample_weight); the order is the same as without.

    Data-parallel training (fusedtrain.distributed): ``part=(rank, size)`` yields only rank's
    contiguous size-th of each batch (possibly empty); ``steps`` makes each pass exactly
    ``steps`` batches whose sizes differ by one row at most (batch_size is then not used).
    ``backend`` (fusedtrain.backends) owns the arrays: on a GPU x, y and the buffers are CuPy
    arrays, the permutation (drawn on the host) is copied there once per pass, and the gather
    runs on the GPU."""

    def __init__(self, x: Any, y: Any, batch_size: int, shuffle: bool = True,
                 rng: Optional[np.random.Generator] = None, backend: Any = None, sample_weight: Any = None,
                 part: Tuple[int, int] = (0, 1), steps: Optional[int] = None):
        self.backend = backend = backend if backend is not None else CpuBackend()
        xp = backend.xp
        self.x = check.array(x, "x", dtype=x.dtype, xp=xp)
        self.y = check.array(y, "y", dtype=y.dtype, xp=xp)
        if self.y.shape[0] != self.x.shape[0]:
            raise ValueError(f"y: expected {self.x.shape[0]} rows (as many as x), got {self.y.shape[0]}")
        self.weights = None
        if sample_weight is not None:
            self.weights = check.array(sample_weight, "sample_weight", dtype=np.float32, ndim=1, xp=xp)
            if self.weights.shape[0] != self.x.shape[0]:
                raise ValueError(f"sample_weight: expected {self.x.shape[0]} weights (one per sample), "
                                 f"got {self.weights.shape[0]}")
        if self.x.shape[0] == 0:
            raise ValueError("x: empty data (0 samples)")
        self.batch_size = check.integer(batch_size, "batch_size", low=1)
        self.shuffle = bool(shuffle)
        if self.shuffle and not isinstance(rng, np.random.Generator):
            raise TypeError("rng: shuffling needs a numpy.random.Generator")
        self.rng = rng
        self.rank, self.size = part
        self.steps = None if steps is None else check.integer(steps, "steps", low=1)
        rows = self._largest_batch()
        self._x_buffer = xp.empty((rows,) + self.x.shape[1:], dtype=self.x.dtype) if self.shuffle else None
        self._y_buffer = xp.empty((rows,) + self.y.shape[1:], dtype=self.y.dtype) if self.shuffle else None
        self._w_buffer = xp.empty(rows, dtype=np.float32) if self.shuffle and self.weights is not None else None

    def __len__(self) -> int:
        return self.steps if self.steps is not None else -(-self.x.shape[0] // self.batch_size)

    def _bounds(self) -> Iterator[Tuple[int, int]]:
        """[start, stop) of each batch in the pass's order, this rank's part of it."""
        count = self.x.shape[0]
        if self.steps is None:
            edges = list(range(0, count, self.batch_size)) + [count]
        else:
            base, extra = divmod(count, self.steps)
            edges = [step * base + min(step, extra) for step in range(self.steps + 1)]
        for start, stop in zip(edges[:-1], edges[1:]):
            rows = stop - start
            yield start + rows * self.rank // self.size, start + rows * (self.rank + 1) // self.size

    def _largest_batch(self) -> int:
        return max([stop - start for start, stop in self._bounds()] + [1])

    def __iter__(self) -> Iterator[Tuple[Any, ...]]:
        count = self.x.shape[0]
        order = self.backend.indices(self.rng.permutation(count)) if self.shuffle else None
        sources = (self.x, self.y) if self.weights is None else (self.x, self.y, self.weights)
        buffers = (self._x_buffer, self._y_buffer, self._w_buffer)
        for start, stop in self._bounds():
            if order is None:
                yield tuple(source[start:stop] for source in sources)
                continue
            indices = order[start:stop]
            rows = stop - start
            yield tuple(self.backend.take_rows(source, indices, buffer[:rows])
                        for source, buffer in zip(sources, buffers))
