"""The ops' slots for reduced values (loss_out= of the losses, out= of accuracy, norm_out= of
clip_grad_norm): on NumPy arrays they receive exactly the number the op returns without them,
and a wrong slot is refused naming the argument. (On the GPU, see test_cuda.py.)"""

import numpy as np
import pytest

import fusedtrain as ft


def _inputs(rng):
    x = rng.standard_normal((17, 4)).astype(np.float32)
    target = rng.random((17, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 17)
    return x, target, labels


def test_losses_store_the_value_they_return(rng):
    x, target, labels = _inputs(rng)
    for op, second in ((ft.ops.mse, target), (ft.ops.binary_cross_entropy, target),
                       (ft.ops.softmax_cross_entropy, labels)):
        for reduction in ("mean", "sum"):
            value, grad = op(x, second, reduction=reduction)
            slot = np.full(1, np.nan)
            grad_out = np.empty_like(x)
            stored, returned_grad = op(x, second, reduction=reduction, out=grad_out, loss_out=slot)
            assert stored is slot and slot[0] == value and returned_grad is grad_out
            np.testing.assert_array_equal(grad_out, grad)


def test_accuracy_and_clipping_store_their_values(rng):
    x, _, labels = _inputs(rng)
    slot = np.zeros(1)
    assert ft.ops.accuracy(x, labels, out=slot) is slot and slot[0] == ft.ops.accuracy(x, labels)
    grads = [rng.standard_normal(50).astype(np.float32) * 3, rng.standard_normal(7).astype(np.float32)]
    copies = [grad.copy() for grad in grads]
    norm = ft.ops.clip_grad_norm(copies, 1.0)
    assert ft.ops.clip_grad_norm(grads, 1.0, norm_out=slot) is slot and slot[0] == norm
    for grad, copy in zip(grads, copies):
        np.testing.assert_array_equal(grad, copy)


@pytest.mark.parametrize("slot, error, message", [
    (np.zeros(1, np.float32), TypeError, r"^loss_out: expected dtype float64, got float32"),
    (np.zeros(2), ValueError, r"^loss_out: expected an array of one element, shape \(1,\), got shape \(2,\)"),
    (np.zeros((1, 1)), ValueError, r"^loss_out: expected a 1-D array, got shape \(1, 1\)"),
    (0.0, TypeError, r"^loss_out: expected a numpy.ndarray of float64, got float"),
])
def test_a_bad_slot_is_refused(rng, slot, error, message):
    x, target, labels = _inputs(rng)
    with pytest.raises(error, match=message):
        ft.ops.mse(x, target, loss_out=slot)
    with pytest.raises(error, match=message):
        ft.ops.softmax_cross_entropy(x, labels, loss_out=slot)
    with pytest.raises(error, match=message.replace("loss_out", "out")):
        ft.ops.accuracy(x, labels, out=slot)
    with pytest.raises(error, match=message.replace("loss_out", "norm_out")):
        ft.ops.clip_grad_norm(x, 1.0, norm_out=slot)


def test_a_read_only_slot_is_refused(rng):
    x, target, _ = _inputs(rng)
    slot = np.zeros(1)
    slot.flags.writeable = False
    with pytest.raises(ValueError, match="^loss_out: the array is read-only"):
        ft.ops.mse(x, target, loss_out=slot)
