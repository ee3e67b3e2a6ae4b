"""Fuzzing of everything that reads a file: model files (fusedtrain.load and the command line's
model loader), weight files (load_weights), training checkpoints (fit(..., resume=path)) and
the command line's CSV reader. The contract: every input either loads or raises the
documented error, a ValueError naming the file (the command line: its UsageError naming the
file, printed as one line with exit status 2); never another exception (KeyError,
IndexError, UnicodeDecodeError, json's or NumPy's errors, MemoryError from a huge size...),
never a crash or a hang, and a failed load_weights leaves the model as it was.

The runs here are few (150 inputs per fuzzer) and derandomized, so that the suite is quick
and reproducible. A longer run draws new random inputs each time (a failure prints the
@reproduce_failure line that replays it):

    FUSEDTRAIN_FUZZ_EXAMPLES=20000 python -m pytest tests/test_fuzz.py -q

Each input the fuzzer found wrong is also a regression test of its own below the fuzzers."""

import contextlib
import copy
import csv
import io
import itertools
import json
import os
import shutil
import socket
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fusedtrain as ft
from fusedtrain import callbacks as cb
from fusedtrain import __main__ as main_module
from fusedtrain import cli, layers, regularizers, serialization, tables

import guards
from guards import join_file, split_file

LONG_RUN_EXAMPLES = int(os.environ.get("FUSEDTRAIN_FUZZ_EXAMPLES", "0"))
# The long run draws new inputs each time; the short one the same inputs every time.
FUZZ = settings(max_examples=LONG_RUN_EXAMPLES or 150, derandomize=not LONG_RUN_EXAMPLES, database=None,
                # Loading a file of a few kilobytes takes about a millisecond and a resumed fit a
                # few: ten seconds mean a hang.
                deadline=10_000,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much], print_blob=True)
FEATURES = 3


# The files fuzzed -----------------------------------------------------------------------------

def classifier():
    model = ft.Sequential([layers.Normalization(mean=[1.0, -2.0, 0.5], variance=[4.0, 0.25, 1.0]),
                           layers.Dense(5, activation="relu"), layers.Dropout(0.25),
                           layers.Dense(4, activation="leaky_relu"), layers.Dense(3)],
                          input_dim=FEATURES, seed=1)
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    return model


def regressor():
    """Not compiled; every activation layer, a regularizer and a named initializer."""
    model = ft.Sequential([layers.Dense(4, kernel_regularizer=regularizers.L2(0.01), kernel_initializer="he_normal"),
                           layers.GELU(), layers.Dense(4, use_bias=False), layers.Tanh(), layers.Dense(3),
                           layers.Sigmoid(), layers.LeakyReLU(0.1), layers.ReLU(), layers.Activation("tanh"),
                           layers.Dense(2), layers.Softmax()],
                          input_dim=FEATURES, seed=2)
    model.build()
    return model


def small_data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(24, FEATURES)).astype(np.float32)
    return x, np.arange(24) % 3


def resume_callbacks(folder):
    """The callbacks of the checkpointed run (new objects, as resume asks)."""
    return [cb.ModelCheckpoint(str(folder / "resumed.safetensors"), save_training_state=True),
            cb.EarlyStopping(monitor="loss", patience=5, restore_best_weights=True)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def files(folder):
    """Valid files of each kind, by name: their bytes."""
    trained = classifier()
    x, y = small_data()
    trained.fit(x, y, epochs=2, batch_size=8, verbose=0, seed=4,
                callbacks=[cb.ModelCheckpoint(str(folder / "checkpoint.safetensors"), save_training_state=True),
                           cb.EarlyStopping(monitor="loss", patience=5, restore_best_weights=True)])
    trained.save(folder / "classifier.safetensors")
    serialization.save(trained, folder / "cli.safetensors", metadata={cli.TASK_METADATA_KEY: cli.TaskInfo(
        cli.CLASSIFICATION, classes=["a", "b", "c"], target="label", features=["f0", "f1", "f2"]).to_json()})
    classifier().save(folder / "untrained.safetensors")
    trained.save_weights(folder / "weights.safetensors")
    model = regressor()
    model.save(folder / "regressor.safetensors")
    model.save_weights(folder / "regressor_weights.safetensors")
    return ValidFiles({path.stem: path.read_bytes() for path in folder.iterdir()})


class ValidFiles(dict):
    """The valid files by name; a short repr keeps the fuzzer's reports readable."""

    def __repr__(self):
        return f"<valid files {', '.join(self)}>"


_file_numbers = itertools.count()


@contextlib.contextmanager
def written(folder, contents, suffix=".safetensors"):
    """A new file holding ``contents``, removed afterwards. Each input gets a file of its own:
    overwriting one file makes the file system flush it every time, which is slow."""
    path = folder / f"input{next(_file_numbers)}{suffix}"
    path.write_bytes(contents)
    try:
        yield path
    finally:
        path.unlink()


# The contract ---------------------------------------------------------------------------------

def rejected_properly(error, path):
    """A refusal as documented: exactly ValueError (not one of its subclasses such as
    UnicodeDecodeError or json.JSONDecodeError), naming the file."""
    assert type(error) is ValueError, f"{type(error).__name__}: {error}"
    assert str(path) in str(error), str(error)


def check_model_load(path, compile=True):
    """fusedtrain.load either gives a working model or refuses the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            model = ft.load(path, compile=compile)
    except Exception as error:
        rejected_properly(error, path)
        return None
    with np.errstate(all="ignore"):
        outputs = model.predict(np.ones((2, model.input_dim), np.float32))
    assert outputs.shape == (2, model.output_dim)
    return model


def check_weights_load(path, model_factory):
    """load_weights either loads the file's weights or refuses it and changes nothing."""
    model = model_factory()
    model.build()
    before = model.parameters.copy()
    try:
        model.load_weights(path)
    except Exception as error:
        rejected_properly(error, path)
        np.testing.assert_array_equal(model.parameters, before)
        return False
    assert np.isfinite(model.parameters).all()
    return True


def check_resume(path, folder):
    """fit(resume=path) either goes on training or refuses the checkpoint before changing the model."""
    model = classifier()
    model.build()
    before = model.parameters.copy()
    x, y = small_data()
    try:
        with warnings.catch_warnings():
            # resume warns when fit's arguments differ from the checkpointed run's, and fit when
            # damaged but finite optimizer settings make the loss diverge.
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            history = model.fit(x, y, epochs=3, batch_size=8, verbose=0, seed=4, resume=path,
                                callbacks=resume_callbacks(folder))
    except Exception as error:
        # A checkpoint taken after epoch 3 is valid, but fit(epochs=3) says it cannot go on.
        if "epochs: training would end at epoch 3" not in str(error):
            rejected_properly(error, path)
        np.testing.assert_array_equal(model.parameters, before)
        return False
    assert len(history.epoch) <= 3
    return True


def check_every_loader(path, folder, kind):
    """Runs the loaders that take files of ``kind`` on ``path``."""
    if kind in ("classifier", "untrained", "cli", "checkpoint", "regressor"):
        check_model_load(path)
        check_model_load(path, compile=False)
    if kind == "regressor_weights" or kind == "regressor":
        check_weights_load(path, regressor)
    else:
        check_weights_load(path, classifier)
    if kind == "checkpoint":
        check_resume(path, folder)
    if kind == "cli":
        check_cli_model(path)


def check_cli_model(path):
    """The command line's model loader: a model and its task, or a UsageError naming the file;
    then `fusedtrain predict` and `evaluate` with that model on a CSV file of its columns end
    with status 0, or 2 and one line naming the model or the data file."""
    try:
        model, info = cli.load_model(str(path))
    except cli.UsageError as error:
        assert str(path) in str(error), str(error)
        return
    data = path.parent / f"{path.stem}_data.csv"
    data.write_text("f0,f1,f2,label\n0.5,1,-2,a\n1,2,3,c\n")
    try:
        for command in (["predict", str(path), str(data), "--out", "-"], ["evaluate", str(path), str(data)]):
            output, errors = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(output), contextlib.redirect_stderr(errors):
                status = main_module.main(command)
            if status == 2:
                message = errors.getvalue()
                assert message.count("\n") == 1 and (str(path) in message or str(data) in message), message
            else:
                assert status == 0, errors.getvalue()
    finally:
        data.unlink()


# Byte-level mutations ---------------------------------------------------------------------------

KINDS = ("classifier", "untrained", "cli", "checkpoint", "regressor", "weights", "regressor_weights")


@st.composite
def mutated_bytes(draw, files):
    kind = draw(st.sampled_from(KINDS))
    data = bytearray(files[kind])
    header_end = 8 + int.from_bytes(data[:8], "little")
    # Positions anywhere, or near the places where the layout changes.
    position = st.one_of(st.integers(0, len(data) - 1),
                         st.sampled_from([0, 7, 8, 9, header_end - 1, header_end, header_end + 1, len(data) - 1]))
    for _ in range(draw(st.integers(1, 4))):
        operation = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "duplicate",
                                          "enlarge_header"]))
        if not data:
            break
        at = min(draw(position), len(data) - 1)
        if operation == "enlarge_header" and len(data) >= 8:
            enlarge_header(draw, data)
        elif operation == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif operation == "set":
            data[at] = draw(st.sampled_from([0, 0xFF, ord('"'), ord("{"), ord("}"), ord(","), ord("9"), 0x80]))
        elif operation == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif operation == "delete":
            del data[at:at + draw(st.integers(1, 32))]
        elif operation == "truncate":
            del data[at:]
        else:
            data[at:at] = data[at:at + draw(st.integers(1, 64))]
    return kind, bytes(data)


def enlarge_header(draw, data):
    """Makes the header size field of ``data`` larger (in place): by a few bytes (the header
    then takes in the first bytes of the tensors, or spaces added after it, which JSON allows),
    to around the bound MAX_HEADER_BYTES, or far beyond the file."""
    size = int.from_bytes(data[:8], "little")
    bound = serialization.MAX_HEADER_BYTES
    grown = draw(st.one_of(st.integers(size + 1, size + 64),
                           st.sampled_from([bound - 1, bound, bound + 1, 2**32, 2**63, 2**64 - 1])))
    # An earlier mutation may have left a size field near 2**64 already.
    grown = min(max(grown, size + 1), 2**64 - 1)
    if grown <= size + 64 and size < len(data) and draw(st.booleans()):
        end = 8 + size
        data[end:end] = b" " * (grown - size)
    data[:8] = grown.to_bytes(8, "little")


@FUZZ
@given(data=st.data(), size=st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 2**63, 2**64 - 1])))
def test_the_header_size_field(files, folder, data, size):
    kind = data.draw(st.sampled_from(KINDS))
    contents = files[kind]
    near = data.draw(st.integers(-16, 16))
    # Sizes around the real one and the file's length, and any size at all.
    size = data.draw(st.sampled_from([size, max(0, int.from_bytes(contents[:8], "little") + near),
                                      max(0, len(contents) - 8 + near)]))
    with written(folder, size.to_bytes(8, "little") + contents[8:]) as path:
        check_every_loader(path, folder, kind)


@pytest.mark.parametrize("kind", ["weights", "checkpoint", "cli"])
def test_truncation_at_every_position(files, folder, kind):
    """Every prefix of a valid file is refused (in the header length, the header, the tensors)."""
    contents = files[kind]
    model = classifier()
    for cut in range(len(contents)):
        with written(folder, contents[:cut]) as path, pytest.raises(ValueError) as info:
            if kind == "weights":
                model.load_weights(path)
            else:
                ft.load(path)
        rejected_properly(info.value, path)
    with written(folder, contents) as path:
        check_every_loader(path, folder, kind)


# Header-level mutations -------------------------------------------------------------------------

INTERESTING_INTEGERS = st.sampled_from([0, 1, -1, 2, 3, 4, 5, 7, 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1,
                                        2**63, 2**64 - 1, 2**64, 10**30, -2**63])
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), INTERESTING_INTEGERS,
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                         st.sampled_from(["", "relu", "tanh", "F32", "adam", "Dense", "1", "NaN", "layers.0.kernel",
                                          "fusedtrain.model", "fusedtrain.checkpoint", "Sequential"]))


def json_containers(children):
    return st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4))


JSON_VALUES = st.recursive(JSON_SCALARS, json_containers, max_leaves=8)
# Keys that the readers look for, so that added entries hit the code that reads them.
KNOWN_KEYS = st.sampled_from([
    "units", "activation", "use_bias", "input_dim", "rate", "seed", "name", "trainable", "epsilon", "negative_slope",
    "kernel_initializer", "kernel_regularizer", "bias_initializer", "class_name", "config", "layers", "optimizer",
    "loss", "metrics", "learning_rate", "epoch", "stopped", "iterations", "train_step", "fit_count", "entropy",
    "dropout_seeds", "shuffle_rng", "history", "fit", "callbacks", "state", "__tensors__", "task", "classes",
    "features", "target", "dtype", "shape", "data_offsets", "__metadata__", "bit_generator", "inc", "best",
    "wait", "best_weights"])


def json_paths(value, prefix=()):
    """Every position in a JSON value, as a tuple of keys and indices."""
    paths = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            paths += json_paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            paths += json_paths(child, prefix + (index,))
    return paths


def mutate_json(draw, value):
    """``value`` with one position replaced, removed, or given a new entry."""
    value = copy.deepcopy(value)
    path = draw(st.sampled_from(json_paths(value)))
    operation = draw(st.sampled_from(["replace", "remove", "add", "duplicate"]))
    if not path:
        return draw(JSON_VALUES) if operation == "replace" else value
    parent = value
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if operation == "replace":
        parent[last] = draw(JSON_VALUES)
    elif operation == "remove":
        del parent[last]
    elif operation == "add":
        target = parent[last]
        if isinstance(target, dict):
            target[draw(st.one_of(KNOWN_KEYS, st.text(max_size=6)))] = draw(JSON_VALUES)
        elif isinstance(target, list):
            target.insert(draw(st.integers(0, len(target))), draw(JSON_VALUES))
        else:
            parent[last] = [target, draw(JSON_VALUES)]
    elif isinstance(parent, list):
        parent.insert(last, copy.deepcopy(parent[last]))
    else:
        parent[last] = [parent[last], copy.deepcopy(parent[last])]
    return value


@st.composite
def mutated_headers(draw, files):
    """A file with its safetensors header changed: the tensors' entries, the metadata's
    entries, or the JSON inside a metadata entry."""
    kind = draw(st.sampled_from(KINDS))
    header, body = split_file(files[kind])
    target = draw(st.sampled_from(["tensor", "metadata", "metadata_json", "anywhere"]))
    tensor_names = sorted(key for key in header if key != "__metadata__")
    if target == "tensor":
        name = draw(st.sampled_from(tensor_names))
        field = draw(st.sampled_from(["dtype", "shape", "data_offsets", "overlap", "entry", "rename", "copy"]))
        entry = header[name]
        if field == "dtype":
            entry["dtype"] = draw(st.one_of(
                st.sampled_from(["F64", "F16", "BF16", "I8", "U8", "I32", "I64", "U64", "BOOL", "F8_E4M3", "F8_E5M2",
                                 "C64", "f32", "", "F32 "]), JSON_VALUES))
        elif field == "shape":
            entry["shape"] = draw(st.one_of(
                st.lists(st.one_of(st.integers(0, 8), INTERESTING_INTEGERS), max_size=4),
                st.sampled_from([[2**32, 2**32], [2**62, 4], [2**64 - 1], [-1, -4], [0], []]), JSON_VALUES))
        elif field == "data_offsets":
            end = len(body)
            offset = st.one_of(st.integers(0, end + 8), INTERESTING_INTEGERS)
            entry["data_offsets"] = draw(st.one_of(st.lists(offset, min_size=2, max_size=2),
                                                   st.lists(offset, max_size=3), JSON_VALUES))
        elif field == "overlap":
            # The bytes of another tensor, all or in part.
            start, end = header[draw(st.sampled_from(tensor_names))]["data_offsets"]
            shift = draw(st.integers(-8, 8))
            entry["data_offsets"] = [max(0, start + shift), max(0, end + shift)]
        elif field == "entry":
            header[name] = mutate_json(draw, entry)
        elif field == "rename":
            header[draw(st.one_of(st.sampled_from(["layers.9.kernel", "layers.1.kernel", "optimizer.m",
                                                   "callbacks.0.best_weights.0", "callbacks.5.x.0", "layers.0",
                                                   "layers.x.kernel", "layers.-1.bias", "layers.00.kernel"]),
                                  st.text(max_size=12)))] = header.pop(name)
        else:
            header[draw(st.text(max_size=12))] = dict(entry)
    else:
        metadata = header.setdefault("__metadata__", {})
        if target == "metadata":
            key = draw(st.one_of(st.sampled_from(sorted(metadata) or ["format"]), KNOWN_KEYS))
            metadata[key] = draw(st.one_of(
                st.sampled_from(["0", "1", "2", "-1", "1.0", " 1", "01", "1e3", "99999999999999999999", "",
                                 "fusedtrain.model", "fusedtrain.weights", "fusedtrain.checkpoint", "fusedtrain.",
                                 "{", "[]", "null", "{}", "NaN", '"x"', "\ud800", "1\x00", "0.1.0\n", "9" * 300,
                                 "x" * 131_073]),
                st.text(max_size=16), JSON_VALUES))
        elif target == "metadata_json":
            entries = [key for key, value in metadata.items() if value[:1] in ("{", "[")]
            assume(entries)
            key = draw(st.sampled_from(sorted(entries)))
            decoded = json.loads(metadata[key])
            for _ in range(draw(st.integers(1, 3))):
                decoded = mutate_json(draw, decoded)
            metadata[key] = json.dumps(decoded)
        else:
            header = mutate_json(draw, header)
    return kind, join_file(header, body)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("mutated", [mutated_bytes, mutated_headers], ids=["bytes", "headers"])
@FUZZ
@given(data=st.data())
def test_mutated_files(files, folder, mutated, data):
    """Byte-level damage, then damage that keeps the file's framing but rewrites its JSON."""
    kind, contents = data.draw(mutated(files))
    with written(folder, contents) as path:
        check_every_loader(path, folder, kind)


@pytest.mark.filterwarnings("ignore::UserWarning")
@FUZZ
@given(data=st.data())
def test_mutated_checkpoint_state(files, folder, data):
    """The training state of a checkpoint: resume reads the most JSON of all."""
    header, body = split_file(files["checkpoint"])
    metadata = header["__metadata__"]
    key = data.draw(st.sampled_from(["training", "training", "training", "architecture", "compile"]))
    decoded = json.loads(metadata[key])
    for _ in range(data.draw(st.integers(1, 3))):
        decoded = mutate_json(data.draw, decoded)
    metadata[key] = json.dumps(decoded)
    with written(folder, join_file(header, body)) as path:
        check_resume(path, folder)
        check_model_load(path)


@FUZZ
@given(data=st.data())
def test_mutated_cli_task(files, folder, data):
    """The command line's "task" entry of a model file."""
    header, body = split_file(files["cli"])
    metadata = header["__metadata__"]
    decoded = json.loads(metadata[cli.TASK_METADATA_KEY])
    for _ in range(data.draw(st.integers(1, 3))):
        decoded = mutate_json(data.draw, decoded)
    metadata[cli.TASK_METADATA_KEY] = json.dumps(decoded)
    with written(folder, join_file(header, body)) as path:
        check_cli_model(path)


@FUZZ
@given(data=st.binary(max_size=256))
def test_arbitrary_bytes(folder, data):
    with written(folder, data) as path:
        check_every_loader(path, folder, "checkpoint")


# Paths that are no regular file ------------------------------------------------------------------

def _fit_resume(path):
    model = classifier()
    x, y = small_data()
    model.fit(x, y, epochs=3, batch_size=8, verbose=0, resume=path)


# Each reader of a file: (the suffix its path takes, the call, the error it raises).
PATH_READERS = {
    "load": (".safetensors", ft.load, ValueError),
    "load_weights": (".safetensors", lambda path: classifier().load_weights(path), ValueError),
    "resume": (".safetensors", _fit_resume, ValueError),
    "cli_model": (".safetensors", lambda path: cli.load_model(str(path)), cli.UsageError),
    "read_dataset_csv": (".csv", lambda path: cli.read_dataset([str(path)]), cli.UsageError),
    "read_dataset_tsv": (".tsv", lambda path: cli.read_dataset([str(path)]), cli.UsageError),
    "read_dataset_parquet": (".parquet", lambda path: cli.read_dataset([str(path)]), cli.UsageError),
    "read_dataset_npz": (".npz", lambda path: cli.read_dataset([str(path)]), cli.UsageError),
    "read_dataset_npy": (".npy", lambda path: cli.read_dataset([str(path)], target_required=False), cli.UsageError),
    "read_dataset_npy_pair": (".npy", lambda path: cli.read_dataset([str(path), str(path)]), cli.UsageError),
    # The readers past the command line's first check of the path, as a path swapped after
    # that check reaches them.
    "csv": (".csv", lambda path: cli._read_csv(str(path)), cli.UsageError),
    "npy": (".npy", lambda path: cli._load_npy(str(path)), cli.UsageError),
    "npz": (".npz", lambda path: cli._read_npz(str(path), True), cli.UsageError),
    "parquet": (".parquet", lambda path: cli._read_frame(str(path)), cli.UsageError),
}
NON_REGULAR = ("fifo", "link_to_fifo", "/dev/zero", "/dev/null", "/dev/urandom", "link_to_dev_zero", "folder",
               "socket")


def non_regular_path(folder, kind, suffix):
    """A path of ``kind`` (a FIFO without a writer, a device, a folder, a socket, or a link to
    one) whose name ends with ``suffix``, made once per folder."""
    path = folder / f"{kind.strip('/').replace('/', '_')}{suffix}"
    if os.path.lexists(path):
        return path
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "link_to_fifo":
        path.symlink_to(non_regular_path(folder, "fifo", suffix))
    elif kind.startswith("/dev/"):
        path.symlink_to(kind)
    elif kind == "link_to_dev_zero":
        path.symlink_to(non_regular_path(folder, "/dev/zero", suffix))
    elif kind == "folder":
        path.mkdir()
    else:
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))  # the socket's file stays after it is closed
        server.close()
    return path


@pytest.fixture(scope="module")
def special_folder():
    # A short path: a socket's may not exceed about 100 bytes.
    folder = Path(tempfile.mkdtemp(prefix="ft-paths-"))
    yield folder
    shutil.rmtree(folder)


@guards.needs_bounds
@FUZZ
@given(kind=st.sampled_from([kind for kind in NON_REGULAR if kind != "socket" or hasattr(socket, "AF_UNIX")]),
       reader=st.sampled_from(sorted(PATH_READERS)))
def test_non_regular_paths(special_folder, kind, reader):
    """A FIFO, a device, a folder or a socket in place of a file: refused by name at once,
    never a hang (a FIFO without a writer blocks open) nor a read without end (/dev/zero)."""
    suffix, call, expected = PATH_READERS[reader]
    path = non_regular_path(special_folder, kind, suffix)
    with guards.bounded(seconds=5):
        with pytest.raises(expected) as info:
            call(path)
    assert type(info.value) is expected, f"{type(info.value).__name__}: {info.value}"
    assert str(path) in str(info.value), str(info.value)
    assert "not a regular file" in str(info.value) or "is a folder, not a file" in str(info.value), str(info.value)


# The CSV reader ---------------------------------------------------------------------------------

def check_csv(path, **arguments):
    """read_dataset on a CSV file either gives finite float32 features with one row per data
    line, or a UsageError naming the file; the targets then go through the task inference and
    encoding train uses, with the same contract."""
    try:
        dataset = cli.read_dataset([str(path)], **arguments)
    except cli.UsageError as error:
        assert str(path) in str(error), str(error)
        return None
    # The table's columns through the preprocessor train uses: features, or a ValueError that
    # the command line prints as one line.
    try:
        dataset.x = tables.TablePreprocessor(scale=False).fit_transform(dataset.table)
    except ValueError as error:
        assert str(error).startswith("table: "), str(error)
        return None
    assert dataset.x.dtype == np.float32 and dataset.x.ndim == 2 and dataset.x.shape[1] >= 1
    assert np.isfinite(dataset.x).all()
    assert len(dataset.lines) == dataset.x.shape[0] >= 1
    if dataset.y is not None:
        assert dataset.y.shape[0] == int(dataset.labeled.sum())
        try:
            task = cli.infer_task(dataset.y)
            if task == cli.CLASSIFICATION:
                indices, classes = cli.encode_classes(dataset)
                assert indices.min() >= 0 and indices.max() < len(classes)
                json.dumps(classes)  # the model file records them
                mapped = cli.map_classes(dataset, classes)
                np.testing.assert_array_equal(mapped, indices)
            else:
                assert np.isfinite(cli.regression_targets(dataset)).all()
        except cli.UsageError as error:
            assert str(path) in str(error), str(error)
    return dataset


CSV_ARGUMENTS = st.one_of(st.just({}), st.just({"target_required": False}),
                          st.fixed_dictionaries({"target": st.sampled_from(["a", "b", "label", "", " a"])}),
                          st.just({"default_target": "label"}))


@FUZZ
@given(text=st.text(max_size=200), arguments=CSV_ARGUMENTS)
def test_csv_arbitrary_text(folder, text, arguments):
    with written(folder, text.encode("utf-8", "surrogatepass"), ".csv") as path:
        check_csv(path, **arguments)


@FUZZ
@given(data=st.binary(max_size=200), arguments=CSV_ARGUMENTS)
def test_csv_arbitrary_bytes(folder, data, arguments):
    with written(folder, data, ".csv") as path:
        check_csv(path, **arguments)


CELLS = st.one_of(
    st.floats().map(repr), st.floats(width=32).map(str), st.integers().map(str), INTERESTING_INTEGERS.map(str),
    st.sampled_from(["", " ", "NaN", "nan", "-nan", "inf", "-Infinity", "1e400", "-1e39", "3.4e38", "3.5e38",
                     "1_000", "0x10", "1,5", "1.5.2", "abc", "setosa", " 2 ", "\t3", "1e-400", "+0", "-0.0",
                     "１２", "٣", "True", "None", '"', '""', "a\nb", "a\rb", "\ufeff1", "\x00", "1\x00", "é"]),
    st.text(max_size=6))
HEADER_NAMES = st.one_of(st.sampled_from(["a", "b", "label", "a", " a", "", " ", "x y", '"q"', "\ufeffa", "b\n"]),
                         st.text(max_size=5))


@st.composite
def structured_csv(draw):
    """CSV text with a header and rows: duplicate or empty names, rows of the wrong length,
    quoting of every kind, odd numbers, BOM, and any line ending."""
    columns = draw(st.integers(1, 4))
    header = draw(st.lists(HEADER_NAMES, min_size=columns, max_size=columns))
    rows = draw(st.lists(st.lists(CELLS, min_size=max(0, columns - 1), max_size=columns + 1), max_size=8))
    if draw(st.booleans()):
        # Mostly well-formed rows, so that parsing gets past the shape checks.
        rows = [(row + [""] * columns)[:columns] for row in rows]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=draw(st.sampled_from(["\n", "\r\n", "\r"])),
                        quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC])))
    for row in [header] + rows:
        if draw(st.integers(0, 9)) == 0:
            buffer.write(draw(st.sampled_from(["\n", " , \n", ",,\n", "#\n"])))
        writer.writerow(row)
    text = buffer.getvalue()
    if draw(st.booleans()):
        text = "\ufeff" + text
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "latin-1", "utf-16"]))
    return text.encode(encoding, "replace")


@FUZZ
@given(contents=structured_csv(), arguments=CSV_ARGUMENTS)
def test_csv_structured(folder, contents, arguments):
    with written(folder, contents, ".csv") as path:
        check_csv(path, **arguments)


def test_the_fuzzed_inputs_are_not_all_refused(files, folder):
    """The contract checks above also hold for a reader that refuses everything: the valid
    inputs they start from load."""
    for kind in KINDS:
        path = folder / f"{kind}.safetensors"
        path.write_bytes(files[kind])
        if kind not in ("weights", "regressor_weights"):
            assert check_model_load(path) is not None
        assert check_weights_load(path, regressor if kind.startswith("regressor") else classifier)
    assert check_resume(folder / "checkpoint.safetensors", folder)
    path = folder / "valid.csv"
    path.write_text("a,b,label\n1,2,x\n3,4.5,y\n-1e3,0,x\n")
    dataset = check_csv(path)
    np.testing.assert_array_equal(dataset.x, np.array([[1, 2], [3, 4.5], [-1e3, 0]], np.float32))
    assert dataset.y.tolist() == ["x", "y", "x"]


# Inputs the fuzzers found wrong --------------------------------------------------------------

def with_json_entry(contents, key, change):
    """``contents`` with the JSON metadata entry ``key`` changed in place by ``change``."""
    header, body = split_file(contents)
    decoded = json.loads(header["__metadata__"][key])
    change(decoded)
    header["__metadata__"][key] = json.dumps(decoded)
    return join_file(header, body)


def early_stopping_state(training):
    return training["callbacks"][1]["state"]


@pytest.mark.parametrize("change, match", [
    # Crashed in EarlyStopping.on_epoch_end with a TypeError after an epoch of training.
    (lambda t: early_stopping_state(t).update(best=[]),
     r"EarlyStopping.best is an empty list, expected None or a number or an integer"),
    (lambda t: early_stopping_state(t).update(best={"a": 1}), r"EarlyStopping.best is a mapping"),
    (lambda t: early_stopping_state(t).update(best_epoch="2"), r"EarlyStopping.best_epoch is a string"),
    (lambda t: early_stopping_state(t).update(wait=None), r"EarlyStopping.wait is None, expected an integer"),
    (lambda t: early_stopping_state(t).update(wait=1.5), r"EarlyStopping.wait is a number, expected an integer"),
    (lambda t: early_stopping_state(t).update(stopped=0), r"EarlyStopping.stopped is an integer, expected a boolean"),
    # (An integer of more than MAX_INTEGER_DIGITS digits is refused when the JSON is decoded.)
    (lambda t: early_stopping_state(t).update(best=10**300), r"EarlyStopping.best is an integer out of range"),
    (lambda t: t["callbacks"][0]["state"].update(epoch="1"), r"ModelCheckpoint.epoch is a string, expected an integer"),
    # Raised OverflowError from NumPy's generator.
    (lambda t: t["shuffle_rng"].update(has_uint32=2**31), "shuffle_rng is not a PCG64 generator state"),
    (lambda t: t["shuffle_rng"]["state"].update(state=2**200), "shuffle_rng is not a PCG64 generator state"),
    # Gave a history of 4 epochs for a run of 3.
    (lambda t: t["history"]["epoch"].insert(0, 0), r"the history's epochs \[0, 0, 1\] are not increasing"),
    (lambda t: t["history"].update(epoch=[0, 2]), r"the history's epochs \[0, 2\] are not increasing epochs before "
                                                  r"epoch 2"),
    (lambda t: t["history"]["history"]["loss"].append(1.0), r"more values of \['loss'\] than epochs \(2\)"),
])
def test_damaged_training_states_are_refused_before_training(files, folder, change, match):
    with written(folder, with_json_entry(files["checkpoint"], "training", change)) as path:
        model = classifier()
        model.build()
        before = model.parameters.copy()
        x, y = small_data()
        with pytest.raises(ValueError, match=match) as info:
            model.fit(x, y, epochs=3, batch_size=8, verbose=0, seed=4, resume=path,
                      callbacks=resume_callbacks(folder))
        rejected_properly(info.value, path)
        np.testing.assert_array_equal(model.parameters, before)


def test_every_state_key_of_the_built_in_callbacks_is_checked(folder):
    built_in = [cb.EarlyStopping(), cb.ReduceLROnPlateau(), cb.ModelCheckpoint(str(folder / "unused.safetensors"))]
    assert {type(callback).__name__: set(callback.get_state()) for callback in built_in} == {
        name: set(kinds) for name, kinds in serialization.CALLBACK_STATE_KINDS.items()}
    stateless = [name for name, value in vars(cb).items() if isinstance(value, type) and issubclass(value, cb.Callback)
                 and name not in serialization.CALLBACK_STATE_KINDS]
    assert all(getattr(cb, name).get_state is cb.Callback.get_state for name in stateless)


def test_resume_with_the_same_callback_objects(folder):
    """Callbacks reused from the interrupted run (holding its measurements) resume as new ones do."""
    x, y = small_data()
    callbacks = resume_callbacks(folder)
    callbacks[0].filepath = str(folder / "reused.safetensors")
    classifier().fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=callbacks)
    assert callbacks[1].best is not None and callbacks[1].best_weights is not None
    model = classifier()
    history = model.fit(x, y, epochs=3, batch_size=8, verbose=0, resume=folder / "reused.safetensors",
                        callbacks=callbacks)
    assert history.epoch == [0, 1, 2]


def test_a_model_without_weights_resumes(folder):
    """EarlyStopping keeps an empty list of best weights for a model of activation layers only."""
    x, y = small_data()

    def model():
        built = ft.Sequential([layers.Softmax()], input_dim=FEATURES)
        built.compile("sgd", "sparse_categorical_crossentropy")
        return built

    stopper = cb.EarlyStopping(monitor="loss", patience=5, restore_best_weights=True)
    model().fit(x, y, epochs=2, verbose=0, callbacks=[
        stopper, cb.ModelCheckpoint(str(folder / "empty.safetensors"), save_training_state=True)])
    assert stopper.best_weights == []
    history = model().fit(x, y, epochs=3, verbose=0, resume=folder / "empty.safetensors", callbacks=[
        cb.EarlyStopping(monitor="loss", patience=5, restore_best_weights=True),
        cb.ModelCheckpoint(str(folder / "empty_again.safetensors"), save_training_state=True)])
    assert history.epoch == [0, 1, 2]


def test_the_states_of_other_callbacks_are_theirs_to_check(folder):
    """A user's callback may keep any JSON value, and change its kind between saves."""

    class Notes(cb.Callback):
        def __init__(self):
            super().__init__()
            self.notes = None

        def on_epoch_end(self, epoch, logs=None):
            self.notes = ["epoch", epoch] if epoch else {"first": True}

        def get_state(self):
            return {"notes": self.notes, "empty": []}

        def set_state(self, state):
            self.notes = state["notes"]

    x, y = small_data()
    classifier().fit(x, y, epochs=2, batch_size=8, verbose=0,
                     callbacks=[Notes(), cb.ModelCheckpoint(str(folder / "notes.safetensors"),
                                                            save_training_state=True)])
    notes = Notes()
    classifier().fit(x, y, epochs=3, batch_size=8, verbose=0, resume=folder / "notes.safetensors",
                     callbacks=[notes, cb.ModelCheckpoint(str(folder / "notes_again.safetensors"),
                                                          save_training_state=True)])
    assert notes.notes == ["epoch", 2]


@pytest.mark.parametrize("key", ["architecture", "compile", "training"])
def test_json_nested_too_deep(files, folder, key):
    """Raised RecursionError from json.loads."""
    header, body = split_file(files["checkpoint"])
    header["__metadata__"][key] = "[" * 100_000 + "]" * 100_000
    with written(folder, join_file(header, body)) as path:
        with pytest.raises(ValueError, match=f"the '{key}' metadata is not valid JSON") as info:
            serialization.read_checkpoint(path)  # what fit(resume=path) reads first
        rejected_properly(info.value, path)


def test_a_header_nested_too_deep(folder):
    text = '{"a":' * 50_000 + "1" + "}" * 50_000
    with written(folder, join_file(None, b"", text=text)) as path:
        with pytest.raises(ValueError, match="its header is not JSON") as info:
            ft.load(path)
        rejected_properly(info.value, path)


def damaged_task(files, folder, change):
    return written(folder, with_json_entry(files["cli"], cli.TASK_METADATA_KEY, change))


@pytest.mark.parametrize("change, match", [
    # Raised TypeError from map_classes (float(None)) in evaluate and predict.
    (lambda task: task.update(classes=[None, None, None]), "class labels are not distinct strings or distinct"),
    (lambda task: task.update(classes=["a", "a", "b"]), "class labels are not distinct"),
    (lambda task: task.update(classes=[1, 1.0, 2]), "class labels are not distinct"),
    (lambda task: task.update(classes=[0, {"x": 1}, 2]), "class labels are not distinct"),
    (lambda task: task.update(classes=[0, True, 2]), "class labels are not distinct"),
    # 309 digits (the most a file may hold) and beyond float range; more digits are refused as JSON.
    (lambda task: task.update(classes=[0, 1, 9 * 10**308]), "class labels are not distinct"),
    (lambda task: task.update(classes=[0, 1, 10**400]),
     r"holds an integer of 401 digits \(at most 309\) at classes\[2\]"),
    (lambda task: task.update(classes=[0, 1, float("nan")]), "class labels are not distinct"),
    (lambda task: task.update(classes=["a", 1, "b"]), "class labels are not distinct"),
    # A target that is no column name: TypeError (unhashable list) in the CSV reader.
    (lambda task: task.update(target=["label"]), "target is not a string"),
    (lambda task: task.update(data=7), "data is not a string"),
    (lambda task: task.update(features=["f0", ["f1"], "f2"]), "the feature columns are not distinct names"),
    (lambda task: task.update(features=["f0", "f0", "f2"]), "the feature columns are not distinct names"),
])
def test_damaged_task_entries_are_one_line_errors(files, folder, change, match, capsys):
    with damaged_task(files, folder, change) as path:
        with pytest.raises(cli.UsageError, match=match) as info:
            cli.load_model(str(path))
        assert str(info.value).startswith(f"{path}: the 'task' metadata")
        assert main_module.main(["predict", str(path), "--out", "-"]) == 2
        assert capsys.readouterr().err == f"fusedtrain: error: {info.value}\n"


def test_numeric_class_labels_still_load(files, folder):
    with damaged_task(files, folder, lambda task: task.update(classes=[0, 2.5, 10**300])) as path:
        _, info = cli.load_model(str(path))
        assert info.classes == [0, 2.5, 10**300]


def with_tensor_changed(contents, name, change):
    """``contents`` with the tensor ``name`` changed by ``change`` (a copy of it, changed in place)."""
    header, body = split_file(contents)
    start, end = header[name]["data_offsets"]
    tensor = np.frombuffer(body[start:end], np.float32).copy()
    change(tensor)
    return join_file(header, body[:start] + tensor.tobytes() + body[end:])


def test_a_negative_normalization_variance(files, folder):
    """A flipped sign bit: loaded, and every prediction was NaN."""
    def negative(tensor):
        tensor[1] = -0.25

    for kind in ("classifier", "weights"):
        with written(folder, with_tensor_changed(files[kind], "layers.0.variance", negative)) as path:
            model = classifier()
            model.build()
            before = model.parameters.copy()
            with pytest.raises(ValueError, match=r"layers.0.variance must be >= 0, got -0.25 at index 1"):
                model.load_weights(path)
            np.testing.assert_array_equal(model.parameters, before)
            if kind == "classifier":
                with pytest.raises(ValueError, match="variance must be >= 0") as info:
                    ft.load(path)
                rejected_properly(info.value, path)
    # The best weights EarlyStopping keeps in a checkpoint: restored at the end of training.
    with written(folder, with_tensor_changed(files["checkpoint"], "callbacks.1.best_weights.1", negative)) as path:
        with pytest.raises(ValueError, match=r"best_weights\[1\] must be >= 0, got -0.25") as info:
            classifier().fit(*small_data(), epochs=3, batch_size=8, verbose=0, resume=path,
                             callbacks=resume_callbacks(folder))
        rejected_properly(info.value, path)
