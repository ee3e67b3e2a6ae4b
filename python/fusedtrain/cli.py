"""The command line's work: ``fusedtrain train``, ``evaluate`` and ``predict`` on data files
(CSV with a header row, .npz holding x and y, or .npy files) or on the bundled digits.
``__main__`` parses the arguments and calls ``train`` / ``evaluate`` / ``predict`` here.

Every mistake a user can make (a missing file, a non-numeric column, an unknown target column,
a model file from another tool, labels the model does not know) raises UsageError with one
line that says what is wrong; ``__main__`` prints it and exits with status 2.

A model file written by ``train`` is an ordinary fusedtrain model file: its first layer is a
Normalization layer holding the feature scaling, so ``fusedtrain.load(path).predict(x)``
takes raw features; its metadata entry "task" (JSON) records the task, the class labels in
the order of the model's outputs, the target's name and the feature columns."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import stat
import time
import warnings
import zipfile
from dataclasses import dataclass
from typing import Any, BinaryIO, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from . import _files, backends, distributed, layers, serialization, tables
from .callbacks import EarlyStopping
from .data import to_float32, train_val_test_split
from .datasets import load_digits
from .layers import Dense, _physical_memory
from .models import Sequential
from .optimizers import SGD, Adam, AdamW, RMSprop

CLASSIFICATION = "classification"
REGRESSION = "regression"
TASKS = ("auto", CLASSIFICATION, REGRESSION)
ACTIVATIONS = ("relu", "leaky_relu", "gelu", "tanh", "sigmoid")
OPTIMIZERS = {"adam": Adam, "adamw": AdamW, "sgd": SGD, "rmsprop": RMSprop}
# The metadata entry of a model file that holds what the command line knows about the task.
TASK_METADATA_KEY = "task"
# --task auto takes integer targets with at most this many distinct values for class labels.
MAX_INFERRED_CLASSES = 20
FLOAT32_MAX = float(np.finfo(np.float32).max)
DIGITS = "the bundled digits (UCI optical recognition of handwritten digits)"
COLUMN_OPTIONS = ("categorical", "numeric", "drop", "keep")
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
# The delimiters a CSV file may use (sniffed from its first lines).
DELIMITERS = ",;\t|"
# The longest line a CSV file may have: a file without line breaks (a binary file, or a huge
# file of zeros named .csv) is refused once this much is read, rather than read whole.
MAX_CSV_LINE_CHARS = 2**24


class UsageError(Exception):
    """A mistake the user can fix; the message is one line."""


# Reading data -------------------------------------------------------------------------------------

@dataclass
class Dataset:
    """Features and (raw) targets read from one source.

    x: float32 (samples, features); for a table (CSV, Parquet) None until encoded, ``table``
    holding its raw feature columns (a DataFrame). y: the targets as read: float64 numbers, or
    strings (a NumPy unicode array) for class labels; None when the source has none. For a
    table, ``labeled`` marks the rows with a target (y holds those rows' targets only).
    ``lines`` maps each sample to its line in a CSV file (None otherwise), for messages."""

    x: Optional[np.ndarray]
    y: Optional[np.ndarray]
    source: str
    feature_names: Optional[List[str]] = None
    target_name: Optional[str] = None
    lines: Optional[List[int]] = None
    table: Any = None
    labeled: Optional[np.ndarray] = None

    @property
    def samples(self) -> int:
        return len(self.table) if self.table is not None else self.x.shape[0]

    def where(self, index: int) -> str:
        """Sample ``index`` as a message names it: "row 3 (line 4)" or "index 3"."""
        if self.labeled is not None:
            index = int(np.flatnonzero(self.labeled)[index])
        if self.lines is None:
            return f"index {index}" if self.table is None else f"row {index + 1}"
        return f"row {index + 1} (line {self.lines[index]})"


def _suffix(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def _check_readable(path: str) -> None:
    """A UsageError unless ``path`` is a regular file (checked again as _open opens it)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except OSError as error:
        raise UsageError(f"{path}: cannot be read ({error.strerror})") from None
    if stat.S_ISDIR(mode):
        raise UsageError(f"{path}: is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise UsageError(str(_files.not_regular_error(path, mode)))


def _open(path: str) -> Tuple[BinaryIO, int]:
    """(the regular file ``path`` open for reading, its size); a UsageError for anything else.
    Every data file is read through this: a FIFO or a device never blocks or floods a reader."""
    try:
        return _files.open_regular(path)
    except ValueError as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"{path}: cannot be read ({error.strerror})") from None


def read_dataset(paths: Sequence[str], *, target: Optional[str] = None, target_required: bool = True,
                 default_target: Optional[str] = None) -> Dataset:
    """Reads DATA as the command line names it: nothing (the bundled digits), one .csv or
    Parquet file (a table: ``Dataset.table``), one .npz file, one .npy file of features, or two
    .npy files (features, then targets).

    Tables: ``target`` names the target column; without it ``default_target`` (when the file
    has that column) or, when a target is required, the last column. Every other column is a
    feature column; rows without a target value are marked in ``Dataset.labeled``."""
    paths = list(paths)
    if len(paths) > 2:
        raise UsageError(f"expected one data file (.csv or .npz) or two .npy files (features, targets), got "
                         f"{len(paths)} paths")
    if not paths:
        if target is not None:
            raise UsageError("--target names a column of a CSV file; without DATA the bundled digits are used")
        x, y = load_digits()
        return Dataset(x, y.astype(np.float64), DIGITS)
    for path in paths:
        _check_readable(path)
    suffixes = [_suffix(path) for path in paths]
    if target is not None and suffixes[0] not in TABLE_SUFFIXES:
        raise UsageError(f"--target names a column of a CSV file; {paths[0]} is not one (.npz files hold x and "
                         f"y, .npy files one array each)")
    if len(paths) == 2:
        if suffixes != [".npy", ".npy"]:
            raise UsageError(f"two data files must be .npy files (features, then targets), got "
                             f"{paths[0]} and {paths[1]}")
        x = _features_array(_load_npy(paths[0]), paths[0])
        return Dataset(x, _targets_array(_load_npy(paths[1]), paths[1], x.shape[0]),
                       f"{paths[0]} + {paths[1]}")
    path, suffix = paths[0], suffixes[0]
    if suffix in TABLE_SUFFIXES:
        return _read_table_dataset(path, target, target_required, default_target)
    if suffix == ".npz":
        return _read_npz(path, target_required)
    if suffix == ".npy":
        if target_required:
            raise UsageError(f"{path}: a .npy file holds one array; give the features and the targets as two "
                             f"files (x.npy y.npy) or one .npz file holding x and y")
        return Dataset(_features_array(_load_npy(path), path), None, path)
    raise UsageError(f"{path}: unsupported data file; expected .csv (with a header row), .parquet, .npz (holding x "
                     f"and y) or .npy")


_NPY_MAGIC = b"\x93NUMPY"


def _read_npy(stream: BinaryIO, available: int, name: str, kind: str) -> np.ndarray:
    """The array of the .npy data at the start of ``stream``, which holds ``available`` bytes
    (a file, or a member of an .npz archive). The header is read first: an array of Python
    objects, or one whose data would not be exactly the bytes after the header, or one larger
    than the machine's memory is refused before any of its data is read."""
    unreadable = f"{name}: not a readable {kind} file"
    try:
        try:
            offset = _files.npy_layout(stream, available)[3]
        except _files.NpyObjects as error:
            raise UsageError(f"{name}: {error}; save numbers or strings") from None
        size = available - offset
        memory = _physical_memory()
        if memory is not None and size > memory:
            raise UsageError(f"{name}: holds an array of {size / 2**30:.4g} GiB, more than this machine's "
                             f"{memory / 2**30:.4g} GiB of memory")
        stream.seek(0)
        return np.lib.format.read_array(stream, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise UsageError(f"{unreadable} ({error})") from None


def _load_npy(path: str) -> np.ndarray:
    handle, size = _open(path)
    with handle:
        return _read_npy(handle, size, path, ".npy")


def _read_npz(path: str, target_required: bool) -> Dataset:
    handle, _ = _open(path)
    with handle:
        if handle.read(len(_NPY_MAGIC)) == _NPY_MAGIC:
            raise UsageError(f"{path}: not an .npz archive (np.savez); a single array belongs in a .npy file")
        handle.seek(0)
        try:
            archive = zipfile.ZipFile(handle)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
            raise UsageError(f"{path}: not a readable .npz file ({error})") from None
        with archive:
            # np.savez stores the array "x" as the member "x.npy".
            members = {name[:-len(".npy")] if name.endswith(".npy") else name: name for name in archive.namelist()}
            keys = list(members)
            needed = ["x", "y"] if target_required else ["x"]
            missing = [key for key in needed if key not in keys]
            if missing:
                raise UsageError(f"{path}: expected arrays named {' and '.join(needed)} (np.savez(path, x=..., "
                                 f"y=...)), found {_columns(keys) if keys else 'none'}")
            x = _npz_member(archive, members["x"], path)
            y = _npz_member(archive, members["y"], path) if "y" in keys else None
    x = _features_array(x, f"{path}: x")
    return Dataset(x, None if y is None else _targets_array(y, f"{path}: y", x.shape[0]), path)


def _npz_member(archive: zipfile.ZipFile, member: str, path: str) -> np.ndarray:
    """The array of one member of an .npz archive, bounded by the size its entry declares
    (which also bounds the decompression)."""
    try:
        info = archive.getinfo(member)
        with archive.open(info) as stream:
            return _read_npy(stream, info.file_size, path, ".npz")
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as error:
        # NotImplementedError: a compression method zipfile lacks; RuntimeError: encryption.
        raise UsageError(f"{path}: not a readable .npz file ({error})") from None


def _features_array(values: np.ndarray, name: str) -> np.ndarray:
    if values.dtype.kind not in "biuf":
        raise UsageError(f"{name}: features must be numbers, got an array of dtype {values.dtype}")
    if values.ndim != 2:
        raise UsageError(f"{name}: expected a 2-D array (samples, features), got shape {values.shape}")
    if values.shape[0] == 0 or values.shape[1] == 0:
        raise UsageError(f"{name}: empty data (shape {values.shape})")
    try:
        return np.require(to_float32(values, name), requirements="CA")
    except (TypeError, ValueError) as error:
        raise UsageError(str(error)) from None


def _targets_array(values: np.ndarray, name: str, samples: int) -> np.ndarray:
    if values.ndim == 0 or values.ndim > 2:
        raise UsageError(f"{name}: expected one target per sample (1-D, or 2-D for several regression "
                         f"outputs), got shape {values.shape}")
    if values.shape[0] != samples:
        raise UsageError(f"{name}: {values.shape[0]} targets for {samples} samples; both need one entry per "
                         f"sample")
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.dtype.kind in "US":
        if values.ndim != 1:
            raise UsageError(f"{name}: class labels must be one per sample (1-D), got shape {values.shape}")
        return np.char.strip(values.astype(str))
    if values.dtype.kind not in "biuf":
        raise UsageError(f"{name}: targets must be numbers or strings, got an array of dtype {values.dtype}")
    targets = values.astype(np.float64)
    finite = np.isfinite(targets)
    if not finite.all():
        index = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise UsageError(f"{name}: the target at index {index[0]} is {targets[index]}; remove or fill missing "
                         f"targets")
    return targets


def _read_csv(path: str) -> Tuple[List[str], List[List[str]], List[int]]:
    """The header, the data rows (blank lines skipped) and each row's line number."""
    binary, _ = _open(path)
    try:
        with io.TextIOWrapper(binary, encoding="utf-8-sig", newline="") as handle:
            sample = handle.read(1 << 16)
            if "\x00" in sample:
                raise UsageError(f"{path}: holds NUL bytes, which no text file does (is it a CSV file?)")
            handle.seek(0)
            reader = csv.reader(_lines(handle, path), delimiter=_delimiter(sample))
            header = None
            rows, lines = [], []
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                if header is None:
                    header = [cell.strip() for cell in row]
                    continue
                if len(row) != len(header):
                    raise UsageError(f"{path}, line {reader.line_num}: {len(row)} fields, but the header has "
                                     f"{len(header)}")
                rows.append(row)
                lines.append(reader.line_num)
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a text file in UTF-8 (is it a CSV file?)") from None
    except csv.Error as error:
        raise UsageError(f"{path}: not a readable CSV file ({error})") from None
    except OSError as error:
        raise UsageError(f"{path}: cannot be read ({error.strerror})") from None
    if header is None:
        raise UsageError(f"{path}: the file is empty; expected a header row and data rows")
    if not rows:
        raise UsageError(f"{path}: no data rows below the header")
    for index, name in enumerate(header):
        if not name:
            raise UsageError(f"{path}: column {index + 1} of the header has no name")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise UsageError(f"{path}: the header names the column {duplicates[0]!r} more than once")
    return header, rows, lines


def _lines(handle: io.TextIOBase, path: str) -> Iterator[str]:
    """The lines of ``handle``, each read with a bound of MAX_CSV_LINE_CHARS characters."""
    number = 0
    while True:
        line = handle.readline(MAX_CSV_LINE_CHARS + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_CSV_LINE_CHARS and line[-1] not in "\r\n":
            raise UsageError(f"{path}, line {number}: longer than {MAX_CSV_LINE_CHARS:,} characters (a file "
                             f"without line breaks is no CSV file)")
        yield line


def _delimiter(sample: str) -> str:
    """The sample's delimiter among DELIMITERS: csv.Sniffer's answer when the header splits
    into several fields with it, else a comma."""
    try:
        found = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        return ","
    header = sample.splitlines()[0] if sample.splitlines() else ""
    return found if found != "," and len(next(csv.reader([header], delimiter=found), [])) > 1 else ","


def _columns(names: Sequence[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:12])
    return shown + (f", ... ({len(names)} in all)" if len(names) > 12 else "")


def _read_frame(path: str):
    """(the table as a DataFrame, the line of each row or None): a CSV file's cells as text
    (every type is inferred later, by the preprocessor), a Parquet file's columns as stored."""
    import pandas as pd

    if _suffix(path) in (".parquet", ".pq"):
        handle, _ = _open(path)
        try:
            with handle:
                frame = pd.read_parquet(handle)
        except ImportError:
            raise UsageError(f"{path}: reading Parquet files needs pyarrow (pip install pyarrow)") from None
        except Exception as error:  # pyarrow's own error types: a damaged or foreign file
            raise UsageError(f"{path}: not a readable Parquet file ({error})") from None
        if frame.shape[1] == 0 or len(frame) == 0:
            raise UsageError(f"{path}: no {'rows' if frame.shape[1] else 'columns'}")
        try:
            return tables.as_frame(frame.reset_index(drop=True), path), None
        except (TypeError, ValueError) as error:
            raise UsageError(str(error)) from None
    header, rows, lines = _read_csv(path)
    cells = list(zip(*rows))
    return pd.DataFrame({name: np.array(cells[index], dtype=object) for index, name in enumerate(header)}), lines


def _read_table_dataset(path: str, target: Optional[str], target_required: bool,
                        default_target: Optional[str]) -> Dataset:
    frame, lines = _read_frame(path)
    header = list(frame.columns)
    if target is not None and target not in header:
        raise UsageError(f"{path}: no column named {target!r} (--target); the columns are {_columns(header)}")
    if target is None and default_target is not None and default_target in header:
        target = default_target
    if target is None and target_required:
        target = header[-1]
    names = [name for name in header if name != target]
    if not names:
        raise UsageError(f"{path}: no feature columns besides the target {target!r} (fusedtrain reads "
                         f"comma-, semicolon-, tab- or bar-separated files)")
    y = labeled = None
    if target is not None:
        y, labeled = _table_target(frame[target], target, path)
    return Dataset(None, y, path, feature_names=names, target_name=target, lines=lines, table=frame[names],
                   labeled=labeled)


def _table_target(column, name: str, path: str) -> Tuple[np.ndarray, np.ndarray]:
    """(the targets of the rows that have one, which rows have one): float64 when every value
    is a number, else the labels as written (strings)."""
    values = tables._Column(column)
    labeled = ~values.missing
    if not labeled.any():
        raise UsageError(f"{path}: the target column {name!r} has no values")
    if values.text is None:
        numbers = values.numbers if values.numbers is not None else values.dates.astype(np.int64).astype(np.float64)
        numbers = numbers[labeled]
    else:
        text = values.text[labeled]
        try:
            numbers = np.array(text.tolist(), dtype=np.float64)
        except ValueError:
            return np.array(text.tolist(), dtype=str), labeled
    if not np.isfinite(numbers).all():
        row = int(np.flatnonzero(labeled)[np.argmax(~np.isfinite(numbers))])
        raise UsageError(f"{path}: the target column {name!r} holds {numbers[np.argmax(~np.isfinite(numbers))]!r} "
                         f"at row {row + 1}, not a finite number")
    return numbers, labeled


def _table_features(dataset: Dataset, names: Optional[List[str]]) -> np.ndarray:
    """A table's features for a model without a preprocessor: the columns ``names`` (all
    when None), each a column of finite numbers."""
    table, path = dataset.table, dataset.source
    header = list(table.columns)
    if names is not None:
        missing = [name for name in names if name not in header]
        if missing:
            raise UsageError(f"{path}: no column named {missing[0]!r}; the model was trained on the columns "
                             f"{_columns(names)}")
        extra = [name for name in header if name not in names]
        if extra:
            raise UsageError(f"{path}: the column {extra[0]!r} is not one of the model's features "
                             f"({_columns(names)}); remove it")
    else:
        names = header
    lines = dataset.lines or list(range(2, len(table) + 2))
    x = np.empty((len(table), len(names)), dtype=np.float32)
    for index, name in enumerate(names):
        cells = ["" if value is None else str(value) for value in table[name].tolist()]
        x[:, index] = _numeric_column(cells, name, lines, path)
    return x


def _numeric_column(cells: Sequence[str], name: str, lines: List[int], path: str) -> np.ndarray:
    """A CSV column as float64, every value a finite number within float32's range."""
    stripped = [cell.strip() for cell in cells]
    try:
        values = np.array(stripped, dtype=np.float64)
    except ValueError:
        for row, cell in enumerate(stripped):
            try:
                float(cell)
            except ValueError:
                shown = "an empty value" if not cell else repr(cell)
                raise UsageError(f"{path}: column {name!r} is not numeric: row {row + 1} (line {lines[row]}) "
                                 f"holds {shown}; features must be numbers") from None
        raise
    bad = ~np.isfinite(values) | (np.abs(values) > FLOAT32_MAX)
    if bad.any():
        row = int(np.argmax(bad))
        reason = ("is too large for float32" if np.isfinite(values[row])
                  else "is not a finite number (fill or drop missing values)")
        raise UsageError(f"{path}: column {name!r}, row {row + 1} (line {lines[row]}): {stripped[row]!r} {reason}")
    return values


# Targets ----------------------------------------------------------------------------------------

def _is_text(y: np.ndarray) -> bool:
    return y.dtype.kind == "U"


def infer_task(y: np.ndarray) -> str:
    """--task auto: class labels for strings and for integers with few distinct values."""
    if _is_text(y):
        return CLASSIFICATION
    if y.ndim == 2:
        return REGRESSION
    if np.array_equal(y, np.round(y)) and np.unique(y).size <= MAX_INFERRED_CLASSES:
        return CLASSIFICATION
    return REGRESSION


def _plain(value: Any) -> Any:
    """A class label as JSON holds it: an int for integral numbers, else a float or a string."""
    if isinstance(value, str):
        return value
    number = float(value)
    return int(number) if number.is_integer() else number


def encode_classes(dataset: Dataset) -> Tuple[np.ndarray, List[Any]]:
    """(class index per sample, the sorted distinct labels)."""
    y = dataset.y
    if y.ndim != 1:
        raise UsageError(f"{dataset.source}: classification needs one label per sample, got targets of shape "
                         f"{y.shape}; use --task regression for several outputs")
    classes, indices = np.unique(y, return_inverse=True)
    labels = [_plain(label) for label in classes.tolist()]
    if len(labels) < 2:
        raise UsageError(f"{dataset.source}: the target holds a single class ({labels[0]!r}); classification "
                         f"needs at least two")
    return indices.astype(np.int64), labels


def map_classes(dataset: Dataset, classes: List[Any]) -> np.ndarray:
    """The class index of each label in ``dataset`` for a model trained on ``classes``; a label
    the model does not know is a UsageError."""
    y = dataset.y
    if y.ndim != 1:
        raise UsageError(f"{dataset.source}: expected one class label per sample, got targets of shape {y.shape}")
    if any(isinstance(label, str) for label in classes):
        lookup = {str(label): index for index, label in enumerate(classes)}
        keys = y.tolist() if _is_text(y) else [str(_plain(value)) for value in y.tolist()]
    else:
        lookup = {float(label): index for index, label in enumerate(classes)}
        keys = [_number_or_none(value) for value in y.tolist()] if _is_text(y) else y.tolist()
    indices = np.empty(len(keys), dtype=np.int64)
    for row, key in enumerate(keys):
        index = lookup.get(key)
        if index is None:
            label = y.tolist()[row]
            distinct = len(set(y.tolist()))
            raise UsageError(f"{dataset.source}: the label {_plain(label)!r} at {dataset.where(row)} is not one of "
                             f"the model's {len(classes)} classes ({_labels(classes)}); the data holds {distinct} "
                             f"distinct labels")
        indices[row] = index
    return indices


def _number_or_none(text: str) -> Optional[float]:
    try:
        return float(text)
    except ValueError:
        return None


def _labels(classes: Sequence[Any]) -> str:
    shown = ", ".join(str(label) for label in classes[:10])
    return shown + (", ..." if len(classes) > 10 else "")


def regression_targets(dataset: Dataset) -> np.ndarray:
    y = dataset.y
    if _is_text(y):
        row = next(index for index, value in enumerate(y.tolist()) if _number_or_none(value) is None)
        name = f"column {dataset.target_name!r}" if dataset.target_name else "the targets"
        raise UsageError(f"{dataset.source}: regression needs numeric targets, but {name} holds {y[row]!r} at "
                         f"{dataset.where(row)}; use --task classification for class labels")
    return y.reshape(len(y), -1).astype(np.float32)


# Model files ------------------------------------------------------------------------------------

@dataclass
class TaskInfo:
    """What the command line records about a model's task in the model file."""

    task: str
    classes: Optional[List[Any]] = None
    target: Optional[str] = None
    features: Optional[List[str]] = None
    data: Optional[str] = None

    def to_json(self) -> str:
        return json.dumps({"task": self.task, "classes": self.classes, "target": self.target,
                           "features": self.features, "data": self.data})


def load_model(path: str) -> Tuple[Sequential, TaskInfo]:
    """The model in ``path`` and its task: from the file's "task" metadata when the command line
    wrote it, otherwise from the loss it was compiled with."""
    _check_readable(path)
    try:
        stored = serialization.read(path)
        model = serialization.model_from_file(stored, device=backends.resolve("auto", announce=False).name)
    except ValueError as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"{path}: cannot be read ({error.strerror})") from None
    info = _task_info(stored.metadata.get(TASK_METADATA_KEY), model, path)
    return model, info


def _task_info(text: Optional[str], model: Sequential, path: str) -> TaskInfo:
    outputs = model.output_dim
    if text is None:
        if not model.compiled:
            raise UsageError(f"{path}: the model file records no loss, so whether it is a classifier is unknown; "
                             f"save it from a compiled model")
        task = model.loss.task
        if task == "multiclass":
            return TaskInfo(CLASSIFICATION, classes=model.class_labels or list(range(outputs)))
        if task == "binary":
            if outputs != 1:
                raise UsageError(f"{path}: a multi-label model ({outputs} sigmoid outputs); the command line "
                                 f"handles single-label classifiers and regressors, use the Python API")
            return TaskInfo(CLASSIFICATION, classes=[0, 1])
        return TaskInfo(REGRESSION)
    damaged = f"{path}: the {TASK_METADATA_KEY!r} metadata"
    try:
        entry = serialization.decode_json(text, path, TASK_METADATA_KEY)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if not isinstance(entry, dict) or entry.get("task") not in (CLASSIFICATION, REGRESSION):
        raise UsageError(f"{damaged} names no task; the file is damaged")
    info = TaskInfo(entry["task"], classes=entry.get("classes"), target=entry.get("target"),
                    features=entry.get("features"), data=entry.get("data"))
    for name in ("target", "data"):
        if not isinstance(getattr(info, name), (str, type(None))):
            raise UsageError(f"{damaged}: {name} is not a string; the file is damaged")
    if info.task == CLASSIFICATION:
        if not model.compiled or model.loss.task != "multiclass":
            raise UsageError(f"{path}: the file says classification but the model is not compiled with "
                             f"sparse_categorical_crossentropy; the file is damaged")
        if not isinstance(info.classes, list) or len(info.classes) != outputs:
            count = len(info.classes) if isinstance(info.classes, list) else 0
            raise UsageError(f"{path}: the model has {outputs} outputs but its file lists {count} class labels")
        if not _distinct_labels(info.classes):
            raise UsageError(f"{damaged}: the class labels are not distinct strings or distinct finite numbers; "
                             f"the file is damaged")
    if info.features is not None and (not isinstance(info.features, list) or len(info.features) != model.input_dim):
        raise UsageError(f"{path}: the model takes {model.input_dim} features but its file names "
                         f"{len(info.features) if isinstance(info.features, list) else 0} feature columns")
    if info.features is not None and not (all(isinstance(name, str) for name in info.features)
                                          and len(set(info.features)) == len(info.features)):
        raise UsageError(f"{damaged}: the feature columns are not distinct names; the file is damaged")
    return info


def _distinct_labels(classes: List[Any]) -> bool:
    """Whether ``classes`` are labels as encode_classes writes them: all strings, or all finite
    numbers (integers or floats, not booleans), no two equal as map_classes compares them."""
    if all(isinstance(label, str) for label in classes):
        return len(set(classes)) == len(classes)
    if not all(isinstance(label, (int, float)) and not isinstance(label, bool) for label in classes):
        return False
    try:
        values = [float(label) for label in classes]
    except OverflowError:  # an integer beyond any float64 target
        return False
    return all(math.isfinite(value) for value in values) and len(set(values)) == len(values)


def _model_data(paths: Sequence[str], info: TaskInfo, model: Sequential, target: Optional[str],
                target_required: bool) -> Dataset:
    """DATA as ``model`` takes it: ``x`` set (a table encoded by the model's preprocessor, or
    its numeric columns), and for a table only the rows with a target when one is required."""
    dataset = read_dataset(paths, target=target, target_required=target_required, default_target=info.target)
    if dataset.table is not None:
        if model.preprocessor is not None:
            try:
                dataset.x = model.preprocessor.transform(dataset.table)
            except ValueError as error:
                raise UsageError(f"{dataset.source}: {str(error).removeprefix('table: ')}") from None
        else:
            dataset.x = _table_features(dataset, info.features)
    if dataset.x.shape[1] != model.input_dim:
        raise UsageError(f"{dataset.source}: {dataset.x.shape[1]} feature columns, but the model takes "
                         f"{model.input_dim}")
    return dataset


def _labeled_part(dataset: Dataset) -> Tuple[np.ndarray, Optional[str]]:
    """The features of the rows with a target, and a notice naming the rows left out."""
    if dataset.labeled is None or dataset.labeled.all():
        return dataset.x, None
    unlabeled = np.flatnonzero(~dataset.labeled)
    shown = ", ".join(str(row + 1) for row in unlabeled[:5]) + (", ..." if unlabeled.size > 5 else "")
    notice = (f"{unlabeled.size} row{'s' if unlabeled.size > 1 else ''} without a {dataset.target_name!r} value "
              f"(row{'s' if unlabeled.size > 1 else ''} {shown}) left out")
    return dataset.x[dataset.labeled], notice


# Training ---------------------------------------------------------------------------------------

def parse_layers(text: str) -> List[int]:
    """--layers: "128,64" -> [128, 64]; an empty string means no hidden layer."""
    if not text.strip():
        return []
    sizes = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise ValueError(f"expected comma-separated positive integers such as 128,64, got {text!r}")
        sizes.append(int(part))
    return sizes


def _check_settings(args) -> None:
    if args.epochs < 1:
        raise UsageError(f"--epochs: expected at least 1, got {args.epochs}")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size: expected at least 1, got {args.batch_size}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise UsageError(f"--lr: expected a positive number, got {args.lr}")
    if args.patience < 0:
        raise UsageError(f"--patience: expected 0 (no early stopping) or more, got {args.patience}")
    if args.seed < 0:
        raise UsageError(f"--seed: expected an integer >= 0, got {args.seed}")
    for name, value in (("--val-split", args.val_split), ("--test-split", args.test_split)):
        if not (0.0 <= value < 1.0):
            raise UsageError(f"{name}: expected a fraction in [0, 1), got {value}")
    if args.val_split + args.test_split >= 1.0:
        raise UsageError(f"--val-split + --test-split: {args.val_split} + {args.test_split} leaves no training data")
    for option, path in (("--out", args.out), ("--history", args.history)):
        if path is not None:
            _check_writable(option, path)
    if args.tensorboard is not None:
        if os.path.exists(args.tensorboard) and not os.path.isdir(args.tensorboard):
            raise UsageError(f"--tensorboard: {args.tensorboard} is a file; name a folder for the event files")
        try:
            from .loggers import TensorBoard
            TensorBoard(args.tensorboard)
        except ImportError as error:
            raise UsageError(f"--tensorboard: {error}") from None


def _check_writable(option: str, path: str) -> None:
    """Fails before training, not after it, when ``path`` cannot be written: a folder in its
    place, or no write permission where its missing folders would be created."""
    if os.path.isdir(path):
        raise UsageError(f"{option}: {path} is a folder; name a file in it")
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise UsageError(f"{option}: {folder} is a file, so {path} cannot be created")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{option}: the folder {folder} is not writable")


def _write_file(option: str, path: str, data: bytes) -> None:
    if not distributed.world().is_main:
        return  # under mpiexec, rank 0 writes the files
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        serialization.write_atomically(path, data)
    except OSError as error:
        raise UsageError(f"{option}: cannot write {path} ({error.strerror or error})") from None


def _split(x: np.ndarray, y: np.ndarray, args, stratify: bool):
    train_fraction = 1.0 - args.val_split - args.test_split
    parts = train_val_test_split(x, y, (train_fraction, args.val_split, args.test_split),
                                 stratify=y if stratify else None, seed=args.seed)
    for (part_x, _), name, fraction in zip(parts, ("training", "validation", "test"),
                                           (train_fraction, args.val_split, args.test_split)):
        if fraction > 0 and part_x.shape[0] == 0:
            option = {"validation": " or --val-split 0", "test": " or --test-split 0"}.get(name, "")
            raise UsageError(f"{x.shape[0]} samples leave no {name} sample at that split; use more data{option}")
    return parts


def _scaler(x_train: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The mean and variance of each feature over the training part. A constant feature keeps
    variance 1 (it is only centred), as scikit-learn's StandardScaler does, so that a different
    value at prediction time is not divided by ~0."""
    mean = x_train.mean(axis=0, dtype=np.float64)
    variance = x_train.var(axis=0, dtype=np.float64)
    variance[variance <= 1e-12 * np.maximum(1.0, mean * mean)] = 1.0
    return mean.astype(np.float32), variance.astype(np.float32)


def _initializer(activation: str) -> str:
    # He initialisation suits the rectifiers, Glorot the saturating activations.
    return "glorot_uniform" if activation in ("tanh", "sigmoid") else "he_normal"


def build_model(features: int, outputs: int, args, mean: np.ndarray, variance: np.ndarray) -> Sequential:
    stack = [layers.Normalization(mean=mean, variance=variance)]
    stack += [Dense(units, activation=args.activation, kernel_initializer=_initializer(args.activation))
               for units in args.layers]
    stack.append(Dense(outputs))
    try:
        # Resolved here so that device="auto" puts its reason in the report, not on stderr.
        backend = backends.resolve(args.device, announce=False)
        model = Sequential(stack, input_dim=features, device=backend.name, seed=args.seed)
        model.backend.reason = backend.reason
        model.build()
    except RuntimeError as error:
        # device="cuda" where no GPU is usable: the message says what is missing.
        raise UsageError(f"--device {args.device}: {error}") from None
    except ValueError as error:
        if str(error).startswith("device:"):
            raise UsageError(f"--device: {str(error)[len('device: '):]}") from None
        # The layer sizes are what the user chose here: a layer too large for the machine's memory.
        raise UsageError(f"--layers: {error}") from None
    return model


def _describe_model(model: Sequential, task: str) -> str:
    parts = [f"{model.input_dim} features", "normalization"]
    for layer in model.layers[1:-1]:
        parts.append(f"{layer.units} {layer.activation}")
    last = model.layers[-1].units
    parts.append(f"{last} {'classes (softmax)' if task == CLASSIFICATION else 'outputs'}")
    trainable = sum(layer.count_params() for layer in model.layers if layer.trainable)
    return " -> ".join(parts) + f"  ({trainable:,} trainable parameters)"


def _fold_target_scale(model: Sequential, mean: np.ndarray, scale: np.ndarray) -> None:
    """Makes the last Dense layer output targets in their own units: training saw
    (y - mean) / scale, so kernel * scale and bias * scale + mean give y exactly."""
    last = model.layers[-1]
    last.kernel[...] *= scale.astype(np.float32)
    last.bias[...] = last.bias * scale.astype(np.float32) + mean.astype(np.float32)


def _fit(model: Sequential, x_train, y_train, validation, args, callbacks):
    """fit, with a divergence (NaN/Inf loss) returned as its message instead of a warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                            validation_data=validation, callbacks=callbacks, verbose=args.verbose, seed=args.seed)
    divergence = None
    for warning in caught:
        if issubclass(warning.category, RuntimeWarning) and "not finite" in str(warning.message):
            divergence = str(warning.message)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    return history, divergence


def _r2(predictions: np.ndarray, targets: np.ndarray) -> Optional[float]:
    """The coefficient of determination averaged over the outputs (scikit-learn's r2_score);
    None for fewer than two samples. A constant target scores 1 when predicted exactly, else 0."""
    if targets.shape[0] < 2:
        return None
    predictions = predictions.astype(np.float64).reshape(targets.shape[0], -1)
    targets = targets.astype(np.float64).reshape(targets.shape[0], -1)
    residual = ((targets - predictions) ** 2).sum(axis=0)
    total = ((targets - targets.mean(axis=0)) ** 2).sum(axis=0)
    scores = np.where(total > 0, 1.0 - residual / np.where(total > 0, total, 1.0),
                      np.where(residual == 0, 1.0, 0.0))
    return float(scores.mean())


def class_probabilities(outputs: np.ndarray) -> np.ndarray:
    """(samples, classes) probabilities from predict's outputs: softmax outputs as they are,
    one sigmoid output p as the two columns 1 - p and p."""
    if outputs.shape[1] == 1:
        return np.hstack([1.0 - outputs, outputs])
    return outputs


def _scores(model: Sequential, x: np.ndarray, y: np.ndarray, task: str) -> Dict[str, Any]:
    """The loss (as the model computes it) and accuracy, or MAE and R^2, from its predictions
    (a model saved from Python need not have been compiled with these metrics)."""
    # A model that knows its class labels takes them, not indices.
    labels = y if model.class_labels is None or task != CLASSIFICATION else np.asarray(model.class_labels)[y]
    scores: Dict[str, Any] = {"loss": float(model.evaluate(x, labels)["loss"])}
    outputs = model.predict(x)
    if task == CLASSIFICATION:
        scores["accuracy"] = float(np.mean(np.argmax(class_probabilities(outputs), axis=1) == y))
    else:
        scores["mae"] = float(np.mean(np.abs(outputs.astype(np.float64) - y)))
        scores["r2"] = _r2(outputs, y)
    scores["samples"] = int(x.shape[0])
    return scores


def _format_table(rows: Dict[str, Dict[str, Any]]) -> List[str]:
    """An aligned table: one row per split, one column per score."""
    columns = []
    for scores in rows.values():
        columns += [name for name in scores if name not in columns]
    titles = {"loss": "loss", "accuracy": "accuracy", "mae": "mae", "r2": "R^2", "samples": "samples"}
    table = [[""] + [titles.get(name, name) for name in columns]]
    for label, scores in rows.items():
        cells = [label]
        for name in columns:
            value = scores.get(name)
            if value is None:
                cells.append("-")
            elif name == "samples":
                cells.append(str(value))
            else:
                cells.append(f"{value:.4f}")
        table.append(cells)
    widths = [max(len(row[index]) for row in table) for index in range(len(table[0]))]
    return ["  ".join(cell.ljust(widths[0]) if index == 0 else cell.rjust(widths[index])
                      for index, cell in enumerate(row)) for row in table]


def _facts(pairs: Sequence[Tuple[str, str]]) -> List[str]:
    width = max(len(name) for name, _ in pairs)
    return [f"{name.ljust(width)}  {value}" for name, value in pairs]


def _device_text(model: Sequential) -> str:
    from . import _C
    from ._threads import get_num_threads

    size = distributed.world().size
    ranks = f" x {size} MPI ranks" if size > 1 else ""
    if model.backend.kind == "cuda":
        return f"{model.device} ({_C.cuda_query()['devices'][model.backend.index]}){ranks}"
    fallback = f"; no GPU: {model.backend.reason}" if model.backend.reason else ""
    return f"{model.device} ({_C.simd_path()}, {get_num_threads()} threads{fallback}){ranks}"


def _write_plot(path: str, history: Dict[str, List[float]], metric: str, best_epoch: Optional[int],
                title: str, stopped_at: Optional[int] = None) -> Optional[str]:
    """Writes the loss and metric curves as a PNG, the best epoch (whose weights were kept) and
    the early-stop point marked; returns why not when matplotlib is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib)"
    figure = Figure(figsize=(10, 4), layout="constrained")
    epochs = np.arange(1, len(history["loss"]) + 1)
    for axes, name in zip(figure.subplots(1, 2), ("loss", metric)):
        axes.plot(epochs, history[name], label="train")
        if f"val_{name}" in history:
            axes.plot(epochs, history[f"val_{name}"], label="validation")
        if best_epoch is not None:
            axes.axvline(best_epoch + 1, color="grey", linestyle="--", linewidth=1, label="best epoch")
            values = history.get(f"val_{name}", history[name])
            axes.plot([best_epoch + 1], [values[best_epoch]], marker="o", color="grey", linestyle="none")
        if stopped_at is not None:
            axes.axvline(stopped_at + 1, color="tab:red", linestyle=":", linewidth=1, label="early stop")
        axes.set_xlabel("epoch")
        axes.set_ylabel(name)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    _write_file("plot", path, buffer.getvalue())
    return None


def _save_model(model: Sequential, path: str, info: TaskInfo) -> None:
    if not distributed.world().is_main:
        return
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        serialization.save(model, path, metadata={TASK_METADATA_KEY: info.to_json()})
    except OSError as error:
        raise UsageError(f"--out: cannot write {path} ({error.strerror or error})") from None


def _targets_for(dataset: Dataset, task: str) -> Tuple[np.ndarray, Optional[List[Any]]]:
    """(targets as the loss takes them, the class labels or None for regression)."""
    if task == CLASSIFICATION:
        return encode_classes(dataset)
    return regression_targets(dataset), None


def _announce(dataset: Dataset, args, task: str, classes, model: Sequential, sizes, monitor: Optional[str],
              columns: List[str], notices: List[str]) -> None:
    """The lines printed before training: what is trained, on what, how."""
    source = dataset.source if dataset.target_name is None else f"{dataset.source}, target {dataset.target_name!r}"
    if task == CLASSIFICATION:
        task_text = f"classification, {len(classes)} classes: {_labels(classes)}"
    else:
        outputs = model.output_dim
        task_text = f"regression, {outputs} output{'s' if outputs > 1 else ''}"
    if args.task == "auto":
        task_text += "  (inferred; --task sets it)"
    split = f"{sizes[0]} train / {sizes[1]} validation / {sizes[2]} test (seed {args.seed}"
    split += ", stratified)" if task == CLASSIFICATION else ")"
    training = f"{args.optimizer} lr {args.lr:g}, batch {args.batch_size}, up to {args.epochs} epochs"
    if monitor is not None:
        training += f", early stopping on {monitor} (patience {args.patience})"
    if dataset.table is not None:
        data = (f"{source}: {dataset.samples} rows, {dataset.table.shape[1]} columns -> "
                f"{dataset.x.shape[1]} features")
    else:
        data = f"{source}: {dataset.x.shape[0]} samples, {dataset.x.shape[1]} features"
    facts = [("data", data)] + [("columns" if index == 0 else "", line) for index, line in enumerate(columns)]
    facts += [("notice", line) for line in notices]
    facts += [("task", task_text), ("split", split), ("model", _describe_model(model, task)), ("training", training)]
    print("\n".join(_facts(facts)), flush=True)


def _encode_table(dataset: Dataset, y: np.ndarray, args, stratify: bool, notices: List[str]):
    """Splits a table's labeled rows, fits the preprocessor on the training rows and encodes
    them all: (the preprocessor, the three (x, y) parts); sets ``dataset.x``."""
    table = dataset.table
    labeled = np.flatnonzero(dataset.labeled) if dataset.labeled is not None else np.arange(len(table))
    if labeled.size < len(table):
        _, notice = _labeled_part(Dataset(np.empty((dataset.samples, 0)), dataset.y, dataset.source,
                                          target_name=dataset.target_name, labeled=dataset.labeled))
        notices.append(notice + " of training; predict still predicts them")
    # The parts as rows of the whole table, so that every message numbers the file's rows.
    parts = [labeled[indices[:, 0]] for indices, _ in _split(np.arange(labeled.size).reshape(-1, 1), y, args,
                                                              stratify)]
    position = np.full(len(table), -1)
    position[labeled] = np.arange(labeled.size)
    try:
        preprocessor = tables.TablePreprocessor(categorical=args.categorical or (), numeric=args.numeric or (),
                                                drop=args.drop or (), keep=args.keep or (), dates=args.dates,
                                                missing=args.missing, scale=False)
        preprocessor.fit(table, rows=parts[0])
        if args.missing == "drop":
            incomplete = preprocessor.incomplete_rows(table)
            left = int(incomplete[labeled].sum())
            if left:
                notices.append(f"{left} row{'s' if left > 1 else ''} with a missing value left out (--missing drop)")
            parts = [indices[~incomplete[indices]] for indices in parts]
            if parts[0].size == 0:
                raise UsageError(f"{dataset.source}: every training row has a missing value; use --missing impute")
        x = preprocessor.transform(table)
    except (TypeError, ValueError) as error:
        raise UsageError(f"{dataset.source}: {str(error).removeprefix('table: ')}") from None
    dataset.x = x[labeled]
    return preprocessor, [(x[indices], y[position[indices]]) for indices in parts]


def _silence_constant_features(model: Sequential, x_train: np.ndarray) -> None:
    """Zeroes the first Dense layer's weights of the features that were constant in training
    (a category's slot never set, such as 'unknown'): training never moved them, so they are
    random, and a value seen only later must not shift the prediction by them."""
    constant = np.all(x_train == x_train[:1], axis=0)
    if not constant.any():
        return
    weights = model.get_weights()
    # weights: the Normalization layer's mean and variance, then the first Dense kernel.
    weights[2][constant, :] = 0.0
    model.set_weights(weights)


def train(args) -> int:
    """fusedtrain train: read, split, standardise, fit with early stopping, report, save."""
    _check_settings(args)
    dataset = read_dataset(args.data, target=args.target)
    if dataset.table is None and any(getattr(args, option) for option in COLUMN_OPTIONS):
        used = next(option for option in COLUMN_OPTIONS if getattr(args, option))
        raise UsageError(f"--{used}: names columns of a CSV or Parquet file; {dataset.source} has none")
    task = infer_task(dataset.y) if args.task == "auto" else args.task
    y, classes = _targets_for(dataset, task)
    notices: List[str] = []
    preprocessor = None
    if dataset.table is None:
        parts = _split(dataset.x, y, args, task == CLASSIFICATION)
    else:
        preprocessor, parts = _encode_table(dataset, y, args, task == CLASSIFICATION, notices)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = parts
    mean, variance = _scaler(x_train)
    model = build_model(dataset.x.shape[1], len(classes) if classes else y.shape[1], args, mean, variance)
    target_mean = target_scale = None
    fit_train, fit_val = y_train, y_val
    if task == REGRESSION:
        # Training on standardised targets keeps the default learning rate sensible whatever
        # the targets' units; the scale is folded into the last layer afterwards.
        target_mean = y_train.mean(axis=0, dtype=np.float64)
        target_scale = y_train.std(axis=0, dtype=np.float64)
        target_scale[target_scale == 0] = 1.0
        fit_train, fit_val = [((values - target_mean) / target_scale).astype(np.float32)
                              for values in (y_train, y_val)]
    metric = "accuracy" if task == CLASSIFICATION else "mae"
    model.compile(optimizer=OPTIMIZERS[args.optimizer](learning_rate=args.lr),
                  loss="sparse_categorical_crossentropy" if task == CLASSIFICATION else "mse", metrics=[metric])
    has_validation = x_val.shape[0] > 0
    monitor = "val_loss" if has_validation else "loss"
    stopper = (EarlyStopping(monitor=monitor, patience=args.patience, restore_best_weights=True)
               if args.patience > 0 else None)
    _announce(dataset, args, task, classes, model, (x_train.shape[0], x_val.shape[0], x_test.shape[0]),
              monitor if stopper else None, preprocessor.report() if preprocessor else [], notices)

    started = time.perf_counter()
    callbacks = [stopper] if stopper else []
    if args.tensorboard is not None:
        from .loggers import TensorBoard

        callbacks.append(TensorBoard(args.tensorboard))
    history, divergence = _fit(model, x_train, fit_train, (x_val, fit_val) if has_validation else None, args,
                               callbacks)
    seconds = time.perf_counter() - started
    epochs_run = len(history.epoch)
    best_epoch = stopper.best_epoch if stopper is not None else None
    # After a divergence, the best epoch's weights are trustworthy only if a validation loss
    # measured them (a training loss is averaged over the epoch's updates, the last one included).
    if divergence is not None and (best_epoch is None or not has_validation):
        raise UsageError(f"training diverged: {divergence.split(';')[0]}; try a smaller --lr")
    if task == REGRESSION:
        _fold_target_scale(model, target_mean, target_scale)
    _silence_constant_features(model, x_train)
    model.preprocessor = preprocessor

    report = {"train": _scores(model, x_train, y_train, task)}
    if has_validation:
        report["validation"] = _scores(model, x_val, y_val, task)
    if x_test.shape[0]:
        report["test"] = _scores(model, x_test, y_test, task)
    model.class_labels = classes
    _save_model(model, args.out, TaskInfo(task, classes=classes, target=dataset.target_name,
                                          features=None if preprocessor else dataset.feature_names,
                                          data=dataset.source))
    history_path = args.history or os.path.join(os.path.dirname(args.out), "history.json")
    stopped_early = bool(stopper is not None and divergence is None and epochs_run < args.epochs)
    record = {"history": history.history, "epochs_run": epochs_run,
              "best_epoch": None if best_epoch is None else best_epoch + 1, "stopped_early": stopped_early,
              "diverged": divergence, "seconds": seconds, "device": model.device, "task": task,
              "classes": classes, "columns": preprocessor.report() if preprocessor else None, "notices": notices,
              "report": report, "settings": {key: value for key, value in vars(args).items()
                                                                 if key != "command"}}
    if task == REGRESSION:
        record["target_scaling"] = {"mean": target_mean.tolist(), "scale": target_scale.tolist(),
                                    "note": "the history's loss and mae are on standardised targets, the "
                                            "report's in the targets' units"}
    _write_file("--history", history_path, (json.dumps(record, indent=2) + "\n").encode("utf-8"))
    plot_path = os.path.splitext(args.out)[0] + ".png"
    skipped = "--no-plot" if args.no_plot or not distributed.world().is_main else _write_plot(plot_path, history.history, metric, best_epoch,
                                                           f"fusedtrain: {os.path.basename(args.out)}",
                                                           epochs_run - 1 if stopped_early else None)

    epochs_text = f"{epochs_run} of {args.epochs}"
    if stopped_early:
        epochs_text += f", stopped early (no better {monitor} in {args.patience} epochs)"
    elif divergence is not None:
        epochs_text += f", stopped: {divergence.split(';')[0]}"
    if best_epoch is not None:
        epochs_text += f"; the best epoch, {best_epoch + 1}, gave the weights kept"
    print()
    print("\n".join(_format_table(report)))
    print()
    print("\n".join(_facts([("epochs", epochs_text), ("time", f"{seconds:.2f} s"),
                            ("device", _device_text(model)), ("model", args.out), ("history", history_path),
                            ("plot", plot_path if skipped is None else f"skipped: {skipped}")]
                           + ([("tensorboard", f"tensorboard --logdir {args.tensorboard}")]
                              if args.tensorboard is not None else []))))
    return 0


# Evaluate and predict ---------------------------------------------------------------------------

def evaluate(args) -> int:
    """fusedtrain evaluate MODEL [DATA]: the loss and accuracy (or MAE and R^2) on DATA."""
    model, info = load_model(args.model)
    dataset = _model_data(args.data, info, model, args.target, target_required=True)
    if dataset.y is None:
        raise UsageError(f"{dataset.source}: holds no targets to evaluate against")
    if info.task == CLASSIFICATION:
        y = map_classes(dataset, info.classes)
    else:
        y = regression_targets(dataset)
        if y.shape[1] != model.output_dim:
            raise UsageError(f"{dataset.source}: {y.shape[1]} target columns, but the model has "
                             f"{model.output_dim} outputs")
    x, notice = _labeled_part(dataset)
    if notice:
        print(f"notice: {notice}")
    scores = _scores(model, x, y, info.task)
    label = os.path.basename(args.data[0]) if args.data else "digits"
    print("\n".join(_format_table({label: scores})))
    return 0


def _format_number(value: float) -> str:
    return f"{value:.7g}"


def _onnx_type(onnx: Any, value: Any) -> str:
    dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
    return "string" if dtype.kind == "O" else str(dtype)


def export(args) -> int:
    """fusedtrain export MODEL --format onnx --out model.onnx: the model for onnxruntime; a model
    trained on a table takes its raw columns (see onnx_export.py)."""
    _check_writable("--out", args.out)
    model, _ = load_model(args.model)
    try:
        model.export(args.out, format=args.format, opset=args.opset, outputs=args.outputs,
                     preprocessor=not args.encoded)
    except ImportError as error:
        raise UsageError(str(error)) from None
    except ValueError as error:
        raise UsageError(f"{args.model}: {error}") from None
    except OSError as error:
        raise UsageError(f"--out: cannot write {args.out} ({error.strerror or error})") from None
    if not distributed.world().is_main:
        return 0
    import onnx

    graph = onnx.load(args.out).graph
    inputs = ", ".join(f"{value.name} ({_onnx_type(onnx, value)})"
                       for value in graph.input[:6])
    more = f" and {len(graph.input) - 6} more" if len(graph.input) > 6 else ""
    print(f"{args.out}: ONNX (opset {args.opset or 17}), inputs {inputs}{more}; output {graph.output[0].name}")
    return 0


def predict(args) -> int:
    """fusedtrain predict MODEL [DATA] --out predictions.csv: one row per sample; for a
    classifier the predicted label (as in the training data) and each class' probability."""
    if args.out != "-":
        _check_writable("--out", args.out)
    model, info = load_model(args.model)
    dataset = _model_data(args.data, info, model, None, target_required=False)
    if info.task == CLASSIFICATION and dataset.y is not None:
        # Labels beside the features: a label the model does not know means the wrong model or data.
        map_classes(dataset, info.classes)
    outputs = model.predict(dataset.x)
    name = info.target or "prediction"
    lines = io.StringIO()
    writer = csv.writer(lines, lineterminator="\n")
    if info.task == CLASSIFICATION:
        writer.writerow([name] + [f"probability_{label}" for label in info.classes])
        probabilities = class_probabilities(outputs)
        predicted = np.argmax(probabilities, axis=1)
        for index, row in zip(predicted.tolist(), probabilities.tolist()):
            writer.writerow([info.classes[index]] + [_format_number(value) for value in row])
    else:
        writer.writerow([name] if outputs.shape[1] == 1 else [f"{name}_{index}" for index in range(outputs.shape[1])])
        for row in outputs.tolist():
            writer.writerow([_format_number(value) for value in row])
    text = lines.getvalue()
    if args.out == "-":
        print(text, end="")
        return 0
    _write_file("--out", args.out, text.encode("utf-8"))
    print(f"{dataset.x.shape[0]} predictions written to {args.out}")
    return 0
