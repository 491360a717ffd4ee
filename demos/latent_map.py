"""A VAE with a 2-D latent space: where the encoder puts each digit, and what the decoder draws
at each point.

    python demos/latent_map.py                # 8x8 digits, about ten seconds
    python demos/latent_map.py --data mnist   # MNIST (downloaded once), a few minutes

Two views of one latent plane. latent_scatter.png: the posterior mean mu(x) of every test image,
coloured by its label; the KL term keeps the cloud near N(0, I). manifold.png: the decoder's
output on a grid of N(0, 1) quantiles (Kingma & Welling 2013, Fig. 4), so each region of the
scatter can be read off as the images drawn there.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import npvae
import npvae.plots

SETTINGS = {  # data -> (hidden widths, epochs, learning rate)
    "digits": ([256, 128], 150, 3e-3),
    "mnist": ([512, 256], 10, 1e-3),
    "fashion-mnist": ([512, 256], 10, 1e-3),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=list(SETTINGS), default="digits")
    parser.add_argument("--epochs", type=int, default=None, help="default: 150 for digits, 10 for MNIST")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="directory with the MNIST / Fashion-MNIST IDX files (default: $NPVAE_DATA/<data>, $NPVAE_MNIST_DIR for MNIST, else ~/.cache/npvae/<data>)")
    parser.add_argument("--out", type=Path, default=Path("demos_out/latent_map"))
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
    model = npvae.VAE(train.x.shape[1], hidden, latent_dim=2, seed=args.seed, dtype=np.float32)
    print(f"VAE {train.x.shape[1]} -> {hidden} -> z in R^2 on {args.data}: {epochs} epochs, "
          f"Adam lr {lr:g}, batch 128, seed {args.seed}")
    started = time.perf_counter()
    history = npvae.fit(model, train.x, epochs, batch_size=128, x_val=test.x,
                        optimizer=npvae.Adam(model.parameters(), lr=lr), seed=args.seed)
    print(f"trained in {time.perf_counter() - started:.1f} s; test negative ELBO {history.val_loss[-1]:.2f} "
          f"nats (KL {history.val_kl[-1]:.2f})\n")

    mu, logvar = model.encode(test.x)
    print("where each label sits: mean and spread of mu(x) over its test images, and the mean")
    print("posterior standard deviation (how sure the encoder is, in prior units)")
    print(f"{'label':>5}{'count':>7}{'mean z1':>9}{'mean z2':>9}{'std z1':>8}{'std z2':>8}{'mean sigma':>12}")
    for label in np.unique(test.labels):
        rows = test.labels == label
        center, spread = mu[rows].mean(axis=0), mu[rows].std(axis=0)
        sigma = np.exp(0.5 * logvar[rows]).mean()
        print(f"{label:>5}{rows.sum():>7}{center[0]:>9.2f}{center[1]:>9.2f}{spread[0]:>8.2f}{spread[1]:>8.2f}"
              f"{sigma:>12.2f}")

    written = [
        npvae.plots.save_latent_scatter(mu, test.labels, args.out / "latent_scatter.png",
                                        title=f"Posterior means mu(x) of the {args.data} test set"),
        npvae.plots.save_manifold(model.decode, train.image_shape, args.out / "manifold.png"),
    ]
    print("\nwrote", *written, sep="\n  ")


if __name__ == "__main__":
    main()
