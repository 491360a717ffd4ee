"""The VQ-VAE (van den Oord, Vinyals & Kavukcuoglu 2017): an autoencoder whose code is a set of
indices into a learned codebook.

    encoder:   x -> z_e (batch, num_latents * code_dim), read as num_latents vectors of code_dim
    quantize:  k_i = argmin_k |z_e,i - e_k|^2,   z_q,i = e_{k_i}        (codebook E: num_codes rows)
    decoder:   z_q (the quantized vectors side by side) -> logits (or means)
    loss, per example (summed over its num_latents vectors), averaged over the batch:

        L = -log p(x | z_q) + sum_i |sg[z_e,i] - e_{k_i}|^2 + beta |z_e,i - sg[e_{k_i}]|^2
                               codebook term (loss mode)    commitment term

sg[.] is the stop-gradient: its argument counts as a constant when differentiating. The argmin
has no gradient, so the decoder's gradient is copied across it (the straight-through estimator,
paper eq. 3): z_q = z_e + sg[z_q - z_e] in value equals z_q, in gradient equals z_e. Hence

    dL/dz_e = dL/dz_q + 2 beta (z_e - e_k)          (straight-through + commitment)
    dL/de_k = 2 sum_{i: k_i = k} (e_k - z_e,i)      (codebook term only; loss mode)

With ``codebook="ema"`` the codebook term is dropped and the codebook follows exponential moving
averages instead (paper appendix A.1; Sonnet's VectorQuantizerEMA): with n_k the number of
vectors assigned to code k in the batch and s_k their sum,

    N_k <- decay N_k + (1 - decay) n_k,      m_k <- decay m_k + (1 - decay) s_k
    N~_k = (N_k + eps) / (sum_j N_j + K eps) * sum_j N_j        (Laplace smoothing, eps = 1e-5)
    e_k  = m_k / N~_k

The averages start at N_k = 1 and m_k = e_k (the initial codebook), so a code that is never
assigned keeps its vector instead of being divided by a vanishing count.

The VQ terms (codebook + beta * commitment per example) are reported in the ``kl`` field of
``LossTerms`` and ``last_kl``: the slot the VAE's KL holds (the VQ-VAE's own KL, log K per latent
against a uniform prior, is a constant and is left out, as in the paper).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import _checks
from .. import _kernels as kernels
from ..nn import Parameter
from .base import Autoencoder, LossTerms, mlp

__all__ = ["VQVAE", "code_usage"]

CODEBOOKS = ("loss", "ema")
EMA_EPSILON = 1e-5
_EMA_KEYS = ("codebook", "codebook_ema_count", "codebook_ema_sum")


def code_usage(counts: np.ndarray) -> tuple[float, float]:
    """(perplexity, fraction of codes used) of assignment counts (num_codes,).

    perplexity = exp(-sum_k p_k log p_k) with p_k = counts_k / sum(counts): the number of
    equally used codes that would give the same entropy (1 when one code takes every vector,
    num_codes when all are used equally).
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total == 0:
        return float("nan"), 0.0
    probs = counts[counts > 0] / total
    return float(np.exp(-np.sum(probs * np.log(probs)))), float(np.count_nonzero(counts) / counts.size)


def _sum_by_code(indices: np.ndarray, vectors: np.ndarray, num_codes: int, out: np.ndarray) -> np.ndarray:
    """out[k] = sum of vectors[i] over the rows i with indices[i] = k; out (num_codes, code_dim)."""
    out.fill(0)
    np.add.at(out, indices, vectors)
    return out


class VQVAE(Autoencoder):
    """Vector-quantized autoencoder on the dense engine (the loss in the module docstring).

    Parameters
    ----------
    input_dim : int
        Data dimension D.
    hidden_dims : sequence of int
        Widths of the encoder's hidden layers; the decoder mirrors them.
    num_latents : int
        Number of code vectors per example (each one index into the codebook).
    code_dim : int
        Dimension of each code vector. The encoder outputs num_latents * code_dim values.
    num_codes : int
        Number of codebook vectors K.
    beta : float
        Weight of the commitment term (0.25 in the paper).
    codebook : {"loss", "ema"}
        Learn the codebook by its loss term (a Parameter, trained by the optimizer) or by
        exponential moving averages (not a Parameter; updated by each training step).
    decay : float in [0, 1)
        EMA decay (ignored by the loss codebook).
    restart_dead_codes : bool
        At the end of every epoch of ``npvae.fit`` (``end_epoch``), move each code that no
        training vector was assigned to during the epoch onto a random encoder output of the
        epoch's last batch (Dhariwal et al. 2020, "Jukebox", sec. 3.2). Off by default.
    latent_dim : int or None
        The encoder's output width; None means num_latents * code_dim. Given, it must be a
        multiple of ``code_dim`` and equal num_latents * code_dim.
    activation, output, negative_slope, seed, dtype
        As for ``npvae.VAE``.

    Layers: ``encoder`` (Sequential, linear output), ``decoder`` (Sequential, logits out) and
    the codebook (num_codes, code_dim): the Parameter ``codebook`` in loss mode; in EMA mode
    the array ``codebook.value`` with the averages ``ema_count`` (num_codes,) and ``ema_sum``
    (num_codes, code_dim), all three saved by ``state_dict``.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dims: Sequence[int] = (400,),
        num_latents: int = 5,
        code_dim: int = 4,
        num_codes: int = 64,
        beta: float = 0.25,
        codebook: str = "loss",
        decay: float = 0.99,
        restart_dead_codes: bool = False,
        activation: str = "leaky_relu",
        output: str = "bernoulli",
        negative_slope: float = 0.2,
        seed: int = 0,
        dtype: Any = np.float64,
        latent_dim: int | None = None,
    ) -> None:
        num_latents = _checks.positive_int("num_latents", num_latents)
        code_dim = _checks.positive_int("code_dim", code_dim)
        if latent_dim is not None:
            latent_dim = _checks.positive_int("latent_dim", latent_dim)
            if latent_dim % code_dim:
                raise ValueError(f"code_dim: {code_dim} does not divide the encoder output width latent_dim={latent_dim}")
            if latent_dim != num_latents * code_dim:
                raise ValueError(f"num_latents: expected latent_dim / code_dim = {latent_dim // code_dim}, "
                                 f"got {num_latents}")
        super().__init__(input_dim, hidden_dims, num_latents * code_dim, activation, output, negative_slope,
                         seed, dtype)
        self.num_latents = num_latents
        self.code_dim = code_dim
        self.num_codes = _checks.positive_int("num_codes", num_codes)
        beta = _checks.real_number("beta", beta)
        if not (math.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta: expected a finite value >= 0, got {beta!r}")
        self.beta = beta
        if not isinstance(codebook, str) or codebook not in CODEBOOKS:
            raise ValueError(f"codebook: expected one of {CODEBOOKS}, got {codebook!r}")
        self.codebook_kind = codebook
        decay = _checks.real_number("decay", decay)
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay: expected a value in [0, 1), got {decay!r}")
        self.decay = decay
        if not isinstance(restart_dead_codes, (bool, np.bool_)):
            raise TypeError(f"restart_dead_codes: expected True or False, got {restart_dead_codes!r}")
        self.restart_dead_codes = bool(restart_dead_codes)
        rng = np.random.default_rng(self.seed)
        sizes = (self.input_dim, *self.hidden_dims, self.latent_dim)
        self.encoder = mlp(sizes, activation, negative_slope, rng, self.dtype, final_activation=False)
        self.decoder = self._build_decoder(rng)
        # U(-a, a) with a = sqrt(3 / code_dim), so E|e_k|^2 = 1 (Sonnet's VectorQuantizer default):
        # at the encoder's scale. From U(-1/K, 1/K) the encoder outputs ran away from a codebook
        # that the optimizer moved too slowly to follow (VQ terms of hundreds of nats on digits)
        limit = math.sqrt(3.0 / code_dim)
        initial = rng.uniform(-limit, limit, (self.num_codes, code_dim))
        codebook_parameter = Parameter(initial.astype(self.dtype))
        if codebook == "loss":
            self.codebook = codebook_parameter
        else:
            # not a Module attribute: the EMA owns these arrays, the optimizer never sees them
            object.__setattr__(self, "codebook", codebook_parameter)
            self.ema_count = np.ones(self.num_codes, dtype=self.dtype)
            self.ema_sum = codebook_parameter.value.copy()
        self.flatten_parameters()
        self.epoch_counts = np.zeros(self.num_codes, dtype=np.int64)
        self._last_z_e: np.ndarray | None = None
        self.last_recon = float("nan")
        self.last_kl = float("nan")
        self.last_perplexity = float("nan")
        self.last_codes_used = float("nan")

    def config(self) -> dict[str, Any]:
        return {**super().config(), "num_latents": self.num_latents, "code_dim": self.code_dim,
                "num_codes": self.num_codes, "beta": self.beta, "codebook": self.codebook_kind,
                "decay": self.decay, "restart_dead_codes": self.restart_dead_codes}

    # -- state: the parameters, and the EMA codebook with its averages ----------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """The parameters by dotted name; in EMA mode also ``codebook``, ``codebook_ema_count``
        and ``codebook_ema_sum`` (what an exact resume needs)."""
        state = super().state_dict()
        if self.codebook_kind == "ema":
            state.update(zip(_EMA_KEYS, (self.codebook.value.copy(), self.ema_count.copy(), self.ema_sum.copy())))
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """As ``Module.load_state_dict``, plus the EMA arrays in EMA mode; every array is checked
        before anything changes. Raises TypeError / ValueError naming ``state[key]``."""
        if self.codebook_kind != "ema" or not isinstance(state, Mapping):
            super().load_state_dict(state)
            return
        shapes = {"codebook": self.codebook.value.shape, "codebook_ema_count": self.ema_count.shape,
                  "codebook_ema_sum": self.ema_sum.shape}
        missing = [key for key in _EMA_KEYS if key not in state]
        if missing:
            raise ValueError(f"state: missing the EMA codebook arrays {missing}")
        converted = {}
        for key in _EMA_KEYS:
            array = np.asarray(state[key])
            if not np.issubdtype(array.dtype, np.floating):
                raise TypeError(f"state[{key!r}]: expected a float array, got dtype {array.dtype}")
            if array.shape != shapes[key]:
                raise ValueError(f"state[{key!r}]: expected shape {shapes[key]}, got {array.shape}")
            converted[key] = _checks.state_array(key, array, self.dtype)
        if (converted["codebook_ema_count"] < 0).any():
            raise ValueError("state['codebook_ema_count']: expected counts >= 0, found negative values")
        super().load_state_dict({key: value for key, value in state.items() if key not in _EMA_KEYS})
        self.codebook.value[...] = converted["codebook"]
        self.ema_count[...] = converted["codebook_ema_count"]
        self.ema_sum[...] = converted["codebook_ema_sum"]

    # -- quantization --------------------------------------------------------------------------------
    def _nearest(self, z_e_rows: np.ndarray) -> np.ndarray:
        """Index of the nearest codebook vector of each row (n, code_dim) -> (n,).

        |z - e_k|^2 = |z|^2 - 2 z.e_k + |e_k|^2: the products z.e_k of all rows and codes are one
        matrix product; |z|^2 is the same for every k of a row, so the argmin skips it.
        """
        codebook = self.codebook.value
        scores = self._buffer("scores", (z_e_rows.shape[0], self.num_codes), self.dtype)
        kernels.matmul(z_e_rows, codebook.T, out=scores, beta=0.0)
        scores *= -2.0
        scores += np.einsum("kd,kd->k", codebook, codebook)
        return scores.argmin(axis=1)

    def _quantize(self, x: np.ndarray, checked: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(z_e, indices, z_q) for validated x: z_e and z_q (batch, latent_dim), indices (batch * num_latents,).

        ``checked`` (the public methods): ValueError naming ``x`` if z_e overflows the model's
        dtype, instead of a NaN distance that would silently pick code 0."""
        if checked:
            with np.errstate(over="ignore", invalid="ignore"):  # checked here
                z_e = self._finite_output(self.encoder.forward(x), "encoder output", "x", x)
        else:
            z_e = self.encoder.forward(x)
        indices = self._nearest(z_e.reshape(-1, self.code_dim))
        z_q = self.codebook.value[indices].reshape(z_e.shape)
        return z_e, indices, z_q

    def _vq_weight(self) -> float:
        """The VQ terms per example are vq_weight * sum_i |z_e,i - e_{k_i}|^2: the codebook and
        commitment terms have the same value and differ only in where their gradient goes."""
        return (1.0 + self.beta) if self.codebook_kind == "loss" else self.beta

    # -- the public door -------------------------------------------------------------------------------
    def _as_indices(self, indices: Any) -> np.ndarray:
        array = np.asarray(indices)
        if not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"indices: expected an integer array, got dtype {array.dtype}")
        if array.ndim != 2 or array.shape[1] != self.num_latents or array.shape[0] == 0:
            raise ValueError(f"indices: expected shape (batch, {self.num_latents}) with batch >= 1, got {array.shape}")
        if array.min() < 0 or array.max() >= self.num_codes:
            raise ValueError(f"indices: expected values in [0, {self.num_codes}), got values in "
                             f"[{array.min()}, {array.max()}]")
        return array.astype(np.int64, copy=False)

    def encode(self, x: Any) -> np.ndarray:
        """The code indices of each row of x (batch, input_dim): (batch, num_latents) int64."""
        _, indices, _ = self._quantize(self._as_batch(x), checked=True)
        return indices.reshape(-1, self.num_latents)

    def decode_indices(self, indices: Any) -> np.ndarray:
        """Decode code indices (batch, num_latents) to decoder means (batch, input_dim)."""
        indices = self._as_indices(indices)
        z_q = self.codebook.value[indices.reshape(-1)].reshape(indices.shape[0], self.latent_dim)
        with np.errstate(over="ignore", invalid="ignore"):
            return self._mean_of(self._finite_output(self.decoder.forward(z_q), "decoder output", "indices", z_q))

    def reconstruct(self, x: Any) -> np.ndarray:
        """decode_indices(encode(x)): (batch, input_dim) decoder means."""
        x = self._as_batch(x)
        _, _, z_q = self._quantize(x, checked=True)
        with np.errstate(over="ignore", invalid="ignore"):
            return self._mean_of(self._finite_output(self.decoder.forward(z_q), "reconstruction", "x", x))

    def code_counts(self, x: Any, batch_size: int = 1000) -> np.ndarray:
        """How many of the latent vectors of x were assigned to each code: (num_codes,) int64."""
        x = self._as_batch(x)
        batch_size = _checks.positive_int("batch_size", batch_size)
        counts = np.zeros(self.num_codes, dtype=np.int64)
        for start in range(0, x.shape[0], batch_size):
            _, indices, _ = self._quantize(x[start : start + batch_size], checked=True)
            counts += np.bincount(indices, minlength=self.num_codes)
        return counts

    def perplexity(self, x: Any) -> float:
        """exp(entropy) of the code usage on x (see ``code_usage``): between 1 and num_codes."""
        return code_usage(self.code_counts(x))[0]

    def codes_used(self, x: Any) -> float:
        """Fraction of the codebook that at least one latent vector of x is assigned to."""
        return code_usage(self.code_counts(x))[1]

    def sample(self, n: int, rng: np.random.Generator, prior: Any = None) -> np.ndarray:
        """Draw n index sets from ``prior`` (a fitted ``npvae.MADEPrior`` or
        ``npvae.CategoricalPrior`` over this model's codes) and decode them: (n, input_dim)
        decoder means. A VQ-VAE has no fixed prior to sample from, so ``prior`` is required."""
        n = _checks.positive_int("n", n)
        rng = _checks.generator(rng)
        if prior is None:
            raise ValueError("prior: expected a fitted prior over the codes (npvae.MADEPrior or "
                             "npvae.CategoricalPrior), got None")
        if (getattr(prior, "num_latents", None), getattr(prior, "num_codes", None)) != (self.num_latents, self.num_codes):
            raise ValueError(f"prior: expected one over {self.num_latents} latents of {self.num_codes} codes, "
                             f"got {type(prior).__name__}")
        return self.decode_indices(prior.sample(n, rng))

    # -- the loss and its gradient ----------------------------------------------------------------------
    def terms_unchecked(self, x: np.ndarray, eps: Any, rng: Any) -> LossTerms:
        """``terms`` on an array returned by ``validate``; values are not checked (an overflow
        gives inf or NaN). ``eps`` and ``rng`` are unused."""
        z_e, _, z_q = self._quantize(x)
        recon, _ = self._reconstruction_nll(self.decoder.forward(z_q), x)
        diff = z_e - z_q
        vq = self._vq_weight() * np.einsum("ij,ij->i", diff, diff)
        return LossTerms(recon + vq, recon, vq)

    def terms(self, x: Any, *, eps: Any = None, rng: Any = None) -> LossTerms:
        """Per-example (loss, recon, vq) with loss = recon + vq, in the ``LossTerms`` fields
        (loss, recon, kl). ``eps`` and ``rng`` are accepted and unused: quantization is deterministic.
        Raises ValueError naming ``x`` if the loss overflows the model's dtype."""
        return self._deterministic_terms(x)

    def loss_and_grads(
        self, x: Any, *, eps: Any = None, rng: Any = None, kl_weight: float | None = None,
        update_codebook: bool = True,
    ) -> float:
        """Mean over the batch of recon + VQ terms; overwrite every parameter's grad with its
        derivative (straight-through, see the module docstring). This is a training step for
        the codebook bookkeeping: the assignments are added to ``epoch_counts`` and, in EMA mode
        with ``update_codebook``, the codebook takes one EMA step (after the gradients, which use
        the codebook as it was). The VAE's noise and KL keywords are accepted and unused.

        Raises ValueError naming ``x`` if the loss overflows the model's dtype, and naming
        ``codebook`` if the EMA step would make it non-finite (it is then left unchanged).
        """
        x = self._as_batch(x)
        if not isinstance(update_codebook, (bool, np.bool_)):
            raise TypeError(f"update_codebook: expected True or False, got {update_codebook!r}")
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # checked below
            loss = self.loss_and_grads_unchecked(x, None, None, 0.0, bool(update_codebook))
        if not math.isfinite(self.last_recon) or not math.isfinite(self.last_kl):
            raise self._loss_overflow_error(x)
        if not math.isfinite(loss):
            raise ValueError("codebook: the EMA update would make the codebook non-finite; it was left unchanged")
        return loss

    def loss_and_grads_unchecked(self, x: np.ndarray, eps: Any, rng: Any, kl_weight: float,
                                 update_codebook: bool = True) -> float:
        """``loss_and_grads`` on an array returned by ``validate`` (the training loop's entry).

        Returns NaN, with the EMA codebook left as it was, when the loss or the EMA step is not
        finite. The backward calls overwrite the grads (accumulate=False).
        """
        batch = x.shape[0]
        z_e, indices, z_q = self._quantize(x)
        recon, grad_decoded = self._reconstruction_nll(self.decoder.forward(z_q), x)
        grad_decoded *= 1.0 / batch
        # straight-through: dL/dz_q from the decoder is taken as dL/dz_e, plus the commitment term
        grad_z_e = self.decoder.backward(grad_decoded, accumulate=False)
        diff = self._buffer("diff", z_e.shape, self.dtype)
        np.subtract(z_e, z_q, out=diff)
        grad_z_e += (2.0 * self.beta / batch) * diff
        self.encoder.backward(grad_z_e, input_grad=False, accumulate=False)
        diff_rows = diff.reshape(-1, self.code_dim)
        if self.codebook_kind == "loss":
            # dL/de_k = (2 / batch) sum_{i: k_i = k} (e_k - z_e,i) = -(2 / batch) sum (z_e,i - e_k)
            _sum_by_code(indices, diff_rows, self.num_codes, out=self.codebook.grad)
            self.codebook.grad *= -2.0 / batch
        squared = np.einsum("ij,ij->i", diff, diff)
        self.last_recon = float(recon.mean())
        self.last_kl = self._vq_weight() * float(squared.mean())
        counts = np.bincount(indices, minlength=self.num_codes)
        self.epoch_counts += counts
        if self.restart_dead_codes:
            self._last_z_e = z_e.reshape(-1, self.code_dim).copy()
        if self.codebook_kind == "ema" and update_codebook and math.isfinite(self.last_recon + self.last_kl):
            if not self._ema_step(indices, counts, z_e.reshape(-1, self.code_dim)):
                return float("nan")
        return self.last_recon + self.last_kl

    def _ema_step(self, indices: np.ndarray, counts: np.ndarray, z_e_rows: np.ndarray) -> bool:
        """One EMA update of the codebook (module docstring); False, changing nothing, if the
        result is not finite."""
        sums = _sum_by_code(indices, z_e_rows, self.num_codes, out=self._buffer("sums", self.ema_sum.shape, self.dtype))
        ema_count = self.decay * self.ema_count + (1.0 - self.decay) * counts.astype(self.dtype)
        ema_sum = self.decay * self.ema_sum + (1.0 - self.decay) * sums
        total = ema_count.sum()
        smoothed = (ema_count + EMA_EPSILON) / (total + self.num_codes * EMA_EPSILON) * total
        codebook = ema_sum / smoothed[:, None]
        if not kernels.all_finite(codebook):
            return False
        self.ema_count[...] = ema_count
        self.ema_sum[...] = ema_sum
        self.codebook.value[...] = codebook
        return True

    def end_epoch(self, rng: np.random.Generator) -> tuple[float, float]:
        """Close a training epoch: return (perplexity, fraction of codes used) of the epoch's
        training assignments (``epoch_counts``), restart the dead codes if the model was built
        with ``restart_dead_codes`` (drawing from ``rng``), and reset the counts.

        A restarted code takes a uniformly drawn encoder output of the last training batch; in
        EMA mode its averages restart too (count 1, sum the new vector). ``npvae.fit`` calls this
        after every epoch.
        """
        rng = _checks.generator(rng)
        self.last_perplexity, self.last_codes_used = code_usage(self.epoch_counts)
        dead = np.flatnonzero(self.epoch_counts == 0)
        if self.restart_dead_codes and dead.size and self._last_z_e is not None:
            rows = rng.integers(0, self._last_z_e.shape[0], size=dead.size)
            self.codebook.value[dead] = self._last_z_e[rows]
            if self.codebook_kind == "ema":
                self.ema_count[dead] = 1.0
                self.ema_sum[dead] = self._last_z_e[rows]
        self.epoch_counts[...] = 0
        return self.last_perplexity, self.last_codes_used
