"""The seed's PyTorch sketch, with only its typos fixed, checked by npvae: the report names its bugs.

    python demos/check_the_seed.py              # PyTorch if installed, else a NumPy transliteration
    python demos/check_the_seed.py --numpy      # the NumPy transliteration either way

The sketch (docs/from-the-seed.md) does not run as written. Fixed here, and nothing else: the
constructor's ``hiddent_dim`` spelled ``hidden_dim``, ``super().__init__()`` called, ``enocde``
spelled ``encode``, and ``encode`` and ``sampling`` returning what they compute. Its other bugs
stay, for npvae to find:

    sampling: torch.rand_like (U(0, 1) noise) and z = mean + var * eps   -> uniform-noise, var-as-std
    forward:  self.decoder(z), so generation_layer is never used           -> skipped-layer
    the note's loss function is blank                                       -> missing: loss

npvae loads the sketch's weights (``npvae.interop.vae_from_state_dict`` knows its layer names),
calls its sampler many times, and compares its gradients with npvae's. The sketch has no loss,
so for the gradients it is given npvae's negative ELBO, written on the sketch's outputs.
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Callable
from typing import Any
from unittest import mock

import numpy as np

import npvae
from npvae.check import check_vae, finite_difference_grads
from npvae.interop import layer_names, off_path_layers, vae_from_state_dict

INPUT_DIM = 64  # the bundled 8x8 digits; the sketch's default 256 is a 16x16 image


def torch_sketch() -> tuple[Any, Callable, Callable]:
    """The sketch in PyTorch; returns (its state dict, its sampler on arrays, its gradients at (x, eps))."""
    import torch
    from torch import nn

    class VAE(nn.Module):  # the seed's code; the four typo fixes are marked "fixed:"
        def __init__(self, input_dim=256, hidden_dim=64, latent_num=2, latent_dim=32, device='cpu'):  # fixed: hidden_dim
            super().__init__()  # fixed: added
            self._device = device

            self.encoder = nn.Sequential(
                nn.Linear(input_dim, hidden_dim),
                nn.LeakyReLU(0.2),
                nn.Linear(hidden_dim, latent_dim),
                nn.LeakyReLU(0.2)
            )

            self.mean_layer = nn.Linear(latent_dim, latent_num)
            self.var_layer = nn.Linear(latent_dim, latent_num)

            self.generation_layer = nn.Sequential(
                nn.Linear(latent_num, latent_dim),
                nn.LeakyReLU(0.2)
            )

            self.decoder = nn.Sequential(
                nn.Linear(latent_num, hidden_dim),  # fixed: hiddent_dim
                nn.LeakyReLU(0.2),
                nn.Linear(hidden_dim, input_dim),
                nn.Sigmoid()
            )

        def encode(self, x):  # fixed: enocde
            x = self.encoder(x)
            mean = self.mean_layer(x)
            var = self.var_layer(x)
            return mean, var  # fixed: added

        def sampling(self, mean, var):
            epsilon = torch.rand_like(var).to(self._device)
            z = mean + var * epsilon
            return z  # fixed: added

        def decode(self, x):
            x = self.generation_layer(x)
            return self.decoder(x)

        def forward(self, x):
            mean, var = self.encode(x)
            z = self.sampling(mean, var)
            x_hat = self.decoder(z)
            return x_hat, mean, var

    torch.manual_seed(0)
    sketch = VAE(input_dim=INPUT_DIM).double()

    def sample(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return sketch.sampling(torch.from_numpy(mean), torch.from_numpy(var)).numpy()

    def grads(x: np.ndarray, eps: np.ndarray) -> dict[str, Any]:
        # the sketch's own noise replaced by npvae's eps, so that both compute the same thing
        with mock.patch("torch.rand_like", lambda like: torch.from_numpy(eps)):
            x_hat, mean, var = sketch(torch.from_numpy(x))
        recon = nn.functional.binary_cross_entropy(x_hat, torch.from_numpy(x), reduction="sum")
        kl = -0.5 * (1 + var - mean**2 - var.exp()).sum()  # npvae's KL, var read as a log-variance
        sketch.zero_grad(set_to_none=True)
        ((recon + kl) / x.shape[0]).backward()
        return {name: parameter.grad for name, parameter in sketch.named_parameters()}

    return sketch.state_dict(), sample, grads


class NumPySketch:
    """The same sketch in NumPy, line for line: Linear(in, out) is (weight (out, in), bias),
    initialised as torch does, U(-1/sqrt(in), 1/sqrt(in)); noise from ``rng.random`` (U(0, 1))."""

    def __init__(self, input_dim=256, hidden_dim=64, latent_num=2, latent_dim=32, seed=0):
        self.rng = np.random.default_rng(seed)
        sizes = {"encoder.0": (input_dim, hidden_dim), "encoder.2": (hidden_dim, latent_dim),
                 "mean_layer": (latent_dim, latent_num), "var_layer": (latent_dim, latent_num),
                 "generation_layer.0": (latent_num, latent_dim), "decoder.0": (latent_num, hidden_dim),
                 "decoder.2": (hidden_dim, input_dim)}
        self.params = {}
        for name, (fan_in, fan_out) in sizes.items():
            bound = 1 / np.sqrt(fan_in)
            self.params[f"{name}.weight"] = self.rng.uniform(-bound, bound, (fan_out, fan_in))
            self.params[f"{name}.bias"] = self.rng.uniform(-bound, bound, fan_out)

    def linear(self, name, x):
        return x @ self.params[f"{name}.weight"].T + self.params[f"{name}.bias"]

    def encode(self, x):
        leaky = lambda v: np.where(v > 0, v, 0.2 * v)  # noqa: E731
        x = leaky(self.linear("encoder.2", leaky(self.linear("encoder.0", x))))
        return self.linear("mean_layer", x), self.linear("var_layer", x)

    def sampling(self, mean, var):
        epsilon = self.rng.random(var.shape)
        return mean + var * epsilon

    def forward(self, x):  # like the sketch, straight into the decoder: generation_layer unused
        mean, var = self.encode(x)
        z = self.sampling(mean, var)
        hidden = self.linear("decoder.0", z)
        x_hat = 1 / (1 + np.exp(-self.linear("decoder.2", np.where(hidden > 0, hidden, 0.2 * hidden))))
        return x_hat, mean, var


def numpy_sketch(**sizes: int) -> tuple[Any, Callable, Callable]:
    """As ``torch_sketch``, on the NumPy transliteration (``sizes`` as its constructor's);
    gradients by central differences."""
    sketch = NumPySketch(**{"input_dim": INPUT_DIM, **sizes})

    def loss(x: np.ndarray, eps: np.ndarray) -> float:
        noise, sketch.rng = sketch.rng, mock.Mock(random=lambda shape: eps)  # npvae's eps for its noise
        try:
            x_hat, mean, var = sketch.forward(x)
        finally:
            sketch.rng = noise
        recon = -(x * np.log(x_hat) + (1 - x) * np.log1p(-x_hat)).sum()
        kl = -0.5 * (1 + var - mean**2 - np.exp(var)).sum()
        return (recon + kl) / x.shape[0]

    def grads(x: np.ndarray, eps: np.ndarray) -> dict[str, np.ndarray]:
        return finite_difference_grads(loss, sketch.params, x, eps)

    return sketch.params, sketch.sampling, grads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--numpy", action="store_true", help="check the NumPy transliteration even with torch")
    args = parser.parse_args()
    use_torch = not args.numpy and importlib.util.find_spec("torch") is not None
    state, sample, grads = torch_sketch() if use_torch else numpy_sketch()
    print(f"The seed's sketch in {'PyTorch' if use_torch else 'NumPy (torch is not installed)'}, "
          f"input_dim={INPUT_DIM} (8x8 digits), typos fixed.")

    x = npvae.datasets.load("digits", "test").x[:16].astype(np.float64)
    print(check_sketch(state, sample, grads, x))


def check_sketch(state: Any, sample: Callable, grads: Callable, x: np.ndarray) -> npvae.check.VAEReport:
    """npvae's copy of the sketch from its weights, then its sampler and gradients checked on x."""
    model = vae_from_state_dict(state)
    print(f"npvae read its layers {', '.join(layer_names(model))} into VAE({model.config()})")
    for name in off_path_layers(model):
        print(f"  {name}: its output ({state[name + '.weight'].shape[0]} wide) fits no input on the path "
              f"(the decoder reads z, {model.latent_dim} wide); left out")
    eps = np.random.default_rng(0).standard_normal((x.shape[0], model.latent_dim))
    print(f"checked on {x.shape[0]} test digits and one eps ~ N(0, I)\n")
    return check_vae(model, x=x, eps=eps, grads=grads, sample=sample)


if __name__ == "__main__":
    main()
