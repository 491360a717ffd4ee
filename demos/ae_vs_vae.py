"""An AE and a VAE with the same layers, trained on the same data: both reconstruct, only the
VAE generates.

    python demos/ae_vs_vae.py                 # 8x8 digits, about half a minute
    python demos/ae_vs_vae.py --data mnist    # MNIST (downloaded once), a few minutes

Decoding codes drawn from N(0, I) gives the VAE's samples: its KL term pulls every q(z|x) towards
N(0, I), so the prior covers the codes the decoder was trained on. The AE's codes follow no
known distribution (their spread is printed), so the same draws land where the decoder has
seen nothing: blurs, blends and broken strokes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import npvae
import npvae.plots

SETTINGS = {  # data -> (hidden widths, epochs, learning rate)
    "digits": ([256, 128], 100, 3e-3),
    "mnist": ([512, 256], 10, 1e-3),
    "fashion-mnist": ([512, 256], 10, 1e-3),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=list(SETTINGS), default="digits")
    parser.add_argument("--latent-dim", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=None, help="default: 100 for digits, 10 for MNIST")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="directory with the MNIST / Fashion-MNIST IDX files (default: $NPVAE_DATA/<data>, $NPVAE_MNIST_DIR for MNIST, else ~/.cache/npvae/<data>)")
    parser.add_argument("--out", type=Path, default=Path("demos_out/ae_vs_vae"))
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
    shape = train.image_shape
    print(f"{args.data}: {train.x.shape[0]} training and {test.x.shape[0]} test images of {shape[0]}x{shape[1]}")
    print(f"both models: {train.x.shape[1]} -> {hidden} -> {args.latent_dim} -> {hidden[::-1]} -> "
          f"{train.x.shape[1]}, {epochs} epochs of Adam (lr {lr:g}, batch 128), seed {args.seed}\n")

    models = {}
    for name, model_class in (("AE", npvae.AE), ("VAE", npvae.VAE)):
        model = model_class(train.x.shape[1], hidden, args.latent_dim, seed=args.seed, dtype=np.float32)
        started = time.perf_counter()
        npvae.fit(model, train.x, epochs, batch_size=128, optimizer=npvae.Adam(model.parameters(), lr=lr),
                  seed=args.seed)
        terms = npvae.evaluate(model, test.x, rng=np.random.default_rng(args.seed))
        squared = float(np.mean((model.reconstruct(test.x) - test.x) ** 2))
        print(f"{name:>3}: trained in {time.perf_counter() - started:4.1f} s; test reconstruction "
              f"NLL {terms['recon']:7.2f} nats, mean squared pixel error {squared:.4f}")
        models[name] = model

    codes = models["AE"].encode(test.x)
    mu, _ = models["VAE"].encode(test.x)
    print(f"\nstd of each latent dimension over the test set (N(0, I) has 1):")
    print(f"  AE codes      {np.array2string(codes.std(axis=0), precision=2)}")
    print(f"  VAE means mu  {np.array2string(mu.std(axis=0), precision=2)}")
    print("  (a VAE's unused dimensions have mu ~ 0 and sigma ~ 1: q(z|x) = prior there)\n")

    rng = np.random.default_rng(args.seed)
    z = rng.standard_normal((64, args.latent_dim)).astype(np.float32)  # the same draws for both
    written = [npvae.plots.save_side_by_side(
        [models["AE"].decode(z), models["VAE"].decode(z)], shape, args.out / "samples_ae_vs_vae.png",
        titles=["AE: decode(z)", "VAE: decode(z)"], title="The same 64 codes z ~ N(0, I), decoded")]
    for name, model in models.items():
        written.append(npvae.plots.save_reconstructions(
            test.x, model.reconstruct(test.x), shape, args.out / f"reconstructions_{name.lower()}.png",
            title=f"{name} reconstructions ({args.data} test)"))
    print("wrote", *written, sep="\n  ")


if __name__ == "__main__":
    main()
