"""ONNX export: every layer type and activation, each loss's output (probabilities, logits,
values), a dynamic batch, the metadata, a model trained on a raw table (its columns as inputs),
the command line, and every refusal; checked with onnx.checker and run by onnxruntime, whose
outputs must equal model.predict within the README's bounds: probabilities within 1e-5, unbounded
outputs (a regressor's, logits) within 1e-5 * (1 + |y|)."""

import json
import sys

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import layers

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

FEATURES = 7


def session(path):
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run(path, x):
    return session(path).run(None, {"x": np.asarray(x, dtype=np.float32)})[0]


def assert_probabilities_match(actual, expected, bound=1e-5):
    """|actual - expected| <= bound for each probability (values in [0, 1])."""
    np.testing.assert_allclose(actual, expected, rtol=0, atol=bound)


def assert_outputs_match(actual, expected):
    """|actual - expected| <= 1e-5 * (1 + |expected|) for unbounded outputs: float32's rounding
    grows with the magnitude, and stays near 1e-5 absolute about 0."""
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


def logits_of(model, x):
    """What the last layer computes before the loss' softmax or sigmoid, from fusedtrain: the
    model recompiled as a regressor (compile keeps the weights), its folded activation dropped."""
    model.layers[-1].activation = None
    model.compile("sgd", "mse")
    return model.predict(x)


def trained(stack, loss, units, rows=64, seed=0, epochs=3):
    rng = np.random.default_rng(seed)
    x = (2.0 * rng.standard_normal((rows, FEATURES))).astype(np.float32)
    normalization = layers.Normalization()
    normalization.adapt(x + 3.0)
    model = ft.Sequential([normalization] + stack + [layers.Dense(units)] if loss != "none" else stack,
                          input_dim=FEATURES, seed=seed)
    if loss == "mse":
        y = rng.standard_normal((rows, units))
    elif loss == "binary_crossentropy":
        y = (rng.uniform(size=(rows, units)) > 0.5).astype(np.float32)
    elif loss == "categorical_crossentropy":
        y = np.eye(units)[rng.integers(0, units, rows)]
    else:
        y = rng.integers(0, units, rows)
    model.compile("adam", loss)
    model.fit(x + 3.0, y, epochs=epochs, batch_size=16, verbose=0)
    return model, x + 3.0


ACTIVATIONS = [None, "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax"]


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_with_each_activation(tmp_path, activation):
    model, x = trained([layers.Dense(11, activation=activation), layers.Dropout(0.3)], "mse", 3)
    model.export(tmp_path / "m.onnx")
    assert_outputs_match(run(tmp_path / "m.onnx", x), model.predict(x))


@pytest.mark.parametrize("layer", [layers.ReLU(), layers.LeakyReLU(negative_slope=0.2), layers.Sigmoid(),
                                   layers.Tanh(), layers.GELU(), layers.Softmax(), layers.Dropout(0.5)],
                         ids=lambda layer: type(layer).__name__)
def test_each_activation_layer(tmp_path, layer):
    model, x = trained([layers.Dense(9, use_bias=False), layer, layers.Dense(6)], "mse", 2)
    model.export(tmp_path / "m.onnx")
    assert_outputs_match(run(tmp_path / "m.onnx", x), model.predict(x))


@pytest.mark.parametrize("loss, units, last", [
    ("sparse_categorical_crossentropy", 4, None), ("sparse_categorical_crossentropy", 4, "softmax"),
    ("categorical_crossentropy", 3, None), ("binary_crossentropy", 1, "sigmoid"), ("binary_crossentropy", 3, None),
])
def test_classifiers_give_probabilities_or_logits(tmp_path, loss, units, last):
    model, x = trained([layers.Dense(10, activation="tanh")], loss, units)
    model.layers[-1].activation = last
    model.export(tmp_path / "p.onnx")
    assert_probabilities_match(run(tmp_path / "p.onnx", x), model.predict(x))
    assert session(tmp_path / "p.onnx").get_outputs()[0].name == "probabilities"
    model.export(tmp_path / "l.onnx", outputs="logits")
    logits = run(tmp_path / "l.onnx", x)
    probabilities = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True) if model.loss.link == "softmax"
                     else 1.0 / (1.0 + np.exp(-logits.astype(np.float64))))
    assert_probabilities_match(probabilities, model.predict(x))
    assert_outputs_match(logits, logits_of(model, x))


def test_the_batch_dimension_is_dynamic_and_metadata_is_kept(tmp_path):
    model, x = trained([layers.Dense(5, activation="relu")], "sparse_categorical_crossentropy", 3)
    model.class_labels = ["cat", "dog", "emu"]
    model.export(tmp_path / "m.onnx", opset=13)
    for rows in (1, 2, 37):
        assert_probabilities_match(run(tmp_path / "m.onnx", x[:rows]), model.predict(x[:rows]))
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert proto.opset_import[0].version == 13
    dimension = proto.graph.input[0].type.tensor_type.shape.dim
    assert dimension[0].dim_param == "batch" and dimension[1].dim_value == FEATURES
    metadata = {entry.key: entry.value for entry in proto.metadata_props}
    assert json.loads(metadata["class_labels"]) == ["cat", "dog", "emu"]
    assert metadata["outputs"] == "probabilities" and json.loads(metadata["inputs"]) == {"x": "float32"}


def test_a_trained_digits_classifier(tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = digits.data.astype(np.float32), digits.target
    normalization = layers.Normalization()
    normalization.adapt(x)
    model = ft.Sequential([normalization, layers.Dense(64, activation="gelu"), layers.Dropout(0.2),
                           layers.Dense(10, activation="softmax")], seed=0)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    assert model.evaluate(x, y)["accuracy"] > 0.95
    model.export(tmp_path / "digits.onnx")
    probabilities = run(tmp_path / "digits.onnx", x)
    assert_probabilities_match(probabilities, model.predict(x))
    np.testing.assert_array_equal(probabilities.argmax(axis=1), model.predict_classes(x))


@pytest.mark.parametrize("stack", [
    [layers.Dense(48, activation="sigmoid"), layers.Dense(32, activation="leaky_relu"),
     layers.Dense(24, activation="tanh")],
    [layers.Dense(64, activation="softmax"), layers.Dense(32, activation="relu"), layers.Dense(24, activation="gelu")],
    [layers.Dense(48), layers.LeakyReLU(negative_slope=0.2), layers.Dropout(0.1), layers.Dense(24), layers.Sigmoid()],
    [layers.Dense(48), layers.ReLU(), layers.Dense(24, use_bias=False), layers.Tanh()],
    [layers.Dense(48), layers.GELU(), layers.Dense(32), layers.Softmax(), layers.Dense(24),
     layers.Activation("leaky_relu", negative_slope=0.3)],
], ids=["dense_sigmoid_leaky_relu_tanh", "dense_softmax_relu_gelu", "leaky_relu_sigmoid_layers", "relu_tanh_layers",
        "gelu_softmax_activation_layers"])
def test_the_activations_trained_on_digits(tmp_path, stack):
    x, y = ft.datasets.load_digits()
    normalization = layers.Normalization()
    normalization.adapt(x)
    model = ft.Sequential([normalization] + stack + [layers.Dense(10)], seed=0)
    model.compile(ft.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=8, batch_size=32, verbose=0, seed=0)
    assert model.evaluate(x, y)["accuracy"] > 0.95
    model.export(tmp_path / "p.onnx")
    model.export(tmp_path / "l.onnx", outputs="logits")
    probabilities = run(tmp_path / "p.onnx", x)
    assert_probabilities_match(probabilities, model.predict(x))
    np.testing.assert_array_equal(probabilities.argmax(axis=1), model.predict_classes(x))
    assert_outputs_match(run(tmp_path / "l.onnx", x), logits_of(model, x))


# ---- a model trained on a raw table -----------------------------------------------------------

def raw_feeds(ort_session, table):
    """What a deployment passes: each column as (rows, 1), strings stripped ('' where missing)
    or float64 (NaN where missing), from pandas alone."""
    import pandas as pd

    feeds = {}
    for value in ort_session.get_inputs():
        column = table[value.name]
        if value.type == "tensor(string)":
            feeds[value.name] = column.astype(object).where(column.notna(), "").astype(str).str.strip().to_numpy(
                dtype=object).reshape(-1, 1)
        else:
            feeds[value.name] = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64).reshape(-1, 1)
    return feeds


@pytest.fixture
def penguins():
    pytest.importorskip("palmerpenguins")
    import palmerpenguins

    table = palmerpenguins.load_penguins()
    rows = np.arange(len(table))
    table["tagged"] = np.where(rows % 3 == 0, "yes", "no")
    table.loc[5, "tagged"] = "NA"
    table["pen"] = rows % 4
    table.loc[7, "pen"] = np.nan
    return table


@pytest.mark.parametrize("scale", [True, False])
def test_a_table_model_takes_the_raw_columns(tmp_path, penguins, scale):
    x, y = penguins.drop(columns="species"), penguins["species"]
    model = ft.Sequential([layers.Dense(16, activation="relu"), layers.Dense(3)],
                          preprocessor=ft.data.TablePreprocessor(scale=scale), seed=0)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=5, verbose=0)
    model.export(tmp_path / "penguins.onnx")
    runner = session(tmp_path / "penguins.onnx")
    types = {value.name: value.type for value in runner.get_inputs()}
    assert types == {"island": "tensor(string)", "bill_length_mm": "tensor(double)", "bill_depth_mm": "tensor(double)",
                     "flipper_length_mm": "tensor(double)", "body_mass_g": "tensor(double)", "sex": "tensor(string)",
                     "year": "tensor(double)", "tagged": "tensor(string)", "pen": "tensor(double)"}
    # Unscaled, the features reach the thousands (body mass in g), and so do the first layer's
    # float32 sums, where float32 values lie 1.2e-4 apart: their rounding differs with the
    # summation order, and predict is itself 3e-5 from a float64 evaluation of the same
    # weights. The README states this bound.
    bound = 1e-5 if scale else 1e-4
    assert_probabilities_match(runner.run(None, raw_feeds(runner, x))[0], model.predict(x), bound)
    # New categories, gaps written as tokens, other capitalisations of the words.
    changed = x.copy()
    changed.loc[0, "island"] = "Atlantis"
    changed.loc[1, "pen"] = 9
    changed.loc[2, "sex"] = "NA"
    changed.loc[3, "tagged"] = "Yes"
    changed.loc[4, "body_mass_g"] = np.nan
    changed.loc[6, "island"] = "n/a"
    assert_probabilities_match(runner.run(None, raw_feeds(runner, changed))[0], model.predict(changed), bound)
    metadata = runner.get_modelmeta().custom_metadata_map
    assert json.loads(metadata["class_labels"]) == ["Adelie", "Chinstrap", "Gentoo"]
    assert json.loads(metadata["feature_names"]) == model.preprocessor.feature_names


def test_a_table_model_exports_on_the_encoded_features(tmp_path, penguins):
    x, y = penguins.drop(columns="species"), penguins["species"]
    model = ft.Sequential([layers.Dense(8, activation="tanh"), layers.Dense(3)],
                          preprocessor=ft.data.TablePreprocessor(), seed=0)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, verbose=0)
    model.export(tmp_path / "encoded.onnx", preprocessor=False)
    encoded = model.preprocessor.transform(x)
    assert_probabilities_match(run(tmp_path / "encoded.onnx", encoded), model.predict(x))


def test_dates_are_refused_by_column(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(0)
    table = pd.DataFrame({"when": pd.date_range("2020-01-01", periods=80).astype(str), "value": rng.normal(size=80)})
    model = ft.Sequential([layers.Dense(1)], preprocessor=ft.data.TablePreprocessor(), seed=0)
    model.compile("sgd", "mse")
    model.fit(table, rng.normal(size=80), verbose=0)
    with pytest.raises(ValueError, match=r"^preprocessor: the column 'when' holds dates, which ONNX cannot parse; "
                                         r"train with dates='drop'"):
        model.export(tmp_path / "dates.onnx")
    assert not (tmp_path / "dates.onnx").exists()
    model.export(tmp_path / "dates.onnx", preprocessor=False)
    encoded = model.preprocessor.transform(table)
    assert_outputs_match(run(tmp_path / "dates.onnx", encoded), model.predict(table))


# ---- refusals ---------------------------------------------------------------------------------

@pytest.mark.parametrize("arguments, error, message", [
    ({"format": "tf_saved_model"}, ValueError, r"^format: expected 'onnx' \(the only export format\)"),
    ({"opset": 12}, ValueError, r"^opset: expected an integer >= 13, got 12"),
    ({"opset": "17"}, TypeError, r"^opset: expected an integer"),
    ({"outputs": "scores"}, ValueError, r"^outputs: expected 'probabilities' or 'logits'"),
    ({"preprocessor": "no"}, TypeError, r"^preprocessor: expected True or False"),
])
def test_bad_arguments_write_nothing(tmp_path, arguments, error, message):
    model, _ = trained([layers.Dense(4)], "sparse_categorical_crossentropy", 2)
    (tmp_path / "m.onnx").write_bytes(b"previous")
    with pytest.raises(error, match=message):
        model.export(tmp_path / "m.onnx", **arguments)
    assert (tmp_path / "m.onnx").read_bytes() == b"previous"


def test_logits_of_a_regressor_and_an_unbuilt_model_are_refused(tmp_path):
    model, _ = trained([layers.Dense(4)], "mse", 2)
    with pytest.raises(ValueError, match=r"^outputs: 'logits' needs a model compiled with a cross-entropy loss"):
        model.export(tmp_path / "m.onnx", outputs="logits")
    with pytest.raises(RuntimeError, match=r"export"):
        ft.Sequential([layers.Dense(2)]).export(tmp_path / "m.onnx")


def test_a_layer_without_an_onnx_form_is_named(tmp_path):
    class Doubling(layers.Layer):
        base_name = "doubling"

    model = ft.Sequential([layers.Dense(4), Doubling(), layers.Dense(2)], input_dim=FEATURES)
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match=r"^layers\[1\]: Doubling \('doubling'\) has no ONNX form here"):
        model.export(tmp_path / "m.onnx")


def test_without_onnx_the_extra_is_named(tmp_path, monkeypatch):
    model, _ = trained([layers.Dense(4)], "mse", 2)
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r'^ONNX export needs the onnx package \(pip install "fusedtrain\[onnx\]"\)$'):
        model.export(tmp_path / "m.onnx")


# ---- the command line -------------------------------------------------------------------------

def test_cli_export_of_a_model_trained_on_a_csv(tmp_path, penguins, capsys):
    import pandas as pd
    from fusedtrain.__main__ import main

    penguins.to_csv(tmp_path / "penguins.csv", index=False)
    assert main(["train", str(tmp_path / "penguins.csv"), "--target", "species", "--epochs", "20", "--verbose", "0",
                 "--no-plot", "--out", str(tmp_path / "model.safetensors")]) == 0
    assert main(["export", str(tmp_path / "model.safetensors"), "--out", str(tmp_path / "model.onnx")]) == 0
    out = capsys.readouterr().out
    assert "model.onnx: ONNX (opset 17), inputs island (string), bill_length_mm (float64)" in out
    assert main(["predict", str(tmp_path / "model.safetensors"), str(tmp_path / "penguins.csv"),
                 "--out", str(tmp_path / "predictions.csv")]) == 0
    expected = pd.read_csv(tmp_path / "predictions.csv")
    raw = pd.read_csv(tmp_path / "penguins.csv")
    runner = session(tmp_path / "model.onnx")
    probabilities = runner.run(None, raw_feeds(runner, raw))[0]
    np.testing.assert_allclose(probabilities, expected[[f"probability_{name}" for name in ("Adelie", "Chinstrap", "Gentoo")]],
                               atol=2e-6)
    labels = json.loads(runner.get_modelmeta().custom_metadata_map["class_labels"])
    assert (np.asarray(labels)[probabilities.argmax(axis=1)] == expected["species"]).all()
    assert (np.asarray(labels)[probabilities.argmax(axis=1)] == raw["species"]).mean() > 0.95


def test_cli_export_of_a_regressor_and_its_errors(tmp_path, capsys):
    from fusedtrain.__main__ import main

    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 4)).astype(np.float32)
    np.savez(tmp_path / "r.npz", x=x, y=(x @ np.array([1.0, -2.0, 0.5, 3.0]) + 10.0).astype(np.float32))
    model_path = tmp_path / "r.safetensors"
    assert main(["train", str(tmp_path / "r.npz"), "--task", "regression", "--epochs", "10", "--verbose", "0",
                 "--no-plot", "--out", str(model_path)]) == 0
    assert main(["export", str(model_path), "--out", str(tmp_path / "r.onnx")]) == 0
    assert_outputs_match(run(tmp_path / "r.onnx", x), ft.load(model_path).predict(x))
    capsys.readouterr()
    assert main(["export", str(model_path), "--outputs", "logits", "--out", str(tmp_path / "l.onnx")]) == 2
    assert "outputs: 'logits' needs a model compiled with a cross-entropy loss" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "absent.safetensors")]) == 2
    assert "absent.safetensors" in capsys.readouterr().err
    assert main(["export", str(model_path), "--opset", "9", "--out", str(tmp_path / "o.onnx")]) == 2
    assert "opset: expected an integer >= 13" in capsys.readouterr().err
