"""The Normalization layer: its output against a float64 reference, adapt, its frozen statistics
in the flat buffer and in model files, the gradient it passes back, and its argument checks."""

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import serialization
from fusedtrain.layers import Normalization


def _reference(x, mean, variance, epsilon=1e-7):
    return (x.astype(np.float64) - mean) / np.maximum(np.sqrt(variance.astype(np.float64)), epsilon)


@pytest.mark.parametrize("rows, features", [(1, 1), (3, 17), (257, 5)])
def test_output_matches_the_float64_reference(rows, features, rng):
    x = (rng.standard_normal((rows, features)) * 30 + 100).astype(np.float32)
    mean = rng.standard_normal(features).astype(np.float32) * 50
    variance = rng.uniform(0.01, 900.0, features).astype(np.float32)
    variance[0] = 0.0  # a constant feature: divided by epsilon, as in Keras
    model = ft.Sequential([Normalization(mean=mean, variance=variance)], seed=0)
    output = model.predict(x)
    # float32 arithmetic: a subtraction and a multiplication by a rounded reciprocal.
    np.testing.assert_allclose(output, _reference(x, mean, variance), rtol=2e-6, atol=1e-6 * np.abs(output).max())


def test_adapt_computes_the_population_statistics(rng):
    x = (rng.standard_normal((41, 6)) * np.arange(1, 7) + np.arange(6) * 10).astype(np.float32)
    layer = Normalization()
    layer.adapt(x)
    model = ft.Sequential([layer], seed=0)
    model.build()
    assert model.input_dim == 6
    np.testing.assert_allclose(layer.mean, x.astype(np.float64).mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(layer.variance, x.astype(np.float64).var(axis=0), rtol=1e-5)
    output = model.predict(x).astype(np.float64)
    np.testing.assert_allclose(output.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(output.std(axis=0), 1.0, rtol=1e-5)
    # adapt on a built layer writes the model's buffer in place.
    layer.adapt(x * 2 + 1)
    np.testing.assert_allclose(model.get_weights()[0], 2 * x.astype(np.float64).mean(axis=0) + 1, rtol=1e-5)


def test_statistics_are_frozen_weights_in_the_flat_buffer(rng):
    x = (rng.standard_normal((64, 3)) * 5 + 20).astype(np.float32)
    y = (x[:, 0] > 20).astype(np.int64)
    layer = Normalization()
    layer.adapt(x)
    model = ft.Sequential([layer, ft.layers.Dense(8, activation="relu"), ft.layers.Dense(2)], seed=0)
    model.compile(optimizer=ft.optimizers.AdamW(1e-2, weight_decay=0.1), loss="sparse_categorical_crossentropy")
    model.build(3)
    before = model.get_weights()
    assert [w.shape for w in before[:2]] == [(3,), (3,)]
    assert np.shares_memory(layer.mean, model.parameters)
    model.fit(x, y, epochs=3, batch_size=16, verbose=0, seed=0)
    after = model.get_weights()
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert not np.array_equal(after[2], before[2])
    assert not layer.trainable
    with pytest.raises(ValueError, match="not trained"):
        layer.trainable = True
    layer.trainable = False


def test_model_files_keep_the_statistics(tmp_path, rng):
    x = (rng.standard_normal((10, 4)) * 3 + 7).astype(np.float32)
    layer = Normalization(epsilon=1e-5)
    layer.adapt(x)
    model = ft.Sequential([layer, ft.layers.Dense(2)], seed=0)
    model.compile(optimizer="adam", loss="mse")
    model.save(tmp_path / "m.safetensors")
    loaded = ft.load(tmp_path / "m.safetensors")
    assert isinstance(loaded.layers[0], Normalization) and loaded.layers[0].epsilon == 1e-5
    np.testing.assert_array_equal(loaded.layers[0].mean, layer.mean)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    # Rebuilt from its configuration alone, the layer is the identity until weights are loaded.
    fresh = serialization.model_from_config(serialization.model_config(model), "test")
    fresh.build()
    np.testing.assert_array_equal(fresh.layers[0].mean, 0.0)
    np.testing.assert_array_equal(fresh.layers[0].variance, 1.0)


def test_gradient_through_a_normalization_inside_the_model(rng):
    """Dense -> Normalization -> Dense: the first kernel's gradient flows through the scaling;
    checked by central differences in float64 on the model's own loss."""
    x = rng.standard_normal((7, 3)).astype(np.float32)
    y = rng.standard_normal((7, 2)).astype(np.float32)
    model = ft.Sequential([ft.layers.Dense(4), Normalization(mean=rng.standard_normal(4),
                                                              variance=rng.uniform(0.5, 4.0, 4)),
                           ft.layers.Dense(2)], input_dim=3, seed=1)
    model.compile(optimizer="sgd", loss="mse")
    _, gradients = model.loss_and_gradients(x, y)
    analytic = model.layers[0].kernel_grad.astype(np.float64).copy()

    weights = [w.astype(np.float64) for w in model.get_weights()]

    def loss(kernel):
        hidden = x @ kernel + weights[1]
        scaled = (hidden - weights[2]) / np.sqrt(weights[3])
        return np.mean((scaled @ weights[4] + weights[5] - y) ** 2)

    numeric = np.zeros_like(analytic)
    step = 1e-6
    for index in np.ndindex(*analytic.shape):
        plus, minus = weights[0].copy(), weights[0].copy()
        plus[index] += step
        minus[index] -= step
        numeric[index] = (loss(plus) - loss(minus)) / (2 * step)
    # The model computes in float32: ~1e-5 relative.
    np.testing.assert_allclose(analytic, numeric, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(model.layers[1].gradients[0], 0.0)


@pytest.mark.parametrize("arguments, error, message", [
    ({"mean": [1.0, 2.0]}, ValueError, "give both or neither"),
    ({"mean": [1.0, 2.0], "variance": [1.0]}, ValueError, "one value per feature like mean"),
    ({"mean": [1.0], "variance": [-1.0]}, ValueError, "must be >= 0"),
    ({"mean": [np.nan], "variance": [1.0]}, ValueError, "mean"),
    ({"mean": [[1.0]], "variance": [[1.0]]}, ValueError, "1-D"),
    ({"mean": [], "variance": []}, ValueError, "non-empty"),
    ({"mean": ["a"], "variance": [1.0]}, TypeError, "mean"),
    ({"epsilon": 0.0}, ValueError, "epsilon"),
])
def test_bad_arguments(arguments, error, message):
    with pytest.raises(error, match=message):
        Normalization(**arguments)


def test_feature_count_mismatches():
    model = ft.Sequential([Normalization(mean=np.zeros(3), variance=np.ones(3))])
    with pytest.raises(ValueError, match="3 features"):
        model.build(4)
    model.build(3)
    with pytest.raises(ValueError, match="built for 3 features, got 2"):
        model.layers[0].adapt(np.ones((5, 2)))
    with pytest.raises(ValueError, match="NaN|nan"):
        model.layers[0].adapt(np.full((5, 3), np.nan))


def test_model_file_metadata_entries(tmp_path):
    """save(metadata=...) adds entries beside fusedtrain's own (the command line records the
    task there) and refuses to replace fusedtrain's."""
    model = ft.Sequential([Normalization(mean=np.zeros(2), variance=np.ones(2)), ft.layers.Dense(1)], seed=0)
    model.build()
    serialization.save(model, tmp_path / "m.safetensors", metadata={"task": '{"task": "regression"}'})
    assert serialization.read(tmp_path / "m.safetensors").metadata["task"] == '{"task": "regression"}'
    with pytest.raises(ValueError, match="fusedtrain's own"):
        serialization.save(model, tmp_path / "n.safetensors", metadata={"architecture": "{}"})
    with pytest.raises(TypeError, match="str keys and values"):
        serialization.save(model, tmp_path / "n.safetensors", metadata={"task": 3})
    assert not (tmp_path / "n.safetensors").exists()


def test_set_weights_refuses_a_negative_variance():
    model = ft.Sequential([ft.layers.Normalization(), ft.layers.Dense(2)], input_dim=3, seed=0)
    weights = model.get_weights()
    before = model.parameters.copy()
    weights[1] = np.array([1.0, -0.5, 2.0], np.float32)
    with pytest.raises(ValueError, match=r"weights\[1\]: normalization\w*\.variance must be >= 0, got -0.5 at index 1"):
        model.set_weights(weights)
    np.testing.assert_array_equal(model.parameters, before)
