"""The reparameterization step: a sample z ~ N(mu, exp(logvar)) written as a function of mu and logvar.

    z = mu + exp(logvar / 2) * eps,   eps ~ N(0, I)        (Kingma & Welling 2013, sec. 2.4)

The noise eps is drawn outside the path from (mu, logvar) to z, so z is differentiable in both:

    dL/dmu     = dL/dz
    dL/dlogvar = dL/dz * eps * exp(logvar / 2) / 2   ( = dL/dz * (z - mu) / 2 )
"""

from __future__ import annotations

import numpy as np

from . import _checks

__all__ = ["Reparameterization"]


class Reparameterization:
    """Forward z = mu + sigma * eps with sigma = exp(logvar / 2); backward to (mu, logvar).

    Shapes: mu, logvar, eps, z all (batch, latent_dim), one float dtype.
    The arrays returned are work buffers owned by this object, overwritten by its next call.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}
        self._eps: np.ndarray | None = None
        self._sigma: np.ndarray | None = None

    def _buffer(self, name: str, like: np.ndarray) -> np.ndarray:
        """A row-major work array of ``like``'s shape and dtype, reused across calls. Row-major
        whatever ``like``'s order: ``rng.standard_normal(out=...)`` fills in memory order, so the
        noise each entry gets does not depend on how mu happens to be stored."""
        buffer = self._buffers.get(name)
        if buffer is None or buffer.shape != like.shape or buffer.dtype != like.dtype:
            buffer = np.empty(like.shape, dtype=like.dtype)
            self._buffers[name] = buffer
        return buffer

    def forward(
        self,
        mu: np.ndarray,
        logvar: np.ndarray,
        eps: np.ndarray | None = None,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Return z = mu + exp(logvar / 2) * eps.

        Give ``eps`` to make the result deterministic (gradient checks, comparisons with
        another implementation), or ``rng`` to draw eps ~ N(0, I) from it. Exactly one of the two.

        Raises
        ------
        TypeError
            mu, logvar or eps not a float32/float64 ndarray; rng not a numpy.random.Generator.
        ValueError
            mu not 2-D; logvar or eps of another shape or dtype than mu; not exactly one of eps,
            rng; NaN or inf in mu, logvar or eps; logvar above 2 log(max float) (about 1419 in
            float64, 177 in float32), where exp(logvar / 2) overflows; z beyond the float range.
        """
        for name, array in (("mu", mu), ("logvar", logvar)):
            _checks.float_array(name, array)
        if mu.ndim != 2:
            raise ValueError(f"mu: expected a 2-D array (batch, latent_dim), got shape {mu.shape}")
        if logvar.shape != mu.shape or logvar.dtype != mu.dtype:
            raise ValueError(
                f"logvar: expected shape {mu.shape} and dtype {mu.dtype} (as mu), "
                f"got {logvar.shape} and {logvar.dtype}"
            )
        if (eps is None) == (rng is None):
            raise ValueError("eps, rng: expected exactly one of them, got "
                             + ("both" if eps is not None else "neither"))
        if eps is None:
            _checks.generator(rng)
        else:
            _checks.float_array("eps", eps)
            if eps.shape != mu.shape or eps.dtype != mu.dtype:
                raise ValueError(
                    f"eps: expected an ndarray of shape {mu.shape} and dtype {mu.dtype}, "
                    f"got {eps.shape} {eps.dtype}"
                )
        for name, array in (("mu", mu), ("logvar", logvar), ("eps", eps)):
            if array is not None and not np.isfinite(array).all():
                raise ValueError(f"{name}: expected finite values, found NaN or inf")
        limit = 2.0 * np.log(np.finfo(mu.dtype).max)
        if logvar.size and logvar.max() > limit:
            raise ValueError(
                f"logvar: expected values <= {limit:.4g}, where exp(logvar / 2) overflows {mu.dtype}, "
                f"got {logvar.max():g}"
            )
        with np.errstate(over="ignore", invalid="ignore"):  # an overflowing z is reported below
            z = self.forward_unchecked(mu, logvar, eps, rng)
        if not np.isfinite(z).all():
            raise ValueError(
                f"mu, logvar, eps: z = mu + exp(logvar / 2) * eps overflows {mu.dtype} "
                f"(largest |mu| {np.abs(mu).max():g}, largest logvar {logvar.max():g})"
            )
        return z

    def forward_unchecked(
        self, mu: np.ndarray, logvar: np.ndarray, eps: np.ndarray | None, rng: np.random.Generator | None
    ) -> np.ndarray:
        """``forward`` without checks: the VAE's training path, on arrays it built itself.

        Non-finite values propagate, and exp(logvar / 2) overflows to inf for logvar above
        2 log(max float); the training loop checks the loss and the gradients instead.
        Exactly one of ``eps`` and ``rng`` must be given.
        """
        if eps is None:
            eps = self._buffer("eps", mu)
            rng.standard_normal(dtype=eps.dtype, out=eps)
        sigma = self._buffer("sigma", mu)
        np.multiply(logvar, 0.5, out=sigma)
        np.exp(sigma, out=sigma)
        z = self._buffer("z", mu)
        np.multiply(sigma, eps, out=z)
        z += mu
        self._eps, self._sigma = eps, sigma
        return z

    def backward(self, grad_z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (dL/dmu, dL/dlogvar) = (dL/dz, dL/dz * eps * sigma / 2).

        ``grad_z`` must have the shape and dtype of the last ``forward``'s z (TypeError if it
        is not a float ndarray, ValueError otherwise; RuntimeError before any forward).
        """
        if self._eps is None or self._sigma is None:
            raise RuntimeError("Reparameterization.backward called before forward")
        _checks.float_array("grad_z", grad_z)
        if grad_z.shape != self._sigma.shape or grad_z.dtype != self._sigma.dtype:
            raise ValueError(
                f"grad_z: expected shape {self._sigma.shape} and dtype {self._sigma.dtype} (as z), "
                f"got {grad_z.shape} and {grad_z.dtype}"
            )
        grad_mu = self._buffer("grad_mu", grad_z)
        np.copyto(grad_mu, grad_z)
        grad_logvar = self._buffer("grad_logvar", grad_z)
        np.multiply(grad_z, self._eps, out=grad_logvar)
        grad_logvar *= self._sigma
        grad_logvar *= 0.5
        return grad_mu, grad_logvar
