"""Files and paths crafted to hurt: each one a hostile user tried is a test here, and
so are the bounds the readers enforce (README, Reliability). The inputs that could cost time or
memory (an 8 GiB sparse file, /dev/zero, a FIFO, an architecture of 200,000 layers) are tried
in a fresh Python under an address-space limit and a timeout, so that a regression fails in
seconds instead of hanging the suite or filling the machine's memory. The contract: every
loader (fusedtrain.load, load_weights, fit(resume=), the command line's model and data
readers, CSVLogger(append=True)) refuses them with a ValueError (the command line:
UsageError) naming the path, in well under a second and without reading the file into
memory."""

import io
import json
import os
import socket
import time
import zipfile

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import callbacks as cb
from fusedtrain import cli, layers, regularizers, serialization
from guards import bounded, join_file, needs_bounds, run_bounded, split_file

GIB = 1 << 30

# The child's side: runs each (loader, path) of argv[1] and prints, for each, the exception it
# raised (or "loaded"), the seconds it took and how much the peak resident memory grew.
LOADERS = """
    import contextlib, io
    from fusedtrain import __main__ as main_module

    def model():
        built = ft.Sequential([layers.Dense(3)], input_dim=2, seed=0)
        built.compile("sgd", "mse")
        return built

    # `fusedtrain train PATH`: its exit status and what it printed to stderr, as a UsageError.
    def train(path):
        errors = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(errors):
            status = main_module.main(["train", path, "--out", path + ".model.safetensors", "--no-plot"])
        raise cli.UsageError(f"exit status {status}: {errors.getvalue()}")

    LOADERS = {
        "load": lambda path: ft.load(path),
        "load_weights": lambda path: model().load_weights(path),
        "resume": lambda path: model().fit(np.zeros((4, 2), np.float32), np.zeros((4, 3), np.float32), epochs=1,
                                           verbose=0, resume=path),
        "cli_model": lambda path: cli.load_model(path),
        "cli_data": lambda path: cli.read_dataset([path], target_required=False),
        # The data readers on their own, past the command line's first check of the path.
        "csv": lambda path: cli._read_csv(path),
        "npy": lambda path: cli._load_npy(path),
        "npz": lambda path: cli._read_npz(path, False),
        "parquet": lambda path: cli._read_frame(path),
        "train": train,
    }
    results = []
    for loader, path in json.loads(sys.argv[1]):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        try:
            LOADERS[loader](path)
            outcome, message = "loaded", ""
        except BaseException as error:
            outcome, message = type(error).__name__, str(error)
        seconds = time.perf_counter() - start
        growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) * 1024
        results.append({"loader": loader, "path": path, "outcome": outcome, "message": message[:2000],
                        "seconds": seconds, "growth": growth})
    print(json.dumps(results))
"""

MODEL_LOADERS = ("load", "load_weights", "resume", "cli_model")
DATA_READERS = {"csv": ".csv", "npy": ".npy", "npz": ".npz", "parquet": ".parquet"}


def try_loaders(pairs, seconds=1.0, growth=64 << 20, timeout=60.0):
    """Runs the loaders on their paths in a bounded child; checks that each refused its path
    by name, within ``seconds``, its peak memory growing by less than ``growth`` bytes."""
    results = run_bounded(LOADERS, json.dumps([[loader, str(path)] for loader, path in pairs]), timeout=timeout)
    for result in results:
        expected = "UsageError" if result["loader"] in ("cli_model", "cli_data", "train") \
            or result["loader"] in DATA_READERS else "ValueError"
        assert result["outcome"] == expected, result
        assert result["path"] in result["message"], result
        assert result["seconds"] < seconds, result
        assert result["growth"] < growth, result
    return {(result["loader"], result["path"]): result["message"] for result in results}


def every_loader(make_path):
    """(loader, path) for every loader: the model loaders on make_path(".safetensors"), the
    data readers (and the command line's read_dataset) on a path of their suffix."""
    pairs = [(loader, make_path(".safetensors")) for loader in MODEL_LOADERS]
    for reader, suffix in DATA_READERS.items():
        path = make_path(suffix)
        pairs += [(reader, path), ("cli_data", path)]
    return pairs


def grown_sparse(path, size):
    """Extends the file at ``path`` to ``size`` bytes with a hole (zeros that take no disk);
    skips the test where the file system would write them."""
    with open(path, "r+b") as handle:
        try:
            handle.truncate(size)
        except OSError as error:  # EFBIG: beyond the file system's largest file
            pytest.skip(f"this file system holds no file of {size:,} bytes ({error.strerror})")
    if os.stat(path).st_blocks * 512 > size // 2 + GIB:
        os.remove(path)
        pytest.skip("this file system does not keep sparse files sparse")
    return path


# Row 1: an 8 GB sparse file of zeros -----------------------------------------------------------

@needs_bounds
def test_an_8_gib_sparse_file_of_zeros_costs_milliseconds(tmp_path):
    """Was read whole (8.2 GB resident, 40 s) before "its header is not JSON"."""
    def sparse(suffix):
        path = tmp_path / f"zeros{suffix}"
        with open(path, "wb") as handle:
            handle.truncate(8 * GIB)
        return path

    first = sparse(".bin")
    if os.stat(first).st_blocks * 512 > GIB:
        pytest.skip("this file system does not keep sparse files sparse")
    messages = try_loaders(every_loader(sparse))
    assert "its header is not JSON" in messages[("load", str(tmp_path / "zeros.safetensors"))]
    assert "holds NUL bytes" in messages[("csv", str(tmp_path / "zeros.csv"))]


@needs_bounds
def test_a_header_size_beyond_the_bound_is_refused_before_reading(tmp_path):
    """A header size field of MAX_HEADER_BYTES + 1 in a file large enough to hold it."""
    path = tmp_path / "huge_header.safetensors"
    with open(path, "wb") as handle:
        handle.write((serialization.MAX_HEADER_BYTES + 1).to_bytes(8, "little"))
        handle.truncate(2 * serialization.MAX_HEADER_BYTES)
    messages = try_loaders([(loader, path) for loader in MODEL_LOADERS])
    assert "the header size field says 100,000,001 bytes, more than the 100,000,000" in messages[("load", str(path))]


# Row 2: /dev/zero, and other devices ---------------------------------------------------------------

@needs_bounds
def test_dev_zero_as_the_path(tmp_path):
    """Read until MemoryError (6 s). Also under a name of each data file's suffix."""
    def device(suffix):
        link = tmp_path / f"zero{suffix}"
        if not link.exists():
            link.symlink_to("/dev/zero")
        return link

    pairs = [(loader, "/dev/zero") for loader in MODEL_LOADERS] + every_loader(device)
    messages = try_loaders(pairs)
    assert messages[("load", "/dev/zero")] == "/dev/zero: is a character device, not a regular file; fusedtrain " \
                                              "reads only regular files"


# Row 3: a FIFO with no writer -----------------------------------------------------------------

@needs_bounds
def test_a_fifo_without_a_writer(tmp_path):
    """Hung forever."""
    def fifo(suffix):
        path = tmp_path / f"pipe{suffix}"
        if not path.exists():
            os.mkfifo(path)
        return path

    messages = try_loaders(every_loader(fifo), timeout=30)
    assert "is a FIFO (named pipe), not a regular file" in messages[("load", str(tmp_path / "pipe.safetensors"))]


@needs_bounds
def test_a_path_swapped_for_a_fifo_between_the_check_and_the_opening(tmp_path):
    """os.stat sees a regular file, the path is then a FIFO: the file is opened without
    blocking (O_NONBLOCK) and checked again on the open descriptor."""
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    regular = tmp_path / "regular.safetensors"
    regular.write_bytes(b"\0" * 16)
    script = """
        real_stat = os.stat
        def stat_before_the_swap(path, *arguments, **keywords):
            if os.fspath(path) == sys.argv[1]:
                return real_stat(sys.argv[2])
            return real_stat(path, *arguments, **keywords)
        os.stat = stat_before_the_swap
        try:
            ft.load(sys.argv[1])
            print(json.dumps("loaded"))
        except ValueError as error:
            print(json.dumps(str(error)))
    """
    message = run_bounded(script, str(fifo), str(regular), timeout=30)
    assert message == f"{fifo}: is a FIFO (named pipe), not a regular file; fusedtrain reads only regular files"


@needs_bounds
def test_a_folder_or_a_socket_as_the_path(tmp_path):
    def folder(suffix):
        path = tmp_path / f"folder{suffix}"
        path.mkdir(exist_ok=True)
        return path

    pairs = every_loader(folder)
    if hasattr(socket, "AF_UNIX"):
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(tmp_path / "socket.safetensors"))
        pairs += [(loader, tmp_path / "socket.safetensors") for loader in MODEL_LOADERS]
    try:
        messages = try_loaders(pairs)
    finally:
        if hasattr(socket, "AF_UNIX"):
            server.close()
    assert "is a folder, not a regular file" in messages[("load", str(tmp_path / "folder.safetensors"))]
    assert messages[("cli_model", str(tmp_path / "folder.safetensors"))].endswith("is a folder, not a file")


# Row 4: an architecture of 200,000 layers, and linear naming --------------------------------

def model_file(tmp_path, name="model.safetensors"):
    model = ft.Sequential([layers.Dense(3, activation="relu"), layers.Dense(2)], input_dim=4, seed=0)
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.build()
    model.save(tmp_path / name)
    return tmp_path / name


def with_entry(path, key, change, text_change=None):
    """Rewrites the file at ``path`` with its JSON metadata entry ``key`` changed in place by
    ``change``, then its text by ``text_change``."""
    header, body = split_file(path.read_bytes())
    decoded = json.loads(header["__metadata__"][key])
    change(decoded)
    text = json.dumps(decoded)
    header["__metadata__"][key] = text_change(text) if text_change else text
    path.write_bytes(join_file(header, body))
    return path


@needs_bounds
def test_an_architecture_of_200000_layers_is_refused_at_once(tmp_path):
    """A 12 MB file listing 200,000 ReLU layers was still loading after 300 s (naming each layer
    scanned every name before it)."""
    path = with_entry(model_file(tmp_path), "architecture", lambda architecture: architecture["config"]["layers"]
                      .extend({"class_name": "ReLU", "config": {"trainable": True}} for _ in range(200_000)))
    assert path.stat().st_size > 8_000_000
    messages = try_loaders([("load", path), ("cli_model", path)], seconds=10, growth=512 << 20)
    assert "architecture: 200,002 layers, more than the 10,000 a model file may hold" in messages[("load", str(path))]


def test_naming_layers_takes_linear_time():
    """20,000 unnamed layers: about 0.1 s (the quadratic scan took minutes)."""
    start = time.perf_counter()
    model = ft.Sequential([layers.ReLU() for _ in range(20_000)], input_dim=3)
    assert time.perf_counter() - start < 3.0
    assert [layer.name for layer in model.layers[:3]] == ["relu", "relu_1", "relu_2"]
    assert model.layers[-1].name == "relu_19999"


def test_layer_names_skip_taken_names_as_before():
    model = ft.Sequential([layers.Dense(2, name="dense_1"), layers.Dense(2), layers.Dense(2), layers.ReLU(),
                           layers.Dense(2, name="dense_4"), layers.Dense(2), layers.Dense(2)])
    assert [layer.name for layer in model.layers] == ["dense_1", "dense", "dense_2", "relu", "dense_4", "dense_3",
                                                      "dense_5"]
    with pytest.raises(ValueError, match="already has a layer named 'dense_2'"):
        model.add(layers.Dense(2, name="dense_2"))
    # Layers removed from the list in place give their names back.
    model.layers.pop()
    model.add(layers.Dense(2))
    assert model.layers[-1].name == "dense_5"


def test_the_largest_architecture_loads(tmp_path):
    """MAX_LAYERS layers save and load in well under a second or two."""
    model = ft.Sequential([layers.Dense(2)] + [layers.ReLU() for _ in range(serialization.MAX_LAYERS - 1)],
                          input_dim=3, seed=0)
    model.build()
    start = time.perf_counter()
    model.save(tmp_path / "large.safetensors")
    loaded = ft.load(tmp_path / "large.safetensors")
    assert time.perf_counter() - start < 10.0
    assert len(loaded.layers) == serialization.MAX_LAYERS
    beyond = ft.Sequential([layers.ReLU() for _ in range(serialization.MAX_LAYERS + 1)], input_dim=3)
    beyond.build()
    with pytest.raises(ValueError, match="layers: the model has 10,001 layers; a model file holds at most 10,000"):
        beyond.save(tmp_path / "beyond.safetensors")
    assert not (tmp_path / "beyond.safetensors").exists()


@pytest.mark.parametrize("change, match", [
    (lambda a: a["config"]["layers"][0]["config"].update(units=2**24 + 1),
     r"layer 0 \(Dense\): units is 16,777,217, more than the 16,777,216"),
    (lambda a: a["config"].update(input_dim=2**30), r"architecture: input_dim is 1,073,741,824, more than"),
    (lambda a: a["config"]["layers"][0]["config"].update(input_dim=2**25), r"layer 0 \(Dense\): input_dim is"),
    (lambda a: a["config"]["layers"][0]["config"].update(input_shape=[2**25]), r"layer 0 \(Dense\): input_shape is"),
])
def test_layer_sizes_are_bounded(tmp_path, change, match):
    path = with_entry(model_file(tmp_path), "architecture", change)
    with pytest.raises(ValueError, match=match) as info:
        ft.load(path)
    assert str(path) in str(info.value)


def test_a_model_beyond_the_unit_bound_is_not_saved(tmp_path):
    model = ft.Sequential([layers.Dense(2**24 + 1)], input_dim=1)
    with pytest.raises(ValueError, match=r"layers\[0\]: 16,777,217 units; a model file holds layers of at most"):
        serialization.model_config(model)


# Row 5: an integer of 5,000 digits -----------------------------------------------------------

HUGE = "9" * 5_001


@pytest.mark.parametrize("key", ["architecture", "compile", "training", "task"])
def test_an_integer_of_5000_digits(tmp_path, key):
    """Raised Python's "Exceeds the limit (4300 digits)" ValueError naming neither the file nor
    the field."""
    if key == "training":
        model = ft.Sequential([layers.Dense(2)], input_dim=3, seed=0)
        model.compile("sgd", "mse")
        model.fit(np.ones((4, 3), np.float32), np.ones((4, 2), np.float32), epochs=1, verbose=0)
        model.save_checkpoint(tmp_path / "model.safetensors")
        path = tmp_path / "model.safetensors"
    elif key == "task":
        path = tmp_path / "model.safetensors"
        model = ft.Sequential([layers.Dense(2)], input_dim=3, seed=0)
        model.compile("adam", "sparse_categorical_crossentropy")
        model.build()
        serialization.save(model, path, metadata={"task": cli.TaskInfo(cli.CLASSIFICATION, classes=[0, 1]).to_json()})
    else:
        path = model_file(tmp_path)
    with_entry(path, key, lambda value: None, lambda text: text[:-1] + f', "extra": {HUGE}}}')
    expected = f"{path}: the '{key}' metadata holds an integer of 5,001 digits (at most 309) at extra; the file is " \
               f"damaged"
    if key == "task":
        with pytest.raises(cli.UsageError) as info:
            cli.load_model(str(path))
    elif key == "training":
        with pytest.raises(ValueError) as info:
            serialization.read_checkpoint(path)
    else:
        with pytest.raises(ValueError) as info:
            ft.load(path)
    assert str(info.value) == expected


@pytest.mark.parametrize("key, change, position", [
    ("architecture", lambda a: a["config"]["layers"][1]["config"].update(units=10**400),
     "config.layers[1].config.units"),
    ("compile", lambda c: c["metrics"].append(-10**400), "metrics[1]"),
    ("inputs", lambda i: i.update(class_labels=[0, 10**400]), "class_labels[1]"),
])
def test_an_integer_beyond_the_bound_is_named_with_its_position(tmp_path, key, change, position):
    """The file, the entry and the position in it, as for the strings (the README's promise)."""
    path = model_file(tmp_path)
    if key == "inputs":
        header, body = split_file(path.read_bytes())
        header["__metadata__"]["inputs"] = json.dumps({"feature_names": None, "class_labels": [0, 1],
                                                       "preprocessor": None})
        path.write_bytes(join_file(header, body))
    with_entry(path, key, change)
    with pytest.raises(ValueError) as info:
        ft.load(path)
    assert str(info.value) == (f"{path}: the '{key}' metadata holds an integer of 401 digits (at most 309) at "
                               f"{position}; the file is damaged")


def test_an_integer_of_5000_digits_in_the_header(tmp_path):
    path = model_file(tmp_path)
    header, body = split_file(path.read_bytes())
    text = json.dumps(header).replace('"data_offsets": [0', f'"data_offsets": [{HUGE}', 1)
    path.write_bytes(join_file(None, body, text=text))
    with pytest.raises(ValueError, match="its header holds an integer of 5,001 digits, more than the 309") as info:
        ft.load(path)
    assert str(path) in str(info.value)


def test_the_largest_integers_a_file_may_hold(tmp_path):
    """309 digits: every float64 written as an integer (a class label of 1e308 is stored so)."""
    path = model_file(tmp_path)
    with_entry(path, "architecture", lambda a: a["config"].update(seed=10**308))
    assert ft.load(path).seed == 10**308
    with_entry(path, "architecture", lambda a: a["config"].update(seed=10**309))
    with pytest.raises(ValueError, match="integer of 310 digits"):
        ft.load(path)


# Row 6: names with a lone surrogate or NUL ------------------------------------------------------

NOT_A_NAME = r"layer 1 \(Dense\): invalid configuration: name: expected a non-empty string of at most 256 printable"


@pytest.mark.parametrize("name, match", [
    # A lone surrogate is refused wherever it is in the metadata, a name or not.
    ("\ud800", r"a string with a lone surrogate \(\\ud800\), which is no character at config.layers\[1\].config.name"),
    ("a\x00b", NOT_A_NAME), ("tab\there", NOT_A_NAME), ("x" * 257, NOT_A_NAME), ("", NOT_A_NAME),
])
def test_layer_names_must_be_printable_and_short(tmp_path, name, match):
    """A lone surrogate or a NUL loaded, then model.summary() raised UnicodeEncodeError."""
    path = with_entry(model_file(tmp_path), "architecture",
                      lambda a: a["config"]["layers"][1]["config"].update(name=name))
    with pytest.raises(ValueError, match=match) as info:
        ft.load(path)
    assert str(path) in str(info.value)
    with pytest.raises(ValueError, match="name: expected a non-empty string of at most 256 printable"):
        layers.Dense(2, name=name)


def test_model_names_and_renamed_layers(tmp_path):
    path = with_entry(model_file(tmp_path), "architecture", lambda a: a["config"].update(name="net\x07"))
    with pytest.raises(ValueError, match="architecture: invalid model settings: name: expected a non-empty"):
        ft.load(path)
    with pytest.raises(ValueError, match="^name: expected a non-empty string"):
        ft.Sequential(name="a\x00")
    model = ft.Sequential([layers.Dense(2)], input_dim=3)
    model.build()
    model.layers[0].name = "renamed\x00"
    with pytest.raises(ValueError, match=r"layers\[0\].name: expected a non-empty string"):
        model.save(tmp_path / "renamed.safetensors")


@pytest.mark.parametrize("text, match", [
    ('"\\ud800"', r"a string with a lone surrogate \(\\ud800\), which is no character at feature_names\[1\]"),
    ('"' + "x" * 131_073 + '"', r"a string of 131,073 characters \(at most 131,072\) at feature_names\[1\]"),
])
def test_every_string_of_the_metadata_is_checked(tmp_path, text, match):
    model = ft.Sequential([layers.Dense(2)], input_dim=3, seed=0)
    model.build()
    model.feature_names = ["a", "b", "c"]
    model.save(tmp_path / "model.safetensors")
    path = with_entry(tmp_path / "model.safetensors", "inputs", lambda value: None,
                      lambda entry: entry.replace('"b"', text, 1))
    with pytest.raises(ValueError, match=match) as info:
        ft.load(path)
    assert str(info.value).startswith(f"{path}: the 'inputs' metadata holds")


def test_nesting_is_bounded(tmp_path):
    path = with_entry(model_file(tmp_path), "architecture", lambda value: None,
                      lambda text: text[:-1] + ', "deep": ' + "[" * 70 + "]" * 70 + "}")
    with pytest.raises(ValueError, match="arrays or objects nested more than 64 deep at deep"):
        ft.load(path)


def test_the_writers_refuse_what_the_readers_refuse(tmp_path):
    model = ft.Sequential([layers.Dense(2)], input_dim=3, seed=0)
    model.build()
    model.feature_names = ["a", "b\ud800", "c"]
    with pytest.raises(ValueError, match="inputs: holds a string with a lone surrogate"):
        model.save(tmp_path / "model.safetensors")
    model.feature_names = None
    with pytest.raises(ValueError, match="metadata: a key: expected a non-empty string"):
        serialization.save(model, tmp_path / "model.safetensors", metadata={"bad\x00key": "1"})
    assert not (tmp_path / "model.safetensors").exists()


def test_tensor_names_and_metadata_keys_are_names(tmp_path):
    path = model_file(tmp_path)
    header, body = split_file(path.read_bytes())
    header["layers.0.kernel\x00"] = header.pop("layers.0.kernel")
    path.write_bytes(join_file(header, body))
    with pytest.raises(ValueError, match=r"its header names a tensor 'layers.0.kernel\\x00', not a name"):
        ft.load(path)


# Row 7: base classes named by a file ----------------------------------------------------------

@pytest.mark.parametrize("change, match", [
    (lambda a: a["config"]["layers"][0]["config"].update(kernel_initializer={"class_name": "Initializer",
                                                                             "config": {}}),
     r"layer 0 \(Dense\): invalid configuration: kernel_initializer: 'Initializer' is an abstract class"),
    (lambda a: a["config"]["layers"][0]["config"].update(bias_initializer={"class_name": "Initializer",
                                                                           "config": {}}),
     r"bias_initializer: 'Initializer' is an abstract class, which a file cannot name; expected one of Zeros"),
    (lambda a: a["config"]["layers"][0]["config"].update(kernel_regularizer={"class_name": "Regularizer",
                                                                             "config": {}}),
     r"kernel_regularizer: 'Regularizer' is an abstract class, which a file cannot name; expected one of L1L2"),
    (lambda a: a["config"]["layers"][0]["config"].update(kernel_initializer={"class_name": "Orthogonal",
                                                                             "config": {}}),
     r"kernel_initializer: unknown class 'Orthogonal' \(not in fusedtrain.initializers\); expected one of Zeros"),
    (lambda a: a["config"]["layers"][1].update(class_name="Layer"), r"layer 1 has the abstract base class 'Layer'"),
])
def test_base_classes_named_by_a_model_file(tmp_path, change, match):
    """Initializer: load raised NotImplementedError; Regularizer: the model loaded, then fit,
    evaluate and save raised NotImplementedError."""
    path = with_entry(model_file(tmp_path), "architecture", change)
    with pytest.raises(ValueError, match=match) as info:
        ft.load(path)
    assert str(path) in str(info.value)


def test_base_classes_named_by_compile_settings(tmp_path):
    path = with_entry(model_file(tmp_path), "compile", lambda c: c["optimizer"].update(class_name="Optimizer"))
    with pytest.raises(ValueError, match="invalid compile settings: unknown optimizer 'Optimizer'"):
        ft.load(path)
    path = with_entry(model_file(tmp_path, "loss.safetensors"), "compile", lambda c: c.update(loss="Loss"))
    with pytest.raises(ValueError, match="invalid compile settings: loss: expected a Loss or one of"):
        ft.load(path)


def test_a_custom_initializer_or_regularizer_is_not_saved(tmp_path):
    class Halves(ft.initializers.Initializer):
        def sample(self, shape, rng):
            return np.full(shape, 0.5)

    class Mine(regularizers.L2):
        pass

    for layer, attribute in ((layers.Dense(2, kernel_initializer=Halves()), "kernel_initializer"),
                             (layers.Dense(2, kernel_regularizer=Mine()), "kernel_regularizer")):
        model = ft.Sequential([layer], input_dim=3)
        model.build()
        with pytest.raises(ValueError, match=rf"layers\[0\].{attribute}: a model file stores the built-in classes"):
            model.save(tmp_path / "custom.safetensors")


def checkpoint(tmp_path):
    model = ft.Sequential([layers.Dense(3), layers.Dense(2)], input_dim=3, seed=0)
    model.compile("adam", "mse")
    x, y = np.ones((8, 3), np.float32), np.ones((8, 2), np.float32)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[cb.EarlyStopping(monitor="loss", restore_best_weights=True)])
    model.save_checkpoint(tmp_path / "checkpoint.safetensors")
    return tmp_path / "checkpoint.safetensors"


@pytest.mark.parametrize("change, match", [
    (lambda t: t.update(optimizer="Optimizer"), "training state: optimizer 'Optimizer' is not one of SGD"),
    (lambda t: t["callbacks"][0].update(class_name="Callback"),
     "callback 0 names the class 'Callback', which is no concrete callback class"),
    (lambda t: t["callbacks"][0].update(class_name="_MonitorCallback"), "names the class '_MonitorCallback'"),
    (lambda t: t["callbacks"][0].update(class_name="Early\x00Stopping"), "names the class 'Early\\\\x00Stopping'"),
    (lambda t: t["callbacks"][0]["state"]["best_weights"].update(__tensors__=10**12),
     r"callback 0 best_weights must be an integer >= 0 and <= \d+, got 1000000000000"),
    (lambda t: t.update(iterations=2**63), "iterations must be an integer >= 0 and <= 9223372036854775807"),
    (lambda t: t.update(learning_rate=1e300), "training state: learning_rate: expected a number within float32"),
])
def test_checkpoints_name_concrete_classes_and_bounded_numbers(tmp_path, change, match):
    path = with_entry(checkpoint(tmp_path), "training", change)
    with pytest.raises(ValueError, match=match) as info:
        serialization.read_checkpoint(path)
    assert str(path) in str(info.value)


# The size a header implies ----------------------------------------------------------------------

@pytest.mark.parametrize("change, match", [
    (lambda data: data + b"\0" * 4, r"describes 92 bytes of tensors, but 96 bytes follow the header"),
    (lambda data: data[:-4], r"describes 92 bytes of tensors, but 88 bytes follow the header"),
])
def test_a_file_whose_size_disagrees_with_its_header(tmp_path, change, match):
    path = model_file(tmp_path)
    path.write_bytes(change(path.read_bytes()))
    with pytest.raises(ValueError, match=match):
        ft.load(path)


@needs_bounds
def test_a_valid_file_followed_by_gigabytes_is_refused_before_its_tensors_are_read(tmp_path):
    """A valid model file with 8 GiB of zeros after it: its header is read and checked, and the
    size it implies differs from the file's, before the data is read (reading it would exceed
    the 1 GiB bound on the loader's address space)."""
    path = model_file(tmp_path)
    grown_sparse(path, path.stat().st_size + 8 * GIB)
    messages = try_loaders([(loader, path) for loader in MODEL_LOADERS])
    for loader in MODEL_LOADERS:
        assert f"describes 92 bytes of tensors, but {8 * GIB + 92:,} bytes follow the header" \
            in messages[(loader, str(path))]


@needs_bounds
def test_a_header_that_promises_more_than_the_file_holds(tmp_path):
    """A tensor of 8 GiB in the header of a file of a few hundred bytes: refused from the sizes
    alone, before a buffer of the data's size is allocated."""
    path = model_file(tmp_path)
    header, body = split_file(path.read_bytes())
    end = len(body)
    header["layers.9.kernel"] = {"dtype": "F32", "shape": [2**31], "data_offsets": [end, end + 8 * GIB]}
    path.write_bytes(join_file(header, body))
    messages = try_loaders([(loader, path) for loader in MODEL_LOADERS])
    for loader in MODEL_LOADERS:
        assert f"describes {8 * GIB + 92:,} bytes of tensors, but 92 bytes follow the header" \
            in messages[(loader, str(path))]


@pytest.mark.parametrize("change, match", [
    # The bias over the kernel's first bytes: an overlap, and a gap where the bias was.
    (lambda h: h["layers.0.bias"].update(data_offsets=[h["layers.0.kernel"]["data_offsets"][0],
                                                       h["layers.0.kernel"]["data_offsets"][0] + 12]),
     "must follow each other without gaps or overlaps"),
    (lambda h: h["layers.0.bias"].update(dtype="BF16"), "has the dtype 'BF16'; fusedtrain reads F64"),
    (lambda h: h["layers.0.bias"].update(shape=[1] * 33), "not a list of at most 32 sizes >= 0"),
    (lambda h: h["layers.0.bias"].update(shape=[4]), r"takes 16 bytes, but its data_offsets \[\d+, \d+\] hold 12"),
])
def test_the_tensor_layout_is_checked_before_any_tensor_is_read(tmp_path, change, match):
    path = model_file(tmp_path)
    header, body = split_file(path.read_bytes())
    change(header)
    path.write_bytes(join_file(header, body))
    with pytest.raises(ValueError, match=match):
        ft.load(path)


# The command line's .npy and .npz readers -----------------------------------------------------

@needs_bounds
def test_npy_and_npz_headers_that_promise_more_than_the_file(tmp_path):
    """A header claiming 8 TB of data in a file of a few hundred bytes: refused before any
    array is allocated."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    lying = buffer.getvalue() + np.ones(12).tobytes()
    (tmp_path / "lying.npy").write_bytes(lying)
    with zipfile.ZipFile(tmp_path / "lying.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", lying)
    messages = try_loaders([("npy", tmp_path / "lying.npy"), ("npz", tmp_path / "lying.npz"),
                            ("cli_data", tmp_path / "lying.npy")])
    assert "its header describes an array of shape (1000000000000,) and dtype float64, 8,000,000,000,000 bytes" \
        in messages[("npy", str(tmp_path / "lying.npy"))]


@needs_bounds
def test_npy_and_npz_arrays_larger_than_this_machine(tmp_path):
    """A header that declares an array larger than the machine's memory, with the bytes to
    match (a sparse .npy file; an .npz member whose entry declares that size): refused from
    the header, before any of the data is read or a buffer allocated."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    count = memory // 8 + 2**20
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": (count,)})
    header = buffer.getvalue()
    npy = tmp_path / "huge.npy"
    npy.write_bytes(header)
    grown_sparse(npy, len(header) + 8 * count)
    npz = tmp_path / "huge.npz"
    with zipfile.ZipFile(npz, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", header + bytes(64))
        # The entry declares the member's full size (zip64); its data stops short of it, which
        # only a reader that went past the header would find.
        archive.getinfo("x.npy").file_size = len(header) + 8 * count
    messages = try_loaders([("npy", npy), ("cli_data", npy), ("npz", npz), ("cli_data", npz)])
    gib = f"{8 * count / GIB:.4g} GiB, more than this machine's {memory / GIB:.4g} GiB of memory"
    for pair in (("npy", npy), ("cli_data", npy), ("npz", npz), ("cli_data", npz)):
        assert messages[(pair[0], str(pair[1]))] == f"{pair[1]}: holds an array of {gib}"


# The command line's CSV reader ------------------------------------------------------------------

@needs_bounds
def test_a_csv_file_without_line_breaks(tmp_path):
    """Text past MAX_CSV_LINE_CHARS with no line break and no NUL (past the NUL check of the
    first 64 KiB): refused once a line exceeds the bound, rather than read whole. In a file of
    that text alone, and in one whose text goes on as a hole to 8 GiB (zeros the reader never
    reaches: it stops at the bound)."""
    text = b"1," * ((cli.MAX_CSV_LINE_CHARS + 2**16) // 2)
    long = tmp_path / "long.csv"
    long.write_bytes(text)
    sparse = tmp_path / "sparse.csv"
    sparse.write_bytes(text)
    grown_sparse(sparse, 8 * GIB)
    pairs = [(loader, path) for path in (long, sparse) for loader in ("csv", "cli_data", "train")]
    messages = try_loaders(pairs)
    for loader, path in pairs:
        expected = f"{path}, line 1: longer than 16,777,216 characters (a file without line breaks is no CSV file)"
        if loader == "train":
            expected = f"exit status 2: fusedtrain: error: {expected}\n"
        assert messages[(loader, str(path))] == expected
    assert not (tmp_path / "long.csv.model.safetensors").exists()


# A log that training continues --------------------------------------------------------------------

def logged_fit(path):
    model = ft.Sequential([layers.Dense(2)], input_dim=3, seed=0)
    model.compile("sgd", "mse")
    model.fit(np.ones((4, 3), np.float32), np.ones((4, 2), np.float32), epochs=2, verbose=0,
              callbacks=[cb.CSVLogger(path, append=True)])


@needs_bounds
def test_csv_logger_appends_to_regular_files_only(tmp_path):
    """CSVLogger(append=True) reads the log it continues: a FIFO with no writer blocked that
    reading, /dev/zero never ended it. Refused by name at once, like the loaders."""
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    zero = tmp_path / "zero.csv"
    zero.symlink_to("/dev/zero")
    for path, kind in ((fifo, "a FIFO (named pipe)"), ("/dev/zero", "a character device"),
                       (zero, "a character device"), (folder, "a folder")):
        with bounded(seconds=5):
            with pytest.raises(ValueError) as info:
                logged_fit(path)
        assert str(info.value) == f"{path}: is {kind}, not a regular file; CSVLogger(append=True) appends only to " \
                                  f"regular files"
    assert os.listdir(folder) == []
    # A regular file goes on under its header, read from its first line alone.
    log = tmp_path / "log.csv"
    logged_fit(log)
    logged_fit(log)
    lines = log.read_text().splitlines()
    assert len(lines) == 5 and lines[0] == "epoch,loss,lr" and [line.split(",")[0] for line in lines[1:]] == \
        ["0", "1", "0", "1"]
