"""Reproduce two published VAE results with npvae on a CPU, honestly and in under an hour.

1. The VAE of pytorch/examples (``vae/main.py``): 784-400-20, ReLU, Bernoulli decoder on the
   grey levels in [0, 1] (not binarized), BCE and KL summed over pixels, batch 128, Adam 1e-3,
   10 epochs. Its figure is the test loss per epoch ("====> Test set loss": the negative ELBO
   per test image, one z each). When PyTorch is installed, the example's own network is
   trained next to npvae's from the same initial weights, and both trajectories are shown.

2. Burda, Grosse & Salakhutdinov (2016), "Importance Weighted Autoencoders", Table 1, the VAE
   with one stochastic layer: 784-200-200-50 (tanh), Bernoulli decoder, dynamically binarized
   MNIST, test NLL estimated by the importance-weighted bound with k = 5000 samples
   (paper: 86.76 nats). The paper trains for 3,280 epochs at batch 20 (learning rate
   0.001 * 10^(-i/7) for 3^i epochs, i = 0..7); here the same schedule is compressed into a
   time budget (30 minutes by default) at batch 100, and the printout says how much shorter.

Run ``python demos/reproduce.py`` for the full reproduction (about 40 minutes on 2 cores),
``--quick`` for a check that everything runs (under a minute), ``--help`` for the options.
MNIST is read from ``--data-dir``, else where ``npvae.datasets.load`` looks (``$NPVAE_MNIST_DIR``,
else ``$NPVAE_DATA/mnist``, else npvae's download cache).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

try:
    import npvae
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import npvae

PAPER_NLL = 86.76  # Burda et al. 2016, Table 1, MNIST, VAE, 1 stochastic layer, k = 1
PAPER_EPOCHS = 3280  # sum of 3^i, i = 0..7
PAPER_TRAIN_IMAGES = 59_600  # their code holds out 400 of the 60,000 training images
PAPER_BATCH = 20
STAGES = 8
TEST_BINARIZATION_SEED = 123
IW_CHUNK_IMAGES = 250  # images per progress report of the k = 5000 estimate


# -- setup -------------------------------------------------------------------------------------
def set_blas_threads(threads: int) -> dict[str, int]:
    """Limit every OpenBLAS loaded in this process to ``threads`` threads; return {library: threads now}.

    NumPy and SciPy each bundle their own OpenBLAS (npvae's products go through NumPy's); each
    exports a ``*_set_num_threads`` entry point, called here through ctypes, as threadpoolctl
    does. Linux only (the loaded libraries are read from /proc/self/maps); elsewhere nothing is
    changed and {} is returned.
    """
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return {}
    paths = {fields[5] for fields in (line.split(maxsplit=5) for line in maps.splitlines())
             if len(fields) == 6 and "openblas" in Path(fields[5]).name.lower()}
    threads_now = {}
    for path in sorted(paths):
        library = ctypes.CDLL(path)
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("", "64_"):
                setter = getattr(library, f"{prefix}_set_num_threads{suffix}", None)
                getter = getattr(library, f"{prefix}_get_num_threads{suffix}", None)
                if setter is not None and getter is not None:
                    setter(ctypes.c_int(threads))
                    threads_now[Path(path).name] = int(getter())
                    break
            if Path(path).name in threads_now:
                break
    return threads_now


def load_mnist(data_dir: str | None, train_images: int | None, test_images: int | None):
    """MNIST train and test images as float32 in [0, 1], (n, 784), optionally the first n of each."""
    train = npvae.datasets.load("mnist", "train", data_dir=data_dir).x
    test = npvae.datasets.load("mnist", "test", data_dir=data_dir).x
    return train[:train_images], test[:test_images]


def write_json_atomically(path: Path, data: Any) -> None:
    descriptor, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w") as file:
            json.dump(data, file, indent=1)
        os.replace(temp_name, path)
    except BaseException:
        os.unlink(temp_name)
        raise


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


# -- part 1: pytorch/examples ------------------------------------------------------------------
def examples_npvae(x_train, x_test, epochs: int, batch_size: int, seed: int, check_eps: np.ndarray, threads: int):
    """Train the examples' VAE in npvae; return the model, its training state, its initial
    parameters, its initial loss on the first test images with noise ``check_eps``, and the
    per-epoch record."""
    model = npvae.VAE(784, (400,), 20, activation="relu", dtype=np.float32, seed=seed)
    initial = {name: parameter.value.copy() for name, parameter in model.named_parameters()}
    check_loss = float(model.terms(x_test[: check_eps.shape[0]], eps=check_eps).loss.mean(dtype=np.float64))
    optimizer = npvae.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    test_rng = np.random.default_rng(seed + 1)
    test_loss: list[float] = []

    def report(epoch: int, history: npvae.History) -> None:
        test_loss.append(npvae.evaluate(model, x_test, rng=test_rng)["loss"])
        print(f"  npvae epoch {epoch:2d}: train loss {history.loss[-1]:8.4f}  test loss "
              f"{test_loss[-1]:8.4f}  {history.seconds[-1]:5.2f} s", flush=True)

    history = npvae.fit(model, x_train, epochs, batch_size=batch_size, optimizer=optimizer, rng=rng,
                        callbacks=[report], progress=False, threads=threads)
    record = {"train_loss": history.loss, "test_loss": test_loss, "seconds": history.seconds}
    return model, optimizer, history, rng, initial, check_loss, record


def examples_torch(initial: dict[str, np.ndarray], x_train, x_test, epochs: int, batch_size: int,
                   seed: int, threads: int, check_eps: np.ndarray, check_npvae_loss: float):
    """pytorch/examples' VAE (its code, sigmoid + summed BCE) from npvae's initial weights."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(seed)

    class ExamplesVAE(torch.nn.Module):
        """pytorch/examples vae/main.py, unchanged: fc1 -> (fc21, fc22); fc3 -> fc4 -> sigmoid."""

        def __init__(self) -> None:
            super().__init__()
            self.fc1 = torch.nn.Linear(784, 400)
            self.fc21 = torch.nn.Linear(400, 20)
            self.fc22 = torch.nn.Linear(400, 20)
            self.fc3 = torch.nn.Linear(20, 400)
            self.fc4 = torch.nn.Linear(400, 784)

        def encode(self, x):
            h1 = F.relu(self.fc1(x))
            return self.fc21(h1), self.fc22(h1)

        def decode(self, z):
            return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

        def forward(self, x, eps=None):
            mu, logvar = self.encode(x)
            eps = torch.randn_like(mu) if eps is None else eps
            return self.decode(mu + eps * torch.exp(0.5 * logvar)), mu, logvar

    def loss_function(recon_x, x, mu, logvar):
        bce = F.binary_cross_entropy(recon_x, x, reduction="sum")
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return bce + kld

    model = ExamplesVAE()
    # npvae's Dense computes x @ W + b with W (in, out): torch's Linear.weight is W.T; the
    # head's output is [mu | logvar], so its columns split into fc21 and fc22
    head_weight, head_bias = initial["head.weight"], initial["head.bias"]
    copies = {
        model.fc1: (initial["encoder.0.weight"], initial["encoder.0.bias"]),
        model.fc21: (head_weight[:, :20], head_bias[:20]),
        model.fc22: (head_weight[:, 20:], head_bias[20:]),
        model.fc3: (initial["decoder.0.weight"], initial["decoder.0.bias"]),
        model.fc4: (initial["decoder.2.weight"], initial["decoder.2.bias"]),
    }
    with torch.no_grad():
        for layer, (weight, bias) in copies.items():
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight.T)))
            layer.bias.copy_(torch.from_numpy(np.ascontiguousarray(bias)))
        rows = check_eps.shape[0]
        data = torch.from_numpy(x_test[:rows])
        recon, mu, logvar = model(data, torch.from_numpy(check_eps))
        check = float(loss_function(recon, data, mu, logvar)) / rows
    print(f"  same initial weights: loss of {rows} test images with the same eps: npvae "
          f"{check_npvae_loss:.6f}, torch {check:.6f} (relative difference "
          f"{abs(check - check_npvae_loss) / abs(check):.1e})", flush=True)

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_t, test_t = torch.from_numpy(x_train), torch.from_numpy(x_test)
    generator = torch.Generator().manual_seed(seed)
    record: dict[str, list[float]] = {"train_loss": [], "test_loss": [], "seconds": []}
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        model.train()
        train_loss = 0.0
        order = torch.randperm(train_t.shape[0], generator=generator)
        for start in range(0, train_t.shape[0], batch_size):
            data = train_t[order[start : start + batch_size]]
            optimizer.zero_grad()
            recon, mu, logvar = model(data)
            loss = loss_function(recon, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
        seconds = time.perf_counter() - started
        model.eval()
        test_loss = 0.0
        with torch.no_grad():
            for start in range(0, test_t.shape[0], batch_size):
                data = test_t[start : start + batch_size]
                recon, mu, logvar = model(data)
                test_loss += loss_function(recon, data, mu, logvar).item()
        record["train_loss"].append(train_loss / train_t.shape[0])
        record["test_loss"].append(test_loss / test_t.shape[0])
        record["seconds"].append(seconds)
        print(f"  torch epoch {epoch:2d}: train loss {record['train_loss'][-1]:8.4f}  test loss "
              f"{record['test_loss'][-1]:8.4f}  {seconds:5.2f} s", flush=True)
    return record


def run_examples(args, data_dir: str | None, out: Path | None) -> dict[str, Any]:
    print("\n## Part 1: pytorch/examples VAE (784-400-20 ReLU, batch 128, Adam 1e-3, grey levels)",
          flush=True)
    x_train, x_test = load_mnist(data_dir, args.train_images, args.examples_test_images)
    print(f"  MNIST: {x_train.shape[0]} training, {x_test.shape[0]} test images", flush=True)
    # noise for one forward pass of both models before training: shows the weights were copied
    check_eps = np.random.default_rng(args.seed + 2).standard_normal((128, 20), dtype=np.float32)
    model, optimizer, history, rng, initial, check_loss, ours = examples_npvae(
        x_train, x_test, args.epochs_examples, 128, args.seed, check_eps, args.threads)
    if out is not None:
        npvae.save(model, out / "examples_vae.npz", optimizer=optimizer, history=history, rng=rng)
    result: dict[str, Any] = {"npvae": ours, "torch": None, "train_images": x_train.shape[0],
                              "test_images": x_test.shape[0], "epochs": args.epochs_examples}
    try:
        import torch  # noqa: F401
    except ImportError:
        print("  PyTorch is not installed: no side-by-side run", flush=True)
        return result
    result["torch"] = examples_torch(initial, x_train, x_test, args.epochs_examples, 128, args.seed,
                                     args.threads, check_eps, check_loss)
    return result


# -- part 2: Burda et al. 2016 -----------------------------------------------------------------
def stage_learning_rates() -> list[float]:
    """Burda et al.'s schedule: stage i = 0..7 runs 3^i epochs at 0.001 * 10^(-i/7)."""
    return [1e-3 * 10 ** (-i / 7) for i in range(STAGES)]


def split_epochs(total: int) -> list[int]:
    """``total`` epochs over the 8 stages in proportion to 3^i, at least one each (3280 gives 1, 3, ..., 2187)."""
    if total < STAGES:
        raise ValueError(f"--iwae-epochs: expected at least {STAGES} (one per learning-rate stage), got {total}")
    counts = [max(1, round(total * 3**i / PAPER_EPOCHS)) for i in range(STAGES)]
    counts[-1] += total - sum(counts)  # the rounding's difference goes to the last, longest stage
    while counts[-1] < 1:  # small totals: take from the longest earlier stage
        counts[int(np.argmax(counts[:-1]))] -= 1
        counts[-1] += 1
    return counts


def train_iwae_model(args, x_train, x_test_bin, out: Path | None):
    """Train the 784-200-200-50 tanh VAE with the compressed schedule; return model and record."""
    model = npvae.VAE(784, (200, 200), 50, activation="tanh", dtype=np.float32, seed=args.seed)
    # Burda et al.'s code starts the output bias at the logit of the mean training pixel
    # (clipped to [0.001, 0.999]); npvae starts biases at 0
    mean_pixel = np.clip(x_train.mean(axis=0, dtype=np.float64), 0.001, 0.999)
    dict(model.named_parameters())["decoder.4.bias"].value[...] = np.log(mean_pixel / (1 - mean_pixel))
    optimizer = npvae.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-4)
    rng = np.random.default_rng(args.seed)
    history = npvae.History()
    planned = split_epochs(args.iwae_epochs) if args.iwae_epochs is not None else None
    budget = None if planned is not None else args.iwae_minutes * 60.0
    stage_ends = np.cumsum([3**i for i in range(STAGES)]) / PAPER_EPOCHS
    started = time.perf_counter()
    last_print = [started]
    stages = []

    def progress(epoch: int, history: npvae.History) -> None:
        now = time.perf_counter()
        if now - last_print[0] >= args.print_seconds:
            last_print[0] = now
            print(f"    epoch {epoch:4d}  lr {optimizer.lr:.2e}  train -ELBO {history.loss[-1]:7.3f}  "
                  f"{history.seconds[-1]:.2f} s/epoch  elapsed {minutes(now - started)}", flush=True)

    for stage, lr in enumerate(stage_learning_rates()):
        if planned is not None:
            epochs = planned[stage]
        else:  # run until this stage's share of the time budget is used, re-estimating each stage
            seconds_per_epoch = float(np.mean(history.seconds)) if len(history) else math.inf
            remaining = started + budget * stage_ends[stage] - time.perf_counter()
            epochs = max(1, round(remaining / seconds_per_epoch)) if len(history) else 1
        optimizer.lr = lr
        npvae.fit(model, x_train, epochs, batch_size=args.batch_size, optimizer=optimizer, rng=rng,
                  binarize=True, history=history, callbacks=[progress], progress=False, threads=args.threads)
        test_elbo = npvae.evaluate(model, x_test_bin, rng=np.random.default_rng(args.seed + 1))["loss"]
        stages.append({"lr": lr, "epochs": epochs, "train_loss": history.loss[-1], "test_loss": test_elbo})
        print(f"  stage {stage}: lr {lr:.2e}, {epochs:4d} epochs, train -ELBO {history.loss[-1]:7.3f}, "
              f"test -ELBO {test_elbo:7.3f}, elapsed {minutes(time.perf_counter() - started)}", flush=True)
        if out is not None:
            npvae.save(model, out / "iwae_vae.npz", optimizer=optimizer, history=history, rng=rng)
    seconds = time.perf_counter() - started
    record = {"stages": stages, "epochs": len(history), "batch_size": args.batch_size,
              "updates": optimizer.steps, "train_images": x_train.shape[0], "train_seconds": seconds,
              "seconds_per_epoch": float(np.mean(history.seconds)), "history": history.as_dict()}
    return model, record


def evaluate_iwae_model(args, model: npvae.VAE, x_test_bin: np.ndarray, deadline: float) -> dict[str, Any]:
    """Test -ELBO, -L_50 and -L_k (k = --iw-samples) per image on the binarized test images.

    The k-sample estimate goes through the test set in file order, IW_CHUNK_IMAGES at a time,
    and stops before a chunk that would end after ``deadline`` (perf_counter time); the
    result then covers the first images only, and says how many.
    """
    n = x_test_bin.shape[0]
    rng = np.random.default_rng(args.seed + 1)
    elbo = np.concatenate([model.elbo(x_test_bin[start : start + 1000], rng=rng) for start in range(0, n, 1000)])
    log_p_50 = model.log_likelihood(x_test_bin, k=50, rng=np.random.default_rng(args.seed + 2), threads=args.threads)
    mu, _ = model.encode(x_test_bin)
    active_units = int((mu.var(axis=0) > 1e-2).sum())
    k = args.iw_samples
    print(f"  test -ELBO {-elbo.mean():.3f}, -L_50 {-log_p_50.mean():.3f}, active latent units "
          f"{active_units} of 50; now log p(x) with k = {k} ...", flush=True)
    iw_rng = np.random.default_rng(args.seed + 3)
    log_p_k: list[np.ndarray] = []
    started = time.perf_counter()
    for start in range(0, n, IW_CHUNK_IMAGES):
        done = sum(len(chunk) for chunk in log_p_k)
        if done:
            per_image = (time.perf_counter() - started) / done
            if time.perf_counter() + per_image * min(IW_CHUNK_IMAGES, n - start) > deadline:
                print(f"  time budget reached: k = {k} estimate stops at {done} of {n} test images", flush=True)
                break
        log_p_k.append(model.log_likelihood(x_test_bin[start : start + IW_CHUNK_IMAGES], k=k, rng=iw_rng,
                                            threads=args.threads))
        done += len(log_p_k[-1])
        elapsed = time.perf_counter() - started
        print(f"    k = {k}: {done:5d}/{n} images, NLL so far {-np.concatenate(log_p_k).mean():.3f}, "
              f"{elapsed:.0f} s, about {elapsed / done * (n - done):.0f} s left", flush=True)
    log_p = np.concatenate(log_p_k)
    used = log_p.shape[0]
    return {
        "test_images": n, "k": k, "k_images": used, "k_seconds": time.perf_counter() - started,
        "nll": float(-log_p.mean()),
        "neg_elbo": float(-elbo.mean()), "neg_l50": float(-log_p_50.mean()),
        "neg_elbo_same_images": float(-elbo[:used].mean()), "neg_l50_same_images": float(-log_p_50[:used].mean()),
        "active_units": active_units,
    }


def run_iwae(args, data_dir: str | None, out: Path | None, deadline: float) -> dict[str, Any]:
    part_started = time.perf_counter()
    budget = f"{args.iwae_epochs} epochs" if args.iwae_epochs is not None else f"{args.iwae_minutes:g} minutes"
    print(f"\n## Part 2: Burda et al. 2016, VAE with one stochastic layer (784-200-200-50 tanh, "
          f"dynamic binarization), training budget {budget}", flush=True)
    x_train, x_test = load_mnist(data_dir, args.train_images, args.test_images)
    # the test set is binarized once, with a fixed seed: every estimate sees the same 0/1 images
    x_test_bin = (np.random.default_rng(TEST_BINARIZATION_SEED).random(x_test.shape, dtype=np.float32)
                  < x_test).astype(np.float32)
    print(f"  MNIST: {x_train.shape[0]} training images (binarized afresh at every use), "
          f"{x_test.shape[0]} test images (binarized once, seed {TEST_BINARIZATION_SEED})", flush=True)
    model, training = train_iwae_model(args, x_train, x_test_bin, out)
    evaluation = evaluate_iwae_model(args, model, x_test_bin, deadline)
    return {"training": training, "evaluation": evaluation, "part_seconds": time.perf_counter() - part_started}


# -- report --------------------------------------------------------------------------------------
def examples_table(result: dict[str, Any]) -> str:
    ours, theirs = result["npvae"], result["torch"]
    if theirs is None:
        lines = ["| epoch | npvae test loss | npvae train loss | npvae s/epoch |", "|---:|---:|---:|---:|"]
        for epoch, (test, train, seconds) in enumerate(zip(ours["test_loss"], ours["train_loss"], ours["seconds"]), 1):
            lines.append(f"| {epoch} | {test:.2f} | {train:.2f} | {seconds:.2f} |")
        return "\n".join(lines)
    lines = ["| epoch | npvae test loss | torch test loss | npvae train loss | torch train loss "
             "| npvae s/epoch | torch s/epoch |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for epoch in range(len(ours["test_loss"])):
        lines.append(f"| {epoch + 1} | {ours['test_loss'][epoch]:.2f} | {theirs['test_loss'][epoch]:.2f} "
                     f"| {ours['train_loss'][epoch]:.2f} | {theirs['train_loss'][epoch]:.2f} "
                     f"| {ours['seconds'][epoch]:.2f} | {theirs['seconds'][epoch]:.2f} |")
    return "\n".join(lines)


def iwae_table(result: dict[str, Any]) -> str:
    training, evaluation = result["training"], result["evaluation"]
    k, used, n = evaluation["k"], evaluation["k_images"], evaluation["test_images"]
    subset = "" if used == n else f" (first {used} of {n} test images)"
    paper_updates = PAPER_EPOCHS * (PAPER_TRAIN_IMAGES // PAPER_BATCH)
    schedule = ", ".join(str(stage["epochs"]) for stage in training["stages"])
    lines = [
        "| | npvae (this run) | Burda et al. 2016 |",
        "|---|---:|---:|",
        f"| test NLL, -L_{k}{subset} | **{evaluation['nll']:.2f}** | **{PAPER_NLL:.2f}** (k = 5000) |",
        f"| test -ELBO (k = 1) | {evaluation['neg_elbo']:.2f} | |",
        f"| test -L_50 | {evaluation['neg_l50']:.2f} | |",
        f"| active latent units (Cov_x E[z\\|x] > 0.01) | {evaluation['active_units']} of 50 | |",
        f"| training images | {training['train_images']:,} | {PAPER_TRAIN_IMAGES:,} |",
        f"| epochs | {training['epochs']:,} | {PAPER_EPOCHS:,} |",
        f"| epochs per stage (lr 0.001·10^(-i/7)) | {schedule} | 1, 3, 9, ..., 2187 (3^i) |",
        f"| batch size | {training['batch_size']} | {PAPER_BATCH} |",
        f"| parameter updates | {training['updates']:,} | {paper_updates:,} |",
        f"| training time | {minutes(training['train_seconds'])} ({training['seconds_per_epoch']:.2f} s/epoch) | |",
        f"| k = {k} evaluation time | {minutes(evaluation['k_seconds'])} | |",
    ]
    if used != n:
        lines.insert(3, f"| test -ELBO, -L_50 on the same {used} images | {evaluation['neg_elbo_same_images']:.2f}, "
                        f"{evaluation['neg_l50_same_images']:.2f} | |")
    return "\n".join(lines)


# -- command line --------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--part", choices=("examples", "iwae", "all"), default="all")
    parser.add_argument("--data-dir", default=None,
                        help="directory of the MNIST IDX files (default: $NPVAE_MNIST_DIR, else $NPVAE_DATA/mnist, "
                             "else npvae's cache)")
    parser.add_argument("--epochs-examples", type=int, default=10, help="epochs of the pytorch/examples VAE")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--iwae-minutes", type=float, default=30.0,
                        help="training time of the Burda VAE, shared among the 8 stages as 3^i")
    budget.add_argument("--iwae-epochs", type=int, default=None,
                        help="training epochs of the Burda VAE instead of a time budget (at least 8)")
    parser.add_argument("--deadline-minutes", type=float, default=58.0,
                        help="the k-sample estimate stops early (and says so) rather than let the whole "
                             "run go past this many minutes")
    parser.add_argument("--batch-size", type=int, default=100, help="batch size of the Burda VAE")
    parser.add_argument("--iw-samples", type=int, default=5000, help="importance samples of the test NLL")
    parser.add_argument("--test-images", type=int, default=10000, help="test images of part 2")
    parser.add_argument("--threads", type=int, default=2, help="npvae's threads (fit, log_likelihood), BLAS and PyTorch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--print-seconds", type=float, default=60.0, help="seconds between progress lines")
    parser.add_argument("--out", default=None, help="directory for the checkpoints and results.json")
    parser.add_argument("--quick", action="store_true",
                        help="tiny settings (3,000 training images, 2 + 8 epochs, k = 500 on 200 images): "
                             "checks that everything runs, in well under a minute")
    args = parser.parse_args(argv)
    args.train_images = None
    args.examples_test_images = None
    if args.quick:
        args.train_images, args.examples_test_images = 3000, 1000
        args.epochs_examples, args.iwae_epochs = 2, 8
        args.test_images, args.iw_samples = min(args.test_images, 200), min(args.iw_samples, 500)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    data_dir = args.data_dir or None  # None: npvae.datasets' rule, $NPVAE_MNIST_DIR included
    out = Path(args.out) if args.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    blas_threads = set_blas_threads(args.threads)
    started = time.perf_counter()
    command = "python " + " ".join([sys.argv[0], *sys.argv[1:]]) if argv is None else " ".join(argv)
    results: dict[str, Any] = {
        "command": command,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "numpy": np.__version__, "npvae": npvae.__version__, "blas_threads": blas_threads},
        "settings": {key: value for key, value in vars(args).items()},
    }
    print(f"npvae {npvae.__version__}, NumPy {np.__version__}, {os.cpu_count()} CPUs, "
          f"BLAS threads {blas_threads or 'unchanged'}; {results['date']}", flush=True)
    if args.part in ("examples", "all"):
        results["examples"] = run_examples(args, data_dir, out)
        if out is not None:
            write_json_atomically(out / "results.json", results)
    if args.part in ("iwae", "all"):
        results["iwae"] = run_iwae(args, data_dir, out, started + args.deadline_minutes * 60.0)
    results["total_seconds"] = time.perf_counter() - started
    if out is not None:
        write_json_atomically(out / "results.json", results)

    print(f"\n# Results ({minutes(results['total_seconds'])} in all)\n")
    if "examples" in results:
        result = results["examples"]
        print(f"pytorch/examples VAE, {result['epochs']} epochs, MNIST {result['train_images']} train / "
              f"{result['test_images']} test (loss = negative ELBO per image, nats, one z):\n")
        print(examples_table(result) + "\n")
    if "iwae" in results:
        print(f"Burda et al. 2016, Table 1, VAE, one stochastic layer "
              f"(part 2 took {minutes(results['iwae']['part_seconds'])}):\n")
        print(iwae_table(results["iwae"]))


if __name__ == "__main__":
    main()
