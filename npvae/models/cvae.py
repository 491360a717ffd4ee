"""The conditional VAE (Sohn, Lee & Yan 2015): a VAE told the class, so that it can draw one.

    y1hot = one_hot(y)                     (batch, num_classes), y an integer label
    encoder:  [x, y1hot] -> h -> (mu, logvar)        q(z|x,y) = N(mu, exp(logvar))
    sample:   z = mu + exp(logvar / 2) * eps         eps ~ N(0, I)          (npvae.reparam)
    decoder:  [z, y1hot] -> logits (or means)        p(x|z,y)
    loss:     -ELBO = E_q[-log p(x|z,y)] + beta * KL(q(z|x,y) || N(0, I)),  one z per example

The label is concatenated to the input of both networks; the prior stays N(0, I). Drawing a
digit of class c: z ~ N(0, I), decode [z, one_hot(c)] (``sample(n, labels=c, rng=rng)``).

Gradient path: as the VAE's (npvae/models/vae.py), with one more step: the decoder's backward
returns dL/d[z, y1hot], of which only the first latent_dim columns, dL/dz, flow on (the label
is data, not a parameter); the encoder's input gradient is not needed at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _checks
from ..losses import gaussian_kl_into
from ..nn import Dense
from ..reparam import Reparameterization
from .base import Autoencoder, LossTerms, mlp

__all__ = ["CVAE"]


class CVAE(Autoencoder):
    """Conditional VAE: q(z|x,y), p(x|z,y) with y one-hot, concatenated at both networks' inputs.

    Parameters
    ----------
    input_dim : int
        Data dimension D.
    num_classes : int
        Number of classes K (>= 2); labels are integers 0 .. K-1.
    hidden_dims, latent_dim, activation, output, beta, negative_slope, seed, dtype
        As for ``npvae.VAE``.

    Layers: ``encoder`` (Sequential, input D + K), ``head`` (Dense giving [mu, logvar]),
    ``decoder`` (Sequential, input latent_dim + K, logits out). Every method that looks at
    data takes its labels ``y``: integers, one per row.
    """

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        hidden_dims: Sequence[int] = (400,),
        latent_dim: int = 20,
        activation: str = "leaky_relu",
        output: str = "bernoulli",
        beta: float = 1.0,
        negative_slope: float = 0.2,
        seed: int = 0,
        dtype: Any = np.float64,
    ) -> None:
        super().__init__(input_dim, hidden_dims, latent_dim, activation, output, negative_slope, seed, dtype)
        self.num_classes = _checks.positive_int("num_classes", num_classes)
        if self.num_classes < 2:
            raise ValueError(f"num_classes: expected at least 2 classes, got {num_classes!r}")
        beta = _checks.real_number("beta", beta)
        if not (np.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta: expected a finite value >= 0, got {beta!r}")
        self.beta = beta
        rng = np.random.default_rng(self.seed)
        sizes = (self.input_dim + self.num_classes, *self.hidden_dims)
        self.encoder = mlp(sizes, activation, negative_slope, rng, self.dtype, final_activation=True)
        self.head = Dense(sizes[-1], 2 * self.latent_dim, rng=rng, init="glorot", dtype=self.dtype)
        decoder_sizes = (self.latent_dim + self.num_classes, *reversed(self.hidden_dims), self.input_dim)
        self.decoder = mlp(decoder_sizes, activation, negative_slope, rng, self.dtype, final_activation=False)
        self.reparam = Reparameterization()
        self.flatten_parameters()
        self.last_recon = float("nan")
        self.last_kl = float("nan")

    def config(self) -> dict[str, Any]:
        return {**super().config(), "num_classes": self.num_classes, "beta": self.beta}

    # -- labels ----------------------------------------------------------------------------------
    def validate_labels(self, y: Any, rows: int, name: str = "y") -> np.ndarray:
        """Check labels once and return them as int64: integers, one per row (shape (rows,)), in
        0 .. num_classes - 1. Errors name ``name``. The ``*_unchecked`` methods trust the result."""
        if y is None:
            raise ValueError(f"{name}: a CVAE needs the class labels of the data (integers 0 .. "
                             f"{self.num_classes - 1}), got None")
        array = np.asarray(y)
        if array.dtype.kind not in "iu":
            raise TypeError(f"{name}: expected integer class labels, got dtype {array.dtype}")
        if array.shape != (rows,):
            raise ValueError(f"{name}: expected {rows} labels, shape ({rows},) (one per row), got shape {array.shape}")
        if array.min() < 0 or array.max() >= self.num_classes:
            raise ValueError(f"{name}: expected labels in 0 .. {self.num_classes - 1}, got values in "
                             f"[{array.min()}, {array.max()}]")
        return array.astype(np.int64, copy=False)

    def _joined(self, name: str, a: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """[a, one_hot(labels)] in a reused work array: a network's conditioned input."""
        joined = self._buffer(name, (a.shape[0], a.shape[1] + self.num_classes), self.dtype)
        joined[:, : a.shape[1]] = a
        joined[:, a.shape[1] :] = 0
        joined[np.arange(labels.shape[0]), a.shape[1] + labels] = 1
        return joined

    # -- encoder and decoder -----------------------------------------------------------------------
    def _encode(self, x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        stats = self.head.forward(self.encoder.forward(self._joined("encoder_input", x, labels)))
        return stats[:, : self.latent_dim], stats[:, self.latent_dim :]

    def _decode(self, z: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return self.decoder.forward(self._joined("decoder_input", z, labels))

    def _checked_encode(self, x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(over="ignore", invalid="ignore"):  # checked here
            stats = self.head.forward(self.encoder.forward(self._joined("encoder_input", x, labels)))
            stats = self._finite_output(stats, "encoding", "x", x)
        return stats[:, : self.latent_dim], stats[:, self.latent_dim :]

    def _checked_decode(self, z: np.ndarray, labels: np.ndarray, what: str, name: str, given: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):  # checked here
            return self._mean_of(self._finite_output(self._decode(z, labels), what, name, given))

    def encode(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """q(z|x,y) of each row: (mu, logvar), each (batch, latent_dim).

        Raises ValueError naming ``x`` if the encoding overflows the model's dtype."""
        x = self._as_batch(x)
        mu, logvar = self._checked_encode(x, self.validate_labels(y, x.shape[0]))
        return mu.copy(), logvar.copy()

    def reconstruct(self, x: Any, y: Any) -> np.ndarray:
        """decode(mu(x, y), y): (batch, input_dim). Raises ValueError naming ``x`` on overflow."""
        x = self._as_batch(x)
        labels = self.validate_labels(y, x.shape[0])
        mu, _ = self._checked_encode(x, labels)
        return self._checked_decode(mu, labels, "reconstruction", "x", x)

    def decode(self, z: Any, labels: Any) -> np.ndarray:
        """Decode codes z (n, latent_dim) as the classes ``labels`` (n integers): decoder means.

        Raises ValueError naming ``z`` if decoding overflows the model's dtype."""
        z = self._as_latent(z)
        return self._checked_decode(z, self.validate_labels(labels, z.shape[0], name="labels"),
                                    "decoder output", "z", z)

    def sample(self, n: int, rng: np.random.Generator, labels: Any = None) -> np.ndarray:
        """Draw n images of the given classes: z ~ N(0, I), decoded with the label; (n, input_dim).

        ``labels``: one integer (every image of that class) or n integers. Required.
        """
        n = _checks.positive_int("n", n)
        rng = _checks.generator(rng)
        if labels is not None and np.ndim(labels) == 0:
            labels = np.full(n, labels, dtype=np.asarray(labels).dtype)
        labels = self.validate_labels(labels, n, name="labels")
        z = rng.standard_normal((n, self.latent_dim), dtype=self.dtype)
        return self._checked_decode(z, labels, "decoder output", "z", z)

    # -- the loss and its gradient -------------------------------------------------------------
    def _checked(self, x: Any, y: Any, eps: Any, rng: Any):
        x = self._as_batch(x)
        labels = self.validate_labels(y, x.shape[0])
        if (eps is None) == (rng is None):
            raise ValueError("eps, rng: expected exactly one of them (eps for a deterministic pass)")
        if eps is not None:
            eps = self._as_batch(eps, name="eps", width=self.latent_dim, data=False)
            if eps.shape[0] != x.shape[0]:
                raise ValueError(f"eps: expected shape ({x.shape[0]}, {self.latent_dim}), got {eps.shape}")
        else:
            rng = _checks.generator(rng)
        return x, labels, eps, rng

    def _forward_terms(self, x: np.ndarray, labels: np.ndarray, eps: np.ndarray | None,
                       rng: np.random.Generator | None):
        mu, logvar = self._encode(x, labels)
        z = self.reparam.forward_unchecked(mu, logvar, eps, rng)
        recon, grad_recon = self._reconstruction_nll(self._decode(z, labels), x)
        grad_mu_kl = self._buffer("grad_mu_kl", mu.shape, self.dtype)
        grad_logvar_kl = self._buffer("grad_logvar_kl", mu.shape, self.dtype)
        kl = gaussian_kl_into(mu, logvar, grad_mu_kl, grad_logvar_kl)
        return recon, grad_recon, kl, grad_mu_kl, grad_logvar_kl

    def terms_unchecked(self, x: np.ndarray, labels: np.ndarray, eps: np.ndarray | None,
                        rng: np.random.Generator | None) -> LossTerms:
        """``terms`` on arrays returned by ``validate`` and ``validate_labels`` (and exactly one of
        a checked ``eps`` and ``rng``); values are not checked (an overflow gives inf or NaN)."""
        recon, _, kl, _, _ = self._forward_terms(x, labels, eps, rng)
        return LossTerms(recon + self.beta * kl, recon, kl)

    def terms(self, x: Any, y: Any, *, eps: Any = None, rng: np.random.Generator | None = None) -> LossTerms:
        """Per-example (loss, recon, kl) of the negative conditional ELBO, one z each.

        Raises ValueError naming ``x`` if a term overflows the model's dtype.
        """
        x, labels, eps, rng = self._checked(x, y, eps, rng)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # checked below
            terms = self.terms_unchecked(x, labels, eps, rng)
        if not np.isfinite(terms.loss).all():
            raise self._loss_overflow_error(x)
        return terms

    def elbo(self, x: Any, y: Any, *, eps: Any = None, rng: np.random.Generator | None = None) -> np.ndarray:
        """Per-example ELBO = -(recon + kl) of log p(x|y) in nats (beta = 1), one z each."""
        terms = self.terms(x, y, eps=eps, rng=rng)
        return -(terms.recon + terms.kl)

    def loss_and_grads(
        self, x: Any, y: Any, *, eps: Any = None, rng: np.random.Generator | None = None,
        kl_weight: float | None = None,
    ) -> float:
        """Mean over the batch of recon + kl_weight * kl (kl_weight defaults to beta); overwrite
        every parameter's grad with its derivative. Give ``eps`` (batch, latent_dim) or ``rng``.

        Raises ValueError naming ``y`` for labels of the wrong length or out of range,
        ``kl_weight`` unless a finite number >= 0, ``x`` if the loss overflows the dtype.
        """
        x, labels, eps, rng = self._checked(x, y, eps, rng)
        if kl_weight is None:
            kl_weight = self.beta
        else:
            kl_weight = _checks.real_number("kl_weight", kl_weight)
            if not (math.isfinite(kl_weight) and kl_weight >= 0):
                raise ValueError(f"kl_weight: expected a finite value >= 0, got {kl_weight!r}")
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # checked below
            loss = self.loss_and_grads_unchecked(x, labels, eps, rng, kl_weight)
        if not (math.isfinite(loss) and math.isfinite(self.last_recon) and math.isfinite(self.last_kl)):
            raise self._loss_overflow_error(x)
        return loss

    def loss_and_grads_unchecked(self, x: np.ndarray, labels: np.ndarray, eps: np.ndarray | None,
                                 rng: np.random.Generator | None, kl_weight: float) -> float:
        """``loss_and_grads`` on arrays returned by ``validate`` and ``validate_labels`` (the
        training loop's entry), with exactly one of a checked ``eps`` and ``rng`` and a valid
        ``kl_weight``. Non-finite values propagate."""
        batch = x.shape[0]
        recon, grad_recon, kl, grad_mu_kl, grad_logvar_kl = self._forward_terms(x, labels, eps, rng)
        grad_recon *= 1.0 / batch  # dL/dlogits
        grad_z = self.decoder.backward(grad_recon, accumulate=False)[:, : self.latent_dim]  # not the label's
        grad_mu, grad_logvar = self.reparam.backward(grad_z)
        kl_scale = kl_weight / batch
        grad_stats = self._buffer("grad_stats", (batch, 2 * self.latent_dim), self.dtype)
        np.multiply(grad_mu_kl, kl_scale, out=grad_stats[:, : self.latent_dim])
        grad_stats[:, : self.latent_dim] += grad_mu
        np.multiply(grad_logvar_kl, kl_scale, out=grad_stats[:, self.latent_dim :])
        grad_stats[:, self.latent_dim :] += grad_logvar
        grad_hidden = self.head.backward(grad_stats, accumulate=False)
        self.encoder.backward(grad_hidden, input_grad=False, accumulate=False)
        self.last_recon = float(recon.mean())
        self.last_kl = float(kl.mean())
        return self.last_recon + kl_weight * self.last_kl

    # -- likelihood estimate ---------------------------------------------------------------------
    def log_likelihood(self, x: Any, y: Any, *, k: int = 1000, rng: np.random.Generator,
                       max_rows: int = 1024) -> np.ndarray:
        """Importance-weighted estimate L_k of log p(x|y) per example (Burda et al. 2016, eq. 8,
        with q(z|x,y) and p(x|z,y)); as ``VAE.log_likelihood``: at most ``max_rows`` decoder rows
        at once, the noise drawn in the same order whatever ``max_rows``."""
        x = self._as_batch(x)
        labels = self.validate_labels(y, x.shape[0])
        k = _checks.positive_int("k", k)
        max_rows = _checks.positive_int("max_rows", max_rows)
        rng = _checks.generator(rng)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # checked below
            result = self._log_likelihood(x, labels, k, rng, max_rows)
        if not np.isfinite(result).all():
            raise self._loss_overflow_error(x)
        return result

    def _log_likelihood(self, x: np.ndarray, labels: np.ndarray, k: int, rng: np.random.Generator,
                        max_rows: int) -> np.ndarray:
        mu_all, logvar_all = (array.copy() for array in self._encode(x, labels))
        return self._streamed_log_likelihood(
            x, mu_all, logvar_all, k, rng, max_rows,
            lambda z, start, stop, m: self._decode(z, np.repeat(labels[start:stop], m)))
