"""Training end to end: learning (XOR, digits, a known regression), the whole backward pass
against float64 finite differences, frozen layers, reproducibility, validation, the history,
the callback protocol, divergence handling and the no-copy batching."""

import math
import re
import tracemalloc
import warnings

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import layers
from references import reference_activation, unaligned


# Tiny models: one kernel thread (see conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


# Learning ---------------------------------------------------------------------------------------

def test_xor_is_learnt():
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    y = np.array([0, 1, 1, 0])
    model = ft.Sequential([layers.Dense(8, activation="tanh"), layers.Dense(1)], seed=0)
    model.compile(optimizer=ft.optimizers.Adam(0.05), loss="binary_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=300, batch_size=4, verbose=0)
    assert history.history["accuracy"][-1] == 1.0
    np.testing.assert_array_equal(model.predict_classes(x), y)
    assert model.evaluate(x, y)["accuracy"] == 1.0


def digits_split():
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = ft.data.train_val_test_split(
        digits.data, digits.target, (0.7, 0.15, 0.15), stratify=digits.target, seed=0)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    return ((x_train - mean) / std, y_train), ((x_val - mean) / std, y_val), ((x_test - mean) / std, y_test)


def test_digits_reaches_96_percent():
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = digits_split()
    model = ft.Sequential([layers.Dense(128, activation="relu"), layers.Dense(10)], input_dim=64, seed=0)
    model.compile(optimizer=ft.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, epochs=20, batch_size=32, validation_data=(x_val, y_val), verbose=0, seed=1)
    assert history.history["val_accuracy"][-1] >= 0.95
    result = model.evaluate(x_test, y_test)
    assert result["accuracy"] >= 0.96
    probabilities = model.predict_proba(x_test)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert np.mean(model.predict_classes(x_test) == y_test) == pytest.approx(result["accuracy"])


def test_regression_on_a_known_function():
    rng = np.random.default_rng(4)
    x = rng.uniform(-2, 2, size=(1200, 2))
    y = np.sin(x[:, 0]) + x[:, 1] ** 2
    model = ft.Sequential([layers.Dense(64, activation="tanh"), layers.Dense(64, activation="tanh"), layers.Dense(1)],
                          input_dim=2, seed=0)
    model.compile(optimizer=ft.optimizers.Adam(3e-3), loss="mse", metrics=["mae"])
    history = model.fit(x[:1000], y[:1000], epochs=60, batch_size=32, verbose=0, seed=0)
    result = model.evaluate(x[1000:], y[1000:])
    # The target's variance is about 1.6: a test MSE below 0.01 is a fit to well under 1%.
    assert result["loss"] < 0.01
    assert history.history["mae"][-1] < 0.1
    predictions = model.predict(x[1000:])
    assert predictions.shape == (200, 1)
    assert np.mean((predictions[:, 0] - y[1000:]) ** 2) == pytest.approx(result["loss"], rel=1e-4)


# Gradient check ---------------------------------------------------------------------------------

def reference_loss(model, flat, x, y, loss):
    """The model's loss in float64 with the parameters ``flat`` (laid out as model.parameters:
    each layer's kernel then bias, in layer order), written independently of fusedtrain."""
    offset = 0
    h = x.astype(np.float64)
    penalty = 0.0
    last = len(model.layers) - 1
    for index, layer in enumerate(model.layers):
        fold = index == last and loss != "mse"
        if isinstance(layer, layers.Dense):
            kernel = flat[offset:offset + layer.kernel.size].reshape(layer.kernel.shape)
            offset += kernel.size
            h = h @ kernel
            if layer.use_bias:
                h = h + flat[offset:offset + layer.units]
                offset += layer.units
            if layer.kernel_regularizer is not None:
                penalty += layer.kernel_regularizer.l1 * np.abs(kernel).sum()
                penalty += layer.kernel_regularizer.l2 * np.square(kernel).sum()
            if not fold:
                h = reference_activation(layer.activation, h, layer.negative_slope)
        elif isinstance(layer, layers.Activation) and not fold:
            h = reference_activation(layer.activation, h, layer.negative_slope)
    if loss == "mse":
        value = np.mean((h - y.reshape(h.shape)) ** 2)
    elif loss == "binary_crossentropy":
        target = y.reshape(h.shape)
        value = np.mean(np.maximum(h, 0) - h * target + np.log1p(np.exp(-np.abs(h))))
    else:
        shifted = h - h.max(axis=1, keepdims=True)
        log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        value = -np.mean(log_softmax[np.arange(len(y)), y])
    return value + penalty


ACTIVATIONS = ["relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax", None]


def numeric_gradient(model, loss, x, y):
    """Central differences of reference_loss in float64, perturbing the flat parameters."""
    flat = model.parameters.astype(np.float64)
    numeric = np.empty_like(flat)
    step = 1e-6
    for index in range(flat.size):
        original = flat[index]
        flat[index] = original + step
        plus = reference_loss(model, flat, x, y, loss)
        flat[index] = original - step
        minus = reference_loss(model, flat, x, y, loss)
        flat[index] = original
        numeric[index] = (plus - minus) / (2 * step)
    return numeric


def assert_gradients_close(actual, numeric):
    # float32 forward and backward against float64 central differences (error ~1e-9): the
    # float32 rounding of a few dozen products bounds the difference at ~1e-5 of the scale.
    scale = np.abs(numeric).max()
    np.testing.assert_allclose(actual, numeric, rtol=1e-4, atol=2e-5 * scale)


def gradient_check(model, loss, x, y):
    model.compile(optimizer="sgd", loss=loss)
    model.build(x.shape[1])
    value, gradients = model.loss_and_gradients(x, y)
    assert value == pytest.approx(reference_loss(model, model.parameters.astype(np.float64), x, y, loss),
                                  rel=1e-5, abs=1e-6)
    assert_gradients_close(gradients, numeric_gradient(model, loss, x, y))


@pytest.mark.parametrize("regularizer", [None, ft.regularizers.L1L2(l1=0.01, l2=0.02)], ids=["plain", "l1l2"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_backward_matches_finite_differences_for_each_activation(rng, activation, regularizer):
    model = ft.Sequential([
        layers.Dense(5, activation=activation, kernel_regularizer=regularizer,
                     kernel_initializer=ft.initializers.RandomNormal(stddev=0.7)),
        layers.Dense(4, activation="tanh", kernel_regularizer=regularizer),
        layers.Dense(3, kernel_regularizer=regularizer),
    ], seed=1)
    x = rng.standard_normal((7, 3))
    y = rng.integers(0, 3, 7)
    gradient_check(model, "sparse_categorical_crossentropy", x, y)


@pytest.mark.parametrize("slope", [0.0, 0.2, -0.3])
def test_leaky_relu_gradient_for_every_slope(rng, slope):
    # A slope >= 0 takes the derivative at the layer's output (the fused training forward), a
    # negative one at its input.
    model = ft.Sequential([layers.Dense(6, activation="leaky_relu",
                                        kernel_initializer=ft.initializers.RandomNormal(stddev=0.7)),
                           layers.Dense(3)], seed=2)
    model.layers[0].negative_slope = slope
    x = rng.standard_normal((9, 4))
    y = rng.integers(0, 3, 9)
    gradient_check(model, "sparse_categorical_crossentropy", x, y)


@pytest.mark.parametrize("final, loss", [
    (None, "mse"), ("sigmoid", "mse"), ("softmax", "mse"), ("tanh", "mse"),
    (None, "binary_crossentropy"), ("sigmoid", "binary_crossentropy"),
    (None, "sparse_categorical_crossentropy"), ("softmax", "sparse_categorical_crossentropy"),
])
def test_backward_matches_finite_differences_for_each_loss(rng, final, loss):
    model = ft.Sequential([layers.Dense(4, activation="gelu"), layers.Dense(3, activation=final)], seed=2)
    x = rng.standard_normal((6, 2))
    if loss == "mse":
        y = rng.standard_normal((6, 3))
    elif loss == "binary_crossentropy":
        y = rng.uniform(0, 1, (6, 3))
    else:
        y = rng.integers(0, 3, 6)
    gradient_check(model, loss, x, y)


def test_backward_through_activation_layers_and_inactive_dropout(rng):
    model = ft.Sequential([
        layers.Dense(6), layers.LeakyReLU(0.2), layers.Dropout(0.5), layers.Dense(5, use_bias=False),
        layers.GELU(), layers.Dense(2, kernel_regularizer=ft.regularizers.L1(0.05)), layers.Sigmoid(),
    ], seed=3)
    x = rng.standard_normal((9, 4))
    y = rng.integers(0, 2, (9, 2)).astype(np.float64)
    gradient_check(model, "binary_crossentropy", x, y)


def test_frozen_layers_get_no_gradient(rng):
    model = ft.Sequential([layers.Dense(4, activation="tanh"), layers.Dense(3, activation="relu"), layers.Dense(2)],
                          seed=4)
    model.layers[1].trainable = False
    x = rng.standard_normal((5, 3))
    y = rng.integers(0, 2, 5)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.build(3)
    _, gradients = model.loss_and_gradients(x, y)
    frozen = model.layers[1]
    assert not frozen.kernel_grad.any() and not frozen.bias_grad.any()
    # The layers on either side still get their exact gradient, through the frozen one.
    numeric = numeric_gradient(model, "sparse_categorical_crossentropy", x, y)
    trainable = np.ones(gradients.size, dtype=bool)
    trainable[4 * 3 + 4:4 * 3 + 4 + 4 * 3 + 3] = False
    assert_gradients_close(gradients[trainable], numeric[trainable])


# Frozen layers and transfer learning -------------------------------------------------------------

def test_frozen_layers_do_not_change_while_others_do(rng):
    x = rng.standard_normal((64, 5))
    y = rng.integers(0, 3, 64)
    model = ft.Sequential([layers.Dense(8, activation="relu"), layers.Dense(8, activation="relu"), layers.Dense(3)],
                          seed=0)
    model.compile(optimizer=ft.optimizers.AdamW(1e-2), loss="sparse_categorical_crossentropy")
    model.layers[1].trainable = False
    model.build(5)
    before = model.get_weights()
    model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    after = model.get_weights()
    for index in (2, 3):
        np.testing.assert_array_equal(after[index], before[index])
    for index in (0, 1, 4, 5):
        assert not np.array_equal(after[index], before[index])


def test_transfer_learning_load_freeze_fine_tune(tmp_path, rng):
    x = rng.standard_normal((80, 6))
    y = rng.integers(0, 2, 80)

    def make():
        return ft.Sequential([layers.Dense(16, activation="relu"), layers.Dense(1)], input_dim=6, seed=9)

    base = make()
    base.compile(optimizer="adam", loss="binary_crossentropy")
    base.fit(x, y, epochs=3, verbose=0)
    path = tmp_path / "base.safetensors"
    base.save_weights(path)

    model = make()
    model.load_weights(path)
    model.layers[0].trainable = False
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(x, 1 - y, epochs=2, verbose=0)
    np.testing.assert_array_equal(model.layers[0].kernel, base.layers[0].kernel)
    assert not np.array_equal(model.layers[1].kernel, base.layers[1].kernel)


# Reproducibility --------------------------------------------------------------------------------

def train_once(model_seed, fit_seed):
    data = np.random.default_rng(0)
    x = data.standard_normal((50, 4))
    y = data.integers(0, 3, 50)
    model = ft.Sequential([layers.Dense(16, activation="relu"), layers.Dropout(0.3), layers.Dense(3)], seed=model_seed)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=4, batch_size=8, validation_split=0.2, verbose=0, seed=fit_seed)
    return model.get_weights(), history.history


def test_same_seeds_give_bit_identical_weights_and_history():
    np.random.seed(1)
    weights_a, history_a = train_once(5, 6)
    np.random.seed(2)  # global NumPy state plays no part
    weights_b, history_b = train_once(5, 6)
    for a, b in zip(weights_a, weights_b):
        np.testing.assert_array_equal(a, b)
    assert history_a == history_b


@pytest.mark.parametrize("shuffle", [True, False])
def test_unaligned_float32_data_trains_as_aligned_data(rng, shuffle):
    """The data entry points copy an unaligned float32 array once (the ops refuse one)."""
    x = rng.standard_normal((30, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5], np.float32)).astype(np.float32)

    def run(x_data, y_data):
        model = ft.Sequential([layers.Dense(4, activation="tanh"), layers.Dense(1)], seed=2)
        model.compile(optimizer="adam", loss="mse")
        history = model.fit(x_data, y_data, epochs=2, batch_size=7, shuffle=shuffle, validation_data=(x_data, y_data),
                            verbose=0, seed=1)
        return history.history, model.predict(x_data), model.evaluate(x_data, y_data)

    expected = run(x, y)
    got = run(unaligned(x), unaligned(y))
    assert got[0] == expected[0]
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[2] == expected[2]


def test_other_seeds_give_other_results():
    weights, history = train_once(5, 6)
    other_model_weights, _ = train_once(7, 6)
    other_fit_weights, other_history = train_once(5, 8)
    assert not np.array_equal(weights[0], other_model_weights[0])
    assert not np.array_equal(weights[0], other_fit_weights[0])
    assert history["loss"] != other_history["loss"]


def test_fit_without_seed_is_reproducible_from_the_model_seed():
    def run():
        model = ft.Sequential([layers.Dense(8, activation="relu"), layers.Dropout(0.5), layers.Dense(1)], seed=3)
        model.compile(optimizer="sgd", loss="mse")
        x = np.linspace(-1, 1, 40).reshape(20, 2)
        first = model.fit(x, x[:, 0], epochs=2, batch_size=4, verbose=0).history["loss"]
        second = model.fit(x, x[:, 0], epochs=2, batch_size=4, verbose=0).history["loss"]
        return first, second, model.get_weights()

    first_a, second_a, weights_a = run()
    first_b, second_b, weights_b = run()
    assert (first_a, second_a) == (first_b, second_b)
    for a, b in zip(weights_a, weights_b):
        np.testing.assert_array_equal(a, b)


# Validation and history -------------------------------------------------------------------------

def make_classifier(seed=0):
    model = ft.Sequential([layers.Dense(8, activation="relu"), layers.Dense(3)], input_dim=4, seed=seed)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_history_keys_with_validation_split(rng):
    x = rng.standard_normal((40, 4))
    y = rng.integers(0, 3, 40)
    model = make_classifier()
    history = model.fit(x, y, epochs=3, batch_size=8, validation_split=0.25, verbose=0)
    assert list(history.history) == ["loss", "accuracy", "val_loss", "val_accuracy", "lr"]
    assert all(len(values) == 3 for values in history.history.values())
    assert history.epoch == [0, 1, 2]
    assert history.params == {"epochs": 3, "steps": 4, "verbose": 0}
    assert model.history is history
    # The validation set is the LAST quarter, taken before shuffling: the last epoch's val_loss
    # is the loss of the final weights on x[30:].
    final = model.evaluate(x[30:], y[30:])
    assert history.history["val_loss"][-1] == pytest.approx(final["loss"], rel=1e-6)
    assert history.history["val_accuracy"][-1] == pytest.approx(final["accuracy"])


def test_validation_data_takes_precedence(rng):
    x = rng.standard_normal((30, 4))
    y = rng.integers(0, 3, 30)
    x_val = rng.standard_normal((7, 4))
    y_val = rng.integers(0, 3, 7)
    model = make_classifier()
    history = model.fit(x, y, epochs=2, validation_data=(x_val, y_val), validation_split=0.5, verbose=0)
    assert history.params["steps"] == 1  # all 30 samples trained: validation_split is ignored
    assert history.history["val_loss"][-1] == pytest.approx(model.evaluate(x_val, y_val)["loss"], rel=1e-6)


def test_epoch_loss_is_the_size_weighted_mean_of_the_batches(rng):
    x = rng.standard_normal((10, 4))
    y = rng.integers(0, 3, 10)
    losses = []

    class Recorder(ft.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            losses.append(logs["loss"])

    model = make_classifier()
    model.compile(optimizer=ft.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=1, batch_size=4, shuffle=False, callbacks=[Recorder()], verbose=0)
    # With lr 0 the weights never move: each batch's loss is the evaluate loss of its rows, and
    # the batch logs hold the running mean over the samples seen (4, 8, then the last 2).
    batch_losses = [model.evaluate(x[a:b], y[a:b])["loss"] for a, b in ((0, 4), (4, 8), (8, 10))]
    expected = [batch_losses[0], (4 * batch_losses[0] + 4 * batch_losses[1]) / 8,
                (4 * batch_losses[0] + 4 * batch_losses[1] + 2 * batch_losses[2]) / 10]
    np.testing.assert_allclose(losses, expected, rtol=1e-6)
    assert history.history["loss"][0] == pytest.approx(model.evaluate(x, y)["loss"], rel=1e-6)


def test_regularization_penalty_is_part_of_the_loss(rng):
    x = rng.standard_normal((12, 4))
    y = rng.integers(0, 3, 12)
    model = ft.Sequential([layers.Dense(3, kernel_regularizer=ft.regularizers.L2(0.5))], input_dim=4, seed=0)
    model.compile(optimizer=ft.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=1, batch_size=12, verbose=0)
    kernel = model.layers[0].kernel.astype(np.float64)
    logits = x @ kernel + model.layers[0].bias
    shifted = logits - logits.max(axis=1, keepdims=True)
    data_loss = -np.mean(shifted[np.arange(12), y] - np.log(np.exp(shifted).sum(axis=1)))
    expected = data_loss + 0.5 * np.square(kernel).sum()
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-5)
    assert model.evaluate(x, y)["loss"] == pytest.approx(expected, rel=1e-5)


def test_lr_in_the_history_follows_a_schedule(rng):
    x = rng.standard_normal((16, 4))
    y = rng.integers(0, 3, 16)
    model = make_classifier()
    scheduler = ft.callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 / (epoch + 1))
    history = model.fit(x, y, epochs=3, callbacks=[scheduler], verbose=0)
    assert history.history["lr"] == pytest.approx([0.1, 0.05, 0.1 / 3])


# Callback protocol ------------------------------------------------------------------------------

class Recorder(ft.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.events = []

    def on_train_begin(self, logs=None):
        self.events.append(("train_begin",))

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(("epoch_begin", epoch))

    def on_train_batch_begin(self, batch, logs=None):
        self.events.append(("batch_begin", batch))

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(("batch_end", batch, sorted(logs)))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch_end", epoch, sorted(logs)))

    def on_train_end(self, logs=None):
        self.events.append(("train_end",))


def test_callback_order_and_the_last_partial_batch(rng):
    x = rng.standard_normal((10, 4))
    y = rng.integers(0, 3, 10)
    recorder = Recorder()
    model = make_classifier()
    model.fit(x, y, epochs=2, batch_size=4, validation_split=0.2, callbacks=[recorder], verbose=0)
    assert recorder.model is model
    batch_keys = ["accuracy", "loss"]
    epoch_keys = ["accuracy", "loss", "lr", "val_accuracy", "val_loss"]
    per_epoch = lambda epoch: ([("epoch_begin", epoch)]
                               + [event for batch in range(2)
                                  for event in (("batch_begin", batch), ("batch_end", batch, batch_keys))]
                               + [("epoch_end", epoch, epoch_keys)])
    # 8 training samples in batches of 4: two batches per epoch.
    assert recorder.events == [("train_begin",)] + per_epoch(0) + per_epoch(1) + [("train_end",)]


def test_partial_last_batch_is_trained_on(rng):
    x = rng.standard_normal((9, 4))
    y = rng.integers(0, 3, 9)
    recorder = Recorder()
    model = make_classifier()
    model.fit(x, y, epochs=1, batch_size=4, callbacks=[recorder], verbose=0)
    assert [event[1] for event in recorder.events if event[0] == "batch_end"] == [0, 1, 2]
    assert model.optimizer.iterations == 3


def test_stop_training_from_a_callback_ends_the_epoch(rng):
    class StopAfterTwoBatches(ft.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

    x = rng.standard_normal((40, 4))
    y = rng.integers(0, 3, 40)
    model = make_classifier()
    history = model.fit(x, y, epochs=5, batch_size=4, callbacks=[StopAfterTwoBatches()], verbose=0)
    assert model.optimizer.iterations == 2
    assert len(history.history["loss"]) == 1


def test_early_stopping_restores_the_best_weights(rng):
    x = rng.standard_normal((60, 4))
    y = rng.integers(0, 3, 60)
    model = make_classifier()
    stopper = ft.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    # A huge learning rate makes the validation loss jump around and worsen.
    model.compile(optimizer=ft.optimizers.SGD(5.0), loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=30, validation_split=0.3, callbacks=[stopper], verbose=0)
    best = int(np.argmin(history.history["val_loss"]))
    assert stopper.best_epoch == best
    assert model.evaluate(x[42:], y[42:])["loss"] == pytest.approx(min(history.history["val_loss"]), rel=1e-5)


def test_model_checkpoint_writes_loadable_weights(tmp_path, rng):
    x = rng.standard_normal((20, 4))
    y = rng.integers(0, 3, 20)
    model = make_classifier()
    path = tmp_path / "epoch-{epoch}.safetensors"
    model.fit(x, y, epochs=2, callbacks=[ft.callbacks.ModelCheckpoint(str(path))], verbose=0)
    restored = make_classifier(seed=1)
    restored.load_weights(tmp_path / "epoch-2.safetensors")
    for a, b in zip(restored.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_verbose_levels(capsys, rng):
    x = rng.standard_normal((8, 4))
    y = rng.integers(0, 3, 8)
    model = make_classifier()
    model.fit(x, y, epochs=2, verbose=0)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    model.fit(x, y, epochs=2, verbose=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("Epoch 2/2") and "loss:" in lines[1]
    model.fit(x, y, epochs=1, verbose=1)
    assert "Epoch 1/1" in capsys.readouterr().err


# Divergence -------------------------------------------------------------------------------------

def diverging_model():
    model = ft.Sequential([layers.Dense(8, activation="relu"), layers.Dense(1)], input_dim=3, seed=0)
    model.compile(optimizer=ft.optimizers.SGD(1e12), loss="mse")
    return model


def test_non_finite_loss_stops_training_with_a_warning(rng):
    x = rng.standard_normal((64, 3))
    y = rng.standard_normal(64) * 100
    model = diverging_model()
    # Two sane epochs first, then a learning rate that makes the loss overflow.
    schedule = ft.callbacks.LearningRateScheduler(lambda epoch, lr: 1e-3 if epoch < 2 else 1e12)
    with pytest.warns(RuntimeWarning) as record:
        history = model.fit(x, y, epochs=5, batch_size=8, callbacks=[schedule], verbose=0)
    messages = [str(item.message) for item in record if "not finite" in str(item.message)]
    assert len(messages) == 1
    match = re.search(r"Epoch (\d+), batch (\d+) of 8", messages[0])
    assert match, messages[0]
    epoch, batch = int(match.group(1)), int(match.group(2))
    assert epoch == 3
    # The epochs completed before the failing one are kept, and the failing update is skipped.
    assert len(history.history["loss"]) == epoch - 1
    assert model.optimizer.iterations == (epoch - 1) * 8 + batch - 1
    assert model.stop_training
    assert all(np.isfinite(weights).all() for weights in model.get_weights())


def test_non_finite_loss_is_printed_when_verbose(capsys, rng):
    x = rng.standard_normal((16, 3))
    y = rng.standard_normal(16) * 100
    with pytest.warns(RuntimeWarning, match="not finite"):
        diverging_model().fit(x, y, epochs=3, batch_size=8, verbose=2)
    assert "the loss is not finite" in capsys.readouterr().out


def test_terminate_on_nan_false_keeps_training(rng):
    x = rng.standard_normal((16, 3))
    y = rng.standard_normal(16) * 100
    model = diverging_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with np.errstate(all="ignore"):
            history = model.fit(x, y, epochs=3, batch_size=8, verbose=0, terminate_on_nan=False)
    assert len(history.history["loss"]) == 3
    assert not math.isfinite(history.history["loss"][-1])


# Memory -----------------------------------------------------------------------------------------

def test_epochs_do_not_copy_the_data_set():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20000, 50), dtype=np.float32)  # 4 MB
    y = rng.integers(0, 4, 20000)
    model = ft.Sequential([layers.Dense(4)], input_dim=50, seed=0)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    y_int = y.astype(np.int64)
    model.fit(x[:64], y_int[:64], epochs=1, batch_size=512, verbose=0)
    tracemalloc.start()
    model.fit(x, y_int, epochs=3, batch_size=512, verbose=0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # Per fit: the int64 labels copy (160 kB), the permutation (160 kB), the batch buffers and
    # workspace (~0.2 MB); a copy of x would add 4 MB.
    assert peak < 1_500_000, peak
