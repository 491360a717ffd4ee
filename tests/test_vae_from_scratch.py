"""demos/vae_from_scratch.py, the one-file NumPy VAE, computes what npvae computes.

Both get the same weights and the same eps; the loss and every parameter's gradient must agree
to 1e-12 in float64: |demo - npvae| <= 1e-12 * max(1, max |npvae's array|) for each array. The
two order their sums differently (npvae's BLAS kernels vs NumPy's ``@`` and ``sum``), so the
difference is rounding, ~1e-16 relative; a wrong formula is off by the size of the gradient.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from npvae import VAE
from npvae.datasets import load

DEMO = Path(__file__).resolve().parent.parent / "demos" / "vae_from_scratch.py"
TOLERANCE = 1e-12


def load_demo():
    spec = importlib.util.spec_from_file_location("vae_from_scratch", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_agree(mine: np.ndarray, npvae_array: np.ndarray, name: str) -> None:
    scale = max(1.0, float(np.abs(npvae_array).max()))
    error = float(np.abs(np.asarray(mine) - npvae_array).max())
    assert error <= TOLERANCE * scale, f"{name}: differs by {error:.3g} (scale {scale:.3g})"


def same_network(beta: float = 1.0):
    demo = load_demo()
    model = VAE(64, (16,), 3, beta=beta, negative_slope=demo.SLOPE, seed=5)
    for parameter in model.parameters():  # non-zero biases, so that their gradients count too
        parameter.value[...] += np.random.default_rng(1).normal(0, 0.1, parameter.shape)
    params = {name: parameter.value.copy() for name, parameter in model.named_parameters()}
    x = load("digits", "train", dtype=np.float64).x[:20]
    eps = np.random.default_rng(2).standard_normal((20, 3))
    return demo, model, params, x, eps


@pytest.mark.usefixtures("kernel_set")
@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_the_demo_vae_matches_npvae_loss_and_every_gradient_to_1e_12(beta: float) -> None:
    demo, model, params, x, eps = same_network(beta)
    assert sorted(params) == sorted(name for name, _ in model.named_parameters())
    demo_loss, demo_grads = demo.loss_and_grads(params, x, eps, beta=beta)
    loss = model.loss_and_grads(x, eps=eps)
    assert abs(demo_loss - loss) <= TOLERANCE * max(1.0, abs(loss))
    for name, parameter in model.named_parameters():
        assert_agree(demo_grads[name], parameter.grad, name)


def test_the_parity_check_catches_a_wrong_formula() -> None:
    """The demo with the KL's logvar gradient off by a factor 2 no longer matches npvae."""
    demo, model, params, x, eps = same_network()
    right = demo.gaussian_kl
    demo.gaussian_kl = lambda mu, logvar: (lambda v, gm, gl: (v, gm, 2 * gl))(*right(mu, logvar))
    _, demo_grads = demo.loss_and_grads(params, x, eps)
    model.loss_and_grads(x, eps=eps)
    with pytest.raises(AssertionError, match="head.weight"):
        assert_agree(demo_grads["head.weight"], model.head.weight.grad, "head.weight")


def test_the_demo_adam_step_matches_npvae_adam() -> None:
    from npvae import Adam

    demo, model, params, x, eps = same_network()
    optimizer, state = Adam(model.parameters(), lr=1e-2), demo.adam_state(params)
    for _ in range(3):
        _, demo_grads = demo.loss_and_grads(params, x, eps)
        demo.adam_step(params, demo_grads, state, lr=1e-2)
        model.loss_and_grads(x, eps=eps)
        optimizer.step()
    for name, parameter in model.named_parameters():
        assert_agree(params[name], parameter.value, name)


def test_the_demo_runs_as_a_script_and_lowers_its_loss(capsys: pytest.CaptureFixture) -> None:
    load_demo().main(["--epochs", "3"])
    losses = [float(line.split("loss")[1].split()[0]) for line in capsys.readouterr().out.splitlines()
              if line.startswith("epoch")]
    assert len(losses) == 2 and losses[-1] < losses[0]
