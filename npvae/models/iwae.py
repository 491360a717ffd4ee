"""The importance-weighted training objective (Burda, Grosse & Salakhutdinov 2016), by hand.

For each example x, k codes z_i = mu + sigma * eps_i share one encoder pass, and

    log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x)                                (eq. 8)
            = -recon_i - 1/2 |z_i|^2 + 1/2 |eps_i|^2 + 1/2 sum(logvar)
              (the log(2 pi) terms of p(z) and q(z|x) cancel; (z_i - mu) / sigma = eps_i)
    L_k     = logsumexp_i(log w_i) - log k,                 loss = -mean over the batch of L_k

Gradient (docs/derivations.md, "The IWAE objective"): with the normalised weights
w~_i = w_i / sum_j w_j = softmax_i(log w_i), dL_k/dlog w_i = w~_i, so the gradient of L_k is
the w~-weighted average of the per-sample gradients of log w_i (eq. 14). For a batch of B:

    dloss/drecon_i   = w~_i / B                   -> dloss/dlogits_i = w~_i / B * (sigmoid(l_i) - x)
    dloss/dz_i       = decoder.backward(dloss/dlogits_i) + w~_i / B * z_i     (log p(z) = -|z|^2/2)
    dloss/dmu        = sum_i dloss/dz_i
    dloss/dlogvar    = sum_i dloss/dz_i * eps_i * sigma / 2  -  1 / (2 B)     (sum_i w~_i = 1)

With k = 1 this is the one-sample Monte-Carlo ELBO; the VAE's ``iw_loss_and_grads`` with k = 1
uses the closed-form KL instead (``VAE.loss_and_grads``, the same loss, gradient and draws).
"""

from __future__ import annotations

import numpy as np
import scipy.special

__all__ = ["ImportanceWeighted"]


class ImportanceWeighted:
    """The IWAE objective as a part of ``VAE`` (a mixin: it reads the VAE's encoder, head, decoder
    and reconstruction term through ``self``, as the VAE's own methods do)."""

    def _iw_loss_and_grads(self, x: np.ndarray, eps: np.ndarray | None,
                           rng: np.random.Generator | None, k: int) -> float:
        """-mean L_k of the batch x (batch, input_dim), k >= 2; overwrite every grad of the model.

        ``eps`` (batch, k, latent_dim) or ``rng`` to draw it (in that shape, row-major). Leaves the
        batch means of the weighted reconstruction sum_i w~_i recon_i in ``self.last_recon`` and of
        the rest of the loss in ``self.last_kl`` (for k = 1 that rest would be the KL term).
        Inputs are trusted (checked by ``VAE.iw_loss_and_grads``, or ``VAE.validate`` in the training loop).
        """
        batch, latent = x.shape[0], self.latent_dim
        rows = batch * k
        mu, logvar = self._encode(x)
        if eps is None:
            eps = self._buffer("iw_eps", (batch, k, latent), self.dtype)
            rng.standard_normal(dtype=self.dtype, out=eps)
        eps_rows = eps.reshape(rows, latent)
        sigma = np.exp(0.5 * logvar)
        z = self._buffer("iw_z", (rows, latent), self.dtype)
        np.multiply(sigma[:, None, :], eps, out=z.reshape(batch, k, latent))
        z.reshape(batch, k, latent)[...] += mu[:, None, :]
        repeated_x = np.repeat(x, k, axis=0)
        recon, grad_decoded = self._reconstruction_nll(self.decoder.forward(z), repeated_x)
        # log w in float64: the weights are a softmax over k values that may differ by hundreds of nats
        log_w = -recon.astype(np.float64)
        log_w += 0.5 * (np.einsum("ij,ij->i", eps_rows, eps_rows, dtype=np.float64)
                        - np.einsum("ij,ij->i", z, z, dtype=np.float64))
        log_w = log_w.reshape(batch, k)
        log_w += 0.5 * logvar.sum(axis=1, dtype=np.float64)[:, None]
        log_sum = scipy.special.logsumexp(log_w, axis=1)
        weights = np.exp(log_w - log_sum[:, None])  # w~, each row sums to 1
        loss = float(-(log_sum - np.log(k)).mean())

        scale = (weights / batch).astype(self.dtype).reshape(rows, 1)  # dloss/drecon_i
        grad_decoded *= scale
        grad_z = self.decoder.backward(grad_decoded, accumulate=False)
        grad_z += scale * z                                             # from log p(z_i) = -|z_i|^2 / 2
        grad_stats = self._buffer("grad_stats", (batch, 2 * latent), self.dtype)
        grad_stats[:, :latent] = grad_z.reshape(batch, k, latent).sum(axis=1)
        grad_logvar = (grad_z * eps_rows).reshape(batch, k, latent).sum(axis=1)
        grad_logvar *= sigma
        grad_logvar *= 0.5
        grad_logvar -= self.dtype.type(0.5 / batch)                    # from 1/2 sum(logvar), times sum_i w~_i
        grad_stats[:, latent:] = grad_logvar
        grad_hidden = self.head.backward(grad_stats, accumulate=False)
        self.encoder.backward(grad_hidden, input_grad=False, accumulate=False)
        self.last_recon = float((weights * recon.reshape(batch, k)).sum(axis=1).mean())
        self.last_kl = loss - self.last_recon
        return loss
