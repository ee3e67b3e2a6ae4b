"""Argument checks shared by every op: each failure names the argument, what was expected and
what was received, and no check ever copies or converts an array. The array checks serve both
backends: `xp` is numpy (the CPU kernels) or cupy (the CUDA kernels), chosen by array_module."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .. import _C

FLOAT32 = np.dtype(np.float32)
FLOAT32_MAX = float(np.finfo(np.float32).max)


def is_cupy(array: Any) -> bool:
    """True for a CuPy array, decided without importing CuPy."""
    return type(array).__module__.split(".")[0] == "cupy"


def describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"numpy.ndarray of {value.dtype} with shape {value.shape}"
    if is_cupy(value):
        return f"cupy.ndarray of {value.dtype} with shape {tuple(value.shape)}"
    return type(value).__name__


def array_module(op: str, *values: Any) -> Any:
    """The array module an op runs with: cupy when any of `values` is a CuPy array (once it is
    certain that the GPU kernels are there), numpy otherwise. Every array argument of the op
    must then belong to that module; `array` says so, naming the argument that does not."""
    for value in values:
        # NumPy arrays and None, the common case, are settled without the module-name test.
        if value is not None and type(value) is not np.ndarray and is_cupy(value):
            from . import _cuda

            return _cuda.require_backend(op)
    return np


def array(value: Any, name: str, dtype: Any = FLOAT32, ndim: int | None = None, xp: Any = np) -> Any:
    """A C-contiguous array of `dtype` (and `ndim` dimensions) of module `xp` (numpy, or cupy
    on the current device), returned as is."""
    gpu = xp is not np
    prefix = "cupy" if gpu else "np"
    if gpu:
        if not is_cupy(value):
            raise TypeError(f"{name}: expected a cupy.ndarray of {np.dtype(dtype)} (another argument is a CuPy "
                            f"array, so the op runs on the GPU), got {describe(value)}; move it with "
                            f"cupy.asarray({name}), or pass NumPy arrays to every argument")
    elif not isinstance(value, np.ndarray):
        if is_cupy(value):
            raise TypeError(f"{name}: this op runs on the CPU and takes NumPy arrays; got a CuPy array "
                            f"(move it with {name}.get(), or pass CuPy arrays to every argument "
                            f"of an op that has a CUDA kernel)")
        raise TypeError(f"{name}: expected a numpy.ndarray of {np.dtype(dtype)}, got {describe(value)}")
    if value.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {np.dtype(dtype)}, got {value.dtype} "
                        f"(convert explicitly, e.g. {name}.astype({prefix}.{np.dtype(dtype)}))")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {tuple(value.shape)}")
    if not value.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous array, got strides {tuple(value.strides)} for shape "
                         f"{tuple(value.shape)} (use {prefix}.ascontiguousarray({name}))")
    if not gpu and not value.flags.aligned:
        raise ValueError(f"{name}: expected an array aligned to its {value.itemsize}-byte items, got one at "
                         f"address {data_pointer(value):#x} (use np.require({name}, requirements='A'), which "
                         f"copies it)")
    if gpu and value.device.id != xp.cuda.Device().id:
        raise ValueError(f"{name}: is on GPU {value.device.id}, but the current device is GPU "
                         f"{xp.cuda.Device().id} (use `with cupy.cuda.Device({value.device.id}):`)")
    return value


def labels(value: Any, name: str, rows: int, xp: Any = np) -> Any:
    """A C-contiguous 1-D int32 or int64 array of module `xp` holding `rows` class labels."""
    kind = "cupy.ndarray" if xp is not np else "numpy.ndarray"
    matches = is_cupy(value) if xp is not np else isinstance(value, np.ndarray)
    if not (matches and value.dtype in (np.int32, np.int64)):
        raise TypeError(f"{name}: expected a 1-D {kind} of int32 or int64 class labels, "
                        f"got {describe(value)}")
    result = array(value, name, value.dtype, ndim=1, xp=xp)
    if result.shape[0] != rows:
        raise ValueError(f"{name}: expected {rows} labels (one per row), got {result.shape[0]}")
    return result


def same_shape(value: Any, name: str, shape: tuple, reference: str) -> None:
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)} (the shape of {reference}), got {tuple(value.shape)}")


def output(out: Any, shape: tuple, dtype: Any = FLOAT32, name: str = "out", inputs: dict | None = None,
           in_place: tuple = (), xp: Any = np) -> Any:
    """`out` checked to be a writeable C-contiguous array of module `xp` and of `shape` that does
    not overlap the arrays of `inputs` (see no_overlap), or a new array when None."""
    if out is None:
        return xp.empty(shape, dtype=dtype)
    result = array(out, name, dtype, xp=xp)
    if tuple(result.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(result.shape)}")
    if xp is np and not result.flags.writeable:
        raise ValueError(f"{name}: the array is read-only")
    if inputs:
        no_overlap(result, name, inputs, in_place)
    return result


def scalar_output(value: Any, name: str, xp: Any = np) -> Any:
    """`value` checked to be a writeable float64 array of one element (shape (1,)) of module `xp`:
    where an op stores a reduced value (a loss, an accuracy, a norm) instead of returning a
    Python number, so that on the GPU the call does not wait for the device."""
    result = array(value, name, np.float64, ndim=1, xp=xp)
    if tuple(result.shape) != (1,):
        raise ValueError(f"{name}: expected an array of one element, shape (1,), got shape {tuple(result.shape)}")
    if xp is np and not result.flags.writeable:
        raise ValueError(f"{name}: the array is read-only")
    return result


def data_pointer(value: Any) -> int:
    """The address of a NumPy or CuPy array's first element."""
    if is_cupy(value):
        return value.data.ptr
    return value.__array_interface__["data"][0]


def overlap(first: Any, second: Any) -> int:
    """0 when two arrays' memory is disjoint, 2 when they are the same elements (same address,
    shape and strides), 1 for any other overlap. NumPy arrays: by their element bounds, as
    numpy.may_share_memory decides by default (computed in the extension: this runs for every
    pair of arguments of every op). CuPy arrays (C-contiguous, as the ops require): by their
    address ranges."""
    if isinstance(first, np.ndarray) and isinstance(second, np.ndarray):
        return _C.overlap(first, second)
    if not (is_cupy(first) and is_cupy(second)) or first.nbytes == 0 or second.nbytes == 0:
        return 0
    first_start, second_start = data_pointer(first), data_pointer(second)
    if not (first_start < second_start + second.nbytes and second_start < first_start + first.nbytes):
        return 0
    return 2 if first_start == second_start and tuple(first.shape) == tuple(second.shape) else 1


def may_share_memory(first: Any, second: Any) -> bool:
    """Whether two arrays' memory may overlap (see overlap)."""
    return overlap(first, second) != 0


def no_overlap(out: Any, name: str, inputs: dict, in_place: tuple = ()) -> None:
    """`out` may not share memory with the arrays of `inputs`, except that it may be exactly
    (same data, same shape) one of the inputs named in `in_place`."""
    for input_name, value in inputs.items():
        if value is None:
            continue
        shared = overlap(out, value)
        if shared == 0 or (shared == 2 and input_name in in_place):
            continue
        allowed = f" (it may be {' or '.join(in_place)} itself, for an in-place update)" if in_place else ""
        raise ValueError(f"{name}: shares memory with {input_name}; pass a separate array{allowed}")


def real(value: Any, name: str, low: float | None = None, high: float | None = None,
         low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number within float32 range and within [low, high] (a bound is excluded
    when its *_open is set)."""
    if type(value) is not float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
        try:
            value = float(value)
        except OverflowError:
            raise ValueError(f"{name}: expected a finite number, got an integer beyond float range") from None
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    if abs(value) > FLOAT32_MAX:
        # The kernels compute in float32, where such a value would become infinite.
        raise ValueError(f"{name}: expected a number within float32 range (magnitude at most "
                         f"{FLOAT32_MAX:.8g}), got {value}")
    below = low is not None and (value < low or (low_open and value == low))
    above = high is not None and (value > high or (high_open and value == high))
    if below or above:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ValueError(f"{name}: expected a value in {interval}, got {value}")
    return value


def integer(value: Any, name: str, low: int | None = None, high: int | None = None) -> int:
    """An integer (Python or NumPy, not bool) within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            expected = f">= {low}"
        elif low is None:
            expected = f"<= {high}"
        else:
            expected = f"in [{low}, {high}]"
        raise ValueError(f"{name}: expected an integer {expected}, got {value}")
    return value


def flag(value: Any, name: str) -> bool:
    """A bool (Python or NumPy): a string such as "no" or a number must not switch an option on."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {type(value).__name__}")
    return bool(value)


def instance_or_named(value: Any, name: str, base: type, by_name: dict, expected: str,
                      ignore_case: bool = False) -> Any:
    """`value` itself when it is a `base` instance, else a new object from the factory that
    `by_name` holds for the name `value`; otherwise "{name}: expected {expected} 'a', 'b', ...,
    got ...": a ValueError for an unknown name, a TypeError for anything but a name or a `base`."""
    if isinstance(value, base):
        return value
    options = f"{name}: expected {expected} {', '.join(repr(n) for n in by_name)}"
    if not isinstance(value, str):
        raise TypeError(f"{options}, got {type(value).__name__}")
    key = value.lower() if ignore_case else value
    if key not in by_name:
        raise ValueError(f"{options}, got {value!r}")
    return by_name[key]()


# Names (of layers, models, tensors, metadata entries) hold at most this many characters, all
# printable: model files store them, and summary() and the error messages print them.
MAX_NAME_CHARS = 256


def is_name(value: Any) -> bool:
    """Whether ``value`` is a name: a non-empty str of at most MAX_NAME_CHARS printable
    characters (no control characters, NUL or lone surrogates)."""
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME_CHARS and value.isprintable()


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to about ``limit`` characters: a message quotes a value it refuses,
    which may be a string of any length (repr escapes what cannot be printed)."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value):,} characters)"
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**limit else f"an integer of over {limit} digits"
    return text if len(text) <= limit + 20 else text[:limit] + "..."


def name(value: Any, argument: str) -> str:
    """``value`` checked to be a name (see is_name); ValueError naming ``argument`` otherwise."""
    if not is_name(value):
        raise ValueError(f"{argument}: expected a non-empty string of at most {MAX_NAME_CHARS} printable characters, "
                         f"got {shown(value)}")
    return value


def choice(value: Any, name: str, options: dict) -> Any:
    """The entry of `options` named by `value` (a string)."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name}: expected one of {', '.join(repr(o) for o in options)}, got {value!r}")
    return options[value]
