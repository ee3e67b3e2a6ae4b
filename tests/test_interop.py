"""Interoperability: weights and predictions out to NumPy and PyTorch and back, DLPack inputs
(PyTorch tensors and any object with __dlpack__), and the clear refusal of GPU arrays while
training runs on the CPU. The PyTorch tests run where PyTorch is installed."""

import re
import sys
from pathlib import Path

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import interop, layers

README = Path(__file__).resolve().parents[1] / "README.md"


def torch_or_skip():
    return pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch to run this test)")


def regression_model(activation, seed=0):
    model = ft.Sequential([layers.Dense(9, activation=activation), layers.Dense(7, activation=activation),
                           layers.Dense(3)], input_dim=6, seed=seed)
    model.compile("adam", "mse")
    return model


def train_a_little(model, rng, classes=None):
    x = rng.normal(size=(41, model.input_dim)).astype(np.float32)
    if classes is None:
        y = rng.normal(size=(41, model.output_dim)).astype(np.float32)
    else:
        y = rng.integers(0, classes, 41)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, seed=0)
    return x


class DLPackOnly:
    """An array that offers nothing but the DLPack protocol (no __array__, no buffer)."""

    def __init__(self, array, device=(1, 0)):
        self._array = array
        self._device = device

    def __dlpack__(self, **kwargs):
        return self._array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._device


# NumPy ------------------------------------------------------------------------------------------

def test_state_dict_exports_copies_under_the_file_names(tmp_path, rng):
    from safetensors.numpy import save_file

    model = regression_model("relu")
    train_a_little(model, rng)
    exported = interop.state_dict(model)
    assert list(exported) == ["layers.0.kernel", "layers.0.bias", "layers.1.kernel", "layers.1.bias",
                              "layers.2.kernel", "layers.2.bias"]
    assert exported["layers.1.kernel"].shape == (9, 7)
    for array, weight in zip(exported.values(), model.get_weights()):
        np.testing.assert_array_equal(array, weight)
    exported["layers.0.kernel"][...] = 0.0
    assert np.any(model.layers[0].kernel != 0.0)  # copies, not views
    # Arrays exported and saved by another tool load back as weights.
    exported = interop.state_dict(model)
    save_file(exported, str(tmp_path / "exported.safetensors"))
    np.savez(tmp_path / "exported.npz", **exported)
    fresh = regression_model("relu", seed=3)
    fresh.load_weights(tmp_path / "exported.safetensors")
    np.testing.assert_array_equal(fresh.parameters, model.parameters)
    with np.load(tmp_path / "exported.npz") as archive:
        np.testing.assert_array_equal(archive["layers.2.bias"], model.layers[2].bias)


# DLPack and GPU arrays --------------------------------------------------------------------------

def test_dlpack_inputs_are_read_without_a_copy(rng):
    array = rng.normal(size=(17, 6)).astype(np.float32)
    read = interop.host_array(DLPackOnly(array), "x")
    assert isinstance(read, np.ndarray) and np.shares_memory(read, array)
    assert interop.host_array(array, "x") is array
    plain = [[1.0, 2.0]]
    assert interop.host_array(plain, "x") is plain  # left to np.asarray


def test_fit_evaluate_predict_accept_dlpack_objects(rng):
    x = rng.normal(size=(29, 6)).astype(np.float32)
    y = rng.normal(size=(29, 3)).astype(np.float32)
    reference, model = regression_model("tanh"), regression_model("tanh")
    history = reference.fit(x, y, epochs=2, batch_size=8, validation_data=(x[:5], y[:5]), verbose=0, seed=1)
    wrapped = model.fit(DLPackOnly(x), DLPackOnly(y), epochs=2, batch_size=8,
                        validation_data=(DLPackOnly(x[:5]), DLPackOnly(y[:5])), verbose=0, seed=1)
    assert wrapped.history == history.history
    np.testing.assert_array_equal(model.parameters, reference.parameters)
    np.testing.assert_array_equal(model.predict(DLPackOnly(x)), reference.predict(x))
    assert model.evaluate(DLPackOnly(x), DLPackOnly(y)) == reference.evaluate(x, y)
    # Then the usual float32 rule: float64 data is converted once, integer labels are labels.
    classifier = ft.Sequential([layers.Dense(3)], input_dim=6, seed=0)
    classifier.compile("sgd", "sparse_categorical_crossentropy")
    labels = rng.integers(0, 3, 29)
    classifier.fit(DLPackOnly(x.astype(np.float64)), DLPackOnly(labels), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"y: class labels must be in \[0, 3\)"):
        classifier.fit(DLPackOnly(x), DLPackOnly(labels + 1), epochs=1, verbose=0)


def test_gpu_arrays_are_refused_with_a_hint(rng):
    model = regression_model("relu")
    x = rng.normal(size=(4, 6)).astype(np.float32)
    with pytest.raises(TypeError, match=r"x: an array in CUDA memory; fusedtrain takes host arrays.*\.cpu\(\)"):
        model.predict(DLPackOnly(x, device=(2, 0)))

    class FakeCupyArray:
        pass

    FakeCupyArray.__module__ = "cupy._core.core"
    message = r"y: a GPU array \(cupy._core.core.FakeCupyArray\).*device='cuda'.*y.get\(\)"
    with pytest.raises(TypeError, match=message):
        model.fit(x, FakeCupyArray(), verbose=0)

    class CudaInterface:
        __cuda_array_interface__ = {"shape": (4, 6), "typestr": "<f4", "data": (0, False), "version": 3}

    with pytest.raises(TypeError, match="x: a GPU array"):
        model.evaluate(CudaInterface(), x[:, :3])
    with pytest.raises(TypeError, match=r"validation_data\[0\]: a GPU array"):
        model.fit(x, x[:, :3], validation_data=(CudaInterface(), x[:, :3]), verbose=0)


def test_real_cupy_arrays_are_refused():
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed")
    try:
        array = cupy.zeros((4, 6), dtype=cupy.float32)
    except Exception as error:  # CuPy installed without a usable GPU or driver
        pytest.skip(f"CuPy cannot allocate on a GPU here: {error}")
    with pytest.raises(TypeError, match=r"x: a GPU array.*x.get\(\)"):
        regression_model("relu").predict(array)


# PyTorch ----------------------------------------------------------------------------------------

def torch_outputs(module, x):
    torch = torch_or_skip()
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


# float32 sums of a few terms in a different order (PyTorch's GEMM and ours) and different
# exp/tanh implementations: a few float32 ulps apart.
TOLERANCE = dict(rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "gelu", "leaky_relu", None])
def test_to_torch_predicts_the_same(activation, rng):
    torch_or_skip()
    model = regression_model(activation)
    x = train_a_little(model, rng)
    module = interop.to_torch(model)
    assert not module.training
    np.testing.assert_allclose(torch_outputs(module, x), model.predict(x), **TOLERANCE)


def test_to_torch_follows_activation_layers_dropout_and_slopes(rng):
    torch = torch_or_skip()
    model = ft.Sequential([layers.Dense(8), layers.LeakyReLU(0.2), layers.Dropout(0.3),
                           layers.Dense(8, use_bias=False), layers.GELU(), layers.Activation("linear"),
                           layers.Dense(5, activation="leaky_relu"), layers.Sigmoid(), layers.Dense(2)],
                          input_dim=4, seed=1)
    model.compile("adam", "mse")
    model.layers[6].negative_slope = 0.05
    x = train_a_little(model, rng)
    module = interop.to_torch(model)
    kinds = [type(part).__name__ for part in module]
    assert kinds == ["Linear", "LeakyReLU", "Dropout", "Linear", "GELU", "Linear", "LeakyReLU", "Sigmoid", "Linear"]
    assert module[1].negative_slope == 0.2 and module[6].negative_slope == 0.05 and module[4].approximate == "tanh"
    assert module[3].bias is None and module[2].p == 0.3
    np.testing.assert_allclose(torch_outputs(module, x), model.predict(x), **TOLERANCE)
    assert isinstance(interop.to_torch_state_dict(model)["0.weight"], torch.Tensor)


@pytest.mark.parametrize("last, loss", [(None, "sparse_categorical_crossentropy"),
                                        ("softmax", "sparse_categorical_crossentropy"),
                                        ("sigmoid", "binary_crossentropy"), (None, "binary_crossentropy")])
def test_to_torch_classifiers_give_probabilities_or_logits(last, loss, rng):
    torch = torch_or_skip()
    units = 4 if loss.startswith("sparse") else 1
    model = ft.Sequential([layers.Dense(10, activation="relu"), layers.Dense(units, activation=last)],
                          input_dim=6, seed=2)
    model.compile("adam", loss)
    x = rng.normal(size=(33, 6)).astype(np.float32)
    y = rng.integers(0, 4, 33) if units == 4 else rng.integers(0, 2, 33).astype(np.float32)
    model.fit(x, y, epochs=2, verbose=0, seed=0)
    probabilities = torch_outputs(interop.to_torch(model), x)
    np.testing.assert_allclose(probabilities, model.predict(x), **TOLERANCE)
    logits_module = interop.to_torch(model, output="logits")
    assert type(logits_module[-1]).__name__ == "Linear"
    logits = torch.from_numpy(torch_outputs(logits_module, x))
    link = torch.softmax(logits, dim=1) if units == 4 else torch.sigmoid(logits)
    np.testing.assert_allclose(link.numpy(), model.predict(x), **TOLERANCE)
    with pytest.raises(ValueError, match="output: expected 'predict' or 'logits'"):
        interop.to_torch(model, output="probabilities")


def test_safetensors_torch_reads_our_files(tmp_path, rng):
    """The recipe without fusedtrain: PyTorch's safetensors loader reads the model file, and
    each kernel, transposed, is an nn.Linear weight."""
    torch = torch_or_skip()
    from safetensors.torch import load_file

    model = regression_model("gelu")
    x = train_a_little(model, rng)
    model.save(tmp_path / "model.safetensors")
    tensors = load_file(str(tmp_path / "model.safetensors"))
    assert sorted(tensors) == sorted(f"layers.{i}.{name}" for i in range(3) for name in ("kernel", "bias"))
    assert all(tensor.dtype == torch.float32 for tensor in tensors.values())
    assert tuple(tensors["layers.0.kernel"].shape) == (6, 9)
    nn = torch.nn
    module = nn.Sequential(nn.Linear(6, 9), nn.GELU(approximate="tanh"), nn.Linear(9, 7),
                           nn.GELU(approximate="tanh"), nn.Linear(7, 3))
    module.load_state_dict({f"{position}.{torch_name}": tensors[f"layers.{index}.{name}"].T if name == "kernel"
                            else tensors[f"layers.{index}.{name}"]
                            for index, position in enumerate((0, 2, 4))
                            for torch_name, name in (("weight", "kernel"), ("bias", "bias"))})
    np.testing.assert_allclose(torch_outputs(module, x), model.predict(x), **TOLERANCE)


def test_weights_trained_in_torch_load_back(rng):
    torch = torch_or_skip()
    model = regression_model("sigmoid")
    model.build()
    module = interop.to_torch(model)
    torch.manual_seed(0)
    for parameter in module.parameters():
        torch.nn.init.normal_(parameter, std=0.5)
    interop.load_torch_state_dict(model, module.state_dict())
    x = rng.normal(size=(13, 6)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), torch_outputs(module, x), **TOLERANCE)
    np.testing.assert_array_equal(model.layers[0].kernel, module[0].weight.detach().numpy().T)

    before = model.parameters.copy()
    state = module.state_dict()
    for change, match in [
        (lambda s: s.pop("2.bias"), r"missing \['2.bias'\]"),
        (lambda s: s.update({"9.weight": torch.zeros(1)}), r"unexpected \['9.weight'\]"),
        (lambda s: s.update({"0.weight": torch.zeros(6, 9)}), r"0.weight has shape \(6, 9\), expected \(9, 6\)"),
        (lambda s: s.update({"4.bias": torch.zeros(3, dtype=torch.float64)}), "4.bias has dtype float64"),
        (lambda s: s.update({"4.bias": torch.tensor([0.0, float("nan"), 1.0])}), "layers.2.bias holds NaN"),
    ]:
        changed = dict(state)
        change(changed)
        with pytest.raises(ValueError, match=match):
            interop.load_torch_state_dict(model, changed)
        np.testing.assert_array_equal(model.parameters, before)


def test_torch_tensors_train_and_predict_through_dlpack(rng):
    torch = torch_or_skip()
    x = rng.normal(size=(31, 6)).astype(np.float32)
    labels = rng.integers(0, 3, 31)

    def classifier():
        model = ft.Sequential([layers.Dense(8, activation="relu"), layers.Dense(3)], input_dim=6, seed=0)
        model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
        return model

    reference, model = classifier(), classifier()
    history = reference.fit(x, labels, epochs=3, batch_size=8, verbose=0, seed=2)
    from_torch = model.fit(torch.from_numpy(x), torch.from_numpy(labels), epochs=3, batch_size=8, verbose=0, seed=2)
    assert from_torch.history == history.history
    np.testing.assert_array_equal(model.predict(torch.from_numpy(x)), reference.predict(x))
    assert model.evaluate(torch.from_numpy(x).double(), torch.from_numpy(labels)) == reference.evaluate(x, labels)
    with pytest.raises(TypeError, match=r"x: could not read the Tensor through DLPack.*\.detach\(\)"):
        model.predict(torch.from_numpy(x).requires_grad_())


def test_without_torch_the_functions_say_what_is_missing(monkeypatch, rng):
    model = regression_model("relu")
    model.build()
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"PyTorch is not installed.*pip install torch"):
        interop.to_torch(model)
    with pytest.raises(ImportError, match="PyTorch is not installed"):
        interop.to_torch_state_dict(model)
    # Everything else works without PyTorch.
    assert interop.state_dict(model)["layers.0.kernel"].shape == (6, 9)


def _torch_readme_blocks():
    if not README.exists():
        return []
    return re.findall(r"```python torch\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.skipif(not README.exists(), reason="needs the source tree's README.md")
def test_the_readme_has_the_torch_recipe():
    assert _torch_readme_blocks(), "README.md should hold the PyTorch recipe in a ```python torch block"


@pytest.mark.parametrize("index", range(len(_torch_readme_blocks())))
def test_readme_torch_example_runs(index, tmp_path, monkeypatch):
    """The README's PyTorch blocks (fenced ```python torch, which test_readme.py leaves out)."""
    torch_or_skip()
    monkeypatch.chdir(tmp_path)
    exec(compile(_torch_readme_blocks()[index], f"README.md torch block {index}", "exec"), {})
