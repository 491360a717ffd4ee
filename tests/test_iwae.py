"""Tests for the importance-weighted training objective (npvae.models.iwae, VAE.iw_loss_and_grads,
fit(iw_samples=k)).

Claims: the loss is -mean L_k computed from its definition; the hand-written gradient matches
central finite differences in float64 with a fixed eps of shape (batch, k, latent) (step 1e-6,
|analytic - numeric| <= 1e-7 + 1e-5 max(|analytic|, |numeric|), the library's defaults) and a
planted error in it is caught; PyTorch autograd of -(logsumexp(log w) - log k) agrees to 1e-10
relative in float64 (both on each kernel set, fast and reference); k = 1 is today's VAE objective
to the bit (closed-form KL, same draws).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special

import npvae
from npvae import VAE, gradcheck

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

INPUT_DIM = 10
BATCH = 3


def data_for(model: VAE, batch: int = BATCH, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if model.output == "bernoulli":
        return rng.uniform(0.05, 0.95, (batch, model.input_dim))
    return rng.normal(0.5, 1.0, (batch, model.input_dim))


def log_weights_by_hand(model: VAE, x: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """log w_i = log p(x|z_i) + log N(z_i; 0, I) - log N(z_i; mu, sigma^2), every 2 pi kept."""
    mu, logvar = model.encode(x)
    z = mu[:, None, :] + np.exp(0.5 * logvar)[:, None, :] * eps
    latent = model.latent_dim
    log_p_z = -0.5 * (z**2).sum(-1) - 0.5 * latent * math.log(2 * math.pi)
    log_q_z = (-0.5 * (((z - mu[:, None, :]) ** 2) / np.exp(logvar)[:, None, :]).sum(-1)
               - 0.5 * logvar.sum(-1)[:, None] - 0.5 * latent * math.log(2 * math.pi))
    logits = model.decoder.forward(z.reshape(-1, latent)).reshape(x.shape[0], eps.shape[1], -1)
    if model.output == "bernoulli":
        log_p_x = (x[:, None, :] * logits - np.logaddexp(0.0, logits)).sum(-1)
    else:
        log_p_x = (-0.5 * (x[:, None, :] - logits) ** 2).sum(-1) - 0.5 * model.input_dim * math.log(2 * math.pi)
    return log_p_x + log_p_z - log_q_z


def check_iw_gradients(model: VAE, k: int, seed: int = 1):
    x = data_for(model)
    eps = np.random.default_rng(seed).standard_normal((BATCH, k, model.latent_dim))
    names = [name for name, _ in model.named_parameters()]
    params = model.parameters()

    def fun(*values: np.ndarray) -> tuple[float, list[np.ndarray]]:
        return model.iw_loss_and_grads(x, eps=eps), [p.grad.copy() for p in params]

    return gradcheck(fun, [p.value for p in params], names=names)


@pytest.mark.usefixtures("kernel_set")
@pytest.mark.parametrize("k", [2, 5])
@pytest.mark.parametrize("make", [
    lambda: VAE(INPUT_DIM, (6,), 3, activation="tanh", seed=1),
    lambda: VAE(INPUT_DIM, (6, 5), 2, activation="leaky_relu", seed=2),
    lambda: VAE(INPUT_DIM, (6,), 3, activation="sigmoid", output="gaussian", seed=3),
], ids=["bernoulli_tanh", "bernoulli_leaky_relu_two_hidden", "gaussian_sigmoid"])
def test_iw_gradients_match_finite_differences(make, k: int) -> None:
    report = check_iw_gradients(make(), k)
    assert report.passed, str(report)


def test_iw_gradient_check_catches_a_planted_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # drop the -1/(2B) from d(1/2 sum logvar)/dlogvar: a plausible slip that only this term shows
    model = VAE(INPUT_DIM, (6,), 3, activation="tanh", seed=1)
    original = model._iw_loss_and_grads

    def wrong(x, eps, rng, k):
        loss = original(x, eps, rng, k)
        model.head.bias.grad[model.latent_dim:] += 0.5  # batch * 1/(2B) on each logvar bias
        return loss

    assert check_iw_gradients(model, 4).passed
    monkeypatch.setattr(model, "_iw_loss_and_grads", wrong)
    report = check_iw_gradients(model, 4)
    assert not report.passed
    assert [entry.name for entry in report.entries if not entry.passed] == ["head.bias"]


@pytest.mark.parametrize("output", ["bernoulli", "gaussian"])
def test_iw_loss_is_minus_the_mean_importance_weighted_bound(output: str) -> None:
    model = VAE(INPUT_DIM, (6,), 3, output=output, seed=4)
    x = data_for(model)
    eps = np.random.default_rng(2).standard_normal((BATCH, 7, 3))
    expected = -(scipy.special.logsumexp(log_weights_by_hand(model, x, eps), axis=1) - math.log(7)).mean()
    assert model.iw_loss_and_grads(x, eps=eps) == pytest.approx(expected, rel=1e-12)
    assert model.last_recon + model.last_kl == pytest.approx(expected, rel=1e-12)


def test_iw_loss_with_rng_draws_eps_of_shape_batch_k_latent_from_it() -> None:
    model = VAE(INPUT_DIM, (6,), 3, seed=5)
    x = data_for(model)
    drawn = model.iw_loss_and_grads(x, k=4, rng=np.random.default_rng(9))
    eps = np.random.default_rng(9).standard_normal((BATCH, 4, 3))
    assert drawn == model.iw_loss_and_grads(x, eps=eps)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_k_one_is_the_vae_objective_bit_for_bit(dtype) -> None:
    model = VAE(INPUT_DIM, (6,), 3, beta=1.0, seed=6, dtype=dtype)
    x = data_for(model).astype(dtype)
    eps = np.random.default_rng(3).standard_normal((BATCH, 1, 3)).astype(dtype)
    vae_loss = model.loss_and_grads(x, eps=eps[:, 0])
    vae_grads = [p.grad.copy() for p in model.parameters()]
    vae_terms = (model.last_recon, model.last_kl)
    assert model.iw_loss_and_grads(x, eps=eps) == vae_loss
    assert (model.last_recon, model.last_kl) == vae_terms
    for expected, parameter in zip(vae_grads, model.parameters()):
        np.testing.assert_array_equal(parameter.grad, expected)
    # with rng: the same draws as loss_and_grads
    assert model.iw_loss_and_grads(x, k=1, rng=np.random.default_rng(4)) == model.loss_and_grads(
        x, rng=np.random.default_rng(4))


def test_the_bound_tightens_with_k_on_average() -> None:
    model = VAE(INPUT_DIM, (6,), 3, seed=7)
    x = data_for(model, batch=50)
    losses = {k: np.mean([model.iw_loss_and_grads(x, k=k, rng=np.random.default_rng(seed)) for seed in range(20)])
              for k in (1, 5, 50)}
    assert losses[1] > losses[5] > losses[50]


def test_iw_loss_and_grads_checks_its_arguments() -> None:
    model = VAE(INPUT_DIM, (6,), 3, seed=8)
    x = data_for(model)
    with pytest.raises(ValueError, match=r"^eps, rng: expected exactly one"):
        model.iw_loss_and_grads(x, k=2)
    with pytest.raises(ValueError, match=r"^eps: expected shape \(3, k, 3\), got \(3, 3\)"):
        model.iw_loss_and_grads(x, eps=np.zeros((BATCH, 3)))
    with pytest.raises(ValueError, match=r"^k: expected eps.shape\[1\] = 2 or None, got 3"):
        model.iw_loss_and_grads(x, k=3, eps=np.zeros((BATCH, 2, 3)))
    with pytest.raises(ValueError, match=r"^k: expected a positive integer with rng, got None"):
        model.iw_loss_and_grads(x, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"^k: expected a positive integer, got 0"):
        model.iw_loss_and_grads(x, k=0, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"^eps: expected finite values"):
        model.iw_loss_and_grads(x, eps=np.full((BATCH, 2, 3), np.nan))
    with pytest.raises(ValueError, match=r"^k: the importance-weighted bound \(k > 1\) needs beta = 1"):
        VAE(INPUT_DIM, (6,), 3, beta=2.0).iw_loss_and_grads(x, k=2, rng=np.random.default_rng(0))


# -- PyTorch parity ------------------------------------------------------------------------------
def torch_mirror(model: VAE, torch):
    """torch Sequentials computing the model's encoder, head and decoder, with its weights."""
    def like(module):
        if isinstance(module, npvae.Sequential):
            return torch.nn.Sequential(*(like(layer) for layer in module.layers))
        if isinstance(module, npvae.Dense):
            linear = torch.nn.Linear(module.in_features, module.out_features, dtype=torch.float64)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(module.weight.value.T.copy()))
                linear.bias.copy_(torch.from_numpy(module.bias.value.copy()))
            return linear
        assert isinstance(module, npvae.Tanh)
        return torch.nn.Tanh()

    mirror = torch.nn.ModuleDict({name: like(getattr(model, name)) for name in ("encoder", "head", "decoder")})
    assert sorted(dict(mirror.named_parameters())) == sorted(dict(model.named_parameters()))
    return mirror


@pytest.mark.usefixtures("kernel_set")
@pytest.mark.parametrize("output", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("k", [2, 6])
def test_iw_loss_and_gradients_match_torch_autograd(output: str, k: int) -> None:
    torch = pytest.importorskip("torch")
    model = VAE(16, (12, 10), 3, activation="tanh", output=output, seed=9)
    rng = np.random.default_rng(10)
    model.iw_loss_and_grads(rng.uniform(size=(5, 16)), k=k + 1, rng=rng)  # warm the work buffers on another shape
    x = rng.uniform(size=(8, 16)) if output == "bernoulli" else rng.normal(0.5, 1.0, (8, 16))
    eps = rng.standard_normal((x.shape[0], k, 3))
    loss = model.iw_loss_and_grads(x, eps=eps)

    mirror = torch_mirror(model, torch)
    x_t, eps_t = torch.from_numpy(x), torch.from_numpy(eps)
    mu, logvar = mirror["head"](mirror["encoder"](x_t)).chunk(2, dim=1)
    z = mu[:, None, :] + torch.exp(0.5 * logvar)[:, None, :] * eps_t
    decoded = mirror["decoder"](z)
    target = x_t[:, None, :].expand_as(decoded)
    if output == "bernoulli":
        log_p_x = -torch.nn.functional.binary_cross_entropy_with_logits(decoded, target, reduction="none").sum(-1)
    else:
        log_p_x = -0.5 * ((target - decoded) ** 2).sum(-1) - 0.5 * 16 * math.log(2 * math.pi)
    normal = torch.distributions.Normal
    log_p_z = normal(0.0, 1.0).log_prob(z).sum(-1)
    log_q_z = normal(mu[:, None, :], torch.exp(0.5 * logvar)[:, None, :]).log_prob(z).sum(-1)
    log_w = log_p_x + log_p_z - log_q_z
    torch_loss = -(torch.logsumexp(log_w, dim=1) - math.log(k)).mean()
    torch_loss.backward()

    assert loss == pytest.approx(torch_loss.item(), rel=1e-10)
    for name, parameter in mirror.named_parameters():
        grad = parameter.grad.numpy()
        expected = grad.T if name.endswith("weight") else grad
        actual = dict(model.named_parameters())[name].grad
        scale = float(np.abs(expected).max())
        np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-12 * scale, err_msg=name)


# -- training on it --------------------------------------------------------------------------------
DIGITS = npvae.datasets.load("digits", "train")
DIGITS_TEST = npvae.datasets.load("digits", "test")


def test_fit_with_iw_samples_one_is_fit_to_the_bit() -> None:
    runs = []
    for options in ({}, {"iw_samples": 1}):
        model = VAE(64, (16,), 4, seed=12)
        history = npvae.fit(model, DIGITS.x[:300], 2, batch_size=50, seed=3, binarize=True, progress=False, **options)
        runs.append((history.as_dict(), model.state_dict()))
    (history_a, state_a), (history_b, state_b) = runs
    assert {k: v for k, v in history_a.items() if k != "seconds"} == \
        {k: v for k, v in history_b.items() if k != "seconds"}
    for name in state_a:
        np.testing.assert_array_equal(state_a[name], state_b[name], err_msg=name)


def test_fit_on_the_iwae_objective_raises_the_held_out_bound_and_records_minus_l_k() -> None:
    model = VAE(64, (32,), 8, activation="tanh", seed=13)
    x_test = (np.random.default_rng(0).random(DIGITS_TEST.x.shape) < DIGITS_TEST.x).astype(np.float64)
    before = -model.log_likelihood(x_test, k=5, rng=np.random.default_rng(1)).mean()
    history = npvae.fit(model, DIGITS.x, 3, batch_size=100, iw_samples=5, binarize=True, progress=False)
    after = -model.log_likelihood(x_test, k=5, rng=np.random.default_rng(1)).mean()
    assert after < before - 5.0
    assert history.loss[-1] < history.loss[0]
    assert history.loss == [r + kl for r, kl in zip(history.recon, history.kl)]


def test_fit_refuses_iw_samples_where_the_bound_does_not_apply() -> None:
    x = DIGITS.x[:20]
    with pytest.raises(ValueError, match=r"^iw_samples: expected a positive integer, got 0"):
        npvae.fit(VAE(64, (8,), 2), x, 1, iw_samples=0)
    with pytest.raises(ValueError, match=r"^iw_samples: the importance-weighted objective needs a VAE, got AE"):
        npvae.fit(npvae.AE(64, (8,), 2), x, 1, iw_samples=2)
    with pytest.raises(ValueError, match=r"^iw_samples: k = 2 needs beta = 1 and kl_warmup_epochs = 0"):
        npvae.fit(VAE(64, (8,), 2, beta=0.5), x, 1, iw_samples=2)
    with pytest.raises(ValueError, match=r"^iw_samples: k = 3 needs beta = 1 and kl_warmup_epochs = 0"):
        npvae.fit(VAE(64, (8,), 2), x, 1, iw_samples=3, kl_warmup_epochs=1)


def test_cli_trains_on_the_iwae_bound_and_refuses_it_where_it_does_not_apply(tmp_path, capsys) -> None:
    from npvae.cli import main

    fast = ["--hidden", "16", "--batch-size", "256", "--lr", "0.01", "--epochs", "1"]
    assert main(["train", "--iw-samples", "3", "--binarize", "--out", str(tmp_path / "run"), *fast]) == 0
    assert "IWAE objective L_3" in capsys.readouterr().out
    assert main(["train", "--iw-samples", "3", "--model", "ae", "--out", str(tmp_path / "ae"), *fast]) == 1
    assert "--iw-samples applies to --model vae only, not ae" in capsys.readouterr().err
    assert main(["train", "--iw-samples", "3", "--beta", "2", "--out", str(tmp_path / "beta"), *fast]) == 1
    assert "drop --beta and --kl-warmup" in capsys.readouterr().err
