"""The seed's lineage on the same data: AE, VAE and VQ-VAE with the same layers, side by side.

    python demos/ae_vae_vqvae.py                          # 8x8 digits, a minute or two
    python demos/ae_vae_vqvae.py --data mnist --epochs 5  # MNIST (downloaded once), minutes

What each latent space is:
    AE      a point: x -> z in R^d; nothing says where codes lie, so decoding z ~ N(0, I) is a guess
    VAE     a distribution: x -> q(z|x) = N(mu, sigma^2), pulled towards the prior N(0, I)
    VQ-VAE  a set of codes: x -> L indices into a codebook of K vectors; a prior over the index
            sequences is fitted afterwards (an autoregressive MADE, and the independent
            per-position categorical for comparison) and samples are decoded from it.

The VQ-VAE is trained twice, with the codebook learnt by its loss term and by moving averages
(EMA). Printed: test reconstruction loss (nats per example) of each model, the VQ-VAEs' code
perplexity and fraction of codes used, and the test negative log-likelihood of the codes under
both priors (nats per example; log K per position is the uniform prior's).
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

import npvae
import npvae.plots

SETTINGS = {  # data -> hidden widths, latent width, code_dim, num_codes, epochs, learning rate, prior hidden
    "digits": dict(hidden=[128], latent=8, code_dim=2, codes=32, epochs=40, lr=3e-3, prior_hidden=[128]),
    "mnist": dict(hidden=[400], latent=20, code_dim=2, codes=64, epochs=10, lr=1e-3, prior_hidden=[512]),
    "fashion-mnist": dict(hidden=[400], latent=20, code_dim=2, codes=64, epochs=10, lr=1e-3, prior_hidden=[512]),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=list(SETTINGS), default="digits")
    parser.add_argument("--epochs", type=int, default=None, help="default: 40 for digits, 10 for MNIST")
    parser.add_argument("--prior-epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("demos_out/ae_vae_vqvae"))
    args = parser.parse_args()
    s = SETTINGS[args.data]
    epochs = args.epochs or s["epochs"]
    train = npvae.datasets.load(args.data, "train")
    test = npvae.datasets.load(args.data, "test")
    d = train.x.shape[1]
    num_latents = s["latent"] // s["code_dim"]
    print(f"{args.data}: {train.x.shape[0]} training and {test.x.shape[0]} test images; every model "
          f"{d} -> {s['hidden']} -> {s['latent']} -> {s['hidden'][::-1]} -> {d}, float32, {epochs} epochs of "
          f"Adam (lr {s['lr']:g}, batch 128), seed {args.seed}")
    print(f"VQ-VAE: the {s['latent']} encoder outputs are {num_latents} vectors of {s['code_dim']}, each "
          f"replaced by the nearest of {s['codes']} codebook vectors (beta 0.25, EMA decay 0.99)\n")

    common = dict(seed=args.seed, dtype=np.float32)
    models = {
        "AE": npvae.AE(d, s["hidden"], s["latent"], **common),
        "VAE": npvae.VAE(d, s["hidden"], s["latent"], **common),
        "VQ-VAE (loss)": npvae.VQVAE(d, s["hidden"], num_latents, s["code_dim"], s["codes"], codebook="loss", **common),
        "VQ-VAE (EMA)": npvae.VQVAE(d, s["hidden"], num_latents, s["code_dim"], s["codes"], codebook="ema", **common),
    }
    print(f"{'model':<15}{'test recon':>11}{'perplexity':>11}{'codes used':>11}{'MADE NLL':>10}"
          f"{'indep. NLL':>11}{'train s':>9}{'s/epoch':>9}")
    priors = {}
    for name, model in models.items():
        started = time.perf_counter()
        history = npvae.fit(model, train.x, epochs, batch_size=128, seed=args.seed,
                            optimizer=npvae.Adam(model.parameters(), lr=s["lr"]))
        seconds = time.perf_counter() - started
        metrics = npvae.evaluate(model, test.x, rng=np.random.default_rng(args.seed))
        row = f"{name:<15}{metrics['recon']:>11.2f}"
        if isinstance(model, npvae.VQVAE):
            codes_train, codes_test = model.encode(train.x), model.encode(test.x)
            made = npvae.MADEPrior(num_latents, s["codes"], s["prior_hidden"], seed=args.seed, dtype=np.float32)
            made.fit(codes_train, args.prior_epochs, lr=1e-3, rng=np.random.default_rng(args.seed))
            independent = npvae.CategoricalPrior(num_latents, s["codes"]).fit(codes_train)
            priors[name] = (made, independent)
            row += (f"{metrics['perplexity']:>11.1f}{metrics['codes_used']:>11.0%}"
                    f"{made.nll(codes_test):>10.2f}{independent.nll(codes_test):>11.2f}")
        else:
            row += f"{'':>11}{'':>11}{'':>10}{'':>11}"
        print(row + f"{seconds:>9.1f}{float(np.median(history.seconds)):>9.2f}", flush=True)
    print(f"(uniform prior over the codes: {num_latents} x log {s['codes']} = {num_latents * math.log(s['codes']):.2f} "
          "nats; recon is -log p(x | code) in nats per example; timings on a shared machine are noisy)")

    args.out.mkdir(parents=True, exist_ok=True)
    shape, rng = train.image_shape, np.random.default_rng(args.seed)
    shown = test.x[:16]
    recon = npvae.plots.save_side_by_side(
        [shown] + [model.reconstruct(shown) for model in models.values()], shape,
        args.out / "reconstructions.png", ["test images", *models], title="Reconstructions", ncols=4)
    ema = models["VQ-VAE (EMA)"]
    made, independent = priors["VQ-VAE (EMA)"]
    samples = npvae.plots.save_side_by_side(
        [models["AE"].sample(16, rng), models["VAE"].sample(16, rng), ema.sample(16, rng, prior=made),
         ema.sample(16, rng, prior=independent)], shape, args.out / "samples.png",
        ["AE: z ~ N(0, I)", "VAE: z ~ N(0, I)", "VQ-VAE (EMA): MADE prior", "VQ-VAE (EMA): independent prior"],
        title="Samples", ncols=4)
    usage = npvae.plots.save_code_usage(
        {name: models[name].code_counts(test.x) for name in ("VQ-VAE (loss)", "VQ-VAE (EMA)")},
        args.out / "code_usage.png", title=f"Codebook usage on the {args.data} test set")
    print(f"\nwrote {recon}, {samples} and {usage}")


if __name__ == "__main__":
    main()
