"""`fusedtrain train` on real tables (text columns, missing values, dates), the CSV dialects and
Parquet, the column options, rows without a target, and predict on raw rows."""

import contextlib
import csv
import importlib.resources
import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import fusedtrain as ft
from fusedtrain.__main__ import main
from test_cli import one_line_error, run_cli, succeeded

QUIET = ["--verbose", "0", "--no-plot"]


def predictions(path):
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def real_table(name, folder):
    """A table shipped by a package, written as the CSV a user would have."""
    if name == "penguins":
        import palmerpenguins

        frame, target = palmerpenguins.load_penguins(), "species"
    elif name == "cars":
        frame = pd.read_json(importlib.resources.files("vega_datasets") / "_data" / "cars.json")
        target = "Origin"
    else:
        frame = pd.read_csv(importlib.resources.files("vega_datasets") / "_data" / "seattle-weather.csv")
        target = "weather"
    path = folder / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path, target, frame


# The bar: trained from the raw CSV with no option but --target, predict over the table's own
# raw rows (rows with gaps included).
BARS = {"penguins": 0.95, "cars": 0.70, "weather": 0.60}


@pytest.mark.parametrize("name", sorted(BARS))
def test_real_tables_train_from_the_raw_csv(name, tmp_path):
    path, target, frame = real_table(name, tmp_path)
    model = tmp_path / "model.safetensors"
    report = succeeded(run_cli("train", path, "--target", target, *QUIET, "--out", model, cwd=tmp_path)).stdout
    assert "columns" in report
    out = tmp_path / "predictions.csv"
    succeeded(run_cli("predict", model, path, "--out", out))
    header, rows = predictions(out)
    assert header[0] == target and len(rows) == len(frame)
    predicted = np.array([row[0] for row in rows])
    assert np.mean(predicted == frame[target].astype(str).to_numpy()) >= BARS[name]
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["columns"] and history["classes"] == sorted(frame[target].unique().tolist())


def test_the_report_names_each_column_rule(tmp_path):
    path, _, _ = real_table("cars", tmp_path)
    report = succeeded(run_cli("train", path, "--target", "Origin", *QUIET, "--epochs", "2",
                               "--out", tmp_path / "m.safetensors")).stdout
    assert "Name: dropped (high-cardinality text" in report
    assert "Horsepower: numeric; 6 missing, filled: median" in report
    assert "Cylinders: categorical" in report and "Year: datetime, 7 parts (format %Y-%m-%d)" in report
    assert "406 rows, 8 columns -> " in report
    kept = succeeded(run_cli("train", path, "--target", "Origin", *QUIET, "--epochs", "1", "--keep", "Name",
                             "--drop", "Year", "--categorical", "Acceleration", "--numeric", "Cylinders",
                             "--out", tmp_path / "k.safetensors")).stdout
    assert "Name: categorical" in kept and "Year: dropped (dropped on request)" in kept
    assert "Acceleration: categorical" in kept and "Cylinders: numeric (numeric on request)" in kept
    dates = succeeded(run_cli("train", path, "--target", "Origin", *QUIET, "--epochs", "1", "--dates", "drop",
                              "--out", tmp_path / "d.safetensors")).stdout
    assert "Year: dropped (dates, dropped on request)" in dates


def table_with_gaps(rows=120, seed=4):
    """Two classes told apart by a number and a text column, with holes and an id column."""
    rng = np.random.default_rng(seed)
    labels = np.array(["cat", "dog"])[np.arange(rows) % 2]
    size = np.where(labels == "dog", 30.0, 5.0) + rng.normal(size=rows)
    colour = np.where(labels == "dog", "brown", "grey").astype(object)
    frame = pd.DataFrame({"id": [f"pet-{index:04d}" for index in range(rows)], "size": size.round(2),
                          "colour": colour, "indoor": np.array(["yes", "no"])[rng.integers(0, 2, rows)],
                          "animal": labels.astype(object)})
    frame.loc[[3, 10, 50], "size"] = np.nan
    frame.loc[[4, 11], "colour"] = None
    frame.loc[[7, 8], "animal"] = None
    return frame


def test_rows_without_a_target_are_left_out_of_training_and_still_predicted(tmp_path):
    frame = table_with_gaps()
    path = tmp_path / "pets.csv"
    frame.to_csv(path, index=False, na_rep="NA")
    report = succeeded(run_cli("train", path, *QUIET, "--out", tmp_path / "m.safetensors")).stdout
    assert "2 rows without a 'animal' value (rows 8, 9) left out of training; predict still predicts them" in report
    assert "id: dropped (identifier: text unique per row" in report
    assert "size: numeric; 3 missing" in report and "indoor: boolean (true/false words)" in report
    assert "118 rows" not in report and "120 rows" in report
    out = tmp_path / "p.csv"
    succeeded(run_cli("predict", tmp_path / "m.safetensors", path, "--out", out))
    _, rows = predictions(out)
    assert len(rows) == 120
    predicted = np.array([row[0] for row in rows])
    known = frame["animal"].notna().to_numpy()
    assert np.mean(predicted[known] == frame["animal"][known].to_numpy()) >= 0.95
    assert predicted[7] == "dog" and predicted[8] == "cat"  # rows 8 and 9, by their features
    evaluated = succeeded(run_cli("evaluate", tmp_path / "m.safetensors", path)).stdout
    assert "notice: 2 rows without a 'animal' value" in evaluated and "118" in evaluated


def test_missing_drop_leaves_incomplete_rows_out(tmp_path):
    frame = table_with_gaps()
    path = tmp_path / "pets.csv"
    frame.to_csv(path, index=False)
    report = succeeded(run_cli("train", path, *QUIET, "--missing", "drop", "--out", tmp_path / "m.safetensors")).stdout
    assert "5 rows with a missing value left out (--missing drop)" in report
    assert "size: numeric\n" in report  # no gaps counted, no indicator
    model = ft.load(tmp_path / "m.safetensors", device="cpu")
    assert "size:missing" not in model.preprocessor.feature_names
    # A gap at predict time is still imputed.
    assert model.predict_classes(frame.head(12)).shape == (12,)


@pytest.mark.parametrize("dialect", ["semicolon", "tab", "bom-crlf", "quoted", "bar"])
def test_csv_dialects(dialect, tmp_path):
    frame = table_with_gaps(60).drop(columns=["id"])
    frame["colour"] = frame["colour"].map({"brown": "brown, dark", "grey": 'grey "light"', None: None})
    path = tmp_path / "pets.csv"
    if dialect == "semicolon":
        frame.to_csv(path, index=False, sep=";")
    elif dialect == "tab":
        frame.to_csv(path, index=False, sep="\t")
    elif dialect == "bar":
        frame.to_csv(path, index=False, sep="|")
    elif dialect == "bom-crlf":
        path.write_bytes(b"\xef\xbb\xbf" + frame.to_csv(index=False, lineterminator="\r\n").encode())
    else:
        frame.to_csv(path, index=False, quoting=csv.QUOTE_ALL)
    report = succeeded(run_cli("train", path, *QUIET, "--epochs", "30", "--out", tmp_path / "m.safetensors")).stdout
    assert "3 columns -> " in report and "colour: categorical, 2 categories" in report
    model = ft.load(tmp_path / "m.safetensors", device="cpu")
    assert model.preprocessor.input_columns == ["size", "colour", "indoor"]
    assert sorted(model.preprocessor.columns[1].categories) == ['brown, dark', 'grey "light"']


def test_parquet_keeps_its_types(tmp_path):
    pytest.importorskip("pyarrow")
    frame = table_with_gaps().drop(columns=["id"])
    frame["seen"] = pd.date_range("2024-01-01", periods=len(frame), freq="D")
    frame["indoor"] = frame["indoor"] == "yes"
    path = tmp_path / "pets.parquet"
    frame.to_parquet(path)
    report = succeeded(run_cli("train", path, "--target", "animal", *QUIET, "--out", tmp_path / "m.safetensors")).stdout
    assert "seen: datetime" in report and "indoor: boolean" in report
    out = tmp_path / "p.csv"
    succeeded(run_cli("predict", tmp_path / "m.safetensors", path, "--out", out))
    assert len(predictions(out)[1]) == len(frame)
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    one_line_error(run_cli("train", tmp_path / "bad.parquet", *QUIET), "bad.parquet: not a readable Parquet file")


def test_predict_on_raw_rows_with_new_values_and_mistakes(tmp_path):
    frame = table_with_gaps()
    path = tmp_path / "pets.csv"
    frame.to_csv(path, index=False)
    model = tmp_path / "m.safetensors"
    succeeded(run_cli("train", path, *QUIET, "--out", model))
    new = frame.drop(columns=["animal"]).head(5).copy()
    new.loc[0, "colour"] = "purple"
    new.loc[1, "size"] = np.nan
    new.loc[2, "indoor"] = None
    new.to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "p.csv"
    succeeded(run_cli("predict", model, tmp_path / "new.csv", "--out", out))
    assert len(predictions(out)[1]) == 5
    new.drop(columns=["colour"]).to_csv(tmp_path / "no_colour.csv", index=False)
    one_line_error(run_cli("predict", model, tmp_path / "no_colour.csv", "--out", out),
                   "no_colour.csv: no column named 'colour'; the model reads the columns 'size', 'colour', 'indoor'")
    new.assign(size="big").to_csv(tmp_path / "text_size.csv", index=False)
    one_line_error(run_cli("predict", model, tmp_path / "text_size.csv", "--out", out),
                   "text_size.csv: the column 'size' holds 'big' at row 1; it was numeric in training")
    one_line_error(run_cli("train", path, *QUIET, "--keep", "nothing"), "pets.csv: no column named 'nothing'")
    one_line_error(run_cli("train", path, *QUIET, "--keep", "size", "--drop", "size"),
                   "pets.csv: keep, drop: the column 'size' is named in both")


def run_in_process(*arguments):
    """fusedtrain's main() in this process, as run_cli's result (for mistakes found before
    training, and to change what this process can import)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            status = main([str(argument) for argument in arguments])
        except SystemExit as exit_:
            status = exit_.code
    return subprocess.CompletedProcess(arguments, status, stdout.getvalue(), stderr.getvalue())


def write_npz(path):
    np.savez(path, x=np.arange(12.0).reshape(6, 2), y=np.arange(6) % 2)


def write_parquet(frame):
    def write(path):
        pytest.importorskip("pyarrow")
        frame.to_parquet(path)
    return write


@pytest.mark.parametrize("name, write, options, message", [
    ("one.csv", lambda path: path.write_text("label\n1\n2\n1\n"), [],
     "one.csv: no feature columns besides the target 'label'"),
    ("dropped.csv", lambda path: path.write_text("a,label\n" + "".join(f"{row},{row % 2}\n" for row in range(20))),
     ["--drop", "a"], "dropped.csv: no usable feature column (a: dropped (dropped on request))"),
    ("unlabeled.csv", lambda path: path.write_text("a,label\n1,\n2,NA\n3,?\n"), [],
     "unlabeled.csv: the target column 'label' has no values"),
    ("arrays.npz", write_npz, ["--categorical", "a"],
     "--categorical: names columns of a CSV or Parquet file; "),
    ("arrays.npz", write_npz, ["--drop", "a"], "arrays.npz has none"),
    ("nameless.csv", lambda path: path.write_text("a,,label\n1,2,0\n3,4,1\n"), [],
     "nameless.csv: column 2 of the header has no name"),
    ("nameless.csv", lambda path: path.write_text("a, ,label\n1,2,0\n3,4,1\n"), [],
     "nameless.csv: column 2 of the header has no name"),
    ("rowless.parquet", write_parquet(pd.DataFrame({"a": pd.Series([], dtype=float),
                                                    "label": pd.Series([], dtype=str)})),
     [], "rowless.parquet: no rows"),
    ("columnless.parquet", write_parquet(pd.DataFrame(index=range(3))), [], "columnless.parquet: no columns"),
])
def test_table_mistakes_are_one_line_naming_the_file_and_column(tmp_path, name, write, options, message):
    path = tmp_path / name
    write(path)
    one_line_error(run_in_process("train", path, *QUIET, "--out", tmp_path / "m.safetensors", *options), message)
    assert not (tmp_path / "m.safetensors").exists()


def test_parquet_without_pyarrow_says_what_to_install(tmp_path, monkeypatch):
    # The file is never opened by pandas without an engine, so its bytes do not matter.
    path = tmp_path / "pets.parquet"
    path.write_bytes(b"PAR1" + bytes(16) + b"PAR1")
    for engine in ("pyarrow", "fastparquet"):
        monkeypatch.setitem(sys.modules, engine, None)  # import fails as if not installed
    one_line_error(run_in_process("train", path, *QUIET),
                   "pets.parquet: reading Parquet files needs pyarrow (pip install pyarrow)")


def test_more_than_100_categories_are_dropped_unless_kept(tmp_path):
    # 101 words, eight rows each: only the cap of 100 categories decides (not the share of
    # rows); --keep keeps the 100 most frequent in the training rows, the other goes to (unknown).
    words = np.random.default_rng(1).permutation(np.repeat([f"w{index:03d}" for index in range(101)], 8))
    frame = pd.DataFrame({"word": words, "size": np.arange(words.size) % 5 + 0.5,
                          "label": np.array(["a", "b"])[np.arange(words.size) % 2]})
    path = tmp_path / "words.csv"
    frame.to_csv(path, index=False)
    report = succeeded(run_cli("train", path, *QUIET, "--epochs", "1", "--out", tmp_path / "m.safetensors")).stdout
    assert "word: dropped (high-cardinality text, 101 distinct values in 808 rows; keep it with keep=)" in report
    kept = succeeded(run_cli("train", path, *QUIET, "--epochs", "1", "--keep", "word",
                             "--out", tmp_path / "k.safetensors")).stdout
    assert "word: categorical, 100 categories (kept on request)" in kept
    preprocessor = ft.load(tmp_path / "k.safetensors", device="cpu").preprocessor
    left_out = sorted(set(words) - set(preprocessor.columns[0].categories))
    assert len(left_out) == 1
    x = preprocessor.transform(pd.DataFrame({"word": left_out, "size": [1.5]}))
    assert x[0, preprocessor.feature_names.index("word=(unknown)")] == 1.0
