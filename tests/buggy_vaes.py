"""Small VAEs written as a user would write them, in PyTorch and in NumPy, each bug id of
``npvae.check.BUGS`` plantable alone or with others. Shared by tests/test_check.py and
demos/check_false_alarms.py.

Both classes offer the same interface, on NumPy arrays:
    state_dict()          torch-layout weights, keys in forward order
    loss(x, eps)          the user's loss with this noise (batch mean unless batch_sum)
    grads(x, eps)         its gradient per parameter name (torch: autograd; NumPy: central differences)
    sample(mu, logvar)    the user's z, drawing its own noise
    npvae_model()         npvae's VAE with the same weights (npvae.interop.vae_from_state_dict)

The network: encoder layers ``enc{i}`` (activation after each), heads ``mu`` and ``logvar``, then
the decoder ``dec{i}`` (mirrored widths), with ``square=True`` one extra hidden->hidden layer
``dec_sq`` before the output layer ``dec_out`` (the layer ``skipped-layer`` leaves out).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from npvae.check import finite_difference_grads
from npvae.interop import vae_from_state_dict

SAMPLER_BUGS = ("uniform-noise", "var-as-std", "logvar-as-logstd", "no-noise")
Z_BUGS = ("var-as-std", "logvar-as-logstd", "no-noise")
KL_FORM_BUGS = ("kl-sigma-as-variance", "kl-logvar-as-logstd")
KL_BUGS = ("kl-sign", *KL_FORM_BUGS, "kl-mean-over-latent")


def compatible(bugs: tuple[str, ...]) -> bool:
    """Whether the bugs can be planted together (one sampler rule, one KL formula, a missing KL
    with no other KL change, and uniform noise only where noise is drawn)."""
    bugs = set(bugs)
    if len(bugs & set(Z_BUGS)) > 1 or len(bugs & set(KL_FORM_BUGS)) > 1:
        return False
    if "kl-missing" in bugs and bugs & set(KL_BUGS):
        return False
    return not {"no-noise", "uniform-noise"} <= bugs


def _layer_sizes(input_dim: int, hidden: tuple[int, ...], latent: int, square: bool) -> dict[str, tuple[int, int]]:
    sizes = {}
    widths = (input_dim, *hidden)
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        sizes[f"enc{i}"] = (a, b)
    sizes["mu"] = sizes["logvar"] = (widths[-1], latent)
    back = (latent, *reversed(hidden))
    for i, (a, b) in enumerate(zip(back[:-1], back[1:])):
        sizes[f"dec{i}"] = (a, b)
    if square and hidden:
        sizes["dec_sq"] = (hidden[0], hidden[0])
    sizes["dec_out"] = (back[-1], input_dim)
    return sizes


class _Base:
    def __init__(self, bugs: tuple[str, ...] = (), *, seed: int = 0, input_dim: int = 10,
                 hidden: tuple[int, ...] = (6,), latent: int = 3, activation: str = "leaky_relu",
                 output: str = "bernoulli", square: bool = True, batch_sum: bool = False,
                 bce_clamp: bool = False) -> None:
        self.bugs = frozenset(bugs)
        self.activation, self.output, self.batch_sum, self.bce_clamp = activation, output, batch_sum, bce_clamp
        self.sizes = _layer_sizes(input_dim, hidden, latent, square)
        self.encoder_names = [n for n in self.sizes if n.startswith("enc")]
        self.decoder_names = [n for n in self.sizes if n.startswith("dec")]
        self.seed = seed

    def npvae_model(self) -> Any:
        return vae_from_state_dict(self.state_dict(), activation=self.activation, output=self.output)

    def _decoder_path(self) -> list[str]:
        return [n for n in self.decoder_names if not (n == "dec_sq" and "skipped-layer" in self.bugs)]


class TorchVAE(_Base):
    """The VAE in PyTorch (float64), bugs planted."""

    def __init__(self, bugs: tuple[str, ...] = (), **options: Any) -> None:
        super().__init__(bugs, **options)
        import torch
        from torch import nn

        self.torch = torch
        torch.manual_seed(self.seed)
        self.layers = nn.ModuleDict({n: nn.Linear(a, b, dtype=torch.float64) for n, (a, b) in self.sizes.items()})
        self.generator = torch.Generator().manual_seed(self.seed + 1)

    def state_dict(self) -> dict[str, Any]:
        return {k.removeprefix("layers."): v for k, v in self.layers.state_dict().items()}

    def _act(self, v: Any) -> Any:
        F = self.torch.nn.functional
        return {"leaky_relu": lambda: F.leaky_relu(v, 0.2), "relu": lambda: F.relu(v), "tanh": lambda: self.torch.tanh(v),
                "sigmoid": lambda: self.torch.sigmoid(v), "identity": lambda: v}[self.activation]()

    def _z(self, mu: Any, h: Any, eps: Any) -> Any:
        torch, b = self.torch, self.bugs
        if eps is None:
            eps = (torch.rand(mu.shape, generator=self.generator, dtype=mu.dtype) if "uniform-noise" in b
                   else torch.randn(mu.shape, generator=self.generator, dtype=mu.dtype))
        if "no-noise" in b:
            return mu
        if "var-as-std" in b:
            return mu + h * eps
        if "logvar-as-logstd" in b:
            return mu + torch.exp(h) * eps
        return mu + torch.exp(0.5 * h) * eps

    def sample(self, mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            return self._z(self.torch.from_numpy(mu), self.torch.from_numpy(logvar), None).numpy()

    def _loss(self, x: np.ndarray, eps: np.ndarray) -> Any:
        torch, F, b, L = self.torch, self.torch.nn.functional, self.bugs, self.layers
        x, eps = torch.from_numpy(x), torch.from_numpy(eps)
        h = x
        for name in self.encoder_names:
            h = self._act(L[name](h))
        mu, lv = L["mu"](h), L["logvar"](h)
        out = self._z(mu, lv, eps)
        path = self._decoder_path()
        for name in path[:-1]:
            out = self._act(L[name](out))
        out = L[path[-1]](out)
        if self.output == "gaussian":
            recon = 0.5 * ((out - x) ** 2).sum(1) + 0.5 * np.log(2 * np.pi) * x.shape[1]
        elif "sigmoid-twice" in b:
            recon = F.binary_cross_entropy_with_logits(torch.sigmoid(out), x, reduction="none").sum(1)
        elif self.bce_clamp:
            recon = F.binary_cross_entropy(torch.sigmoid(out), x, reduction="none").sum(1)
        else:
            recon = F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(1)
        if "recon-mean-kl-sum" in b:
            recon = recon / x.shape[1]
        if "kl-sigma-as-variance" in b:
            terms = 1 + lv - mu**2 - torch.exp(0.5 * lv)
        elif "kl-logvar-as-logstd" in b:
            terms = 1 + 2 * lv - mu**2 - torch.exp(2 * lv)
        else:
            terms = 1 + lv - mu**2 - torch.exp(lv)
        kl = -0.5 * (terms.mean(1) if "kl-mean-over-latent" in b else terms.sum(1))
        total = recon + (0.0 if "kl-missing" in b else (-kl if "kl-sign" in b else kl))
        return total.sum() if self.batch_sum else total.mean()

    def loss(self, x: np.ndarray, eps: np.ndarray) -> float:
        with self.torch.no_grad():
            return float(self._loss(x, eps))

    def grads(self, x: np.ndarray, eps: np.ndarray) -> dict[str, Any]:
        self.layers.zero_grad(set_to_none=True)
        self._loss(x, eps).backward()
        return {k.removeprefix("layers."): p.grad for k, p in self.layers.named_parameters()}


class NumPyVAE(_Base):
    """The VAE in NumPy (float64), bugs planted; gradients by central differences."""

    def __init__(self, bugs: tuple[str, ...] = (), **options: Any) -> None:
        super().__init__(bugs, **options)
        rng = np.random.default_rng(self.seed)
        self.params = {}
        for name, (a, b) in self.sizes.items():
            bound = 1 / np.sqrt(a)
            self.params[f"{name}.weight"] = rng.uniform(-bound, bound, (b, a))
            self.params[f"{name}.bias"] = rng.uniform(-bound, bound, b)
        self.rng = np.random.default_rng(self.seed + 1)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.params.items()}

    def _linear(self, name: str, v: np.ndarray) -> np.ndarray:
        return v @ self.params[f"{name}.weight"].T + self.params[f"{name}.bias"]

    def _act(self, v: np.ndarray) -> np.ndarray:
        return {"leaky_relu": lambda: np.where(v > 0, v, 0.2 * v), "relu": lambda: np.maximum(v, 0),
                "tanh": lambda: np.tanh(v), "sigmoid": lambda: 1 / (1 + np.exp(-v)),
                "identity": lambda: v}[self.activation]()

    def _z(self, mu: np.ndarray, h: np.ndarray, eps: np.ndarray | None) -> np.ndarray:
        b = self.bugs
        if eps is None:
            eps = self.rng.random(mu.shape) if "uniform-noise" in b else self.rng.standard_normal(mu.shape)
        if "no-noise" in b:
            return mu
        if "var-as-std" in b:
            return mu + h * eps
        if "logvar-as-logstd" in b:
            return mu + np.exp(h) * eps
        return mu + np.exp(0.5 * h) * eps

    def sample(self, mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
        return self._z(mu, logvar, None)

    def loss(self, x: np.ndarray, eps: np.ndarray) -> float:
        b = self.bugs
        h = x
        for name in self.encoder_names:
            h = self._act(self._linear(name, h))
        mu, lv = self._linear("mu", h), self._linear("logvar", h)
        out = self._z(mu, lv, eps)
        path = self._decoder_path()
        for name in path[:-1]:
            out = self._act(self._linear(name, out))
        out = self._linear(path[-1], out)
        if self.output == "gaussian":
            recon = 0.5 * ((out - x) ** 2).sum(1) + 0.5 * np.log(2 * np.pi) * x.shape[1]
        else:
            logits = 1 / (1 + np.exp(-out)) if "sigmoid-twice" in b else out
            recon = (np.logaddexp(0, logits) - x * logits).sum(1)
        if "recon-mean-kl-sum" in b:
            recon = recon / x.shape[1]
        if "kl-sigma-as-variance" in b:
            terms = 1 + lv - mu**2 - np.exp(0.5 * lv)
        elif "kl-logvar-as-logstd" in b:
            terms = 1 + 2 * lv - mu**2 - np.exp(2 * lv)
        else:
            terms = 1 + lv - mu**2 - np.exp(lv)
        kl = -0.5 * (terms.mean(1) if "kl-mean-over-latent" in b else terms.sum(1))
        total = recon + (0.0 if "kl-missing" in b else (-kl if "kl-sign" in b else kl))
        return float(total.sum() if self.batch_sum else total.mean())

    def grads(self, x: np.ndarray, eps: np.ndarray) -> dict[str, np.ndarray]:
        return finite_difference_grads(self.loss, self.params, x, eps)


def data(input_dim: int = 10, latent: int = 3, batch: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """x in [0, 1] (batch, input_dim) and eps ~ N(0, I) (batch, latent), from one seeded generator."""
    rng = np.random.default_rng(seed)
    return rng.uniform(size=(batch, input_dim)), rng.standard_normal((batch, latent))
