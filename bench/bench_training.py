"""Times training with fusedtrain against PyTorch (CPU), JAX (a jit-compiled step with optax's
Adam) and scikit-learn's MLPClassifier, in one process and with the same thread count for all:

- seconds per epoch of a 784-512-256-10 ReLU MLP trained with Adam (lr 1e-3) on 60,000 random
  samples (float32 features, random integer labels), at batch 128 and 256;
- training time until a 64-128-10 MLP reaches 96 % test accuracy on scikit-learn's bundled digits.

    python bench/bench_training.py --threads 1 2 --out bench/results/training_cpu.md
    python bench/bench_training.py --quick          # tiny sizes, a few seconds

Needs PyTorch and scikit-learn; without either it says so in one line and exits 0. JAX (with
optax) joins where it is installed. XLA fixes its CPU thread pool when JAX loads, so each thread
count runs in a process of its own (this script again, with one --threads value): one thread is
XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1", all the cores
JAX's default; JAX sits out other counts, with a note. A process for fewer threads than the
machine's cores runs on that many cores (sched_setaffinity), every library alike.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

import fusedtrain as ft
from fusedtrain import bench

try:
    import torch
    import sklearn
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
except ImportError as missing:
    torch = None
    MISSING = "scikit-learn" if (missing.name or "").startswith("sklearn") else missing.name
else:
    MISSING = None

LEARNING_RATE = 1e-3
TARGET_ACCURACY = 0.96
# The goals for the epoch-time ratios fusedtrain / PyTorch and fusedtrain / JAX.
TARGET_RATIO = 0.5
TARGET_RATIO_JAX = 0.85
# The libraries timed, fusedtrain first; JAX joins in load_jax().
LIBRARIES: Tuple[str, ...] = ("fusedtrain", "PyTorch", "scikit-learn")
jax = jnp = optax = None
JAX_NOTE = "JAX (with optax) is not installed"


def pin_to_cores(threads: int) -> None:
    """Runs the process on ``threads`` of its cores where it has more: JAX's runtime keeps
    threads of its own beside the compute (its 1-thread epochs took twice their wall time in CPU
    time unpinned), so a thread count holds for every library only as a core count."""
    if not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    if threads < len(cores):
        os.sched_setaffinity(0, set(cores[:threads]))


def load_jax(threads: int) -> None:
    """Imports JAX with its CPU thread pool set for ``threads`` (before anything else loads it)."""
    global jax, jnp, optax, LIBRARIES, JAX_NOTE
    cores = os.cpu_count() or 1
    if threads not in (1, cores):
        JAX_NOTE = f"JAX sat out: its CPU thread pool is one thread or all {cores} cores, not {threads}"
        return
    if threads == 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    try:
        import jax as jax_module
        import jax.numpy as jnp_module
        import optax as optax_module
    except ImportError:
        return
    jax, jnp, optax = jax_module, jnp_module, optax_module
    JAX_NOTE = ""
    LIBRARIES = ("fusedtrain", "PyTorch", "JAX", "scikit-learn")


@dataclass(frozen=True)
class Settings:
    """Sizes and repeat counts of one run."""

    samples: int  # rows of the random data set
    layer_sizes: Tuple[int, ...]  # input, hidden..., classes
    batch_sizes: Tuple[int, ...]
    timed_epochs: int  # per library and batch size, after one untimed warm-up epoch
    digits_seeds: Tuple[int, ...]  # one time-to-accuracy run per seed and library
    digits_max_epochs: int
    digits_batch: int = 32
    digits_hidden: int = 128


FULL = Settings(samples=60_000, layer_sizes=(784, 512, 256, 10), batch_sizes=(128, 256), timed_epochs=5,
                digits_seeds=(0, 1, 2, 3, 4), digits_max_epochs=100)
QUICK = Settings(samples=2_048, layer_sizes=(64, 32, 16, 10), batch_sizes=(128, 256), timed_epochs=2,
                 digits_seeds=(0,), digits_max_epochs=40)


# ---- the three libraries ----------------------------------------------------------------------

# train(x, y, epochs, after_epoch) runs up to ``epochs`` epochs and calls after_epoch(epoch,
# timing, loss) after each with that epoch's Timing and mean loss; a True return stops training.
# Time spent in after_epoch is not part of any epoch.


@dataclass(frozen=True)
class Timing:
    """One epoch: wall seconds, and CPU seconds of the whole process (all its threads). With one
    thread the CPU time leaves out the time slices other processes took; with several it adds
    the time worker threads spent spinning while they waited for work."""

    wall: float
    cpu: float


class Stopwatch:
    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> Timing:
        return Timing(time.perf_counter() - self.wall, time.process_time() - self.cpu)


AfterEpoch = Callable[[int, Timing, float], bool]


class FusedtrainTrainer:
    """Sequential + compile + one fit(epochs=..., shuffle=True, verbose=0) call; a callback
    times each epoch from on_epoch_begin to on_epoch_end (fit's one-off set-up, which checks
    the whole input for NaN, is outside every epoch and reported separately)."""

    def __init__(self, layer_sizes: Sequence[int], batch_size: int, seed: int):
        hidden = [ft.layers.Dense(units, activation="relu") for units in layer_sizes[1:-1]]
        self.model = ft.Sequential(hidden + [ft.layers.Dense(layer_sizes[-1])], input_dim=layer_sizes[0], seed=seed)
        self.model.compile(optimizer=ft.optimizers.Adam(LEARNING_RATE), loss="sparse_categorical_crossentropy")
        self.batch_size = batch_size
        self.seed = seed

    def train(self, x: np.ndarray, y: np.ndarray, epochs: int, after_epoch: AfterEpoch) -> float:
        """Returns the seconds fit spent outside its epochs (set-up and wind-down)."""
        clock = _EpochClock(after_epoch)
        start = time.perf_counter()
        self.model.fit(x, y, epochs=epochs, batch_size=self.batch_size, shuffle=True, verbose=0,
                       seed=self.seed, callbacks=[clock])
        return time.perf_counter() - start - clock.inside - clock.outside

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(self.model.predict_classes(x) == y))


class _EpochClock(ft.callbacks.Callback):
    """Times each epoch of fit and hands the turn to after_epoch between epochs."""

    def __init__(self, after_epoch: AfterEpoch):
        super().__init__()
        self.after_epoch = after_epoch
        self.inside = 0.0  # seconds within epochs
        self.outside = 0.0  # seconds in after_epoch
        self.stopwatch = Stopwatch()

    def on_epoch_begin(self, epoch, logs=None):
        self.stopwatch = Stopwatch()

    def on_epoch_end(self, epoch, logs=None):
        timing = self.stopwatch.read()
        self.inside += timing.wall
        start = time.perf_counter()
        if self.after_epoch(epoch, timing, logs["loss"]):
            self.model.stop_training = True
        self.outside += time.perf_counter() - start


class _EpochLoop:
    """train() for the libraries whose loop is written here, one epoch() call per epoch."""

    def epoch(self, x: np.ndarray, y: np.ndarray) -> float:
        raise NotImplementedError

    def train(self, x: np.ndarray, y: np.ndarray, epochs: int, after_epoch: AfterEpoch) -> float:
        for epoch in range(epochs):
            stopwatch = Stopwatch()
            loss = self.epoch(x, y)
            if after_epoch(epoch, stopwatch.read(), loss):
                break
        return 0.0


class TorchTrainer(_EpochLoop):
    """The eager loop a PyTorch user writes: nn.Sequential, CrossEntropyLoss, optim.Adam, a
    randperm per epoch and index batching (no DataLoader), loss.item() per batch for the
    epoch's mean loss (what fit reports)."""

    def __init__(self, layer_sizes: Sequence[int], batch_size: int, seed: int):
        torch.manual_seed(seed)
        modules: List[torch.nn.Module] = []
        for inputs, outputs in zip(layer_sizes[:-2], layer_sizes[1:-1]):
            modules += [torch.nn.Linear(inputs, outputs), torch.nn.ReLU()]
        modules.append(torch.nn.Linear(layer_sizes[-2], layer_sizes[-1]))
        self.model = torch.nn.Sequential(*modules)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LEARNING_RATE)
        self.loss_function = torch.nn.CrossEntropyLoss()
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self._tensors: Optional[Tuple[np.ndarray, torch.Tensor, torch.Tensor]] = None

    def _as_tensors(self, x: np.ndarray, y: np.ndarray) -> Tuple[torch.Tensor, torch.Tensor]:
        # torch.from_numpy shares memory; done once per data set, as a user would.
        if self._tensors is None or self._tensors[0] is not x:
            self._tensors = (x, torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)))
        return self._tensors[1], self._tensors[2]

    def epoch(self, x: np.ndarray, y: np.ndarray) -> float:
        features, labels = self._as_tensors(x, y)
        self.model.train()
        order = torch.randperm(features.shape[0], generator=self.generator)
        total = 0.0
        for start in range(0, features.shape[0], self.batch_size):
            indices = order[start:start + self.batch_size]
            x_batch, y_batch = features[indices], labels[indices]
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss_function(self.model(x_batch), y_batch)
            loss.backward()
            self.optimizer.step()
            total += loss.item() * x_batch.shape[0]
        return total / features.shape[0]

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        self.model.eval()
        with torch.no_grad():
            predictions = self.model(torch.from_numpy(x)).argmax(dim=1).numpy()
        return float(np.mean(predictions == y))


class JaxTrainer(_EpochLoop):
    """The loop a JAX user writes for speed: one jit-compiled step (forward, value_and_grad,
    optax.adam's update) that gathers its batch from the whole data set on the device, with the
    parameters and optimizer state donated to it (updated in place); a permutation per epoch;
    the batch losses stay on the device and are read once per epoch. Weights start as PyTorch's
    Linear does (uniform within 1 / sqrt(fan_in))."""

    def __init__(self, layer_sizes: Sequence[int], batch_size: int, seed: int):
        key = jax.random.PRNGKey(seed)
        params = []
        for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:]):
            key, weight_key, bias_key = jax.random.split(key, 3)
            bound = 1.0 / np.sqrt(fan_in)
            params.append((jax.random.uniform(weight_key, (fan_in, fan_out), jnp.float32, -bound, bound),
                           jax.random.uniform(bias_key, (fan_out,), jnp.float32, -bound, bound)))
        optimizer = optax.adam(LEARNING_RATE)
        self.params, self.state = params, optimizer.init(params)
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self._arrays: Optional[Tuple[np.ndarray, object, object]] = None

        def logits_of(params, features):
            for weight, bias in params[:-1]:
                features = jax.nn.relu(features @ weight + bias)
            weight, bias = params[-1]
            return features @ weight + bias

        def loss_of(params, features, labels):
            return optax.softmax_cross_entropy_with_integer_labels(logits_of(params, features), labels).mean()

        def step(params, state, features, labels, indices):
            loss, grads = jax.value_and_grad(loss_of)(params, features[indices], labels[indices])
            updates, state = optimizer.update(grads, state, params)
            return optax.apply_updates(params, updates), state, loss * indices.shape[0]

        self.step = jax.jit(step, donate_argnums=(0, 1))
        self.predict = jax.jit(lambda params, features: jnp.argmax(logits_of(params, features), axis=1))

    def _as_arrays(self, x: np.ndarray, y: np.ndarray):
        # Copied to JAX's device once per data set, as torch.from_numpy is.
        if self._arrays is None or self._arrays[0] is not x:
            self._arrays = (x, jnp.asarray(x), jnp.asarray(y.astype(np.int32)))
        return self._arrays[1], self._arrays[2]

    def epoch(self, x: np.ndarray, y: np.ndarray) -> float:
        features, labels = self._as_arrays(x, y)
        order = self.rng.permutation(features.shape[0]).astype(np.int32)
        losses = []
        for start in range(0, features.shape[0], self.batch_size):
            indices = jnp.asarray(order[start:start + self.batch_size])
            self.params, self.state, loss = self.step(self.params, self.state, features, labels, indices)
            losses.append(loss)
        return float(jnp.sum(jnp.stack(losses))) / features.shape[0]

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(np.asarray(self.predict(self.params, jnp.asarray(x))) == y))


class SklearnTrainer(_EpochLoop):
    """MLPClassifier(solver="adam", alpha=0) advanced one epoch per partial_fit call (it keeps
    the Adam state between calls and shuffles each pass; each call also re-checks its input).
    alpha=0: the other two add no L2 penalty."""

    def __init__(self, layer_sizes: Sequence[int], batch_size: int, seed: int):
        self.model = MLPClassifier(hidden_layer_sizes=tuple(layer_sizes[1:-1]), activation="relu", solver="adam",
                                   alpha=0.0, batch_size=batch_size, learning_rate_init=LEARNING_RATE,
                                   shuffle=True, random_state=seed)
        self.classes = np.arange(layer_sizes[-1])

    def epoch(self, x: np.ndarray, y: np.ndarray) -> float:
        self.model.partial_fit(x, y, classes=self.classes)
        return float(self.model.loss_)

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(self.model.score(x, y))


TRAINERS = {"fusedtrain": FusedtrainTrainer, "PyTorch": TorchTrainer, "JAX": JaxTrainer,
            "scikit-learn": SklearnTrainer}


@contextlib.contextmanager
def same_threads(threads: int) -> Iterator[None]:
    """All three libraries on ``threads`` threads: fusedtrain's OpenMP, PyTorch's intra-op pool
    and the BLAS that scikit-learn's NumPy calls (threadpoolctl)."""
    from threadpoolctl import threadpool_limits

    previous = (ft.get_num_threads(), torch.get_num_threads())
    ft.set_num_threads(threads)
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads, user_api="blas"):
            yield
    finally:
        ft.set_num_threads(previous[0])
        torch.set_num_threads(previous[1])


# ---- measurements -----------------------------------------------------------------------------

@dataclass
class EpochRow:
    batch_size: int
    seconds: Dict[str, List[float]] = field(default_factory=dict)  # library -> timed epochs' wall time
    cpu: Dict[str, List[float]] = field(default_factory=dict)  # library -> timed epochs' CPU time
    loss: Dict[str, float] = field(default_factory=dict)  # library -> mean loss of its last epoch
    other_load: Optional[float] = None
    fit_setup: float = 0.0  # seconds of fusedtrain's fit call outside its epochs

    def median(self, library: str) -> float:
        return statistics.median(self.seconds[library])

    def median_cpu(self, library: str) -> float:
        return statistics.median(self.cpu[library])


@dataclass
class DigitsRun:
    epochs: Optional[int]  # epochs until the target was reached; None when the cap was hit
    seconds: float  # training time only (the accuracy checks are not timed)
    accuracy: float  # test accuracy when it stopped


def random_task(settings: Settings) -> Tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((settings.samples, settings.layer_sizes[0]), dtype=np.float32)
    y = rng.integers(0, settings.layer_sizes[-1], size=settings.samples).astype(np.int64)
    return x, y


def measure_epochs(settings: Settings, batch_size: int, x: np.ndarray, y: np.ndarray,
                   progress: Callable[[str], None]) -> EpochRow:
    """One untimed warm-up epoch per library, then ``timed_epochs`` rounds in which the libraries
    take turns, one epoch each, so that a busy spell of the machine hits all of them alike:
    after each of fusedtrain's epochs (one fit call), PyTorch and scikit-learn run one epoch."""
    row = EpochRow(batch_size, seconds={name: [] for name in LIBRARIES}, cpu={name: [] for name in LIBRARIES})
    fused = FusedtrainTrainer(settings.layer_sizes, batch_size, seed=0)
    others = {name: TRAINERS[name](settings.layer_sizes, batch_size, seed=0) for name in LIBRARIES[1:]}

    def turn(epoch: int, timing: Timing, loss: float) -> bool:
        what = "warm-up epoch" if epoch == 0 else f"epoch {epoch} of {settings.timed_epochs}"
        results = {"fusedtrain": (timing, loss)}
        for name, trainer in others.items():
            progress(f"batch {batch_size}: {name} {what}")
            stopwatch = Stopwatch()
            loss = trainer.epoch(x, y)
            results[name] = (stopwatch.read(), loss)
        if epoch > 0:
            for name, (timing, loss) in results.items():
                row.seconds[name].append(timing.wall)
                row.cpu[name].append(timing.cpu)
                row.loss[name] = loss
        if epoch < settings.timed_epochs:
            progress(f"batch {batch_size}: fusedtrain epoch {epoch + 1} of {settings.timed_epochs}")
        return False

    load = bench._OtherLoad()
    progress(f"batch {batch_size}: fusedtrain warm-up epoch")
    row.fit_setup = fused.train(x, y, 1 + settings.timed_epochs, turn)
    row.other_load = load.share()
    return row


def digits_split() -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits, 75 % / 25 % stratified (random_state 0), standardised with the
    training part's mean and standard deviation; float32 features, int64 labels."""
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(digits.data, digits.target, test_size=0.25,
                                                        stratify=digits.target, random_state=0)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    standardise = lambda values: ((values - mean) / std).astype(np.float32)  # noqa: E731
    return standardise(x_train), y_train.astype(np.int64), standardise(x_test), y_test.astype(np.int64)


def time_to_accuracy(name: str, settings: Settings, seed: int, data) -> DigitsRun:
    """Trains until the test accuracy, checked after every epoch (untimed), reaches the target."""
    x_train, y_train, x_test, y_test = data
    sizes = (x_train.shape[1], settings.digits_hidden, 10)
    trainer = TRAINERS[name](sizes, settings.digits_batch, seed=seed)
    run = DigitsRun(None, 0.0, 0.0)

    def check(epoch: int, timing: Timing, loss: float) -> bool:
        run.seconds += timing.wall
        run.accuracy = trainer.accuracy(x_test, y_test)
        if run.accuracy >= TARGET_ACCURACY:
            run.epochs = epoch + 1
        return run.epochs is not None

    trainer.train(x_train, y_train, settings.digits_max_epochs, check)
    return run


# ---- reporting --------------------------------------------------------------------------------

def _seconds(value: float) -> str:
    return f"{value * 1e3:.3g} ms" if value < 1.0 else f"{value:.2f} s"


def _load(share: Optional[float]) -> str:
    return "unknown" if share is None else f"{share:.0%}"


def epoch_gemm_flops(settings: Settings) -> float:
    """The multiply-adds of an epoch's matrix products, 2 flops each: per sample and layer the
    forward, the weight gradient and, past the first layer, the input gradient."""
    sizes = settings.layer_sizes
    products = sum(inputs * outputs for inputs, outputs in zip(sizes[:-1], sizes[1:]))
    return 2.0 * settings.samples * (3 * products - sizes[0] * sizes[1])


def render_epochs(settings: Settings, threads: int, rows: List[EpochRow], peak_gflops: float) -> str:
    sizes = "-".join(str(size) for size in settings.layer_sizes)
    cpu_meaning = ("with one thread the CPU time is the epoch's time without the slices other processes took, "
                   "the steadier figure on a busy machine" if threads == 1 else
                   "with several threads it includes time that waiting worker threads spent spinning")
    peers = [name for name in LIBRARIES if name in ("PyTorch", "JAX")]
    goals = ", ".join(f"fusedtrain / {name} at most {TARGET_RATIO if name == 'PyTorch' else TARGET_RATIO_JAX}"
                      for name in peers)
    lines = [f"### Seconds per epoch: {sizes} MLP, Adam, {settings.samples:,} random samples",
             "",
             f"Median of {settings.timed_epochs} epochs after a warm-up epoch; the libraries take turns "
             f"epoch by epoch. Goals: {goals}."
             + (f" {JAX_NOTE}." if JAX_NOTE else ""),
             "",
             "| batch | " + " | ".join(LIBRARIES) + " | " + " | ".join(f"fusedtrain / {name}" for name in peers)
             + " | same, fastest epochs | scikit-learn / fusedtrain | other processes |",
             "|---:|" + "---:|" * (len(LIBRARIES) + len(peers) + 3)]
    for row in rows:
        fused = row.median("fusedtrain")
        ratios = " | ".join(f"**{fused / row.median(name):.2f}**" for name in peers)
        fastest = " / ".join(f"{min(row.seconds['fusedtrain']) / min(row.seconds[name]):.2f}" for name in peers)
        lines.append(f"| {row.batch_size} | " + " | ".join(_seconds(row.median(name)) for name in LIBRARIES)
                     + f" | {ratios} | {fastest} | {row.median('scikit-learn') / fused:.2f} | {_load(row.other_load)} |")
    lines += ["", f"CPU seconds per epoch (the process's user + system time; {cpu_meaning}):", "",
              "| batch | " + " | ".join(LIBRARIES) + " | " + " | ".join(f"fusedtrain / {name}" for name in peers)
              + " | scikit-learn / fusedtrain |",
              "|---:|" + "---:|" * (len(LIBRARIES) + len(peers) + 1)]
    for row in rows:
        fused = row.median_cpu("fusedtrain")
        lines.append(f"| {row.batch_size} | " + " | ".join(_seconds(row.median_cpu(name)) for name in LIBRARIES)
                     + " | " + " | ".join(f"{fused / row.median_cpu(name):.2f}" for name in peers)
                     + f" | {row.median_cpu('scikit-learn') / fused:.2f} |")
    lines += ["",
              f"- Mean training loss of the last timed epoch, {' / '.join(LIBRARIES)} (random labels: "
              "ln 10 = 2.30 at first; a check that each library trained the same task, not a comparison, as the "
              "weight initialisations differ): "
              + "; ".join(f"batch {row.batch_size}: " + " / ".join(f"{row.loss[name]:.3f}" for name in LIBRARIES)
                          for row in rows) + ".",
              f"- The epoch's matrix products are {epoch_gemm_flops(settings) / 1e9:.3g} GFLOP: at the measured "
              f"multiply-add peak of this thread count ({peak_gflops:.3g} GFLOP/s, {bench._fma_width()} FMAs) they "
              f"take {_seconds(epoch_gemm_flops(settings) / peak_gflops / 1e9)}, the floor of an epoch; fusedtrain's "
              "median epoch reaches " + ", ".join(
                  f"{epoch_gemm_flops(settings) / peak_gflops / 1e9 / row.median('fusedtrain'):.0%} of it at batch "
                  f"{row.batch_size}" for row in rows) + ".",
              "- fit's one-off set-up and wind-down outside its epochs (input checks over the whole data set, "
              "buffers), once per fit call, not in the figures above: "
              + ", ".join(f"batch {row.batch_size}: {_seconds(row.fit_setup)}" for row in rows) + ".",
              "- Every timed epoch (wall): " + "; ".join(
                  f"batch {row.batch_size}: " + ", ".join(
                      f"{name} {', '.join(_seconds(value) for value in row.seconds[name])}" for name in LIBRARIES)
                  for row in rows) + "."]
    return "\n".join(lines) + "\n"


def render_digits(settings: Settings, runs: Dict[str, List[DigitsRun]], other_load: Optional[float]) -> str:
    lines = [f"### Digits: time to {TARGET_ACCURACY:.0%} test accuracy, 64-{settings.digits_hidden}-10 MLP",
             "",
             f"Adam lr {LEARNING_RATE:g}, batch {settings.digits_batch}, each library's own weight initialisation; "
             f"seeds {', '.join(str(seed) for seed in settings.digits_seeds)}; test accuracy checked after every "
             f"epoch (untimed), at most {settings.digits_max_epochs} epochs. Time is training time only; "
             f"figures are medians over the seeds. Other processes' share of the CPU: {_load(other_load)}."
             + (" JAX's time includes compiling its step for each new model (its first epoch)." if jax else ""),
             "",
             "| library | reached | epochs (median) | epochs per seed | time to target (median) | per epoch "
             "| time / fusedtrain |",
             "|---|---:|---:|---|---:|---:|---:|"]
    reference = None
    for name in LIBRARIES:
        reached = [run for run in runs[name] if run.epochs is not None]
        per_seed = ", ".join("-" if run.epochs is None else str(run.epochs) for run in runs[name])
        if not reached:
            lines.append(f"| {name} | 0 of {len(runs[name])} | - | {per_seed} | - | - | - |")
            continue
        seconds = statistics.median(run.seconds for run in reached)
        per_epoch = statistics.median(run.seconds / run.epochs for run in reached)
        reference = seconds if name == "fusedtrain" else reference
        relative = f"{seconds / reference:.2f}" if reference else "-"
        epochs = statistics.median(run.epochs for run in reached)
        lines.append(f"| {name} | {len(reached)} of {len(runs[name])} | {epochs:g} | {per_seed} | {_seconds(seconds)} "
                     f"| {_seconds(per_epoch)} | {relative} |")
    return "\n".join(lines) + "\n"


def machine_facts() -> Dict[str, str]:
    facts = bench.machine_facts()
    # scikit-learn loads SciPy's own OpenBLAS beside NumPy's: name every BLAS that threadpoolctl
    # limits, rather than the first one found.
    from threadpoolctl import threadpool_info

    facts["numpy BLAS"] = ", ".join(sorted({f"{pool['internal_api']} {pool['version']} ({pool['filepath'].split('/')[-1]})"
                                            for pool in threadpool_info() if pool.get("user_api") == "blas"}))
    facts["PyTorch"] = f"{torch.__version__} ({torch.backends.cpu.get_cpu_capability()})"
    if jax is not None:
        facts["JAX"] = f"{jax.__version__} (optax {optax.__version__}; {jax.devices()[0].platform})"
    facts["scikit-learn"] = sklearn.__version__
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        root = Path(__file__).resolve().parents[1]
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], check=True,
                                capture_output=True, text=True).stdout.strip()
        # Changes to the result tables themselves (a run of the other benchmarks) do not count.
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)bench/results"],
                               check=True, capture_output=True, text=True).stdout.strip()
        facts["commit"] = commit + (" (with uncommitted changes)" if dirty else "")
    return facts


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of a few seconds")
    parser.add_argument("--threads", type=int, nargs="+", default=None, metavar="N",
                        help="thread counts to run, each for all three libraries (default: fusedtrain's current)")
    parser.add_argument("--skip-digits", action="store_true", help="only the seconds-per-epoch tables")
    parser.add_argument("--out", type=Path, default=None, help="write the tables to this Markdown file")
    parser.add_argument("--note", action="append", default=[], help="a line to add under the machine facts")
    parser.add_argument("--sections-to", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if MISSING is not None:
        print(f"bench_training: skipped, {MISSING} is not installed (pip install torch scikit-learn threadpoolctl)")
        return 0
    if args.threads and min(args.threads) < 1:
        parser.error(f"--threads: every count must be at least 1, got {args.threads}")
    settings = QUICK if args.quick else FULL
    counts = args.threads or [ft.get_num_threads()]
    if len(counts) > 1:
        return run_each_count(argv, args, counts)
    pin_to_cores(counts[0])
    load_jax(counts[0])

    facts = machine_facts()
    for key, value in facts.items():
        print(f"{key}: {value}")
    progress = lambda text: print(f"  {text} ...", file=sys.stderr, flush=True)  # noqa: E731
    x, y = random_task(settings)
    digits = None if args.skip_digits else digits_split()
    sections = []
    for threads in counts:
        with same_threads(threads):
            rows = [measure_epochs(settings, batch_size, x, y, progress) for batch_size in settings.batch_sizes]
            peak = bench.measure_limits(bench.FULL).fma_gflops
            parts = [render_epochs(settings, threads, rows, peak)]
            if digits is not None:
                load = bench._OtherLoad()
                runs = {name: [] for name in LIBRARIES}
                for seed in settings.digits_seeds:
                    for name in LIBRARIES:
                        progress(f"digits: {name} seed {seed}")
                        runs[name].append(time_to_accuracy(name, settings, seed, digits))
                parts.append(render_digits(settings, runs, load.share()))
        plural = "" if threads == 1 else "s"
        section = f"## {threads} thread{plural} (each library)\n\n" + "\n".join(parts)
        print("\n" + section, end="")
        sections.append(section)
    if args.sections_to is not None:
        args.sections_to.write_text("\n".join(sections), encoding="utf-8")
    write_results(args, argv, facts, sections)
    return 0


def write_results(args: argparse.Namespace, argv: Sequence[str], facts: Dict[str, str], sections: List[str]) -> None:
    if args.out is None:
        return
    lines = bench.results_header(f"Training on the CPU: fusedtrain vs {', '.join(LIBRARIES[1:])}",
                                 "bench/bench_training.py", argv, facts, args.note)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n" + "\n".join(sections), encoding="utf-8")
    print(f"\nwrote {args.out}")


def run_each_count(argv: Sequence[str], args: argparse.Namespace, counts: Sequence[int]) -> int:
    """Each thread count in a process of its own (JAX's thread pool is fixed when it loads), the
    sections gathered into one results file."""
    import tempfile

    options = (["--quick"] if args.quick else []) + (["--skip-digits"] if args.skip_digits else [])
    sections = []
    with tempfile.TemporaryDirectory() as scratch:
        for threads in counts:
            part = Path(scratch) / f"{threads}.md"
            child = [sys.executable, __file__, *options, "--threads", str(threads), "--sections-to", str(part)]
            if subprocess.run(child).returncode != 0:
                return 1
            sections.append(part.read_text(encoding="utf-8"))
    load_jax(counts[0])
    write_results(args, argv, machine_facts(), sections)
    return 0


if __name__ == "__main__":
    sys.exit(main())
