"""Learning-rate schedules and early stopping, as pure functions of the training history.

A schedule gives the learning rate of epoch ``e`` (1-based) from the epochs recorded before it:

    constant   lr_e = lr
    step       lr_e = lr * gamma ** floor((e - 1) / step_epochs)
    cosine     lr_e = min_lr + (lr - min_lr) * (1 + cos(pi * (e - 1) / epochs)) / 2
               (Loshchilov & Hutter 2017, SGDR eq. 5, one cycle over the run, per epoch)
    plateau    lr_e = lr * factor ** r_e, where r_e counts the reductions so far: walking the
               monitored loss (validation if any, else training) of epochs 1 .. e - 1, a
               reduction happens each time more than ``patience`` epochs in a row fail to beat
               the best value (torch's ReduceLROnPlateau, mode "min", threshold 0, cooldown 0)

Early stopping (:func:`should_stop`) ends a run when the validation loss has not improved for
``patience`` epochs; :func:`best_epoch` is the epoch whose parameters ``best.npz`` keeps.

Nothing here holds hidden state: every value is recomputed from the :class:`~npvae.train.History`
that a checkpoint saves, so a resumed run uses exactly the rates and the stopping epoch of a run
that never stopped. The schedule's own settings are plain data (:meth:`Schedule.config`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from . import _checks
from .history import History

__all__ = ["SCHEDULES", "Schedule", "make_schedule", "best_epoch", "should_stop", "StopTraining", "EarlyStopping"]

SCHEDULES: tuple[str, ...] = ("constant", "step", "cosine", "plateau")
"""Names accepted by :func:`make_schedule` (and ``npvae train --lr-schedule``)."""


def _monitored(history: History) -> list[float]:
    """The validation loss if the run has one, else the training loss."""
    return history.val_loss if history.has_validation else history.loss


def _plateau_reductions(losses: Sequence[float], patience: int) -> int:
    """How many times more than ``patience`` epochs in a row failed to beat the best loss."""
    reductions = 0
    best = math.inf
    bad_epochs = 0
    for loss in losses:
        if loss < best:
            best, bad_epochs = loss, 0
        else:
            bad_epochs += 1
        if bad_epochs > patience:  # as torch: reduce, then count afresh against the same best value
            reductions += 1
            bad_epochs = 0
    return reductions


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule; ``schedule.lr_for(epoch, history)`` is the rate of ``epoch``.

    Attributes
    ----------
    name : str
        One of :data:`SCHEDULES`.
    lr : float
        The base rate: epoch 1's rate for every schedule.
    epochs : int
        Total epochs of the run (cosine's period).
    step_epochs, gamma : int, float
        step: multiply by ``gamma`` every ``step_epochs`` epochs.
    min_lr : float or None
        cosine: the rate the cosine ends at, > 0 (an optimizer's rate must stay positive);
        None (the default of :func:`make_schedule`) means lr / 100.
    patience, factor : int, float
        plateau: multiply by ``factor`` after more than ``patience`` epochs without improvement.
    """

    name: str
    lr: float
    epochs: int
    step_epochs: int = 10
    gamma: float = 0.5
    min_lr: float | None = None
    patience: int = 5
    factor: float = 0.5

    def lr_for(self, epoch: int, history: History) -> float:
        """The learning rate of ``epoch`` (1-based), from the epochs before it in ``history``."""
        if self.name == "constant":
            return self.lr
        if self.name == "step":
            return self.lr * self.gamma ** ((epoch - 1) // self.step_epochs)
        if self.name == "cosine":
            progress = min(epoch - 1, self.epochs) / self.epochs
            return self.min_lr + (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * progress)) / 2.0
        return self.lr * self.factor ** _plateau_reductions(_monitored(history)[: epoch - 1], self.patience)

    def config(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict; ``Schedule(**config)`` rebuilds the schedule."""
        return asdict(self)

    def apply(self, optimizer: Any, history: History) -> float:
        """Set ``optimizer.lr`` to the rate of the epoch after ``history`` (``len(history) + 1``); return it.

        Call it before training and after every epoch (as a ``fit`` callback:
        ``lambda epoch, history: schedule.apply(optimizer, history)``).
        """
        optimizer.lr = self.lr_for(len(history) + 1, history)
        return optimizer.lr


def make_schedule(name: str, lr: float, epochs: int, **settings: Any) -> Schedule:
    """Build a :class:`Schedule`, checking every setting (errors name it).

    Raises
    ------
    ValueError
        Unknown ``name``; a rate that is not finite and > 0 (``min_lr`` may be 0, below ``lr``);
        ``epochs`` or ``step_epochs`` below 1, ``patience`` below 0; ``gamma`` or ``factor`` outside (0, 1].
        ``min_lr`` left out (or None) is ``lr / 100``.
    TypeError
        A setting that is not a number, or an unknown setting.
    """
    if not isinstance(name, str) or name not in SCHEDULES:
        raise ValueError(f"name: expected one of {SCHEDULES}, got {name!r}")
    known = {"step_epochs", "gamma", "min_lr", "patience", "factor"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise TypeError(f"unknown schedule settings {unknown}; expected some of {sorted(known)}")
    if settings.get("min_lr") is None and isinstance(lr, (int, float)) and not isinstance(lr, bool):
        settings["min_lr"] = lr / 100
    schedule = Schedule(name, lr, epochs, **settings)
    for field in ("lr", "gamma", "min_lr", "factor"):
        value = getattr(schedule, field)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{field}: expected a number, got {type(value).__name__}")
    for field, low in (("epochs", 1), ("step_epochs", 1), ("patience", 0)):
        value = getattr(schedule, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{field}: expected an integer >= {low}, got {value!r}")
    if not (math.isfinite(schedule.lr) and schedule.lr > 0):
        raise ValueError(f"lr: expected a finite number > 0, got {schedule.lr!r}")
    if not (math.isfinite(schedule.min_lr) and 0 < schedule.min_lr < schedule.lr):
        raise ValueError(f"min_lr: expected a number in (0, lr = {schedule.lr!r}), got {schedule.min_lr!r}")
    for field in ("gamma", "factor"):
        if not 0 < getattr(schedule, field) <= 1:
            raise ValueError(f"{field}: expected a number in (0, 1], got {getattr(schedule, field)!r}")
    return schedule


# -- early stopping and the best epoch ---------------------------------------------------------------
def best_epoch(history: History) -> int:
    """The 1-based epoch with the lowest validation loss (the first of equals); 0 for an empty history.

    Raises ValueError if the history has no validation metrics.
    """
    if not isinstance(history, History):
        raise TypeError(f"history: expected a History, got {type(history).__name__}")
    if len(history) and not history.has_validation:
        raise ValueError("history: has no validation loss to choose the best epoch by")
    if not len(history):
        return 0
    return min(range(len(history)), key=history.val_loss.__getitem__) + 1


def should_stop(history: History, patience: int) -> bool:
    """True when the last ``patience`` epochs all failed to beat the best validation loss before them."""
    patience = _checks.positive_int("patience", patience)
    return len(history) - best_epoch(history) >= patience


class StopTraining(Exception):
    """Raised by :class:`EarlyStopping` out of ``fit``, after the epoch and every earlier callback.

    Attributes: ``epoch`` (the last epoch trained) and ``best_epoch``.
    """

    def __init__(self, epoch: int, best: int) -> None:
        super().__init__(f"validation loss has not improved since epoch {best}: stopped after epoch {epoch}")
        self.epoch = epoch
        self.best_epoch = best


@dataclass(frozen=True)
class EarlyStopping:
    """A ``fit`` callback: raise :class:`StopTraining` once :func:`should_stop` holds.

    Put it last in ``callbacks`` so that the epoch is checkpointed before training ends.
    """

    patience: int

    def __post_init__(self) -> None:
        _checks.positive_int("patience", self.patience)

    def __call__(self, epoch: int, history: History) -> None:
        if should_stop(history, self.patience):
            raise StopTraining(epoch, best_epoch(history))

