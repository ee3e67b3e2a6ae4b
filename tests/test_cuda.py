"""CUDA kernels on CuPy arrays against the CPU kernels and float64 references. Skipped, with the
reason, where CuPy or a usable GPU is missing."""

import numpy as np
import pytest

import fusedtrain as ft

cupy = pytest.importorskip("cupy", reason="CuPy is not installed (pip install fusedtrain[cuda])")
_report = ft.info()
pytestmark = pytest.mark.skipif(not _report["gpu_found"],
                                reason=f"no usable GPU: {_report.get('gpu_reason', '')}")

ACTIVATIONS = ["relu", "leaky_relu", "sigmoid", "tanh", "gelu"]


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(1,), (17,), (257, 3), (1000, 1001)])
def test_activation_forward_matches_cpu(name, shape):
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(shape) * 4).astype(np.float32)
    cpu = getattr(ft.ops, name)(x)
    gpu = getattr(ft.ops, name)(cupy.asarray(x))
    assert isinstance(gpu, cupy.ndarray)
    # The GPU runs the same formulas (csrc/common/) but nvcc may contract a*b+c into FMAs where
    # g++ does not: agreement to a few float32 ulps, not bit for bit.
    np.testing.assert_allclose(cupy.asnumpy(gpu), cpu, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_backward_matches_cpu(name):
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((129, 65)) * 3).astype(np.float32)
    grad_output = rng.standard_normal(x.shape).astype(np.float32)
    cpu = getattr(ft.ops, name + "_grad")(grad_output, x)
    gpu = getattr(ft.ops, name + "_grad")(cupy.asarray(grad_output), cupy.asarray(x))
    np.testing.assert_allclose(cupy.asnumpy(gpu), cpu, rtol=1e-5, atol=1e-6)


def test_out_is_written_in_place_on_the_gpu():
    x = cupy.linspace(-3, 3, 1001, dtype=cupy.float32)
    out = cupy.empty_like(x)
    result = ft.ops.relu(x, out=out)
    assert result is out
    np.testing.assert_array_equal(cupy.asnumpy(out), np.maximum(cupy.asnumpy(x), 0))


def test_mixing_numpy_and_cupy_is_a_clear_error():
    x = cupy.ones((4, 4), dtype=cupy.float32)
    with pytest.raises(TypeError, match="grad_output"):
        ft.ops.relu_grad(np.ones((4, 4), np.float32), x)
    with pytest.raises(TypeError, match="dtype float32"):
        ft.ops.relu(cupy.ones(3, dtype=cupy.float64))
    with pytest.raises(ValueError, match="C-contiguous"):
        ft.ops.relu(cupy.ones((4, 4), dtype=cupy.float32)[:, ::2])
