"""Losses as functions that return the value and the gradient it implies.

Every loss works on a batch: inputs are (batch, dim) arrays of one float dtype, the value is
returned per example (summed over the dim axis, shape (batch,)), and each gradient is the
derivative of ``value.sum()`` with respect to that input. A model that reports the batch mean
scales the gradients by 1 / batch.

The public functions validate their inputs (shape, dtype, finiteness, ranges) and their
result: finite input whose loss is beyond the float range (a value that overflows, or a
log-variance whose exponential does) is a ValueError naming the inputs, never a NaN or inf.
The ``..._into`` functions are the same computations without checks, writing the gradients into
caller-owned arrays: the models call those on the hot path, after validating their data once.
The BCE's arithmetic is ``kernels.bce_with_logits`` (the textbook form and the one-exp fast form).
"""

from __future__ import annotations

import numpy as np

from . import _kernels as kernels

__all__ = ["bce_with_logits", "squared_error", "gaussian_nll", "gaussian_kl", "LOG_2PI",
           "bce_with_logits_into", "squared_error_into", "gaussian_kl_into"]

LOG_2PI = float(np.log(2.0 * np.pi))


def _check_arrays(**arrays: object) -> np.dtype:
    """Check that all arrays are finite float ndarrays of one 2-D shape and one dtype."""
    first_name, first = next(iter(arrays.items()))
    for name, array in arrays.items():
        if not isinstance(array, np.ndarray):
            raise TypeError(f"{name}: expected a numpy ndarray, got {type(array).__name__}")
        if array.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name}: expected dtype float32 or float64, got {array.dtype}")
        if array.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D array (batch, dim), got shape {array.shape}")
        if array.shape != first.shape:
            raise ValueError(f"{name}: expected shape {first.shape} (as {first_name}), got {array.shape}")
        if array.dtype != first.dtype:
            raise ValueError(f"{name}: expected dtype {first.dtype} (as {first_name}), got {array.dtype}")
        if not np.isfinite(array).all():
            raise ValueError(f"{name}: expected finite values, found NaN or inf")
    return first.dtype


def _largest(array: np.ndarray) -> str:
    return f"{float(np.abs(array).max(initial=0.0)):.3g}"


def _check_logvar(logvar: np.ndarray, *, negated: bool) -> None:
    """Refuse a log-variance where exp(logvar) (or exp(-logvar) if ``negated``) overflows its dtype.

    log(max float) is about 709.8 in float64 and 88.7 in float32. Only the side that overflows
    is bounded: the exponential of a very negative number underflows harmlessly to 0.
    """
    if not logvar.size:
        return
    limit = float(np.log(np.finfo(logvar.dtype).max))
    if negated and logvar.min() < -limit:
        raise ValueError(
            f"logvar: expected values >= {-limit:.4g}, where exp(-logvar) overflows {logvar.dtype}, "
            f"got {logvar.min():g}"
        )
    if not negated and logvar.max() > limit:
        raise ValueError(
            f"logvar: expected values <= {limit:.4g}, where exp(logvar) overflows {logvar.dtype}, "
            f"got {logvar.max():g}"
        )


def _overflow_error(names: str, value: np.ndarray, detail: str) -> ValueError:
    """The error for finite input whose loss is beyond the float range."""
    return ValueError(f"{names}: the loss overflows {value.dtype} ({detail})")


def bce_with_logits(logits: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bernoulli negative log-likelihood from logits (binary cross-entropy), per example.

    With p = sigmoid(l):  -[t log p + (1 - t) log(1 - p)] = softplus(l) - t * l,
    and softplus(l) = log(1 + e^l) = max(l, 0) + log1p(exp(-|l|)): exp never overflows, so the
    value is finite for any finite logit (|l| = 1e4 included).

    Derivative: d/dl = sigmoid(l) - t.

    Parameters
    ----------
    logits : (batch, dim) float array
    target : (batch, dim) float array, same dtype, values in [0, 1]

    Returns
    -------
    value : (batch,) summed over dim.    grad_logits : (batch, dim)
    """
    _check_arrays(logits=logits, target=target)
    if target.min(initial=0.0) < 0.0 or target.max(initial=1.0) > 1.0:
        raise ValueError(
            f"target: expected values in [0, 1], got min {target.min()}, max {target.max()}"
        )
    grad_logits = np.empty_like(logits)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked below
        value = bce_with_logits_into(logits, target, grad_logits, np.empty_like(logits))
        if not np.isfinite(value).all():
            # the fast kernel splits max(l, 0) as (l + |l|) / 2, whose halves can overflow for
            # |l| near the float max although the loss does not: the textbook form sums the exact terms
            reference = kernels.implementation("bce_with_logits", "reference")
            value = reference(logits, target, grad_logits, np.empty_like(logits))
    if not np.isfinite(value).all():
        raise _overflow_error("logits", value, f"largest |logits| = {_largest(logits)}")
    return value, grad_logits


def bce_with_logits_into(
    logits: np.ndarray, target: np.ndarray, grad_logits: np.ndarray, work: np.ndarray
) -> np.ndarray:
    """bce_with_logits without checks: returns the value (batch,), writes sigmoid(l) - t into
    ``grad_logits``; ``work`` is scratch of the logits' shape. Non-finite values propagate."""
    return kernels.bce_with_logits(logits, target, grad_logits, work)


def squared_error(prediction: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum of squared errors per example: sum_j (prediction_j - target_j)^2.

    Derivative: d/dprediction = 2 * (prediction - target).

    Returns value (batch,) and grad_prediction (batch, dim).
    """
    _check_arrays(prediction=prediction, target=target)
    grad_prediction = np.empty_like(prediction)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked below
        value = squared_error_into(prediction, target, grad_prediction)
    if not np.isfinite(value).all():
        raise _overflow_error("prediction, target", value, f"largest |prediction| = {_largest(prediction)}, "
                              f"largest |target| = {_largest(target)}")
    return value, grad_prediction


def squared_error_into(
    prediction: np.ndarray, target: np.ndarray, grad_prediction: np.ndarray
) -> np.ndarray:
    """squared_error without checks; writes the gradient into ``grad_prediction``."""
    np.subtract(prediction, target, out=grad_prediction)
    value = np.einsum("ij,ij->i", grad_prediction, grad_prediction)
    grad_prediction *= 2
    return value


def gaussian_nll(
    target: np.ndarray, mean: np.ndarray, logvar: np.ndarray
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Negative log-density of target under N(mean, exp(logvar)), diagonal, per example.

    nll = 1/2 * sum_j [ log(2 pi) + logvar_j + (target_j - mean_j)^2 * exp(-logvar_j) ]

    Derivatives:  d/dmean   = (mean - target) * exp(-logvar)
                  d/dlogvar = 1/2 * (1 - (target - mean)^2 * exp(-logvar))

    With logvar = 0 this is 1/2 * squared_error + dim/2 * log(2 pi): the unit-variance
    Gaussian decoder of ``npvae.VAE(output="gaussian")``.

    Returns value (batch,) and (grad_mean, grad_logvar), each (batch, dim).

    Raises ValueError naming ``logvar`` where exp(-logvar) overflows the dtype (logvar below
    about -709 in float64, -88 in float32), and naming ``target, mean`` if the value overflows.
    """
    _check_arrays(target=target, mean=mean, logvar=logvar)
    _check_logvar(logvar, negated=True)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked below
        precision = np.exp(-logvar)
        diff = mean - target
        grad_mean = diff * precision
        weighted_sq = diff * grad_mean
        value = 0.5 * (LOG_2PI * target.shape[1] + (logvar + weighted_sq).sum(axis=1))
        grad_logvar = 0.5 * (1.0 - weighted_sq)
    if not np.isfinite(value).all():
        raise _overflow_error("target, mean", value, f"largest |target| = {_largest(target)}, largest "
                              f"|mean| = {_largest(mean)}, smallest logvar = {logvar.min():g}")
    return value, (grad_mean, grad_logvar)


def gaussian_kl(mu: np.ndarray, logvar: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """KL( N(mu, exp(logvar)) || N(0, I) ), summed over latent dims, per example.

    kl = -1/2 * sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j))     (Kingma & Welling 2013, App. B)

    Derivatives:  dkl/dmu = mu,    dkl/dlogvar = (exp(logvar) - 1) / 2

    kl >= 0, with equality only at mu = 0, logvar = 0 (each term e^v - 1 - v + mu^2 >= 0).

    Returns value (batch,) and (grad_mu, grad_logvar), each (batch, latent_dim).

    Raises ValueError naming ``logvar`` where exp(logvar) overflows the dtype (logvar above
    about 709 in float64, 88 in float32), and naming ``mu, logvar`` if the value overflows.
    """
    _check_arrays(mu=mu, logvar=logvar)
    _check_logvar(logvar, negated=False)
    grad_mu = np.empty_like(mu)
    grad_logvar = np.empty_like(logvar)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked below
        value = gaussian_kl_into(mu, logvar, grad_mu, grad_logvar)
    if not np.isfinite(value).all():
        raise _overflow_error("mu, logvar", value, f"largest |mu| = {_largest(mu)}, "
                              f"largest logvar = {logvar.max():g}")
    return value, (grad_mu, grad_logvar)


def gaussian_kl_into(
    mu: np.ndarray, logvar: np.ndarray, grad_mu: np.ndarray, grad_logvar: np.ndarray
) -> np.ndarray:
    """gaussian_kl without checks; writes the gradients into the given arrays.

    Summed per element as (e^v - 1 - v) + mu^2, with expm1 for e^v - 1: each term is >= 0 in
    floating point too, so the KL never comes out slightly negative from cancellation.
    """
    np.expm1(logvar, out=grad_logvar)
    terms = grad_logvar - logvar
    terms += mu * mu
    value = 0.5 * terms.sum(axis=1)
    grad_logvar *= 0.5
    np.copyto(grad_mu, mu)
    return value
