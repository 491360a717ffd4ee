"""npvae.interop: another implementation's layers become an npvae VAE computing the same network;
npvae's weights go back out in torch's layout and naming, and into a torch module with the same
loss (float64, 1e-10). The torch half skips cleanly without torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from buggy_vaes import NumPyVAE, data

import npvae
from npvae.interop import (PYTORCH_EXAMPLES_NAMES, SEED_NAMES, layer_names, off_path_layers, to_state_dict,
                           to_torch_module, vae_from_linear_layers, vae_from_state_dict)


def linear(rng, fan_in, fan_out):
    return rng.standard_normal((fan_out, fan_in)) / np.sqrt(fan_in), rng.standard_normal(fan_out) * 0.1


def reference_loss(encoder, mu, logvar, decoder, x, eps, act):
    """The batch-mean negative ELBO of a torch-layout network, written out in plain NumPy."""
    h = x
    for w, b in encoder:
        h = act(h @ w.T + b)
    m, lv = h @ mu[0].T + mu[1], h @ logvar[0].T + logvar[1]
    out = m + np.exp(0.5 * lv) * eps
    for i, (w, b) in enumerate(decoder):
        out = out @ w.T + b
        if i < len(decoder) - 1:
            out = act(out)
    recon = (np.logaddexp(0, out) - x * out).sum(1)
    kl = -0.5 * (1 + lv - m**2 - np.exp(lv)).sum(1)
    return (recon + kl).mean()


def seed_state(rng, generation_chains):
    """The seed sketch's state dict (input 12, hidden 8, latent_dim 5, latent_num 2)."""
    layers = {"encoder.0": (12, 8), "encoder.2": (8, 5), "mean_layer": (5, 2), "var_layer": (5, 2),
              "generation_layer.0": (2, 5), "decoder.0": (5 if generation_chains else 2, 8), "decoder.2": (8, 12)}
    state = {}
    for name, (a, b) in layers.items():
        state[f"{name}.weight"], state[f"{name}.bias"] = linear(rng, a, b)
    return state


# -- vae_from_linear_layers -------------------------------------------------------------------------
def test_vae_from_linear_layers_computes_the_given_network():
    rng = np.random.default_rng(0)
    encoder, mu, logvar = [linear(rng, 9, 7), linear(rng, 7, 5)], linear(rng, 5, 3), linear(rng, 5, 3)
    decoder = [linear(rng, 3, 4), linear(rng, 4, 9)]  # not a mirror of the encoder
    model = vae_from_linear_layers(encoder, mu, logvar, decoder, activation="tanh")
    x, eps = data(9, 3, batch=6)
    expected = reference_loss(encoder, mu, logvar, decoder, x, eps, np.tanh)
    assert model.loss_and_grads(x, eps=eps) == pytest.approx(expected, rel=1e-13)
    assert model.decoder_dims == (4,) and model.hidden_dims == (7, 5)


def test_fused_head_and_npvae_layout_give_the_same_model():
    rng = np.random.default_rng(1)
    encoder, mu, logvar, decoder = [linear(rng, 6, 4)], linear(rng, 4, 2), linear(rng, 4, 2), [linear(rng, 2, 6)]
    separate = vae_from_linear_layers(encoder, mu, logvar, decoder, activation="relu")
    fused = (np.concatenate([mu[0], logvar[0]]), np.concatenate([mu[1], logvar[1]]))
    from_fused = vae_from_linear_layers(encoder, fused, None, decoder, activation="relu")
    transposed = vae_from_linear_layers([(w.T, b) for w, b in encoder], (mu[0].T, mu[1]), (logvar[0].T, logvar[1]),
                                        [(w.T, b) for w, b in decoder], activation="relu", layout="npvae")
    for other in (from_fused, transposed):
        for (name, a), (_, b) in zip(separate.state_dict().items(), other.state_dict().items()):
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_vae_from_linear_layers_names_the_layer_that_does_not_fit():
    rng = np.random.default_rng(2)
    encoder, head, decoder = [linear(rng, 6, 4)], linear(rng, 4, 2), [linear(rng, 2, 6)]
    with pytest.raises(ValueError, match=r"^decoder\[0\]: expects 3 inputs but the layer before gives 2"):
        vae_from_linear_layers(encoder, head, head, [linear(rng, 3, 6)], activation="relu")
    with pytest.raises(ValueError, match=r"^mu: expects 5 inputs"):
        vae_from_linear_layers(encoder, linear(rng, 5, 2), None, decoder, activation="relu")
    with pytest.raises(ValueError, match=r"^decoder\[0\]: gives 5 outputs, expected the input size 6"):
        vae_from_linear_layers(encoder, head, head, [linear(rng, 2, 5)], activation="relu")
    with pytest.raises(ValueError, match=r"^encoder\[0\]\[1\] \(bias\): expected shape \(4,\)"):
        vae_from_linear_layers([(encoder[0][0], np.zeros(3))], head, head, decoder, activation="relu")
    with pytest.raises(ValueError, match="^activation: expected one of"):
        vae_from_linear_layers(encoder, head, head, decoder, activation="gelu")
    with pytest.raises(ValueError, match="^layout: expected 'torch' or 'npvae'"):
        vae_from_linear_layers(encoder, head, head, decoder, activation="relu", layout="jax")
    with pytest.raises(TypeError, match=r"^mu: expected a \(weight, bias\) pair"):
        vae_from_linear_layers(encoder, head[0], head, decoder, activation="relu")


# -- vae_from_state_dict ----------------------------------------------------------------------------------
def test_pytorch_examples_names_are_recognised_in_any_key_order():
    rng = np.random.default_rng(3)
    sizes = {"fc1": (10, 7), "fc21": (7, 3), "fc22": (7, 3), "fc3": (3, 7), "fc4": (7, 10)}
    state = {}
    for name in ("fc4", "fc22", "fc1", "fc3", "fc21"):  # shuffled: the names decide
        state[f"{name}.weight"], state[f"{name}.bias"] = linear(rng, *sizes[name])
    model = vae_from_state_dict(state)
    assert model.activation == "relu" and layer_names(model) == PYTORCH_EXAMPLES_NAMES
    back = to_state_dict(model)
    assert list(back) == [f"{n}.{leaf}" for n in PYTORCH_EXAMPLES_NAMES for leaf in ("weight", "bias")]
    for key, value in state.items():
        np.testing.assert_array_equal(back[key], value)


def test_seed_names_put_generation_layer_on_the_path_when_its_shapes_chain():
    model = vae_from_state_dict(seed_state(np.random.default_rng(4), generation_chains=True))
    assert layer_names(model) == SEED_NAMES and off_path_layers(model) == ()
    seed_vae = npvae.VAE.from_seed(input_dim=12, hidden_dim=8, latent_dim=5, latent_num=2)
    assert model.config() == seed_vae.config()  # the structure of VAE.from_seed: the bugs fixed


def test_seed_as_written_leaves_generation_layer_off_the_path_and_says_so():
    state = seed_state(np.random.default_rng(5), generation_chains=False)
    model = vae_from_state_dict(state)
    assert off_path_layers(model) == ("generation_layer.0",)
    assert "generation_layer.0" not in layer_names(model) and model.decoder_dims == (8,)
    np.testing.assert_array_equal(to_state_dict(model)["decoder.0.weight"], state["decoder.0.weight"])


def test_other_names_are_inferred_from_key_order_and_shapes():
    user = NumPyVAE(hidden=(6,), square=True)
    renamed = {k.replace("mu", "head_a").replace("logvar", "head_b"): v for k, v in user.state_dict().items()}
    model = vae_from_state_dict(renamed, activation="leaky_relu")
    assert layer_names(model) == ("enc0", "head_a", "head_b", "dec0", "dec_sq", "dec_out")
    x, eps = data()
    assert model.loss_and_grads(x, eps=eps) == pytest.approx(user.loss(x, eps), rel=1e-13)


def test_state_dict_errors_list_the_keys():
    rng = np.random.default_rng(6)
    state = {}
    for name, sizes in {"a": (6, 4), "b": (4, 3), "c": (3, 6)}.items():  # no pair of heads
        state[f"{name}.weight"], state[f"{name}.bias"] = linear(rng, *sizes)
    with pytest.raises(ValueError, match=r"^state_dict: cannot infer the layer order: no pair.*a\.weight \(4, 6\)"):
        vae_from_state_dict(state, activation="relu")
    user_state = NumPyVAE().state_dict()
    with pytest.raises(ValueError, match="^activation: a state dict does not record activations"):
        vae_from_state_dict(user_state)
    with pytest.raises(ValueError, match="^state_dict: cannot read key 'bn.running_mean'"):
        vae_from_state_dict({**user_state, "bn.running_mean": np.zeros(3)}, activation="relu")
    with pytest.raises(TypeError, match="^state_dict: expected a mapping"):
        vae_from_state_dict([1, 2])
    with pytest.raises(ValueError, match="^state_dict: expected the weights of a VAE, got an empty mapping"):
        vae_from_state_dict({})


# -- to_state_dict ------------------------------------------------------------------------------------------
def test_to_state_dict_round_trips_through_vae_from_state_dict():
    model = npvae.VAE(8, (6, 5), 2, activation="tanh", seed=3)
    state = to_state_dict(model)
    assert list(state)[:6] == ["encoder.0.weight", "encoder.0.bias", "encoder.2.weight", "encoder.2.bias",
                               "mu.weight", "mu.bias"]
    assert state["encoder.0.weight"].shape == (6, 8)
    again = vae_from_state_dict(state, activation="tanh")
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_to_state_dict_takes_names_and_rejects_the_wrong_count():
    model = npvae.VAE(10, (7,), 3)
    assert set(to_state_dict(model, names="pytorch/examples")) == {
        f"{n}.{leaf}" for n in PYTORCH_EXAMPLES_NAMES for leaf in ("weight", "bias")}
    with pytest.raises(ValueError, match="^names: expected 5 distinct layer names"):
        to_state_dict(model, names=["a", "b"])
    with pytest.raises(TypeError, match="^model: expected an npvae VAE"):
        to_state_dict(npvae.AE(10, (7,), 3))


def test_a_non_mirrored_model_survives_a_checkpoint(tmp_path):
    model = vae_from_state_dict(seed_state(np.random.default_rng(7), generation_chains=False))
    npvae.save(model, tmp_path / "m.npz")
    loaded = npvae.load(tmp_path / "m.npz")
    x, eps = data(12, 2)
    assert loaded.decoder_dims == (8,)
    assert loaded.loss_and_grads(x, eps=eps) == model.loss_and_grads(x, eps=eps)


def test_importing_interop_and_check_does_not_import_torch():
    code = "import sys, npvae.interop, npvae.check; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# -- torch ---------------------------------------------------------------------------------------------------
TORCH_MODELS = {
    "leaky_relu, two hidden, bernoulli": dict(input_dim=12, hidden_dims=(9, 5), latent_dim=3, activation="leaky_relu"),
    "relu, pytorch/examples shape": dict(input_dim=12, hidden_dims=(7,), latent_dim=2, activation="relu"),
    "tanh, gaussian": dict(input_dim=6, hidden_dims=(5,), latent_dim=2, activation="tanh", output="gaussian"),
    "sigmoid, beta 4, non-mirrored": dict(input_dim=8, hidden_dims=(6,), latent_dim=2, activation="sigmoid", beta=4.0,
                                         decoder_dims=(3, 5)),
}


@pytest.mark.parametrize("config", TORCH_MODELS.values(), ids=TORCH_MODELS)
def test_to_torch_module_has_npvae_loss_and_gradients_to_1e_10(config):
    torch = pytest.importorskip("torch")
    model = npvae.VAE(**config, seed=2)
    module = to_torch_module(model)
    x, eps = data(config["input_dim"], config["latent_dim"], batch=5)
    if config.get("output") == "gaussian":
        x = 3 * x - 1
    loss = module.loss(torch.from_numpy(x), torch.from_numpy(eps))
    assert loss.dtype == torch.float64
    loss.backward()
    expected = model.loss_and_grads(x, eps=eps)
    assert abs(loss.item() - expected) <= 1e-10 * abs(expected)
    torch_grads = {k: p.grad.numpy() for k, p in module.named_parameters()}
    npvae_grads = to_state_dict_of_grads(model)
    for name, grad in npvae_grads.items():
        np.testing.assert_allclose(torch_grads[name], grad, rtol=1e-10, atol=1e-12, err_msg=name)


def to_state_dict_of_grads(model):
    """The model's gradients in torch layout and naming, through to_state_dict on a copy whose
    values are the gradients."""
    copy = npvae.VAE(**model.config())
    copy.load_state_dict({name: p.grad for name, p in model.named_parameters()})
    return to_state_dict(copy)


def test_torch_tensors_convert_and_a_float32_model_gives_a_float32_module():
    torch = pytest.importorskip("torch")
    user = NumPyVAE()
    tensors = {k: torch.from_numpy(v).float().requires_grad_() for k, v in user.state_dict().items()}
    model = vae_from_state_dict(tensors, activation="leaky_relu", dtype=np.float32)
    assert model.dtype == np.float32
    module = to_torch_module(model)
    assert next(module.parameters()).dtype == torch.float32
    x, eps = data()
    loss = module.loss(torch.from_numpy(x).float(), torch.from_numpy(eps).float()).item()
    assert loss == pytest.approx(user.loss(x, eps), rel=1e-5)


def test_a_model_trained_here_continues_in_torch_from_to_state_dict():
    torch = pytest.importorskip("torch")
    model = npvae.VAE(64, (16,), 2, seed=0)
    x = npvae.datasets.load("digits", "test").x[:64].astype(np.float64)
    npvae.fit(model, x, epochs=2, batch_size=32, seed=0)
    module = to_torch_module(model)
    eps = np.random.default_rng(0).standard_normal((64, 2))
    before = module.loss(torch.from_numpy(x), torch.from_numpy(eps))
    assert before.item() == pytest.approx(float(model.terms(x, eps=eps).loss.mean()), rel=1e-12)
    for _ in range(5):  # plain gradient descent in torch (torch.optim takes seconds to import)
        module.zero_grad()
        module.loss(torch.from_numpy(x), torch.from_numpy(eps)).backward()
        with torch.no_grad():
            for parameter in module.parameters():
                parameter -= 1e-3 * parameter.grad
    assert module.loss(torch.from_numpy(x), torch.from_numpy(eps)).item() < before.item()
