"""Activation ops (relu, leaky_relu, sigmoid, tanh, gelu, softmax) and their gradients against
NumPy float64 references, on both CPU SIMD paths."""

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import ops

GELU_C = np.sqrt(2.0 / np.pi)


def sigmoid_ref(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def gelu_ref(x):
    return 0.5 * x * (1.0 + np.tanh(GELU_C * (x + 0.044715 * x ** 3)))


def gelu_derivative_ref(x):
    t = np.tanh(GELU_C * (x + 0.044715 * x ** 3))
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3 * 0.044715 * x * x)


# name -> (op, grad op, float64 forward, float64 derivative, extra keyword arguments)
ACTIVATIONS = {
    "relu": (ops.relu, ops.relu_grad, lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float), {}),
    "leaky_relu": (ops.leaky_relu, ops.leaky_relu_grad, lambda x: np.where(x > 0, x, 0.01 * x),
                   lambda x: np.where(x > 0, 1.0, 0.01), {}),
    "leaky_relu_0.2": (ops.leaky_relu, ops.leaky_relu_grad, lambda x: np.where(x > 0, x, 0.2 * x),
                       lambda x: np.where(x > 0, 1.0, 0.2), {"negative_slope": 0.2}),
    "sigmoid": (ops.sigmoid, ops.sigmoid_grad, sigmoid_ref,
                lambda x: sigmoid_ref(x) * (1.0 - sigmoid_ref(x)), {}),
    "tanh": (ops.tanh, ops.tanh_grad, np.tanh, lambda x: 1.0 - np.tanh(x) ** 2, {}),
    "gelu": (ops.gelu, ops.gelu_grad, gelu_ref, gelu_derivative_ref, {}),
}
NAMES = list(ACTIVATIONS)

# 317 * 331 = 104927 elements: more than one thread's chunk, so the OpenMP split runs.
SHAPES = [(1,), (3,), (17,), (257,), (3, 17), (17, 1), (5, 3, 17), (2, 1, 257), (317, 331)]

# float32 results: ~1e-7 relative from rounding; fast_math's exp and tanh add ~2e-7. GELU's
# argument u is itself rounded (relative 1e-7 of up to |2u| ~ 16 where GELU is still above
# atol), which bounds the relative error near x = -4.5 to about 2e-6: rtol 1e-5 covers it.
RTOL, ATOL = 1e-5, 1e-6


def random_input(rng, shape):
    """Normal values (scale 3) with a tenth of them drawn from [-100, 100], kept away from the
    kink of relu/leaky_relu at 0 so that finite differences are meaningful."""
    x = rng.standard_normal(shape) * 3.0
    wide = rng.random(shape) < 0.1
    x = np.where(wide, rng.uniform(-100.0, 100.0, shape), x)
    x = np.where(np.abs(x) < 1e-3, 0.5, x)
    return x.astype(np.float32)


@pytest.fixture
def restore_threads():
    threads = ft.get_num_threads()
    yield
    ft.set_num_threads(threads)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_float64_reference(simd_path, rng, name, shape):
    op, _, reference, _, kwargs = ACTIVATIONS[name]
    x = random_input(rng, shape)
    y = op(x, **kwargs)
    assert y.shape == shape and y.dtype == np.float32
    np.testing.assert_allclose(y, reference(x.astype(np.float64)), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", SHAPES)
def test_grad_matches_analytic_derivative(simd_path, rng, name, shape):
    _, grad_op, _, derivative, kwargs = ACTIVATIONS[name]
    x = random_input(rng, shape)
    grad_output = rng.standard_normal(shape).astype(np.float32)
    grad = grad_op(grad_output, x, **kwargs)
    assert grad.shape == shape and grad.dtype == np.float32
    expected = grad_output.astype(np.float64) * derivative(x.astype(np.float64))
    np.testing.assert_allclose(grad, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", NAMES)
def test_grad_matches_finite_differences_of_reference(simd_path, rng, name):
    _, grad_op, reference, _, kwargs = ACTIVATIONS[name]
    x = random_input(rng, (7, 19))
    grad_output = rng.standard_normal(x.shape).astype(np.float32)
    x64 = x.astype(np.float64)
    # Elementwise functions: perturbing every element at once gives every partial derivative.
    # Central differences in float64 with h = 1e-6 are accurate to ~1e-9.
    h = 1e-6
    numeric = (reference(x64 + h) - reference(x64 - h)) / (2 * h)
    grad = grad_op(grad_output, x, **kwargs)
    np.testing.assert_allclose(grad, grad_output * numeric, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", NAMES)
def test_grad_matches_finite_differences_of_kernel_forward(simd_path, rng, name):
    op, grad_op, _, _, kwargs = ACTIVATIONS[name]
    x = (rng.uniform(-4.0, 4.0, (5, 13))).astype(np.float32)
    x = np.where(np.abs(x) < 0.05, np.float32(0.5), x)
    # Steps of 2^-7 on the float32 kernel: the truncation error h^2 f'''/6 and the rounding
    # error eps * |f| / h are both below 5e-5 for |x| <= 4, so 1e-4 separates a wrong
    # derivative from float32 noise. The step actually taken is (x + h) - (x - h) as rounded.
    h = np.float32(2.0 ** -7)
    x_plus, x_minus = x + h, x - h
    step = x_plus.astype(np.float64) - x_minus.astype(np.float64)
    numeric = (op(x_plus, **kwargs).astype(np.float64) - op(x_minus, **kwargs)) / step
    grad = grad_op(np.ones_like(x), x, **kwargs)
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_large_magnitudes_do_not_overflow(simd_path, name):
    op, grad_op, reference, derivative, kwargs = ACTIVATIONS[name]
    x = np.array([-100.0, -88.5, -87.5, -50.0, -20.0, -10.0, 10.0, 20.0, 50.0, 87.5, 88.5, 100.0,
                  -3.0e4, 3.0e4, -1.0e30, 1.0e30], dtype=np.float32)
    y = op(x, **kwargs)
    grad = grad_op(np.ones_like(x), x, **kwargs)
    assert not np.isnan(y).any() and not np.isnan(grad).any()
    finite = np.abs(x) <= 100
    x64 = x[finite].astype(np.float64)
    np.testing.assert_allclose(y[finite], reference(x64), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(grad[finite], derivative(x64), rtol=RTOL, atol=ATOL)
    # Beyond float64's reach of the formulas the limits must hold exactly.
    expected_positive = {"relu": x[-1], "leaky_relu": x[-1], "leaky_relu_0.2": x[-1], "sigmoid": 1.0,
                         "tanh": 1.0, "gelu": x[-1]}[name]
    assert y[-1] == expected_positive


@pytest.mark.parametrize("name", NAMES)
def test_nan_propagates_through_forward(simd_path, rng, name):
    op, _, _, _, kwargs = ACTIVATIONS[name]
    x = random_input(rng, (4, 37))
    x[0, 0] = x[1, 20] = x[3, 36] = np.nan
    y = op(x, **kwargs)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(x))


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "gelu"])
def test_nan_propagates_through_smooth_grads(simd_path, rng, name):
    _, grad_op, _, _, kwargs = ACTIVATIONS[name]
    x = random_input(rng, (3, 29))
    grad_output = rng.standard_normal(x.shape).astype(np.float32)
    x[0, 5] = np.nan
    grad_output[2, 28] = np.nan
    grad = grad_op(grad_output, x, **kwargs)
    np.testing.assert_array_equal(np.isnan(grad), np.isnan(x) | np.isnan(grad_output))


def test_relu_grad_masks_like_pytorch(simd_path):
    # The derivative at 0 (and at NaN) is taken as 0; grad_output passes where x > 0.
    x = np.array([-1.0, 0.0, 2.0, np.nan, 3.0], dtype=np.float32)
    grad_output = np.array([5.0, 5.0, 5.0, 5.0, np.nan], dtype=np.float32)
    np.testing.assert_array_equal(ops.relu_grad(grad_output, x), [0.0, 0.0, 5.0, 0.0, np.nan])
    np.testing.assert_array_equal(ops.leaky_relu_grad(grad_output, x, negative_slope=0.5),
                                  [2.5, 2.5, 5.0, 2.5, np.nan])


# ---- softmax ---------------------------------------------------------------------------------

def softmax_ref(x):
    shifted = x - x.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def softmax_grad_ref(grad_output, x):
    s = softmax_ref(x)
    return s * (grad_output - (grad_output * s).sum(axis=-1, keepdims=True))


SOFTMAX_SHAPES = [(1,), (3,), (17,), (257,), (1, 1), (3, 17), (257, 3), (2, 3, 17), (5, 1, 257),
                  (130, 1001)]


@pytest.mark.parametrize("shape", SOFTMAX_SHAPES)
def test_softmax_matches_reference(simd_path, rng, shape):
    x = (rng.standard_normal(shape) * 5).astype(np.float32)
    y = ops.softmax(x)
    assert y.shape == shape and y.dtype == np.float32
    np.testing.assert_allclose(y, softmax_ref(x.astype(np.float64)), rtol=RTOL, atol=ATOL)
    # Each row's float32 sum has rounding of a few ulps per element summed.
    np.testing.assert_allclose(y.astype(np.float64).sum(axis=-1), 1.0, rtol=0, atol=1e-5)


# Rows shorter than 64 are taken in blocks, longer ones one at a time: both ways are tested.
@pytest.mark.parametrize("cols", [33, 100])
def test_softmax_large_logits(simd_path, rng, cols):
    x = (rng.standard_normal((9, cols)) * 3 + 1000).astype(np.float32)
    x[1] = -1000.0
    x[2, :] = 0.0
    x[2, 7] = 1000.0
    x[3, ::2] = -1000.0
    x[3, 1::2] = 1000.0
    y = ops.softmax(x)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, softmax_ref(x.astype(np.float64)), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=0, atol=1e-5)


@pytest.mark.parametrize("cols", [19, 83])
def test_softmax_nan_poisons_its_row_only(simd_path, rng, cols):
    x = rng.standard_normal((4, cols)).astype(np.float32)
    x[1, 5] = np.nan
    x[2, 0] = np.nan
    y = ops.softmax(x)
    assert np.isnan(y[1]).all() and np.isnan(y[2]).all()
    np.testing.assert_allclose(y[[0, 3]], softmax_ref(x[[0, 3]].astype(np.float64)), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("cols", [9, 203])
def test_softmax_exponential_over_its_whole_range(simd_path, cols):
    # Each row's max is 0 and its other elements spread over [-100, 0), so y = exp(x) / sum
    # samples the exponential everywhere, its underflow to 0 below -87 included.
    x = -np.linspace(0, 100, 41 * cols, endpoint=False).reshape(41, cols)
    x = np.random.default_rng(7).permuted(x, axis=1).astype(np.float32)
    x[:, 0] = 0.0
    y = ops.softmax(x)
    expected = softmax_ref(x.astype(np.float64))
    normal = expected > 1e-37
    np.testing.assert_allclose(y[normal], expected[normal], rtol=1e-6, atol=0)
    assert (y[x < -87.5] == 0).all()
    assert (y[x > -86.5] > 0).all()


@pytest.mark.parametrize("shape", SOFTMAX_SHAPES)
def test_softmax_grad_matches_reference(simd_path, rng, shape):
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    grad_output = rng.standard_normal(shape).astype(np.float32)
    grad = ops.softmax_grad(grad_output, x)
    assert grad.shape == shape and grad.dtype == np.float32
    expected = softmax_grad_ref(grad_output.astype(np.float64), x.astype(np.float64))
    np.testing.assert_allclose(grad, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4)])
def test_softmax_grad_matches_finite_differences(simd_path, rng, shape):
    x = (rng.standard_normal(shape) * 2).astype(np.float32)
    grad_output = rng.standard_normal(shape).astype(np.float32)
    x64, g64 = x.astype(np.float64), grad_output.astype(np.float64)
    # d/dx of sum(grad_output * softmax(x)), one element at a time, in float64.
    h = 1e-6
    numeric = np.empty_like(x64)
    for index in np.ndindex(shape):
        plus, minus = x64.copy(), x64.copy()
        plus[index] += h
        minus[index] -= h
        numeric[index] = ((g64 * softmax_ref(plus)).sum() - (g64 * softmax_ref(minus)).sum()) / (2 * h)
    np.testing.assert_allclose(ops.softmax_grad(grad_output, x), numeric, rtol=RTOL, atol=ATOL)


def test_softmax_grad_large_logits(simd_path, rng):
    x = (rng.standard_normal((6, 21)) * 3 + 1000).astype(np.float32)
    x[2] = -1000.0
    grad_output = rng.standard_normal(x.shape).astype(np.float32)
    grad = ops.softmax_grad(grad_output, x)
    assert np.isfinite(grad).all()
    expected = softmax_grad_ref(grad_output.astype(np.float64), x.astype(np.float64))
    np.testing.assert_allclose(grad, expected, rtol=RTOL, atol=ATOL)


# ---- out=, in place, zero sizes ----------------------------------------------------------------

FORWARD_OPS = [ops.relu, ops.leaky_relu, ops.sigmoid, ops.tanh, ops.gelu, ops.softmax]
GRAD_OPS = [ops.relu_grad, ops.leaky_relu_grad, ops.sigmoid_grad, ops.tanh_grad, ops.gelu_grad,
            ops.softmax_grad]


@pytest.mark.parametrize("op", FORWARD_OPS, ids=lambda op: op.__name__)
def test_forward_out_is_written_and_returned(simd_path, rng, op):
    x = random_input(rng, (17, 19))
    out = np.full_like(x, np.nan)
    result = op(x, out=out)
    assert result is out
    np.testing.assert_array_equal(out, op(x))


@pytest.mark.parametrize("op", FORWARD_OPS, ids=lambda op: op.__name__)
def test_forward_in_place(simd_path, rng, op):
    x = random_input(rng, (23, 257))
    expected = op(x)
    result = op(x, out=x)
    assert result is x
    np.testing.assert_array_equal(x, expected)


@pytest.mark.parametrize("op", GRAD_OPS, ids=lambda op: op.__name__)
def test_grad_out_is_written_and_returned(simd_path, rng, op):
    x = random_input(rng, (17, 19))
    grad_output = rng.standard_normal(x.shape).astype(np.float32)
    out = np.full_like(x, np.nan)
    result = op(grad_output, x, out=out)
    assert result is out
    np.testing.assert_array_equal(out, op(grad_output, x))


@pytest.mark.parametrize("op", GRAD_OPS[:-1], ids=lambda op: op.__name__)
def test_elementwise_grad_in_place_over_grad_output(simd_path, rng, op):
    x = random_input(rng, (23, 257))
    grad_output = rng.standard_normal(x.shape).astype(np.float32)
    expected = op(grad_output, x)
    assert op(grad_output, x, out=grad_output) is grad_output
    np.testing.assert_array_equal(grad_output, expected)
    with pytest.raises(ValueError, match="out: shares memory with x"):
        op(grad_output, x, out=x)


def test_softmax_grad_in_place_over_x_only(simd_path, rng):
    x = rng.standard_normal((23, 257)).astype(np.float32)
    grad_output = rng.standard_normal(x.shape).astype(np.float32)
    expected = ops.softmax_grad(grad_output, x)
    with pytest.raises(ValueError, match="out: shares memory with grad_output"):
        ops.softmax_grad(grad_output, x, out=grad_output)
    assert ops.softmax_grad(grad_output, x, out=x) is x
    np.testing.assert_array_equal(x, expected)


@pytest.mark.parametrize("op", FORWARD_OPS, ids=lambda op: op.__name__)
def test_forward_out_errors(op):
    buffer = np.zeros(40, dtype=np.float32)
    x = buffer[:20]
    with pytest.raises(ValueError, match="out: shares memory with x"):
        op(x, out=buffer[10:30])
    read_only = np.zeros(20, dtype=np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="out: the array is read-only"):
        op(x, out=read_only)
    with pytest.raises(ValueError, match=r"out: expected shape \(20,\)"):
        op(x, out=np.zeros(21, dtype=np.float32))
    with pytest.raises(ValueError, match=r"out: expected shape \(20,\)"):
        op(x, out=np.zeros((4, 5), dtype=np.float32))
    with pytest.raises(TypeError, match="out: expected dtype float32"):
        op(x, out=np.zeros(20, dtype=np.float64))
    with pytest.raises(ValueError, match="out: expected a C-contiguous array"):
        op(x, out=np.zeros(40, dtype=np.float32)[::2])
    with pytest.raises(TypeError, match="out: expected a numpy.ndarray"):
        op(x, out=[0.0] * 20)


@pytest.mark.parametrize("op", GRAD_OPS, ids=lambda op: op.__name__)
def test_grad_out_errors(op):
    buffer = np.zeros(60, dtype=np.float32)
    grad_output, x = buffer[:20], buffer[40:]
    with pytest.raises(ValueError, match="out: shares memory with grad_output"):
        op(grad_output, x, out=buffer[10:30])
    with pytest.raises(ValueError, match="out: shares memory with x"):
        op(grad_output, x, out=buffer[30:50])
    read_only = np.zeros(20, dtype=np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="out: the array is read-only"):
        op(grad_output, x, out=read_only)
    with pytest.raises(ValueError, match="out: expected shape"):
        op(grad_output, x, out=np.zeros(19, dtype=np.float32))
    with pytest.raises(TypeError, match="out: expected dtype float32"):
        op(grad_output, x, out=np.zeros(20, dtype=np.int32))


@pytest.mark.parametrize("op", FORWARD_OPS[:-1], ids=lambda op: op.__name__)
@pytest.mark.parametrize("shape", [(0,), (0, 5), (5, 0), (3, 0, 2)])
def test_forward_zero_size(simd_path, op, shape):
    x = np.zeros(shape, dtype=np.float32)
    assert op(x).shape == shape
    assert GRAD_OPS[FORWARD_OPS.index(op)](x, x).shape == shape


@pytest.mark.parametrize("shape", [(0,), (4, 0), (0, 5), (2, 0, 3)])
def test_softmax_zero_size(simd_path, shape):
    x = np.zeros(shape, dtype=np.float32)
    assert ops.softmax(x).shape == shape
    assert ops.softmax_grad(x, x).shape == shape


def test_elementwise_ops_accept_0d_and_softmax_rejects_it(simd_path):
    x = np.array(-2.0, dtype=np.float32)
    assert ops.relu(x).shape == () and ops.relu(x) == 0.0
    np.testing.assert_allclose(ops.tanh(x), np.tanh(-2.0), rtol=RTOL)
    with pytest.raises(ValueError, match="x: softmax needs at least 1 dimension"):
        ops.softmax(x)
    with pytest.raises(ValueError, match="x: softmax needs at least 1 dimension"):
        ops.softmax_grad(x, x)


# ---- argument errors -------------------------------------------------------------------------

BAD_IDS = ["float64", "int32", "bool", "list", "strided"]
BAD_INPUTS = [
    (np.zeros(6, dtype=np.float64), TypeError, "expected dtype float32, got float64"),
    (np.zeros(6, dtype=np.int32), TypeError, "expected dtype float32, got int32"),
    (np.zeros(6, dtype=bool), TypeError, "expected dtype float32, got bool"),
    ([0.0] * 6, TypeError, "expected a numpy.ndarray of float32, got list"),
    (np.zeros((3, 12), dtype=np.float32)[:, ::2], ValueError, "expected a C-contiguous array"),
]


@pytest.mark.parametrize("op", FORWARD_OPS, ids=lambda op: op.__name__)
@pytest.mark.parametrize("bad, error, message", BAD_INPUTS, ids=BAD_IDS)
def test_forward_rejects_bad_x(op, bad, error, message):
    with pytest.raises(error, match=f"x: {message}"):
        op(bad)


@pytest.mark.parametrize("op", GRAD_OPS, ids=lambda op: op.__name__)
@pytest.mark.parametrize("bad, error, message", BAD_INPUTS, ids=BAD_IDS)
def test_grad_rejects_bad_arguments(op, bad, error, message):
    good = np.zeros(np.shape(bad), dtype=np.float32)
    with pytest.raises(error, match=f"grad_output: {message}"):
        op(bad, good)
    with pytest.raises(error, match=f"x: {message}"):
        op(good, bad)


@pytest.mark.parametrize("op", GRAD_OPS, ids=lambda op: op.__name__)
def test_grad_rejects_shape_mismatch(op):
    x = np.zeros((3, 4), dtype=np.float32)
    with pytest.raises(ValueError, match=r"grad_output: expected shape \(3, 4\)"):
        op(np.zeros((4, 3), dtype=np.float32), x)
    with pytest.raises(ValueError, match=r"grad_output: expected shape \(3, 4\)"):
        op(np.zeros(12, dtype=np.float32), x)


@pytest.mark.parametrize("slope, error", [("0.1", TypeError), (None, TypeError), (True, TypeError),
                                          (float("nan"), ValueError), (float("inf"), ValueError)])
def test_leaky_relu_rejects_bad_slope(slope, error):
    x = np.zeros(3, dtype=np.float32)
    with pytest.raises(error, match="negative_slope"):
        ops.leaky_relu(x, negative_slope=slope)
    with pytest.raises(error, match="negative_slope"):
        ops.leaky_relu_grad(x, x, negative_slope=slope)


# ---- threads ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_elementwise_results_do_not_depend_on_threads(simd_path, rng, restore_threads, name):
    op, grad_op, _, _, kwargs = ACTIVATIONS[name]
    x = random_input(rng, (100_003,))
    grad_output = rng.standard_normal(x.shape).astype(np.float32)
    results = []
    for threads in (1, 2):
        ft.set_num_threads(threads)
        results.append((op(x, **kwargs), grad_op(grad_output, x, **kwargs)))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_softmax_results_do_not_depend_on_threads(simd_path, rng, restore_threads):
    x = rng.standard_normal((1031, 97)).astype(np.float32)
    grad_output = rng.standard_normal(x.shape).astype(np.float32)
    results = []
    for threads in (1, 2):
        ft.set_num_threads(threads)
        results.append((ops.softmax(x), ops.softmax_grad(grad_output, x)))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.parametrize("name", NAMES)
def test_every_vector_width_gives_the_same_bits(rng, name):
    # The AVX2 (8-lane) and AVX-512 (16-lane) loops run one formula with the same operations and
    # the same exponential, so their results agree to the bit, tails of every length included.
    forward, backward, _, _, kwargs = ACTIVATIONS[name]
    paths = [path for path in ("avx2+fma", "avx512") if ft._C.simd_available(path)]
    if len(paths) < 2:
        pytest.skip("needs both the AVX2 and the AVX-512 paths")
    x = random_input(rng, (1031,))
    g = rng.standard_normal(1031).astype(np.float32)
    previous = ft._C.simd_path()
    results = []
    try:
        for path in paths:
            ft._C.set_simd_path(path)
            results.append([(forward(x[:n], **kwargs), backward(g[:n], x[:n], **kwargs)) for n in range(1, 40)])
    finally:
        ft._C.set_simd_path(previous)
    for (y8, d8), (y16, d16) in zip(*results):
        np.testing.assert_array_equal(y16, y8)
        np.testing.assert_array_equal(d16, d8)
