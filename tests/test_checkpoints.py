"""Training checkpoints: save_checkpoint / ModelCheckpoint(save_training_state=True) and
fit(..., resume=path) / fit(..., initial_epoch=...). An interrupted run resumed in a new model
object ends with exactly the weights and history of an uninterrupted one."""

import json
import re
import warnings

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

import fusedtrain as ft
from fusedtrain import callbacks as cb
from fusedtrain import layers, optimizers, schedules

EPOCHS = 9


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(83, 5)).astype(np.float32)
    y = ((x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 0.6)).astype(np.int64)
    return x, y


def make_model(seed=0, compile=True, optimizer=None):
    model = ft.Sequential([layers.Dense(16, activation="relu"), layers.Dropout(0.25),
                           layers.Dense(12, activation="tanh"), layers.Dropout(0.1), layers.Dense(3)],
                          input_dim=5, seed=seed)
    if compile:
        model.compile(optimizer or optimizers.Adam(0.02), "sparse_categorical_crossentropy", ["accuracy"])
    return model


def keras_schedule(epoch, learning_rate):
    """Keras' two-argument form: the next rate depends on the current one, which the plateau
    reduction also changes, so both must be restored exactly."""
    return learning_rate if epoch < 2 else learning_rate * 0.9


def training_callbacks(folder, patience=50, schedule=keras_schedule):
    """A schedule, plateau reduction, early stopping with restored weights, and a checkpoint of
    the whole training state after every epoch (listed first: fit runs it last)."""
    return [cb.ModelCheckpoint(str(folder / "ckpt-{epoch}.safetensors"), save_training_state=True),
            cb.LearningRateScheduler(schedule),
            cb.ReduceLROnPlateau(monitor="val_accuracy", factor=0.5, patience=2),
            cb.EarlyStopping(monitor="val_loss", min_delta=0.02, patience=patience, restore_best_weights=True)]


class Crash(cb.Callback):
    """Interrupts training at the start of an epoch, as a killed process would."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def fit(model, data, callbacks, **arguments):
    x, y = data
    settings = dict(epochs=EPOCHS, batch_size=16, validation_split=0.2, verbose=0, seed=3)
    settings.update(arguments)
    return model.fit(x, y, callbacks=callbacks, **settings)


def assert_same_weights(left, right):
    assert len(left) == len(right)
    for a, b in zip(left, right):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    model = make_model()
    callbacks = training_callbacks(folder)
    history = fit(model, data, callbacks)
    return model, history, folder, callbacks


def assert_same_states(left, right):
    for ours, theirs in zip(left, right):
        ours, theirs = ours.get_state(), theirs.get_state()
        if ours is None:  # a stateless callback (the learning-rate scheduler)
            assert theirs is None
            continue
        assert ours.keys() == theirs.keys()
        for key in ours:
            if key == "best_weights":
                assert_same_weights(ours[key], theirs[key])
            else:
                assert ours[key] == theirs[key], key


@pytest.mark.parametrize("crash_at", [1, 4, EPOCHS - 1])
def test_an_interrupted_run_resumes_to_identical_weights_and_history(crash_at, uninterrupted, data, tmp_path):
    model, history, reference_folder, reference_callbacks = uninterrupted
    interrupted = make_model()
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, data, training_callbacks(tmp_path) + [Crash(crash_at)])
    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == sorted(f"ckpt-{epoch}.safetensors" for epoch in range(1, crash_at + 1))
    checkpoint = tmp_path / f"ckpt-{crash_at}.safetensors"
    # The interrupted run wrote the same checkpoint as the uninterrupted one at that epoch.
    reference, written = load_file(str(reference_folder / checkpoint.name)), load_file(str(checkpoint))
    assert sorted(reference) == sorted(written)
    assert_same_weights([reference[key] for key in sorted(reference)], [written[key] for key in sorted(reference)])

    # A new model object, built with another seed: everything comes from the checkpoint.
    resumed = make_model(seed=123)
    callbacks = training_callbacks(tmp_path)
    resumed_history = fit(resumed, data, callbacks, resume=checkpoint)
    assert_same_states(callbacks, reference_callbacks)
    assert_same_weights(resumed.get_weights(), model.get_weights())
    assert resumed_history.history == history.history
    assert resumed_history.epoch == history.epoch == list(range(EPOCHS))
    assert resumed.optimizer.iterations == model.optimizer.iterations
    np.testing.assert_array_equal(resumed.optimizer.m, model.optimizer.m)
    assert resumed.optimizer.learning_rate == model.optimizer.learning_rate


@pytest.mark.parametrize("epoch", [2, 5, 8])
def test_resume_restores_every_callback_state(epoch, uninterrupted, data, tmp_path):
    """Resumed with nothing left to run, the callbacks hold exactly the checkpointed state."""
    _, history, folder, _ = uninterrupted
    path = folder / f"ckpt-{epoch}.safetensors"
    with safe_open(str(path), framework="np") as handle:
        stored = json.loads(handle.metadata()["training"])["callbacks"]
    tensors = load_file(str(path))
    callbacks = training_callbacks(tmp_path)
    resumed = fit(make_model(), data, callbacks, epochs=epoch, resume=path)
    assert resumed.epoch == list(range(epoch)) and resumed.history["loss"] == history.history["loss"][:epoch]
    stateful = [callback for callback in callbacks if callback.get_state() is not None]
    assert len(stateful) == len(stored) == 3
    for position, (callback, entry) in enumerate(zip(stateful, stored)):
        state = callback.get_state()
        for key, value in entry["state"].items():
            if isinstance(value, dict):
                assert_same_weights(state[key], [tensors[f"callbacks.{position}.{key}.{index}"]
                                                 for index in range(value["__tensors__"])])
            else:
                assert state[key] == value, (type(callback).__name__, key)
    early_stopping = stateful[2]
    assert early_stopping.best in history.history["val_loss"][:epoch]


def test_the_checkpoint_holds_the_training_state(uninterrupted):
    model, history, folder, _ = uninterrupted
    path = folder / "ckpt-3.safetensors"
    with safe_open(str(path), framework="np") as handle:
        metadata = handle.metadata()
        keys = set(handle.keys())
    assert metadata["format"] == "fusedtrain.checkpoint"
    training = json.loads(metadata["training"])
    assert training["epoch"] == 3 and training["stopped"] is False
    assert training["optimizer"] == "Adam" and training["iterations"] == 3 * 5  # 66 training rows, batches of 16
    assert training["shuffle_rng"]["bit_generator"] == "PCG64"
    assert training["dropout_seeds"][0] is None and isinstance(training["dropout_seeds"][1], int)
    assert training["history"]["epoch"] == [0, 1, 2]
    assert training["history"]["history"]["loss"] == history.history["loss"][:3]
    assert [entry["class_name"] for entry in training["callbacks"]] == ["ModelCheckpoint", "ReduceLROnPlateau",
                                                                         "EarlyStopping"]
    assert {"optimizer.m", "optimizer.v", "layers.0.kernel", "callbacks.2.best_weights.0"} <= keys
    assert json.loads(metadata["compile"])["optimizer"]["class_name"] == "Adam"


def test_early_stopping_that_fired_stays_fired(data, tmp_path):
    """A run that early stopping ended, resumed from its last checkpoint, runs no further epoch
    and ends with the same restored best weights."""
    reference = make_model()
    cosine = schedules.CosineDecay(0.02, total_epochs=EPOCHS, warmup_epochs=2)
    history = fit(reference, data, training_callbacks(tmp_path / "a", patience=0, schedule=cosine), epochs=30)
    stopped_after = len(history.epoch)
    assert stopped_after < 30
    resumed = make_model(seed=8)
    resumed_history = fit(resumed, data, training_callbacks(tmp_path / "b", patience=0, schedule=cosine), epochs=30,
                          resume=tmp_path / "a" / f"ckpt-{stopped_after}.safetensors")
    assert resumed_history.history == history.history
    assert_same_weights(resumed.get_weights(), reference.get_weights())


def test_checkpoint_after_fit_then_resume_for_more_epochs(data, tmp_path):
    plain = [cb.LearningRateScheduler(schedules.StepDecay(0.02, 0.5, 2))]
    straight = make_model()
    history = fit(straight, data, plain, epochs=6)
    first = make_model()
    fit(first, data, plain, epochs=2)
    first.save_checkpoint(tmp_path / "c.safetensors")
    # fusedtrain.load rebuilds and compiles the model from the checkpoint; resume restores the rest.
    second = ft.load(tmp_path / "c.safetensors")
    resumed = fit(second, data, [cb.LearningRateScheduler(schedules.StepDecay(0.02, 0.5, 2))], epochs=6,
                  resume=tmp_path / "c.safetensors")
    assert_same_weights(second.get_weights(), straight.get_weights())
    assert resumed.history == history.history


def test_an_uncompiled_model_is_compiled_from_the_checkpoint(data, tmp_path):
    straight = make_model()
    fit(straight, data, [], epochs=3)
    first = make_model()
    fit(first, data, [], epochs=1)
    first.save_checkpoint(tmp_path / "c.safetensors")
    second = make_model(seed=4, compile=False)
    second.fit(*data, epochs=3, batch_size=16, validation_split=0.2, verbose=0, resume=tmp_path / "c.safetensors")
    assert type(second.optimizer) is optimizers.Adam and second.loss.name == "sparse_categorical_crossentropy"
    assert_same_weights(second.get_weights(), straight.get_weights())


OPTIMIZERS = {
    "sgd": lambda: optimizers.SGD(0.05),
    "sgd_momentum": lambda: optimizers.SGD(0.03, momentum=0.8, weight_decay=1e-3),
    "sgd_nesterov": lambda: optimizers.SGD(0.03, momentum=0.9, nesterov=True),
    "adam": lambda: optimizers.Adam(0.01, weight_decay=1e-3),
    "adamw": lambda: optimizers.AdamW(0.01),
    "rmsprop": lambda: optimizers.RMSprop(0.005),
    "clipnorm": lambda: optimizers.RMSprop(0.01, clipnorm=0.3),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_resumes_exactly(name, data, tmp_path):
    straight = make_model(optimizer=OPTIMIZERS[name]())
    history = fit(straight, data, [], epochs=4)
    first = make_model(optimizer=OPTIMIZERS[name]())
    fit(first, data, [], epochs=2)
    first.save_checkpoint(tmp_path / "c.safetensors")
    keys = set(load_file(str(tmp_path / "c.safetensors")))
    assert {key for key in keys if key.startswith("optimizer.")} == {f"optimizer.{n}" for n in first.optimizer.state}
    second = make_model(seed=6, optimizer=OPTIMIZERS[name]())
    resumed = fit(second, data, [], epochs=4, resume=tmp_path / "c.safetensors")
    assert_same_weights(second.get_weights(), straight.get_weights())
    assert resumed.history == history.history
    for state_name, buffer in straight.optimizer.state.items():
        np.testing.assert_array_equal(second.optimizer.state[state_name], buffer)


def test_frozen_layers_resume_exactly(data, tmp_path):
    def frozen():
        model = make_model()
        model.layers[0].trainable = False
        return model

    straight = frozen()
    fit(straight, data, [], epochs=3)
    first = frozen()
    fit(first, data, [], epochs=1)
    first.save_checkpoint(tmp_path / "c.safetensors")
    second = frozen()
    fit(second, data, [], epochs=3, resume=tmp_path / "c.safetensors")
    assert_same_weights(second.get_weights(), straight.get_weights())


# initial_epoch ---------------------------------------------------------------------------------

def test_initial_epoch_has_keras_semantics(data):
    model = make_model()
    learning_rates = []

    class Record(cb.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            learning_rates.append((epoch, model.optimizer.learning_rate))

    history = fit(model, data, [cb.LearningRateScheduler(schedules.StepDecay(0.1, 0.5, 1)), Record()],
                  epochs=5, initial_epoch=3)
    assert history.epoch == [3, 4] and len(history.history["loss"]) == 2
    assert learning_rates == [(3, 0.1 * 0.5 ** 3), (4, 0.1 * 0.5 ** 4)]
    assert model.optimizer.iterations == 2 * 5
    with pytest.raises(ValueError, match="epochs: training would end at epoch 2 but starts at epoch 3"):
        fit(model, data, [], epochs=2, initial_epoch=3)
    with pytest.raises(TypeError, match="initial_epoch"):
        fit(model, data, [], initial_epoch=1.5)
    assert fit(model, data, [], epochs=3, initial_epoch=3).epoch == []  # nothing left to run


# Errors ----------------------------------------------------------------------------------------

@pytest.fixture
def checkpoint(data, tmp_path):
    model = make_model()
    fit(model, data, training_callbacks(tmp_path), epochs=2)
    return tmp_path / "ckpt-2.safetensors"


def expect_refused(model, data, callbacks, match, **arguments):
    before = model.get_weights() if model.built else None
    with pytest.raises(ValueError, match=match):
        fit(model, data, callbacks, **arguments)
    if before is not None:
        assert_same_weights(model.get_weights(), before)
    assert model.history is None  # fit never started


def test_resume_refuses_a_different_model(checkpoint, data, tmp_path):
    other = ft.Sequential([layers.Dense(16, activation="relu"), layers.Dropout(0.25),
                           layers.Dense(12, activation="relu"), layers.Dropout(0.1), layers.Dense(3)],
                          input_dim=5, seed=0)
    other.compile("adam", "sparse_categorical_crossentropy")
    other.build()
    expect_refused(other, data, training_callbacks(tmp_path), "differs from this one at layer 2", resume=checkpoint)
    shorter = ft.Sequential([layers.Dense(16, activation="relu"), layers.Dense(3)], input_dim=5)
    shorter.compile("adam", "sparse_categorical_crossentropy")
    shorter.build()
    expect_refused(shorter, data, training_callbacks(tmp_path), "differs from this one at layer 1", resume=checkpoint)
    wider = make_model()
    wider.input_dim = 6
    expect_refused(wider, data, training_callbacks(tmp_path), "the checkpoint's model takes 5 features, this one 6",
                   resume=checkpoint)


def test_resume_refuses_another_optimizer_or_other_callbacks(checkpoint, data, tmp_path):
    model = make_model(optimizer=optimizers.RMSprop())
    model.build()
    expect_refused(model, data, training_callbacks(tmp_path), "state of a Adam optimizer, the model is compiled with "
                   "RMSprop", resume=checkpoint)
    model = make_model(seed=2)
    model.build()
    expect_refused(model, data, training_callbacks(tmp_path)[:2], r"holds the state of the callbacks "
                   r"\['ModelCheckpoint', 'ReduceLROnPlateau', 'EarlyStopping'\], but fit was given "
                   r"\['ModelCheckpoint'\]", resume=checkpoint)
    expect_refused(model, data, training_callbacks(tmp_path), "the checkpoint continues at epoch 2, got "
                   "initial_epoch=1", resume=checkpoint, initial_epoch=1)


def test_resume_refuses_files_that_are_not_checkpoints(checkpoint, data, tmp_path):
    model = make_model()
    model.build()
    model.save(tmp_path / "m.safetensors")
    expect_refused(model, data, [], r"not a training checkpoint \(fusedtrain.model\)",
                   resume=tmp_path / "m.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 100)
    expect_refused(model, data, [], "not a readable safetensors", resume=tmp_path / "junk.safetensors")
    data_bytes = checkpoint.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data_bytes[:len(data_bytes) // 2])
    expect_refused(model, data, [], "not a readable safetensors", resume=tmp_path / "cut.safetensors")


def rewritten(path, change_tensors=None, change_training=None):
    with safe_open(str(path), framework="np") as handle:
        metadata = dict(handle.metadata())
    tensors = {key: np.array(value) for key, value in load_file(str(path)).items()}
    if change_tensors:
        change_tensors(tensors)
    if change_training:
        training = json.loads(metadata["training"])
        change_training(training)
        metadata["training"] = json.dumps(training)
    save_file(tensors, str(path), metadata=metadata)
    return path


@pytest.mark.parametrize("change_tensors, change_training, match", [
    (lambda t: t.pop("optimizer.v"), None, r"state buffers are \['optimizer.m', 'optimizer.v'\]"),
    (lambda t: t.update({"optimizer.v": t["optimizer.v"][:-1].copy()}), None, "optimizer.v has shape"),
    (lambda t: t.update({"optimizer.m": t["optimizer.m"].astype(np.float64)}), None, "optimizer.m has dtype float64"),
    (lambda t: t.pop("callbacks.2.best_weights.3"), None, "tensors .* of callback EarlyStopping are missing"),
    (lambda t: t.update({"callbacks.9.x.0": np.zeros(2, np.float32)}), None, r"unexpected \['callbacks.9.x.0'\]"),
    (lambda t: t.update({"callbacks.2.best_weights.0": np.zeros((5, 3), np.float32)}), None,
     "best_weights\\[0\\] has shape"),
    (None, lambda s: s.pop("shuffle_rng"), r"training state: missing \['shuffle_rng'\]"),
    (None, lambda s: s.update({"epoch": -1}), "epoch must be an integer >= 0"),
    (None, lambda s: s.update({"learning_rate": "fast"}), "learning_rate must be a number"),
    (None, lambda s: s.update({"shuffle_rng": {"bit_generator": "MT19937"}}), "shuffle_rng is not a PCG64"),
    (None, lambda s: s["callbacks"][1]["state"].pop("wait"), r"state of ReduceLROnPlateau holds"),
    (None, lambda s: s.update({"dropout_seeds": [None]}), "dropout_seeds has 1 entries for 5 layers"),
    (None, lambda s: s.update({"history": {"epoch": [0], "history": {"loss": 3}}}), "history must hold"),
])
def test_damaged_checkpoints_are_refused_before_anything_changes(checkpoint, data, tmp_path, change_tensors,
                                                                 change_training, match):
    path = rewritten(checkpoint, change_tensors, change_training)
    model = make_model(seed=5)
    model.build()
    expect_refused(model, data, training_callbacks(tmp_path / "new"), match, resume=path)
    assert model.optimizer.iterations == 0


def test_corrupt_training_metadata(checkpoint, data, tmp_path):
    with safe_open(str(checkpoint), framework="np") as handle:
        metadata = dict(handle.metadata())
    metadata["training"] = metadata["training"][:-7]
    save_file(load_file(str(checkpoint)), str(checkpoint), metadata=metadata)
    model = make_model()
    model.build()
    expect_refused(model, data, [], "'training' metadata is not valid JSON", resume=checkpoint)


def test_resuming_with_other_arguments_warns(checkpoint, data, tmp_path):
    model = make_model()
    with pytest.warns(UserWarning, match="batch_size 16 -> 8 .*will not reproduce an uninterrupted run"):
        fit(model, data, training_callbacks(tmp_path / "new"), resume=checkpoint, batch_size=8, epochs=3)
    model = make_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(model, data, training_callbacks(tmp_path / "again"), resume=checkpoint, epochs=3)


def test_no_checkpoint_in_the_middle_of_an_epoch(data, tmp_path):
    model = make_model()

    class SaveAfterBatch(cb.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.model.save_checkpoint(tmp_path / "c.safetensors")

    with pytest.raises(RuntimeError, match="save_checkpoint: training is in the middle of an epoch"):
        fit(model, data, [SaveAfterBatch()])
    assert not (tmp_path / "c.safetensors").exists()
    with pytest.raises(RuntimeError, match="save_checkpoint: the model is not compiled"):
        uncompiled = make_model(compile=False)
        uncompiled.build()
        uncompiled.save_checkpoint(tmp_path / "c.safetensors")
    with pytest.raises(ValueError, match="save_freq='epoch' with save_training_state=True"):
        cb.ModelCheckpoint(tmp_path / "c.safetensors", save_training_state=True, save_freq=2)
    with pytest.raises(TypeError, match="save_training_state"):
        cb.ModelCheckpoint(tmp_path / "c.safetensors", save_training_state=1)


def test_model_checkpoint_writes_full_models(data, tmp_path):
    model = make_model()
    fit(model, data, [cb.ModelCheckpoint(str(tmp_path / "m-{epoch}.safetensors"), save_weights_only=False)], epochs=2)
    loaded = ft.load(tmp_path / "m-2.safetensors")
    x = data[0]
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_a_best_only_training_checkpoint_records_its_own_best(data, tmp_path):
    model = make_model()
    checkpoint = cb.ModelCheckpoint(str(tmp_path / "best.safetensors"), monitor="val_loss", save_best_only=True,
                                    save_training_state=True)
    fit(model, data, [checkpoint], epochs=3)
    with safe_open(str(tmp_path / "best.safetensors"), framework="np") as handle:
        training = json.loads(handle.metadata()["training"])
    saved_epoch = training["epoch"]
    assert training["callbacks"][0]["state"]["best"] == model.history.history["val_loss"][saved_epoch - 1]


def test_optimizer_state_export_and_import():
    source = optimizers.Adam(0.01)
    source.build(7)
    source.m[...] = np.arange(7, dtype=np.float32)
    source.v[...] = 0.5
    source.iterations = 12
    target = optimizers.Adam(0.01)
    with pytest.raises(RuntimeError, match="load_state: the optimizer is not built"):
        target.load_state(source.state, 12)
    target.build(7)
    with pytest.raises(ValueError, match=r"expected the buffers \['m', 'v'\] of Adam, got \['velocity'\]"):
        target.load_state({"velocity": source.m}, 12)
    with pytest.raises(ValueError, match=r"state\['v'\]: expected float32 of shape \(7,\)"):
        target.load_state({"m": source.m, "v": source.v[:6]}, 12)
    with pytest.raises(ValueError, match=r"state\['m'\]: expected float32"):
        target.load_state({"m": source.m.astype(np.float64), "v": source.v}, 12)
    with pytest.raises(ValueError, match="iterations"):
        target.load_state(source.state, -1)
    assert target.iterations == 0 and not target.m.any()  # nothing was loaded
    target.load_state(source.state, 12)
    assert target.iterations == 12 and target.m is not source.m
    np.testing.assert_array_equal(target.m, source.m)
    np.testing.assert_array_equal(target.v, source.v)
    assert optimizers.SGD.from_config(optimizers.SGD(0.1, momentum=0.5, nesterov=True).get_config()).nesterov


def test_resume_errors_name_the_argument_and_the_checkpoint(data, tmp_path):
    model = make_model()
    fit(model, data, [], epochs=3)
    path = tmp_path / "c.safetensors"
    model.save_checkpoint(path)
    with pytest.raises(TypeError, match=r"^resume: expected a file path \(str or os.PathLike\), got int"):
        fit(make_model(), data, [], epochs=4, resume=3)
    with pytest.raises(ValueError, match=rf"^epochs: training would end at epoch 2 but the checkpoint "
                                         rf"{re.escape(str(path))} continues at epoch 3"):
        fit(make_model(), data, [], epochs=2, resume=path)
