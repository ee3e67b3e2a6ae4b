"""Bad input for every public op, layer, optimizer, callback, schedule and the command line: each
mistake raises TypeError (a wrong type or dtype) or ValueError (a wrong value or shape) whose
message names the argument, and nothing crashes the process.

The ops are driven by OPS, one entry per name of fusedtrain.ops.__all__ (a new public op without
an entry fails test_every_public_op_has_an_entry): a valid call on small odd shapes, and which
arguments are arrays, labels, outputs and scalars. Every case below is generated from it."""

import contextlib
import inspect
import io
import math
import os
import re
import warnings

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import _C, callbacks, layers, losses, metrics, ops, optimizers, schedules
from fusedtrain.__main__ import main as cli_main
from references import reference_activation, unaligned


def normal(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# Scalars: each kind lists the values outside its domain; every kind also refuses the common
# wrong types (bool, str, None, list) with TypeError and NaN/inf with ValueError.
COMMON_BAD_SCALARS = [(True, TypeError), ("0.5", TypeError), (None, TypeError), ([0.5], TypeError),
                      (float("nan"), ValueError), (float("inf"), ValueError), (-float("inf"), ValueError)]
REAL = []
NON_NEGATIVE = [(-1e-3, ValueError)]
UNIT_OPEN = [(-0.1, ValueError), (1.0, ValueError)]
UNIT_CLOSED = [(-0.1, ValueError), (1.5, ValueError)]
POSITIVE = [(0.0, ValueError), (-1.0, ValueError)]
UINT64 = [(-1, ValueError), (2**64, ValueError), (1.5, TypeError), (True, TypeError), ("1", TypeError),
          (None, TypeError)]
STEP = [(0, ValueError), (-1, ValueError), (2**63, ValueError), (2**70, ValueError), (1.0, TypeError),
        (True, TypeError), ("1", TypeError)]
REDUCTION = [("avg", ValueError), (None, ValueError), (1, ValueError), ("MEAN", ValueError)]
FLAG = [("yes", TypeError), (1, TypeError), (None, TypeError)]


class Op:
    """One public op: ``make(rng)`` gives the keyword arguments of a valid call. ``arrays`` maps
    each array argument to its dtype; ``ranks`` gives the arguments of a fixed rank; ``optional``
    the arrays that may be None; ``outputs`` maps each output argument to the inputs it may be
    exactly (in place); ``written`` lists inputs updated in place (they must be writeable);
    ``labels`` names the class-label argument; ``scalars`` maps hyper-parameters to the values
    they refuse; ``shapes`` gives, per argument, a wrong shape; ``empty`` gives the arguments of
    a zero-size call and, as ``expect``, the result's shape or the error it raises."""

    def __init__(self, make, arrays, ranks=None, optional=(), outputs=None, written=(), labels=None,
                 scalars=None, shapes=None, empty=None, expect=None, elementwise=False):
        self.make = make
        self.arrays = arrays
        self.ranks = ranks or {}
        self.optional = optional
        self.outputs = outputs or {}
        self.written = written
        self.labels = labels
        self.scalars = scalars or {}
        self.shapes = shapes or {}
        self.empty = empty
        self.expect = expect
        self.elementwise = elementwise


F32, U8, I64 = np.dtype(np.float32), np.dtype(np.uint8), np.dtype(np.int64)


def forward(slope=False, elementwise=True):
    scalars = {"negative_slope": REAL} if slope else {}
    return Op(lambda rng: {"x": normal(rng, 5, 7), "out": np.empty((5, 7), np.float32)},
              {"x": F32, "out": F32}, optional=("out",), outputs={"out": ("x",)}, scalars=scalars,
              shapes={"out": (5, 6)}, empty=lambda: {"x": np.zeros((0, 7), np.float32)}, expect=(0, 7),
              elementwise=elementwise)


def backward(slope=False, in_place="grad_output", elementwise=True):
    scalars = {"negative_slope": REAL} if slope else {}
    return Op(lambda rng: {"grad_output": normal(rng, 5, 7), "x": normal(rng, 5, 7),
                           "out": np.empty((5, 7), np.float32)},
              {"grad_output": F32, "x": F32, "out": F32}, optional=("out",), outputs={"out": (in_place,)},
              scalars=scalars, shapes={"grad_output": (5, 6), "out": (7, 5)},
              empty=lambda: {"grad_output": np.zeros((3, 0), np.float32), "x": np.zeros((3, 0), np.float32)},
              expect=(3, 0), elementwise=elementwise)


def pair_loss(first):
    return Op(lambda rng: {first: normal(rng, 5, 7), "target": rng.uniform(0, 1, (5, 7)).astype(np.float32),
                           "out": np.empty((5, 7), np.float32)},
              {first: F32, "target": F32, "out": F32}, optional=("out",), outputs={"out": (first,)},
              scalars={"reduction": REDUCTION}, shapes={"target": (5, 6), "out": (5, 6)},
              empty=lambda: {first: np.zeros((0, 7), np.float32), "target": np.zeros((0, 7), np.float32)},
              expect=(ValueError, rf"{first}: the loss of an empty batch is undefined"))


def labels_of(rng, rows, classes, dtype=np.int64):
    return rng.integers(0, classes, rows).astype(dtype)


OPS = {
    "matmul": Op(lambda rng: {"a": normal(rng, 5, 3), "b": normal(rng, 3, 7), "bias": normal(rng, 7),
                              "out": np.empty((5, 7), np.float32)},
                 {"a": F32, "b": F32, "bias": F32, "out": F32}, ranks={"a": 2, "b": 2, "bias": 1, "out": 2},
                 optional=("bias", "out"), outputs={"out": ()},
                 scalars={"alpha": REAL, "beta": REAL, "negative_slope": REAL},
                 shapes={"b": (4, 7), "bias": (6,), "out": (5, 6)},
                 empty=lambda: {"a": np.zeros((0, 3), np.float32), "b": np.zeros((3, 7), np.float32)},
                 expect=(0, 7)),
    "relu": forward(), "sigmoid": forward(), "tanh": forward(), "gelu": forward(), "softmax": forward(elementwise=False),
    "leaky_relu": forward(slope=True),
    "relu_grad": backward(), "sigmoid_grad": backward(), "tanh_grad": backward(), "gelu_grad": backward(),
    "leaky_relu_grad": backward(slope=True), "softmax_grad": backward(in_place="x", elementwise=False),
    "mse": pair_loss("pred"),
    "binary_cross_entropy": pair_loss("logits"),
    "softmax_cross_entropy": Op(
        lambda rng: {"logits": normal(rng, 5, 4), "labels": labels_of(rng, 5, 4),
                     "out": np.empty((5, 4), np.float32)},
        {"logits": F32, "out": F32}, ranks={"logits": 2}, optional=("out",), outputs={"out": ("logits",)},
        labels="labels", scalars={"reduction": REDUCTION}, shapes={"labels": (4,), "out": (4, 5)},
        empty=lambda: {"logits": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64)},
        expect=(ValueError, r"logits: the loss of an empty batch is undefined")),
    "bias_grad": Op(lambda rng: {"grad_output": normal(rng, 5, 7), "out": np.empty(7, np.float32)},
                    {"grad_output": F32, "out": F32}, ranks={"grad_output": 2, "out": 1}, optional=("out",),
                    outputs={"out": ()}, shapes={"out": (6,)},
                    # The column sums of no rows are zeros, as numpy.sum(axis=0) gives.
                    empty=lambda: {"grad_output": np.zeros((0, 7), np.float32)}, expect=(7,)),
    "argmax": Op(lambda rng: {"x": normal(rng, 5, 7), "out": np.empty(5, np.int64)},
                 {"x": F32, "out": I64}, ranks={"x": 2, "out": 1}, optional=("out",), outputs={"out": ()},
                 shapes={"out": (4,)}, empty=lambda: {"x": np.zeros((0, 7), np.float32)}, expect=(0,)),
    "accuracy": Op(lambda rng: {"scores": normal(rng, 5, 4), "labels": labels_of(rng, 5, 4)},
                   {"scores": F32}, ranks={"scores": 2}, labels="labels", shapes={"labels": (4,)},
                   empty=lambda: {"scores": np.zeros((0, 4), np.float32), "labels": np.zeros(0, np.int64)},
                   expect=(ValueError, r"scores: the accuracy of an empty batch is undefined")),
    "sgd_step": Op(lambda rng: {"param": normal(rng, 13), "grad": normal(rng, 13), "velocity": normal(rng, 13),
                                "lr": 0.1, "momentum": 0.9, "weight_decay": 0.01},
                   {"param": F32, "grad": F32, "velocity": F32}, written=("param", "velocity"), optional=("velocity",),
                   scalars={"lr": NON_NEGATIVE, "momentum": NON_NEGATIVE, "weight_decay": NON_NEGATIVE,
                            "nesterov": FLAG},
                   shapes={"grad": (12,), "velocity": (14,)},
                   empty=lambda: {"param": np.zeros(0, np.float32), "grad": np.zeros(0, np.float32), "lr": 0.1},
                   expect=(0,)),
    "adam_step": Op(lambda rng: {"param": normal(rng, 13), "grad": normal(rng, 13), "m": normal(rng, 13),
                                 "v": np.abs(normal(rng, 13)), "step": 3, "lr": 0.01},
                    {"param": F32, "grad": F32, "m": F32, "v": F32}, written=("param", "m", "v"),
                    scalars={"step": STEP, "lr": NON_NEGATIVE, "beta1": UNIT_OPEN, "beta2": UNIT_OPEN,
                             "eps": NON_NEGATIVE, "weight_decay": NON_NEGATIVE, "decoupled": FLAG},
                    shapes={"grad": (12,), "m": (3, 5), "v": (14,)},
                    empty=lambda: {name: np.zeros(0, np.float32) for name in ("param", "grad", "m", "v")} | {"step": 1},
                    expect=(0,)),
    "rmsprop_step": Op(lambda rng: {"param": normal(rng, 13), "grad": normal(rng, 13),
                                    "square_avg": np.abs(normal(rng, 13)), "lr": 0.01},
                       {"param": F32, "grad": F32, "square_avg": F32}, written=("param", "square_avg"),
                       scalars={"lr": NON_NEGATIVE, "alpha": UNIT_CLOSED, "eps": NON_NEGATIVE,
                                "weight_decay": NON_NEGATIVE},
                       shapes={"grad": (12,), "square_avg": (14,)},
                       empty=lambda: {name: np.zeros(0, np.float32) for name in ("param", "grad", "square_avg")}
                       | {"lr": 0.1},
                       expect=(0,)),
    "clip_grad_norm": Op(lambda rng: {"grads": normal(rng, 5, 7), "max_norm": 0.5}, {"grads": F32},
                         written=("grads",), scalars={"max_norm": POSITIVE},
                         empty=lambda: {"grads": np.zeros((0, 7), np.float32), "max_norm": 1.0}, expect=()),
    "dropout": Op(lambda rng: {"x": normal(rng, 5, 7), "rate": 0.3, "seed": 7, "step": 2,
                               "out": np.empty((5, 7), np.float32), "mask_out": np.empty((5, 7), np.uint8)},
                  {"x": F32, "out": F32, "mask_out": U8}, optional=("out", "mask_out"),
                  outputs={"out": ("x",), "mask_out": ()},
                  scalars={"rate": UNIT_OPEN, "seed": UINT64, "step": UINT64},
                  shapes={"out": (5, 6), "mask_out": (7, 5)},
                  empty=lambda: {"x": np.zeros((0, 7), np.float32), "rate": 0.5, "seed": 1, "step": 0},
                  expect=(0, 7), elementwise=True),
    "dropout_grad": Op(lambda rng: {"grad_output": normal(rng, 5, 7),
                                    "mask": rng.integers(0, 2, (5, 7)).astype(np.uint8), "rate": 0.3,
                                    "out": np.empty((5, 7), np.float32)},
                       {"grad_output": F32, "mask": U8, "out": F32}, optional=("out",),
                       outputs={"out": ("grad_output",)}, scalars={"rate": UNIT_OPEN},
                       shapes={"mask": (5, 6), "out": (5, 6)},
                       empty=lambda: {"grad_output": np.zeros((0, 7), np.float32), "mask": np.zeros((0, 7), np.uint8),
                                      "rate": 0.5},
                       expect=(0, 7), elementwise=True),
}


def call(name, arguments):
    return getattr(ops, name)(**arguments)


def snapshot(value):
    """A copy of what an op returned (arrays it returns may be reused buffers)."""
    if isinstance(value, tuple):
        return tuple(snapshot(item) for item in value)
    return np.array(value) if isinstance(value, np.ndarray) else value


def assert_same(first, second):
    """Bit-identical results (NaN equal to NaN), for arrays, floats and tuples of them."""
    if isinstance(first, tuple):
        assert len(first) == len(second)
        for one, other in zip(first, second):
            assert_same(one, other)
    elif isinstance(first, np.ndarray):
        np.testing.assert_array_equal(first, second)
    else:
        assert first == second or (first != first and second != second)


def run_valid(name, rng_seed=11, change=None):
    """The result of the valid call (after ``change`` edits its arguments), and the arrays
    written in place, as copies."""
    arguments = OPS[name].make(np.random.default_rng(rng_seed))
    if change:
        change(arguments)
    result = snapshot(call(name, arguments))
    return result, {key: np.array(arguments[key]) for key in OPS[name].written}


def cases(select):
    return [pytest.param(name, *values, id="-".join(str(value) for value in (name, *values)))
            for name, op in OPS.items() for values in select(name, op)]


def test_every_public_op_has_an_entry():
    assert set(ops.__all__) == set(OPS), "every public op needs an entry in OPS (and no entry a missing op)"
    for name in ops.__all__:
        assert callable(getattr(ops, name))


@pytest.mark.parametrize("name", list(OPS))
def test_valid_call_runs(name):
    """The table's valid call works: the failures below come from the one argument changed."""
    run_valid(name)


# Array types ------------------------------------------------------------------------------------

WRONG_DTYPES = ["float64", "float16", "int32", "int64", "bool", "object", "complex64", "uint8"]


@pytest.mark.parametrize("name, argument, dtype", cases(lambda name, op: [
    (argument, dtype) for argument, expected in op.arrays.items() for dtype in WRONG_DTYPES
    if np.dtype(dtype) != expected]))
def test_wrong_dtype(name, argument, dtype):
    arguments = OPS[name].make(np.random.default_rng(1))
    with np.errstate(all="ignore"):
        # Outputs start uninitialised: their converted values do not matter.
        arguments[argument] = arguments[argument].astype(dtype)
    with pytest.raises(TypeError, match=rf"{argument}\b.*(dtype|expected)"):
        call(name, arguments)


class FakeCupyArray:
    """Stands in for a CuPy array (CuPy is not installed here): only its type's module says cupy."""


FakeCupyArray.__module__ = "cupy._core.core"

NOT_ARRAYS = {
    "list": lambda value: value.tolist(),
    "scalar": lambda value: 1.5,
    "string": lambda value: "x",
    "memoryview": lambda value: memoryview(value),
    "none": lambda value: None,
}


@pytest.mark.parametrize("name, argument, kind", cases(lambda name, op: [
    (argument, kind) for argument in list(op.arrays) + ([op.labels] if op.labels else [])
    for kind in NOT_ARRAYS if not (kind == "none" and argument in op.optional)
    # clip_grad_norm takes a list of arrays: a list of numbers is refused per entry below.
    and not (name == "clip_grad_norm" and kind == "list")]))
def test_not_an_array(name, argument, kind):
    arguments = OPS[name].make(np.random.default_rng(1))
    arguments[argument] = NOT_ARRAYS[kind](arguments[argument])
    with pytest.raises(TypeError, match=rf"^{argument}\b"):
        call(name, arguments)


@pytest.mark.parametrize("entry", [[1.0, 2.0], np.ones(3), None, "ab"], ids=["list", "float64", "none", "string"])
def test_clip_grad_norm_entries(entry):
    with pytest.raises(TypeError, match=r"^grads\[1\]"):
        ops.clip_grad_norm([np.ones(3, np.float32), entry], 1.0)


@pytest.mark.parametrize("name", list(OPS))
def test_wrong_device(name):
    """A CuPy array (emulated) among the arguments takes the op to the GPU path, which says what
    is missing; never a crash or a silent copy."""
    op = OPS[name]
    arguments = op.make(np.random.default_rng(1))
    first = next(iter(op.arrays))
    arguments[first] = FakeCupyArray()
    if not _C.cuda_compiled:
        with pytest.raises(RuntimeError, match=rf"{name}: got CuPy arrays, but this fusedtrain was built without CUDA"):
            call(name, arguments)
    else:
        # A CUDA build imports CuPy here; the emulated array then fails as a NumPy/CuPy mix or
        # for want of CuPy, both as exceptions.
        with pytest.raises((TypeError, ImportError, RuntimeError)):
            call(name, arguments)


# Ranks and shapes -------------------------------------------------------------------------------

@pytest.mark.parametrize("name, argument, change", cases(lambda name, op: [
    (argument, change) for argument in op.ranks for change in ("more", "fewer")]))
def test_wrong_rank(name, argument, change):
    arguments = OPS[name].make(np.random.default_rng(1))
    value = arguments[argument]
    arguments[argument] = value[None] if change == "more" else value.reshape(-1)[:1].reshape(())
    # An output is checked against the shape it must have, an input against its rank.
    with pytest.raises(ValueError, match=rf"^{argument}: expected (a {value.ndim}-D array|shape)"):
        call(name, arguments)


@pytest.mark.parametrize("name", [name for name, op in OPS.items() if op.labels])
def test_labels_of_wrong_rank(name):
    arguments = OPS[name].make(np.random.default_rng(1))
    arguments["labels"] = arguments["labels"][:, None]
    with pytest.raises(ValueError, match=r"^labels: expected a 1-D array"):
        call(name, arguments)


@pytest.mark.parametrize("name, argument", cases(lambda name, op: [(argument,) for argument in op.shapes]))
def test_wrong_shape(name, argument):
    op = OPS[name]
    arguments = op.make(np.random.default_rng(1))
    dtype = arguments[argument].dtype
    arguments[argument] = np.zeros(op.shapes[argument], dtype)
    with pytest.raises(ValueError, match=rf"^{argument}: "):
        call(name, arguments)


@pytest.mark.parametrize("name", [name for name, op in OPS.items() if op.elementwise])
@pytest.mark.parametrize("shape", [(35,), (5, 1, 7), (1, 5, 7, 1), ()], ids=["1d", "3d", "4d", "0d"])
def test_elementwise_ops_take_any_rank(name, shape):
    """Elementwise ops work on any shape: the values equal those of the 2-D call."""
    expected, _ = run_valid(name)
    arguments = OPS[name].make(np.random.default_rng(11))
    size = 1 if shape == () else 35
    for argument, value in arguments.items():
        if isinstance(value, np.ndarray):
            arguments[argument] = np.array(value.reshape(-1)[:size].reshape(shape))
    result = snapshot(call(name, arguments))
    for got, reference in zip(result if isinstance(result, tuple) else (result,),
                              expected if isinstance(expected, tuple) else (expected,)):
        assert got.shape == shape
        np.testing.assert_array_equal(got.reshape(-1), reference.reshape(-1)[:size])


@pytest.mark.parametrize("name", ["softmax", "softmax_grad"])
def test_softmax_works_over_the_last_axis_of_any_rank(name):
    expected, _ = run_valid(name)
    arguments = OPS[name].make(np.random.default_rng(11))
    for argument, value in arguments.items():
        arguments[argument] = np.array(value.reshape(5, 1, 7))
    np.testing.assert_array_equal(call(name, arguments).reshape(5, 7), expected)
    vector = {argument: np.array(value[2]) for argument, value in OPS[name].make(np.random.default_rng(11)).items()}
    np.testing.assert_array_equal(call(name, vector), expected[2])


def test_softmax_of_a_scalar_is_refused():
    with pytest.raises(ValueError, match=r"^x: softmax needs at least 1 dimension"):
        ops.softmax(np.array(1.0, np.float32))


@pytest.mark.parametrize("name", list(OPS))
def test_zero_size(name):
    op = OPS[name]
    arguments = op.empty()
    if op.expect and isinstance(op.expect[0], type):
        error, message = op.expect
        with pytest.raises(error, match=message):
            call(name, arguments)
        return
    result = call(name, arguments)
    if name == "clip_grad_norm":
        assert result == 0.0
    elif name == "bias_grad":
        np.testing.assert_array_equal(result, np.zeros(op.expect, np.float32))
    elif op.written:
        assert result is None
        assert arguments["param"].shape == op.expect
    else:
        for array in result if isinstance(result, tuple) else (result,):
            assert array.shape == op.expect


@pytest.mark.parametrize("shape", [(3, 0), (0, 0)])
def test_zero_size_rows(shape):
    """Rows of no columns: softmax and the elementwise ops return them, argmax refuses them
    (no index exists) unless there are no rows either, and a matmul over k = 0 is all zeros."""
    empty = np.zeros(shape, np.float32)
    assert ops.softmax(empty).shape == shape
    assert ops.softmax_grad(empty, empty).shape == shape
    if shape[0]:
        with pytest.raises(ValueError, match=r"^x: argmax of rows with no columns is undefined"):
            ops.argmax(empty)
        with pytest.raises(ValueError, match=r"^logits: expected at least one class column"):
            ops.softmax_cross_entropy(empty, np.zeros(shape[0], np.int64))
    else:
        assert ops.argmax(empty).shape == (0,)
    product = ops.matmul(np.zeros((3, 0), np.float32), np.zeros((0, 4), np.float32), bias=np.arange(4, dtype=np.float32))
    np.testing.assert_array_equal(product, np.tile(np.arange(4, dtype=np.float32), (3, 1)))


# Memory layout ----------------------------------------------------------------------------------

def strided(value, layout):
    """A non-contiguous view holding ``value``'s values in ``value``'s shape."""
    if layout == "every_other":
        base = np.zeros(value.shape[:-1] + (2 * value.shape[-1],), value.dtype)
        view = base[..., ::2]
    else:
        view = np.zeros(value.shape[::-1], value.dtype).T
    view[...] = value
    assert not view.flags.c_contiguous
    return view


def valid_shapes(op):
    arguments = op.make(np.random.default_rng(0))
    return {key: value.shape for key, value in arguments.items() if isinstance(value, np.ndarray)}


@pytest.mark.parametrize("name, argument, layout", cases(lambda name, op: [
    (argument, layout) for argument, shape in valid_shapes(op).items()
    for layout in ("every_other", "transposed") if layout == "every_other" or len(shape) == 2]))
def test_non_contiguous(name, argument, layout):
    arguments = OPS[name].make(np.random.default_rng(1))
    arguments[argument] = strided(arguments[argument], layout)
    with pytest.raises(ValueError, match=rf"^{argument}: expected a C-contiguous array"):
        call(name, arguments)


@pytest.mark.parametrize("name, argument", cases(lambda name, op: [
    (argument,) for argument, value in op.make(np.random.default_rng(0)).items()
    if isinstance(value, np.ndarray) and value.itemsize > 1]))
def test_unaligned(name, argument):
    arguments = OPS[name].make(np.random.default_rng(1))
    arguments[argument] = unaligned(arguments[argument])
    with pytest.raises(ValueError, match=rf"^{argument}: expected an array aligned to its \d-byte items"):
        call(name, arguments)


def test_compiled_calls_refuse_unaligned_arrays():
    """The extension's own checks, for a direct call past ops: a streaming store to an unaligned
    gradient would fault, so the refusal must not depend on the Python layer."""
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((2048, 1024)).astype(np.float32)
    labels = rng.integers(0, 1024, 2048)
    with pytest.raises(ValueError, match="^out: expected an array aligned to its 4-byte items"):
        _C.softmax_cross_entropy_loss(logits, labels, unaligned(np.zeros_like(logits)), 0)
    with pytest.raises(ValueError, match="^labels: expected an array aligned to its 8-byte items"):
        _C.softmax_cross_entropy_loss(logits, unaligned(labels), np.zeros_like(logits), 0)
    with pytest.raises(ValueError, match="^pred: expected an array aligned to its 4-byte items"):
        _C.mse_loss(unaligned(logits), logits, np.zeros_like(logits), 0)
    assert _C.gemm(unaligned(logits[:4]), logits[:, :4], None, None, False, False, 1.0, 0.0, None, 0.01,
                   ops.activations.ACTIVATIONS) is None


def read_only(value):
    value = np.array(value)
    value.flags.writeable = False
    return value


@pytest.mark.parametrize("name, argument", cases(lambda name, op: [
    (argument,) for argument in list(op.arrays) + ([op.labels] if op.labels else [])
    if argument not in op.outputs and argument not in op.written]))
def test_read_only_input_works(name, argument):
    expected, written = run_valid(name)

    def freeze(arguments):
        arguments[argument] = read_only(arguments[argument])

    result, written_read_only = run_valid(name, change=freeze)
    assert_same(result, expected)
    for key in written:
        np.testing.assert_array_equal(written_read_only[key], written[key])


@pytest.mark.parametrize("name, argument", cases(lambda name, op: [
    (argument,) for argument in list(op.outputs) + list(op.written)]))
def test_read_only_output_raises(name, argument):
    arguments = OPS[name].make(np.random.default_rng(1))
    arguments[argument] = read_only(arguments[argument])
    with pytest.raises(ValueError, match=rf"^{argument}: the array is read-only"):
        call(name, arguments)


def overlapping(first, second_shape, second_dtype):
    """Two C-contiguous, aligned arrays over one buffer: the first holding ``first``'s values,
    the second starting one element of the wider dtype into it, so that they partly overlap."""
    second_bytes = int(np.prod(second_shape)) * np.dtype(second_dtype).itemsize
    start = max(first.itemsize, np.dtype(second_dtype).itemsize)
    buffer = np.zeros(max(first.nbytes, start + second_bytes), np.uint8)
    head = buffer[:first.nbytes].view(first.dtype).reshape(first.shape)
    head[...] = first
    tail = buffer[start:start + second_bytes].view(second_dtype).reshape(second_shape)
    return head, tail


def alias_pairs(name, op):
    """(output or written array, input it overlaps) pairs: outputs against every array input,
    and each two arrays of an in-place update."""
    inputs = list(op.arrays) + ([op.labels] if op.labels else [])
    if op.outputs:
        return [(out, argument) for out in op.outputs for argument in inputs if argument != out]
    return [(first, second) for index, first in enumerate(inputs) for second in inputs[index + 1:]
            if first in op.written or second in op.written]


@pytest.mark.parametrize("name, target, source", cases(alias_pairs))
def test_partial_overlap_raises(name, target, source):
    arguments = OPS[name].make(np.random.default_rng(1))
    head, tail = overlapping(arguments[source], arguments[target].shape, arguments[target].dtype)
    arguments[source], arguments[target] = head, tail
    with pytest.raises(ValueError) as raised:
        call(name, arguments)
    message = str(raised.value)
    assert "shares memory" in message and target in message and source in message, message


def test_clip_grad_norm_refuses_overlapping_gradients():
    buffer = np.ones(10, np.float32)
    with pytest.raises(ValueError, match=r"^grads\[1\]: shares memory with grads\[0\]"):
        ops.clip_grad_norm([buffer[:6], buffer[4:]], 1.0)
    with pytest.raises(ValueError, match=r"shares memory"):
        ops.clip_grad_norm([buffer, buffer], 1.0)
    np.testing.assert_array_equal(buffer, 1.0)


def same_layout(op, first, second):
    arguments = op.make(np.random.default_rng(0))
    return arguments[first].shape == arguments[second].shape and arguments[first].dtype == arguments[second].dtype


@pytest.mark.parametrize("name, target, source", cases(lambda name, op: [
    (out, argument) for out in op.outputs for argument in op.arrays
    if argument != out and argument not in op.outputs and same_layout(op, out, argument)]))
def test_exact_alias(name, target, source):
    """out may be exactly an input only where the op documents it (an elementwise update in place);
    the in-place result then equals the out-of-place one."""
    op = OPS[name]
    arguments = op.make(np.random.default_rng(1))
    expected = snapshot(call(name, dict(arguments)))
    arguments = op.make(np.random.default_rng(1))
    arguments[target] = arguments[source]
    if source in op.outputs[target]:
        result = snapshot(call(name, arguments))
        assert_same(result, expected)
    else:
        with pytest.raises(ValueError, match=rf"^{target}: shares memory with {source}"):
            call(name, arguments)


# Values -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, value, dtype", cases(lambda name, op: [
    (value, dtype) for value in (-1, 4, 2**31 - 1, -2**31) for dtype in ("int32", "int64")
    if op.labels] + [(value, "int64") for value in (2**40, -2**62) if op.labels]))
def test_labels_out_of_range(name, value, dtype):
    arguments = OPS[name].make(np.random.default_rng(1))
    before = {key: np.array(value) for key, value in arguments.items() if isinstance(value, np.ndarray)}
    arguments["labels"] = arguments["labels"].astype(dtype)
    arguments["labels"][2] = value
    with pytest.raises(ValueError, match=rf"^labels: .*{value}.* outside \[0, 4\)"):
        call(name, arguments)
    if "out" in arguments:
        # On the CPU nothing is written before the labels are known to be valid.
        np.testing.assert_array_equal(arguments["out"], before["out"])


@pytest.mark.parametrize("name", [name for name, op in OPS.items() if op.labels])
@pytest.mark.parametrize("dtype", ["float32", "uint8", "int16", "bool", "uint64"])
def test_labels_of_wrong_dtype(name, dtype):
    arguments = OPS[name].make(np.random.default_rng(1))
    arguments["labels"] = arguments["labels"].astype(dtype)
    with pytest.raises(TypeError, match=r"^labels: expected a 1-D numpy.ndarray of int32 or int64 class labels"):
        call(name, arguments)


@pytest.mark.parametrize("name, argument, value, error", cases(lambda name, op: [
    (argument, value, error) for argument, bad in op.scalars.items()
    for value, error in (bad if argument in ("seed", "step", "reduction", "nesterov", "decoupled")
                         else COMMON_BAD_SCALARS + bad)]))
def test_bad_hyper_parameter(name, argument, value, error):
    arguments = OPS[name].make(np.random.default_rng(1))
    before = {key: np.array(item) for key, item in arguments.items() if isinstance(item, np.ndarray)}
    arguments[argument] = value
    with pytest.raises(error, match=rf"^{argument}: expected"):
        call(name, arguments)
    for key, array in before.items():
        np.testing.assert_array_equal(arguments[key], array, err_msg=f"{key} changed by a refused call")


def test_hyper_parameters_accept_numpy_scalars():
    rng = np.random.default_rng(3)
    param, grad = normal(rng, 9), normal(rng, 9)
    first, second = param.copy(), param.copy()
    ops.sgd_step(first, grad, lr=0.1, weight_decay=0.01)
    ops.sgd_step(second, grad, lr=np.float32(0.1), weight_decay=np.float64(0.01), nesterov=np.bool_(False))
    np.testing.assert_array_equal(first, second)
    m, v = np.zeros(9, np.float32), np.zeros(9, np.float32)
    ops.adam_step(param, grad, m, v, step=np.int64(2**62))
    assert np.isfinite(param).all()


def test_nesterov_needs_momentum_and_momentum_needs_velocity():
    param, grad = np.ones(3, np.float32), np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"^nesterov: Nesterov momentum needs momentum > 0"):
        ops.sgd_step(param, grad, np.zeros(3, np.float32), lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"^velocity: momentum > 0 needs a velocity buffer"):
        ops.sgd_step(param, grad, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"^beta: a non-zero beta scales the existing contents of out"):
        ops.matmul(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32), beta=1.0)
    with pytest.raises(ValueError, match=r"^activation: expected one of"):
        ops.matmul(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32), activation="softmax")


# NaN and infinity -------------------------------------------------------------------------------

SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.5, -2.25, 30.0, -30.0], np.float64)


def activation_derivative(name, z, slope=0.01):
    """d activation / dz in float64 (the formulas of the activations, differentiated by hand)."""
    if name == "relu":
        return np.where(z > 0, 1.0, 0.0)
    if name == "leaky_relu":
        return np.where(z > 0, 1.0, slope)
    if name == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-z))
        return s * (1.0 - s)
    if name == "tanh":
        return 1.0 - np.tanh(z) ** 2
    c = math.sqrt(2.0 / math.pi)
    t = np.tanh(c * (z + 0.044715 * z ** 3))
    return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t ** 2) * c * (1.0 + 3 * 0.044715 * z ** 2)


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "sigmoid", "tanh", "gelu"])
def test_activations_propagate_nan_like_numpy(name):
    """NaN in, NaN out at the same places; the other values are those of the float64 formula.
    Infinities give the functions' limits (gelu's: see test_gelu_limits)."""
    finite_or_nan = SPECIAL if name != "gelu" else SPECIAL[np.isnan(SPECIAL) | np.isfinite(SPECIAL)]
    with np.errstate(all="ignore"):
        expected = reference_activation(name, finite_or_nan)
        derivative = activation_derivative(name, finite_or_nan) * 0.5
    result = getattr(ops, name)(finite_or_nan.astype(np.float32))
    # float32 kernels against float64 formulas: 1e-5 relative, as in test_activations.py.
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-7, equal_nan=True)
    gradient = getattr(ops, f"{name}_grad")(np.full(finite_or_nan.shape, 0.5, np.float32),
                                            finite_or_nan.astype(np.float32))
    np.testing.assert_allclose(gradient, derivative, rtol=1e-5, atol=1e-7, equal_nan=True)
    nan_gradient = getattr(ops, f"{name}_grad")(np.full(3, np.nan, np.float32), np.array([1.0, 2.0, 3.0], np.float32))
    assert np.isnan(nan_gradient).all()


def test_gelu_limits(simd_path):
    # gelu(+inf) = +inf and gelu(-inf) = -0, the limits (the tanh-form formula itself would
    # evaluate -inf * 0 at -inf).
    result = ops.gelu(np.array([np.inf, -np.inf, -30.0], np.float32))
    np.testing.assert_array_equal(result, [np.inf, 0.0, 0.0])
    assert np.signbit(result[1:]).all()
    np.testing.assert_array_equal(ops.gelu_grad(np.ones(2, np.float32), np.array([np.inf, -np.inf], np.float32)),
                                  [1.0, 0.0])


def test_softmax_rows_with_nan_or_inf_are_nan_like_numpy():
    x = np.array([[np.nan, 1, 2], [np.inf, 1, 2], [-np.inf, 1, 2], [-np.inf] * 3, [1000, -1000, 0]], np.float64)
    with np.errstate(all="ignore"):
        expected = reference_activation("softmax", x)
    np.testing.assert_allclose(ops.softmax(x.astype(np.float32)), expected, rtol=1e-6, atol=1e-7, equal_nan=True)


def test_matmul_propagates_nan_and_inf():
    a = np.array([[np.nan, 1, 2], [1, 2, 3], [np.inf, 0, 0]], np.float32)
    b = np.arange(12, dtype=np.float32).reshape(3, 4) - 5
    with np.errstate(all="ignore"):
        expected = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(ops.matmul(a, b), expected, rtol=1e-6, equal_nan=True)
    # With beta == 0 the old contents of out are ignored, NaN included (BLAS semantics).
    out = np.full((3, 4), np.nan, np.float32)
    np.testing.assert_array_equal(ops.matmul(np.zeros((3, 3), np.float32), b, out=out), np.zeros((3, 4)))


def test_losses_propagate_nan():
    pred = np.array([[np.nan, 1.0], [0.5, 0.25]], np.float32)
    target = np.full((2, 2), 0.5, np.float32)
    for name in ("mse", "binary_cross_entropy"):
        loss, grad = getattr(ops, name)(pred, target)
        assert math.isnan(loss)
        np.testing.assert_array_equal(np.isnan(grad), [[True, False], [False, False]])
    loss, grad = ops.softmax_cross_entropy(pred, np.array([1, 0]))
    assert math.isnan(loss)
    np.testing.assert_array_equal(np.isnan(grad), [[True, True], [False, False]])
    loss, grad = ops.mse(np.array([np.inf], np.float32), np.zeros(1, np.float32))
    assert loss == math.inf and grad[0] == math.inf


def test_reductions_with_nan():
    scores = np.array([[1, np.nan, np.nan], [np.inf, 1, np.inf], [0, 1, 2]], np.float32)
    np.testing.assert_array_equal(ops.argmax(scores), np.argmax(scores, axis=1))
    labels = np.array([1, 0, 1])
    assert ops.accuracy(scores, labels) == np.mean(np.argmax(scores, axis=1) == labels)
    np.testing.assert_array_equal(np.isnan(ops.bias_grad(scores)), [False, True, True])


@pytest.mark.parametrize("name", ["sgd_step", "adam_step", "rmsprop_step"])
def test_optimizer_step_with_nan_gradient(name):
    """A NaN gradient spoils exactly its own parameter, as in PyTorch; the others are updated as
    they would be without it."""
    arguments = OPS[name].make(np.random.default_rng(11))
    clean = OPS[name].make(np.random.default_rng(11))
    arguments["grad"][4] = np.nan
    call(name, arguments)
    call(name, clean)
    assert np.isnan(arguments["param"][4])
    keep = np.arange(13) != 4
    np.testing.assert_array_equal(arguments["param"][keep], clean["param"][keep])


def test_clip_grad_norm_with_non_finite_gradients():
    for bad in (np.nan, np.inf):
        grads = [np.array([bad, 1.0], np.float32), np.full(3, 2.0, np.float32)]
        norm = ops.clip_grad_norm(grads, 0.5)
        if math.isnan(bad):
            assert math.isnan(norm)
        else:
            assert norm == math.inf
        np.testing.assert_array_equal(grads[1], 2.0)


def test_dropout_zeroes_dropped_elements_even_nan():
    """A dropped element is 0 whatever it held (the mask selects, it does not multiply)."""
    x = np.full(64, np.nan, np.float32)
    y, mask = ops.dropout(x, 0.5, seed=3, step=1)
    assert 0 < mask.sum() < 64
    np.testing.assert_array_equal(y[mask == 0], 0.0)
    assert np.isnan(y[mask == 1]).all()
    grad = ops.dropout_grad(x, mask, 0.5)
    np.testing.assert_array_equal(grad[mask == 0], 0.0)
    assert np.isnan(grad[mask == 1]).all()


# Layers -----------------------------------------------------------------------------------------

def public_classes(module, base):
    return {name for name, value in vars(module).items()
            if isinstance(value, type) and issubclass(value, base) and not name.startswith("_")
            and value.__module__ == module.__name__}


def table_cases(table, with_name=False):
    """One pytest.param per case of a {name: [case, ...]} table, with id "name-index"; with_name,
    the name comes first among the case's values."""
    return [pytest.param(*((name,) if with_name else ()), *case, id=f"{name}-{index}")
            for name, entries in table.items() for index, case in enumerate(entries)]


LAYER_CASES = {
    "Layer": [(lambda: layers.Layer(name=""), ValueError, r"^name: expected a non-empty string"),
              (lambda: layers.Layer(trainable="yes"), TypeError, r"^trainable: expected True or False")],
    "Dense": [(lambda: layers.Dense(0), ValueError, r"^units: expected an integer >= 1"),
              (lambda: layers.Dense(-3), ValueError, r"^units: expected an integer >= 1"),
              (lambda: layers.Dense(4.0), TypeError, r"^units: expected an integer"),
              (lambda: layers.Dense("4"), TypeError, r"^units: expected an integer"),
              (lambda: layers.Dense(True), TypeError, r"^units: expected an integer"),
              (lambda: layers.Dense(None), TypeError, r"^units: expected an integer"),
              (lambda: layers.Dense(3, activation="swish"), ValueError, r"^activation: expected None or one of"),
              (lambda: layers.Dense(3, activation=np.tanh), ValueError, r"^activation: expected None or one of"),
              (lambda: layers.Dense(3, use_bias="no"), TypeError, r"^use_bias: expected True or False"),
              (lambda: layers.Dense(3, use_bias=None), TypeError, r"^use_bias: expected True or False"),
              (lambda: layers.Dense(3, kernel_initializer="nope"), ValueError, r"initializer"),
              (lambda: layers.Dense(3, kernel_regularizer="nope"), ValueError, r"^kernel_regularizer: expected"),
              (lambda: layers.Dense(3, input_dim=0), ValueError, r"^input_dim: expected an integer >= 1"),
              (lambda: layers.Dense(3, input_dim=2.5), TypeError, r"^input_dim: expected an integer"),
              (lambda: layers.Dense(3, name=3), ValueError, r"^name: expected a non-empty string"),
              (lambda: layers.Dense(3, trainable=1), TypeError, r"^trainable: expected True or False")],
    "Dropout": [(lambda: layers.Dropout(1.0), ValueError, r"^rate: expected a value in \[0.0, 1.0\)"),
                (lambda: layers.Dropout(-0.1), ValueError, r"^rate: expected a value in"),
                (lambda: layers.Dropout(float("nan")), ValueError, r"^rate: expected a finite number"),
                (lambda: layers.Dropout("0.1"), TypeError, r"^rate: expected a real number"),
                (lambda: layers.Dropout(True), TypeError, r"^rate: expected a real number"),
                (lambda: layers.Dropout(0.1, seed=-1), ValueError, r"^seed: expected an integer in"),
                (lambda: layers.Dropout(0.1, seed=2**64), ValueError, r"^seed: expected an integer in"),
                (lambda: layers.Dropout(0.1, seed=1.5), TypeError, r"^seed: expected an integer")],
    "Activation": [(lambda: layers.Activation("swish"), ValueError, r"^activation: expected None or one of"),
                   (lambda: layers.Activation(3), ValueError, r"^activation: expected None or one of"),
                   (lambda: layers.Activation("relu", negative_slope="a"), TypeError, r"^negative_slope: expected")],
    "LeakyReLU": [(lambda: layers.LeakyReLU(float("nan")), ValueError, r"^negative_slope: expected a finite number"),
                  (lambda: layers.LeakyReLU(float("inf")), ValueError, r"^negative_slope: expected a finite number"),
                  (lambda: layers.LeakyReLU("a"), TypeError, r"^negative_slope: expected a real number")],
    "ReLU": [(lambda: layers.ReLU(name=""), ValueError, r"^name: expected a non-empty string")],
    "Sigmoid": [(lambda: layers.Sigmoid(name=5), ValueError, r"^name: expected a non-empty string")],
    "Tanh": [(lambda: layers.Tanh(name=""), ValueError, r"^name: expected a non-empty string")],
    "GELU": [(lambda: layers.GELU(name=""), ValueError, r"^name: expected a non-empty string")],
    "Softmax": [(lambda: layers.Softmax(name=""), ValueError, r"^name: expected a non-empty string")],
    "Normalization": [
        (lambda: layers.Normalization(mean=[0.0]), ValueError, r"^mean, variance: give both or neither"),
        (lambda: layers.Normalization(mean=[0.0], variance=[-1.0]), ValueError, r"^variance: must be >= 0"),
        (lambda: layers.Normalization(mean=[0.0], variance=[np.nan]), ValueError, r"^variance: contains nan"),
        (lambda: layers.Normalization(mean=[np.inf], variance=[1.0]), ValueError, r"^mean: contains inf"),
        (lambda: layers.Normalization(mean=["a"], variance=[1.0]), TypeError, r"^mean: expected numeric values"),
        (lambda: layers.Normalization(mean=None, variance=[1.0]), ValueError, r"^mean, variance"),
        (lambda: layers.Normalization(mean=[[0.0]], variance=[[1.0]]), ValueError, r"^mean: expected one value per"),
        (lambda: layers.Normalization(mean=[], variance=[]), ValueError, r"^mean: expected one value per"),
        (lambda: layers.Normalization(mean=[0.0, 1.0], variance=[1.0]), ValueError, r"^variance: expected one value"),
        (lambda: layers.Normalization(mean=[[0.0], [1.0, 2.0]], variance=[1.0]), ValueError,
         r"^mean: cannot be read as an array"),
        (lambda: layers.Normalization(epsilon=0.0), ValueError, r"^epsilon: expected a value in \(0.0"),
        (lambda: layers.Normalization(epsilon=float("nan")), ValueError, r"^epsilon: expected a finite number"),
        (lambda: layers.Normalization().adapt(np.ones(3)), ValueError, r"^x: expected a 2-D array"),
        (lambda: layers.Normalization().adapt(np.zeros((0, 3))), ValueError, r"^x: empty data"),
        (lambda: layers.Normalization().adapt(np.array([[np.nan, 1.0]])), ValueError, r"^x: contains nan"),
        (lambda: layers.Normalization().adapt(np.array([["a"]])), TypeError, r"^x: expected numeric values"),
        (lambda: layers.Normalization().adapt(None), TypeError, r"^x: expected an array of numbers, got None"),
        (lambda: setattr(layers.Normalization(), "trainable", True), ValueError, r"^trainable: a Normalization layer"),
    ],
}


def test_every_layer_has_bad_input_cases():
    assert public_classes(layers, layers.Layer) == set(LAYER_CASES)


@pytest.mark.parametrize("make, error, message", table_cases(LAYER_CASES))
def test_layer_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


@pytest.mark.parametrize("build, message", [
    (lambda: ft.Sequential([layers.Dense(2**40)], input_dim=3).build(), r"^units, input_dim: layer 'dense'"),
    (lambda: ft.Sequential([layers.Dense(2**70)], input_dim=3).build(), r"^units, input_dim: layer 'dense'"),
    (lambda: ft.Sequential([layers.Dense(4)], input_dim=2**40).build(), r"^units, input_dim: .*\(1099511627776, 4\)"),
    (lambda: ft.Sequential([layers.Normalization(), layers.Dense(2)], input_dim=2**62).build(),
     r"^input_dim: layer 'normalization'"),
    (lambda: ft.Sequential([layers.Dense(2**40)]).fit(np.ones((4, 3)), np.ones((4, 1)), loss="mse", verbose=0),
     r"^units, input_dim"),
], ids=["units-2^40", "units-2^70", "input_dim-2^40", "normalization-2^62", "fit-units-2^40"])
def test_huge_layer_sizes_are_refused_before_allocating(build, message):
    """A layer larger than the machine's memory is refused by name, not by a MemoryError (or an
    overflowing NumPy shape) from deep inside the build."""
    with pytest.raises(ValueError, match=message):
        build()


# Models -----------------------------------------------------------------------------------------

def small_data(rng, rows=17):
    x = normal(rng, rows, 3)
    return x, (x[:, 0] > 0).astype(np.int64)


def classifier():
    model = ft.Sequential([layers.Dense(4, activation="relu"), layers.Dense(2)], seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


X, Y = small_data(np.random.default_rng(5))

FIT_CASES = [
    ("x-object", {"x": X.astype(object)}, TypeError, r"^x: expected numeric values, got dtype object"),
    ("x-complex", {"x": X.astype(np.complex64)}, TypeError, r"^x: expected numeric values, got dtype complex64"),
    ("x-strings", {"x": X.astype(str)}, TypeError, r"^x: expected numeric values"),
    ("x-none", {"x": None}, TypeError, r"^x: expected an array of numbers, got None"),
    ("x-ragged", {"x": [[1.0, 2.0], [3.0]]}, ValueError, r"^x: cannot be read as an array"),
    ("x-dict", {"x": {"a": 1}}, TypeError, r"^x: expected numeric values"),
    ("x-1d", {"x": X[:, 0]}, ValueError, r"^x: expected a 2-D array \(samples, features\), got shape \(17,\)"),
    ("x-3d", {"x": X[None]}, ValueError, r"^x: expected a 2-D array"),
    ("x-scalar", {"x": 3.0}, ValueError, r"^x: expected a 2-D array"),
    ("x-no-rows", {"x": X[:0], "y": Y[:0]}, ValueError, r"^x: empty data \(0 samples\)"),
    ("x-no-columns", {"x": X[:, :0]}, ValueError, r"^x: expected at least one feature column"),
    ("x-nan", {"x": np.where(X > 1, np.nan, X)}, ValueError, r"^x: contains nan at row \d+, column \d+"),
    ("x-inf", {"x": np.where(X > 1, -np.inf, X)}, ValueError, r"^x: contains -inf at row"),
    ("x-overflow", {"x": X.astype(np.float64) * 1e39}, ValueError, r"^x: the value .* overflows float32"),
    ("x-gpu", {"x": FakeCupyArray()}, TypeError, r"^x: a GPU array \(cupy._core.core.FakeCupyArray\)"),
    ("y-shorter", {"y": Y[:16]}, ValueError, r"^y: expected 17 samples \(as many rows as x\), got 16"),
    ("y-none", {"y": None}, TypeError, r"^y: expected an array of targets, one per sample, got None"),
    ("y-three-labels", {"y": np.arange(17) % 3 + 1}, ValueError,
     r"^y: 3 distinct labels \(1, 2, 3\), but the model has 2 classes"),
    ("y-three-texts", {"y": (np.arange(17) % 3).astype(str)}, ValueError, r"^y: 3 distinct labels \('0', '1', '2'\)"),
    ("y-fractional", {"y": Y + 0.5}, ValueError, r"^y: class labels must be integers, got \d\.5"),
    ("y-nan", {"y": np.where(Y > 0, np.nan, 0.0)}, ValueError, r"^y: class labels must be integers, got nan"),
    ("y-object-none", {"y": np.array([None] + list(Y[1:]), dtype=object)}, ValueError,
     r"^y: the label at index 0 is missing \(None\)"),
    ("y-mixed", {"y": np.array(["a"] + list(Y[1:]), dtype=object)}, TypeError, r"^y: the labels mix text and numbers"),
    ("y-complex", {"y": Y.astype(np.complex64)}, TypeError, r"^y: class labels must be integers"),
    ("y-one-hot", {"y": np.eye(2)[Y]}, ValueError, r"^y: sparse_categorical_crossentropy takes one class index"),
    ("y-gpu", {"y": FakeCupyArray()}, TypeError, r"^y: a GPU array"),
    ("batch_size-0", {"batch_size": 0}, ValueError, r"^batch_size: expected an integer >= 1, got 0"),
    ("batch_size-negative", {"batch_size": -1}, ValueError, r"^batch_size: expected an integer >= 1"),
    ("batch_size-float", {"batch_size": 1.5}, TypeError, r"^batch_size: expected an integer, got float"),
    ("batch_size-bool", {"batch_size": True}, TypeError, r"^batch_size: expected an integer, got bool"),
    ("batch_size-string", {"batch_size": "32"}, TypeError, r"^batch_size: expected an integer, got str"),
    ("batch_size-none", {"batch_size": None}, TypeError, r"^batch_size: expected an integer"),
    ("epochs-0", {"epochs": 0}, ValueError, r"^epochs: expected an integer >= 1"),
    ("epochs-negative", {"epochs": -5}, ValueError, r"^epochs: expected an integer >= 1"),
    ("epochs-float", {"epochs": 2.0}, TypeError, r"^epochs: expected an integer"),
    ("epochs-none", {"epochs": None}, TypeError, r"^epochs: expected an integer"),
    ("initial_epoch-after-epochs", {"initial_epoch": 5}, ValueError, r"^epochs: training would end at epoch 1"),
    ("initial_epoch-negative", {"initial_epoch": -1}, ValueError, r"^initial_epoch: expected an integer >= 0"),
    ("validation_split-1", {"validation_split": 1.0}, ValueError, r"^validation_split: expected a value in \[0.0, 1.0\)"),
    ("validation_split-negative", {"validation_split": -0.1}, ValueError, r"^validation_split: expected a value in"),
    ("validation_split-nan", {"validation_split": float("nan")}, ValueError, r"^validation_split: expected a finite"),
    ("validation_split-string", {"validation_split": "0.2"}, TypeError, r"^validation_split: expected a real number"),
    ("validation_split-empty-validation", {"validation_split": 0.01}, None, None),
    ("validation_split-empty-training", {"validation_split": 0.99}, ValueError,
     r"^validation_split: 0.99 of 17 samples leaves an empty training set"),
    ("validation_data-one-array", {"validation_data": X}, ValueError, r"^validation_data: expected a tuple"),
    ("validation_data-one-item", {"validation_data": (X,)}, ValueError, r"^validation_data: expected a tuple"),
    ("validation_data-four-items", {"validation_data": (X, Y, None, None)}, ValueError, r"^validation_data: expected a tuple"),
    ("validation_data-dict", {"validation_data": {"x": X}}, ValueError, r"^validation_data: expected a tuple"),
    ("validation_data-lengths", {"validation_data": (X, Y[:3])}, ValueError,
     r"^validation_data\[1\]: expected 17 samples"),
    ("validation_data-width", {"validation_data": (X[:, :2], Y)}, ValueError,
     r"^validation_data\[0\]: the model takes 3 features per sample, got 2"),
    ("validation_data-empty", {"validation_data": (X[:0], Y[:0])}, ValueError, r"^validation_data\[0\]: empty data"),
    ("validation_data-nan", {"validation_data": (np.full((2, 3), np.nan), Y[:2])}, ValueError,
     r"^validation_data\[0\]: contains nan"),
    ("validation_data-labels", {"validation_data": (X, Y + 5)}, ValueError,
     r"^validation_data\[1\]: class labels must be in \[0, 2\)"),
    ("shuffle-string", {"shuffle": "yes"}, TypeError, r"^shuffle: expected True or False"),
    ("shuffle-int", {"shuffle": 1}, TypeError, r"^shuffle: expected True or False"),
    ("verbose-3", {"verbose": 3}, ValueError, r"^verbose: expected an integer in \[0, 2\]"),
    ("verbose-string", {"verbose": "1"}, TypeError, r"^verbose: expected an integer"),
    ("seed-negative", {"seed": -1}, ValueError, r"^seed: expected an integer >= 0"),
    ("seed-float", {"seed": 1.5}, TypeError, r"^seed: expected an integer"),
    ("callbacks-single", {"callbacks": callbacks.EarlyStopping()}, TypeError,
     r"^callbacks: expected a list of callbacks, got EarlyStopping"),
    ("callbacks-entry", {"callbacks": [3]}, TypeError, r"^callbacks\[1\]: expected a fusedtrain.callbacks.Callback"),
    ("callbacks-string", {"callbacks": "stop"}, TypeError, r"^callbacks: expected a list"),
    ("terminate_on_nan-string", {"terminate_on_nan": "no"}, TypeError, r"^terminate_on_nan: expected True or False"),
    ("optimizer-unknown", {"optimizer": "adagrad"}, ValueError, r"^optimizer: expected an Optimizer or one of"),
    ("loss-unknown", {"loss": "hinge"}, ValueError, r"^loss: expected a Loss or one of"),
    ("metrics-string", {"metrics": "accuracy"}, TypeError, r"^metrics: expected a list of metric names"),
    ("metrics-unknown", {"metrics": ["f1"]}, ValueError, r"^metrics: expected Metric objects or names"),
    ("metrics-duplicate", {"metrics": ["accuracy", "accuracy"]}, ValueError, r"^metrics: each metric needs a distinct"),
    ("class_weight-class", {"class_weight": {2: 2.0}}, ValueError,
     r"^class_weight: 2 is not one of the model's classes \(the class indices 0..1\)"),
    ("class_weight-list", {"class_weight": [1.0, 2.0]}, TypeError, r"^class_weight: expected a dict"),
    ("class_weight-inf", {"class_weight": {0: float("inf")}}, ValueError, r"^class_weight\[0\]: expected a finite number"),
    ("sample_weight-length", {"sample_weight": np.ones(16)}, ValueError,
     r"^sample_weight: expected one weight per sample, shape \(17,\), got shape \(16,\)"),
    ("sample_weight-negative", {"sample_weight": -np.ones(17)}, ValueError,
     r"^sample_weight: expected finite non-negative weights, got -1 at index 0"),
]


@pytest.mark.parametrize("changes, error, message", [pytest.param(*case[1:], id=case[0]) for case in FIT_CASES])
def test_fit_arguments(changes, error, message):
    """Every refused fit leaves the weights and the optimizer untouched."""
    model = classifier()
    model.build(3)
    before = model.get_weights()
    arguments = {"x": X, "y": Y, "epochs": 1, "verbose": 0, **changes}
    if error is None:
        # 0.01 of 17 samples rounds to a validation set of one sample, which is still valid.
        model.fit(**arguments)
        return
    with pytest.raises(error, match=message):
        model.fit(**arguments)
    for weight, original in zip(model.get_weights(), before):
        np.testing.assert_array_equal(weight, original)
    assert model.optimizer.iterations == 0


@pytest.mark.parametrize("convert", [
    lambda x: x.astype(np.float64), lambda x: x.tolist(), lambda x: memoryview(np.ascontiguousarray(x)),
    lambda x: np.asfortranarray(x), lambda x: np.repeat(x, 2, axis=1)[:, ::2], lambda x: read_only(x)],
    ids=["float64", "list", "memoryview", "fortran", "strided", "read-only"])
def test_fit_accepts_other_array_forms_with_identical_results(convert):
    """Data given in another form (converted once) trains exactly as the float32 array does."""
    expected = classifier()
    expected.fit(X, Y, epochs=2, verbose=0, seed=1)
    model = classifier()
    model.fit(convert(X), Y.tolist(), epochs=2, verbose=0, seed=1)
    for weight, reference in zip(model.get_weights(), expected.get_weights()):
        np.testing.assert_array_equal(weight, reference)
    np.testing.assert_array_equal(model.predict(convert(X)), expected.predict(X))


def test_huge_sizes_in_training_arguments():
    """batch_size and epochs far beyond the data are no overflow: the batch is all the data, and
    training ends when a callback stops it."""
    model = classifier()
    model.fit(X, Y, batch_size=2**63, epochs=2**63, verbose=0,
              callbacks=[callbacks.EarlyStopping(monitor="loss", min_delta=1e9)])
    # The first epoch always improves on nothing; the second cannot improve by 1e9 and stops.
    assert len(model.history.epoch) == 2
    assert model.predict(X, batch_size=2**64).shape == (17, 2)
    assert set(model.evaluate(X, Y, batch_size=2**63)) == {"loss", "accuracy"}


def test_predict_and_evaluate_arguments():
    model = classifier()
    model.fit(X, Y, verbose=0)
    with pytest.raises(ValueError, match=r"^x: the model takes 3 features per sample, got 5"):
        model.predict(np.ones((2, 5)))
    with pytest.raises(ValueError, match=r"^x: empty data"):
        model.predict(X[:0])
    with pytest.raises(ValueError, match=r"^x: contains nan"):
        model.predict(np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match=r"^batch_size: expected an integer >= 1"):
        model.predict(X, batch_size=0)
    with pytest.raises(TypeError, match=r"^batch_size: expected an integer"):
        model.evaluate(X, Y, batch_size="8")
    with pytest.raises(ValueError, match=r"^y: class labels must be in \[0, 2\)"):
        model.evaluate(X, Y + 2)
    with pytest.raises(TypeError, match=r"^x: a GPU array"):
        model.predict(FakeCupyArray())
    with pytest.raises(RuntimeError, match=r"^evaluate: the model is not compiled"):
        ft.Sequential([layers.Dense(2)], input_dim=3).evaluate(X, Y)


@pytest.mark.parametrize("make, error, message", [
    (lambda: ft.Sequential("dense"), TypeError, r"^layers: expected a list of layers"),
    (lambda: ft.Sequential(layers.Dense(2)), TypeError, r"^layers: expected a list of layers"),
    (lambda: ft.Sequential(device="gpu"), ValueError, r"^device: expected 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    (lambda: ft.Sequential(device=3), ValueError, r"^device: expected"),
    (lambda: ft.Sequential(device="cuda:x"), ValueError, r"^device: expected 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    (lambda: ft.Sequential(seed=-1), ValueError, r"^seed: expected an integer >= 0"),
    (lambda: ft.Sequential(seed=0.5), TypeError, r"^seed: expected an integer"),
    (lambda: ft.Sequential(input_dim=0), ValueError, r"^input_dim: expected an integer >= 1"),
    (lambda: ft.Sequential().add("dense"), TypeError, r"^layer: expected a fusedtrain.layers.Layer"),
    (lambda: (lambda layer: ft.Sequential([layer, layer]))(layers.Dense(2)), ValueError, r"^layer: 'dense' already"),
    (lambda: ft.Sequential([layers.Dense(2, name="a"), layers.Dense(2, name="a")]), ValueError,
     r"^layer: the model already has a layer named 'a'"),
    (lambda: ft.Sequential().fit(X, Y, loss="mse", verbose=0), ValueError, r"^layers: the model has no layers"),
    (lambda: ft.Sequential([layers.Dense(2)]).compile(loss=None), ValueError, r"^loss: expected"),
    (lambda: ft.Sequential([layers.Dense(2)]).compile(loss=3), TypeError, r"^loss: expected a Loss or one of"),
    (lambda: ft.Sequential([layers.Dense(1)]).compile(loss="sparse_categorical_crossentropy"), ValueError,
     r"^loss: sparse_categorical_crossentropy needs one output per class"),
    (lambda: ft.Sequential([layers.Dense(2)]).compile(loss="mse", metrics=["accuracy"]), ValueError,
     r"^metrics: accuracy needs a classification loss"),
    (lambda: classifier().set_weights(np.ones(3)), TypeError, r"^weights: expected a list of arrays"),
    (lambda: classifier().set_weights([np.ones(3)]), ValueError, r"^weights\[0\]: expected the first kernel"),
    (lambda: ft.Sequential([layers.Dense(2)], input_dim=3).set_weights([np.ones((3, 2)), np.ones(3)]), ValueError,
     r"^weights\[1\]: expected shape \(2,\)"),
    (lambda: ft.Sequential([layers.Dense(2)], input_dim=3).set_weights([np.full((3, 2), np.nan), np.ones(2)]),
     ValueError, r"^weights\[0\]: contains nan"),
], ids=["layers-string", "layers-single", "device-gpu", "device-int", "device-cuda-index", "seed-negative", "seed-float",
        "input_dim-0", "add-string", "add-twice", "duplicate-name", "no-layers", "loss-none", "loss-int",
        "one-output-classifier", "accuracy-regression", "set_weights-array", "set_weights-rank", "set_weights-shape",
        "set_weights-nan"])
def test_model_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_loss_and_metric_objects_refuse_bad_names():
    assert public_classes(losses, losses.Loss) == {"Loss", "MeanSquaredError", "BinaryCrossentropy",
                                                   "SparseCategoricalCrossentropy", "CategoricalCrossentropy"}
    assert public_classes(metrics, metrics.Metric) == {"Metric", "Accuracy", "MeanAbsoluteError", "MeanSquaredError"}
    # An unknown name is a ValueError, anything but a name or an object a TypeError.
    for bad, error in (("nope", ValueError), (3, TypeError), (None, TypeError)):
        with pytest.raises(error, match=r"^loss: expected a Loss or one of"):
            losses.get(bad)
        with pytest.raises(error, match=r"^metrics: expected Metric objects or names"):
            metrics.get(bad)
    with pytest.raises(ValueError, match=r"^y: binary_crossentropy needs targets in \[0, 1\], got 2"):
        losses.BinaryCrossentropy().targets(np.array([0.0, 2.0]), 2, 1)
    with pytest.raises(ValueError, match=r"^y: mse needs targets of shape \(2, 3\)"):
        losses.MeanSquaredError().targets(np.ones((2, 2)), 2, 3)
    with pytest.raises(ValueError, match=r"^y: contains inf at index 1"):
        losses.MeanSquaredError().targets(np.array([0.0, np.inf]), 2, 1)


# Optimizers -------------------------------------------------------------------------------------

OPTIMIZER_ARGUMENTS = {
    "SGD": {"learning_rate": NON_NEGATIVE, "lr": NON_NEGATIVE, "clipnorm": POSITIVE, "momentum": NON_NEGATIVE,
            "weight_decay": NON_NEGATIVE, "nesterov": FLAG},
    "Adam": {"learning_rate": NON_NEGATIVE, "lr": NON_NEGATIVE, "clipnorm": POSITIVE, "beta_1": UNIT_OPEN,
             "beta_2": UNIT_OPEN, "epsilon": NON_NEGATIVE, "weight_decay": NON_NEGATIVE},
    "AdamW": {"learning_rate": NON_NEGATIVE, "lr": NON_NEGATIVE, "clipnorm": POSITIVE, "beta_1": UNIT_OPEN,
              "beta_2": UNIT_OPEN, "epsilon": NON_NEGATIVE, "weight_decay": NON_NEGATIVE},
    "RMSprop": {"learning_rate": NON_NEGATIVE, "lr": NON_NEGATIVE, "clipnorm": POSITIVE, "rho": UNIT_CLOSED,
                "epsilon": NON_NEGATIVE, "weight_decay": NON_NEGATIVE},
}
# None means "the default" for these, and learning_rate's alias lr.
OPTIONAL_ARGUMENTS = ("learning_rate", "lr", "clipnorm", "weight_decay")


def test_every_optimizer_has_bad_input_cases():
    assert public_classes(optimizers, optimizers.Optimizer) - {"Optimizer"} == set(OPTIMIZER_ARGUMENTS)
    for name, table in OPTIMIZER_ARGUMENTS.items():
        parameters = set(inspect.signature(getattr(optimizers, name)).parameters)
        assert parameters == set(table), f"{name}: every constructor argument needs bad-input cases"


@pytest.mark.parametrize("name, argument, value, error", [
    pytest.param(name, argument, value, error, id=f"{name}-{argument}-{value!r}")
    for name, table in OPTIMIZER_ARGUMENTS.items() for argument, bad in table.items()
    for value, error in (bad if argument == "nesterov" else COMMON_BAD_SCALARS + bad)
    if not (value is None and argument in OPTIONAL_ARGUMENTS)])
def test_optimizer_arguments(name, argument, value, error):
    expected_name = "learning_rate" if argument == "lr" else argument
    with pytest.raises(error, match=rf"^{expected_name}: expected"):
        getattr(optimizers, name)(**{argument: value})


def test_optimizer_misuse():
    with pytest.raises(ValueError, match=r"^lr: is an alias of learning_rate"):
        optimizers.SGD(0.1, lr=0.1)
    with pytest.raises(TypeError, match=r"^learning_rate: expected a number; for a schedule use"):
        optimizers.Adam(learning_rate=schedules.StepDecay(0.1))
    optimizer = optimizers.Adam()
    for value, error in COMMON_BAD_SCALARS + NON_NEGATIVE:
        with pytest.raises(error, match=r"^learning_rate: expected"):
            optimizer.learning_rate = value
    assert optimizer.learning_rate == 1e-3
    for bad, error in (("adagrad", ValueError), (3, TypeError), (None, TypeError)):
        with pytest.raises(error, match=r"^optimizer: expected an Optimizer or one of"):
            optimizers.get(bad)
    with pytest.raises(ValueError, match=r"^size: expected an integer >= 0"):
        optimizers.SGD().build(-1)
    with pytest.raises(RuntimeError, match=r"^load_state: the optimizer is not built"):
        optimizers.SGD().load_state({}, 0)
    optimizer = optimizers.Adam()
    optimizer.build(4)
    with pytest.raises(ValueError, match=r"^state\['m'\]: expected float32 of shape \(4,\)"):
        optimizer.load_state({"m": np.zeros(3, np.float32), "v": np.zeros(4, np.float32)}, 1)
    with pytest.raises(ValueError, match=r"^iterations: expected an integer >= 0"):
        optimizer.load_state({"m": np.zeros(4, np.float32), "v": np.zeros(4, np.float32)}, -1)
    with pytest.raises(ValueError, match=r"^optimizer: this Adam already holds state for 4 parameters"):
        optimizer.build(5)


# Callbacks and schedules ------------------------------------------------------------------------

CALLBACK_CASES = {
    "EarlyStopping": [
        ({"monitor": 3}, TypeError, r"^monitor: expected the name of a logged quantity"),
        ({"monitor": ""}, ValueError, r"^monitor: expected the name"),
        ({"mode": "up"}, ValueError, r"^mode: expected one of 'auto', 'min', 'max'"),
        ({"mode": None}, ValueError, r"^mode: expected one of"),
        ({"patience": -1}, ValueError, r"^patience: expected an integer >= 0"),
        ({"patience": 1.5}, TypeError, r"^patience: expected an integer"),
        ({"patience": True}, TypeError, r"^patience: expected an integer"),
        ({"min_delta": -1}, ValueError, r"^min_delta: expected a value in \[0.0"),
        ({"min_delta": float("nan")}, ValueError, r"^min_delta: expected a finite number"),
        ({"baseline": float("inf")}, ValueError, r"^baseline: expected a finite number"),
        ({"baseline": "0.5"}, TypeError, r"^baseline: expected a real number"),
        ({"restore_best_weights": 1}, TypeError, r"^restore_best_weights: expected True or False"),
        ({"start_from_epoch": -1}, ValueError, r"^start_from_epoch: expected an integer >= 0"),
        ({"verbose": -1}, ValueError, r"^verbose: expected an integer >= 0"),
        ({"verbose": "1"}, TypeError, r"^verbose: expected an integer")],
    "ReduceLROnPlateau": [
        ({"factor": 1.0}, ValueError, r"^factor: expected a value in \(0.0, 1.0\)"),
        ({"factor": 0.0}, ValueError, r"^factor: expected a value in"),
        ({"factor": float("nan")}, ValueError, r"^factor: expected a finite number"),
        ({"factor": "0.5"}, TypeError, r"^factor: expected a real number"),
        ({"patience": -1}, ValueError, r"^patience: expected an integer >= 0"),
        ({"cooldown": -1}, ValueError, r"^cooldown: expected an integer >= 0"),
        ({"cooldown": 0.5}, TypeError, r"^cooldown: expected an integer"),
        ({"min_lr": -1}, ValueError, r"^min_lr: expected a value in \[0.0"),
        ({"min_lr": float("inf")}, ValueError, r"^min_lr: expected a finite number"),
        ({"min_delta": -1}, ValueError, r"^min_delta: expected"),
        ({"mode": "x"}, ValueError, r"^mode: expected one of"),
        ({"monitor": None}, TypeError, r"^monitor: expected the name")],
    "LearningRateScheduler": [
        ({"schedule": 3}, TypeError, r"^schedule: expected a callable"),
        ({"schedule": lambda a, b, c: 0.1}, TypeError, r"^schedule: expected a callable taking \(epoch, lr\) or \(epoch\)"),
        ({"schedule": lambda epoch: 0.1, "verbose": -2}, ValueError, r"^verbose: expected an integer >= 0")],
    "ModelCheckpoint": [
        ({"filepath": 3}, TypeError, r"^filepath: expected a str or os.PathLike"),
        ({"filepath": b"m.safetensors"}, TypeError, r"^filepath: expected a str"),
        ({"filepath": ""}, ValueError, r"^filepath: expected a file path"),
        ({"filepath": "m\0.safetensors"}, ValueError, r"^filepath: .* contains a NUL character"),
        ({"filepath": "m-{0}.safetensors"}, ValueError, r"^filepath: .* has a positional field"),
        ({"filepath": "m-{.safetensors"}, ValueError, r"^filepath: .* is not a valid format string"),
        ({"filepath": "m", "save_freq": 0}, ValueError, r"^save_freq: expected an integer >= 1"),
        ({"filepath": "m", "save_freq": "batch"}, ValueError, r"^save_freq: expected 'epoch' or a number"),
        ({"filepath": "m", "save_freq": 2.5}, TypeError, r"^save_freq: expected an integer"),
        ({"filepath": "m", "save_best_only": "yes"}, TypeError, r"^save_best_only: expected True or False"),
        ({"filepath": "m", "save_weights_only": 0}, TypeError, r"^save_weights_only: expected True or False"),
        ({"filepath": "m", "save_training_state": True, "save_freq": 3}, ValueError,
         r"^save_freq: a checkpoint with the training state"),
        ({"filepath": "m", "initial_value_threshold": float("nan")}, ValueError,
         r"^initial_value_threshold: expected a finite number"),
        ({"filepath": "m", "mode": "best"}, ValueError, r"^mode: expected one of")],
    "TerminateOnNaN": [({"patience": 1}, TypeError, r"unexpected keyword argument 'patience'")],
    "History": [({"epochs": 1}, TypeError, r"unexpected keyword argument 'epochs'")],
    "ProgressLogger": [({"verbose": 5, "epochs": 1, "steps": 1}, ValueError, r"^verbose: expected"),
                       ({"verbose": 1, "epochs": 0, "steps": 1}, ValueError, r"^epochs: expected"),
                       ({"verbose": 1, "epochs": 1, "steps": -1}, ValueError, r"^steps: expected")],
    "CallbackList": [({"callbacks": callbacks.History()}, TypeError, r"^callbacks: expected a list of Callback"),
                     ({"callbacks": [3]}, TypeError, r"^callbacks\[0\]: expected a fusedtrain.callbacks.Callback")],
    "Callback": [({"model": 3}, TypeError, r"unexpected keyword argument 'model'")],
    "CSVLogger": [({"filename": None}, TypeError, r"^filename: expected a str or os.PathLike, got NoneType"),
                  ({"filename": "a\0b.csv"}, ValueError, r"^filename: 'a\\x00b.csv' contains a NUL character"),
                  ({"filename": "log.csv", "separator": ""}, ValueError, r"^separator: expected one character")],
    "TensorBoard": [({"log_dir": b"logs"}, TypeError, r"^log_dir: expected a str or os.PathLike, got bytes"),
                    ({"update_freq": 2.5}, TypeError, r"^update_freq: expected an integer"),
                    ({"histogram_freq": "1"}, TypeError, r"^histogram_freq: expected an integer")],
    "MLflowLogger": [({"run_name": 3}, TypeError, r"^run_name: expected a non-empty str or None, got 3"),
                     ({"tracking_uri": ""}, TypeError, r"^tracking_uri: expected a non-empty str or None"),
                     ({"log_model": "yes"}, TypeError, r"^log_model: expected True or False")],
}


def test_every_callback_has_bad_input_cases():
    assert set(callbacks.__all__) == set(CALLBACK_CASES)


@pytest.mark.parametrize("name, arguments, error, message", table_cases(CALLBACK_CASES, with_name=True))
def test_callback_arguments(name, arguments, error, message):
    with pytest.raises(error, match=message):
        getattr(callbacks, name)(**arguments)


@pytest.mark.parametrize("schedule, error, message", [
    (lambda epoch: float("nan"), ValueError, r"^schedule: returned nan for epoch 0; expected a finite learning rate"),
    (lambda epoch: -0.1, ValueError, r"^schedule: returned -0.1 for epoch 0"),
    (lambda epoch: "0.1", TypeError, r"^schedule: returned str for epoch 0"),
    (lambda epoch: None, TypeError, r"^schedule: returned NoneType for epoch 0"),
], ids=["nan", "negative", "string", "none"])
def test_schedule_results_are_checked(schedule, error, message):
    model = classifier()
    with pytest.raises(error, match=message):
        model.fit(X, Y, verbose=0, callbacks=[callbacks.LearningRateScheduler(schedule)])


def checkpoint_fit(path, **arguments):
    model = classifier()
    model.fit(X, Y, epochs=1, verbose=0, callbacks=[callbacks.ModelCheckpoint(path, **arguments)])
    return model


def test_model_checkpoint_paths(tmp_path):
    """A folder or a path under a file is refused before the first epoch; a missing folder is
    created; a write the system refuses names the path given, not a temporary file."""
    model = classifier()
    with pytest.raises(ValueError, match=r"^filepath: .* is a folder; name a file in it"):
        model.fit(X, Y, epochs=3, verbose=0, callbacks=[callbacks.ModelCheckpoint(str(tmp_path))])
    assert model.optimizer.iterations == 0
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=r"^filepath: .* is under .*file'?, which is a file, not a folder"):
        checkpoint_fit(str(tmp_path / "file" / "m.safetensors"))
    (tmp_path / "1").mkdir()
    with pytest.raises(ValueError, match=r"^filepath: .* is a folder"):
        checkpoint_fit(str(tmp_path / "{epoch}"))
    created = tmp_path / "new" / "deeper" / "m.safetensors"
    checkpoint_fit(str(created))
    assert created.is_file()
    too_long = tmp_path / ("m" * 300 + ".safetensors")
    with pytest.raises(OSError) as raised:
        checkpoint_fit(str(too_long))
    assert raised.value.filename == str(too_long) and ".tmp" not in str(raised.value), raised.value
    with pytest.raises(ValueError, match=r"^filepath: the field 'val_auc' of .* is not available at epoch 1"):
        checkpoint_fit(str(tmp_path / "m-{val_auc}.safetensors"))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="file permissions do not bind root")
def test_model_checkpoint_unwritable_folder(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match=r"filepath: ModelCheckpoint could not write the file"):
            checkpoint_fit(str(folder / "m.safetensors"))
    finally:
        folder.chmod(0o700)


SCHEDULE_CASES = {
    "StepDecay": [
        (lambda: schedules.StepDecay(-1), ValueError, r"^initial_lr: expected a value in \(0.0"),
        (lambda: schedules.StepDecay(0.0), ValueError, r"^initial_lr: expected a value in \(0.0"),
        (lambda: schedules.StepDecay(float("nan")), ValueError, r"^initial_lr: expected a finite number"),
        (lambda: schedules.StepDecay("0.1"), TypeError, r"^initial_lr: expected a real number"),
        (lambda: schedules.StepDecay(0.1, drop_rate=0), ValueError, r"^drop_rate: expected a value in \(0.0, 1.0\]"),
        (lambda: schedules.StepDecay(0.1, drop_rate=1.5), ValueError, r"^drop_rate: expected a value in"),
        (lambda: schedules.StepDecay(0.1, epochs_per_drop=0), ValueError, r"^epochs_per_drop: expected an integer >= 1"),
        (lambda: schedules.StepDecay(0.1, epochs_per_drop=2.5), TypeError, r"^epochs_per_drop: expected an integer"),
        (lambda: schedules.StepDecay(0.1)(-1), ValueError, r"^epoch: expected an integer in \[0, "),
        (lambda: schedules.StepDecay(0.1)(2**1100), ValueError, r"^epoch: expected an integer in \[0, "),
        (lambda: schedules.StepDecay(0.1)(1.0), TypeError, r"^epoch: expected an integer")],
    "ExponentialDecay": [
        (lambda: schedules.ExponentialDecay(0.1, decay_rate=float("nan")), ValueError, r"^decay_rate: expected a finite"),
        (lambda: schedules.ExponentialDecay(0.1, decay_rate=0.0), ValueError, r"^decay_rate: expected a value in"),
        (lambda: schedules.ExponentialDecay(0.1, 0.5, decay_epochs=0), ValueError, r"^decay_epochs: expected a value in"),
        (lambda: schedules.ExponentialDecay(0.1, 0.5, decay_epochs=True), TypeError, r"^decay_epochs: expected a real"),
        (lambda: schedules.ExponentialDecay(0.1, 0.5)(2**1100), ValueError, r"^epoch: expected an integer in")],
    "CosineDecay": [
        (lambda: schedules.CosineDecay(0.1, total_epochs=0), ValueError, r"^total_epochs: expected an integer >= 1"),
        (lambda: schedules.CosineDecay(0.1, total_epochs=5, warmup_epochs=5), ValueError,
         r"^warmup_epochs: expected fewer than total_epochs=5"),
        (lambda: schedules.CosineDecay(0.1, total_epochs=5, warmup_epochs=-1), ValueError, r"^warmup_epochs: expected"),
        (lambda: schedules.CosineDecay(0.1, total_epochs=5, min_lr=0.2), ValueError,
         r"^min_lr: expected a value in \[0.0, 0.1\]"),
        (lambda: schedules.CosineDecay(0.1, total_epochs=5, warmup_start_lr=-1.0), ValueError, r"^warmup_start_lr"),
        (lambda: schedules.CosineDecay(0.1, total_epochs="5"), TypeError, r"^total_epochs: expected an integer"),
        (lambda: schedules.CosineDecay(0.1, total_epochs=5)(-3), ValueError, r"^epoch: expected an integer in")],
}


def test_every_schedule_has_bad_input_cases():
    assert set(schedules.__all__) == set(SCHEDULE_CASES)


@pytest.mark.parametrize("make, error, message", table_cases(SCHEDULE_CASES))
def test_schedule_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_schedules_stay_finite_at_the_largest_epoch():
    last = 2**63 - 1
    assert schedules.StepDecay(0.1, drop_rate=0.5, epochs_per_drop=1)(last) == 0.0
    assert schedules.ExponentialDecay(0.1, 0.5, decay_epochs=1e-300)(last) == 0.0
    assert schedules.CosineDecay(0.1, total_epochs=2**62, min_lr=0.01)(last) == 0.01
    assert math.isfinite(schedules.CosineDecay(0.1, total_epochs=last)(last - 1))


# Data helpers -----------------------------------------------------------------------------------

@pytest.mark.parametrize("call_split, error, message", [
    (lambda: ft.data.train_val_test_split(X, Y, (0.5, 0.5)), ValueError, r"^fractions: expected three numbers"),
    (lambda: ft.data.train_val_test_split(X, Y, (0.5, 0.6, -0.1)), ValueError, r"^fractions\[2\]: expected a value"),
    (lambda: ft.data.train_val_test_split(X, Y, (0.5, 0.25, 0.2)), ValueError, r"^fractions: expected fractions that sum"),
    (lambda: ft.data.train_val_test_split(X, Y, (0.0, 0.5, 0.5)), ValueError, r"^fractions: the training fraction"),
    (lambda: ft.data.train_val_test_split(X, Y, (0.7, float("nan"), 0.3)), ValueError, r"^fractions\[1\]: expected a finite"),
    (lambda: ft.data.train_val_test_split(X, Y[:3]), ValueError, r"^y: expected 17 samples"),
    (lambda: ft.data.train_val_test_split(X[:0], Y[:0]), ValueError, r"^x: empty data"),
    (lambda: ft.data.train_val_test_split(1.0, 2.0), ValueError, r"^x, y: expected arrays"),
    (lambda: ft.data.train_val_test_split(X, Y, seed=-1), ValueError, r"^seed: expected an integer >= 0"),
    (lambda: ft.data.train_val_test_split(X, Y, stratify=Y[:4]), ValueError, r"^stratify: expected one label per sample"),
    (lambda: ft.data.BatchLoader(X, Y, 0), ValueError, r"^batch_size: expected an integer >= 1"),
    (lambda: ft.data.BatchLoader(X, Y[:3], 4), ValueError, r"^y: expected 17 rows"),
    (lambda: ft.data.BatchLoader(X, Y, 4, shuffle=True, rng=None), TypeError, r"^rng: shuffling needs"),
    (lambda: ft.data.BatchLoader(X[:, ::2], Y, 4), ValueError, r"^x: expected a C-contiguous array"),
], ids=["two-fractions", "negative-fraction", "sum", "no-training", "nan-fraction", "lengths", "empty", "scalars",
        "seed", "stratify-length", "batch_size-0", "loader-lengths", "loader-rng", "loader-strided"])
def test_data_helper_arguments(call_split, error, message):
    with pytest.raises(error, match=message):
        call_split()


# Command line -----------------------------------------------------------------------------------

def run_cli(arguments, folder):
    """fusedtrain's main() in this process: (exit status, stderr lines). A user mistake must be
    status 2 and one line on stderr, never a traceback."""
    stdout, stderr = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                status = cli_main([str(argument) for argument in arguments])
            except SystemExit as exit_:
                status = exit_.code
    finally:
        os.chdir(previous)
    return status, stderr.getvalue().strip().splitlines()


@pytest.fixture(scope="module")
def cli_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    (folder / "empty.csv").write_text("")
    (folder / "header.csv").write_text("a,b,label\n")
    (folder / "garbage.csv").write_bytes(bytes(range(256)) * 8)
    (folder / "data.csv").write_text("a,b,label\n" + "".join(f"{i % 3},{i % 5},{i % 2}\n" for i in range(30)))
    (folder / "nan.csv").write_text("a,b,label\n1,inf,0\n2,3,1\n")
    (folder / "ragged.csv").write_text("a,b,label\n1,2,0\n3,1\n")
    (folder / "text.csv").write_text("a,b,label\n1,two,0\n2,3,1\n")
    (folder / "model.safetensors").write_text("not a model")
    (folder / "folder").mkdir()
    np.save(folder / "x.npy", np.ones((10, 3)))
    return folder


FAST = ["--verbose", "0", "--no-plot", "--epochs", "1", "--layers", "3"]
CLI_CASES = [
    ("unknown-flag", ["train", "--bogus"], r"unrecognized arguments: --bogus"),
    ("unknown-command", ["fit"], r"invalid choice: 'fit'"),
    ("epochs-text", ["train", "--epochs", "many"], r"argument --epochs: invalid int value: 'many'"),
    ("epochs-0", ["train", "data.csv", *FAST, "--epochs", "0"], r"--epochs: expected at least 1, got 0"),
    ("batch-size-negative", ["train", "data.csv", *FAST, "--batch-size", "-1"], r"--batch-size: expected at least 1"),
    ("lr-nan", ["train", "data.csv", *FAST, "--lr", "nan"], r"--lr: expected a positive number, got nan"),
    ("lr-inf", ["train", "data.csv", *FAST, "--lr", "inf"], r"--lr: expected a positive number, got inf"),
    ("lr-text", ["train", "data.csv", *FAST, "--lr", "fast"], r"argument --lr: invalid float value"),
    ("val-split", ["train", "data.csv", *FAST, "--val-split", "1.5"], r"--val-split: expected a fraction in \[0, 1\)"),
    ("patience", ["train", "data.csv", *FAST, "--patience", "-3"], r"--patience: expected 0"),
    ("layers-text", ["train", "data.csv", *FAST, "--layers", "4,x"], r"argument --layers: expected comma-separated"),
    ("layers-zero", ["train", "data.csv", "--layers", "0"], r"argument --layers: expected comma-separated"),
    ("seed", ["train", "data.csv", *FAST, "--seed", "-1"], r"--seed: expected an integer >= 0"),
    ("activation", ["train", "data.csv", *FAST, "--activation", "swish"], r"argument --activation: invalid choice"),
    ("missing-file", ["train", "missing.csv", *FAST], r"missing.csv: no such file"),
    ("folder-as-data", ["train", "folder", *FAST], r"folder: is a folder, not a file"),
    ("empty-csv", ["train", "empty.csv", *FAST], r"empty.csv: the file is empty"),
    ("header-only", ["train", "header.csv", *FAST], r"header.csv: no data rows below the header"),
    ("binary-garbage", ["train", "garbage.csv", *FAST], r"garbage.csv: not a text file in UTF-8"),
    ("inf-cell", ["train", "nan.csv", *FAST, "--val-split", "0", "--test-split", "0"], r"nan.csv: the column 'b' holds inf, not a finite number"),
    ("ragged-row", ["train", "ragged.csv", *FAST], r"ragged.csv, line 3: 2 fields, but the header has 3"),
    ("text-cell", ["train", "text.csv", *FAST, "--numeric", "b", "--val-split", "0", "--test-split", "0"],
     r"text.csv: the column 'b' \(numeric on request\) holds 'two' at row 1, not a number"),
    ("unknown-column-option", ["train", "data.csv", *FAST, "--drop", "zz"], r"data.csv: no column named 'zz'"),
    ("column-option-for-npy", ["train", "x.npy", "x.npy", *FAST, "--keep", "a"], r"--keep: names columns of a CSV"),
    ("one-npy", ["train", "x.npy", *FAST], r"x.npy: a .npy file holds one array"),
    ("unknown-target", ["train", "data.csv", *FAST, "--target", "zz"], r"no column named 'zz'"),
    ("out-is-folder", ["train", "data.csv", *FAST, "--out", "folder"], r"--out: folder is a folder"),
    ("model-not-a-model", ["evaluate", "model.safetensors", "data.csv"], r"model.safetensors: not a readable"),
    ("model-is-folder", ["evaluate", "folder", "data.csv"], r"folder: is a folder, not a file"),
    ("model-missing", ["predict", "missing.safetensors", "data.csv"], r"missing.safetensors: no such file"),
    ("bench-threads", ["bench", "--threads", "0"], r"--threads must be at least 1"),
    ("layers-huge", ["train", "data.csv", *FAST, "--layers", str(2**40)], r"--layers: units, input_dim: layer"),
]


@pytest.mark.parametrize("arguments, message", [
    pytest.param(*case[1:], id=case[0]) if type(case) is tuple else case for case in CLI_CASES])
def test_cli_mistakes_exit_2_with_one_line(cli_folder, arguments, message):
    status, lines = run_cli(arguments, cli_folder)
    assert status == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("fusedtrain"), lines
    assert re.search(message, lines[0]), lines[0]


def test_cli_huge_batch_size_trains(cli_folder):
    status, lines = run_cli(["train", "data.csv", *FAST, "--batch-size", 2**63, "--out", "big.safetensors"],
                            cli_folder)
    assert status == 0, lines
    assert (cli_folder / "big.safetensors").is_file()
