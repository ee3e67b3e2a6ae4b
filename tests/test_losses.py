"""Losses (mse, binary_cross_entropy on logits, softmax_cross_entropy with integer labels): the
loss and its gradient against NumPy float64 references, on both CPU SIMD paths."""

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import ops

REDUCTIONS = ["mean", "sum"]
# float32 per-element terms (relative error ~2e-7 from fast_math's exp and log1p), summed in
# double: the loss and each gradient element carry float32 rounding, no more.
RTOL, ATOL = 1e-5, 1e-6


def reduce(terms, reduction, count):
    return terms.sum() / count if reduction == "mean" else terms.sum()


def mse_ref(pred, target, reduction):
    diff = pred - target
    scale = 1 / diff.size if reduction == "mean" else 1
    return reduce(diff * diff, reduction, diff.size), 2 * diff * scale


def bce_ref(logits, target, reduction):
    terms = np.maximum(logits, 0) - logits * target + np.log1p(np.exp(-np.abs(logits)))
    e = np.exp(-np.abs(logits))
    sigmoid = np.where(logits >= 0, 1 / (1 + e), e / (1 + e))
    scale = 1 / logits.size if reduction == "mean" else 1
    return reduce(terms, reduction, logits.size), (sigmoid - target) * scale


def sce_ref(logits, labels, reduction):
    rows = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(shifted).sum(axis=1))
    terms = log_sum - shifted[np.arange(rows), labels]
    softmax = np.exp(shifted - log_sum[:, None])
    onehot = np.zeros_like(logits)
    onehot[np.arange(rows), labels] = 1
    scale = 1 / rows if reduction == "mean" else 1
    return reduce(terms, reduction, rows), (softmax - onehot) * scale


SHAPES = [(1, 1), (3, 1), (17, 3), (257, 1), (5, 17), (2, 3, 17), (331, 317)]


def mse_inputs(rng, shape):
    return (rng.standard_normal(shape) * 3).astype(np.float32), rng.standard_normal(shape).astype(np.float32)


def bce_inputs(rng, shape):
    logits = (rng.standard_normal(shape) * 4).astype(np.float32)
    # Targets: hard 0/1 labels and soft ones in between.
    target = np.where(rng.random(shape) < 0.5, rng.integers(0, 2, shape), rng.random(shape))
    return logits, target.astype(np.float32)


ELEMENTWISE = {
    "mse": (ops.mse, mse_ref, mse_inputs, "pred"),
    "binary_cross_entropy": (ops.binary_cross_entropy, bce_ref, bce_inputs, "logits"),
}


@pytest.mark.parametrize("name", list(ELEMENTWISE))
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES)
def test_elementwise_loss_matches_reference(simd_path, rng, name, reduction, shape):
    op, reference, inputs, _ = ELEMENTWISE[name]
    pred, target = inputs(rng, shape)
    loss, grad = op(pred, target, reduction=reduction)
    expected_loss, expected_grad = reference(pred.astype(np.float64), target.astype(np.float64), reduction)
    assert isinstance(loss, float)
    assert grad.shape == shape and grad.dtype == np.float32
    np.testing.assert_allclose(loss, expected_loss, rtol=RTOL)
    scale = 1 / pred.size if reduction == "mean" else 1
    np.testing.assert_allclose(grad, expected_grad, rtol=RTOL, atol=ATOL * scale)


def test_mean_reduction_is_default(simd_path, rng):
    pred, target = mse_inputs(rng, (7, 3))
    assert ops.mse(pred, target)[0] == ops.mse(pred, target, reduction="mean")[0]
    logits, labels = rng.standard_normal((7, 3)).astype(np.float32), np.array([0, 1, 2, 0, 1, 2, 0])
    mean_loss = ops.softmax_cross_entropy(logits, labels, "mean")[0]
    assert ops.softmax_cross_entropy(logits, labels)[0] == mean_loss


@pytest.mark.parametrize("name", list(ELEMENTWISE))
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_elementwise_loss_grad_matches_finite_differences(simd_path, rng, name, reduction):
    op, reference, inputs, _ = ELEMENTWISE[name]
    pred, target = inputs(rng, (3, 7))
    _, grad = op(pred, target, reduction=reduction)
    pred64, target64 = pred.astype(np.float64), target.astype(np.float64)
    # Central differences of the float64 reference loss, one element at a time.
    h = 1e-6
    numeric = np.empty_like(pred64)
    for index in np.ndindex(pred.shape):
        plus, minus = pred64.copy(), pred64.copy()
        plus[index] += h
        minus[index] -= h
        difference = reference(plus, target64, reduction)[0] - reference(minus, target64, reduction)[0]
        numeric[index] = difference / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_loss_grad_matches_finite_differences_of_kernel_loss(simd_path, rng, name):
    op, _, inputs, _ = ELEMENTWISE[name]
    pred, target = inputs(rng, (2, 5))
    _, grad = op(pred, target, reduction="sum")
    # The kernel's own loss, differenced with a float32 step of 2^-7: truncation (h^2/6 of
    # the third derivative) and float32 rounding of the terms (eps * loss / h) stay below 1e-4.
    h = np.float32(2.0 ** -7)
    numeric = np.empty(pred.shape)
    for index in np.ndindex(pred.shape):
        plus, minus = pred.copy(), pred.copy()
        plus[index] += h
        minus[index] -= h
        step = float(plus[index]) - float(minus[index])
        numeric[index] = (op(plus, target, reduction="sum")[0] - op(minus, target, reduction="sum")[0]) / step
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-4)


def test_binary_cross_entropy_extreme_logits(simd_path):
    logits = np.array([-100.0, -100.0, -100.0, 100.0, 100.0, 100.0, -30.0, 30.0, 0.0, -1e30, 1e30],
                      dtype=np.float32)
    target = np.array([0.0, 1.0, 0.3, 0.0, 1.0, 0.7, 1.0, 0.0, 0.5, 0.0, 1.0], dtype=np.float32)
    loss, grad = ops.binary_cross_entropy(logits, target, reduction="sum")
    assert np.isfinite(loss) and np.isfinite(grad).all()
    finite = np.abs(logits) <= 100
    expected_loss, expected_grad = bce_ref(logits[finite].astype(np.float64),
                                           target[finite].astype(np.float64), "sum")
    # The last two elements are correct with infinite confidence: their terms are 0.
    np.testing.assert_allclose(loss, expected_loss, rtol=RTOL)
    np.testing.assert_allclose(grad[finite], expected_grad, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(grad[~finite], [0.0, 0.0])


def test_binary_cross_entropy_confident_correct_keeps_relative_accuracy(simd_path):
    # max(z, 0) - z t cancels exactly for hard targets, so the small log1p(exp(-|z|)) survives.
    logits = np.array([12.0, -15.0, 40.0], dtype=np.float32)
    target = np.array([1.0, 0.0, 1.0], dtype=np.float32)
    for index in range(3):
        loss, _ = ops.binary_cross_entropy(logits[index:index + 1], target[index:index + 1])
        expected = np.log1p(np.exp(-abs(float(logits[index]))))
        np.testing.assert_allclose(loss, expected, rtol=RTOL)


def test_mse_nan_propagates(simd_path, rng):
    pred, target = mse_inputs(rng, (4, 5))
    pred[1, 2] = np.nan
    loss, grad = ops.mse(pred, target)
    assert np.isnan(loss)
    np.testing.assert_array_equal(np.isnan(grad), np.isnan(pred))
    logits, target = bce_inputs(rng, (4, 5))
    target[3, 0] = np.nan
    loss, grad = ops.binary_cross_entropy(logits, target)
    assert np.isnan(loss)
    np.testing.assert_array_equal(np.isnan(grad), np.isnan(target))


# ---- softmax cross-entropy -------------------------------------------------------------------

@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(1, 1), (1, 3), (3, 17), (17, 10), (257, 3), (64, 1001), (2049, 51)])
def test_softmax_cross_entropy_matches_reference(simd_path, rng, label_dtype, reduction, shape):
    logits = (rng.standard_normal(shape) * 3).astype(np.float32)
    labels = rng.integers(0, shape[1], shape[0]).astype(label_dtype)
    loss, grad = ops.softmax_cross_entropy(logits, labels, reduction=reduction)
    expected_loss, expected_grad = sce_ref(logits.astype(np.float64), labels, reduction)
    assert isinstance(loss, float)
    assert grad.shape == shape and grad.dtype == np.float32
    np.testing.assert_allclose(loss, expected_loss, rtol=RTOL)
    scale = 1 / shape[0] if reduction == "mean" else 1
    np.testing.assert_allclose(grad, expected_grad, rtol=RTOL, atol=ATOL * scale)


@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (257, 3), (64, 1001), (9, 64), (5, 63), (3, 2500)])
def test_softmax_cross_entropy_without_gradient(simd_path, rng, shape):
    # The compiled loss without a gradient buffer (the C++ API's grad = nullptr) makes the same
    # sums without storing the exponentials: the same loss to the bit, nothing written.
    logits = (rng.standard_normal(shape) * 3).astype(np.float32)
    logits[0, 0] = 80.0  # one large logit: the max subtraction must still hold
    labels = rng.integers(0, shape[1], shape[0]).astype(np.int64)
    before = logits.copy()
    for code, reduction in enumerate(("mean", "sum")):
        loss = ft._C.softmax_cross_entropy_loss(logits, labels, None, code)
        expected, _ = sce_ref(logits.astype(np.float64), labels, reduction)
        np.testing.assert_allclose(loss, expected, rtol=RTOL)
        with_gradient, _ = ops.softmax_cross_entropy(logits, labels, reduction=reduction)
        assert loss == with_gradient
    np.testing.assert_array_equal(logits, before)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_softmax_cross_entropy_grad_matches_finite_differences(simd_path, rng, reduction):
    logits = (rng.standard_normal((4, 5)) * 2).astype(np.float32)
    labels = np.array([0, 4, 2, 2], dtype=np.int64)
    _, grad = ops.softmax_cross_entropy(logits, labels, reduction=reduction)
    logits64 = logits.astype(np.float64)
    h = 1e-6
    numeric = np.empty_like(logits64)
    for index in np.ndindex(logits.shape):
        plus, minus = logits64.copy(), logits64.copy()
        plus[index] += h
        minus[index] -= h
        difference = sce_ref(plus, labels, reduction)[0] - sce_ref(minus, labels, reduction)[0]
        numeric[index] = difference / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=RTOL, atol=ATOL)


def test_softmax_cross_entropy_grad_matches_finite_differences_of_kernel_loss(simd_path, rng):
    logits = (rng.standard_normal((3, 4)) * 2).astype(np.float32)
    labels = np.array([3, 0, 1], dtype=np.int32)
    _, grad = ops.softmax_cross_entropy(logits, labels, reduction="sum")
    h = np.float32(2.0 ** -7)  # see the elementwise version for the error budget
    numeric = np.empty(logits.shape)
    for index in np.ndindex(logits.shape):
        plus, minus = logits.copy(), logits.copy()
        plus[index] += h
        minus[index] -= h
        step = float(plus[index]) - float(minus[index])
        numeric[index] = (ops.softmax_cross_entropy(plus, labels, "sum")[0]
                          - ops.softmax_cross_entropy(minus, labels, "sum")[0]) / step
    np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-4)


# A gradient of 8 MiB or more with rows of 64 to 4096 classes writes its whole 64-byte lines with
# streaming stores and the partial lines at each end of a row with ordinary ones (4097 classes,
# or a smaller gradient, takes the ordinary path). The gradient starts at several float offsets
# within a line (and rows of 79 classes start at every one), the labels sit at each row's first
# and last sixteen positions (where the partial lines are), and the floats around the gradient
# must stay untouched.
@pytest.mark.parametrize("classes", [64, 79, 1000, 4096, 4097])
@pytest.mark.parametrize("streamed", [False, True])
def test_softmax_cross_entropy_gradient_at_line_offsets(simd_path, rng, classes, streamed):
    rows = (8 << 20) // (4 * classes) + 1 if streamed else 32
    labels = np.resize(np.concatenate([np.arange(16), classes - 16 + np.arange(16)]), rows)
    logits = (rng.standard_normal((rows, classes)) * 3).astype(np.float32)
    expected_loss, expected_grad = sce_ref(logits.astype(np.float64), labels, "mean")
    size = rows * classes
    for offset in [0, 1, 7] if streamed else range(16):
        for in_place in [False, True]:
            buffer = np.full(size + 32, np.nan, dtype=np.float32)
            out = buffer[offset:offset + size].reshape(rows, classes)
            if in_place:
                out[...] = logits
            loss, grad = ops.softmax_cross_entropy(out if in_place else logits, labels, out=out)
            assert grad is out
            np.testing.assert_allclose(loss, expected_loss, rtol=RTOL)
            np.testing.assert_allclose(grad, expected_grad, rtol=RTOL, atol=ATOL / rows)
            assert np.isnan(buffer[:offset]).all() and np.isnan(buffer[offset + size:]).all()


# Rows shorter than 64 are taken in blocks, longer ones one at a time: both ways are tested.
@pytest.mark.parametrize("classes", [7, 70])
def test_softmax_cross_entropy_extreme_logits(simd_path, rng, classes):
    logits = (rng.standard_normal((6, classes)) * 2).astype(np.float32)
    logits[0] = 100.0
    logits[1, :] = -100.0
    logits[1, 3] = 100.0
    logits[2, ::2] = 100.0
    logits[2, 1::2] = -100.0
    logits[3] = 1000.0
    logits[4, 0] = -1000.0
    labels = np.array([0, 3, 1, 6, 0, 2], dtype=np.int64)
    loss, grad = ops.softmax_cross_entropy(logits, labels, reduction="sum")
    assert np.isfinite(loss) and np.isfinite(grad).all()
    expected_loss, expected_grad = sce_ref(logits.astype(np.float64), labels, "sum")
    # Row 2's label sits at -100 against 100: its term is 200 (+ log 4), so the loss is
    # large and its float32 rounding is relative.
    np.testing.assert_allclose(loss, expected_loss, rtol=RTOL)
    np.testing.assert_allclose(grad, expected_grad, rtol=RTOL, atol=ATOL)


# In the AVX2 path, rows of 64 classes or more whose elements all lie within 64 of 0 and within
# 86 of the row's max have the shift (near the max) folded into the exponential's rounding
# constant (softmax_rows.h); other rows, and the portable path, subtract their max. Rows on both sides of each bound, their
# elements spread over the whole range, must match float64: the softmax (and the gradient off
# the label) to 1e-6 relative wherever it is a normal float, plus, where the max is subtracted,
# the rounding of x - max to float (up to |x - max| 6e-8, relative). Softmax and softmax
# cross-entropy share this exponential pass; both are checked.
FOLD_BOUND_ROWS = [(-64, 22), (-22, 64), (-64, -1), (0, 64), (-40, 40),  # folded
                   (-64.5, 21), (-21, 64.5), (-60, 26.5), (-55, 40), (-100, -14), (-10, 90)]  # not
FOLDED_ROWS = 5


def assert_close_where_normal(actual, expected, rtol):
    normal = expected > 1e-37
    error = np.abs(actual[normal] - expected[normal]) / expected[normal]
    assert (error <= rtol[normal]).all(), f"relative error {error.max():.3g}"
    assert (actual[~normal] < 2e-37).all() and (actual[expected < 1e-45] == 0).all()


@pytest.mark.parametrize("classes, streamed", [(64, False), (203, False), (1000, False), (1000, True)])
def test_softmax_exponential_on_both_sides_of_the_fold_bounds(simd_path, classes, streamed):
    rng = np.random.default_rng(3)
    rows = (8 << 20) // (4 * classes) + 1 if streamed else 4 * len(FOLD_BOUND_ROWS)
    kind = np.arange(rows) % len(FOLD_BOUND_ROWS)
    low, high = np.array(FOLD_BOUND_ROWS)[kind].T
    spread = rng.permuted(np.tile(np.linspace(0, 1, classes), (rows, 1)), axis=1)
    logits = (low[:, None] + (high - low)[:, None] * spread).astype(np.float32)
    labels = rng.integers(0, classes, rows)
    labels[::3] = np.argmin(logits[::3], axis=1)  # the largest terms: up to 100
    subtracted = (kind >= FOLDED_ROWS)[:, None] | (simd_path == "portable")
    rtol = 1e-6 + subtracted * 6e-8 * (logits.max(axis=1, keepdims=True) - logits)
    loss, grad = ops.softmax_cross_entropy(logits, labels, reduction="sum")
    expected_loss, expected_grad = sce_ref(logits.astype(np.float64), labels, "sum")
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-6)
    on_label = np.zeros(logits.shape, dtype=bool)
    on_label[np.arange(rows), labels] = True
    assert_close_where_normal(np.where(on_label, 1.0, grad), np.where(on_label, 1.0, expected_grad), rtol)
    # On the label, softmax - 1 is rounded relative to 1.
    np.testing.assert_allclose(grad[on_label], expected_grad[on_label], rtol=0, atol=1e-6)
    if not streamed:
        shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
        expected = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
        assert_close_where_normal(ops.softmax(logits), expected, rtol)


@pytest.mark.parametrize("classes", [6, 66])
def test_softmax_cross_entropy_nan_poisons_loss_and_row(simd_path, rng, classes):
    logits = rng.standard_normal((3, classes)).astype(np.float32)
    logits[1, 4] = np.nan
    loss, grad = ops.softmax_cross_entropy(logits, np.array([0, 1, 2]))
    assert np.isnan(loss)
    assert np.isnan(grad[1]).all() and np.isfinite(grad[[0, 2]]).all()


@pytest.mark.parametrize("bad_label", [-1, 5, 2 ** 31 - 1])
@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
def test_softmax_cross_entropy_rejects_labels_out_of_range(simd_path, label_dtype, bad_label):
    logits = np.zeros((3, 5), dtype=np.float32)
    labels = np.array([0, bad_label, 4], dtype=label_dtype)
    with pytest.raises(ValueError, match=rf"labels: .*labels\[1\] = {bad_label} is outside \[0, 5\)"):
        ops.softmax_cross_entropy(logits, labels)


def test_softmax_cross_entropy_rejects_large_int64_label(simd_path):
    logits = np.zeros((2, 5), dtype=np.float32)
    with pytest.raises(ValueError, match="labels"):
        ops.softmax_cross_entropy(logits, np.array([0, 2 ** 40], dtype=np.int64))


# ---- out= -----------------------------------------------------------------------------------

def loss_call(name, rng, shape=(6, 9)):
    """(op, first argument, second argument, name of the first) for each loss."""
    if name == "softmax_cross_entropy":
        logits = rng.standard_normal(shape).astype(np.float32)
        return ops.softmax_cross_entropy, logits, rng.integers(0, shape[1], shape[0]), "logits"
    op, _, inputs, first_name = ELEMENTWISE[name]
    return (op, *inputs(rng, shape), first_name)


LOSSES = ["mse", "binary_cross_entropy", "softmax_cross_entropy"]


@pytest.mark.parametrize("name", LOSSES)
def test_loss_out_is_written_and_returned(simd_path, rng, name):
    op, first, second, _ = loss_call(name, rng)
    expected_loss, expected_grad = op(first, second)
    out = np.full_like(first, np.nan)
    loss, grad = op(first, second, out=out)
    assert grad is out
    assert loss == expected_loss
    np.testing.assert_array_equal(out, expected_grad)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("shape", [(6, 9), (300, 400)])
def test_loss_grad_in_place_over_predictions(simd_path, rng, name, shape):
    op, first, second, _ = loss_call(name, rng, shape)
    expected_loss, expected_grad = op(first, second)
    loss, grad = op(first, second, out=first)
    assert grad is first
    assert loss == expected_loss
    np.testing.assert_array_equal(first, expected_grad)


@pytest.mark.parametrize("name", LOSSES)
def test_loss_out_errors(name, rng):
    op, first, second, _ = loss_call(name, rng)
    with pytest.raises(ValueError, match="out: expected shape"):
        op(first, second, out=np.zeros((9, 6), dtype=np.float32))
    with pytest.raises(TypeError, match="out: expected dtype float32"):
        op(first, second, out=np.zeros(first.shape))
    read_only = np.zeros_like(first)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="out: the array is read-only"):
        op(first, second, out=read_only)
    buffer = np.zeros(2 * first.size, dtype=np.float32)
    shifted = buffer[3:3 + first.size].reshape(first.shape)
    buffer[:first.size] = first.ravel()
    with pytest.raises(ValueError, match="out: shares memory with"):
        op(buffer[:first.size].reshape(first.shape), second, out=shifted)
    if name != "softmax_cross_entropy":
        with pytest.raises(ValueError, match="out: shares memory with target"):
            op(first, second, out=second)


# ---- argument errors -------------------------------------------------------------------------

@pytest.mark.parametrize("name", LOSSES)
def test_loss_rejects_unknown_reduction(name, rng):
    op, first, second, _ = loss_call(name, rng)
    for reduction in ("avg", "Mean", None, 0):
        with pytest.raises(ValueError, match="reduction: expected one of 'mean', 'sum'"):
            op(first, second, reduction=reduction)


@pytest.mark.parametrize("name", ["mse", "binary_cross_entropy"])
def test_elementwise_loss_argument_errors(name, rng):
    op, first, second, first_name = loss_call(name, rng)
    with pytest.raises(ValueError, match=rf"target: expected shape \(6, 9\) \(the shape of {first_name}\)"):
        op(first, second[:, :8].copy())
    with pytest.raises(ValueError, match="target: expected shape"):
        op(first, second.ravel())
    with pytest.raises(TypeError, match=f"{first_name}: expected dtype float32, got float64"):
        op(first.astype(np.float64), second)
    with pytest.raises(TypeError, match="target: expected dtype float32, got float64"):
        op(first, second.astype(np.float64))
    with pytest.raises(TypeError, match="target: expected dtype float32, got int64"):
        op(first, np.zeros(first.shape, dtype=np.int64))
    with pytest.raises(TypeError, match=f"{first_name}: expected a numpy.ndarray of float32, got list"):
        op(first.tolist(), second)
    with pytest.raises(ValueError, match=f"{first_name}: expected a C-contiguous array"):
        op(np.zeros((6, 18), dtype=np.float32)[:, ::2], second)
    with pytest.raises(ValueError, match=f"{first_name}: the loss of an empty batch is undefined"):
        op(np.zeros((0, 9), dtype=np.float32), np.zeros((0, 9), dtype=np.float32))


def test_softmax_cross_entropy_argument_errors(rng):
    logits = rng.standard_normal((4, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 1])
    with pytest.raises(ValueError, match=r"logits: expected a 2-D array, got shape \(12,\)"):
        ops.softmax_cross_entropy(logits.ravel(), labels)
    with pytest.raises(ValueError, match="logits: expected a 2-D array"):
        ops.softmax_cross_entropy(logits.reshape(2, 2, 3), labels)
    with pytest.raises(TypeError, match="logits: expected dtype float32, got float64"):
        ops.softmax_cross_entropy(logits.astype(np.float64), labels)
    with pytest.raises(ValueError, match="logits: expected a C-contiguous array"):
        ops.softmax_cross_entropy(np.zeros((4, 6), dtype=np.float32)[:, ::2], labels)
    with pytest.raises(ValueError, match="logits: the loss of an empty batch is undefined"):
        ops.softmax_cross_entropy(np.zeros((0, 3), dtype=np.float32), np.zeros(0, dtype=np.int64))
    with pytest.raises(ValueError, match="logits: expected at least one class column"):
        ops.softmax_cross_entropy(np.zeros((4, 0), dtype=np.float32), labels)
    with pytest.raises(ValueError, match="labels: expected 4 labels"):
        ops.softmax_cross_entropy(logits, labels[:3])
    with pytest.raises(ValueError, match="labels: expected a 1-D array"):
        ops.softmax_cross_entropy(logits, labels.reshape(4, 1))
    for bad in (labels.astype(np.float32), labels.astype(np.int16), labels.astype(np.uint32),
                labels.astype(bool), labels.tolist()):
        with pytest.raises(TypeError, match="labels: expected a 1-D numpy.ndarray of int32 or int64"):
            ops.softmax_cross_entropy(logits, bad)
    with pytest.raises(ValueError, match="labels: expected a C-contiguous array"):
        ops.softmax_cross_entropy(logits, np.array([0, 9, 1, 9, 2, 9, 1, 9])[::2])


# ---- threads ---------------------------------------------------------------------------------

@pytest.fixture
def restore_threads():
    threads = ft.get_num_threads()
    yield
    ft.set_num_threads(threads)


@pytest.mark.parametrize("name", LOSSES)
def test_loss_results_do_not_depend_on_threads(simd_path, rng, restore_threads, name):
    op, first, second, _ = loss_call(name, rng, (1001, 103))
    results = []
    for threads in (1, 2):
        ft.set_num_threads(threads)
        results.append(op(first, second))
    # The gradient is elementwise (or row-wise): identical. The loss sums per-thread partials
    # in double, in an order that depends on the split: equal up to double rounding.
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-12)
