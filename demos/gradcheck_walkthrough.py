"""Check every hand-written gradient of a small VAE against finite differences, then show a
deliberately broken backward being caught.

    python demos/gradcheck_walkthrough.py

The VAE's loss, with the noise eps held fixed, is an ordinary function of the parameters, so
each parameter's gradient from ``loss_and_grads`` can be compared entry by entry with central
differences (f(theta + h) - f(theta - h)) / 2h. Runs in float64, in about a second.
"""

from __future__ import annotations

import argparse

import numpy as np

import npvae


class ForgetsTheHalf(npvae.Reparameterization):
    """z = mu + exp(logvar / 2) * eps with a backward that drops the 1/2 of d sigma / d logvar,
    a slip that still trains (the gradient points the right way) and is wrong by a factor 2."""

    def backward(self, grad_z):
        grad_mu, grad_logvar = super().backward(grad_z)
        grad_logvar *= 2.0
        return grad_mu, grad_logvar


def check(model, x, eps, step):
    """gradcheck of the mean loss over (x, eps) with respect to every parameter of ``model``."""
    names, parameters = zip(*model.named_parameters())

    def loss_and_grads(*values):  # the values are the parameters' own arrays, perturbed in place
        loss = model.loss_and_grads(x, eps=eps)
        return loss, [parameter.grad.copy() for parameter in parameters]

    return npvae.gradcheck(loss_and_grads, [p.value for p in parameters], names=names, step=step)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    model = npvae.VAE(input_dim=12, hidden_dims=[8, 6], latent_dim=3, seed=args.seed, dtype=np.float64)
    x = rng.uniform(size=(5, 12))                   # 5 "images" of 12 pixels in [0, 1]
    eps = rng.standard_normal((5, 3))               # the noise, fixed: the loss is deterministic
    print(f"VAE(input_dim=12, hidden_dims=[8, 6], latent_dim=3), float64, {model.num_parameters()} parameters")
    print(f"loss = mean over a batch of 5 of recon + KL, eps fixed; central differences, h = 1e-6\n")

    report = check(model, x, eps, step=1e-6)
    print(report)
    print(f"\nworst relative error over all parameters: {report.max_rel_error:.1e}")
    if not report.passed:
        raise SystemExit("unexpected: a correct backward failed the check")
    print("all gradients match their finite differences\n")

    print("Now the same VAE with a broken reparameterization backward:")
    print("  dL/dlogvar = dL/dz * eps * sigma      (the correct one has a factor 1/2)\n")
    model.reparam = ForgetsTheHalf()
    broken = check(model, x, eps, step=1e-6)
    print(broken)
    failed = [entry.name for entry in broken.entries if not entry.passed]
    if not failed:
        raise SystemExit("unexpected: the broken backward passed the check")
    print(f"\ncaught: {len(failed)} of {len(broken.entries)} arrays fail, {', '.join(failed)};")
    print("the decoder's arrays still pass: the bug lies between the decoder and the encoder.")


if __name__ == "__main__":
    main()
