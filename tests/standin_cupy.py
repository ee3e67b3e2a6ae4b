"""A stand-in for CuPy that runs on the CPU, strict where CuPy is lenient: what lets the CPU test
suite run the GPU training path (device="cuda") from end to end.

- Its arrays hold host memory but refuse every implicit conversion to NumPy (__array__, NumPy
  ufuncs, a NumPy array passed to one of its functions or assigned into one of its arrays):
  a host array leaking into the device path fails at once.
- Every read-back is recorded as a synchronisation (.get(), asnumpy, float(), bool(), item(),
  and the CUDA kernels that return a value), every host-to-device copy as an upload and every
  new array as an allocation, so a test can count them per step.
- `install(monkeypatch)` puts it in sys.modules["cupy"] and replaces fusedtrain._C's CUDA
  kernels with functions that turn the device pointers back into NumPy views and run the CPU
  kernels on them: the ops' GPU branches (pointers, sizes, workspaces, streams) run as on a GPU,
  and the results are the CPU's, bit for bit."""

from __future__ import annotations

import ctypes
import math
import sys
import types

import numpy as np

from fusedtrain import _C

STREAM = 0x5EED
DEVICE_MEMORY = 16 * 2**30
ACTIVATIONS = {0: None, 1: "relu", 2: "leaky_relu", 3: "sigmoid", 4: "tanh", 5: "gelu"}


class HostLeak(TypeError):
    """A NumPy array met a device array, or a device array was converted to NumPy implicitly."""


class Recorder:
    """What the device path did: read-backs (syncs), uploads, allocations and kernel calls."""

    def __init__(self):
        self.syncs = []
        self.uploads = 0
        self.allocations = 0
        self.kernels = []

    def sync(self, what: str) -> None:
        self.syncs.append(what)


RECORD = Recorder()


def _refuse(value, what: str):
    raise HostLeak(f"stand-in cupy: {what} got a numpy.ndarray of shape {value.shape}; move it with cupy.asarray "
                   f"first (a host array leaked into the device path)")


def _unwrap(value, what: str):
    if isinstance(value, ndarray):
        return value._host
    if isinstance(value, np.ndarray):
        _refuse(value, what)
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(item, what) for item in value)
    return value


def _wrap(value):
    if isinstance(value, np.ndarray):
        return ndarray(value)
    if isinstance(value, np.generic):
        RECORD.allocations += 1
        return ndarray(np.asarray(value), counted=False)
    return value


def _operator(name: str, reflected: bool = False):
    operation = getattr(np.ndarray, name)

    def apply(self, other):
        other = _unwrap(other, f"ndarray.{name}")
        result = operation(self._host, other)
        if name.startswith("__i"):
            return self
        return _wrap(result)

    return apply


def _reduction(name: str):
    def reduce(self, *args, **kwargs):
        return _wrap(np.asarray(getattr(self._host, name)(*args, **kwargs)))
    return reduce


class ndarray:
    """An array in 'device' memory: a NumPy array behind an interface shaped like CuPy's."""

    __array_ufunc__ = None

    def __init__(self, host: np.ndarray, counted: bool = True):
        self._host = host
        if counted and host.base is None:
            RECORD.allocations += 1

    dtype = property(lambda self: self._host.dtype)
    shape = property(lambda self: self._host.shape)
    ndim = property(lambda self: self._host.ndim)
    size = property(lambda self: self._host.size)
    nbytes = property(lambda self: self._host.nbytes)
    itemsize = property(lambda self: self._host.itemsize)
    strides = property(lambda self: self._host.strides)
    flags = property(lambda self: self._host.flags)
    T = property(lambda self: ndarray(self._host.T))
    data = property(lambda self: types.SimpleNamespace(ptr=self._host.__array_interface__["data"][0]))
    device = property(lambda self: types.SimpleNamespace(id=0))

    def __array__(self, *args, **kwargs):
        raise HostLeak("stand-in cupy: implicit conversion to a NumPy array is not allowed; use .get()")

    def __iter__(self):
        raise HostLeak("stand-in cupy: iterating over a device array reads it element by element")

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        return _wrap(self._host[_unwrap(key, "indexing")])

    def __setitem__(self, key, value):
        if isinstance(value, np.ndarray):
            _refuse(value, "assignment into a device array (use .set())")
        self._host[_unwrap(key, "indexing")] = _unwrap(value, "assignment")

    def get(self):
        RECORD.sync("get")
        return np.array(self._host)

    def set(self, values):
        if not isinstance(values, np.ndarray) or values.shape != self.shape:
            raise ValueError("stand-in cupy: set() takes a NumPy array of the same shape")
        RECORD.uploads += 1
        self._host[...] = values

    def _read(self, what):
        RECORD.sync(what)
        return self._host

    def __float__(self):
        return float(self._read("float()"))

    def __int__(self):
        return int(self._read("int()"))

    def __bool__(self):
        return bool(self._read("bool()"))

    def item(self):
        return self._read("item()").item()

    def tolist(self):
        return self._read("tolist()").tolist()

    def reshape(self, *shape):
        return ndarray(self._host.reshape(*shape))

    def view(self, dtype):
        return ndarray(self._host.view(dtype))

    def ravel(self):
        return ndarray(self._host.ravel())

    def copy(self):
        return ndarray(self._host.copy())

    def astype(self, dtype, copy=True):
        return ndarray(self._host.astype(dtype, copy=copy))

    def fill(self, value):
        self._host.fill(_unwrap(value, "fill"))

    sum, mean, max, min, all, any = map(lambda name: _reduction(name), ("sum", "mean", "max", "min", "all", "any"))

    for _name in ("__add__", "__sub__", "__mul__", "__truediv__", "__matmul__", "__gt__", "__lt__", "__ge__",
                  "__le__", "__eq__", "__ne__", "__and__", "__or__", "__radd__", "__rsub__", "__rmul__",
                  "__rtruediv__", "__iadd__", "__isub__", "__imul__", "__itruediv__"):
        locals()[_name] = _operator(_name)
    del _name

    def __neg__(self):
        return ndarray(-self._host)

    def __invert__(self):
        return ndarray(~self._host)

    def __repr__(self):
        return f"stand-in cupy array({self._host!r})"


ndarray.__module__ = "cupy"


class _Device:
    def __init__(self, device=0):
        self.id = int(device)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False

    def use(self):
        return self


def _module_function(name):
    function = getattr(np, name)

    def call(*args, **kwargs):
        out = kwargs.get("out")
        args = _unwrap(args, f"cupy.{name}")
        kwargs = {key: _unwrap(value, f"cupy.{name}") for key, value in kwargs.items()}
        result = function(*args, **kwargs)
        if out is not None:
            return out
        return _wrap(result)

    call.__name__ = name
    return call


def _asarray(value, dtype=None):
    if isinstance(value, ndarray):
        return value if dtype is None or value.dtype == dtype else value.astype(dtype)
    RECORD.uploads += 1
    return ndarray(np.array(value, dtype=dtype))


def _ascontiguousarray(value, dtype=None):
    if not isinstance(value, ndarray):
        _refuse(np.asarray(value), "cupy.ascontiguousarray")
    result = np.ascontiguousarray(value._host, dtype=dtype)
    return value if result is value._host else ndarray(result)


def _from_dlpack(value):
    """The stand-in's view of a DLPack object in its 'device' memory: one of tests' FakeCudaTensor."""
    if int(value.__dlpack_device__()[0]) != 2:
        raise TypeError("stand-in cupy: from_dlpack takes an object in CUDA memory")
    return ndarray(value.values)


def _asnumpy(value):
    if not isinstance(value, ndarray):
        raise TypeError("stand-in cupy: asnumpy takes a device array")
    return value.get()


def make_module() -> types.ModuleType:
    module = types.ModuleType("cupy")
    module.ndarray = ndarray
    for name in ("float16", "float32", "float64", "int8", "int32", "int64", "uint8", "bool_", "dtype"):
        setattr(module, name, getattr(np, name))
    for name in ("empty", "zeros", "ones", "full", "arange", "empty_like", "zeros_like", "take", "copyto", "sqrt",
                 "maximum", "minimum", "reciprocal", "subtract", "multiply", "add", "divide", "abs", "sign", "dot",
                 "isfinite", "count_nonzero", "equal", "where", "exp", "log", "log1p", "argmax", "linspace", "concatenate",
                 "take_along_axis"):
        setattr(module, name, _module_function(name))
    module.asarray = module.array = _asarray
    module.ascontiguousarray = _ascontiguousarray
    module.asnumpy = _asnumpy
    module.from_dlpack = _from_dlpack
    module.get_array_module = lambda *arrays: module
    runtime = types.SimpleNamespace(memGetInfo=lambda: (DEVICE_MEMORY // 2, DEVICE_MEMORY),
                                    getDeviceCount=lambda: 1)
    module.cuda = types.SimpleNamespace(Device=_Device, runtime=runtime,
                                        get_current_stream=lambda: types.SimpleNamespace(ptr=STREAM))
    return module


# ---- the CUDA kernels, run by the CPU kernels on views of the pointed-to memory -----------------

def _view(pointer: int, shape, dtype=np.float32) -> np.ndarray:
    """A writeable NumPy view of `shape` elements of `dtype` at host address `pointer`."""
    shape = tuple(shape)
    count = math.prod(shape)
    if count == 0 or pointer == 0:
        return np.empty(shape, dtype)
    buffer = (ctypes.c_byte * (count * np.dtype(dtype).itemsize)).from_address(pointer)
    return np.frombuffer(buffer, dtype=dtype).reshape(shape)


def _matrix(pointer, rows, cols, ld):
    return _view(pointer, (rows, ld))[:, :cols] if rows else np.empty((0, cols), np.float32)


def _store(pointer, value, what):
    """A kernel's value: into the device double at `pointer`, or returned (a read-back)."""
    if pointer:
        _view(pointer, (1,), np.float64)[0] = value
        return 0.0
    RECORD.sync(what)
    return value


def _gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias, activation, param, tf32, stream):
    from fusedtrain import ops

    a_view = np.ascontiguousarray(_matrix(a, k if trans_a else m, m if trans_a else k, lda))
    b_view = np.ascontiguousarray(_matrix(b, n if trans_b else k, k if trans_b else n, ldb))
    c_view = _matrix(c, m, n, ldc)
    out = c_view if c_view.flags.c_contiguous else np.ascontiguousarray(c_view)
    ops.matmul(a_view, b_view, trans_a=trans_a, trans_b=trans_b, alpha=alpha, beta=beta,
               bias=_view(bias, (n,)) if bias else None, activation=ACTIVATIONS[activation],
               negative_slope=param, out=out)
    if out is not c_view:
        c_view[...] = out


def _kernels():
    labels = {32: np.int32, 64: np.int64}
    workspace = lambda pointer: _view(pointer, (1,), np.float64)

    def sum_of_squares(x, n, accumulate, space, stream):
        value = _C.sum_of_squares(_view(x, (n,)))
        workspace(space)[0] = (workspace(space)[0] if accumulate else 0.0) + value

    def clip_scale(x, n, max_norm, space, stream):
        norm = math.sqrt(workspace(space)[0])
        if math.isfinite(norm) and norm > max_norm:
            _C.scale(_view(x, (n,)), max_norm / (norm + 1e-6))

    return {
        "cuda_gemm": _gemm,
        "cuda_activation_forward": lambda code, param, x, y, n, s: _C.activation_forward(
            code, param, _view(x, (n,)), _view(y, (n,))),
        "cuda_activation_backward": lambda code, param, g, x, out, n, s: _C.activation_backward(
            code, param, _view(g, (n,)), _view(x, (n,)), _view(out, (n,))),
        "cuda_softmax_forward": lambda x, y, rows, cols, s: _C.softmax_forward(
            _view(x, (rows, cols)), _view(y, (rows, cols))),
        "cuda_softmax_backward": lambda g, x, out, rows, cols, s: _C.softmax_backward(
            _view(g, (rows, cols)), _view(x, (rows, cols)), _view(out, (rows, cols))),
        "cuda_mse_loss": lambda p, t, g, n, reduction, space, result, s: _store(
            result, _C.mse_loss(_view(p, (n,)), _view(t, (n,)), _view(g, (n,)), reduction), "mse_loss"),
        "cuda_binary_cross_entropy_loss": lambda p, t, g, n, reduction, space, result, s: _store(
            result, _C.binary_cross_entropy_loss(_view(p, (n,)), _view(t, (n,)), _view(g, (n,)), reduction),
            "binary_cross_entropy_loss"),
        "cuda_softmax_cross_entropy_loss": lambda z, y, bits, g, rows, cols, reduction, space, result, s: _store(
            result, _C.softmax_cross_entropy_loss(_view(z, (rows, cols)), _view(y, (rows,), labels[bits]),
                                                  _view(g, (rows, cols)), reduction), "softmax_cross_entropy_loss"),
        "cuda_bias_grad": lambda g, out, rows, cols, space, s: _C.bias_grad(_view(g, (rows, cols)), _view(out, (cols,))),
        "cuda_argmax_rows": lambda x, out, rows, cols, s: _C.argmax_rows(_view(x, (rows, cols)),
                                                                         _view(out, (rows,), np.int64)),
        "cuda_count_correct": lambda z, y, bits, rows, cols, space, result, s: (
            _store(result, _C.count_correct(_view(z, (rows, cols)), _view(y, (rows,), labels[bits])) / rows,
                   "count_correct") if result else
            _store(0, _C.count_correct(_view(z, (rows, cols)), _view(y, (rows,), labels[bits])), "count_correct")),
        "cuda_sum_of_squares": sum_of_squares,
        "cuda_clip_scale": clip_scale,
        "cuda_read_result": lambda space, s: _store(0, workspace(space)[0], "read_result"),
        "cuda_sgd_step": lambda p, g, v, n, lr, momentum, nesterov, wd, s: _C.sgd_step(
            _view(p, (n,)), _view(g, (n,)), _view(v, (n,)) if v else None, lr, momentum, nesterov, wd),
        "cuda_adam_step": lambda p, g, m, v, n, step, lr, b1, b2, eps, wd, decoupled, s: _C.adam_step(
            _view(p, (n,)), _view(g, (n,)), _view(m, (n,)), _view(v, (n,)), step, lr, b1, b2, eps, wd, decoupled),
        "cuda_rmsprop_step": lambda p, g, sq, n, lr, alpha, eps, wd, s: _C.rmsprop_step(
            _view(p, (n,)), _view(g, (n,)), _view(sq, (n,)), lr, alpha, eps, wd),
        "cuda_dropout_forward": lambda x, out, mask, n, rate, seed, step, s: _C.dropout_forward(
            _view(x, (n,)), _view(out, (n,)), _view(mask, (n,), np.uint8), rate, seed, step),
        "cuda_dropout_backward": lambda g, mask, out, n, rate, s: _C.dropout_backward(
            _view(g, (n,)), _view(mask, (n,), np.uint8), _view(out, (n,)), rate),
    }


def install(monkeypatch) -> Recorder:
    """Makes `import cupy` give the stand-in and fusedtrain see one GPU running its kernels;
    returns the (reset) recorder."""
    global RECORD
    RECORD = Recorder()
    monkeypatch.setitem(sys.modules, "cupy", make_module())
    monkeypatch.setattr(_C, "cuda_compiled", True)
    monkeypatch.setattr(_C, "cuda_workspace_bytes", 8256, raising=False)
    monkeypatch.setattr(_C, "cuda_query", lambda: {"device_count": 1, "error": "", "driver": "13.0",
                                                    "devices": ["stand-in GPU (sm_90, 16384 MiB)"]})
    for name, kernel in _kernels().items():
        def record(*arguments, _name=name, _kernel=kernel):
            RECORD.kernels.append(_name)
            return _kernel(*arguments)
        monkeypatch.setattr(_C, name, record, raising=False)
    return RECORD


def recorder() -> Recorder:
    return RECORD
