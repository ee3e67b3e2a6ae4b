"""The fused optimizer steps (SGD, Adam/AdamW, RMSprop) and global-norm gradient clipping, against
float64 NumPy implementations of PyTorch's definitions (and against torch.optim where PyTorch is
installed), plus every argument check."""

import math

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import ops

# 100_003 elements span several of the kernels' 16384-element OpenMP chunks, so the threaded
# split (and its ragged last chunk) is exercised; the small sizes hit the scalar tails.
SIZES = [1, 3, 17, 1001, 100_003]
STEPS = 5

# Each step's float32 update is a handful of operations with relative error ~6e-8 each; five
# steps of them stay well below 2e-5 relative to the parameter. The absolute part covers
# parameters that pass near zero, where the error is relative to the step (lr ~1e-2) instead.
RTOL = 2e-5
ATOL = 1e-6


@pytest.fixture
def two_threads():
    """Runs with two OpenMP threads (restored after), so that large buffers are split."""
    previous = ft.get_num_threads()
    ft.set_num_threads(2)
    yield
    ft.set_num_threads(previous)


def _problem(rng, size, state_count):
    """Float32 parameters, STEPS different gradients and zeroed optimizer state buffers."""
    param = rng.standard_normal(size).astype(np.float32)
    grads = [(rng.standard_normal(size) * rng.uniform(0.1, 3.0)).astype(np.float32) for _ in range(STEPS)]
    states = [np.zeros(size, np.float32) for _ in range(state_count)]
    return param, grads, states


def _reference_sgd(param, grad, velocity, lr, momentum, nesterov, weight_decay):
    grad = grad + weight_decay * param
    if velocity is not None:
        velocity[...] = momentum * velocity + grad
        grad = grad + momentum * velocity if nesterov else velocity
    param -= lr * grad


def _reference_adam(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    if decoupled:
        param *= 1.0 - lr * weight_decay
    else:
        grad = grad + weight_decay * param
    m[...] = beta1 * m + (1.0 - beta1) * grad
    v[...] = beta2 * v + (1.0 - beta2) * grad * grad
    m_hat = m / (1.0 - beta1 ** step)
    v_hat = v / (1.0 - beta2 ** step)
    param -= lr * m_hat / (np.sqrt(v_hat) + eps)


def _reference_rmsprop(param, grad, square_avg, lr, alpha, eps, weight_decay):
    grad = grad + weight_decay * param
    square_avg[...] = alpha * square_avg + (1.0 - alpha) * grad * grad
    param -= lr * grad / (np.sqrt(square_avg) + eps)


SGD_CASES = [
    dict(lr=0.05, momentum=0.0, nesterov=False, weight_decay=0.0),
    dict(lr=0.05, momentum=0.0, nesterov=False, weight_decay=0.01),
    dict(lr=0.03, momentum=0.9, nesterov=False, weight_decay=0.0),
    dict(lr=0.03, momentum=0.9, nesterov=True, weight_decay=0.0),
    dict(lr=0.02, momentum=0.8, nesterov=True, weight_decay=0.05),
]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("case", SGD_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_sgd_step_matches_float64_reference(simd_path, two_threads, rng, size, case):
    uses_velocity = case["momentum"] > 0
    param, grads, states = _problem(rng, size, 1 if uses_velocity else 0)
    velocity = states[0] if uses_velocity else None
    expected_param = param.astype(np.float64)
    expected_velocity = np.zeros(size) if uses_velocity else None
    for grad in grads:
        ops.sgd_step(param, grad, velocity, **case)
        _reference_sgd(expected_param, grad.astype(np.float64), expected_velocity, **case)
    np.testing.assert_allclose(param, expected_param, rtol=RTOL, atol=ATOL)
    if uses_velocity:
        np.testing.assert_allclose(velocity, expected_velocity, rtol=RTOL, atol=ATOL)


ADAM_CASES = [
    dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False),
    dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, decoupled=False),
    dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, decoupled=True),
    dict(lr=3e-3, beta1=0.5, beta2=0.9, eps=1e-3, weight_decay=0.0, decoupled=True),
    dict(lr=1e-2, beta1=0.0, beta2=0.0, eps=1e-6, weight_decay=0.02, decoupled=False),
]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("case", ADAM_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_adam_step_matches_float64_reference(simd_path, two_threads, rng, size, case):
    param, grads, (m, v) = _problem(rng, size, 2)
    expected = [param.astype(np.float64), np.zeros(size), np.zeros(size)]
    for step, grad in enumerate(grads, start=1):
        ops.adam_step(param, grad, m, v, step=step, **case)
        _reference_adam(*expected[:1], grad.astype(np.float64), *expected[1:], step, **case)
    np.testing.assert_allclose(param, expected[0], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(m, expected[1], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(v, expected[2], rtol=RTOL, atol=ATOL)


def test_adam_bias_correction_at_a_late_step(simd_path, rng):
    """At step 10000, beta2^step is tiny but 1 - beta2^step must keep its digits."""
    param, (grad, *_), (m, v) = _problem(rng, 257, 2)
    m[...] = rng.standard_normal(257).astype(np.float32)
    v[...] = rng.uniform(0.1, 2.0, 257).astype(np.float32)
    expected = [param.astype(np.float64), m.astype(np.float64), v.astype(np.float64)]
    hyper = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False)
    ops.adam_step(param, grad, m, v, step=10_000, **hyper)
    _reference_adam(expected[0], grad.astype(np.float64), expected[1], expected[2], 10_000, **hyper)
    np.testing.assert_allclose(param, expected[0], rtol=RTOL, atol=ATOL)


RMSPROP_CASES = [
    dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0),
    dict(lr=1e-2, alpha=0.9, eps=1e-8, weight_decay=0.05),
    dict(lr=5e-3, alpha=0.5, eps=1e-2, weight_decay=0.0),
]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("case", RMSPROP_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_rmsprop_step_matches_float64_reference(simd_path, two_threads, rng, size, case):
    param, grads, (square_avg,) = _problem(rng, size, 1)
    expected_param, expected_square = param.astype(np.float64), np.zeros(size)
    for grad in grads:
        ops.rmsprop_step(param, grad, square_avg, **case)
        _reference_rmsprop(expected_param, grad.astype(np.float64), expected_square, **case)
    np.testing.assert_allclose(param, expected_param, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(square_avg, expected_square, rtol=RTOL, atol=ATOL)


def test_steps_accept_any_shape_as_a_flat_buffer(rng):
    param = rng.standard_normal((7, 13)).astype(np.float32)
    grad = rng.standard_normal((7, 13)).astype(np.float32)
    expected = param.astype(np.float64) - 0.1 * grad
    ops.sgd_step(param, grad, lr=0.1)
    np.testing.assert_allclose(param, expected, rtol=1e-6, atol=1e-7)


def test_steps_on_empty_buffers_do_nothing():
    empty = [np.zeros(0, np.float32) for _ in range(4)]
    ops.sgd_step(empty[0], empty[1], empty[2], lr=0.1, momentum=0.9)
    ops.adam_step(*empty, step=1)
    ops.rmsprop_step(*empty[:3], lr=0.1)
    assert ops.clip_grad_norm(empty[0], 1.0) == 0.0


def test_a_read_only_gradient_is_accepted(rng):
    param = rng.standard_normal(17).astype(np.float32)
    grad = rng.standard_normal(17).astype(np.float32)
    grad.flags.writeable = False
    expected = param.astype(np.float64) - 0.5 * grad
    ops.sgd_step(param, grad, lr=0.5)
    np.testing.assert_allclose(param, expected, rtol=1e-6, atol=1e-7)


# ---- the same runs against torch.optim ----------------------------------------------------------

def _torch_run(torch, optimizer_class, param, grads, **hyper):
    tensor = torch.nn.Parameter(torch.from_numpy(param.copy()))
    optimizer = optimizer_class([tensor], **hyper)
    for grad in grads:
        tensor.grad = torch.from_numpy(grad.copy())
        optimizer.step()
    return tensor.detach().numpy()


TORCH_CASES = [
    ("SGD", dict(lr=0.03, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.0, nesterov=False, weight_decay=0.0)),
    ("Adam", dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)),
    ("AdamW", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-8, weight_decay=0.1)),
    ("RMSprop", dict(lr=1e-2, alpha=0.9, eps=1e-8, weight_decay=0.05)),
]


@pytest.mark.parametrize("name, hyper", TORCH_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(TORCH_CASES)])
def test_steps_match_torch_optim(simd_path, rng, name, hyper):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed; the NumPy references stand alone")
    param, grads, states = _problem(rng, 1001, 2)
    expected = _torch_run(torch, getattr(torch.optim, name), param, grads, **hyper)
    for step, grad in enumerate(grads, start=1):
        if name == "SGD":
            velocity = states[0] if hyper["momentum"] else None
            ops.sgd_step(param, grad, velocity, **hyper)
        elif name in ("Adam", "AdamW"):
            beta1, beta2 = hyper["betas"]
            ops.adam_step(param, grad, *states, step=step, lr=hyper["lr"], beta1=beta1, beta2=beta2,
                          eps=hyper["eps"], weight_decay=hyper["weight_decay"], decoupled=name == "AdamW")
        else:
            ops.rmsprop_step(param, grad, states[0], **hyper)
    # Both sides compute in float32 with differently ordered operations.
    np.testing.assert_allclose(param, expected, rtol=RTOL, atol=ATOL)


# ---- gradient clipping ---------------------------------------------------------------------------

# sum_of_squares adds float32 squares in runs of 128 per lane before moving to float64: at most
# ~128 * 6e-8 relative error on the sum of squares, half of it on the norm.
NORM_RTOL = 1e-5


@pytest.mark.parametrize("size", [1, 3, 17, 1001, 100_003])
def test_clip_grad_norm_one_array(simd_path, two_threads, rng, size):
    grad = rng.standard_normal(size).astype(np.float32)
    original = grad.astype(np.float64)
    norm64 = float(np.linalg.norm(original))
    max_norm = 0.5 * norm64
    norm = ops.clip_grad_norm(grad, max_norm)
    assert isinstance(norm, float)
    assert norm == pytest.approx(norm64, rel=NORM_RTOL)
    factor = max_norm / (norm64 + 1e-6)
    np.testing.assert_allclose(grad, original * factor, rtol=NORM_RTOL, atol=1e-7)
    assert float(np.linalg.norm(grad.astype(np.float64))) <= max_norm * (1 + NORM_RTOL)


def test_clip_grad_norm_list_of_arrays_uses_the_global_norm(simd_path, rng):
    grads = [rng.standard_normal(shape).astype(np.float32) for shape in [(17, 3), (1,), (257,), (5, 5, 5)]]
    originals = [g.astype(np.float64) for g in grads]
    norm64 = math.sqrt(sum(float(np.sum(g * g)) for g in originals))
    max_norm = 0.1 * norm64
    norm = ops.clip_grad_norm(grads, max_norm)
    assert norm == pytest.approx(norm64, rel=NORM_RTOL)
    factor = max_norm / (norm64 + 1e-6)
    for grad, original in zip(grads, originals):
        np.testing.assert_allclose(grad, original * factor, rtol=NORM_RTOL, atol=1e-7)
    # A tuple works the same way.
    assert ops.clip_grad_norm(tuple(grads), 1e9) == pytest.approx(max_norm, rel=NORM_RTOL)


def test_clip_grad_norm_leaves_gradients_below_the_limit_untouched(rng):
    grads = [rng.standard_normal(33).astype(np.float32), rng.standard_normal(4).astype(np.float32)]
    before = [g.copy() for g in grads]
    norm64 = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads))
    assert ops.clip_grad_norm(grads, norm64 * 1.01) == pytest.approx(norm64, rel=NORM_RTOL)
    for grad, original in zip(grads, before):
        np.testing.assert_array_equal(grad, original)


def test_clip_grad_norm_matches_torch(rng):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed; the NumPy references stand alone")
    grads = [rng.standard_normal(shape).astype(np.float32) for shape in [(31, 7), (129,)]]
    tensors = [torch.nn.Parameter(torch.zeros(g.shape)) for g in grads]
    for tensor, grad in zip(tensors, grads):
        tensor.grad = torch.from_numpy(grad.copy())
    expected_norm = float(torch.nn.utils.clip_grad_norm_(tensors, 2.0))
    norm = ops.clip_grad_norm(grads, 2.0)
    assert norm == pytest.approx(expected_norm, rel=NORM_RTOL)
    for tensor, grad in zip(tensors, grads):
        np.testing.assert_allclose(grad, tensor.grad.numpy(), rtol=NORM_RTOL, atol=1e-7)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_clip_grad_norm_returns_a_non_finite_norm_and_scales_nothing(rng, bad):
    grads = [rng.standard_normal(17).astype(np.float32), rng.standard_normal(5).astype(np.float32)]
    grads[1][2] = bad
    before = [g.copy() for g in grads]
    norm = ops.clip_grad_norm(grads, 1.0)
    assert not math.isfinite(norm)
    assert math.isnan(norm) == math.isnan(bad)
    for grad, original in zip(grads, before):
        np.testing.assert_array_equal(grad, original)


def test_clip_grad_norm_errors(rng):
    grad = rng.standard_normal(8).astype(np.float32)
    for max_norm in (0.0, -1.0):
        with pytest.raises(ValueError, match="max_norm"):
            ops.clip_grad_norm(grad, max_norm)
    with pytest.raises(ValueError, match="max_norm"):
        ops.clip_grad_norm(grad, float("nan"))
    with pytest.raises(TypeError, match="max_norm"):
        ops.clip_grad_norm(grad, "1.0")
    with pytest.raises(TypeError, match=r"grads\[1\]"):
        ops.clip_grad_norm([grad, grad.astype(np.float64)], 1.0)
    with pytest.raises(TypeError, match=r"grads\[0\]: expected a numpy.ndarray"):
        ops.clip_grad_norm(grad.tolist(), 1.0)
    for not_arrays in (3.0, "grad", None):
        with pytest.raises(TypeError, match="grads: expected a numpy.ndarray or a sequence"):
            ops.clip_grad_norm(not_arrays, 1.0)
    with pytest.raises(ValueError, match=r"grads\[0\].*C-contiguous"):
        ops.clip_grad_norm([np.zeros((4, 4), np.float32)[:, 1]], 1.0)
    read_only = grad.copy()
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="grads: the array is read-only"):
        ops.clip_grad_norm(read_only, 1.0)


def test_clip_grad_norm_rejects_gradients_that_share_memory(rng):
    grad = rng.standard_normal(40).astype(np.float32)
    other = rng.standard_normal(3).astype(np.float32)
    before = grad.copy()
    # Listed twice, a gradient would be counted twice in the norm and scaled twice.
    with pytest.raises(ValueError, match=r"grads\[2\]: shares memory with grads\[0\]"):
        ops.clip_grad_norm([grad, other, grad], 1.0)
    with pytest.raises(ValueError, match="shares memory"):
        ops.clip_grad_norm([grad[20:], other, grad[:25]], 1.0)
    np.testing.assert_array_equal(grad, before)
    # Adjacent views of one buffer are separate arrays.
    norm = ops.clip_grad_norm([grad[:20], grad[20:]], 1e9)
    assert norm == pytest.approx(float(np.linalg.norm(before.astype(np.float64))), rel=NORM_RTOL)


# ---- argument checks -----------------------------------------------------------------------------

def _buffers(size=9, count=4):
    return [np.zeros(size, np.float32) for _ in range(count)]


@pytest.mark.parametrize("step, error", [(0, ValueError), (-3, ValueError), (1.0, TypeError),
                                         (True, TypeError)])
def test_adam_step_rejects_bad_steps(step, error):
    with pytest.raises(error, match="step"):
        ops.adam_step(*_buffers(), step=step)


@pytest.mark.parametrize("name, value", [
    ("lr", -1e-3), ("lr", float("nan")), ("lr", float("inf")),
    ("beta1", 1.0), ("beta1", -0.1), ("beta1", float("nan")),
    ("beta2", 1.0), ("beta2", 1.5), ("beta2", float("nan")),
    ("eps", -1e-8), ("eps", float("nan")),
    ("weight_decay", -0.1), ("weight_decay", float("nan")),
])
def test_adam_step_rejects_bad_hyper_parameters(name, value):
    buffers = _buffers()
    before = [b.copy() for b in buffers]
    with pytest.raises(ValueError, match=name):
        ops.adam_step(*buffers, step=1, **{name: value})
    for buffer, original in zip(buffers, before):
        np.testing.assert_array_equal(buffer, original)


@pytest.mark.parametrize("name, value", [
    ("lr", -0.1), ("lr", float("nan")), ("momentum", -0.5), ("momentum", float("nan")),
    ("weight_decay", -1.0), ("weight_decay", float("inf")),
])
def test_sgd_step_rejects_bad_hyper_parameters(name, value):
    param, grad, velocity = _buffers(count=3)
    hyper = {"lr": 0.1, "momentum": 0.9, name: value}
    with pytest.raises(ValueError, match=name):
        ops.sgd_step(param, grad, velocity, **hyper)


@pytest.mark.parametrize("name, value", [
    ("lr", -0.1), ("lr", float("nan")), ("alpha", 1.5), ("alpha", -0.1), ("alpha", float("nan")),
    ("eps", -1.0), ("weight_decay", -1.0),
])
def test_rmsprop_step_rejects_bad_hyper_parameters(name, value):
    param, grad, square_avg = _buffers(count=3)
    hyper = {"lr": 0.1, name: value}
    with pytest.raises(ValueError, match=name):
        ops.rmsprop_step(param, grad, square_avg, **hyper)


def test_hyper_parameters_must_be_real_numbers():
    param, grad, m, v = _buffers()
    with pytest.raises(TypeError, match="lr"):
        ops.sgd_step(param, grad, lr="0.1")
    with pytest.raises(TypeError, match="lr"):
        ops.sgd_step(param, grad, lr=None)
    with pytest.raises(TypeError, match="beta1"):
        ops.adam_step(param, grad, m, v, step=1, beta1=True)
    with pytest.raises(TypeError, match="alpha"):
        ops.rmsprop_step(param, grad, m, lr=0.1, alpha=[0.9])


def test_sgd_nesterov_needs_momentum_and_momentum_needs_velocity():
    param, grad, velocity = _buffers(count=3)
    with pytest.raises(ValueError, match="nesterov"):
        ops.sgd_step(param, grad, velocity, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="velocity"):
        ops.sgd_step(param, grad, lr=0.1, momentum=0.9)


def test_sgd_without_momentum_leaves_a_given_velocity_alone(rng):
    param, grad = rng.standard_normal((2, 17)).astype(np.float32)
    velocity = rng.standard_normal(17).astype(np.float32)
    velocity[3] = np.nan  # never read: 0 * NaN would otherwise poison the parameter
    before = velocity.copy()
    expected = param.astype(np.float64) - 0.1 * grad
    ops.sgd_step(param, grad, velocity, lr=0.1)
    np.testing.assert_array_equal(velocity, before)
    np.testing.assert_allclose(param, expected, rtol=1e-6, atol=1e-7)


STEP_CALLS = {
    "sgd": (lambda b: ops.sgd_step(b["param"], b["grad"], b["velocity"], lr=0.1, momentum=0.9),
            ["param", "grad", "velocity"]),
    "adam": (lambda b: ops.adam_step(b["param"], b["grad"], b["m"], b["v"], step=1),
             ["param", "grad", "m", "v"]),
    "rmsprop": (lambda b: ops.rmsprop_step(b["param"], b["grad"], b["square_avg"], lr=0.1),
                ["param", "grad", "square_avg"]),
}


def _named_buffers(names, size=9):
    return {name: np.zeros(size, np.float32) for name in names}


@pytest.mark.parametrize("optimizer", STEP_CALLS)
def test_every_buffer_is_checked_for_shape_dtype_and_contiguity(optimizer):
    call, names = STEP_CALLS[optimizer]
    for name in names:
        buffers = _named_buffers(names)
        buffers[name] = np.zeros(10, np.float32)
        if name == "param":
            with pytest.raises(ValueError, match=r"grad: expected shape \(10,\)"):
                call(buffers)
        else:
            with pytest.raises(ValueError, match=rf"{name}: expected shape \(9,\) \(the shape of param\)"):
                call(buffers)
        buffers = _named_buffers(names)
        buffers[name] = np.zeros((3, 3), np.float32)
        with pytest.raises(ValueError, match="shape"):
            call(buffers)
        buffers = _named_buffers(names)
        buffers[name] = np.zeros(9, np.float64)
        with pytest.raises(TypeError, match=rf"{name}: expected dtype float32, got float64"):
            call(buffers)
        buffers = _named_buffers(names)
        buffers[name] = np.zeros(18, np.float32)[::2]
        with pytest.raises(ValueError, match=rf"{name}: expected a C-contiguous array"):
            call(buffers)
        buffers = _named_buffers(names)
        buffers[name] = buffers[name].tolist()
        with pytest.raises(TypeError, match=rf"{name}: expected a numpy.ndarray"):
            call(buffers)


@pytest.mark.parametrize("optimizer", STEP_CALLS)
def test_written_buffers_must_be_writeable(optimizer):
    call, names = STEP_CALLS[optimizer]
    for name in names:
        if name == "grad":
            continue
        buffers = _named_buffers(names)
        buffers[name].flags.writeable = False
        with pytest.raises(ValueError, match=f"{name}: the array is read-only"):
            call(buffers)


@pytest.mark.parametrize("optimizer", STEP_CALLS)
def test_buffers_may_not_share_memory(optimizer):
    call, names = STEP_CALLS[optimizer]
    for first_index, first in enumerate(names):
        for second in names[first_index + 1:]:
            buffers = _named_buffers(names)
            buffers[second] = buffers[first]
            with pytest.raises(ValueError, match=f"{second}: shares memory with {first}"):
                call(buffers)
    # Partly overlapping views of one buffer are caught too.
    storage = np.zeros(20, np.float32)
    buffers = _named_buffers(names)
    buffers[names[0]], buffers[names[-1]] = storage[:9], storage[5:14]
    with pytest.raises(ValueError, match="shares memory"):
        call(buffers)


def test_adam_m_is_v_and_grad_is_param_are_rejected():
    param, grad, m, v = _buffers()
    with pytest.raises(ValueError, match="v: shares memory with m"):
        ops.adam_step(param, grad, m, m, step=1)
    with pytest.raises(ValueError, match="grad: shares memory with param"):
        ops.adam_step(param, param, m, v, step=1)


def test_the_extension_rejects_bad_direct_calls():
    """fusedtrain._C checks sizes and steps itself, so direct calls cannot write out of bounds."""
    param, grad, m, v = _buffers()
    with pytest.raises(ValueError, match="grad"):
        ft._C.adam_step(param, np.zeros(4, np.float32), m, v, 1, 1e-3, 0.9, 0.999, 1e-8, 0.0, False)
    with pytest.raises(ValueError, match="step"):
        ft._C.adam_step(param, grad, m, v, 0, 1e-3, 0.9, 0.999, 1e-8, 0.0, False)
    with pytest.raises(ValueError, match="velocity"):
        ft._C.sgd_step(param, grad, None, 0.1, 0.9, False, 0.0)
    with pytest.raises(TypeError, match="square_avg"):
        ft._C.rmsprop_step(param, grad, np.zeros(9), 0.1, 0.9, 1e-8, 0.0)
