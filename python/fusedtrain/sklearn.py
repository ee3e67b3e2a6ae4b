"""scikit-learn estimators backed by fusedtrain: ``MLPClassifier`` and ``MLPRegressor`` with
fit/predict/score and get_params/set_params, so that a model drops into a Pipeline or
GridSearchCV. Importing this module needs scikit-learn; ``import fusedtrain`` does not.

The network is Dense layers of ``hidden_layer_sizes`` with ``activation``, then a Dense output:
one unit per class with softmax cross-entropy (classifier; any label values, strings included,
mapped to indices through ``classes_``), or one unit per target with mean squared error
(regressor). Training uses fusedtrain's Sequential.fit; like scikit-learn's MLP, it stops when
the training loss has not improved by ``tol`` for ``patience`` epochs, or, with
``early_stopping=True``, when the validation loss on a held-out ``validation_fraction`` has not
(restoring the best weights). Inputs are converted to float32 (see fusedtrain.data)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.utils.validation import check_is_fitted
except ImportError as error:  # scikit-learn is an optional dependency
    raise ImportError("fusedtrain.sklearn needs scikit-learn: pip install scikit-learn") from error

from . import layers, optimizers, regularizers
from .callbacks import EarlyStopping
from .data import features, train_val_test_split
from .models import Sequential
from .ops import _checks as check

_OPTIMIZERS = {"adam": optimizers.Adam, "adamw": optimizers.AdamW, "sgd": optimizers.SGD,
               "rmsprop": optimizers.RMSprop}
# scikit-learn's name for the sigmoid is accepted too.
_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "logistic": "sigmoid",
                "gelu": "gelu", "leaky_relu": "leaky_relu"}


class _BaseMLP(BaseEstimator):
    """Shared by the two estimators: parameters are stored exactly as given (scikit-learn's
    clone and get_params rely on it) and checked in fit."""

    _loss = "mse"

    def __init__(self, hidden_layer_sizes: Sequence[int] = (100,), activation: str = "relu", *,
                 optimizer: str = "adam", learning_rate: float = 1e-3, batch_size: Any = "auto",
                 max_epochs: int = 200, l2: float = 0.0, dropout: float = 0.0, early_stopping: bool = False,
                 validation_fraction: float = 0.1, patience: int = 10, tol: float = 1e-4,
                 shuffle: bool = True, seed: Optional[int] = None, verbose: int = 0, device: str = "auto"):
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
        self.seed = seed
        self.verbose = verbose
        self.device = device

    def _build_model(self, input_dim: int, outputs: int) -> Sequential:
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
        model = Sequential(input_dim=input_dim, seed=self.seed, device=self.device)
        for size in sizes:
            model.add(layers.Dense(size, activation=activation, kernel_regularizer=regularizer))
            if dropout > 0.0:
                model.add(layers.Dropout(dropout))
        model.add(layers.Dense(outputs, kernel_regularizer=regularizer))
        model.compile(optimizer=optimizer_class(learning_rate=self.learning_rate), loss=self._loss)
        return model

    def _fit(self, x: np.ndarray, targets: np.ndarray, outputs: int, stratify: Optional[np.ndarray]):
        max_epochs = check.integer(self.max_epochs, "max_epochs", low=1)
        patience = check.integer(self.patience, "patience", low=0)
        tol = check.real(self.tol, "tol", low=0.0)
        if self.batch_size == "auto":
            batch_size = min(200, x.shape[0])
        else:
            batch_size = check.integer(self.batch_size, "batch_size", low=1)
        model = self._build_model(x.shape[1], outputs)
        validation_data = None
        if self.early_stopping:
            fraction = check.real(self.validation_fraction, "validation_fraction", low=0.0, high=1.0,
                                  low_open=True, high_open=True)
            (x, targets), (x_val, y_val), _ = train_val_test_split(
                x, targets, (1.0 - fraction, fraction, 0.0), stratify=stratify, seed=self.seed)
            if x_val.shape[0] == 0:
                raise ValueError(f"validation_fraction: {fraction} of the samples leaves no validation data")
            validation_data = (x_val, y_val)
            stopper = EarlyStopping(monitor="val_loss", patience=patience, min_delta=tol,
                                    restore_best_weights=True)
        else:
            stopper = EarlyStopping(monitor="loss", patience=patience, min_delta=tol)
        history = model.fit(x, targets, epochs=max_epochs, batch_size=batch_size,
                            validation_data=validation_data, shuffle=bool(self.shuffle),
                            callbacks=[stopper], verbose=self.verbose, seed=self.seed)
        self.model_ = model
        self.history_ = history.history
        self.n_iter_ = len(history.epoch)
        self.loss_ = history.history["loss"][-1] if history.history.get("loss") else float("nan")
        self.n_features_in_ = x.shape[1]
        return self

    def _features(self, x: Any) -> np.ndarray:
        check_is_fitted(self, "model_")
        return features(x, "X", self.n_features_in_)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multi-layer perceptron classifier. ``classes_`` holds the sorted distinct labels;
    predict returns labels from it, predict_proba one column per class in that order."""

    _loss = "sparse_categorical_crossentropy"

    def fit(self, X: Any, y: Any) -> "MLPClassifier":
        x = features(X, "X")
        labels = np.asarray(y)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1 or labels.shape[0] != x.shape[0]:
            raise ValueError(f"y: expected one label per sample, shape ({x.shape[0]},), got shape {labels.shape}")
        self.classes_, indices = np.unique(labels, return_inverse=True)
        if self.classes_.size < 2:
            raise ValueError(f"y: needs samples of at least 2 classes, got only {self.classes_.tolist()}")
        indices = indices.reshape(-1).astype(np.int64)
        return self._fit(x, indices, self.classes_.size, stratify=indices)

    def predict_proba(self, X: Any) -> np.ndarray:
        x = self._features(X)
        return self.model_.predict(x)

    def predict(self, X: Any) -> np.ndarray:
        # predict_proba first: it raises NotFittedError before classes_ is looked up.
        probabilities = self.predict_proba(X)
        return self.classes_[np.argmax(probabilities, axis=1)]


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multi-layer perceptron regressor (mean squared error). As in scikit-learn, predictions
    have shape (n,) when there is one target (``n_outputs_ == 1``), (n, k) otherwise."""

    _loss = "mse"

    def fit(self, X: Any, y: Any) -> "MLPRegressor":
        x = features(X, "X")
        targets = np.asarray(y)
        if targets.ndim not in (1, 2) or targets.shape[0] != x.shape[0]:
            raise ValueError(f"y: expected {x.shape[0]} targets (shape (n,) or (n, k)), got shape {targets.shape}")
        targets = targets.reshape(x.shape[0], -1)
        self.n_outputs_ = targets.shape[1]
        return self._fit(x, targets, self.n_outputs_, stratify=None)

    def predict(self, X: Any) -> np.ndarray:
        x = self._features(X)
        predictions = self.model_.predict(x)
        return predictions[:, 0] if self.n_outputs_ == 1 else predictions
