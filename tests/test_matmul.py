"""matmul (the GEMM kernel with its fused epilogue) against float64 NumPy: every transpose
combination, odd and degenerate shapes, alpha/beta/bias, each fused activation, sizes that
cross the kernel's blocking and thread split, and every argument check."""

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import ops

# Float64 versions of the fused activations (gelu in its tanh form, as the kernel).
ACTIVATIONS = {
    None: lambda z, slope: z,
    "relu": lambda z, slope: np.maximum(z, 0.0),
    "leaky_relu": lambda z, slope: np.where(z > 0, z, slope * z),
    "sigmoid": lambda z, slope: 1.0 / (1.0 + np.exp(-z)),
    "tanh": lambda z, slope: np.tanh(z),
    "gelu": lambda z, slope: 0.5 * z * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (z + 0.044715 * z ** 3))),
}


def _operands(rng, m, n, k, trans_a, trans_b):
    """Random float32 a, b stored so that op(a) is m x k and op(b) is k x n."""
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    return a, b


def _reference(a, b, trans_a, trans_b, alpha=1.0, beta=0.0, out=None, bias=None, activation=None,
               negative_slope=0.01):
    """The float64 result and the scale each of its elements is accurate to."""
    a64 = a.astype(np.float64).T if trans_a else a.astype(np.float64)
    b64 = b.astype(np.float64).T if trans_b else b.astype(np.float64)
    k = a64.shape[1]
    z = alpha * (a64 @ b64)
    # Rounding in a float32 dot product of length k grows like lambda * sqrt(k) * u times the sum
    # of the absolute terms, with lambda a small constant with high probability (Higham & Mary,
    # "A new approach to probabilistic rounding error analysis", 2019; u = 2^-24). lambda = 8
    # (sqrt(k) * 5e-7) still leaves the observed errors 30x inside, while a wrong index or a lost
    # term of the sum is off by O(1 / sqrt(k)) of that sum and fails.
    scale = abs(alpha) * (np.abs(a64) @ np.abs(b64)) * (np.sqrt(k) * 5e-7)
    if beta != 0.0:
        z = z + beta * out.astype(np.float64)
        scale = scale + np.abs(beta * out.astype(np.float64)) * 1e-6
    if bias is not None:
        z = z + bias.astype(np.float64)
        scale = scale + np.abs(bias.astype(np.float64)) * 1e-6
    # The activations are at most ~1.13-Lipschitz (gelu) and their float32 forms (fast exp/tanh)
    # are accurate to a few 1e-7, relative for large outputs and absolute near zero.
    result = ACTIVATIONS[activation](z, negative_slope)
    tolerance = 1.2 * scale + 1e-6 * (1.0 + np.abs(result))
    return result, tolerance


def _assert_close(actual, expected, tolerance):
    assert actual.dtype == np.float32 and actual.shape == expected.shape
    error = np.abs(actual.astype(np.float64) - expected)
    worst = np.unravel_index(np.argmax(error - tolerance), error.shape) if error.size else None
    assert np.all(error <= tolerance), (
        f"error {error[worst]:.3g} > tolerance {tolerance[worst]:.3g} at {worst}: "
        f"got {actual[worst]!r}, expected {expected[worst]!r}")


TRANSPOSES = [(False, False), (False, True), (True, False), (True, True)]
TRANSPOSE_IDS = ["NN", "NT", "TN", "TT"]
# (m, n, k). Three have op(A) large enough to be packed (m * k above 40K elements; smaller ones
# are read in place), with k crossing the 8-column packing step and the 320-deep k block:
# (301, 67, 203) and (199, 45, 331) pack it only when transposed (up to 256 columns an
# untransposed A is read in place), (97, 263, 450) either way. m runs through every remainder
# modulo the AVX2 kernel's 6-row tile (edge tiles of 1 to 5 rows have their own kernels).
SHAPES = [(1, 1, 1), (3, 5, 17), (17, 3, 5), (33, 127, 129), (129, 33, 3), (127, 257, 33), (257, 129, 127),
          (5, 1, 257), (301, 67, 203), (199, 45, 331), (97, 263, 450), (40, 50, 23), (44, 33, 12), (48, 16, 8)]


@pytest.mark.parametrize("trans_a, trans_b", TRANSPOSES, ids=TRANSPOSE_IDS)
@pytest.mark.parametrize("m, n, k", SHAPES)
def test_matmul_matches_float64(simd_path, rng, m, n, k, trans_a, trans_b):
    a, b = _operands(rng, m, n, k, trans_a, trans_b)
    result = ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b)
    _assert_close(result, *_reference(a, b, trans_a, trans_b))


@pytest.mark.parametrize("trans_a, trans_b", TRANSPOSES, ids=TRANSPOSE_IDS)
@pytest.mark.parametrize("m", range(36, 42))
def test_alpha_beta_and_bias(simd_path, rng, m, trans_a, trans_b):
    n, k = 19, 45
    a, b = _operands(rng, m, n, k, trans_a, trans_b)
    out = rng.standard_normal((m, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    expected = _reference(a, b, trans_a, trans_b, alpha=-0.75, beta=0.5, out=out, bias=bias)
    result = ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b, alpha=-0.75, beta=0.5, bias=bias, out=out)
    assert result is out
    _assert_close(result, *expected)


# (n, k) for each way the kernel takes its tiles: a packed B block small enough for L1 (tiles go
# along C's rows), a larger one (tiles go down each B panel's column), and op(A) large enough
# to be packed, with k crossing the 320-deep k block: at 40 columns only when transposed, at
# 260 either way.
TILE_ORDERS = {"along rows": (50, 23), "down columns": (100, 130), "large A": (40, 1150), "packed A": (260, 1150)}


@pytest.mark.parametrize("trans_a, trans_b", TRANSPOSES, ids=TRANSPOSE_IDS)
@pytest.mark.parametrize("order", TILE_ORDERS)
@pytest.mark.parametrize("m", range(36, 44))
def test_edge_tiles_of_every_height(simd_path, rng, m, order, trans_a, trans_b):
    # m runs through every remainder modulo the 6-row (AVX2) and 8-row (AVX-512) tiles: the edge
    # tiles of 1 to 7 rows have kernels of their own. One thread, since a split would change the
    # edge tiles' heights.
    n, k = TILE_ORDERS[order]
    a, b = _operands(rng, m, n, k, trans_a, trans_b)
    out = rng.standard_normal((m, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    expected = _reference(a, b, trans_a, trans_b, alpha=0.1, beta=0.5, out=out, bias=bias, activation="gelu")
    threads = ft.get_num_threads()
    ft.set_num_threads(1)
    try:
        ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b, alpha=0.1, beta=0.5, bias=bias, activation="gelu",
                   out=out)
    finally:
        ft.set_num_threads(threads)
    _assert_close(out, *expected)


@pytest.mark.parametrize("trans_a, trans_b", TRANSPOSES, ids=TRANSPOSE_IDS)
@pytest.mark.parametrize("n", range(33, 65))
def test_edge_columns_of_every_width(simd_path, rng, n, trans_a, trans_b):
    # n runs through every remainder modulo the 16-column (AVX2) and 32-column (AVX-512) panels:
    # dot products for the last 1-4 columns, the half panel alone or with the panel before it
    # (wide tiles), and partial two-vector tiles through masked stores. m = 43 ends in a 7-row
    # (AVX2: 1-row) tile; one thread keeps the tiles as described.
    m, k = 43, 70
    a, b = _operands(rng, m, n, k, trans_a, trans_b)
    out = rng.standard_normal((m, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    expected = _reference(a, b, trans_a, trans_b, alpha=0.5, beta=-1.0, out=out, bias=bias, activation="relu")
    threads = ft.get_num_threads()
    ft.set_num_threads(1)
    try:
        ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b, alpha=0.5, beta=-1.0, bias=bias, activation="relu",
                   out=out)
    finally:
        ft.set_num_threads(threads)
    _assert_close(out, *expected)


@pytest.mark.parametrize("trans_b", [False, True], ids=["TN", "TT"])
@pytest.mark.parametrize("n", range(1, 18))
@pytest.mark.parametrize("m, k", [(45, 37), (700, 300)])
def test_narrow_products_of_a_transposed_a(simd_path, rng, m, n, k, trans_b):
    # op(A) transposed and C up to 17 columns wide (the weight gradient of a narrow output layer):
    # on the AVX-512 path, up to 12 columns are sums down C's columns in blocks of 32 rows (45 ends
    # in a 13-row block), 13 and more go to the tiles; 700 x 300 rows split over the threads.
    a, b = _operands(rng, m, n, k, True, trans_b)
    out = rng.standard_normal((m, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    expected = _reference(a, b, True, trans_b, alpha=0.5, beta=0.25, out=out, bias=bias, activation="tanh")
    ops.matmul(a, b, trans_a=True, trans_b=trans_b, alpha=0.5, beta=0.25, bias=bias, activation="tanh", out=out)
    _assert_close(out, *expected)


# One column of C, one to four rows of it, or 2 to 8 columns: the matrix-vector loops (dot
# products of the other operand's rows, or weighted sums of them), with k off the 8-lane vector,
# row counts off the narrow dot products' row blocks (12 / n rows) and outputs past one pass of
# the 2048-float buffer (2048 / n outputs for n columns).
@pytest.mark.parametrize("trans_a, trans_b", TRANSPOSES, ids=TRANSPOSE_IDS)
@pytest.mark.parametrize("m, n, k", [(1, 300, 77), (300, 1, 77), (1, 4099, 33), (2500, 1, 129), (1, 1, 1003),
                                     (1, 7, 5), (13, 1, 8), (2, 300, 77), (3, 1500, 19), (4, 64, 8),
                                     (37, 2, 77), (1100, 3, 19), (530, 4, 130), (53, 5, 8), (29, 6, 9),
                                     (61, 7, 33), (300, 8, 45), (8, 8, 1)])
def test_matrix_vector_products(simd_path, rng, m, n, k, trans_a, trans_b):
    a, b = _operands(rng, m, n, k, trans_a, trans_b)
    out = rng.standard_normal((m, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    expected = _reference(a, b, trans_a, trans_b, alpha=0.2, beta=-0.5, out=out, bias=bias, activation="tanh")
    plain = _reference(a, b, trans_a, trans_b)
    threads = ft.get_num_threads()
    results = []
    try:
        for count in (1, 2):
            ft.set_num_threads(count)
            result = out.copy()
            ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b, alpha=0.2, beta=-0.5, bias=bias, activation="tanh",
                       out=result)
            results.append(result)
            _assert_close(ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b), *plain)
    finally:
        ft.set_num_threads(threads)
    _assert_close(results[0], *expected)
    # Each output is one thread's sum, whichever thread: the split cannot change a bit.
    np.testing.assert_array_equal(results[0], results[1])


# Up to 12 rows of C, an untransposed B is read in place by the blocked kernel (its last, partial
# panel packed): row counts of one and two tiles, whole and partial last panels, k across the
# 320-deep k block, a B block small enough for L1 (packed whole), and two threads.
@pytest.mark.parametrize("trans_a, trans_b", TRANSPOSES, ids=TRANSPOSE_IDS)
@pytest.mark.parametrize("m, n, k", [(3, 50, 200), (5, 40, 1000), (7, 333, 400), (12, 64, 100), (11, 20, 9),
                                     (13, 100, 77)])
def test_few_rows(simd_path, rng, m, n, k, trans_a, trans_b):
    a, b = _operands(rng, m, n, k, trans_a, trans_b)
    out = rng.standard_normal((m, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    expected = _reference(a, b, trans_a, trans_b, alpha=0.3, beta=0.5, out=out, bias=bias, activation="relu")
    threads = ft.get_num_threads()
    try:
        for count in (1, 2):
            ft.set_num_threads(count)
            result = out.copy()
            ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b, alpha=0.3, beta=0.5, bias=bias, activation="relu",
                       out=result)
            _assert_close(result, *expected)
    finally:
        ft.set_num_threads(threads)


@pytest.mark.parametrize("m, n", [(3, 1), (9, 3), (3, 17)], ids=["column", "narrow", "blocked"])
def test_negative_zero_results_keep_their_sign(simd_path, m, n):
    # alpha * (+0) = -0 for alpha < 0, as NumPy gives; no bias must not mean adding 0.
    result = ops.matmul(np.ones((m, 2), np.float32), np.zeros((2, n), np.float32), alpha=-1.0)
    assert np.signbit(result).all()
    result = ops.matmul(np.ones((m, 2), np.float32), np.zeros((2, n), np.float32), alpha=-1.0,
                        bias=np.zeros(n, np.float32))
    assert not np.signbit(result).any()


def test_beta_one_accumulates(simd_path, rng):
    a, b = _operands(rng, 20, 30, 300, False, False)
    out = rng.standard_normal((20, 30)).astype(np.float32)
    expected = _reference(a, b, False, False, beta=1.0, out=out)
    _assert_close(ops.matmul(a, b, beta=1.0, out=out), *expected)


def test_beta_zero_ignores_nan_in_out(simd_path, rng):
    a, b = _operands(rng, 7, 9, 11, False, True)
    out = np.full((7, 9), np.nan, np.float32)
    ops.matmul(a, b, trans_b=True, out=out)
    _assert_close(out, *_reference(a, b, False, True))
    zero_k = np.full((7, 9), np.nan, np.float32)
    ops.matmul(np.zeros((7, 0), np.float32), np.zeros((0, 9), np.float32), out=zero_k)
    np.testing.assert_array_equal(zero_k, np.zeros((7, 9), np.float32))


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "sigmoid", "tanh", "gelu"])
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, True)], ids=["NN", "TT"])
def test_fused_activations(simd_path, rng, activation, trans_a, trans_b):
    m, n, k = 29, 41, 23
    a, b = _operands(rng, m, n, k, trans_a, trans_b)
    bias = rng.standard_normal(n).astype(np.float32)
    # Scaled down so that the pre-activations land where sigmoid, tanh and gelu curve.
    alpha = 0.3
    expected = _reference(a, b, trans_a, trans_b, alpha=alpha, bias=bias, activation=activation,
                          negative_slope=0.2)
    result = ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b, alpha=alpha, bias=bias,
                        activation=activation, negative_slope=0.2)
    _assert_close(result, *expected)


def test_leaky_relu_uses_the_given_slope(rng):
    a, b = _operands(rng, 8, 8, 8, False, False)
    steep = ops.matmul(a, b, activation="leaky_relu", negative_slope=0.5)
    linear = ops.matmul(a, b)
    np.testing.assert_allclose(steep, np.where(linear > 0, linear, 0.5 * linear), rtol=1e-6, atol=0)
    assert np.any(linear < 0)


@pytest.mark.parametrize("activation", [None, "relu", "sigmoid"])
def test_empty_inner_dimension_gives_beta_out_plus_bias(simd_path, rng, activation):
    m, n = 13, 21
    a = np.zeros((m, 0), np.float32)
    b = np.zeros((0, n), np.float32)
    out = rng.standard_normal((m, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    expected = ACTIVATIONS[activation](0.25 * out.astype(np.float64) + bias, 0.01)
    result = ops.matmul(a, b, beta=0.25, out=out, bias=bias, activation=activation)
    np.testing.assert_allclose(result, expected, rtol=2e-6, atol=1e-6)
    # Transposed empty operands too, with beta == 0: the result is the bias alone.
    result = ops.matmul(np.zeros((0, m), np.float32), np.zeros((n, 0), np.float32), trans_a=True,
                        trans_b=True, bias=bias, activation=activation)
    np.testing.assert_allclose(result, np.broadcast_to(ACTIVATIONS[activation](bias.astype(np.float64), 0.01),
                                                       (m, n)), rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("m, n, k", [(0, 5, 3), (4, 0, 3), (0, 0, 0), (0, 7, 0)])
def test_empty_results(m, n, k):
    a = np.zeros((m, k), np.float32)
    b = np.zeros((k, n), np.float32)
    result = ops.matmul(a, b, bias=np.zeros(n, np.float32), activation="tanh")
    assert result.shape == (m, n) and result.dtype == np.float32


@pytest.mark.parametrize("trans_a, trans_b", TRANSPOSES, ids=TRANSPOSE_IDS)
def test_sizes_crossing_the_blocking(simd_path, rng, trans_a, trans_b):
    # k = 600 > 256 gives three k blocks (beta applied once, bias and activation after the last);
    # n = 700 spans many column panels and m = 300 several row blocks and ragged edge tiles.
    m, n, k = 300, 700, 600
    a, b = _operands(rng, m, n, k, trans_a, trans_b)
    out = rng.standard_normal((m, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    expected = _reference(a, b, trans_a, trans_b, alpha=0.05, beta=-1.5, out=out, bias=bias,
                          activation="tanh")
    ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b, alpha=0.05, beta=-1.5, bias=bias,
               activation="tanh", out=out)
    _assert_close(out, *expected)


@pytest.mark.parametrize("m, n, k", [(300, 700, 600), (1, 2000, 300), (2000, 1, 300), (97, 3001, 5)])
def test_thread_counts_agree(simd_path, rng, m, n, k):
    a, b = _operands(rng, m, n, k, False, True)
    previous = ft.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            ft.set_num_threads(threads)
            results.append(ops.matmul(a, b, trans_b=True, activation="relu"))
    finally:
        ft.set_num_threads(previous)
    expected, tolerance = _reference(a, b, False, True, activation="relu")
    for result in results:
        _assert_close(result, expected, tolerance)
    # Each element is computed by one thread in the same order whatever the split.
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(results[0], results[2], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("trans_a, trans_b", TRANSPOSES, ids=TRANSPOSE_IDS)
@pytest.mark.parametrize("m, n, k", [(2, 70, 31), (4, 300, 200), (5, 9, 17), (25, 1, 500), (97, 3, 31),
                                     (12, 7, 5), (11, 13, 800), (97, 48, 200), (260, 40, 31), (25, 130, 500)])
def test_a_row_does_not_depend_on_its_position(simd_path, rng, m, n, k, trans_a, trans_b):
    """Each row of C has the same bits wherever its row of op(A) sits: in a whole tile or an edge
    tile, a block of dot products or their remainder, on one thread or two (so predict gives a
    sample the same outputs in any order, as scikit-learn's sample-order check requires)."""
    a, b = _operands(rng, m, n, k, trans_a, trans_b)
    order = rng.permutation(m)
    shuffled = a[:, order] if trans_a else a[order]
    previous = ft.get_num_threads()
    try:
        for threads in (1, 2):
            ft.set_num_threads(threads)
            first = ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b)
            second = ops.matmul(np.ascontiguousarray(shuffled), b, trans_a=trans_a, trans_b=trans_b)
            np.testing.assert_array_equal(second, first[order])
    finally:
        ft.set_num_threads(previous)


def test_out_is_written_in_place_without_reallocation(rng):
    a, b = _operands(rng, 6, 4, 5, False, False)
    out = np.empty((6, 4), np.float32)
    address = out.__array_interface__["data"][0]
    assert ops.matmul(a, b, out=out) is out
    assert out.__array_interface__["data"][0] == address
    _assert_close(out, *_reference(a, b, False, False))


def test_non_finite_inputs_propagate(rng):
    a, b = _operands(rng, 4, 4, 4, False, False)
    a[1, 2] = np.nan
    result = ops.matmul(a, b)
    assert np.all(np.isnan(result[1]))
    assert np.all(np.isfinite(np.delete(result, 1, axis=0)))


# ---- argument checks -----------------------------------------------------------------------------

def test_dtype_and_array_type_errors():
    a = np.zeros((3, 4), np.float32)
    b = np.zeros((4, 5), np.float32)
    with pytest.raises(TypeError, match="a: expected dtype float32, got float64"):
        ops.matmul(a.astype(np.float64), b)
    with pytest.raises(TypeError, match="b: expected dtype float32, got int32"):
        ops.matmul(a, b.astype(np.int32))
    with pytest.raises(TypeError, match="a: expected a numpy.ndarray"):
        ops.matmul(a.tolist(), b)
    with pytest.raises(TypeError, match="bias: expected dtype float32"):
        ops.matmul(a, b, bias=np.zeros(5, np.float64))
    with pytest.raises(TypeError, match="out: expected dtype float32"):
        ops.matmul(a, b, out=np.zeros((3, 5), np.float64))


@pytest.mark.parametrize("shape", [(12,), (2, 3, 2), ()])
def test_inputs_must_be_two_dimensional(shape):
    good = np.zeros((12, 2), np.float32)
    bad = np.zeros(shape, np.float32)
    with pytest.raises(ValueError, match=r"a: expected a 2-D array, got shape"):
        ops.matmul(bad, good)
    with pytest.raises(ValueError, match=r"b: expected a 2-D array, got shape"):
        ops.matmul(good.T.copy(), bad)


def test_non_contiguous_inputs_are_rejected():
    a = np.zeros((6, 8), np.float32)
    with pytest.raises(ValueError, match="a: expected a C-contiguous array"):
        ops.matmul(a[:, ::2], np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="b: expected a C-contiguous array"):
        ops.matmul(np.zeros((3, 6), np.float32), a.T)


@pytest.mark.parametrize("trans_a, trans_b", TRANSPOSES, ids=TRANSPOSE_IDS)
def test_inner_dimension_mismatch_names_b_and_both_shapes(trans_a, trans_b):
    a = np.zeros((4, 3) if trans_a else (3, 4), np.float32)
    b = np.zeros((2, 5) if trans_b else (5, 2), np.float32)
    with pytest.raises(ValueError, match=r"b: op\(a\) is 3x4 but op\(b\) is 5x2"):
        ops.matmul(a, b, trans_a=trans_a, trans_b=trans_b)


def test_bias_errors():
    a = np.zeros((3, 4), np.float32)
    b = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match="bias: expected 5 values"):
        ops.matmul(a, b, bias=np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="bias: expected a 1-D array"):
        ops.matmul(a, b, bias=np.zeros((1, 5), np.float32))


def test_out_errors():
    a = np.zeros((3, 4), np.float32)
    b = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match=r"out: expected shape \(3, 5\), got \(5, 3\)"):
        ops.matmul(a, b, out=np.zeros((5, 3), np.float32))
    read_only = np.zeros((3, 5), np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="out: the array is read-only"):
        ops.matmul(a, b, out=read_only)
    with pytest.raises(ValueError, match="out: expected a C-contiguous array"):
        ops.matmul(a, b, out=np.zeros((5, 3), np.float32).T)


def test_out_may_not_overlap_the_inputs():
    square = np.ones((4, 4), np.float32)
    other = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="out: shares memory with a"):
        ops.matmul(square, other, out=square)
    with pytest.raises(ValueError, match="out: shares memory with b"):
        ops.matmul(other, square, out=square)
    storage = np.zeros(20, np.float32)
    with pytest.raises(ValueError, match="out: shares memory with bias"):
        ops.matmul(np.ones((1, 4), np.float32), other, bias=storage[:4], out=storage[2:6].reshape(1, 4))
    with pytest.raises(ValueError, match="out: shares memory with a"):
        ops.matmul(storage[:8].reshape(2, 4), other, out=storage[6:14].reshape(2, 4))


def test_beta_needs_out():
    with pytest.raises(ValueError, match="beta"):
        ops.matmul(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.float32), beta=1.0)


@pytest.mark.parametrize("activation", ["softmax", "Relu", "", 3])
def test_unknown_activation(activation):
    with pytest.raises(ValueError, match="activation: expected one of 'relu', 'leaky_relu'"):
        ops.matmul(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.float32), activation=activation)


@pytest.mark.parametrize("name, value, error", [
    ("alpha", float("nan"), ValueError), ("beta", float("inf"), ValueError), ("alpha", "1", TypeError),
    ("negative_slope", float("nan"), ValueError), ("negative_slope", None, TypeError),
])
def test_scalar_errors(name, value, error):
    out = np.zeros((2, 2), np.float32)
    with pytest.raises(error, match=name):
        ops.matmul(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.float32), out=out, **{name: value})


def test_the_compiled_call_refuses_what_matmul_does_not_take_as_is():
    # ops.matmul first hands its arguments to _C.gemm, which multiplies only when all of them are
    # what matmul accepts as given and otherwise returns None with out untouched (the Python
    # checks then explain). Each case here must be refused, by the compiled call, for itself.
    from fusedtrain.ops.activations import ACTIVATIONS

    a = np.ones((3, 4), np.float32)
    b = np.ones((4, 5), np.float32)
    out = np.full((3, 5), 7.0, np.float32)
    valid = dict(a=a, b=b, out=out, bias=None, trans_a=False, trans_b=False, alpha=1.0, beta=0.0,
                 activation=None, negative_slope=0.01, codes=ACTIVATIONS)
    storage = np.zeros(40, np.float32)
    refused = {
        "a float64": dict(a=a.astype(np.float64)),
        "a big-endian": dict(a=a.astype(">f4")),
        "a 1-D": dict(a=np.ones(4, np.float32)),
        "a strided": dict(a=np.ones((3, 8), np.float32)[:, ::2]),
        "a list": dict(a=a.tolist()),
        "inner dimensions": dict(b=np.ones((5, 5), np.float32)),
        "out shape": dict(out=np.zeros((3, 4), np.float32)),
        "out read-only": dict(out=np.zeros((3, 5), np.float32)),
        "out overlaps a": dict(a=storage[:12].reshape(3, 4), out=storage[10:25].reshape(3, 5)),
        "out is b": dict(b=storage[:20].reshape(4, 5), out=storage[:15].reshape(3, 5)),
        "bias size": dict(bias=np.zeros(3, np.float32)),
        "bias float64": dict(bias=np.zeros(5)),
        "trans_a int": dict(trans_a=0),
        "trans_a NumPy bool": dict(trans_a=np.False_),
        "alpha NumPy scalar": dict(alpha=np.float32(1.0)),
        "alpha NaN": dict(alpha=float("nan")),
        "alpha beyond float32": dict(alpha=1e300),
        "alpha bool": dict(alpha=True),
        "beta huge int": dict(beta=10 ** 400),
        "beta without out": dict(out=None, beta=1.0),
        "slope inf": dict(negative_slope=float("inf")),
        "activation unknown": dict(activation="swish"),
        "activation unhashable": dict(activation=["relu"]),
        "activation softmax": dict(activation="softmax"),
    }
    assert ft._C.gemm(**valid) is out and np.all(out == 4.0)
    for case, change in refused.items():
        arguments = {**valid, **change}
        if case == "out read-only":
            arguments["out"].flags.writeable = False
        target = arguments["out"]
        before = None if target is None else target.copy()
        assert ft._C.gemm(**arguments) is None, case
        if target is not None:
            np.testing.assert_array_equal(target, before, err_msg=case)
        # ops.matmul refuses each of them too, with a message, except the arguments it converts
        # (NumPy bools and scalars): those it multiplies.
        keys = {key: value for key, value in arguments.items() if key != "codes"}
        if case in ("trans_a NumPy bool", "alpha NumPy scalar"):
            np.testing.assert_allclose(ops.matmul(**keys), np.full((3, 5), 4.0), err_msg=case)
        else:
            with pytest.raises((TypeError, ValueError)):
                ops.matmul(**keys)


