"""Faults during a save: a write, fsync, close or rename that fails at any point, a process
killed in the middle of a save, a full disk. Every writer (model.save, save_weights,
save_checkpoint, ModelCheckpoint, the command line's output files) leaves the previous file
as it was and loadable, removes its temporary file, and raises an OSError naming the path.
A killed process may leave its temporary file (a hidden ".{name}.{12 hex digits}.tmp"
beside the target), which no reader ever takes for the file itself."""

import errno
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import __main__ as main_module
from fusedtrain import callbacks as cb
from fusedtrain import layers, serialization

TEMPORARY_NAME = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")


def make_model(seed):
    model = ft.Sequential([layers.Dense(9, activation="relu"), layers.Dropout(0.2), layers.Dense(3)],
                          input_dim=4, seed=seed)
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.build()
    return model


def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(20, 4)).astype(np.float32), np.arange(20) % 3


# Each writer: (how it saves a model to a path, how the file is read back as a model's parameters).
def read_model(path):
    return ft.load(path).parameters


def read_weights(path):
    model = make_model(seed=99)
    model.load_weights(path)
    return model.parameters


def read_checkpoint(path):
    """Checked as fit(resume=path) checks it; the weights as fusedtrain.load reads them."""
    serialization.read_checkpoint(path).check(make_model(seed=99), [])
    return ft.load(path).parameters


WRITERS = {
    "save": (lambda model, path: model.save(path), read_model),
    "save_weights": (lambda model, path: model.save_weights(path), read_weights),
    "save_checkpoint": (lambda model, path: model.save_checkpoint(path), read_checkpoint),
}


class Faults:
    """Replaces the os functions write_atomically uses with versions that fail: the call
    numbered ``fail_at_call`` (counting every open, write, fsync, close, replace), or the write
    that would take the file past ``fail_after_bytes`` (writing the bytes that fit first, as a
    filling disk does). ``calls`` records the calls made, ``failed`` the one made to fail."""

    NAMES = ("open", "write", "fsync", "close", "replace")

    def __init__(self, monkeypatch, fail_at_call=None, fail_after_bytes=None, error=errno.EIO):
        self.fail_at_call = fail_at_call
        self.fail_after_bytes = fail_after_bytes
        self.error = error
        self.calls = []
        self.failed = None
        self.written = 0
        self.originals = {name: getattr(os, name) for name in self.NAMES}
        for name in self.NAMES:
            monkeypatch.setattr(os, name, self._wrap(name))

    def _fail(self):
        raise OSError(self.error, os.strerror(self.error))

    def _wrap(self, name):
        original = self.originals[name]

        def call(*arguments):
            if len(self.calls) == self.fail_at_call:
                self.calls.append(name)
                self.failed = name
                self._fail()
            self.calls.append(name)
            if name == "write" and self.fail_after_bytes is not None:
                descriptor, data = arguments
                room = self.fail_after_bytes - self.written
                if room <= 0:
                    self._fail()
                written = original(descriptor, bytes(data[:room]))
                self.written += written
                return written
            return original(*arguments)

        return call


def assert_unchanged(path, contents, parameters, read):
    """The file at ``path`` is the previous one, loads, and nothing else is in its folder."""
    assert path.read_bytes() == contents
    np.testing.assert_array_equal(read(path), parameters)
    assert sorted(os.listdir(path.parent)) == [path.name]


def assert_names_the_path(error, path):
    assert isinstance(error, OSError)
    assert error.filename == str(path)
    assert str(path) in str(error) and "not saved" in str(error) and "previous file" in str(error)


@pytest.fixture
def previous(tmp_path):
    """Old and new models, and the old one saved by each writer in a folder of its own."""
    old, new = make_model(seed=0), make_model(seed=1)
    saved = {}
    for name, (save, _) in WRITERS.items():
        path = tmp_path / name / "model.safetensors"
        path.parent.mkdir()
        save(old, path)
        saved[name] = (path, path.read_bytes())
    return old, new, saved


@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_failure_at_every_call(writer, previous, monkeypatch):
    old, new, saved = previous
    save, read = WRITERS[writer]
    path, contents = saved[writer]
    with monkeypatch.context() as patch:
        counting = Faults(patch)
        save(new, path.parent / "count.safetensors")
    (path.parent / "count.safetensors").unlink()
    calls = counting.calls
    assert calls[:2] == ["open", "write"] and "replace" in calls
    rename = calls.index("replace")
    for index in range(len(calls)):
        with monkeypatch.context() as patch:
            faults = Faults(patch, fail_at_call=index)
            if index <= rename:
                with pytest.raises(OSError) as info:
                    save(new, path)
            else:
                # After the rename the new file is saved; syncing the folder is only for durability.
                save(new, path)
        assert faults.failed == calls[index]
        if index <= rename:
            assert info.value.errno == errno.EIO
            assert_names_the_path(info.value, path)
            assert_unchanged(path, contents, old.parameters, read)
        else:
            np.testing.assert_array_equal(read(path), new.parameters)
            assert sorted(os.listdir(path.parent)) == [path.name]
            save(old, path)
            contents = path.read_bytes()


@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_failure_after_every_amount_of_bytes(writer, previous, monkeypatch):
    old, new, saved = previous
    save, read = WRITERS[writer]
    path, contents = saved[writer]
    size = len(contents)
    for limit in sorted({0, 1, 7, 8, 9, size // 3, size // 2, size - 1} | set(range(0, size, max(1, size // 12)))):
        with monkeypatch.context() as patch:
            Faults(patch, fail_after_bytes=limit, error=errno.ENOSPC)
            with pytest.raises(OSError, match="no space left on the device") as info:
                save(new, path)
        assert info.value.errno == errno.ENOSPC
        assert_names_the_path(info.value, path)
        assert_unchanged(path, contents, old.parameters, read)


def test_a_failed_first_save_leaves_no_file(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    for index in range(3):
        with monkeypatch.context() as patch:
            Faults(patch, fail_at_call=index)
            with pytest.raises(OSError):
                make_model(seed=0).save(path)
        assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("error, message", [(errno.ENOSPC, "no space left on the device"),
                                            (errno.EACCES, "Permission denied"), (errno.EROFS, "Read-only")])
def test_no_temporary_file_can_be_created(previous, monkeypatch, error, message):
    """The first call, creating the temporary file, fails as a full disk, a folder without
    write permission or a read-only file system make it fail: the error names the path and
    keeps its errno (PermissionError for EACCES)."""
    old, new, saved = previous
    path, contents = saved["save"]
    with monkeypatch.context() as patch:
        Faults(patch, fail_at_call=0, error=error)
        with pytest.raises(OSError, match=message) as info:
            new.save(path)
    assert info.value.errno == error and type(info.value) is type(OSError(error, ""))
    assert_names_the_path(info.value, path)
    assert_unchanged(path, contents, old.parameters, read_model)


def test_an_input_output_error_names_the_path(previous, monkeypatch):
    """Was the bare OSError of os.write, naming no file."""
    old, new, saved = previous
    path, contents = saved["save_weights"]

    def broken_disk(descriptor, data):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    with monkeypatch.context() as patch:
        patch.setattr(os, "write", broken_disk)
        with pytest.raises(OSError) as info:
            new.save_weights(path)
    assert str(info.value) == (f"[Errno {errno.EIO}] not saved: {os.strerror(errno.EIO)}; the previous file, if any, "
                               f"is unchanged: {str(path)!r}")
    assert_unchanged(path, contents, old.parameters, read_weights)


def test_a_folder_that_cannot_be_closed_after_the_rename(previous, monkeypatch):
    """Was an OSError from a save that had succeeded: closing the folder opened to sync the
    rename comes after the file is in place."""
    old, new, saved = previous
    path, _ = saved["save"]
    original_open, original_close = os.open, os.close
    folders = set()

    def tracking_open(name, flags, *arguments):
        descriptor = original_open(name, flags, *arguments)
        if os.path.isdir(name):
            folders.add(descriptor)
        return descriptor

    def failing_close(descriptor):
        original_close(descriptor)
        if descriptor in folders:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    with monkeypatch.context() as patch:
        patch.setattr(os, "open", tracking_open)
        patch.setattr(os, "close", failing_close)
        new.save(path)
    assert folders
    np.testing.assert_array_equal(read_model(path), new.parameters)


def test_short_writes_are_completed(tmp_path, monkeypatch):
    """os.write may write less than it is given (a signal, some file systems): the rest is
    written by further calls, and the file is complete."""
    payload = np.random.default_rng(4).integers(0, 256, 1031, dtype=np.uint8).tobytes()
    model = make_model(seed=0)
    original = os.write
    sizes = []

    def at_most_100_bytes(descriptor, data):
        sizes.append(len(data))
        return original(descriptor, bytes(data[:100]))

    with monkeypatch.context() as patch:
        patch.setattr(os, "write", at_most_100_bytes)
        serialization.write_atomically(tmp_path / "payload", payload)
        model.save(tmp_path / "model.safetensors")
    assert sizes[:11] == [1031 - 100 * index for index in range(11)]
    assert (tmp_path / "payload").read_bytes() == payload
    np.testing.assert_array_equal(ft.load(tmp_path / "model.safetensors").parameters, model.parameters)


def test_a_failure_in_model_checkpoint_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    """ModelCheckpoint overwriting one file each epoch: a save that fails in epoch 3 stops
    training with the error, and the file still holds epoch 2's checkpoint, which resumes."""
    path = tmp_path / "checkpoint.safetensors"
    x, y = data()

    class FailFromEpoch(cb.Callback):
        """Listed before ModelCheckpoint, so that it arms the fault before the save of that epoch."""

        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                self.contents = path.read_bytes()
                Faults(monkeypatch, fail_after_bytes=len(self.contents) // 2, error=errno.ENOSPC)

    failing = FailFromEpoch()
    model = make_model(seed=0)
    with pytest.raises(OSError, match="no space left on the device") as info:
        model.fit(x, y, epochs=5, batch_size=8, verbose=0, seed=1,
                  callbacks=[cb.ModelCheckpoint(str(path), save_training_state=True), failing])
    monkeypatch.undo()
    assert_names_the_path(info.value, path)
    assert path.read_bytes() == failing.contents
    assert os.listdir(tmp_path) == [path.name]
    resumed = make_model(seed=5)
    history = resumed.fit(x, y, epochs=3, batch_size=8, verbose=0, seed=1, resume=path,
                          callbacks=[cb.ModelCheckpoint(str(tmp_path / "again.safetensors"), save_training_state=True)])
    assert history.epoch == [0, 1, 2]  # epochs 1 and 2 restored, epoch 3 trained


# The command line's outputs -----------------------------------------------------------------

@pytest.fixture
def trained(tmp_path):
    """A CSV file and the outputs of one `fusedtrain train` on it."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 3))
    labels = np.where(x[:, 0] > 0, "up", "down")
    lines = ["a,b,c,label"] + [f"{a:.4f},{b:.4f},{c:.4f},{label}" for (a, b, c), label in zip(x, labels)]
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    arguments = ["train", str(tmp_path / "data.csv"), "--layers", "4", "--epochs", "3", "--verbose", "0",
                 "--no-plot", "--out", str(tmp_path / "out" / "model.safetensors")]
    assert main_module.main(arguments) == 0
    outputs = {name: (tmp_path / "out" / name).read_bytes() for name in ("model.safetensors", "history.json")}
    return tmp_path, arguments, outputs


def fail_writes_of(monkeypatch, name):
    """Makes every write into a temporary file for ``name`` fail with ENOSPC."""
    original_open, original_write = os.open, os.write
    doomed = set()

    def tracking_open(path, flags, *arguments):
        descriptor = original_open(path, flags, *arguments)
        if os.path.basename(os.fspath(path)).startswith(f".{name}."):
            doomed.add(descriptor)
        return descriptor

    def failing_write(descriptor, data):
        if descriptor in doomed:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original_write(descriptor, data)

    monkeypatch.setattr(os, "open", tracking_open)
    monkeypatch.setattr(os, "write", failing_write)


@pytest.mark.parametrize("name", ["model.safetensors", "history.json"])
def test_train_keeps_the_previous_outputs_on_a_failed_write(trained, name, monkeypatch, capsys):
    folder, arguments, outputs = trained
    capsys.readouterr()
    fail_writes_of(monkeypatch, name)
    assert main_module.main(arguments) == 2
    error = capsys.readouterr().err
    assert error.startswith("fusedtrain: error: ") and error.count("\n") == 1
    assert f"cannot write {folder / 'out' / name}" in error and "no space left" in error
    monkeypatch.undo()
    assert (folder / "out" / name).read_bytes() == outputs[name]
    assert sorted(os.listdir(folder / "out")) == sorted(outputs)
    ft.load(folder / "out" / "model.safetensors")


def test_predict_keeps_the_previous_predictions_on_a_failed_write(trained, monkeypatch, capsys):
    folder, _, _ = trained
    predictions = folder / "predictions.csv"
    arguments = ["predict", str(folder / "out" / "model.safetensors"), str(folder / "data.csv"),
                 "--out", str(predictions)]
    assert main_module.main(arguments) == 0
    contents = predictions.read_bytes()
    capsys.readouterr()
    fail_writes_of(monkeypatch, "predictions.csv")
    assert main_module.main(arguments) == 2
    error = capsys.readouterr().err
    assert f"--out: cannot write {predictions}" in error and "no space left" in error
    monkeypatch.undo()
    assert predictions.read_bytes() == contents
    assert not [name for name in os.listdir(folder) if TEMPORARY_NAME.match(name)]


# A process killed in the middle of saves --------------------------------------------------------

KILLED_SAVER = textwrap.dedent("""
    import sys
    import fusedtrain as ft
    from fusedtrain import layers

    folder = sys.argv[1]
    model = ft.Sequential([layers.Dense(1024), layers.Dense(8)], input_dim=1024, seed=0)
    model.compile("sgd", "mse")
    model.build()
    version = 0
    while True:
        version += 1
        # Every parameter holds the version: a file mixing two saves would show it.
        model.parameters[...] = version
        model.save(folder + "/model.safetensors")
        model.save_weights(folder + "/weights.safetensors")
        model.save_checkpoint(folder + "/checkpoint.safetensors")
        if version == 1:
            print("saved", flush=True)
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_saves_killed_at_random_moments(tmp_path):
    """A process saving a 4 MB model to three files in a loop, killed with SIGKILL at random
    moments: each file always loads, complete and from one save."""
    delays = np.random.default_rng(2).uniform(0.0, 0.25, 8)
    versions = set()
    for delay in delays:
        process = subprocess.Popen([sys.executable, "-c", KILLED_SAVER, str(tmp_path)], stdout=subprocess.PIPE,
                                   text=True)
        try:
            assert process.stdout.readline() == "saved\n"
            time.sleep(delay)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
            process.stdout.close()
        model = ft.load(tmp_path / "model.safetensors")
        weights = ft.Sequential([layers.Dense(1024), layers.Dense(8)], input_dim=1024)
        weights.load_weights(tmp_path / "weights.safetensors")
        checkpoint = serialization.read_checkpoint(tmp_path / "checkpoint.safetensors")
        for parameters in (model.parameters, weights.parameters,
                           np.concatenate([array.ravel() for array in checkpoint.weights.values()])):
            assert parameters.size == 1024 * 1024 + 1024 + 1024 * 8 + 8
            version = parameters[0]
            assert version >= 1 and (parameters == version).all()
            versions.add(float(version))
        leftovers = sorted(set(os.listdir(tmp_path)) - {"model.safetensors", "weights.safetensors",
                                                         "checkpoint.safetensors"})
        # At most the one save in progress when the process died.
        assert len(leftovers) <= 1 and all(TEMPORARY_NAME.match(name) for name in leftovers), leftovers
        for name in leftovers:
            os.remove(tmp_path / name)
    assert len(versions) > 1  # the kills did land in different saves
