"""Parallel regions on contended cores (csrc/cpu/parallel.h, RegionWatch): after two regions in a
row whose threads waited for a core (another library's threads spinning on it), the kernels run
their regions on one thread for 20 ms, then on all again. The chunks a region is cut into, and
so every result, stay those of the thread count set: results with the fallback, and with NumPy's
OpenBLAS threads competing for the cores, equal the quiet ones bit for bit."""

import threading
import time

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import _C, ops

WINDOW = 0.020  # seconds on one thread after two late regions


@pytest.fixture(autouse=True)
def two_threads():
    previous = ft.get_num_threads()
    ft.set_num_threads(2)
    time.sleep(WINDOW * 1.5)  # no window left from an earlier test
    _C._note_region(False)  # nor a late region of its, which one more would make two in a row
    yield
    ft.set_num_threads(previous)
    time.sleep(WINDOW * 1.5)


def force_one_thread():
    """Starts the 20 ms on one thread, as two late regions in a row do."""
    _C._note_region(True)
    _C._note_region(True)


def test_two_late_regions_in_a_row_run_the_next_20_ms_on_one_thread():
    start = time.perf_counter()
    force_one_thread()
    running = _C._running_threads(2), _C._running_threads(7), _C._running_threads(1)
    if time.perf_counter() - start < WINDOW / 2:  # not preempted past the window meanwhile
        assert running == (1, 1, 1)
    time.sleep(WINDOW * 1.5)
    assert _C._running_threads(2) == 2
    assert _C._running_threads(7) == 7


def test_one_late_region_between_punctual_ones_changes_nothing():
    for late in (True, False, True, False, True):
        _C._note_region(late)
    assert _C._running_threads(2) == 2


def big_sequence(seed, before_each_op):
    """Ops large enough to run on two threads: a matmul whose C is cut into a grid of blocks (with
    edge tiles on both sides of the cut), gelu, dropout, a loss (a sum of per-chunk partial sums),
    the bias gradient, gradient clipping and an Adam step on a parameter of 262,144 values."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2503, 301)).astype(np.float32)
    labels = rng.integers(0, 30, 2503)
    weights = (rng.standard_normal((301, 30)) * 0.1).astype(np.float32)
    a = rng.standard_normal((301, 257)).astype(np.float32)
    b = rng.standard_normal((257, 263)).astype(np.float32)
    big = rng.standard_normal((512, 512)).astype(np.float32)
    big_grad = rng.standard_normal((512, 512)).astype(np.float32)
    m, v = np.zeros_like(big), np.zeros_like(big)
    out = {}
    before_each_op()
    out["product"] = ops.matmul(a, b, activation="relu", bias=b[0, :].copy())
    before_each_op()
    hidden = ops.gelu(x)
    before_each_op()
    hidden, out["mask"] = ops.dropout(hidden, 0.25, seed=seed, step=1)
    before_each_op()
    logits = ops.matmul(hidden, weights)
    before_each_op()
    loss, grad = ops.softmax_cross_entropy(logits, labels)
    out["loss"] = np.float64(loss)
    before_each_op()
    out["weight_grad"] = ops.matmul(hidden, grad, trans_a=True)
    before_each_op()
    out["bias_grad"] = ops.bias_grad(grad)
    before_each_op()
    out["norm"] = np.float64(ops.clip_grad_norm([big_grad], 1.0))
    before_each_op()
    ops.adam_step(big, big_grad, m, v, step=1, lr=1e-2)
    out.update(big=big, m=m, v=v)
    return out


def assert_identical(result, expected):
    assert result.keys() == expected.keys()
    for key in expected:
        np.testing.assert_array_equal(result[key], expected[key], err_msg=key)


def test_results_on_one_thread_during_the_fallback_equal_two_threads():
    expected = big_sequence(3, lambda: None)
    # Forced before every op: each then runs its two chunks one after the other on one thread.
    assert_identical(big_sequence(3, force_one_thread), expected)


def test_results_with_numpy_threads_competing_equal_quiet_ones():
    expected = big_sequence(5, lambda: None)
    stop = threading.Event()
    square = np.ones((256, 256), np.float32)

    def numpy_matmuls():  # NumPy releases the GIL; OpenBLAS's workers spin between calls
        while not stop.is_set():
            np.matmul(square, square)

    competitor = threading.Thread(target=numpy_matmuls)
    competitor.start()
    try:
        results = [big_sequence(5, lambda: None) for _ in range(3)]
    finally:
        stop.set()
        competitor.join()
    for result in results:
        assert_identical(result, expected)
