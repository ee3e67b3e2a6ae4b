"""Reductions used in training: bias_grad (column sums), argmax and accuracy, against NumPy on
both CPU SIMD paths."""

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import ops

SHAPES = [(1, 1), (1, 17), (3, 1), (3, 17), (17, 3), (257, 5), (5, 257), (300, 401)]


@pytest.fixture
def restore_threads():
    threads = ft.get_num_threads()
    yield
    ft.set_num_threads(threads)


# ---- bias_grad -------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
def test_bias_grad_matches_float64_column_sums(simd_path, rng, shape):
    grad_output = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
    result = ops.bias_grad(grad_output)
    assert result.shape == (shape[1],) and result.dtype == np.float32
    expected = grad_output.astype(np.float64).sum(axis=0)
    # A float32 running sum down `rows` rows is off by at most (rows - 1) * 2^-24 * sum |x|.
    bound = max(shape[0] - 1, 1) * 2.0 ** -24 * np.abs(grad_output.astype(np.float64)).sum(axis=0)
    np.testing.assert_array_less(np.abs(result - expected), bound + 1e-30)
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-5)


def test_bias_grad_out_is_written_and_returned(simd_path, rng):
    grad_output = rng.standard_normal((19, 23)).astype(np.float32)
    out = np.full(23, np.nan, dtype=np.float32)
    assert ops.bias_grad(grad_output, out=out) is out
    np.testing.assert_array_equal(out, ops.bias_grad(grad_output))


def test_bias_grad_zero_sizes(simd_path):
    np.testing.assert_array_equal(ops.bias_grad(np.zeros((0, 7), dtype=np.float32)), np.zeros(7))
    # out is overwritten, not accumulated into, even with no rows.
    out = np.full(7, 3.0, dtype=np.float32)
    np.testing.assert_array_equal(ops.bias_grad(np.zeros((0, 7), dtype=np.float32), out=out), np.zeros(7))
    assert ops.bias_grad(np.zeros((5, 0), dtype=np.float32)).shape == (0,)


def test_bias_grad_nan_stays_in_its_column(simd_path, rng):
    grad_output = rng.standard_normal((9, 5)).astype(np.float32)
    grad_output[4, 3] = np.nan
    result = ops.bias_grad(grad_output)
    np.testing.assert_array_equal(np.isnan(result), [False, False, False, True, False])


def test_bias_grad_errors(rng):
    grad_output = rng.standard_normal((4, 6)).astype(np.float32)
    with pytest.raises(ValueError, match=r"grad_output: expected a 2-D array, got shape \(24,\)"):
        ops.bias_grad(grad_output.ravel())
    with pytest.raises(ValueError, match="grad_output: expected a 2-D array"):
        ops.bias_grad(grad_output.reshape(2, 2, 6))
    with pytest.raises(TypeError, match="grad_output: expected dtype float32, got float64"):
        ops.bias_grad(grad_output.astype(np.float64))
    with pytest.raises(TypeError, match="grad_output: expected dtype float32, got int32"):
        ops.bias_grad(grad_output.astype(np.int32))
    with pytest.raises(TypeError, match="grad_output: expected dtype float32, got bool"):
        ops.bias_grad(grad_output > 0)
    with pytest.raises(TypeError, match="grad_output: expected a numpy.ndarray of float32, got list"):
        ops.bias_grad(grad_output.tolist())
    with pytest.raises(ValueError, match="grad_output: expected a C-contiguous array"):
        ops.bias_grad(grad_output[:, ::2])
    with pytest.raises(ValueError, match="grad_output: expected a C-contiguous array"):
        ops.bias_grad(grad_output.T)
    with pytest.raises(ValueError, match=r"out: expected shape \(6,\), got \(4,\)"):
        ops.bias_grad(grad_output, out=np.zeros(4, dtype=np.float32))
    with pytest.raises(TypeError, match="out: expected dtype float32"):
        ops.bias_grad(grad_output, out=np.zeros(6))
    read_only = np.zeros(6, dtype=np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="out: the array is read-only"):
        ops.bias_grad(grad_output, out=read_only)
    with pytest.raises(ValueError, match="out: shares memory with grad_output"):
        ops.bias_grad(grad_output, out=grad_output[0])


def test_bias_grad_does_not_depend_on_threads(simd_path, rng, restore_threads):
    grad_output = rng.standard_normal((700, 301)).astype(np.float32)
    results = []
    for threads in (1, 2):
        ft.set_num_threads(threads)
        results.append(ops.bias_grad(grad_output))
    np.testing.assert_array_equal(results[0], results[1])


# ---- argmax ----------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
def test_argmax_matches_numpy(simd_path, rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    result = ops.argmax(x)
    assert result.shape == (shape[0],) and result.dtype == np.int64
    np.testing.assert_array_equal(result, np.argmax(x, axis=1))


def test_argmax_ties_take_the_first(simd_path, rng):
    # Few distinct values, so that most rows hold their maximum more than once.
    x = rng.integers(0, 3, (257, 17)).astype(np.float32)
    x[0] = 5.0
    x[1, 3] = x[1, 9] = 7.0
    np.testing.assert_array_equal(ops.argmax(x), np.argmax(x, axis=1))
    assert ops.argmax(x)[0] == 0 and ops.argmax(x)[1] == 3


def test_argmax_nan_counts_as_largest(simd_path, rng):
    x = rng.standard_normal((6, 9)).astype(np.float32)
    x[0, 4] = np.nan
    x[1, 0] = np.nan
    x[2, 2] = x[2, 7] = np.nan
    x[3, 8] = np.nan
    x[4] = -np.inf
    x[5, 6] = np.inf
    np.testing.assert_array_equal(ops.argmax(x), np.argmax(x, axis=1))
    np.testing.assert_array_equal(ops.argmax(x)[:5], [4, 0, 2, 8, 0])


def test_argmax_out_and_zero_rows(simd_path, rng):
    x = rng.standard_normal((11, 4)).astype(np.float32)
    out = np.full(11, -1, dtype=np.int64)
    assert ops.argmax(x, out=out) is out
    np.testing.assert_array_equal(out, np.argmax(x, axis=1))
    empty = ops.argmax(np.zeros((0, 5), dtype=np.float32))
    assert empty.shape == (0,) and empty.dtype == np.int64


def test_argmax_errors(rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    with pytest.raises(ValueError, match="x: argmax of rows with no columns is undefined"):
        ops.argmax(np.zeros((3, 0), dtype=np.float32))
    with pytest.raises(ValueError, match="x: expected a 2-D array"):
        ops.argmax(x.ravel())
    with pytest.raises(TypeError, match="x: expected dtype float32, got float64"):
        ops.argmax(x.astype(np.float64))
    with pytest.raises(TypeError, match="x: expected a numpy.ndarray of float32, got list"):
        ops.argmax(x.tolist())
    with pytest.raises(ValueError, match="x: expected a C-contiguous array"):
        ops.argmax(x[:, ::2])
    with pytest.raises(TypeError, match="out: expected dtype int64, got int32"):
        ops.argmax(x, out=np.zeros(4, dtype=np.int32))
    with pytest.raises(ValueError, match=r"out: expected shape \(4,\)"):
        ops.argmax(x, out=np.zeros(5, dtype=np.int64))
    read_only = np.zeros(4, dtype=np.int64)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="out: the array is read-only"):
        ops.argmax(x, out=read_only)


# ---- accuracy --------------------------------------------------------------------------------

@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("shape", [(1, 1), (1, 3), (17, 3), (257, 10), (3001, 7)])
def test_accuracy_matches_numpy(simd_path, rng, label_dtype, shape):
    scores = rng.standard_normal(shape).astype(np.float32)
    labels = rng.integers(0, shape[1], shape[0]).astype(label_dtype)
    # Make roughly half of the rows correct, so that the fraction is far from 0 and 1.
    correct = rng.random(shape[0]) < 0.5
    labels[correct] = np.argmax(scores, axis=1)[correct]
    result = ops.accuracy(scores, labels)
    assert isinstance(result, float)
    assert result == np.mean(np.argmax(scores, axis=1) == labels)


def test_accuracy_follows_argmax_on_ties_and_nan(simd_path):
    scores = np.array([[1.0, 1.0, 0.0], [0.0, np.nan, 5.0], [2.0, 2.0, 2.0]], dtype=np.float32)
    assert ops.accuracy(scores, np.array([0, 1, 0])) == 1.0
    assert ops.accuracy(scores, np.array([1, 2, 2])) == 0.0


def test_accuracy_errors(rng):
    scores = rng.standard_normal((4, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 0])
    with pytest.raises(ValueError, match="scores: the accuracy of an empty batch is undefined"):
        ops.accuracy(np.zeros((0, 3), dtype=np.float32), np.zeros(0, dtype=np.int64))
    with pytest.raises(ValueError, match="scores: expected at least one class column"):
        ops.accuracy(np.zeros((4, 0), dtype=np.float32), labels)
    with pytest.raises(TypeError, match="scores: expected dtype float32, got float64"):
        ops.accuracy(scores.astype(np.float64), labels)
    with pytest.raises(ValueError, match="scores: expected a 2-D array"):
        ops.accuracy(scores.ravel(), labels)
    with pytest.raises(ValueError, match="scores: expected a C-contiguous array"):
        ops.accuracy(np.zeros((4, 6), dtype=np.float32)[:, ::2], labels)
    with pytest.raises(ValueError, match="labels: expected 4 labels"):
        ops.accuracy(scores, labels[:3])
    with pytest.raises(TypeError, match="labels: expected a 1-D numpy.ndarray of int32 or int64"):
        ops.accuracy(scores, labels.astype(np.float32))
    with pytest.raises(TypeError, match="labels: expected a 1-D numpy.ndarray of int32 or int64"):
        ops.accuracy(scores, labels.tolist())


def test_clip_grad_norm_of_huge_and_tiny_gradients_is_finite():
    # Squares are accumulated in double: 1e20^2 overflows float32 but the norm does not.
    huge = np.full(3, 1e20, np.float32)
    norm = ft.ops.clip_grad_norm(huge, 1.0)
    assert norm == pytest.approx(np.sqrt(3) * 1e20, rel=1e-6)
    np.testing.assert_allclose(np.linalg.norm(huge.astype(np.float64)), 1.0, rtol=1e-5)
    tiny = np.full(4, 1e-25, np.float32)
    assert ft.ops.clip_grad_norm(tiny, 1.0) == pytest.approx(2e-25, rel=1e-6)
