"""Training speed of npvae against PyTorch and against the matrix-product limit.

    python demos/benchmark.py                      # MNIST if found, else random data of its shape
    python demos/benchmark.py --epochs 5 --threads 1 --skip-torch
    python demos/benchmark.py --busy               # also an epoch beside a competing CPU-bound process

The model is the pytorch/examples VAE: 784-400-20 with ReLU, a Bernoulli decoder (binary
cross-entropy summed over pixels), batch 128, Adam with lr 1e-3, one epoch = the 60,000 MNIST
training images in a new random order. Everything runs in one process, in rounds: the sgemm
throughput, then one epoch each of npvae float32 (a plain loop over ``loss_and_grads`` and
``step``), npvae float32 through ``npvae.fit``, PyTorch (the same plain loop; the example's
DataLoader would only add time to PyTorch's side) and npvae float64, each after a pause, with
one thread count for both libraries. Each model trains its own epochs 1, 2, 3, ... and the
median of each is reported. Two PyTorch rows: the pytorch/examples model as written (sigmoid, then
``binary_cross_entropy`` on probabilities, ``Adam()``), and a tuned one (logits and
``binary_cross_entropy_with_logits``, ``Adam(fused=True)`` where this PyTorch has it on CPU). Rows
at batch 20 (the IWAE paper's) and 512 time ``npvae.fit`` against the pytorch/examples model at
those sizes. ``--busy`` then starts its own competing process (``python -c "while True: pass"`` in
a new session), times ``fit`` epochs beside it with 1 thread and with ``--threads`` (and, for
``--threads`` > 1, the plain loop on OpenBLAS's own threads), and ends
it. ``log_likelihood`` (k importance samples per image) is timed against the same computation
in PyTorch on the same weights.

The limit: an epoch's matrix products (forward; backward to the weights; backward to the inputs
of every layer but the first, whose input is data) counted in FLOPs, divided by the throughput
BLAS sgemm reaches on exactly these products, in the memory orders npvae uses (median over
the rounds). npvae's fraction of
the limit is limit time / npvae time. The VQ-VAE row (issue 14) trains a VQ-VAE of the same
widths (its 20 encoder outputs read as 10 codes of 2, an EMA codebook of 64; its fraction of the
limit is against the VAE's products) and the last lines give its epoch time over the VAE's. Timings are only comparable within one run on an
otherwise idle machine: the load average is printed at the start and the end.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5,
                        help="timed epochs per implementation; the median is reported (default 5)")
    parser.add_argument("--threads", type=int, default=2,
                        help="threads: OpenBLAS's for the plain loops, npvae's for fit and log_likelihood, "
                             "PyTorch's (default 2)")
    parser.add_argument("--data", choices=("mnist", "random"), default="mnist",
                        help="MNIST (falls back to random data if its files are absent) or random")
    parser.add_argument("--data-dir", default=None,
                        help="directory with the MNIST IDX files (default: $NPVAE_DATA/mnist, $NPVAE_MNIST_DIR, "
                             "else npvae's download cache; nothing is downloaded)")
    parser.add_argument("--skip-torch", action="store_true", help="do not time PyTorch")
    parser.add_argument("--skip-iwae", action="store_true", help="do not time log_likelihood")
    parser.add_argument("--skip-memory", action="store_true", help="do not measure peak memory")
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[20, 512], metavar="B",
                        help="other batch sizes timed, npvae fit against the pytorch/examples model "
                             "(default: 20 512)")
    parser.add_argument("--busy", action="store_true",
                        help="also time fit epochs beside a competing CPU-bound process that the "
                             "benchmark starts and ends")
    parser.add_argument("--iwae-images", type=int, default=200,
                        help="test images for the log_likelihood row (default 200)")
    parser.add_argument("--iwae-k", type=int, default=1000, help="k of the log_likelihood row (default 1000)")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.threads < 1:
        parser.error("--epochs and --threads must be positive")
    return args


if __name__ == "__main__":
    ARGS = parse_args()
    LOAD_AT_START = os.getloadavg()  # before this process's own imports and data loading add to it
    # OpenBLAS reads its thread count when it loads: set it before NumPy and SciPy are imported
    # (and so for a child process too). PyTorch gets the same count from set_num_threads.
    os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)

import ctypes  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

try:
    import npvae
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import npvae

INPUT_DIM, HIDDEN_DIM, LATENT_DIM = 784, 400, 20
BATCH_SIZE = 128
VQVAE_RUNNER = "npvae VQ-VAE float32"
LEARNING_RATE = 1e-3
PAUSE_SECONDS = 1.0  # between epochs: lets one library's spinning worker threads go to sleep
# (in, out) of each matrix product; the encoder's head is fc21 and fc22 side by side
LAYERS = ((INPUT_DIM, HIDDEN_DIM), (HIDDEN_DIM, 2 * LATENT_DIM), (LATENT_DIM, HIDDEN_DIM),
          (HIDDEN_DIM, INPUT_DIM))
# memory order (input, output) of each layer in npvae's VAE: data and z row-major, the hidden
# activations column-major (Dense(order="F")), the head's and the decoder's outputs row-major
ORDERS = (("C", "F"), ("F", "C"), ("C", "F"), ("F", "C"))


# -- data ----------------------------------------------------------------------------------------
def load_data(kind: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    """(train (60000, 784), test (10000, 784), description), float32 in [0, 1]."""
    if kind == "mnist":
        try:
            train = npvae.datasets.load("mnist", "train", data_dir=data_dir, download=False).x
            test = npvae.datasets.load("mnist", "test", data_dir=data_dir, download=False).x
            return train, test, "MNIST (60,000 training images)"
        except (OSError, ValueError) as error:
            reason = f"MNIST not found ({error})"
    else:
        reason = "--data random"
    rng = np.random.default_rng(0)
    train = (rng.random((60_000, INPUT_DIM), dtype=np.float32) < 0.13).astype(np.float32)
    test = (rng.random((10_000, INPUT_DIM), dtype=np.float32) < 0.13).astype(np.float32)
    return train, test, f"random binary data of MNIST's shape (60000, 784); {reason}"


# -- the FLOP count and the sgemm limit ----------------------------------------------------------
def epoch_gemm_flops(n: int) -> int:
    """2 m k n per product: forward, dL/dW and dL/dx of each layer, no dL/dx for the first."""
    per_row = sum(2 * fan_in * fan_out * (2 if index == 0 else 3)
                  for index, (fan_in, fan_out) in enumerate(LAYERS))
    return n * per_row


def sgemm_seconds_per_batch(repeats: int = 200) -> float:
    """Median time of one batch's matrix products with BLAS sgemm (``np.matmul``, on OpenBLAS's own
    threads), with the shapes and memory orders of npvae's training step, through the kernel its
    Dense layers call (the fast ``kernels.matmul``, on the calling thread alone: npvae's own threads
    are 1 outside ``fit``): nothing else is timed, so this is the step's matrix products at BLAS speed."""
    from npvae import kernels

    _matmul = kernels.implementation("matmul", "fast")

    rng = np.random.default_rng(0)
    products = []
    for index, ((fan_in, fan_out), (input_order, output_order)) in enumerate(zip(LAYERS, ORDERS)):
        x = rng.standard_normal((BATCH_SIZE, fan_in), dtype=np.float32).copy(order=input_order)
        weight = rng.standard_normal((fan_in, fan_out), dtype=np.float32)
        grad_y = rng.standard_normal((BATCH_SIZE, fan_out), dtype=np.float32).copy(order=output_order)
        y = np.zeros_like(grad_y)  # zeros_like keeps the memory order
        grad_weight, grad_x = np.zeros_like(weight), np.zeros_like(x)
        products.append(lambda x=x, w=weight, y=y: _matmul(x, w, out=y, beta=0.0))  # y = x W (+ b after)
        products.append(lambda x=x, g=grad_y, gw=grad_weight: _matmul(x.T, g, out=gw, beta=0.0))  # dW = x^T G
        if index > 0:
            products.append(lambda g=grad_y, w=weight, gx=grad_x: _matmul(g, w.T, out=gx, beta=0.0))  # dx = G W^T
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for product in products:
            product()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# -- threads -------------------------------------------------------------------------------------
def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def openblas_core() -> str:
    """The kernel NumPy's OpenBLAS (the one ``np.matmul`` calls) chose for this CPU (e.g. Haswell,
    SkylakeX), or "unknown"."""
    with open("/proc/self/maps") as maps:
        paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line},
                       key=lambda path: "numpy" not in path)
    for path in paths:
        library = ctypes.CDLL(path)
        for name in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename64_",
                     "openblas_get_corename"):
            if hasattr(library, name):
                function = getattr(library, name)
                function.restype = ctypes.c_char_p
                return function().decode()
    return "unknown"


def format_load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{value:.2f}" for value in load)


# -- npvae ---------------------------------------------------------------------------------------
def npvae_model(dtype: type) -> tuple[npvae.VAE, npvae.Adam]:
    model = npvae.VAE(INPUT_DIM, (HIDDEN_DIM,), LATENT_DIM, activation="relu", dtype=dtype)
    return model, npvae.Adam(model.parameters(), lr=LEARNING_RATE)


def npvae_epoch(model: npvae.VAE, optimizer: npvae.Adam, x: np.ndarray, rng: np.random.Generator) -> float:
    """One epoch written out as the PyTorch loop below is; returns the mean training loss. It runs
    with the BLAS threads set for the whole process (``--threads``)."""
    order = rng.permutation(x.shape[0])
    total = 0.0
    for start in range(0, x.shape[0], BATCH_SIZE):
        batch = x[order[start : start + BATCH_SIZE]]
        total += model.loss_and_grads(batch, rng=rng) * batch.shape[0]  # batch mean, grads set
        optimizer.step()
    return total / x.shape[0]


def npvae_fit_epoch(model: npvae.VAE, optimizer: npvae.Adam, x: np.ndarray, rng: np.random.Generator,
                    threads: int, batch_size: int = BATCH_SIZE) -> float:
    """One epoch of ``npvae.fit``, which also checks the data and every step's gradient."""
    history = npvae.fit(model, x, epochs=1, batch_size=batch_size, optimizer=optimizer, rng=rng,
                        progress=False, threads=threads)
    return history.loss[-1]


def npvae_vqvae_model() -> tuple[npvae.VQVAE, npvae.Adam]:
    """A VQ-VAE of the VAE's widths: 784-400-20, the 20 outputs read as 10 codes of 2 (64 in the
    codebook, EMA), the decoder 20-400-784; float32."""
    model = npvae.VQVAE(INPUT_DIM, (HIDDEN_DIM,), num_latents=LATENT_DIM // 2, code_dim=2, num_codes=64,
                        codebook="ema", activation="relu", dtype=np.float32)
    return model, npvae.Adam(model.parameters(), lr=LEARNING_RATE)


# -- PyTorch: the pytorch/examples VAE, written out here ------------------------------------------
def torch_setup(threads: int, tuned: bool = False, batch_size: int = BATCH_SIZE, seed: int = 0):
    """(torch, epoch function, model). ``tuned``: the decoder returns logits, the loss is
    ``binary_cross_entropy_with_logits`` and Adam is ``fused=True`` where PyTorch supports it."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.set_num_threads(threads)

    class TorchVAE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(INPUT_DIM, HIDDEN_DIM)
            self.fc21 = nn.Linear(HIDDEN_DIM, LATENT_DIM)
            self.fc22 = nn.Linear(HIDDEN_DIM, LATENT_DIM)
            self.fc3 = nn.Linear(LATENT_DIM, HIDDEN_DIM)
            self.fc4 = nn.Linear(HIDDEN_DIM, INPUT_DIM)

        def encode(self, x):
            hidden = F.relu(self.fc1(x))
            return self.fc21(hidden), self.fc22(hidden)

        def decode_logits(self, z):
            return self.fc4(F.relu(self.fc3(z)))

        def forward(self, x):
            mu, logvar = self.encode(x)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            logits = self.decode_logits(z)
            return (logits if tuned else torch.sigmoid(logits)), mu, logvar

    def loss_function(output, x, mu, logvar):
        # as pytorch/examples: BCE on probabilities, summed; KL of N(mu, exp(logvar)) to N(0, I)
        if tuned:
            bce = F.binary_cross_entropy_with_logits(output, x, reduction="sum")
        else:
            bce = F.binary_cross_entropy(output, x, reduction="sum")
        return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())

    torch.manual_seed(seed)
    model = TorchVAE()
    options = {}
    if tuned:
        try:
            torch.optim.Adam([nn.Parameter(torch.zeros(1))], fused=True)
            options["fused"] = True
        except (RuntimeError, TypeError):  # no fused Adam on this PyTorch's CPU build
            options["foreach"] = True
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, **options)

    def epoch(x) -> float:
        order = torch.randperm(x.shape[0])
        total = 0.0
        for start in range(0, x.shape[0], batch_size):
            batch = x[order[start : start + batch_size]]
            optimizer.zero_grad()
            output, mu, logvar = model(batch)
            loss = loss_function(output, batch, mu, logvar)
            loss.backward()
            total += loss.item()
            optimizer.step()
        return total / x.shape[0]

    epoch.options = options
    return torch, epoch, model


def torch_log_likelihood(torch, model, x, k: int, max_rows: int = 1024):
    """npvae's ``VAE.log_likelihood`` computed in PyTorch (float32, no autograd, the same blocks of
    at most ``max_rows`` decoder rows and the same streamed log-sum-exp)."""
    import torch.nn.functional as F

    with torch.no_grad():
        mu_all, logvar_all = model.encode(x)
        result = torch.empty(x.shape[0], dtype=torch.float64)
        per_block = max(1, max_rows // k)
        chunk = max(1, max_rows // per_block)
        for start in range(0, x.shape[0], per_block):
            stop = min(start + per_block, x.shape[0])
            n = stop - start
            largest = torch.full((n,), -float("inf"), dtype=torch.float64)
            total = torch.zeros(n, dtype=torch.float64)
            for first in range(0, k, chunk):
                m = min(chunk, k - first)
                mu = mu_all[start:stop].repeat_interleave(m, dim=0)
                logvar = logvar_all[start:stop].repeat_interleave(m, dim=0)
                eps = torch.randn_like(mu)
                z = mu + torch.exp(0.5 * logvar) * eps
                logits = model.decode_logits(z)
                target = x[start:stop].repeat_interleave(m, dim=0)
                recon = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(dim=1)
                log_w = -recon + 0.5 * ((eps * eps).sum(dim=1) - (z * z).sum(dim=1) + logvar.sum(dim=1))
                log_w = log_w.double().reshape(n, m)
                new_largest = torch.maximum(largest, log_w.max(dim=1).values)
                total = total * torch.exp(largest - new_largest) + torch.exp(log_w - new_largest[:, None]).sum(dim=1)
                largest = new_largest
            result[start:stop] = largest + torch.log(total) - np.log(k)
    return result


def torch_weights_from(torch, torch_model, model: npvae.VAE) -> None:
    """Copy npvae's weights into the PyTorch model (nn.Linear keeps W transposed; the encoder's
    head holds fc21 and fc22 side by side)."""
    weights = [parameter.value for parameter in model.parameters()]
    (w1, b1), (wh, bh), (w3, b3), (w4, b4) = zip(weights[0::2], weights[1::2])  # (W, b) per layer
    with torch.no_grad():
        for layer, (w, b) in ((torch_model.fc1, (w1, b1)), (torch_model.fc3, (w3, b3)), (torch_model.fc4, (w4, b4))):
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
            layer.bias.copy_(torch.from_numpy(np.ascontiguousarray(b)))
        torch_model.fc21.weight.copy_(torch.from_numpy(np.ascontiguousarray(wh[:, :LATENT_DIM].T)))
        torch_model.fc21.bias.copy_(torch.from_numpy(np.ascontiguousarray(bh[:LATENT_DIM])))
        torch_model.fc22.weight.copy_(torch.from_numpy(np.ascontiguousarray(wh[:, LATENT_DIM:].T)))
        torch_model.fc22.bias.copy_(torch.from_numpy(np.ascontiguousarray(bh[LATENT_DIM:])))


# -- timing ----------------------------------------------------------------------------------------
def timed(run, *args) -> tuple[float, float]:
    """(seconds, result) of run(*args), after a pause that lets idle worker threads sleep."""
    time.sleep(PAUSE_SECONDS)
    started = time.perf_counter()
    result = run(*args)
    return time.perf_counter() - started, result


def peak_memory_mb(args: argparse.Namespace) -> float:
    """Peak RSS (MB) of a fresh process that loads the training data and trains one float32 epoch.

    The child reads its own high-water mark (VmHWM): the parent's getrusage(RUSAGE_CHILDREN)
    would also count the pages the child shared with this large parent before its exec.
    """
    command = [sys.executable, os.path.abspath(__file__), "--memory-child", "--data", args.data,
               "--threads", str(args.threads)]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return int(output.split()[-1]) / 1024  # VmHWM is in kB


def memory_child(args: argparse.Namespace) -> None:
    x_train, _, _ = load_data(args.data, args.data_dir)
    model, optimizer = npvae_model(np.float32)
    npvae_fit_epoch(model, optimizer, x_train, np.random.default_rng(0), args.threads)
    with open("/proc/self/status") as status:
        print(next(line.split()[1] for line in status if line.startswith("VmHWM:")))


def competing_process() -> subprocess.Popen:
    """A CPU-bound process in its own session, as another user's job would be."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ratio_text(mine: float, theirs: float | None) -> str:
    return "-" if theirs is None else f"{mine / theirs:.2f}"


def main(args: argparse.Namespace, load_at_start: tuple[float, float, float]) -> None:
    if args.memory_child:
        memory_child(args)
        return
    start_load = format_load(load_at_start)
    print(f"load average at start: {start_load}")
    if load_at_start[0] > 0.3:
        print("warning: the machine is busy (1-minute load > 0.3): these timings are not reliable")
    x_train, x_test, data_description = load_data(args.data, args.data_dir)
    print(f"data: {data_description}")
    n = x_train.shape[0]

    flops = epoch_gemm_flops(n)
    print(f"threads: {args.threads}: the plain loops run on OpenBLAS's own {npvae.threads.blas_threads()} threads "
          f"(OPENBLAS_NUM_THREADS); npvae.fit and log_likelihood get threads={args.threads} (npvae's threads, "
          "OpenBLAS at 1)")
    print(f"epoch GEMM work: {flops / 1e9:.1f} GFLOP")

    # each runner trains its own model, so that round r times epoch r of every model (later
    # epochs are slower in both libraries: Adam's running means decay into subnormal numbers)
    runners = {}
    model32, model_fit, model64 = (npvae_model(dtype) for dtype in (np.float32, np.float32, np.float64))
    x64 = x_train.astype(np.float64)
    rngs = [np.random.default_rng(seed) for seed in range(3)]
    runners["npvae float32"] = lambda: npvae_epoch(*model32, x_train, rngs[0])
    runners["npvae float32, fit()"] = lambda: npvae_fit_epoch(*model_fit, x_train, rngs[1], args.threads)
    vqvae, vq_rng = npvae_vqvae_model(), np.random.default_rng(3)
    runners[VQVAE_RUNNER] = lambda: npvae_epoch(*vqvae, x_train, vq_rng)
    torch = None
    examples_name = tuned_name = None
    if not args.skip_torch:
        try:
            torch, torch_epoch, _ = torch_setup(args.threads)
        except ImportError:
            print("PyTorch not installed: skipped")
        else:
            _, tuned_epoch, _ = torch_setup(args.threads, tuned=True)
            x_torch = torch.from_numpy(x_train)
            examples_name = f"PyTorch {torch.__version__}, pytorch/examples model"
            tuned_name = f"PyTorch tuned (BCE with logits, Adam {tuned_epoch.options})"
            runners[examples_name] = lambda: torch_epoch(x_torch)
            runners[tuned_name] = lambda: tuned_epoch(x_torch)
            print(f"PyTorch threads: {torch.get_num_threads()}")
    runners["npvae float64"] = lambda: npvae_epoch(*model64, x64, rngs[2])
    # the other batch sizes: npvae fit and the pytorch/examples model, (row name, reference row name)
    reference_of = {name: examples_name for name in runners}
    for batch_size in args.batch_sizes:
        model_b = npvae_model(np.float32)
        rng_b = np.random.default_rng(10 + batch_size)
        name = f"npvae float32, fit(), batch {batch_size}"
        runners[name] = (lambda model_b=model_b, rng_b=rng_b, batch_size=batch_size:
                         npvae_fit_epoch(*model_b, x_train, rng_b, args.threads, batch_size))
        reference_of[name] = None
        if torch is not None:
            _, epoch_b, _ = torch_setup(args.threads, batch_size=batch_size)
            torch_b = f"PyTorch, pytorch/examples model, batch {batch_size}"
            runners[torch_b] = lambda epoch_b=epoch_b: epoch_b(x_torch)
            reference_of[name] = reference_of[torch_b] = torch_b

    seconds = {name: [] for name in runners}
    throughputs = []  # measured in every round too, so that the limit sees the same machine
    for round_index in range(args.epochs):
        _, batch_seconds = timed(sgemm_seconds_per_batch)
        throughputs.append(epoch_gemm_flops(BATCH_SIZE) / batch_seconds)
        print(f"round {round_index + 1}: sgemm on these shapes {throughputs[-1] / 1e9:.0f} GFLOP/s")
        for name, run in runners.items():
            elapsed, loss = timed(run)
            seconds[name].append(elapsed)
            print(f"round {round_index + 1}: {name:<60} {elapsed:6.2f} s   mean loss {loss:8.2f}", flush=True)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    throughput = statistics.median(throughputs)
    limit_seconds = flops / throughput
    print(f"GEMM limit: {flops / 1e9:.1f} GFLOP at {throughput / 1e9:.0f} GFLOP/s = "
          f"{limit_seconds:.2f} s per epoch")

    # the busy machine: fit epochs of the batch-128 model beside a competing process
    busy, busy_loop = {}, None
    if args.busy:
        idle_one_thread, _ = timed(lambda: npvae_fit_epoch(*model_fit, x_train, rngs[1], 1))
        print(f"idle: npvae fit, 1 thread {idle_one_thread:.2f} s")
        competitor = competing_process()
        try:
            time.sleep(2.0)
            for count in sorted({1, args.threads}):
                elapsed, _ = timed(lambda: npvae_fit_epoch(*model_fit, x_train, rngs[1], count))
                busy[count] = elapsed
                print(f"busy: npvae fit, {count} thread{'s' * (count > 1)} {elapsed:.2f} s", flush=True)
            if args.threads > 1:  # the plain loop: every product on OpenBLAS's own threads
                busy_loop, _ = timed(lambda: npvae_epoch(*model32, x_train, rngs[0]))
                print(f"busy: npvae plain loop, OpenBLAS's {args.threads} threads {busy_loop:.2f} s", flush=True)
        finally:
            competitor.kill()
            competitor.wait()

    iwae = None
    if not args.skip_iwae:
        images = x_test[: args.iwae_images]
        mine, estimate = timed(lambda: model32[0].log_likelihood(images, k=args.iwae_k, rng=np.random.default_rng(0),
                                                                 threads=args.threads))
        theirs = None
        if torch is not None:
            _, _, torch_model = torch_setup(args.threads)
            torch_weights_from(torch, torch_model, model32[0])
            images_torch = torch.from_numpy(np.ascontiguousarray(images))
            theirs, torch_estimate = timed(lambda: torch_log_likelihood(torch, torch_model, images_torch, args.iwae_k))
            print(f"log_likelihood mean: npvae {estimate.mean():.3f}, PyTorch {float(torch_estimate.mean()):.3f} "
                  "(same weights, different noise)")
        iwae = (mine, theirs)
        print(f"log_likelihood(k={args.iwae_k}) of {images.shape[0]} test images, float32: npvae {mine:.2f} s"
              + ("" if theirs is None else f", PyTorch {theirs:.2f} s"))
    memory_mb = None
    if not args.skip_memory:
        memory_mb = peak_memory_mb(args)
        print(f"peak RSS of a process training one float32 epoch: {memory_mb:.0f} MB")
    end_load = format_load(os.getloadavg())
    print(f"load average at end: {end_load}")

    print()
    print(f"Command: `{' '.join(['python', 'demos/benchmark.py', *sys.argv[1:]])}`  ")
    print(f"Machine: {cpu_name()}, {os.cpu_count()} cores, OpenBLAS core {openblas_core()}, "
          f"{args.threads} threads; {data_description}; load average {start_load} (start), "
          f"{end_load} (end)")
    print()
    print(f"| training, one epoch | seconds (median of {args.epochs}) | vs pytorch/examples | vs tuned PyTorch "
          "| fraction of GEMM limit |")
    print("|---|---|---|---|---|")
    for name, value in median.items():
        reference = reference_of[name]
        examples = ratio_text(value, median[reference] if reference else None)
        tuned = ratio_text(value, median[tuned_name]) if tuned_name and "batch" not in name else "-"
        limit = f"{limit_seconds / value:.0%}" if "batch" not in name else "-"
        print(f"| {name} | {value:.2f} | {examples} | {tuned} | {limit} |")
    print(f"| GEMM limit ({flops / 1e9:.0f} GFLOP at {throughput / 1e9:.0f} GFLOP/s, median) | "
          f"{limit_seconds:.2f} | - | - | 100% |")
    if examples_name:
        print("\nPer round, time / the reference PyTorch row's time in the same round "
              "(pytorch/examples model at the same batch size; tuned PyTorch after the slash):  ")
        for name in median:
            reference = reference_of[name]
            if reference is None or name == reference or name.startswith("PyTorch"):
                continue
            ratios = ", ".join(f"{mine / theirs:.2f}" for mine, theirs in zip(seconds[name], seconds[reference]))
            if "batch" not in name:
                ratios += " / " + ", ".join(f"{mine / theirs:.2f}" for mine, theirs in zip(seconds[name], seconds[tuned_name]))
            print(f"{name}: {ratios}  ")
    vq_ratios = [vq / vae for vq, vae in zip(seconds[VQVAE_RUNNER], seconds["npvae float32"])]
    print(f"\nVQ-VAE epoch / VAE epoch, same widths, float32 (target <= 1.3), per round: "
          f"{', '.join(f'{ratio:.2f}' for ratio in vq_ratios)}; median {statistics.median(vq_ratios):.2f}  ")
    if busy:
        idle = median["npvae float32, fit()"]
        print("\nBeside one competing CPU-bound process (started and ended by the benchmark), one npvae "
              "fit epoch, batch 128: " + "; ".join(
                  f"{count} thread{'s' * (count > 1)} {elapsed:.2f} s = {elapsed / idle:.2f}x the idle "
                  f"{args.threads}-thread median, {elapsed / idle_one_thread:.2f}x an idle 1-thread epoch "
                  f"({idle_one_thread:.2f} s)" for count, elapsed in busy.items()) + "  ")
        if args.threads > 1:
            print(f"The plain loop on OpenBLAS's own {args.threads} threads beside it: {busy_loop:.2f} s = "
                  f"{busy_loop / median['npvae float32']:.2f}x its idle median.  ")
    if iwae is not None:
        mine, theirs = iwae
        print(f"\n`log_likelihood(x_test[:{args.iwae_images}], k={args.iwae_k})`, float32: npvae {mine:.2f} s"
              + ("" if theirs is None else f", PyTorch (same computation and blocks) {theirs:.2f} s, "
                 f"ratio {mine / theirs:.2f}") + "  ")
    if memory_mb is not None:
        print(f"Peak RSS, one float32 training epoch on the full data: {memory_mb:.0f} MB")
    if examples_name:
        print("\nThe pytorch/examples model: sigmoid, then `F.binary_cross_entropy(recon, x, reduction='sum')`, "
              "separate fc21/fc22 heads, `Adam()`. Tuned: `F.binary_cross_entropy_with_logits`, "
              f"`Adam(**{tuned_epoch.options})`.")


if __name__ == "__main__":
    main(ARGS, LOAD_AT_START)
