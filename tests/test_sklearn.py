"""fusedtrain.sklearn: MLPClassifier / MLPRegressor as scikit-learn estimators (fit, predict,
predict_proba, score, get_params/set_params, clone, Pipeline, GridSearchCV), scikit-learn's
conventions (random_state, warm_start, partial_fit, class_weight, sample_weight, the fitted
attributes, pickling, the device), the error messages compared with scikit-learn's own
MLPClassifier, and the optional dependency: ``import fusedtrain`` never imports scikit-learn.
scikit-learn's check_estimator suite: test_sklearn_checks.py; sparse input:
test_sklearn_sparse.py."""

import copy
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sklearn")

from scipy import sparse  # noqa: E402
from sklearn import neural_network  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, DataConversionWarning, NotFittedError  # noqa: E402
from sklearn.metrics import accuracy_score, r2_score  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils import shuffle  # noqa: E402
from sklearn.utils.class_weight import compute_sample_weight  # noqa: E402

import fusedtrain as ft  # noqa: E402
from fusedtrain import backends  # noqa: E402
from fusedtrain.data import train_val_test_split  # noqa: E402
from fusedtrain.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


# Tiny models: one kernel thread (see conftest.py). Most fits here end at max_epochs on purpose;
# test_convergence_warning checks the warning itself.
pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")]


@pytest.fixture(scope="module")
def iris():
    x, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    return x, names


def test_classifier_in_a_pipeline_with_string_labels(iris):
    x, names = iris
    pipeline = make_pipeline(StandardScaler(), MLPClassifier((16,), learning_rate=1e-2, max_epochs=100, seed=0))
    pipeline.fit(x, names)
    estimator = pipeline[-1]
    np.testing.assert_array_equal(estimator.classes_, ["setosa", "versicolor", "virginica"])
    assert estimator.n_features_in_ == 4 and 1 <= estimator.n_iter_ <= 100
    assert pipeline.score(x, names) > 0.93
    probabilities = pipeline.predict_proba(x)
    assert probabilities.shape == (150, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(pipeline.predict(x), estimator.classes_[probabilities.argmax(axis=1)])


def test_grid_search(iris):
    x, names = iris
    search = GridSearchCV(make_pipeline(StandardScaler(), MLPClassifier(max_epochs=30, seed=0)),
                          {"mlpclassifier__hidden_layer_sizes": [(4,), (16,)],
                           "mlpclassifier__learning_rate": [1e-2]}, cv=2)
    search.fit(x, names)
    assert search.best_params_["mlpclassifier__hidden_layer_sizes"] in [(4,), (16,)]
    assert len(search.cv_results_["mean_test_score"]) == 2
    assert search.score(x, names) > 0.6


def test_parameters_are_kept_as_given_and_clone():
    estimator = MLPClassifier(hidden_layer_sizes=[8, 4], activation="logistic", batch_size=16, seed=3)
    params = estimator.get_params()
    assert params["hidden_layer_sizes"] == [8, 4] and params["activation"] == "logistic"
    assert params["batch_size"] == 16 and params["seed"] == 3 and params["max_epochs"] == 200
    estimator.set_params(max_epochs=5, optimizer="sgd")
    assert estimator.max_epochs == 5 and estimator.optimizer == "sgd"
    copy = clone(estimator)
    assert copy.get_params() == estimator.get_params()


def test_binary_and_integer_labels():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 3))
    y = np.where(x[:, 0] + x[:, 1] > 0, 5, -2)
    estimator = MLPClassifier((8,), learning_rate=1e-2, max_epochs=60, seed=0).fit(x, y)
    np.testing.assert_array_equal(estimator.classes_, [-2, 5])
    assert set(np.unique(estimator.predict(x))) <= {-2, 5}
    assert estimator.score(x, y) > 0.9


def test_same_seed_same_model(iris):
    x, names = iris
    first = MLPClassifier((8,), max_epochs=5, seed=1).fit(x, names)
    second = MLPClassifier((8,), max_epochs=5, seed=1).fit(x, names)
    np.testing.assert_array_equal(first.predict_proba(x), second.predict_proba(x))
    assert first.history_ == second.history_


def test_early_stopping_holds_out_validation_data(iris):
    x, names = iris
    estimator = MLPClassifier((8,), learning_rate=0.05, max_epochs=200, early_stopping=True,
                              validation_fraction=0.2, patience=3, seed=0)
    estimator.fit(StandardScaler().fit_transform(x), names)
    assert estimator.n_iter_ < 200
    assert len(estimator.history_["loss"]) == len(estimator.validation_scores_) == estimator.n_iter_


def test_training_loss_plateau_stops_without_early_stopping():
    x = np.linspace(-1, 1, 40).reshape(20, 2)
    y = np.repeat([0, 1], 10)
    estimator = MLPClassifier((4,), learning_rate=1e-9, max_epochs=100, patience=2, tol=1e-3, seed=0).fit(x, y)
    # With a negligible learning rate the loss never improves by tol: stop after patience + 1 epochs.
    assert estimator.n_iter_ == 3


def test_regressor():
    rng = np.random.default_rng(1)
    x = rng.uniform(-2, 2, (400, 2))
    y = np.sin(x[:, 0]) + 0.5 * x[:, 1]
    estimator = MLPRegressor((32,), activation="tanh", learning_rate=1e-2, max_epochs=150, seed=0).fit(x, y)
    predictions = estimator.predict(x)
    assert predictions.shape == (400,) and estimator.n_outputs_ == 1
    assert estimator.score(x, y) > 0.95
    two = MLPRegressor((16,), max_epochs=3, seed=0).fit(x, np.stack([y, -y], axis=1))
    assert two.predict(x).shape == (400, 2)


def test_regressor_in_a_pipeline_with_grid_search():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 100, (120, 3))
    y = x @ np.array([0.01, -0.02, 0.03])
    search = GridSearchCV(make_pipeline(StandardScaler(), MLPRegressor(max_epochs=40, learning_rate=1e-2, seed=0)),
                          {"mlpregressor__hidden_layer_sizes": [(8,), (4, 4)]}, cv=2)
    search.fit(x, y)
    assert search.best_score_ > 0.5


@pytest.mark.parametrize("estimator, y, error, message", [
    (MLPClassifier(), np.zeros(10), ValueError, r"needs samples of at least 2 classes, got 1 class \(0.0\)"),
    (MLPClassifier(activation="swish"), np.arange(10) % 2, ValueError, "activation: expected one of"),
    (MLPClassifier(optimizer="adagrad"), np.arange(10) % 2, ValueError, "optimizer: expected one of"),
    (MLPClassifier(hidden_layer_sizes=(0,)), np.arange(10) % 2, ValueError, r"hidden_layer_sizes\[0\]"),
    (MLPClassifier(batch_size="big"), np.arange(10) % 2, TypeError, "batch_size"),
    (MLPClassifier(), np.arange(9) % 2, ValueError, r"inconsistent numbers of samples: \[10, 9\]"),
    (MLPRegressor(), np.zeros((10, 2, 2)), ValueError, "Found array with dim 3"),
    (MLPRegressor(l2=-1.0), np.zeros(10), ValueError, "l2"),
    (MLPRegressor(learning_rate=0.0), np.zeros(10), ValueError, "learning_rate"),
    (MLPRegressor(max_epochs=0), np.zeros(10), ValueError, "max_epochs"),
    (MLPRegressor(shuffle="yes"), np.zeros(10), TypeError, "shuffle"),
    (MLPRegressor(warm_start=1), np.zeros(10), TypeError, "warm_start"),
    (MLPRegressor(early_stopping=True, validation_fraction=1.0), np.zeros(10), ValueError, "validation_fraction"),
    (MLPRegressor(early_stopping=True, validation_fraction=0.01), np.zeros(10), ValueError,
     r"validation_fraction: 0.01 of n_samples=10 leaves no validation data"),
    (MLPRegressor(random_state=-1), np.zeros(10), ValueError,
     r"random_state: expected an integer in \[0, 4294967295\]"),
    (MLPRegressor(random_state=2 ** 32), np.zeros(10), ValueError, "random_state"),
    (MLPRegressor(random_state=1.5), np.zeros(10), TypeError, "random_state: expected None, an integer"),
    (MLPRegressor(seed="0"), np.zeros(10), TypeError, "seed: expected None, an integer"),
    (MLPRegressor(seed=1, random_state=1), np.zeros(10), ValueError, "seed: is an alias of random_state"),
    (MLPRegressor(device="tpu"), np.zeros(10), ValueError, "device"),
])
def test_bad_arguments(estimator, y, error, message):
    with pytest.raises(error, match=message):
        estimator.fit(np.random.default_rng(0).standard_normal((10, 3)), y)


@pytest.mark.parametrize("container", [np.asarray, lambda x: x.tolist(), lambda x: x.astype(object)],
                         ids=["array", "list", "objects"])
def test_values_that_overflow_float32_name_their_position(container):
    x = np.ones((10, 2))
    x[3, 1] = 1e300
    with pytest.raises(ValueError, match=r"X: the value 1e\+300 at row 3, column 1 overflows float32"):
        MLPClassifier().fit(container(x), np.arange(10) % 2)


def test_predict_before_fit_and_with_the_wrong_width(iris):
    x, names = iris
    for method in ("predict", "predict_proba", "predict_log_proba"):
        with pytest.raises(NotFittedError):
            getattr(MLPClassifier(), method)(x)
    estimator = MLPClassifier((4,), max_epochs=2, seed=0).fit(x, names)
    with pytest.raises(ValueError, match="X has 3 features, but MLPClassifier is expecting 4 features as input"):
        estimator.predict(x[:, :3])


def test_importing_fusedtrain_does_not_import_sklearn():
    code = "import sys, fusedtrain; print('sklearn' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_clear_error_without_sklearn():
    code = ("import sys; sys.modules['sklearn'] = None\n"
            "try:\n    import fusedtrain.sklearn\nexcept ImportError as error:\n    print(error)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "fusedtrain.sklearn needs scikit-learn 1.6 or newer: pip install -U scikit-learn" in result.stdout


# scikit-learn's messages ------------------------------------------------------------------------

def _bad_inputs():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((10, 3))
    with_nan, with_inf, with_object = x.copy(), x.copy(), x.astype(object)
    with_nan[2, 1], with_inf[4, 0], with_object[0, 0] = np.nan, np.inf, {"a": 1}
    return {
        "no samples": np.empty((0, 3)), "no features": np.empty((10, 0)), "NaN": with_nan, "infinity": with_inf,
        "an object that is not a number": with_object, "complex numbers": x + 1j, "text": np.full((10, 3), "a"),
        "a 1-D array": x[:, 0], "a 3-D array": x.reshape(10, 3, 1),
        "a sparse matrix with NaN": sparse.csr_matrix(with_nan),
        "a list with NaN": with_nan.tolist(), "a list with infinity": with_inf.tolist(),
        "numbers as objects with infinity": with_inf.astype(object),
    }


def _error(call):
    try:
        call()
    except Exception as error:  # the type and the text are what is compared
        return type(error), str(error)
    return None


@pytest.mark.parametrize("case", list(_bad_inputs()))
@pytest.mark.parametrize("ours, theirs", [(MLPClassifier, neural_network.MLPClassifier),
                                          (MLPRegressor, neural_network.MLPRegressor)])
def test_bad_features_get_scikit_learns_messages(case, ours, theirs):
    """The same exception type and text as scikit-learn's own MLP (whose class name is the same)."""
    x = _bad_inputs()[case]
    y = np.arange(x.shape[0] if hasattr(x, "shape") else len(x)) % 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        expected = _error(lambda: theirs(max_iter=2).fit(x, y))
        got = _error(lambda: ours(max_epochs=2).fit(x, y))
    assert expected is not None and got == expected


@pytest.mark.parametrize("case", ["NaN", "infinity", "a 1-D array", "no samples", "a sparse matrix with NaN"])
def test_bad_features_in_predict_get_scikit_learns_messages(case):
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((10, 3)), np.arange(10) % 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = neural_network.MLPClassifier(max_iter=2).fit(x, y)
        ours = MLPClassifier(max_epochs=2).fit(x, y)
    bad = _bad_inputs()[case]
    expected = _error(lambda: theirs.predict(bad))
    assert expected is not None and _error(lambda: ours.predict(bad)) == expected
    wrong_width = _error(lambda: theirs.predict(x[:, :2]))
    assert _error(lambda: ours.predict(x[:, :2])) == wrong_width


@pytest.mark.parametrize("y, message", [
    (None, "requires y to be passed, but the target y is None"),
    (np.where(np.arange(10) % 2, np.nan, 1.0), "Input y contains NaN"),
    (np.linspace(0, 1, 10), "Unknown label type: continuous"),
    (np.arange(20).reshape(10, 2) % 2, r"y should be a 1d array, got an array of shape \(10, 2\) instead"),
])
def test_bad_labels_get_scikit_learns_messages(y, message):
    with pytest.raises(ValueError, match=message):
        MLPClassifier(max_epochs=2).fit(np.ones((10, 3)), y)


def test_a_column_of_labels_warns_as_scikit_learn_does():
    x = np.random.default_rng(2).standard_normal((20, 3))
    y = np.arange(20) % 2
    for estimator in (MLPClassifier((4,), max_epochs=2, random_state=0),
                      MLPRegressor((4,), max_epochs=2, random_state=0)):
        with pytest.warns(DataConversionWarning, match="A column-vector y was passed when a 1d array was expected"):
            estimator.fit(x, y[:, None])
        assert estimator.predict(x).shape == (20,)


# random_state -----------------------------------------------------------------------------------

def _blobs(rows=90, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]])
    labels = np.arange(rows) % 3
    return centers[labels] + rng.standard_normal((rows, 3)), labels


def _fit(estimator, x, y, **kwargs):
    return estimator.fit(x, y, **kwargs).predict_proba(x)


def test_random_state_int_reproduces_and_seed_is_its_alias():
    x, y = _blobs()
    first = _fit(MLPClassifier((8,), max_epochs=4, random_state=3), x, y)
    np.testing.assert_array_equal(first, _fit(MLPClassifier((8,), max_epochs=4, random_state=3), x, y))
    np.testing.assert_array_equal(first, _fit(MLPClassifier((8,), max_epochs=4, seed=3), x, y))
    np.testing.assert_array_equal(first, _fit(MLPClassifier((8,), max_epochs=4, random_state=np.int64(3)), x, y))
    assert not np.array_equal(first, _fit(MLPClassifier((8,), max_epochs=4, random_state=4), x, y))
    # The same estimator fitted twice gives the same model (check_fit_idempotent).
    estimator = MLPClassifier((8,), max_epochs=4, random_state=3)
    np.testing.assert_array_equal(_fit(estimator, x, y), _fit(estimator, x, y))


@pytest.mark.parametrize("make", [np.random.RandomState, np.random.default_rng])
def test_random_state_objects_draw_a_seed_per_fit(make):
    x, y = _blobs()
    shared = MLPClassifier((8,), max_epochs=3, random_state=make(5))
    first, second = _fit(shared, x, y), _fit(shared, x, y)
    # The object's state moves on: a second fit is another model, as in scikit-learn ...
    assert not np.array_equal(first, second)
    # ... and a fresh object in the same state gives the first model again.
    np.testing.assert_array_equal(first, _fit(MLPClassifier((8,), max_epochs=3, random_state=make(5)), x, y))


def test_random_state_none_follows_numpys_global_seed():
    x, y = _blobs()
    np.random.seed(11)
    first = _fit(MLPClassifier((8,), max_epochs=3), x, y)
    second = _fit(MLPClassifier((8,), max_epochs=3), x, y)
    np.random.seed(11)
    np.testing.assert_array_equal(first, _fit(MLPClassifier((8,), max_epochs=3), x, y))
    assert not np.array_equal(first, second)


# Fitted attributes ------------------------------------------------------------------------------

def test_fitted_attributes_without_early_stopping():
    x, y = _blobs()
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    estimator = MLPClassifier((8,), max_epochs=7, random_state=0).fit(frame, y)
    assert estimator.n_features_in_ == 3
    np.testing.assert_array_equal(estimator.feature_names_in_, ["a", "b", "c"])
    assert estimator.n_iter_ == len(estimator.loss_curve_) == 7
    assert estimator.loss_ == estimator.loss_curve_[-1] and estimator.best_loss_ == min(estimator.loss_curve_)
    assert estimator.validation_scores_ is None and estimator.best_validation_score_ is None
    assert estimator.loss_curve_[-1] < estimator.loss_curve_[0]
    with pytest.raises(ValueError, match="The feature names should match those that were passed during fit"):
        estimator.predict(frame.rename(columns={"a": "z"}))
    np.testing.assert_allclose(estimator.predict_log_proba(frame), np.log(estimator.predict_proba(frame)))


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_validation_scores_are_the_held_out_scores(kind):
    """The held-out part is the split train_val_test_split makes with the estimator's seed
    (stratified for the classifier); best_validation_score_ is the restored model's score on it."""
    x, labels = _blobs(rows=150)
    if kind == "classifier":
        y, estimator, score = labels, MLPClassifier, accuracy_score
    else:
        y, estimator, score = x @ np.array([1.0, -2.0, 0.5]), MLPRegressor, r2_score
    fitted = estimator((16,), learning_rate=0.01, max_epochs=200, early_stopping=True, validation_fraction=0.2,
                       patience=4, random_state=7).fit(x, y)
    count = np.arange(150)
    _, (held_out, _), _ = train_val_test_split(count, count, (0.8, 0.2, 0.0),
                                               stratify=labels if kind == "classifier" else None, seed=7)
    assert held_out.shape == (30,)
    assert len(fitted.validation_scores_) == fitted.n_iter_ < 200
    assert fitted.best_validation_score_ in fitted.validation_scores_
    assert fitted.best_validation_score_ >= max(fitted.validation_scores_) - 1e-4  # tol
    assert fitted.best_loss_ is None
    np.testing.assert_allclose(score(y[held_out], fitted.predict(x[held_out])), fitted.best_validation_score_,
                               rtol=1e-6)
    assert fitted.best_validation_score_ > (0.8 if kind == "classifier" else 0.9)


def test_convergence_warning_when_max_epochs_ends_training():
    x, y = _blobs()
    with pytest.warns(ConvergenceWarning, match=r"max_epochs \(2\) reached"):
        MLPClassifier((8,), max_epochs=2, random_state=0).fit(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        # Stopped by the training-loss rule, or one epoch of partial_fit: no warning.
        MLPClassifier((4,), learning_rate=1e-9, max_epochs=100, patience=2, tol=1e-3, random_state=0).fit(x, y)
        MLPClassifier((4,), random_state=0).partial_fit(x, y, classes=[0, 1, 2])


# warm_start and partial_fit ---------------------------------------------------------------------

def test_warm_start_continues_the_fitted_network():
    x, y = _blobs()
    cold = MLPClassifier((8,), learning_rate=0.01, max_epochs=5, random_state=0).fit(x, y)
    warm = MLPClassifier((8,), learning_rate=0.01, max_epochs=5, random_state=0, warm_start=True).fit(x, y)
    np.testing.assert_array_equal(cold.predict_proba(x), warm.predict_proba(x))
    first_curve = list(warm.loss_curve_)
    warm.fit(x, y)
    assert warm.n_iter_ == 10 and warm.loss_curve_[:5] == first_curve
    # The second call starts where the first ended, not from new weights.
    assert warm.loss_curve_[5] < first_curve[0] and abs(warm.loss_curve_[5] - first_curve[-1]) < 0.1
    cold.fit(x, y)
    assert cold.n_iter_ == 5 and cold.loss_curve_ == first_curve


def test_warm_start_refuses_what_would_need_another_network():
    x, y = _blobs()
    estimator = MLPClassifier((8,), max_epochs=2, random_state=0, warm_start=True).fit(x, y)
    with pytest.raises(ValueError, match=r"hidden_layer_sizes: is \(4,\), but the fitted network was built with "
                                         r"\(8,\)"):
        estimator.set_params(hidden_layer_sizes=(4,)).fit(x, y)
    with pytest.raises(ValueError, match="warm_start can only be used where y has the same classes"):
        estimator.set_params(hidden_layer_sizes=(8,)).fit(x[y < 2], y[y < 2])
    with pytest.raises(ValueError, match="X has 2 features, but MLPClassifier is expecting 3 features"):
        estimator.fit(x[:, :2], y)
    # A new learning rate or optimizer applies to the same network.
    estimator.set_params(learning_rate=0.05, optimizer="sgd").fit(x, y)
    assert isinstance(estimator.model_.optimizer, ft.optimizers.SGD)
    assert estimator.model_.optimizer.learning_rate == 0.05 and estimator.n_iter_ == 4


def test_partial_fit_is_one_epoch_of_fit():
    x, y = _blobs()
    once = MLPClassifier((8,), random_state=2).partial_fit(x, y, classes=[0, 1, 2])
    fitted = MLPClassifier((8,), max_epochs=1, random_state=2).fit(x, y)
    np.testing.assert_array_equal(once.predict_proba(x), fitted.predict_proba(x))
    assert once.n_iter_ == 1 and once.loss_curve_ == fitted.loss_curve_
    once.partial_fit(x, y)
    assert once.n_iter_ == 2 and once.loss_curve_[1] < once.loss_curve_[0]


def test_partial_fit_classes():
    x, y = _blobs()
    labels = np.array(["a", "b", "c"])[y]
    with pytest.raises(ValueError, match="classes must be passed on the first call to partial_fit"):
        MLPClassifier().partial_fit(x, labels)
    estimator = MLPClassifier((8,), random_state=0)
    # A first batch without "c": the network still has a unit for it.
    estimator.partial_fit(x[labels != "c"], labels[labels != "c"], classes=["c", "a", "b"])
    np.testing.assert_array_equal(estimator.classes_, ["a", "b", "c"])
    assert estimator.predict_proba(x).shape == (90, 3)
    estimator.partial_fit(x, labels)
    with pytest.raises(ValueError, match=r"y: has classes not in classes_ \(\['a', 'b', 'c'\]\): \['d'\]"):
        estimator.partial_fit(x[:2], ["a", "d"])
    with pytest.raises(ValueError, match="is not the same as on the first call to partial_fit"):
        estimator.partial_fit(x, labels, classes=["a", "b"])
    with pytest.raises(ValueError, match="X has 2 features, but MLPClassifier is expecting 3 features"):
        estimator.partial_fit(x[:, :2], labels)
    with pytest.raises(ValueError, match="class_weight: 'balanced' is not supported by partial_fit"):
        MLPClassifier(class_weight="balanced").partial_fit(x, labels, classes=["a", "b", "c"])


def test_partial_fit_with_sample_weight_is_one_epoch_of_fit_with_it():
    x, y = _blobs()
    weights = np.random.default_rng(5).uniform(0.0, 2.0, 90)
    for estimator, target in ((MLPClassifier, y), (MLPRegressor, x.sum(axis=1))):
        extra = {"classes": [0, 1, 2]} if estimator is MLPClassifier else {}
        once = estimator((8,), random_state=2).partial_fit(x, target, sample_weight=weights, **extra)
        fitted = estimator((8,), max_epochs=1, random_state=2).fit(x, target, sample_weight=weights)
        unweighted = estimator((8,), max_epochs=1, random_state=2).fit(x, target)
        method = "predict_proba" if estimator is MLPClassifier else "predict"
        np.testing.assert_array_equal(getattr(once, method)(x), getattr(fitted, method)(x))
        assert once.loss_curve_ == fitted.loss_curve_ != unweighted.loss_curve_


def test_regressor_warm_start_and_warm_start_with_early_stopping():
    x, _ = _blobs()
    y = x.sum(axis=1)
    cold = MLPRegressor((8,), learning_rate=0.01, max_epochs=4, random_state=0).fit(x, y)
    warm = MLPRegressor((8,), learning_rate=0.01, max_epochs=4, random_state=0, warm_start=True).fit(x, y)
    np.testing.assert_array_equal(cold.predict(x), warm.predict(x))
    first_curve = list(warm.loss_curve_)
    warm.fit(x, y)
    assert warm.n_iter_ == 8 and warm.loss_curve_[:4] == first_curve and warm.loss_curve_[4] < first_curve[0]
    # With early stopping, each call holds out its own validation rows and scores them; the
    # scores of both calls are kept, the best is the last call's.
    stopping = MLPClassifier((8,), max_epochs=3, early_stopping=True, random_state=0, warm_start=True)
    stopping.fit(*_blobs())
    first_scores = list(stopping.validation_scores_)
    stopping.fit(*_blobs())
    assert len(stopping.validation_scores_) == stopping.n_iter_ == 6
    assert stopping.validation_scores_[:3] == first_scores
    assert stopping.best_validation_score_ == max(stopping.validation_scores_[3:])


def test_regressor_partial_fit():
    x, _ = _blobs()
    y = np.stack([x.sum(axis=1), x[:, 0]], axis=1)
    estimator = MLPRegressor((8,), learning_rate=0.01, random_state=0)
    for _ in range(3):
        estimator.partial_fit(x, y)
    assert estimator.n_iter_ == 3 and estimator.n_outputs_ == 2
    assert estimator.loss_curve_[2] < estimator.loss_curve_[0]
    with pytest.raises(ValueError, match="y: has 1 targets per sample, but the fitted network has 2"):
        estimator.partial_fit(x, y[:, 0])


# Weights ----------------------------------------------------------------------------------------

def test_balanced_class_weight_is_scikit_learns_sample_weight():
    x, y = _blobs()
    keep = (y != 2) | (np.arange(90) % 5 == 0)  # class 2 rare
    x, labels = x[keep], np.array(["a", "b", "c"])[y[keep]]
    balanced = _fit(MLPClassifier((8,), max_epochs=5, random_state=0, class_weight="balanced"), x, labels)
    weights = compute_sample_weight("balanced", labels)
    np.testing.assert_array_equal(balanced, _fit(MLPClassifier((8,), max_epochs=5, random_state=0), x, labels,
                                                 sample_weight=weights))
    by_label = _fit(MLPClassifier((8,), max_epochs=5, random_state=0, class_weight={"c": 4.0, "a": 0.5}), x, labels)
    weights = np.select([labels == "c", labels == "a"], [4.0, 0.5], 1.0)
    np.testing.assert_array_equal(by_label, _fit(MLPClassifier((8,), max_epochs=5, random_state=0), x, labels,
                                                 sample_weight=weights))
    with pytest.raises(ValueError, match=r"class_weight: 'd' is not one of the classes \['a', 'b', 'c'\]"):
        MLPClassifier(class_weight={"d": 1.0}).fit(x, labels)
    with pytest.raises(TypeError, match="class_weight: expected None, 'balanced' or a dict"):
        MLPClassifier(class_weight=[1.0, 2.0]).fit(x, labels)


def _softmax_cross_entropy(weights, x, y):
    """float64 reference: per-sample cross-entropy of a one-hidden-layer ReLU network."""
    kernel0, bias0, kernel1, bias1 = (np.asarray(w, dtype=np.float64) for w in weights)
    logits = np.maximum(x @ kernel0 + bias0, 0.0) @ kernel1 + bias1
    logits -= logits.max(axis=1, keepdims=True)
    return np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(len(y)), y]


def test_sample_weight_scales_each_samples_loss_as_keras():
    """One full batch, and a learning rate too small to move any weight: loss_curve_[0] is the
    loss of the final weights, sum(w * loss) / n (Keras), against a float64 reference."""
    x, y = _blobs(rows=60)
    weights = np.random.default_rng(3).uniform(0.0, 3.0, 60)
    estimator = MLPClassifier((8,), optimizer="sgd", learning_rate=1e-30, batch_size=60, max_epochs=1,
                              random_state=0).fit(x, y, sample_weight=weights)
    expected = np.sum(weights * _softmax_cross_entropy(estimator.model_.get_weights(), x, y)) / 60
    np.testing.assert_allclose(estimator.loss_curve_[0], expected, rtol=1e-5)


@pytest.mark.parametrize("estimator, atol", [(MLPClassifier, 1e-4), (MLPRegressor, 1e-5)])
def test_integer_sample_weight_is_close_to_repeating_the_sample(estimator, atol):
    """scikit-learn's check_sample_weight_equivalence in its own setting (its data, weights and
    shuffled weighted rows, the estimators' default parameters: one full batch of Adam for 200
    epochs), at float32's tolerance instead of the check's rtol=1e-7, which is float64's: the
    weighted loss differs from the repeated rows' by a constant factor that Adam's step does not
    see, so what is left is rounding."""
    rng = np.random.RandomState(42)
    x = rng.rand(15, 30)
    y = rng.randint(0, 3, size=15)
    weights = rng.randint(0, 5, size=15)
    if estimator is MLPRegressor:
        y = y.astype(np.float64)
    repeated = estimator(random_state=0).fit(np.repeat(x, weights, axis=0), np.repeat(y, weights))
    x_weighted, y_weighted, shuffled_weights = shuffle(x, y, weights, random_state=0)
    weighted = estimator(random_state=0).fit(x_weighted, y_weighted, sample_weight=shuffled_weights)
    assert repeated.n_iter_ == weighted.n_iter_ == 200
    method = "predict_proba" if estimator is MLPClassifier else "predict"
    np.testing.assert_allclose(getattr(weighted, method)(x), getattr(repeated, method)(x), rtol=1e-3, atol=atol)


def test_sample_weights_that_leave_nothing_to_learn():
    x, y = _blobs()
    with pytest.raises(ValueError, match="sample_weight: all the weights are zero"):
        MLPClassifier().fit(x, y, sample_weight=np.zeros(90))
    with pytest.raises(ValueError, match=r"only the samples of class 1 have a non-zero weight; a classifier needs"):
        MLPClassifier().fit(x, y, sample_weight=(y == 1).astype(float))
    with pytest.raises(ValueError, match=r"sample_weight: expected one weight per sample, shape \(90,\), got "
                                         r"shape \(45,\)"):
        MLPRegressor().fit(x, y, sample_weight=np.ones(45))
    with pytest.raises(ValueError, match="sample_weight: expected finite non-negative weights, got -1 at index 3"):
        MLPRegressor().fit(x, y, sample_weight=np.where(np.arange(90) == 3, -1.0, 1.0))
    with pytest.raises(TypeError, match="sample_weight: expected numeric weights"):
        MLPRegressor().fit(x, y, sample_weight=np.full(90, "1"))


# Parameters, pickling, device -------------------------------------------------------------------

def test_get_params_set_params_round_trip_and_tags():
    estimator = MLPClassifier((8, 4), random_state=np.random.RandomState(0), warm_start=True,
                              class_weight={1: 2.0}, device="cpu")
    params = estimator.get_params()
    assert {"random_state", "seed", "warm_start", "class_weight", "device"} <= set(params)
    copy_ = clone(estimator)
    assert copy_.get_params().keys() == params.keys() and copy_.class_weight == {1: 2.0}
    assert MLPClassifier().set_params(**params).get_params() == params
    assert "class_weight" not in MLPRegressor().get_params()
    assert MLPClassifier().__sklearn_tags__().input_tags.sparse
    assert MLPRegressor().__sklearn_tags__().target_tags.multi_output
    assert not MLPClassifier().__sklearn_tags__().target_tags.multi_output
    x, y = _blobs()
    fitted = MLPClassifier((4,), max_epochs=2, random_state=0).fit(x, y)
    assert not hasattr(clone(fitted), "model_")


@pytest.mark.parametrize("estimator", [MLPClassifier, MLPRegressor])
def test_pickling_stores_the_network_as_safetensors(estimator):
    x, y = _blobs()
    fitted = estimator((8,), max_epochs=3, random_state=0).fit(x, y)
    payload = pickle.dumps(fitted)
    # The network travels as a fusedtrain model file's bytes, not as pickled objects of fusedtrain.
    assert b"fusedtrain.models" not in payload and b"fusedtrain._C" not in payload
    stored = fitted.__getstate__()["model_"]
    assert ft.serialization.parse(stored["safetensors"], "state").format == "fusedtrain.model"
    assert "model_" in vars(fitted)
    restored = pickle.loads(payload)
    np.testing.assert_array_equal(restored.predict(x), fitted.predict(x))
    np.testing.assert_array_equal(copy.deepcopy(fitted).predict(x), fitted.predict(x))
    # Weights and optimizer state: both go on training exactly alike.
    fitted.partial_fit(x, y)
    restored.partial_fit(x, y)
    np.testing.assert_array_equal(restored.predict(x), fitted.predict(x))
    assert restored.loss_curve_ == fitted.loss_curve_
    unfitted = pickle.loads(pickle.dumps(estimator(random_state=3)))
    assert unfitted.random_state == 3 and not hasattr(unfitted, "model_")


def test_device_is_passed_to_the_network():
    x, y = _blobs()
    assert MLPClassifier((4,), max_epochs=1, device="cpu").fit(x, y).model_.device == "cpu"
    if backends.cuda_problem(0) is None:
        assert MLPClassifier((4,), max_epochs=1, device="cuda").fit(x, y).model_.device == "cuda:0"
    else:
        with pytest.raises(RuntimeError, match="device='cuda': cannot train on the GPU"):
            MLPClassifier((4,), max_epochs=1, device="cuda").fit(x, y)
