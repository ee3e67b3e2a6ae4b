"""fusedtrain.sklearn on scipy.sparse input: a sparse matrix trains exactly as its dense form
(the same batches, bit for bit: fit densifies one batch at a time), predicts the same, and a
matrix whose dense form would need 16 GB trains and predicts within a few tens of MB."""

import tracemalloc
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
sparse = pytest.importorskip("scipy.sparse")

from fusedtrain.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")]

FORMATS = [sparse.csr_matrix, sparse.csc_matrix, sparse.csr_array, sparse.coo_matrix, sparse.lil_matrix]


@pytest.fixture(scope="module")
def mostly_zeros():
    """130 x 12 features, 70% zeros (odd sizes: the last batch of 32 holds 2 rows)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((130, 12))
    x[rng.random(x.shape) < 0.7] = 0.0
    return x, np.arange(130) % 3, rng.uniform(0.0, 2.0, 130)


@pytest.mark.parametrize("container", FORMATS, ids=lambda container: container.__name__)
@pytest.mark.parametrize("settings", [{}, {"dropout": 0.2}, {"early_stopping": True, "validation_fraction": 0.2},
                                      {"class_weight": "balanced"}, {"shuffle": False}],
                         ids=["plain", "dropout", "early_stopping", "class_weight", "no_shuffle"])
def test_a_sparse_matrix_trains_as_its_dense_form(mostly_zeros, container, settings):
    x, y, weights = mostly_zeros
    dense = MLPClassifier((8,), max_epochs=6, batch_size=32, random_state=0, **settings).fit(
        x, y, sample_weight=weights)
    on_sparse = MLPClassifier((8,), max_epochs=6, batch_size=32, random_state=0, **settings).fit(
        container(x), y, sample_weight=weights)
    assert on_sparse.loss_curve_ == dense.loss_curve_
    assert on_sparse.validation_scores_ == dense.validation_scores_
    np.testing.assert_array_equal(on_sparse.predict_proba(container(x)), dense.predict_proba(x))
    np.testing.assert_array_equal(dense.predict_proba(container(x)), dense.predict_proba(x))


def test_sparse_regressor_and_partial_fit(mostly_zeros):
    x, _, _ = mostly_zeros
    y = np.stack([x.sum(axis=1), x[:, 0] - x[:, 1]], axis=1)
    dense = MLPRegressor((8,), max_epochs=4, random_state=1).fit(x, y)
    on_sparse = MLPRegressor((8,), max_epochs=4, random_state=1).fit(sparse.csr_matrix(x), y)
    np.testing.assert_array_equal(on_sparse.predict(sparse.csc_matrix(x)), dense.predict(x))
    dense.partial_fit(x, y)
    on_sparse.partial_fit(sparse.csr_matrix(x), y)
    assert on_sparse.loss_curve_ == dense.loss_curve_ and on_sparse.n_iter_ == 5


def test_sparse_values_are_checked(mostly_zeros):
    x, y, _ = mostly_zeros
    bad = sparse.csr_matrix(x)
    bad.data[5] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        MLPClassifier().fit(bad, y)
    bad.data[5] = 1e300
    row, column = (int(index) for index in np.argwhere(bad.toarray() == 1e300)[0])
    with pytest.raises(ValueError, match=rf"X: the value 1e\+300 at row {row}, column {column} overflows float32"):
        MLPClassifier().fit(bad, y)


def test_a_matrix_too_large_to_densify_trains_one_batch_at_a_time():
    """200,000 x 20,000 at 0.01% density: 400,000 values (5 MB as CSR), 16 GB as a dense float32
    array. Every array NumPy and SciPy allocate (tracemalloc sees them all) stays under 1/100
    of the dense size while fit runs an epoch and predict scores every row."""
    rows, columns = 200_000, 20_000
    rng = np.random.default_rng(0)
    values = rows * columns // 10_000
    x = sparse.csr_matrix((rng.standard_normal(values), (rng.integers(0, rows, values),
                                                         rng.integers(0, columns, values))), shape=(rows, columns))
    y = (np.asarray(x[:, :50].sum(axis=1)).ravel() > 0).astype(np.int64)
    dense_bytes = rows * columns * 4
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            estimator = MLPClassifier((4,), max_epochs=1, random_state=0).fit(x, y)
        probabilities = estimator.predict_proba(x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert estimator.n_iter_ == 1 and np.isfinite(estimator.loss_)
    assert probabilities.shape == (rows, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert peak < dense_bytes / 100, f"peak {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize("container", [np.asarray, sparse.csr_matrix], ids=["dense", "sparse"])
def test_a_diverging_fit_stops_with_a_warning(mostly_zeros, container):
    x, _, _ = mostly_zeros
    y = 1e18 * np.ones(130)
    estimator = MLPRegressor((8,), optimizer="sgd", learning_rate=1e10, max_epochs=50, random_state=0)
    with pytest.warns(RuntimeWarning, match="the loss is not finite"):
        estimator.fit(container(x), y)
    assert estimator.n_iter_ < 50
