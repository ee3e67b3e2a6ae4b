"""The Sequential model: a stack of layers trained by compile/fit/evaluate/predict, Keras-style.

Parameters, gradients and optimizer state each live in one flat float32 buffer
(``model.parameters``, ``model.gradients``, the optimizer's state) and the layers hold views of
them; a training step runs a handful of kernel calls on arrays allocated when training starts.

Input rule: ``x`` is a 2-D numeric array (samples, features). A float32 array is used as is;
any other numeric array (float64, integers) is converted once, before training, with
``np.asarray(x, dtype=np.float32)``. NaN, infinities and values that overflow float32 raise
ValueError before training starts, as do targets that do not fit the loss (see losses.py).
Objects with ``__dlpack__`` in CPU memory (PyTorch tensors, ...) are read first without a copy
(np.from_dlpack). A pandas DataFrame of numbers is read as its values; the model keeps its
column names (``feature_names``) from fit and checks them (and takes the columns in that order)
later. A model with a ``preprocessor`` (tables.TablePreprocessor) takes raw DataFrames (text,
missing values, dates) and encodes them itself. Class labels: for a classification loss, text
labels, and integer labels that are not the indices 0..outputs-1, are mapped to indices in
fit, kept in ``class_labels`` (saved with the model) and given back by predict_classes. A model on a GPU (``device="cuda"``) copies NumPy data to the GPU once per
call and takes features in GPU memory (CuPy arrays, DLPack objects such as CUDA tensors) in
place; a model on the CPU refuses GPU arrays.

Devices: ``device`` picks a backend (backends/): the array module every buffer of the model is
created with. The training code below is the same for every device.

Files: save / fusedtrain.load, save_weights / load_weights and save_checkpoint / fit(resume=)
are thin wrappers of serialization.py, which holds the file format.

Randomness: everything random derives from the model's ``seed`` (weights) and fit's ``seed``
(shuffling, dropout masks) through NumPy SeedSequences, never from global state: the same seeds
give bit-identical weights and history on the same machine."""

from __future__ import annotations

import functools
import math
import sys
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import backends, distributed
from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from . import serialization, tables
from .callbacks import Callback, CallbackList, History, ModelCheckpoint, ProgressLogger
from .data import BatchLoader, features, to_float32
from .interop import host_array
from .layers import Dense, Dropout, Layer, activate
from .ops import _checks as check

DEVICES = backends.DEVICES


def _needs_mapping(labels: np.ndarray, classes: int) -> bool:
    """Whether fit maps these labels: text (or objects, booleans aside), or integers outside
    the indices 0..classes-1."""
    if labels.dtype.kind in "OUS":
        return True
    if labels.dtype.kind in "iu" or (labels.dtype.kind == "f" and np.all(np.isfinite(labels))
                                     and np.all(labels == np.round(labels))):
        return bool(labels.min() < 0 or labels.max() >= classes)
    return False


def _label_key(label: Any) -> Any:
    """Equal keys for labels that are equal as a user would read them (1, 1.0, np.int64(1))."""
    if isinstance(label, (bool, np.bool_)):
        return ("bool", bool(label))
    if isinstance(label, (int, float, np.integer, np.floating)):
        number = float(label)
        return ("number", number)
    return ("text", str(label))


def _distinct_labels(labels: np.ndarray, name: str) -> List[Any]:
    """The sorted distinct labels as JSON holds them (ints, floats or strings, not mixed)."""
    values = labels.tolist()
    for row, value in enumerate(values):
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            raise ValueError(f"{name}: the label at index {row} is missing ({value!r}); drop rows without a label")
    kinds = {isinstance(value, str) for value in values}
    if len(kinds) > 1:
        raise TypeError(f"{name}: the labels mix text and numbers; give one kind")
    plain = [value if isinstance(value, str) else (int(value) if float(value).is_integer() else float(value))
             for value in values]
    return sorted(set(plain))


def _validation_start(samples: int, validation_split: float) -> int:
    """The first of the last ``validation_split`` of ``samples`` rows, which validate."""
    return int(math.floor(samples * (1.0 - validation_split)))


def _shown(labels: Sequence[Any]) -> str:
    text = ", ".join(repr(label) for label in labels[:10])
    return text + (", ..." if len(labels) > 10 else "")
# DLPack's device type code for CUDA memory (DLDeviceType.kDLCUDA).
_DLPACK_CUDA = 2
# Default rows per batch of evaluate and predict (inference needs no small batches).
INFERENCE_BATCH_SIZE = 256


def _on_device(method: Callable) -> Callable:
    """Runs a method of the model with the model's GPU current (CuPy's device context)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.backend.scope():
            return method(self, *args, **kwargs)

    return wrapper


class _Workspace:
    """The arrays one forward (and backward) pass writes, for batches of up to ``rows`` rows."""

    def __init__(self, model: "Sequential", rows: int, training: bool, probabilities: bool,
                 dropout: bool = True):
        units = model.output_dim
        xp = model.backend.xp
        self.rows = rows
        self.training = training
        self.dropout = training and dropout
        self.buffers = [layer.allocate(rows, self.dropout if isinstance(layer, Dropout) else training)
                        for layer in model.layers]
        self.inputs: List[Optional[np.ndarray]] = [None] * len(model.layers)
        # Gradient with respect to each layer's output; the last one receives the loss gradient.
        self.grads = ([xp.empty((rows, layer.output_dim), dtype=np.float32) for layer in model.layers]
                      if training else [xp.empty((rows, units), dtype=np.float32)])
        self.scratch = xp.empty((rows, units), dtype=np.float32)
        self.probabilities = xp.empty((rows, units), dtype=np.float32) if probabilities else None


class _TrainingRun:
    """What a checkpoint records of the fit in progress (or the last one): the user's callbacks
    in their order, the History, the shuffling generator, fit's arguments, the next epoch to
    run, and whether an epoch is under way (no checkpoint can be taken then)."""

    def __init__(self, callbacks: List[Callback], history: History, rng: np.random.Generator,
                 arguments: Dict[str, Any], next_epoch: int):
        self.callbacks = callbacks
        self.history = history
        self.rng = rng
        self.arguments = arguments
        self.next_epoch = next_epoch
        self.in_epoch = False


class _ParallelRun:
    """One fit's synchronous data parallelism over a world of N (fusedtrain.distributed):
    rank 0's weights, generator state and Dropout seeds are broadcast first; each step the
    ranks agree on the loss (and on a stop asked for), weight their gradients by their share of
    the global batch and sum them; epoch values and validation are reduced over the ranks."""

    def __init__(self, model: "Sequential", world: Any, rng: np.random.Generator, sharded: bool,
                 shards: Tuple[List[int], List[int]], batch_size: int):
        self.model, self.world, self.rng, self.sharded = model, world, rng, sharded
        self.batch_size = batch_size
        self.train_counts = shards[0]
        weights = model.backend.to_host(model.parameters, copy=True)
        world.broadcast_array(weights)
        model.backend.assign(model.parameters, weights)
        rng.bit_generator.state = world.broadcast(rng.bit_generator.state)
        seeds = world.broadcast([getattr(layer, "run_seed", None) for layer in model.layers])
        for layer, seed in zip(model.layers, seeds):
            if isinstance(layer, Dropout) and seed is not None:
                # Each rank's rows are other samples: masks of their own, rank 0's as a single process'.
                layer.run_seed = (seed + world.rank * 0x9E3779B97F4A7C15) % 2 ** 64
        self.steps = -(-sum(self.train_counts) // batch_size)

    def loader_arguments(self) -> Dict[str, Any]:
        return {"steps": self.steps} if self.sharded else {"part": (self.world.rank, self.world.size)}

    def validation_part(self, x: Any, y: Any, w: Any) -> Tuple[Any, Any, Any]:
        """This rank's share of the validation data: its block of the common data, or its shard."""
        if x is None or self.sharded:
            return x, y, w
        start, stop = distributed.shard_range(x.shape[0], self.world.rank, self.world.size)
        return x[start:stop], y[start:stop], None if w is None else w[start:stop]

    def begin_epoch(self, loader: BatchLoader) -> None:
        if self.sharded and loader.shuffle:
            # Each rank shuffles its shard; the draw from the common generator keeps a checkpoint's state exact.
            loader.rng = np.random.default_rng([int(self.rng.integers(2 ** 63)), self.world.rank])

    def global_rows(self, step: int) -> int:
        """The rows of global batch ``step`` over all the ranks."""
        if not self.sharded:
            return min(self.batch_size, self.train_counts[0] - step * self.batch_size)
        return sum(count // self.steps + (1 if step < count % self.steps else 0) for count in self.train_counts)

    def train_batch(self, step: int, x: Any, y: Any, w: Any, workspace: "_Workspace", fold: bool,
                    segments: List[Tuple[int, int]], first: Optional[int], totals: Any, check_finite: bool) -> str:
        """One synchronous step: "ok", "stop" (a rank asked to stop: no update) or "diverged"."""
        model = self.model
        rows = x.shape[0]
        local = 0.0
        if rows:
            logits = model._forward(x, workspace, fold)
            loss = model._batch_loss(logits, y, w, workspace, loss_out=totals.slot(0))
            penalty = model._penalty()
            local = (model.backend.read(loss) + model.backend.read(penalty)) * rows
        total, stop = self.world.sum([local, float(model.stop_training)])
        if stop > 0:
            return "stop"
        if check_finite and not math.isfinite(total):
            return "diverged"
        if rows:
            totals.add([loss] + model._batch_metrics(y, logits, workspace, totals), penalty, rows)
        if first is not None:
            if rows:
                model._backward(rows, workspace, fold, first)
                share = rows / self.global_rows(step)
                if share != 1.0:
                    model.backend.xp.multiply(model.gradients, np.float32(share), out=model.gradients)
            else:
                model.gradients[...] = 0.0
            self.world.sum_gradients(model.gradients, model.backend)
            model.optimizer.apply(model.parameters, model.gradients, segments)
        model._train_step += 1
        return "ok"

    def _reduced(self, local: Dict[str, float], rows: int, names: List[str]) -> Dict[str, float]:
        sums = self.world.sum([local[name] * rows for name in names] + [rows])
        return {name: total / sums[-1] for name, total in zip(names, sums)}

    def means(self, totals: Any, names: List[str]) -> Dict[str, float]:
        """The epoch's loss and metrics over every rank's samples."""
        local = totals.means(names) if totals.seen else dict.fromkeys(names, 0.0)
        return self._reduced(local, totals.seen, names)

    def evaluate(self, x: Any, y: Any, w: Any, workspace: Optional["_Workspace"], fold: bool,
                 names: List[str]) -> Dict[str, float]:
        rows = x.shape[0]
        local = self.model._evaluate_arrays(x, y, w, workspace, fold) if rows else dict.fromkeys(names, 0.0)
        return self._reduced(local, rows, names)

    def end_epoch(self, epoch: int) -> None:
        self.world.check_identical(self.model.backend.to_host(self.model.parameters), f"the weights after epoch {epoch + 1}")

    def any(self, flag: bool) -> bool:
        return self.world.sum([float(flag)])[0] > 0


class Sequential:
    """A linear stack of layers.

    ``input_dim`` (features per sample) may be given here, on the first Dense layer, or left to
    be inferred from the first data seen. ``device``: "cpu"; "cuda" or "cuda:N" (GPU 0 or N:
    RuntimeError saying what is missing where that GPU cannot be used); "auto" (the default):
    GPU 0 where it is usable, else the CPU with one line on stderr saying why.
    ``model.device`` is the device chosen ("cpu" or "cuda:N"). ``seed`` (an integer >= 0) makes
    the initial weights reproducible; None draws fresh entropy. ``preprocessor``: a
    tables.TablePreprocessor that turns raw DataFrames into features (fitted by the first fit
    on a DataFrame when it is not fitted yet, its statistics from the rows that train, not
    from those validation_split holds out); saved with the model."""

    def __init__(self, layers: Optional[Sequence[Layer]] = None, input_dim: Optional[int] = None,
                 device: str = "auto", seed: Optional[int] = None, name: str = "sequential",
                 preprocessor: Optional[tables.TablePreprocessor] = None):
        self.backend = backends.resolve(device)
        self.device = self.backend.name
        self.seed = None if seed is None else check.integer(seed, "seed", low=0)
        self._entropy = self.seed if self.seed is not None else np.random.SeedSequence().entropy
        self.name = check.name(name, "name")
        if preprocessor is not None and not isinstance(preprocessor, tables.TablePreprocessor):
            raise TypeError(f"preprocessor: expected a fusedtrain.data.TablePreprocessor or None, got "
                            f"{type(preprocessor).__name__}")
        self.preprocessor = preprocessor
        self.feature_names: Optional[List[str]] = None
        self.class_labels: Optional[List[Any]] = None
        self.input_dim = None if input_dim is None else check.integer(input_dim, "input_dim", low=1)
        self.layers: List[Layer] = []
        # The names of self.layers, and per base name the last suffix add() gave: naming a new
        # layer then takes constant time (amortized), not a scan of every name before it.
        self._layer_names: set = set()
        self._name_suffixes: Dict[str, int] = {}
        self.built = False
        self.parameters: Optional[np.ndarray] = None
        self.gradients: Optional[np.ndarray] = None
        self._ranges: List[Tuple[int, int]] = []
        self.optimizer: Optional[optimizers_module.Optimizer] = None
        self.loss: Optional[losses_module.Loss] = None
        self.metrics: List[metrics_module.Metric] = []
        self.stop_training = False
        self.history: Optional[History] = None
        self._fit_count = 0
        self._train_step = 0
        # The current or last fit, as a checkpoint records it (see save_checkpoint).
        self._run: Optional[_TrainingRun] = None
        if layers is not None:
            if isinstance(layers, Layer) or not isinstance(layers, (list, tuple)):
                raise TypeError(f"layers: expected a list of layers, got {type(layers).__name__}")
            for layer in layers:
                self.add(layer)

    # Structure ----------------------------------------------------------------------------------

    def add(self, layer: Layer) -> None:
        """Appends ``layer`` (a layer belongs to one model)."""
        if not isinstance(layer, Layer):
            raise TypeError(f"layer: expected a fusedtrain.layers.Layer, got {type(layer).__name__}")
        if self.built:
            raise ValueError("layer: the model is already built; create a new Sequential to change its layers")
        if layer._model is not None:
            raise ValueError(f"layer: {layer.name!r} already belongs to a model; create a new layer")
        names = self._names_in_use()
        if layer.name is None:
            # Keras' names: "dense", then "dense_1", "dense_2", ... skipping names already taken.
            # Names are never given back (layers are not removed), so the search for a free
            # suffix goes on from the last one given.
            base = layer.base_name
            suffix = self._name_suffixes.get(base, 0)
            candidate = base if suffix == 0 else f"{base}_{suffix}"
            while candidate in names:
                suffix += 1
                candidate = f"{base}_{suffix}"
            self._name_suffixes[base] = suffix
            layer.name = candidate
        elif layer.name in names:
            raise ValueError(f"layer: the model already has a layer named {layer.name!r}")
        declared = getattr(layer, "declared_input_dim", None)
        if declared is not None and not self.layers:
            if self.input_dim is not None and self.input_dim != declared:
                raise ValueError(f"input_dim: the model takes {self.input_dim} features but its first layer "
                                 f"declares input_dim={declared}")
            self.input_dim = declared
        layer._model = self
        self.layers.append(layer)
        names.add(layer.name)

    def _names_in_use(self) -> set:
        """The set of the layers' names, rebuilt when ``self.layers`` was changed in place."""
        if len(self._layer_names) != len(self.layers):
            self._layer_names = {existing.name for existing in self.layers}
            self._name_suffixes = {}
        return self._layer_names

    def _layout(self, input_dim: int) -> List[List[Tuple[str, Tuple[int, ...], int]]]:
        """Per layer, (name, shape, offset) of each parameter in the flat buffer."""
        layout, offset, dim = [], 0, input_dim
        for layer in self.layers:
            entries = []
            for name, shape in layer.parameter_shapes(dim):
                entries.append((name, tuple(shape), offset))
                offset += int(np.prod(shape))
            layout.append(entries)
            dim = layer.output_dim_for(dim)
        return layout

    @_on_device
    def build(self, input_dim: Optional[int] = None) -> None:
        """Lays out the flat buffers for ``input_dim`` features and initialises the weights."""
        if input_dim is not None:
            input_dim = check.integer(input_dim, "input_dim", low=1)
        if self.built:
            if input_dim is not None and input_dim != self.input_dim:
                raise ValueError(f"input_dim: the model is built for {self.input_dim} features, got {input_dim}")
            return
        input_dim = input_dim if input_dim is not None else self.input_dim
        if input_dim is None:
            raise ValueError("input_dim: unknown; pass build(input_dim), Sequential(input_dim=...) or data")
        if self.input_dim is not None and self.input_dim != input_dim:
            raise ValueError(f"input_dim: the model was declared with {self.input_dim} features, got {input_dim}")
        if not self.layers:
            raise ValueError("layers: the model has no layers; add() some first")
        layout = self._layout(input_dim)
        size = sum(int(np.prod(shape)) for entries in layout for _, shape, _ in entries)
        xp = self.backend.xp
        parameters = xp.zeros(size, dtype=np.float32)
        gradients = xp.zeros(size, dtype=np.float32)
        self._ranges = []
        dim = input_dim
        for layer, entries in zip(self.layers, layout):
            layer._backend = self.backend
            views = {name: parameters[offset:offset + int(np.prod(shape))].reshape(shape)
                     for name, shape, offset in entries}
            grad_views = {name: gradients[offset:offset + int(np.prod(shape))].reshape(shape)
                          for name, shape, offset in entries}
            layer.build(dim, views, grad_views)
            start = entries[0][2] if entries else 0
            self._ranges.append((start, start + layer.count_params()))
            dim = layer.output_dim
        rng = np.random.default_rng(np.random.SeedSequence(self._entropy, spawn_key=(0,)))
        for layer in self.layers:
            layer.initialize(rng)
        self.input_dim = input_dim
        self.parameters = parameters
        self.gradients = gradients
        self.built = True

    @property
    def output_dim(self) -> Optional[int]:
        """Outputs per sample (None while unknown)."""
        if self.built:
            return self.layers[-1].output_dim
        for layer in reversed(self.layers):
            if isinstance(layer, Dense):
                return layer.units
        return self.input_dim

    def count_params(self) -> int:
        self._require_built("count_params")
        return int(self.parameters.size)

    def _require_built(self, what: str) -> None:
        """Builds the model when its input size is known (as Keras does for a declared input)."""
        if not self.built and self.input_dim is not None and self.layers:
            self.build()
        if not self.built:
            raise RuntimeError(f"{what}: the model is not built yet; call build(input_dim) or fit it first")

    # Compilation --------------------------------------------------------------------------------

    @_on_device
    def compile(self, optimizer: Any = "rmsprop", loss: Any = None, metrics: Optional[Sequence[Any]] = None) -> None:
        """Chooses the optimizer (name or object), the loss (name or object) and the metrics."""
        if loss is None:
            raise ValueError("loss: expected 'mse', 'binary_crossentropy', 'sparse_categorical_crossentropy' "
                             "or a Loss object, got None")
        loss = losses_module.get(loss)
        optimizer = optimizers_module.get(optimizer)
        if metrics is None:
            metrics = []
        if isinstance(metrics, (str, metrics_module.Metric)) or not isinstance(metrics, (list, tuple)):
            raise TypeError(f"metrics: expected a list of metric names or objects, got {metrics!r}")
        resolved = [metrics_module.get(metric) for metric in metrics]
        for metric in resolved:
            metric.check(loss)
        names = [metric.name for metric in resolved]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates or "loss" in names:
            raise ValueError(f"metrics: each metric needs a distinct name other than 'loss', got {names}")
        if self.layers:
            self._fold(loss)
        if self.built and optimizer.built and optimizer.size != self.parameters.size:
            optimizer.build(self.parameters.size, self.backend)
        self.optimizer, self.loss, self.metrics = optimizer, loss, resolved

    @property
    def compiled(self) -> bool:
        return self.loss is not None

    def _fold(self, loss: Optional[losses_module.Loss]) -> bool:
        """Whether the last layer's activation is folded into ``loss`` (see losses.py)."""
        if loss is None:
            return False
        units = self.output_dim
        return loss.fold_activation(self.layers[-1].final_activation, units if units is not None else 2)

    def _link(self) -> Optional[str]:
        """The activation predict applies to the last layer's (folded) output."""
        return None if self.loss is None else self.loss.link

    def _require_compiled(self, what: str) -> None:
        if not self.compiled:
            raise RuntimeError(f"{what}: the model is not compiled; call compile(optimizer=..., loss=...) "
                               f"first (fit also accepts optimizer= and loss=)")

    # Passes -------------------------------------------------------------------------------------

    def _forward(self, x: np.ndarray, workspace: _Workspace, fold: bool) -> np.ndarray:
        """The last layer's output (logits when ``fold``) for the batch ``x``, in training mode
        when the workspace was allocated for training (Dropout active unless it says not)."""
        output = x
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            workspace.inputs[index] = output
            training = workspace.dropout if isinstance(layer, Dropout) else workspace.training
            output = layer.forward(output, workspace.buffers[index], training, self._train_step,
                                   apply_activation=not (fold and index == last))
        return output

    def _backward(self, rows: int, workspace: _Workspace, fold: bool, first: int) -> None:
        """Backward pass from the loss gradient in workspace.grads[-1] down to layer ``first``."""
        last = len(self.layers) - 1
        for index in range(last, first - 1, -1):
            grad_input = workspace.grads[index - 1][:rows] if index > first else None
            self.layers[index].backward(workspace.grads[index][:rows], workspace.inputs[index],
                                        workspace.buffers[index], grad_input,
                                        apply_activation=not (fold and index == last))

    def _penalty(self) -> float:
        return sum(layer.regularization_penalty() for layer in self.layers if layer.trainable)

    def _first_trainable(self) -> Optional[int]:
        for index, layer in enumerate(self.layers):
            if layer.trainable and layer.count_params():
                return index
        return None

    def _trainable_segments(self) -> List[Tuple[int, int]]:
        """Contiguous [start, stop) runs of trainable parameters in the flat buffer."""
        segments: List[Tuple[int, int]] = []
        for layer, (start, stop) in zip(self.layers, self._ranges):
            if not layer.trainable or stop == start:
                continue
            if segments and segments[-1][1] == start:
                segments[-1] = (segments[-1][0], stop)
            else:
                segments.append((start, stop))
        return segments

    def _batch_metrics(self, y: Any, logits: Any, workspace: _Workspace, totals: Any) -> List[Any]:
        """The metrics of one batch: Python floats, or on a GPU the slots of ``totals`` that
        the ops wrote them to."""
        rows = logits.shape[0]
        link = self._link()
        predictions = logits
        if link is not None and workspace.probabilities is not None:
            predictions = activate(link, 0.0, logits, workspace.probabilities[:rows])
        scratch = workspace.scratch[:rows]
        return [metric(y, predictions if metric.uses_probabilities else logits, self.loss.task, scratch,
                       out=totals.slot(index + 1))
                for index, metric in enumerate(self.metrics)]

    def _needs_probabilities(self) -> bool:
        return self._link() is not None and any(metric.uses_probabilities for metric in self.metrics)

    # Input checks -------------------------------------------------------------------------------

    def _gpu_array(self, value: Any) -> Any:
        """``value`` as a CuPy array when the model is on a GPU and ``value`` is in GPU memory (a
        CuPy array, or a DLPack object such as a CUDA tensor, read without a copy), else None."""
        if self.backend.kind != "cuda":
            return None
        if check.is_cupy(value):
            return value
        if hasattr(value, "__dlpack__") and hasattr(value, "__dlpack_device__"):
            if int(value.__dlpack_device__()[0]) == _DLPACK_CUDA:
                return self.backend.xp.from_dlpack(value)
        return None

    def _features(self, x: Any, name: str = "x", fitting: bool = False, rows: Optional[np.ndarray] = None) -> Any:
        """``x`` checked and converted (data.features), on the model's device; a DataFrame
        through the preprocessor or by its column names (``fitting``: fit may set them;
        ``rows``: the rows an unfitted preprocessor takes its statistics from, None for all)."""
        if tables.is_table(x):
            x = self._table_features(x, name, fitting, rows)
        on_gpu = self._gpu_array(x)
        if on_gpu is not None:
            array = self._device_features(on_gpu, name)
        else:
            array = self.backend.to_device(features(host_array(x, name), name, self.input_dim), name)
        if not self.built:
            self.build(array.shape[1])
        return array

    def _table_features(self, table: Any, name: str, fitting: bool, rows: Optional[np.ndarray] = None) -> np.ndarray:
        """A DataFrame as a float32 array: encoded by the preprocessor (fitted here when it is
        not yet, its statistics from ``rows``), or its numeric columns in the order of
        ``feature_names`` (recorded by fit, checked otherwise)."""
        if self.preprocessor is not None:
            try:
                if not self.preprocessor.fitted:
                    if not fitting:
                        raise RuntimeError(f"{name}: the model's preprocessor is not fitted yet; fit the model "
                                           f"(or the preprocessor) on a table first")
                    self.preprocessor.fit(table, rows=rows)
                return self.preprocessor.transform(table)
            except ValueError as error:
                raise ValueError(f"{name}: {str(error).removeprefix('table: ')}") from None
        frame = tables.as_frame(table, name)
        columns = list(frame.columns)
        if self.feature_names is not None:
            absent = [column for column in self.feature_names if column not in columns]
            extra = [column for column in columns if column not in self.feature_names]
            if absent or extra:
                problem = f"no column {absent[0]!r}" if absent else f"the column {extra[0]!r} was not seen in fit"
                raise ValueError(f"{name}: {problem}; the model was fitted on the columns "
                                 f"{tables._listing(self.feature_names)}")
            frame = frame[self.feature_names]
        elif fitting:
            self.feature_names = columns
        for column in frame.columns:
            if frame[column].dtype.kind not in "biuf":
                raise TypeError(f"{name}: the column {column!r} holds {frame[column].dtype} values, not numbers; "
                                f"encode it first, for example with Sequential(..., "
                                f"preprocessor=fusedtrain.data.TablePreprocessor())")
        return frame.to_numpy(dtype=np.float64, na_value=np.nan)

    def _device_features(self, x: Any, name: str) -> Any:
        """CuPy features: used in place when float32, C-contiguous and on the model's GPU; the
        checks of data.features run on the GPU (one read for the finiteness test)."""
        if x.device.id != self.backend.index:
            raise ValueError(f"{name}: is on GPU {x.device.id}, but the model is on {self.device}")
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"{name}: expected a non-empty 2-D array (samples, features), got shape {tuple(x.shape)}")
        if self.input_dim is not None and x.shape[1] != self.input_dim:
            raise ValueError(f"{name}: the model takes {self.input_dim} features per sample, got {x.shape[1]} "
                             f"(shape {tuple(x.shape)})")
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{name}: expected numeric values, got dtype {x.dtype}")
        xp = self.backend.xp
        with self.backend.scope():
            array = xp.ascontiguousarray(x, dtype=np.float32)
            if not bool(xp.isfinite(array).all()):
                raise ValueError(f"{name}: contains NaN or infinite values (or values that overflow float32); "
                                 f"remove or impute them first")
        return array

    def _targets(self, y: Any, rows: int, name: str = "y", fitting: bool = False) -> np.ndarray:
        if y is None:
            raise TypeError(f"{name}: expected an array of targets, one per sample, got None")
        on_gpu = self._gpu_array(y)
        if on_gpu is not None:
            # Targets are checked on the host (losses.py), then copied back: small next to x.
            y = self.backend.xp.asnumpy(on_gpu)
        if tables.is_table(y) and y.shape[1] == 1:
            y = y.iloc[:, 0]
        y = host_array(np.asarray(y) if type(y).__module__.startswith("pandas") else y, name)
        if self.loss.task != "regression" and not isinstance(self.loss, losses_module.CategoricalCrossentropy):
            y = self._class_indices(y, name, fitting)
        shape = np.shape(y)
        if len(shape) == 0:
            raise ValueError(f"{name}: expected one target per sample, got a scalar")
        if shape[0] != rows:
            raise ValueError(f"{name}: expected {rows} samples (as many rows as x), got {shape[0]}")
        try:
            return self.backend.to_device(self.loss.targets(y, rows, self.output_dim), name)
        except (ValueError, TypeError) as error:
            message = str(error)
            if name != "y" and message.startswith("y:"):
                message = name + message[1:]
            raise type(error)(message) from None

    def _class_indices(self, y: Any, name: str, fitting: bool) -> Any:
        """Class labels as the indices the loss takes: through ``class_labels`` when set, else
        (in fit) text labels, or integers that are not indices 0..classes-1, are mapped to the
        positions of their sorted distinct values, which become ``class_labels``."""
        labels = np.asarray(y)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1:
            return y
        if self.class_labels is None:
            classes = self.output_dim if self.loss.task == "multiclass" else 2
            # Decided by the first fit: a model fitted on class indices keeps taking indices.
            if not fitting or self._fit_count > 0 or labels.size == 0 or not _needs_mapping(labels, classes):
                if labels.dtype.kind in "OUS":
                    raise TypeError(f"{name}: text labels, but the model was fitted on class indices")
                return y
            distinct = _distinct_labels(labels, name)
            if len(distinct) != classes:
                raise ValueError(f"{name}: {len(distinct)} distinct labels ({_shown(distinct)}), but the model has "
                                 f"{classes} classes ({'outputs' if self.loss.task == 'multiclass' else 'a sigmoid output: two'}); "
                                 f"the last layer needs one unit per class")
            self.class_labels = distinct
        lookup = {_label_key(label): index for index, label in enumerate(self.class_labels)}
        indices = np.empty(labels.shape[0], dtype=np.int64)
        for row, label in enumerate(labels.tolist()):
            index = lookup.get(_label_key(label))
            if index is None:
                raise ValueError(f"{name}: the label {label!r} at index {row} is not one of the model's classes "
                                 f"({_shown(self.class_labels)})")
            indices[row] = index
        return indices

    # Training -----------------------------------------------------------------------------------

    @_on_device
    def fit(self, x: Any, y: Any, epochs: int = 1, batch_size: int = 32, validation_data: Any = None,
            validation_split: float = 0.0, shuffle: bool = True, callbacks: Optional[Sequence[Callback]] = None,
            verbose: int = 1, seed: Optional[int] = None, terminate_on_nan: bool = True,
            optimizer: Any = None, loss: Any = None, metrics: Optional[Sequence[Any]] = None,
            initial_epoch: int = 0, resume: Any = None, sample_weight: Any = None,
            class_weight: Any = None, sharded: bool = False) -> History:
        """Trains until epoch ``epochs`` and returns the History.

        validation_split: the fraction of samples, taken from the END of x and y before any
            shuffling (as Keras), held out for validation; validation_data=(x_val, y_val) takes
            precedence. Both add val_loss and val_<metric> to the logs. validation_data may be
            (x_val, y_val, sample_weight_val) for a weighted val_loss; validation_split splits
            ``sample_weight`` with x and y (class_weight weighs the training data only).
        sample_weight: one non-negative weight per sample; class_weight: {class: weight} (the
            class indices, or the labels of a model with ``class_labels``; classes left out
            weigh 1) or "balanced" (rows / (classes * rows of the class), as scikit-learn).
            Keras semantics: a sample's loss is multiplied by its weight (by both, when both
            are given) and a batch's loss is the weighted sum over the batch's size, so the
            gradient scales with the weights; metrics are not weighted.
        sharded: under an MPI launch (fusedtrain.distributed), x and y (and the validation
            data) hold only this rank's shard, not the whole data set that every rank passes
            otherwise. In a world of one it changes nothing.
        shuffle: a new order each epoch from a generator seeded by ``seed`` (or by the model's
            seed and the number of earlier fit calls when None).
        terminate_on_nan: stop at the first batch whose loss is NaN or infinite, before the
            update, with a RuntimeWarning naming the epoch and batch; the history keeps the
            epochs completed. On a GPU the loss stays on the device: it is checked every 100
            batches and at the end of each epoch (one read each), and the warning names the
            batches since the last check; the weights may then hold non-finite values.
        optimizer, loss, metrics: compile with these first (any given replaces the compiled one).
        initial_epoch: the index of the first epoch to run (Keras): training runs epochs
            initial_epoch .. epochs - 1, so ``epochs`` is where training ends, not a number of
            further epochs; schedules and the history count from initial_epoch.
        resume: a checkpoint (save_checkpoint, ModelCheckpoint(save_training_state=True)) to
            continue from: weights, optimizer state, epoch, random generator states (``seed``
            is then not used), history and callback states are restored, so that with the same
            data, arguments and callbacks (new objects) training ends as an uninterrupted run
            would, bit for bit. The whole checkpoint is checked against this model first.
            An uncompiled model is compiled from the checkpoint's settings.
        The history holds, per epoch: loss (the mean over the epoch's batches, weighted by their
        size, regularization penalties included), the metrics, the val_* values and lr.
        x, y and validation data may be NumPy arrays, anything np.asarray accepts, or objects
        with __dlpack__ on the CPU (e.g. PyTorch tensors; read without a copy). On a GPU they
        are copied to the device once per call; CuPy features on the model's GPU are used in
        place."""
        if optimizer is not None or loss is not None or metrics is not None:
            self.compile(optimizer if optimizer is not None else (self.optimizer or "rmsprop"),
                         loss if loss is not None else self.loss,
                         metrics if metrics is not None else self.metrics)
        checkpoint = serialization.read_checkpoint(resume) if resume is not None else None
        if checkpoint is None:
            self._require_compiled("fit")
        epochs = check.integer(epochs, "epochs", low=1)
        initial_epoch = check.integer(initial_epoch, "initial_epoch", low=0)
        batch_size = check.integer(batch_size, "batch_size", low=1)
        validation_split = check.real(validation_split, "validation_split", low=0.0, high=1.0, high_open=True)
        shuffle = check.flag(shuffle, "shuffle")
        verbose = check.integer(int(verbose) if isinstance(verbose, bool) else verbose, "verbose", low=0, high=2)
        terminate_on_nan = check.flag(terminate_on_nan, "terminate_on_nan")
        if seed is not None:
            seed = check.integer(seed, "seed", low=0)
        sharded = check.flag(sharded, "sharded")
        world = distributed.world()
        parallel = world.size > 1
        if parallel and not world.is_main:
            verbose = 0
        if callbacks is not None and not isinstance(callbacks, (list, tuple)):
            raise TypeError(f"callbacks: expected a list of callbacks, got {type(callbacks).__name__}")
        user_callbacks = list(callbacks or [])
        if checkpoint is not None:
            if initial_epoch not in (0, checkpoint.epoch):
                raise ValueError(f"initial_epoch: the checkpoint continues at epoch {checkpoint.epoch}, got "
                                 f"initial_epoch={initial_epoch}; leave it out when resuming")
            initial_epoch = checkpoint.epoch
            checkpoint.check(self, user_callbacks)
            checkpoint.prepare(self)
        if epochs < initial_epoch:
            start = f"the checkpoint {checkpoint.source} continues at" if checkpoint is not None else "starts at"
            raise ValueError(f"epochs: training would end at epoch {epochs} but {start} epoch {initial_epoch}; "
                             f"epochs is the index of the last epoch (Keras), not a number of further epochs")

        # A preprocessor fitted here reads the types from every row but takes its statistics
        # (medians, categories, scaling) from the training rows, as the command line's does.
        training_rows = None
        if tables.is_table(x) and validation_data is None and validation_split > 0.0:
            split_at = _validation_start(len(x), validation_split)
            training_rows = np.arange(split_at) if 0 < split_at < len(x) else None
        x_all = self._features(x, fitting=True, rows=training_rows)
        fold = self._fold(self.loss)
        y_all = self._targets(y, x_all.shape[0], fitting=True)
        w_all = self._sample_weights(sample_weight, None, y_all, x_all.shape[0])
        x_train, y_train, w_train, x_val, y_val, w_val = self._split_validation(
            x_all, y_all, w_all, validation_data, validation_split)
        if class_weight is not None:
            class_weights = self._sample_weights(None, class_weight, y_train, x_train.shape[0])
            w_train = class_weights if w_train is None else w_train * class_weights
        samples = int(x_train.shape[0])
        validation_samples = 0 if x_val is None else int(x_val.shape[0])
        if parallel:
            shards = self._agree_on_arguments(world, sharded, samples, validation_samples, batch_size, epochs,
                                              initial_epoch, shuffle)
            if sharded:
                samples, validation_samples = sum(shards[0]), sum(shards[1])
        arguments = {"batch_size": batch_size, "shuffle": bool(shuffle), "samples": samples,
                     "validation_samples": validation_samples, "epochs": epochs}
        rng = None
        if checkpoint is not None:
            checkpoint.warn_on_different_arguments(arguments)
            rng = checkpoint.restore(self)
        if rng is None:
            rng = self._seed_run(seed)
        parallel_run = None
        if parallel:
            parallel_run = _ParallelRun(self, world, rng, sharded, shards, batch_size)
            x_val, y_val, w_val = parallel_run.validation_part(x_val, y_val, w_val)
        loader = BatchLoader(x_train, y_train, batch_size, shuffle=bool(shuffle), rng=rng, backend=self.backend,
                             sample_weight=w_train, **(parallel_run.loader_arguments() if parallel else {}))
        rows = loader._largest_batch()
        workspace = _Workspace(self, rows, training=True, probabilities=self._needs_probabilities())
        validation_workspace = None
        if x_val is not None and x_val.shape[0]:
            validation_workspace = _Workspace(self, min(batch_size, x_val.shape[0]), training=False,
                                              probabilities=self._needs_probabilities())
        self.optimizer.build(self.parameters.size, self.backend)
        segments = self._trainable_segments()
        first = self._first_trainable()
        for layer, (start, stop) in zip(self.layers, self._ranges):
            if not layer.trainable:
                # Frozen layers get no gradient; zeros keep model.gradients meaningful.
                self.gradients[start:stop] = 0.0

        history = History()
        # A checkpoint written at the end of an epoch must hold the other callbacks' state for
        # that epoch: the checkpointing callbacks run after them.
        writes_checkpoints = [isinstance(callback, ModelCheckpoint) and callback.save_training_state
                              for callback in user_callbacks]
        ordered = ([callback for callback, last in zip(user_callbacks, writes_checkpoints) if not last]
                   + [callback for callback, last in zip(user_callbacks, writes_checkpoints) if last])
        callback_list = CallbackList([history] + ordered, model=self)
        if verbose > 0:
            callback_list.append(ProgressLogger(verbose=verbose, epochs=epochs, steps=len(loader)))
        callback_list.set_params({"epochs": epochs, "steps": len(loader), "verbose": verbose})
        self.history = history
        self.stop_training = False
        run = self._run = _TrainingRun(user_callbacks, history, rng, arguments, initial_epoch)
        names = ["loss"] + [metric.name for metric in self.metrics]
        epoch_logs: Dict[str, float] = {}
        callback_list.on_train_begin()
        if checkpoint is not None:
            checkpoint.restore_callbacks(history, user_callbacks)
            # A run that had stopped (early stopping) at the checkpoint runs no further epoch.
            self.stop_training = checkpoint.stopped
        for epoch in range(epochs if self.stop_training else initial_epoch, epochs):
            run.in_epoch = True
            callback_list.on_epoch_begin(epoch)
            totals = self.backend.totals(len(names))
            diverged = False
            checked = 0
            if parallel_run is not None:
                parallel_run.begin_epoch(loader)
            for batch, (x_batch, y_batch, *w_batch) in enumerate(loader):
                callback_list.on_train_batch_begin(batch)
                if parallel_run is not None:
                    outcome = parallel_run.train_batch(batch, x_batch, y_batch, w_batch[0] if w_batch else None,
                                                       workspace, fold, segments, first, totals,
                                                       bool(terminate_on_nan))
                    if outcome == "stop":
                        break
                    if outcome == "diverged":
                        self._report_divergence(epoch, batch, batch, len(loader), verbose)
                        diverged = True
                        break
                elif not self._train_batch(x_batch, y_batch, w_batch[0] if w_batch else None, workspace, fold,
                                           segments, first, totals,
                                           check_finite=bool(terminate_on_nan)):
                    self._report_divergence(epoch, batch, batch, len(loader), verbose)
                    diverged = True
                    break
                if terminate_on_nan and parallel_run is None and totals.check_due(batch):
                    if not totals.loss_is_finite():
                        self._report_divergence(epoch, checked, batch, len(loader), verbose)
                        diverged = True
                        break
                    checked = batch + 1
                callback_list.on_train_batch_end(batch, totals.batch_logs(names))
                # In a world of N, a stop asked for on one rank is agreed at the next step.
                if self.stop_training and parallel_run is None:
                    break
            if diverged:
                self.stop_training = True
                break
            epoch_logs = totals.means(names) if parallel_run is None else parallel_run.means(totals, names)
            if terminate_on_nan and not math.isfinite(epoch_logs["loss"]):
                # On a GPU the last batches since the previous check diverged.
                self._report_divergence(epoch, checked, len(loader) - 1, len(loader), verbose)
                self.stop_training = True
                break
            if x_val is not None:
                if parallel_run is None:
                    results = self._evaluate_arrays(x_val, y_val, w_val, validation_workspace, fold)
                else:
                    results = parallel_run.evaluate(x_val, y_val, w_val, validation_workspace, fold, names)
                epoch_logs.update({f"val_{name}": value for name, value in results.items()})
            epoch_logs["lr"] = float(self.optimizer.learning_rate)
            run.in_epoch = False
            run.next_epoch = epoch + 1
            if parallel_run is not None:
                parallel_run.end_epoch(epoch)
            callback_list.on_epoch_end(epoch, epoch_logs)
            if parallel_run is not None:
                self.stop_training = parallel_run.any(self.stop_training)
            if self.stop_training:
                break
        callback_list.on_train_end(epoch_logs)
        return history

    def _agree_on_arguments(self, world: Any, sharded: bool, samples: int, validation_samples: int, batch_size: int,
                            epochs: int, initial_epoch: int, shuffle: bool) -> Tuple[List[int], List[int]]:
        """Checks that every rank trains with the same arguments (and, unless ``sharded``, the
        same number of samples); returns every rank's (training, validation) sample counts."""
        mine = {"batch_size": batch_size, "epochs": epochs, "initial_epoch": initial_epoch, "shuffle": bool(shuffle),
                "features": self.input_dim, "sharded": sharded}
        if not sharded:
            mine.update({"samples": samples, "validation samples": validation_samples})
        everyone = world.gather((mine, samples, validation_samples))
        for rank, (theirs, _, _) in enumerate(everyone):
            for key, value in theirs.items():
                if value != everyone[0][0][key]:
                    where = ("pass the same data on every rank, or each its shard with sharded=True"
                             if key in ("samples", "validation samples") else "every rank must call fit alike")
                    raise ValueError(f"distributed: rank {rank} has {key}={value!r} but rank 0 has "
                                     f"{everyone[0][0][key]!r}; {where}")
        return [entry[1] for entry in everyone], [entry[2] for entry in everyone]

    def _split_validation(self, x: np.ndarray, y: np.ndarray, w: Any, validation_data: Any, validation_split: float):
        """(x_train, y_train, w_train, x_val, y_val, w_val): validation_data checked and
        converted, or the last ``validation_split`` of x/y/w (views, no copy), or no validation
        (Nones); the weights are None where none were given."""
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError("validation_data: expected a tuple (x_val, y_val) or (x_val, y_val, sample_weight_val)")
            x_val = self._features(validation_data[0], "validation_data[0]")
            y_val = self._targets(validation_data[1], x_val.shape[0], "validation_data[1]")
            w_val = None
            if len(validation_data) == 3:
                w_val = self._sample_weights(validation_data[2], None, y_val, x_val.shape[0], "validation_data[2]")
            return x, y, w, x_val, y_val, w_val
        if validation_split == 0.0:
            return x, y, w, None, None, None
        split_at = _validation_start(x.shape[0], validation_split)
        if split_at == 0 or split_at == x.shape[0]:
            raise ValueError(f"validation_split: {validation_split} of {x.shape[0]} samples leaves an "
                             f"empty {'training' if split_at == 0 else 'validation'} set")
        w_train, w_val = (None, None) if w is None else (w[:split_at], w[split_at:])
        return x[:split_at], y[:split_at], w_train, x[split_at:], y[split_at:], w_val

    def _sample_weights(self, sample_weight: Any, class_weight: Any, y: Any, rows: int,
                        name: str = "sample_weight") -> Any:
        """The float32 weight of each of ``rows`` samples on the model's device (the product of
        ``sample_weight`` and the weight ``class_weight`` gives each sample's class in the
        converted targets ``y``), or None when both are None."""
        if sample_weight is None and class_weight is None:
            return None
        weights = np.ones(rows, dtype=np.float32)
        if sample_weight is not None:
            on_gpu = self._gpu_array(sample_weight)
            values = self.backend.xp.asnumpy(on_gpu) if on_gpu is not None else host_array(
                np.asarray(sample_weight) if type(sample_weight).__module__.startswith("pandas") else sample_weight, name)
            values = np.asarray(values)
            if values.ndim == 2 and values.shape[1] == 1:
                values = values[:, 0]
            if values.ndim != 1 or values.shape[0] != rows:
                raise ValueError(f"{name}: expected one weight per sample, shape ({rows},), got shape {values.shape}")
            if values.dtype.kind not in "biuf":
                raise TypeError(f"{name}: expected numeric weights, got dtype {values.dtype}")
            values = values.astype(np.float64)
            bad = ~np.isfinite(values) | (values < 0.0)
            if bad.any():
                index = int(np.argmax(bad))
                raise ValueError(f"{name}: expected finite non-negative weights, got {values[index]:g} at index {index}")
            weights *= values.astype(np.float32)
        if class_weight is not None:
            classes = self._sample_classes(self.backend.to_host(y))
            weights *= self._class_weights(class_weight, classes)[classes]
        return self.backend.to_device(weights, name)

    def _sample_classes(self, targets: np.ndarray) -> np.ndarray:
        """The class index of each sample, from the converted targets (class_weight)."""
        if self.loss.task == "regression" or (self.loss.task == "binary" and targets.shape[1] != 1):
            kind = self.loss.name if self.loss.task == "regression" else "binary_crossentropy with several outputs"
            raise ValueError(f"class_weight: needs one class per sample (a categorical cross-entropy, or "
                             f"binary_crossentropy with one output), but the model is compiled with {kind}; "
                             f"use sample_weight")
        if self.loss.task == "binary":
            return (targets[:, 0] >= 0.5).astype(np.int64)
        if targets.ndim == 2:
            return np.argmax(targets, axis=1)
        return targets

    def _class_weights(self, class_weight: Any, samples: np.ndarray) -> np.ndarray:
        """``class_weight`` ({class: weight} or "balanced") as one float32 weight per class
        index; ``samples`` holds each sample's class ("balanced" counts them)."""
        classes = self.output_dim if self.loss.task == "multiclass" else 2
        if isinstance(class_weight, str) and class_weight == "balanced":
            counts = np.bincount(samples, minlength=classes)
            present = counts > 0
            weights = np.ones(classes, dtype=np.float64)
            weights[present] = samples.shape[0] / (present.sum() * counts[present])
            return weights.astype(np.float32)
        if not isinstance(class_weight, dict):
            raise TypeError(f"class_weight: expected a dict {{class: weight}} or 'balanced', got "
                            f"{type(class_weight).__name__}")
        labels = self.class_labels
        names = labels if labels is not None else range(classes)
        lookup = {_label_key(label): index for index, label in enumerate(names)}
        weights = np.ones(classes, dtype=np.float32)
        for key, value in class_weight.items():
            index = lookup.get(_label_key(key))
            if index is None:
                known = _shown(labels) if labels is not None else f"the class indices 0..{classes - 1}"
                raise ValueError(f"class_weight: {key!r} is not one of the model's classes ({known})")
            weight = check.real(value, f"class_weight[{key!r}]", low=0.0)
            weights[index] = weight
        return weights

    def _seed_run(self, seed: Optional[int]) -> np.random.Generator:
        """Seeds one fit: gives each Dropout layer its mask seed and returns the shuffling
        generator, both derived from ``seed``, or from the model's seed and the number of
        earlier fit calls."""
        sequence = (np.random.SeedSequence(seed) if seed is not None
                    else np.random.SeedSequence(self._entropy, spawn_key=(1, self._fit_count)))
        self._fit_count += 1
        shuffle_sequence, dropout_sequence = sequence.spawn(2)
        for index, layer in enumerate(self.layers):
            if isinstance(layer, Dropout):
                layer_sequence = np.random.SeedSequence(dropout_sequence.entropy,
                                                        spawn_key=dropout_sequence.spawn_key + (index,))
                layer.run_seed = int(layer_sequence.generate_state(1, np.uint64)[0])
        return np.random.default_rng(shuffle_sequence)

    def _batch_loss(self, logits: Any, y: Any, w: Any, workspace: _Workspace, loss_out: Any = None) -> Any:
        """The batch's loss (weighted by ``w`` when not None), its gradient into the workspace."""
        grad_out = workspace.grads[-1][:logits.shape[0]]
        if w is None:
            return self.loss(logits, y, grad_out, loss_out=loss_out)
        return self.loss.weighted(logits, y, w, grad_out, loss_out=loss_out)

    def _train_batch(self, x: Any, y: Any, w: Any, workspace: _Workspace, fold: bool,
                     segments: List[Tuple[int, int]], first: Optional[int], totals: Any, check_finite: bool) -> bool:
        """One step, its loss and metrics added to ``totals``; False when the loss is known to
        be not finite and ``check_finite`` (then nothing is updated). On a GPU the loss is not
        known here (see backends/cuda.py): the loop checks it every few batches."""
        rows = x.shape[0]
        logits = self._forward(x, workspace, fold)
        loss = self._batch_loss(logits, y, w, workspace, loss_out=totals.slot(0))
        penalty = self._penalty()
        if check_finite and not totals.finite(loss, penalty):
            return False
        totals.add([loss] + self._batch_metrics(y, logits, workspace, totals), penalty, rows)
        if first is not None:
            self._backward(rows, workspace, fold, first)
            self.optimizer.apply(self.parameters, self.gradients, segments)
        self._train_step += 1
        return True

    def _report_divergence(self, epoch: int, since: int, batch: int, steps: int, verbose: int) -> None:
        if since == batch:
            where = f"batch {batch + 1} of {steps}: the loss is not finite (NaN or infinite); training stopped " \
                    f"before this batch's update"
        else:
            where = (f"batches {since + 1}-{batch + 1} of {steps}: the loss became non-finite (NaN or infinite) "
                     f"in one of them (on {self.device} it is checked every few batches); training stopped, and "
                     f"the weights may hold non-finite values")
        message = (f"Epoch {epoch + 1}, {where} (terminate_on_nan=True). A smaller learning rate or clipnorm "
                   f"usually helps.")
        if verbose > 0:
            print(message, file=sys.stdout, flush=True)
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    @_on_device
    def train_on_batch(self, x: Any, y: Any, sample_weight: Any = None, class_weight: Any = None) -> float:
        """One optimizer step on one batch; returns its loss (penalties included). The weights
        as in fit."""
        self._require_compiled("train_on_batch")
        x = self._features(x)
        fold = self._fold(self.loss)
        y = self._targets(y, x.shape[0])
        w = self._sample_weights(sample_weight, class_weight, y, x.shape[0])
        self.optimizer.build(self.parameters.size, self.backend)
        workspace = _Workspace(self, x.shape[0], training=True, probabilities=False)
        rows = x.shape[0]
        logits = self._forward(x, workspace, fold)
        loss = self.backend.read(self._batch_loss(logits, y, w, workspace)) + self.backend.read(self._penalty())
        first = self._first_trainable()
        if first is not None:
            self._backward(rows, workspace, fold, first)
            self.optimizer.apply(self.parameters, self.gradients, self._trainable_segments())
        self._train_step += 1
        return loss

    @_on_device
    def loss_and_gradients(self, x: Any, y: Any, sample_weight: Any = None) -> Tuple[float, np.ndarray]:
        """The loss of the batch ``x``/``y`` (penalties included, Dropout inactive; weighted as
        in fit with ``sample_weight``) and the gradient of it with respect to every trainable
        parameter, written into ``model.gradients`` (returned, on the model's device; the
        entries of frozen layers are zero). No update."""
        self._require_compiled("loss_and_gradients")
        x = self._features(x)
        fold = self._fold(self.loss)
        y = self._targets(y, x.shape[0])
        w = self._sample_weights(sample_weight, None, y, x.shape[0])
        rows = x.shape[0]
        workspace = _Workspace(self, rows, training=True, probabilities=False, dropout=False)
        self.gradients[...] = 0.0
        output = self._forward(x, workspace, fold)
        loss = self.backend.read(self._batch_loss(output, y, w, workspace)) + self.backend.read(self._penalty())
        first = self._first_trainable()
        if first is not None:
            self._backward(rows, workspace, fold, first)
        return loss, self.gradients

    # Inference ----------------------------------------------------------------------------------

    def _inference_rows(self, batch_size: Optional[int], count: int) -> int:
        batch_size = INFERENCE_BATCH_SIZE if batch_size is None else check.integer(batch_size, "batch_size", low=1)
        return min(batch_size, count)

    def _evaluate_arrays(self, x: Any, y: Any, w: Any, workspace: _Workspace, fold: bool) -> Dict[str, float]:
        names = ["loss"] + [metric.name for metric in self.metrics]
        totals = self.backend.totals(len(names))
        for start in range(0, x.shape[0], workspace.rows):
            x_batch, y_batch = x[start:start + workspace.rows], y[start:start + workspace.rows]
            rows = x_batch.shape[0]
            logits = self._forward(x_batch, workspace, fold)
            w_batch = None if w is None else w[start:start + rows]
            values = [self._batch_loss(logits, y_batch, w_batch, workspace, loss_out=totals.slot(0))]
            values += self._batch_metrics(y_batch, logits, workspace, totals)
            totals.add(values, 0.0, rows)
        results = totals.means(names)
        results["loss"] += self.backend.read(self._penalty())
        return results

    @_on_device
    def evaluate(self, x: Any, y: Any, batch_size: Optional[int] = None, sample_weight: Any = None) -> Dict[str, float]:
        """{"loss": ..., metric: ...} over all of x/y (the loss includes regularization penalties,
        as in training; weighted as in fit with ``sample_weight``, the metrics are not).
        ``batch_size`` only splits the work (default 256 rows)."""
        self._require_compiled("evaluate")
        x = self._features(x)
        fold = self._fold(self.loss)
        y = self._targets(y, x.shape[0])
        w = self._sample_weights(sample_weight, None, y, x.shape[0])
        workspace = _Workspace(self, self._inference_rows(batch_size, x.shape[0]), training=False,
                               probabilities=self._needs_probabilities())
        return self._evaluate_arrays(x, y, w, workspace, fold)

    def predict(self, x: Any, batch_size: Optional[int] = None, to_numpy: bool = True) -> Any:
        """The model's outputs for ``x``, shape (samples, outputs), float32: probabilities for a
        model compiled with a cross-entropy loss (sigmoid or softmax applied), the last layer's
        output otherwise. Dropout is inactive. A NumPy array, copied from the GPU for a model
        on one; ``to_numpy=False`` returns the array of the model's device (CuPy on a GPU)."""
        to_numpy = check.flag(to_numpy, "to_numpy")
        with self.backend.scope():
            x = self._features(x)
            fold = self._fold(self.loss)
            link = self._link()
            workspace = _Workspace(self, self._inference_rows(batch_size, x.shape[0]), training=False,
                                   probabilities=False)
            result = self.backend.xp.empty((x.shape[0], self.output_dim), dtype=np.float32)
            for start in range(0, x.shape[0], workspace.rows):
                x_batch = x[start:start + workspace.rows]
                output = self._forward(x_batch, workspace, fold)
                target = result[start:start + x_batch.shape[0]]
                if link is None:
                    self.backend.xp.copyto(target, output)
                else:
                    activate(link, 0.0, output, target)
            return self.backend.to_host(result) if to_numpy else result

    def predict_proba(self, x: Any, batch_size: Optional[int] = None) -> np.ndarray:
        """Class probabilities, for a model compiled with a cross-entropy loss: (samples, classes)
        for sparse categorical cross-entropy, (samples, outputs) for binary cross-entropy."""
        self._require_classifier("predict_proba")
        return self.predict(x, batch_size)

    def predict_classes(self, x: Any, batch_size: Optional[int] = None) -> np.ndarray:
        """Predicted classes as int64: the most probable class per sample (categorical
        cross-entropies), or 1 where the probability is above 0.5 (binary cross-entropy; shape
        (samples,) for one output, (samples, outputs) for several). A model with
        ``class_labels`` returns those labels instead of the indices."""
        self._require_classifier("predict_classes")
        probabilities = self.predict(x, batch_size)
        if self.loss.task == "multiclass":
            classes = np.argmax(probabilities, axis=1).astype(np.int64)
        else:
            classes = (probabilities > 0.5).astype(np.int64)
            classes = classes[:, 0] if classes.shape[1] == 1 else classes
        if self.class_labels is not None:
            return np.asarray(self.class_labels)[classes]
        return classes

    def _require_classifier(self, what: str) -> None:
        self._require_compiled(what)
        if self.loss.task == "regression":
            raise ValueError(f"{what}: needs a model compiled with a classification loss "
                             f"(binary_crossentropy or sparse_categorical_crossentropy), not {self.loss.name}")

    # Weights ------------------------------------------------------------------------------------

    def _parameter_entries(self, input_dim: int) -> List[Tuple[int, str, Tuple[int, ...]]]:
        """(layer index, parameter name, shape) in get_weights order."""
        return [(index, name, shape) for index, entries in enumerate(self._layout(input_dim))
                for name, shape, _ in entries]

    def get_weights(self) -> List[np.ndarray]:
        """Copies of the parameters: [kernel0, bias0, kernel1, bias1, ...] (kernels (in, out))."""
        self._require_built("get_weights")
        return [self.backend.to_host(value, copy=True) for layer in self.layers for value in layer.weights]

    @_on_device
    def set_weights(self, weights: Sequence[Any]) -> None:
        """Sets every parameter from a list like get_weights'. All arrays are checked (count,
        shape, numeric and finite values) before any is copied; an unbuilt model is built for
        the input size the first kernel implies."""
        if isinstance(weights, np.ndarray) or not isinstance(weights, (list, tuple)):
            raise TypeError(f"weights: expected a list of arrays like get_weights() returns, got "
                            f"{type(weights).__name__}")
        input_dim = self.input_dim
        if not self.built and input_dim is None and weights:
            input_dim = np.shape(weights[0])[0] if np.ndim(weights[0]) == 2 else None
            if input_dim is None:
                raise ValueError(f"weights[0]: expected the first kernel, a 2-D array, got shape {np.shape(weights[0])}")
        if input_dim is None:
            raise ValueError("weights: the model's input size is unknown; build(input_dim) first")
        entries = self._parameter_entries(input_dim)
        if len(weights) != len(entries):
            raise ValueError(f"weights: expected {len(entries)} arrays ({self._describe_entries(entries)}), "
                             f"got {len(weights)}")
        arrays = []
        for index, (value, (layer_index, name, shape)) in enumerate(zip(weights, entries)):
            array = to_float32(value, f"weights[{index}]")
            if array.shape != shape:
                raise ValueError(f"weights[{index}]: expected shape {shape} for {self.layers[layer_index].name}."
                                 f"{name}, got {array.shape}")
            problem = self.layers[layer_index].weight_problem(name, array)
            if problem:
                raise ValueError(f"weights[{index}]: {self.layers[layer_index].name}.{name} {problem}")
            arrays.append(array)
        self.build(input_dim)
        for target, array in zip((value for layer in self.layers for value in layer.weights), arrays):
            self.backend.assign(target, array)

    def _describe_entries(self, entries) -> str:
        return ", ".join(f"{self.layers[index].name}.{name} {shape}" for index, name, shape in entries)

    def save_weights(self, path: Any) -> None:
        """Writes the weights to a safetensors file, keys "layers.{i}.kernel" / "layers.{i}.bias"
        (i: the layer's index in model.layers). The write is atomic: a temporary file in the
        same folder, flushed and synced, then renamed over ``path``."""
        self._require_built("save_weights")
        if not distributed.world().is_main:
            return  # in a world of N, rank 0 writes the files
        serialization.save_weights(self, path)

    @_on_device
    def load_weights(self, path: Any, num_layers: Optional[int] = None) -> None:
        """Loads weights written by save_weights (or held in a model file or a checkpoint). The
        file's names, shapes and dtypes (float32) must match this model exactly; on any mismatch
        or a damaged file nothing is loaded and ValueError says why. An unbuilt model is built
        for the file's input size.

        num_layers: load only ``model.layers[:num_layers]`` (transfer learning: a pretrained
        body under a new head); the file's tensors of later layers are ignored and this model's
        later layers keep their weights."""
        serialization.load_weights(self, path, num_layers)

    def save(self, path: Any) -> None:
        """Writes the model to one safetensors file: the weights (as save_weights) and, in the
        file's metadata, the architecture and compile settings as JSON, so that
        ``fusedtrain.load(path)`` rebuilds it without code. Atomic, as save_weights. The
        optimizer's state is not saved: save_checkpoint keeps it for resuming training."""
        self._require_built("save")
        if not distributed.world().is_main:
            return  # in a world of N, rank 0 writes the files
        serialization.save(self, path)

    def save_checkpoint(self, path: Any) -> None:
        """Writes a training checkpoint: what save writes, plus the optimizer's state and step,
        the epoch reached, the random generator states (shuffling, dropout), the history and
        the state of the callbacks of the current or last fit. ``fit(..., resume=path)``
        continues from it so that the run ends exactly as an uninterrupted one. Call it outside
        fit or at the end of an epoch: ModelCheckpoint(save_training_state=True) does, after the
        other callbacks (a callback of your own calling it from on_epoch_end records the
        callbacks after it in the list as they were before that epoch's end)."""
        self._require_built("save_checkpoint")
        self._require_compiled("save_checkpoint")
        if not distributed.world().is_main:
            return  # in a world of N, rank 0 writes the files
        serialization.save_checkpoint(self, path)

    def export(self, path: Any, format: str = "onnx", opset: Optional[int] = None, outputs: str = "probabilities",
               preprocessor: bool = True) -> None:
        """Writes the model for inference without fusedtrain (Keras' ``model.export``): an ONNX
        file (``format="onnx"``, the only format; ``pip install "fusedtrain[onnx]"``) whose
        input ``x`` (float32, a dynamic batch dimension) gives what ``predict`` gives, or the
        logits (``outputs="logits"``); ``opset`` defaults to 17 (13 at least). A model with a
        table preprocessor takes its raw columns as the graph's inputs where ONNX can express
        the encoding, or with ``preprocessor=False`` the encoded features. Atomic, as save.
        See fusedtrain/onnx_export.py."""
        if not isinstance(format, str) or format != "onnx":
            raise ValueError(f"format: expected 'onnx' (the only export format), got {format!r}")
        from .onnx_export import export_onnx

        if not distributed.world().is_main:
            return  # in a world of N, rank 0 writes the files
        export_onnx(self, path, opset=opset, outputs=outputs, preprocessor=preprocessor)

    # Display ------------------------------------------------------------------------------------

    def summary(self, print_fn: Callable[[str], Any] = print) -> None:
        """Prints a table of the layers: type, output shape, parameters, trainable."""
        rows = [("Layer (type)", "Output shape", "Params", "Trainable")]
        dim = self.input_dim
        total = trainable = 0
        # The output width is known from a Dense layer on even before the input size is.
        width: Any = "?" if dim is None else dim
        for layer in self.layers:
            if dim is not None:
                count = sum(int(np.prod(shape)) for _, shape in layer.parameter_shapes(dim))
                dim = width = layer.output_dim_for(dim)
                shown = f"{count:,}"
                total += count
                trainable += count if layer.trainable else 0
            else:
                shown = "?"
                width = layer.units if isinstance(layer, Dense) else width
            output = f"(None, {width})"
            rows.append((f"{layer.name} ({type(layer).__name__})", output, shown,
                         "yes" if layer.trainable else "no"))
        widths = [max(len(row[column]) for row in rows) for column in range(4)]
        line = "-" * (sum(widths) + 6)
        print_fn(f'Model: "{self.name}" (input: {self.input_dim if self.input_dim is not None else "not built"} '
                 f'features, device: {self.device})')
        print_fn(line)
        for number, row in enumerate(rows):
            print_fn("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
            if number == 0:
                print_fn(line)
        print_fn(line)
        if self.input_dim is None:
            print_fn("Parameters: unknown until the input size is known")
        else:
            print_fn(f"Total params: {total:,}")
            print_fn(f"Trainable params: {trainable:,}")
            print_fn(f"Non-trainable params: {total - trainable:,}")

    def __repr__(self) -> str:
        return f"Sequential({self.layers!r}, input_dim={self.input_dim})"
