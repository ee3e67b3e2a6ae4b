"""fit(sample_weight=, class_weight=) with Keras semantics: a sample's loss times its weight, the
batch loss the weighted sum over the batch's size, metrics unweighted. Per-sample losses against
float64 NumPy references, weighted gradients by finite differences, the weights through
validation, class labels, "balanced", train_on_batch and evaluate, and every error."""

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import layers, losses, optimizers

ROWS, FEATURES = 37, 5


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((ROWS, FEATURES)).astype(np.float32)
    classes = rng.integers(0, 3, ROWS)
    weights = rng.uniform(0.0, 2.5, ROWS)
    return rng, x, classes, weights


def targets_for(loss, rng, classes):
    if loss == "sparse_categorical_crossentropy":
        return classes, 3
    if loss == "categorical_crossentropy":
        soft = rng.uniform(0.0, 1.0, (ROWS, 3))
        return soft / soft.sum(axis=1, keepdims=True), 3
    if loss == "binary_crossentropy":
        return rng.uniform(0.0, 1.0, (ROWS, 2)), 2
    return rng.standard_normal((ROWS, 2)), 2


def reference_per_sample(loss, z, t):
    """Each sample's loss in float64 NumPy."""
    z = z.astype(np.float64)
    if loss == "mse":
        return ((z - t) ** 2).mean(axis=1)
    if loss == "binary_crossentropy":
        p = 1.0 / (1.0 + np.exp(-z))
        return -(t * np.log(p) + (1 - t) * np.log1p(-p)).mean(axis=1)
    log_softmax = z - np.log(np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1, keepdims=True)) - z.max(
        axis=1, keepdims=True)
    if loss == "sparse_categorical_crossentropy":
        return -log_softmax[np.arange(z.shape[0]), t]
    return -(t * log_softmax).sum(axis=1)


def model_for(loss, units, seed=1):
    model = ft.Sequential([layers.Dense(6, activation="tanh"), layers.Dense(units)], input_dim=FEATURES, seed=seed)
    model.compile(optimizers.SGD(0.1), loss, metrics=["mae"] if units == 2 and loss == "mse" else None)
    return model


LOSSES = ["mse", "binary_crossentropy", "sparse_categorical_crossentropy", "categorical_crossentropy"]


@pytest.mark.parametrize("name", LOSSES)
def test_per_sample_losses_match_numpy_and_average_to_the_loss(name):
    rng, _, classes, _ = data()
    t, units = targets_for(name, rng, classes)
    loss = losses.get(name)
    z = (3.0 * rng.standard_normal((ROWS, units))).astype(np.float32)
    converted = loss.targets(t, ROWS, units)
    per_sample = loss.per_sample(z, converted)
    assert per_sample.shape == (ROWS,) and per_sample.dtype == np.float64
    np.testing.assert_allclose(per_sample, reference_per_sample(name, z, np.asarray(t)), rtol=1e-6, atol=1e-9)
    mean = loss(z, converted, np.empty_like(z))
    np.testing.assert_allclose(mean, per_sample.mean(), rtol=1e-5)


@pytest.mark.parametrize("name", LOSSES)
def test_weighted_loss_is_the_weighted_sum_over_the_batch_size(name):
    rng, _, classes, weights = data()
    t, units = targets_for(name, rng, classes)
    loss = losses.get(name)
    z = rng.standard_normal((ROWS, units)).astype(np.float32)
    converted = loss.targets(t, ROWS, units)
    w = weights.astype(np.float32)
    plain, weighted = np.empty_like(z), np.empty_like(z)
    loss(z, converted, plain)
    value = loss.weighted(z, converted, w, weighted)
    expected = (reference_per_sample(name, z, np.asarray(t)) * w).sum() / ROWS
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    np.testing.assert_allclose(weighted, plain * w[:, None], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", LOSSES)
def test_weighted_gradients_match_finite_differences(name):
    rng, x, classes, weights = data(2)
    y, units = targets_for(name, rng, classes)
    model = model_for(name, units)
    # float64 finite differences of the weighted loss, through the same model's float32 weights.
    _, gradients = model.loss_and_gradients(x, y, sample_weight=weights)
    gradients = gradients.copy()
    parameters = model.parameters
    for index in rng.choice(parameters.size, 8, replace=False):
        original = parameters[index]
        step = 1e-2
        parameters[index] = original + step
        up = model.evaluate(x, y, sample_weight=weights)["loss"]
        parameters[index] = original - step
        down = model.evaluate(x, y, sample_weight=weights)["loss"]
        parameters[index] = original
        np.testing.assert_allclose(gradients[index], (up - down) / (2 * step), rtol=2e-2, atol=2e-4)


def test_unit_weights_train_exactly_as_no_weights():
    rng, x, classes, _ = data()
    runs = []
    for weights in (None, np.ones(ROWS)):
        model = model_for("sparse_categorical_crossentropy", 3)
        history = model.fit(x, classes, epochs=3, batch_size=8, verbose=0, seed=4, sample_weight=weights,
                            validation_split=0.25)
        runs.append((history.history, model.get_weights()))
    for key in runs[0][0]:
        np.testing.assert_allclose(runs[1][0][key], runs[0][0][key], rtol=1e-6)
    for expected, got in zip(runs[0][1], runs[1][1]):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_scaling_every_weight_scales_the_sgd_step():
    rng, x, classes, weights = data()
    results = []
    for scale, learning_rate in ((1.0, 0.2), (4.0, 0.05)):
        model = ft.Sequential([layers.Dense(3)], input_dim=FEATURES, seed=1)
        model.compile(optimizers.SGD(learning_rate), "sparse_categorical_crossentropy")
        model.fit(x, classes, epochs=1, batch_size=ROWS, shuffle=False, verbose=0, sample_weight=scale * weights)
        results.append(model.get_weights())
    for first, second in zip(*results):
        np.testing.assert_allclose(second, first, rtol=1e-5, atol=1e-7)


def test_a_zero_weight_sample_has_no_influence():
    rng, x, classes, weights = data()
    weights[5] = 0.0
    changed = classes.copy()
    changed[5] = (changed[5] + 1) % 3
    results = []
    for y in (classes, changed):
        model = model_for("sparse_categorical_crossentropy", 3)
        model.fit(x, y, epochs=2, batch_size=10, verbose=0, seed=0, sample_weight=weights)
        results.append(model.get_weights())
    for first, second in zip(*results):
        np.testing.assert_array_equal(first, second)


def test_class_weight_equals_the_matching_sample_weight():
    rng, x, classes, weights = data()
    table = {0: 0.5, 1: 2.0, 2: 1.25}
    results = []
    for kwargs in ({"class_weight": table, "sample_weight": weights},
                   {"sample_weight": weights * np.array([table[c] for c in classes])}):
        model = model_for("sparse_categorical_crossentropy", 3)
        history = model.fit(x, classes, epochs=2, batch_size=8, verbose=0, seed=1, **kwargs)
        results.append((history.history["loss"], model.get_weights()))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)
    for first, second in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(first, second, rtol=1e-6, atol=1e-7)


def test_class_weight_keys_are_the_labels_of_a_labelled_model_and_balanced_counts_them():
    rng, x, classes, _ = data()
    names = np.array(["cat", "dog", "emu"])[classes]
    results = []
    counts = np.bincount(classes, minlength=3)
    balanced = ROWS / (3 * counts)
    for kwargs in ({"class_weight": "balanced"}, {"class_weight": dict(zip(["cat", "dog", "emu"], balanced))},
                   {"sample_weight": balanced[classes]}):
        model = model_for("sparse_categorical_crossentropy", 3)
        model.fit(x, names, epochs=2, batch_size=8, verbose=0, seed=1, **kwargs)
        results.append(model.get_weights())
    for other in results[1:]:
        for first, second in zip(results[0], other):
            np.testing.assert_allclose(first, second, rtol=1e-5, atol=1e-7)
    # Classes left out of the dict weigh 1.
    partial = model_for("sparse_categorical_crossentropy", 3)
    partial.fit(x, names, epochs=1, batch_size=ROWS, shuffle=False, verbose=0, class_weight={"emu": 3.0})
    full = model_for("sparse_categorical_crossentropy", 3)
    full.fit(x, names, epochs=1, batch_size=ROWS, shuffle=False, verbose=0,
             class_weight={"cat": 1.0, "dog": 1, "emu": 3.0})
    for first, second in zip(partial.get_weights(), full.get_weights()):
        np.testing.assert_array_equal(first, second)


def test_binary_class_weight_uses_the_thresholded_target():
    rng, x, classes, _ = data()
    y = (classes > 0).astype(np.float32)
    model = ft.Sequential([layers.Dense(1)], input_dim=FEATURES, seed=2)
    model.compile(optimizers.SGD(0.1), "binary_crossentropy")
    loss, _ = model.loss_and_gradients(x, y, sample_weight=np.where(y > 0, 3.0, 0.5))
    model.fit(x, y, epochs=1, batch_size=ROWS, shuffle=False, verbose=0, class_weight={0: 0.5, 1: 3.0})
    assert model.history.history["loss"][0] == pytest.approx(loss, rel=1e-6)


def test_validation_weights_come_from_the_triple_or_the_split():
    rng, x, classes, weights = data()
    model = model_for("sparse_categorical_crossentropy", 3)
    model.compile(optimizers.SGD(0.1), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x[:30], classes[:30], epochs=1, verbose=0, class_weight={0: 5.0},
                        validation_data=(x[30:], classes[30:], weights[30:]))
    expected = model.evaluate(x[30:], classes[30:], sample_weight=weights[30:])
    assert history.history["val_loss"][0] == pytest.approx(expected["loss"], rel=1e-6)
    assert history.history["val_accuracy"][0] == pytest.approx(model.evaluate(x[30:], classes[30:])["accuracy"])
    assert expected["loss"] != pytest.approx(model.evaluate(x[30:], classes[30:])["loss"], rel=1e-3)

    model = model_for("sparse_categorical_crossentropy", 3)
    history = model.fit(x, classes, epochs=1, verbose=0, sample_weight=weights, class_weight={1: 4.0},
                        validation_split=0.2)
    split = int(ROWS * 0.8)
    # The split's weights are the sample weights alone: class_weight weighs the training data.
    expected = model.evaluate(x[split:], classes[split:], sample_weight=weights[split:])
    assert history.history["val_loss"][0] == pytest.approx(expected["loss"], rel=1e-6)


def test_train_on_batch_takes_the_weights():
    rng, x, classes, weights = data()
    first, second = model_for("sparse_categorical_crossentropy", 3), model_for("sparse_categorical_crossentropy", 3)
    table = {0: 2.0, 1: 0.5, 2: 1.0}
    loss = first.train_on_batch(x, classes, sample_weight=weights, class_weight=table)
    expected = second.loss_and_gradients(x, classes, sample_weight=weights * np.array([2.0, 0.5, 1.0])[classes])[0]
    assert loss == pytest.approx(expected, rel=1e-6)


def test_weights_from_pandas():
    pandas = pytest.importorskip("pandas")
    rng, x, classes, weights = data()
    model = model_for("sparse_categorical_crossentropy", 3)
    got = model.evaluate(x, classes, sample_weight=pandas.Series(weights))["loss"]
    assert got == pytest.approx(model.evaluate(x, classes, sample_weight=weights)["loss"])


@pytest.mark.parametrize("kwargs, error, message", [
    ({"sample_weight": np.ones(ROWS - 1)}, ValueError, r"^sample_weight: expected one weight per sample, shape \(37,\)"),
    ({"sample_weight": np.ones((ROWS, 2))}, ValueError, r"^sample_weight: expected one weight per sample"),
    ({"sample_weight": np.r_[np.ones(ROWS - 1), -1.0]}, ValueError,
     r"^sample_weight: expected finite non-negative weights, got -1 at index 36"),
    ({"sample_weight": np.r_[np.nan, np.ones(ROWS - 1)]}, ValueError, r"^sample_weight: .* got nan at index 0"),
    ({"sample_weight": np.array(["a"] * ROWS)}, TypeError, r"^sample_weight: expected numeric weights"),
    ({"class_weight": [1.0, 2.0, 3.0]}, TypeError, r"^class_weight: expected a dict \{class: weight\} or 'balanced'"),
    ({"class_weight": "even"}, TypeError, r"^class_weight: expected a dict"),
    ({"class_weight": {3: 1.0}}, ValueError, r"^class_weight: 3 is not one of the model's classes \(the class indices 0..2\)"),
    ({"class_weight": {0: -1.0}}, ValueError, r"^class_weight\[0\]: expected a value in \[0"),
    ({"validation_data": (np.ones((4, FEATURES)), np.zeros(4), np.ones(3))}, ValueError,
     r"^validation_data\[2\]: expected one weight per sample, shape \(4,\)"),
    ({"validation_data": (1, 2, 3, 4)}, ValueError, r"^validation_data: expected a tuple \(x_val, y_val\) or"),
])
def test_bad_weights_are_named(kwargs, error, message):
    rng, x, classes, _ = data()
    model = model_for("sparse_categorical_crossentropy", 3)
    before = model.get_weights()
    with pytest.raises(error, match=message):
        model.fit(x, classes, epochs=1, verbose=0, **kwargs)
    for first, second in zip(before, model.get_weights()):
        np.testing.assert_array_equal(first, second)


def test_class_weight_needs_classes():
    rng, x, _, _ = data()
    model = model_for("mse", 2)
    with pytest.raises(ValueError, match=r"^class_weight: needs one class per sample .* compiled with mse; use sample_weight"):
        model.fit(x, rng.standard_normal((ROWS, 2)), verbose=0, class_weight={0: 1.0})
    labelled = model_for("sparse_categorical_crossentropy", 3)
    labelled.fit(x, np.array(["a", "b", "c"])[np.arange(ROWS) % 3], verbose=0)
    with pytest.raises(ValueError, match=r"^class_weight: 'd' is not one of the model's classes \('a', 'b', 'c'\)"):
        labelled.fit(x, np.array(["a", "b", "c"])[np.arange(ROWS) % 3], verbose=0, class_weight={"d": 2.0})
