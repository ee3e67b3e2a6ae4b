"""Optimizer objects: each one must be exactly the sequence of fused op calls it stands for
(bit for bit), on the whole flat buffer or on its trainable segments, with one kernel call per
segment."""

import math

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import ops, optimizers

SIZE = 257


def reference_run(kind, config, parameters, gradients, segments, learning_rates):
    """The op calls an optimizer stands for, written out by hand on copies."""
    parameters = parameters.copy()
    state = {name: np.zeros(SIZE, dtype=np.float32) for name in ("velocity", "m", "v", "square_avg")}
    for step, (grad, lr) in enumerate(zip(gradients, learning_rates), start=1):
        grad = grad.copy()
        if config.get("clipnorm"):
            ops.clip_grad_norm([grad[a:b] for a, b in segments], config["clipnorm"])
        for a, b in segments:
            p, g = parameters[a:b], grad[a:b]
            if kind == "sgd":
                velocity = state["velocity"][a:b] if config.get("momentum") else None
                ops.sgd_step(p, g, velocity, lr=lr, momentum=config.get("momentum", 0.0),
                             nesterov=config.get("nesterov", False), weight_decay=config.get("weight_decay", 0.0))
            elif kind in ("adam", "adamw"):
                ops.adam_step(p, g, state["m"][a:b], state["v"][a:b], step=step, lr=lr,
                              beta1=config.get("beta_1", 0.9), beta2=config.get("beta_2", 0.999),
                              eps=config.get("epsilon", 1e-8),
                              weight_decay=config.get("weight_decay", 0.01 if kind == "adamw" else 0.0),
                              decoupled=kind == "adamw")
            else:
                ops.rmsprop_step(p, g, state["square_avg"][a:b], lr=lr, alpha=config.get("rho", 0.9),
                                 eps=config.get("epsilon", 1e-8), weight_decay=config.get("weight_decay", 0.0))
    return parameters


CASES = [
    ("sgd", optimizers.SGD, {}),
    ("sgd", optimizers.SGD, {"momentum": 0.9}),
    ("sgd", optimizers.SGD, {"momentum": 0.8, "nesterov": True, "weight_decay": 0.01}),
    ("sgd", optimizers.SGD, {"momentum": 0.9, "clipnorm": 0.5}),
    ("adam", optimizers.Adam, {}),
    ("adam", optimizers.Adam, {"beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-6, "weight_decay": 0.1}),
    ("adam", optimizers.Adam, {"clipnorm": 0.3}),
    ("adamw", optimizers.AdamW, {}),
    ("adamw", optimizers.AdamW, {"weight_decay": 0.2, "clipnorm": 1.0}),
    ("rmsprop", optimizers.RMSprop, {}),
    ("rmsprop", optimizers.RMSprop, {"rho": 0.7, "epsilon": 1e-5, "weight_decay": 0.05, "clipnorm": 0.2}),
]


@pytest.mark.parametrize("segments", [[(0, SIZE)], [(0, 100), (180, 257)], [(17, 18)]],
                         ids=["whole", "two-segments", "one-value"])
@pytest.mark.parametrize("kind, optimizer_class, config", CASES)
def test_optimizer_matches_the_op_sequence(rng, simd_path, kind, optimizer_class, config, segments):
    parameters = rng.standard_normal(SIZE).astype(np.float32)
    gradients = [rng.standard_normal(SIZE).astype(np.float32) for _ in range(4)]
    learning_rates = [0.1, 0.1, 0.05, 0.02]
    expected = reference_run(kind, config, parameters, gradients, segments, learning_rates)

    optimizer = optimizer_class(learning_rate=learning_rates[0], **config)
    optimizer.build(SIZE)
    actual = parameters.copy()
    for grad, lr in zip(gradients, learning_rates):
        optimizer.learning_rate = lr
        optimizer.apply(actual, grad.copy(), segments)
    np.testing.assert_array_equal(actual, expected)
    assert optimizer.iterations == 4
    frozen = np.ones(SIZE, dtype=bool)
    for a, b in segments:
        frozen[a:b] = False
    np.testing.assert_array_equal(actual[frozen], parameters[frozen])
    for buffer in optimizer.state.values():
        assert buffer.shape == (SIZE,) and not buffer[frozen].any()


@pytest.mark.parametrize("optimizer_class, op_name", [
    (optimizers.SGD, "sgd_step"), (optimizers.Adam, "adam_step"), (optimizers.AdamW, "adam_step"),
    (optimizers.RMSprop, "rmsprop_step"),
])
def test_one_kernel_call_per_segment(monkeypatch, rng, optimizer_class, op_name):
    calls = []
    original = getattr(ops, op_name)

    def counting(param, *args, **kwargs):
        calls.append(param.size)
        return original(param, *args, **kwargs)

    monkeypatch.setattr(ops, op_name, counting)
    optimizer = optimizer_class()
    parameters = rng.standard_normal(SIZE).astype(np.float32)
    optimizer.apply(parameters, rng.standard_normal(SIZE).astype(np.float32), [(0, SIZE)])
    assert calls == [SIZE]
    optimizer.apply(parameters, rng.standard_normal(SIZE).astype(np.float32), [(0, 10), (20, 30), (40, 257)])
    assert calls == [SIZE, 10, 10, 217]


def test_clipnorm_is_global_over_the_trainable_segments(rng):
    gradients = rng.standard_normal(SIZE).astype(np.float32)
    segments = [(0, 50), (100, 150)]
    norm = math.sqrt(sum(float(np.sum(gradients[a:b].astype(np.float64) ** 2)) for a, b in segments))
    optimizer = optimizers.SGD(learning_rate=1.0, clipnorm=1.0)
    parameters = np.zeros(SIZE, dtype=np.float32)
    clipped = gradients.copy()
    optimizer.apply(parameters, clipped, segments)
    # Plain SGD with lr 1 moves the parameters by minus the clipped gradient.
    step = -parameters[np.r_[0:50, 100:150]].astype(np.float64)
    assert np.linalg.norm(step) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(step, gradients[np.r_[0:50, 100:150]] / norm, rtol=1e-5)
    np.testing.assert_array_equal(clipped[50:100], gradients[50:100])


def test_no_segments_does_nothing(rng):
    optimizer = optimizers.Adam()
    parameters = rng.standard_normal(SIZE).astype(np.float32)
    before = parameters.copy()
    optimizer.apply(parameters, rng.standard_normal(SIZE).astype(np.float32), [])
    np.testing.assert_array_equal(parameters, before)
    assert optimizer.iterations == 0


class TestConfiguration:
    def test_defaults(self):
        assert optimizers.SGD().learning_rate == 0.01
        adam = optimizers.Adam()
        assert (adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon, adam.weight_decay) == (1e-3, 0.9, 0.999, 1e-8, 0.0)
        assert optimizers.AdamW().weight_decay == 0.01 and optimizers.AdamW().decoupled
        rmsprop = optimizers.RMSprop()
        assert (rmsprop.learning_rate, rmsprop.rho, rmsprop.epsilon) == (1e-3, 0.9, 1e-8)

    def test_lr_alias_and_settable_property(self):
        optimizer = optimizers.SGD(lr=0.5, momentum=0.9)
        assert optimizer.learning_rate == 0.5 and optimizer.lr == 0.5
        optimizer.learning_rate = 0.25
        assert optimizer.lr == 0.25
        optimizer.lr = 0.125
        assert optimizer.learning_rate == 0.125
        assert optimizers.Adam(0.01).learning_rate == 0.01

    def test_learning_rate_errors(self):
        with pytest.raises(ValueError, match="lr: is an alias of learning_rate"):
            optimizers.Adam(learning_rate=0.1, lr=0.1)
        optimizer = optimizers.Adam()
        with pytest.raises(ValueError, match="learning_rate"):
            optimizer.learning_rate = -1.0
        with pytest.raises(ValueError, match="learning_rate"):
            optimizer.learning_rate = float("nan")
        with pytest.raises(TypeError, match="LearningRateScheduler"):
            optimizer.learning_rate = lambda epoch: 0.1
        assert optimizer.learning_rate == 1e-3

    @pytest.mark.parametrize("factory, message", [
        (lambda: optimizers.SGD(nesterov=True), "nesterov"),
        (lambda: optimizers.SGD(momentum=-0.1), "momentum"),
        (lambda: optimizers.Adam(beta_1=1.0), "beta_1"),
        (lambda: optimizers.Adam(clipnorm=0.0), "clipnorm"),
        (lambda: optimizers.RMSprop(rho=1.5), "rho"),
        (lambda: optimizers.AdamW(weight_decay=-0.01), "weight_decay"),
    ])
    def test_bad_hyperparameters(self, factory, message):
        with pytest.raises(ValueError, match=message):
            factory()

    def test_by_name(self):
        assert isinstance(optimizers.get("adam"), optimizers.Adam)
        assert isinstance(optimizers.get("AdamW"), optimizers.AdamW)
        assert isinstance(optimizers.get("sgd"), optimizers.SGD)
        assert isinstance(optimizers.get("rmsprop"), optimizers.RMSprop)
        with pytest.raises(ValueError, match="optimizer: expected an Optimizer or one of"):
            optimizers.get("adagrad")

    def test_state_is_allocated_once_and_size_is_checked(self):
        optimizer = optimizers.Adam()
        optimizer.build(10)
        m = optimizer.m
        optimizer.build(10)
        assert optimizer.m is m and optimizer.state["v"].dtype == np.float32
        with pytest.raises(ValueError, match="already holds state for 10 parameters"):
            optimizer.build(11)
        with pytest.raises(ValueError, match="parameters: expected 10 values"):
            optimizer.apply(np.zeros(11, np.float32), np.zeros(11, np.float32), [(0, 11)])

    def test_sgd_without_momentum_has_no_state(self):
        optimizer = optimizers.SGD()
        optimizer.build(5)
        assert optimizer.state == {}

    def test_repr_shows_the_configuration(self):
        assert repr(optimizers.SGD(0.1, momentum=0.9)) == (
            "SGD(learning_rate=0.1, momentum=0.9, nesterov=False, weight_decay=0.0, clipnorm=None)")


def test_model_with_all_layers_trainable_makes_one_call_per_step(monkeypatch, rng):
    calls = []
    original = ops.adam_step

    def counting(param, *args, **kwargs):
        calls.append(param.size)
        return original(param, *args, **kwargs)

    monkeypatch.setattr(ops, "adam_step", counting)
    model = ft.Sequential([ft.layers.Dense(5, activation="relu"), ft.layers.Dropout(0.1), ft.layers.Dense(3)],
                          input_dim=4, seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = rng.standard_normal((10, 4))
    y = rng.integers(0, 3, 10)
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert calls == [model.count_params()] * 6
    calls.clear()
    model.layers[0].trainable = False
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert calls == [3 * 5 + 3] * 3
