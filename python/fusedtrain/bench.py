"""The kernel benchmark against NumPy: ``fusedtrain bench`` (also ``python -m fusedtrain bench``).

Each row runs a fusedtrain op and the NumPy code a user would write for the same result, in one
process and with the same thread count for both (NumPy's BLAS is limited with threadpoolctl).
Before timing, the two results are compared, so a fast wrong kernel cannot hide in the table.
Times are medians of individually timed calls, the two sides taking turns. Ratios are NumPy
time / fusedtrain time: above 1.0, fusedtrain is faster.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from . import _C, ops
from ._threads import get_num_threads, set_num_threads
from ._version import __version__

RATIO_CONVENTION = "ratio = NumPy time / fusedtrain time: above 1.0, fusedtrain is faster"


@dataclass(frozen=True)
class Settings:
    """Sizes and repeat counts of one benchmark run."""

    rounds: int  # times each side takes its turn
    settle_seconds: float  # untimed calls at the start of each turn
    turn_seconds: float  # timed calls for at least this long per turn
    min_calls: int  # and at least this many
    square_sizes: Tuple[int, ...]
    activation_elements: int
    loss_shapes: Tuple[Tuple[int, int], ...]
    parameter_counts: Tuple[int, ...]
    probe_seconds: float  # length of one run of the multiply-add probe
    triad_elements: int  # per array of the bandwidth probe: far beyond the caches in FULL


QUICK = Settings(rounds=1, settle_seconds=0.02, turn_seconds=0.01, min_calls=3,
                 square_sizes=(64, 128, 256), activation_elements=1 << 18,
                 loss_shapes=((256, 10), (1024, 100)), parameter_counts=(1 << 18,),
                 probe_seconds=0.02, triad_elements=1 << 23)
FULL = Settings(rounds=3, settle_seconds=0.15, turn_seconds=0.15, min_calls=3,
                square_sizes=(64, 100, 120, 128, 256, 512, 1024, 2048), activation_elements=1 << 22,
                loss_shapes=((256, 10), (4096, 1000)), parameter_counts=(1 << 20, 1 << 22, 1 << 24),
                probe_seconds=0.2, triad_elements=1 << 25)
# Runs of each probe; the fastest is the machine's limit (a ceiling: a slower run only says
# that something else had the core or the memory bus meanwhile).
PROBE_RUNS = 7

# The MLP whose GEMM shapes the benchmark times: 784-512-256-10 at batch 256.
MLP_LAYERS = ((784, 512), (512, 256), (256, 10))
MLP_BATCH = 256


@dataclass
class Row:
    """One measured comparison: median seconds per call of each side, and the work of one call
    (floating-point operations or bytes moved, per the group's unit)."""

    op: str
    size: str
    fusedtrain_seconds: float
    numpy_seconds: float
    work: float

    @property
    def ratio(self) -> float:
        return self.numpy_seconds / self.fusedtrain_seconds


@dataclass
class Group:
    title: str
    unit: str  # "GFLOP/s" or "GB/s": what `work / seconds / 1e9` means for this group
    reference: str  # what the NumPy side computes, in one line
    rows: List[Row] = field(default_factory=list)
    other_load: Optional[float] = None  # share of all cores' time other processes used meanwhile


@dataclass
class Limits:
    """The machine's ceilings at the report's thread count, measured by fusedtrain's probes."""

    fma_gflops: float  # multiply-add peak: 2 flops per lane per FMA
    triad_gbs: float  # STREAM triad a = b + s c, counting 12 bytes per element as STREAM does
    triad_elements: int  # per array

    def of(self, unit: str) -> float:
        return self.fma_gflops if unit == "GFLOP/s" else self.triad_gbs


@dataclass
class Report:
    threads: int
    quick: bool
    blas_threads_set: bool  # False where threadpoolctl is missing (NumPy kept its default)
    other_load: Optional[float] = None  # share of all cores' time other processes used, if known
    groups: List[Group] = field(default_factory=list)
    failures: List[str] = field(default_factory=list)  # rows whose results disagreed with NumPy
    limits: Optional[Limits] = None


@dataclass
class _Case:
    """A row to measure: both sides as zero-argument callables returning their result, and the
    tolerance of the agreement check (largest error over the largest reference magnitude)."""

    op: str
    size: str
    work: float
    fusedtrain: Callable[[], object]
    numpy: Callable[[], object]
    tolerance: float


# ---- timing ---------------------------------------------------------------------------------

def _settle(function: Callable[[], object], seconds: float) -> None:
    """Calls ``function`` untimed for ``seconds`` (at least once). The other library's worker
    threads spin on the same cores for a while after their last task (OpenBLAS for ~0.1 s) and
    would steal time slices from the first timed calls."""
    deadline = time.perf_counter() + seconds
    function()
    while time.perf_counter() < deadline:
        function()


def _turn(function: Callable[[], object], settings: Settings) -> List[float]:
    """Seconds of each call in one turn: untimed calls first, then timed ones until the turn has
    lasted ``turn_seconds`` and made at least ``min_calls`` calls."""
    _settle(function, settings.settle_seconds)
    samples = []
    deadline = time.perf_counter() + settings.turn_seconds
    while len(samples) < settings.min_calls or time.perf_counter() < deadline:
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return samples


def _measure(case: _Case, settings: Settings) -> Tuple[float, float]:
    """Median seconds per call of (fusedtrain, numpy). The sides take turns, so a load change on a
    shared machine touches both alike. Each call is timed on its own: on a busy machine some
    calls wait a scheduler time slice for a core, and the median looks past them as long as they
    are fewer than half (a mean over a batch of calls would not)."""
    ours_samples: List[float] = []
    numpy_samples: List[float] = []
    for _ in range(settings.rounds):
        ours_samples += _turn(case.fusedtrain, settings)
        numpy_samples += _turn(case.numpy, settings)
    return statistics.median(ours_samples), statistics.median(numpy_samples)


def measure_limits(settings: Settings) -> Limits:
    """The multiply-add peak and the triad bandwidth at the current thread count, each the
    fastest of PROBE_RUNS runs."""
    # The length of a run from a warm one of at least a tenth of it: the first call also starts
    # the threads, and the clock may still be rising, which made the runs too short to reach
    # the peak (an AVX2 CPU measured 74 GFLOP/s where a long run gives 93).
    rounds = 1 << 16
    while True:
        start = time.perf_counter()
        _C.fma_probe(rounds)
        elapsed = time.perf_counter() - start
        if elapsed >= settings.probe_seconds / 10:
            break
        rounds *= 2
    rounds = max(1, int(rounds * settings.probe_seconds / elapsed))
    peak = 0.0
    for _ in range(PROBE_RUNS):
        start = time.perf_counter()
        flops = _C.fma_probe(rounds)
        peak = max(peak, flops / (time.perf_counter() - start) / 1e9)
    n = settings.triad_elements
    a, b, c = np.empty(n, np.float32), np.ones(n, np.float32), np.ones(n, np.float32)
    _C.triad_probe(a, b, c, 0.5)
    bandwidth = 0.0
    for _ in range(PROBE_RUNS):
        start = time.perf_counter()
        _C.triad_probe(a, b, c, 0.5)
        bandwidth = max(bandwidth, 12.0 * n / (time.perf_counter() - start) / 1e9)
    return Limits(peak, bandwidth, n)


# ---- agreement check ------------------------------------------------------------------------

def _flatten(result: object) -> List[np.ndarray]:
    if isinstance(result, (tuple, list)):
        return [array for item in result for array in _flatten(item)]
    return [np.asarray(result, dtype=np.float64)]


def _disagreement(case: _Case) -> Optional[str]:
    """Runs each side once (this is also the warm-up) and describes the largest error when it
    exceeds the case's tolerance."""
    ours = _flatten(case.fusedtrain())
    reference = _flatten(case.numpy())
    if [array.shape for array in ours] != [array.shape for array in reference]:
        return f"{case.op} [{case.size}]: fusedtrain and NumPy return different shapes"
    # np.max propagates NaN, so a NaN anywhere in fusedtrain's result counts as a disagreement.
    worst = float(np.max([np.max(np.abs(actual - expected)) / max(float(np.max(np.abs(expected))), 1e-30)
                          for actual, expected in zip(ours, reference)]))
    if not worst <= case.tolerance:
        return (f"{case.op} [{case.size}]: fusedtrain and NumPy disagree (relative error {worst:.3g}, "
                f"tolerance {case.tolerance:.0e})")
    return None


# ---- the cases ------------------------------------------------------------------------------

def _count(n: int) -> str:
    for suffix, factor in (("M", 1 << 20), ("K", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{suffix}"
    return str(n)


def _normal(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape, dtype=np.float32) * np.float32(scale))


def _gemm_case(rng: np.random.Generator, op: str, m: int, k: int, n: int, trans_a: bool,
               trans_b: bool) -> _Case:
    # Stored as the backward pass stores them: A^T is a (k, m) array, B^T an (n, k) one.
    a = _normal(rng, k, m) if trans_a else _normal(rng, m, k)
    b = _normal(rng, n, k) if trans_b else _normal(rng, k, n)
    a_view = a.T if trans_a else a
    b_view = b.T if trans_b else b
    ours_out = np.empty((m, n), np.float32)
    numpy_out = np.empty((m, n), np.float32)
    # float32 sums over k in two different orders: the difference grows like sqrt(k) * 2^-24
    # relative to the output's scale, far below 1e-4 for k <= 2048.
    return _Case(op, f"{m}x{k} @ {k}x{n}", 2.0 * m * n * k,
                 lambda: ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b, out=ours_out),
                 lambda: np.matmul(a_view, b_view, out=numpy_out), 1e-4)


def _gemm_cases(rng: np.random.Generator, settings: Settings) -> List[_Case]:
    cases = [_gemm_case(rng, "NN square", size, size, size, False, False)
             for size in settings.square_sizes]
    for fan_in, fan_out in MLP_LAYERS:
        layer = f"{fan_in}-{fan_out}"
        cases.append(_gemm_case(rng, f"NN forward Z = X W, {layer}", MLP_BATCH, fan_in, fan_out,
                                False, False))
        cases.append(_gemm_case(rng, f"TN dW = X^T dZ, {layer}", fan_in, MLP_BATCH, fan_out,
                                True, False))
        cases.append(_gemm_case(rng, f"NT dX = dZ W^T, {layer}", MLP_BATCH, fan_out, fan_in,
                                False, True))
    # Matrix-vector products: predicting one sample, a one-output layer (Dense(1)) forward and
    # its dW, and the same for a two-class output layer (Dense(2)).
    fan_in, fan_out = MLP_LAYERS[0]
    cases.append(_gemm_case(rng, f"NN one sample, {fan_in}-{fan_out}", 1, fan_in, fan_out, False, False))
    for outputs in (1, 2):
        cases.append(_gemm_case(rng, f"NN forward, 256-{outputs}", MLP_BATCH, 256, outputs, False, False))
        cases.append(_gemm_case(rng, f"TN dW, 256-{outputs}", 256, MLP_BATCH, outputs, True, False))
    return cases


def _dense_cases(rng: np.random.Generator) -> List[_Case]:
    cases = []
    for fan_in, fan_out in MLP_LAYERS:
        x = _normal(rng, MLP_BATCH, fan_in)
        w = _normal(rng, fan_in, fan_out, scale=1.0 / math.sqrt(fan_in))
        bias = _normal(rng, fan_out)
        ours_out = np.empty((MLP_BATCH, fan_out), np.float32)
        numpy_out = np.empty((MLP_BATCH, fan_out), np.float32)

        def numpy_in_place(x=x, w=w, bias=bias, out=numpy_out):
            np.matmul(x, w, out=out)
            out += bias
            return np.maximum(out, 0, out=out)

        def ours(x=x, w=w, bias=bias, out=ours_out):
            return ops.matmul(x, w, bias=bias, activation="relu", out=out)

        size = f"{MLP_BATCH}x{fan_in} @ {fan_in}x{fan_out}"
        flops = 2.0 * MLP_BATCH * fan_in * fan_out
        cases.append(_Case(f"relu(X W + b), {fan_in}-{fan_out}, vs expression", size, flops, ours,
                           lambda x=x, w=w, bias=bias: np.maximum(x @ w + bias, 0), 1e-4))
        cases.append(_Case(f"relu(X W + b), {fan_in}-{fan_out}, vs out=", size, flops, ours,
                           numpy_in_place, 1e-4))
    return cases


# The tanh-form GELU constants, as in csrc/common/activations.h.
_GELU_SCALE = np.float32(math.sqrt(2.0 / math.pi))
_GELU_CUBIC = np.float32(0.044715)


def _numpy_sigmoid(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    np.negative(x, out=out)
    np.exp(out, out=out)
    out += 1
    return np.reciprocal(out, out=out)


def _numpy_gelu(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    np.multiply(x, x, out=out)
    out *= _GELU_CUBIC
    out += 1
    out *= x
    out *= _GELU_SCALE
    np.tanh(out, out=out)
    out += 1
    out *= x
    out *= 0.5
    return out


def _numpy_gelu_grad(grad_output: np.ndarray, x: np.ndarray, out: np.ndarray,
                     inner: np.ndarray, t: np.ndarray) -> np.ndarray:
    # d/dx gelu = 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 a x^2), t = tanh(c (x + a x^3)).
    np.multiply(x, x, out=inner)
    np.multiply(inner, _GELU_CUBIC, out=t)
    t += 1
    t *= x
    t *= _GELU_SCALE
    np.tanh(t, out=t)
    inner *= 3 * _GELU_CUBIC
    inner += 1
    inner *= _GELU_SCALE
    np.multiply(t, t, out=out)
    np.subtract(1, out, out=out)
    out *= inner
    out *= x
    t += 1
    out += t
    out *= 0.5
    out *= grad_output
    return out


def _activation_cases(rng: np.random.Generator, settings: Settings) -> List[_Case]:
    n = settings.activation_elements
    x = _normal(rng, n, scale=2.0)
    grad_output = _normal(rng, n)
    ours_out = np.empty(n, np.float32)
    numpy_out = np.empty(n, np.float32)
    scratch = np.empty(n, np.float32)
    scratch_2 = np.empty(n, np.float32)

    def numpy_relu_grad():
        return np.multiply(grad_output, x > 0, out=numpy_out)

    def numpy_sigmoid_grad():
        _numpy_sigmoid(x, scratch)
        np.subtract(1, scratch, out=numpy_out)
        np.multiply(numpy_out, scratch, out=numpy_out)
        return np.multiply(numpy_out, grad_output, out=numpy_out)

    def numpy_tanh_grad():
        np.tanh(x, out=numpy_out)
        np.square(numpy_out, out=numpy_out)
        np.subtract(1, numpy_out, out=numpy_out)
        return np.multiply(numpy_out, grad_output, out=numpy_out)

    forward = {
        "relu": lambda: np.maximum(x, 0, out=numpy_out),
        "sigmoid": lambda: _numpy_sigmoid(x, numpy_out),
        "tanh": lambda: np.tanh(x, out=numpy_out),
        "gelu": lambda: _numpy_gelu(x, numpy_out),
    }
    backward = {
        "relu": numpy_relu_grad,
        "sigmoid": numpy_sigmoid_grad,
        "tanh": numpy_tanh_grad,
        "gelu": lambda: _numpy_gelu_grad(grad_output, x, numpy_out, scratch, scratch_2),
    }
    cases = []
    for name in forward:
        op = getattr(ops, name)
        op_grad = getattr(ops, f"{name}_grad")
        # fusedtrain's exp and tanh are polynomial approximations good to a few float32 ulps;
        # 1e-5 of the output's scale leaves room for that and for NumPy's own rounding.
        cases.append(_Case(name, _count(n), 8.0 * n, lambda op=op: op(x, out=ours_out),
                           forward[name], 1e-5))
        cases.append(_Case(f"{name}_grad", _count(n), 12.0 * n,
                           lambda op_grad=op_grad: op_grad(grad_output, x, out=ours_out),
                           backward[name], 1e-5))
    return cases


def _loss_cases(rng: np.random.Generator, settings: Settings) -> List[_Case]:
    cases = []
    for rows, classes in settings.loss_shapes:
        logits = _normal(rng, rows, classes, scale=3.0)
        labels = rng.integers(0, classes, rows).astype(np.int32)
        target = _normal(rng, rows, classes)
        row_index = np.arange(rows)
        ours_grad = np.empty((rows, classes), np.float32)
        numpy_grad = np.empty((rows, classes), np.float32)
        scratch = np.empty((rows, classes), np.float32)

        def numpy_cross_entropy(logits=logits, labels=labels, grad=numpy_grad, row_index=row_index):
            np.subtract(logits, logits.max(axis=1, keepdims=True), out=grad)
            picked = grad[row_index, labels]
            np.exp(grad, out=grad)
            sums = grad.sum(axis=1, keepdims=True)
            loss = float(np.mean(np.log(sums[:, 0]) - picked))
            grad /= sums * len(labels)
            grad[row_index, labels] -= 1.0 / len(labels)
            return loss, grad

        def numpy_mse(pred=logits, target=target, grad=numpy_grad, squares=scratch):
            np.subtract(pred, target, out=grad)
            np.square(grad, out=squares)
            loss = float(squares.mean())
            grad *= 2.0 / grad.size
            return loss, grad

        size = f"{rows}x{classes}"
        # Reads logits (and one int32 label per row), writes the gradient. Both sides sum each
        # row's exponentials in float32, in different orders: ~4e-6 apart at 1000 classes.
        cases.append(_Case("softmax_cross_entropy", size, 8.0 * rows * classes + 4.0 * rows,
                           lambda logits=logits, labels=labels, out=ours_grad:
                           ops.softmax_cross_entropy(logits, labels, out=out),
                           numpy_cross_entropy, 3e-5))
        # Reads pred and target, writes the gradient.
        cases.append(_Case("mse", size, 12.0 * rows * classes,
                           lambda pred=logits, target=target, out=ours_grad:
                           ops.mse(pred, target, out=out),
                           numpy_mse, 1e-5))
    return cases


_ADAM = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "step": 10}
_SGD = {"lr": 1e-2, "momentum": 0.9}


def _numpy_adam(param, grad, m, v, scratch, *, lr, beta1, beta2, eps, step):
    correction1 = 1.0 - beta1 ** step
    correction2 = 1.0 - beta2 ** step
    m *= beta1
    np.multiply(grad, 1.0 - beta1, out=scratch)
    m += scratch
    v *= beta2
    np.multiply(grad, grad, out=scratch)
    scratch *= 1.0 - beta2
    v += scratch
    np.sqrt(v, out=scratch)
    scratch /= math.sqrt(correction2)
    scratch += eps
    np.divide(m, scratch, out=scratch)
    scratch *= lr / correction1
    param -= scratch
    return param, m, v


def _numpy_sgd(param, grad, velocity, scratch, *, lr, momentum):
    velocity *= momentum
    velocity += grad
    np.multiply(velocity, lr, out=scratch)
    param -= scratch
    return param, velocity


def _fusedtrain_adam(param, grad, m, v):
    ops.adam_step(param, grad, m, v, **_ADAM)
    return param, m, v


def _fusedtrain_sgd(param, grad, velocity):
    ops.sgd_step(param, grad, velocity, **_SGD)
    return param, velocity


def _optimizer_cases(rng: np.random.Generator, settings: Settings) -> List[_Case]:
    # Both sides start from copies of one state, so their first steps (the agreement check)
    # match; later steps keep updating each side's own buffers.
    cases = []
    for n in settings.parameter_counts:
        grad = _normal(rng, n)
        state = (_normal(rng, n), _normal(rng, n, scale=0.1), np.abs(_normal(rng, n, scale=0.1)))
        ours = tuple(array.copy() for array in state)
        scratch = np.empty(n, np.float32)
        cases.append(_Case("adam", _count(n), 28.0 * n,
                           lambda p=ours[0], g=grad, m=ours[1], v=ours[2]: _fusedtrain_adam(p, g, m, v),
                           lambda p=state[0], g=grad, m=state[1], v=state[2], scratch=scratch:
                           _numpy_adam(p, g, m, v, scratch, **_ADAM), 1e-5))
    for n in settings.parameter_counts:
        grad = _normal(rng, n)
        state = (_normal(rng, n), _normal(rng, n, scale=0.1))
        ours = tuple(array.copy() for array in state)
        scratch = np.empty(n, np.float32)
        # Reads param, grad and velocity, writes param and velocity: 20 bytes per parameter.
        cases.append(_Case("sgd momentum", _count(n), 20.0 * n,
                           lambda p=ours[0], g=grad, velocity=ours[1]: _fusedtrain_sgd(p, g, velocity),
                           lambda p=state[0], g=grad, velocity=state[1], scratch=scratch:
                           _numpy_sgd(p, g, velocity, scratch, **_SGD), 1e-5))
    return cases


# ---- running --------------------------------------------------------------------------------

def _groups(settings: Settings) -> Iterator[Tuple[Group, Callable[[], List[_Case]]]]:
    rng = np.random.default_rng(0)
    yield (Group("Matrix multiply", "GFLOP/s",
                 "np.matmul(a, b, out=c) on the transposed views (a.T, b.T) where the op transposes"),
           lambda: _gemm_cases(rng, settings))
    yield (Group("Dense forward (fused bias + relu epilogue)", "GFLOP/s",
                 "`np.maximum(x @ w + b, 0)` (expression) and np.matmul/+=/np.maximum with out= (out=)"),
           lambda: _dense_cases(rng))
    yield (Group("Activations", "GB/s",
                 "ufuncs with out= and preallocated scratch; GB/s counts 8 B/element forward "
                 "(x in, y out), 12 B/element backward"),
           lambda: _activation_cases(rng, settings))
    yield (Group("Losses (value and gradient)", "GB/s",
                 "max-subtracted softmax with out=, fancy-indexed labels; mse as the mean of np.square "
                 "with out= (pairwise summation; np.vdot would be faster but sums in float32, "
                 "off by ~2e-5 at 4M elements)"),
           lambda: _loss_cases(rng, settings))
    yield (Group("Optimizer steps (in place)", "GB/s",
                 "in-place ufuncs with one scratch buffer; Adam moves 28 B/parameter "
                 "(p, g, m, v in; p, m, v out), SGD momentum 20 B"),
           lambda: _optimizer_cases(rng, settings))


def _machine_busy_seconds() -> Optional[float]:
    """CPU seconds all processes have used since boot (Linux /proc/stat), or None elsewhere."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
        user, nice, system, _idle, _iowait, irq, softirq = (int(value) for value in fields[1:8])
        return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class _OtherLoad:
    """Measures how much of the machine other processes used between start and stop: the
    machine's busy CPU time minus this process's, over wall time times cores."""

    def __init__(self) -> None:
        self.machine = _machine_busy_seconds()
        own = os.times()
        self.own = own.user + own.system
        self.wall = time.perf_counter()

    def share(self) -> Optional[float]:
        machine = _machine_busy_seconds()
        if machine is None or self.machine is None:
            return None
        own = os.times()
        others = (machine - self.machine) - (own.user + own.system - self.own)
        capacity = (time.perf_counter() - self.wall) * (os.cpu_count() or 1)
        return min(max(others / capacity, 0.0), 1.0)


@contextlib.contextmanager
def _blas_threads(threads: int) -> Iterator[bool]:
    """Limits NumPy's BLAS to ``threads`` while the block runs; yields whether it could."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield False
        return
    with threadpool_limits(limits=threads, user_api="blas"):
        yield True


def measure(quick: bool = False, threads: Optional[int] = None,
            progress: Optional[Callable[[str], None]] = None) -> Report:
    """Runs every group and returns the measured report. ``threads`` defaults to fusedtrain's
    current count; both libraries use it, and fusedtrain's previous count is restored after."""
    settings = QUICK if quick else FULL
    previous = get_num_threads()
    threads = previous if threads is None else threads
    set_num_threads(threads)
    try:
        with _blas_threads(threads) as blas_threads_set:
            report = Report(threads, quick, blas_threads_set)
            other_load = _OtherLoad()
            if progress:
                progress("machine limits")
            report.limits = measure_limits(settings)
            for group, make_cases in _groups(settings):
                if progress:
                    progress(group.title)
                group_load = _OtherLoad()
                for case in make_cases():
                    failure = _disagreement(case)
                    if failure:
                        report.failures.append(failure)
                    fusedtrain_seconds, numpy_seconds = _measure(case, settings)
                    group.rows.append(Row(case.op, case.size, fusedtrain_seconds, numpy_seconds, case.work))
                group.other_load = group_load.share()
                report.groups.append(group)
            report.other_load = other_load.share()
    finally:
        set_num_threads(previous)
    return report


# ---- reporting ------------------------------------------------------------------------------

def cpu_model() -> str:
    """The CPU's model name, with its family and model numbers: virtual machines often report a
    bare name ("AMD EPYC") that the numbers pin down to a generation."""
    facts: Dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "cpu family", "model") and key not in facts:
                    facts[key] = value.strip()
                if not line.strip() and facts:
                    break
    except OSError:
        pass
    if "model name" not in facts:
        return platform.processor() or platform.machine()
    if "cpu family" in facts and "model" in facts:
        return f"{facts['model name']} (family {facts['cpu family']}, model {facts['model']})"
    return facts["model name"]


def _numpy_blas() -> str:
    """NumPy's BLAS as threadpoolctl sees it loaded, else as NumPy's build configuration says."""
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                details = [pool.get("architecture"), pool.get("threading_layer")]
                described = ", ".join(str(item) for item in details if item)
                return f"{pool.get('internal_api')} {pool.get('version')}" + (f" ({described})" if described else "")
    except ImportError:
        pass
    with contextlib.suppress(Exception):
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    return "unknown"


def _fma_width() -> str:
    """The multiply-add the probe runs on the current SIMD path."""
    return {"avx512": "512-bit", "avx2+fma": "256-bit"}.get(_C.simd_path(), "scalar")


def machine_facts() -> Dict[str, str]:
    """Date, CPU, cores and library versions: the context a timing needs to mean anything."""
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu_model(),
        "logical cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "fusedtrain": f"{__version__} (SIMD path {_C.simd_path()})",
        "numpy": np.__version__,
        "numpy BLAS": _numpy_blas() + _blas_pinned(),
    }


def _blas_pinned() -> str:
    """A warning where the environment pins OpenBLAS to an older kernel than the CPU's own."""
    pins = [f"{name}={os.environ[name]}" for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if name in os.environ]
    return f" (pinned by {', '.join(pins)}: not the kernel an unpinned NumPy runs)" if pins else ""


def results_header(title: str, script: str, argv: Sequence[str], facts: Dict[str, str],
                   notes: Sequence[str]) -> List[str]:
    """The first lines of a results file in bench/results: the title, the command that wrote it
    (``python script argv...``), the machine facts as a table, then the notes as a list."""
    lines = [f"# {title}", "", f"Command: `{shlex.join(['python', script, *argv])}`", "",
             "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in facts.items()]
    lines.append("")
    if notes:
        lines += [f"- {note}" for note in notes] + [""]
    return lines


def _format_seconds(seconds: float) -> str:
    for unit, factor in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= factor:
            return f"{seconds / factor:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def _rate(work: float, seconds: float) -> str:
    return f"{work / seconds / 1e9:.3g}"


def render(report: Report) -> str:
    """The report as Markdown: one table per group, the reference and ratio convention above."""
    lines = [f"Threads: {report.threads} for fusedtrain and NumPy"
             + ("" if report.blas_threads_set else " (NumPy's BLAS at its default: threadpoolctl missing)")
             + f"; {'quick' if report.quick else 'full'} sizes. {RATIO_CONVENTION}."]
    if report.other_load is not None:
        lines.append(f"Other processes used {report.other_load:.0%} of the machine's CPU time during "
                     "this measurement.")
    lines.append("")
    limits = report.limits
    if limits is not None:
        lines += ["### Machine limits", "",
                  "Measured by fusedtrain's probes at this thread count, the fastest of "
                  f"{PROBE_RUNS} runs; the tables give fusedtrain's rate as a share of them "
                  "(GFLOP/s of the multiply-add peak, GB/s of the memory bandwidth: above 100%, "
                  "the data sat in the caches).", "",
                  "| limit | measured |", "|---|---:|",
                  f"| multiply-add peak (10 independent chains of {_fma_width()} FMAs per thread) "
                  f"| {limits.fma_gflops:.3g} GFLOP/s |",
                  f"| memory bandwidth (STREAM triad on 3 x {_count(limits.triad_elements)} floats, "
                  f"12 B/element) | {limits.triad_gbs:.3g} GB/s |", ""]
    for group in report.groups:
        lines += [f"### {group.title}", "", f"NumPy reference: {group.reference}."]
        if group.other_load is not None:
            lines[-1] += f" Other processes' share of the CPU time meanwhile: {group.other_load:.0%}."
        share = "peak" if group.unit == "GFLOP/s" else "bandwidth"
        lines += ["", f"| op | size | fusedtrain | NumPy | fusedtrain {group.unit} | NumPy {group.unit} | ratio "
                      f"| fusedtrain, of {share} |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for row in group.rows:
            of_limit = (f"{row.work / row.fusedtrain_seconds / 1e9 / limits.of(group.unit):.0%}"
                        if limits is not None else "n/a")
            lines.append(f"| {row.op} | {row.size} | {_format_seconds(row.fusedtrain_seconds)} "
                         f"| {_format_seconds(row.numpy_seconds)} | {_rate(row.work, row.fusedtrain_seconds)} "
                         f"| {_rate(row.work, row.numpy_seconds)} | {row.ratio:.3g} | {of_limit} |")
        lines.append("")
    for failure in report.failures:
        lines.append(f"MISMATCH: {failure}")
    return "\n".join(lines).rstrip() + "\n"


def run(quick: bool = False, threads: Optional[int] = None) -> int:
    """``fusedtrain bench``: prints the machine, then the tables. Returns 0, or 1 when a result
    disagreed with NumPy (the tables are printed either way)."""
    if threads is not None and threads < 1:
        print(f"fusedtrain bench: --threads must be at least 1, got {threads}", file=sys.stderr)
        return 2
    for key, value in machine_facts().items():
        print(f"{key}: {value}")
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        print("threadpoolctl is not installed (pip install 'fusedtrain[bench]'): "
              "NumPy's BLAS runs with its default thread count")
    print()
    report = measure(quick=quick, threads=threads,
                     progress=lambda title: print(f"measuring {title} ...", file=sys.stderr, flush=True))
    print(render(report), end="")
    return 1 if report.failures else 0
