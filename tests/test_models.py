"""The Sequential model's API: structure and flat buffers, compile, the final-activation rule,
predict/evaluate against a NumPy float64 forward pass, weights in and out (get/set, safetensors
files), summary, devices, and every bad input fit rejects before training."""

import os

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import layers


# Tiny models: one kernel thread (see conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


def numpy_forward(model, x, final="declared"):
    """float64 forward pass of a model of Dense layers, from get_weights; ``final`` (None or an
    activation name) replaces the last layer's activation."""
    model.build()
    weights = model.get_weights()
    h = np.asarray(x, dtype=np.float64)
    index = 0
    for position, layer in enumerate(model.layers):
        h = h @ weights[index] + weights[index + 1]
        index += 2
        last = position == len(model.layers) - 1
        activation = final if last and final != "declared" else layer.activation
        if activation == "relu":
            h = np.maximum(h, 0)
        elif activation == "sigmoid":
            h = 1 / (1 + np.exp(-h))
        elif activation == "softmax":
            h = np.exp(h - h.max(axis=1, keepdims=True))
            h /= h.sum(axis=1, keepdims=True)
    return h


def classifier(units=3, final=None, seed=0, input_dim=4):
    return ft.Sequential([layers.Dense(6, activation="relu"), layers.Dense(units, activation=final)],
                         input_dim=input_dim, seed=seed)


# Structure --------------------------------------------------------------------------------------

class TestStructure:
    def test_flat_buffers_and_layout(self):
        model = ft.Sequential([layers.Dense(5), layers.Dropout(0.2), layers.Dense(3, use_bias=False)], input_dim=7)
        model.build()
        assert model.parameters.dtype == np.float32 and model.parameters.ndim == 1
        assert model.parameters.size == model.count_params() == 7 * 5 + 5 + 5 * 3
        assert model.gradients.shape == model.parameters.shape
        assert [w.shape for w in model.get_weights()] == [(7, 5), (5,), (5, 3)]
        # The flat buffer holds each layer's kernel then bias, in layer order.
        np.testing.assert_array_equal(model.parameters, np.concatenate([w.ravel() for w in model.get_weights()]))

    def test_automatic_and_duplicate_names(self):
        model = ft.Sequential([layers.Dense(2), layers.Dense(2), layers.ReLU(), layers.Dense(2, name="out")])
        assert [layer.name for layer in model.layers] == ["dense", "dense_1", "relu", "out"]
        with pytest.raises(ValueError, match="already has a layer named 'out'"):
            model.add(layers.Dense(1, name="out"))

    def test_a_layer_belongs_to_one_model(self):
        layer = layers.Dense(2)
        ft.Sequential([layer])
        with pytest.raises(ValueError, match="already belongs to a model"):
            ft.Sequential([layer])

    def test_no_adding_after_build(self):
        model = ft.Sequential([layers.Dense(2)], input_dim=3)
        model.build()
        with pytest.raises(ValueError, match="already built"):
            model.add(layers.Dense(2))

    def test_input_dim_from_the_first_layer_and_conflicts(self):
        assert ft.Sequential([layers.Dense(2, input_dim=5)]).input_dim == 5
        with pytest.raises(ValueError, match="input_dim"):
            ft.Sequential([layers.Dense(2, input_dim=5)], input_dim=4)
        model = ft.Sequential([layers.Dense(2)])
        with pytest.raises(ValueError, match="input_dim: unknown"):
            model.build()
        model.build(3)
        with pytest.raises(ValueError, match="built for 3 features"):
            model.build(4)

    def test_input_dim_is_inferred_from_the_data(self, rng):
        model = classifier(input_dim=None)
        assert model.predict(rng.standard_normal((2, 9))).shape == (2, 3)
        assert model.input_dim == 9 and model.layers[0].kernel.shape == (9, 6)

    def test_same_seed_same_initial_weights(self):
        first, second, third = classifier(seed=1), classifier(seed=1), classifier(seed=2)
        for model in (first, second, third):
            model.build()
        np.testing.assert_array_equal(first.parameters, second.parameters)
        assert not np.array_equal(first.parameters, third.parameters)

    def test_bad_arguments(self):
        with pytest.raises(TypeError, match="layers: expected a list"):
            ft.Sequential(layers.Dense(2))
        with pytest.raises(TypeError, match="layer: expected a fusedtrain.layers.Layer"):
            ft.Sequential(["dense"])
        with pytest.raises(ValueError, match="seed"):
            ft.Sequential(seed=-1)
        with pytest.raises(ValueError, match="layers: the model has no layers"):
            ft.Sequential(input_dim=3).build()
        with pytest.raises(RuntimeError, match="not built"):
            classifier(input_dim=None).get_weights()


class TestDevice:
    def test_cpu_trains_on_the_cpu(self):
        assert ft.Sequential(device="cpu").device == "cpu"

    @pytest.mark.skipif(ft.info()["gpu_found"] and ft.info()["cupy"], reason="a usable GPU: auto picks it")
    def test_auto_without_a_usable_gpu_trains_on_the_cpu(self):
        model = ft.Sequential(device="auto")
        assert model.device == "cpu" and model.backend.reason

    @pytest.mark.skipif(ft.info()["gpu_found"] and ft.info()["cupy"], reason="a usable GPU: cuda works")
    @pytest.mark.parametrize("device", ["cuda", "cuda:0"])
    def test_cuda_without_a_usable_gpu_says_what_is_missing(self, device):
        with pytest.raises(RuntimeError, match=rf"^device='{device}': cannot train on the GPU: "):
            ft.Sequential(device=device)

    @pytest.mark.parametrize("device", ["tpu", "cuda:", "cuda:-1", "cuda:x", "cpu:0", "auto:1", None])
    def test_unknown_device(self, device):
        with pytest.raises(ValueError, match="device: expected 'auto', 'cpu', 'cuda' or 'cuda:N'"):
            ft.Sequential(device=device)


# Compile and the final activation ----------------------------------------------------------------

class TestCompile:
    @pytest.mark.parametrize("kwargs, error, message", [
        ({"loss": "hinge"}, ValueError, "loss: expected a Loss or one of"),
        ({"loss": None}, ValueError, "loss: expected"),
        ({"loss": "mse", "optimizer": "adagrad"}, ValueError, "optimizer: expected"),
        ({"loss": "mse", "metrics": ["auc"]}, ValueError, "metrics: expected Metric objects"),
        ({"loss": "mse", "metrics": "mae"}, TypeError, "metrics: expected a list"),
        ({"loss": "mse", "metrics": ["accuracy"]}, ValueError, "accuracy needs a classification loss"),
        ({"loss": "sparse_categorical_crossentropy", "metrics": ["mae"]}, ValueError, "takes class indices"),
        ({"loss": "mse", "metrics": ["mae", "mean_absolute_error"]}, ValueError, "distinct name"),
    ])
    def test_bad_arguments(self, kwargs, error, message):
        with pytest.raises(error, match=message):
            classifier().compile(**kwargs)

    def test_names_and_objects(self):
        model = classifier()
        model.compile(optimizer=ft.optimizers.SGD(0.1), loss=ft.losses.SparseCategoricalCrossentropy(),
                      metrics=[ft.metrics.Accuracy()])
        assert isinstance(model.optimizer, ft.optimizers.SGD) and model.metrics[0].name == "accuracy"
        model.compile(optimizer="adam", loss="mse", metrics=["mae", "mse"])
        assert [metric.name for metric in model.metrics] == ["mae", "mse"]

    def test_fit_needs_a_loss(self, rng):
        with pytest.raises(RuntimeError, match="not compiled"):
            classifier().fit(rng.standard_normal((4, 4)), np.zeros(4, np.int64))
        with pytest.raises(RuntimeError, match="not compiled"):
            classifier().evaluate(rng.standard_normal((4, 4)), np.zeros(4, np.int64))

    def test_fit_accepts_the_compile_arguments(self, rng):
        model = classifier()
        history = model.fit(rng.standard_normal((8, 4)), rng.integers(0, 3, 8), optimizer="sgd",
                            loss="sparse_categorical_crossentropy", metrics=["accuracy"], verbose=0)
        assert isinstance(model.optimizer, ft.optimizers.SGD) and "accuracy" in history.history

    def test_optimizer_state_belongs_to_one_model(self, rng):
        optimizer = ft.optimizers.Adam()
        first = classifier()
        first.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
        first.fit(rng.standard_normal((4, 4)), np.zeros(4, np.int64), verbose=0)
        other = classifier(units=5)
        other.build()
        with pytest.raises(ValueError, match="give each model its own optimizer"):
            other.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")


class TestFinalActivation:
    def test_softmax_layer_is_folded_into_sparse_categorical_crossentropy(self, rng):
        model = classifier(final="softmax")
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        x = rng.standard_normal((5, 4))
        y = rng.integers(0, 3, 5)
        probabilities = model.predict(x)
        # Softmax is applied once, not twice.
        np.testing.assert_allclose(probabilities, numpy_forward(model, x, final="softmax"), rtol=1e-5, atol=1e-7)
        logits = numpy_forward(model, x, final=None)
        shifted = logits - logits.max(axis=1, keepdims=True)
        expected = -np.mean(shifted[np.arange(5), y] - np.log(np.exp(shifted).sum(axis=1)))
        assert model.evaluate(x, y)["loss"] == pytest.approx(expected, rel=1e-5)

    def test_final_softmax_activation_layer_is_folded_too(self, rng):
        model = ft.Sequential([layers.Dense(3), layers.Softmax()], input_dim=2, seed=0)
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        x = rng.standard_normal((4, 2))
        weights = model.get_weights()
        logits = x @ weights[0] + weights[1]
        expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        np.testing.assert_allclose(model.predict(x), expected, rtol=1e-5, atol=1e-7)

    def test_sigmoid_is_folded_into_binary_crossentropy(self, rng):
        model = classifier(units=1, final="sigmoid")
        model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"])
        x = rng.standard_normal((6, 4))
        y = np.array([0, 1, 1, 0, 1, 0])
        np.testing.assert_allclose(model.predict(x), numpy_forward(model, x, final="sigmoid"), rtol=1e-5, atol=1e-7)
        logits = numpy_forward(model, x, final=None)[:, 0]
        expected = np.mean(np.maximum(logits, 0) - logits * y + np.log1p(np.exp(-np.abs(logits))))
        result = model.evaluate(x, y)
        assert result["loss"] == pytest.approx(expected, rel=1e-5)
        assert result["accuracy"] == pytest.approx(np.mean((logits > 0) == (y == 1)))

    def test_mse_keeps_the_final_activation(self, rng):
        model = classifier(final="sigmoid")
        model.compile(optimizer="sgd", loss="mse")
        x = rng.standard_normal((3, 4))
        np.testing.assert_allclose(model.predict(x), numpy_forward(model, x), rtol=1e-5, atol=1e-7)

    def test_an_uncompiled_model_predicts_its_declared_output(self, rng):
        model = classifier(final="softmax")
        x = rng.standard_normal((3, 4))
        np.testing.assert_allclose(model.predict(x), numpy_forward(model, x), rtol=1e-5, atol=1e-7)

    @pytest.mark.parametrize("units, final, loss, message", [
        (3, "softmax", "binary_crossentropy", "binary_crossentropy applies a sigmoid.*applies softmax"),
        (3, "sigmoid", "sparse_categorical_crossentropy", "applies a softmax.*applies sigmoid"),
        (1, None, "sparse_categorical_crossentropy", "needs one output per class"),
    ])
    def test_mismatches_are_rejected(self, units, final, loss, message):
        with pytest.raises(ValueError, match=message):
            classifier(units=units, final=final).compile(optimizer="sgd", loss=loss)


# Inference --------------------------------------------------------------------------------------

class TestInference:
    @pytest.mark.parametrize("batch_size", [None, 1, 7])
    def test_predict_and_evaluate_match_numpy(self, rng, batch_size):
        model = classifier()
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        x = rng.standard_normal((17, 4))
        y = rng.integers(0, 3, 17)
        probabilities = numpy_forward(model, x, final="softmax")
        np.testing.assert_allclose(model.predict(x, batch_size=batch_size), probabilities, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(model.predict_proba(x, batch_size=batch_size), probabilities, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(model.predict_classes(x, batch_size=batch_size), probabilities.argmax(axis=1))
        result = model.evaluate(x, y, batch_size=batch_size)
        assert result["loss"] == pytest.approx(-np.mean(np.log(probabilities[np.arange(17), y])), rel=1e-5)
        assert result["accuracy"] == pytest.approx(np.mean(probabilities.argmax(axis=1) == y))

    def test_binary_classes_and_multi_label(self, rng):
        model = classifier(units=1)
        model.compile(optimizer="sgd", loss="binary_crossentropy")
        x = rng.standard_normal((9, 4))
        classes = model.predict_classes(x)
        assert classes.shape == (9,) and classes.dtype == np.int64
        np.testing.assert_array_equal(classes, (numpy_forward(model, x)[:, 0] > 0).astype(np.int64))
        multi = classifier(units=3)
        multi.compile(optimizer="sgd", loss="binary_crossentropy")
        assert multi.predict_classes(x).shape == (9, 3)

    def test_regression_metrics(self, rng):
        model = classifier(units=2)
        model.compile(optimizer="sgd", loss="mse", metrics=["mae", "mse"])
        x = rng.standard_normal((11, 4))
        y = rng.standard_normal((11, 2))
        error = numpy_forward(model, x) - y
        result = model.evaluate(x, y, batch_size=4)
        assert result["loss"] == pytest.approx(np.mean(error ** 2), rel=1e-5)
        assert result["mse"] == pytest.approx(np.mean(error ** 2), rel=1e-5)
        assert result["mae"] == pytest.approx(np.mean(np.abs(error)), rel=1e-5)

    def test_classifier_helpers_need_a_classification_loss(self, rng):
        model = classifier()
        model.compile(optimizer="sgd", loss="mse")
        with pytest.raises(ValueError, match="predict_proba: needs a model compiled with a classification loss"):
            model.predict_proba(rng.standard_normal((2, 4)))
        with pytest.raises(ValueError, match="predict_classes"):
            model.predict_classes(rng.standard_normal((2, 4)))

    def test_float64_input_gives_the_float32_result(self, rng):
        model = classifier()
        x = rng.standard_normal((5, 4))
        np.testing.assert_array_equal(model.predict(x), model.predict(x.astype(np.float32)))

    def test_dropout_is_inactive_in_predict(self, rng):
        model = ft.Sequential([layers.Dense(5), layers.Dropout(0.9), layers.Dense(2)], input_dim=3, seed=0)
        x = rng.standard_normal((4, 3))
        np.testing.assert_array_equal(model.predict(x), model.predict(x))
        weights = model.get_weights()
        expected = (x @ weights[0] + weights[1]) @ weights[2] + weights[3]
        np.testing.assert_allclose(model.predict(x), expected, rtol=1e-5, atol=1e-6)


# Weights ----------------------------------------------------------------------------------------

class TestWeights:
    def test_get_weights_returns_copies(self):
        model = classifier()
        model.build()
        weights = model.get_weights()
        weights[0][...] = 5.0
        assert not np.any(model.layers[0].kernel == 5.0)

    def test_set_weights_round_trip(self, rng):
        model = classifier()
        model.build()
        new = [rng.standard_normal(w.shape) for w in model.get_weights()]
        model.set_weights(new)
        for actual, expected in zip(model.get_weights(), new):
            np.testing.assert_array_equal(actual, expected.astype(np.float32))

    def test_set_weights_builds_an_unbuilt_model(self, rng):
        source = classifier(input_dim=5)
        source.build()
        model = ft.Sequential([layers.Dense(6, activation="relu"), layers.Dense(3)])
        model.set_weights(source.get_weights())
        assert model.input_dim == 5
        np.testing.assert_array_equal(model.parameters, source.parameters)

    def test_wrong_shape_names_the_index_and_shapes(self):
        model = classifier()
        model.build()
        weights = model.get_weights()
        before = model.parameters.copy()
        weights[0] = np.zeros((4, 6))
        weights[2] = np.zeros((3, 6))
        with pytest.raises(ValueError, match=r"weights\[2\]: expected shape \(6, 3\) for dense_1.kernel, got \(3, 6\)"):
            model.set_weights(weights)
        np.testing.assert_array_equal(model.parameters, before)

    def test_wrong_count_and_types(self):
        model = classifier()
        model.build()
        with pytest.raises(ValueError, match=r"weights: expected 4 arrays \(dense.kernel \(4, 6\)"):
            model.set_weights(model.get_weights()[:3])
        with pytest.raises(TypeError, match="weights: expected a list"):
            model.set_weights(model.parameters)
        weights = model.get_weights()
        weights[1] = np.array(["a"] * 6)
        with pytest.raises(TypeError, match=r"weights\[1\]: expected numeric values"):
            model.set_weights(weights)
        weights[1] = np.full(6, np.nan)
        with pytest.raises(ValueError, match=r"weights\[1\]: contains nan"):
            model.set_weights(weights)


class TestWeightFiles:
    def test_round_trip_and_keys(self, tmp_path, rng):
        from safetensors.numpy import load_file

        model = ft.Sequential([layers.Dense(6, activation="relu"), layers.Dropout(0.1), layers.Dense(3)],
                              input_dim=4, seed=0)
        model.build()
        path = tmp_path / "model.safetensors"
        model.save_weights(path)
        tensors = load_file(str(path))
        assert sorted(tensors) == ["layers.0.bias", "layers.0.kernel", "layers.2.bias", "layers.2.kernel"]
        np.testing.assert_array_equal(tensors["layers.2.kernel"], model.layers[2].kernel)
        assert os.listdir(tmp_path) == ["model.safetensors"]  # no temporary file left behind

        restored = ft.Sequential([layers.Dense(6, activation="relu"), layers.Dropout(0.1), layers.Dense(3)],
                                 input_dim=4, seed=1)
        restored.load_weights(str(path))
        np.testing.assert_array_equal(restored.parameters, model.parameters)

    def test_load_builds_an_unbuilt_model(self, tmp_path):
        model = classifier(input_dim=7)
        model.build()
        model.save_weights(tmp_path / "w.safetensors")
        fresh = ft.Sequential([layers.Dense(6, activation="relu"), layers.Dense(3)])
        fresh.load_weights(tmp_path / "w.safetensors")
        assert fresh.input_dim == 7
        np.testing.assert_array_equal(fresh.parameters, model.parameters)

    def test_save_replaces_an_existing_file(self, tmp_path):
        path = tmp_path / "w.safetensors"
        path.write_bytes(b"old contents")
        model = classifier()
        model.build()
        model.save_weights(path)
        fresh = classifier(seed=3)
        fresh.load_weights(path)
        np.testing.assert_array_equal(fresh.parameters, model.parameters)

    def saved(self, tmp_path):
        model = classifier()
        model.build()
        path = tmp_path / "w.safetensors"
        model.save_weights(path)
        target = classifier(seed=5)
        target.build()
        return path, target, target.parameters.copy()

    def test_truncated_file_leaves_the_model_unchanged(self, tmp_path):
        path, target, before = self.saved(tmp_path)
        path.write_bytes(path.read_bytes()[:-10])
        with pytest.raises(ValueError, match="not a readable safetensors weight file"):
            target.load_weights(path)
        np.testing.assert_array_equal(target.parameters, before)

    def test_garbage_file(self, tmp_path):
        path = tmp_path / "w.safetensors"
        path.write_bytes(b"\x00" * 5)
        target = classifier()
        with pytest.raises(ValueError, match="not a readable safetensors"):
            target.load_weights(path)

    def test_missing_file(self, tmp_path):
        with pytest.raises(FileNotFoundError):
            classifier().load_weights(tmp_path / "absent.safetensors")

    @pytest.mark.parametrize("change, message", [
        (lambda t: t.pop("layers.1.bias"), r"missing \['layers.1.bias'\]"),
        (lambda t: t.update({"layers.9.kernel": np.zeros((1, 1), np.float32)}), r"unexpected \['layers.9.kernel'\]"),
        (lambda t: t.update({"layers.1.kernel": np.zeros((6, 4), np.float32)}), r"layers.1.kernel has shape \(6, 4\), expected \(6, 3\)"),
        (lambda t: t.update({"layers.0.bias": np.zeros(6, np.float64)}), "layers.0.bias has dtype float64, expected float32"),
    ])
    def test_foreign_files_are_rejected_and_nothing_is_loaded(self, tmp_path, change, message):
        from safetensors.numpy import load_file, save_file

        path, target, before = self.saved(tmp_path)
        tensors = load_file(str(path))
        change(tensors)
        save_file(tensors, str(path))
        with pytest.raises(ValueError, match=message):
            target.load_weights(path)
        np.testing.assert_array_equal(target.parameters, before)

    def test_saving_needs_a_built_model(self, tmp_path):
        with pytest.raises(RuntimeError, match="save_weights: the model is not built"):
            classifier(input_dim=None).save_weights(tmp_path / "w.safetensors")


def test_summary(capsys):
    model = ft.Sequential([layers.Dense(128, activation="relu"), layers.Dropout(0.1), layers.Dense(10)], input_dim=64)
    model.layers[2].trainable = False
    model.summary()
    text = capsys.readouterr().out
    for expected in ("dense (Dense)", "(None, 128)", "8,320", "dropout (Dropout)", "dense_1 (Dense)", "1,290",
                     "Total params: 9,610", "Trainable params: 8,320", "Non-trainable params: 1,290"):
        assert expected in text
    lines = []
    ft.Sequential([layers.Dense(4), layers.ReLU()]).summary(print_fn=lines.append)
    assert any("(None, 4)" in line for line in lines) and any("unknown" in line for line in lines)


# Bad input --------------------------------------------------------------------------------------

class TestBadInput:
    def compiled(self, loss="sparse_categorical_crossentropy", units=3):
        model = classifier(units=units)
        model.compile(optimizer="sgd", loss=loss)
        model.build()
        return model

    def assert_rejected(self, model, x, y, error, message, **kwargs):
        before = model.parameters.copy()
        kwargs.setdefault("verbose", 0)
        with pytest.raises(error, match=message):
            model.fit(x, y, **kwargs)
        np.testing.assert_array_equal(model.parameters, before)
        assert model.optimizer.iterations == 0

    @pytest.mark.parametrize("x, message", [
        (np.zeros(4), r"x: expected a 2-D array"),
        (np.zeros((0, 4)), r"x: empty data"),
        (np.zeros((3, 5)), "x: the model takes 4 features per sample, got 5"),
    ])
    def test_bad_x_shapes(self, x, message):
        model = self.compiled()
        self.assert_rejected(model, x, np.zeros(len(x), np.int64), ValueError, message)

    @pytest.mark.parametrize("bad, message", [
        (np.nan, r"x: contains nan at row 2, column 1"),
        (np.inf, r"x: contains inf at row 2, column 1"),
        (1e300, r"x: the value 1e\+300 at row 2, column 1 overflows float32"),
    ])
    def test_non_finite_x(self, rng, bad, message):
        x = rng.standard_normal((5, 4))
        x[2, 1] = bad
        self.assert_rejected(self.compiled(), x, np.zeros(5, np.int64), ValueError, message)

    def test_non_numeric_x(self):
        self.assert_rejected(self.compiled(), np.full((2, 4), "a"), np.zeros(2, np.int64), TypeError,
                             "x: expected numeric values")

    def test_mismatched_lengths(self, rng):
        self.assert_rejected(self.compiled(), rng.standard_normal((5, 4)), np.zeros(4, np.int64), ValueError,
                             r"y: expected 5 samples \(as many rows as x\), got 4")

    @pytest.mark.parametrize("y, error, message", [
        (np.array([0, 1, 3, 4]), ValueError, r"y: 4 distinct labels \(0, 1, 3, 4\), but the model has 3 classes"),
        (np.array([0, -1, 2, 5]), ValueError, r"y: 4 distinct labels \(-1, 0, 2, 5\)"),
        (np.array([0.0, 1.5, 2.0, 0.0]), ValueError, "y: class labels must be integers, got 1.5 at index 1"),
        (np.array([0.0, np.nan, 2.0, 0.0]), ValueError, "y: class labels must be integers, got nan"),
        (np.eye(3)[[0, 1, 2, 0]], ValueError, r"one class index per sample.*y.argmax\(axis=1\)"),
        (np.array(["a", "b", "c", "d"]), ValueError, "y: 4 distinct labels \\('a', 'b', 'c', 'd'\\)"),
    ])
    def test_bad_class_labels(self, rng, y, error, message):
        self.assert_rejected(self.compiled(), rng.standard_normal((4, 4)), y, error, message)

    def test_integral_float_labels_are_accepted(self, rng):
        model = self.compiled()
        model.fit(rng.standard_normal((4, 4)), np.array([0.0, 1.0, 2.0, 1.0]), verbose=0)
        assert model.optimizer.iterations == 1

    @pytest.mark.parametrize("y, message", [
        (np.array([0.0, 1.2, 0.5, 1.0]), r"y: binary_crossentropy needs targets in \[0, 1\], got 1.2 at index 1"),
        (np.array([0.0, -0.5, 0.5, 1.0]), r"got -0.5 at index 1"),
        (np.zeros((4, 2)), r"y: binary_crossentropy needs targets of shape \(4, 1\) or \(4,\)"),
    ])
    def test_bad_binary_targets(self, rng, y, message):
        self.assert_rejected(self.compiled("binary_crossentropy", units=1), rng.standard_normal((4, 4)), y,
                             ValueError, message)

    @pytest.mark.parametrize("y, message", [
        (np.zeros(4), r"y: mse needs targets of shape \(4, 2\)"),
        (np.zeros((4, 3)), r"y: mse needs targets of shape \(4, 2\)"),
        (np.array([[0.0, 1.0]] * 3 + [[np.inf, 0.0]]), "y: contains inf at row 3, column 0"),
    ])
    def test_bad_regression_targets(self, rng, y, message):
        self.assert_rejected(self.compiled("mse", units=2), rng.standard_normal((4, 4)), y, ValueError, message)

    def test_regression_targets_of_shape_n_for_one_output(self, rng):
        model = self.compiled("mse", units=1)
        model.fit(rng.standard_normal((4, 4)), np.arange(4.0), verbose=0)
        assert model.optimizer.iterations == 1

    @pytest.mark.parametrize("kwargs, error, message", [
        ({"epochs": 0}, ValueError, "epochs"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": 2.5}, TypeError, "batch_size"),
        ({"validation_split": 1.0}, ValueError, "validation_split"),
        ({"validation_split": 0.9}, ValueError, "validation_split: 0.9 of 4 samples leaves an empty training set"),
        ({"validation_data": (np.zeros((2, 4)),)}, ValueError, r"validation_data: expected a tuple \(x_val, y_val\)"),
        ({"validation_data": (np.zeros((2, 5)), np.zeros(2))}, ValueError, "validation_data\\[0\\]: the model takes 4"),
        ({"validation_data": (np.zeros((2, 4)), np.array([0, 7]))}, ValueError,
         r"validation_data\[1\]: class labels must be in \[0, 3\)"),
        ({"validation_data": (np.zeros((2, 4)), np.zeros(3))}, ValueError,
         r"validation_data\[1\]: expected 2 samples"),
        ({"shuffle": "yes"}, TypeError, "shuffle"),
        ({"verbose": 3}, ValueError, "verbose"),
        ({"seed": -2}, ValueError, "seed"),
        ({"callbacks": ft.callbacks.History()}, TypeError, "callbacks: expected a list"),
        ({"terminate_on_nan": None}, TypeError, "terminate_on_nan"),
    ])
    def test_bad_fit_arguments(self, rng, kwargs, error, message):
        self.assert_rejected(self.compiled(), rng.standard_normal((4, 4)), np.array([0, 1, 2, 0]), error, message,
                             **kwargs)

    def test_bad_evaluate_and_predict_input(self, rng):
        model = self.compiled()
        with pytest.raises(ValueError, match="x: the model takes 4 features"):
            model.predict(np.zeros((2, 3)))
        with pytest.raises(ValueError, match="batch_size"):
            model.predict(np.zeros((2, 4)), batch_size=0)
        with pytest.raises(ValueError, match="y: class labels must be in"):
            model.evaluate(np.zeros((2, 4)), np.array([0, 5]))
