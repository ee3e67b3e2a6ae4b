"""The command line, driven through subprocess as a user runs it: fusedtrain train / evaluate /
predict on small CSV, .npz and .npy files written here, the bundled digits, every user mistake
(one line on stderr, exit status 2) and the README's commands."""

import csv
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fusedtrain as ft
from fusedtrain import serialization

README = Path(__file__).resolve().parents[1] / "README.md"
SPECIES = np.array(["setosa", "versicolor", "virginica"])
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
# Settings that train the small data sets here to high accuracy in well under a second.
FAST = ["--layers", "16", "--epochs", "40", "--lr", "0.01", "--verbose", "0", "--no-plot"]


def run_cli(*arguments, cwd=None, env=None, executable=None):
    command = [executable] if executable else [sys.executable, "-m", "fusedtrain"]
    return subprocess.run(command + [str(argument) for argument in arguments], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def succeeded(result):
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result


def one_line_error(result, *fragments):
    """Checks fusedtrain's contract for a user mistake: status 2, one stderr line, no traceback."""
    assert result.returncode == 2, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("fusedtrain: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def flowers(samples=150, seed=3):
    """Three separable classes with text labels; the features differ in scale and offset by
    orders of magnitude, so the model only learns if the scaling works."""
    rng = np.random.default_rng(seed)
    classes = np.arange(samples) % 3
    centres = np.array([[0, 0, 0, 0], [3, 3, 0, 0], [0, 3, 3, 3]], dtype=np.float64)
    x = centres[classes] + 0.4 * rng.standard_normal((samples, 4))
    x = x * np.array([1.0, 10.0, 100.0, 0.1]) + np.array([5.0, -50.0, 1000.0, 0.0])
    return np.round(x, 4), SPECIES[classes]


def write_csv(path, header, columns):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(zip(*columns))
    return path


def write_flowers(path, x, labels, order=None, with_target=True):
    names = FEATURES if order is None else order
    columns = [x[:, FEATURES.index(name)] for name in names]
    header = list(names)
    if with_target:
        header.append("species")
        columns.append(labels)
    return write_csv(path, header, columns)


def read_predictions(path):
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def table(stdout):
    """The report's rows: {label: {column: value}}."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    start = next(index for index, line in enumerate(lines) if line.split()[:1] == ["loss"])
    columns = lines[start].split()
    rows = {}
    for line in lines[start + 1:]:
        cells = line.split()
        if len(cells) != len(columns) + 1:
            break
        rows[cells[0]] = {name: (None if cell == "-" else float(cell)) for name, cell in zip(columns, cells[1:])}
    return rows


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A model trained by `fusedtrain train` on a CSV file with text labels."""
    folder = tmp_path_factory.mktemp("classifier")
    x, labels = flowers()
    data = write_flowers(folder / "flowers.csv", x, labels)
    out = folder / "run" / "flowers.safetensors"
    result = succeeded(run_cli("train", data, "--target", "species", *FAST[:-1], "--out", out))
    return {"folder": folder, "data": data, "x": x, "labels": labels, "model": out, "result": result}


# train ------------------------------------------------------------------------------------------

def test_train_reports_and_writes_model_history_and_plot(classifier):
    stdout = classifier["result"].stdout
    rows = table(stdout)
    assert set(rows) == {"train", "validation", "test"}
    indices = np.unique(classifier["labels"], return_inverse=True)[1]
    parts = ft.data.train_val_test_split(classifier["x"], indices, (0.7, 0.15, 0.15), stratify=indices, seed=0)
    assert [rows[name]["samples"] for name in ("train", "validation", "test")] == [len(y) for _, y in parts]
    assert rows["test"]["accuracy"] >= 0.9
    assert "classification, 3 classes: setosa, versicolor, virginica" in stdout
    for fact in ("epochs", "time", "device", "model", "history", "plot"):
        assert re.search(rf"^{fact}\s+\S", stdout, flags=re.M), fact

    run = classifier["model"].parent
    record = json.loads((run / "history.json").read_text())
    assert record["epochs_run"] == len(record["history"]["loss"]) == len(record["history"]["val_accuracy"])
    assert record["report"]["test"]["accuracy"] == pytest.approx(rows["test"]["accuracy"], abs=1e-4)
    assert record["classes"] == ["setosa", "versicolor", "virginica"]
    assert record["settings"]["target"] == "species"
    pytest.importorskip("matplotlib")
    assert (run / "flowers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_model_file_takes_raw_features_in_python(classifier):
    model = ft.load(classifier["model"])
    first = model.layers[0]
    assert isinstance(first, ft.layers.Normalization) and not first.trainable
    # The scaler holds the statistics of the training part of the same seeded, stratified split.
    x, labels = classifier["x"], classifier["labels"]
    indices = np.unique(labels, return_inverse=True)[1]
    (x_train, _), _, _ = ft.data.train_val_test_split(x, indices, (0.7, 0.15, 0.15), stratify=indices, seed=0)
    np.testing.assert_allclose(first.mean, x_train.astype(np.float32).mean(axis=0, dtype=np.float64), rtol=1e-6)
    np.testing.assert_allclose(first.variance, x_train.astype(np.float32).var(axis=0, dtype=np.float64), rtol=1e-5)
    # The model knows its labels, and reads its columns by name from a raw table.
    assert model.class_labels == list(SPECIES)
    predicted = model.predict_classes(x)
    assert predicted.dtype.kind == "U" and np.mean(predicted == labels) >= 0.9
    frame = pd.DataFrame(x[:, ::-1], columns=FEATURES[::-1])
    np.testing.assert_array_equal(model.predict_classes(frame), predicted)
    assert model.preprocessor.input_columns == FEATURES
    task = json.loads(serialization.read(classifier["model"]).metadata["task"])
    assert task["classes"] == list(SPECIES) and task["target"] == "species" and task["features"] is None


def test_predict_writes_the_original_labels_and_probabilities(classifier, tmp_path):
    x, labels = classifier["x"], classifier["labels"]
    # Columns in another order, no target: the model picks its features by name.
    data = write_flowers(tmp_path / "new.csv", x[:40], labels[:40], order=FEATURES[::-1], with_target=False)
    out = tmp_path / "predictions.csv"
    result = succeeded(run_cli("predict", classifier["model"], data, "--out", out))
    assert f"40 predictions written to {out}" in result.stdout
    header, rows = read_predictions(out)
    assert header == ["species", "probability_setosa", "probability_versicolor", "probability_virginica"]
    probabilities = np.array([[float(value) for value in row[1:]] for row in rows])
    expected = ft.load(classifier["model"]).predict(x[:40])
    np.testing.assert_allclose(probabilities, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert [row[0] for row in rows] == list(SPECIES[np.argmax(expected, axis=1)])


def test_predict_to_stdout_ignores_a_target_column(classifier):
    result = succeeded(run_cli("predict", classifier["model"], classifier["data"], "--out", "-"))
    rows = list(csv.reader(result.stdout.splitlines()))
    assert len(rows) == 1 + len(classifier["labels"])
    assert np.mean(np.array([row[0] for row in rows[1:]]) == classifier["labels"]) >= 0.9


def test_evaluate_matches_the_python_api(classifier):
    result = succeeded(run_cli("evaluate", classifier["model"], classifier["data"]))
    scores = table(result.stdout)["flowers.csv"]
    model = ft.load(classifier["model"])
    expected = model.evaluate(classifier["x"], classifier["labels"])
    assert scores["loss"] == pytest.approx(expected["loss"], abs=1e-4)
    assert scores["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-4)
    assert scores["samples"] == 150


def test_integer_labels_that_are_not_0_to_k_come_back_as_written(tmp_path):
    x, labels = flowers(90, seed=5)
    codes = np.array([3, 7, 10])[np.searchsorted(SPECIES, labels)]
    np.savez(tmp_path / "data.npz", x=x, y=codes)
    out = tmp_path / "codes.safetensors"
    succeeded(run_cli("train", tmp_path / "data.npz", *FAST, "--out", out))
    np.save(tmp_path / "x.npy", x)
    succeeded(run_cli("predict", out, tmp_path / "x.npy", "--out", tmp_path / "p.csv"))
    header, rows = read_predictions(tmp_path / "p.csv")
    assert header == ["prediction", "probability_3", "probability_7", "probability_10"]
    assert np.mean(np.array([int(row[0]) for row in rows]) == codes) >= 0.9


def test_regression_predicts_in_the_targets_units(tmp_path):
    rng = np.random.default_rng(11)
    x = rng.uniform(-2.0, 2.0, size=(240, 3))
    y = 40.0 * x[:, 0] - 25.0 * x[:, 1] + 7.0 * x[:, 2] ** 2 + 1000.0
    data = write_csv(tmp_path / "prices.csv", ["a", "b", "c", "price"], [x[:, 0], x[:, 1], x[:, 2], y])
    out = tmp_path / "prices.safetensors"
    result = succeeded(run_cli("train", data, "--target", "price", "--layers", "32", "--epochs", "150",
                               "--lr", "0.01", "--verbose", "0", "--no-plot", "--out", out))
    assert "regression, 1 output  (inferred" in result.stdout
    assert table(result.stdout)["test"]["R^2"] >= 0.98
    features_only = write_csv(tmp_path / "features.csv", ["a", "b", "c"], [x[:, 0], x[:, 1], x[:, 2]])
    succeeded(run_cli("predict", out, features_only, "--out", tmp_path / "p.csv"))
    header, rows = read_predictions(tmp_path / "p.csv")
    predicted = np.array([float(row[0]) for row in rows])
    assert header == ["price"]
    # The target scaling is folded into the last layer: predictions are prices, not z-scores.
    assert np.sqrt(np.mean((predicted - y) ** 2)) < 0.15 * y.std()
    np.testing.assert_allclose(predicted, ft.load(out).predict(x)[:, 0], rtol=1e-6)
    scores = table(succeeded(run_cli("evaluate", out, data)).stdout)["prices.csv"]
    r2 = 1.0 - np.sum((predicted - y) ** 2) / np.sum((y - y.mean()) ** 2)
    assert scores["R^2"] == pytest.approx(r2, abs=1e-3)
    assert scores["loss"] == pytest.approx(np.mean((predicted - y) ** 2), rel=1e-3)


def test_npy_pair_trains(tmp_path):
    x, labels = flowers(60, seed=7)
    np.save(tmp_path / "x.npy", x.astype(np.float32))
    np.save(tmp_path / "y.npy", labels)
    out = tmp_path / "pair.safetensors"
    result = succeeded(run_cli("train", tmp_path / "x.npy", tmp_path / "y.npy", *FAST, "--out", out))
    assert "x.npy + " in result.stdout and table(result.stdout)["train"]["accuracy"] >= 0.9
    task = json.loads(serialization.read(out).metadata["task"])
    assert task["classes"] == list(SPECIES) and task["features"] is None


@pytest.mark.parametrize("loss, outputs", [("sparse_categorical_crossentropy", 3), ("binary_crossentropy", 1)])
def test_a_model_saved_from_python_predicts_its_class_indices(loss, outputs, tmp_path, rng):
    """A model file without the command line's task entry: the classes are the output indices
    (0 and 1 for one sigmoid output)."""
    x = rng.standard_normal((25, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    model = ft.Sequential([ft.layers.Dense(outputs)], input_dim=4, seed=0)
    model.compile(optimizer="adam", loss=loss)
    model.save(tmp_path / "python.safetensors")
    succeeded(run_cli("predict", tmp_path / "python.safetensors", tmp_path / "x.npy", "--out", tmp_path / "p.csv"))
    header, rows = read_predictions(tmp_path / "p.csv")
    classes = max(outputs, 2)
    assert header == ["prediction"] + [f"probability_{index}" for index in range(classes)]
    probabilities = model.predict(x)
    if outputs == 1:
        probabilities = np.hstack([1 - probabilities, probabilities])
    np.testing.assert_allclose([[float(value) for value in row[1:]] for row in rows], probabilities, rtol=1e-6,
                               atol=1e-7)
    assert [int(row[0]) for row in rows] == np.argmax(probabilities, axis=1).tolist()


def test_several_outputs_without_validation_or_early_stopping(tmp_path, rng):
    x = rng.uniform(-1.0, 1.0, size=(80, 2))
    y = np.stack([x[:, 0] + x[:, 1], x[:, 0] - 2.0 * x[:, 1]], axis=1) * 100.0
    np.savez(tmp_path / "two.npz", x=x, y=y)
    out = tmp_path / "nested" / "folder" / "two.safetensors"
    history = tmp_path / "logs" / "two-history.json"
    result = succeeded(run_cli("train", tmp_path / "two.npz", "--val-split", "0", "--patience", "0", "--epochs", "7",
                               "--history", history, "--verbose", "2", "--no-plot", "--out", out))
    assert "regression, 2 outputs" in result.stdout and "early stopping" not in result.stdout
    assert result.stdout.count("Epoch ") == 7 and "Epoch 7/7" in result.stdout
    assert set(table(result.stdout)) == {"train", "test"}
    record = json.loads(history.read_text())
    assert record["epochs_run"] == 7 and record["best_epoch"] is None and "val_loss" not in record["history"]
    assert len(record["target_scaling"]["scale"]) == 2
    succeeded(run_cli("predict", out, tmp_path / "two.npz", "--out", tmp_path / "p.csv"))
    header, rows = read_predictions(tmp_path / "p.csv")
    assert header == ["prediction_0", "prediction_1"] and len(rows) == 80


def test_default_run_on_the_bundled_digits(tmp_path):
    """`fusedtrain train` as the README's first command, with fewer epochs, through the console
    script: the progress bar, the report, a sensible accuracy."""
    script = Path(sys.executable).with_name("fusedtrain" + (".exe" if os.name == "nt" else ""))
    assert script.exists(), f"the console script is missing beside {sys.executable}"
    result = succeeded(run_cli("train", "--epochs", "12", cwd=tmp_path, executable=str(script)))
    assert "Epoch 1/12" in result.stderr and "Epoch 12/12" in result.stderr
    assert "1797 samples, 64 features" in result.stdout
    rows = table(result.stdout)
    assert rows["test"]["accuracy"] >= 0.93 and rows["test"]["samples"] == 269
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "history.json").is_file()
    assert ft.load(tmp_path / "model.safetensors").input_dim == 64
    succeeded(run_cli("evaluate", "model.safetensors", cwd=tmp_path))


def test_without_matplotlib_the_plot_is_skipped_in_one_line(tmp_path):
    blocker = tmp_path / "blocked" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('matplotlib is blocked by the test')\n")
    x, labels = flowers(60)
    data = write_flowers(tmp_path / "f.csv", x, labels)
    environment = dict(os.environ, PYTHONPATH=str(blocker.parent))
    result = succeeded(run_cli("train", data, *FAST[:-1], "--out", tmp_path / "m.safetensors", env=environment))
    assert re.search(r"^plot\s+skipped: matplotlib is not installed", result.stdout, flags=re.M)
    assert not (tmp_path / "m.png").exists()


def test_a_diverging_run_is_an_error(tmp_path):
    x, labels = flowers(60)
    data = write_flowers(tmp_path / "f.csv", x, labels)
    result = run_cli("train", data, "--optimizer", "sgd", "--lr", "1e30", "--val-split", "0", "--verbose", "0",
                     "--no-plot", "--out", tmp_path / "m.safetensors")
    one_line_error(result, "training diverged", "not finite", "--lr")
    assert not (tmp_path / "m.safetensors").exists()


# export and the optional libraries ---------------------------------------------------------------

def without(tmp_path, package):
    """An environment whose PYTHONPATH shadows ``package`` with one whose import fails, as where
    it is not installed."""
    blocker = tmp_path / "blocked" / package
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text(f"raise ImportError('{package} is blocked by the test')\n")
    paths = [str(blocker.parent)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths))


def test_export_format_onnx_takes_the_raw_columns_and_encoded_the_features(classifier, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = ft.load(classifier["model"])
    frame = pd.DataFrame(classifier["x"], columns=FEATURES)
    expected = model.predict(frame)
    result = succeeded(run_cli("export", classifier["model"], "--format", "onnx", "--out", tmp_path / "raw.onnx"))
    assert f"{tmp_path / 'raw.onnx'}: ONNX (opset 17), inputs sepal_length (float64), sepal_width (float64)" \
        in result.stdout
    raw = ort.InferenceSession(str(tmp_path / "raw.onnx"), providers=["CPUExecutionProvider"])
    assert [value.name for value in raw.get_inputs()] == FEATURES
    feeds = {name: frame[[name]].to_numpy(dtype=np.float64) for name in FEATURES}
    probabilities = raw.run(None, feeds)[0]
    assert np.abs(probabilities - expected).max() <= 1e-5
    assert np.mean(SPECIES[probabilities.argmax(axis=1)] == classifier["labels"]) >= 0.9

    result = succeeded(run_cli("export", classifier["model"], "--format", "onnx", "--encoded",
                               "--out", tmp_path / "encoded.onnx"))
    assert "inputs x (float32); output probabilities" in result.stdout
    encoded = ort.InferenceSession(str(tmp_path / "encoded.onnx"), providers=["CPUExecutionProvider"])
    features = model.preprocessor.transform(frame).astype(np.float32)
    assert encoded.get_inputs()[0].shape == ["batch", features.shape[1]]
    assert np.abs(encoded.run(None, {"x": features})[0] - expected).max() <= 1e-5

    one_line_error(run_cli("export", classifier["model"], "--format", "tflite", "--out", tmp_path / "m.tflite"),
                   "--format", "'tflite'")
    assert not (tmp_path / "m.tflite").exists()


def test_export_without_onnx_names_the_extra_in_one_line(classifier, tmp_path):
    result = run_cli("export", classifier["model"], "--format", "onnx", "--out", tmp_path / "m.onnx",
                     env=without(tmp_path, "onnx"))
    one_line_error(result, 'ONNX export needs the onnx package (pip install "fusedtrain[onnx]")')
    assert not (tmp_path / "m.onnx").exists()


def test_train_tensorboard_without_tensorboardx_names_the_extra_before_training(tmp_path):
    x, labels = flowers(60)
    data = write_flowers(tmp_path / "f.csv", x, labels)
    result = run_cli("train", data, *FAST, "--tensorboard", tmp_path / "runs", "--out", tmp_path / "m.safetensors",
                     env=without(tmp_path, "tensorboardX"))
    one_line_error(result, '--tensorboard: TensorBoard needs the tensorboardX package: '
                           'pip install "fusedtrain[tensorboard]"')
    assert result.stdout == ""  # refused before the data is read: no announcement, no training
    assert not (tmp_path / "m.safetensors").exists() and not (tmp_path / "runs").exists()


# Mistakes: one line, status 2 ------------------------------------------------------------------

def _mistake_files(folder: Path):
    x, labels = flowers(30)
    write_flowers(folder / "good.csv", x, labels)
    write_csv(folder / "text_feature.csv", ["height", "colour", "species"],
              [x[:, 0], ["red"] * 29 + ["blue"], labels])
    # Every row misses a or b.
    rows = [[""] + [f"{value}" for value in x[1:, 0]], ["1.0"] + [""] * 29, list(labels)]
    write_csv(folder / "empty_cell.csv", ["a", "b", "species"], rows)
    (folder / "ragged.csv").write_text("a,b,species\n1,2,x\n3,y\n")
    (folder / "empty.csv").write_text("")
    (folder / "header_only.csv").write_text("a,b,species\n")
    write_csv(folder / "one_class.csv", ["a", "species"], [x[:, 0], ["setosa"] * 30])
    write_csv(folder / "text_target.csv", ["a", "price"], [x[:, 0], labels])
    write_csv(folder / "huge.csv", ["a", "species"], [["1e40"] + ["1"] * 29, labels])
    (folder / "notes.txt").write_text("hello\n")
    np.save(folder / "x.npy", x)
    np.savez(folder / "no_y.npz", x=x)
    np.savez(folder / "pickled.npz", x=x, y=np.array([object()] * 30, dtype=object))
    (folder / "folder").mkdir()
    from safetensors.numpy import save_file

    save_file({"weight": np.ones((4, 3), dtype=np.float32)}, str(folder / "foreign.safetensors"))
    (folder / "text.safetensors").write_text("not a weight file")
    model = ft.Sequential([ft.layers.Dense(3)], input_dim=4, seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.save_weights(folder / "weights.safetensors")
    # A task entry listing two classes for a model with three outputs.
    serialization.save(model, folder / "two_labels.safetensors", metadata={"task": json.dumps(
        {"task": "classification", "classes": ["a", "b"], "target": "species", "features": None})})


MISTAKES = {
    "missing file": (["train", "nowhere.csv"], ["nowhere.csv: no such file"]),
    "a folder as data": (["train", "folder"], ["is a folder"]),
    "text in a --numeric column": (["train", "text_feature.csv", "--numeric", "colour"],
                                   ["the column 'colour' (numeric on request) holds 'red' at row 1, not a number"]),
    "--missing drop leaves nothing": (["train", "empty_cell.csv", "--missing", "drop"],
                                      ["every row has a missing value"]),
    "value beyond float32": (["train", "huge.csv"], ["the column 'a' holds 1e+40, not a finite number within "
                                                     "float32's range"]),
    "unknown target column": (["train", "good.csv", "--target", "colour"], ["no column named 'colour'",
                                                                           "'species'"]),
    "ragged row": (["train", "ragged.csv"], ["line 3: 2 fields, but the header has 3"]),
    "empty file": (["train", "empty.csv"], ["the file is empty"]),
    "no data rows": (["train", "header_only.csv"], ["no data rows"]),
    "single class": (["train", "one_class.csv"], ["single class ('setosa')"]),
    "text target for regression": (["train", "text_target.csv", "--task", "regression"],
                                   ["regression needs numeric targets", "'setosa'"]),
    "unsupported file type": (["train", "notes.txt"], ["unsupported data file"]),
    "one .npy for training": (["train", "x.npy"], ["a .npy file holds one array"]),
    "npz without y": (["train", "no_y.npz"], ["expected arrays named x and y", "found 'x'"]),
    "pickled npz": (["train", "pickled.npz"], ["Python objects"]),
    "--target with npz": (["train", "no_y.npz", "--target", "y"], ["--target names a column of a CSV file"]),
    "bad --layers": (["train", "--layers", "64,x"], ["argument --layers", "positive integers"]),
    "bad --epochs": (["train", "--epochs", "0"], ["--epochs: expected at least 1"]),
    "splits leave nothing": (["train", "--val-split", "0.5", "--test-split", "0.5"], ["leaves no training data"]),
    "unknown option": (["train", "--bogus"], ["unrecognized arguments: --bogus"]),
    "no such GPU": (["train", "--device", "cuda:99"], ["--device cuda:99", "cannot train on the GPU"]),
    "unknown device": (["train", "--device", "tpu"], ["--device: expected"]),
    "--out is a folder": (["train", "--out", "folder"], ["is a folder"]),
    "missing model": (["evaluate", "nowhere.safetensors", "good.csv"], ["no such file"]),
    "foreign safetensors": (["predict", "foreign.safetensors", "good.csv"], ["not a fusedtrain model file"]),
    "not safetensors": (["evaluate", "text.safetensors", "good.csv"], ["not a readable safetensors"]),
    "weights without architecture": (["predict", "weights.safetensors", "x.npy"], ["a weight file"]),
    "class count mismatch in the file": (["predict", "two_labels.safetensors", "x.npy"],
                                         ["3 outputs but its file lists 2 class labels"]),
    "evaluate without MODEL": (["evaluate"], ["required: MODEL"]),
}


@pytest.fixture(scope="module")
def mistakes(tmp_path_factory):
    """Every case of MISTAKES run in one folder, several processes at a time: each stops before
    writing anything, and the process start-up dominates their time."""
    folder = tmp_path_factory.mktemp("mistakes")
    _mistake_files(folder)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {case: pool.submit(run_cli, *arguments, cwd=folder) for case, (arguments, _) in MISTAKES.items()}
    return {case: future.result() for case, future in futures.items()}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_a_mistake_gives_one_line_and_status_2(case, mistakes):
    one_line_error(mistakes[case], *MISTAKES[case][1])


def test_model_and_data_mistakes(classifier, tmp_path):
    x, labels = classifier["x"], classifier["labels"]
    model = classifier["model"]
    unknown = labels[:20].copy()
    unknown[6] = "daisy"
    data = write_flowers(tmp_path / "unknown.csv", x[:20], unknown)
    message = one_line_error(run_cli("predict", model, data, "--out", tmp_path / "p.csv"), "'daisy'",
                             "row 7 (line 8)", "not one of the model's 3 classes")
    assert "setosa, versicolor, virginica" in message
    one_line_error(run_cli("evaluate", model, data), "'daisy'")
    missing = write_csv(tmp_path / "missing.csv", FEATURES[:3], [x[:, 0], x[:, 1], x[:, 2]])
    one_line_error(run_cli("predict", model, missing), "no column named 'petal_width'")
    # Other columns are ignored: the model reads its own by name.
    extra = write_csv(tmp_path / "extra.csv", FEATURES + ["id"], [*x.T, np.arange(len(x))])
    succeeded(run_cli("predict", model, extra, "--out", tmp_path / "extra.csv.out"))
    text = write_csv(tmp_path / "text.csv", FEATURES, [x[:, 0], x[:, 1], ["tall"] * len(x), x[:, 3]])
    one_line_error(run_cli("predict", model, text, "--out", tmp_path / "p.csv"), "the column 'petal_length' holds "
                   "'tall' at row 1; it was numeric in training")
    np.save(tmp_path / "wide.npy", np.ones((5, 7)))
    one_line_error(run_cli("predict", model, tmp_path / "wide.npy"), "7 feature columns, but the model takes 4")
    assert not (tmp_path / "p.csv").exists()


# README ------------------------------------------------------------------------------------------

def _readme_commands():
    """The `fusedtrain ...` (or `python -m fusedtrain ...`) commands of the README's shell blocks,
    after `&&` too."""
    if not README.exists():
        return []
    commands = []
    for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", README.read_text(), flags=re.S):
        for line in block.splitlines():
            for part in line.split("#", 1)[0].split("&&"):
                part = part.strip()
                if part.startswith("python -m fusedtrain "):
                    part = part[len("python -m "):]
                if part.startswith("fusedtrain "):
                    commands.append(part)
    return commands


@pytest.mark.skipif(not README.exists(), reason="needs the source tree's README.md")
def test_readme_commands_run(tmp_path):
    """Runs the README's command-line examples in order, in one folder; they may use the files
    measurements.csv (flower measurements with a text `species` column) and penguins.csv (the
    palmerpenguins package's table) written here."""
    commands = _readme_commands()
    assert any(command.split()[:2] == ["fusedtrain", "train"] for command in commands), \
        "the README shows no `fusedtrain train` command"
    x, labels = flowers()
    write_flowers(tmp_path / "measurements.csv", x, labels)
    import palmerpenguins

    palmerpenguins.load_penguins().to_csv(tmp_path / "penguins.csv", index=False)
    # Each distinct command once, in order; test_bench.py runs `fusedtrain bench --quick` (the
    # benchmark takes seconds even when quick).
    for command in dict.fromkeys(commands):
        arguments = command.split()[1:]
        if arguments[0] != "bench":
            succeeded(run_cli(*arguments, cwd=tmp_path))
