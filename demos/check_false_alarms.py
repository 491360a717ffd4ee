"""How often npvae.check names each planted bug, and how often it cries wolf, over many seeds.

    python demos/check_false_alarms.py               # 100 seeds, PyTorch and NumPy (~15 min on 2 busy cores)
    python demos/check_false_alarms.py --seeds 10    # quicker

For each seed (new weights, data and noise) and each framework (PyTorch if installed, and NumPy):
  * a correct VAE (five architectures in turn: relu, leaky_relu with two hidden layers, tanh
    with a Gaussian decoder, sigmoid, no hidden layer) is checked with its loss, gradients and
    sampler: a false alarm is a report that is not ok;
  * each bug id is planted alone in a VAE (leaky_relu, relu or tanh in turn, with a square
    decoder layer for skipped-layer) and the same full check runs: "named" counts the seeds
    where the report's bugs are exactly that id.
The planted VAEs are those of the tests (tests/buggy_vaes.py). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from buggy_vaes import NumPyVAE, TorchVAE, data  # noqa: E402

from npvae.check import BUGS, check_vae  # noqa: E402

CORRECT = [dict(hidden=(7,), activation="relu", square=False),
           dict(hidden=(8, 5), activation="leaky_relu"),
           dict(hidden=(6,), activation="tanh", output="gaussian"),
           dict(hidden=(5,), activation="sigmoid", square=False),
           dict(hidden=(), activation="identity")]
PLANTED = [dict(hidden=(6,), activation="leaky_relu"), dict(hidden=(8, 5), activation="relu"),
           dict(hidden=(6,), activation="tanh")]


def full_check(user, seed: int, gaussian: bool = False):
    x, eps = data(seed=seed)
    if gaussian:
        x = 4 * x - 2
    return check_vae(user.npvae_model(), x=x, eps=eps, loss=user.loss, grads=user.grads, sample=user.sample)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100)
    args = parser.parse_args()
    frameworks = {"numpy": NumPyVAE}
    if importlib.util.find_spec("torch") is not None:
        frameworks = {"torch": TorchVAE, **frameworks}
    named = {(bug, fw): 0 for bug in BUGS for fw in frameworks}
    extra = {(bug, fw): 0 for bug in BUGS for fw in frameworks}
    false_alarms = {fw: 0 for fw in frameworks}
    started = time.perf_counter()
    for seed in range(args.seeds):
        for fw, make in frameworks.items():
            options = CORRECT[seed % len(CORRECT)]
            report = full_check(make(seed=seed, **options), seed, options.get("output") == "gaussian")
            if not report.ok:
                false_alarms[fw] += 1
                print(f"false alarm, {fw}, seed {seed}:\n{report}\n", file=sys.stderr)
            for bug in BUGS:
                report = full_check(make((bug,), seed=seed, **PLANTED[seed % len(PLANTED)]), seed)
                named[bug, fw] += report.bugs == (bug,)
                extra[bug, fw] += bool(set(report.bugs) - {bug})
        print(f"seed {seed + 1}/{args.seeds} done, {time.perf_counter() - started:.0f} s", file=sys.stderr)
        if (seed + 1) % 10 == 0 and seed + 1 < args.seeds:  # the table so far, should the run be cut short
            print(table(named, extra, false_alarms, seed + 1), file=sys.stderr)
    print(table(named, extra, false_alarms, args.seeds))


def table(named: dict, extra: dict, false_alarms: dict, n: int) -> str:
    lines = [f"| bug id | planted in | named exactly (of {n} seeds) | other ids named too |", "|---|---|---|---|"]
    lines += [f"| `{bug}` | {fw} | {named[bug, fw]}/{n} | {extra[bug, fw]}/{n} |" for bug, fw in named]
    lines += [f"\nfalse alarms on correct {fw} VAEs: {count}/{n} seeds (loss, gradients and sampler checked)"
              for fw, count in false_alarms.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
