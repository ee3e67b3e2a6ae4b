"""CSVLogger, TensorBoard and MLflowLogger: a CSV row per epoch (append across a resume), event
files that TensorBoard's own reader reads back in Keras' layout, and an MLflow run holding the
params, the per-epoch metrics and a model file that loads; the CLI's --tensorboard and the
plot's marks."""

import csv
import json
import os
import sys

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import callbacks, layers

EPOCHS = 4


def data(rows=60, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, 5)).astype(np.float32)
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)


def model(seed=0):
    network = ft.Sequential([layers.Dense(8, activation="relu"), layers.Dense(2)], input_dim=5, seed=seed)
    network.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return network


def read_rows(path, separator=","):
    with open(path, newline="") as handle:
        return list(csv.reader(handle, delimiter=separator))


# ---- CSVLogger --------------------------------------------------------------------------------

def test_csv_logger_writes_a_row_per_epoch_with_every_logged_value(tmp_path):
    x, y = data()
    path = tmp_path / "logs" / "training.csv"
    history = model().fit(x, y, epochs=EPOCHS, batch_size=16, validation_split=0.25, verbose=0,
                          callbacks=[callbacks.CSVLogger(path)])
    rows = read_rows(path)
    assert rows[0] == ["epoch", "accuracy", "loss", "lr", "val_accuracy", "val_loss"]
    assert [row[0] for row in rows[1:]] == [str(epoch) for epoch in range(EPOCHS)]
    for column, name in enumerate(rows[0][1:], start=1):
        np.testing.assert_allclose([float(row[column]) for row in rows[1:]], history.history[name], rtol=1e-12)


def test_csv_logger_flushes_each_epoch(tmp_path):
    x, y = data()
    path = tmp_path / "live.csv"
    seen = []

    class Reader(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(len(read_rows(path)))

    model().fit(x, y, epochs=3, verbose=0, callbacks=[callbacks.CSVLogger(path), Reader()])
    assert seen == [2, 3, 4]


def test_csv_logger_appends_across_a_resume_and_restarts_without_append(tmp_path):
    x, y = data()
    path, checkpoint = tmp_path / "log.tsv", tmp_path / "state.safetensors"
    first = model()
    first.fit(x, y, epochs=2, verbose=0, seed=1, callbacks=[
        callbacks.CSVLogger(path, separator="\t", append=True),
        callbacks.ModelCheckpoint(checkpoint, save_training_state=True, monitor="loss")])
    resumed = model()
    resumed.fit(x, y, epochs=5, verbose=0, resume=checkpoint, callbacks=[
        callbacks.CSVLogger(path, separator="\t", append=True),
        callbacks.ModelCheckpoint(checkpoint, save_training_state=True, monitor="loss")])
    rows = read_rows(path, "\t")
    assert rows[0] == ["epoch", "accuracy", "loss", "lr"]
    assert [row[0] for row in rows[1:]] == ["0", "1", "2", "3", "4"]
    model().fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.CSVLogger(path, separator="\t")])
    assert [row[0] for row in read_rows(path, "\t")] == ["epoch", "0"]


def test_csv_logger_writes_na_for_a_value_missing_from_an_epoch(tmp_path):
    logger = callbacks.CSVLogger(tmp_path / "na.csv")
    logger.on_train_begin()
    logger.on_epoch_end(0, {"loss": 0.5, "val_loss": 0.75})
    logger.on_epoch_end(1, {"loss": 0.25})
    logger.on_train_end()
    assert read_rows(tmp_path / "na.csv") == [["epoch", "loss", "val_loss"], ["0", "0.5", "0.75"], ["1", "0.25", "NA"]]


@pytest.mark.parametrize("arguments, error, message", [
    ({"filename": 3}, TypeError, r"^filename: expected a str or os.PathLike, got int"),
    ({"filename": ""}, ValueError, r"^filename: expected a path"),
    ({"filename": "a.csv", "separator": ",,"}, ValueError, r"^separator: expected one character"),
    ({"filename": "a.csv", "separator": '"'}, ValueError, r"^separator: expected one character"),
    ({"filename": "a.csv", "append": "yes"}, TypeError, r"^append: expected True or False"),
])
def test_csv_logger_arguments(arguments, error, message):
    with pytest.raises(error, match=message):
        callbacks.CSVLogger(**arguments)


# ---- TensorBoard ------------------------------------------------------------------------------

def scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0})
    accumulator.Reload()
    return accumulator


def test_tensorboard_writes_keras_layout_that_tensorboard_reads(tmp_path):
    pytest.importorskip("tensorboardX")
    x, y = data()
    history = model().fit(x, y, epochs=EPOCHS, batch_size=16, validation_split=0.25, verbose=0,
                          callbacks=[callbacks.TensorBoard(tmp_path)])
    train, validation = scalars(tmp_path / "train"), scalars(tmp_path / "validation")
    assert set(train.Tags()["scalars"]) == {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"}
    assert set(validation.Tags()["scalars"]) == {"epoch_loss", "epoch_accuracy"}
    for accumulator, prefix in ((train, ""), (validation, "val_")):
        events = accumulator.Scalars("epoch_loss")
        assert [event.step for event in events] == list(range(EPOCHS))
        np.testing.assert_allclose([event.value for event in events], history.history[prefix + "loss"], rtol=1e-6)
    np.testing.assert_allclose([event.value for event in train.Scalars("epoch_learning_rate")], [1e-3] * EPOCHS)


@pytest.mark.parametrize("update_freq, steps", [("batch", list(range(1, 13))), (5, [5, 10])])
def test_tensorboard_batch_scalars(tmp_path, update_freq, steps):
    pytest.importorskip("tensorboardX")
    x, y = data()
    model().fit(x, y, epochs=3, batch_size=15, verbose=0,
                callbacks=[callbacks.TensorBoard(tmp_path, update_freq=update_freq)])
    train = scalars(tmp_path / "train")
    assert [event.step for event in train.Scalars("batch_loss")] == steps
    assert all(np.isfinite(event.value) for event in train.Scalars("batch_accuracy"))


def test_tensorboard_histograms_of_every_weight(tmp_path):
    pytest.importorskip("tensorboardX")
    x, y = data()
    network = model()
    network.fit(x, y, epochs=4, verbose=0, callbacks=[callbacks.TensorBoard(tmp_path, histogram_freq=2)])
    train = scalars(tmp_path / "train")
    names = [layer.name for layer in network.layers]
    assert set(train.Tags()["histograms"]) == {f"{name}/{weight}" for name in names for weight in ("kernel", "bias")}
    events = train.Histograms(f"{names[0]}/kernel")
    assert [event.step for event in events] == [1, 3]
    assert events[-1].histogram_value.num == network.layers[0].kernel.size
    np.testing.assert_allclose(events[-1].histogram_value.sum, float(network.layers[0].kernel.sum(dtype=np.float64)),
                               rtol=1e-4)


def test_one_fit_with_csv_logger_and_tensorboard_logs_every_epoch_in_both(tmp_path):
    pytest.importorskip("tensorboardX")
    x, y = data()
    loggers = [callbacks.CSVLogger(tmp_path / "training.csv"), callbacks.TensorBoard(tmp_path / "runs")]
    history = model().fit(x, y, epochs=EPOCHS, batch_size=16, validation_split=0.25, verbose=0, callbacks=loggers)
    header, *rows = read_rows(tmp_path / "training.csv")
    assert [row[0] for row in rows] == [str(epoch) for epoch in range(EPOCHS)]
    for folder, name in (("train", "loss"), ("validation", "val_loss")):
        logged = [float(row[header.index(name)]) for row in rows]
        np.testing.assert_allclose(logged, history.history[name], rtol=1e-12)
        events = scalars(tmp_path / "runs" / folder).Scalars("epoch_loss")
        assert [event.step for event in events] == list(range(EPOCHS))
        np.testing.assert_allclose([event.value for event in events], logged, rtol=1e-6)


def test_tensorboard_without_tensorboardx_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(ImportError, match=r'^TensorBoard needs the tensorboardX package: pip install "fusedtrain\[tensorboard\]"$'):
        callbacks.TensorBoard("logs")


@pytest.mark.parametrize("arguments, error, message", [
    ({"update_freq": "step"}, ValueError, r"^update_freq: expected 'epoch', 'batch' or a number of batches"),
    ({"update_freq": 0}, ValueError, r"^update_freq: expected an integer >= 1"),
    ({"histogram_freq": -1}, ValueError, r"^histogram_freq: expected an integer >= 0"),
    ({"log_dir": None}, TypeError, r"^log_dir: expected a str or os.PathLike"),
])
def test_tensorboard_arguments(arguments, error, message):
    pytest.importorskip("tensorboardX")
    with pytest.raises(error, match=message):
        callbacks.TensorBoard(**arguments)


# ---- MLflow -----------------------------------------------------------------------------------

@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    # A local file store (MLflow 3 asks for an explicit opt-in to it), and artifacts under tmp_path.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.chdir(tmp_path)
    uri = (tmp_path / "mlruns").as_uri()
    mlflow.set_tracking_uri(uri)
    # A test's experiment_name= sets MLflow's active experiment, as mlflow.set_experiment does.
    mlflow.set_experiment("Default")
    yield mlflow, uri
    if mlflow.active_run() is not None:
        mlflow.end_run()


def test_mlflow_logger_logs_params_metrics_and_the_model(mlflow_store, tmp_path):
    mlflow, uri = mlflow_store
    x, y = data()
    network = model()
    logger = callbacks.MLflowLogger(run_name="digits", experiment_name="fusedtrain-tests", tracking_uri=uri)
    history = network.fit(x, y, epochs=EPOCHS, batch_size=16, validation_split=0.25, verbose=0, callbacks=[logger])
    assert mlflow.active_run() is None  # the logger started the run, so it ended it
    client = mlflow.tracking.MlflowClient(uri)
    run = client.get_run(logger.run_id)
    assert run.info.run_name == "digits" and run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "fusedtrain-tests"
    params = run.data.params
    assert params["layers"] == "Dense(8, relu), Dense(2)"
    assert params["optimizer"] == "Adam" and float(params["optimizer.learning_rate"]) == 1e-3
    assert params["batch_size"] == "16" and params["samples"] == "45" and params["loss"] == "sparse_categorical_crossentropy"
    for name in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        metrics = client.get_metric_history(logger.run_id, name)
        assert [metric.step for metric in metrics] == list(range(EPOCHS))
        np.testing.assert_allclose([metric.value for metric in metrics], history.history[name], rtol=1e-6)
    stored = client.download_artifacts(logger.run_id, "model/model.safetensors", str(tmp_path))
    np.testing.assert_array_equal(ft.load(stored).predict(x), network.predict(x))


def test_mlflow_logger_uses_the_active_run_and_leaves_it_open(mlflow_store):
    mlflow, _ = mlflow_store
    x, y = data()
    with mlflow.start_run() as run:
        mlflow.log_param("layers", "mine")
        logger = callbacks.MLflowLogger(log_model=False)
        model().fit(x, y, epochs=2, verbose=0, callbacks=[logger])
        assert mlflow.active_run().info.run_id == run.info.run_id == logger.run_id
    stored = mlflow.tracking.MlflowClient().get_run(run.info.run_id)
    assert stored.data.params["layers"] == "mine"  # the user's own param is kept
    assert stored.data.params["optimizer"] == "Adam"
    assert mlflow.tracking.MlflowClient().list_artifacts(run.info.run_id) == []


def test_mlflow_logger_without_mlflow_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ImportError, match=r'^MLflowLogger needs the mlflow package: pip install "fusedtrain\[mlflow\]"$'):
        callbacks.MLflowLogger()


# ---- the command line -------------------------------------------------------------------------

def test_cli_train_writes_tensorboard_event_files(tmp_path, capsys):
    pytest.importorskip("tensorboardX")
    from fusedtrain.__main__ import main

    x, y = data(200)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    folder = tmp_path / "runs"
    code = main(["train", str(tmp_path / "data.npz"), "--epochs", "5", "--patience", "0", "--verbose", "0",
                 "--out", str(tmp_path / "model.safetensors"), "--tensorboard", str(folder), "--no-plot"])
    assert code == 0
    assert f"tensorboard --logdir {folder}" in capsys.readouterr().out
    assert [event.step for event in scalars(folder / "train").Scalars("epoch_loss")] == list(range(5))
    assert [event.step for event in scalars(folder / "validation").Scalars("epoch_accuracy")] == list(range(5))


def test_cli_tensorboard_into_a_file_is_refused_before_training(tmp_path, capsys):
    from fusedtrain.__main__ import main

    (tmp_path / "taken").write_text("x")
    assert main(["train", "--epochs", "1", "--tensorboard", str(tmp_path / "taken"),
                 "--out", str(tmp_path / "m.safetensors")]) == 2
    assert "--tensorboard: " in capsys.readouterr().err
    assert not (tmp_path / "m.safetensors").exists()


def test_the_plot_marks_the_best_epoch_and_the_early_stop(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.axes import Axes
    from fusedtrain import cli

    marks = []
    original = Axes.axvline

    def recording(self, x=0, *args, **kwargs):
        marks.append((kwargs.get("label"), x))
        return original(self, x, *args, **kwargs)

    monkeypatch.setattr(Axes, "axvline", recording)
    history = {"loss": [1.0, 0.5, 0.4, 0.45, 0.5], "val_loss": [1.0, 0.6, 0.3, 0.5, 0.6],
               "accuracy": [0.5] * 5, "val_accuracy": [0.6] * 5}
    assert cli._write_plot(str(tmp_path / "curves.png"), history, "accuracy", 2, "t", 4) is None
    assert sorted(set(marks)) == [("best epoch", 3), ("early stop", 5)]
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    marks.clear()
    cli._write_plot(str(tmp_path / "curves.png"), history, "accuracy", 2, "t")
    assert sorted(set(marks)) == [("best epoch", 3)]


def test_cli_train_marks_the_epochs_it_kept_and_stopped_at_on_the_plot(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.axes import Axes
    from fusedtrain.__main__ import main

    lines, dots = [], []
    axvline, plot = Axes.axvline, Axes.plot

    def recording_axvline(self, x=0, *args, **kwargs):
        lines.append((kwargs.get("label"), x))
        return axvline(self, x, *args, **kwargs)

    def recording_plot(self, *args, **kwargs):
        if kwargs.get("marker") == "o":
            dots.append((list(args[0]), list(args[1])))
        return plot(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "axvline", recording_axvline)
    monkeypatch.setattr(Axes, "plot", recording_plot)
    x, y = data(200)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    # A large step and little patience: the validation loss stops improving within the epochs.
    assert main(["train", str(tmp_path / "data.npz"), "--epochs", "300", "--patience", "2", "--lr", "0.05",
                 "--verbose", "0", "--out", str(tmp_path / "model.safetensors")]) == 0
    record = json.loads((tmp_path / "history.json").read_text())
    assert record["stopped_early"] and record["epochs_run"] < 300
    best, stopped = record["best_epoch"], record["epochs_run"]
    assert stopped == best + 2
    # One mark of each on both panels (loss and accuracy), at 1-based epochs as the report gives them.
    assert sorted(lines) == [("best epoch", best)] * 2 + [("early stop", stopped)] * 2
    history = record["history"]
    assert dots == [([best], [history["val_loss"][best - 1]]), ([best], [history["val_accuracy"][best - 1]])]
    assert (tmp_path / "model.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
