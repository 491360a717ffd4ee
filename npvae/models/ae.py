"""The plain autoencoder: a deterministic code, trained on reconstruction error alone.

    encoder: x -> code (latent_dim, linear)      decoder: code -> logits (or means)
    loss:    -log p(x | decoder(encoder(x))), per example, in nats

The seed writes this loss as L = x - d(e(x)), a difference: a vector, not a loss, and one that
rewards outputs larger than the input. What is meant is a scalar error that is zero only when
d(e(x)) = x: here the decoder's negative log-likelihood (binary cross-entropy for data in
[0, 1], half the squared error plus a constant for the Gaussian decoder).

An AE is not a generative model: nothing makes its codes follow any known distribution, so
decoding codes drawn from N(0, I) (``sample``) lands mostly where no training code was and
gives blurs or garbage; ``sample`` exists to show exactly that next to a VAE's samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .base import Autoencoder, LossTerms, mlp

__all__ = ["AE"]


class AE(Autoencoder):
    """Autoencoder with the same arguments as ``npvae.VAE`` (no beta).

    Layers: ``encoder`` (Sequential, ending in a linear Dense to the code) and ``decoder``
    (Sequential, mirror of the encoder, logits out).
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dims: Sequence[int] = (400,),
        latent_dim: int = 20,
        activation: str = "leaky_relu",
        output: str = "bernoulli",
        negative_slope: float = 0.2,
        seed: int = 0,
        dtype: Any = np.float64,
    ) -> None:
        super().__init__(input_dim, hidden_dims, latent_dim, activation, output, negative_slope, seed, dtype)
        rng = np.random.default_rng(self.seed)
        sizes = (self.input_dim, *self.hidden_dims, self.latent_dim)
        self.encoder = mlp(sizes, activation, negative_slope, rng, self.dtype, final_activation=False)
        self.decoder = self._build_decoder(rng)
        self.flatten_parameters()
        self.last_recon = float("nan")
        self.last_kl = 0.0

    def encode(self, x: Any) -> np.ndarray:
        """The code of each row of x (batch, input_dim): (batch, latent_dim).

        Raises ValueError naming ``x`` if the code overflows the model's dtype (huge parameters)."""
        x = self._as_batch(x)
        with np.errstate(over="ignore", invalid="ignore"):  # checked below
            return self._finite_output(self.encoder.forward(x), "code", "x", x).copy()

    def reconstruct(self, x: Any) -> np.ndarray:
        """decode(encode(x)): (batch, input_dim) decoder means.

        Raises ValueError naming ``x`` if the computation overflows the model's dtype."""
        x = self._as_batch(x)
        with np.errstate(over="ignore", invalid="ignore"):  # checked below
            decoded = self.decoder.forward(self._finite_output(self.encoder.forward(x), "code", "x", x))
            return self._mean_of(self._finite_output(decoded, "reconstruction", "x", x))

    def terms(self, x: Any, *, eps: Any = None, rng: Any = None) -> LossTerms:
        """Per-example (loss, recon, kl) with kl = 0 and loss = recon: the same shape of answer
        as ``VAE.terms``. ``eps`` and ``rng`` are accepted and unused: an AE is deterministic.
        Raises ValueError naming ``x`` if the loss overflows the model's dtype."""
        return self._deterministic_terms(x)

    def terms_unchecked(self, x: np.ndarray, eps: Any, rng: Any) -> LossTerms:
        """``terms`` on an array returned by ``validate``; values are not checked (an overflow
        gives inf or NaN). ``eps`` and ``rng`` are unused."""
        recon, _ = self._reconstruction_nll(self.decoder.forward(self.encoder.forward(x)), x)
        return LossTerms(recon, recon.copy(), np.zeros_like(recon))

    def loss_and_grads(
        self, x: Any, *, eps: Any = None, rng: Any = None, kl_weight: float | None = None
    ) -> float:
        """Mean reconstruction error over the batch; overwrite every parameter's grad with its
        derivative. The VAE's noise and KL keywords are accepted and unused, so that training
        code treats both models alike.

        Raises ValueError naming ``x`` if the loss overflows the model's dtype.
        """
        x = self._as_batch(x)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # checked below
            loss = self.loss_and_grads_unchecked(x, None, None, 0.0)
        if not math.isfinite(loss):
            raise self._loss_overflow_error(x)
        return loss

    def loss_and_grads_unchecked(self, x: np.ndarray, eps: Any, rng: Any, kl_weight: float) -> float:
        """``loss_and_grads`` on an array returned by ``validate`` (the training loop's entry); the
        noise and KL arguments are unused by an AE. Non-finite values propagate.

        L = mean over the batch of recon; dL/dlogits = grad_recon / batch, then the decoder's and
        the encoder's backward, which overwrite the grads (accumulate=False: no zero_grad pass).
        """
        recon, grad_decoded = self._reconstruction_nll(self.decoder.forward(self.encoder.forward(x)), x)
        grad_decoded *= 1.0 / x.shape[0]
        grad_code = self.decoder.backward(grad_decoded, accumulate=False)
        self.encoder.backward(grad_code, input_grad=False, accumulate=False)
        self.last_recon = float(recon.mean())
        return self.last_recon
