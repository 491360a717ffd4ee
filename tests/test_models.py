"""Tests for npvae.models (AE, VAE): whole-model gradients, the loss against its definition,
the IWAE estimate, sampling, dtypes, and the checks at the public door.

Whole-model gradient checks run ``npvae.gradcheck`` in float64 on ``loss_and_grads`` with a
fixed eps, over every parameter (perturbed in place in the model's flat buffer): central
differences with step h = 1e-6, an entry passing when
|analytic - numeric| <= 1e-7 + 1e-5 * max(|analytic|, |numeric|) (the library's defaults,
rtol = 1e-5, atol = 1e-7). The models are small (input 10 or 16, a few hidden units) so that
each check takes a fraction of a second.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest
import scipy.special

import npvae
from npvae import AE, VAE, bce_with_logits, gaussian_kl, gaussian_nll, gradcheck
from npvae.nn import Dense

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

INPUT_DIM = 10
BATCH = 4


def data_for(model: AE | VAE, batch: int = BATCH, seed: int = 0) -> np.ndarray:
    """Data in [0, 1] (strictly inside) for a Bernoulli decoder, N(0.5, 1) for a Gaussian one."""
    rng = np.random.default_rng(seed)
    if model.output == "bernoulli":
        return rng.uniform(0.05, 0.95, (batch, model.input_dim))
    return rng.normal(0.5, 1.0, (batch, model.input_dim))


def check_model_gradients(model: AE | VAE, **loss_options: Any) -> None:
    x = data_for(model)
    eps = np.random.default_rng(1).standard_normal((BATCH, model.latent_dim))
    names = [name for name, _ in model.named_parameters()]
    params = model.parameters()

    def fun(*values: np.ndarray) -> tuple[float, list[np.ndarray]]:
        return model.loss_and_grads(x, eps=eps, **loss_options), [p.grad.copy() for p in params]

    report = gradcheck(fun, [p.value for p in params], names=names)
    assert report.passed, str(report)


def forward_by_hand(layers: list, h: np.ndarray) -> np.ndarray:
    """The layers' forward pass written with plain NumPy from their weights."""
    for layer in layers:
        kind = type(layer).__name__
        if kind == "Dense":
            h = h @ layer.weight.value + layer.bias.value
        elif kind == "LeakyReLU":
            h = np.where(h > 0, h, layer.negative_slope * h)
        elif kind == "ReLU":
            h = np.maximum(h, 0)
        elif kind == "Tanh":
            h = np.tanh(h)
        elif kind == "Sigmoid":
            h = 1 / (1 + np.exp(-h))
        else:
            assert kind == "Identity"
    return h


# -- gradients -------------------------------------------------------------------------------
MODELS = {
    "ae_bernoulli_leaky_relu": lambda: AE(INPUT_DIM, (6,), 3, output="bernoulli", seed=1),
    "ae_gaussian_tanh_two_hidden": lambda: AE(INPUT_DIM, (6, 5), 2, activation="tanh", output="gaussian", seed=2),
    "vae_from_seed": lambda: VAE.from_seed(input_dim=16, hidden_dim=8, latent_dim=6, latent_num=2, seed=3),
    "vae_bernoulli_leaky_relu": lambda: VAE(INPUT_DIM, (6,), 3, seed=4),
    "vae_bernoulli_relu_two_hidden": lambda: VAE(INPUT_DIM, (7, 5), 3, activation="relu", seed=5),
    "vae_gaussian_tanh_two_hidden_beta": lambda: VAE(INPUT_DIM, (6, 4), 2, activation="tanh", output="gaussian",
                                                    beta=0.5, seed=6),
    "vae_bernoulli_sigmoid_beta": lambda: VAE(INPUT_DIM, (5,), 2, activation="sigmoid", beta=4.0, seed=7),
    "vae_gaussian_relu": lambda: VAE(INPUT_DIM, (6,), 3, activation="relu", output="gaussian", beta=2.0, seed=8),
    "vae_no_hidden_layer": lambda: VAE(INPUT_DIM, (), 2, seed=9),
}


@pytest.mark.usefixtures("kernel_set")
@pytest.mark.parametrize("name", list(MODELS))
def test_model_gradients_match_finite_differences(name: str) -> None:
    check_model_gradients(MODELS[name]())


@pytest.mark.usefixtures("kernel_set")
def test_vae_gradients_with_a_kl_weight_match_finite_differences() -> None:
    check_model_gradients(VAE(INPUT_DIM, (6,), 3, seed=10), kl_weight=0.3)


def test_loss_and_grads_overwrites_gradients_rather_than_accumulating() -> None:
    model = VAE(INPUT_DIM, (6,), 3, seed=11)
    x = data_for(model)
    eps = np.random.default_rng(0).standard_normal((BATCH, 3))
    model.loss_and_grads(x, eps=eps)
    once = [p.grad.copy() for p in model.parameters()]
    model.loss_and_grads(x, eps=eps)
    for parameter, grad in zip(model.parameters(), once):
        np.testing.assert_array_equal(parameter.grad, grad)


# -- the loss against its definition ---------------------------------------------------------
@pytest.mark.parametrize("output", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("beta", [1.0, 0.25, 3.0])
def test_vae_loss_is_recon_plus_beta_kl_computed_from_the_losses(output: str, beta: float) -> None:
    model = VAE(INPUT_DIM, (6, 5), 3, output=output, beta=beta, seed=12)
    x = data_for(model, batch=6)
    eps = np.random.default_rng(2).standard_normal((6, 3))

    hidden = forward_by_hand(model.encoder.layers, x)
    stats = forward_by_hand([model.head], hidden)
    mu, logvar = model.encode(x)
    np.testing.assert_allclose(mu, stats[:, :3], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(logvar, stats[:, 3:], rtol=1e-12, atol=1e-14)

    decoded = forward_by_hand(model.decoder.layers, mu + np.exp(logvar / 2) * eps)
    if output == "bernoulli":
        recon, _ = bce_with_logits(decoded, x)
    else:
        recon, _ = gaussian_nll(x, decoded, np.zeros_like(decoded))
    kl, _ = gaussian_kl(mu, logvar)

    loss = model.loss_and_grads(x, eps=eps)
    assert loss == pytest.approx(np.mean(recon + beta * kl), rel=1e-12)
    assert model.last_recon == pytest.approx(recon.mean(), rel=1e-12)
    assert model.last_kl == pytest.approx(kl.mean(), rel=1e-12)
    terms = model.terms(x, eps=eps)
    np.testing.assert_allclose(terms.recon, recon, rtol=1e-12)
    np.testing.assert_allclose(terms.kl, kl, rtol=1e-12)
    np.testing.assert_allclose(terms.loss, recon + beta * kl, rtol=1e-12)
    np.testing.assert_allclose(model.elbo(x, eps=eps), -(recon + kl), rtol=1e-12)


def test_vae_loss_and_grads_kl_weight_replaces_beta() -> None:
    model = VAE(INPUT_DIM, (6,), 3, beta=2.0, seed=13)
    x, eps = data_for(model), np.random.default_rng(3).standard_normal((BATCH, 3))
    terms = model.terms(x, eps=eps)
    assert model.loss_and_grads(x, eps=eps, kl_weight=0.1) == pytest.approx(
        np.mean(terms.recon + 0.1 * terms.kl), rel=1e-12)


@pytest.mark.parametrize("output", ["bernoulli", "gaussian"])
def test_ae_loss_is_the_reconstruction_nll_of_the_decoded_code(output: str) -> None:
    model = AE(INPUT_DIM, (6,), 3, output=output, seed=14)
    x = data_for(model)
    code = forward_by_hand(model.encoder.layers, x)
    np.testing.assert_allclose(model.encode(x), code, rtol=1e-12, atol=1e-14)
    decoded = forward_by_hand(model.decoder.layers, code)
    if output == "bernoulli":
        recon, _ = bce_with_logits(decoded, x)
        np.testing.assert_allclose(model.reconstruct(x), scipy.special.expit(decoded), rtol=1e-12)
    else:
        recon, _ = gaussian_nll(x, decoded, np.zeros_like(decoded))
        np.testing.assert_allclose(model.reconstruct(x), decoded, rtol=1e-12)
    assert model.loss_and_grads(x) == pytest.approx(recon.mean(), rel=1e-12)
    terms = model.terms(x)
    np.testing.assert_allclose(terms.loss, recon, rtol=1e-12)
    np.testing.assert_array_equal(terms.kl, np.zeros_like(recon))


def test_ae_ignores_the_vae_noise_and_kl_arguments() -> None:
    model = AE(INPUT_DIM, (6,), 3, seed=15)
    x = data_for(model)
    plain = model.loss_and_grads(x)
    grads = [p.grad.copy() for p in model.parameters()]
    noisy = model.loss_and_grads(x, eps=np.ones((BATCH, 3)), rng=np.random.default_rng(0), kl_weight=5.0)
    assert noisy == plain and model.last_kl == 0.0
    for parameter, grad in zip(model.parameters(), grads):
        np.testing.assert_array_equal(parameter.grad, grad)


def test_vae_reconstruct_decodes_the_posterior_mean() -> None:
    model = VAE(INPUT_DIM, (6,), 3, seed=16)
    x = data_for(model)
    mu, _ = model.encode(x)
    np.testing.assert_allclose(model.reconstruct(x), model.decode(mu), rtol=1e-14)


@pytest.mark.parametrize("model_class", [AE, VAE])
@pytest.mark.parametrize("output", ["bernoulli", "gaussian"])
def test_arrays_returned_by_public_methods_survive_later_calls(model_class: type, output: str) -> None:
    model = model_class(INPUT_DIM, (6,), 3, output=output, seed=22)
    x, other = data_for(model, seed=1), data_for(model, seed=2)
    eps = np.zeros((BATCH, 3))
    results = {
        "encode": lambda data: model.encode(data),
        "reconstruct": lambda data: model.reconstruct(data),
        "decode": lambda data: model.decode(data[:, :3]),
        "terms": lambda data: model.terms(data, eps=eps),
    }
    kept = {name: method(x) for name, method in results.items()}
    kept = {name: value if isinstance(value, tuple) else (value,) for name, value in kept.items()}
    copies = {name: [array.copy() for array in arrays] for name, arrays in kept.items()}
    for method in results.values():
        method(other)
    model.loss_and_grads(other, eps=eps)
    model.sample(BATCH, np.random.default_rng(0))
    for name, arrays in kept.items():
        for array, copy in zip(arrays, copies[name]):
            np.testing.assert_array_equal(array, copy, err_msg=name)


# -- the importance-weighted estimate --------------------------------------------------------
def log_weights_by_hand(model: VAE, x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """log w = log p(x|z) + log p(z) - log q(z|x) for k draws per row, replaying the rng stream
    in the order log_likelihood documents by its result: row by row, k draws each."""
    mu, logvar = model.encode(x)
    eps = np.random.default_rng(seed).standard_normal((x.shape[0] * k, model.latent_dim)).reshape(
        x.shape[0], k, model.latent_dim)
    z = mu[:, None, :] + np.exp(logvar / 2)[:, None, :] * eps
    decoded = forward_by_hand(model.decoder.layers, z.reshape(-1, model.latent_dim))
    x_rep = np.repeat(x, k, axis=0)
    if model.output == "bernoulli":
        log_px = -bce_with_logits(decoded, x_rep)[0]
    else:
        log_px = -gaussian_nll(x_rep, decoded, np.zeros_like(decoded))[0]
    log_pz = -0.5 * (z**2 + np.log(2 * np.pi)).sum(axis=2)
    log_qz = -0.5 * (eps**2 + logvar[:, None, :] + np.log(2 * np.pi)).sum(axis=2)
    return log_px.reshape(x.shape[0], k) + log_pz - log_qz


@pytest.mark.parametrize("output", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("k", [1, 7])
def test_log_likelihood_is_the_log_mean_importance_weight(output: str, k: int) -> None:
    model = VAE(INPUT_DIM, (6,), 3, output=output, seed=17)
    x = data_for(model, batch=5)
    log_w = log_weights_by_hand(model, x, k, seed=4)
    expected = np.log(np.mean(np.exp(log_w), axis=1))
    np.testing.assert_allclose(model.log_likelihood(x, k=k, rng=np.random.default_rng(4)), expected, rtol=1e-10)


@pytest.mark.parametrize("max_rows", [1, 3, 7, 10, 15, 64])
def test_log_likelihood_in_small_blocks_equals_one_big_block(max_rows: int) -> None:
    model = VAE(INPUT_DIM, (6,), 3, seed=18)
    x = data_for(model, batch=5)
    whole = model.log_likelihood(x, k=7, rng=np.random.default_rng(5), max_rows=10_000)
    blocks = model.log_likelihood(x, k=7, rng=np.random.default_rng(5), max_rows=max_rows)
    np.testing.assert_allclose(blocks, whole, rtol=1e-12)


def test_iwae_bound_rises_with_k_and_k_one_matches_the_elbo_on_average() -> None:
    model = VAE(12, (8,), 3, output="gaussian", seed=0)
    x = np.random.default_rng(6).uniform(0, 1, (300, 12))
    elbo = model.elbo(x, rng=np.random.default_rng(7))
    bounds = {k: model.log_likelihood(x, k=k, rng=np.random.default_rng(8 + k)) for k in (1, 10, 100)}
    standard_error = np.sqrt(elbo.var() / elbo.size + bounds[1].var() / elbo.size)
    assert abs(bounds[1].mean() - elbo.mean()) < 4 * standard_error
    assert elbo.mean() < bounds[10].mean() < bounds[100].mean()
    assert bounds[1].mean() < bounds[10].mean()


def test_log_likelihood_is_finite_when_every_weight_underflows() -> None:
    # a Gaussian decoder whose means sit 1000 away from the data: log w ~ -5e6, exp(log w) = 0
    model = VAE(INPUT_DIM, (6,), 3, output="gaussian", seed=19)
    model.decoder.layers[-1].bias.value[...] = 1e3
    x = data_for(model, batch=3)
    estimate = model.log_likelihood(x, k=20, rng=np.random.default_rng(9))
    log_w = log_weights_by_hand(model, x, 20, seed=9)
    assert np.all(np.isfinite(estimate)) and np.all(log_w.max(axis=1) < -1e6)
    assert np.all(np.exp(log_w) == 0)
    # log mean exp lies between the mean (Jensen) and the max of the log weights
    rounding = 1e-12 * np.abs(log_w).max()
    assert np.all(estimate <= log_w.max(axis=1) + rounding)
    assert np.all(estimate >= log_w.mean(axis=1) - rounding)
    np.testing.assert_allclose(estimate, scipy.special.logsumexp(log_w, axis=1) - np.log(20), rtol=1e-12)


# -- sampling --------------------------------------------------------------------------------
@pytest.mark.parametrize("model_class", [AE, VAE])
@pytest.mark.parametrize("output", ["bernoulli", "gaussian"])
def test_sample_decodes_standard_normal_codes(model_class: type, output: str) -> None:
    model = model_class(INPUT_DIM, (6,), 3, output=output, seed=20)
    samples = model.sample(7, np.random.default_rng(10))
    assert samples.shape == (7, INPUT_DIM) and samples.dtype == np.float64
    z = np.random.default_rng(10).standard_normal((7, 3))
    np.testing.assert_allclose(samples, model.decode(z), rtol=1e-14)
    if output == "bernoulli":
        assert np.all((samples >= 0) & (samples <= 1))


def test_ae_documents_that_its_samples_are_not_generative() -> None:
    documentation = inspect.getmodule(AE).__doc__ + (AE.__doc__ or "") + (AE.sample.__doc__ or "")
    assert "not a generative model" in documentation


# -- the seed architecture and names ---------------------------------------------------------
def dense_shapes(sequential: Any) -> list[tuple[int, int]]:
    return [(layer.in_features, layer.out_features) for layer in sequential.layers if isinstance(layer, Dense)]


def test_from_seed_has_the_seed_layer_shapes() -> None:
    model = VAE.from_seed()
    assert dense_shapes(model.encoder) == [(256, 64), (64, 32)]
    assert (model.head.in_features, model.head.out_features) == (32, 2 * 2)
    assert dense_shapes(model.decoder) == [(2, 32), (32, 64), (64, 256)]
    assert [type(layer).__name__ for layer in model.decoder.layers] == [
        "Dense", "LeakyReLU", "Dense", "LeakyReLU", "Dense"]
    assert all(layer.negative_slope == 0.2 for layer in model.encoder.layers if hasattr(layer, "negative_slope")
               and not isinstance(layer, Dense))
    assert model.latent_dim == 2 and model.output == "bernoulli"


def test_vae_parameter_names_follow_torch_conventions() -> None:
    names = [name for name, _ in VAE(INPUT_DIM, (6, 5), 3).named_parameters()]
    assert names == ["encoder.0.weight", "encoder.0.bias", "encoder.2.weight", "encoder.2.bias",
                     "head.weight", "head.bias", "decoder.0.weight", "decoder.0.bias", "decoder.2.weight",
                     "decoder.2.bias", "decoder.4.weight", "decoder.4.bias"]


def test_model_parameters_live_in_one_flat_buffer() -> None:
    model = VAE(INPUT_DIM, (6,), 3)
    params = model.parameters()
    base = params[0].value.base
    assert base is not None and base.size == model.num_parameters()
    assert all(p.value.base is base for p in params)


@pytest.mark.parametrize("model_class", [AE, VAE])
def test_config_rebuilds_an_identical_model(model_class: type) -> None:
    options = dict(activation="tanh", output="gaussian", negative_slope=0.1, seed=21, dtype=np.float32)
    if model_class is VAE:
        options["beta"] = 2.0
    model = model_class(INPUT_DIM, (6, 4), 3, **options)
    config = model.config()
    assert (config.get("beta") == 2.0) == (model_class is VAE)
    rebuilt = model_class(**config)
    assert rebuilt.config() == config
    for name, value in rebuilt.state_dict().items():
        np.testing.assert_array_equal(value, model.state_dict()[name])


def test_the_same_seed_gives_the_same_model_and_another_seed_does_not() -> None:
    first, second, other = VAE(INPUT_DIM, seed=3), VAE(INPUT_DIM, seed=3), VAE(INPUT_DIM, seed=4)
    np.testing.assert_array_equal(first.parameters()[0].value, second.parameters()[0].value)
    assert not np.array_equal(first.parameters()[0].value, other.parameters()[0].value)


# -- dtypes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("model_class", [AE, VAE])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_models_keep_their_dtype_everywhere(model_class: type, dtype: type) -> None:
    model = model_class(INPUT_DIM, (6,), 3, dtype=dtype)
    x = data_for(model).astype(dtype)
    eps = np.ones((BATCH, 3), dtype=dtype)
    loss = model.loss_and_grads(x, eps=eps)
    assert isinstance(loss, float) and np.isfinite(loss)
    assert all(p.value.dtype == dtype and p.grad.dtype == dtype for p in model.parameters())
    codes = model.encode(x)
    for array in (codes if model_class is VAE else (codes,)):
        assert array.dtype == dtype and array.shape == (BATCH, 3)
    outputs = [model.decode(np.zeros((2, 3), dtype=dtype)), model.sample(2, np.random.default_rng(0)),
               model.reconstruct(x), *model.terms(x, eps=eps)]
    assert all(array.dtype == dtype for array in outputs)


@pytest.mark.parametrize("model_class", [AE, VAE])
def test_float32_model_agrees_with_float64_model_from_the_same_seed(model_class: type) -> None:
    single, double = model_class(INPUT_DIM, (6,), 3, dtype=np.float32), model_class(INPUT_DIM, (6,), 3)
    x = data_for(double)
    eps = np.random.default_rng(0).standard_normal((BATCH, 3))
    assert single.loss_and_grads(x, eps=eps) == pytest.approx(double.loss_and_grads(x, eps=eps), rel=1e-5)
    for p, q in zip(single.parameters(), double.parameters()):
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-3, atol=1e-5)


def test_float32_training_follows_float64_training_to_float32_rounding() -> None:
    """One implementation serves both precisions: 20 Adam steps on digits from the same initial
    weights and the same noise give float32 losses within 1e-5 relative of float64's (measured:
    6e-8), so the float32 fast path computes what the float64-checked path computes."""
    x = npvae.datasets.load("digits", "train").x[:256]
    losses = {}
    for dtype in (np.float32, np.float64):
        model = VAE(64, (32,), 4, dtype=dtype, seed=3)
        optimizer = npvae.Adam(model.parameters(), lr=1e-2)
        rng = np.random.default_rng(1)
        losses[dtype] = []
        for step in range(20):
            batch = x[(step % 8) * 32 : (step % 8 + 1) * 32].astype(dtype)
            eps = rng.standard_normal((32, 4)).astype(dtype)
            losses[dtype].append(model.loss_and_grads(batch, eps=eps))
            optimizer.step()
    np.testing.assert_allclose(losses[np.float32], losses[np.float64], rtol=1e-5)


def test_float_input_of_another_precision_is_converted_to_the_model_dtype() -> None:
    model = VAE(INPUT_DIM, (6,), 3)
    x = data_for(model)
    np.testing.assert_allclose(model.encode(x.astype(np.float32))[0], model.encode(x.astype(np.float32)
                                                                                   .astype(np.float64))[0])
    assert model.encode(x.astype(np.float32))[0].dtype == np.float64


# -- bad input -------------------------------------------------------------------------------
def model_methods(model: AE | VAE) -> dict[str, Any]:
    eps = np.zeros((BATCH, model.latent_dim))
    methods = {
        "loss_and_grads": lambda x: model.loss_and_grads(x, eps=eps),
        "encode": model.encode,
        "reconstruct": model.reconstruct,
        "terms": lambda x: model.terms(x, eps=eps),
    }
    if isinstance(model, VAE):
        methods["elbo"] = lambda x: model.elbo(x, eps=eps)
        methods["log_likelihood"] = lambda x: model.log_likelihood(x, k=2, rng=np.random.default_rng(0))
    return methods


BAD_DATA = [
    ("integers", np.ones((BATCH, INPUT_DIM), dtype=np.int64), TypeError, r"^x: expected a floating-point array"),
    ("uint8_pixels", np.full((BATCH, INPUT_DIM), 255, dtype=np.uint8), TypeError, r"^x: .*x / 255"),
    ("booleans", np.ones((BATCH, INPUT_DIM), dtype=bool), TypeError, r"^x: "),
    ("one_dimensional", np.full(INPUT_DIM, 0.5), ValueError, r"^x: expected shape \(batch, 10\).*x\[None, :\]"),
    ("three_dimensional", np.full((BATCH, 2, 5), 0.5), ValueError, r"^x: expected shape \(batch, 10\)"),
    ("empty_batch", np.zeros((0, INPUT_DIM)), ValueError, r"^x: expected at least one row"),
    ("wrong_width", np.full((BATCH, INPUT_DIM + 1), 0.5), ValueError, r"^x: expected shape \(batch, 10\), got"),
    ("nan", np.where(np.eye(BATCH, INPUT_DIM) > 0, np.nan, 0.5), ValueError, r"^x: expected finite values"),
    ("inf", np.where(np.eye(BATCH, INPUT_DIM) > 0, np.inf, 0.5), ValueError, r"^x: expected finite values"),
    ("above_one", np.full((BATCH, INPUT_DIM), 1.5), ValueError, r"^x: a Bernoulli decoder needs data in \[0, 1\]"),
    ("below_zero", np.full((BATCH, INPUT_DIM), -0.1), ValueError, r"^x: a Bernoulli decoder needs data"),
]


@pytest.mark.parametrize("model_class", [AE, VAE])
@pytest.mark.parametrize("case, x, error, pattern", BAD_DATA, ids=[case[0] for case in BAD_DATA])
def test_every_method_rejects_bad_data_naming_x(model_class: type, case: str, x: np.ndarray, error: type,
                                                 pattern: str) -> None:
    model = model_class(INPUT_DIM, (6,), 3)
    for method in model_methods(model).values():
        with pytest.raises(error, match=pattern):
            method(x)


@pytest.mark.parametrize("model_class", [AE, VAE])
def test_a_gaussian_decoder_accepts_data_outside_the_unit_interval(model_class: type) -> None:
    model = model_class(INPUT_DIM, (6,), 3, output="gaussian")
    x = np.full((BATCH, INPUT_DIM), 7.5)
    for method in model_methods(model).values():
        method(x)


def test_data_given_as_a_nested_list_of_floats_is_accepted() -> None:
    model = VAE(INPUT_DIM, (6,), 3)
    x = data_for(model)
    np.testing.assert_array_equal(model.encode(x.tolist())[0], model.encode(x)[0])


@pytest.mark.parametrize("model_class", [AE, VAE])
def test_decode_and_sample_reject_bad_codes_and_counts(model_class: type) -> None:
    model = model_class(INPUT_DIM, (6,), 3)
    with pytest.raises(ValueError, match=r"^z: expected shape \(batch, 3\)"):
        model.decode(np.zeros((2, 4)))
    with pytest.raises(TypeError, match="^z: "):
        model.decode(np.zeros((2, 3), dtype=np.int32))
    with pytest.raises(ValueError, match="^z: expected finite values"):
        model.decode(np.full((2, 3), np.nan))
    for n in (0, -2, 1.5):
        with pytest.raises(ValueError, match="^n: "):
            model.sample(n, np.random.default_rng(0))
    with pytest.raises(TypeError, match="^rng: "):
        model.sample(2, 0)


def test_vae_decode_accepts_codes_outside_the_unit_interval() -> None:
    assert VAE(INPUT_DIM, (6,), 3).decode(np.full((1, 3), -4.0)).shape == (1, INPUT_DIM)


def test_vae_noise_arguments_are_checked() -> None:
    model = VAE(INPUT_DIM, (6,), 3)
    x = data_for(model)
    with pytest.raises(ValueError, match="^eps, rng: expected exactly one"):
        model.loss_and_grads(x)
    with pytest.raises(ValueError, match="^eps, rng: expected exactly one"):
        model.terms(x, eps=np.zeros((BATCH, 3)), rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"^eps: expected shape \(4, 3\)"):
        model.loss_and_grads(x, eps=np.zeros((BATCH + 1, 3)))
    with pytest.raises(ValueError, match=r"^eps: expected shape \(batch, 3\)"):
        model.loss_and_grads(x, eps=np.zeros((BATCH, 2)))
    with pytest.raises(ValueError, match="^eps: expected finite values"):
        model.loss_and_grads(x, eps=np.full((BATCH, 3), np.inf))
    with pytest.raises(TypeError, match="^rng: "):
        model.loss_and_grads(x, rng=123)


def test_log_likelihood_checks_k_max_rows_and_rng() -> None:
    model = VAE(INPUT_DIM, (6,), 3)
    x = data_for(model)
    for bad in ({"k": 0}, {"k": -1}, {"k": 2.5}):
        with pytest.raises(ValueError, match="^k: "):
            model.log_likelihood(x, rng=np.random.default_rng(0), **bad)
    with pytest.raises(ValueError, match="^max_rows: "):
        model.log_likelihood(x, k=2, rng=np.random.default_rng(0), max_rows=0)
    with pytest.raises(TypeError, match="^rng: "):
        model.log_likelihood(x, k=2, rng=None)


CONSTRUCTION_ERRORS = [
    ({"input_dim": 0}, ValueError, "^input_dim: "),
    ({"input_dim": -3}, ValueError, "^input_dim: "),
    ({"input_dim": 10.0}, ValueError, "^input_dim: "),
    ({"latent_dim": 0}, ValueError, "^latent_dim: "),
    ({"hidden_dims": (6, 0)}, ValueError, r"^hidden_dims\[1\]: "),
    ({"hidden_dims": (-1,)}, ValueError, r"^hidden_dims\[0\]: "),
    ({"activation": "swish"}, ValueError, "^activation: .*'swish'"),
    ({"output": "poisson"}, ValueError, "^output: .*'poisson'"),
    ({"negative_slope": 1.0}, ValueError, "^negative_slope: "),
    ({"negative_slope": -0.2}, ValueError, "^negative_slope: "),
    ({"seed": -1}, ValueError, "^seed: "),
    ({"seed": 1.5}, ValueError, "^seed: "),
    ({"dtype": np.int32}, TypeError, "^dtype: "),
    ({"dtype": np.float16}, TypeError, "^dtype: "),
]


@pytest.mark.parametrize("model_class", [AE, VAE])
@pytest.mark.parametrize("change, error, pattern", CONSTRUCTION_ERRORS,
                         ids=[f"{next(iter(c))}={next(iter(c.values()))}" for c, _, _ in CONSTRUCTION_ERRORS])
def test_constructors_reject_bad_arguments_naming_them(model_class: type, change: dict, error: type,
                                                       pattern: str) -> None:
    arguments = {"input_dim": INPUT_DIM, "hidden_dims": (6,), "latent_dim": 3, **change}
    with pytest.raises(error, match=pattern):
        model_class(**arguments)


@pytest.mark.parametrize("beta", [-0.5, float("nan"), float("inf")])
def test_vae_rejects_a_negative_or_non_finite_beta(beta: float) -> None:
    with pytest.raises(ValueError, match="^beta: "):
        VAE(INPUT_DIM, beta=beta)


@pytest.mark.parametrize("argument", ["input_dim", "hidden_dim", "latent_dim", "latent_num"])
def test_from_seed_rejects_non_positive_sizes_naming_its_own_argument(argument: str) -> None:
    # from_seed's latent_dim is the second hidden width and latent_num the code size: an error
    # about one of them must name the argument the caller wrote, not the VAE's
    with pytest.raises(ValueError, match=f"^{argument}: "):
        VAE.from_seed(**{argument: 0})


# -- overflowing outputs, bounded memory (issue 11 §5, §3) ------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", [AE, VAE])
def test_decode_of_a_finite_z_near_the_float_maximum_raises_instead_of_returning_nan(make, dtype) -> None:
    model = make(INPUT_DIM, (6,), 3, seed=1, dtype=dtype)
    z = np.full((2, 3), np.finfo(dtype).max, dtype=dtype)  # finite; the old decode gave NaN here
    with pytest.raises(ValueError, match=r"^z: the model's decoder output overflows"):
        model.decode(z)
    assert np.isfinite(model.decode(np.ones((2, 3), dtype=dtype))).all()


@pytest.mark.parametrize("make", [AE, VAE])
@pytest.mark.parametrize("method", ["encode", "reconstruct", "sample"])
def test_a_model_with_huge_weights_raises_instead_of_returning_inf_or_nan(make, method: str) -> None:
    """A loadable checkpoint may hold finite weights so large that every output overflows."""
    model = make(INPUT_DIM, (6,), 3, seed=2, dtype=np.float32)
    x = data_for(model, batch=3).astype(np.float32)
    for parameter in model.parameters():
        parameter.value[...] = np.sign(parameter.value) * 1e30 + 1e30
    call = {"encode": lambda: model.encode(x), "reconstruct": lambda: model.reconstruct(x),
            "sample": lambda: model.sample(3, np.random.default_rng(0))}[method]
    with pytest.raises(ValueError, match=r"overflows float32 .*the parameters are unusable"):
        call()


def test_log_likelihood_runs_in_memory_bounded_by_max_rows_whatever_k() -> None:
    """The log-sum-exp over k runs over blocks of samples: no (n, k) array. With k = 300,000 the
    old (1, k) float64 array alone took 2.4 MB; the peak traced here stays below 0.5 MB."""
    import tracemalloc

    model = VAE(4, (3,), 2, seed=3)
    x = data_for(model, batch=1)
    model.log_likelihood(x, k=10, rng=np.random.default_rng(0), max_rows=256)  # work buffers built once
    tracemalloc.start()
    try:
        result = model.log_likelihood(x, k=300_000, rng=np.random.default_rng(0), max_rows=256)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.isfinite(result).all()
    assert peak < 500_000, f"peak {peak} bytes"


def test_memory_bytes_counts_parameters_and_work_and_refuses_what_is_not_a_size() -> None:
    model = VAE(64, (32, 16), 2, dtype=np.float32)
    estimate = npvae.models.memory_bytes(64, (32, 16), 2, rows=1, dtype=np.float32)
    assert estimate >= 4 * model.num_parameters() * 4  # value, grad and Adam's two moments
    more_rows = npvae.models.memory_bytes(64, (32, 16), 2, rows=1001, dtype=np.float32)
    assert more_rows - estimate == 1000 * (more_rows - estimate) // 1000 > 0  # linear in rows
    huge = npvae.models.memory_bytes(784, [10**9], 2, rows=128)  # sizes no machine holds: just a number
    assert isinstance(huge, int) and huge > 10**13
    with pytest.raises(ValueError, match=r"^hidden_dims\[0\]: "):
        npvae.models.memory_bytes(784, [0], 2, rows=1)
    with pytest.raises(ValueError, match="^rows: "):
        npvae.models.memory_bytes(784, [10], 2, rows=0)


def test_models_print_shape_activation_likelihood_dtype_and_size():
    vae = VAE(784, [400], 20, activation="relu", dtype=np.float32)
    assert repr(vae) == "VAE(784 -> [400] -> 20, relu, bernoulli, float32, 0.65 M params)"  # 652,824 parameters
    small = AE(6, [5, 4], 2, output="gaussian")
    assert repr(small) == f"AE(6 -> [5, 4] -> 2, leaky_relu, gaussian, float64, {small.num_parameters()} params)"
    assert "beta=4," in repr(VAE(6, [5], 2, beta=4.0))
