"""Dropout and its gradient: the Philox4x32-10 stream checked against the published Random123
known-answer vectors through a pure-Python Philox, masks equal to the ones that reference
derives, mask statistics, determinism, thread-count independence and every argument check."""

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import ops

from conftest import SIMD_PATHS

MASK32 = 0xFFFFFFFF


def philox4x32_10(counter, key):
    """Philox4x32-10 from its definition (Salmon et al., SC 2011): ten rounds of two 32x32->64
    multiplications whose high halves are mixed with the other words and the round key, the key
    advanced by the Weyl constants after each round."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for _ in range(10):
        product0 = 0xD2511F53 * c0
        product1 = 0xCD9E8D57 * c2
        c0, c1, c2, c3 = ((product1 >> 32) ^ c1 ^ k0, product1 & MASK32,
                          (product0 >> 32) ^ c3 ^ k1, product0 & MASK32)
        k0 = (k0 + 0x9E3779B9) & MASK32
        k1 = (k1 + 0xBB67AE85) & MASK32
    return c0, c1, c2, c3


def reference_mask(size, rate, seed, step, start=0):
    """The mask that the documented stream gives to elements [start, size) (start a multiple of
    4): element i reads word i % 4 of the block with counter (i // 4, step) and key seed (64-bit
    values split into low and high 32-bit words), and is kept when its top 24 bits as a fraction
    of 2^24 reach the rate (the float32 rate, which is what the kernel compares with)."""
    threshold = float(np.float32(rate))
    key = (seed & MASK32, seed >> 32)
    kept = []
    for group in range(start // 4, (size + 3) // 4):
        words = philox4x32_10((group & MASK32, group >> 32, step & MASK32, step >> 32), key)
        kept.extend((word >> 8) * 2.0 ** -24 >= threshold for word in words)
    return np.array(kept[: size - start], np.uint8)


def test_python_philox_reproduces_the_random123_known_answers():
    assert philox4x32_10((0, 0, 0, 0), (0, 0)) == (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)
    assert philox4x32_10((MASK32,) * 4, (MASK32,) * 2) == (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)


# Seeds and steps above 2^32 check that their high words reach the counter and the key.
STREAMS = [(0, 0), (1, 0), (0, 1), (12345, 7), (2**32 + 5, 3), (17, 2**40 + 11), (2**64 - 1, 2**64 - 1)]


@pytest.mark.parametrize("seed, step", STREAMS)
@pytest.mark.parametrize("rate", [0.5, 0.3, 0.875])
def test_masks_equal_the_python_philox_stream(simd_path, seed, step, rate):
    size = 203  # not a multiple of 4: the last block is used in part
    x = np.linspace(-2.0, 3.0, size, dtype=np.float32)
    _, mask = ops.dropout(x, rate, seed=seed, step=step)
    np.testing.assert_array_equal(mask, reference_mask(size, rate, seed, step))


@pytest.mark.parametrize("size", [1, 3, 17, 257, 1001])
def test_output_is_x_scaled_where_kept_and_zero_elsewhere(simd_path, rng, size):
    rate = 0.3
    x = rng.standard_normal(size).astype(np.float32)
    y, mask = ops.dropout(x, rate, seed=99, step=size)
    assert y.dtype == np.float32 and mask.dtype == np.uint8
    assert y.shape == x.shape == mask.shape
    assert set(np.unique(mask)) <= {0, 1}
    np.testing.assert_array_equal(mask, reference_mask(size, rate, 99, size))
    expected = np.where(mask == 1, x.astype(np.float64) / (1.0 - rate), 0.0)
    # One float32 multiplication by a rounded 1 / (1 - rate): a few units in the last place.
    np.testing.assert_allclose(y, expected, rtol=3e-7, atol=0)
    assert np.all(y[mask == 0] == 0)


def test_multi_dimensional_arrays_use_the_flat_index(rng):
    x = rng.standard_normal((7, 5, 3)).astype(np.float32)
    _, mask = ops.dropout(x, 0.5, seed=3, step=4)
    assert mask.shape == (7, 5, 3)
    np.testing.assert_array_equal(mask.ravel(), reference_mask(x.size, 0.5, 3, 4))


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_keep_fraction_matches_one_minus_rate(simd_path, rate):
    size = 1_000_000
    x = np.ones(size, np.float32)
    y, mask = ops.dropout(x, rate, seed=2024, step=1)
    keep = 1.0 - rate
    fraction = mask.mean()
    # Binomial standard deviation of the kept fraction; 6 of them is a one-in-10^8 failure.
    sigma = np.sqrt(keep * (1.0 - keep) / size)
    assert abs(fraction - keep) < 6 * sigma
    # The expectation of the output equals the input's.
    assert abs(y.mean() - 1.0) < 6 * sigma / keep
    # Consecutive elements are uncorrelated: pairs kept together occur with probability keep^2.
    both = np.mean(mask[:-1] & mask[1:])
    assert abs(both - keep * keep) < 6 * np.sqrt(keep * keep * (1 - keep * keep) / size)


def test_same_seed_and_step_give_the_same_mask_and_others_differ(simd_path, rng):
    x = rng.standard_normal(4099).astype(np.float32)
    y1, mask1 = ops.dropout(x, 0.5, seed=5, step=10)
    y2, mask2 = ops.dropout(x, 0.5, seed=5, step=10)
    np.testing.assert_array_equal(mask1, mask2)
    np.testing.assert_array_equal(y1, y2)
    _, other_step = ops.dropout(x, 0.5, seed=5, step=11)
    _, other_seed = ops.dropout(x, 0.5, seed=6, step=10)
    # Independent masks agree on about half of the elements, far from all of them.
    for other in (other_step, other_seed):
        agreement = np.mean(other == mask1)
        assert 0.45 < agreement < 0.55


def test_every_simd_path_draws_the_same_mask(rng):
    x = rng.standard_normal(5003).astype(np.float32)
    results = []
    previous = ft._C.simd_path()
    if len(SIMD_PATHS) < 2:
        pytest.skip("only the portable path is available on this CPU")
    try:
        for path in SIMD_PATHS:
            ft._C.set_simd_path(path)
            results.append(ops.dropout(x, 0.25, seed=8, step=9))
    finally:
        ft._C.set_simd_path(previous)
    for result in results[1:]:
        np.testing.assert_array_equal(result[1], results[0][1])
        np.testing.assert_array_equal(result[0], results[0][0])


def test_masks_do_not_depend_on_the_thread_count(simd_path, rng):
    # 300_001 elements make several OpenMP chunks, the last one ragged.
    x = rng.standard_normal(300_001).astype(np.float32)
    previous = ft.get_num_threads()
    try:
        ft.set_num_threads(1)
        y1, mask1 = ops.dropout(x, 0.4, seed=77, step=3)
        ft.set_num_threads(2)
        y2, mask2 = ops.dropout(x, 0.4, seed=77, step=3)
        grad1 = ops.dropout_grad(x, mask1, 0.4)
        ft.set_num_threads(1)
        grad2 = ops.dropout_grad(x, mask1, 0.4)
    finally:
        ft.set_num_threads(previous)
    np.testing.assert_array_equal(mask1, mask2)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(grad1, grad2)
    # The tail of the long array against the reference: the last chunk draws the right blocks.
    start = (x.size - 37) // 4 * 4
    np.testing.assert_array_equal(mask1[start:], reference_mask(x.size, 0.4, 77, 3, start=start))


def test_rate_zero_keeps_everything(simd_path, rng):
    x = rng.standard_normal(1001).astype(np.float32)
    y, mask = ops.dropout(x, 0.0, seed=1, step=1)
    assert np.all(mask == 1)
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("size", [1, 17, 1001, 70_001])
def test_dropout_grad_is_grad_output_times_mask_over_keep(simd_path, rng, size):
    rate = 0.35
    grad_output = rng.standard_normal(size).astype(np.float32)
    mask = (rng.uniform(size=size) >= rate).astype(np.uint8)
    grad = ops.dropout_grad(grad_output, mask, rate)
    expected = grad_output.astype(np.float64) * mask / (1.0 - rate)
    np.testing.assert_allclose(grad, expected, rtol=3e-7, atol=0)
    assert np.all(grad[mask == 0] == 0)


def test_dropout_grad_with_the_forward_mask_is_the_forward_map(rng):
    """Dropout is linear in x, so its gradient applied to x reproduces the forward output."""
    x = rng.standard_normal((33, 9)).astype(np.float32)
    y, mask = ops.dropout(x, 0.6, seed=4, step=2)
    np.testing.assert_array_equal(ops.dropout_grad(x, mask, 0.6), y)


def test_dropped_elements_are_exactly_zero_even_when_not_finite(simd_path):
    x = np.array([np.nan, np.inf, -np.inf, 1.0] * 16, np.float32)
    y, mask = ops.dropout(x, 0.5, seed=21, step=0)
    assert 0 < mask.sum() < x.size
    assert np.all(y[mask == 0] == 0)
    kept = mask == 1
    np.testing.assert_array_equal(y[kept], x[kept] * np.float32(2.0))
    grad = ops.dropout_grad(x, mask, 0.5)
    assert np.all(grad[mask == 0] == 0)
    np.testing.assert_array_equal(grad[kept], y[kept])


def test_in_place_forward_and_backward(simd_path, rng):
    x = rng.standard_normal(515).astype(np.float32)
    original = x.copy()
    expected_y, expected_mask = ops.dropout(original, 0.2, seed=11, step=12)
    y, mask = ops.dropout(x, 0.2, seed=11, step=12, out=x)
    assert y is x
    np.testing.assert_array_equal(x, expected_y)
    np.testing.assert_array_equal(mask, expected_mask)
    grad_output = original.copy()
    expected_grad = ops.dropout_grad(original, mask, 0.2)
    result = ops.dropout_grad(grad_output, mask, 0.2, out=grad_output)
    assert result is grad_output
    np.testing.assert_array_equal(grad_output, expected_grad)


def test_preallocated_outputs_are_written_in_place(rng):
    x = rng.standard_normal(64).astype(np.float32)
    out = np.full(64, np.nan, np.float32)
    mask_out = np.full(64, 7, np.uint8)
    y, mask = ops.dropout(x, 0.5, seed=1, step=2, out=out, mask_out=mask_out)
    assert y is out and mask is mask_out
    np.testing.assert_array_equal(mask, reference_mask(64, 0.5, 1, 2))
    grad_out = np.full(64, np.nan, np.float32)
    assert ops.dropout_grad(x, mask, 0.5, out=grad_out) is grad_out
    np.testing.assert_array_equal(grad_out, y)


def test_empty_arrays():
    y, mask = ops.dropout(np.zeros((0, 3), np.float32), 0.5, seed=0, step=0)
    assert y.shape == mask.shape == (0, 3)
    assert ops.dropout_grad(np.zeros(0, np.float32), np.zeros(0, np.uint8), 0.5).shape == (0,)


# ---- argument checks -----------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [1.0, 1.5, -0.1, float("nan"), float("inf")])
def test_rate_outside_zero_one_is_rejected(rate):
    x = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="rate"):
        ops.dropout(x, rate, seed=0, step=0)
    with pytest.raises(ValueError, match="rate"):
        ops.dropout_grad(x, np.ones(4, np.uint8), rate)


@pytest.mark.parametrize("rate", ["0.5", None, True])
def test_rate_must_be_a_real_number(rate):
    with pytest.raises(TypeError, match="rate"):
        ops.dropout(np.zeros(4, np.float32), rate, seed=0, step=0)


@pytest.mark.parametrize("name", ["seed", "step"])
@pytest.mark.parametrize("value, error", [(-1, ValueError), (2**64, ValueError), (1.0, TypeError),
                                          (False, TypeError), ("3", TypeError)])
def test_seed_and_step_must_be_64_bit_unsigned_integers(name, value, error):
    arguments = {"seed": 0, "step": 0, name: value}
    with pytest.raises(error, match=name):
        ops.dropout(np.zeros(4, np.float32), 0.5, **arguments)


def test_numpy_integers_are_accepted_as_seed_and_step():
    x = np.zeros(9, np.float32)
    _, mask = ops.dropout(x, 0.5, seed=np.uint64(2**63 + 1), step=np.int32(5))
    np.testing.assert_array_equal(mask, reference_mask(9, 0.5, 2**63 + 1, 5))


def test_dropout_argument_errors():
    x = np.zeros((4, 5), np.float32)
    with pytest.raises(TypeError, match="x: expected dtype float32, got float64"):
        ops.dropout(x.astype(np.float64), 0.5, seed=0, step=0)
    with pytest.raises(TypeError, match="x: expected a numpy.ndarray"):
        ops.dropout(x.tolist(), 0.5, seed=0, step=0)
    with pytest.raises(ValueError, match="x: expected a C-contiguous array"):
        ops.dropout(x.T, 0.5, seed=0, step=0)
    with pytest.raises(ValueError, match=r"out: expected shape \(4, 5\)"):
        ops.dropout(x, 0.5, seed=0, step=0, out=np.zeros(20, np.float32))
    with pytest.raises(TypeError, match="out: expected dtype float32"):
        ops.dropout(x, 0.5, seed=0, step=0, out=np.zeros((4, 5), np.float64))
    read_only = np.zeros((4, 5), np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="out: the array is read-only"):
        ops.dropout(x, 0.5, seed=0, step=0, out=read_only)
    with pytest.raises(TypeError, match="mask_out: expected dtype uint8, got bool"):
        ops.dropout(x, 0.5, seed=0, step=0, mask_out=np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match=r"mask_out: expected shape \(4, 5\)"):
        ops.dropout(x, 0.5, seed=0, step=0, mask_out=np.zeros((5, 4), np.uint8))
    storage = np.zeros(40, np.float32)
    with pytest.raises(ValueError, match="out: shares memory with x"):
        ops.dropout(storage[:20].reshape(4, 5), 0.5, seed=0, step=0, out=storage[10:30].reshape(4, 5))
    with pytest.raises(ValueError, match="mask_out: shares memory with x"):
        ops.dropout(x, 0.5, seed=0, step=0, mask_out=x.view(np.uint8).ravel()[:20].reshape(4, 5))


def test_dropout_grad_argument_errors():
    grad_output = np.zeros((3, 4), np.float32)
    mask = np.ones((3, 4), np.uint8)
    with pytest.raises(TypeError, match="mask: expected dtype uint8, got float32"):
        ops.dropout_grad(grad_output, mask.astype(np.float32), 0.5)
    with pytest.raises(TypeError, match="mask: expected dtype uint8, got bool"):
        ops.dropout_grad(grad_output, mask.astype(bool), 0.5)
    with pytest.raises(ValueError, match=r"mask: expected shape \(3, 4\) \(the shape of grad_output\)"):
        ops.dropout_grad(grad_output, np.ones(12, np.uint8), 0.5)
    with pytest.raises(TypeError, match="grad_output: expected dtype float32"):
        ops.dropout_grad(grad_output.astype(np.float16), mask, 0.5)
    with pytest.raises(ValueError, match="mask: expected a C-contiguous array"):
        ops.dropout_grad(grad_output.T.copy(), mask.T, 0.5)
    storage = np.ones(48, np.uint8)
    with pytest.raises(ValueError, match="out: shares memory with mask"):
        ops.dropout_grad(grad_output, storage[:12].reshape(3, 4), 0.5,
                         out=storage.view(np.float32).reshape(3, 4))
    read_only = np.zeros((3, 4), np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="out: the array is read-only"):
        ops.dropout_grad(grad_output, mask, 0.5, out=read_only)


def test_the_extension_rejects_bad_direct_calls():
    x = np.zeros(8, np.float32)
    with pytest.raises(ValueError, match="rate"):
        ft._C.dropout_forward(x, np.zeros(8, np.float32), np.zeros(8, np.uint8), 1.0, 0, 0)
    with pytest.raises(ValueError, match="mask_out"):
        ft._C.dropout_forward(x, np.zeros(8, np.float32), np.zeros(4, np.uint8), 0.5, 0, 0)
    with pytest.raises(ValueError, match="mask"):
        ft._C.dropout_backward(x, np.zeros(7, np.uint8), np.zeros(8, np.float32), 0.5)
