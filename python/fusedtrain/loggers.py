"""Callbacks that record training where people watch it (on rank 0 alone in a world of N,
fusedtrain.distributed): CSVLogger (a CSV row per epoch),
TensorBoard (event files written with tensorboardX, laid out as Keras lays them out) and
MLflowLogger (params, per-epoch metrics and the model file in an MLflow run). They are
importable from fusedtrain.callbacks; tensorboardX and mlflow are optional dependencies,
imported when such a callback is made (``pip install "fusedtrain[tensorboard]"``,
``"fusedtrain[mlflow]"``)."""

from __future__ import annotations

import csv
import io
import math
import numbers
import os
import tempfile
from typing import Any, Dict, List, Optional

from . import _files, distributed
from .callbacks import Callback
from .ops import _checks


def _path(value: Any, name: str) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a str or os.PathLike, got {type(value).__name__}")
    path = os.fspath(value)
    if isinstance(path, bytes):
        raise TypeError(f"{name}: expected a str path, got bytes")
    if not path:
        raise ValueError(f"{name}: expected a path, got ''")
    if "\0" in path:
        raise ValueError(f"{name}: {path!r} contains a NUL character, which no file name may hold")
    return path


def _scalars(logs: Optional[Dict[str, Any]]) -> Dict[str, float]:
    """The logged numbers as floats (other values, such as strings, are left out)."""
    return {key: float(value) for key, value in (logs or {}).items()
            if isinstance(value, numbers.Real) and not isinstance(value, bool)}


def _on_main() -> bool:
    """Whether this process logs: in a world of N (fusedtrain.distributed) rank 0 alone does."""
    return distributed.world().is_main


def _optional(module: str, extra: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f'{what} needs the {module.split(".")[0]} package: pip install "fusedtrain[{extra}]"') from None


class CSVLogger(Callback):
    """Writes one CSV row per epoch, as Keras' CSVLogger: the column ``epoch`` (0-based) then
    every logged value (loss, metrics, val_*, lr) in sorted order, under a header row. The file
    is flushed at each epoch's end, so it can be read while training runs. ``append=True``
    continues an existing file (no second header when it is not empty), as a resumed run
    (``fit(..., resume=path)``) wants; ``append=False`` starts it anew at each fit. A value
    missing from an epoch's logs is written as NA."""

    def __init__(self, filename: Any, separator: str = ",", append: bool = False):
        super().__init__()
        self.filename = _path(filename, "filename")
        if not isinstance(separator, str) or len(separator) != 1 or separator in '"\r\n':
            raise ValueError(f"separator: expected one character (not a quote or a line break), got {separator!r}")
        self.separator = separator
        self.append = _checks.flag(append, "append")
        self.keys: Optional[List[str]] = None
        self._file = None
        self._writer = None

    def on_train_begin(self, logs=None):
        if not _on_main():
            return
        folder = os.path.dirname(self.filename)
        if folder:
            os.makedirs(folder, exist_ok=True)
        header = True
        self.keys = None
        if self.append:
            # A regular file only, checked before it is opened: a FIFO would block the reading
            # below, a device such as /dev/zero never end it (ValueError naming the path). A new
            # log is written as any program writes a file (a FIFO waits for its reader).
            log = io.TextIOWrapper(_files.open_appending(self.filename, "CSVLogger(append=True)"),
                                   encoding="utf-8", newline="")
            try:
                first = next(csv.reader(log, delimiter=self.separator), None)
            except BaseException:
                log.close()
                raise
            if first is not None:
                # Continue with the existing columns (a resumed run logs the same values).
                header = False
                self.keys = first[1:]
            self._file = log
        else:
            self._file = open(self.filename, "w", newline="", encoding="utf-8")
        self._header = header

    def on_epoch_end(self, epoch, logs=None):
        if not _on_main():
            return
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
        if self._writer is None:
            self._writer = csv.writer(self._file, delimiter=self.separator, lineterminator="\n")
            if self._header:
                self._writer.writerow(["epoch"] + self.keys)
        row = [epoch] + [logs[key] if key in logs else "NA" for key in self.keys]
        self._writer.writerow(row)
        self._file.flush()

    def on_train_end(self, logs=None):
        if not _on_main():
            return
        if self._file is not None:
            self._file.close()
        self._file = None
        self._writer = None


class TensorBoard(Callback):
    """Writes TensorBoard event files with tensorboardX, in Keras' layout: ``log_dir/train``
    holds ``epoch_loss``, ``epoch_<metric>`` and ``epoch_learning_rate`` per epoch, and
    ``log_dir/validation`` holds the val_* values under the same names (``epoch_loss``,
    ``epoch_<metric>``), so TensorBoard draws the training and validation curves of each
    quantity on one chart. The step of an epoch's scalars is the epoch (0-based).

    update_freq: "epoch" (the default); "batch" also writes ``batch_loss`` and
        ``batch_<metric>`` for every training batch, and an integer n for every n-th batch,
        at the global batch count (reading a batch's loss on a GPU costs a synchronisation).
    histogram_freq: every n epochs (0: never) a histogram of each weight, named
        ``<layer>/<weight>`` (``dense/kernel``), in the train run.

    The writer's files are flushed at each epoch's end and closed when training ends; a resumed
    run continues the same folders (the steps carry on from the checkpoint's epoch)."""

    def __init__(self, log_dir: Any = "logs", update_freq: Any = "epoch", histogram_freq: int = 0):
        super().__init__()
        self._writer_class = _optional("tensorboardX", "tensorboard", "TensorBoard").SummaryWriter
        self.log_dir = _path(log_dir, "log_dir")
        if isinstance(update_freq, str):
            if update_freq not in ("epoch", "batch"):
                raise ValueError(f"update_freq: expected 'epoch', 'batch' or a number of batches, got {update_freq!r}")
        else:
            update_freq = _checks.integer(update_freq, "update_freq", low=1)
        self.update_freq = 1 if update_freq == "batch" else update_freq
        self.histogram_freq = _checks.integer(histogram_freq, "histogram_freq", low=0)
        self._batches_seen = 0
        self._writers: Dict[str, Any] = {}

    def _writer(self, run: str):
        if run not in self._writers:
            self._writers[run] = self._writer_class(logdir=os.path.join(self.log_dir, run))
        return self._writers[run]

    def get_state(self):
        return {"batches_seen": self._batches_seen}

    def set_state(self, state):
        self._batches_seen = int(state["batches_seen"])

    def on_train_begin(self, logs=None):
        if not _on_main():
            return
        os.makedirs(self.log_dir, exist_ok=True)
        self._writer("train")

    def on_train_batch_end(self, batch, logs=None):
        if not _on_main():
            return
        if self.update_freq == "epoch":
            return
        self._batches_seen += 1
        if self._batches_seen % self.update_freq:
            return
        writer = self._writer("train")
        for name, value in _scalars(logs).items():
            writer.add_scalar(f"batch_{name}", value, self._batches_seen)

    def on_epoch_end(self, epoch, logs=None):
        if not _on_main():
            return
        train, validation = self._writer("train"), None
        for name, value in _scalars(logs).items():
            if name.startswith("val_"):
                validation = validation or self._writer("validation")
                validation.add_scalar(f"epoch_{name[4:]}", value, epoch)
            elif name == "lr":
                train.add_scalar("epoch_learning_rate", value, epoch)
            else:
                train.add_scalar(f"epoch_{name}", value, epoch)
        if self.histogram_freq and (epoch + 1) % self.histogram_freq == 0 and self.model is not None:
            for layer in self.model.layers:
                for name, value in layer._parameters.items():
                    train.add_histogram(f"{layer.name}/{name}", self.model.backend.to_host(value), epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        if not _on_main():
            return
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


class MLflowLogger(Callback):
    """Logs a fit to MLflow: the params when training begins (the layers, the optimizer and
    its settings, the loss, the metrics, batch size, epochs, samples, the seed and the device),
    every epoch's logged values as metrics at step = epoch, and at the end the model file
    (``model.save``, loadable with ``fusedtrain.load``) as the artifact ``model/model.safetensors``.

    It logs to the active run when there is one (``with mlflow.start_run():``); otherwise it
    starts a run (named ``run_name``, in the experiment ``experiment_name`` when given, which
    becomes MLflow's active experiment as with mlflow.set_experiment) and ends it when training
    ends. ``tracking_uri`` sets MLflow's tracking URI first (e.g. ``"sqlite:///mlflow.db"``);
    None leaves MLflow's own setting. ``log_model=False`` logs no file. A param already in the
    run (the user's own, or a resumed fit's) is kept: MLflow does not change a logged param."""

    def __init__(self, run_name: Optional[str] = None, experiment_name: Optional[str] = None,
                 tracking_uri: Optional[str] = None, log_model: bool = True):
        super().__init__()
        self._mlflow = _optional("mlflow", "mlflow", "MLflowLogger")
        for value, name in ((run_name, "run_name"), (experiment_name, "experiment_name"), (tracking_uri, "tracking_uri")):
            if value is not None and (not isinstance(value, str) or not value):
                raise TypeError(f"{name}: expected a non-empty str or None, got {value!r}")
        self.run_name = run_name
        self.experiment_name = experiment_name
        self.tracking_uri = tracking_uri
        self.log_model = _checks.flag(log_model, "log_model")
        self.run_id: Optional[str] = None
        self._started = False

    def on_train_begin(self, logs=None):
        if not _on_main():
            return
        mlflow = self._mlflow
        if self.tracking_uri is not None:
            mlflow.set_tracking_uri(self.tracking_uri)
        run = mlflow.active_run()
        self._started = run is None
        if run is None:
            if self.experiment_name is not None:
                mlflow.set_experiment(self.experiment_name)
            run = mlflow.start_run(run_name=self.run_name)
        self.run_id = run.info.run_id
        # A run's params cannot change: those already there (a resumed fit, the user's own) stay.
        existing = mlflow.get_run(self.run_id).data.params
        params = {key: value for key, value in self.training_params().items() if key not in existing}
        if params:
            mlflow.log_params(params, run_id=self.run_id)

    def training_params(self) -> Dict[str, Any]:
        """The params logged when training begins (strings and numbers)."""
        model = self.model
        params: Dict[str, Any] = {"layers": _layer_summary(model), "parameters": model.count_params(),
                                  "input_dim": model.input_dim, "loss": model.loss.name,
                                  "metrics": ",".join(metric.name for metric in model.metrics) or "none",
                                  "optimizer": type(model.optimizer).__name__, "device": model.device,
                                  "seed": model.seed}
        for key, value in model.optimizer.get_config().items():
            params[f"optimizer.{key}"] = value
        run = getattr(model, "_run", None)
        if run is not None:
            params.update({key: value for key, value in run.arguments.items()})
        # MLflow keeps a param's value as text of bounded length.
        return {key: (str(value)[:500] if value is not None else "None") for key, value in params.items()}

    def on_epoch_end(self, epoch, logs=None):
        if not _on_main():
            return
        values = {key: value for key, value in _scalars(logs).items() if math.isfinite(value)}
        if values:
            self._mlflow.log_metrics(values, step=epoch, run_id=self.run_id)

    def on_train_end(self, logs=None):
        if not _on_main():
            return
        try:
            if self.log_model and self.model is not None and self.model.built:
                with tempfile.TemporaryDirectory() as folder:
                    path = os.path.join(folder, "model.safetensors")
                    self.model.save(path)
                    self._mlflow.log_artifact(path, artifact_path="model", run_id=self.run_id)
        finally:
            if self._started:
                self._mlflow.end_run()
            self._started = False


def _layer_summary(model) -> str:
    """The layers in one line: "Normalization, Dense(64, relu), Dropout(0.2), Dense(3)"."""
    parts = []
    for layer in model.layers:
        config = layer.get_config()
        if "units" in config:
            activation = config.get("activation")
            parts.append(f"{type(layer).__name__}({config['units']}" + (f", {activation})" if activation else ")"))
        elif "rate" in config:
            parts.append(f"{type(layer).__name__}({config['rate']})")
        else:
            parts.append(type(layer).__name__)
    return ", ".join(parts)
