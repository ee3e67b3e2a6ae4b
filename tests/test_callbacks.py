"""Callbacks driven case by case: a small fake model implementing the callback interface and a
loop that replays scripted logs epoch by epoch, in fit's order of calls."""

import io
import os
import re
import warnings

import numpy as np
import pytest

from fusedtrain import callbacks as cb
from fusedtrain._progress import format_logs
from fusedtrain.schedules import StepDecay


class FakeOptimizer:
    def __init__(self, learning_rate, dtype=float):
        self._dtype = dtype
        self._learning_rate = dtype(learning_rate)

    @property
    def learning_rate(self):
        return float(self._learning_rate)

    @learning_rate.setter
    def learning_rate(self, value):
        self._learning_rate = self._dtype(value)


class FakeModel:
    """The model interface callbacks rely on. Training is simulated by the driver, which sets
    the weights to values unique to each epoch; save_weights is a real atomic write."""

    def __init__(self, learning_rate=0.1, lr_dtype=float):
        self.stop_training = False
        self.optimizer = FakeOptimizer(learning_rate, lr_dtype)
        self.weights = self.weights_of_epoch(-1)
        self.full_saves = []

    @staticmethod
    def weights_of_epoch(epoch):
        # Odd shapes, distinct values per epoch and per array.
        return [np.full((3, 5), epoch, np.float32), np.full(5, epoch + 0.5, np.float32)]

    def get_weights(self):
        return [array.copy() for array in self.weights]

    def set_weights(self, weights):
        self.weights = [np.array(array, copy=True) for array in weights]

    def _write_payload(self, file):
        np.savez(file, *self.weights)

    def save_weights(self, path):
        temporary = f"{path}.tmp{os.getpid()}"
        try:
            with open(temporary, "wb") as file:
                self._write_payload(file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            if os.path.exists(temporary):
                os.remove(temporary)
            raise

    def save(self, path):
        self.full_saves.append(path)
        self.save_weights(path)


def load(path):
    with np.load(path) as archive:
        return [archive[f"arr_{index}"] for index in range(len(archive.files))]


def same_weights(left, right):
    return len(left) == len(right) and all(np.array_equal(a, b) for a, b in zip(left, right))


def run(callbacks, logs_per_epoch, model=None, batches=2, batch_logs=None):
    """Replays fit's sequence of calls; epoch e's logs are logs_per_epoch[e] (a dict, or a
    float taken as val_loss) plus the lr in use. Returns (model, history)."""
    model = model or FakeModel()
    history = cb.History()
    callback_list = cb.CallbackList([history, *callbacks], model,
                                    params={"epochs": len(logs_per_epoch), "steps": batches, "verbose": 0})
    model.stop_training = False
    callback_list.on_train_begin()
    for epoch, epoch_logs in enumerate(logs_per_epoch):
        callback_list.on_epoch_begin(epoch)
        learning_rate = model.optimizer.learning_rate
        for batch in range(batches):
            callback_list.on_train_batch_begin(batch)
            model.weights = model.weights_of_epoch(epoch)
            logs = batch_logs(epoch, batch) if batch_logs else {"loss": 1.0 / (1 + batch)}
            callback_list.on_train_batch_end(batch, logs)
            if model.stop_training:
                break
        if model.stop_training:
            break
        logs = dict(epoch_logs) if isinstance(epoch_logs, dict) else {"val_loss": epoch_logs}
        logs["lr"] = learning_rate
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end()
    return model, history


def epochs_run(history):
    return len(history.epoch)


# ---------------------------------------------------------------- CallbackList and History

class Recorder(cb.Callback):
    def __init__(self, name, journal):
        super().__init__()
        self.name = name
        self.journal = journal

    def on_train_begin(self, logs=None):
        self.journal.append((self.name, "train_begin"))

    def on_epoch_begin(self, epoch, logs=None):
        self.journal.append((self.name, "epoch_begin", epoch))

    def on_train_batch_begin(self, batch, logs=None):
        self.journal.append((self.name, "batch_begin", batch))

    def on_train_batch_end(self, batch, logs=None):
        self.journal.append((self.name, "batch_end", batch))

    def on_epoch_end(self, epoch, logs=None):
        self.journal.append((self.name, "epoch_end", epoch))

    def on_train_end(self, logs=None):
        self.journal.append((self.name, "train_end"))


def test_callback_list_calls_every_hook_in_order():
    journal = []
    first, second = Recorder("a", journal), Recorder("b", journal)
    model, _ = run([first, second], [1.0], batches=1)
    assert first.model is model and second.model is model
    assert first.params == {"epochs": 1, "steps": 1, "verbose": 0}
    assert journal == [
        ("a", "train_begin"), ("b", "train_begin"),
        ("a", "epoch_begin", 0), ("b", "epoch_begin", 0),
        ("a", "batch_begin", 0), ("b", "batch_begin", 0),
        ("a", "batch_end", 0), ("b", "batch_end", 0),
        ("a", "epoch_end", 0), ("b", "epoch_end", 0),
        ("a", "train_end"), ("b", "train_end"),
    ]


def test_callback_list_validates_and_appends():
    with pytest.raises(TypeError, match=r"callbacks\[1\]: expected a fusedtrain.callbacks.Callback, got builtin"):
        cb.CallbackList([cb.History(), print])
    with pytest.raises(TypeError, match="wrap it in a list"):
        cb.CallbackList(cb.History())
    model = FakeModel()
    callback_list = cb.CallbackList(None, model)
    assert len(callback_list) == 0
    history = cb.History()
    callback_list.append(history)
    assert history.model is model and list(callback_list) == [history]


def test_base_callback_hooks_do_nothing():
    callback = cb.Callback()
    callback.set_model("model")
    for hook in ("on_train_begin", "on_train_end"):
        assert getattr(callback, hook)({"loss": 1.0}) is None
    for hook in ("on_epoch_begin", "on_epoch_end", "on_train_batch_begin", "on_train_batch_end"):
        assert getattr(callback, hook)(0, {"loss": 1.0}) is None
    assert callback.model == "model"


def test_history_records_floats_and_resets_per_training():
    history = cb.History()
    history.set_params({"epochs": 2, "steps": 3, "verbose": 1})
    logs = {"loss": np.float32(0.25), "val_loss": np.float64(0.5)}
    history.on_train_begin()
    history.on_epoch_end(0, logs)
    logs["loss"] = np.float32(9.0)
    history.on_epoch_end(1, logs)
    assert history.history == {"loss": [0.25, 9.0], "val_loss": [0.5, 0.5]}
    assert all(type(value) is float for values in history.history.values() for value in values)
    assert history.epoch == [0, 1]
    assert history.params == {"epochs": 2, "steps": 3, "verbose": 1}
    history.on_train_begin()
    assert history.history == {} and history.epoch == []


# ---------------------------------------------------------------- EarlyStopping

def test_early_stopping_patience_zero_stops_at_first_epoch_without_improvement():
    stopper = cb.EarlyStopping(patience=0)
    model, history = run([stopper], [1.0, 0.9, 0.95, 0.8])
    assert epochs_run(history) == 3 and stopper.stopped_epoch == 2
    assert model.stop_training
    assert history.history["val_loss"] == [1.0, 0.9, 0.95]


def test_early_stopping_patience_one_behaves_like_zero():
    stopper = cb.EarlyStopping(patience=1)
    _, history = run([stopper], [1.0, 0.9, 0.95, 0.8])
    assert epochs_run(history) == 3 and stopper.stopped_epoch == 2


def test_early_stopping_patience_two():
    stopper = cb.EarlyStopping(patience=2)
    _, history = run([stopper], [1.0, 0.9, 0.95, 0.92, 0.8])
    assert epochs_run(history) == 4 and stopper.stopped_epoch == 3
    assert stopper.best == 0.9 and stopper.best_epoch == 1


def test_early_stopping_improvement_resets_patience():
    stopper = cb.EarlyStopping(patience=2)
    _, history = run([stopper], [1.0, 0.9, 0.95, 0.85, 0.9, 0.91, 0.5])
    assert epochs_run(history) == 6 and stopper.stopped_epoch == 5
    assert stopper.best == 0.85 and stopper.best_epoch == 3


def test_early_stopping_runs_to_the_end_while_improving():
    stopper = cb.EarlyStopping(patience=0)
    model, history = run([stopper], [1.0, 0.9, 0.8, 0.7])
    assert epochs_run(history) == 4 and stopper.stopped_epoch == 0
    assert not model.stop_training


def test_early_stopping_min_delta_is_a_strict_absolute_threshold():
    # With min_delta 0.25 an epoch improves only if it is below best - 0.25 (values exact in
    # binary). 0.875 does not; 0.5 does; 0.25 (exactly 0.25 below 0.5) does not, and the best
    # stays 0.5, so that 0.24 improves; 0.1 does not.
    stopper = cb.EarlyStopping(patience=2, min_delta=0.25)
    _, history = run([stopper], [1.0, 0.875, 0.5, 0.25, 0.24, 0.1])
    assert epochs_run(history) == 6 and stopper.stopped_epoch == 0 and stopper.wait == 1
    assert stopper.best == 0.24 and stopper.best_epoch == 4

    stopper = cb.EarlyStopping(patience=2, min_delta=0.25)
    _, history = run([stopper], [1.0, 0.875, 0.75, 0.6])
    assert epochs_run(history) == 3 and stopper.stopped_epoch == 2
    assert stopper.best == 1.0 and stopper.best_epoch == 0


def test_early_stopping_min_delta_in_max_mode():
    stopper = cb.EarlyStopping(monitor="val_accuracy", patience=1, min_delta=0.125)
    logs = [{"val_accuracy": value} for value in (0.5, 0.625, 0.75, 0.8125)]
    _, history = run([stopper], logs)
    # 0.625 is exactly 0.125 better (no improvement): stop at epoch 1.
    assert epochs_run(history) == 2 and stopper.best == 0.5


def test_early_stopping_baseline_never_beaten_stops_after_patience():
    stopper = cb.EarlyStopping(patience=2, baseline=0.5)
    _, history = run([stopper], [1.0, 0.9, 0.8, 0.7, 0.6])
    assert epochs_run(history) == 2 and stopper.stopped_epoch == 1
    # The best value is still tracked while the baseline is not beaten.
    assert stopper.best == 0.9 and stopper.best_epoch == 1


def test_early_stopping_baseline_beaten_continues():
    stopper = cb.EarlyStopping(patience=2, baseline=0.5)
    _, history = run([stopper], [1.0, 0.4, 0.45, 0.3, 0.35, 0.36, 0.1])
    assert epochs_run(history) == 6 and stopper.stopped_epoch == 5
    assert stopper.best == 0.3


def test_early_stopping_baseline_with_patience_zero_stops_at_the_first_epoch():
    stopper = cb.EarlyStopping(patience=0, baseline=0.5)
    model, history = run([stopper], [0.7, 0.1])
    assert epochs_run(history) == 1 and model.stop_training


def test_early_stopping_baseline_in_max_mode_with_min_delta():
    # 0.8125 beats the best but the baseline 0.75 by exactly min_delta only: not an improvement.
    stopper = cb.EarlyStopping(monitor="val_accuracy", patience=2, baseline=0.75, min_delta=0.0625)
    _, history = run([stopper], [{"val_accuracy": value} for value in (0.5, 0.8125, 0.85, 0.86)])
    assert epochs_run(history) == 2 and stopper.best == 0.8125
    # 0.85 beats both by more than min_delta and resets the wait; 0.86 and 0.87 then do not.
    stopper = cb.EarlyStopping(monitor="val_accuracy", patience=2, baseline=0.75, min_delta=0.0625)
    _, history = run([stopper], [{"val_accuracy": value} for value in (0.5, 0.85, 0.86, 0.87, 0.99)])
    assert epochs_run(history) == 4 and stopper.best == 0.85 and stopper.stopped_epoch == 3


def test_restore_best_weights_on_early_stop():
    stopper = cb.EarlyStopping(patience=2, restore_best_weights=True)
    model, history = run([stopper], [1.0, 0.5, 0.7, 0.8, 0.1])
    assert epochs_run(history) == 4 and stopper.best_epoch == 1
    assert same_weights(model.weights, FakeModel.weights_of_epoch(1))


def test_restore_best_weights_without_early_stop():
    stopper = cb.EarlyStopping(patience=10, restore_best_weights=True)
    model, history = run([stopper], [1.0, 0.5, 0.7, 0.6])
    assert epochs_run(history) == 4 and not model.stop_training
    assert same_weights(model.weights, FakeModel.weights_of_epoch(1))


def test_without_restore_best_weights_the_last_weights_stay():
    stopper = cb.EarlyStopping(patience=1)
    model, _ = run([stopper], [1.0, 0.5, 0.7, 0.6])
    assert same_weights(model.weights, FakeModel.weights_of_epoch(2))
    assert stopper.best_weights is None


def test_restore_best_weights_when_the_baseline_is_never_beaten():
    stopper = cb.EarlyStopping(patience=3, baseline=0.1, restore_best_weights=True)
    model, history = run([stopper], [1.0, 0.6, 0.8, 0.9])
    assert epochs_run(history) == 3
    assert same_weights(model.weights, FakeModel.weights_of_epoch(1))


def test_restore_best_weights_does_nothing_without_a_monitored_epoch():
    stopper = cb.EarlyStopping(patience=0, restore_best_weights=True, start_from_epoch=5)
    model, history = run([stopper], [1.0, 0.5, 2.0])
    assert epochs_run(history) == 3
    assert same_weights(model.weights, FakeModel.weights_of_epoch(2))
    assert stopper.best_epoch is None


def test_start_from_epoch_ignores_the_warm_up_epochs():
    # Epochs 0-2 are better than anything later but are not monitored at all.
    stopper = cb.EarlyStopping(patience=1, start_from_epoch=3, restore_best_weights=True)
    model, history = run([stopper], [0.1, 0.2, 0.3, 1.0, 1.1, 0.9])
    assert epochs_run(history) == 5 and stopper.stopped_epoch == 4
    assert stopper.best == 1.0 and stopper.best_epoch == 3
    assert same_weights(model.weights, FakeModel.weights_of_epoch(3))


def test_start_from_epoch_does_not_warn_for_warm_up_epochs():
    stopper = cb.EarlyStopping(start_from_epoch=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run([stopper], [{"loss": 1.0}, {"loss": 0.9}])


def test_mode_max_for_accuracy():
    stopper = cb.EarlyStopping(monitor="val_accuracy", mode="max", patience=2)
    logs = [{"val_accuracy": value} for value in (0.5, 0.6, 0.55, 0.58, 0.7)]
    _, history = run([stopper], logs)
    assert epochs_run(history) == 4 and stopper.best == 0.6


def test_mode_auto_infers_the_direction():
    assert cb.EarlyStopping(monitor="val_accuracy").mode == "max"
    assert cb.EarlyStopping(monitor="accuracy").mode == "max"
    assert cb.EarlyStopping(monitor="val_acc").mode == "max"
    assert cb.EarlyStopping(monitor="val_auc").mode == "max"
    assert cb.EarlyStopping(monitor="val_loss").mode == "min"
    assert cb.EarlyStopping(monitor="loss").mode == "min"
    assert cb.EarlyStopping(monitor="val_mae").mode == "min"
    assert cb.EarlyStopping(monitor="val_accuracy", mode="min").mode == "min"
    # Auto on accuracy behaves exactly like explicit max.
    logs = [{"val_accuracy": value} for value in (0.5, 0.6, 0.55, 0.58, 0.7)]
    stopper = cb.EarlyStopping(monitor="val_accuracy", patience=2)
    _, history = run([stopper], logs)
    assert epochs_run(history) == 4 and stopper.best == 0.6


def test_mode_min_on_accuracy_is_respected():
    stopper = cb.EarlyStopping(monitor="val_accuracy", mode="min", patience=0)
    _, history = run([stopper], [{"val_accuracy": 0.5}, {"val_accuracy": 0.6}])
    assert epochs_run(history) == 2 and stopper.stopped_epoch == 1


def test_missing_monitor_warns_with_the_available_keys():
    stopper = cb.EarlyStopping(monitor="val_loss", patience=0)
    with pytest.warns(UserWarning, match=r"'val_loss'.*available: loss, accuracy, lr"):
        model, history = run([stopper], [{"loss": 1.0, "accuracy": 0.5}, {"loss": 2.0, "accuracy": 0.4}])
    assert epochs_run(history) == 2 and not model.stop_training


def test_nan_never_counts_as_an_improvement():
    stopper = cb.EarlyStopping(patience=2, restore_best_weights=True)
    model, history = run([stopper], [1.0, float("nan"), float("nan"), 0.5])
    assert epochs_run(history) == 3 and stopper.best == 1.0
    assert same_weights(model.weights, FakeModel.weights_of_epoch(0))
    stopper = cb.EarlyStopping(patience=2)
    _, history = run([stopper], [float("nan"), 1.0, 2.0])
    assert stopper.best == 1.0 and stopper.best_epoch == 1 and epochs_run(history) == 3


def test_early_stopping_state_resets_between_trainings():
    stopper = cb.EarlyStopping(patience=0, restore_best_weights=True)
    run([stopper], [0.1, 0.5])
    model, history = run([stopper], [1.0, 0.9, 0.8])
    assert epochs_run(history) == 3 and stopper.stopped_epoch == 0 and stopper.best == 0.8
    assert same_weights(model.weights, FakeModel.weights_of_epoch(2))


def test_early_stopping_verbose_messages(capsys):
    stopper = cb.EarlyStopping(patience=1, restore_best_weights=True, verbose=1)
    run([stopper], [1.0, 0.5, 0.7, 0.8])
    out = capsys.readouterr().out
    assert "Epoch 3: early stopping" in out
    assert "Restoring model weights from the end of the best epoch: 2." in out
    run([cb.EarlyStopping(patience=1)], [1.0, 0.5, 0.7])
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("kwargs, error, argument", [
    ({"patience": -1}, ValueError, "patience"),
    ({"patience": 1.5}, TypeError, "patience"),
    ({"patience": True}, TypeError, "patience"),
    ({"min_delta": -0.1}, ValueError, "min_delta"),
    ({"min_delta": float("nan")}, ValueError, "min_delta"),
    ({"min_delta": "0"}, TypeError, "min_delta"),
    ({"mode": "maximum"}, ValueError, "mode"),
    ({"mode": None}, ValueError, "mode"),
    ({"monitor": 3}, TypeError, "monitor"),
    ({"monitor": ""}, ValueError, "monitor"),
    ({"baseline": "0.5"}, TypeError, "baseline"),
    ({"baseline": float("inf")}, ValueError, "baseline"),
    ({"restore_best_weights": 1}, TypeError, "restore_best_weights"),
    ({"start_from_epoch": -1}, ValueError, "start_from_epoch"),
    ({"verbose": -1}, ValueError, "verbose"),
])
def test_early_stopping_arguments_are_validated(kwargs, error, argument):
    with pytest.raises(error, match=argument):
        cb.EarlyStopping(**kwargs)


def test_non_numeric_monitor_value_is_a_clear_error():
    with pytest.raises(TypeError, match="'val_loss' is not a number"):
        run([cb.EarlyStopping()], [{"val_loss": "low"}])


# ---------------------------------------------------------------- ReduceLROnPlateau

def lrs_used(history):
    return history.history["lr"]


def test_reduce_lr_after_patience_epochs_without_improvement():
    reducer = cb.ReduceLROnPlateau(factor=0.5, patience=2, min_delta=0.0)
    model, history = run([reducer], [1.0] * 7, model=FakeModel(0.1))
    # Epoch 0 sets the best; epochs 1-2 do not improve, so epoch 3 runs at 0.05, and so on.
    assert lrs_used(history) == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025], rel=1e-15)
    assert model.optimizer.learning_rate == pytest.approx(0.0125, rel=1e-15)


def test_reduce_lr_improvement_resets_the_wait():
    reducer = cb.ReduceLROnPlateau(factor=0.5, patience=2, min_delta=0.0)
    _, history = run([reducer], [1.0, 1.0, 0.9, 1.0, 1.0, 1.0], model=FakeModel(0.2))
    assert lrs_used(history) == pytest.approx([0.2, 0.2, 0.2, 0.2, 0.2, 0.1], rel=1e-15)


def test_reduce_lr_min_delta():
    # Gains of 0.03 and 0.04 on the best (1.0) are below min_delta=0.05 and do not count.
    reducer = cb.ReduceLROnPlateau(factor=0.5, patience=1, min_delta=0.05)
    _, history = run([reducer], [1.0, 0.97, 0.96, 0.8, 0.77], model=FakeModel(0.4))
    assert lrs_used(history) == pytest.approx([0.4, 0.4, 0.2, 0.1, 0.1], rel=1e-15)
    assert reducer.best == 0.8


def test_reduce_lr_cooldown():
    # patience 1, cooldown 2 (Keras): after a reduction at the end of epoch 1, epoch 2 is in
    # cooldown and not counted, epoch 3 counts again and reduces; then epoch 5.
    reducer = cb.ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2, min_delta=0.0)
    _, history = run([reducer], [1.0] * 7, model=FakeModel(1.0))
    assert lrs_used(history) == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125]
    reducer = cb.ReduceLROnPlateau(factor=0.5, patience=1, cooldown=0, min_delta=0.0)
    _, history = run([reducer], [1.0] * 5, model=FakeModel(1.0))
    assert lrs_used(history) == [1.0, 1.0, 0.5, 0.25, 0.125]


def test_reduce_lr_improvement_during_cooldown_updates_the_best():
    reducer = cb.ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2, min_delta=0.0)
    # The reduction after epoch 1 starts a cooldown; epoch 2 improves during it (best 0.5);
    # epoch 3, out of cooldown, does not improve and reduces again.
    _, history = run([reducer], [1.0, 1.0, 0.5, 0.6, 0.6], model=FakeModel(1.0))
    assert reducer.best == 0.5
    assert lrs_used(history) == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_reduce_lr_stops_at_min_lr():
    reducer = cb.ReduceLROnPlateau(factor=0.1, patience=0, min_lr=0.005, min_delta=0.0)
    model, history = run([reducer], [1.0] * 5, model=FakeModel(0.1))
    assert lrs_used(history) == pytest.approx([0.1, 0.1, 0.01, 0.005, 0.005], rel=1e-15)
    assert model.optimizer.learning_rate == 0.005


def test_reduce_lr_at_min_lr_with_a_float32_learning_rate(capsys):
    # The optimizer stores float32: reading back min_lr gives float32(1e-4) != 1e-4, which
    # must still count as "already at min_lr" (no further reduction, no message).
    reducer = cb.ReduceLROnPlateau(factor=0.5, patience=0, min_lr=1e-4, min_delta=0.0, verbose=1)
    model = FakeModel(4e-4, lr_dtype=np.float32)
    _, history = run([reducer], [1.0] * 6, model=model)
    assert lrs_used(history)[-1] == pytest.approx(1e-4, rel=1e-7)
    assert capsys.readouterr().out.count("reducing learning rate") == 2


def test_reduce_lr_mode_max_for_accuracy():
    reducer = cb.ReduceLROnPlateau(monitor="val_accuracy", factor=0.5, patience=1, min_delta=0.0)
    assert reducer.mode == "max"
    logs = [{"val_accuracy": value} for value in (0.5, 0.6, 0.55, 0.7, 0.65)]
    _, history = run([reducer], logs, model=FakeModel(1.0))
    assert lrs_used(history) == [1.0, 1.0, 1.0, 0.5, 0.5]


def test_reduce_lr_missing_monitor_warns():
    reducer = cb.ReduceLROnPlateau(patience=0)
    with pytest.warns(UserWarning, match=r"'val_loss'.*available: loss, lr"):
        model, _ = run([reducer], [{"loss": 1.0}, {"loss": 1.0}], model=FakeModel(0.1))
    assert model.optimizer.learning_rate == 0.1


def test_reduce_lr_verbose_message(capsys):
    reducer = cb.ReduceLROnPlateau(factor=0.5, patience=0, verbose=1)
    run([reducer], [1.0, 1.0], model=FakeModel(0.1))
    assert "Epoch 2: ReduceLROnPlateau reducing learning rate to 0.05." in capsys.readouterr().out


def test_reduce_lr_state_resets_between_trainings():
    reducer = cb.ReduceLROnPlateau(factor=0.5, patience=1, cooldown=3, min_delta=0.0)
    run([reducer], [0.1, 0.1, 0.1], model=FakeModel(1.0))
    _, history = run([reducer], [1.0, 1.0, 1.0], model=FakeModel(1.0))
    assert lrs_used(history) == [1.0, 1.0, 0.5]


@pytest.mark.parametrize("kwargs, error, argument", [
    ({"factor": 1.0}, ValueError, "factor"),
    ({"factor": 2.0}, ValueError, "factor"),
    ({"factor": 0.0}, ValueError, "factor"),
    ({"factor": "0.5"}, TypeError, "factor"),
    ({"patience": -1}, ValueError, "patience"),
    ({"cooldown": -1}, ValueError, "cooldown"),
    ({"cooldown": 0.5}, TypeError, "cooldown"),
    ({"min_lr": -1e-3}, ValueError, "min_lr"),
    ({"min_delta": -1e-3}, ValueError, "min_delta"),
    ({"mode": "up"}, ValueError, "mode"),
    ({"monitor": None}, TypeError, "monitor"),
])
def test_reduce_lr_arguments_are_validated(kwargs, error, argument):
    with pytest.raises(error, match=argument):
        cb.ReduceLROnPlateau(**kwargs)


# ---------------------------------------------------------------- LearningRateScheduler

def test_scheduler_keras_two_argument_form():
    scheduler = cb.LearningRateScheduler(lambda epoch, lr: lr if epoch < 2 else lr * 0.5)
    model, history = run([scheduler], [1.0] * 5, model=FakeModel(0.8))
    assert lrs_used(history) == [0.8, 0.8, 0.4, 0.2, 0.1]
    assert model.optimizer.learning_rate == 0.1


def test_scheduler_one_argument_schedule_objects():
    scheduler = cb.LearningRateScheduler(StepDecay(0.1, drop_rate=0.5, epochs_per_drop=2))
    _, history = run([scheduler], [1.0] * 5, model=FakeModel(123.0))
    assert lrs_used(history) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025], rel=1e-15)


def test_scheduler_one_argument_function():
    def schedule(epoch):
        return 0.01 * (epoch + 1)

    _, history = run([cb.LearningRateScheduler(schedule)], [1.0] * 3, model=FakeModel(5.0))
    assert lrs_used(history) == pytest.approx([0.01, 0.02, 0.03], rel=1e-15)


def test_scheduler_prefers_the_two_argument_form_when_both_fit():
    seen = []

    def schedule(epoch, lr=None):
        seen.append(lr)
        return 0.5

    run([cb.LearningRateScheduler(schedule)], [1.0, 1.0], model=FakeModel(0.25))
    assert seen == [0.25, 0.5]


def test_scheduler_does_not_hide_a_type_error_inside_the_schedule():
    calls = []

    def schedule(epoch, lr):
        calls.append(epoch)
        return lr + "x"

    with pytest.raises(TypeError, match="unsupported operand"):
        run([cb.LearningRateScheduler(schedule)], [1.0])
    assert calls == [0]


def test_scheduler_numpy_result_and_zero_are_accepted():
    scheduler = cb.LearningRateScheduler(lambda epoch: np.float32(0.0) if epoch else np.float64(0.5))
    model, history = run([scheduler], [1.0, 1.0])
    assert lrs_used(history) == [0.5, 0.0]
    assert type(model.optimizer.learning_rate) is float


@pytest.mark.parametrize("result, error, match", [
    ("0.1", TypeError, "returned str for epoch 0"),
    (None, TypeError, "returned NoneType for epoch 0"),
    (True, TypeError, "returned bool"),
    (float("nan"), ValueError, "returned nan for epoch 0"),
    (-0.1, ValueError, "finite learning rate >= 0"),
    (float("inf"), ValueError, "returned inf"),
])
def test_scheduler_rejects_bad_results(result, error, match):
    with pytest.raises(error, match=match):
        run([cb.LearningRateScheduler(lambda epoch: result)], [1.0])


def test_scheduler_arguments_are_validated():
    with pytest.raises(TypeError, match="schedule: expected a callable"):
        cb.LearningRateScheduler(0.1)
    with pytest.raises(TypeError, match=r"schedule: expected a callable taking \(epoch, lr\) or \(epoch\)"):
        cb.LearningRateScheduler(lambda epoch, lr, extra: lr)
    with pytest.raises(TypeError, match="schedule: expected a callable taking"):
        cb.LearningRateScheduler(lambda: 0.1)
    with pytest.raises(ValueError, match="verbose"):
        cb.LearningRateScheduler(StepDecay(0.1), verbose=-2)


def test_scheduler_verbose_message(capsys):
    run([cb.LearningRateScheduler(StepDecay(0.1), verbose=1)], [1.0])
    assert "Epoch 1: LearningRateScheduler setting learning rate to 0.1." in capsys.readouterr().out


# ---------------------------------------------------------------- ModelCheckpoint

class FileProbe(cb.Callback):
    """Reads the checkpoint file after every epoch (placed after the ModelCheckpoint)."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.contents = []

    def on_epoch_end(self, epoch, logs=None):
        self.contents.append(load(self.path) if os.path.exists(self.path) else None)


def test_checkpoint_every_epoch_with_formatted_names(tmp_path):
    pattern = str(tmp_path / "w-{epoch:02d}-{val_loss:.3f}.npz")
    checkpoint = cb.ModelCheckpoint(pattern)
    run([checkpoint], [0.5, 0.25, 0.75])
    names = sorted(os.listdir(tmp_path))
    assert names == ["w-01-0.500.npz", "w-02-0.250.npz", "w-03-0.750.npz"]
    for epoch, name in enumerate(names):
        assert same_weights(load(tmp_path / name), FakeModel.weights_of_epoch(epoch))


def test_checkpoint_every_epoch_same_file_holds_the_last_epoch(tmp_path):
    path = tmp_path / "last.npz"
    probe = FileProbe(path)
    run([cb.ModelCheckpoint(path), probe], [0.5, 0.25, 0.75])
    for epoch, content in enumerate(probe.contents):
        assert same_weights(content, FakeModel.weights_of_epoch(epoch))
    assert os.listdir(tmp_path) == ["last.npz"]


def test_checkpoint_best_only_keeps_the_best_file_unchanged(tmp_path):
    path = tmp_path / "best.npz"
    probe = FileProbe(str(path))
    checkpoint = cb.ModelCheckpoint(str(path), save_best_only=True)
    run([checkpoint, probe], [1.0, 0.5, 0.7, 0.6, 0.4])
    best_epoch_per_epoch = [0, 1, 1, 1, 4]
    for content, best_epoch in zip(probe.contents, best_epoch_per_epoch):
        assert same_weights(content, FakeModel.weights_of_epoch(best_epoch))
    assert checkpoint.best == 0.4


def test_checkpoint_best_only_file_untouched_when_worse(tmp_path):
    path = tmp_path / "best.npz"
    checkpoint = cb.ModelCheckpoint(path, save_best_only=True)
    run([checkpoint], [0.5])
    before = (path.read_bytes(), os.stat(path).st_mtime_ns, os.stat(path).st_ino)
    # Training again continues from the best value on disk (Keras): worse epochs never write.
    run([checkpoint], [0.6, 0.7])
    assert (path.read_bytes(), os.stat(path).st_mtime_ns, os.stat(path).st_ino) == before


def test_checkpoint_best_only_with_formatted_names(tmp_path):
    checkpoint = cb.ModelCheckpoint(tmp_path / "ckpt-{epoch}-{val_loss:.2f}.npz", save_best_only=True)
    run([checkpoint], [1.0, 0.5, 0.7, 0.25])
    assert sorted(os.listdir(tmp_path)) == ["ckpt-1-1.00.npz", "ckpt-2-0.50.npz", "ckpt-4-0.25.npz"]


def test_checkpoint_best_only_accuracy_is_maximised(tmp_path):
    checkpoint = cb.ModelCheckpoint(tmp_path / "acc-{epoch}.npz", monitor="val_accuracy", save_best_only=True)
    assert checkpoint.mode == "max"
    run([checkpoint], [{"val_accuracy": value} for value in (0.5, 0.4, 0.6, 0.6)])
    assert sorted(os.listdir(tmp_path)) == ["acc-1.npz", "acc-3.npz"]


def test_checkpoint_initial_value_threshold(tmp_path):
    checkpoint = cb.ModelCheckpoint(tmp_path / "c-{epoch}.npz", save_best_only=True, initial_value_threshold=0.6)
    run([checkpoint], [1.0, 0.7, 0.5])
    assert os.listdir(tmp_path) == ["c-3.npz"]


def test_checkpoint_failed_save_leaves_the_previous_best_intact(tmp_path, monkeypatch):
    path = tmp_path / "best.npz"
    checkpoint = cb.ModelCheckpoint(path, save_best_only=True)
    model = FakeModel()
    run([checkpoint], [1.0], model=model)
    saved = path.read_bytes()

    def write_half_then_fail(file):
        buffer = io.BytesIO()
        np.savez(buffer, *model.weights)
        file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(model, "_write_payload", write_half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        run([checkpoint], [0.5], model=model)
    assert path.read_bytes() == saved
    assert same_weights(load(path), FakeModel.weights_of_epoch(0))
    assert os.listdir(tmp_path) == ["best.npz"]
    # The failed epoch was not recorded as the best: a later, smaller improvement still saves.
    assert checkpoint.best == 1.0
    monkeypatch.undo()
    run([checkpoint], [0.8], model=model)
    assert same_weights(load(path), FakeModel.weights_of_epoch(0)) and checkpoint.best == 0.8


def test_checkpoint_full_model_save(tmp_path):
    model = FakeModel()
    run([cb.ModelCheckpoint(tmp_path / "m-{epoch}.npz", save_weights_only=False)], [1.0, 0.5], model=model)
    assert model.full_saves == [str(tmp_path / "m-1.npz"), str(tmp_path / "m-2.npz")]


def test_checkpoint_every_n_batches(tmp_path):
    checkpoint = cb.ModelCheckpoint(tmp_path / "b-{epoch}-{batch}-{loss:.1f}.npz", save_freq=2)
    run([checkpoint], [1.0, 1.0], batches=3, batch_logs=lambda epoch, batch: {"loss": epoch + batch / 10})
    # Batches are counted across epochs: the 2nd, 4th and 6th batch of training.
    assert sorted(os.listdir(tmp_path)) == ["b-1-2-0.1.npz", "b-2-1-1.0.npz", "b-2-3-1.2.npz"]


def test_checkpoint_creates_the_folder(tmp_path):
    run([cb.ModelCheckpoint(tmp_path / "runs" / "a" / "w.npz")], [1.0])
    assert os.path.exists(tmp_path / "runs" / "a" / "w.npz")


def test_checkpoint_missing_monitor_warns_and_saves_nothing(tmp_path):
    checkpoint = cb.ModelCheckpoint(tmp_path / "w.npz", save_best_only=True)
    with pytest.warns(UserWarning, match=r"'val_loss'.*available: loss, lr"):
        run([checkpoint], [{"loss": 1.0}])
    assert os.listdir(tmp_path) == []


def test_checkpoint_missing_format_field_is_a_clear_error(tmp_path):
    checkpoint = cb.ModelCheckpoint(tmp_path / "w-{val_accuracy:.2f}.npz")
    with pytest.raises(ValueError, match=r"field 'val_accuracy'.*available: val_loss, lr, epoch"):
        run([checkpoint], [1.0])


def test_checkpoint_verbose_messages(tmp_path, capsys):
    checkpoint = cb.ModelCheckpoint(tmp_path / "w.npz", save_best_only=True, verbose=1)
    run([checkpoint], [1.0, 2.0])
    out = capsys.readouterr().out
    assert f"Epoch 1: val_loss improved from none to 1, saving the model to {tmp_path / 'w.npz'}" in out
    assert "Epoch 2: val_loss did not improve from 1" in out


@pytest.mark.parametrize("kwargs, error, match", [
    ({"filepath": 3}, TypeError, "filepath: expected a str"),
    ({"filepath": b"w.npz"}, TypeError, "filepath"),
    ({"filepath": ""}, ValueError, "filepath"),
    ({"filepath": "w-{}.npz"}, ValueError, "positional field"),
    ({"filepath": "w-{0}.npz"}, ValueError, "positional field"),
    ({"filepath": "w-{epoch.npz"}, ValueError, "not a valid format string"),
    ({"filepath": "w.npz", "save_freq": "batch"}, ValueError, "save_freq"),
    ({"filepath": "w.npz", "save_freq": 0}, ValueError, "save_freq"),
    ({"filepath": "w.npz", "save_freq": 1.5}, TypeError, "save_freq"),
    ({"filepath": "w.npz", "save_best_only": "yes"}, TypeError, "save_best_only"),
    ({"filepath": "w.npz", "save_weights_only": 0}, TypeError, "save_weights_only"),
    ({"filepath": "w.npz", "mode": "best"}, ValueError, "mode"),
    ({"filepath": "w.npz", "initial_value_threshold": "1"}, TypeError, "initial_value_threshold"),
])
def test_checkpoint_arguments_are_validated(kwargs, error, match):
    with pytest.raises(error, match=match):
        cb.ModelCheckpoint(**kwargs)


def test_checkpoint_escaped_braces_are_literal(tmp_path):
    run([cb.ModelCheckpoint(tmp_path / "w{{x}}-{epoch}.npz")], [1.0])
    assert os.listdir(tmp_path) == ["w{x}-1.npz"]


# ---------------------------------------------------------------- TerminateOnNaN

@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_terminate_on_nan_stops_and_names_epoch_and_batch(bad):
    def batch_logs(epoch, batch):
        return {"loss": bad if (epoch, batch) == (1, 2) else 0.5}

    with pytest.warns(RuntimeWarning, match=r"Epoch 2, batch 3: the loss is (nan|inf|-inf)"):
        model, history = run([cb.TerminateOnNaN()], [1.0] * 4, batches=4, batch_logs=batch_logs)
    assert model.stop_training and epochs_run(history) == 1


def test_terminate_on_nan_ignores_finite_losses():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model, history = run([cb.TerminateOnNaN()], [1.0] * 3, batch_logs=lambda e, b: {"loss": 1e30})
    assert not model.stop_training and epochs_run(history) == 3


# ---------------------------------------------------------------- ProgressLogger

def progress_run(verbose, logs_per_epoch, batches=3):
    logger = cb.ProgressLogger(verbose=verbose, epochs=len(logs_per_epoch), steps=batches)
    run([logger], logs_per_epoch, batches=batches,
        batch_logs=lambda epoch, batch: {"loss": 0.5 + batch, "accuracy": 0.25})
    return logger


EPOCH_LOGS = [{"loss": 0.5, "accuracy": 0.75, "val_loss": 0.6, "val_accuracy": 0.7},
              {"loss": 0.25, "accuracy": 0.875, "val_loss": 0.5, "val_accuracy": 0.8}]


def test_progress_verbose_0_is_silent(capsys):
    progress_run(0, EPOCH_LOGS)
    assert capsys.readouterr() == ("", "")


def test_progress_verbose_2_prints_one_line_per_epoch(capsys):
    run([cb.ProgressLogger(verbose=2, epochs=2, steps=3)], EPOCH_LOGS, model=FakeModel(0.001), batches=3)
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"Epoch 1/2 - \d+\.\d\ds - loss: 0\.5000 - accuracy: 0\.7500 - val_loss: 0\.6000 - "
                        r"val_accuracy: 0\.7000 - lr: 0\.001", lines[0]), lines[0]
    assert re.fullmatch(r"Epoch 2/2 - \d+\.\d\ds - loss: 0\.2500 - accuracy: 0\.8750 - val_loss: 0\.5000 - "
                        r"val_accuracy: 0\.8000 - lr: 0\.001", lines[1]), lines[1]


def test_progress_verbose_1_draws_a_bar_per_epoch(capsys, monkeypatch):
    # Without a terminal tqdm takes its width from COLUMNS; unset, the line is never truncated.
    monkeypatch.delenv("COLUMNS", raising=False)
    progress_run(1, EPOCH_LOGS)
    out, err = capsys.readouterr()
    assert out == ""
    # Each bar ends on its epoch's full logs, validation metrics included.
    final_states = [line.split("\r")[-1] for line in err.split("\n") if line.strip()]
    assert len(final_states) == 2
    for epoch, (state, logs) in enumerate(zip(final_states, EPOCH_LOGS)):
        assert state.startswith(f"Epoch {epoch + 1}/2")
        assert "3/3" in state
        assert f"val_loss: {logs['val_loss']:.4f}" in state and f"val_accuracy: {logs['val_accuracy']:.4f}" in state


def test_progress_verbose_1_shows_running_batch_logs(capsys):
    # tqdm redraws at most every mininterval, so the running logs are read from the bar itself.
    logger = cb.ProgressLogger(verbose=1, epochs=1, steps=3)
    logger.set_model(FakeModel())
    logger.on_train_begin()
    logger.on_epoch_begin(0)
    logger.on_train_batch_end(0, {"loss": 2.0, "accuracy": 0.5})
    assert logger._bar.n == 1 and logger._bar.postfix == "loss: 2.0000 - accuracy: 0.5000"
    logger.on_train_batch_end(1, {"loss": 1.5, "accuracy": 0.625})
    assert logger._bar.n == 2 and logger._bar.postfix == "loss: 1.5000 - accuracy: 0.6250"
    logger.on_train_end()
    assert logger._bar is None
    assert "Epoch 1/1" in capsys.readouterr().err


def test_progress_bar_of_an_interrupted_epoch_is_closed(capsys):
    def batch_logs(epoch, batch):
        return {"loss": float("nan") if batch == 1 else 0.5}

    logger = cb.ProgressLogger(verbose=1, epochs=3, steps=4)
    with pytest.warns(RuntimeWarning):
        run([logger, cb.TerminateOnNaN()], [1.0] * 3, batches=4, batch_logs=batch_logs)
    assert logger._bar is None
    err = capsys.readouterr().err
    assert "Epoch 1/3" in err and "2/4" in err and "Epoch 2/3" not in err


def test_format_logs():
    assert format_logs({"loss": 0.123456, "accuracy": np.float32(0.5), "lr": 1e-5}) == (
        "loss: 0.1235 - accuracy: 0.5000 - lr: 1e-05")
    assert format_logs({"loss": 1.5e-5, "mae": 0.0, "val_loss": float("nan")}) == (
        "loss: 1.5000e-05 - mae: 0.0000 - val_loss: nan")
    assert format_logs({"loss": 12345.678, "lr": 0.1}) == "loss: 12345.6780 - lr: 0.1"
    assert format_logs(None) == ""


@pytest.mark.parametrize("kwargs, error, argument", [
    ({"verbose": 3}, ValueError, "verbose"),
    ({"verbose": "1"}, TypeError, "verbose"),
    ({"epochs": 0}, ValueError, "epochs"),
    ({"steps": -1}, ValueError, "steps"),
    ({"steps": 2.0}, TypeError, "steps"),
])
def test_progress_arguments_are_validated(kwargs, error, argument):
    with pytest.raises(error, match=argument):
        cb.ProgressLogger(**kwargs)


# ---------------------------------------------------------------- with a real model and fit

class WeightsPerEpoch(cb.Callback):
    """Copies the model's weights at the end of every epoch."""

    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())


def linear_model_and_data(rng):
    """A linear model trained towards y = 2 * sum(x) from zero weights, validated on
    y = sum(x): along the way the weights pass 1, so val_loss falls, bottoms out after a few
    epochs and then rises, whatever the rounding of the machine."""
    import fusedtrain as ft

    x = rng.standard_normal((64, 3)).astype(np.float32)
    x_val = rng.standard_normal((33, 3)).astype(np.float32)
    y = 2.0 * x.sum(axis=1, keepdims=True, dtype=np.float32)
    y_val = x_val.sum(axis=1, keepdims=True, dtype=np.float32)
    model = ft.Sequential([ft.layers.Dense(1)], input_dim=3, seed=0)
    model.compile(optimizer=ft.optimizers.SGD(0.02), loss="mse")
    model.set_weights([np.zeros((3, 1), np.float32), np.zeros(1, np.float32)])
    return model, x, y, (x_val, y_val)


def test_fit_early_stopping_restores_the_best_epoch_and_checkpoints_it(rng, tmp_path):
    model, x, y, validation = linear_model_and_data(rng)
    capture = WeightsPerEpoch()
    stopper = cb.EarlyStopping(patience=2, restore_best_weights=True)
    best_path = tmp_path / "best.safetensors"
    every_epoch = cb.ModelCheckpoint(tmp_path / "epochs" / "e{epoch:02d}-{val_loss:.4f}.safetensors")
    history = model.fit(x, y, epochs=30, batch_size=16, validation_data=validation, verbose=0, seed=3,
                        callbacks=[capture, stopper, cb.ModelCheckpoint(best_path, save_best_only=True),
                                   every_epoch])
    val_losses = history.history["val_loss"]
    best_epoch = int(np.argmin(val_losses))
    assert 0 < best_epoch < 20
    assert stopper.best_epoch == best_epoch and stopper.best == val_losses[best_epoch]
    # Stopped `patience` epochs after the best one, and the history holds exactly those epochs.
    assert stopper.stopped_epoch == best_epoch + 2
    assert history.epoch == list(range(stopper.stopped_epoch + 1))
    assert all(len(values) == stopper.stopped_epoch + 1 for values in history.history.values())
    assert len(capture.weights) == stopper.stopped_epoch + 1
    # The model ends with the best epoch's weights, not the last epoch's.
    assert same_weights(model.get_weights(), capture.weights[best_epoch])
    assert not same_weights(model.get_weights(), capture.weights[-1])
    # The best-only checkpoint holds the same weights; every epoch has its own file.
    reloaded, _, _, _ = linear_model_and_data(rng)
    reloaded.load_weights(best_path)
    assert same_weights(reloaded.get_weights(), capture.weights[best_epoch])
    names = sorted(os.listdir(tmp_path / "epochs"))
    assert names == [f"e{epoch + 1:02d}-{loss:.4f}.safetensors" for epoch, loss in enumerate(val_losses)]
    reloaded.load_weights(tmp_path / "epochs" / names[-1])
    assert same_weights(reloaded.get_weights(), capture.weights[-1])
    assert sorted(os.listdir(tmp_path)) == ["best.safetensors", "epochs"]


def test_fit_restores_the_best_weights_without_an_early_stop(rng):
    model, x, y, validation = linear_model_and_data(rng)
    capture = WeightsPerEpoch()
    stopper = cb.EarlyStopping(patience=100, restore_best_weights=True)
    history = model.fit(x, y, epochs=12, batch_size=16, validation_data=validation, verbose=0, seed=3,
                        callbacks=[capture, stopper])
    best_epoch = int(np.argmin(history.history["val_loss"]))
    assert len(history.epoch) == 12 and stopper.stopped_epoch == 0 and best_epoch < 11
    assert same_weights(model.get_weights(), capture.weights[best_epoch])


def test_fit_with_a_schedule_and_progress_lines(rng, capsys):
    model, x, y, validation = linear_model_and_data(rng)
    schedule = StepDecay(0.02, drop_rate=0.5, epochs_per_drop=2)
    history = model.fit(x, y, epochs=5, batch_size=16, validation_data=validation, verbose=2, seed=3,
                        callbacks=[cb.LearningRateScheduler(schedule)])
    assert history.history["lr"] == pytest.approx([schedule(epoch) for epoch in range(5)], rel=1e-15)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" - ")[0] for line in lines] == [f"Epoch {epoch}/5" for epoch in range(1, 6)]
    assert all(" - loss: " in line and " - val_loss: " in line and line.endswith(" - lr: " + f"{lr:.4g}")
               for line, lr in zip(lines, history.history["lr"]))
