"""scikit-learn estimators backed by fusedtrain: ``MLPClassifier`` and ``MLPRegressor``, which
follow scikit-learn's estimator conventions and pass its ``check_estimator`` suite (except
the checks EXPECTED_FAILED_CHECKS names, with the reason). Importing this module needs
scikit-learn 1.6 or newer; ``import fusedtrain`` does not.

The network is Dense layers of ``hidden_layer_sizes`` with ``activation``, then a Dense output:
one unit per class with softmax cross-entropy (classifier; any label values, strings included,
mapped to indices through ``classes_``), or one unit per target with mean squared error
(regressor). Training: like scikit-learn's MLP, it stops when the training loss has not
improved by ``tol`` for ``patience`` epochs, or, with ``early_stopping=True``, when the score
(accuracy, R^2) on a held-out ``validation_fraction`` has not, restoring the best weights.

Inputs are checked by scikit-learn's own validation (``validate_data``), so that empty data,
NaN, infinities, object and complex arrays, 1-D inputs and a wrong number of features raise
the errors scikit-learn's estimators raise, and converted once to float32. Dense inputs train
through Sequential.fit. Sparse inputs (scipy.sparse: CSR, CSC, or any format scipy converts to
CSR) are never densified whole: the rows of one batch at a time become a dense float32 array,
for a train_on_batch step or a predict call, so that a matrix whose dense form would not fit in
memory trains in the memory of one batch.

Randomness: ``random_state`` (``seed`` is an alias) gives a seed at the start of each fit: an
int is that seed; a RandomState or Generator draws one (so reusing the object gives a new
model each fit, as in scikit-learn); None draws one from NumPy's global RandomState, so that
``np.random.seed`` makes it reproducible, as scikit-learn does. The seed fixes the initial
weights, the validation split, and (with the number of training calls so far) the shuffling
and Dropout masks of each fit or partial_fit call: the same random_state gives the same model.

Pickling stores the fitted network as the safetensors bytes of a fusedtrain model file
(serialization.model_bytes) plus the optimizer's state arrays, never the kernels' objects."""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

try:
    from scipy import sparse
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.utils.class_weight import compute_class_weight
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data
except ImportError as error:  # scikit-learn is an optional dependency; validate_data is 1.6's
    raise ImportError("fusedtrain.sklearn needs scikit-learn 1.6 or newer: pip install -U scikit-learn") from error

from . import layers, optimizers, regularizers, serialization
from .callbacks import Callback, CallbackList, EarlyStopping, History
from .data import to_float32, train_val_test_split
from .models import INFERENCE_BATCH_SIZE, Sequential
from .ops import _checks as check

_OPTIMIZERS = {"adam": optimizers.Adam, "adamw": optimizers.AdamW, "sgd": optimizers.SGD,
               "rmsprop": optimizers.RMSprop}
# scikit-learn's name for the sigmoid is accepted too.
_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "logistic": "sigmoid",
                "gelu": "gelu", "leaky_relu": "leaky_relu"}
# Sparse formats taken as they are; scikit-learn's check_array converts the others to CSR.
_SPARSE_FORMATS = ("csr", "csc")
# What check_array keeps; anything else (lists, integers, objects) it converts to float64, the
# first, as scikit-learn's MLP does, so that its NaN and infinity messages name the same dtype and
# a list's 1e300 gets _float32's overflow message as an array's does. _float32 converts after.
_DTYPES = (np.float64, np.float32)
# A dense prediction batch of a sparse matrix holds at most this many float32 values (64 MiB).
_DENSE_BATCH_VALUES = 1 << 24
# The seeds scikit-learn's random_state takes (numpy.random.RandomState's range).
_SEED_LIMIT = 2 ** 32 - 1

# The checks of sklearn.utils.estimator_checks that float32 arithmetic keeps these estimators
# from passing, each with its reason (tests/test_sklearn.py measures the gap in the check's own
# setting); pass it as check_estimator(..., expected_failed_checks=EXPECTED_FAILED_CHECKS).
_WEIGHT_EQUIVALENCE = (
    "the check compares predictions at rtol=1e-7, finer than float32's resolution (1.2e-7); a network "
    "trained in float32 by 200 Adam steps on the repeated rows and on the weighted ones agrees with "
    "itself only to float32 rounding grown over the steps (about 1e-5)")
EXPECTED_FAILED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": _WEIGHT_EQUIVALENCE,
    "check_sample_weight_equivalence_on_sparse_data": _WEIGHT_EQUIVALENCE,
}


def _random_seed(random_state: Any, name: str) -> int:
    """The seed one fit starts from, drawn from ``random_state`` as the module says."""
    if random_state is None:
        return int(np.random.mtrand._rand.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(np.iinfo(np.int32).max))
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)):
        raise TypeError(f"{name}: expected None, an integer in [0, {_SEED_LIMIT}], a numpy.random.RandomState or "
                        f"a numpy.random.Generator, got {type(random_state).__name__}")
    return check.integer(random_state, name, low=0, high=_SEED_LIMIT)


def _sample_weights(sample_weight: Any, rows: int) -> Optional[np.ndarray]:
    """``sample_weight`` as float32, one finite non-negative weight per sample, not all zero."""
    if sample_weight is None:
        return None
    weights = np.asarray(sample_weight)
    if weights.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight: expected numeric weights, got dtype {weights.dtype}")
    if weights.shape != (rows,):
        raise ValueError(f"sample_weight: expected one weight per sample, shape ({rows},), got shape {weights.shape}")
    weights = weights.astype(np.float64)
    bad = ~np.isfinite(weights) | (weights < 0.0)
    if bad.any():
        index = int(np.argmax(bad))
        raise ValueError(f"sample_weight: expected finite non-negative weights, got {weights[index]:g} at index "
                         f"{index}")
    if not weights.any():
        raise ValueError("sample_weight: all the weights are zero; at least one sample needs a non-zero weight")
    return weights.astype(np.float32)


def _float32(x: Any) -> Any:
    """Checked features (a dense array or a sparse matrix) as fusedtrain trains on them: a
    C-contiguous float32 array, or a CSR matrix of float32 values. A value that overflows
    float32 raises ValueError naming its row and column."""
    if not sparse.issparse(x):
        return np.require(to_float32(x, "X"), requirements="CA")
    x = x.tocsr()
    if x.dtype == np.float32:
        return x
    with np.errstate(over="ignore"):
        values = x.data.astype(np.float32)
    overflow = ~np.isfinite(values)
    if overflow.any():
        index = int(np.argmax(overflow))
        row = int(np.searchsorted(x.indptr, index, side="right")) - 1
        raise ValueError(f"X: the value {float(x.data[index]):g} at row {row}, column {int(x.indices[index])} "
                         f"overflows float32 (largest magnitude {np.finfo(np.float32).max:.4g}); rescale the data")
    return type(x)((values, x.indices, x.indptr), shape=x.shape)


def _dense_rows(x: Any, rows: Any) -> np.ndarray:
    """Rows of the CSR matrix ``x`` (an index array or a slice) as a C-contiguous float32
    array: only these rows are densified."""
    return np.ascontiguousarray(x[rows].toarray(), dtype=np.float32)


def _predict_outputs(model: Sequential, x: Any) -> np.ndarray:
    """The model's outputs for ``x``: in one call for a dense array, batch by batch for a CSR
    matrix (each batch densified, at most _DENSE_BATCH_VALUES values)."""
    if not sparse.issparse(x):
        return model.predict(x)
    rows = max(1, min(INFERENCE_BATCH_SIZE, _DENSE_BATCH_VALUES // max(1, x.shape[1])))
    outputs = np.empty((x.shape[0], model.output_dim), dtype=np.float32)
    for start in range(0, x.shape[0], rows):
        batch = slice(start, min(start + rows, x.shape[0]))
        outputs[batch] = model.predict(_dense_rows(x, batch), batch_size=rows)
    return outputs


def _fit_sparse(model: Sequential, x: Any, y: np.ndarray, weights: Optional[np.ndarray], class_weight: Any,
                epochs: int, batch_size: int, shuffle: bool, callbacks: List[Callback], verbose: int,
                seed: int) -> History:
    """Sequential.fit's epochs over a CSR matrix, one densified batch per train_on_batch step:
    the batch order and Dropout seeds are the ones fit derives from ``seed`` (so a sparse
    matrix trains exactly as its dense form would), the History, callbacks and stopping rule
    are fit's, the epoch's loss is fit's mean over the batches weighted by their rows."""
    # fit's own derivation of the shuffling generator and the Dropout seeds.
    rng = model._seed_run(seed)
    count = x.shape[0]
    history = History()
    callback_list = CallbackList([history] + callbacks, model=model)
    steps = -(-count // batch_size)
    callback_list.set_params({"epochs": epochs, "steps": steps, "verbose": verbose})
    model.history = history
    model.stop_training = False
    logs: Dict[str, float] = {}
    callback_list.on_train_begin()
    for epoch in range(epochs):
        callback_list.on_epoch_begin(epoch)
        order = rng.permutation(count) if shuffle else np.arange(count)
        total = 0.0
        for batch, start in enumerate(range(0, count, batch_size)):
            rows = order[start:start + batch_size]
            callback_list.on_train_batch_begin(batch)
            loss = model.train_on_batch(_dense_rows(x, rows), y[rows],
                                        sample_weight=None if weights is None else weights[rows],
                                        class_weight=class_weight)
            if not math.isfinite(loss):
                # train_on_batch has applied this batch's update: unlike fit, it cannot look first.
                warnings.warn(f"Epoch {epoch + 1}, batch {batch + 1} of {steps}: the loss is not finite (NaN or "
                              f"infinite); training stopped, and the weights may hold non-finite values. A smaller "
                              f"learning rate usually helps.", RuntimeWarning, stacklevel=4)
                model.stop_training = True
                callback_list.on_train_end(logs)
                return history
            total += loss * rows.shape[0]
            callback_list.on_train_batch_end(batch, {"loss": loss})
        logs = {"loss": total / count, "lr": float(model.optimizer.learning_rate)}
        if verbose > 0:
            print(f"Epoch {epoch + 1}/{epochs} - loss: {logs['loss']:.4f}", flush=True)
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    return history


class _ValidationScores(Callback):
    """After each epoch, the estimator's score (accuracy, R^2) on the held-out data, logged as
    ``val_score`` for the EarlyStopping that follows it, and kept in ``scores``."""

    def __init__(self, score: Callable[[], float]):
        super().__init__()
        self.score = score
        self.scores: List[float] = []

    def on_epoch_end(self, epoch, logs=None):
        value = float(self.score())
        self.scores.append(value)
        if logs is not None:
            logs["val_score"] = value


class _BaseMLP(BaseEstimator):
    """Shared by the two estimators: parameters are stored exactly as given (scikit-learn's
    clone and get_params rely on it) and checked in fit.

    Parameters: ``hidden_layer_sizes`` (units per hidden layer), ``activation`` (relu, tanh,
    sigmoid or logistic, gelu, leaky_relu), ``optimizer`` (adam, adamw, sgd, rmsprop) and its
    ``learning_rate``, ``batch_size`` ("auto": min(200, samples)), ``max_epochs`` (per fit
    call), ``l2`` (kernel weight decay), ``dropout`` (after each hidden layer),
    ``early_stopping`` with ``validation_fraction``, ``patience`` and ``tol`` (the stopping
    rule), ``shuffle`` (a new order each epoch), ``random_state`` (``seed``: an alias),
    ``warm_start`` (fit continues from the fitted network), ``verbose`` (0-2) and ``device``
    ("auto", "cpu", "cuda" or "cuda:N": where the network is trained)."""

    _loss = "mse"

    def __init__(self, hidden_layer_sizes: Sequence[int] = (100,), activation: str = "relu", *,
                 optimizer: str = "adam", learning_rate: float = 1e-3, batch_size: Any = "auto",
                 max_epochs: int = 200, l2: float = 0.0, dropout: float = 0.0, early_stopping: bool = False,
                 validation_fraction: float = 0.1, patience: int = 10, tol: float = 1e-4,
                 shuffle: bool = True, random_state: Any = None, seed: Any = None, warm_start: bool = False,
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
        self.seed = seed
        self.warm_start = warm_start
        self.verbose = verbose
        self.device = device

    # Parameters ---------------------------------------------------------------------------------

    def _architecture(self) -> Dict[str, Any]:
        """The parameters that shape the network, checked: warm_start and partial_fit need
        them unchanged."""
        if isinstance(self.hidden_layer_sizes, (int, np.integer)):
            sizes = [self.hidden_layer_sizes]
        else:
            sizes = list(self.hidden_layer_sizes)
        return {"hidden_layer_sizes": tuple(check.integer(size, f"hidden_layer_sizes[{index}]", low=1)
                                            for index, size in enumerate(sizes)),
                "activation": check.choice(self.activation, "activation", _ACTIVATIONS),
                "l2": check.real(self.l2, "l2", low=0.0),
                "dropout": check.real(self.dropout, "dropout", low=0.0, high=1.0, high_open=True),
                "device": self.device}

    def _training_settings(self) -> Dict[str, Any]:
        if self.seed is not None and self.random_state is not None:
            raise ValueError(f"seed: is an alias of random_state; pass only one of them (got seed={self.seed!r}, "
                             f"random_state={self.random_state!r})")
        settings = {
            "optimizer": check.choice(self.optimizer, "optimizer", _OPTIMIZERS),
            "learning_rate": check.real(self.learning_rate, "learning_rate", low=0.0, low_open=True),
            "max_epochs": check.integer(self.max_epochs, "max_epochs", low=1),
            "patience": check.integer(self.patience, "patience", low=0),
            "tol": check.real(self.tol, "tol", low=0.0),
            "shuffle": check.flag(self.shuffle, "shuffle"),
            "early_stopping": check.flag(self.early_stopping, "early_stopping"),
            "warm_start": check.flag(self.warm_start, "warm_start"),
            "verbose": check.integer(int(self.verbose) if isinstance(self.verbose, bool) else self.verbose,
                                     "verbose", low=0, high=2),
        }
        if self.batch_size != "auto":
            check.integer(self.batch_size, "batch_size", low=1)
        if settings["early_stopping"]:
            settings["validation_fraction"] = check.real(self.validation_fraction, "validation_fraction", low=0.0,
                                                         high=1.0, low_open=True, high_open=True)
        return settings

    def _batch_rows(self, samples: int) -> int:
        return min(200, samples) if self.batch_size == "auto" else self.batch_size

    # Training -----------------------------------------------------------------------------------

    def _new_model(self, architecture: Dict[str, Any], settings: Dict[str, Any], inputs: int, outputs: int,
                   seed: int) -> Sequential:
        l2 = architecture["l2"]
        regularizer = regularizers.L2(l2) if l2 > 0.0 else None
        model = Sequential(input_dim=inputs, seed=seed, device=self.device)
        for size in architecture["hidden_layer_sizes"]:
            model.add(layers.Dense(size, activation=architecture["activation"], kernel_regularizer=regularizer))
            if architecture["dropout"] > 0.0:
                model.add(layers.Dropout(architecture["dropout"]))
        model.add(layers.Dense(outputs, kernel_regularizer=regularizer))
        model.compile(optimizer=settings["optimizer"](learning_rate=settings["learning_rate"]), loss=self._loss)
        model.build()
        return model

    def _continue_model(self, architecture: Dict[str, Any], settings: Dict[str, Any]) -> None:
        """Checks that the fitted network can go on training with the current parameters, and
        gives its optimizer the current learning rate (a new optimizer when it changed)."""
        for name, value in architecture.items():
            previous = self._fitted_architecture[name]
            if value != previous:
                raise ValueError(f"{name}: is {value!r}, but the fitted network was built with {previous!r}; "
                                 f"warm_start and partial_fit continue the same network (fit it anew with "
                                 f"warm_start=False)")
        model = self.model_
        if type(model.optimizer) is not settings["optimizer"]:
            model.compile(optimizer=settings["optimizer"](learning_rate=settings["learning_rate"]), loss=self._loss)
        model.optimizer.learning_rate = settings["learning_rate"]

    def _train(self, x: Any, targets: np.ndarray, weights: Optional[np.ndarray], class_weight: Any, epochs: int,
               callbacks: List[Callback], settings: Dict[str, Any]) -> History:
        """One training call on the fitted network: Sequential.fit for dense data, the batch
        loop of _fit_sparse for a sparse matrix; seeded by random_state and the call count."""
        seed = int(np.random.SeedSequence(self._seed, spawn_key=(self._training_calls,)).generate_state(1)[0])
        self._training_calls += 1
        batch_size = self._batch_rows(x.shape[0])
        if sparse.issparse(x):
            return _fit_sparse(self.model_, x, targets, weights, class_weight, epochs, batch_size,
                               settings["shuffle"], callbacks, settings["verbose"], seed)
        return self.model_.fit(x, targets, epochs=epochs, batch_size=batch_size, shuffle=settings["shuffle"],
                               callbacks=callbacks, verbose=settings["verbose"], seed=seed,
                               sample_weight=weights, class_weight=class_weight)

    def _fit(self, X: Any, y: Any, sample_weight: Any, incremental: bool, classes: Any = None) -> "_BaseMLP":
        """fit (``incremental=False``: max_epochs epochs, the stopping rule, from new weights
        unless warm_start) and partial_fit (one epoch, from the fitted weights if any)."""
        architecture = self._architecture()
        settings = self._training_settings()
        continuing = hasattr(self, "model_") and (incremental or settings["warm_start"])
        x, targets, outputs = self._training_data(X, y, continuing, incremental, classes)
        x = _float32(x)
        weights = _sample_weights(sample_weight, x.shape[0])
        if not incremental:
            self._check_weighted_targets(targets, weights)
        if continuing:
            seed = self._seed
        else:
            seed = _random_seed(self.random_state if self.seed is None else self.seed,
                                "random_state" if self.seed is None else "seed")
        held_out = None
        if not incremental and settings["early_stopping"]:
            x, targets, weights, held_out = self._hold_out(x, targets, weights, settings["validation_fraction"], seed)
        class_weight = self._class_weight(targets, incremental)

        # Everything is checked: build the network (or go on with the fitted one) and train.
        if continuing:
            self._continue_model(architecture, settings)
        else:
            self._seed = seed
            self._training_calls = 0
            self._fitted_architecture = architecture
            self.model_ = self._new_model(architecture, settings, x.shape[1], outputs, seed)
            self.n_iter_ = 0
            self.loss_curve_: List[float] = []
            self.validation_scores_: Optional[List[float]] = None
            self.best_validation_score_: Optional[float] = None
            self.best_loss_: Optional[float] = None
        scorer = None
        if incremental:
            epochs, callbacks = 1, []
        elif held_out is not None:
            epochs = settings["max_epochs"]
            x_val, y_val, w_val = held_out
            model = self.model_
            scorer = _ValidationScores(lambda: self._score_outputs(_predict_outputs(model, x_val), y_val, w_val))
            stopper = EarlyStopping(monitor="val_score", mode="max", patience=settings["patience"],
                                    min_delta=settings["tol"], restore_best_weights=True)
            callbacks = [scorer, stopper]
        else:
            epochs = settings["max_epochs"]
            callbacks = [EarlyStopping(monitor="loss", patience=settings["patience"], min_delta=settings["tol"])]
        history = self._train(x, targets, weights, class_weight, epochs, callbacks, settings)

        self.n_iter_ += len(history.epoch)
        self.loss_curve_.extend(history.history.get("loss", []))
        self.loss_ = self.loss_curve_[-1] if self.loss_curve_ else float("nan")
        self.history_ = dict(history.history)
        if scorer is not None:
            self.validation_scores_ = (self.validation_scores_ or []) + scorer.scores
            # The restored weights' score: an epoch is the best only if it beat the best by tol.
            self.best_validation_score_ = stopper.best
            self.history_["val_score"] = list(scorer.scores)
        elif self.loss_curve_:
            self.best_loss_ = min(self.loss_curve_)
        if not incremental and not self.model_.stop_training:
            watched = "validation score" if scorer is not None else "training loss"
            warnings.warn(f"Stochastic optimizer: max_epochs ({epochs}) reached and the optimization hasn't "
                          f"converged yet (the {watched} was still improving by more than tol={settings['tol']:g}).",
                          ConvergenceWarning, stacklevel=3)
        return self

    def _hold_out(self, x: Any, targets: np.ndarray, weights: Optional[np.ndarray], fraction: float, seed: int):
        """(x, targets, weights) of the training part and (x, targets, weights) of the held-out
        ``fraction`` (stratified by class for the classifier), split with ``seed``."""
        count = x.shape[0]
        (train, _), (held_out, _), _ = train_val_test_split(
            np.arange(count), np.arange(count), (1.0 - fraction, fraction, 0.0), stratify=self._stratify(targets),
            seed=seed)
        if held_out.shape[0] == 0 or train.shape[0] == 0:
            raise ValueError(f"validation_fraction: {fraction} of n_samples={count} leaves no "
                             f"{'validation' if held_out.shape[0] == 0 else 'training'} data; pass more samples "
                             f"or set early_stopping=False")
        parts = [(x[rows], targets[rows], None if weights is None else weights[rows]) for rows in (train, held_out)]
        return parts[0] + (parts[1],)

    # Hooks of the two estimators ----------------------------------------------------------------

    def _training_data(self, X: Any, y: Any, continuing: bool, incremental: bool,
                       classes: Any) -> Tuple[Any, np.ndarray, int]:
        """(x, targets as the loss takes them, output units), checked."""
        raise NotImplementedError

    def _check_weighted_targets(self, targets: np.ndarray, weights: Optional[np.ndarray]) -> None:
        """Raises when the weights leave nothing to learn (the classifier: a single class)."""

    def _class_weight(self, targets: np.ndarray, incremental: bool) -> Any:
        return None

    def _stratify(self, targets: np.ndarray) -> Optional[np.ndarray]:
        return None

    def _score_outputs(self, outputs: np.ndarray, targets: np.ndarray, weights: Optional[np.ndarray]) -> float:
        raise NotImplementedError

    # Prediction ---------------------------------------------------------------------------------

    def _outputs(self, X: Any) -> np.ndarray:
        """The network's outputs for ``X``, as float64 (computed in float32): scikit-learn's
        estimators predict in float64."""
        check_is_fitted(self, "model_")
        x = _float32(validate_data(self, X, reset=False, accept_sparse=_SPARSE_FORMATS, dtype=_DTYPES, order="C"))
        return _predict_outputs(self.model_, x).astype(np.float64)

    # scikit-learn protocol ----------------------------------------------------------------------

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def __getstate__(self) -> Dict[str, Any]:
        """The estimator's attributes, the fitted network as a model file's safetensors bytes and
        its optimizer's state as NumPy arrays (so that warm_start and partial_fit go on)."""
        # A copy: object.__getstate__ returns the instance's own __dict__.
        state = dict(super().__getstate__())
        model = state.pop("model_", None)
        if model is not None:
            optimizer = model.optimizer
            built = optimizer.size is not None
            state["model_"] = {
                "safetensors": serialization.model_bytes(model),
                "optimizer_state": ({name: model.backend.to_host(array, copy=True)
                                     for name, array in optimizer.state.items()} if built else None),
                "optimizer_iterations": optimizer.iterations,
            }
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        state = dict(state)
        stored = state.pop("model_", None)
        super().__setstate__(state)
        if stored is not None:
            model = serialization.load_bytes(stored["safetensors"], f"the pickled {type(self).__name__}",
                                             device=self.device)
            if stored["optimizer_state"] is not None:
                model.optimizer.build(model.parameters.size, model.backend)
                model.optimizer.load_state(stored["optimizer_state"], stored["optimizer_iterations"])
            self.model_ = model


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multi-layer perceptron classifier. ``classes_`` holds the sorted distinct labels;
    predict returns labels from it, predict_proba one column per class in that order.

    ``class_weight``: None, "balanced" (n_samples / (n_classes * samples of the class), as
    scikit-learn's compute_class_weight) or a dict {label: weight} (labels left out weigh 1);
    it multiplies ``sample_weight``. Weighted training follows Keras: a batch's loss is the
    weighted sum of its samples' losses over its number of samples.

    Fitted attributes: ``classes_``, ``n_features_in_`` (and ``feature_names_in_`` for a
    DataFrame), ``n_iter_`` (epochs, summed over warm starts and partial_fit calls),
    ``loss_curve_`` and ``loss_`` (training loss per epoch, the last), ``best_loss_`` (without
    early stopping), ``validation_scores_`` and ``best_validation_score_`` (validation accuracy
    per epoch, and that of the restored weights: the best epoch, an epoch counting as better
    only if it beats the best by more than tol; None without early stopping), ``history_``
    (the last call's fusedtrain History) and ``model_`` (the fusedtrain Sequential)."""

    _loss = "sparse_categorical_crossentropy"

    def __init__(self, hidden_layer_sizes: Sequence[int] = (100,), activation: str = "relu", *,
                 optimizer: str = "adam", learning_rate: float = 1e-3, batch_size: Any = "auto",
                 max_epochs: int = 200, l2: float = 0.0, dropout: float = 0.0, early_stopping: bool = False,
                 validation_fraction: float = 0.1, patience: int = 10, tol: float = 1e-4,
                 shuffle: bool = True, random_state: Any = None, seed: Any = None, warm_start: bool = False,
                 class_weight: Any = None, verbose: int = 0, device: str = "auto"):
        super().__init__(hidden_layer_sizes, activation, optimizer=optimizer, learning_rate=learning_rate,
                         batch_size=batch_size, max_epochs=max_epochs, l2=l2, dropout=dropout,
                         early_stopping=early_stopping, validation_fraction=validation_fraction, patience=patience,
                         tol=tol, shuffle=shuffle, random_state=random_state, seed=seed, warm_start=warm_start,
                         verbose=verbose, device=device)
        self.class_weight = class_weight

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "MLPClassifier":
        """Trains on ``X`` (array-like or scipy.sparse, n_samples x n_features) and the labels
        ``y``, from new weights, or from the fitted ones with ``warm_start=True``, for up to
        max_epochs epochs. ``sample_weight``: one non-negative weight per sample."""
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None) -> "MLPClassifier":
        """One epoch over ``X`` and ``y``, continuing from the fitted weights. The first call
        needs ``classes``: every label that any call will pass. Early stopping does not apply."""
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def _training_data(self, X, y, continuing, incremental, classes):
        x, labels = validate_data(self, X, y, reset=not continuing, accept_sparse=_SPARSE_FORMATS,
                                  dtype=_DTYPES, order="C")
        check_classification_targets(labels)
        if incremental and not continuing:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self.classes_ = np.unique(np.asarray(classes))
        elif incremental and classes is not None and not np.array_equal(np.unique(np.asarray(classes)),
                                                                         self.classes_):
            raise ValueError(f"classes: {np.unique(np.asarray(classes)).tolist()} is not the same as on the first call "
                             f"to partial_fit, which was {self.classes_.tolist()}")
        present = np.unique(labels)
        if not incremental:
            if continuing and not np.array_equal(present, self.classes_):
                raise ValueError(f"y: warm_start can only be used where y has the same classes as in the previous "
                                 f"call to fit: previously {self.classes_.tolist()}, now {present.tolist()}")
            if not continuing:
                self.classes_ = present
        if self.classes_.shape[0] < 2:
            raise ValueError(f"y: needs samples of at least 2 classes, got 1 class ({self.classes_.tolist()[0]!r})")
        indices = np.searchsorted(self.classes_, labels)
        unknown = (indices >= self.classes_.shape[0]) | (self.classes_[np.minimum(indices, self.classes_.shape[0] - 1)]
                                                          != labels)
        if unknown.any():
            raise ValueError(f"y: has classes not in classes_ ({self.classes_.tolist()}): "
                             f"{np.unique(labels[unknown]).tolist()}")
        return x, indices.astype(np.int64), self.classes_.shape[0]

    def _check_weighted_targets(self, targets, weights):
        if weights is None:
            return
        weighted = np.unique(targets[weights > 0])
        if weighted.shape[0] < 2:
            raise ValueError(f"sample_weight: only the samples of class {self.classes_.tolist()[weighted[0]]!r} have a "
                             f"non-zero weight; a classifier needs samples of at least 2 classes")

    def _class_weight(self, targets, incremental):
        """class_weight as {class index: weight} for Sequential.fit / train_on_batch."""
        class_weight = self.class_weight
        if class_weight is None:
            return None
        if isinstance(class_weight, str) and class_weight == "balanced":
            if incremental:
                raise ValueError("class_weight: 'balanced' is not supported by partial_fit, which sees one batch of "
                                 "the data at a time; pass the weights as a dict, e.g. from sklearn.utils.class_weight."
                                 "compute_class_weight('balanced', classes=classes, y=y)")
            present = np.unique(targets)
            values = compute_class_weight("balanced", classes=present, y=targets)
            return {int(index): float(value) for index, value in zip(present, values)}
        if not isinstance(class_weight, dict):
            raise TypeError(f"class_weight: expected None, 'balanced' or a dict {{label: weight}}, got "
                            f"{class_weight!r}")
        lookup = {label: index for index, label in enumerate(self.classes_.tolist())}
        weights = {}
        for label, weight in class_weight.items():
            key = label.item() if isinstance(label, np.generic) else label
            if key not in lookup:
                raise ValueError(f"class_weight: {label!r} is not one of the classes {self.classes_.tolist()}")
            weights[lookup[key]] = weight
        return weights

    def _stratify(self, targets):
        return targets

    def _score_outputs(self, outputs, targets, weights):
        return accuracy_score(targets, np.argmax(outputs, axis=1), sample_weight=weights)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities, (n_samples, n_classes), columns in the order of ``classes_``."""
        return self._outputs(X)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """The logarithm of predict_proba (-inf where a probability rounded to 0 in float32)."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable label of each sample, from ``classes_``."""
        # predict_proba first: it raises NotFittedError before classes_ is looked up.
        probabilities = self.predict_proba(X)
        return self.classes_[np.argmax(probabilities, axis=1)]


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multi-layer perceptron regressor (mean squared error). As in scikit-learn, predictions
    have shape (n,) when there is one target (``n_outputs_ == 1``; a y of shape (n, 1) is
    taken as one, with a DataConversionWarning), (n, k) otherwise.

    Fitted attributes as MLPClassifier's (without ``classes_``; ``validation_scores_`` holds
    R^2), and ``n_outputs_``."""

    _loss = "mse"

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "MLPRegressor":
        """Trains on ``X`` (array-like or scipy.sparse) and the targets ``y`` ((n,) or (n, k)),
        from new weights, or from the fitted ones with ``warm_start=True``, for up to
        max_epochs epochs. ``sample_weight``: one non-negative weight per sample."""
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> "MLPRegressor":
        """One epoch over ``X`` and ``y``, continuing from the fitted weights (early stopping
        does not apply)."""
        return self._fit(X, y, sample_weight, incremental=True)

    def _training_data(self, X, y, continuing, incremental, classes):
        x, targets = validate_data(self, X, y, reset=not continuing, accept_sparse=_SPARSE_FORMATS,
                                   dtype=_DTYPES, order="C", multi_output=True, y_numeric=True)
        if targets.ndim == 2 and targets.shape[1] == 1:
            targets = column_or_1d(targets, warn=True)
        targets = targets.reshape(x.shape[0], -1)
        if continuing and targets.shape[1] != self.n_outputs_:
            raise ValueError(f"y: has {targets.shape[1]} targets per sample, but the fitted network has "
                             f"{self.n_outputs_}; warm_start and partial_fit continue the same network")
        self.n_outputs_ = targets.shape[1]
        return x, targets, self.n_outputs_

    def _score_outputs(self, outputs, targets, weights):
        return r2_score(targets, outputs, sample_weight=weights)

    def predict(self, X: Any) -> np.ndarray:
        """Predictions: shape (n_samples,) for one target, (n_samples, n_outputs_) otherwise."""
        predictions = self._outputs(X)
        return predictions[:, 0] if self.n_outputs_ == 1 else predictions

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
