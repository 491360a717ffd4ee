"""The command-line front end: ``npvae train``, ``npvae eval`` and ``npvae sample``.

    npvae train                                   a VAE on the embedded 8x8 digits, figures included
    npvae train --model ae --data mnist           an AE on MNIST (downloaded once into the cache)
    npvae train --resume runs/vae-digits-...      continue a stopped run to its --epochs, to the bit
    npvae eval runs/vae-digits-.../model.npz      test-set negative ELBO, its terms, IWAE log p(x)
    npvae sample runs/vae-digits-.../model.npz    a grid of images decoded from z ~ N(0, I)
    npvae train --model cvae                      a conditional VAE (labels in, "draw me a 7" out)
    npvae sample runs/cvae-digits-.../model.npz --label 7
    npvae train --iw-samples 5 --binarize         a VAE trained on the IWAE bound L_5
    npvae plot runs/vae-digits-...                redraw a run's figures from its files
    npvae train --data faces.npz --patience 5      your own images (.npy/.npz/.csv/folder), early stopping
    npvae encode runs/.../best.npz --out z.npz    the latent codes of a data split, with its labels

A training run writes into one directory: ``model.npz`` (a checkpoint of the model, the Adam
state, the history and the random generator, replaced atomically after every epoch),
``history.csv``, ``config.json`` (the settings, which ``--resume`` reuses) and the figures.
Because the checkpoint holds the generator's state, a run stopped after epoch k (Ctrl-C) and
resumed ends with exactly the parameters of a run that was never stopped. ``--resume`` also
finishes what a stopped run left undone (history.csv, figures) and starts a run stopped before
its first checkpoint. While a command writes into a run directory it holds ``.npvae.lock`` there
(its PID), so that two processes never write one run; a lock whose process is gone is taken over.

Data: ``--data-dir DIR`` (the directory holding the MNIST / Fashion-MNIST IDX files), else the
cache ``$NPVAE_DATA/<data>`` (default ``~/.cache/npvae/<data>``); ``$NPVAE_MNIST_DIR`` is an alias
for the MNIST directory (see :mod:`npvae.datasets`). A ``--data-dir`` that does not exist is an
error. ``eval`` and ``plot`` use the directory recorded in the run's ``config.json``.

Exit status: 0 success, 1 an error in the input (a missing or corrupt file, data that does not
fit the model, a refused output directory) or a diverged run, 2 invalid command-line arguments,
130 interrupted (Ctrl-C), 143 terminated (SIGTERM; the last checkpoint is kept as for Ctrl-C).
Requests that cannot fit in memory (or, for ``eval --iw-samples``, cannot finish in a day) are
refused before anything is allocated, with the estimate. Errors are printed on stderr as
``npvae: error: ...``, without a traceback. This module is the only part of npvae that prints,
apart from ``fit``'s optional progress line (stderr).
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import re
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, checkpoint, datasets, schedules, threads, train
from ._memory import available_memory, format_bytes
from ._run_extras import EXTRA_RUN_FILES, RunExtras, clear_previous, data_label, data_splits, is_path, new_schedule
from .activations import ACTIVATIONS
from .models import AE, CVAE, VAE, VQVAE, memory_bytes
from .models.base import Autoencoder
from .optim import Adam
from .priors import CategoricalPrior, MADEPrior
from ._files import write_atomically
from ._checks import shorten
from .history import History
from .train import TrainingError

__all__ = ["main"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a process stopped by Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM

MODEL_FILE = "model.npz"
HISTORY_FILE = "history.csv"
CONFIG_FILE = "config.json"
LOCK_FILE = ".npvae.lock"
FIGURE_FILES = ("reconstructions.png", "samples.png", "manifold.png", "latent.png", "interpolation.png",
                "history.png")
RUN_FILES = (MODEL_FILE, HISTORY_FILE, CONFIG_FILE, *FIGURE_FILES)
# write_atomically's temp names for the run's own files: .model.npz.<32 hex digits>.tmp
_TEMP_NAME = re.compile(r"\.(?P<name>[^/]+)\.[0-9a-f]{32}\.tmp")
MAX_CONFIG_BYTES = 1 << 16  # a config.json npvae writes is about 400 bytes
# eval refuses an IWAE estimate whose n * k decoder rows would take longer than a day at the rate
# a short timed probe of the decoder measures on this machine
MAX_EVAL_SECONDS = 24 * 3600
PROBE_ROWS = 4096

# Settings of ``npvae train`` that do not depend on the data set.
COMMON_DEFAULTS: dict[str, Any] = {
    "model": "vae",
    "data": "digits",
    "latent_dim": 2,
    "beta": 1.0,
    "seed": 0,
    "kl_warmup": 0,
    "binarize": False,
    "activation": "leaky_relu",
    "dtype": "float32",
    "data_dir": None,
    "iw_samples": 1,
    "output": "bernoulli",
    "val_fraction": 0.0,
    "lr_schedule": "constant",
    "patience": None,
    "snapshot_every": None,
    "resize": None,
    "scale": None,
}
# Per data set: 1,500 images of 8x8 need many short epochs and take a larger step; 60,000 of
# 28x28 need few epochs and wider layers.
DATA_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"epochs": 150, "hidden": [256, 128], "batch_size": 128, "lr": 3e-3},
    "mnist": {"epochs": 20, "hidden": [512, 256], "batch_size": 128, "lr": 1e-3},
    "fashion-mnist": {"epochs": 20, "hidden": [512, 256], "batch_size": 128, "lr": 1e-3},
    "PATH": {"epochs": 30, "hidden": [512, 256], "batch_size": 128, "lr": 1e-3, "val_fraction": 0.1},
}
TRAIN_SETTINGS = (
    "model", "data", "epochs", "latent_dim", "hidden", "beta", "batch_size", "lr", "seed",
    "kl_warmup", "binarize", "activation", "dtype", "data_dir",
)
# The VQ-VAE's own settings (in config.json only for --model vqvae), their defaults, and the
# encoder output width it gets when --latent-dim is not given (COMMON_DEFAULTS' 2 is for a 2-D VAE).
VQ_DEFAULTS: dict[str, Any] = {
    "code_dim": 4,
    "num_codes": 64,
    "commitment": 0.25,
    "codebook": "ema",
    "decay": 0.99,
    "restart_dead_codes": False,
    "prior_epochs": 20,
    "prior_hidden": [256],
}
VQ_LATENT_DIM = 16
PRIOR_FILES = {"made": "prior_made.npz", "categorical": "prior_categorical.npz"}
# Settings added later: a config.json written before them resumes with their defaults.
LATER_SETTINGS = ("iw_samples", "output", "val_fraction", "lr_schedule", "patience", "snapshot_every", "resize",
                  "scale")
TRAIN_SETTINGS += LATER_SETTINGS

# What ``--resume`` may change: the total epoch count and where the data files are.
RESUME_MAY_CHANGE = ("epochs", "data_dir")

FIGURE_SAMPLES = 64
FIGURE_RECONSTRUCTIONS = 10
INTERPOLATION_STEPS = 10
CLASS_GRID_COLUMNS = 10
CVAE_FIGURE_FILES = ("reconstructions.png", "samples.png", "history.png")


class UserError(Exception):
    """A problem with what the user asked for; main prints the message and exits with status 1."""


class Terminated(KeyboardInterrupt):
    """Raised by the SIGTERM handler that main installs, so that SIGTERM takes Ctrl-C's path."""


# -- argument types ------------------------------------------------------------------------------
def _integer(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low:
        wanted = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _integer(text, 1)


def _non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _integer(text, 0)


def _real(text: str, positive: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        wanted = "a positive number" if positive else "a number >= 0"
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    return _real(text, positive=True)


def _non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    return _real(text, positive=False)


def _fraction(text: str) -> float:
    """argparse type: a number in [0, 1)."""
    value = _real(text, positive=False)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def _data_name(text: str) -> str:
    """argparse type: a data set name, or an existing file or folder (made absolute, so that
    ``--resume`` finds it from any directory)."""
    if text in datasets.DATASETS:
        return text
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(datasets.DATASETS)} or an existing file or folder, got {text!r}")
    return str(path.resolve())


# -- the parser ----------------------------------------------------------------------------------
def _defaults_help(name: str) -> str:
    """"default: 150 for digits, 20 for mnist and fashion-mnist": the per-data-set defaults of ``name``."""
    groups: dict[str, list[str]] = {}
    for data, defaults in DATA_DEFAULTS.items():
        value = defaults[name]
        if isinstance(value, list):
            shown = " ".join(map(str, value))
        else:
            shown = f"{value:g}" if isinstance(value, float) else str(value)
        groups.setdefault(shown, []).append(data)
    return "default: " + ", ".join(f"{shown} for {' and '.join(names)}" for shown, names in groups.items())


_THREADS_HELP = (f"threads for the matrix products and the loss (default: {threads.DEFAULT_THREADS}; a waiting "
                 "thread sleeps, so a busy machine slows a run down but does not stall it)")


def build_parser() -> argparse.ArgumentParser:
    """The ``npvae`` argument parser with its subcommands: train, eval, sample, plot, encode."""
    parser = argparse.ArgumentParser(
        prog="npvae",
        description="Train, evaluate and sample autoencoders and VAEs written in NumPy.",
        epilog="Run 'npvae COMMAND --help' for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"npvae {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    _add_train_command(commands)
    _add_eval_command(commands)
    _add_sample_command(commands)
    _add_plot_command(commands)
    _add_encode_command(commands)
    return parser


def _add_train_command(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    fit = commands.add_parser(
        "train", help="train an AE or a VAE and write a checkpoint, its history and figures",
        description="Train an AE or a VAE. With no options: a VAE with a 2-D latent space on the "
                    "embedded 8x8 digits, in seconds. Writes model.npz (checkpointed after every "
                    "epoch), history.csv, config.json and the figures into --out.",
    )
    fit.set_defaults(handler=_train_command)
    fit.add_argument("--model", choices=("vae", "ae", "cvae", "vqvae"), default=None,
                     help=f"model; cvae is a conditional VAE trained with the data's labels "
                          f"(default: {COMMON_DEFAULTS['model']})")
    fit.add_argument("--data", type=_data_name, default=None, metavar="{digits,mnist,fashion-mnist,PATH}",
                     help=f"data set (default: {COMMON_DEFAULTS['data']}; mnist and fashion-mnist "
                          "are downloaded once, checksummed, into the cache), or your own images: a .npy, "
                          ".npz (x, optional y), .csv (optional 'label' column) or a folder of PNG/JPEG; "
                          "integer pixels are divided by 255, floats kept, and must then lie in [0, 1] "
                          "unless --output gaussian")
    fit.add_argument("--epochs", type=_positive_int, default=None, metavar="N",
                     help="total number of epochs, counting those of a resumed run "
                          f"({_defaults_help('epochs')})")
    fit.add_argument("--latent-dim", type=_positive_int, default=None, metavar="D",
                     help=f"dimension of z; the manifold figure needs 2 (default: {COMMON_DEFAULTS['latent_dim']})")
    fit.add_argument("--hidden", type=_positive_int, action="extend", nargs="+", default=None, metavar="H",
                     help="hidden layer widths of the encoder, mirrored by the decoder; repeat or list "
                          f"them: --hidden 256 128 ({_defaults_help('hidden')})")
    fit.add_argument("--beta", type=_non_negative_float, default=None, metavar="B",
                     help=f"VAE only: weight of the KL term, 1 gives the ELBO (default: {COMMON_DEFAULTS['beta']})")
    fit.add_argument("--batch-size", type=_positive_int, default=None, metavar="B",
                     help=f"examples per step ({_defaults_help('batch_size')})")
    fit.add_argument("--lr", type=_positive_float, default=None, metavar="LR",
                     help=f"Adam learning rate ({_defaults_help('lr')})")
    fit.add_argument("--seed", type=_non_negative_int, default=None, metavar="S",
                     help="seed of the initial weights and of every random draw in training "
                          f"(default: {COMMON_DEFAULTS['seed']})")
    fit.add_argument("--kl-warmup", type=_non_negative_int, default=None, metavar="E",
                     help="VAE only: epochs over which the KL weight rises linearly from 0 to beta "
                          f"(default: {COMMON_DEFAULTS['kl_warmup']}, no warm-up)")
    fit.add_argument("--iw-samples", type=_positive_int, default=None, metavar="K",
                     help="VAE only: train on the importance-weighted bound L_K (Burda et al. 2016) with "
                          "K codes per example; 1 is the ELBO (default: 1; K > 1 needs beta 1, no warm-up)")
    fit.add_argument("--binarize", action="store_true", default=None,
                     help="dynamic binarization: each pixel of each batch is redrawn as 0 or 1 "
                          "with its intensity as probability (default: off)")
    fit.add_argument("--activation", choices=ACTIVATIONS, default=None,
                     help=f"hidden-layer activation (default: {COMMON_DEFAULTS['activation']})")
    fit.add_argument("--dtype", choices=("float32", "float64"), default=None,
                     help=f"floating-point precision of the model and data (default: {COMMON_DEFAULTS['dtype']})")
    _add_run_options(fit)
    _add_own_data_and_schedule_options(fit)
    _add_vqvae_options(fit)


def _add_run_options(fit: argparse.ArgumentParser) -> None:
    """train's options about where the run lives and how it is shown."""
    fit.add_argument("--data-dir", default=None, metavar="PATH",
                     help="directory with the MNIST / Fashion-MNIST IDX files (default: the cache, "
                          "$NPVAE_DATA/<data> or ~/.cache/npvae/<data>)")
    fit.add_argument("--out", default=None, metavar="DIR",
                     help="output directory; it must be new or empty unless --force "
                          "(default: a new runs/<model>-<data>-<YYYYmmdd-HHMMSS>)")
    fit.add_argument("--force", action="store_true",
                     help="write into an existing non-empty --out, removing an earlier run's files "
                          "(checkpoint, history, config, figures) first")
    fit.add_argument("--resume", default=None, metavar="DIR",
                     help="continue the run in DIR (its model.npz and config.json) to --epochs epochs "
                          "in total, writing into DIR; other settings come from DIR/config.json")
    fit.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="show a progress line on stderr with elapsed time, ETA and images per second "
                          "(default: only when stderr is a terminal)")
    fit.add_argument("--threads", type=_positive_int, default=None, metavar="N", help=_THREADS_HELP)


def _add_own_data_and_schedule_options(fit: argparse.ArgumentParser) -> None:
    """train's options for users' own data, the validation split, the schedule and snapshots."""
    fit.add_argument("--output", choices=("bernoulli", "gaussian"), default=None,
                     help="decoder likelihood: bernoulli for data in [0, 1], gaussian (unit variance) for "
                          f"other real-valued data (default: {COMMON_DEFAULTS['output']})")
    fit.add_argument("--val-fraction", type=_fraction, default=None, metavar="F",
                     help="hold out this fraction of the training images, drawn with --seed, as the "
                          "validation set (validation loss, --patience, best.npz, figures of a PATH); "
                          "0 validates on the test split (default: 0.1 for a PATH, else 0)")
    fit.add_argument("--patience", type=_positive_int, default=None, metavar="N",
                     help="stop when the validation loss has not improved for N epochs; needs "
                          "--val-fraction > 0 (the test split never chooses the model) (default: off)")
    fit.add_argument("--lr-schedule", choices=schedules.SCHEDULES, default=None,
                     help="learning rate per epoch: step halves it every epochs/4 epochs, cosine decays it "
                          "to lr/100 over --epochs, plateau halves it after more than 5 epochs without a "
                          f"lower validation (else training) loss (default: {COMMON_DEFAULTS['lr_schedule']})")
    fit.add_argument("--snapshot-every", type=_positive_int, default=None, metavar="N",
                     help="every N epochs draw reconstructions and samples from fixed z into snapshots/, "
                          "and at the end an animated snapshots/samples.gif (default: off)")
    fit.add_argument("--resize", type=_positive_int, nargs=2, default=None, metavar=("H", "W"),
                     help="a folder of images of several sizes: resample every image to H x W")
    fit.add_argument("--scale", type=_positive_float, default=None, metavar="S",
                     help="own data: divide the raw values by S (default: 255 for integers, 1 for floats)")


def _add_vqvae_options(fit: argparse.ArgumentParser) -> None:
    vq = fit.add_argument_group(
        "VQ-VAE (--model vqvae)",
        f"The encoder's --latent-dim outputs (default {VQ_LATENT_DIM} for a VQ-VAE) are read as "
        "latent_dim / code_dim vectors, each replaced by its nearest codebook vector. After training, "
        "two priors over the codes are fitted on the training set (prior_made.npz, prior_categorical.npz)")
    vq.add_argument("--code-dim", type=_positive_int, default=None, metavar="D",
                    help=f"dimension of each code vector; must divide --latent-dim (default: {VQ_DEFAULTS['code_dim']})")
    vq.add_argument("--num-codes", type=_positive_int, default=None, metavar="K",
                    help=f"codebook size (default: {VQ_DEFAULTS['num_codes']})")
    vq.add_argument("--commitment", type=_non_negative_float, default=None, metavar="B",
                    help=f"weight beta of the commitment term (default: {VQ_DEFAULTS['commitment']})")
    vq.add_argument("--codebook", choices=("loss", "ema"), default=None,
                    help=f"learn the codebook by its loss term or by moving averages (default: {VQ_DEFAULTS['codebook']})")
    vq.add_argument("--decay", type=_non_negative_float, default=None, metavar="G",
                    help=f"EMA decay, in [0, 1) (default: {VQ_DEFAULTS['decay']})")
    vq.add_argument("--restart-dead-codes", action="store_true", default=None,
                    help="after each epoch, move codes no training vector used onto random encoder outputs")
    vq.add_argument("--prior-epochs", type=_positive_int, default=None, metavar="N",
                    help=f"epochs of the MADE prior's training (default: {VQ_DEFAULTS['prior_epochs']})")
    vq.add_argument("--prior-hidden", type=_positive_int, action="extend", nargs="+", default=None, metavar="H",
                    help=f"hidden widths of the MADE prior (default: {' '.join(map(str, VQ_DEFAULTS['prior_hidden']))})")


def _add_eval_command(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    evaluate = commands.add_parser(
        "eval", help="evaluate a checkpoint on a data split",
        description="Print a checkpoint's mean loss terms on a data split, in nats per example: for "
                    "a VAE the negative ELBO (one z per example), its reconstruction and KL parts, "
                    "and the importance-weighted (IWAE) estimate of log p(x) with K samples; for "
                    "an AE the reconstruction error.",
    )
    evaluate.set_defaults(handler=_eval_command)
    evaluate.add_argument("checkpoint", metavar="CHECKPOINT", help="a model.npz written by npvae train")
    evaluate.add_argument("--data", type=_data_name, default=None, metavar="{digits,mnist,fashion-mnist,PATH}",
                          help="data set or your own images (default: the one in config.json beside the "
                               "checkpoint); for a PATH, test is the held-out validation part")
    evaluate.add_argument("--split", choices=("train", "test"), default="test", help="data split (default: test)")
    evaluate.add_argument("--iw-samples", type=_positive_int, default=100, metavar="K",
                          help="importance samples per example of the IWAE estimate (VAE only; default: "
                               "%(default)s); larger K gives a tighter bound and takes K times the decoder work")
    evaluate.add_argument("--seed", type=_non_negative_int, default=0, metavar="S",
                          help="seed of the noise of the ELBO and IWAE estimates, and of the binarization "
                               "(default: %(default)s)")
    evaluate.add_argument("--data-dir", default=None, metavar="PATH",
                          help="directory with the MNIST / Fashion-MNIST IDX files (default: the cache)")
    evaluate.add_argument("--binarize", action=argparse.BooleanOptionalAction, default=None,
                          help="evaluate on the data binarized once, each pixel 0 or 1 with its intensity as "
                               "probability (drawn from --seed), as a model trained with --binarize sees "
                               "them (default: the setting in config.json beside the checkpoint, else off)")
    evaluate.add_argument("--threads", type=_positive_int, default=None, metavar="N", help=_THREADS_HELP)


def _add_sample_command(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    sample = commands.add_parser(
        "sample", help="decode z ~ N(0, I) with a checkpoint's decoder into an image grid",
        description="Decode n codes drawn from N(0, I) and write them as a PNG grid. For an AE "
                    "this shows what its decoder makes of codes it was never trained on.",
    )
    sample.set_defaults(handler=_sample_command)
    sample.add_argument("checkpoint", metavar="CHECKPOINT", help="a model.npz written by npvae train")
    sample.add_argument("--n", type=_positive_int, default=64, help="number of samples (default: %(default)s)")
    sample.add_argument("--out", default=None, metavar="PNG",
                        help="where to write the grid (default: samples-n<N>-seed<S>.png beside the checkpoint)")
    sample.add_argument("--seed", type=_non_negative_int, default=0, metavar="S",
                        help="seed of the codes z (default: %(default)s)")
    sample.add_argument("--prior", choices=tuple(PRIOR_FILES), default="made",
                        help="VQ-VAE only: the prior over the codes, read beside the checkpoint "
                             "(default: %(default)s)")
    sample.add_argument("--force", action="store_true", help="replace the PNG if it exists")
    sample.add_argument("--label", type=_non_negative_int, default=None, metavar="C",
                        help="CVAE only: draw --n images of class C (default for a CVAE: a grid with one "
                             "row per class, the same codes in each column)")


def _add_plot_command(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    plot = commands.add_parser(
        "plot", help="redraw a run's figures from its checkpoint and config.json",
        description="Redraw every figure of a training run (reconstructions, samples, manifold, latent "
                    "codes, interpolation, history) from RUN/model.npz and RUN/config.json, as train "
                    "draws them; also rewrites RUN/history.csv from the checkpoint.",
    )
    plot.set_defaults(handler=_plot_command)
    plot.add_argument("run", metavar="RUN", help="a directory written by npvae train")
    plot.add_argument("--data-dir", default=None, metavar="PATH",
                      help="directory with the MNIST / Fashion-MNIST IDX files (default: the one in RUN/config.json)")


def _add_encode_command(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    encode = commands.add_parser(
        "encode", help="write the latent codes of a data split to an .npz",
        description="Encode every image of a data split. A VAE gives the means and log-variances of "
                    "q(z|x) (arrays mu, logvar), an AE its codes (array z); the labels come along "
                    "(array labels, -1 where the data have none).",
    )
    encode.set_defaults(handler=_encode_command, binarize=False)
    encode.add_argument("checkpoint", metavar="MODEL", help="a model.npz or best.npz written by npvae train")
    encode.add_argument("--data", type=_data_name, default=None, metavar="{digits,mnist,fashion-mnist,PATH}",
                        help="data set or your own images (default: the one in config.json beside MODEL)")
    encode.add_argument("--split", choices=("train", "test"), default="test",
                        help="data split (default: test; for a PATH, test is the held-out validation part)")
    encode.add_argument("--data-dir", default=None, metavar="PATH",
                        help="directory with the MNIST / Fashion-MNIST IDX files (default: the cache)")
    encode.add_argument("--out", default="latents.npz", metavar="NPZ",
                        help="where to write the codes (default: %(default)s; replaced if it exists)")


# -- helpers shared by the commands ---------------------------------------------------------------
def _load_checkpoint(path_text: str, training_state: bool = True) -> checkpoint.Checkpoint:
    path = Path(path_text)
    if not path.exists():
        raise UserError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise UserError(f"checkpoint is not a file: {path}")
    return checkpoint.load_checkpoint(path, training_state=training_state)


def _image_shape_for(input_dim: int) -> tuple[int, int]:
    """The (h, w) of a square image with ``input_dim`` pixels: 64 -> (8, 8), 784 -> (28, 28)."""
    side = math.isqrt(input_dim)
    if side * side != input_dim:
        raise UserError(f"cannot draw images of {input_dim} pixels: not a square image "
                        "(expected e.g. 64 for 8x8 digits or 784 for 28x28 MNIST)")
    return side, side


def _check_fits(model: Autoencoder, data: datasets.Dataset) -> None:
    if data.x.shape[1] != model.input_dim:
        h, w = data.image_shape
        raise UserError(
            f"--data {data.name} has {data.x.shape[1]} pixels per image ({h}x{w}), but the model "
            f"expects input_dim {model.input_dim}: evaluate it on the data it was trained on"
        )


def _describe(model: Autoencoder) -> str:
    config = model.config()
    shown = ["input_dim", "hidden_dims", "latent_dim", "activation", "output"]
    if isinstance(model, CVAE):
        shown.insert(1, "num_classes")
    if isinstance(model, (VAE, CVAE)):
        shown.append("beta")
    if isinstance(model, VQVAE):
        shown[2:3] = ["num_latents", "code_dim", "num_codes", "beta", "codebook"]
    arguments = ", ".join(f"{name}={config[name]!r}" for name in shown)
    return f"{type(model).__name__}({arguments})"


def _read_config(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise UserError(f"{path} not found: --resume needs a directory written by npvae train")
    if not path.is_file():  # a FIFO would block read_text forever
        raise UserError(f"{path} is not a regular file")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise UserError(f"{path}: {path.stat().st_size:,} bytes, more than the {MAX_CONFIG_BYTES:,} of a config npvae writes")
    text = path.read_text(encoding="utf-8")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None
    except RecursionError:
        raise UserError(f"{path}: JSON nested too deeply to read") from None
    missing = [name for name in TRAIN_SETTINGS
               if name not in LATER_SETTINGS and (not isinstance(config, dict) or name not in config)]
    if missing:
        raise UserError(f"{path}: missing settings {missing}")
    return {**{name: COMMON_DEFAULTS[name] for name in LATER_SETTINGS}, **config}


def _write_config(path: Path, settings: dict[str, Any]) -> None:
    data = (json.dumps({**settings, "npvae_version": __version__}, indent=2) + "\n").encode("utf-8")
    write_atomically(path, lambda file: file.write(data))


def _check_data_dir(data_dir: str | None) -> None:
    """A --data-dir must exist: a typo must not create a directory and start a download into it."""
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise UserError(f"--data-dir {data_dir}: no such directory (give the directory that holds the IDX files, "
                        "or leave --data-dir out to use the cache)")


def _load_data(name: str, split: str, data_dir: str | None, dtype: Any) -> datasets.Dataset:
    """datasets.load, its errors said in the command line's words."""
    try:
        return datasets.load(name, split, data_dir, dtype=dtype)
    except datasets.DownloadError as error:
        raise _download_error(error) from None


def _download_error(error: datasets.DownloadError) -> UserError:
    return UserError(str(error).replace(datasets.DATA_DIR_HINT, "give --data-dir DIR for a directory that holds them"))


def _refuse_beyond_memory(needed: float, what: str, advice: str) -> None:
    """UserError if ``needed`` bytes exceed the memory available (nothing is refused where it is unknown)."""
    available = available_memory()
    if available is not None and needed > available:
        raise UserError(f"{what} needs about {format_bytes(needed)}, more than the {format_bytes(available)} "
                        f"of memory available: {advice}")


# -- the run directory: lock, stale files -------------------------------------------------------------
def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (signal 0 checks without sending anything). On Windows
    os.kill would terminate it: there every holder counts as alive, and the message says which
    lock file to remove."""
    if pid == os.getpid() or os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except (OSError, OverflowError, ValueError):
        return False
    return True


class RunLock:
    """``RUN/.npvae.lock``, holding the PID of the one process that writes the run.

    Taken by linking a complete temp file to the lock name (atomic, fails if it exists), so the
    lock never exists half-written. A lock whose PID is not a live process (a run killed with
    ``kill -9``) is stale and taken over; a live one refuses with a UserError.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / LOCK_FILE
        self.held = False

    def __enter__(self) -> "RunLock":
        mine = f"{os.getpid()}\n"
        for _ in range(3):
            temp = self.path.with_name(f"{LOCK_FILE}.{os.getpid()}.tmp")
            temp.write_text(mine)
            try:
                os.link(temp, self.path)
            except FileExistsError:
                pass
            else:
                self.held = True
                return self
            finally:
                temp.unlink(missing_ok=True)
            try:
                holder = int(self.path.read_text().strip() or "0")
            except (OSError, ValueError):
                holder = 0
            if holder and _process_alive(holder):
                raise UserError(f"{self.path.parent} is being written by another npvae process (PID {holder}); wait "
                                f"for it to finish, or if no npvae runs there, remove {self.path}")
            self.path.unlink(missing_ok=True)  # stale: its process is gone
        raise UserError(f"could not take the lock {self.path}: another process keeps taking it")

    def __exit__(self, *exc_info: object) -> None:
        if self.held:
            try:
                if self.path.read_text() == f"{os.getpid()}\n":
                    self.path.unlink()
            except OSError:
                pass
            self.held = False


def _remove_stale_temps(run_dir: Path) -> list[Path]:
    """Delete the temp files write_atomically left for the run's own files (a run killed while
    saving); nothing else is touched. Call only with the run's lock held."""
    removed = []
    for path in run_dir.iterdir():
        match = _TEMP_NAME.fullmatch(path.name)
        if match and match["name"] in (*RUN_FILES, *EXTRA_RUN_FILES) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _figure_names(model: Autoencoder) -> list[str]:
    if isinstance(model, CVAE):
        return list(CVAE_FIGURE_FILES)
    return [name for name in FIGURE_FILES if name != "manifold.png" or model.latent_dim == 2]


# -- npvae train ------------------------------------------------------------------------------------
def _given_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The train settings given on the command line (argparse leaves the others at None)."""
    return {name: getattr(args, name) for name in (*TRAIN_SETTINGS, *VQ_DEFAULTS) if getattr(args, name) is not None}


def _new_settings(args: argparse.Namespace) -> dict[str, Any]:
    given = _given_settings(args)
    data = given.get("data", COMMON_DEFAULTS["data"])
    settings = {**COMMON_DEFAULTS, **DATA_DEFAULTS["PATH" if is_path(data) else data], **given}
    if settings["model"] in ("ae", "vqvae"):
        for name, flag in (("beta", "--beta"), ("kl_warmup", "--kl-warmup")):
            if name in given:
                model = "an AE" if settings["model"] == "ae" else "a VQ-VAE (its beta is --commitment)"
                raise UserError(f"{flag} applies to --model vae only: {model} has no KL term")
    if settings["model"] == "vqvae":
        settings = {**VQ_DEFAULTS, **settings}
        if "latent_dim" not in given:
            settings["latent_dim"] = VQ_LATENT_DIM
        if not 0 <= settings["decay"] < 1:
            raise UserError(f"--decay {settings['decay']!r}: expected a value in [0, 1)")
    else:
        for name in VQ_DEFAULTS:
            if name in given:
                raise UserError(f"--{name.replace('_', '-')} applies to --model vqvae only")
    if settings["patience"] is not None and settings["val_fraction"] == 0:
        raise UserError("--patience needs a validation set: give --val-fraction F > 0 (the test split "
                        "is never used to choose the model)")
    if not is_path(data):
        for name, flag in (("resize", "--resize"), ("scale", "--scale")):
            if name in given:
                raise UserError(f"{flag} applies to your own data (--data PATH) only")
    if settings["iw_samples"] > 1:
        if settings["model"] != "vae":
            raise UserError(f"--iw-samples applies to --model vae only, not {settings['model']}")
        if settings["beta"] != 1.0 or settings["kl_warmup"]:
            raise UserError("--iw-samples K > 1 trains on the bound L_K, which has no KL weight: "
                            "drop --beta and --kl-warmup")
    return settings


def _resume_settings(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    saved = _read_config(run_dir / CONFIG_FILE)
    given = _given_settings(args)
    for name, value in given.items():
        if name not in RESUME_MAY_CHANGE and value != saved.get(name):
            flag = "--" + name.replace("_", "-")
            raise UserError(
                f"{flag} {value!r} differs from the run's {saved[name]!r} ({run_dir / CONFIG_FILE}): "
                "--resume continues a run with its own settings; drop the option or start a new run"
            )
    if args.out is not None and Path(args.out).resolve() != run_dir.resolve():
        raise UserError(f"--out {args.out} differs from --resume {run_dir}: "
                        "a resumed run writes into its own directory")
    return {name: given.get(name, saved[name]) for name in (*TRAIN_SETTINGS, *VQ_DEFAULTS) if name in saved}


def _check_config_matches(settings: dict[str, Any], model: Autoencoder, config_path: Path, model_path: Path) -> None:
    """config.json must describe the checkpoint's model: a resume continues that model, and would
    otherwise rewrite config.json with settings that are not the model's."""
    config = model.config()
    kind = {"VAE": "vae", "CVAE": "cvae", "VQVAE": "vqvae"}.get(type(model).__name__, "ae")
    expected = {"model": kind, "hidden": list(config["hidden_dims"]),
                "latent_dim": config["latent_dim"], "activation": config["activation"],
                "dtype": config["dtype"], "seed": config["seed"]}
    if isinstance(model, (VAE, CVAE)):
        expected["beta"] = config["beta"]
    if isinstance(model, VQVAE):
        expected.update(code_dim=config["code_dim"], num_codes=config["num_codes"], commitment=config["beta"],
                        codebook=config["codebook"])
    differ = [f"{name} {settings[name]!r} vs {value!r}" for name, value in expected.items() if settings[name] != value]
    if differ:
        raise UserError(f"{config_path} does not describe the model in {model_path} ({'; '.join(differ)}): "
                        "the directory mixes two runs; start a new run or restore the run's config.json")


def _check_out(out: str | None, force: bool) -> None:
    """--out must be new or empty, or any directory with --force (it is created later, once the
    data and the model are known to fit)."""
    if out is not None:
        path = Path(out)
        if path.exists() and not path.is_dir():
            raise UserError(f"--out {path} exists and is not a directory")
        if path.is_dir() and any(path.iterdir()) and not force:
            raise UserError(f"--out {path} exists and is not empty: choose a new directory, "
                            f"or add --force to write into it, or continue it with --resume {path}")


def _create_out(out: str | None, settings: dict[str, Any]) -> Path:
    """The checked --out, created if new, or a new runs/<model>-<data>-<time> directory."""
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        return Path(out)
    stem = f"{settings['model']}-{data_label(settings['data'])}-{datetime.now():%Y%m%d-%H%M%S}"
    Path("runs").mkdir(exist_ok=True)
    for attempt in range(1, 1000):
        path = Path("runs") / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise UserError(f"could not create a new directory runs/{stem}-N: remove old runs or give --out")


def _clear_previous_run(run_dir: Path) -> None:
    """--force: remove what an earlier run wrote here (checkpoint, history, config, figures, their
    temp files), so that none of it passes for this run's. Other files are left alone."""
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    clear_previous(run_dir)  # best.npz, report.md, snapshots
    _remove_stale_temps(run_dir)


def _build_model(settings: dict[str, Any], input_dim: int, labels: np.ndarray | None = None) -> Autoencoder:
    # a CVAE's memory is a VAE's plus num_classes inputs to each network: counted as a VAE's
    parameters = checkpoint.parameter_count("AE" if settings["model"] == "ae" else "VAE", input_dim,
                                             settings["hidden"], settings["latent_dim"])
    needed = memory_bytes(input_dim, settings["hidden"], settings["latent_dim"], rows=settings["batch_size"],
                          dtype=settings["dtype"])
    sizes, advice = f"--latent-dim {settings['latent_dim']}", "choose smaller --hidden or --latent-dim"
    if settings["model"] == "vqvae":
        # the codebook (drawn in float64), its gradient, Adam's two moments and the two EMA
        # averages, and the (batch * num_latents, num_codes) distance matrix
        num_latents = max(1, settings["latent_dim"] // settings["code_dim"])
        codebook = settings["num_codes"] * settings["code_dim"]
        parameters += codebook
        needed += 8 * (6 * codebook + settings["batch_size"] * num_latents * settings["num_codes"])
        sizes += f", --num-codes {settings['num_codes']}, --code-dim {settings['code_dim']}"
        advice = "choose smaller --hidden, --latent-dim or --num-codes"
    _refuse_beyond_memory(
        needed, f"training a model of {parameters:,} parameters ({settings['dtype']}, --hidden "
                f"{' '.join(map(str, settings['hidden']))}, {sizes})", advice)
    arguments = dict(input_dim=input_dim, hidden_dims=settings["hidden"], latent_dim=settings["latent_dim"],
                     activation=settings["activation"], output=settings["output"], seed=settings["seed"],
                     dtype=settings["dtype"])
    if settings["model"] == "vae":
        return VAE(beta=settings["beta"], **arguments)
    if settings["model"] == "cvae":
        return CVAE(num_classes=_cvae_classes(settings["data"], labels), beta=settings["beta"], **arguments)
    if settings["model"] == "vqvae":
        return VQVAE(num_latents=max(1, settings["latent_dim"] // settings["code_dim"]), code_dim=settings["code_dim"],
                     num_codes=settings["num_codes"], beta=settings["commitment"], codebook=settings["codebook"],
                     decay=settings["decay"], restart_dead_codes=settings["restart_dead_codes"], **arguments)
    return AE(**arguments)


def _cvae_classes(data: str, labels: np.ndarray | None) -> int:
    """The number of classes of a new CVAE on data with these labels. Refuses data without labels
    (own data files without labels have them all NO_LABEL, -1), partly labelled data, and one class."""
    if labels is None or labels.size == 0 or bool((labels < 0).all()):
        raise UserError(f"--model cvae needs labelled data: --data {data} has no labels")
    unlabelled = int((labels < 0).sum())
    if unlabelled:
        raise UserError(f"--model cvae needs every image labelled: {unlabelled:,} of {labels.size:,} images "
                        f"of --data {data} have no label")
    classes = int(labels.max()) + 1
    if classes < 2:
        raise UserError(f"--model cvae needs at least 2 classes: every label of --data {data} is 0")
    return classes


def _labels_of(model: Autoencoder, data: datasets.Dataset) -> np.ndarray | None:
    """The data's labels for a CVAE (which needs them, each in 0 .. num_classes - 1), None for the
    other models."""
    if not isinstance(model, CVAE):
        return None
    labels = data.labels
    if labels.size and (labels.min() < 0 or labels.max() >= model.num_classes):
        unlabelled = int((labels < 0).sum())
        problem = (f"{unlabelled:,} of {labels.size:,} images have no label" if unlabelled else
                   f"labels up to {int(labels.max())}")
        raise UserError(f"{data_label(data.name)}: a CVAE needs every image labelled 0 .. {model.num_classes - 1} "
                        f"({problem})")
    return labels


class _EpochPrinter:
    """Prints the per-epoch table; clears the progress line on stderr first when one is shown."""

    def __init__(self, is_vae: bool, clear_progress: bool, is_vqvae: bool = False) -> None:
        self.names = ("loss", "recon", "kl", "val_loss", "val_recon", "val_kl") if is_vae else ("loss", "val_loss")
        if is_vqvae:
            self.names = ("loss", "recon", "kl", "perplexity", "codes_used", "val_loss", "val_recon", "val_kl")
        # a VQ-VAE's kl field holds its VQ terms
        self.labels = [{"kl": "vq", "val_kl": "val_vq", "codes_used": "used"}.get(name, name) if is_vqvae else name
                       for name in self.names]
        self.clear_progress = clear_progress

    def header(self) -> None:
        print(f"{'epoch':>6}" + "".join(f"{label:>11}" for label in self.labels) + f"{'seconds':>9}", flush=True)

    def epoch(self, epoch: int, history: History) -> None:
        if self.clear_progress:
            sys.stderr.write("\r\033[K")  # erase the progress line so the table row starts at column 0
            sys.stderr.flush()
        values = "".join(f"{getattr(history, name)[-1]:>11.4f}" if getattr(history, name) else f"{'-':>11}"
                         for name in self.names)  # "-": own data trained with nothing held out
        print(f"{epoch:>6}{values}{history.seconds[-1]:>9.2f}", flush=True)


def _progress_shown(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    return sys.stderr is not None and sys.stderr.isatty()


def _interpolation_ends(labels: np.ndarray) -> tuple[int, int]:
    """Test image 0 and the first test image with another label (or image 1 if all agree)."""
    others = np.flatnonzero(labels != labels[0])
    return 0, int(others[0]) if others.size else min(1, labels.size - 1)


def _write_figures(model: Autoencoder, test: datasets.Dataset, history: History, out: Path,
                   data_name: str, seed: int) -> list[Path]:
    """Every figure of a run, from the test split; random draws from default_rng(seed)."""
    from . import plots  # matplotlib takes about a second to import: only when drawing

    rng = np.random.default_rng(seed)
    name = type(model).__name__
    if isinstance(model, CVAE):
        return _write_cvae_figures(model, test, history, out, data_name, seed)
    is_vae = isinstance(model, VAE)
    shape = test.image_shape
    not_gaussian = "" if is_vae else " (AE codes are not N(0, I): not samples of the data)"
    shown = test.x[:FIGURE_RECONSTRUCTIONS]
    paths = [plots.save_reconstructions(shown, model.reconstruct(shown), shape, out / "reconstructions.png",
                                        n=FIGURE_RECONSTRUCTIONS, title=f"{name} reconstructions ({data_name} test)")]
    paths.append(plots.save_image_grid(model.sample(FIGURE_SAMPLES, rng), shape, out / "samples.png",
                                       title=f"{name}: decoded z ~ N(0, I){not_gaussian}"))
    if model.latent_dim == 2:
        paths.append(plots.save_manifold(model.decode, shape, out / "manifold.png",
                                         title=f"{name} decoder over the 2-D latent space{not_gaussian}"))
    codes = model.encode(test.x)[0] if is_vae else model.encode(test.x)
    what = "means mu(x)" if is_vae else "codes"
    test = test._replace(labels=np.maximum(test.labels, 0))  # own data without labels: one colour
    paths.append(plots.save_latent_scatter(codes, test.labels, out / "latent.png",
                                           title=f"{name}: latent {what} of the {data_name} test set"))
    first, last = _interpolation_ends(test.labels)
    t = np.linspace(0.0, 1.0, INTERPOLATION_STEPS)[:, None]
    decoded = model.decode((1.0 - t) * codes[first] + t * codes[last])
    paths.append(plots.save_interpolation(
        decoded, shape, out / "interpolation.png",
        title=f"{name}: from test image {first} (label {test.labels[first]}) "
              f"to test image {last} (label {test.labels[last]})"))
    curves = {name: values for name, values in history.as_dict().items() if values}  # no val_* without validation
    if not is_vae:
        curves = {key: curves[key] for key in ("loss", "val_loss") if key in curves}
    paths.append(plots.save_history(curves, out / "history.png", title=f"{name} on {data_name}: training history"))
    return paths


def _class_grid(model: CVAE, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Samples with one row per class: the same per_class codes z ~ N(0, I) decoded as each class."""
    z = rng.standard_normal((per_class, model.latent_dim), dtype=model.dtype)
    codes = np.tile(z, (model.num_classes, 1))
    labels = np.repeat(np.arange(model.num_classes), per_class)
    return model.decode(codes, labels)


def _write_cvae_figures(model: CVAE, test: datasets.Dataset, history: History, out: Path,
                        data_name: str, seed: int) -> list[Path]:
    """A CVAE run's figures (CVAE_FIGURE_FILES): reconstructions, samples with one row per class,
    history."""
    from . import plots

    rng = np.random.default_rng(seed)
    shape = test.image_shape
    shown, labels = test.x[:FIGURE_RECONSTRUCTIONS], test.labels[:FIGURE_RECONSTRUCTIONS]
    paths = [plots.save_reconstructions(shown, model.reconstruct(shown, labels), shape, out / "reconstructions.png",
                                        n=FIGURE_RECONSTRUCTIONS, title=f"CVAE reconstructions ({data_name} test)")]
    paths.append(plots.save_image_grid(
        _class_grid(model, CLASS_GRID_COLUMNS, rng), shape, out / "samples.png", ncols=CLASS_GRID_COLUMNS,
        title=f"CVAE: row c decodes the same {CLASS_GRID_COLUMNS} codes z ~ N(0, I) with label c"))
    paths.append(plots.save_history(history.as_dict(), out / "history.png",
                                    title=f"CVAE on {data_name}: training history"))
    return paths


def _fit_priors(model: VQVAE, train_x: np.ndarray, test_x: np.ndarray, settings: dict[str, Any],
                run_dir: Path) -> dict[str, Any]:
    """Fit both priors on the training codes, save them beside the model, print their test NLL."""
    codes, test_codes = model.encode(train_x), model.encode(test_x)
    made = MADEPrior(model.num_latents, model.num_codes, settings["prior_hidden"], seed=settings["seed"],
                     dtype=model.dtype)
    started = time.perf_counter()
    made.fit(codes, settings["prior_epochs"], lr=settings["lr"], rng=np.random.default_rng([settings["seed"], 1]))
    priors = {"made": made, "categorical": CategoricalPrior(model.num_latents, model.num_codes,
                                                            dtype=model.dtype).fit(codes)}
    print(f"priors over the codes, fitted on the training set ({time.perf_counter() - started:.1f} s); "
          f"test NLL in nats per example (uniform: {model.num_latents * math.log(model.num_codes):.2f}):")
    for name, prior in priors.items():
        checkpoint.save(prior, run_dir / PRIOR_FILES[name])
        print(f"  {name:<12}{prior.nll(test_codes):>10.4f}   {run_dir / PRIOR_FILES[name]}")
    return priors


def _write_vqvae_figures(model: VQVAE, priors: dict[str, Any], test: datasets.Dataset, history: History,
                         out: Path, data_name: str, seed: int) -> list[Path]:
    """A VQ-VAE run's figures: reconstructions, code usage, samples from both priors, history."""
    from . import plots

    rng = np.random.default_rng(seed)
    shape = test.image_shape
    shown = test.x[:FIGURE_RECONSTRUCTIONS]
    paths = [plots.save_reconstructions(shown, model.reconstruct(shown), shape, out / "reconstructions.png",
                                        n=FIGURE_RECONSTRUCTIONS, title=f"VQVAE reconstructions ({data_name} test)")]
    paths.append(plots.save_code_usage({f"{model.codebook_kind} codebook": model.code_counts(test.x)},
                                       out / "code_usage.png", title=f"VQVAE codebook usage ({data_name} test)"))
    paths.append(plots.save_side_by_side(
        [model.sample(FIGURE_SAMPLES, rng, prior=priors[name]) for name in PRIOR_FILES], shape, out / "samples.png",
        ["MADE (autoregressive) prior", "independent categorical prior"], title="VQVAE: codes drawn from a prior"))
    curves = {key: value for key, value in history.as_dict().items() if key in ("loss", "val_loss")}
    paths.append(plots.save_history(curves, out / "history.png", title=f"VQVAE on {data_name}: training history"))
    return paths


def _report_interrupt(model_path: Path, csv_path: Path, run_dir: Path, epochs: int, signal_exit: int) -> int:
    """After Ctrl-C or SIGTERM: sync history.csv with the last checkpoint and say how to go on."""
    what = "terminated (SIGTERM)" if signal_exit == EXIT_TERMINATED else "interrupted"
    if not model_path.exists():
        print(f"\nnpvae: {what} before the first epoch finished; no checkpoint was written; "
              f"start again with: npvae train --resume {run_dir}", file=sys.stderr)
        return signal_exit
    saved = checkpoint.load_checkpoint(model_path, training_state=False)
    saved.history.to_csv(csv_path)
    if len(saved.history) >= epochs:
        print(f"\nnpvae: {what} while drawing the figures; the checkpoint of epoch {len(saved.history)} is "
              f"{model_path}\nfinish with: npvae plot {run_dir}", file=sys.stderr)
    else:
        print(f"\nnpvae: {what}; the checkpoint of epoch {len(saved.history)} is {model_path}\n"
              f"resume with: npvae train --resume {run_dir}", file=sys.stderr)
    return signal_exit


def _finish_run(run_dir: Path, model: Autoencoder, history: History, settings: dict[str, Any]) -> list[Path]:
    """history.csv and every figure of a finished run whose figures are missing (stopped while
    drawing them); returns what was written, nothing when nothing was missing."""
    csv_path = run_dir / HISTORY_FILE
    missing = [name for name in _figure_names(model) if not (run_dir / name).is_file()]
    written = [history.to_csv(csv_path)]
    if missing:
        test_data = _run_data(settings)[2]
        written += _write_figures(model, test_data, history, run_dir, data_label(settings["data"]), settings["seed"])
    return written


def _train_command(args: argparse.Namespace) -> int:
    if args.resume is None:
        settings = _new_settings(args)
        _check_data_dir(settings["data_dir"])
        _check_out(args.out, args.force)
        return _train(args, None, settings, resume=False)
    run_dir = Path(args.resume)
    if not run_dir.is_dir():
        raise UserError(f"--resume {run_dir}: no such directory")
    _check_data_dir(args.data_dir)
    with RunLock(run_dir):
        _remove_stale_temps(run_dir)
        settings = _resume_settings(args, run_dir)
        return _train(args, run_dir, settings, resume=True)


def _train(args: argparse.Namespace, run_dir: Path | None, settings: dict[str, Any], resume: bool) -> int:
    """Train a new run (``run_dir`` None: --out or a new runs/ directory, created once the data
    and the model fit) or resume the one in ``run_dir``, whose lock the caller holds."""
    saved = None
    if resume and (run_dir / MODEL_FILE).exists():
        model_path, config_path = run_dir / MODEL_FILE, run_dir / CONFIG_FILE
        saved = _load_checkpoint(str(model_path))
        if saved.optimizer is None or saved.history is None or saved.rng is None:
            raise UserError(f"{model_path} lacks the optimizer, history or generator state needed to resume")
        _check_config_matches(settings, saved.model, config_path, model_path)
        if len(saved.history) >= settings["epochs"]:
            written = _finish_run(run_dir, saved.model, saved.history, settings)
            if len(written) > 1:
                print(f"{run_dir} had trained {len(saved.history)} epochs but lacked figures; wrote:")
                for path in written:
                    print(f"  {path}")
            else:
                print(f"{run_dir} has already trained {len(saved.history)} epochs (--epochs {settings['epochs']}): "
                      "nothing to do; give a larger --epochs to train further")
            return EXIT_OK
        if settings["patience"] is not None and schedules.should_stop(saved.history, settings["patience"]):
            _finish_run(run_dir, saved.model, saved.history, settings)
            print(f"{run_dir} stopped early after epoch {len(saved.history)} (no improvement for --patience "
                  f"{settings['patience']} epochs since epoch {schedules.best_epoch(saved.history)}): nothing to do")
            return EXIT_OK
    train_data, val_data, test_data = _run_data(settings)
    # a resumed run keeps the schedule it started with (config.json), even when --epochs grows
    saved_schedule = _read_config(run_dir / CONFIG_FILE).get("schedule") if resume else None
    schedule = new_schedule(settings) if saved_schedule is None else schedules.make_schedule(**saved_schedule)
    data = (train_data, val_data, test_data, schedule)
    if saved is None:  # a new run, or one stopped before its first checkpoint
        labels = train_data.labels if val_data is None else np.concatenate([train_data.labels, val_data.labels])
        model = _build_model(settings, train_data.x.shape[1], labels)
        optimizer = Adam(model.parameters(), lr=settings["lr"])
        history = History()
        rng = np.random.default_rng(settings["seed"])
    else:
        model, optimizer, history, rng = saved.model, saved.optimizer, saved.history, saved.rng
        _check_fits(model, train_data)
    if resume:
        return _fit_and_finish(args, run_dir, settings, model, optimizer, history, rng, *data)
    run_dir = _create_out(args.out, settings)
    with RunLock(run_dir):
        if args.force:
            _clear_previous_run(run_dir)
        return _fit_and_finish(args, run_dir, settings, model, optimizer, history, rng, *data)


def _print_run_header(args: argparse.Namespace, run_dir: Path, settings: dict[str, Any], model: Autoencoder,
                      schedule: schedules.Schedule, done: int, train_data: datasets.Dataset,
                      val_data: datasets.Dataset | None, test_data: datasets.Dataset) -> None:
    """The three lines train prints before its first epoch: the model, the data, the training settings."""
    label = data_label(settings["data"])
    h, w = train_data.image_shape
    steps = math.ceil(train_data.x.shape[0] / settings["batch_size"])
    print(f"npvae train: {type(model).__name__} on {label} -> {run_dir}"
          + (f" (resuming after epoch {done})" if done else ""))
    print(f"  model  {_describe(model)}: {model.num_parameters():,} parameters, {model.dtype}")
    parts = [f"train {train_data.x.shape}"]
    if val_data is not None:
        parts.append(f"validation {val_data.x.shape} (--val-fraction {settings['val_fraction']:g}, "
                     f"seed {settings['seed']})")
    if not is_path(settings["data"]):
        parts.append(f"test {test_data.x.shape}")
    print(f"  data   {label} {h}x{w}: {', '.join(parts)}, {train_data.x.dtype}")
    print(f"  train  epochs {done + 1}..{settings['epochs']}, batch {settings['batch_size']} "
          f"({steps} steps per epoch), "
          f"Adam lr {schedule.lr:g} ({schedule.name} schedule), seed {settings['seed']}"
          + (f", KL warm-up {settings['kl_warmup']} epochs" if settings["kl_warmup"] else "")
          + (", dynamic binarization" if settings["binarize"] else "")
          + (f", early stopping after {settings['patience']} epochs without improvement"
             if settings["patience"] is not None else "")
          + (f", IWAE objective L_{settings['iw_samples']}" if settings["iw_samples"] > 1 else "")
          + f"; {threads.describe(args.threads)}")


def _fit_and_finish(args: argparse.Namespace, run_dir: Path, settings: dict[str, Any], model: Autoencoder,
                    optimizer: Adam, history: History, rng: np.random.Generator, train_data: datasets.Dataset,
                    val_data: datasets.Dataset | None, test_data: datasets.Dataset,
                    schedule: schedules.Schedule) -> int:
    extras = RunExtras(settings, schedule, model, optimizer, run_dir, val_data, test_data)
    model_path, csv_path, config_path = run_dir / MODEL_FILE, run_dir / HISTORY_FILE, run_dir / CONFIG_FILE
    _write_config(config_path, {**settings, "schedule": schedule.config()})
    label = data_label(settings["data"])
    done = len(history)
    _print_run_header(args, run_dir, settings, model, schedule, done, train_data, val_data, test_data)
    printer = _EpochPrinter(isinstance(model, (VAE, CVAE)), clear_progress=_progress_shown(args.progress),
                            is_vqvae=isinstance(model, VQVAE))
    printer.header()

    def save_epoch(epoch: int, history: History) -> None:
        extras.after_epoch(epoch, history)
        checkpoint.save(model, model_path, optimizer=optimizer, history=history, rng=rng)
        history.to_csv(csv_path)
        printer.epoch(epoch, history)

    def kept() -> str:
        if not model_path.exists():
            return "no epoch finished, so no checkpoint was written"
        epochs = len(checkpoint.load_checkpoint(model_path, training_state=False).history)
        return f"the last good checkpoint (epoch {epochs}) is {model_path}, kept"

    extras.start(history)
    started = time.perf_counter()
    try:
        try:
            train.fit(model, train_data.x, settings["epochs"] - done, batch_size=settings["batch_size"],
                      optimizer=optimizer, x_val=extras.x_val(), rng=rng, kl_warmup_epochs=settings["kl_warmup"],
                      binarize=settings["binarize"], history=history, iw_samples=settings["iw_samples"],
                      y_train=_labels_of(model, train_data), y_val=extras.y_val(),
                      callbacks=[save_epoch, *extras.trailing_callbacks()], progress=args.progress,
                      threads=args.threads)
        except schedules.StopTraining as stop:
            extras.stop(stop)
            print(f"npvae: {stop}")
        trained = time.perf_counter() - started
        if isinstance(model, VQVAE):
            priors = _fit_priors(model, train_data.x, test_data.x, settings, run_dir)
            figures = [run_dir / name for name in PRIOR_FILES.values()]
            figures += _write_vqvae_figures(model, priors, test_data, history, run_dir, label, settings["seed"])
        else:
            figures = _write_figures(model, test_data, history, run_dir, label, settings["seed"])
        figures += extras.finish(history, figures, shlex.join(["npvae", *args.argv]))
    except KeyboardInterrupt as interrupt:
        code = EXIT_TERMINATED if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED
        return _report_interrupt(model_path, csv_path, run_dir, settings["epochs"], code)
    except TrainingError as error:
        print(f"npvae: error: training diverged: {error}\n{kept()}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as error:  # ENOSPC, EDQUOT, EIO while saving: write_atomically left the old file
        reason = "no space left on device" if error.errno == errno.ENOSPC else (error.strerror or str(error))
        raise UserError(f"cannot write {error.filename or run_dir}: {reason}; {kept()}") from None

    print(f"trained to epoch {len(history)} in {trained:.1f} s; wrote:")
    for path in (model_path, csv_path, config_path, *figures):
        print(f"  {path}")
    print(f"evaluate: npvae eval {model_path}\n"
          f"continue: npvae train --resume {run_dir} --epochs {2 * settings['epochs']}")
    return EXIT_OK


# -- npvae plot -------------------------------------------------------------------------------------
def _plot_command(args: argparse.Namespace) -> int:
    run_dir = Path(args.run)
    if not run_dir.is_dir():
        raise UserError(f"RUN {run_dir}: no such directory")
    _check_data_dir(args.data_dir)
    with RunLock(run_dir):
        settings = _read_config(run_dir / CONFIG_FILE)
        if args.data_dir is not None:
            settings["data_dir"] = args.data_dir
        saved = _load_checkpoint(str(run_dir / MODEL_FILE), training_state=False)
        if saved.history is None:
            raise UserError(f"{run_dir / MODEL_FILE} holds no history to draw")
        _check_config_matches(settings, saved.model, run_dir / CONFIG_FILE, run_dir / MODEL_FILE)
        test_data = _run_data(settings)[2]
        _check_fits(saved.model, test_data)
        written = [saved.history.to_csv(run_dir / HISTORY_FILE)]
        if isinstance(saved.model, VQVAE):
            missing = [name for name in PRIOR_FILES.values() if not (run_dir / name).is_file()]
            if missing:
                raise UserError(f"{run_dir} lacks {missing}: the VQ-VAE's samples need the priors npvae train fits")
            priors = {name: _load_checkpoint(str(run_dir / file_name), training_state=False).model
                      for name, file_name in PRIOR_FILES.items()}
            written += _write_vqvae_figures(saved.model, priors, test_data, saved.history, run_dir,
                                            data_label(settings["data"]), settings["seed"])
        else:
            written += _write_figures(saved.model, test_data, saved.history, run_dir, data_label(settings["data"]),
                                      settings["seed"])
    print(f"npvae plot: {type(saved.model).__name__} of {run_dir}, {len(saved.history)} epochs; wrote:")
    for path in written:
        print(f"  {path}")
    return EXIT_OK


# -- npvae eval -------------------------------------------------------------------------------------
def _eval_settings(args: argparse.Namespace, checkpoint_path: Path) -> tuple[str, bool, str | None]:
    """(data set, binarize, data_dir): the options given, else the training run's config.json
    beside the checkpoint (binarize defaults to off without one; the data set must then be given;
    its data_dir is used only for the data set it was recorded with)."""
    config_path = checkpoint_path.parent / CONFIG_FILE
    try:
        config = _read_config(config_path)
    except (UserError, OSError, UnicodeDecodeError):  # missing, unreadable or not a training config
        if args.data is None:
            raise UserError(f"give --data: there is no readable {config_path} beside the checkpoint "
                            "to say which data it was trained on") from None
        config = {"data": args.data, "binarize": False, "data_dir": None}
    data = config["data"] if args.data is None else args.data
    binarize = bool(config["binarize"]) if args.binarize is None else args.binarize
    data_dir = args.data_dir
    if data_dir is None and data == config["data"] and isinstance(config["data_dir"], str):
        data_dir = config["data_dir"]
    return data, binarize, data_dir


def _check_iwae_cost(model: VAE | CVAE, n: int, k: int) -> None:
    """Refuse an IWAE estimate that cannot finish in a day, with the estimate: n * k decoder rows
    at the rate of a timed decode of PROBE_ROWS codes (the memory is bounded whatever k:
    log_likelihood decodes 1024 rows at a time)."""
    rows = n * k
    if rows <= PROBE_ROWS:
        return
    z = np.zeros((PROBE_ROWS, model.latent_dim), dtype=model.dtype)
    started = time.perf_counter()
    if isinstance(model, CVAE):
        model.decode(z, np.zeros(PROBE_ROWS, dtype=np.int64))
    else:
        model.decode(z)
    rate = PROBE_ROWS / max(time.perf_counter() - started, 1e-9)
    seconds = rows / rate
    if seconds > MAX_EVAL_SECONDS:
        raise UserError(f"--iw-samples {k} on {n:,} images is {rows:.3g} decoder passes, about "
                        f"{seconds / 86400:,.1f} days at the {rate:,.0f} rows per second measured here: "
                        "choose a smaller --iw-samples")


def _load_split(checkpoint_path: Path, data_name: str, split: str, data_dir: str | None,
                model: Autoencoder) -> datasets.Dataset:
    """A split of the data to evaluate or encode a checkpoint on. Own data are split as in training,
    from the config.json beside the checkpoint (seed, --val-fraction, --scale, --resize); their
    "test" split is the held-out validation part."""
    if not is_path(data_name):
        return _load_data(data_name, split, data_dir, model.dtype)
    try:
        config = _read_config(checkpoint_path.parent / CONFIG_FILE)
    except (UserError, OSError, UnicodeDecodeError):  # no training config: the defaults of a new run
        config = {}
    settings = {**COMMON_DEFAULTS, **DATA_DEFAULTS["PATH"], **config, "data": data_name, "output": model.output}
    train_data, _, test_data = data_splits(settings, model.dtype)
    return train_data if split == "train" else test_data


def _run_data(settings: dict[str, Any]) -> tuple[datasets.Dataset, datasets.Dataset | None, datasets.Dataset]:
    """(train, validation or None, test) of a run (see ``data_splits``), download errors said in
    the command line's words."""
    try:
        return data_splits(settings, settings["dtype"])
    except datasets.DownloadError as error:
        raise _download_error(error) from None


def _eval_command(args: argparse.Namespace) -> int:
    path = Path(args.checkpoint)
    saved = _load_checkpoint(args.checkpoint, training_state=False)
    model = saved.model
    data_name, binarize, data_dir = _eval_settings(args, path)
    _check_data_dir(args.data_dir)
    data = _load_split(path, data_name, args.split, data_dir, model)
    _check_fits(model, data)
    if isinstance(model, (VAE, CVAE)):
        _check_iwae_cost(model, data.x.shape[0], args.iw_samples)
    rng = np.random.default_rng(args.seed)
    x = data.x
    if binarize:  # one draw, as fit(binarize=True) draws each batch
        x = (rng.random(x.shape, dtype=model.dtype) < x).astype(model.dtype)
    labels = _labels_of(model, data)
    started = time.perf_counter()
    try:
        with threads.limited(args.threads):
            terms = train.evaluate(model, x, rng=rng, y=labels)
            if isinstance(model, VAE):
                log_likelihood = float(model.log_likelihood(x, k=args.iw_samples, rng=rng,
                                                            threads=args.threads).mean())
            elif isinstance(model, CVAE):
                log_likelihood = float(model.log_likelihood(x, labels, k=args.iw_samples, rng=rng).mean())
    except ValueError:  # the data were checked (pixels in [0, 1]); what overflows is the model
        largest = max(float(np.abs(value).max()) for value in model.state_dict().values())
        raise UserError(f"{path}: the model's loss overflows {model.dtype} on --data {data_name} (pixels in [0, 1]): "
                        f"the checkpoint's weights are too large (largest |parameter| {largest:.3g}); "
                        "it is not usable") from None
    h, w = data.image_shape
    epochs = "" if saved.history is None else f", {len(saved.history)} epoch{'s' * (len(saved.history) != 1)}"
    print(f"npvae eval: {type(model).__name__} from {path}{epochs}")
    binarized = ", binarized (one draw)" if binarize else ""
    print(f"  data {data.name} {args.split}: {x.shape[0]} images of {h}x{w}{binarized}; seed {args.seed}; "
          f"{threads.describe(args.threads)}")
    print(f"{'':<34}{'nats per example':>18}")
    if isinstance(model, (VAE, CVAE)):
        rows = [("negative ELBO (1 z per example)", terms["recon"] + terms["kl"]),
                ("  reconstruction", terms["recon"]),
                ("  KL(q(z|x) || N(0, I))", terms["kl"])]
        if model.beta != 1.0:
            rows.append((f"training loss, recon + {model.beta:g} KL", terms["loss"]))
        given = "x|y" if isinstance(model, CVAE) else "x"
        rows.append((f"IWAE -log p({given}) estimate, K={args.iw_samples}", -log_likelihood))
    elif isinstance(model, VQVAE):
        rows = [("loss, recon + VQ terms", terms["loss"]),
                ("  reconstruction", terms["recon"]),
                (f"  VQ terms ({'codebook + ' if model.codebook_kind == 'loss' else ''}{model.beta:g} commitment)",
                 terms["kl"])]
        codes = model.encode(x)
        for name, file_name in PRIOR_FILES.items():
            if (path.parent / file_name).is_file():
                rows.append((f"-log p(codes), {name} prior", _load_checkpoint(str(path.parent / file_name), training_state=False).model.nll(codes)))
    else:
        rows = [("reconstruction error (NLL)", terms["recon"])]
    for label, value in rows:
        print(f"{label:<34}{value:>18.4f}")
    if isinstance(model, VQVAE):
        print(f"code perplexity {terms['perplexity']:.2f} of {model.num_codes}, "
              f"{terms['codes_used']:.1%} of the codes used")
    print(f"({time.perf_counter() - started:.1f} s)")
    return EXIT_OK


# -- npvae sample -----------------------------------------------------------------------------------
def _sample_command(args: argparse.Namespace) -> int:
    from . import plots

    model = _load_checkpoint(args.checkpoint, training_state=False).model
    shape = _image_shape_for(model.input_dim)
    default = Path(args.checkpoint).parent / f"samples-n{args.n}-seed{args.seed}.png"
    out = default if args.out is None else Path(args.out)
    if out.suffix.lower() != ".png":
        raise UserError(f"--out {out}: expected a .png file name")
    if out.exists() and not args.force:
        raise UserError(f"{out} exists: add --force to replace it, or give another --out")
    # the model on n rows, and the grid figure (RGBA floats per pixel)
    needed = (memory_bytes(model.input_dim, model.hidden_dims, model.latent_dim, rows=args.n, dtype=model.dtype)
              + 40 * args.n * model.input_dim)
    _refuse_beyond_memory(needed, f"--n {args.n} samples of {shape[0]}x{shape[1]}", "choose a smaller --n")
    if isinstance(model, CVAE):
        return _sample_cvae(model, args, shape, out)
    if args.label is not None:
        raise UserError(f"--label applies to a CVAE only; {args.checkpoint} holds a {type(model).__name__}")
    name = type(model).__name__
    ncols = min(args.n, max(8, math.ceil(math.sqrt(args.n))))
    if isinstance(model, VQVAE):
        prior_path = Path(args.checkpoint).parent / PRIOR_FILES[args.prior]
        if not prior_path.is_file():
            raise UserError(f"{prior_path} not found: a VQ-VAE samples through a prior fitted by npvae train")
        prior = _load_checkpoint(str(prior_path), training_state=False).model
        images = model.sample(args.n, np.random.default_rng(args.seed), prior=prior)
        title = f"{name}: {args.n} decodings of codes from the {args.prior} prior"
    else:
        images = model.sample(args.n, np.random.default_rng(args.seed))
        note = "" if isinstance(model, VAE) else " (AE codes are not N(0, I))"
        title = f"{name}: {args.n} decodings of z ~ N(0, I){note}"
    path = plots.save_image_grid(images, shape, out, title=title, ncols=ncols)
    print(f"wrote {path} ({args.n} samples of {shape[0]}x{shape[1]}, seed {args.seed})")
    return EXIT_OK


def _sample_cvae(model: CVAE, args: argparse.Namespace, shape: tuple[int, int], out: Path) -> int:
    """``npvae sample`` for a CVAE: --n images of class --label, else a grid with a row per class."""
    from . import plots

    rng = np.random.default_rng(args.seed)
    if args.label is None:
        per_class = max(1, args.n // model.num_classes)
        path = plots.save_image_grid(_class_grid(model, per_class, rng), shape, out, ncols=per_class,
                                     title=f"CVAE: row c decodes the same {per_class} codes z ~ N(0, I) with label c")
        print(f"wrote {path} ({model.num_classes} classes x {per_class} samples of {shape[0]}x{shape[1]}, "
              f"seed {args.seed})")
        return EXIT_OK
    if args.label >= model.num_classes:
        raise UserError(f"--label {args.label}: this CVAE knows the classes 0 .. {model.num_classes - 1}")
    images = model.sample(args.n, rng, labels=args.label)
    ncols = min(args.n, max(8, math.ceil(math.sqrt(args.n))))
    path = plots.save_image_grid(images, shape, out, ncols=ncols,
                                 title=f"CVAE: {args.n} decodings of z ~ N(0, I) with label {args.label}")
    print(f"wrote {path} ({args.n} samples of class {args.label}, {shape[0]}x{shape[1]}, seed {args.seed})")
    return EXIT_OK


# -- npvae encode -----------------------------------------------------------------------------------
def _encode_command(args: argparse.Namespace) -> int:
    path = Path(args.checkpoint)
    model = _load_checkpoint(args.checkpoint, training_state=False).model
    out = Path(args.out)
    if out.suffix.lower() != ".npz":
        raise UserError(f"--out {out}: expected a .npz file name")
    data_name, _, data_dir = _eval_settings(args, path)
    _check_data_dir(args.data_dir)
    data = _load_split(path, data_name, args.split, data_dir, model)
    _check_fits(model, data)
    if isinstance(model, VAE):
        mu, logvar = model.encode(data.x)
        arrays = {"mu": mu, "logvar": logvar}
    elif isinstance(model, CVAE):
        mu, logvar = model.encode(data.x, _labels_of(model, data))
        arrays = {"mu": mu, "logvar": logvar}
    else:
        arrays = {"z": model.encode(data.x)}
    arrays["labels"] = data.labels
    write_atomically(out, lambda file: np.savez(file, **arrays))
    shapes = ", ".join(f"{name} {array.shape}" for name, array in arrays.items())
    print(f"wrote {out}: {shapes} ({data_label(data_name)} {args.split}, {type(model).__name__} from {path})")
    return EXIT_OK


# -- entry point ------------------------------------------------------------------------------------
def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``npvae`` command line with ``argv`` (default ``sys.argv[1:]``); return the exit status.

    Invalid arguments make argparse exit with status 2 (``SystemExit``). User errors (missing
    or corrupt files, data that does not fit, a refused directory) print ``npvae: error: ...``
    on stderr and return 1. SIGTERM is handled as Ctrl-C while the command runs (exit 143).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # for report.md
    handler: Callable[[argparse.Namespace], int] = args.handler
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        return handler(args)
    except KeyboardInterrupt as interrupt:
        terminated = isinstance(interrupt, Terminated)
        print(f"\nnpvae: {'terminated (SIGTERM)' if terminated else 'interrupted'}", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    except (UserError, OSError, ValueError, TypeError) as error:  # CheckpointError is a ValueError
        print(f"npvae: error: {shorten(str(error), 2000)}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
