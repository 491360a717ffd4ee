"""The VAE of the seed sketch, its bugs fixed (docs/from-the-seed.md), trained on 8x8 digits.

    python demos/seed_vae.py                  # digits, about ten seconds
    python demos/seed_vae.py --data mnist     # MNIST (downloaded once), a few minutes

``VAE.from_seed`` keeps the sketch's layer structure and names: an encoder input -> hidden_dim
-> latent_dim, two heads latent_dim -> latent_num for the mean and the log-variance, a
generation layer latent_num -> latent_dim, and a decoder latent_dim -> hidden_dim -> input.
The sketch's default input of 256 values (a 16x16 image) fits neither data set here, so the
input size is set to the data's: 64 for the 8x8 digits, 784 for 28x28 MNIST.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import npvae
import npvae.plots

SEED_LAYER_NAMES = {  # npvae parameter prefix -> the seed sketch's layer
    "encoder.0": "encoder Linear(input, hidden_dim)",
    "encoder.2": "encoder Linear(hidden_dim, latent_dim)",
    "head": "mean_layer | var_layer: columns [:2] give mu, [2:] logvar",
    "decoder.0": "generation_layer",
    "decoder.2": "decoder Linear(latent_dim, hidden_dim)",
    "decoder.4": "decoder Linear(hidden_dim, input), Sigmoid in the loss",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=["digits", "mnist", "fashion-mnist"], default="digits")
    parser.add_argument("--epochs", type=int, default=None, help="default: 150 for digits, 10 for MNIST")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="directory with the MNIST / Fashion-MNIST IDX files (default: $NPVAE_DATA/<data>, $NPVAE_MNIST_DIR for MNIST, else ~/.cache/npvae/<data>)")
    parser.add_argument("--out", type=Path, default=Path("demos_out/seed_vae"))
    args = parser.parse_args()
    epochs = args.epochs or (150 if args.data == "digits" else 10)

    if args.data_dir is not None and not args.data_dir.is_dir():
        parser.error(f"--data-dir {args.data_dir}: no such directory")
    try:
        train = npvae.datasets.load(args.data, "train", args.data_dir)
        test = npvae.datasets.load(args.data, "test", args.data_dir)
    except OSError as error:  # files missing and not downloadable, or unreadable
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    input_dim = train.x.shape[1]
    print(f"The seed's VAE expects input_dim=256 (16x16 images); {args.data} images are "
          f"{train.image_shape[0]}x{train.image_shape[1]}, so input_dim={input_dim}.")
    model = npvae.VAE.from_seed(input_dim=input_dim, hidden_dim=64, latent_dim=32, latent_num=2,
                                seed=args.seed, dtype=np.float32)
    print(f"VAE.from_seed(input_dim={input_dim}, hidden_dim=64, latent_dim=32, latent_num=2): "
          f"{model.num_parameters():,} parameters, z has 2 dimensions\n")
    parameters = dict(model.named_parameters())
    print(f"{'npvae layer':<12}{'weight':<11}{'bias':<8}seed layer")
    for layer, seed_name in SEED_LAYER_NAMES.items():
        weight, bias = parameters[f"{layer}.weight"].shape, parameters[f"{layer}.bias"].shape
        print(f"{layer:<12}{str(weight):<11}{str(bias):<8}{seed_name}")

    lr = 3e-3 if args.data == "digits" else 1e-3
    print(f"\ntraining {epochs} epochs, Adam lr {lr:g}, batch 128, seed {args.seed} ...")
    started = time.perf_counter()
    history = npvae.fit(model, train.x, epochs, batch_size=128, x_val=test.x,
                        optimizer=npvae.Adam(model.parameters(), lr=lr), seed=args.seed)
    print(f"done in {time.perf_counter() - started:.1f} s: test negative ELBO {history.val_loss[-1]:.2f} "
          f"nats = reconstruction {history.val_recon[-1]:.2f} + KL {history.val_kl[-1]:.2f}\n")

    shape = train.image_shape
    written = [
        npvae.plots.save_manifold(model.decode, shape, args.out / "manifold.png",
                                  title="The seed's VAE: decoder over its 2-D latent space"),
        npvae.plots.save_image_grid(model.sample(64, np.random.default_rng(args.seed)), shape,
                                    args.out / "samples.png", title="The seed's VAE: decoded z ~ N(0, I)"),
    ]
    print("wrote", *written, sep="\n  ")


if __name__ == "__main__":
    main()
