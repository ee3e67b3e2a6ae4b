"""Training progress display: a tqdm bar per epoch at verbose=1, one line per epoch at
verbose=2, nothing at verbose=0.

The bar goes to sys.stderr (tqdm's default, so that redirecting stdout to a file does not fill
it with carriage-return updates); the verbose=2 lines go to sys.stdout, one complete line per
epoch, which suits log files and notebooks.
"""

from __future__ import annotations

import math
import numbers
import sys
import time

from .callbacks import Callback
from .ops import _checks

__all__ = ["ProgressLogger", "format_logs"]


def _format_value(name: str, value) -> str:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    value = float(value)
    if name == "lr":
        return f"{value:.4g}"
    # Keras' rule: four decimals, or scientific notation where four decimals would show 0.0000.
    if math.isfinite(value) and abs(value) < 1e-3 and value != 0.0:
        return f"{value:.4e}"
    return f"{value:.4f}"


def format_logs(logs) -> str:
    """'loss: 0.1234 - accuracy: 0.9500 - lr: 0.001', in the order of `logs`."""
    return " - ".join(f"{name}: {_format_value(name, value)}" for name, value in (logs or {}).items())


class ProgressLogger(Callback):
    """Shows training progress.

    verbose=0: silent. verbose=1: a tqdm bar per epoch, "Epoch 3/10", advanced after each batch
    with the running loss and metrics, and left on screen at the end of the epoch with the
    epoch's full logs (validation metrics and lr included). verbose=2: one line per epoch,
    "Epoch 3/10 - 0.12s - loss: 0.1234 - accuracy: 0.9500 - val_loss: 0.1301 - lr: 0.001".
    `steps` is the number of batches per epoch (None when unknown: the bar then counts without
    a total).
    """

    def __init__(self, verbose=1, epochs=1, steps=None):
        super().__init__()
        self.verbose = _checks.integer(verbose, "verbose", low=0, high=2)
        self.epochs = _checks.integer(epochs, "epochs", low=1)
        self.steps = None if steps is None else _checks.integer(steps, "steps", low=0)
        self._bar = None
        self._epoch_start = 0.0

    def _title(self, epoch: int) -> str:
        return f"Epoch {epoch + 1}/{self.epochs}"

    def on_epoch_begin(self, epoch, logs=None):
        self._close_bar()
        self._epoch_start = time.perf_counter()
        if self.verbose == 1:
            # Imported by the first bar, not by ``import fusedtrain`` (it takes about 50 ms).
            from tqdm import tqdm

            self._bar = tqdm(total=self.steps, desc=self._title(epoch), unit="batch",
                             leave=True, dynamic_ncols=True)

    def on_train_batch_end(self, batch, logs=None):
        if self._bar is not None:
            # Setting the text without a refresh and letting update() redraw keeps the per-batch
            # cost to tqdm's own rate limit (mininterval), whatever the number of batches.
            self._bar.set_postfix_str(format_logs(logs), refresh=False)
            self._bar.update(1)

    def on_epoch_end(self, epoch, logs=None):
        if self.verbose == 1 and self._bar is not None:
            self._bar.set_postfix_str(format_logs(logs), refresh=False)
            self._close_bar()
        elif self.verbose == 2:
            seconds = time.perf_counter() - self._epoch_start
            parts = [self._title(epoch), f"{seconds:.2f}s"]
            if logs:
                parts.append(format_logs(logs))
            print(" - ".join(parts), file=sys.stdout, flush=True)

    def on_train_end(self, logs=None):
        # An epoch cut short (stop_training set after a batch, a non-finite loss) never reaches
        # on_epoch_end; its bar is closed here so that the terminal is left clean.
        self._close_bar()

    def _close_bar(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
