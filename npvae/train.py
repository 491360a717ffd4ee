"""The training loop: minibatch gradient descent on the negative ELBO (or an AE's error).

One epoch of ``fit``:

    perm = rng.permutation(n)                             a new order of the training set
    for each minibatch B of rows perm[i*b : (i+1)*b]      (the last, partial batch is kept)
        x = bernoulli(x_B)            if binarize         dynamic binarization, drawn from rng
        L = mean over B of recon + w_t * kl               model.loss_and_grads_unchecked, eps ~ rng
        check L and dL/dtheta are finite                  else TrainingError, no step taken
        theta = optimizer.step(theta, dL/dtheta)
    check theta and the optimizer's state are finite      else TrainingError, epoch not recorded

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

import math
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

import numpy as np

from . import _checks
from . import _kernels as kernels
from . import threads as _threads
from .history import History
from .models.base import Autoencoder
from .models.cvae import CVAE
from .models.vqvae import VQVAE, code_usage
from .nn import Parameter
from .optim import Adam, Optimizer

__all__ = ["History", "TrainingError", "fit", "evaluate"]

Callback = Callable[[int, History], Any]

_EVAL_BATCH_SIZE = 1000


class TrainingError(RuntimeError):
    """Training met a non-finite value: a step's loss or gradient (the step was not taken), or,
    after an epoch, the parameters, the optimizer's state or the validation loss (the epoch was
    not recorded).

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


# -- argument checks -------------------------------------------------------------------------
def _check_model(model: Any) -> Autoencoder:
    if not isinstance(model, Autoencoder):
        raise TypeError(f"model: expected an npvae AE, VAE, CVAE or VQVAE, got {type(model).__name__}")
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


def _check_history(history: Any, has_validation: bool) -> History:
    """``history`` (or a new one) if it can be continued with (or without) validation data."""
    if history is None:
        return History()
    if not isinstance(history, History):
        raise TypeError(f"history: expected a History or None, got {type(history).__name__}")
    history.check_lengths()
    if len(history) and history.has_validation != has_validation:
        state = "has" if history.has_validation else "has no"
        raise ValueError(
            f"x_val: the history {state} validation metrics, so x_val must "
            f"{'be given' if history.has_validation else 'be None'} to continue it"
        )
    return history


def _labels_for(model: Autoencoder, name: str, y: Any, rows: int) -> np.ndarray | None:
    """A CVAE's labels, validated; None for the other models, which take none."""
    if isinstance(model, CVAE):
        return model.validate_labels(y, rows, name=name)
    if y is not None:
        raise ValueError(f"{name}: only a CVAE takes class labels; this is a {type(model).__name__}")
    return None


def _check_iw_samples(model: Autoencoder, iw_samples: Any, kl_warmup_epochs: int) -> int:
    iw_samples = _checks.positive_int("iw_samples", iw_samples)
    if iw_samples > 1:
        if not hasattr(model, "iw_loss_and_grads_unchecked"):
            raise ValueError(f"iw_samples: the importance-weighted objective needs a VAE, got {type(model).__name__}")
        if model.beta != 1.0 or kl_warmup_epochs:
            raise ValueError(f"iw_samples: k = {iw_samples} needs beta = 1 and kl_warmup_epochs = 0 (the bound "
                             f"L_k has no KL weight), got beta {model.beta!r}, kl_warmup_epochs {kl_warmup_epochs}")
    return iw_samples


def _check_callbacks(callbacks: Any) -> tuple[Callback, ...]:
    if callable(callbacks) or not isinstance(callbacks, Iterable):
        raise TypeError(f"callbacks: expected an iterable of callables, e.g. [callback], got {type(callbacks).__name__}")
    callbacks = tuple(callbacks)
    for index, callback in enumerate(callbacks):
        if not callable(callback):
            raise TypeError(f"callbacks[{index}]: expected a callable, got {type(callback).__name__}")
    return callbacks


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
            if y is None:
                terms = model.terms_unchecked(x[rows], None, rng)
            else:
                terms = model.terms_unchecked(x[rows], y[rows], None, rng)
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
    model : AE, VAE, CVAE or VQVAE
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
        ``{"loss", "recon", "kl"}``: means over examples of recon + beta * kl, recon, kl. For a
        VQ-VAE ``kl`` is its VQ terms, ``loss = recon + kl``, and the dict adds ``perplexity``
        and ``codes_used`` of the code assignments of x (see ``npvae.models.vqvae.code_usage``).

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
    x = model.validate(x)
    rng = np.random.default_rng(0) if rng is None else _checks.generator(rng)
    batch_size = _checks.positive_int("batch_size", batch_size)
    y = _labels_for(model, "y", y, x.shape[0])
    metrics = _evaluate(model, x, rng, batch_size, y)
    if not all(math.isfinite(value) for value in metrics.values()):
        raise ValueError(
            f"x: the model's loss on these data is not finite ({metrics}): its computation overflows "
            f"{model.dtype} (largest |x| = {_max_abs(x):.3g}; rescale the data)"
        )
    if isinstance(model, VQVAE):
        metrics["perplexity"], metrics["codes_used"] = code_usage(model.code_counts(x, batch_size))
    return metrics


# -- progress display --------------------------------------------------------------------------
class _Progress:
    """A one-line status on a text stream, rewritten in place with \r (at most ~10 times a second).

    Besides the epoch, batch and loss it shows the time since ``fit`` started, the estimated time
    left (elapsed * remaining steps / steps done: the run so far predicts the rest) and the
    training throughput in images per second.
    """

    _INTERVAL_SECONDS = 0.1

    def __init__(self, stream: TextIO, first_epoch: int, last_epoch: int, batches_per_epoch: int) -> None:
        self.stream = stream
        self.first_epoch = first_epoch
        self.last_epoch = last_epoch
        self.batches_per_epoch = batches_per_epoch
        self.width = 0
        self.shown_at = -math.inf
        self.started = time.perf_counter()
        self.images = 0

    def _show(self, text: str) -> None:
        self.stream.write("\r" + text.ljust(self.width))
        self.stream.flush()
        self.width = len(text)
        self.shown_at = time.perf_counter()

    def _timing(self, steps_done: int) -> str:
        elapsed = time.perf_counter() - self.started
        steps_total = (self.last_epoch - self.first_epoch + 1) * self.batches_per_epoch
        remaining = elapsed * (steps_total - steps_done) / max(steps_done, 1)
        rate = self.images / elapsed if elapsed > 0 else 0.0
        return f"  {_clock(elapsed)} elapsed  ETA {_clock(remaining)}  {rate:,.0f} img/s"

    def batch(self, epoch: int, batch: int, loss: float, rows: int) -> None:
        self.images += rows
        if time.perf_counter() - self.shown_at >= self._INTERVAL_SECONDS:
            steps_done = (epoch - self.first_epoch) * self.batches_per_epoch + batch
            self._show(f"epoch {epoch}/{self.last_epoch}  batch {batch}/{self.batches_per_epoch}  loss {loss:.4g}"
                       + self._timing(steps_done))

    def epoch(self, epoch: int, history: History) -> None:
        text = f"epoch {epoch}/{self.last_epoch}  loss {history.loss[-1]:.4g}"
        if history.has_validation:
            text += f"  val_loss {history.val_loss[-1]:.4g}"
        steps_done = (epoch - self.first_epoch + 1) * self.batches_per_epoch
        self._show(text + f"  {history.seconds[-1]:.2f} s" + self._timing(steps_done))

    def close(self) -> None:
        if self.width:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    """1:05 for 65 s, 1:01:05 past an hour."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


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
    return all(kernels.all_finite(array) for array in arrays)


def _kl_weight(beta: float, step: int, warmup_steps: int) -> float:
    """w_t = beta * min(1, t / warmup_steps); beta when there is no warm-up."""
    if warmup_steps == 0:
        return beta
    return beta * min(1.0, step / warmup_steps)


class _Epochs:
    """The loop's state between epochs: what ``fit`` checked, and the steps of one epoch."""

    def __init__(self, model: Autoencoder, optimizer: Optimizer, x_train: np.ndarray, batch_size: int,
                 binarize: bool, rng: np.random.Generator, kl_warmup_epochs: int,
                 y_train: np.ndarray | None = None, iw_samples: int = 1) -> None:
        self.model, self.optimizer, self.x_train = model, optimizer, x_train
        self.y_train, self.iw_samples = y_train, iw_samples
        self.batch_size, self.binarize, self.rng = batch_size, binarize, rng
        self.batches = math.ceil(x_train.shape[0] / batch_size)
        # the weight of the kl field in the loss; a VQ-VAE's beta weighs its commitment term inside it
        self.beta = 1.0 if isinstance(model, VQVAE) else float(getattr(model, "beta", 0.0))
        self.warmup_steps = kl_warmup_epochs * self.batches
        parameters = model.parameters()
        self.gradients = _flat_buffers([parameter.grad for parameter in parameters])
        self.values = _flat_buffers([parameter.value for parameter in parameters])
        self.loss = math.nan  # the last step's batch loss

    def train(self, epoch: int, first_step: bool, display: _Progress | None) -> tuple[float, float, float]:
        """One epoch of steps: (mean recon, mean kl, the last step's KL weight)."""
        model, n = self.model, self.x_train.shape[0]
        order = self.rng.permutation(n)
        recon_sum = kl_sum = kl_weight = 0.0
        # a step that overflows is reported by the TrainingError below, naming the epoch and
        # batch; NumPy's overflow warnings from inside the model would only repeat it
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for batch in range(1, self.batches + 1):
                picked = order[(batch - 1) * self.batch_size : batch * self.batch_size]
                x_batch = self.x_train[picked]
                if self.binarize:
                    x_batch = (self.rng.random(x_batch.shape, dtype=model.dtype) < x_batch).astype(model.dtype)
                kl_weight = _kl_weight(self.beta, (epoch - 1) * self.batches + batch, self.warmup_steps)
                if self.iw_samples > 1:
                    self.loss = model.iw_loss_and_grads_unchecked(x_batch, None, self.rng, self.iw_samples)
                elif self.y_train is not None:
                    self.loss = model.loss_and_grads_unchecked(x_batch, self.y_train[picked], None, self.rng, kl_weight)
                else:
                    self.loss = model.loss_and_grads_unchecked(x_batch, None, self.rng, kl_weight)
                if not (math.isfinite(self.loss) and _finite_arrays(self.gradients)):
                    raise self._step_error(epoch, batch, first_step and batch == 1)
                self.optimizer.step()
                recon_sum += model.last_recon * x_batch.shape[0]
                kl_sum += model.last_kl * x_batch.shape[0]
                if display is not None:
                    display.batch(epoch, batch, self.loss, x_batch.shape[0])
        if isinstance(model, VQVAE):  # the epoch's code usage; dead-code restarts draw from rng
            self.code_usage = model.end_epoch(self.rng)
        return recon_sum / n, kl_sum / n, kl_weight

    def _step_error(self, epoch: int, batch: int, first_step: bool) -> TrainingError:
        """The error for a step whose loss or gradient is not finite, saying what state the
        parameters are in and what to try."""
        what = "loss" if not math.isfinite(self.loss) else "gradient"
        if not _finite_arrays(self.values):
            after = "but the parameters are already non-finite: an earlier update overflowed them"
        elif first_step:
            after = (f"the parameters keep their last finite values (this was the first step: check the "
                     f"scale of x_train, largest |value| = {_max_abs(self.x_train):.3g})")
        else:
            after = "the parameters keep their last finite values (a lower learning rate may help)"
        return TrainingError(
            f"non-finite {what} at epoch {epoch}, batch {batch} of {self.batches} (loss {self.loss!r}); "
            f"the step was not taken, {after}", epoch=epoch, batch=batch, loss=self.loss,
        )

    def check_state(self, epoch: int) -> None:
        """After an epoch: an update can overflow the parameters even from finite gradients
        (learning rate times gradient beyond the float range), or the optimizer's state (float32
        Adam's g^2); the epoch is then not recorded, and callbacks never see that model."""
        dtype = self.model.dtype
        if not _finite_arrays(self.values):
            raise TrainingError(
                f"non-finite parameters after epoch {epoch}: an update overflowed {dtype} "
                f"(learning rate times gradient too large); the epoch is not recorded and the "
                f"parameters are unusable (reload the last checkpoint, lower the learning rate)",
                epoch=epoch, batch=0, loss=self.loss,
            )
        broken = self.optimizer.nonfinite_state()
        if broken:
            raise TrainingError(
                f"non-finite optimizer state after epoch {epoch}: {type(self.optimizer).__name__}'s "
                f"{', '.join(broken)} overflowed {dtype} (gradients too large for {dtype}: the training "
                f"diverged, last batch loss {self.loss:.3g}); the epoch is not recorded (reload the last "
                f"checkpoint, lower the learning rate)",
                epoch=epoch, batch=0, loss=self.loss,
            )


def _validate_epoch(model: Autoencoder, x_val: np.ndarray, rng: np.random.Generator, epoch: int,
                    y_val: np.ndarray | None = None) -> dict[str, float]:
    metrics = _evaluate(model, x_val, rng, _EVAL_BATCH_SIZE, y_val)
    if not all(math.isfinite(value) for value in metrics.values()):
        raise TrainingError(
            f"non-finite validation loss after epoch {epoch} ({metrics}): the model's "
            f"computation on x_val overflows {model.dtype} (largest |x_val| = "
            f"{_max_abs(x_val):.3g}); the epoch is not recorded, the parameters are finite",
            epoch=epoch, batch=0, loss=metrics["loss"],
        )
    return metrics


def _record(history: History, beta: float, recon: float, kl: float, kl_weight: float,
            metrics: dict[str, float] | None, seconds: float) -> None:
    history.loss.append(recon + beta * kl)
    history.recon.append(recon)
    history.kl.append(kl)
    history.kl_weight.append(kl_weight)
    if metrics is not None:
        history.val_loss.append(metrics["loss"])
        history.val_recon.append(metrics["recon"])
        history.val_kl.append(metrics["kl"])
    history.seconds.append(seconds)


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
    threads: int | None = None,
) -> History:
    """Train ``model`` in place for ``epochs`` epochs of minibatch descent; return the history.

    Parameters
    ----------
    model : AE, VAE, CVAE or VQVAE
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
        noise eps; after the epoch a VQ-VAE's dead-code restarts (if enabled), then the
        validation noise. Pass the generator restored from a
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
        terminal. It is the only output of training (and the one place in ``npvae/`` outside
        the CLI that writes to a stream).
    iw_samples : int
        k of the importance-weighted objective (Burda et al. 2016): each step minimises -L_k
        with k codes per example (``VAE.iw_loss_and_grads``; eps drawn as (batch, k, latent)).
        1 (default) is the VAE's usual objective, exactly. k >= 2 needs a VAE with beta = 1 and
        no KL warm-up; ``recon`` then records the weighted reconstruction sum_i w~_i recon_i and
        ``kl`` the rest of -L_k, so that ``loss`` is -L_k. Validation stays one z per example.
    y_train, y_val : integer arrays (n,), (m,) or None
        Class labels of ``x_train`` and ``x_val`` (0 .. num_classes - 1): required by a CVAE
        (each batch is trained with its rows' labels), refused by the other models.
    threads : int or None
        Threads for the run's matrix products, loss and optimizer updates
        (``npvae.threads.limited``), restored afterwards; None uses
        ``npvae.threads.DEFAULT_THREADS`` (2, or 1 on a one-CPU machine: the measurements are in
        ``npvae/threads.py``). Results are identical for a fixed seed and thread count and agree
        to rounding across counts.

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
        the data overflow the model), or the optimizer's state is no longer finite (float32 Adam's
        ``exp_avg_sq`` overflows where |gradient| > ~1.8e19; the weights it scales would never
        move again). Callbacks therefore only ever see a finite model and optimizer.
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
    epochs = _checks.int_at_least("epochs", epochs, 0)
    batch_size = _checks.positive_int("batch_size", batch_size)
    seed = _checks.int_at_least("seed", seed, 0)
    kl_warmup_epochs = _checks.int_at_least("kl_warmup_epochs", kl_warmup_epochs, 0)
    binarize = _checks.boolean("binarize", binarize)
    progress = _checks.boolean("progress", progress, allow_none=True)
    threads = _threads.resolve(threads)
    x_train = model.validate(x_train, name="x_train")
    if binarize and (x_train.min() < 0 or x_train.max() > 1):
        raise ValueError(
            f"x_train: binarize=True needs values in [0, 1] (probabilities), got values in "
            f"[{x_train.min():g}, {x_train.max():g}]"
        )
    y_train = _labels_for(model, "y_train", y_train, x_train.shape[0])
    x_val = None if x_val is None else model.validate(x_val, name="x_val")
    if x_val is not None:
        y_val = _labels_for(model, "y_val", y_val, x_val.shape[0])
    elif y_val is not None:
        raise ValueError("y_val: labels given without x_val")
    iw_samples = _check_iw_samples(model, iw_samples, kl_warmup_epochs)
    parameters = model.parameters()
    optimizer = Adam(parameters, lr=1e-3) if optimizer is None else _check_optimizer(optimizer, parameters)
    rng = np.random.default_rng(seed) if rng is None else _checks.generator(rng)
    history = _check_history(history, x_val is not None)
    callbacks = _check_callbacks(callbacks)
    if epochs == 0:
        return history

    loop = _Epochs(model, optimizer, x_train, batch_size, binarize, rng, kl_warmup_epochs, y_train, iw_samples)
    first_epoch, last_epoch = len(history) + 1, len(history) + epochs
    stream = _progress_stream(progress)
    display = _Progress(stream, first_epoch, last_epoch, loop.batches) if stream is not None else None
    with _threads.limited(threads):
        try:
            for epoch in range(first_epoch, last_epoch + 1):
                started = time.perf_counter()
                recon, kl, kl_weight = loop.train(epoch, epoch == first_epoch, display)
                loop.check_state(epoch)
                metrics = None if x_val is None else _validate_epoch(model, x_val, rng, epoch, y_val)
                _record(history, loop.beta, recon, kl, kl_weight, metrics, time.perf_counter() - started)
                if isinstance(model, VQVAE):
                    history.perplexity.append(loop.code_usage[0])
                    history.codes_used.append(loop.code_usage[1])
                if display is not None:
                    display.epoch(epoch, history)
                for callback in callbacks:
                    callback(epoch, history)
        finally:
            if display is not None:
                display.close()
    return history
