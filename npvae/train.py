"""The training loop: minibatch gradient descent on the negative ELBO (or an AE's error).

One epoch of ``fit``:

    perm = rng.permutation(n)                             a new order of the training set
    for each minibatch B of rows perm[i*b : (i+1)*b]      (the last, partial batch is kept)
        x = bernoulli(x_B)            if binarize         dynamic binarization, drawn from rng
        L = mean over B of recon + w_t * kl               model._loss_and_grads, eps ~ rng
        check L and dL/dtheta are finite                  else TrainingError, no step taken
        theta = optimizer.step(theta, dL/dtheta)

with the KL weight w_t of KL warm-up ("annealing", Bowman et al. 2016, sec. 3.1; Sonderby et
al. 2016, sec. 2.3) rising linearly with the global step t = 1, 2, ... from 0 to beta over
``kl_warmup_epochs`` epochs:

    w_t = beta * min(1, t / (kl_warmup_epochs * batches_per_epoch))       (w_t = beta if no warm-up)

A single ``numpy.random.Generator`` drives every random draw (the order, the binarization, the
VAE's noise, the validation noise), so a run is a function of the seed alone, and saving the
generator's state with the model and the optimizer (``npvae.checkpoint.save``) lets a run be
resumed to the bit.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TextIO

import numpy as np

from ._files import write_atomically
from .models.base import Autoencoder
from .models.cvae import CVAE
from .nn import Parameter, _all_finite
from .optim import Adam, Optimizer

__all__ = ["History", "TrainingError", "fit", "evaluate"]

Callback = Callable[[int, "History"], Any]

_EVAL_BATCH_SIZE = 1000
_TRAIN_FIELDS = ("loss", "recon", "kl", "seconds", "kl_weight")
_VAL_FIELDS = ("val_loss", "val_recon", "val_kl")
_CSV_COLUMNS = ("epoch", "loss", "recon", "kl", "val_loss", "val_recon", "val_kl", "seconds", "kl_weight")


class TrainingError(RuntimeError):
    """Training met a non-finite value: a step's loss or gradient (the step was not taken), or,
    after an epoch, the parameters or the validation loss (the epoch was not recorded).

    Attributes
    ----------
    epoch, batch : int
        1-based epoch (counting the epochs of a resumed history) and batch within it; batch is
        0 for a failure found after the epoch's batches.
    loss : float
        The batch loss returned by the model (possibly finite when only the gradient is not);
        after an epoch, the last batch's loss or the validation loss.
    """

    def __init__(self, message: str, *, epoch: int, batch: int, loss: float) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.batch = batch
        self.loss = loss


def _float_list(name: str, values: Any) -> list[float]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise TypeError(f"{name}: expected a sequence of numbers, got {type(values).__name__}")
    result = []
    for index, value in enumerate(values):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name}[{index}]: expected a real number, got {type(value).__name__}")
        result.append(float(value))
    return result


@dataclass
class History:
    """Per-epoch training record: element ``i`` of each list belongs to epoch ``i + 1``.

    Attributes
    ----------
    loss, recon, kl : list of float
        Training metrics: example-weighted means, over the epoch's batches, of the values each
        batch had when it was used (so they mix parameter values from the whole epoch). ``loss``
        is ``recon + beta * kl``, the model's full objective, even while a KL warm-up weights
        the KL term less in the gradient. For an AE, ``kl`` is 0 and ``loss = recon``.
    val_loss, val_recon, val_kl : list of float
        The same on the validation set after the epoch (one z per example for a VAE); empty
        when training had no validation set.
    seconds : list of float
        Wall-clock time of each epoch, validation included.
    kl_weight : list of float
        KL weight of the epoch's last step (0 for an AE).

    ``len(history)`` is the number of epochs recorded.
    """

    loss: list[float] = field(default_factory=list)
    recon: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_recon: list[float] = field(default_factory=list)
    val_kl: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    kl_weight: list[float] = field(default_factory=list)

    FIELDS: ClassVar[tuple[str, ...]] = ("loss", "recon", "kl", "val_loss", "val_recon", "val_kl", "seconds", "kl_weight")

    def __post_init__(self) -> None:
        for name in self.FIELDS:
            setattr(self, name, _float_list(name, getattr(self, name)))
        self._check_lengths()

    def _check_lengths(self) -> None:
        """Every training list has one entry per epoch; the validation lists all have that many or none."""
        epochs = len(self.loss)
        for name in _TRAIN_FIELDS:
            if len(getattr(self, name)) != epochs:
                raise ValueError(
                    f"{name}: expected {epochs} values (one per epoch, as loss), got {len(getattr(self, name))}"
                )
        for name in _VAL_FIELDS:
            if len(getattr(self, name)) not in (0, epochs) or len(getattr(self, name)) != len(self.val_loss):
                raise ValueError(
                    f"{name}: expected {epochs} values (one per epoch) or none, for all of "
                    f"{_VAL_FIELDS} alike; got lengths {[len(getattr(self, v)) for v in _VAL_FIELDS]}"
                )

    def __len__(self) -> int:
        return len(self.loss)

    @property
    def has_validation(self) -> bool:
        return bool(self.val_loss)

    def as_dict(self) -> dict[str, list[float]]:
        """Every field as a fresh list, keyed by field name (JSON-ready)."""
        return {name: list(getattr(self, name)) for name in self.FIELDS}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "History":
        """Build a History from ``as_dict()`` output; the validation fields may be left out.

        Raises
        ------
        ValueError
            Unknown or missing keys, or lists of inconsistent lengths.
        TypeError
            ``d`` is not a mapping, or a value is not a sequence of real numbers.
        """
        if not isinstance(d, Mapping):
            raise TypeError(f"d: expected a mapping of field name to list, got {type(d).__name__}")
        unexpected = sorted(set(d) - set(cls.FIELDS))
        missing = sorted(set(_TRAIN_FIELDS) - set(d))
        if unexpected or missing:
            raise ValueError(f"d: expected the keys {list(cls.FIELDS)}; missing {missing}, unexpected {unexpected}")
        return cls(**{name: _float_list(f"d[{name!r}]", values) for name, values in d.items()})

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write one row per epoch, atomically, and return the path.

        Columns: ``epoch,loss,recon,kl,val_loss,val_recon,val_kl,seconds,kl_weight``, epoch
        from 1, floats written with ``repr`` (they read back exactly); validation cells are
        empty when there was no validation set.
        """
        path = _check_path(path)
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(_CSV_COLUMNS)
        for index in range(len(self)):
            row = [str(index + 1)]
            for name in _CSV_COLUMNS[1:]:
                values = getattr(self, name)
                row.append(repr(values[index]) if values else "")
            writer.writerow(row)
        data = text.getvalue().encode("utf-8")
        write_atomically(path, lambda file: file.write(data))
        return path


def _check_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected str or os.PathLike, got {type(path).__name__}")
    if os.fspath(path) == "":
        raise ValueError("path: expected a file name, got ''")
    return Path(path)


# -- argument checks -------------------------------------------------------------------------
def _int_at_least(name: str, value: Any, low: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
        wanted = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ValueError(f"{name}: expected {wanted}, got {value!r}")
    return int(value)


def _check_model(model: Any) -> Autoencoder:
    if not isinstance(model, Autoencoder):
        raise TypeError(f"model: expected an npvae AE, VAE or CVAE, got {type(model).__name__}")
    return model


def _check_optimizer(optimizer: Any, parameters: list[Parameter]) -> Optimizer:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer: expected an npvae optimizer (Adam, SGD), got {type(optimizer).__name__}")
    same = len(optimizer.params) == len(parameters) and all(
        own is given for own, given in zip(parameters, optimizer.params)
    )
    if not same:
        raise ValueError(
            "optimizer: expected an optimizer over this model's parameters "
            "(e.g. Adam(model.parameters())), got one over other parameters"
        )
    return optimizer


def _check_bool(name: str, value: Any, allow_none: bool = False) -> bool | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, (bool, np.bool_)):
        wanted = "True, False or None" if allow_none else "True or False"
        raise TypeError(f"{name}: expected {wanted}, got {value!r}")
    return bool(value)


def _labels_for(model: Autoencoder, name: str, y: Any, rows: int) -> np.ndarray | None:
    """A CVAE's labels, validated; None for the other models, which take none."""
    if isinstance(model, CVAE):
        return model._as_labels(y, rows, name=name)
    if y is not None:
        raise ValueError(f"{name}: only a CVAE takes class labels; this is a {type(model).__name__}")
    return None


def _check_rng(rng: Any) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy.random.Generator, got {type(rng).__name__}")
    return rng


# -- evaluation --------------------------------------------------------------------------------
def _evaluate(model: Autoencoder, x: np.ndarray, rng: np.random.Generator, batch_size: int,
              y: np.ndarray | None = None) -> dict[str, float]:
    """Mean loss terms over x (with its labels y for a CVAE); may hold inf or NaN where the model
    overflows (callers check)."""
    totals = {"loss": 0.0, "recon": 0.0, "kl": 0.0}
    # an overflow shows up as a non-finite total, which the callers report as an error
    # naming the data: NumPy's overflow warnings would only repeat it, less clearly
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for start in range(0, x.shape[0], batch_size):
            rows = slice(start, start + batch_size)
            terms = model._terms(x[rows], None, rng) if y is None else model._terms(x[rows], y[rows], None, rng)
            for name in totals:
                totals[name] += float(getattr(terms, name).sum(dtype=np.float64))
    return {name: total / x.shape[0] for name, total in totals.items()}


def _max_abs(x: np.ndarray) -> float:
    return float(np.abs(x).max(initial=0.0))


def evaluate(
    model: Autoencoder, x: Any, rng: np.random.Generator | None = None, batch_size: int = _EVAL_BATCH_SIZE,
    y: Any = None,
) -> dict[str, float]:
    """Mean per-example loss terms of ``model`` on ``x``, in nats.

    Parameters
    ----------
    model : AE, VAE or CVAE
    x : array (n, input_dim)
        Data, validated as by the model's own methods.
    rng : numpy.random.Generator or None
        Source of the VAE's noise, one z per example; None uses ``np.random.default_rng(0)``
        so that the same model and data always give the same numbers. An AE ignores it.
    batch_size : int
        Rows per forward pass (bounds memory; the result does not depend on it for an AE).
    y : integer array (n,) or None
        The class labels of ``x``: required by a CVAE, refused by the other models.

    Returns
    -------
    dict
        ``{"loss", "recon", "kl"}``: means over examples of recon + beta * kl, recon, kl.

    Raises
    ------
    ValueError
        Invalid ``x`` (as the model's methods), or the model's loss on ``x`` is not finite:
        its computation overflows the model's dtype, e.g. for a Gaussian decoder on data of a
        far larger scale than it was built for.
    TypeError
        A model, ``x`` or ``rng`` of the wrong kind.
    """
    model = _check_model(model)
    x = model._as_batch(x)
    rng = np.random.default_rng(0) if rng is None else _check_rng(rng)
    batch_size = _int_at_least("batch_size", batch_size, 1)
    y = _labels_for(model, "y", y, x.shape[0])
    metrics = _evaluate(model, x, rng, batch_size, y)
    if not all(math.isfinite(value) for value in metrics.values()):
        raise ValueError(
            f"x: the model's loss on these data is not finite ({metrics}): its computation overflows "
            f"{model.dtype} (largest |x| = {_max_abs(x):.3g}; rescale the data)"
        )
    return metrics


# -- progress display --------------------------------------------------------------------------
class _Progress:
    """A one-line status on a text stream, rewritten in place with \\r (at most ~10 times a second)."""

    _INTERVAL_SECONDS = 0.1

    def __init__(self, stream: TextIO, last_epoch: int, batches_per_epoch: int) -> None:
        self.stream = stream
        self.last_epoch = last_epoch
        self.batches_per_epoch = batches_per_epoch
        self.width = 0
        self.shown_at = -math.inf

    def _show(self, text: str) -> None:
        self.stream.write("\r" + text.ljust(self.width))
        self.stream.flush()
        self.width = len(text)
        self.shown_at = time.perf_counter()

    def batch(self, epoch: int, batch: int, loss: float) -> None:
        if time.perf_counter() - self.shown_at >= self._INTERVAL_SECONDS:
            self._show(f"epoch {epoch}/{self.last_epoch}  batch {batch}/{self.batches_per_epoch}  loss {loss:.4g}")

    def epoch(self, epoch: int, history: History) -> None:
        text = f"epoch {epoch}/{self.last_epoch}  loss {history.loss[-1]:.4g}"
        if history.has_validation:
            text += f"  val_loss {history.val_loss[-1]:.4g}"
        self._show(text + f"  {history.seconds[-1]:.2f} s")

    def close(self) -> None:
        if self.width:
            self.stream.write("\n")
            self.stream.flush()


def _progress_stream(progress: bool | None) -> TextIO | None:
    stream = sys.stderr
    if stream is None or progress is False:
        return None
    if progress is None:
        isatty = getattr(stream, "isatty", None)
        return stream if isatty is not None and isatty() else None
    return stream


# -- the loop ------------------------------------------------------------------------------------
def _flat_buffers(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """The one flat buffer that ``arrays`` are views of (a flattened model), else the arrays."""
    flat = arrays[0].base
    if flat is not None and flat.ndim == 1 and flat.size == sum(array.size for array in arrays):
        return [flat]
    return arrays


def _finite_arrays(arrays: list[np.ndarray]) -> bool:
    return all(_all_finite(array) for array in arrays)


def _after_failure(values: list[np.ndarray], first_step: bool, x_train: np.ndarray) -> str:
    """The end of a TrainingError message: the state of the parameters, and what to try."""
    if not _finite_arrays(values):
        return "but the parameters are already non-finite: an earlier update overflowed them"
    if first_step:
        return (f"the parameters keep their last finite values (this was the first step: check the "
                f"scale of x_train, largest |value| = {_max_abs(x_train):.3g})")
    return "the parameters keep their last finite values (a lower learning rate may help)"


def _kl_weight(beta: float, step: int, warmup_steps: int) -> float:
    """w_t = beta * min(1, t / warmup_steps); beta when there is no warm-up."""
    if warmup_steps == 0:
        return beta
    return beta * min(1.0, step / warmup_steps)


def fit(
    model: Autoencoder,
    x_train: Any,
    epochs: int,
    batch_size: int = 128,
    optimizer: Optimizer | None = None,
    x_val: Any = None,
    seed: int = 0,
    rng: np.random.Generator | None = None,
    kl_warmup_epochs: int = 0,
    binarize: bool = False,
    history: History | None = None,
    callbacks: Iterable[Callback] = (),
    progress: bool | None = None,
    iw_samples: int = 1,
    y_train: Any = None,
    y_val: Any = None,
) -> History:
    """Train ``model`` in place for ``epochs`` epochs of minibatch descent; return the history.

    Parameters
    ----------
    model : AE, VAE or CVAE
        Trained in place.
    x_train : array (n, input_dim)
        Training data, validated once (float, finite, in [0, 1] for a Bernoulli decoder) and
        converted to the model's dtype.
    epochs : int
        Epochs to run now (>= 0; 0 returns the history untouched, e.g. when a resumed run is
        already complete). Epoch numbers continue those of ``history``.
    batch_size : int
        Rows per step; each epoch has ceil(n / batch_size) steps, the last one possibly smaller.
    optimizer : Adam, SGD or None
        Must be built over ``model.parameters()``; None makes ``Adam(model.parameters(), lr=1e-3)``.
        Pass one explicitly to keep (and checkpoint) its state.
    x_val : array (m, input_dim) or None
        Evaluated after every epoch, as given (never binarized), into the ``val_*`` fields.
    seed : int
        Seed of ``np.random.default_rng(seed)``, used when ``rng`` is None.
    rng : numpy.random.Generator or None
        The one source of randomness, used in this order: each epoch a permutation of the
        training rows; each step the binarization draws (if ``binarize``) and then the VAE's
        noise eps; after the epoch the validation noise. Pass the generator restored from a
        checkpoint to resume a run exactly. It is advanced in place.
    kl_warmup_epochs : int
        Epochs over which the VAE's KL weight rises linearly, per step, from 0 to beta (0: no
        warm-up). The step count continues those of ``history``. Ignored by an AE.
    binarize : bool
        Dynamic binarization (Salakhutdinov & Murray 2008): each time a batch is used, each
        pixel becomes 1 with probability equal to its value, ``x = (u < x)``, u ~ U[0, 1) from
        ``rng``. The data must be in [0, 1].
    history : History or None
        A history to append to (resuming); a new one when None. Its validation fields must
        be filled if and only if ``x_val`` is given, so that every epoch has the same columns.
    callbacks : iterable of callables
        Each is called as ``callback(epoch, history)`` after every epoch (epoch 1-based,
        counting the resumed ones), e.g. to save a checkpoint.
    progress : bool or None
        Show a one-line progress display on stderr: None shows it only when stderr is a
        terminal. It is the only output of training.
    iw_samples : int
        k of the importance-weighted objective (Burda et al. 2016): each step minimises -L_k
        with k codes per example (``VAE.iw_loss_and_grads``; eps drawn as (batch, k, latent)).
        1 (default) is the VAE's usual objective, exactly. k >= 2 needs a VAE with beta = 1 and
        no KL warm-up; ``recon`` then records the weighted reconstruction sum_i w~_i recon_i and
        ``kl`` the rest of -L_k, so that ``loss`` is -L_k. Validation stays one z per example.
    y_train, y_val : integer arrays (n,), (m,) or None
        Class labels of ``x_train`` and ``x_val`` (0 .. num_classes - 1): required by a CVAE
        (each batch is trained with its rows' labels), refused by the other models.

    Returns
    -------
    History
        ``history`` (or the new one) with one entry per epoch added; ``loss`` is recon +
        beta * kl at full beta whatever the warm-up, see :class:`History`.

    Raises
    ------
    TrainingError
        A step gave a non-finite loss or gradient. The step is not taken, so the parameters
        (and the optimizer) keep the values of the last finite step; the epoch is not recorded.
        Also raised, with ``batch = 0``, before an epoch is recorded (and before the callbacks
        run) when the parameters are no longer finite after it (an update overflowed them: they
        are then unusable) or the loss on ``x_val`` is not finite (the parameters are finite;
        the data overflow the model). Callbacks therefore only ever see a finite model.
    ValueError, TypeError
        Invalid arguments, named in the message.

    Notes
    -----
    KeyboardInterrupt propagates. It can only land between whole NumPy operations, so the
    parameters are those of some completed step or one whose update is in progress; the
    history then holds the completed epochs only, while the parameters include the steps
    already taken in the interrupted epoch.
    """
    model = _check_model(model)
    epochs = _int_at_least("epochs", epochs, 0)
    batch_size = _int_at_least("batch_size", batch_size, 1)
    seed = _int_at_least("seed", seed, 0)
    kl_warmup_epochs = _int_at_least("kl_warmup_epochs", kl_warmup_epochs, 0)
    binarize = _check_bool("binarize", binarize)
    progress = _check_bool("progress", progress, allow_none=True)
    iw_samples = _int_at_least("iw_samples", iw_samples, 1)
    if iw_samples > 1:
        if not hasattr(model, "iw_loss_and_grads"):
            raise ValueError(f"iw_samples: the importance-weighted objective needs a VAE, got {type(model).__name__}")
        if model.beta != 1.0 or kl_warmup_epochs:
            raise ValueError(f"iw_samples: k = {iw_samples} needs beta = 1 and kl_warmup_epochs = 0 (the bound "
                             f"L_k has no KL weight), got beta {model.beta!r}, kl_warmup_epochs {kl_warmup_epochs}")
    x_train = model._as_batch(x_train, name="x_train")
    if binarize and (x_train.min() < 0 or x_train.max() > 1):
        raise ValueError(
            f"x_train: binarize=True needs values in [0, 1] (probabilities), got values in "
            f"[{x_train.min():g}, {x_train.max():g}]"
        )
    y_train = _labels_for(model, "y_train", y_train, x_train.shape[0])
    if x_val is not None:
        x_val = model._as_batch(x_val, name="x_val")
        y_val = _labels_for(model, "y_val", y_val, x_val.shape[0])
    elif y_val is not None:
        raise ValueError("y_val: labels given without x_val")
    parameters = model.parameters()
    optimizer = Adam(parameters, lr=1e-3) if optimizer is None else _check_optimizer(optimizer, parameters)
    rng = np.random.default_rng(seed) if rng is None else _check_rng(rng)
    if history is None:
        history = History()
    elif not isinstance(history, History):
        raise TypeError(f"history: expected a History or None, got {type(history).__name__}")
    else:
        history._check_lengths()
        if len(history) and history.has_validation != (x_val is not None):
            state = "has" if history.has_validation else "has no"
            raise ValueError(
                f"x_val: the history {state} validation metrics, so x_val must "
                f"{'be given' if history.has_validation else 'be None'} to continue it"
            )
    if callable(callbacks) or not isinstance(callbacks, Iterable):
        raise TypeError(f"callbacks: expected an iterable of callables, e.g. [callback], got {type(callbacks).__name__}")
    callbacks = tuple(callbacks)
    for index, callback in enumerate(callbacks):
        if not callable(callback):
            raise TypeError(f"callbacks[{index}]: expected a callable, got {type(callback).__name__}")
    if epochs == 0:
        return history

    n = x_train.shape[0]
    batches_per_epoch = math.ceil(n / batch_size)
    beta = float(getattr(model, "beta", 0.0))
    warmup_steps = kl_warmup_epochs * batches_per_epoch
    gradients = _flat_buffers([parameter.grad for parameter in parameters])
    values = _flat_buffers([parameter.value for parameter in parameters])
    first_epoch = len(history) + 1
    last_epoch = len(history) + epochs
    stream = _progress_stream(progress)
    display = _Progress(stream, last_epoch, batches_per_epoch) if stream is not None else None
    try:
        for epoch in range(first_epoch, last_epoch + 1):
            started = time.perf_counter()
            order = rng.permutation(n)
            recon_sum = kl_sum = 0.0
            kl_weight = 0.0
            # a step that overflows is reported by the TrainingError below, naming the epoch and
            # batch; NumPy's overflow warnings from inside the model would only repeat it
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                for batch in range(1, batches_per_epoch + 1):
                    picked = order[(batch - 1) * batch_size : batch * batch_size]
                    x_batch = x_train[picked]
                    if binarize:
                        x_batch = (rng.random(x_batch.shape, dtype=model.dtype) < x_batch).astype(model.dtype)
                    step = (epoch - 1) * batches_per_epoch + batch
                    kl_weight = _kl_weight(beta, step, warmup_steps)
                    if iw_samples > 1:
                        loss = model._iw_loss_and_grads(x_batch, None, rng, iw_samples)
                    elif y_train is not None:
                        loss = model._loss_and_grads(x_batch, y_train[picked], None, rng, kl_weight)
                    else:
                        loss = model._loss_and_grads(x_batch, None, rng, kl_weight)
                    if not (math.isfinite(loss) and _finite_arrays(gradients)):
                        what = "loss" if not math.isfinite(loss) else "gradient"
                        first_step = epoch == first_epoch and batch == 1
                        raise TrainingError(
                            f"non-finite {what} at epoch {epoch}, batch {batch} of {batches_per_epoch} "
                            f"(loss {loss!r}); the step was not taken, "
                            + _after_failure(values, first_step, x_train),
                            epoch=epoch, batch=batch, loss=loss,
                        )
                    optimizer.step()
                    rows = x_batch.shape[0]
                    recon_sum += model.last_recon * rows
                    kl_sum += model.last_kl * rows
                    if display is not None:
                        display.batch(epoch, batch, loss)
            # one pass per epoch: an update can overflow the parameters even from finite gradients
            # (learning rate times gradient beyond the float range); callbacks never see that model
            if not _finite_arrays(values):
                raise TrainingError(
                    f"non-finite parameters after epoch {epoch}: an update overflowed {model.dtype} "
                    f"(learning rate times gradient too large); the epoch is not recorded and the "
                    f"parameters are unusable (reload the last checkpoint, lower the learning rate)",
                    epoch=epoch, batch=0, loss=loss,
                )
            if x_val is not None:
                metrics = _evaluate(model, x_val, rng, _EVAL_BATCH_SIZE, y_val)
                if not all(math.isfinite(value) for value in metrics.values()):
                    raise TrainingError(
                        f"non-finite validation loss after epoch {epoch} ({metrics}): the model's "
                        f"computation on x_val overflows {model.dtype} (largest |x_val| = "
                        f"{_max_abs(x_val):.3g}); the epoch is not recorded, the parameters are finite",
                        epoch=epoch, batch=0, loss=metrics["loss"],
                    )
            recon, kl = recon_sum / n, kl_sum / n
            history.loss.append(recon + beta * kl)
            history.recon.append(recon)
            history.kl.append(kl)
            history.kl_weight.append(kl_weight)
            if x_val is not None:
                history.val_loss.append(metrics["loss"])
                history.val_recon.append(metrics["recon"])
                history.val_kl.append(metrics["kl"])
            history.seconds.append(time.perf_counter() - started)
            if display is not None:
                display.epoch(epoch, history)
            for callback in callbacks:
                callback(epoch, history)
    finally:
        if display is not None:
            display.close()
    return history
