"""Ops and training from several Python threads at once: the results equal the single-threaded
ones bit for bit, the kernels release the GIL, and two models training side by side (in two
threads, or interleaved in one) do not disturb each other.

Reductions add their per-thread partial sums in a fixed order that depends on the kernels'
thread count (one count for the whole process, see test_info.py); so every test here runs all of
its workers at one count, and a result is compared with one computed at the same count."""

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import layers, ops

WORKERS = 6
ITERATIONS = 25


@pytest.fixture(autouse=True)
def restore_thread_count():
    previous = ft.get_num_threads()
    yield
    ft.set_num_threads(previous)


def op_sequence(seed, threads):
    """A forward/backward/update loop on the worker's own arrays: matmul with a fused epilogue,
    activations, a loss, the bias gradient, dropout and two optimizer steps. Returns every
    array it ends with and the losses it saw."""
    ft.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((67, 129)).astype(np.float32)
    labels = rng.integers(0, 17, 67)
    weights = (rng.standard_normal((129, 17)) * 0.1).astype(np.float32)
    bias = np.zeros(17, np.float32)
    m, v = np.zeros_like(weights), np.zeros_like(weights)
    velocity = np.zeros_like(bias)
    losses = []
    for step in range(1, ITERATIONS + 1):
        hidden, mask = ops.dropout(ops.gelu(x), 0.25, seed=seed, step=step)
        logits = ops.matmul(hidden, weights, bias=bias)
        ops.tanh(logits, out=logits)
        loss, grad = ops.softmax_cross_entropy(logits, labels)
        grad = ops.tanh_grad(grad, logits)
        weight_grad = ops.matmul(hidden, grad, trans_a=True)
        bias_grad = ops.bias_grad(grad)
        ops.clip_grad_norm([weight_grad, bias_grad], 5.0)
        ops.adam_step(weights, weight_grad, m, v, step=step, lr=1e-2)
        ops.sgd_step(bias, bias_grad, velocity, lr=0.1, momentum=0.9)
        losses.append(loss)
    return {"weights": weights, "bias": bias, "m": m, "v": v, "mask": mask, "losses": np.array(losses)}


def assert_identical(result, expected):
    assert result.keys() == expected.keys()
    for key in expected:
        np.testing.assert_array_equal(result[key], expected[key], err_msg=key)


@pytest.mark.parametrize("threads", [1, 2])
def test_ops_from_many_threads_equal_single_threaded_results(threads):
    seeds = list(range(100, 100 + WORKERS))
    expected = {seed: op_sequence(seed, threads) for seed in seeds}
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        # Each seed twice, so that identical work also runs side by side.
        futures = [(seed, pool.submit(op_sequence, seed, threads)) for seed in seeds + seeds]
        for seed, future in futures:
            assert_identical(future.result(), expected[seed])


def test_shared_read_only_inputs_from_many_threads(rng):
    """Threads may read the same inputs at once (each writes its own output)."""
    a = rng.standard_normal((257, 65)).astype(np.float32)
    b = rng.standard_normal((65, 129)).astype(np.float32)
    a.flags.writeable = False
    b.flags.writeable = False
    expected = ops.matmul(a, b, activation="relu")

    def work(_):
        return [ops.matmul(a, b, activation="relu") for _ in range(20)]

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        for results in pool.map(work, range(WORKERS)):
            for result in results:
                np.testing.assert_array_equal(result, expected)


def count_during(action):
    """How far a pure-Python counter thread gets while this thread runs ``action``.

    The switch interval is raised to 2 s for the measurement: a thread that holds the GIL then
    keeps it for the whole action (0.1 - 0.5 s), so the counter advances only if the action
    releases the GIL. The counter yields (time.sleep(0)) every 1,000 steps, so that this thread
    gets the GIL back as soon as the action returns."""
    state = {"count": 0, "run": True}
    running = threading.Event()

    def counter():
        running.set()
        while state["run"]:
            for _ in range(1000):
                state["count"] += 1
            time.sleep(0)

    previous = sys.getswitchinterval()
    sys.setswitchinterval(2.0)
    thread = threading.Thread(target=counter)
    try:
        thread.start()
        running.wait()
        time.sleep(0.01)
        begin = state["count"]
        action()
        end = state["count"]
    finally:
        state["run"] = False
        thread.join()
        sys.setswitchinterval(previous)
    return end - begin


def test_kernels_release_the_gil(rng):
    """While one thread is in a long matmul, a pure-Python thread keeps counting; while a thread
    holds the GIL in pure Python for as long, it does not (or barely) count. The counts are
    compared with a wide margin, so that a loaded machine cannot make the test fail."""
    ft.set_num_threads(1)
    size = 1536
    a = rng.standard_normal((size, size)).astype(np.float32)
    b = rng.standard_normal((size, size)).astype(np.float32)
    out = np.empty((size, size), np.float32)
    started = time.perf_counter()
    ops.matmul(a, b, out=out)
    duration = time.perf_counter() - started

    def python_loop():
        deadline = time.perf_counter() + duration
        while time.perf_counter() < deadline:
            pass

    in_kernel = count_during(lambda: ops.matmul(a, b, out=out))
    holding_gil = count_during(python_loop)
    assert in_kernel > 10_000, (in_kernel, holding_gil, duration)
    assert in_kernel > 20 * holding_gil, (in_kernel, holding_gil, duration)


def make_model(seed, dropout=0.2):
    model = ft.Sequential([layers.Dense(33, activation="relu"), layers.Dropout(dropout), layers.Dense(5)],
                          seed=seed)
    model.compile(optimizer=ft.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def data(seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((301, 13)).astype(np.float32)
    y = (np.argmax(x[:, :5], axis=1) + (x[:, 5] > 1)) % 5
    return x, y


def train_alone(seed, epochs=4, threads=1):
    ft.set_num_threads(threads)
    model = make_model(seed)
    x, y = data(seed)
    history = model.fit(x, y, epochs=epochs, batch_size=32, validation_split=0.2, verbose=0, seed=seed)
    return model.get_weights(), history.history


def assert_same_training(result, expected):
    weights, history = result
    expected_weights, expected_history = expected
    for weight, reference in zip(weights, expected_weights):
        np.testing.assert_array_equal(weight, reference)
    assert history == expected_history


@pytest.mark.parametrize("threads", [1, 2])
def test_two_models_training_in_two_threads(threads):
    expected = {seed: train_alone(seed, threads=threads) for seed in (1, 2)}
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [(seed, pool.submit(train_alone, seed, 4, threads)) for seed in (1, 2, 1, 2)]
        for seed, future in futures:
            assert_same_training(future.result(), expected[seed])


def fit_one_epoch(model, seed, epoch):
    x, y = data(seed)
    history = model.fit(x, y, epochs=epoch + 1, initial_epoch=epoch, batch_size=32, validation_split=0.2,
                        verbose=0)
    return history.history


def test_two_models_interleaved_in_one_thread():
    """One epoch of each model in turn ends as each model's epochs run back to back: the models
    share no state (weights, optimizer, random streams, workspaces). The shuffling and dropout
    streams of a fit without ``seed`` follow from the model's seed and its own count of fit
    calls, so the same calls on one model give the same run."""
    ft.set_num_threads(1)
    epochs = 4
    expected = {}
    for seed in (1, 2):
        model = make_model(seed)
        histories = [fit_one_epoch(model, seed, epoch) for epoch in range(epochs)]
        expected[seed] = (model.get_weights(), histories)
    models = {seed: make_model(seed) for seed in (1, 2)}
    histories = {1: [], 2: []}
    for epoch in range(epochs):
        for seed, model in models.items():
            histories[seed].append(fit_one_epoch(model, seed, epoch))
    for seed, model in models.items():
        assert_same_training((model.get_weights(), histories[seed]), expected[seed])
    # The two models did train differently (the comparison above is not between equal runs).
    assert not np.array_equal(models[1].get_weights()[0], models[2].get_weights()[0])
