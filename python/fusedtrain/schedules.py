"""Per-epoch learning-rate schedules: callables `schedule(epoch) -> lr`, with epochs counted
from 0, for `fusedtrain.callbacks.LearningRateScheduler`.

Each schedule is a pure function of the epoch: calling it twice with the same epoch gives the
same float, and it never reads the optimizer's current learning rate.
"""

from __future__ import annotations

import math

from .ops import _checks

__all__ = ["StepDecay", "ExponentialDecay", "CosineDecay"]


# Far beyond any training run, and small enough that every schedule's float arithmetic on it
# stays finite or underflows to 0 (a Python int of 2**1100 epochs would overflow the conversion).
MAX_EPOCH = 2**63 - 1


def _epoch(epoch) -> int:
    return _checks.integer(epoch, "epoch", low=0, high=MAX_EPOCH)


class StepDecay:
    """Multiplies the learning rate by `drop_rate` every `epochs_per_drop` epochs:

        lr(epoch) = initial_lr * drop_rate ** floor(epoch / epochs_per_drop)

    StepDecay(0.1, drop_rate=0.5, epochs_per_drop=10) gives 0.1 for epochs 0-9, 0.05 for
    epochs 10-19, 0.025 for epochs 20-29, and so on.
    """

    def __init__(self, initial_lr, drop_rate=0.5, epochs_per_drop=10):
        self.initial_lr = _checks.real(initial_lr, "initial_lr", low=0.0, low_open=True)
        self.drop_rate = _checks.real(drop_rate, "drop_rate", low=0.0, high=1.0, low_open=True)
        self.epochs_per_drop = _checks.integer(epochs_per_drop, "epochs_per_drop", low=1)

    def __call__(self, epoch) -> float:
        drops = _epoch(epoch) // self.epochs_per_drop
        return self.initial_lr * self.drop_rate ** drops

    def __repr__(self) -> str:
        return (f"StepDecay(initial_lr={self.initial_lr!r}, drop_rate={self.drop_rate!r}, "
                f"epochs_per_drop={self.epochs_per_drop!r})")


class ExponentialDecay:
    """Decays the learning rate smoothly by `decay_rate` every `decay_epochs` epochs:

        lr(epoch) = initial_lr * decay_rate ** (epoch / decay_epochs)

    ExponentialDecay(0.1, decay_rate=0.5, decay_epochs=2) gives 0.1, 0.0707..., 0.05,
    0.0354..., 0.025 for epochs 0 to 4. For a staircase instead of a smooth curve use StepDecay.
    """

    def __init__(self, initial_lr, decay_rate, decay_epochs=1):
        self.initial_lr = _checks.real(initial_lr, "initial_lr", low=0.0, low_open=True)
        self.decay_rate = _checks.real(decay_rate, "decay_rate", low=0.0, high=1.0, low_open=True)
        self.decay_epochs = _checks.real(decay_epochs, "decay_epochs", low=0.0, low_open=True)

    def __call__(self, epoch) -> float:
        return self.initial_lr * self.decay_rate ** (_epoch(epoch) / self.decay_epochs)

    def __repr__(self) -> str:
        return (f"ExponentialDecay(initial_lr={self.initial_lr!r}, decay_rate={self.decay_rate!r}, "
                f"decay_epochs={self.decay_epochs!r})")


class CosineDecay:
    """A linear warmup from `warmup_start_lr` to `initial_lr`, then a half cosine from
    `initial_lr` down to `min_lr`, reached at epoch `total_epochs` and kept after it:

        epoch < warmup_epochs:
            lr = warmup_start_lr + (initial_lr - warmup_start_lr) * epoch / warmup_epochs
        warmup_epochs <= epoch < total_epochs, with p = (epoch - warmup_epochs) / (total_epochs - warmup_epochs):
            lr = min_lr + (initial_lr - min_lr) * (1 + cos(pi * p)) / 2
        epoch >= total_epochs:
            lr = min_lr

    As in Keras' CosineDecay and PyTorch's CosineAnnealingLR, min_lr is the value at the end
    of the last epoch of a `total_epochs`-long run, so that no epoch is spent at min_lr.
    CosineDecay(0.1, total_epochs=6, warmup_epochs=2) gives 0.0, 0.05 (warmup), then 0.1,
    0.0854, 0.05, 0.0146 and 0.0 from epoch 6 on.
    """

    def __init__(self, initial_lr, total_epochs, warmup_epochs=0, min_lr=0.0, warmup_start_lr=0.0):
        self.initial_lr = _checks.real(initial_lr, "initial_lr", low=0.0, low_open=True)
        self.total_epochs = _checks.integer(total_epochs, "total_epochs", low=1)
        self.warmup_epochs = _checks.integer(warmup_epochs, "warmup_epochs", low=0)
        if self.warmup_epochs >= self.total_epochs:
            raise ValueError(f"warmup_epochs: expected fewer than total_epochs={self.total_epochs} "
                             f"epochs of warmup (the cosine phase needs at least one), "
                             f"got {self.warmup_epochs}")
        self.min_lr = _checks.real(min_lr, "min_lr", low=0.0, high=self.initial_lr)
        self.warmup_start_lr = _checks.real(warmup_start_lr, "warmup_start_lr", low=0.0,
                                            high=self.initial_lr)

    def __call__(self, epoch) -> float:
        epoch = _epoch(epoch)
        if epoch < self.warmup_epochs:
            fraction = epoch / self.warmup_epochs
            return self.warmup_start_lr + (self.initial_lr - self.warmup_start_lr) * fraction
        if epoch >= self.total_epochs:
            return self.min_lr
        progress = (epoch - self.warmup_epochs) / (self.total_epochs - self.warmup_epochs)
        return self.min_lr + (self.initial_lr - self.min_lr) * (1.0 + math.cos(math.pi * progress)) / 2.0

    def __repr__(self) -> str:
        return (f"CosineDecay(initial_lr={self.initial_lr!r}, total_epochs={self.total_epochs!r}, "
                f"warmup_epochs={self.warmup_epochs!r}, min_lr={self.min_lr!r}, "
                f"warmup_start_lr={self.warmup_start_lr!r})")
