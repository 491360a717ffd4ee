"""What ``npvae train`` adds around ``fit`` for a run: its data splits (own files included), the
learning-rate schedule, ``best.npz``, early stopping, snapshots and ``report.md``.

Kept out of ``cli.py`` so that the command's own flow (directories, locks, messages) reads on
its own; the command calls :class:`RunExtras` at four points: before training, at the start of
each epoch's checkpoint callback, as trailing callbacks, and at the end. Nothing here prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoint, datasets, schedules, train, userdata
from .history import History
from .models import VAE
from .models.base import Autoencoder
from .optim import Optimizer
from .report import write_report
from .snapshots import Snapshots

BEST_FILE = "best.npz"
REPORT_FILE = "report.md"
SNAPSHOT_DIR = "snapshots"
REPORT_IW_SAMPLES = 10  # K of the bound L_K in report.md: K times the decoder work of the ELBO
SNAPSHOT_IMAGES = 10  # reconstructions per snapshot
EXTRA_RUN_FILES = (BEST_FILE, REPORT_FILE)  # beside the command's own files in the run directory


def is_path(data: str) -> bool:
    """True for own data (a file or folder), False for a built-in data set name."""
    return data not in datasets.DATASETS


def data_label(data: str) -> str:
    """How a run's data are named in titles and directory names: the file or folder name of a PATH."""
    return Path(data).name if is_path(data) else data


def data_splits(settings: dict[str, Any], dtype: Any) -> tuple[datasets.Dataset, datasets.Dataset | None,
                                                               datasets.Dataset]:
    """(train, validation or None, test) of a run's data, the validation rows drawn with its seed.

    Own data have no test split: "test" is the validation part (or, with nothing held out, the
    training images themselves, which the figures then show).
    """
    data = settings["data"]
    if is_path(data):
        full = datasets.load_path(data, scale=settings["scale"], resize=settings["resize"],
                                  unit_range=settings["output"] == "bernoulli", dtype=dtype)
        train_data, val_data = userdata.split_validation(full, settings["val_fraction"], settings["seed"])
        return train_data, val_data, train_data if val_data is None else val_data
    train_data = datasets.load(data, "train", settings["data_dir"], dtype=dtype)
    test_data = datasets.load(data, "test", settings["data_dir"], dtype=dtype)
    train_data, val_data = userdata.split_validation(train_data, settings["val_fraction"], settings["seed"])
    return train_data, val_data, test_data


def clear_previous(run_dir: Path) -> None:
    """Remove what an earlier run in ``run_dir`` left of these files (``--force``), so that none of
    it passes for the new run's: best.npz, report.md, the snapshot frames and GIF."""
    for path in (run_dir / BEST_FILE, run_dir / REPORT_FILE, *(run_dir / SNAPSHOT_DIR).glob("epoch_*.png"),
                 run_dir / SNAPSHOT_DIR / "samples.gif"):
        path.unlink(missing_ok=True)


def new_schedule(settings: dict[str, Any]) -> schedules.Schedule:
    """The schedule of a new run: step halves the rate every epochs/4 epochs, cosine ends at
    lr/100, plateau halves it after more than 5 epochs without improvement."""
    epochs = settings["epochs"]
    return schedules.make_schedule(settings["lr_schedule"], settings["lr"], epochs,
                                   step_epochs=max(1, epochs // 4), gamma=0.5, patience=5, factor=0.5)


def final_metrics(model: Autoencoder, test: datasets.Dataset, seed: int, binarize: bool) -> dict[str, float]:
    """Mean nats per example on the test split (one z per example; for a VAE also -L_K, the
    importance-weighted bound of Burda et al. 2016 with K samples, tighter than the ELBO)."""
    rng = np.random.default_rng(seed)
    x = test.x
    if binarize:
        x = (rng.random(x.shape, dtype=model.dtype) < x).astype(model.dtype)
    terms = train.evaluate(model, x, rng=rng)
    if not isinstance(model, VAE):
        return {"reconstruction error (NLL)": terms["recon"]}
    return {"negative ELBO (1 z per example)": terms["recon"] + terms["kl"],
            "reconstruction": terms["recon"],
            "KL(q(z|x) || N(0, I))": terms["kl"],
            f"-L_{REPORT_IW_SAMPLES} (IWAE bound, K={REPORT_IW_SAMPLES})":
                -float(model.log_likelihood(x, k=REPORT_IW_SAMPLES, rng=rng).mean())}


class RunExtras:
    """The schedule, best checkpoint, early stopping, snapshots and report of one run.

    Parameters
    ----------
    settings : the run's settings (config.json)
    schedule : the run's learning-rate schedule (saved in config.json, reused on resume)
    model, optimizer : trained in place by ``fit``
    run_dir : the run directory
    val_data, test_data : the validation split (None: none held out) and the split the figures,
        snapshots and report metrics use
    """

    def __init__(self, settings: dict[str, Any], schedule: schedules.Schedule, model: Autoencoder,
                 optimizer: Optimizer, run_dir: Path, val_data: datasets.Dataset | None,
                 test_data: datasets.Dataset) -> None:
        self.settings, self.schedule = settings, schedule
        self.model, self.optimizer = model, optimizer
        self.run_dir, self.val_data, self.test_data = run_dir, val_data, test_data
        self.best_path = run_dir / BEST_FILE
        self.keeps_best = val_data is not None  # chosen on held-out training images, never on the test split
        self.snapshots = None
        if settings["snapshot_every"] is not None:
            self.snapshots = Snapshots(model, test_data.x[:SNAPSHOT_IMAGES], test_data.image_shape,
                                       run_dir / SNAPSHOT_DIR, settings["snapshot_every"], settings["seed"])
        self.stopped: schedules.StopTraining | None = None

    def x_val(self) -> np.ndarray | None:
        """What fit validates on: the held-out part; else a built-in set's test split; else nothing."""
        if self.val_data is not None:
            return self.val_data.x
        return None if is_path(self.settings["data"]) else self.test_data.x

    def start(self, history: History) -> None:
        """Before fit: the rate of the next epoch."""
        self.schedule.apply(self.optimizer, history)

    def after_epoch(self, epoch: int, history: History) -> None:
        """First in the checkpoint callback: the next epoch's rate (so that the checkpoint holds it)
        and, at a new lowest validation loss, best.npz."""
        self.schedule.apply(self.optimizer, history)
        if self.keeps_best and schedules.best_epoch(history) == epoch:
            checkpoint.save(self.model, self.best_path, history=history)

    def trailing_callbacks(self) -> list[train.Callback]:
        """Callbacks after the checkpoint one: snapshots, then early stopping (which ends fit by
        raising StopTraining: pass it to :meth:`stop`)."""
        callbacks: list[train.Callback] = []
        if self.snapshots is not None:
            callbacks.append(self.snapshots)
        if self.settings["patience"] is not None:
            callbacks.append(schedules.EarlyStopping(self.settings["patience"]))
        return callbacks

    def stop(self, stopped: schedules.StopTraining) -> None:
        self.stopped = stopped

    def already_stopped(self, history: History) -> bool:
        """A resumed run that early stopping had already ended."""
        patience = self.settings["patience"]
        return patience is not None and schedules.should_stop(history, patience)

    def finish(self, history: History, figures: list[Path], command: str) -> list[Path]:
        """After training and the run's figures: the GIF, the metrics and report.md; returns the
        files written here (best.npz, report.md, the GIF)."""
        written = [self.best_path] if self.keeps_best else []
        if self.snapshots is not None and (gif := self.snapshots.final(len(history))) is not None:
            figures = [*figures, gif]
            written.append(gif)
        notes = []
        if self.stopped is not None:
            notes.append(f"Stopped early after epoch {self.stopped.epoch} of {self.settings['epochs']}: "
                         f"{self.stopped}.")
        if self.keeps_best:
            notes.append(f"{BEST_FILE} holds epoch {schedules.best_epoch(history)}, the lowest validation loss "
                         f"({min(history.val_loss):.4f}); the last checkpoint holds epoch {len(history)}.")
        split = "validation split" if is_path(self.settings["data"]) else "test split"
        notes.append(f"Metrics on the {split} ({self.test_data.x.shape[0]} images), seed {self.settings['seed']}.")
        metrics = final_metrics(self.model, self.test_data, self.settings["seed"], self.settings["binarize"])
        report = write_report(self.run_dir / REPORT_FILE, command=command, settings=self.settings,
                              model=repr(self.model), metrics=metrics, history=history,
                              figures=[path for path in figures if path.suffix in (".png", ".gif")], notes=notes)
        return [*written, report]
