"""fusedtrain.data: the float32 conversion rule, train_val_test_split (shuffled, seeded,
stratified) and BatchLoader (index permutation, gathering into reused buffers, last partial
batch) and its threaded row gather."""

import numpy as np
import pytest

import fusedtrain as ft
from fusedtrain import _C, data


class TestToFloat32:
    def test_float32_array_is_used_as_is(self, rng):
        x = rng.standard_normal((5, 3)).astype(np.float32)
        assert data.to_float32(x, "x") is x

    @pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int64, np.int8, np.uint16, np.bool_])
    def test_other_numeric_dtypes_are_converted_once(self, rng, dtype):
        source = (rng.standard_normal((4, 3)) * 10).astype(dtype)
        result = data.to_float32(source, "x")
        assert result.dtype == np.float32
        np.testing.assert_array_equal(result, source.astype(np.float32))

    def test_lists_are_accepted(self):
        np.testing.assert_array_equal(data.to_float32([[1, 2], [3, 4]], "x"), np.array([[1, 2], [3, 4]], np.float32))

    def test_overflow_names_the_position(self):
        x = np.zeros((3, 4))
        x[2, 1] = -1e39
        with pytest.raises(ValueError, match=r"x: the value -1e\+39 at row 2, column 1 overflows float32"):
            data.to_float32(x, "x")

    @pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
    def test_non_finite_values_name_the_position(self, bad):
        x = np.ones((3, 2), dtype=np.float32)
        x[1, 0] = bad
        with pytest.raises(ValueError, match=r"x: contains .* at row 1, column 0"):
            data.to_float32(x, "x")

    def test_non_finite_in_1d_names_the_index(self):
        with pytest.raises(ValueError, match=r"y: contains nan at index 2"):
            data.to_float32(np.array([0.0, 1.0, np.nan]), "y")

    @pytest.mark.parametrize("values", [np.array([["a", "b"]]), np.array([[1 + 2j]]), np.array([[object()]])])
    def test_non_numeric_dtypes_raise_type_error(self, values):
        with pytest.raises(TypeError, match="x: expected numeric values"):
            data.to_float32(values, "x")


class TestFeatures:
    def test_returns_c_contiguous_float32(self, rng):
        x = np.asfortranarray(rng.standard_normal((6, 3)))
        result = data.features(x)
        assert result.dtype == np.float32 and result.flags.c_contiguous
        np.testing.assert_array_equal(result, x.astype(np.float32))

    @pytest.mark.parametrize("shape", [(5,), (2, 3, 4), ()])
    def test_needs_two_dimensions(self, shape):
        with pytest.raises(ValueError, match=r"x: expected a 2-D array"):
            data.features(np.zeros(shape))

    def test_empty_data(self):
        with pytest.raises(ValueError, match=r"x: empty data \(0 samples\)"):
            data.features(np.zeros((0, 3)))

    def test_no_columns(self):
        with pytest.raises(ValueError, match="x: expected at least one feature column"):
            data.features(np.zeros((3, 0)))

    def test_input_dim_mismatch(self):
        with pytest.raises(ValueError, match="x: the model takes 4 features per sample, got 3"):
            data.features(np.zeros((2, 3)), input_dim=4)


class TestTrainValTestSplit:
    def test_sizes_cover_and_are_disjoint(self, rng):
        x = np.arange(101 * 2).reshape(101, 2)
        y = np.arange(101)
        (x_train, y_train), (x_val, y_val), (x_test, y_test) = data.train_val_test_split(x, y, seed=3)
        assert (len(y_train), len(y_val), len(y_test)) == (71, 15, 15)
        combined = np.concatenate([y_train, y_val, y_test])
        assert sorted(combined.tolist()) == list(range(101))
        # Rows stay paired with their labels.
        for part_x, part_y in ((x_train, y_train), (x_val, y_val), (x_test, y_test)):
            np.testing.assert_array_equal(part_x[:, 0], part_y * 2)

    def test_same_seed_same_split_and_other_seed_differs(self):
        x = np.arange(50).reshape(50, 1)
        y = np.arange(50)
        first = data.train_val_test_split(x, y, seed=7)
        second = data.train_val_test_split(x, y, seed=7)
        third = data.train_val_test_split(x, y, seed=8)
        for a, b in zip(first, second):
            np.testing.assert_array_equal(a[1], b[1])
        assert not np.array_equal(first[0][1], third[0][1])

    def test_without_shuffle_the_parts_are_consecutive(self):
        y = np.arange(20)
        (_, y_train), (_, y_val), (_, y_test) = data.train_val_test_split(y[:, None], y, (0.5, 0.25, 0.25),
                                                                           shuffle=False)
        np.testing.assert_array_equal(y_train, np.arange(10))
        np.testing.assert_array_equal(y_val, np.arange(10, 15))
        np.testing.assert_array_equal(y_test, np.arange(15, 20))

    def test_stratify_keeps_class_proportions(self, rng):
        # Unbalanced classes: 200, 60 and 20 samples.
        y = np.repeat(np.array(["a", "b", "c"]), [200, 60, 20])
        x = rng.standard_normal((y.size, 2))
        parts = data.train_val_test_split(x, y, (0.6, 0.2, 0.2), stratify=y, seed=1)
        expected = {"a": (120, 40, 40), "b": (36, 12, 12), "c": (12, 4, 4)}
        for label, counts in expected.items():
            assert tuple(int(np.sum(part[1] == label)) for part in parts) == counts

    def test_stratified_parts_are_not_sorted_by_class(self, rng):
        y = np.repeat([0, 1], 50)
        (_, y_train), _, _ = data.train_val_test_split(y[:, None], y, stratify=y, seed=0)
        assert np.any(np.diff(y_train) < 0)

    def test_zero_fraction_gives_an_empty_part(self):
        y = np.arange(10)
        _, _, (x_test, y_test) = data.train_val_test_split(y[:, None], y, (0.8, 0.2, 0.0), seed=0)
        assert x_test.shape == (0, 1) and y_test.shape == (0,)

    @pytest.mark.parametrize("fractions, message", [
        ((0.5, 0.3, 0.3), "sum to 1"),
        ((0.7, 0.3), "three numbers"),
        ((1.2, -0.1, -0.1), r"fractions\[0\]: expected a value in \[0.0, 1.0\]"),
        ((0.0, 0.5, 0.5), "training fraction must be positive"),
        ("abc", "three numbers"),
    ])
    def test_fractions_are_validated(self, fractions, message):
        with pytest.raises(ValueError, match=message):
            data.train_val_test_split(np.zeros((10, 1)), np.zeros(10), fractions)

    def test_mismatched_lengths(self):
        with pytest.raises(ValueError, match=r"y: expected 10 samples \(as many as x\), got 9"):
            data.train_val_test_split(np.zeros((10, 1)), np.zeros(9))

    def test_stratify_needs_one_label_per_sample(self):
        with pytest.raises(ValueError, match="stratify: expected one label per sample"):
            data.train_val_test_split(np.zeros((10, 1)), np.zeros(10), stratify=np.zeros(4))

    def test_empty_data(self):
        with pytest.raises(ValueError, match="x: empty data"):
            data.train_val_test_split(np.zeros((0, 1)), np.zeros(0))


class TestBatchLoader:
    def test_each_sample_once_per_epoch_with_a_last_partial_batch(self, rng):
        x = np.arange(23 * 2, dtype=np.float32).reshape(23, 2)
        y = np.arange(23, dtype=np.int64)
        loader = data.BatchLoader(x, y, 5, shuffle=True, rng=np.random.default_rng(0))
        assert len(loader) == 5
        for _ in range(2):
            sizes, labels = [], []
            for x_batch, y_batch in loader:
                sizes.append(len(y_batch))
                labels.extend(y_batch.tolist())
                np.testing.assert_array_equal(x_batch[:, 0], y_batch * 2)
            assert sizes == [5, 5, 5, 5, 3]
            assert sorted(labels) == list(range(23))

    def test_each_epoch_has_a_new_order_and_the_seed_fixes_it(self):
        x = np.arange(40, dtype=np.float32).reshape(40, 1)
        y = np.arange(40)

        def orders(seed):
            loader = data.BatchLoader(x, y, 40, rng=np.random.default_rng(seed))
            return [next(iter(loader))[1].copy() for _ in range(2)]

        first, second = orders(1)
        assert not np.array_equal(first, second)
        again = orders(1)
        np.testing.assert_array_equal(first, again[0])
        np.testing.assert_array_equal(second, again[1])

    def test_batches_reuse_the_same_buffers(self):
        x = np.arange(30, dtype=np.float32).reshape(10, 3)
        y = np.arange(10)
        loader = data.BatchLoader(x, y, 4, rng=np.random.default_rng(0))
        addresses = {batch.__array_interface__["data"][0] for batch, _ in loader}
        assert len(addresses) == 1

    def test_without_shuffle_batches_are_views_in_order(self):
        x = np.arange(30, dtype=np.float32).reshape(10, 3)
        y = np.arange(10)
        batches = list(data.BatchLoader(x, y, 4, shuffle=False))
        assert all(np.shares_memory(batch, x) for batch, _ in batches)
        np.testing.assert_array_equal(np.concatenate([labels for _, labels in batches]), y)

    def test_errors(self):
        x = np.zeros((4, 2), dtype=np.float32)
        with pytest.raises(ValueError, match=r"y: expected 4 rows"):
            data.BatchLoader(x, np.zeros(3), 2, shuffle=False)
        with pytest.raises(ValueError, match="batch_size"):
            data.BatchLoader(x, np.zeros(4), 0, shuffle=False)
        with pytest.raises(TypeError, match="rng: shuffling needs a numpy.random.Generator"):
            data.BatchLoader(x, np.zeros(4), 2, shuffle=True)
        with pytest.raises(ValueError, match="x: empty data"):
            data.BatchLoader(np.zeros((0, 2), np.float32), np.zeros(0), 2, shuffle=False)


class TestGatherRows:
    """The loader's row gather (``_C.gather_rows``, threaded row copies): numpy.take's rows for
    every dtype and row shape, on every SIMD path and thread count; bad arguments refused."""

    @pytest.mark.parametrize("threads", [1, 2])
    @pytest.mark.parametrize("dtype, shape", [
        (np.float32, (1001, 37)), (np.float64, (53, 5, 3)), (np.int64, (777,)), (np.int32, (300, 1)),
        (np.bool_, (129, 7)), (np.uint8, (4100, 130)), (np.float16, (65, 3)), (np.complex64, (40, 2))])
    def test_equals_numpy_take(self, rng, simd_path, threads, dtype, shape):
        previous = ft.get_num_threads()
        ft.set_num_threads(threads)
        try:
            source = (rng.standard_normal(shape) * 50).astype(dtype)
            indices = rng.integers(0, shape[0], 2 * shape[0] + 3)  # repeats, any order
            out = np.full((indices.size,) + shape[1:], 7, dtype)
            _C.gather_rows(source, indices, out)
            np.testing.assert_array_equal(out, np.take(source, indices, axis=0))
        finally:
            ft.set_num_threads(previous)

    def test_no_indices_and_empty_rows(self):
        out = np.zeros((0, 4), np.float32)
        _C.gather_rows(np.ones((3, 4), np.float32), np.zeros(0, np.int64), out)
        empty_rows = np.zeros((2, 0), np.float32)
        _C.gather_rows(np.ones((3, 0), np.float32), np.array([2, 0]), empty_rows)

    @pytest.mark.parametrize("index", [-1, 10, 2 ** 40])
    def test_an_index_outside_the_rows_is_refused_by_position(self, index):
        indices = np.array([0, 3, index, 1])
        out = np.zeros((4, 2), np.float32)
        with pytest.raises(ValueError, match=rf"indices\[2\] = {index} is outside \[0, 10\)"):
            _C.gather_rows(np.ones((10, 2), np.float32), indices, out)
        assert not out.any()  # nothing written

    @pytest.mark.parametrize("make, message", [
        (lambda s, i: (s, i, np.zeros((3, 2), np.float64)), "out: expected the dtype of source"),
        (lambda s, i: (s, i, np.zeros((4, 2), np.float32)), "one row per index"),
        (lambda s, i: (s, i, np.zeros((3, 3), np.float32)), "one row per index"),
        (lambda s, i: (s, i, np.zeros((2, 3), np.float32).T), "out: expected a C-contiguous array"),
        (lambda s, i: (s[:, ::2], i, np.zeros((3, 1), np.float32)), "source: expected a C-contiguous array"),
        (lambda s, i: (s, i.astype(np.int32), np.zeros((3, 2), np.float32)), "indices: expected int64"),
        (lambda s, i: (s, i[:, None], np.zeros((3, 2), np.float32)), "indices must be 1-D"),
        (lambda s, i: (s, i, s[:3]), "out may not overlap source"),
        (lambda s, i: (np.array([[None, 1]] * 5, object), i, np.zeros((3, 2), object)), "not Python objects"),
    ])
    def test_bad_arguments(self, make, message):
        source = np.arange(10, dtype=np.float32).reshape(5, 2)
        args = make(source, np.array([4, 0, 2]))
        with pytest.raises((ValueError, TypeError), match=message):
            _C.gather_rows(*args)

    def test_read_only_out_is_refused(self):
        out = np.zeros((1, 2), np.float32)
        out.flags.writeable = False
        with pytest.raises(ValueError, match="read-only"):
            _C.gather_rows(np.ones((3, 2), np.float32), np.array([1]), out)
