"""Tests for npvae.CVAE: gradients (finite differences and PyTorch autograd), the loss against
its definition, sampling a chosen class, the likelihood estimate, and the checks on labels.

Gradient checks: ``npvae.gradcheck`` in float64 on ``loss_and_grads`` with a fixed eps, central
differences with step 1e-6, |analytic - numeric| <= 1e-7 + 1e-5 max(|analytic|, |numeric|) (the
library's defaults). PyTorch parity: 1e-10 relative in float64, as for the VAE. Both run on each
kernel set of ``npvae.kernels`` (fast and reference).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special

import npvae
from npvae import CVAE, gradcheck

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

INPUT_DIM = 10
CLASSES = 3
BATCH = 5


def data_for(model: CVAE, batch: int = BATCH, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.05, 0.95, (batch, model.input_dim)) if model.output == "bernoulli" else \
        rng.normal(0.5, 1.0, (batch, model.input_dim))
    return x, rng.integers(0, model.num_classes, batch)


def check_gradients(model: CVAE, **options):
    x, y = data_for(model)
    eps = np.random.default_rng(1).standard_normal((BATCH, model.latent_dim))
    params = model.parameters()

    def fun(*values: np.ndarray) -> tuple[float, list[np.ndarray]]:
        return model.loss_and_grads(x, y, eps=eps, **options), [p.grad.copy() for p in params]

    return gradcheck(fun, [p.value for p in params], names=[name for name, _ in model.named_parameters()])


MODELS = {
    "bernoulli_leaky_relu": lambda: CVAE(INPUT_DIM, CLASSES, (6,), 3, seed=1),
    "bernoulli_tanh_two_hidden": lambda: CVAE(INPUT_DIM, CLASSES, (6, 5), 2, activation="tanh", seed=2),
    "gaussian_sigmoid_beta": lambda: CVAE(INPUT_DIM, 4, (6,), 3, activation="sigmoid", output="gaussian",
                                          beta=0.5, seed=3),
    "no_hidden_layer": lambda: CVAE(INPUT_DIM, 2, (), 2, seed=4),
}


@pytest.mark.usefixtures("kernel_set")
@pytest.mark.parametrize("name", list(MODELS))
def test_cvae_gradients_match_finite_differences(name: str) -> None:
    report = check_gradients(MODELS[name]())
    assert report.passed, str(report)


def test_cvae_gradients_with_a_kl_weight_match_finite_differences() -> None:
    report = check_gradients(CVAE(INPUT_DIM, CLASSES, (6,), 3, seed=5), kl_weight=0.3)
    assert report.passed, str(report)


def test_cvae_gradient_check_catches_a_label_column_leaking_into_dz(monkeypatch: pytest.MonkeyPatch) -> None:
    # a plausible slip: slicing dL/d[z, y1hot] one column off, so that dL/dz arrives shifted by one
    model = CVAE(INPUT_DIM, CLASSES, (6,), 3, seed=6)
    assert check_gradients(model).passed
    backward = model.reparam.backward

    def shifted(grad_z: np.ndarray):
        return backward(np.roll(grad_z, 1, axis=1))

    monkeypatch.setattr(model.reparam, "backward", shifted)
    report = check_gradients(model)
    failed = {entry.name for entry in report.entries if not entry.passed}
    assert failed and all(name.startswith(("encoder", "head")) for name in failed)


@pytest.mark.parametrize("output", ["bernoulli", "gaussian"])
def test_cvae_loss_is_the_conditional_negative_elbo_computed_by_hand(output: str) -> None:
    model = CVAE(INPUT_DIM, CLASSES, (6,), 3, activation="tanh", output=output, beta=2.0, seed=7)
    x, y = data_for(model)
    eps = np.random.default_rng(2).standard_normal((BATCH, 3))
    one_hot = np.eye(CLASSES)[y]

    def dense(layer, h):
        return h @ layer.weight.value + layer.bias.value

    h = np.tanh(dense(model.encoder[0], np.hstack([x, one_hot])))
    stats = dense(model.head, h)
    mu, logvar = stats[:, :3], stats[:, 3:]
    z = mu + np.exp(0.5 * logvar) * eps
    out = dense(model.decoder[2], np.tanh(dense(model.decoder[0], np.hstack([z, one_hot]))))
    if output == "bernoulli":
        recon = (np.logaddexp(0, out) - x * out).sum(1)
    else:
        recon = 0.5 * ((x - out) ** 2).sum(1) + 0.5 * INPUT_DIM * math.log(2 * math.pi)
    kl = 0.5 * (np.exp(logvar) + mu**2 - 1 - logvar).sum(1)
    terms = model.terms(x, y, eps=eps)
    np.testing.assert_allclose(terms.recon, recon, rtol=1e-12)
    np.testing.assert_allclose(terms.kl, kl, rtol=1e-12)
    assert model.loss_and_grads(x, y, eps=eps) == pytest.approx((recon + 2.0 * kl).mean(), rel=1e-12)
    np.testing.assert_allclose(model.elbo(x, y, eps=eps), -(recon + kl), rtol=1e-12)


def test_the_label_changes_the_loss_and_the_code() -> None:
    model = CVAE(INPUT_DIM, CLASSES, (6,), 3, seed=8)
    x, y = data_for(model)
    eps = np.zeros((BATCH, 3))
    other = (y + 1) % CLASSES
    assert not np.allclose(model.terms(x, y, eps=eps).recon, model.terms(x, other, eps=eps).recon)
    assert not np.allclose(model.encode(x, y)[0], model.encode(x, other)[0])


def test_sample_decodes_standard_normal_codes_with_the_given_label() -> None:
    model = CVAE(INPUT_DIM, CLASSES, (6,), 3, seed=9)
    samples = model.sample(4, np.random.default_rng(3), labels=2)
    z = np.random.default_rng(3).standard_normal((4, 3))
    np.testing.assert_array_equal(samples, model.decode(z, np.full(4, 2)))
    mixed = model.sample(3, np.random.default_rng(3), labels=[0, 1, 2])
    assert not np.allclose(mixed[0], mixed[2])
    assert samples.shape == (4, INPUT_DIM) and (samples > 0).all() and (samples < 1).all()


def test_log_likelihood_is_the_log_mean_importance_weight_and_independent_of_max_rows() -> None:
    model = CVAE(INPUT_DIM, CLASSES, (6,), 3, seed=10)
    x, y = data_for(model)
    k = 7
    result = model.log_likelihood(x, y, k=k, rng=np.random.default_rng(4))
    eps = np.random.default_rng(4).standard_normal((BATCH * k, 3))  # drawn in the same order
    log_w = -model.terms(np.repeat(x, k, axis=0), np.repeat(y, k), eps=eps).loss
    mu, logvar = model.encode(np.repeat(x, k, axis=0), np.repeat(y, k))
    z = mu + np.exp(0.5 * logvar) * eps
    # terms.loss is recon + KL; log w = -recon + log p(z) - log q(z|x, y)
    log_w = log_w + model.terms(np.repeat(x, k, axis=0), np.repeat(y, k), eps=eps).kl \
        - 0.5 * (z**2).sum(1) + 0.5 * (eps**2).sum(1) + 0.5 * logvar.sum(1)
    expected = scipy.special.logsumexp(log_w.reshape(BATCH, k), axis=1) - math.log(k)
    np.testing.assert_allclose(result, expected, rtol=1e-12)
    np.testing.assert_allclose(model.log_likelihood(x, y, k=k, rng=np.random.default_rng(4), max_rows=3),
                               result, rtol=1e-12)


def test_config_rebuilds_the_model_and_a_checkpoint_restores_it(tmp_path) -> None:
    model = CVAE(INPUT_DIM, CLASSES, (6,), 3, beta=0.5, seed=11)
    again = CVAE(**model.config())
    for (name, a), (_, b) in zip(model.named_parameters(), again.named_parameters()):
        np.testing.assert_array_equal(a.value, b.value, err_msg=name)
    model.head.bias.value[...] = 0.25  # not the constructor's: the checkpoint must carry it
    path = npvae.save(model, tmp_path / "cvae.npz")
    loaded = npvae.load(path)
    assert type(loaded) is CVAE and loaded.config() == model.config()
    x, y = data_for(model)
    np.testing.assert_array_equal(loaded.encode(x, y)[0], model.encode(x, y)[0])


# -- the checks on labels --------------------------------------------------------------------------
@pytest.mark.parametrize("y, error, message", [
    (None, ValueError, r"^y: a CVAE needs the class labels of the data \(integers 0 \.\. 2\), got None"),
    (np.zeros(BATCH - 1, dtype=int), ValueError, r"^y: expected 5 labels, shape \(5,\) \(one per row\), got shape \(4,\)"),
    (np.zeros((BATCH, 1), dtype=int), ValueError, r"^y: expected 5 labels"),
    (np.array([0, 1, 2, 3, 0]), ValueError, r"^y: expected labels in 0 \.\. 2, got values in \[0, 3\]"),
    (np.array([0, -1, 2, 1, 0]), ValueError, r"^y: expected labels in 0 \.\. 2, got values in \[-1, 2\]"),
    (np.zeros(BATCH), TypeError, r"^y: expected integer class labels, got dtype float64"),
    (np.zeros(BATCH, dtype=bool), TypeError, r"^y: expected integer class labels, got dtype bool"),
])
def test_every_method_rejects_bad_labels_naming_y(y, error, message) -> None:
    model = CVAE(INPUT_DIM, CLASSES, (6,), 3, seed=12)
    x, _ = data_for(model)
    eps = np.zeros((BATCH, 3))
    calls = [lambda: model.encode(x, y), lambda: model.reconstruct(x, y), lambda: model.terms(x, y, eps=eps),
             lambda: model.elbo(x, y, eps=eps), lambda: model.loss_and_grads(x, y, eps=eps),
             lambda: model.log_likelihood(x, y, k=2, rng=np.random.default_rng(0))]
    for call in calls:
        with pytest.raises(error, match=message):
            call()


def test_sample_and_decode_check_their_labels() -> None:
    model = CVAE(INPUT_DIM, CLASSES, (6,), 3, seed=13)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"^labels: a CVAE needs the class labels"):
        model.sample(2, rng)
    with pytest.raises(ValueError, match=r"^labels: expected labels in 0 \.\. 2, got values in \[7, 7\]"):
        model.sample(2, rng, labels=7)
    with pytest.raises(ValueError, match=r"^labels: expected 2 labels"):
        model.sample(2, rng, labels=[0, 1, 2])
    with pytest.raises(ValueError, match=r"^labels: expected 2 labels"):
        model.decode(np.zeros((2, 3)), [1])


def test_public_methods_refuse_outputs_that_overflow_naming_the_input() -> None:
    model = CVAE(INPUT_DIM, CLASSES, (6,), 3, seed=17)
    with pytest.raises(ValueError, match=r"^z: the model's decoder output overflows float64"):
        model.decode(np.full((2, 3), 1e308), [0, 1])
    x, y = data_for(model)
    model.head.weight.value[...] = 1e308
    with pytest.raises(ValueError, match=r"^x: the model's encoding overflows float64"):
        model.encode(x, y)
    with pytest.raises(ValueError, match=r"^x: the model's encoding overflows float64"):
        model.reconstruct(x, y)


def test_constructor_rejects_fewer_than_two_classes() -> None:
    with pytest.raises(ValueError, match=r"^num_classes: expected at least 2 classes, got 1"):
        CVAE(INPUT_DIM, 1)
    with pytest.raises(ValueError, match=r"^num_classes: expected a positive integer, got 2.0"):
        CVAE(INPUT_DIM, 2.0)


# -- PyTorch parity ------------------------------------------------------------------------------
@pytest.mark.usefixtures("kernel_set")
@pytest.mark.parametrize("output", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-5)], ids=["float64", "float32"])
def test_cvae_loss_and_gradients_match_torch_autograd(output: str, dtype, rtol: float) -> None:
    torch = pytest.importorskip("torch")
    torch_dtype = {np.float64: torch.float64, np.float32: torch.float32}[dtype]
    model = CVAE(16, 4, (12, 10), 3, activation="leaky_relu", output=output, beta=1.5, seed=14, dtype=dtype)
    rng = np.random.default_rng(15)
    model.loss_and_grads(rng.uniform(size=(3, 16)).astype(dtype), np.array([0, 1, 3]),
                         rng=rng)  # warm the work buffers on another shape
    x = (rng.uniform(size=(8, 16)) if output == "bernoulli" else rng.normal(0.5, 1.0, (8, 16))).astype(dtype)
    y = rng.integers(0, 4, 8)
    eps = rng.standard_normal((8, 3)).astype(dtype)
    loss = model.loss_and_grads(x, y, eps=eps)

    def like(module):
        if isinstance(module, npvae.Sequential):
            return torch.nn.Sequential(*(like(layer) for layer in module.layers))
        if isinstance(module, npvae.Dense):
            linear = torch.nn.Linear(module.in_features, module.out_features, dtype=torch_dtype)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(module.weight.value.T.copy()))
                linear.bias.copy_(torch.from_numpy(module.bias.value.copy()))
            return linear
        return torch.nn.LeakyReLU(module.negative_slope)

    mirror = torch.nn.ModuleDict({name: like(getattr(model, name)) for name in ("encoder", "head", "decoder")})
    x_t = torch.from_numpy(x)
    one_hot = torch.nn.functional.one_hot(torch.from_numpy(y), 4).to(torch_dtype)
    mu, logvar = mirror["head"](mirror["encoder"](torch.cat([x_t, one_hot], 1))).chunk(2, dim=1)
    z = mu + torch.exp(0.5 * logvar) * torch.from_numpy(eps)
    decoded = mirror["decoder"](torch.cat([z, one_hot], 1))
    if output == "bernoulli":
        recon = torch.nn.functional.binary_cross_entropy_with_logits(decoded, x_t, reduction="none").sum(1)
    else:
        recon = 0.5 * ((x_t - decoded) ** 2).sum(1) + 0.5 * 16 * math.log(2 * math.pi)
    kl = -0.5 * (1 + logvar - mu**2 - torch.exp(logvar)).sum(1)
    torch_loss = (recon + 1.5 * kl).mean()
    torch_loss.backward()

    assert loss == pytest.approx(torch_loss.item(), rel=rtol)
    ours = dict(model.named_parameters())
    assert sorted(ours) == sorted(dict(mirror.named_parameters()))
    for name, parameter in mirror.named_parameters():
        grad = parameter.grad.numpy()
        expected = grad.T if name.endswith("weight") else grad
        scale = float(np.abs(expected).max())
        np.testing.assert_allclose(ours[name].grad, expected, rtol=rtol, atol=rtol * 1e-2 * scale, err_msg=name)


# -- training with labels --------------------------------------------------------------------------
DIGITS = npvae.datasets.load("digits", "train")
DIGITS_TEST = npvae.datasets.load("digits", "test")


def test_a_trained_cvae_uses_the_label_its_elbo_is_higher_with_the_true_one() -> None:
    model = CVAE(64, 10, (64,), 4, seed=16)
    history = npvae.fit(model, DIGITS.x, 10, batch_size=50, y_train=DIGITS.labels, x_val=DIGITS_TEST.x,
                        y_val=DIGITS_TEST.labels, progress=False)
    assert history.val_loss[-1] < history.val_loss[0]
    eps = np.random.default_rng(0).standard_normal((DIGITS_TEST.x.shape[0], 4))
    true = model.elbo(DIGITS_TEST.x, DIGITS_TEST.labels, eps=eps).mean()
    wrong = model.elbo(DIGITS_TEST.x, (DIGITS_TEST.labels + 5) % 10, eps=eps).mean()
    assert true > wrong + 1.0
    np.testing.assert_allclose(
        npvae.evaluate(model, DIGITS_TEST.x, rng=np.random.default_rng(1), y=DIGITS_TEST.labels)["loss"],
        -model.elbo(DIGITS_TEST.x, DIGITS_TEST.labels, rng=np.random.default_rng(1)).mean(), rtol=1e-12)


def test_fit_and_evaluate_check_the_labels() -> None:
    x, labels = DIGITS.x[:20], DIGITS.labels[:20]
    with pytest.raises(ValueError, match=r"^y_train: a CVAE needs the class labels of the data"):
        npvae.fit(CVAE(64, 10, (8,), 2), x, 1)
    with pytest.raises(ValueError, match=r"^y_train: expected 20 labels"):
        npvae.fit(CVAE(64, 10, (8,), 2), x, 1, y_train=labels[:19])
    with pytest.raises(ValueError, match=r"^y_train: expected labels in 0 \.\. 4, got values in \[0, 9\]"):
        npvae.fit(CVAE(64, 5, (8,), 2), x, 1, y_train=labels)
    with pytest.raises(ValueError, match=r"^y_val: a CVAE needs the class labels"):
        npvae.fit(CVAE(64, 10, (8,), 2), x, 1, y_train=labels, x_val=x)
    with pytest.raises(ValueError, match=r"^y_val: labels given without x_val"):
        npvae.fit(CVAE(64, 10, (8,), 2), x, 1, y_train=labels, y_val=labels)
    with pytest.raises(ValueError, match=r"^y_train: only a CVAE takes class labels; this is a VAE"):
        npvae.fit(npvae.VAE(64, (8,), 2), x, 1, y_train=labels)
    with pytest.raises(ValueError, match=r"^y: a CVAE needs the class labels"):
        npvae.evaluate(CVAE(64, 10, (8,), 2), x)


# -- the command line ------------------------------------------------------------------------------
FAST = ["--hidden", "16", "--batch-size", "256", "--lr", "0.01"]


def test_cli_trains_a_cvae_samples_a_chosen_class_and_a_grid_per_class(tmp_path, capsys) -> None:
    import matplotlib.image
    from npvae.cli import main

    out = tmp_path / "run"
    assert main(["train", "--model", "cvae", "--epochs", "2", "--out", str(out), *FAST]) == 0
    model = npvae.load(out / "model.npz")
    assert type(model) is CVAE and model.num_classes == 10
    for name in ("samples.png", "reconstructions.png", "history.png"):
        assert matplotlib.image.imread(out / name).ndim == 3
    assert main(["sample", str(out / "model.npz"), "--label", "7", "--n", "8", "--out", str(tmp_path / "7.png")]) == 0
    assert "8 samples of class 7" in capsys.readouterr().out
    assert main(["sample", str(out / "model.npz"), "--n", "20", "--out", str(tmp_path / "grid.png")]) == 0
    assert "10 classes x 2 samples" in capsys.readouterr().out
    assert main(["eval", str(out / "model.npz")]) == 0
    assert "-log p(x|y) estimate" in capsys.readouterr().out


def test_cli_names_a_label_out_of_range_and_a_label_for_a_model_without_classes(tmp_path, capsys) -> None:
    from npvae.cli import main

    cvae_path, vae_path = tmp_path / "cvae.npz", tmp_path / "vae.npz"
    npvae.save(CVAE(64, 10, (8,), 2), cvae_path)
    npvae.save(npvae.VAE(64, (8,), 2), vae_path)
    assert main(["sample", str(cvae_path), "--label", "10", "--out", str(tmp_path / "a.png")]) == 1
    assert "--label 10: this CVAE knows the classes 0 .. 9" in capsys.readouterr().err
    assert main(["sample", str(vae_path), "--label", "3", "--out", str(tmp_path / "b.png")]) == 1
    assert "--label applies to a CVAE only" in capsys.readouterr().err
