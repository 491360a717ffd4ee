"""A whole variational autoencoder in one file of plain NumPy: read this page first.

Everything a VAE needs, top to bottom, each formula beside the line that computes it:
dense layers and LeakyReLU with their backward passes, the encoder's Gaussian q(z|x), the
reparameterization z = mu + sigma * eps, the Bernoulli decoder's loss from logits, the
closed-form KL, Adam, and a training loop on the 8x8 digits bundled with npvae. The model part
imports nothing but NumPy; npvae only supplies the data (``main``).

npvae is the same network, made fast and checked (``npvae.VAE(64, (128,), 2)``):
``tests/test_vae_from_scratch.py`` gives both the same weights and the same eps and asserts
that the loss and every gradient agree to 1e-12.

    python demos/vae_from_scratch.py          trains for 20 epochs (seconds) and prints the loss
"""

from __future__ import annotations

import argparse

import numpy as np

SLOPE = 0.2  # LeakyReLU's slope for x < 0


# -- 1. Layers: each forward with its backward ---------------------------------------------------
def dense(x, W, b):
    """y = x @ W + b.   x (batch, n_in), W (n_in, n_out), b (n_out,)."""
    return x @ W + b


def dense_backward(x, W, grad_y):
    """From dL/dy: dL/dW = x^T dL/dy,  dL/db = sum over the batch of dL/dy,  dL/dx = dL/dy W^T."""
    return x.T @ grad_y, grad_y.sum(axis=0), grad_y @ W.T


def leaky_relu(x):
    """y = x if x > 0 else SLOPE * x."""
    return np.where(x > 0, x, SLOPE * x)


def leaky_relu_backward(x, grad_y):
    """dL/dx = dL/dy * (1 if x > 0 else SLOPE)."""
    return grad_y * np.where(x > 0, 1.0, SLOPE)


# -- 2. The two terms of the loss (per example, summed over dimensions) -----------------------------
def bce_with_logits(logits, x):
    """-log Bernoulli(x | sigmoid(l)) = softplus(l) - x l, with softplus(l) = max(l, 0) + log(1 + e^-|l|)
    (exp never overflows).   d/dl = sigmoid(l) - x."""
    value = np.sum(np.maximum(logits, 0) - x * logits + np.log1p(np.exp(-np.abs(logits))), axis=1)
    return value, 1.0 / (1.0 + np.exp(-logits)) - x


def gaussian_kl(mu, logvar):
    """KL(N(mu, e^logvar) || N(0, 1)) = 1/2 sum(mu^2 + e^logvar - 1 - logvar)   (Kingma & Welling, App. B).
    d/dmu = mu,   d/dlogvar = (e^logvar - 1) / 2."""
    value = 0.5 * np.sum(mu**2 + np.exp(logvar) - 1.0 - logvar, axis=1)
    return value, mu, 0.5 * (np.exp(logvar) - 1.0)


# -- 3. The VAE: x -> h -> (mu, logvar) -> z -> h' -> logits ------------------------------------
def init_params(input_dim, hidden_dim, latent_dim, rng):
    """Weights ~ N(0, 2 / n_in) (He et al. 2015), biases 0. Names as npvae's (and PyTorch's) modules."""
    shapes = {"encoder.0": (input_dim, hidden_dim), "head": (hidden_dim, 2 * latent_dim),
              "decoder.0": (latent_dim, hidden_dim), "decoder.2": (hidden_dim, input_dim)}
    params = {}
    for layer, (n_in, n_out) in shapes.items():
        params[layer + ".weight"] = rng.normal(0.0, np.sqrt(2.0 / n_in), (n_in, n_out))
        params[layer + ".bias"] = np.zeros(n_out)
    return params


def loss_and_grads(params, x, eps, beta=1.0):
    """The negative ELBO, averaged over the batch, and its gradient for every parameter.

    L = mean over examples of [ -log p(x | z) + beta * KL(q(z|x) || p(z)) ],  z = mu + sigma * eps.
    """
    p, batch = params, x.shape[0]
    latent_dim = p["decoder.0.weight"].shape[0]
    # forward: the encoder gives q(z|x) = N(mu, exp(logvar))
    a1 = dense(x, p["encoder.0.weight"], p["encoder.0.bias"])
    h1 = leaky_relu(a1)
    stats = dense(h1, p["head.weight"], p["head.bias"])
    mu, logvar = stats[:, :latent_dim], stats[:, latent_dim:]
    # reparameterization: z is a differentiable function of (mu, logvar); eps carries the noise
    sigma = np.exp(0.5 * logvar)
    z = mu + sigma * eps
    # the decoder gives the logits of p(x|z)
    a2 = dense(z, p["decoder.0.weight"], p["decoder.0.bias"])
    h2 = leaky_relu(a2)
    logits = dense(h2, p["decoder.2.weight"], p["decoder.2.bias"])
    recon, grad_logits = bce_with_logits(logits, x)
    kl, grad_mu_kl, grad_logvar_kl = gaussian_kl(mu, logvar)
    loss = np.mean(recon + beta * kl)

    # backward: the chain rule from the loss to the first weight, dividing by the batch once
    grads = {}
    grad_logits = grad_logits / batch                                      # dL/dlogits
    grads["decoder.2.weight"], grads["decoder.2.bias"], grad_h2 = dense_backward(h2, p["decoder.2.weight"], grad_logits)
    grad_a2 = leaky_relu_backward(a2, grad_h2)
    grads["decoder.0.weight"], grads["decoder.0.bias"], grad_z = dense_backward(z, p["decoder.0.weight"], grad_a2)
    grad_mu = grad_z + beta * grad_mu_kl / batch                           # dz/dmu = 1
    grad_logvar = grad_z * eps * sigma / 2 + beta * grad_logvar_kl / batch  # dz/dlogvar = eps sigma / 2
    grad_stats = np.concatenate([grad_mu, grad_logvar], axis=1)
    grads["head.weight"], grads["head.bias"], grad_h1 = dense_backward(h1, p["head.weight"], grad_stats)
    grad_a1 = leaky_relu_backward(a1, grad_h1)
    grads["encoder.0.weight"], grads["encoder.0.bias"], _ = dense_backward(x, p["encoder.0.weight"], grad_a1)
    return loss, grads


# -- 4. Adam (Kingma & Ba 2015, Algorithm 1) ---------------------------------------------------------
def adam_step(params, grads, state, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    """m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2;
    p = p - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)."""
    state["t"] += 1
    t = state["t"]
    for name, g in grads.items():
        m = state["m"][name] = beta1 * state["m"][name] + (1 - beta1) * g
        v = state["v"][name] = beta2 * state["v"][name] + (1 - beta2) * g**2
        params[name] -= lr * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)


def adam_state(params):
    return {"t": 0, "m": {n: np.zeros_like(p) for n, p in params.items()},
            "v": {n: np.zeros_like(p) for n, p in params.items()}}


# -- 5. Training: minibatches in a new order each epoch, one eps per example per step ----------------
def train(params, x_train, epochs, batch_size, rng, lr=1e-3):
    state = adam_state(params)
    latent_dim = params["decoder.0.weight"].shape[0]
    for epoch in range(1, epochs + 1):
        order = rng.permutation(x_train.shape[0])
        total = 0.0
        for start in range(0, x_train.shape[0], batch_size):
            x = x_train[order[start : start + batch_size]]
            eps = rng.standard_normal((x.shape[0], latent_dim))
            loss, grads = loss_and_grads(params, x, eps)
            adam_step(params, grads, state, lr=lr)
            total += loss * x.shape[0]
        if epoch == 1 or epoch % 5 == 0 or epoch == epochs:
            print(f"epoch {epoch:3d}   loss {total / x_train.shape[0]:8.3f} nats per image")
    return params


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from npvae.datasets import load  # the data only: 8x8 digits scaled to [0, 1]

    x_train, x_test = load("digits", "train", dtype=np.float64).x, load("digits", "test", dtype=np.float64).x
    rng = np.random.default_rng(args.seed)
    params = init_params(64, 128, 2, rng)
    print(f"VAE 64-128-2 on {x_train.shape[0]} digits, Adam lr 1e-3, batch 100, {args.epochs} epochs")
    train(params, x_train, args.epochs, 100, rng)
    test_loss, _ = loss_and_grads(params, x_test, rng.standard_normal((x_test.shape[0], 2)))
    print(f"test: -ELBO {test_loss:.3f} nats per image (one z per image)")


if __name__ == "__main__":
    main()
