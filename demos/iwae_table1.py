"""The direction of Burda, Grosse & Salakhutdinov (2016), Table 1, on a CPU budget: VAE vs IWAE.

Three models with the paper's one-stochastic-layer architecture (784-200-200-50, tanh,
Bernoulli decoder, dynamically binarized MNIST) are trained for the same number of epochs with
the same data order and initial weights, on the VAE objective (k = 1) and on the IWAE objective
with k = 5 and k = 50 (``npvae.fit(..., iw_samples=k)``). Each is then scored on the test set,
binarized once with a fixed seed: -L_5000 (the paper's NLL estimate, on the first
``--nll-images`` test images), the -ELBO, and the active units of Burda et al. sec. 5.2
(Cov_x(E_q(z|x)[z_j]) > 1e-2, over all test images).

The paper trains 3,280 epochs; this runs ``--epochs`` (5 by default: a k = 50 epoch costs
about 40 times a VAE epoch, 2.5 minutes on one unloaded core here). Absolute NLLs are
therefore far from the paper's; the claim checked is its direction: IWAE below VAE, k = 50
below k = 5, and more active units with k. docs/results.md, section 4, has a run.

Run ``python demos/iwae_table1.py`` (about 20 minutes on one unloaded core, measured with one
thread before ``fit`` had npvae's own threads; ``--quick`` for a check that everything runs in seconds). MNIST
is read from ``--data-dir``, else ``$NPVAE_MNIST_DIR``, else npvae's download cache. Results go to ``--out``
(default ``iwae_table1_out/``) as ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

try:
    import npvae
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import npvae

# Table 1, MNIST, one stochastic layer: VAE (k = 1), IWAE k = 5, IWAE k = 50, test -L_5000 in nats
PAPER_NLL = {1: 86.76, 5: 85.54, 50: 84.78}
TEST_BINARIZATION_SEED = 123


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs for every model (default 5)")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 5, 50], help="iw_samples of the models")
    parser.add_argument("--train-images", type=int, default=None, help="first n training images (default all)")
    parser.add_argument("--nll-images", type=int, default=1000, help="test images for -L_5000 (default 1000)")
    parser.add_argument("--nll-k", type=int, default=5000, help="k of the NLL estimate (default 5000)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="iwae_table1_out")
    parser.add_argument("--data-dir", default=None,
                        help="directory with the MNIST IDX files (default: npvae.datasets' rule: $NPVAE_MNIST_DIR, "
                             "else the cache)")
    parser.add_argument("--quick", action="store_true", help="1 epoch on 2,000 images, -L_100 on 50")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.train_images, args.nll_images, args.nll_k = 1, 2000, 50, 100
    return args


def new_model(x_train: np.ndarray, seed: int) -> npvae.VAE:
    model = npvae.VAE(784, (200, 200), 50, activation="tanh", dtype=np.float32, seed=seed)
    # as Burda et al.'s code: the output bias starts at the logit of the mean training pixel
    mean_pixel = np.clip(x_train.mean(axis=0, dtype=np.float64), 0.001, 0.999)
    model.decoder[-1].bias.value[...] = np.log(mean_pixel / (1 - mean_pixel))
    return model


def train_and_score(args, k: int, x_train: np.ndarray, x_test_bin: np.ndarray) -> dict:
    model = new_model(x_train, args.seed)
    optimizer = npvae.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-4)  # the paper's Adam

    def report(epoch: int, history: npvae.History) -> None:
        print(f"  k = {k:2d}  epoch {epoch}  train -L_{k} {history.loss[-1]:8.3f}  "
              f"{history.seconds[-1]:6.1f} s", flush=True)

    started = time.perf_counter()
    history = npvae.fit(model, x_train, args.epochs, batch_size=args.batch_size, optimizer=optimizer,
                        seed=args.seed, binarize=True, iw_samples=k, callbacks=[report], progress=False)
    train_seconds = time.perf_counter() - started
    mu, _ = model.encode(x_test_bin)
    active_units = int((np.var(mu, axis=0, dtype=np.float64) > 1e-2).sum())
    neg_elbo = npvae.evaluate(model, x_test_bin, rng=np.random.default_rng(args.seed + 1))["loss"]
    started = time.perf_counter()
    log_p = model.log_likelihood(x_test_bin[: args.nll_images], k=args.nll_k, rng=np.random.default_rng(args.seed + 2))
    nll_seconds = time.perf_counter() - started
    result = {"k": k, "epochs": args.epochs, "train_seconds": train_seconds,
              "seconds_per_epoch": history.seconds, "train_loss": history.loss[-1],
              "nll": float(-log_p.mean()), "nll_stderr": float(log_p.std(ddof=1) / np.sqrt(log_p.size)),
              "nll_images": int(log_p.size), "nll_k": args.nll_k, "nll_seconds": nll_seconds,
              "neg_elbo": neg_elbo, "active_units": active_units, "log_p": log_p.tolist()}
    print(f"  k = {k:2d}: test -L_{args.nll_k} {result['nll']:.2f} (+- {result['nll_stderr']:.2f}, "
          f"{log_p.size} images), -ELBO {neg_elbo:.2f}, active units {active_units} of 50; "
          f"train {train_seconds / 60:.1f} min, estimate {nll_seconds / 60:.1f} min", flush=True)
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x_train = npvae.datasets.load("mnist", "train", data_dir=args.data_dir).x[: args.train_images]
    x_test = npvae.datasets.load("mnist", "test", data_dir=args.data_dir).x
    # binarized once, with a fixed seed: every model is scored on the same 0/1 images
    x_test_bin = (np.random.default_rng(TEST_BINARIZATION_SEED).random(x_test.shape, dtype=np.float32)
                  < x_test).astype(np.float32)
    print(f"MNIST: {x_train.shape[0]} training images (binarized at every use), {x_test.shape[0]} test "
          f"images; {args.epochs} epochs per model, batch {args.batch_size}", flush=True)
    results = []
    for k in args.ks:
        results.append(train_and_score(args, k, x_train, x_test_bin))
        (out / "results.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    print(f"\n| objective | epochs | train time | test -L_{args.nll_k} ({args.nll_images} images) | test -ELBO "
          f"| active units | paper -L_5000 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        name = "VAE (k = 1)" if r["k"] == 1 else f"IWAE k = {r['k']}"
        print(f"| {name} | {r['epochs']} | {r['train_seconds'] / 60:.1f} min | {r['nll']:.2f} ± {r['nll_stderr']:.2f} "
              f"| {r['neg_elbo']:.2f} | {r['active_units']} | {PAPER_NLL.get(r['k'], '')} |")


if __name__ == "__main__":
    main()
