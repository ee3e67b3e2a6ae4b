"""scikit-learn's own conformance suite (check_estimator) on both estimators, and its conventions:
random_state in every form scikit-learn accepts (seed as an alias), the fitted attributes,
warm_start, partial_fit, class_weight, sample_weight, pickling through the safetensors bytes,
get_params/set_params and clone, the device parameter, and sparse input densified one batch at
a time (a matrix whose dense form would not fit the test's memory bound)."""

import pickle
import tracemalloc
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
scipy_sparse = pytest.importorskip("scipy.sparse")

from sklearn.base import clone  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402

from fusedtrain.sklearn import EXPECTED_FAILED_CHECKS, MLPClassifier, MLPRegressor  # noqa: E402


def blobs(rows=120, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[2.0, 0.0, 0.0], [-2.0, 1.0, 0.0], [0.0, -2.0, 1.0]])
    labels = rng.integers(0, 3, rows)
    return (centres[labels] + 0.5 * rng.standard_normal((rows, 3))).astype(np.float64), np.array(["a", "b", "c"])[labels]


@pytest.mark.parametrize("estimator", [MLPClassifier(), MLPRegressor()], ids=lambda estimator: type(estimator).__name__)
def test_check_estimator_passes(estimator):
    expected = EXPECTED_FAILED_CHECKS[type(estimator).__name__]
    assert all(len(reason) > 40 for reason in expected.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(estimator, on_fail=None, expected_failed_checks=expected)
    failed = [(result["check_name"], str(result["exception"])[:200]) for result in results
              if result["status"] == "failed"]
    assert failed == []
    assert sum(result["status"] == "passed" for result in results) >= 55


def test_random_state_in_every_form_and_seed_as_its_alias():
    x, y = blobs()
    reference = MLPClassifier((8,), max_epochs=5, random_state=3).fit(x, y).predict_proba(x)
    np.testing.assert_array_equal(MLPClassifier((8,), max_epochs=5, seed=3).fit(x, y).predict_proba(x), reference)
    for state in (np.random.RandomState(1), np.random.default_rng(1)):
        first = MLPClassifier((8,), max_epochs=5, random_state=state).fit(x, y).predict_proba(x)
        assert first.shape == reference.shape
    a = MLPClassifier((8,), max_epochs=5, random_state=None).fit(x, y).predict_proba(x)
    b = MLPClassifier((8,), max_epochs=5, random_state=None).fit(x, y).predict_proba(x)
    assert not np.array_equal(a, b)
    with pytest.raises(ValueError, match=r"^seed, random_state: seed is an alias of random_state"):
        MLPClassifier(seed=1, random_state=2).fit(x, y)
    with pytest.raises(ValueError, match=r"^random_state: expected an integer >= 0"):
        MLPClassifier(random_state=-1).fit(x, y)


def test_fitted_attributes():
    pandas = pytest.importorskip("pandas")
    x, y = blobs()
    frame = pandas.DataFrame(x, columns=["p", "q", "r"])
    estimator = MLPClassifier((8,), max_epochs=30, random_state=0, early_stopping=True, patience=3).fit(frame, y)
    assert estimator.n_features_in_ == 3 and list(estimator.feature_names_in_) == ["p", "q", "r"]
    assert list(estimator.classes_) == ["a", "b", "c"]
    assert len(estimator.loss_curve_) == estimator.n_iter_ == len(estimator.validation_scores_)
    assert estimator.best_validation_score_ == max(estimator.validation_scores_)
    regressor = MLPRegressor((8,), max_epochs=10, random_state=0).fit(x, x[:, 0])
    assert regressor.best_loss_ == min(regressor.loss_curve_) and regressor.validation_scores_ is None
    assert regressor.predict(x).dtype == np.float64 and regressor.predict(x).shape == (x.shape[0],)
    with pytest.raises(ValueError, match=r"The feature names should match those that were passed during fit"):
        estimator.predict(frame.rename(columns={"p": "z"}))


def test_warm_start_continues_the_model():
    x, y = blobs()
    estimator = MLPClassifier((8,), max_epochs=3, patience=100, random_state=0, warm_start=True)
    estimator.fit(x, y)
    first_curve = list(estimator.loss_curve_)
    weights = estimator.model_.get_weights()
    estimator.fit(x, y)
    assert estimator.n_iter_ == 6 and estimator.loss_curve_[:3] == first_curve
    assert estimator.loss_curve_[3] < first_curve[0]  # continued, not restarted
    cold = MLPClassifier((8,), max_epochs=3, patience=100, random_state=0).fit(x, y)
    for before, after in zip(weights, cold.model_.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_partial_fit():
    x, y = blobs()
    estimator = MLPClassifier((8,), learning_rate=0.02, random_state=0)
    with pytest.raises(ValueError, match=r"^classes: the first call to partial_fit needs classes="):
        estimator.partial_fit(x[:40], y[:40])
    for start in range(0, 120, 40):
        estimator.partial_fit(x[start:start + 40], y[start:start + 40], classes=["a", "b", "c"])
    assert estimator.n_iter_ == 3 and list(estimator.classes_) == ["a", "b", "c"]
    for _ in range(60):
        estimator.partial_fit(x, y)
    assert (estimator.predict(x) == y).mean() > 0.9
    with pytest.raises(ValueError, match=r"^y: the label 'd' is not one of classes"):
        estimator.partial_fit(x[:2], np.array(["a", "d"]))
    regressor = MLPRegressor((8,), random_state=0)
    for _ in range(3):
        regressor.partial_fit(x, x[:, 0])
    assert regressor.n_iter_ == 3 and regressor.predict(x).shape == (120,)


def test_class_weight_and_sample_weight():
    x, y = blobs()
    table = {"a": 3.0, "b": 1.0, "c": 0.5}
    by_class = MLPClassifier((8,), max_epochs=5, patience=100, random_state=0, class_weight=table).fit(x, y)
    by_sample = MLPClassifier((8,), max_epochs=5, patience=100, random_state=0).fit(
        x, y, sample_weight=np.array([table[label] for label in y]))
    np.testing.assert_allclose(by_class.predict_proba(x), by_sample.predict_proba(x), rtol=1e-5, atol=1e-6)
    balanced = MLPClassifier((8,), max_epochs=5, random_state=0, class_weight="balanced").fit(x, y)
    assert balanced.predict_proba(x).shape == (120, 3)
    ones = MLPClassifier((8,), max_epochs=5, random_state=0).fit(x, y, sample_weight=np.ones(120))
    plain = MLPClassifier((8,), max_epochs=5, random_state=0).fit(x, y)
    np.testing.assert_allclose(ones.predict_proba(x), plain.predict_proba(x), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match=r"^class_weight: 'd' is not one of the classes"):
        MLPClassifier(class_weight={"d": 1.0}).fit(x, y)
    with pytest.raises(ValueError, match=r"Sample weights must contain at least one non-zero number"):
        MLPClassifier().fit(x, y, sample_weight=np.zeros(120))
    with pytest.raises(ValueError, match=r"Negative values in data passed to .sample_weight."):
        MLPClassifier().fit(x, y, sample_weight=-np.ones(120))


def test_pickling_goes_through_the_safetensors_bytes():
    x, y = blobs()
    estimator = MLPClassifier((8,), max_epochs=5, random_state=0).fit(x, y)
    payload = pickle.dumps(estimator)
    assert b"fusedtrain.model" in payload  # the model file's metadata, inside the pickle
    restored = pickle.loads(payload)
    np.testing.assert_array_equal(restored.predict_proba(x), estimator.predict_proba(x))
    assert "model_" in restored.__dict__ and "_model_bytes" not in restored.__dict__
    unfitted = pickle.loads(pickle.dumps(MLPRegressor(hidden_layer_sizes=(3,))))
    assert unfitted.get_params()["hidden_layer_sizes"] == (3,)


def test_params_round_trip_clone_and_device():
    estimator = MLPClassifier((8, 4), activation="tanh", random_state=5, class_weight="balanced", device="cpu")
    params = estimator.get_params()
    assert MLPClassifier().set_params(**params).get_params() == params
    copy = clone(estimator)
    assert copy is not estimator and copy.get_params() == params
    x, y = blobs()
    assert copy.fit(x, y).model_.device == "cpu"


@pytest.mark.parametrize("form", ["csr", "csc", "coo"])
def test_sparse_input_predicts_as_its_dense_form(form):
    x, y = blobs()
    matrix = scipy_sparse.csr_matrix(np.where(np.abs(x) > 0.5, x, 0.0)).asformat(form)
    estimator = MLPClassifier((8,), learning_rate=0.02, batch_size=32, max_epochs=40, random_state=0).fit(matrix, y)
    np.testing.assert_allclose(estimator.predict_proba(matrix), estimator.predict_proba(matrix.toarray()),
                               rtol=1e-6, atol=1e-7)
    assert (estimator.predict(matrix) == y).mean() > 0.85
    regressor = MLPRegressor((8,), max_epochs=3, random_state=0, early_stopping=True).fit(matrix, x[:, 0])
    assert len(regressor.validation_scores_) == regressor.n_iter_


def test_sparse_input_is_densified_one_batch_at_a_time():
    # 200,000 x 20,000: dense, 16 GB of float32; the test allows 400 MB.
    rows, columns = 200_000, 20_000
    rng = np.random.default_rng(0)
    count = 400_000
    matrix = scipy_sparse.csr_matrix((rng.standard_normal(count).astype(np.float32),
                                      (rng.integers(0, rows, count), rng.integers(0, columns, count))),
                                     shape=(rows, columns))
    target = np.asarray(matrix[:, :10].sum(axis=1)).ravel()
    tracemalloc.start()
    try:
        regressor = MLPRegressor((2,), max_epochs=1, batch_size=500, random_state=0).fit(matrix, target)
        predictions = regressor.predict(matrix)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert predictions.shape == (rows,) and np.isfinite(predictions).all()
    assert peak < 400 * 2 ** 20, f"peak {peak / 2 ** 20:.0f} MiB"
