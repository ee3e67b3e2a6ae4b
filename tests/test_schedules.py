"""Learning-rate schedules: the documented lr for every epoch, and argument validation."""

import math

import numpy as np
import pytest

from fusedtrain.schedules import CosineDecay, ExponentialDecay, StepDecay

# Each expected value below is the documented formula evaluated by hand in float64; the
# schedules evaluate the same expression, so agreement is to the last bit or two.
EXACT = dict(rel=1e-15, abs=0.0)


def test_step_decay_documented_values():
    schedule = StepDecay(0.1, drop_rate=0.5, epochs_per_drop=10)
    expected = {0: 0.1, 1: 0.1, 9: 0.1, 10: 0.05, 19: 0.05, 20: 0.025, 29: 0.025, 30: 0.0125}
    for epoch, lr in expected.items():
        assert schedule(epoch) == pytest.approx(lr, **EXACT), epoch


def test_step_decay_odd_parameters():
    schedule = StepDecay(0.3, drop_rate=0.7, epochs_per_drop=3)
    lrs = [schedule(epoch) for epoch in range(10)]
    assert lrs == pytest.approx([0.3, 0.3, 0.3, 0.21, 0.21, 0.21, 0.147, 0.147, 0.147, 0.1029], **dict(rel=1e-14))
    assert StepDecay(0.2)(9) == 0.2 and StepDecay(0.2)(10) == pytest.approx(0.1, **EXACT)
    assert StepDecay(0.2, drop_rate=1.0, epochs_per_drop=1)(1000) == 0.2


def test_exponential_decay_documented_values():
    schedule = ExponentialDecay(0.1, decay_rate=0.5, decay_epochs=2)
    expected = [0.1, 0.1 / math.sqrt(2.0), 0.05, 0.05 / math.sqrt(2.0), 0.025]
    assert [schedule(epoch) for epoch in range(5)] == pytest.approx(expected, rel=1e-15)


def test_exponential_decay_every_epoch():
    schedule = ExponentialDecay(0.01, decay_rate=0.9)
    for epoch in (0, 1, 2, 7, 50):
        assert schedule(epoch) == pytest.approx(0.01 * 0.9**epoch, rel=1e-14), epoch


def test_exponential_decay_fractional_decay_epochs():
    schedule = ExponentialDecay(1.0, decay_rate=0.25, decay_epochs=0.5)
    assert [schedule(epoch) for epoch in range(3)] == pytest.approx([1.0, 0.0625, 0.00390625], **EXACT)


def test_cosine_decay_documented_example_with_warmup():
    schedule = CosineDecay(0.1, total_epochs=6, warmup_epochs=2)
    half_root = math.sqrt(0.5)
    expected = [0.0, 0.05,                           # warmup, linear from 0 to 0.1
                0.1, 0.05 * (1 + half_root), 0.05, 0.05 * (1 - half_root),   # cosine
                0.0, 0.0]                             # min_lr from total_epochs on
    assert [schedule(epoch) for epoch in range(8)] == pytest.approx(expected, rel=1e-14, abs=1e-17)


def test_cosine_decay_warmup_start_and_min_lr():
    schedule = CosineDecay(1.0, total_epochs=13, warmup_epochs=3, min_lr=0.1, warmup_start_lr=0.4)
    warmup = [schedule(epoch) for epoch in range(3)]
    assert warmup == pytest.approx([0.4, 0.6, 0.8], rel=1e-15)
    cosine = np.array([schedule(epoch) for epoch in range(3, 13)])
    progress = np.arange(10) / 10.0
    assert cosine == pytest.approx(0.1 + 0.9 * (1 + np.cos(np.pi * progress)) / 2, rel=1e-14)
    # The peak is the first epoch after warmup; then a strictly decreasing cosine down to min_lr.
    assert schedule(3) == 1.0
    assert np.all(np.diff(cosine) < 0)
    assert schedule(13) == 0.1 and schedule(100) == 0.1
    assert schedule(12) > 0.1


def test_cosine_decay_without_warmup():
    schedule = CosineDecay(0.5, total_epochs=4)
    assert [schedule(epoch) for epoch in range(5)] == pytest.approx(
        [0.5, 0.25 * (1 + math.sqrt(0.5)), 0.25, 0.25 * (1 - math.sqrt(0.5)), 0.0], rel=1e-14, abs=1e-17)


def test_schedules_accept_numpy_integers_and_are_pure():
    for schedule in (StepDecay(0.1), ExponentialDecay(0.1, 0.9), CosineDecay(0.1, 10, warmup_epochs=2)):
        assert schedule(np.int64(5)) == schedule(5) == schedule(5)
        assert isinstance(schedule(3), float)


@pytest.mark.parametrize("schedule", [StepDecay(0.1), ExponentialDecay(0.1, 0.9), CosineDecay(0.1, 10)])
def test_schedules_reject_bad_epochs(schedule):
    with pytest.raises(ValueError, match="epoch"):
        schedule(-1)
    with pytest.raises(TypeError, match="epoch"):
        schedule(1.5)
    with pytest.raises(TypeError, match="epoch"):
        schedule(True)


@pytest.mark.parametrize("make, error, argument", [
    (lambda: StepDecay(0.0), ValueError, "initial_lr"),
    (lambda: StepDecay(-0.1), ValueError, "initial_lr"),
    (lambda: StepDecay(float("nan")), ValueError, "initial_lr"),
    (lambda: StepDecay("0.1"), TypeError, "initial_lr"),
    (lambda: StepDecay(0.1, drop_rate=0.0), ValueError, "drop_rate"),
    (lambda: StepDecay(0.1, drop_rate=1.5), ValueError, "drop_rate"),
    (lambda: StepDecay(0.1, epochs_per_drop=0), ValueError, "epochs_per_drop"),
    (lambda: StepDecay(0.1, epochs_per_drop=2.5), TypeError, "epochs_per_drop"),
    (lambda: ExponentialDecay(0.1, decay_rate=0.0), ValueError, "decay_rate"),
    (lambda: ExponentialDecay(0.1, decay_rate=1.1), ValueError, "decay_rate"),
    (lambda: ExponentialDecay(0.1, decay_rate=None), TypeError, "decay_rate"),
    (lambda: ExponentialDecay(0.1, 0.9, decay_epochs=0), ValueError, "decay_epochs"),
    (lambda: ExponentialDecay(float("inf"), 0.9), ValueError, "initial_lr"),
    (lambda: CosineDecay(0.1, total_epochs=0), ValueError, "total_epochs"),
    (lambda: CosineDecay(0.1, total_epochs=10.0), TypeError, "total_epochs"),
    (lambda: CosineDecay(0.1, total_epochs=10, warmup_epochs=10), ValueError, "warmup_epochs"),
    (lambda: CosineDecay(0.1, total_epochs=10, warmup_epochs=-1), ValueError, "warmup_epochs"),
    (lambda: CosineDecay(0.1, total_epochs=10, min_lr=0.2), ValueError, "min_lr"),
    (lambda: CosineDecay(0.1, total_epochs=10, min_lr=-0.01), ValueError, "min_lr"),
    (lambda: CosineDecay(0.1, total_epochs=10, warmup_start_lr=0.5), ValueError, "warmup_start_lr"),
    (lambda: CosineDecay(0.1, total_epochs=10, warmup_start_lr="0"), TypeError, "warmup_start_lr"),
])
def test_schedule_arguments_are_validated(make, error, argument):
    with pytest.raises(error, match=argument):
        make()


def test_repr_names_the_arguments():
    assert repr(CosineDecay(0.1, 10, warmup_epochs=2)) == (
        "CosineDecay(initial_lr=0.1, total_epochs=10, warmup_epochs=2, min_lr=0.0, warmup_start_lr=0.0)")
    assert repr(StepDecay(0.1)) == "StepDecay(initial_lr=0.1, drop_rate=0.5, epochs_per_drop=10)"
    assert repr(ExponentialDecay(0.1, 0.5)) == "ExponentialDecay(initial_lr=0.1, decay_rate=0.5, decay_epochs=1.0)"
