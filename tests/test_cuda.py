"""The GPU backend: every op on CuPy arrays against the CPU op and float64 references (skipped,
with the reason, where CuPy or a usable GPU is missing), and, on every machine, the Python side
of the GPU path (argument checks, what each op hands to the kernels) and the error a kernel
launch raises where no GPU can run it."""

import math
import sys
import types

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import _C

try:
    import cupy as _cupy
except ImportError:
    _cupy = None

_REPORT = ft.info()
ACTIVATIONS = ["relu", "leaky_relu", "sigmoid", "tanh", "gelu"]


@pytest.fixture
def cupy():
    """The cupy module where the GPU tests can run; a skip naming what is missing elsewhere."""
    if _cupy is None:
        pytest.skip("CuPy is not installed (pip install fusedtrain[cuda])")
    if not _REPORT["cuda_compiled"]:
        pytest.skip("fusedtrain was built without CUDA")
    if not _REPORT["gpu_found"]:
        pytest.skip(f"no usable GPU: {_REPORT.get('gpu_reason', '')}")
    return _cupy


def _random(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _unaligned(cupy, values):
    """A CuPy copy of `values` whose data starts 4 bytes past a 16-byte boundary: the kernels'
    element-by-element paths."""
    flat = cupy.empty(values.size + 1, dtype=values.dtype)
    view = flat[1:].reshape(values.shape)
    view[...] = cupy.asarray(values)
    return view


# ---- on the GPU: activations and softmax -----------------------------------------------------

@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(1,), (17,), (257, 3), (1000, 1001)])
def test_activation_forward_matches_cpu(cupy, name, shape):
    rng = np.random.default_rng(7)
    x = _random(rng, shape, 4)
    cpu = getattr(ft.ops, name)(x)
    gpu = getattr(ft.ops, name)(cupy.asarray(x))
    assert isinstance(gpu, cupy.ndarray)
    # The GPU runs the same formulas (csrc/common/) but nvcc may contract a*b+c into FMAs where
    # g++ does not, and the CPU's AVX2 build takes exp(-|x|) from its table exponential
    # (relative error 1.6e-7): agreement to a few float32 ulps, not bit for bit.
    np.testing.assert_allclose(cupy.asnumpy(gpu), cpu, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_backward_matches_cpu(cupy, name):
    rng = np.random.default_rng(8)
    x = _random(rng, (129, 65), 3)
    grad_output = _random(rng, x.shape)
    cpu = getattr(ft.ops, name + "_grad")(grad_output, x)
    gpu = getattr(ft.ops, name + "_grad")(cupy.asarray(grad_output), cupy.asarray(x))
    np.testing.assert_allclose(cupy.asnumpy(gpu), cpu, rtol=1e-5, atol=1e-6)


def test_out_is_written_in_place_on_the_gpu(cupy):
    x = cupy.linspace(-3, 3, 1001, dtype=cupy.float32)
    out = cupy.empty_like(x)
    result = ft.ops.relu(x, out=out)
    assert result is out
    np.testing.assert_array_equal(cupy.asnumpy(out), np.maximum(cupy.asnumpy(x), 0))


def _softmax_reference(x):
    x = x.astype(np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# One warp per row up to 1024 columns, one block per row above.
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (17, 1000), (5, 1025), (2, 3000), (4, 3, 7)])
def test_softmax_matches_cpu_and_float64(cupy, shape):
    rng = np.random.default_rng(9)
    x = _random(rng, shape, 5)
    grad_output = _random(rng, shape)
    gpu = cupy.asnumpy(ft.ops.softmax(cupy.asarray(x)))
    np.testing.assert_allclose(gpu, ft.ops.softmax(x), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gpu, _softmax_reference(x), rtol=1e-5, atol=1e-7)
    s = _softmax_reference(x)
    expected = s * (grad_output - (grad_output * s).sum(axis=-1, keepdims=True))
    gpu_grad = cupy.asnumpy(ft.ops.softmax_grad(cupy.asarray(grad_output), cupy.asarray(x)))
    np.testing.assert_allclose(gpu_grad, ft.ops.softmax_grad(grad_output, x), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gpu_grad, expected, rtol=1e-4, atol=1e-6)


def test_softmax_in_place_and_large_inputs(cupy):
    x = cupy.asarray(np.array([[1000.0, 999.0, -1000.0], [-5.0, -5.0, -5.0]], np.float32))
    expected = _softmax_reference(cupy.asnumpy(x))
    result = ft.ops.softmax(x, out=x)
    assert result is x
    np.testing.assert_allclose(cupy.asnumpy(x), expected, rtol=1e-6, atol=1e-7)


# ---- on the GPU: matmul ----------------------------------------------------------------------

SHAPES = [(1, 1, 1), (3, 5, 7), (17, 33, 65), (130, 129, 17), (257, 131, 100), (64, 64, 64), (8, 12, 0)]


def _matmul_reference(a, b, trans_a, trans_b, alpha=1.0, beta=0.0, c=None, bias=None):
    a64 = a.astype(np.float64).T if trans_a else a.astype(np.float64)
    b64 = b.astype(np.float64).T if trans_b else b.astype(np.float64)
    result = alpha * a64 @ b64
    magnitude = abs(alpha) * np.abs(a64) @ np.abs(b64)
    if beta != 0.0:
        result += beta * c.astype(np.float64)
        magnitude += abs(beta) * np.abs(c.astype(np.float64))
    if bias is not None:
        result += bias
        magnitude += np.abs(bias)
    return result, magnitude


def _operands(rng, m, n, k, trans_a, trans_b):
    a = _random(rng, (k, m) if trans_a else (m, k))
    b = _random(rng, (n, k) if trans_b else (k, n))
    return a, b


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("m, n, k", SHAPES)
@pytest.mark.parametrize("allow_tf32", [False, True])
def test_matmul_matches_float64(cupy, trans_a, trans_b, m, n, k, allow_tf32):
    rng = np.random.default_rng(m * 1000 + n * 10 + k)
    a, b = _operands(rng, m, n, k, trans_a, trans_b)
    gpu = ft.ops.matmul(cupy.asarray(a), cupy.asarray(b), trans_a=trans_a, trans_b=trans_b, allow_tf32=allow_tf32)
    expected, magnitude = _matmul_reference(a, b, trans_a, trans_b)
    # float32 accumulation over k terms stays well under 1e-5 of sum |a||b| for k <= 257. TF32
    # rounds each operand to an 11-bit significand (relative error up to 2^-11 each), so a
    # product may be off by ~1e-3 of its size: the bound is 2e-3 of sum |a||b|.
    tolerance = 2e-3 if allow_tf32 else 1e-5
    error = np.abs(cupy.asnumpy(gpu) - expected)
    assert np.all(error <= tolerance * magnitude + 1e-6), f"worst error {np.max(error / (magnitude + 1e-6))}"
    if not allow_tf32:
        np.testing.assert_allclose(cupy.asnumpy(gpu), ft.ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b),
                                   rtol=1e-4, atol=1e-5 * max(1.0, float(np.max(magnitude, initial=0.0))))


@pytest.mark.parametrize("allow_tf32", [False, True])
@pytest.mark.parametrize("activation", [None, "relu", "leaky_relu", "sigmoid", "tanh", "gelu"])
def test_matmul_epilogue_on_unaligned_arrays(cupy, allow_tf32, activation):
    # Unaligned operands and output take the element-by-element loads and stores; alpha, beta,
    # bias and the activation are applied after the product, as on the CPU.
    rng = np.random.default_rng(11)
    m, n, k = 67, 45, 31
    a, b = _random(rng, (m, k)), _random(rng, (k, n))
    c, bias = _random(rng, (m, n)), _random(rng, (n,))
    out = _unaligned(cupy, c)
    ft.ops.matmul(_unaligned(cupy, a), _unaligned(cupy, b), alpha=0.5, beta=-1.5, out=out,
                  bias=_unaligned(cupy, bias), activation=activation, negative_slope=0.2, allow_tf32=allow_tf32)
    cpu_out = c.copy()
    ft.ops.matmul(a, b, alpha=0.5, beta=-1.5, out=cpu_out, bias=bias, activation=activation, negative_slope=0.2)
    tolerance = 2e-3 if allow_tf32 else 1e-5  # see test_matmul_matches_float64
    _, magnitude = _matmul_reference(a, b, False, False, 0.5, -1.5, c, bias)
    assert np.all(np.abs(cupy.asnumpy(out) - cpu_out) <= tolerance * magnitude + 1e-6)


def test_matmul_beta_zero_ignores_nan_in_out(cupy):
    rng = np.random.default_rng(12)
    a, b = _random(rng, (20, 8)), _random(rng, (8, 12))
    out = cupy.full((20, 12), cupy.nan, dtype=cupy.float32)
    ft.ops.matmul(cupy.asarray(a), cupy.asarray(b), out=out)
    np.testing.assert_allclose(cupy.asnumpy(out), a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)


def test_tf32_switch_reaches_the_tensor_cores(cupy):
    # With TF32 the operands lose 13 mantissa bits, so the result must differ from the float32
    # one somewhere; identical results would mean the switch is ignored.
    rng = np.random.default_rng(13)
    a, b = cupy.asarray(_random(rng, (256, 256))), cupy.asarray(_random(rng, (256, 256)))
    exact = ft.ops.matmul(a, b)
    tf32 = ft.ops.matmul(a, b, allow_tf32=True)
    difference = float(cupy.max(cupy.abs(exact - tf32)))
    assert 0.0 < difference < 0.1


# ---- on the GPU: losses ----------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("n", [1, 7, 1000, 4099])
def test_elementwise_losses_match_cpu(cupy, reduction, n):
    rng = np.random.default_rng(n)
    pred = _random(rng, (n,), 3)
    target = (rng.integers(0, 3, n) / 2).astype(np.float32)
    for op in (ft.ops.mse, ft.ops.binary_cross_entropy):
        cpu_loss, cpu_grad = op(pred, target, reduction=reduction)
        gpu_loss, gpu_grad = op(cupy.asarray(pred), cupy.asarray(target), reduction=reduction)
        assert isinstance(gpu_loss, float)
        # Both sum the per-element terms in double; the terms themselves may differ by an ulp.
        assert gpu_loss == pytest.approx(cpu_loss, rel=1e-6)
        np.testing.assert_allclose(cupy.asnumpy(gpu_grad), cpu_grad, rtol=1e-5, atol=1e-7)
    mse_loss, _ = ft.ops.mse(_unaligned(cupy, pred), _unaligned(cupy, target), reduction=reduction)
    expected = np.sum((pred.astype(np.float64) - target) ** 2) / (n if reduction == "mean" else 1)
    assert mse_loss == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("rows, classes", [(1, 1), (3, 10), (37, 257), (4, 1500), (50, 3)])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_softmax_cross_entropy_matches_cpu_and_float64(cupy, label_dtype, rows, classes, reduction):
    rng = np.random.default_rng(rows * classes)
    logits = _random(rng, (rows, classes), 3)
    labels = rng.integers(0, classes, rows).astype(label_dtype)
    cpu_loss, cpu_grad = ft.ops.softmax_cross_entropy(logits, labels, reduction=reduction)
    gpu_loss, gpu_grad = ft.ops.softmax_cross_entropy(cupy.asarray(logits), cupy.asarray(labels), reduction=reduction)
    s = _softmax_reference(logits)
    per_row = -np.log(s[np.arange(rows), labels])
    scale = 1.0 / rows if reduction == "mean" else 1.0
    expected_grad = s.copy()
    expected_grad[np.arange(rows), labels] -= 1.0
    assert gpu_loss == pytest.approx(cpu_loss, rel=1e-6)
    assert gpu_loss == pytest.approx(per_row.sum() * scale, rel=1e-5)
    np.testing.assert_allclose(cupy.asnumpy(gpu_grad), cpu_grad, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(cupy.asnumpy(gpu_grad), expected_grad * scale, rtol=1e-5, atol=1e-7)


def test_softmax_cross_entropy_in_place_and_bad_labels(cupy):
    rng = np.random.default_rng(14)
    logits = _random(rng, (20, 9))
    labels = rng.integers(0, 9, 20).astype(np.int64)
    expected_loss, expected_grad = ft.ops.softmax_cross_entropy(logits, labels)
    gpu_logits = cupy.asarray(logits)
    loss, grad = ft.ops.softmax_cross_entropy(gpu_logits, cupy.asarray(labels), out=gpu_logits)
    assert grad is gpu_logits and loss == pytest.approx(expected_loss, rel=1e-6)
    np.testing.assert_allclose(cupy.asnumpy(grad), expected_grad, rtol=1e-5, atol=1e-7)
    for classes in (9, 2000):  # the warp and the block kernel
        bad = np.ones(20, np.int32)
        bad[13], bad[17] = classes, -1
        with pytest.raises(ValueError, match=rf"labels: .*labels\[13\] = {classes} is outside \[0, {classes}\)"):
            ft.ops.softmax_cross_entropy(cupy.asarray(_random(rng, (20, classes))), cupy.asarray(bad))


# ---- on the GPU: reductions ------------------------------------------------------------------

@pytest.mark.parametrize("rows, cols", [(1, 1), (1000, 10), (3, 3000), (0, 5), (300, 70), (5000, 3)])
def test_bias_grad_matches_float64(cupy, rows, cols):
    rng = np.random.default_rng(rows + cols)
    grad_output = _random(rng, (rows, cols))
    gpu = cupy.asnumpy(ft.ops.bias_grad(cupy.asarray(grad_output)))
    # float32 sums of up to 5000 terms of size ~1: a few ulps of sqrt(rows) per column.
    np.testing.assert_allclose(gpu, grad_output.astype(np.float64).sum(axis=0), rtol=1e-5,
                               atol=1e-5 * math.sqrt(max(rows, 1)))


def test_argmax_and_accuracy_match_numpy(cupy):
    rng = np.random.default_rng(15)
    x = _random(rng, (6, 70))
    x[0, 5] = x[0, 40] = 50.0       # a tie: the first index
    x[1, 60] = x[1, 3] = np.nan     # NaN counts as the largest: the first NaN
    x[2, 69] = 100.0                # the last column
    x[3, :] = 1.0                   # all equal
    gpu = cupy.asnumpy(ft.ops.argmax(cupy.asarray(x)))
    np.testing.assert_array_equal(gpu, np.argmax(x, axis=1))
    many = _random(rng, (3001, 3))
    labels = rng.integers(0, 3, 3001)
    for dtype in (np.int32, np.int64):
        accuracy = ft.ops.accuracy(cupy.asarray(many), cupy.asarray(labels.astype(dtype)))
        assert accuracy == ft.ops.accuracy(many, labels.astype(dtype))
        assert accuracy == np.mean(np.argmax(many, axis=1) == labels)


# ---- on the GPU: optimizers and clipping -----------------------------------------------------

def _state(rng, n):
    return _random(rng, (n,)), _random(rng, (n,)), _random(rng, (n,), 0.1), np.abs(_random(rng, (n,), 0.1))


@pytest.mark.parametrize("n", [1, 5, 1003])
@pytest.mark.parametrize("aligned", [True, False])
def test_optimizers_match_cpu(cupy, n, aligned):
    rng = np.random.default_rng(n)
    place = cupy.asarray if aligned else (lambda values: _unaligned(cupy, values))
    steps = [
        ("sgd_step", lambda p, g, s0, s1: ft.ops.sgd_step(p, g, s0, lr=0.1, momentum=0.9, nesterov=True,
                                                          weight_decay=0.01)),
        ("sgd_plain", lambda p, g, s0, s1: ft.ops.sgd_step(p, g, lr=0.1, weight_decay=0.01)),
        ("adam", lambda p, g, s0, s1: ft.ops.adam_step(p, g, s0, s1, step=3, weight_decay=0.01)),
        ("adamw", lambda p, g, s0, s1: ft.ops.adam_step(p, g, s0, s1, step=7, weight_decay=0.01, decoupled=True)),
        ("rmsprop", lambda p, g, s0, s1: ft.ops.rmsprop_step(p, g, s1, lr=0.01, weight_decay=0.1)),
    ]
    for name, step in steps:
        param, grad, state0, state1 = _state(rng, n)
        gpu = [place(values) for values in (param, grad, state0, state1)]
        step(*gpu)
        step(param, grad, state0, state1)
        for gpu_values, cpu_values in zip(gpu, (param, grad, state0, state1)):
            # The same formulas (csrc/common/optimizers.h); FMA contraction may differ by an ulp.
            np.testing.assert_allclose(cupy.asnumpy(gpu_values), cpu_values, rtol=1e-6, atol=1e-7, err_msg=name)


def test_clip_grad_norm_matches_cpu(cupy):
    rng = np.random.default_rng(16)
    grads = [_random(rng, (1001,)), _random(rng, (37, 3)), _random(rng, (0,))]
    gpu = [cupy.asarray(grads[0]), _unaligned(cupy, grads[1]), cupy.asarray(grads[2])]
    expected_norm = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads))
    gpu_norm = ft.ops.clip_grad_norm(gpu, 2.0)
    cpu_norm = ft.ops.clip_grad_norm(grads, 2.0)
    assert gpu_norm == pytest.approx(expected_norm, rel=1e-12)
    assert gpu_norm == pytest.approx(cpu_norm, rel=1e-12)
    for gpu_values, cpu_values in zip(gpu, grads):
        np.testing.assert_allclose(cupy.asnumpy(gpu_values), cpu_values, rtol=1e-6, atol=1e-8)
    # Under the limit nothing changes; a NaN norm is returned and nothing is scaled.
    single = cupy.asarray(_random(rng, (10,)) * 0.01)
    before = cupy.asnumpy(single)
    assert ft.ops.clip_grad_norm(single, 100.0) == pytest.approx(float(np.linalg.norm(before.astype(np.float64))))
    np.testing.assert_array_equal(cupy.asnumpy(single), before)
    single[3] = cupy.nan
    assert math.isnan(ft.ops.clip_grad_norm(single, 1e-3))
    np.testing.assert_array_equal(cupy.asnumpy(single)[:3], before[:3])


# ---- on the GPU: dropout ---------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 5, 1001, 4096])
@pytest.mark.parametrize("aligned", [True, False])
def test_dropout_masks_equal_the_cpu_masks(cupy, n, aligned):
    rng = np.random.default_rng(n)
    x, grad_output = _random(rng, (n,)), _random(rng, (n,))
    place = cupy.asarray if aligned else (lambda values: _unaligned(cupy, values))
    seed, step = 0x123456789ABCDEF, 77
    cpu_y, cpu_mask = ft.ops.dropout(x, 0.3, seed=seed, step=step)
    gpu_y, gpu_mask = ft.ops.dropout(place(x), 0.3, seed=seed, step=step)
    # The same Philox words and the same comparison: the masks and outputs are bit for bit equal.
    np.testing.assert_array_equal(cupy.asnumpy(gpu_mask), cpu_mask)
    np.testing.assert_array_equal(cupy.asnumpy(gpu_y), cpu_y)
    gpu_grad = ft.ops.dropout_grad(place(grad_output), gpu_mask, 0.3)
    np.testing.assert_array_equal(cupy.asnumpy(gpu_grad), ft.ops.dropout_grad(grad_output, cpu_mask, 0.3))


def test_dropout_other_steps_give_other_masks(cupy):
    x = cupy.ones(4096, dtype=cupy.float32)
    _, first = ft.ops.dropout(x, 0.5, seed=1, step=1)
    _, second = ft.ops.dropout(x, 0.5, seed=1, step=2)
    assert bool(cupy.any(first != second))
    assert 0.45 < float(first.mean()) < 0.55


# ---- on the GPU: streams and errors ----------------------------------------------------------

def test_kernels_run_on_the_current_stream(cupy):
    rng = np.random.default_rng(17)
    a, b = _random(rng, (300, 200)), _random(rng, (200, 100))
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        result = ft.ops.matmul(cupy.asarray(a), cupy.asarray(b), activation="relu")
        loss, _ = ft.ops.mse(result, cupy.zeros_like(result))
    stream.synchronize()
    expected = np.maximum(a.astype(np.float64) @ b, 0)
    np.testing.assert_allclose(cupy.asnumpy(result), expected, rtol=1e-5, atol=1e-4)
    assert loss == pytest.approx(float(np.mean(expected ** 2)), rel=1e-4)


def test_mixing_numpy_and_cupy_is_a_clear_error(cupy):
    x = cupy.ones((4, 4), dtype=cupy.float32)
    with pytest.raises(TypeError, match="grad_output: expected a cupy.ndarray"):
        ft.ops.relu_grad(np.ones((4, 4), np.float32), x)
    with pytest.raises(TypeError, match="b: expected a cupy.ndarray"):
        ft.ops.matmul(x, np.ones((4, 4), np.float32))
    with pytest.raises(TypeError, match="labels: expected a 1-D cupy.ndarray"):
        ft.ops.softmax_cross_entropy(x, np.zeros(4, np.int64))
    with pytest.raises(TypeError, match="dtype float32"):
        ft.ops.relu(cupy.ones(3, dtype=cupy.float64))
    with pytest.raises(ValueError, match="C-contiguous"):
        ft.ops.relu(cupy.ones((4, 4), dtype=cupy.float32)[:, ::2])


@pytest.mark.skipif(_cupy is None or not _REPORT["gpu_found"] or len(_REPORT.get("gpus", [])) < 2,
                    reason="needs CuPy and two GPUs")
def test_arrays_on_another_device_are_rejected():
    with _cupy.cuda.Device(1):
        other = _cupy.ones(4, dtype=_cupy.float32)
    with pytest.raises(ValueError, match="x: is on GPU 1"):
        ft.ops.relu(other)


# ---- on the GPU: the defects a first GPU run looks for ---------------------------------------

def _tf32(values):
    """float32 values rounded to TF32 as cvt.rna does: 10 mantissa bits, ties away from zero."""
    bits = values.astype(np.float32).view(np.uint32)
    return ((bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)


def _offset(cupy, values, elements):
    """A CuPy copy of `values` starting `elements` floats past a 256-byte boundary."""
    flat = cupy.zeros(values.size + elements, dtype=values.dtype)
    view = flat[elements:].reshape(values.shape)
    view[...] = cupy.asarray(values)
    return view


@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("allow_tf32", [False, True])
@pytest.mark.parametrize("offset", [0, 2, 4])
def test_gemm_edge_tiles_and_offset_views(cupy, trans_a, trans_b, allow_tf32, offset):
    # Sizes one past a tile (129 = 128 + 1) and K slices (8 for FP32, 16 for TF32) cut short;
    # operands 8 bytes (offset 2: pairs of C but no 16-byte vectors) or 16 bytes (offset 4:
    # vectors) past a boundary. Out-of-bounds edge loads or stores, or a vector path taken on a
    # misaligned view, show up as wrong values or as a fault (compute-sanitizer in .ci/gpu).
    rng = np.random.default_rng(offset * 10 + trans_a * 2 + trans_b)
    m, n, k = 129, 132, 37
    a, b = _operands(rng, m, n, k, trans_a, trans_b)
    bias = _random(rng, (n,))
    out = _offset(cupy, np.zeros((m, n), np.float32), offset)
    arguments = dict(trans_a=trans_a, trans_b=trans_b, bias=_offset(cupy, bias, offset), activation="tanh",
                     allow_tf32=allow_tf32)
    device_a, device_b = _offset(cupy, a, offset), _offset(cupy, b, offset)
    ft.ops.matmul(device_a, device_b, out=out, **arguments)
    first = cupy.asnumpy(out)
    if allow_tf32:
        a, b = _tf32(a), _tf32(b)
    expected, magnitude = _matmul_reference(a, b, trans_a, trans_b, bias=bias)
    # tanh is 1-Lipschitz; with the operands rounded as the tensor cores round them, only the
    # float32 accumulation remains (see test_matmul_matches_float64).
    assert np.all(np.abs(first - np.tanh(expected)) <= 1e-5 * magnitude + 1e-6)
    # A race between the shared-memory stages would make a rerun differ; a fixed schedule of
    # float32 additions gives the same bits every time.
    ft.ops.matmul(device_a, device_b, out=out, **arguments)
    np.testing.assert_array_equal(cupy.asnumpy(out), first)


def test_tf32_fragments_follow_the_ptx_layout(cupy):
    # With the operands already TF32 the tensor cores multiply exactly, so the result equals the
    # float64 product to float32 accumulation error; a fragment in the wrong place (row and
    # column of m16n8k8 swapped, k halves mixed between A and B) gives errors of order 1.
    rng = np.random.default_rng(17)
    a, b = _tf32(_random(rng, (64, 48))), _tf32(_random(rng, (48, 40)))
    gpu = cupy.asnumpy(ft.ops.matmul(cupy.asarray(a), cupy.asarray(b), allow_tf32=True))
    expected, magnitude = _matmul_reference(a, b, False, False)
    assert np.all(np.abs(gpu - expected) <= 1e-5 * magnitude + 1e-6)


@pytest.mark.parametrize("rows", [1, 7, 9])
@pytest.mark.parametrize("cols", [1, 31, 33, 1023, 1025, 2049])
def test_row_reductions_over_partial_warps_and_blocks(cupy, rows, cols):
    # Rows narrower than a warp, one lane past a warp, and rows on the block kernels (above
    # 1024 columns), in row counts that leave warps of the last block idle.
    rng = np.random.default_rng(rows * 10000 + cols)
    x = _random(rng, (rows, cols), 3)
    labels = rng.integers(0, cols, rows)
    device_x = cupy.asarray(x)
    np.testing.assert_allclose(cupy.asnumpy(ft.ops.softmax(device_x)), _softmax_reference(x), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(cupy.asnumpy(ft.ops.argmax(device_x)), np.argmax(x, axis=1))
    loss, grad = ft.ops.softmax_cross_entropy(device_x, cupy.asarray(labels))
    cpu_loss, cpu_grad = ft.ops.softmax_cross_entropy(x, labels)
    assert loss == pytest.approx(cpu_loss, rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(cupy.asnumpy(grad), cpu_grad, rtol=1e-5, atol=1e-7)
    assert ft.ops.accuracy(device_x, cupy.asarray(labels)) == ft.ops.accuracy(x, labels)


def test_zero_size_inputs_on_the_gpu(cupy):
    rng = np.random.default_rng(18)
    bias = _random(rng, (5,))
    # k == 0: the product is empty and C is the bias (then the activation), as on the CPU.
    out = ft.ops.matmul(cupy.zeros((3, 0), cupy.float32), cupy.zeros((0, 5), cupy.float32),
                        bias=cupy.asarray(bias), activation="relu")
    np.testing.assert_array_equal(cupy.asnumpy(out), np.broadcast_to(np.maximum(bias, 0), (3, 5)))
    assert ft.ops.matmul(cupy.zeros((0, 4), cupy.float32), cupy.zeros((4, 5), cupy.float32)).shape == (0, 5)
    np.testing.assert_array_equal(cupy.asnumpy(ft.ops.bias_grad(cupy.zeros((0, 6), cupy.float32))), np.zeros(6))
    assert ft.ops.softmax(cupy.zeros((0, 3), cupy.float32)).shape == (0, 3)
    empty = cupy.zeros(0, cupy.float32)
    y, mask = ft.ops.dropout(empty, 0.5, seed=1, step=1)
    assert y.shape == mask.shape == (0,)
    ft.ops.adam_step(empty, cupy.zeros(0, cupy.float32), cupy.zeros(0, cupy.float32), cupy.zeros(0, cupy.float32),
                     step=1)
    assert ft.ops.clip_grad_norm(cupy.zeros(0, cupy.float32), 1.0) == 0.0


def test_accuracy_checks_labels_on_the_gpu(cupy):
    scores = cupy.asarray(_random(np.random.default_rng(19), (10, 3)))
    for dtype in (np.int32, np.int64):
        labels = np.zeros(10, dtype)
        labels[6], labels[8] = 3, -1
        with pytest.raises(ValueError, match=r"^labels: .*labels\[6\] = 3 is outside \[0, 3\)"):
            ft.ops.accuracy(scores, cupy.asarray(labels))


def test_device_slots_hold_what_the_ops_return(cupy):
    # loss_out / out / norm_out: the value stays on the GPU (no read-back) and equals the one
    # the same op returns as a Python number.
    rng = np.random.default_rng(20)
    x, target = _random(rng, (33, 5)), _random(rng, (33, 5))
    labels = cupy.asarray(rng.integers(0, 5, 33))
    slot = cupy.zeros(1, cupy.float64)
    device_x, device_target = cupy.asarray(x), cupy.asarray(target)
    for op, second in ((ft.ops.mse, device_target), (ft.ops.binary_cross_entropy, cupy.asarray(np.abs(target) % 1)),
                       (ft.ops.softmax_cross_entropy, labels)):
        value, _ = op(device_x, second)
        stored, _ = op(device_x, second, loss_out=slot)
        assert stored is slot and float(slot[0]) == value
    assert ft.ops.accuracy(device_x, labels, out=slot) is slot
    assert float(slot[0]) == ft.ops.accuracy(device_x, labels)
    grads = cupy.asarray(_random(rng, (1000,), 3))
    copy = grads.copy()
    norm = ft.ops.clip_grad_norm(copy, 1.0)
    assert ft.ops.clip_grad_norm(grads, 1.0, norm_out=slot) is slot
    assert float(slot[0]) == pytest.approx(norm, rel=1e-12)
    np.testing.assert_array_equal(cupy.asnumpy(grads), cupy.asnumpy(copy))


# ---- everywhere: the CUDA error of a launch that cannot run ----------------------------------

@pytest.mark.skipif(not _C.cuda_compiled, reason="fusedtrain was built without CUDA")
@pytest.mark.skipif(_REPORT["gpu_found"], reason="a GPU is present: launches succeed")
def test_launch_without_a_gpu_raises_the_cuda_error():
    # Without a usable GPU the runtime refuses the launch; the error names the kernel (or the
    # CUDA call) and the CUDA error instead of crashing. The pointers are never dereferenced.
    with pytest.raises(RuntimeError, match=r"activation_forward_kernel failed: cudaError\w+"):
        _C.cuda_activation_forward(1, 0.0, 0, 0, 16, 0)
    with pytest.raises(RuntimeError, match=r"failed: cudaError\w+"):
        _C.cuda_mse_loss(0, 0, 0, 16, 0, 0, 0, 0)
    with pytest.raises(RuntimeError, match=r"simt_gemm_kernel failed: cudaError\w+"):
        _C.cuda_gemm(False, False, 4, 4, 4, 1.0, 0, 4, 0, 4, 0.0, 0, 4, 0, 0, 0.0, False, 0)


@pytest.mark.skipif(not _C.cuda_compiled, reason="fusedtrain was built without CUDA")
def test_bindings_reject_bad_enumerations():
    with pytest.raises(ValueError, match="unknown activation"):
        _C.cuda_activation_forward(9, 0.0, 0, 0, 16, 0)
    with pytest.raises(ValueError, match="unknown reduction"):
        _C.cuda_mse_loss(0, 0, 0, 16, 7, 0, 0, 0)
    with pytest.raises(ValueError, match="int32 or int64"):
        _C.cuda_count_correct(0, 0, 16, 1, 1, 0, 0, 0)


# ---- everywhere: the GPU branch of the ops, against a stand-in for CuPy ----------------------
# Without a GPU, the CuPy branch of every op still runs here up to the kernel call: a stand-in
# "cupy" module whose arrays wrap NumPy arrays, and recorders in place of the _C.cuda_* kernel
# entry points, show which checks fire and exactly what each op hands to the kernels.

class _FakeArray:
    """The attributes of a cupy.ndarray that fusedtrain.ops reads."""

    def __init__(self, values, device=0):
        self.values = values
        self.device = types.SimpleNamespace(id=device)

    dtype = property(lambda self: self.values.dtype)
    shape = property(lambda self: self.values.shape)
    ndim = property(lambda self: self.values.ndim)
    size = property(lambda self: self.values.size)
    nbytes = property(lambda self: self.values.nbytes)
    strides = property(lambda self: self.values.strides)
    flags = property(lambda self: self.values.flags)
    data = property(lambda self: types.SimpleNamespace(ptr=self.values.__array_interface__["data"][0]))

    def __getitem__(self, index):
        return _FakeArray(self.values[index], self.device.id)


_FakeArray.__module__ = "cupy"

KERNELS = ["cuda_gemm", "cuda_activation_forward", "cuda_activation_backward", "cuda_softmax_forward",
           "cuda_softmax_backward", "cuda_mse_loss", "cuda_binary_cross_entropy_loss",
           "cuda_softmax_cross_entropy_loss", "cuda_bias_grad", "cuda_argmax_rows", "cuda_count_correct",
           "cuda_sum_of_squares", "cuda_clip_scale", "cuda_read_result", "cuda_sgd_step", "cuda_adam_step",
           "cuda_rmsprop_step", "cuda_dropout_forward", "cuda_dropout_backward"]
STREAM = 0x5EED


class _Calls(list):
    """The recorded kernel calls, as (name, arguments); `returns` sets a kernel's result."""

    def __init__(self):
        super().__init__()
        self.returns = {}

    def named(self, name):
        return [arguments for kernel, arguments in self if kernel == name]


@pytest.fixture
def fake_gpu(monkeypatch):
    fake = types.ModuleType("cupy")
    fake.float32, fake.uint8 = np.float32, np.uint8
    fake.ndarray = _FakeArray
    fake.empty = lambda shape, dtype: _FakeArray(np.empty(shape, dtype))
    fake.cuda = types.SimpleNamespace(Device=lambda: types.SimpleNamespace(id=0),
                                      get_current_stream=lambda: types.SimpleNamespace(ptr=STREAM))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(_C, "cuda_compiled", True)
    monkeypatch.setattr(_C, "cuda_workspace_bytes", 8256, raising=False)
    calls = _Calls()

    def recorder(name):
        def record(*arguments):
            calls.append((name, arguments))
            result = calls.returns.get(name)
            if isinstance(result, Exception):
                raise result
            return result
        return record

    for name in KERNELS:
        monkeypatch.setattr(_C, name, recorder(name), raising=False)
    return calls


def _fake(values):
    return _FakeArray(np.ascontiguousarray(values))


def _pointer(array):
    return array.values.__array_interface__["data"][0]


@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (False, True), (True, False), (True, True)])
def test_fake_matmul_hands_shapes_and_strides_to_the_kernel(fake_gpu, trans_a, trans_b):
    m, n, k = 5, 3, 7
    a = _fake(np.ones((k, m) if trans_a else (m, k), np.float32))
    b = _fake(np.ones((n, k) if trans_b else (k, n), np.float32))
    bias = _fake(np.ones(n, np.float32))
    out = ft.ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b, bias=bias, activation="gelu", alpha=2.0,
                        allow_tf32=True)
    assert isinstance(out, _FakeArray) and out.shape == (m, n)
    (arguments,) = fake_gpu.named("cuda_gemm")
    assert arguments == (trans_a, trans_b, m, n, k, 2.0, _pointer(a), a.shape[1], _pointer(b), b.shape[1], 0.0,
                         _pointer(out), n, _pointer(bias), 5, 0.01, True, STREAM)


def test_fake_matmul_checks_arguments(fake_gpu):
    a = _fake(np.ones((4, 6), np.float32))
    with pytest.raises(TypeError, match=r"b: expected a cupy.ndarray of float32 .* got numpy.ndarray"):
        ft.ops.matmul(a, np.ones((6, 2), np.float32))
    with pytest.raises(TypeError, match=r"out: expected a cupy.ndarray"):
        ft.ops.matmul(a, _fake(np.ones((6, 2), np.float32)), out=np.empty((4, 2), np.float32))
    with pytest.raises(TypeError, match=r"a: expected dtype float32, got float64 .*cupy.float32"):
        ft.ops.matmul(_fake(np.ones((4, 6))), _fake(np.ones((6, 2), np.float32)))
    with pytest.raises(ValueError, match=r"b: expected a C-contiguous array, .*cupy.ascontiguousarray"):
        ft.ops.matmul(a, _FakeArray(np.ones((2, 6), np.float32).T))
    with pytest.raises(ValueError, match="b: op\\(a\\) is 4x6 but op\\(b\\) is 5x2"):
        ft.ops.matmul(a, _fake(np.ones((5, 2), np.float32)))
    with pytest.raises(ValueError, match="a: is on GPU 1, but the current device is GPU 0"):
        ft.ops.matmul(_FakeArray(np.ones((4, 6), np.float32), device=1), _fake(np.ones((6, 2), np.float32)))
    with pytest.raises(ValueError, match="out: shares memory with a"):
        ft.ops.matmul(a, _fake(np.ones((6, 6), np.float32)), out=a)
    assert fake_gpu.named("cuda_gemm") == []


def test_fake_elementwise_ops_hand_pointers_and_sizes(fake_gpu):
    x = _fake(np.ones((3, 5), np.float32))
    grad_output = _fake(np.ones((3, 5), np.float32))
    y = ft.ops.leaky_relu(x, negative_slope=0.2)
    assert fake_gpu.named("cuda_activation_forward") == [(2, 0.2, _pointer(x), _pointer(y), 15, STREAM)]
    ft.ops.tanh_grad(grad_output, x, out=grad_output)
    assert fake_gpu.named("cuda_activation_backward") == [
        (4, 0.0, _pointer(grad_output), _pointer(x), _pointer(grad_output), 15, STREAM)]
    ft.ops.softmax(_fake(np.ones((2, 3, 4), np.float32)))
    assert fake_gpu.named("cuda_softmax_forward")[0][2:4] == (6, 4)
    with pytest.raises(ValueError, match="x: softmax needs at least 1 dimension"):
        ft.ops.softmax(_FakeArray(np.ones((), np.float32)))
    with pytest.raises(ValueError, match="out: shares memory with grad_output"):
        ft.ops.softmax_grad(grad_output, x, out=grad_output)
    with pytest.raises(TypeError, match="x: expected a cupy.ndarray"):
        ft.ops.relu_grad(grad_output, np.ones((3, 5), np.float32))


def test_fake_losses_read_back_and_label_errors(fake_gpu):
    logits = _fake(np.zeros((4, 3), np.float32))
    fake_gpu.returns["cuda_softmax_cross_entropy_loss"] = 1.25
    for dtype, bits in ((np.int32, 32), (np.int64, 64)):
        labels = _fake(np.zeros(4, dtype))
        loss, grad = ft.ops.softmax_cross_entropy(logits, labels, reduction="sum")
        assert loss == 1.25 and grad.shape == (4, 3)
        arguments = fake_gpu.named("cuda_softmax_cross_entropy_loss")[-1]
        assert arguments[:3] == (_pointer(logits), _pointer(labels), bits)
        assert arguments[4:7] == (4, 3, 1) and arguments[7] != 0 and arguments[8:] == (0, STREAM)
    fake_gpu.returns["cuda_softmax_cross_entropy_loss"] = ValueError("labels[2] = 7 is outside [0, 3)")
    with pytest.raises(ValueError, match=r"^labels: labels\[2\] = 7"):
        ft.ops.softmax_cross_entropy(logits, _fake(np.zeros(4, np.int64)))
    with pytest.raises(TypeError, match="labels: expected a 1-D cupy.ndarray of int32 or int64"):
        ft.ops.softmax_cross_entropy(logits, _fake(np.zeros(4, np.float32)))
    with pytest.raises(ValueError, match="labels: expected 4 labels"):
        ft.ops.softmax_cross_entropy(logits, _fake(np.zeros(5, np.int64)))
    fake_gpu.returns["cuda_mse_loss"] = 0.5
    pred, target = _fake(np.ones(7, np.float32)), _fake(np.zeros(7, np.float32))
    assert ft.ops.mse(pred, target, out=pred) == (0.5, pred)
    assert fake_gpu.named("cuda_mse_loss")[0][:5] == (_pointer(pred), _pointer(target), _pointer(pred), 7, 0)
    with pytest.raises(ValueError, match="pred: the loss of an empty batch"):
        ft.ops.mse(_fake(np.ones(0, np.float32)), _fake(np.ones(0, np.float32)))
    with pytest.raises(TypeError, match="target: expected a cupy.ndarray"):
        ft.ops.binary_cross_entropy(pred, np.zeros(7, np.float32))


def test_fake_reductions(fake_gpu):
    grad_output = _fake(np.ones((6, 4), np.float32))
    out = ft.ops.bias_grad(grad_output)
    assert fake_gpu.named("cuda_bias_grad")[0][:4] == (_pointer(grad_output), _pointer(out), 6, 4)
    indices = ft.ops.argmax(grad_output)
    assert indices.dtype == np.int64 and indices.shape == (6,)
    assert fake_gpu.named("cuda_argmax_rows") == [(_pointer(grad_output), _pointer(indices), 6, 4, STREAM)]
    fake_gpu.returns["cuda_count_correct"] = 3
    assert ft.ops.accuracy(grad_output, _fake(np.zeros(6, np.int32))) == 0.5
    fake_gpu.returns["cuda_count_correct"] = ValueError("labels[1] = 9 is outside [0, 4)")
    with pytest.raises(ValueError, match=r"^labels: labels\[1\] = 9"):
        ft.ops.accuracy(grad_output, _fake(np.zeros(6, np.int32)))
    with pytest.raises(ValueError, match="x: argmax of rows with no columns"):
        ft.ops.argmax(_fake(np.ones((2, 0), np.float32)))


def test_fake_optimizers_and_clipping(fake_gpu):
    param, grad, m, v = (_fake(np.full(9, value, np.float32)) for value in (1.0, 2.0, 3.0, 4.0))
    ft.ops.sgd_step(param, grad, lr=0.5)
    ft.ops.adam_step(param, grad, m, v, step=2, decoupled=True)
    assert fake_gpu.named("cuda_sgd_step") == [(_pointer(param), _pointer(grad), 0, 9, 0.5, 0.0, False, 0.0, STREAM)]
    assert fake_gpu.named("cuda_adam_step")[0][:6] == (_pointer(param), _pointer(grad), _pointer(m), _pointer(v), 9, 2)
    with pytest.raises(ValueError, match="v: shares memory with m"):
        ft.ops.adam_step(param, grad, m, m, step=1)
    with pytest.raises(TypeError, match="grad: expected a cupy.ndarray"):
        ft.ops.rmsprop_step(param, np.ones(9, np.float32), m, lr=0.1)
    fake_gpu.returns["cuda_read_result"] = 16.0
    assert ft.ops.clip_grad_norm([param, grad], 1.0) == 4.0
    accumulate = [arguments[2] for arguments in fake_gpu.named("cuda_sum_of_squares")]
    assert accumulate == [False, True]
    assert [arguments[:3] for arguments in fake_gpu.named("cuda_clip_scale")] == [
        (_pointer(param), 9, 1.0), (_pointer(grad), 9, 1.0)]
    with pytest.raises(ValueError, match=r"grads\[1\]: shares memory with grads\[0\]"):
        ft.ops.clip_grad_norm([param, param], 1.0)
    with pytest.raises(TypeError, match=r"grads\[1\]: expected a cupy.ndarray"):
        ft.ops.clip_grad_norm([param, np.ones(3, np.float32)], 1.0)


def test_fake_dropout(fake_gpu):
    x = _fake(np.ones(10, np.float32))
    y, mask = ft.ops.dropout(x, 0.25, seed=2**64 - 1, step=3)
    assert mask.dtype == np.uint8 and mask.shape == (10,)
    assert fake_gpu.named("cuda_dropout_forward") == [
        (_pointer(x), _pointer(y), _pointer(mask), 10, 0.25, 2**64 - 1, 3, STREAM)]
    ft.ops.dropout_grad(x, mask, 0.25, out=x)
    assert fake_gpu.named("cuda_dropout_backward") == [(_pointer(x), _pointer(mask), _pointer(x), 10, 0.25, STREAM)]
    with pytest.raises(TypeError, match="mask: expected a cupy.ndarray of uint8"):
        ft.ops.dropout_grad(x, np.ones(10, np.uint8), 0.25)


def test_cupy_arguments_without_cuda_say_why(monkeypatch):
    monkeypatch.setattr(_C, "cuda_compiled", False)
    with pytest.raises(RuntimeError, match="relu: got CuPy arrays, but this fusedtrain was built without CUDA"):
        ft.ops.relu(_fake(np.ones(3, np.float32)))


_BINDINGS = {name: getattr(_C, name) for name in KERNELS if hasattr(_C, name)}


@pytest.mark.skipif(not _C.cuda_compiled, reason="fusedtrain was built without CUDA")
@pytest.mark.skipif(_REPORT["gpu_found"], reason="a GPU is present: the recorded host pointers must not reach it")
def test_recorded_calls_fit_the_bindings(fake_gpu):
    # What each op hands to the kernels, passed to the real bindings: argument count and types
    # must be accepted (a mismatch would raise TypeError); without a GPU the launch or the first
    # CUDA call then fails with the CUDA error, and no pointer is ever dereferenced.
    x = _fake(np.ones((4, 6), np.float32))
    labels = _fake(np.zeros(4, np.int32))
    fake_gpu.returns.update(cuda_mse_loss=0.0, cuda_binary_cross_entropy_loss=0.0,
                            cuda_softmax_cross_entropy_loss=0.0, cuda_count_correct=0, cuda_read_result=0.0)
    ft.ops.matmul(x, x, trans_b=True, bias=_fake(np.ones(4, np.float32)), activation="relu")
    ft.ops.gelu(x)
    ft.ops.gelu_grad(x, x)
    ft.ops.softmax(x)
    ft.ops.softmax_grad(x, x)
    ft.ops.mse(x, x)
    ft.ops.binary_cross_entropy(x, x)
    ft.ops.softmax_cross_entropy(x, labels)
    ft.ops.bias_grad(x)
    ft.ops.argmax(x)
    ft.ops.accuracy(x, labels)
    ft.ops.clip_grad_norm([x], 1.0)
    param, grad, m, v = (_fake(np.ones(5, np.float32)) for _ in range(4))
    ft.ops.sgd_step(param, grad, m, lr=0.1, momentum=0.9)
    ft.ops.adam_step(param, grad, m, v, step=1)
    ft.ops.rmsprop_step(param, grad, m, lr=0.1)
    _, mask = ft.ops.dropout(x, 0.5, seed=1, step=1)
    ft.ops.dropout_grad(x, mask, 0.5)
    assert {name for name, _ in fake_gpu} == set(KERNELS)
    for name, arguments in fake_gpu:
        with pytest.raises(RuntimeError, match=r"failed: cudaError\w+"):
            _BINDINGS[name](*arguments)
