"""Model files (model.save / fusedtrain.load), weight files (save_weights / load_weights) and the
atomic write under them: round trips on every layer type and optimizer, every way a file can be
damaged or foreign, and failures in the middle of a write."""

import errno
import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

import fusedtrain as ft
from fusedtrain import initializers, layers, optimizers, regularizers, serialization


def features(rng, rows=37, columns=5):
    return rng.normal(size=(rows, columns)).astype(np.float32)


def assert_same_weights(left, right):
    assert len(left) == len(right)
    for a, b in zip(left, right):
        np.testing.assert_array_equal(a, b)


# Every layer type and setting a model file stores.
LAYER_STACKS = {
    "dense_activations": lambda: ([layers.Dense(7, activation=name) for name in
                                   (None, "relu", "sigmoid", "tanh", "gelu", "leaky_relu")]
                                  + [layers.Dense(4, activation="softmax")]),
    "dense_settings": lambda: [
        layers.Dense(6, use_bias=False, kernel_initializer="he_normal", name="body"),
        layers.Dense(3, kernel_initializer=initializers.RandomNormal(0.1, 0.3),
                     bias_initializer=initializers.Constant(0.25), kernel_regularizer=regularizers.L1(0.003)),
        layers.Dense(5, kernel_initializer=initializers.VarianceScaling(2.0, "fan_out", "uniform"),
                     kernel_regularizer=regularizers.L2(0.02)),
        layers.Dense(2, kernel_regularizer=regularizers.L1L2(0.001, 0.004), trainable=False),
    ],
    "activation_layers": lambda: [layers.Dense(9), layers.ReLU(), layers.Dense(9), layers.LeakyReLU(0.2),
                                  layers.Dense(9), layers.Sigmoid(), layers.Tanh(), layers.GELU(),
                                  layers.Activation("leaky_relu", negative_slope=0.3), layers.Activation("linear"),
                                  layers.Activation("tanh"), layers.Dense(3), layers.Softmax()],
    "dropout": lambda: [layers.Dense(8, activation="relu"), layers.Dropout(0.25), layers.Dense(6),
                        layers.Dropout(0.5, seed=11, name="drop"), layers.Dense(2)],
}


@pytest.mark.parametrize("stack", sorted(LAYER_STACKS))
def test_every_layer_type_round_trips(stack, tmp_path, rng):
    model = ft.Sequential(LAYER_STACKS[stack](), input_dim=5, seed=4, name="net")
    model.build()
    # Distinct random weights, not the initial ones: the file must carry every value.
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights()])
    for layer in model.layers:
        if isinstance(layer, layers.Dense) and layer.activation == "leaky_relu":
            layer.negative_slope = 0.07
    path = tmp_path / "model.safetensors"
    model.save(path)
    loaded = ft.load(path)
    assert type(loaded) is ft.Sequential and loaded is not model
    assert (loaded.name, loaded.input_dim, loaded.seed) == ("net", 5, 4)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    assert [layer.get_config() for layer in loaded.layers] == [layer.get_config() for layer in model.layers]
    assert [layer.trainable for layer in loaded.layers] == [layer.trainable for layer in model.layers]
    assert_same_weights(loaded.get_weights(), model.get_weights())
    x = features(rng)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert not loaded.compiled  # the model was never compiled, so the file has no compile settings


def test_loaded_initializers_and_regularizers_act_the_same(tmp_path, rng):
    model = ft.Sequential(LAYER_STACKS["dense_settings"](), input_dim=5, seed=2)
    model.compile("sgd", "mse")
    model.save(tmp_path / "m.safetensors")
    loaded = ft.load(tmp_path / "m.safetensors")
    for ours, theirs in zip(model.layers, loaded.layers):
        assert repr(ours.kernel_initializer) == repr(theirs.kernel_initializer)
        assert repr(ours.kernel_regularizer) == repr(theirs.kernel_regularizer)
    # The regularizers add the same penalty, so the losses agree exactly.
    x, y = features(rng), rng.normal(size=(37, 2)).astype(np.float32)
    assert loaded.evaluate(x, y) == model.evaluate(x, y)
    # The initializers draw the same weights for the same model seed.
    rebuilt = ft.Sequential([layers.Dense.from_config(layer.get_config()) for layer in loaded.layers],
                            input_dim=5, seed=2)
    rebuilt.build()
    again = ft.Sequential(LAYER_STACKS["dense_settings"](), input_dim=5, seed=2)
    again.build()
    assert_same_weights(rebuilt.get_weights(), again.get_weights())


OPTIMIZERS = {
    "sgd": lambda: optimizers.SGD(0.05),
    "sgd_momentum_nesterov": lambda: optimizers.SGD(0.02, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda: optimizers.Adam(3e-3, beta_1=0.8, beta_2=0.99, epsilon=1e-7, weight_decay=1e-4),
    "adamw": lambda: optimizers.AdamW(2e-3, weight_decay=0.05),
    "rmsprop": lambda: optimizers.RMSprop(1e-3, rho=0.8, epsilon=1e-6),
    "clipnorm": lambda: optimizers.Adam(1e-2, clipnorm=0.5),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_compile_settings_round_trip(name, tmp_path, rng):
    model = ft.Sequential([layers.Dense(8, activation="tanh"), layers.Dense(3)], input_dim=5, seed=1)
    model.compile(OPTIMIZERS[name](), "sparse_categorical_crossentropy", ["accuracy"])
    x, y = features(rng), rng.integers(0, 3, 37)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, seed=0)
    model.save(tmp_path / "m.safetensors")
    loaded = ft.load(tmp_path / "m.safetensors")
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.loss.name == "sparse_categorical_crossentropy" and [m.name for m in loaded.metrics] == ["accuracy"]
    assert loaded.optimizer.iterations == 0  # a model file holds no optimizer state
    # Compiled with the same loss, the loaded model predicts probabilities exactly as before.
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.evaluate(x, y) == model.evaluate(x, y)
    np.testing.assert_array_equal(loaded.predict_classes(x), model.predict_classes(x))
    uncompiled = ft.load(tmp_path / "m.safetensors", compile=False)
    assert not uncompiled.compiled
    assert_same_weights(uncompiled.get_weights(), model.get_weights())


def test_a_model_file_in_memory(tmp_path, rng):
    """model_bytes holds what save writes; load_bytes rebuilds from it as load does from the file,
    and damaged bytes raise ValueError naming the source given."""
    model = ft.Sequential([layers.Dense(6, activation="relu"), layers.Dense(3)], input_dim=5, seed=2)
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = features(rng), rng.integers(0, 3, 37)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, seed=0)
    model.save(tmp_path / "m.safetensors")
    data = serialization.model_bytes(model)
    # The same metadata and tensors (safetensors may order the header's entries differently).
    in_memory, on_disk = serialization.parse(data, "data"), serialization.read(tmp_path / "m.safetensors")
    assert in_memory.metadata == on_disk.metadata and in_memory.tensors.keys() == on_disk.tensors.keys()
    for key, tensor in on_disk.tensors.items():
        np.testing.assert_array_equal(in_memory.tensors[key], tensor)
    loaded = serialization.load_bytes(data, device="cpu")
    assert type(loaded.optimizer) is type(model.optimizer) and loaded.seed == 2
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    with pytest.raises(ValueError, match="the pickled model: not a readable safetensors weight file"):
        serialization.load_bytes(data[:40], "the pickled model")


def test_file_layout_and_metadata(tmp_path):
    model = ft.Sequential([layers.Dense(4, activation="relu"), layers.Dropout(0.1), layers.Dense(2, use_bias=False)],
                          input_dim=3, seed=0)
    model.compile(optimizers.Adam(1e-3), "mse", ["mae"])
    path = tmp_path / "m.safetensors"
    model.save(path)
    with safe_open(str(path), framework="np") as handle:
        metadata = handle.metadata()
        keys = sorted(handle.keys())
    assert keys == ["layers.0.bias", "layers.0.kernel", "layers.2.kernel"]
    tensors = load_file(str(path))
    assert tensors["layers.0.kernel"].shape == (3, 4) and tensors["layers.0.kernel"].dtype == np.float32
    assert metadata["format"] == "fusedtrain.model"
    assert metadata["format_version"] == str(serialization.FORMAT_VERSION)
    assert metadata["fusedtrain_version"] == ft.__version__
    architecture = json.loads(metadata["architecture"])
    assert architecture["class_name"] == "Sequential" and architecture["config"]["input_dim"] == 3
    assert [entry["class_name"] for entry in architecture["config"]["layers"]] == ["Dense", "Dropout", "Dense"]
    assert architecture["config"]["layers"][1]["config"]["rate"] == 0.1
    settings = json.loads(metadata["compile"])
    assert settings["loss"] == "mse" and settings["metrics"] == ["mae"]
    assert settings["optimizer"]["class_name"] == "Adam"
    assert os.listdir(tmp_path) == ["m.safetensors"]


def test_save_needs_a_built_model_of_builtin_layers(tmp_path):
    with pytest.raises(RuntimeError, match="save: the model is not built"):
        ft.Sequential([layers.Dense(2)]).save(tmp_path / "m.safetensors")

    class Scaled(layers.Activation):
        pass

    model = ft.Sequential([layers.Dense(2), Scaled("relu")], input_dim=3)
    with pytest.raises(ValueError, match="built-in layer types only.*not Scaled"):
        model.save(tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()
    model.save_weights(tmp_path / "w.safetensors")  # weights alone work for any layer


def test_a_custom_loss_saves_without_compile_settings(tmp_path):
    class Halved(ft.losses.MeanSquaredError):
        name = "halved"

    model = ft.Sequential([layers.Dense(2)], input_dim=3)
    model.compile("adam", Halved())
    with pytest.warns(UserWarning, match="compile settings are not saved: loss Halved"):
        model.save(tmp_path / "m.safetensors")
    assert not ft.load(tmp_path / "m.safetensors").compiled


# Weight files ---------------------------------------------------------------------------------

def test_load_weights_accepts_model_files_and_checkpoints(tmp_path, rng):
    model = ft.Sequential([layers.Dense(6, activation="relu"), layers.Dense(2)], input_dim=4, seed=0)
    model.compile("adam", "mse")
    model.fit(features(rng, 20, 4), rng.normal(size=(20, 2)), epochs=1, verbose=0)
    model.save(tmp_path / "m.safetensors")
    model.save_checkpoint(tmp_path / "c.safetensors")
    for name in ("m.safetensors", "c.safetensors"):
        target = ft.Sequential([layers.Dense(6, activation="relu"), layers.Dense(2)], seed=5)
        target.load_weights(tmp_path / name)
        assert_same_weights(target.get_weights(), model.get_weights())


def body():
    return [layers.Dense(16, activation="relu"), layers.Dropout(0.1), layers.Dense(8, activation="relu")]


def test_load_weights_of_a_prefix_for_transfer_learning(tmp_path, rng):
    pretrained = ft.Sequential(body() + [layers.Dense(10)], input_dim=6, seed=0)
    pretrained.build()
    pretrained.save_weights(tmp_path / "body.safetensors")
    model = ft.Sequential(body() + [layers.Dense(3)], seed=7)
    model.load_weights(tmp_path / "body.safetensors", num_layers=3)
    assert model.input_dim == 6
    assert_same_weights(model.get_weights()[:4], pretrained.get_weights()[:4])
    head = ft.Sequential(body() + [layers.Dense(3)], input_dim=6, seed=7)
    head.build()
    assert_same_weights(model.get_weights()[4:], head.get_weights()[4:])  # the new head keeps its own weights

    before = model.parameters.copy()
    with pytest.raises(ValueError, match=r"layers.3.kernel has shape \(8, 10\), expected \(8, 3\)"):
        model.load_weights(tmp_path / "body.safetensors")  # all layers: the heads differ
    with pytest.raises(ValueError, match="num_layers"):
        model.load_weights(tmp_path / "body.safetensors", num_layers=5)
    with pytest.raises(ValueError, match="num_layers"):
        model.load_weights(tmp_path / "body.safetensors", num_layers=0)
    np.testing.assert_array_equal(model.parameters, before)
    wider = ft.Sequential([layers.Dense(17), layers.Dense(3)], input_dim=6)
    with pytest.raises(ValueError, match=r"layers.0.kernel has shape \(6, 16\), expected \(6, 17\)"):
        wider.load_weights(tmp_path / "body.safetensors", num_layers=1)


# Damaged and foreign files --------------------------------------------------------------------

def target_model(seed=5):
    model = ft.Sequential([layers.Dense(6, activation="relu"), layers.Dropout(0.2), layers.Dense(3)],
                          input_dim=4, seed=seed)
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.build()
    return model


@pytest.fixture
def saved(tmp_path):
    """A model file, and a different model whose weights must survive every failed load."""
    path = tmp_path / "m.safetensors"
    target_model(seed=0).save(path)
    target = target_model()
    return path, target, target.parameters.copy()


def expect_rejected(path, target, before, match):
    with pytest.raises(ValueError, match=match):
        target.load_weights(path)
    np.testing.assert_array_equal(target.parameters, before)
    with pytest.raises(ValueError, match=match):
        ft.load(path)


def rewrite(path, change_tensors=None, change_metadata=None):
    """Writes the file again with its tensors and metadata changed."""
    with safe_open(str(path), framework="np") as handle:
        metadata = dict(handle.metadata())
    tensors = load_file(str(path))
    if change_tensors:
        change_tensors(tensors)
    if change_metadata:
        change_metadata(metadata)
    save_file(tensors, str(path), metadata=metadata)


@pytest.mark.parametrize("contents, match", [
    (b"", "0 bytes, too short"),
    (b"\x01\x02\x03", "3 bytes, too short"),
    (b"\xff" * 64, "the header size field says"),
    ((20).to_bytes(8, "little") + b"\xfe" * 40, "its header is not JSON"),
    ((2).to_bytes(8, "little") + b"[]", "its header is not a JSON object"),
], ids=["empty", "three_bytes", "huge_header", "binary_header", "list_header"])
def test_not_a_safetensors_file(saved, contents, match):
    path, target, before = saved
    path.write_bytes(contents)
    expect_rejected(path, target, before, "not a readable safetensors weight file: " + match)


def test_random_bytes_and_an_npz_file(saved, rng):
    path, target, before = saved
    path.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    expect_rejected(path, target, before, "not a readable safetensors weight file")
    buffer = io.BytesIO()
    np.savez(buffer, **{"layers.0.kernel": np.zeros((4, 6), np.float32)})
    path.write_bytes(buffer.getvalue())
    expect_rejected(path, target, before, "another format such as .npz")


def test_truncated_files(saved):
    path, target, before = saved
    data = path.read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    for cut in (0, 5, 8, 30, header_end - 1, header_end, header_end + 7, len(data) - 4, len(data) - 1):
        path.write_bytes(data[:cut])
        expect_rejected(path, target, before, "not a readable safetensors weight file")
    path.write_bytes(data)
    target.load_weights(path)  # the intact file loads


@pytest.mark.parametrize("change, match", [
    (lambda t: t.update({"layers.0.kernel": t["layers.0.kernel"].astype(np.float64)}),
     "layers.0.kernel has dtype float64, expected float32"),
    (lambda t: t.update({"layers.2.bias": t["layers.2.bias"].astype(np.float16)}),
     "layers.2.bias has dtype float16, expected float32"),
    (lambda t: t.update({"layers.2.kernel": np.zeros((6, 4), np.float32)}),
     r"layers.2.kernel has shape \(6, 4\), expected \(6, 3\)"),
    (lambda t: t.update({"layers.0.bias": np.zeros((1, 6), np.float32)}),
     r"layers.0.bias has shape \(1, 6\), expected \(6,\)"),
    (lambda t: t.pop("layers.2.bias"), r"missing \['layers.2.bias'\], unexpected none"),
    (lambda t: t.update({"layers.1.kernel": np.zeros((6, 6), np.float32)}), r"unexpected \['layers.1.kernel'\]"),
    (lambda t: t.update({"optimizer.m": np.zeros(45, np.float32)}), r"unexpected \['optimizer.m'\]"),
    (lambda t: t["layers.0.kernel"].__setitem__((2, 3), np.nan), "layers.0.kernel holds NaN or infinite values"),
])
def test_tensors_that_do_not_fit(saved, change, match):
    path, target, before = saved

    def writable_change(tensors):
        for key in tensors:
            tensors[key] = np.array(tensors[key])
        change(tensors)

    rewrite(path, change_tensors=writable_change)
    expect_rejected(path, target, before, match)


@pytest.mark.parametrize("change, match", [
    (lambda m: m.update({"format_version": "2"}),
     "file format version 2; this fusedtrain .* reads format versions up to 1. Upgrade fusedtrain"),
    (lambda m: m.update({"format_version": "one"}), "format_version 'one' is not a positive integer"),
    (lambda m: m.update({"format": "fusedtrain.optimizer"}), "unknown fusedtrain file kind 'fusedtrain.optimizer'"),
    # The format and the versions: printable, and bounded like names.
    (lambda m: m.update({"format_version": "1\x1b[2J"}),
     r"the metadata's 'format_version' entry holds a character that is not printable \('\\x1b'\) at index 1; "
     r"the file is damaged"),
    (lambda m: m.update({"format_version": "1" * 257}),
     r"the metadata's 'format_version' entry holds 257 characters \(at most 256\)"),
    (lambda m: m.update({"fusedtrain_version": "0.1.0\n"}),
     r"the metadata's 'fusedtrain_version' entry holds a character that is not printable \('\\n'\) at index 5"),
    (lambda m: m.update({"fusedtrain_version": "9" * 300}),
     r"the metadata's 'fusedtrain_version' entry holds 300 characters \(at most 256\)"),
    (lambda m: m.update({"format": "fusedtrain." + "x" * 250}),
     r"the metadata's 'format' entry holds 261 characters \(at most 256\)"),
    # Messages quote the entries shortened.
    (lambda m: m.update({"format_version": "v" * 200}),
     r"format_version 'v{40}'\.\.\. \(200 characters\) is not a positive integer"),
    (lambda m: m.update({"format_version": "2", "fusedtrain_version": "9." * 100}),
     r"written by fusedtrain (9\.){20}\.\.\. \(200 characters\) in file format version 2"),
    (lambda m: m.update({"format": "fusedtrain." + "y" * 200}),
     r"unknown fusedtrain file kind 'fusedtrain\.y{29}'\.\.\. \(211 characters\); expected one of"),
])
def test_metadata_that_cannot_be_read(saved, change, match):
    path, target, before = saved
    rewrite(path, change_metadata=change)
    expect_rejected(path, target, before, match)
    with pytest.raises(ValueError) as info:
        ft.load(path)
    assert str(info.value).startswith(f"{path}: ") and len(str(info.value)) < 500


def test_the_metadata_entries_a_file_may_hold(saved, tmp_path):
    """An entry of save(metadata=...) of any length the header holds (the command line's task
    with thousands of class labels, say), line breaks and all, saves and loads; one with a lone
    surrogate, which UTF-8 cannot store, is not saved. Another program's file keeps its metadata
    unread: its weights load whatever its entries hold."""
    path, target, _ = saved
    model = ft.load(path)
    for value in ("é" * (4 * serialization.MAX_TEXT_CHARS), "two\nlines\tand a tab"):
        serialization.save(model, tmp_path / "kept.safetensors", metadata={"note": value})
        assert serialization.read(tmp_path / "kept.safetensors").metadata["note"] == value
    with pytest.raises(ValueError, match="^metadata: the entry 'note' holds a lone surrogate, which no file can store"):
        serialization.save(model, tmp_path / "refused.safetensors", metadata={"note": "a\ud800"})
    assert not (tmp_path / "refused.safetensors").exists()
    save_file({key: np.ascontiguousarray(value) for key, value in serialization.layer_tensors(model).items()},
              str(tmp_path / "foreign.safetensors"), metadata={"notes": "line\nbreak\x00" + "x" * 200_000})
    target.load_weights(tmp_path / "foreign.safetensors")
    assert_same_weights(target.get_weights(), model.get_weights())


def architecture_change(change):
    def apply(metadata):
        architecture = json.loads(metadata["architecture"])
        change(architecture)
        metadata["architecture"] = json.dumps(architecture)
    return apply


@pytest.mark.parametrize("change, match", [
    (lambda m: m.update({"architecture": '{"class_name": "Sequential", "config": {'}),
     "'architecture' metadata is not valid JSON"),
    (lambda m: m.update({"compile": "{oops"}), "'compile' metadata is not valid JSON"),
    (lambda m: m.pop("architecture"), "has no 'architecture' entry"),
    (architecture_change(lambda a: a["config"]["layers"][1].update({"class_name": "Conv2D"})),
     "layer 1 has the unknown type 'Conv2D'"),
    (architecture_change(lambda a: a.update({"class_name": "Functional"})), "unknown model type 'Functional'"),
    (architecture_change(lambda a: a["config"]["layers"][0].update({"class_name": ["Dense"]})),
     r"layer 0 has the unknown type \['Dense'\]"),
    (architecture_change(lambda a: a["config"].update({"seed": 1.5})), "invalid model settings: seed"),
    (architecture_change(lambda a: a["config"]["layers"][0]["config"].update({"units": -3})),
     r"layer 0 \(Dense\): invalid configuration: units"),
    (architecture_change(lambda a: a["config"]["layers"][0]["config"].update({"filters": 3})),
     r"layer 0 \(Dense\): invalid configuration: .*filters"),
    (architecture_change(lambda a: a["config"]["layers"][0]["config"].update(
        {"kernel_initializer": {"class_name": "Orthogonal", "config": {}}})), "unknown class 'Orthogonal'"),
    (architecture_change(lambda a: a["config"].update({"layers": []})), "non-empty list of layers"),
    (architecture_change(lambda a: a["config"].pop("input_dim")), "input size"),
    (architecture_change(lambda a: a["config"]["layers"][2]["config"].update({"units": 4})),
     r"layers.2.kernel has shape \(6, 3\), expected \(6, 4\)"),
    (lambda m: m.update({"compile": json.dumps({"optimizer": {"class_name": "Adagrad", "config": {}},
                                                "loss": "mse", "metrics": []})}), "unknown optimizer 'Adagrad'"),
    (lambda m: m.update({"compile": json.dumps({"optimizer": {"class_name": "SGD", "config": {}},
                                                "loss": "hinge", "metrics": []})}), "invalid compile settings: loss"),
])
def test_model_files_with_a_bad_architecture(saved, change, match):
    path, _, _ = saved
    rewrite(path, change_metadata=change)
    with pytest.raises(ValueError, match=match):
        ft.load(path)


def test_load_explains_what_a_weight_file_lacks(tmp_path):
    model = target_model()
    model.save_weights(tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match=r"a weight file \(save_weights\), without the architecture.*load_weights"):
        ft.load(tmp_path / "w.safetensors")
    save_file({"layers.0.kernel": np.zeros((4, 6), np.float32)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ValueError, match="not a fusedtrain model file"):
        ft.load(tmp_path / "foreign.safetensors")
    with pytest.raises(FileNotFoundError):
        ft.load(tmp_path / "absent.safetensors")


def test_weight_files_without_a_format_version_are_version_one(tmp_path):
    """Weight files written before format_version existed carry only format and version."""
    model = target_model()
    save_file({key: np.ascontiguousarray(value) for key, value in serialization.layer_tensors(model).items()},
              str(tmp_path / "w.safetensors"),
              metadata={"format": "fusedtrain.weights", "fusedtrain_version": "0.1.0"})
    fresh = target_model(seed=9)
    fresh.load_weights(tmp_path / "w.safetensors")
    np.testing.assert_array_equal(fresh.parameters, model.parameters)


# Atomic writes --------------------------------------------------------------------------------

@pytest.fixture
def previous(tmp_path, rng):
    """A saved model file that a failed save must leave as it was."""
    path = tmp_path / "m.safetensors"
    model = target_model(seed=0)
    model.save(path)
    changed = target_model(seed=1)
    return path, path.read_bytes(), changed


def assert_previous_intact(path, contents):
    assert path.read_bytes() == contents
    ft.load(path)
    assert os.listdir(path.parent) == [path.name]  # no temporary file left behind


def test_full_disk_in_the_middle_of_a_write(previous, monkeypatch):
    path, contents, model = previous

    def write_half_then_fail(descriptor, data):
        os.write(descriptor, bytes(data[:len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(serialization, "_write_all", write_half_then_fail)
    for save in (model.save, model.save_weights, model.save_checkpoint):
        with pytest.raises(OSError, match="no space left on the device.*previous file, if any, is unchanged") as info:
            save(path)
        assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
        assert_previous_intact(path, contents)


def test_failing_fsync_and_rename(previous, monkeypatch):
    path, contents, model = previous

    def no_space(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", no_space)
        with pytest.raises(OSError, match="no space left"):
            model.save(path)
    assert_previous_intact(path, contents)

    def refuse(source, destination):
        raise PermissionError(errno.EACCES, "Permission denied", destination)

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", refuse)
        with pytest.raises(PermissionError, match="Permission denied"):
            model.save(path)
    assert_previous_intact(path, contents)


def test_an_interrupt_during_the_write(previous, monkeypatch):
    path, contents, model = previous

    def interrupted(descriptor, data):
        os.write(descriptor, bytes(data[:10]))
        raise KeyboardInterrupt

    monkeypatch.setattr(serialization, "_write_all", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    assert_previous_intact(path, contents)


BEYOND_THE_HEADER = "the file's header would take more than the 100,000,000 bytes a reader accepts"


def test_a_header_beyond_the_bound_is_not_written(previous, monkeypatch):
    """800 entries of MAX_TEXT_CHARS characters: each within its own bound, together a header
    of about 105 MB, which no reader accepts. Refused when the file is encoded, before anything
    is written: by safetensors' encoder (version 0.8 refuses it), or by the size check after it."""
    path, contents, model = previous
    entry = "x" * serialization.MAX_TEXT_CHARS
    metadata = {f"note{index}": entry for index in range(800)}
    with pytest.raises(ValueError, match=f"^{BEYOND_THE_HEADER}.*metadata entries too large; nothing was saved"):
        serialization.save(model, path, metadata=metadata)
    assert_previous_intact(path, contents)
    # An encoder that writes any header: the size check.
    import safetensors.numpy

    def encode_with_a_large_header(tensors, metadata=None):
        return (serialization.MAX_HEADER_BYTES + 8).to_bytes(8, "little") + b" " * 16

    monkeypatch.setattr(safetensors.numpy, "save", encode_with_a_large_header)
    with pytest.raises(ValueError, match=f"^{BEYOND_THE_HEADER} \\(100,000,008 bytes\\): a training history"):
        model.save(path)
    with pytest.raises(ValueError, match=f"^{BEYOND_THE_HEADER} \\(100,000,008 bytes\\)"):
        model.save_checkpoint(path)
    monkeypatch.undo()
    assert_previous_intact(path, contents)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE and SIGXFSZ as on Linux")
def test_a_real_write_failure_in_a_child_process(previous):
    """The kernel refuses to grow a file past RLIMIT_FSIZE (EFBIG), a real write failure
    half-way through the file, as a full disk would make it."""
    path, contents, _ = previous
    script = textwrap.dedent(f"""
        import resource, signal
        import fusedtrain as ft
        from fusedtrain import layers
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        model = ft.Sequential([layers.Dense(512), layers.Dense(512)], input_dim=64, seed=0)
        model.build()
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))
        try:
            model.save({str(path)!r})
        except OSError as error:
            print("errno", error.errno)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert f"errno {errno.EFBIG}" in result.stdout, result.stderr
    assert_previous_intact(path, contents)


def test_a_new_file_gets_the_usual_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        target_model().save(tmp_path / "m.safetensors")
    finally:
        os.umask(previous)
    if os.name == "posix":
        assert os.stat(tmp_path / "m.safetensors").st_mode & 0o777 == 0o644


def test_saving_into_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        target_model().save(tmp_path / "absent" / "m.safetensors")
    assert os.listdir(tmp_path) == []
