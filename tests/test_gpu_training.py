"""Training on the GPU (device="cuda"): the whole training path (fit, evaluate, predict,
callbacks, checkpoints, dropout, regularizers, clipnorm, frozen layers, the CLI and the
scikit-learn estimators) against the same model trained on the CPU.

Every test runs on the stand-in CuPy of standin_cupy.py (any machine: its arrays refuse
implicit conversion to NumPy, it counts read-backs, and its kernels are the CPU's, so results
must equal the CPU's bit for bit) and, where a usable GPU and CuPy are present, on the GPU
(results within float32 tolerance, no read-back counts)."""

import math
import warnings

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import backends, callbacks, layers, optimizers, regularizers

import standin_cupy

_REPORT = ft.info()
_GPU_USABLE = bool(_REPORT["cuda_compiled"] and _REPORT["gpu_found"] and _REPORT["cupy"])


@pytest.fixture(params=["stand-in", "gpu"])
def gpu(request, monkeypatch):
    """("stand-in", recorder) with the stand-in installed, or ("gpu", None) on a usable GPU."""
    if request.param == "stand-in":
        return "stand-in", standin_cupy.install(monkeypatch)
    if not _GPU_USABLE:
        pytest.skip(f"no usable GPU: {backends.cuda_problem(0)}")
    return "gpu", None


@pytest.fixture
def standin(monkeypatch):
    return standin_cupy.install(monkeypatch)


def same(kind, cpu, device, rtol=1e-3, atol=1e-4):
    """Bit for bit on the stand-in; within float32 tolerance on a GPU: other summation orders and
    FMA contraction change the last bits of each step, which a few epochs of training amplify
    to about 1e-4 relative in the weights and losses."""
    if kind == "stand-in":
        np.testing.assert_array_equal(np.asarray(device), np.asarray(cpu))
    else:
        np.testing.assert_allclose(np.asarray(device), np.asarray(cpu), rtol=rtol, atol=atol)


def same_history(kind, cpu, device, samples=100):
    assert list(cpu) == list(device)
    for key in cpu:
        # On a GPU a sample near the decision boundary may flip: accuracies within 2 samples.
        atol = 2.0 / samples if "accuracy" in key and kind == "gpu" else 1e-4
        same(kind, cpu[key], device[key], atol=atol)


def classification_data(rows=300, features=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, features)).astype(np.float32)
    y = (np.argmax(x[:, :classes] + 0.3 * rng.standard_normal((rows, classes)), axis=1)).astype(np.int64)
    return x, y


def multiclass_model(device, seed=0):
    model = ft.Sequential([layers.Dense(24, activation="relu"), layers.Dropout(0.25),
                           layers.Dense(16, activation="gelu"), layers.Dense(3, activation="softmax")],
                          input_dim=6, device=device, seed=seed)
    model.compile(optimizers.Adam(5e-3, clipnorm=0.5), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def binary_model(device, seed=0):
    model = ft.Sequential([layers.Dense(12, activation="tanh", kernel_regularizer=regularizers.L1L2(1e-3, 1e-3)),
                           layers.Dense(8, activation="leaky_relu", name="frozen"),
                           layers.Dense(1, activation="sigmoid")], input_dim=6, device=device, seed=seed)
    model.layers[1].trainable = False
    model.compile(optimizers.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-4, clipnorm=1.0),
                  "binary_crossentropy", metrics=["accuracy", "mae"])
    return model


def regression_model(device, x, seed=0):
    normalization = layers.Normalization()
    normalization.adapt(x)
    model = ft.Sequential([normalization, layers.Dense(10), layers.Sigmoid(), layers.Dense(2)],
                          input_dim=x.shape[1], device=device, seed=seed)
    model.compile(optimizers.RMSprop(1e-2), "mse", metrics=["mae", "mse"])
    return model


# ---- choosing the device ----------------------------------------------------------------------

def test_cuda_and_auto_pick_the_gpu(standin):
    assert ft.Sequential(device="cuda").device == "cuda:0"
    assert ft.Sequential(device="cuda:0").device == "cuda:0"
    model = ft.Sequential(device="auto")
    assert model.device == "cuda:0" and model.backend.kind == "cuda"


def test_a_missing_gpu_index_is_named(standin):
    with pytest.raises(RuntimeError, match=r"^device='cuda:1': cannot train on the GPU: there is no GPU 1: "
                                           r"the CUDA runtime sees 1 GPU"):
        ft.Sequential(device="cuda:1")


@pytest.mark.parametrize("setting, reason", [
    ("no_cuda_build", "this fusedtrain was built without CUDA"),
    ("no_driver", r"no usable NVIDIA driver \(cudaErrorInsufficientDriver"),
    ("no_device", r"no GPU found \(cudaErrorNoDevice"),
    ("no_cupy", r"CuPy is not installed .*pip install 'fusedtrain\[cuda\]'"),
])
def test_without_a_usable_gpu_cuda_says_what_is_missing_and_auto_falls_back(standin, monkeypatch, capsys,
                                                                             setting, reason):
    from fusedtrain import _C

    if setting == "no_cuda_build":
        monkeypatch.setattr(_C, "cuda_compiled", False)
    elif setting in ("no_driver", "no_device"):
        error = {"no_driver": "cudaErrorInsufficientDriver: CUDA driver version is insufficient",
                 "no_device": "cudaErrorNoDevice: no CUDA-capable device is detected"}[setting]
        monkeypatch.setattr(_C, "cuda_query", lambda: {"device_count": 0, "error": error, "driver": "",
                                                       "devices": []})
    else:
        monkeypatch.setitem(__import__("sys").modules, "cupy", None)
    with pytest.raises(RuntimeError, match=rf"^device='cuda': cannot train on the GPU: {reason}"):
        ft.Sequential(device="cuda")
    monkeypatch.setattr(backends, "_auto_reported", False)
    capsys.readouterr()
    first, second = ft.Sequential(device="auto"), ft.Sequential(device="auto")
    assert first.device == second.device == "cpu"
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fusedtrain: device='auto' trains on the CPU: ")
    assert first.backend.reason and first.backend.reason in lines[0]


# ---- the training path, against the CPU ---------------------------------------------------------

def test_multiclass_with_dropout_clipnorm_and_validation_matches_the_cpu(gpu):
    kind, _ = gpu
    x, y = classification_data()
    results = {}
    for device in ("cpu", "cuda"):
        model = multiclass_model(device)
        history = model.fit(x, y, epochs=4, batch_size=32, validation_split=0.2, verbose=0, seed=3)
        results[device] = (history.history, model.get_weights(), model.evaluate(x, y, batch_size=50),
                           model.predict(x), model.predict_classes(x))
    cpu, device = results["cpu"], results["cuda"]
    same_history(kind, cpu[0], device[0], samples=60)
    for expected, got in zip(cpu[1], device[1]):
        assert isinstance(got, np.ndarray)
        same(kind, expected, got)
    same(kind, cpu[2]["loss"], device[2]["loss"])
    same(kind, cpu[2]["accuracy"], device[2]["accuracy"], atol=2 / 300)
    assert isinstance(device[3], np.ndarray) and device[3].dtype == np.float32
    same(kind, cpu[3], device[3])
    if kind == "stand-in":
        np.testing.assert_array_equal(cpu[4], device[4])


def test_binary_with_regularizers_frozen_layer_and_momentum_matches_the_cpu(gpu):
    kind, _ = gpu
    x, labels = classification_data(rows=257)
    y = (labels == 1).astype(np.float32)
    results = {}
    for device in ("cpu", "cuda"):
        model = binary_model(device)
        model.build()
        frozen = model.get_weights()[2:4]
        history = model.fit(x, y, epochs=3, batch_size=17, verbose=0, seed=5)
        results[device] = (history.history, model.get_weights(), frozen)
    cpu, device = results["cpu"], results["cuda"]
    same_history(kind, cpu[0], device[0])
    for expected, got in zip(cpu[1], device[1]):
        same(kind, expected, got)
    # The frozen layer did not move.
    for before, after in zip(device[2], device[1][2:4]):
        np.testing.assert_array_equal(before, after)


def test_regression_with_normalization_and_activation_layers_matches_the_cpu(gpu):
    kind, _ = gpu
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((190, 4)) * 3 + 1).astype(np.float32)
    y = np.stack([x[:, 0] - x[:, 1], x[:, 2] * 0.5], axis=1).astype(np.float32)
    results = {}
    for device in ("cpu", "cuda"):
        model = regression_model(device, x)
        history = model.fit(x, y, epochs=3, batch_size=64, validation_data=(x[:40], y[:40]), verbose=0, seed=1,
                            shuffle=False)
        results[device] = (history.history, model.predict(x, batch_size=7), model.train_on_batch(x[:9], y[:9]))
        loss, gradients = model.loss_and_gradients(x[:11], y[:11])
        results[device] += (loss, model.backend.to_host(gradients, copy=True))
    cpu, device = results["cpu"], results["cuda"]
    same_history(kind, cpu[0], device[0])
    same(kind, cpu[1], device[1])
    same(kind, cpu[2:4], device[2:4])
    same(kind, cpu[4], device[4], atol=1e-4)


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "categorical_crossentropy"])
def test_sample_and_class_weights_match_the_cpu(gpu, loss):
    kind, _ = gpu
    x, y = classification_data()
    targets = y if loss == "sparse_categorical_crossentropy" else np.eye(3, dtype=np.float32)[y]
    weights = np.random.default_rng(1).uniform(0.0, 2.0, x.shape[0])
    results = {}
    for device in ("cpu", "cuda"):
        model = multiclass_model(device)
        model.compile(model.optimizer, loss, metrics=["accuracy"])
        history = model.fit(x, targets, epochs=3, batch_size=32, verbose=0, seed=3, sample_weight=weights,
                            class_weight={0: 2.0, 2: 0.5}, validation_split=0.2)
        results[device] = (history.history, model.get_weights(),
                           model.evaluate(x, targets, sample_weight=weights)["loss"])
    cpu, device = results["cpu"], results["cuda"]
    same_history(kind, cpu[0], device[0], samples=60)
    for expected, got in zip(cpu[1], device[1]):
        same(kind, expected, got)
    same(kind, cpu[2], device[2])


def test_dropout_masks_are_the_cpus(gpu):
    # The same seeds give the same masks on both devices (the Philox stream of csrc/common/), so
    # one training step with a large dropout rate lands on the same weights.
    kind, _ = gpu
    x, y = classification_data(rows=64)
    weights = []
    for device in ("cpu", "cuda"):
        model = ft.Sequential([layers.Dense(32, activation="relu"), layers.Dropout(0.6), layers.Dense(3)],
                              input_dim=6, device=device, seed=4)
        model.compile(optimizers.SGD(0.5), "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=1, batch_size=64, verbose=0, seed=9)
        weights.append(model.get_weights())
    for expected, got in zip(*weights):
        same(kind, expected, got)


def test_predict_can_return_the_device_array(gpu):
    kind, _ = gpu
    x, y = classification_data(rows=20)
    model = multiclass_model("cuda")
    model.fit(x, y, epochs=1, verbose=0)
    result = model.predict(x, to_numpy=False)
    import cupy

    assert isinstance(result, cupy.ndarray) and tuple(result.shape) == (20, 3)
    same(kind, model.predict(x), cupy.asnumpy(result))
    with pytest.raises(TypeError, match="^to_numpy: expected True or False"):
        model.predict(x, to_numpy="no")


def test_cupy_features_are_used_in_place(gpu):
    kind, _ = gpu
    import cupy

    x, y = classification_data(rows=40)
    model = multiclass_model("cuda")
    model.fit(cupy.asarray(x), y, epochs=2, verbose=0, seed=1)
    reference = multiclass_model("cuda")
    reference.fit(x, cupy.asarray(y), epochs=2, verbose=0, seed=1)
    same(kind, model.predict(x), reference.predict(cupy.asarray(x)))
    bad = cupy.asarray(np.where(np.arange(x.size).reshape(x.shape) == 7, np.nan, x).astype(np.float32))
    with pytest.raises(ValueError, match="^x: contains NaN or infinite values"):
        model.fit(bad, y, verbose=0)
    with pytest.raises(ValueError, match=r"^x: the model takes 6 features per sample, got 5"):
        model.predict(cupy.asarray(x[:, :5]))
    cpu_model = multiclass_model("cpu")
    with pytest.raises(TypeError, match="^x: a GPU array"):
        cpu_model.fit(cupy.asarray(x), y, verbose=0)


class FakeCudaTensor:
    """A DLPack object in (the stand-in's) CUDA memory, as a PyTorch CUDA tensor presents itself."""

    def __init__(self, values):
        self.values = values

    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, stream=None):
        raise AssertionError("the stand-in reads .values directly")


def test_dlpack_objects_in_gpu_memory_are_used_on_the_gpu(standin):
    x, y = classification_data(rows=40)
    model = multiclass_model("cuda")
    model.fit(FakeCudaTensor(x), FakeCudaTensor(y), epochs=2, verbose=0, seed=1)
    reference = multiclass_model("cuda")
    reference.fit(x, y, epochs=2, verbose=0, seed=1)
    np.testing.assert_array_equal(model.predict(FakeCudaTensor(x)), reference.predict(x))
    with pytest.raises(TypeError, match="^x: an array in CUDA memory"):
        multiclass_model("cpu").fit(FakeCudaTensor(x), y, verbose=0)


# ---- what a step costs: read-backs, uploads and allocations (stand-in only) ------------------

def test_a_step_reads_nothing_back(standin):
    # One read of the running sums per epoch (the epoch's logs) and one per 100 batches for
    # terminate_on_nan; none in a step, with dropout, clipnorm and accuracy in play.
    from fusedtrain.backends import cuda as cuda_backend

    x, y = classification_data(rows=3300)
    model = multiclass_model("cuda")
    model.fit(x[:64], y[:64], epochs=1, batch_size=32, verbose=0)
    standin.syncs.clear()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    steps = math.ceil(x.shape[0] / 16)
    checks = steps // cuda_backend.NAN_CHECK_BATCHES
    assert len(standin.syncs) == 2 * (1 + checks), standin.syncs
    standin.syncs.clear()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, terminate_on_nan=False)
    assert len(standin.syncs) == 1


def test_data_is_copied_once_per_fit_and_steps_allocate_nothing(standin):
    x, y = classification_data(rows=600)
    counts = []
    for rows in (300, 600):
        model = multiclass_model("cuda")
        model.fit(x[:rows], y[:rows], epochs=1, batch_size=20, verbose=0)
        standin.uploads = standin.allocations = 0
        model.fit(x[:rows], y[:rows], epochs=3, batch_size=20, verbose=0)
        counts.append((standin.uploads, standin.allocations))
    # x, y and one permutation per epoch go up; the buffers are made once per fit: twice the
    # batches cost not one more upload or allocation.
    assert counts[0] == counts[1]
    assert counts[0][0] == 2 + 3


def test_host_arrays_never_reach_the_device_path(standin):
    # What the stand-in refuses, so that the tests above would catch such a leak.
    model = multiclass_model("cuda")
    model.build()
    with pytest.raises(standin_cupy.HostLeak):
        np.asarray(model.parameters)
    with pytest.raises(standin_cupy.HostLeak):
        model.parameters[:3] = np.zeros(3, np.float32)
    import cupy

    with pytest.raises(standin_cupy.HostLeak):
        cupy.add(model.parameters[:3], np.ones(3, np.float32))
    with pytest.raises(TypeError, match="x: expected a cupy.ndarray"):
        ft.ops.relu(np.ones(3, np.float32), out=model.parameters[:3])


# ---- callbacks, divergence, checkpoints and files ----------------------------------------------

def test_early_stopping_restores_the_best_weights_on_the_device(gpu):
    kind, _ = gpu
    x, y = classification_data(rows=120)
    results = []
    for device in ("cpu", "cuda"):
        model = multiclass_model(device)
        stopper = callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
        history = model.fit(x, y, epochs=30, batch_size=8, validation_split=0.3, callbacks=[stopper], verbose=0,
                            seed=2)
        results.append((history.history, model.get_weights(), model.evaluate(x[84:], y[84:])["loss"]))
    history = results[1][0]
    assert len(history["loss"]) < 30
    # The restored weights are the best epoch's: evaluating them gives the best val_loss.
    assert results[1][2] == pytest.approx(min(history["val_loss"]), rel=1e-6)
    if kind == "stand-in":
        same_history(kind, results[0][0], history)
        for expected, got in zip(results[0][1], results[1][1]):
            same(kind, expected, got)


def test_batch_logs_are_read_only_when_a_callback_looks(standin):
    seen = []

    class Looks(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                seen.append(dict(logs))

    x, y = classification_data(rows=96)
    model = multiclass_model("cuda")
    standin.syncs.clear()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[Looks()])
    assert len(standin.syncs) == 2 and set(seen[0]) == {"loss", "accuracy"}
    reference = multiclass_model("cpu")
    cpu_seen = []

    class CpuLooks(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                cpu_seen.append(dict(logs))

    reference.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[CpuLooks()])
    assert seen == cpu_seen


def test_divergence_is_found_at_the_next_check(gpu):
    kind, _ = gpu
    x, y = classification_data(rows=200)
    x[5:] *= 1e30
    model = ft.Sequential([layers.Dense(8), layers.Dense(3)], input_dim=6, device="cuda", seed=0)
    model.compile(optimizers.SGD(1e10), "sparse_categorical_crossentropy")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, epochs=3, batch_size=10, verbose=0, shuffle=False)
    messages = [str(warning.message) for warning in caught if issubclass(warning.category, RuntimeWarning)]
    assert len(messages) == 1 and "batches 1-20 of 20" in messages[0] and "terminate_on_nan" in messages[0]
    assert history.history == {} and model.stop_training


@pytest.mark.parametrize("first, second", [("cuda", "cpu"), ("cpu", "cuda")])
def test_checkpoints_resume_across_devices(gpu, tmp_path, first, second):
    kind, _ = gpu
    x, y = classification_data(rows=150)
    path = tmp_path / "run.ckpt"
    whole = multiclass_model("cpu")
    expected = whole.fit(x, y, epochs=4, batch_size=25, verbose=0, seed=6).history
    start = multiclass_model(first)
    start.fit(x, y, epochs=2, batch_size=25, verbose=0, seed=6,
              callbacks=[callbacks.ModelCheckpoint(str(path), save_training_state=True)])
    resumed = multiclass_model(second)
    history = resumed.fit(x, y, epochs=4, batch_size=25, verbose=0, resume=str(path),
                          callbacks=[callbacks.ModelCheckpoint(str(tmp_path / "later.ckpt"),
                                                               save_training_state=True)]).history
    assert history["loss"][:2] == pytest.approx(expected["loss"][:2], rel=1e-5)
    for key in expected:
        same(kind, expected[key], history[key])
    for expected_weight, got in zip(whole.get_weights(), resumed.get_weights()):
        same(kind, expected_weight, got)


def test_model_files_move_between_devices(gpu, tmp_path):
    kind, _ = gpu
    x, y = classification_data(rows=60)
    model = multiclass_model("cuda")
    model.fit(x, y, epochs=2, verbose=0)
    model.save(tmp_path / "model.safetensors")
    on_cpu = ft.load(tmp_path / "model.safetensors")
    assert on_cpu.device in ("cpu", "cuda:0")
    same(kind, model.predict(x), on_cpu.predict(x))
    copy = multiclass_model("cuda", seed=7)
    copy.load_weights(tmp_path / "model.safetensors")
    same(kind, model.predict(x), copy.predict(x))
    copy.set_weights(model.get_weights())
    same(kind, model.predict(x), copy.predict(x))


def test_sklearn_estimator_on_the_device(gpu):
    kind, _ = gpu
    from fusedtrain.sklearn import MLPClassifier

    x, y = classification_data(rows=90)
    cpu = MLPClassifier((16,), max_epochs=5, seed=0, device="cpu").fit(x, y)
    device = MLPClassifier((16,), max_epochs=5, seed=0, device="cuda").fit(x, y)
    assert device.model_.device == "cuda:0"
    same(kind, cpu.predict_proba(x), device.predict_proba(x))


def test_sklearn_sparse_input_and_pickling_on_the_device(gpu):
    """A CSR matrix trains on the device as on the CPU (one densified batch at a time, copied to
    the device by train_on_batch), and a pickled estimator comes back on the device."""
    import pickle

    from scipy import sparse

    from fusedtrain.sklearn import MLPClassifier

    kind, _ = gpu
    x, y = classification_data(rows=90)
    x[np.abs(x) < 0.8] = 0.0
    settings = dict(hidden_layer_sizes=(16,), max_epochs=4, batch_size=32, dropout=0.2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cpu = MLPClassifier(device="cpu", **settings).fit(sparse.csr_matrix(x), y)
        device = MLPClassifier(device="cuda", **settings).fit(sparse.csr_matrix(x), y)
    assert device.model_.device == "cuda:0"
    same(kind, cpu.predict_proba(sparse.csr_matrix(x)), device.predict_proba(sparse.csr_matrix(x)))
    same(kind, cpu.loss_curve_, device.loss_curve_)
    restored = pickle.loads(pickle.dumps(device))
    assert restored.model_.device == "cuda:0"
    np.testing.assert_array_equal(restored.predict_proba(x), device.predict_proba(x))


def test_cli_trains_on_the_device(gpu, tmp_path, capsys):
    kind, _ = gpu
    from fusedtrain.__main__ import main

    x, y = classification_data(rows=80)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    out = tmp_path / "model.safetensors"
    status = main(["train", str(tmp_path / "data.npz"), "--device", "cuda", "--layers", "8", "--epochs", "3",
                   "--verbose", "0", "--no-plot", "--out", str(out)])
    assert status == 0
    text = capsys.readouterr().out
    assert "cuda:0" in text
    assert ft.load(out).predict(x).shape == (80, 3)


def test_gpu_benchmarks_without_a_gpu_say_so_and_exit_0(monkeypatch, capsys):
    import importlib.util
    from pathlib import Path

    from fusedtrain import _C

    monkeypatch.setattr(_C, "cuda_compiled", False)
    path = Path(__file__).resolve().parents[1] / "bench" / "bench_training_gpu.py"
    if not path.exists():
        pytest.skip("needs the source tree's bench/")
    spec = importlib.util.spec_from_file_location("bench_training_gpu", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["bench_training_gpu: skipped: this fusedtrain was built without CUDA (no nvcc was found at "
                     "build time; reinstall with the CUDA toolkit on PATH)"]
