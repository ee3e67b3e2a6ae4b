"""What Keras and scikit-learn users pass: pandas DataFrames and Series, text and integer class
labels, Keras' input_shape and categorical_crossentropy, models with a table preprocessor
saved and loaded in a fresh process."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import fusedtrain as ft
from fusedtrain import layers, losses

SPECIES = np.array(["setosa", "versicolor", "virginica"])


@pytest.fixture
def rng():
    return np.random.default_rng(23)


def blobs(rng, rows=90):
    classes = np.arange(rows) % 3
    x = np.array([[0, 0, 0], [4, 0, 4], [0, 4, 4]], dtype=np.float64)[classes] + rng.normal(size=(rows, 3))
    return x, classes


def classifier(outputs=3, loss="sparse_categorical_crossentropy", **model_options):
    model = ft.Sequential([layers.Dense(8, activation="relu"), layers.Dense(outputs)], device="cpu", seed=0,
                          **model_options)
    model.compile(optimizer=ft.optimizers.Adam(0.05), loss=loss, metrics=["accuracy"])
    return model


# categorical_crossentropy -----------------------------------------------------------------------

def categorical_reference(logits, targets):
    """float64: mean over rows of -sum t log softmax(z), and its gradient."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = logits.shape[0]
    loss = -(targets * log_probabilities).sum() / rows
    grad = (np.exp(log_probabilities) * targets.sum(axis=1, keepdims=True) - targets) / rows
    return loss, grad


@pytest.mark.parametrize("shape", [(1, 2), (3, 5), (17, 3), (257, 11)])
def test_categorical_crossentropy_matches_the_float64_reference(rng, shape):
    logits = (rng.normal(size=shape) * 4).astype(np.float32)
    targets = rng.dirichlet(np.ones(shape[1]), size=shape[0]).astype(np.float32)
    grad = np.empty_like(logits)
    loss = losses.CategoricalCrossentropy()(logits, targets, grad)
    expected_loss, expected_grad = categorical_reference(logits.astype(np.float64), targets.astype(np.float64))
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    # float32 softmax: ~1e-7 relative per element, scaled by the batch.
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-7)
    stored = np.zeros(1)
    assert losses.CategoricalCrossentropy()(logits, targets, grad, loss_out=stored) is stored
    assert stored[0] == pytest.approx(expected_loss, rel=1e-6)


def test_categorical_crossentropy_gradient_matches_finite_differences(rng):
    logits = rng.normal(size=(5, 4))
    targets = rng.dirichlet(np.ones(4), size=5)
    _, grad = categorical_reference(logits, targets)
    kernel_grad = np.empty((5, 4), np.float32)
    losses.CategoricalCrossentropy()(logits.astype(np.float32), targets.astype(np.float32), kernel_grad)
    step = 1e-6
    numeric = np.empty_like(logits)
    for index in np.ndindex(*logits.shape):
        plus, minus = logits.copy(), logits.copy()
        plus[index] += step
        minus[index] -= step
        numeric[index] = (categorical_reference(plus, targets)[0] - categorical_reference(minus, targets)[0]) / (2 * step)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(kernel_grad, numeric, rtol=1e-4, atol=1e-7)


def test_categorical_crossentropy_on_one_hot_rows_equals_the_sparse_loss(rng):
    logits = (rng.normal(size=(33, 6)) * 30).astype(np.float32)
    labels = rng.integers(0, 6, 33)
    grad, sparse_grad = np.empty_like(logits), np.empty_like(logits)
    loss = losses.CategoricalCrossentropy()(logits, np.eye(6, dtype=np.float32)[labels], grad)
    sparse = losses.SparseCategoricalCrossentropy()(logits, labels, sparse_grad)
    assert loss == pytest.approx(sparse, rel=1e-5)
    np.testing.assert_allclose(grad, sparse_grad, atol=1e-7)


def test_categorical_crossentropy_trains_and_its_accuracy_reads_one_hot_rows(rng):
    x, classes = blobs(rng)
    model = classifier(loss="categorical_crossentropy")
    history = model.fit(x, np.eye(3)[classes], epochs=30, batch_size=16, verbose=0, seed=0)
    assert history.history["accuracy"][-1] >= 0.95
    assert model.evaluate(x, np.eye(3)[classes])["accuracy"] == pytest.approx(
        np.mean(model.predict_classes(x) == classes))
    # Soft targets train too (label smoothing).
    smoothed = np.eye(3)[classes] * 0.9 + 0.1 / 3
    assert model.fit(x, smoothed, epochs=1, verbose=0).history["loss"][0] > 0.0
    with pytest.raises(ValueError, match=r"^y: categorical_crossentropy takes a one-hot or probability row per "
                                         r"sample, shape \(90, 3\), got shape \(90,\); for class indices use "
                                         r"sparse_categorical_crossentropy"):
        model.fit(x, classes, verbose=0)
    with pytest.raises(ValueError, match=r"^y: categorical_crossentropy needs one-hot or probability rows \(no "
                                         r"negative values\), got -1 at index \(1, 0\)"):
        model.fit(x, np.eye(3)[classes] - np.eye(3)[[0] * 90], verbose=0)
    with pytest.raises(ValueError, match=r"^loss: categorical_crossentropy applies a softmax"):
        ft.Sequential([layers.Dense(3, activation="sigmoid")], input_dim=3).compile(loss="categorical_crossentropy")


def test_the_keras_idiom_on_the_wine_data():
    from sklearn.datasets import load_wine
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    # As the tutorials write it: scaled features (a DataFrame here), one-hot targets.
    data = load_wine(as_frame=True)
    one_hot = np.eye(3)[data.target.to_numpy()]
    x_train, x_test, y_train, y_test = train_test_split(data.data, one_hot, test_size=0.3, random_state=0,
                                                        stratify=data.target)
    scaler = StandardScaler().set_output(transform="pandas").fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    model = ft.Sequential(device="cpu", seed=0)
    model.add(layers.Dense(64, activation="relu", input_shape=(x_train.shape[1],)))
    model.add(layers.Dense(3, activation="softmax"))
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=100, batch_size=16, validation_split=0.1, verbose=0)
    assert model.input_dim == 13 and model.feature_names == list(data.data.columns)
    assert model.evaluate(x_test, y_test)["accuracy"] >= 0.9


def test_input_shape_declares_the_input_size():
    assert layers.Dense(4, input_shape=(7,)).declared_input_dim == 7
    assert layers.Dense(4, input_shape=7).declared_input_dim == 7
    model = ft.Sequential([layers.Dense(4, input_shape=[5])], device="cpu")
    assert model.input_dim == 5 and model.count_params() == 24
    with pytest.raises(ValueError, match=r"^input_shape: expected \(features,\), one number per sample vector, got "
                                         r"\(28, 28\); fusedtrain's layers take 2-D data"):
        layers.Dense(4, input_shape=(28, 28))
    with pytest.raises(ValueError, match=r"^input_shape, input_dim: they disagree"):
        layers.Dense(4, input_shape=(3,), input_dim=4)
    with pytest.raises(ValueError, match=r"^input_shape\[0\]: expected an integer >= 1"):
        layers.Dense(4, input_shape=(0,))


# DataFrames and class labels --------------------------------------------------------------------

def test_a_numeric_frame_keeps_its_column_names(rng):
    x, classes = blobs(rng)
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    model = classifier()
    model.fit(frame, pd.Series(classes), epochs=5, verbose=0, seed=0)
    assert model.feature_names == ["a", "b", "c"]
    np.testing.assert_array_equal(model.predict(frame[["c", "a", "b"]]), model.predict(x))
    with pytest.raises(ValueError, match=r"^x: no column 'c'; the model was fitted on the columns 'a', 'b', 'c'"):
        model.predict(frame[["a", "b"]])
    with pytest.raises(ValueError, match=r"^x: the column 'd' was not seen in fit"):
        model.predict(frame.assign(d=1.0))
    with pytest.raises(TypeError, match=r"^x: the column 'b' holds .* values, not numbers; encode it first, for "
                                        r"example with Sequential\(..., preprocessor="):
        classifier().fit(frame.assign(b="text"), classes, verbose=0)
    with pytest.raises(ValueError, match=r"^validation_data\[0\]: no column 'a'"):
        model.fit(frame, classes, validation_data=(frame[["b", "c"]], classes), verbose=0)


def test_text_labels_are_mapped_kept_and_given_back(rng, tmp_path):
    x, classes = blobs(rng)
    labels = SPECIES[classes]
    model = classifier()
    model.fit(x, pd.Series(labels), epochs=20, batch_size=16, verbose=0, seed=0)
    assert model.class_labels == list(SPECIES)
    predicted = model.predict_classes(x)
    assert predicted.dtype.kind == "U" and np.mean(predicted == labels) >= 0.95
    assert model.evaluate(x, labels)["accuracy"] == pytest.approx(np.mean(predicted == labels))
    path = tmp_path / "labels.safetensors"
    model.save(path)
    loaded = ft.load(path, device="cpu")
    assert loaded.class_labels == list(SPECIES)
    np.testing.assert_array_equal(loaded.predict_classes(x), predicted)
    with pytest.raises(ValueError, match=r"^y: the label 'daisy' at index 1 is not one of the model's classes "
                                         r"\('setosa', 'versicolor', 'virginica'\)"):
        model.evaluate(x[:3], ["setosa", "daisy", "setosa"])


def test_integer_labels_that_are_not_indices_are_mapped(rng):
    x, classes = blobs(rng)
    codes = np.array([3, 7, 10])[classes]
    model = classifier()
    model.fit(x, codes, epochs=20, batch_size=16, verbose=0, seed=0)
    assert model.class_labels == [3, 7, 10]
    assert np.mean(model.predict_classes(x) == codes) >= 0.95
    # A model fitted on indices keeps taking indices: later labels out of range are refused.
    indexed = classifier()
    indexed.fit(x, classes, epochs=1, verbose=0)
    assert indexed.class_labels is None
    with pytest.raises(ValueError, match=r"y: class labels must be in \[0, 3\)"):
        indexed.fit(x, classes + 1, epochs=1, verbose=0)
    with pytest.raises(TypeError, match=r"^y: text labels, but the model was fitted on class indices"):
        indexed.evaluate(x, SPECIES[classes])


def test_two_text_labels_with_one_sigmoid_output(rng):
    x, classes = blobs(rng)
    labels = np.where(classes == 0, "no", "yes")
    model = ft.Sequential([layers.Dense(8, activation="relu"), layers.Dense(1, activation="sigmoid")],
                          device="cpu", seed=0)
    model.compile(optimizer=ft.optimizers.Adam(0.05), loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(x, labels, epochs=20, batch_size=16, verbose=0, seed=0)
    assert model.class_labels == ["no", "yes"]
    assert np.mean(model.predict_classes(x) == labels) >= 0.95


def test_one_sample_as_a_vector_gets_a_reshape_hint(rng):
    x, classes = blobs(rng)
    model = classifier()
    model.fit(x, classes, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"^x: expected a 2-D array \(samples, features\), got shape \(3,\); for one "
                                         r"sample pass x.reshape\(1, -1\)"):
        model.predict(x[0])


@pytest.mark.parametrize("labels, where", [
    (["setosa", None, "virginica", "setosa"], r"index 1 is missing \(None\)"),
    (pd.Series(["setosa", "virginica", np.nan, "setosa"]), r"index 2 is missing \(nan\)"),
    (pd.Series(["setosa", "virginica", "setosa", None], dtype="category"), r"index 3 is missing \(nan\)"),
    ([3, None, 7, 10], r"index 1 is missing \(None\)"),
])
def test_a_missing_label_is_refused_with_its_index(rng, labels, where):
    x, _ = blobs(rng, rows=4)
    model = classifier()
    with pytest.raises(ValueError, match=rf"^y: the label at {where}; drop rows without a label$"):
        model.fit(x, labels, epochs=1, verbose=0)
    assert model.class_labels is None  # nothing was decided by the refused fit


# Models with a preprocessor ---------------------------------------------------------------------

def penguins():
    import palmerpenguins

    return palmerpenguins.load_penguins()


def test_a_model_with_a_preprocessor_takes_raw_rows_after_a_fresh_load(tmp_path):
    frame = penguins()
    features, species = frame.drop(columns=["species"]), frame["species"]
    model = classifier(preprocessor=ft.data.TablePreprocessor())
    model.fit(features, species, epochs=40, batch_size=32, verbose=0, seed=0)
    assert np.mean(model.predict_classes(frame) == species.to_numpy()) >= 0.95
    path = tmp_path / "penguins.safetensors"
    model.save(path)
    rows = frame.sample(frac=1.0, random_state=0).head(60)
    rows.loc[rows.index[0], "island"] = "Atlantis"  # a category never seen
    rows.loc[rows.index[1], "body_mass_g"] = np.nan
    rows = rows.drop(columns=["species"])
    rows.to_csv(tmp_path / "rows.csv", index=False)
    expected = model.predict(rows)
    script = (
        "import sys, json, numpy as np, pandas as pd, fusedtrain as ft\n"
        "model = ft.load(sys.argv[1], device='cpu')\n"
        "rows = pd.read_csv(sys.argv[2])\n"
        "print(json.dumps({'p': model.predict(rows).tolist(), 'c': model.predict_classes(rows).tolist()}))\n")
    result = subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "rows.csv")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    np.testing.assert_allclose(np.array(answer["p"]), expected, rtol=1e-5, atol=1e-6)
    assert answer["c"] == model.predict_classes(rows).tolist()
    loaded = ft.load(path, device="cpu")
    with pytest.raises(ValueError, match=r"^x: no column named 'island'"):
        loaded.predict(rows.drop(columns=["island"]))
    with pytest.raises(ValueError, match=r"^x: the column 'bill_length_mm' holds 'long' at row 1"):
        loaded.predict(rows.assign(bill_length_mm=["long"] + [40.0] * 59))


def test_the_validation_split_gives_the_preprocessor_no_statistics(rng):
    # The last quarter validates: its values would move the median of 'size' and give 'colour'
    # a slot for 'purple' (seen twice there) if the preprocessor were fitted on every row.
    rows, training = 40, 30
    frame = pd.DataFrame({"size": np.r_[rng.normal(5.0, 1.0, training), rng.normal(500.0, 1.0, rows - training)],
                          "colour": ["red", "blue"] * (training // 2) + ["purple"] * (rows - training)})
    frame.loc[3, "size"] = np.nan
    labels = np.arange(rows) % 2
    model = classifier(outputs=2, preprocessor=ft.data.TablePreprocessor())
    history = model.fit(frame, labels, epochs=1, validation_split=0.25, verbose=0)
    assert "val_loss" in history.history
    plan = {column.name: column for column in model.preprocessor.columns}
    assert plan["size"].fill == np.nanmedian(frame["size"][:training])
    assert plan["colour"].categories == ["blue", "red"]
    # The types are read from every row, the statistics (scaling included) from the training rows.
    expected = ft.data.TablePreprocessor().fit(frame, rows=np.arange(training))
    assert model.preprocessor.to_config() == expected.to_config()
    np.testing.assert_allclose(model.preprocessor.transform(frame.iloc[:training]).mean(axis=0), 0.0, atol=1e-6)
    # With validation_data, every row of x trains, and every row gives the statistics.
    other = classifier(outputs=2, preprocessor=ft.data.TablePreprocessor())
    other.fit(frame, labels, epochs=1, validation_data=(frame.iloc[:5], labels[:5]), verbose=0)
    assert other.preprocessor.to_config() == ft.data.TablePreprocessor().fit(frame).to_config()


def test_an_unfitted_preprocessor_refuses_prediction(rng):
    model = classifier(preprocessor=ft.data.TablePreprocessor())
    model.build(3)
    with pytest.raises(RuntimeError, match=r"^x: the model's preprocessor is not fitted yet"):
        model.predict(pd.DataFrame({"a": [1.0]}))
    with pytest.raises(TypeError, match=r"^preprocessor: expected a fusedtrain.data.TablePreprocessor"):
        ft.Sequential([layers.Dense(2)], preprocessor="auto")


def test_damaged_inputs_metadata_is_refused(rng, tmp_path):
    from fusedtrain import serialization

    x, classes = blobs(rng)
    model = classifier()
    model.fit(pd.DataFrame(x, columns=["a", "b", "c"]), SPECIES[classes], epochs=1, verbose=0)
    path = tmp_path / "m.safetensors"
    model.save(path)
    stored = serialization.read(path)
    for change, message in ((lambda entry: entry.update(class_labels=["a", "b"]), "class_labels must be 3"),
                            (lambda entry: entry.update(feature_names=["a", "a", "c"]), "feature_names must be 3"),
                            (lambda entry: entry.update(preprocessor={"format_version": 9}), "format_version 1")):
        entry = json.loads(stored.metadata["inputs"])
        change(entry)
        metadata = dict(stored.metadata, inputs=json.dumps(entry))
        from safetensors.numpy import save_file

        save_file(stored.tensors, str(tmp_path / "bad.safetensors"), metadata=metadata)
        with pytest.raises(ValueError, match=message):
            ft.load(tmp_path / "bad.safetensors", device="cpu")
