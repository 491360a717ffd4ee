"""Tests for npvae.schedules: the rates against their formulas and torch's schedulers, early
stopping, and exact resume through a checkpoint."""

from __future__ import annotations

import math

import numpy as np
import pytest

import npvae
from npvae import checkpoint
from npvae.schedules import SCHEDULES, EarlyStopping, StopTraining, best_epoch, make_schedule, should_stop
from npvae.train import History


def history_with(val_losses: list[float]) -> History:
    n = len(val_losses)
    return History(loss=[1.0] * n, recon=[1.0] * n, kl=[0.0] * n, val_loss=val_losses, val_recon=val_losses,
                   val_kl=[0.0] * n, seconds=[0.1] * n, kl_weight=[1.0] * n)


def test_constant_step_and_cosine_follow_their_formulas():
    empty = History()
    assert make_schedule("constant", 0.01, 10).lr_for(7, empty) == 0.01
    step = make_schedule("step", 0.01, 10, step_epochs=3, gamma=0.1)
    assert [step.lr_for(e, empty) for e in (1, 3, 4, 7)] == [0.01, 0.01, 0.01 * 0.1, 0.01 * 0.1**2]
    cosine = make_schedule("cosine", 0.01, 10, min_lr=0.001)
    assert cosine.lr_for(1, empty) == pytest.approx(0.01, rel=1e-15)
    assert cosine.lr_for(6, empty) == pytest.approx(0.0055, rel=1e-15)  # half way: the mean of the two ends
    assert cosine.lr_for(11, empty) == pytest.approx(0.001, rel=1e-15)


def test_plateau_reduces_after_more_than_patience_bad_epochs():
    schedule = make_schedule("plateau", 1.0, 20, patience=2, factor=0.5)
    losses = [5.0, 4.0, 4.0, 4.5, 4.2, 3.0, 3.1, 3.2, 3.3]
    rates = [schedule.lr_for(e, history_with(losses)) for e in range(1, len(losses) + 2)]
    # bad epochs 3, 4, 5 (three > 2): epoch 6 runs at 1/2; new best at 6, bad 7, 8, 9: epoch 10 at 1/4
    assert rates == [1.0] * 5 + [0.5] * 4 + [0.25]


@pytest.mark.parametrize("name", ["step", "cosine", "plateau"])
def test_rates_match_torch_schedulers(name):
    torch = pytest.importorskip("torch")
    losses = [3.0, 2.5, 2.6, 2.7, 2.4, 2.4, 2.5, 2.6, 2.7, 2.0, 2.1, 2.2]
    epochs = len(losses)
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    if name == "step":
        ours = make_schedule("step", 0.1, epochs, step_epochs=4, gamma=0.3)
        theirs = torch.optim.lr_scheduler.StepLR(optimizer, step_size=4, gamma=0.3)
    elif name == "cosine":
        ours = make_schedule("cosine", 0.1, epochs, min_lr=0.01)
        theirs = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=0.01)
    else:
        ours = make_schedule("plateau", 0.1, epochs, patience=1, factor=0.5)
        theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=1,
                                                             threshold=0.0, cooldown=0)
    history = history_with(losses)
    for epoch in range(1, epochs + 1):
        assert ours.lr_for(epoch, history) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-12), epoch
        optimizer.step()
        theirs.step(losses[epoch - 1]) if name == "plateau" else theirs.step()


def test_make_schedule_names_the_bad_setting():
    with pytest.raises(ValueError, match=r"name: expected one of"):
        make_schedule("linear", 0.1, 10)
    with pytest.raises(ValueError, match=r"gamma: expected a number in \(0, 1\]"):
        make_schedule("step", 0.1, 10, gamma=2.0)
    with pytest.raises(ValueError, match=r"min_lr: expected a number in \(0, lr"):
        make_schedule("cosine", 0.1, 10, min_lr=0.1)
    assert make_schedule("cosine", 0.1, 10).lr_for(11, History()) == pytest.approx(0.001, rel=1e-15)
    with pytest.raises(TypeError, match=r"unknown schedule settings \['warmup'\]"):
        make_schedule("step", 0.1, 10, warmup=3)
    schedule = make_schedule("plateau", 0.1, 10, patience=0)
    assert make_schedule(**schedule.config()) == schedule


def test_best_epoch_and_should_stop():
    history = history_with([3.0, 2.0, 2.5, 2.0, 2.6])
    assert best_epoch(history) == 2  # the first of equals
    assert should_stop(history, 3) and not should_stop(history, 4)
    with pytest.raises(StopTraining, match="not improved since epoch 2"):
        EarlyStopping(3)(5, history)
    with pytest.raises(ValueError, match="no validation loss"):
        best_epoch(History(loss=[1.0], recon=[1.0], kl=[0.0], seconds=[0.1], kl_weight=[0.0]))


def _run(epochs: int, stop_after: int | None, tmp_path, name: str) -> tuple[np.ndarray, History, list[float]]:
    """Train a tiny VAE with a schedule and early stopping; with ``stop_after``, through a checkpoint."""
    rng_data = np.random.default_rng(0)
    x = (rng_data.random((60, 6)) < 0.4).astype(np.float64)
    x_val = x[:12]
    model = npvae.VAE(6, [5], 2, dtype=np.float64, seed=1)
    optimizer = npvae.Adam(model.parameters(), lr=0.05)
    schedule = make_schedule(name, 0.05, epochs, step_epochs=2, patience=0, factor=0.5)
    history, rng = History(), np.random.default_rng(3)
    rates: list[float] = []

    def train(model, optimizer, history, rng, count):
        schedule.apply(optimizer, history)

        def after(epoch, history):
            rates.append(optimizer.lr)
            schedule.apply(optimizer, history)

        try:
            npvae.fit(model, x, count, batch_size=16, optimizer=optimizer, x_val=x_val, rng=rng, history=history,
                      callbacks=[after, EarlyStopping(4)], progress=False)
        except StopTraining:
            pass
        return history

    if stop_after is None:
        history = train(model, optimizer, history, rng, epochs)
    else:
        train(model, optimizer, history, rng, stop_after)
        checkpoint.save(model, tmp_path / "m.npz", optimizer=optimizer, history=history, rng=rng)
        saved = checkpoint.load_checkpoint(tmp_path / "m.npz")
        model, optimizer, history, rng = saved.model, saved.optimizer, saved.history, saved.rng
        history = train(model, optimizer, history, rng, epochs - len(history))
    return np.concatenate([p.value.ravel() for p in model.parameters()]), history, rates


@pytest.mark.parametrize("name", ["step", "cosine", "plateau"])
def test_schedule_and_early_stopping_resume_to_the_bit(tmp_path, name):
    params, history, rates = _run(12, None, tmp_path, name)
    resumed_params, resumed_history, resumed_rates = _run(12, 5, tmp_path, name)
    np.testing.assert_array_equal(resumed_params, params)
    assert resumed_history.as_dict() | {"seconds": []} == history.as_dict() | {"seconds": []}
    assert resumed_rates == rates
    assert len(set(rates)) > 1  # the schedule did change the rate during the run
    assert math.isfinite(history.val_loss[-1])


def test_schedules_are_all_listed():
    assert SCHEDULES == ("constant", "step", "cosine", "plateau")
