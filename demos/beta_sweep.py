"""The beta-VAE trade-off: weighting the KL term by beta (Higgins et al. 2017) trades
reconstruction for a posterior closer to the prior.

    python demos/beta_sweep.py                # 8x8 digits, five short runs, about half a minute
    python demos/beta_sweep.py --data mnist   # MNIST (downloaded once), several minutes

Each run minimises recon + beta * KL with the same layers, seed and epochs. Small beta: sharp
reconstructions, a large KL, many latent dimensions in use. Large beta: the KL shrinks, whole
dimensions collapse to the prior ("active units", Burda et al. 2016: Var_x[mu(x)] > 0.01) and
reconstructions blur. The table gives test-set numbers in nats per image.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import npvae
import npvae.plots

SETTINGS = {  # data -> (hidden widths, epochs, learning rate)
    "digits": ([256, 128], 60, 3e-3),
    "mnist": ([512, 256], 5, 1e-3),
    "fashion-mnist": ([512, 256], 5, 1e-3),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=list(SETTINGS), default="digits")
    parser.add_argument("--betas", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0, 4.0])
    parser.add_argument("--latent-dim", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=None, help="per run; default: 60 for digits, 5 for MNIST")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="directory with the MNIST / Fashion-MNIST IDX files (default: $NPVAE_DATA/<data>, $NPVAE_MNIST_DIR for MNIST, else ~/.cache/npvae/<data>)")
    parser.add_argument("--out", type=Path, default=Path("demos_out/beta_sweep"))
    args = parser.parse_args()
    hidden, epochs, lr = SETTINGS[args.data]
    epochs = args.epochs or epochs

    if args.data_dir is not None and not args.data_dir.is_dir():
        parser.error(f"--data-dir {args.data_dir}: no such directory")
    try:
        train = npvae.datasets.load(args.data, "train", args.data_dir)
        test = npvae.datasets.load(args.data, "test", args.data_dir)
    except OSError as error:  # files missing and not downloadable, or unreadable
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    print(f"VAE {train.x.shape[1]} -> {hidden} -> {args.latent_dim} on {args.data}, {epochs} epochs per beta, "
          f"Adam lr {lr:g}, batch 128, seed {args.seed}\n")
    print(f"{'beta':>6}{'recon':>9}{'KL':>8}{'recon + KL':>12}{'active dims':>13}{'seconds':>9}")
    recon, kl, samples = [], [], []
    z = np.random.default_rng(args.seed).standard_normal((32, args.latent_dim))  # shared by every model
    for beta in args.betas:
        model = npvae.VAE(train.x.shape[1], hidden, args.latent_dim, beta=beta, seed=args.seed, dtype=np.float32)
        started = time.perf_counter()
        npvae.fit(model, train.x, epochs, batch_size=128, optimizer=npvae.Adam(model.parameters(), lr=lr),
                  seed=args.seed)
        terms = npvae.evaluate(model, test.x, rng=np.random.default_rng(args.seed))
        mu, _ = model.encode(test.x)
        active = int((mu.var(axis=0) > 0.01).sum())
        recon.append(terms["recon"])
        kl.append(terms["kl"])
        samples.append(model.decode(z))
        print(f"{beta:>6g}{terms['recon']:>9.2f}{terms['kl']:>8.2f}{terms['recon'] + terms['kl']:>12.2f}"
              f"{active:>8} of {args.latent_dim}{time.perf_counter() - started:>9.1f}")

    written = [
        npvae.plots.save_beta_sweep(args.betas, recon, kl, args.out / "beta_sweep.png"),
        npvae.plots.save_side_by_side(samples, train.image_shape, args.out / "samples_by_beta.png",
                                      titles=[f"β = {beta:g}" for beta in args.betas], ncols=4,
                                      title="The same 32 codes z ~ N(0, I), decoded by each model"),
    ]
    print("\nrecon + KL is the negative ELBO (beta = 1), the bound on -log p(x) each model reaches.")
    print("wrote", *written, sep="\n  ")


if __name__ == "__main__":
    main()
