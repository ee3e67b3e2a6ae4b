"""Training callbacks with Keras' protocol and semantics: History, EarlyStopping,
LearningRateScheduler, ReduceLROnPlateau, ModelCheckpoint, TerminateOnNaN and ProgressLogger;
CSVLogger, TensorBoard and MLflowLogger (loggers.py) record training for the tools that show it.

A callback sees the model through a small interface: `model.stop_training` (set it to stop
after the current batch or epoch), `model.optimizer.learning_rate` (a settable float),
`model.get_weights()` / `model.set_weights(list)` (copies) and `model.save_weights(path)`,
`model.save(path)`, `model.save_checkpoint(path)` (atomic writes). Epochs are numbered from 0,
as in Keras, and printed from 1. Callbacks whose behaviour depends on past epochs expose
`get_state()` / `set_state(state)`, which training checkpoints store and restore.
"""

from __future__ import annotations

import inspect
import math
import numbers
import os
import string
import sys
import warnings
from typing import TYPE_CHECKING

import numpy as np

from .ops import _checks

if TYPE_CHECKING:
    from ._progress import ProgressLogger

__all__ = [
    "Callback",
    "CallbackList",
    "History",
    "EarlyStopping",
    "LearningRateScheduler",
    "ReduceLROnPlateau",
    "ModelCheckpoint",
    "TerminateOnNaN",
    "ProgressLogger",
    "CSVLogger",
    "TensorBoard",
    "MLflowLogger",
]

_MODES = ("auto", "min", "max")


def __getattr__(name):
    # ProgressLogger lives in _progress.py and subclasses Callback from this module; importing it
    # on first access (PEP 562) keeps every import order of the two modules free of a cycle.
    if name == "ProgressLogger":
        from ._progress import ProgressLogger

        return ProgressLogger
    if name in ("CSVLogger", "TensorBoard", "MLflowLogger"):
        from . import loggers

        return getattr(loggers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _message(text: str) -> None:
    """Prints a verbose message on stdout without breaking an open progress bar: through tqdm
    where it is imported (by a bar, or by the user's own code), else no bar can be open, and
    print does (so that ``import fusedtrain`` does not import tqdm)."""
    progress = sys.modules.get("tqdm")
    if progress is None:
        print(text)
    else:
        progress.tqdm.write(text)


def _verbosity(value) -> int:
    if isinstance(value, bool):
        return int(value)
    return _checks.integer(value, "verbose", low=0)


def _monitor_name(value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"monitor: expected the name of a logged quantity such as 'val_loss', "
                        f"got {type(value).__name__}")
    if not value:
        raise ValueError("monitor: expected the name of a logged quantity such as 'val_loss', got ''")
    return value


def _resolve_mode(mode, monitor: str) -> str:
    """'min' or 'max'. 'auto' maximises quantities whose name contains 'acc' or 'auc'
    (accuracy, val_accuracy, val_auc) and minimises everything else (losses, mae, mse)."""
    if not isinstance(mode, str) or mode not in _MODES:
        raise ValueError(f"mode: expected one of 'auto', 'min', 'max', got {mode!r}")
    if mode != "auto":
        return mode
    name = monitor.lower()
    return "max" if "acc" in name or "auc" in name else "min"


class Callback:
    """Base class of the callbacks: every hook does nothing; subclasses override the ones they
    need. `model` and `params` are set by the training loop before on_train_begin."""

    model = None
    params = None

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = dict(params)

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_batch_begin(self, batch, logs=None):
        pass

    def on_train_batch_end(self, batch, logs=None):
        pass

    def get_state(self):
        """What a training checkpoint keeps of this callback so that `fit(..., resume=path)`
        continues as if training had not stopped: a dict of numbers, strings, booleans, None
        and lists of NumPy arrays, or None (the default) for a callback whose behaviour depends
        only on the epoch and the model."""
        return None

    def set_state(self, state):
        """Restores a dict from get_state(); fit calls it after on_train_begin when resuming."""


class CallbackList:
    """Calls each hook on every callback, in the order given."""

    def __init__(self, callbacks=None, model=None, params=None):
        if isinstance(callbacks, Callback):
            raise TypeError(f"callbacks: expected a list of Callback objects, got a single "
                            f"{type(callbacks).__name__} (wrap it in a list)")
        self.callbacks = []
        self.model = None
        for callback in callbacks or ():
            self.append(callback)
        if model is not None:
            self.set_model(model)
        if params is not None:
            self.set_params(params)

    def append(self, callback):
        if not isinstance(callback, Callback):
            raise TypeError(f"callbacks[{len(self.callbacks)}]: expected a "
                            f"fusedtrain.callbacks.Callback, got {type(callback).__name__}")
        self.callbacks.append(callback)
        if self.model is not None:
            callback.set_model(self.model)

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self):
        return len(self.callbacks)

    def set_model(self, model):
        self.model = model
        for callback in self.callbacks:
            callback.set_model(model)

    def set_params(self, params):
        for callback in self.callbacks:
            callback.set_params(params)

    def on_train_begin(self, logs=None):
        for callback in self.callbacks:
            callback.on_train_begin(logs)

    def on_train_end(self, logs=None):
        for callback in self.callbacks:
            callback.on_train_end(logs)

    def on_epoch_begin(self, epoch, logs=None):
        for callback in self.callbacks:
            callback.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        for callback in self.callbacks:
            callback.on_train_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        for callback in self.callbacks:
            callback.on_train_batch_end(batch, logs)


class History(Callback):
    """Records the logs of every completed epoch: `history` maps each logged name to its list
    of per-epoch values, `epoch` lists the epoch indices, `params` holds epochs, steps and
    verbose. Both are reset when training begins, so they always describe one fit call."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for name, value in (logs or {}).items():
            # A plain float, so that later changes to the logs or to a NumPy scalar's buffer
            # never alter what was recorded.
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                value = float(value)
            self.history.setdefault(name, []).append(value)


class _MonitorCallback(Callback):
    """Shared by the callbacks that watch one logged quantity: mode resolution, the
    improvement test and the warning for a quantity missing from the logs."""

    def __init__(self, monitor, mode, min_delta):
        super().__init__()
        self.monitor = _monitor_name(monitor)
        self.mode = _resolve_mode(mode, self.monitor)
        self.min_delta = _checks.real(min_delta, "min_delta", low=0.0)

    def _is_improvement(self, current: float, reference) -> bool:
        """Better than `reference` by more than min_delta; NaN never improves, and anything
        that is not NaN improves on no reference (None)."""
        if math.isnan(current):
            return False
        if reference is None:
            return True
        if self.mode == "min":
            return current < reference - self.min_delta
        return current > reference + self.min_delta

    def _monitor_value(self, logs, purpose: str):
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            available = ", ".join(logs) or "none"
            warnings.warn(f"{purpose} is conditioned on {self.monitor!r}, which is not in the "
                          f"logs; available: {available}", UserWarning, stacklevel=3)
            return None
        try:
            return float(value)
        except (TypeError, ValueError) as error:
            raise TypeError(f"{type(self).__name__}: the logged {self.monitor!r} is not a number "
                            f"({type(value).__name__})") from error


class EarlyStopping(_MonitorCallback):
    """Stops training when the monitored quantity has stopped improving (Keras semantics).

    monitor: the logged quantity to watch. mode: "min", "max", or "auto" (max for names that
        contain "acc" or "auc", min otherwise).
    min_delta: an epoch improves only if it beats the best value so far by more than min_delta.
    patience: the number of epochs in a row without improvement after which training stops;
        0 and 1 both stop at the first epoch without improvement (as in Keras).
    baseline: if given, an epoch counts as an improvement only if it also beats the baseline
        (by more than min_delta), so training stops once `patience` epochs have passed without
        beating it.
    restore_best_weights: at the end of training, whether stopped early or not, set the model
        to the weights of the epoch with the best monitored value (if any epoch was
        monitored); the best value is tracked even while the baseline is not yet beaten.
    start_from_epoch: epochs before this one are not monitored at all (a warm-up).
    After training, `stopped_epoch` is the 0-based epoch at whose end training was stopped (0
    when it was not stopped, as in Keras), `best` the best value and `best_epoch` its epoch.
    A NaN value never counts as an improvement.
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__(monitor, mode, min_delta)
        self.patience = _checks.integer(patience, "patience", low=0)
        self.verbose = _verbosity(verbose)
        self.baseline = None if baseline is None else _checks.real(baseline, "baseline")
        self.restore_best_weights = _checks.flag(restore_best_weights, "restore_best_weights")
        self.start_from_epoch = _checks.integer(start_from_epoch, "start_from_epoch", low=0)
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_epoch = None
        self.best_weights = None
        self._stopped = False

    def on_train_begin(self, logs=None):
        self._reset()

    def get_state(self):
        return {"wait": self.wait, "stopped_epoch": self.stopped_epoch, "best": self.best,
                "best_epoch": self.best_epoch, "stopped": self._stopped, "best_weights": self.best_weights}

    def set_state(self, state):
        self.wait = state["wait"]
        self.stopped_epoch = state["stopped_epoch"]
        self.best = state["best"]
        self.best_epoch = state["best_epoch"]
        self._stopped = state["stopped"]
        weights = state["best_weights"]
        self.best_weights = None if weights is None else [np.array(array) for array in weights]

    def on_epoch_end(self, epoch, logs=None):
        if epoch < self.start_from_epoch:
            return
        current = self._monitor_value(logs, "Early stopping")
        if current is None:
            return
        beats_best = self._is_improvement(current, self.best)
        if beats_best:
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
        if beats_best and (self.baseline is None or self._is_improvement(current, self.baseline)):
            self.wait = 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self._stopped = True
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self._stopped and self.verbose > 0:
            _message(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                _message(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class LearningRateScheduler(Callback):
    """Sets the optimizer's learning rate at the start of every epoch from `schedule`, called
    as schedule(epoch, lr) -> new lr (Keras' form, lr being the current rate) or as
    schedule(epoch) -> lr (the objects of fusedtrain.schedules). The form is read from the
    signature: a schedule that accepts two positional arguments gets both."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"schedule: expected a callable schedule(epoch, lr) or schedule(epoch), "
                            f"got {type(schedule).__name__}")
        self.schedule = schedule
        self.verbose = _verbosity(verbose)
        self._takes_lr = self._accepts_learning_rate(schedule)

    @staticmethod
    def _accepts_learning_rate(schedule) -> bool:
        try:
            signature = inspect.signature(schedule)
        except (TypeError, ValueError):
            # No signature to read (some builtins and extension types): Keras' form is assumed.
            return True
        try:
            signature.bind(0, 0.0)
            return True
        except TypeError:
            pass
        try:
            signature.bind(0)
        except TypeError:
            raise TypeError(f"schedule: expected a callable taking (epoch, lr) or (epoch), got one "
                            f"with signature {signature}") from None
        return False

    def on_epoch_begin(self, epoch, logs=None):
        if self._takes_lr:
            learning_rate = self.schedule(epoch, float(self.model.optimizer.learning_rate))
        else:
            learning_rate = self.schedule(epoch)
        if isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real):
            raise TypeError(f"schedule: returned {type(learning_rate).__name__} for epoch {epoch}; "
                            f"expected a learning rate (a float)")
        learning_rate = float(learning_rate)
        if not (math.isfinite(learning_rate) and learning_rate >= 0.0):
            raise ValueError(f"schedule: returned {learning_rate} for epoch {epoch}; expected a "
                             f"finite learning rate >= 0")
        self.model.optimizer.learning_rate = learning_rate
        if self.verbose > 0:
            _message(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {learning_rate:.6g}.")


class ReduceLROnPlateau(_MonitorCallback):
    """Multiplies the learning rate by `factor` when the monitored quantity has not improved
    (by more than min_delta) for `patience` epochs, never going below min_lr; after a
    reduction, `cooldown` epochs pass before epochs without improvement are counted again
    (Keras semantics). mode as in EarlyStopping."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        super().__init__(monitor, mode, min_delta)
        self.factor = _checks.real(factor, "factor", low=0.0, high=1.0, low_open=True, high_open=True)
        self.patience = _checks.integer(patience, "patience", low=0)
        self.verbose = _verbosity(verbose)
        self.cooldown = _checks.integer(cooldown, "cooldown", low=0)
        self.min_lr = _checks.real(min_lr, "min_lr", low=0.0)
        self._reset()

    def _reset(self):
        self.best = None
        self.wait = 0
        self.cooldown_counter = 0

    def on_train_begin(self, logs=None):
        self._reset()

    def get_state(self):
        return {"best": self.best, "wait": self.wait, "cooldown_counter": self.cooldown_counter}

    def set_state(self, state):
        self.best = state["best"]
        self.wait = state["wait"]
        self.cooldown_counter = state["cooldown_counter"]

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch, logs=None):
        current = self._monitor_value(logs, "Learning rate reduction")
        if current is None:
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
            return
        if self.in_cooldown():
            return
        self.wait += 1
        if self.wait < self.patience:
            return
        old_lr = float(self.model.optimizer.learning_rate)
        # A rate already at min_lr, up to float32 rounding of the stored value, is left alone.
        if old_lr <= self.min_lr * (1.0 + 1e-6):
            return
        new_lr = max(old_lr * self.factor, self.min_lr)
        self.model.optimizer.learning_rate = new_lr
        self.cooldown_counter = self.cooldown
        self.wait = 0
        if self.verbose > 0:
            _message(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr:.6g}.")


class ModelCheckpoint(_MonitorCallback):
    """Saves the model's weights during training.

    filepath: a path, optionally with str.format fields filled from the epoch (1-based), the
        batch (1-based, with an integer save_freq) and the logs: "ckpt-{epoch:03d}-{val_loss:.4f}.safetensors".
    save_best_only: save only when `monitor` improves on the best value saved so far (strictly,
        in the direction of `mode`); with a fixed filepath the file always holds the best
        weights. The best value persists across fit calls with the same callback.
    save_weights_only: True writes model.save_weights(path); False writes model.save(path)
        (weights and architecture, loadable with fusedtrain.load). All writes are atomic (a
        temporary file in the same folder then a rename), so an interrupted save leaves the
        previous file intact.
    save_freq: "epoch", or an integer n to save every n training batches (counted across epochs).
    initial_value_threshold: with save_best_only, a value the first save must beat.
    save_training_state: True writes model.save_checkpoint(path) instead: weights,
        architecture, optimizer state, epoch, random generator states, history and the state of
        the other callbacks, from which fit(..., resume=path) continues training exactly. fit
        runs such a ModelCheckpoint after the other callbacks, so that the file holds their
        state at the end of the epoch; it needs save_freq="epoch".
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=True, mode="auto", save_freq="epoch",
                 initial_value_threshold=None, save_training_state=False):
        super().__init__(monitor, mode, 0.0)
        self.filepath = self._check_filepath(filepath)
        self.verbose = _verbosity(verbose)
        self.save_best_only = _checks.flag(save_best_only, "save_best_only")
        self.save_weights_only = _checks.flag(save_weights_only, "save_weights_only")
        if save_freq != "epoch":
            if isinstance(save_freq, str):
                raise ValueError(f"save_freq: expected 'epoch' or a number of batches, got {save_freq!r}")
            save_freq = _checks.integer(save_freq, "save_freq", low=1)
        self.save_freq = save_freq
        self.save_training_state = _checks.flag(save_training_state, "save_training_state")
        if self.save_training_state and save_freq != "epoch":
            raise ValueError(f"save_freq: a checkpoint with the training state is written at the end of an "
                             f"epoch; use save_freq='epoch' with save_training_state=True, got {save_freq!r}")
        self.best = (None if initial_value_threshold is None
                     else _checks.real(initial_value_threshold, "initial_value_threshold"))
        self._epoch = 0
        self._batches_seen = 0

    @staticmethod
    def _check_filepath(filepath) -> str:
        if not isinstance(filepath, (str, os.PathLike)):
            raise TypeError(f"filepath: expected a str or os.PathLike, got {type(filepath).__name__}")
        filepath = os.fspath(filepath)
        if isinstance(filepath, bytes):
            raise TypeError("filepath: expected a str path, got bytes")
        if not filepath:
            raise ValueError("filepath: expected a file path, got ''")
        if "\0" in filepath:
            raise ValueError(f"filepath: {filepath!r} contains a NUL character, which no file name may hold")
        try:
            fields = [field for _, field, _, _ in string.Formatter().parse(filepath) if field is not None]
        except ValueError as error:
            raise ValueError(f"filepath: {filepath!r} is not a valid format string ({error}); "
                             f"write a literal brace as '{{{{' or '}}}}'") from None
        for field in fields:
            if field == "" or field.isdigit():
                raise ValueError(f"filepath: {filepath!r} has a positional field; name the fields, "
                                 f"e.g. '{{epoch}}' or '{{val_loss:.4f}}'")
        return filepath

    def on_train_begin(self, logs=None):
        self._batches_seen = 0
        # A fixed path that can never be written is reported before the first epoch, not after it.
        if not any(field is not None for _, field, _, _ in string.Formatter().parse(self.filepath)):
            self._check_destination(self.filepath.replace("{{", "{").replace("}}", "}"))

    @staticmethod
    def _check_destination(path):
        """ValueError for a path that names a folder, or whose folder is a file."""
        if os.path.isdir(path):
            raise ValueError(f"filepath: {path!r} is a folder; name a file in it, e.g. "
                             f"{os.path.join(path, 'model.safetensors')!r}")
        folder = os.path.dirname(path)
        while folder and not os.path.exists(folder):
            folder = os.path.dirname(folder)
        if folder and not os.path.isdir(folder):
            raise ValueError(f"filepath: {path!r} is under {folder!r}, which is a file, not a folder")

    def get_state(self):
        return {"best": self.best, "batches_seen": self._batches_seen, "epoch": self._epoch}

    def set_state(self, state):
        self.best = state["best"]
        self._batches_seen = state["batches_seen"]
        self._epoch = state["epoch"]

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._batches_seen += 1
        if self._batches_seen % self.save_freq == 0:
            self._save(self._epoch, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs)

    def format_filepath(self, epoch, batch=None, logs=None) -> str:
        """The path of the file saved at the end of `epoch` (0-based) or after `batch`."""
        fields = dict(logs or {})
        fields["epoch"] = epoch + 1
        if batch is not None:
            fields["batch"] = batch + 1
        try:
            return self.filepath.format_map(fields)
        except KeyError as error:
            raise ValueError(f"filepath: the field {error.args[0]!r} of {self.filepath!r} is not "
                             f"available at epoch {epoch + 1}; available: {', '.join(fields)}") from None

    def _save(self, epoch, batch, logs):
        if not self.save_best_only:
            path = self.format_filepath(epoch, batch, logs)
            if self.verbose > 0:
                _message(f"Epoch {epoch + 1}: saving the model to {path}")
            self._write(path)
            return
        current = self._monitor_value(logs, "Saving the best model")
        if current is None:
            return
        previous = "none" if self.best is None else f"{self.best:.5g}"
        if not self._is_improvement(current, self.best):
            if self.verbose > 0:
                _message(f"Epoch {epoch + 1}: {self.monitor} did not improve from {previous}")
            return
        path = self.format_filepath(epoch, batch, logs)
        if self.verbose > 0:
            _message(f"Epoch {epoch + 1}: {self.monitor} improved from {previous} to {current:.5g}, "
                     f"saving the model to {path}")
        # Kept only once the file is written: after a failed save the next epoch is still
        # compared with the best value actually on disk. A training-state checkpoint records
        # this callback too, so it must already hold the value the file is saved for.
        previous_best, self.best = self.best, current
        try:
            self._write(path)
        except BaseException:
            self.best = previous_best
            raise

    def _write(self, path):
        self._check_destination(path)
        try:
            folder = os.path.dirname(path)
            if folder:
                os.makedirs(folder, exist_ok=True)
            if self.save_training_state:
                self.model.save_checkpoint(path)
            elif self.save_weights_only:
                self.model.save_weights(path)
            else:
                self.model.save(path)
        except OSError as error:
            if error.errno is None or error.filename == path:
                raise
            # The system's message may name a temporary file of the atomic write; the user
            # needs the path they gave. The type (PermissionError, ...) and errno are kept.
            raise type(error)(error.errno, f"filepath: ModelCheckpoint could not write the file "
                                           f"({error.strerror})", path) from error


class TerminateOnNaN(Callback):
    """Stops training when a batch's loss is NaN or infinite, with a RuntimeWarning naming the
    epoch and batch (both 1-based). fit does the same by default (terminate_on_nan=True); this
    callback is for loops that turned it off or for Keras code that lists it explicitly."""

    def __init__(self):
        super().__init__()
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(loss)
        if not math.isfinite(loss):
            warnings.warn(f"Epoch {self._epoch + 1}, batch {batch + 1}: the loss is {loss}; "
                          f"training stopped", RuntimeWarning, stacklevel=2)
            self.model.stop_training = True
