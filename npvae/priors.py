"""Priors over a VQ-VAE's code indices: what to sample from once the autoencoder is trained.

A VQ-VAE trains with a uniform prior over its codes (constant KL) and fits a prior afterwards
on the codes of the training set (van den Oord et al. 2017, sec. 3.3: PixelCNN there). Here
the codes of one example are a short sequence k_1 .. k_L (one index in 0 .. K-1 per latent
position), and two priors model them:

    CategoricalPrior   p(k) = prod_i p_i(k_i)                    independent positions
    MADEPrior          p(k) = prod_i p(k_i | k_1 .. k_{i-1})      autoregressive (Germain et al. 2015)

Both report log p(k) in nats (``log_prob``) and the mean negative log-likelihood (``nll``), so
the two are compared on held-out codes: the gap is what the dependence between positions is worth.

MADE: a dense network on the one-hot codes (batch, L * K) whose weights are masked so that the
logits of position i depend only on positions < i. Each unit gets a degree: input and output
units of position i get i + 1 (1 .. L), hidden units a degree m in 1 .. L - 1 (cyclically).
A hidden unit of degree m may read units of degree <= m; an output unit of degree d may read
hidden units of degree < d (strictly). Position 1's logits read nothing but their bias: its
marginal. Loss: the cross-entropy of each position's softmax, summed over positions.

    log p(k) = sum_i logits_{i,k_i} - logsumexp_j logits_{i,j}
    d(-log p)/d logits_{i,j} = softmax(logits_i)_j - [j = k_i]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.special

from . import _checks
from . import _kernels as kernels
from .activations import make_activation
from .nn import Dense, Module, Parameter, Sequential, as_float_dtype
from .optim import Adam

__all__ = ["MaskedDense", "MADEPrior", "CategoricalPrior"]


def _check_indices(indices: Any, num_latents: int, num_codes: int, name: str = "indices") -> np.ndarray:
    array = np.asarray(indices)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name}: expected an integer array, got dtype {array.dtype}")
    if array.ndim != 2 or array.shape[1] != num_latents or array.shape[0] == 0:
        raise ValueError(f"{name}: expected shape (batch, {num_latents}) with batch >= 1, got {array.shape}")
    if array.min() < 0 or array.max() >= num_codes:
        raise ValueError(f"{name}: expected values in [0, {num_codes}), got values in [{array.min()}, {array.max()}]")
    return array.astype(np.int64, copy=False)


def _draw(log_probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One category per row of log_probs (n, K), by the inverse CDF of a uniform draw."""
    probs = np.exp(log_probs - log_probs.max(axis=1, keepdims=True))
    cumulative = np.cumsum(probs, axis=1)
    u = rng.random(log_probs.shape[0]) * cumulative[:, -1]
    return np.minimum((cumulative <= u[:, None]).sum(axis=1), log_probs.shape[1] - 1)


class MaskedDense(Dense):
    """Dense layer with a fixed 0/1 mask on its weights: y = x @ (W * M) + b.

    Backward, with G = dL/dy: dL/dW += (x^T G) * M,  dL/db += sum over the batch of G,
    dL/dx = G (W * M)^T. Masked weights get zero gradient, so they never affect anything.
    """

    def __init__(self, in_features: int, out_features: int, mask: np.ndarray, *, rng: np.random.Generator,
                 init: str = "he", dtype: Any = np.float64) -> None:
        super().__init__(in_features, out_features, rng=rng, init=init, dtype=dtype)
        mask = np.asarray(mask)
        if mask.shape != (self.in_features, self.out_features):
            raise ValueError(f"mask: expected shape {(self.in_features, self.out_features)}, got {mask.shape}")
        self.mask = mask.astype(self.dtype)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._x = x
        self._masked = np.multiply(self.weight.value, self.mask, out=self._buffer("masked", self.mask.shape, self.dtype))
        y = self._buffer("y", (x.shape[0], self.out_features), self.dtype)
        return kernels.affine(x, self._masked, self.bias.value, out=y)

    def backward(self, grad_out: np.ndarray, *, input_grad: bool = True, accumulate: bool = True) -> np.ndarray | None:
        x = self._x
        grad_weight = self._buffer("grad_weight", self.mask.shape, self.dtype)
        kernels.matmul(x.T, grad_out, out=grad_weight, beta=0.0)
        grad_weight *= self.mask
        if accumulate:
            self.weight.grad += grad_weight
        else:
            self.weight.grad[...] = grad_weight
        kernels.column_sums(grad_out, out=self.bias.grad, beta=1.0 if accumulate else 0.0)
        if not input_grad:
            return None
        grad_x = self._buffer("grad_x", x.shape, self.dtype)
        return kernels.matmul(grad_out, self._masked.T, out=grad_x, beta=0.0)


def made_degrees(num_latents: int, num_codes: int, hidden_dims: Sequence[int]) -> list[np.ndarray]:
    """The degree of every unit, input first, output last: position i's K units get i + 1;
    hidden unit h of each layer gets (h mod (L - 1)) + 1 (1 when L = 1)."""
    io = np.repeat(np.arange(1, num_latents + 1), num_codes)
    hidden = [np.arange(width) % max(num_latents - 1, 1) + 1 for width in hidden_dims]
    return [io, *hidden, io]


def made_masks(degrees: list[np.ndarray]) -> list[np.ndarray]:
    """M[a, b] = 1 where unit b of the next layer may read unit a: degree_b >= degree_a between
    hidden layers (and from the input), degree_b > degree_a into the output."""
    masks = [(later[None, :] >= earlier[:, None]) for earlier, later in zip(degrees[:-2], degrees[1:-1])]
    masks.append(degrees[-1][None, :] > degrees[-2][:, None])
    return [mask.astype(np.float64) for mask in masks]


class MADEPrior(Module):
    """Autoregressive prior over code indices (module docstring): a masked MLP.

    Parameters
    ----------
    num_latents, num_codes : int
        L positions, K codes per position (the VQ-VAE's).
    hidden_dims : sequence of int
        Widths of the masked hidden layers.
    activation : str
        Hidden activation (as for the models).
    seed : int
        Seed of the initial weights.
    dtype : float32 or float64

    Layers: ``net`` (Sequential of MaskedDense and activations), one-hot in, logits (batch, L * K) out.
    """

    def __init__(self, num_latents: int, num_codes: int, hidden_dims: Sequence[int] = (256,),
                 activation: str = "relu", seed: int = 0, dtype: Any = np.float64) -> None:
        super().__init__()
        self.num_latents = _checks.positive_int("num_latents", num_latents)
        self.num_codes = _checks.positive_int("num_codes", num_codes)
        if isinstance(hidden_dims, (int, np.integer)):
            hidden_dims = (hidden_dims,)
        self.hidden_dims = tuple(_checks.positive_int(f"hidden_dims[{i}]", h) for i, h in enumerate(hidden_dims))
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
        self.seed = int(seed)
        self.activation = activation
        self.dtype = as_float_dtype(dtype)
        rng = np.random.default_rng(self.seed)
        width = self.num_latents * self.num_codes
        sizes = (width, *self.hidden_dims, width)
        masks = made_masks(made_degrees(self.num_latents, self.num_codes, self.hidden_dims))
        layers: list[Module] = []
        for index, (fan_in, fan_out, mask) in enumerate(zip(sizes[:-1], sizes[1:], masks)):
            last = index == len(masks) - 1
            layers.append(MaskedDense(fan_in, fan_out, mask, rng=rng, init="glorot" if last else "he", dtype=self.dtype))
            if not last:
                layers.append(make_activation(activation, 0.0))
        self.net = Sequential(*layers)
        self.flatten_parameters()

    def config(self) -> dict[str, Any]:
        return {"num_latents": self.num_latents, "num_codes": self.num_codes, "hidden_dims": list(self.hidden_dims),
                "activation": self.activation, "seed": self.seed, "dtype": str(self.dtype)}

    def _one_hot(self, indices: np.ndarray) -> np.ndarray:
        one_hot = np.zeros((indices.shape[0], self.num_latents * self.num_codes), dtype=self.dtype)
        columns = indices + self.num_codes * np.arange(self.num_latents)
        np.put_along_axis(one_hot, columns, 1.0, axis=1)
        return one_hot

    def logits(self, indices: Any) -> np.ndarray:
        """Logits (batch, L, K): row i is the distribution of position i given positions < i."""
        indices = _check_indices(indices, self.num_latents, self.num_codes)
        return self.net.forward(self._one_hot(indices)).reshape(-1, self.num_latents, self.num_codes).copy()

    def _log_prob(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(log p(k) per example, log-softmax (batch, L, K)) on validated indices."""
        logits = self.net.forward(self._one_hot(indices)).reshape(-1, self.num_latents, self.num_codes)
        log_softmax = logits - scipy.special.logsumexp(logits, axis=2, keepdims=True)
        picked = np.take_along_axis(log_softmax, indices[:, :, None], axis=2)[:, :, 0]
        return picked.sum(axis=1), log_softmax

    def log_prob(self, indices: Any) -> np.ndarray:
        """log p(k) in nats per example: indices (batch, L) -> (batch,)."""
        return self._log_prob(_check_indices(indices, self.num_latents, self.num_codes))[0]

    def nll(self, indices: Any) -> float:
        """Mean negative log-likelihood of the index rows, in nats per example."""
        return float(-self.log_prob(indices).mean(dtype=np.float64))

    def loss_and_grads(self, indices: Any) -> float:
        """Mean NLL over the batch; overwrite every parameter's grad with its derivative.

        dL/dlogits_{b,i,j} = (softmax(logits_{b,i})_j - [j = k_{b,i}]) / batch.
        """
        indices = _check_indices(indices, self.num_latents, self.num_codes)
        log_prob, log_softmax = self._log_prob(indices)
        grad = np.exp(log_softmax)
        np.put_along_axis(grad, indices[:, :, None], np.take_along_axis(grad, indices[:, :, None], axis=2) - 1.0, axis=2)
        grad *= 1.0 / indices.shape[0]
        self.net.backward(grad.reshape(indices.shape[0], -1), input_grad=False, accumulate=False)
        return float(-log_prob.mean())

    def fit(self, indices: Any, epochs: int, *, batch_size: int = 128, lr: float = 1e-3,
            rng: np.random.Generator) -> list[float]:
        """Train by Adam on the index rows (n, L) for ``epochs`` epochs, shuffled by ``rng``;
        return the mean training NLL of each epoch (nats)."""
        indices = _check_indices(indices, self.num_latents, self.num_codes)
        epochs = _checks.positive_int("epochs", epochs)
        batch_size = _checks.positive_int("batch_size", batch_size)
        rng = _checks.generator(rng)
        optimizer = Adam(self.parameters(), lr=_checks.real_number("lr", lr))
        losses = []
        for _ in range(epochs):
            order = rng.permutation(indices.shape[0])
            total = 0.0
            for start in range(0, indices.shape[0], batch_size):
                batch = indices[order[start : start + batch_size]]
                total += self.loss_and_grads(batch) * batch.shape[0]
                optimizer.step()
            losses.append(total / indices.shape[0])
        return losses

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n index rows (n, L) drawn position by position: L passes through the network."""
        n = _checks.positive_int("n", n)
        rng = _checks.generator(rng)
        indices = np.zeros((n, self.num_latents), dtype=np.int64)
        for position in range(self.num_latents):
            logits = self.net.forward(self._one_hot(indices)).reshape(n, self.num_latents, self.num_codes)
            indices[:, position] = _draw(logits[:, position], rng)
        return indices


class CategoricalPrior(Module):
    """Independent categorical per position: p(k) = prod_i softmax(logits_i)_{k_i}.

    ``fit`` sets the maximum-likelihood logits with add-``alpha`` (Laplace) smoothing in closed
    form: softmax(logits_i)_k = (count_{i,k} + alpha) / (n + K alpha). Parameter ``logits`` (L, K).
    """

    def __init__(self, num_latents: int, num_codes: int, alpha: float = 1.0, dtype: Any = np.float64) -> None:
        super().__init__()
        self.num_latents = _checks.positive_int("num_latents", num_latents)
        self.num_codes = _checks.positive_int("num_codes", num_codes)
        alpha = _checks.real_number("alpha", alpha)
        if not (math.isfinite(alpha) and alpha > 0):
            raise ValueError(f"alpha: expected a finite value > 0, got {alpha!r}")
        self.alpha = alpha
        self.dtype = as_float_dtype(dtype)
        self.logits = Parameter(np.zeros((self.num_latents, self.num_codes), dtype=self.dtype))

    def config(self) -> dict[str, Any]:
        return {"num_latents": self.num_latents, "num_codes": self.num_codes, "alpha": self.alpha,
                "dtype": str(self.dtype)}

    def fit(self, indices: Any) -> "CategoricalPrior":
        """Set the logits from the index rows (n, L); return self."""
        indices = _check_indices(indices, self.num_latents, self.num_codes)
        counts = np.stack([np.bincount(column, minlength=self.num_codes) for column in indices.T])
        self.logits.value[...] = np.log((counts + self.alpha) / (indices.shape[0] + self.num_codes * self.alpha))
        return self

    def _log_softmax(self) -> np.ndarray:
        logits = self.logits.value
        return logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)

    def log_prob(self, indices: Any) -> np.ndarray:
        """log p(k) in nats per example: indices (batch, L) -> (batch,)."""
        indices = _check_indices(indices, self.num_latents, self.num_codes)
        return self._log_softmax()[np.arange(self.num_latents), indices].sum(axis=1)

    def nll(self, indices: Any) -> float:
        """Mean negative log-likelihood of the index rows, in nats per example."""
        return float(-self.log_prob(indices).mean(dtype=np.float64))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n index rows (n, L), positions drawn independently."""
        n = _checks.positive_int("n", n)
        rng = _checks.generator(rng)
        log_probs = self._log_softmax()
        return np.stack([_draw(np.broadcast_to(row, (n, self.num_codes)), rng) for row in log_probs], axis=1)
