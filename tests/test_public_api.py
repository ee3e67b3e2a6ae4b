"""fusedtrain as a dependency of other Python projects: importing it starts no thread and makes
no CUDA call, every name in ``__all__`` exists and is typed, ``py.typed`` is installed, and
``fusedtrain.ops`` works on a project's own NumPy buffers without the training API."""

import importlib.resources
import inspect
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import ops


def _run_python(code):
    """Runs `code` in a fresh interpreter (2 OpenMP threads) and returns its stdout lines."""
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_import_starts_no_thread():
    # NumPy goes first: its BLAS may start a thread pool of its own, which is not fusedtrain's
    # doing. The matmul afterwards shows that the count does see the kernels' OpenMP threads.
    before, after_import, after_matmul = _run_python("""
        import os
        import numpy as np
        def threads():
            return len(os.listdir("/proc/self/task"))
        before = threads()
        import fusedtrain
        after_import = threads()
        a = np.ones((256, 256), np.float32)
        fusedtrain.ops.matmul(a, a)
        print(before, after_import, threads())
    """)
    assert int(after_import) == int(before), "importing fusedtrain started threads"
    assert int(after_matmul) > int(after_import), "a 2-thread matmul should start an OpenMP thread"


def test_import_makes_no_cuda_call():
    # The static CUDA runtime opens the driver library (libcuda) on its first call, so the driver
    # in the process's mappings is the trace of a CUDA call. Where a driver is installed and the
    # CUDA kernels were built, info() (which queries the devices) shows the check can fail.
    mapped_after_import, mapped_after_info = _run_python("""
        def driver_mapped():
            with open("/proc/self/maps") as maps:
                return any("libcuda.so" in line for line in maps)
        import fusedtrain
        after_import = driver_mapped()
        fusedtrain.info()
        print(after_import, driver_mapped())
    """)
    assert mapped_after_import == "False", "importing fusedtrain called into the CUDA driver"
    if ft._C.cuda_compiled and ft.info()["gpu_found"]:
        assert mapped_after_info == "True"


def test_import_loads_no_optional_or_display_library():
    """``import fusedtrain`` leaves out what only some calls need: pandas (tables), tqdm (the
    progress bar of verbose=1, imported by its first bar), scikit-learn, onnx, mpi4py. A verbose
    fit then draws its bar with tqdm, and a verbose message goes through it."""
    loaded, after_fit = _run_python("""
        import sys
        import fusedtrain
        optional = ("pandas", "tqdm", "sklearn", "onnx", "mpi4py")
        print(",".join(name for name in optional if name in sys.modules) or "none")
        import numpy as np
        model = fusedtrain.Sequential([fusedtrain.layers.Dense(1)], input_dim=2, seed=0)
        model.compile("sgd", "mse")
        model.fit(np.ones((4, 2), np.float32), np.ones((4, 1), np.float32), epochs=1, verbose=1)
        print("tqdm" in sys.modules)
    """)[-2:]
    assert loaded == "none"
    assert after_fit == "True"


@pytest.mark.parametrize("module", [ft, ops], ids=["fusedtrain", "fusedtrain.ops"])
def test_every_name_in_all_exists_once(module):
    assert len(module.__all__) == len(set(module.__all__))
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{module.__name__}.__all__ names missing attributes: {missing}"


def test_embedding_helpers_are_public():
    for name in ("get_include", "get_cmake_dir"):
        assert name in ft.__all__
        assert os.path.isdir(getattr(ft, name)())


def _unannotated(function, owner):
    """The parameters (and 'return') of `function` that carry no annotation."""
    signature = inspect.signature(function)
    names = [f"{owner}({parameter.name})" for parameter in signature.parameters.values()
             if parameter.name not in ("self", "cls") and parameter.annotation is inspect.Parameter.empty]
    # __init__ returns None by definition; type checkers do not ask for the annotation.
    if signature.return_annotation is inspect.Signature.empty and function.__name__ != "__init__":
        names.append(f"{owner} -> ?")
    return names


def _public_functions(module):
    """(qualified name, function) for every function and public method named in __all__."""
    for name in module.__all__:
        value = getattr(module, name)
        if inspect.isfunction(value):
            yield f"{module.__name__}.{name}", value
        elif inspect.isclass(value) and value.__module__.startswith("fusedtrain"):
            for attribute, member in vars(value).items():
                if attribute.startswith("_") and attribute != "__init__":
                    continue
                member = member.fget if isinstance(member, property) else member
                member = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
                if inspect.isfunction(member):
                    yield f"{module.__name__}.{name}.{attribute}", member


@pytest.mark.parametrize("module", [ft, ops], ids=["fusedtrain", "fusedtrain.ops"])
def test_public_functions_carry_type_hints(module):
    functions = list(_public_functions(module))
    assert functions
    missing = [entry for name, function in functions for entry in _unannotated(function, name)]
    assert not missing, f"unannotated: {missing}"


def test_py_typed_marker_is_installed():
    assert importlib.resources.files("fusedtrain").joinpath("py.typed").is_file()


def test_ops_run_in_place_on_a_projects_own_buffers(rng):
    # One SGD step of a linear least-squares model, written by a project that keeps its own
    # buffers and calls only fusedtrain.ops; checked against the same step in float64 NumPy.
    x = rng.standard_normal((17, 5)).astype(np.float32)
    target = rng.standard_normal((17, 3)).astype(np.float32)
    weight = rng.standard_normal((5, 3)).astype(np.float32)
    bias = rng.standard_normal(3).astype(np.float32)
    prediction = np.empty((17, 3), np.float32)
    grad_weight = np.empty((5, 3), np.float32)
    grad_bias = np.empty(3, np.float32)
    weight_before, bias_before = weight.astype(np.float64), bias.astype(np.float64)
    buffers = [id(array) for array in (prediction, grad_weight, grad_bias, weight, bias)]

    assert ops.matmul(x, weight, bias=bias, out=prediction) is prediction
    _, grad_prediction = ops.mse(prediction, target, reduction="mean")
    assert ops.matmul(x, grad_prediction, trans_a=True, out=grad_weight) is grad_weight
    assert ops.bias_grad(grad_prediction, out=grad_bias) is grad_bias
    ops.sgd_step(weight, grad_weight, lr=0.1)
    ops.sgd_step(bias, grad_bias, lr=0.1)

    assert [id(array) for array in (prediction, grad_weight, grad_bias, weight, bias)] == buffers
    x64 = x.astype(np.float64)
    grad64 = 2.0 * (x64 @ weight_before + bias_before - target) / target.size
    # float32 arithmetic on O(1) values with sums of at most 17 terms: ~1e-6 absolute.
    np.testing.assert_allclose(weight, weight_before - 0.1 * x64.T @ grad64, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bias, bias_before - 0.1 * grad64.sum(axis=0), rtol=1e-5, atol=1e-6)
