"""scikit-learn estimators backed by fusedtrain: ``MLPClassifier`` and ``MLPRegressor``, which
follow scikit-learn's estimator conventions and pass its own conformance suite
(``sklearn.utils.estimator_checks.check_estimator``), so that they work in a Pipeline,
GridSearchCV or cross_val_score like scikit-learn's MLPs. Importing this module needs
scikit-learn; ``import fusedtrain`` does not.

The network is Dense layers of ``hidden_layer_sizes`` with ``activation``, then a Dense output:
one unit per class with softmax cross-entropy (classifier; any labels, strings included, mapped
through ``classes_``), or one unit per target with mean squared error (regressor). Training is
fusedtrain's Sequential.fit; as scikit-learn's MLP, it stops when the training loss has not
improved by ``tol`` for ``patience`` epochs, or, with ``early_stopping=True``, when the
validation score on a held-out ``validation_fraction`` has not (the best weights restored).

Input is checked by scikit-learn's own validation (so the messages for empty data, NaN/Inf,
complex and object data, a wrong number of features, a 1-D X are scikit-learn's), then
converted to float32. scipy.sparse matrices (CSR, CSC, COO) are accepted and densified one batch
of rows at a time, in training and in prediction: the dense form of the whole matrix is never
made. ``random_state`` (an int, None, a RandomState or a Generator) seeds the weights, the
split and the shuffling; ``seed`` is an alias. A fitted estimator pickles through its model's
safetensors bytes (``model.save``), not through the kernels' objects."""

from __future__ import annotations

import os
import tempfile
from typing import Any, Dict, Optional, Sequence

import numpy as np

try:
    import scipy.sparse as sparse
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.metrics import r2_score
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data
except ImportError as error:  # scikit-learn is an optional dependency
    raise ImportError("fusedtrain.sklearn needs scikit-learn (1.6 or newer): pip install scikit-learn") from error

from . import layers, optimizers, regularizers
from .callbacks import Callback
from .data import train_val_test_split
from .models import Sequential
from .ops import _checks as check
from .serialization import load as load_model

_OPTIMIZERS = {"adam": optimizers.Adam, "adamw": optimizers.AdamW, "sgd": optimizers.SGD,
               "rmsprop": optimizers.RMSprop}
# scikit-learn's name for the sigmoid is accepted too.
_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "logistic": "sigmoid",
                "gelu": "gelu", "leaky_relu": "leaky_relu"}
# Rows densified at a time from a sparse matrix in prediction.
SPARSE_PREDICT_ROWS = 1024

# The checks of scikit-learn's check_estimator that these estimators fail, and why (pass it as
# check_estimator(estimator, expected_failed_checks=EXPECTED_FAILED_CHECKS[type(estimator)])).
_SAMPLE_WEIGHT_REASON = ("minibatch training: weighting a sample by 2 is not repeating it, which changes the batches "
                         "and the number of steps (scikit-learn's own MLPs fail it too)")
_ORDER_REASON = ("fusedtrain's GEMM sums a row's products in an order that depends on the row's tile (the 1- and "
                 "2-row and half-panel edge tiles split even and odd k for speed), so a prediction can change in "
                 "its last bit with the row's place in the batch; the check allows 1e-9")
EXPECTED_FAILED_CHECKS: Dict[str, Dict[str, str]] = {
    "MLPClassifier": {"check_sample_weight_equivalence_on_dense_data": _SAMPLE_WEIGHT_REASON,
                      "check_sample_weight_equivalence_on_sparse_data": _SAMPLE_WEIGHT_REASON,
                      "check_methods_sample_order_invariance": _ORDER_REASON,
                      "check_methods_subset_invariance": _ORDER_REASON},
    "MLPRegressor": {"check_sample_weight_equivalence_on_dense_data": _SAMPLE_WEIGHT_REASON,
                     "check_sample_weight_equivalence_on_sparse_data": _SAMPLE_WEIGHT_REASON,
                     "check_methods_sample_order_invariance": _ORDER_REASON,
                     "check_methods_subset_invariance": _ORDER_REASON},
}


def _seed_of(random_state: Any, seed: Any) -> Optional[int]:
    """The integer seed for ``random_state`` (scikit-learn's forms) or its alias ``seed``."""
    if seed is not None and random_state is not None and seed != random_state:
        raise ValueError(f"seed, random_state: seed is an alias of random_state; give one, got seed={seed!r} and "
                         f"random_state={random_state!r}")
    value = random_state if random_state is not None else seed
    if value is None:
        return None
    if isinstance(value, np.random.RandomState):
        return int(value.randint(0, 2 ** 31 - 1))
    if isinstance(value, np.random.Generator):
        return int(value.integers(0, 2 ** 31 - 1))
    return check.integer(value, "random_state", low=0)


class _ValidationScores(Callback):
    """Records the estimator's score (accuracy or R^2) on the validation data at each epoch, as
    ``val_score`` in the logs (what EarlyStopping monitors)."""

    def __init__(self, estimator: "_BaseMLP", x_val: np.ndarray, y_val: np.ndarray):
        super().__init__()
        self.estimator, self.x_val, self.y_val = estimator, x_val, y_val
        self.scores = []

    def on_epoch_end(self, epoch, logs=None):
        logs["val_score"] = self.estimator._validation_score(self.model, self.x_val, self.y_val)
        self.scores.append(logs["val_score"])


class _BaseMLP(BaseEstimator):
    """Shared by the two estimators: parameters are stored exactly as given (scikit-learn's
    clone and get_params rely on it) and checked in fit."""

    _loss = "mse"

    def __init__(self, hidden_layer_sizes: Sequence[int] = (100,), activation: str = "relu", *,
                 optimizer: str = "adam", learning_rate: float = 1e-3, batch_size: Any = "auto",
                 max_epochs: int = 200, l2: float = 0.0, dropout: float = 0.0, early_stopping: bool = False,
                 validation_fraction: float = 0.1, patience: int = 10, tol: float = 1e-4,
                 shuffle: bool = True, random_state: Any = None, warm_start: bool = False, seed: Any = None,
                 verbose: int = 0, device: str = "auto"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.l2 = l2
        self.dropout = dropout
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.tol = tol
        self.shuffle = shuffle
        self.random_state = random_state
        self.warm_start = warm_start
        self.seed = seed
        self.verbose = verbose
        self.device = device

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.allow_nan = False
        tags.target_tags.required = True
        # With a fixed random_state two fits give the same model (the checks rely on it).
        tags.non_deterministic = False
        return tags

    # Pickling: the model travels as its safetensors file ---------------------------------------

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        model = state.pop("model_", None)
        if model is not None:
            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, "model.safetensors")
                model.save(path)
                with open(path, "rb") as handle:
                    state["_model_bytes"] = handle.read()
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        stored = state.pop("_model_bytes", None)
        self.__dict__.update(state)
        if stored is not None:
            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, "model.safetensors")
                with open(path, "wb") as handle:
                    handle.write(stored)
                self.model_ = load_model(path, device=self.device)

    # Data ----------------------------------------------------------------------------------------

    def _check_X(self, X: Any, reset: bool) -> Any:
        """X as scikit-learn checks it (sparse kept sparse, as CSR), float32 where dense."""
        x = validate_data(self, X, accept_sparse=["csr", "csc", "coo"], dtype=[np.float32, np.float64],
                          reset=reset)
        return x.tocsr() if sparse.issparse(x) else np.ascontiguousarray(x, dtype=np.float32)

    def _check_X_y(self, X: Any, y: Any, reset: bool):
        x, y = validate_data(self, X, y, accept_sparse=["csr", "csc", "coo"], dtype=[np.float32, np.float64],
                             multi_output=self._multi_output, y_numeric=self._multi_output, reset=reset)
        x = x.tocsr() if sparse.issparse(x) else np.ascontiguousarray(x, dtype=np.float32)
        return x, y

    _multi_output = False

    @staticmethod
    def _dense(x: Any, rows: Any = None) -> np.ndarray:
        part = x if rows is None else x[rows]
        if sparse.issparse(part):
            return np.ascontiguousarray(part.toarray(), dtype=np.float32)
        return part

    # Training ------------------------------------------------------------------------------------

    def _build_model(self, input_dim: int, outputs: int, seed: Optional[int]) -> Sequential:
        if isinstance(self.hidden_layer_sizes, (int, np.integer)):
            sizes = [self.hidden_layer_sizes]
        else:
            sizes = list(self.hidden_layer_sizes)
        sizes = [check.integer(size, f"hidden_layer_sizes[{index}]", low=1) for index, size in enumerate(sizes)]
        activation = check.choice(self.activation, "activation", _ACTIVATIONS)
        optimizer_class = check.choice(self.optimizer, "optimizer", _OPTIMIZERS)
        l2 = check.real(self.l2, "l2", low=0.0)
        dropout = check.real(self.dropout, "dropout", low=0.0, high=1.0, high_open=True)
        regularizer = regularizers.L2(l2) if l2 > 0.0 else None
        model = Sequential(input_dim=input_dim, seed=seed, device=self.device)
        for size in sizes:
            model.add(layers.Dense(size, activation=activation, kernel_regularizer=regularizer))
            if dropout > 0.0:
                model.add(layers.Dropout(dropout))
        model.add(layers.Dense(outputs, kernel_regularizer=regularizer))
        model.compile(optimizer=optimizer_class(learning_rate=self.learning_rate), loss=self._loss)
        return model

    def _settings(self, rows: int) -> Dict[str, Any]:
        max_epochs = check.integer(self.max_epochs, "max_epochs", low=1)
        patience = check.integer(self.patience, "patience", low=0)
        tol = check.real(self.tol, "tol", low=0.0)
        batch_size = min(200, rows) if self.batch_size == "auto" else check.integer(self.batch_size, "batch_size", low=1)
        return {"max_epochs": max_epochs, "patience": patience, "tol": tol, "batch_size": batch_size,
                "shuffle": check.flag(bool(self.shuffle) if isinstance(self.shuffle, np.bool_) else self.shuffle,
                                      "shuffle"),
                "verbose": check.integer(int(self.verbose), "verbose", low=0)}

    def _fit(self, x: Any, targets: np.ndarray, outputs: int, stratify: Optional[np.ndarray],
             sample_weight: Any, class_weight: Any, epochs: Optional[int] = None):
        """Trains (a new model, or the current one with warm_start / partial_fit) on the checked
        x (dense float32 or CSR) and targets; epochs=None: until the stopping rule."""
        settings = self._settings(x.shape[0])
        seed = _seed_of(self.random_state, self.seed)
        if sample_weight is not None:
            # scikit-learn's checks and messages (negative weights, all zero, the wrong length).
            sample_weight = _check_sample_weight(sample_weight, x, dtype=np.float64, ensure_non_negative=True)
        continuing = getattr(self, "model_", None) is not None and (epochs is not None or self.warm_start)
        if continuing and self.model_.input_dim != x.shape[1]:
            raise ValueError(f"X has {x.shape[1]} features, but the fitted model takes {self.model_.input_dim}")
        model = self.model_ if continuing else self._build_model(x.shape[1], outputs, seed)
        x_val = y_val = None
        validation_weight = None
        if self.early_stopping and epochs is None:
            fraction = check.real(self.validation_fraction, "validation_fraction", low=0.0, high=1.0,
                                  low_open=True, high_open=True)
            rows = np.arange(x.shape[0])
            (train_rows, _), (val_rows, _), _ = train_val_test_split(
                rows.reshape(-1, 1).astype(np.float32), rows, (1.0 - fraction, fraction, 0.0),
                stratify=stratify, seed=seed)
            train_rows, val_rows = train_rows[:, 0].astype(np.int64), val_rows[:, 0].astype(np.int64)
            if val_rows.size == 0:
                raise ValueError(f"validation_fraction: {fraction} of the samples leaves no validation data")
            x_val, y_val = self._dense(x, val_rows), targets[val_rows]
            x, targets = x[train_rows], targets[train_rows]
            if sample_weight is not None:
                sample_weight = sample_weight[train_rows]
        epochs_to_run = settings["max_epochs"] if epochs is None else epochs
        # A continued fit (warm_start, partial_fit) draws a new order each call, still set by random_state.
        fit_seed = None if seed is None else seed + (self.n_iter_ if continuing else 0)
        train = self._fit_sparse if sparse.issparse(x) else self._fit_dense
        history = train(model, x, targets, x_val, y_val, sample_weight, class_weight, settings, epochs_to_run,
                        fit_seed, stop=epochs is None)
        self.model_ = model
        self.history_ = history
        losses = list(history["loss"])
        self.loss_curve_ = (getattr(self, "loss_curve_", []) if continuing else []) + losses
        self.loss_ = self.loss_curve_[-1]
        self.n_iter_ = (getattr(self, "n_iter_", 0) if continuing else 0) + len(losses)
        self.t_ = (getattr(self, "t_", 0) if continuing else 0) + len(losses) * x.shape[0]
        if x_val is not None:
            self.validation_scores_ = list(history["val_score"])
            self.best_validation_score_ = max(self.validation_scores_)
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.best_loss_ = min(self.loss_curve_)
        return self

    def _stopping(self, settings: Dict[str, Any], validation: bool):
        from .callbacks import EarlyStopping

        if validation:
            return EarlyStopping(monitor="val_score", mode="max", patience=settings["patience"],
                                 min_delta=settings["tol"], restore_best_weights=True)
        return EarlyStopping(monitor="loss", mode="min", patience=settings["patience"], min_delta=settings["tol"])

    def _fit_dense(self, model, x, targets, x_val, y_val, sample_weight, class_weight, settings, epochs, seed, stop):
        callbacks = []
        scores = _ValidationScores(self, x_val, y_val) if x_val is not None else None
        if scores is not None:
            callbacks.append(scores)
        if stop:
            callbacks.append(self._stopping(settings, x_val is not None))
        history = model.fit(x, targets, epochs=epochs, batch_size=settings["batch_size"], shuffle=settings["shuffle"],
                            callbacks=callbacks, verbose=min(settings["verbose"], 2), seed=seed,
                            sample_weight=sample_weight, class_weight=class_weight)
        # History records an epoch's logs before the callback adds its score: the scores are its own.
        return {**history.history, **({"val_score": scores.scores} if scores is not None else {})}

    def _fit_sparse(self, model, x, targets, x_val, y_val, sample_weight, class_weight, settings, epochs, seed, stop):
        """Epochs over a CSR matrix, one batch of rows densified at a time (train_on_batch)."""
        rng = np.random.default_rng(seed)
        rows = x.shape[0]
        batch = settings["batch_size"]
        history: Dict[str, list] = {"loss": []}
        if x_val is not None:
            history["val_score"] = []
        best, best_weights, waited = None, None, 0
        for _ in range(epochs):
            order = rng.permutation(rows) if settings["shuffle"] else np.arange(rows)
            total = 0.0
            for start in range(0, rows, batch):
                chosen = np.sort(order[start:start + batch])
                weight = None if sample_weight is None else sample_weight[chosen]
                total += model.train_on_batch(self._dense(x, chosen), targets[chosen], sample_weight=weight,
                                              class_weight=class_weight) * chosen.size
            history["loss"].append(total / rows)
            if x_val is not None:
                history["val_score"].append(self._validation_score(model, x_val, y_val))
            if not stop:
                continue
            value = history["val_score"][-1] if x_val is not None else -history["loss"][-1]
            if best is None or value > best + settings["tol"]:
                best, waited = value, 0
                if x_val is not None:
                    best_weights = model.get_weights()
            else:
                waited += 1
                if waited > settings["patience"]:
                    break
        if best_weights is not None:
            model.set_weights(best_weights)
        return history

    def _outputs(self, x: Any) -> np.ndarray:
        """The model's outputs for checked x, a sparse matrix densified SPARSE_PREDICT_ROWS rows
        at a time."""
        if not sparse.issparse(x):
            return self.model_.predict(x)
        return np.vstack([self.model_.predict(self._dense(x[start:start + SPARSE_PREDICT_ROWS]))
                          for start in range(0, x.shape[0], SPARSE_PREDICT_ROWS)])


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multi-layer perceptron classifier. ``classes_`` holds the sorted distinct labels;
    predict returns labels from it, predict_proba one column per class in that order.
    ``class_weight``: None, "balanced" or {label: weight} (fit's Keras semantics)."""

    _loss = "sparse_categorical_crossentropy"

    def __init__(self, hidden_layer_sizes: Sequence[int] = (100,), activation: str = "relu", *,
                 optimizer: str = "adam", learning_rate: float = 1e-3, batch_size: Any = "auto",
                 max_epochs: int = 200, l2: float = 0.0, dropout: float = 0.0, early_stopping: bool = False,
                 validation_fraction: float = 0.1, patience: int = 10, tol: float = 1e-4,
                 shuffle: bool = True, random_state: Any = None, warm_start: bool = False, class_weight: Any = None,
                 seed: Any = None, verbose: int = 0, device: str = "auto"):
        super().__init__(hidden_layer_sizes, activation, optimizer=optimizer, learning_rate=learning_rate,
                         batch_size=batch_size, max_epochs=max_epochs, l2=l2, dropout=dropout,
                         early_stopping=early_stopping, validation_fraction=validation_fraction, patience=patience,
                         tol=tol, shuffle=shuffle, random_state=random_state, warm_start=warm_start, seed=seed,
                         verbose=verbose, device=device)
        self.class_weight = class_weight

    def _labels(self, X: Any, y: Any, reset: bool):
        x, labels = self._check_X_y(X, y, reset)
        check_classification_targets(labels)
        return x, labels

    def _class_weight(self) -> Any:
        """class_weight with the labels as the model's class indices."""
        if self.class_weight is None or (isinstance(self.class_weight, str) and self.class_weight == "balanced"):
            return self.class_weight
        if not isinstance(self.class_weight, dict):
            raise TypeError(f"class_weight: expected None, 'balanced' or a dict {{label: weight}}, got "
                            f"{type(self.class_weight).__name__}")
        index = {label: position for position, label in enumerate(self.classes_.tolist())}
        weights = {}
        for label, weight in self.class_weight.items():
            key = label.item() if isinstance(label, np.generic) else label
            if key not in index:
                raise ValueError(f"class_weight: {label!r} is not one of the classes {self.classes_.tolist()}")
            weights[index[key]] = weight
        return weights

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "MLPClassifier":
        continuing = self.warm_start and getattr(self, "model_", None) is not None
        x, labels = self._labels(X, y, reset=not continuing)
        classes, indices = np.unique(labels, return_inverse=True)
        if continuing:
            if not np.isin(classes, self.classes_).all():
                raise ValueError(f"y: warm_start continues a model of the classes {self.classes_.tolist()}; got "
                                 f"{classes[~np.isin(classes, self.classes_)].tolist()}")
            indices = np.searchsorted(self.classes_, labels)
        else:
            if classes.size < 2:
                raise ValueError(f"y: needs samples of at least 2 classes; got 1 class ({classes.tolist()[0]!r})")
            self.classes_ = classes
        indices = np.asarray(indices).reshape(-1).astype(np.int64)
        return self._fit(x, indices, self.classes_.size, stratify=indices, sample_weight=sample_weight,
                         class_weight=self._class_weight())

    def partial_fit(self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None) -> "MLPClassifier":
        """One epoch over X, y, continuing the model; the first call needs ``classes`` (every
        label the estimator will see), as scikit-learn's partial_fit."""
        first = getattr(self, "model_", None) is None
        x, labels = self._labels(X, y, reset=first)
        if first:
            if classes is None:
                raise ValueError("classes: the first call to partial_fit needs classes=, every label the "
                                 "estimator will see (e.g. np.unique(y_all))")
            self.classes_ = np.unique(np.asarray(classes))
            if self.classes_.size < 2:
                raise ValueError(f"classes: needs at least 2 classes; got {self.classes_.tolist()}")
        elif classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
            raise ValueError(f"classes: {np.unique(np.asarray(classes)).tolist()} differs from the first call's "
                             f"{self.classes_.tolist()}")
        unknown = ~np.isin(labels, self.classes_)
        if unknown.any():
            raise ValueError(f"y: the label {labels[unknown].tolist()[0]!r} is not one of classes "
                             f"{self.classes_.tolist()}")
        indices = np.searchsorted(self.classes_, labels).astype(np.int64)
        return self._fit(x, indices, self.classes_.size, stratify=None, sample_weight=sample_weight,
                         class_weight=self._class_weight(), epochs=1)

    def _validation_score(self, model, x_val, y_val) -> float:
        return float(np.mean(np.argmax(model.predict(x_val), axis=1) == y_val))

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self._outputs(self._check_X(X, reset=False))

    def predict(self, X: Any) -> np.ndarray:
        # predict_proba first: it raises NotFittedError before classes_ is looked up.
        probabilities = self.predict_proba(X)
        return self.classes_[np.argmax(probabilities, axis=1)]


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multi-layer perceptron regressor (mean squared error). As in scikit-learn, predictions
    have shape (n,) for a 1-D y and (n, k) for a 2-D y (``n_outputs_``)."""

    _loss = "mse"
    _multi_output = True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _targets(self, X: Any, y: Any, reset: bool):
        x, targets = self._check_X_y(X, y, reset)
        targets = np.asarray(targets)
        if targets.dtype.kind not in "biuf":
            try:
                targets = targets.astype(np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"y: expected numeric targets, got dtype {targets.dtype}") from None
        return x, targets

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "MLPRegressor":
        continuing = self.warm_start and getattr(self, "model_", None) is not None
        x, targets = self._targets(X, y, reset=not continuing)
        self._y_one_dimensional = targets.ndim == 1
        targets = targets.reshape(x.shape[0], -1).astype(np.float32)
        if continuing and targets.shape[1] != self.n_outputs_:
            raise ValueError(f"y: warm_start continues a model of {self.n_outputs_} outputs; got {targets.shape[1]}")
        self.n_outputs_ = targets.shape[1]
        return self._fit(x, targets, self.n_outputs_, stratify=None, sample_weight=sample_weight, class_weight=None)

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> "MLPRegressor":
        """One epoch over X, y, continuing the model (building it on the first call)."""
        first = getattr(self, "model_", None) is None
        x, targets = self._targets(X, y, reset=first)
        if first:
            self._y_one_dimensional = targets.ndim == 1
            self.n_outputs_ = 1 if targets.ndim == 1 else targets.shape[1]
        targets = targets.reshape(x.shape[0], -1).astype(np.float32)
        if targets.shape[1] != self.n_outputs_:
            raise ValueError(f"y: the model has {self.n_outputs_} outputs; got {targets.shape[1]}")
        return self._fit(x, targets, self.n_outputs_, stratify=None, sample_weight=sample_weight, class_weight=None,
                         epochs=1)

    def _validation_score(self, model, x_val, y_val) -> float:
        return float(r2_score(y_val, model.predict(x_val)))

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "model_")
        # float64, as scikit-learn's regressors predict.
        predictions = self._outputs(self._check_X(X, reset=False)).astype(np.float64)
        return predictions[:, 0] if getattr(self, "_y_one_dimensional", self.n_outputs_ == 1) else predictions
