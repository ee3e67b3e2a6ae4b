"""fusedtrain.sklearn: MLPClassifier / MLPRegressor as scikit-learn estimators (fit, predict,
predict_proba, score, get_params/set_params, clone, Pipeline, GridSearchCV), and the optional
dependency: ``import fusedtrain`` never imports scikit-learn."""

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import fusedtrain as ft  # noqa: E402
from fusedtrain.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


# Tiny models: one kernel thread (see conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")


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
    assert len(estimator.validation_scores_) == estimator.n_iter_
    assert estimator.best_validation_score_ == max(estimator.validation_scores_) > 0.8
    assert estimator.n_iter_ < 200
    assert len(estimator.history_["loss"]) == estimator.n_iter_


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
    (MLPClassifier(), np.zeros(10), ValueError, "needs samples of at least 2 classes"),
    (MLPClassifier(activation="swish"), np.arange(10) % 2, ValueError, "activation: expected one of"),
    (MLPClassifier(optimizer="adagrad"), np.arange(10) % 2, ValueError, "optimizer: expected one of"),
    (MLPClassifier(hidden_layer_sizes=(0,)), np.arange(10) % 2, ValueError, r"hidden_layer_sizes\[0\]"),
    (MLPClassifier(batch_size="big"), np.arange(10) % 2, TypeError, "batch_size"),
    (MLPClassifier(), np.arange(9) % 2, ValueError, r"inconsistent numbers of samples: \[10, 9\]"),
    (MLPRegressor(), np.zeros((10, 2, 2)), ValueError, "Found array with dim 3"),
    (MLPRegressor(l2=-1.0), np.zeros(10), ValueError, "l2"),
])
def test_bad_arguments(estimator, y, error, message):
    with pytest.raises(error, match=message):
        estimator.fit(np.random.default_rng(0).standard_normal((10, 3)), y)


def test_nan_in_x_is_rejected():
    x = np.ones((10, 2))
    x[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"Input X contains NaN"):
        MLPClassifier().fit(x, np.arange(10) % 2)


def test_predict_before_fit_and_with_the_wrong_width(iris):
    x, names = iris
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(x)
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
    assert "fusedtrain.sklearn needs scikit-learn (1.6 or newer): pip install scikit-learn" in result.stdout
