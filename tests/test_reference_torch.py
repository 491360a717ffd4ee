"""npvae against PyTorch: the same networks and optimizers, the same numbers.

npvae's gradients are written by hand; PyTorch's come from autograd, an independent
implementation of the same mathematics. These tests build, for an npvae model, the PyTorch
network with the same structure and the same parameter names ("encoder.0.weight", ...; npvae's
Dense weight W is (in, out), torch's ``Linear.weight`` is its transpose), copy the parameters
across, feed both the same batch x and the same noise eps, and compare:

- the mean loss from ``loss_and_grads`` and its two parts ``last_recon`` and ``last_kl``,
- the per-example ``terms(x, eps=eps)`` (loss, recon, kl),
- the gradient of every parameter,

for the AE and the VAE, every hidden activation, both decoder likelihoods, several betas (and
the ``kl_weight`` override), one and two hidden layers, and ``VAE.from_seed``, in float64 and
float32. The torch side is the plain textbook formula (``binary_cross_entropy_with_logits``,
the unit-variance Gaussian NLL, the closed-form KL), not a transcription of npvae's code.
It also runs ``npvae.SGD`` and ``npvae.Adam`` for 200 steps next to ``torch.optim.SGD`` and
``torch.optim.Adam`` on identical gradients and compares parameters and optimizer state, and
compares ``npvae.bce_with_logits`` with torch's on extreme logits.

Tolerances. An entry passes when |npvae - torch| <= rtol * |torch| + atol, with

- float64: rtol = 1e-10, atol = 1e-12 * max|torch array|;
- float32: rtol = 1e-5,  atol = 2e-6  * max|torch array|;
- optimizers, float64, after 200 steps: rtol = 1e-9, atol = 1e-12 * max|torch array|

(for a scalar such as the mean loss, max|array| is the value itself: the atol adds little).
Both sides compute the same mathematics in a different order (OpenBLAS against ATen,
fused against separate passes, ``expm1`` against ``exp - 1``), so they differ by rounding alone.
A sum of n terms computed two ways differs by up to about n * u * sum|terms| (unit roundoff
u = 1.1e-16 in float64, 6.0e-8 in float32): a bound relative to the size of the terms, not of
the result. A gradient entry that cancels to near zero can therefore differ by a large
*relative* amount while its absolute difference stays at roundoff of the array's scale; hence
an atol scaled by the largest entry of the same array, not a fixed number. The same holds for
torch's KL, -1/2 sum(1 + logvar - mu^2 - exp(logvar)), which cancels when logvar ~ 0 and mu ~ 0
(npvae's expm1 form does not): that is the largest loss-side difference seen.

Measured over every configuration here (the project notes hold the table): float64 losses
<= 2e-14 relative, gradients <= 1.1e-15 * max|array| (10 u); float32 losses <= 3e-6 relative,
gradients <= 3.6e-7 * max|array| (6 u); optimizers <= 1e-13 relative after 200 steps. The
tolerances sit 6 to 1000 times above those, while a real mistake (a wrong slope, a missing
factor 1/2, a gradient accumulated twice, a missing bias correction) shows up as a difference
of order 1e-3 to 1; ``test_torch_reference_detects_a_wrong_activation_slope`` shows the
harness noticing one.
"""

from __future__ import annotations

import decimal
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import npvae  # noqa: E402  (after the skip: only run when torch is there)
from npvae import activations  # noqa: E402

# every comparison with torch runs on both kernel sets of npvae.kernels (fast and reference)
pytestmark = pytest.mark.usefixtures("kernel_set")

torch.set_num_threads(1)
F = torch.nn.functional

TORCH_DTYPE = {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32}
RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}
ATOL_SCALE = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 2e-6}
OPTIM_RTOL = 1e-9
OPTIM_STEPS = 200
BATCH = 8
INPUT_DIM = 16
LATENT_DIM = 3


# -- the torch mirror of an npvae model -------------------------------------------------------
def torch_module_like(module: npvae.Module) -> torch.nn.Module:
    """The torch module computing what ``module`` computes (parameters not yet copied)."""
    if isinstance(module, npvae.Sequential):
        return torch.nn.Sequential(*(torch_module_like(layer) for layer in module.layers))
    if isinstance(module, npvae.Dense):
        return torch.nn.utils.skip_init(
            torch.nn.Linear, module.in_features, module.out_features, dtype=TORCH_DTYPE[module.dtype]
        )
    if isinstance(module, activations.LeakyReLU):
        return torch.nn.LeakyReLU(module.negative_slope)
    simple = {activations.ReLU: torch.nn.ReLU, activations.Sigmoid: torch.nn.Sigmoid,
              activations.Tanh: torch.nn.Tanh, activations.Identity: torch.nn.Identity}
    return simple[type(module)]()


def torch_model_like(model: npvae.Module) -> torch.nn.ModuleDict:
    """Mirror ``model.encoder``, ``model.head`` (VAE) and ``model.decoder`` and copy every
    parameter by name; the torch state_dict names must be exactly npvae's."""
    parts = [name for name in ("encoder", "head", "decoder") if hasattr(model, name)]
    mirror = torch.nn.ModuleDict({name: torch_module_like(getattr(model, name)) for name in parts})
    torch_parameters = dict(mirror.named_parameters())
    npvae_parameters = dict(model.named_parameters())
    assert sorted(torch_parameters) == sorted(npvae_parameters)
    with torch.no_grad():
        for name, parameter in npvae_parameters.items():
            value = parameter.value.T if name.endswith("weight") else parameter.value
            torch_parameters[name].copy_(torch.from_numpy(np.ascontiguousarray(value)))
    return mirror


def torch_reference(
    mirror: torch.nn.ModuleDict, x: np.ndarray, eps: np.ndarray | None, output: str, beta: float,
    kl_weight: float,
) -> dict[str, np.ndarray]:
    """By autograd, for the VAE (``"head" in mirror``) or the AE: per-example recon, kl and
    recon + beta * kl (what ``terms`` reports), the batch means of recon and kl, the loss
    mean(recon + kl_weight * kl) and its gradient for every parameter (in npvae's layout)."""
    x_t = torch.from_numpy(x)
    if "head" in mirror:
        mu, logvar = mirror["head"](mirror["encoder"](x_t)).chunk(2, dim=1)
        z = mu + torch.exp(0.5 * logvar) * torch.from_numpy(eps)
        kl = -0.5 * (1 + logvar - mu**2 - torch.exp(logvar)).sum(1)
    else:
        z = mirror["encoder"](x_t)
        kl = torch.zeros(x.shape[0], dtype=x_t.dtype)
    decoded = mirror["decoder"](z)
    if output == "bernoulli":
        recon = F.binary_cross_entropy_with_logits(decoded, x_t, reduction="none").sum(1)
    else:
        recon = 0.5 * ((x_t - decoded) ** 2).sum(1) + 0.5 * x.shape[1] * math.log(2 * math.pi)
    loss = (recon + kl_weight * kl).mean()
    mirror.zero_grad(set_to_none=True)
    loss.backward()
    result = {"loss": loss.detach().numpy(), "terms.loss": (recon + beta * kl).detach().numpy(),
              "terms.recon": recon.detach().numpy(), "terms.kl": kl.detach().numpy(),
              "recon": recon.mean().detach().numpy(), "kl": kl.mean().detach().numpy()}
    for name, parameter in mirror.named_parameters():
        grad = parameter.grad.numpy()
        result["grad " + name] = grad.T if name.endswith("weight") else grad
    return result


def npvae_results(model: npvae.Module, x: np.ndarray, eps: np.ndarray | None,
                  kl_weight: float | None = None) -> dict[str, np.ndarray]:
    """The same quantities from npvae: ``loss_and_grads`` (grads, last_recon, last_kl) and ``terms``."""
    loss = model.loss_and_grads(x, eps=eps, kl_weight=kl_weight)
    result = {"loss": np.asarray(loss), "recon": np.asarray(model.last_recon),
              "kl": np.asarray(model.last_kl)}
    for name, parameter in model.named_parameters():
        result["grad " + name] = parameter.grad.copy()
    terms = model.terms(x, eps=eps)
    result.update({"terms.loss": terms.loss, "terms.recon": terms.recon, "terms.kl": terms.kl})
    return result


def assert_matches(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray],
                   rtol: float, atol_scale: float) -> None:
    """Every entry of every array: |actual - expected| <= rtol |expected| + atol_scale max|expected|."""
    assert sorted(actual) == sorted(expected)
    for name, reference in expected.items():
        scale = float(np.max(np.abs(reference), initial=0.0))
        np.testing.assert_allclose(actual[name], reference, rtol=rtol, atol=atol_scale * scale,
                                   err_msg=name)


def batch_for(output: str, dtype: np.dtype, rng: np.random.Generator, batch: int = BATCH,
              input_dim: int = INPUT_DIM) -> np.ndarray:
    """Bernoulli data: values in [0, 1] including exact 0s and 1s; Gaussian data: N(0.5, 1)."""
    if output == "bernoulli":
        x = rng.uniform(0.0, 1.0, size=(batch, input_dim))
        x[:, ::4] = np.round(x[:, ::4])
    else:
        x = rng.normal(0.5, 1.0, size=(batch, input_dim))
    return x.astype(dtype)


def compare_with_torch(model: npvae.Module, seed: int, kl_weight: float | None = None) -> None:
    """Warm npvae's work buffers with another batch size, then compare one batch with torch."""
    rng = np.random.default_rng(seed)
    is_vae = isinstance(model, npvae.VAE)
    warmup_x = batch_for(model.output, model.dtype, rng, batch=BATCH - 3, input_dim=model.input_dim)
    warmup_eps = rng.standard_normal((BATCH - 3, model.latent_dim)).astype(model.dtype) if is_vae else None
    model.loss_and_grads(warmup_x, eps=warmup_eps)
    x = batch_for(model.output, model.dtype, rng, input_dim=model.input_dim)
    eps = rng.standard_normal((BATCH, model.latent_dim)).astype(model.dtype) if is_vae else None
    mirror = torch_model_like(model)
    beta = model.beta if is_vae else 0.0
    expected = torch_reference(mirror, x, eps, model.output, beta, beta if kl_weight is None else kl_weight)
    actual = npvae_results(model, x, eps, kl_weight)
    for name, array in actual.items():
        if name.startswith(("grad", "terms")):
            assert array.dtype == model.dtype, f"{name}: dtype {array.dtype}, model {model.dtype}"
    assert_matches(actual, expected, RTOL[model.dtype], ATOL_SCALE[model.dtype])


# -- models ---------------------------------------------------------------------------------
DTYPES = [pytest.param(np.dtype(np.float64), id="float64"), pytest.param(np.dtype(np.float32), id="float32")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hidden_dims", [(12,), (12, 10)], ids=["1hidden", "2hidden"])
@pytest.mark.parametrize("output", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "sigmoid", "tanh", "identity"])
@pytest.mark.parametrize("model_class", [npvae.AE, npvae.VAE], ids=["AE", "VAE"])
def test_loss_terms_and_gradients_match_torch_autograd(model_class, activation, output, hidden_dims, dtype):
    model = model_class(INPUT_DIM, hidden_dims, LATENT_DIM, activation=activation, output=output,
                        seed=3, dtype=dtype)
    compare_with_torch(model, seed=11)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("beta", [0.0, 0.5, 4.0])
def test_vae_beta_weights_the_kl_term_as_in_torch(beta, output, dtype):
    model = npvae.VAE(INPUT_DIM, (12,), LATENT_DIM, activation="leaky_relu", output=output,
                      beta=beta, seed=5, dtype=dtype)
    compare_with_torch(model, seed=13)


@pytest.mark.parametrize("dtype", DTYPES)
def test_vae_kl_weight_overrides_beta_in_loss_and_grads_as_in_torch(dtype):
    model = npvae.VAE(INPUT_DIM, (12,), LATENT_DIM, beta=4.0, seed=6, dtype=dtype)
    compare_with_torch(model, seed=17, kl_weight=0.25)


@pytest.mark.parametrize("dtype", DTYPES)
def test_from_seed_vae_matches_torch_autograd(dtype):
    model = npvae.VAE.from_seed(input_dim=INPUT_DIM, hidden_dim=12, latent_dim=6, latent_num=2,
                                seed=7, dtype=dtype)
    compare_with_torch(model, seed=19)


def test_torch_reference_detects_a_wrong_activation_slope():
    """The comparison can fail: the same VAE with LeakyReLU slope 0.2 in npvae and 0.3 in torch."""
    model = npvae.VAE(INPUT_DIM, (12,), LATENT_DIM, activation="leaky_relu", negative_slope=0.2, seed=8)
    rng = np.random.default_rng(23)
    x = batch_for("bernoulli", model.dtype, rng)
    eps = rng.standard_normal((BATCH, LATENT_DIM))
    mirror = torch_model_like(model)
    mirror["encoder"][1].negative_slope = 0.3
    expected = torch_reference(mirror, x, eps, "bernoulli", 1.0, 1.0)
    actual = npvae_results(model, x, eps)
    name = "grad encoder.0.weight"
    with pytest.raises(AssertionError, match=name):
        assert_matches({name: actual[name]}, {name: expected[name]}, RTOL[model.dtype], ATOL_SCALE[model.dtype])


# -- bce_with_logits at the extremes --------------------------------------------------------
EXTREME_LOGITS = [1e4, -1e4, 50.0, -50.0, 30.0, -30.0, 17.0, -17.0, 1e-3, 0.0]
BCE_TARGETS = [0.0, 1.0, 0.3]


def exact_bce(logit: float, target: float) -> tuple[float, float]:
    """log(1 + e^l) - t l and its derivative sigmoid(l) - t in 80-digit decimal arithmetic,
    rounded to float: a reference that shares no formula with either implementation."""
    with decimal.localcontext() as context:
        context.prec = 80
        l, t = decimal.Decimal(logit), decimal.Decimal(target)
        return float((1 + l.exp()).ln() - t * l), float(1 / (1 + (-l).exp()) - t)


def extreme_bce_inputs(dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Every (logit, target) pair as its own row, so the per-example value is one element."""
    logits, target = np.meshgrid(EXTREME_LOGITS, BCE_TARGETS, indexing="ij")
    return logits.reshape(-1, 1).astype(dtype), target.reshape(-1, 1).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_with_logits_matches_torch_on_extreme_logits(dtype):
    """Torch forms (1 - t) l - log_sigmoid(l): near a zero loss that is a difference of two
    numbers of size |l|, good to about u |l| absolutely (torch 2.13 returns 0 at l = -30, t = 0,
    where the loss is 9.4e-14). So values agree to rtol plus 4 u max(1, |l|); the gradients,
    sigmoid(l) - t on both sides, to rtol plus 2 u."""
    unit_roundoff = np.finfo(dtype).eps / 2
    logits, target = extreme_bce_inputs(dtype)
    value, grad_logits = npvae.bce_with_logits(logits, target)
    logits_t = torch.from_numpy(logits).requires_grad_(True)
    value_t = F.binary_cross_entropy_with_logits(logits_t, torch.from_numpy(target), reduction="none")
    value_t.sum().backward()
    assert np.isfinite(value).all() and np.isfinite(grad_logits).all()
    expected = value_t.detach().numpy()[:, 0]
    allowed = RTOL[dtype] * np.abs(expected) + 4 * unit_roundoff * np.maximum(1, np.abs(logits[:, 0]))
    assert (np.abs(value - expected) <= allowed).all(), np.abs(value - expected) / allowed
    np.testing.assert_allclose(grad_logits, logits_t.grad.numpy(), rtol=RTOL[dtype], atol=2 * unit_roundoff)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_with_logits_is_accurate_to_a_few_ulps_on_extreme_logits(dtype):
    """npvae's softplus(l) - t l = max(l, 0) - t l + log1p(e^-|l|) keeps full relative accuracy
    where torch's form does not (l = -30, t = 0 included). The gradient is a difference of two
    numbers in [0, 1], so it is held to 2 u absolutely."""
    unit_roundoff = np.finfo(dtype).eps / 2
    logits, target = extreme_bce_inputs(dtype)
    value, grad_logits = npvae.bce_with_logits(logits, target)
    exact = np.array([exact_bce(float(l), float(t)) for l, t in zip(logits[:, 0], target[:, 0])])
    np.testing.assert_allclose(value, exact[:, 0], rtol=8 * unit_roundoff, atol=0)
    np.testing.assert_allclose(grad_logits[:, 0], exact[:, 1], rtol=8 * unit_roundoff, atol=2 * unit_roundoff)


# -- optimizers -----------------------------------------------------------------------------
def optimizer_parameters(layout: str) -> list[npvae.Parameter]:
    """Parameters in one flat buffer (a model's: the optimizer's one-pass path), or separate
    arrays (its per-parameter path)."""
    if layout == "flat":
        parameters = npvae.VAE(6, (5,), 2, seed=1).parameters()
        assert all(p.value.base is parameters[0].value.base is not None for p in parameters)
        return parameters
    rng = np.random.default_rng(2)
    return [npvae.Parameter(rng.normal(size=shape)) for shape in ((4, 3), (3,), (2, 5), (1,))]


def run_optimizers(layout: str, npvae_optimizer, torch_optimizer, hyper: dict, resume_at: int | None = None):
    """OPTIM_STEPS steps of both optimizers on the same noisy quadratic gradients
    g = c * (p - target) + noise, computed from npvae's parameters and given to both."""
    parameters = optimizer_parameters(layout)
    tensors = [torch.tensor(p.value, dtype=torch.float64, requires_grad=True) for p in parameters]
    ours = npvae_optimizer(parameters, **hyper)
    theirs = torch_optimizer(tensors, **hyper)
    rng = np.random.default_rng(29)
    curvature = [rng.uniform(0.1, 3.0, size=p.shape) for p in parameters]
    target = [rng.normal(size=p.shape) for p in parameters]
    for step in range(OPTIM_STEPS):
        if step == resume_at:
            state = ours.state_dict()
            ours = npvae_optimizer(parameters, **hyper)
            ours.load_state_dict(state)
        for p, tensor, c, t in zip(parameters, tensors, curvature, target):
            p.grad[...] = c * (p.value - t) + 0.1 * rng.standard_normal(p.shape)
            tensor.grad = torch.from_numpy(p.grad.copy())
        ours.step()
        theirs.step()
    return parameters, tensors, ours, theirs


def assert_optimizer_state_matches(ours_flat: np.ndarray, theirs: list[np.ndarray], name: str) -> None:
    expected = np.concatenate([array.ravel() for array in theirs])
    np.testing.assert_allclose(ours_flat, expected, rtol=OPTIM_RTOL,
                               atol=1e-12 * np.abs(expected).max(), err_msg=name)


ADAM_SETTINGS = [
    {"lr": 1e-2},
    {"lr": 1e-3, "weight_decay": 0.1},
    {"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.01},
]
SGD_SETTINGS = [
    {"lr": 1e-2},
    {"lr": 1e-2, "momentum": 0.9},
    {"lr": 1e-2, "momentum": 0.9, "nesterov": True},
    {"lr": 1e-2, "momentum": 0.9, "weight_decay": 0.1},
    {"lr": 1e-2, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
    {"lr": 5e-3, "momentum": 0.5, "dampening": 0.3},
]


def settings_id(settings: dict) -> str:
    return ",".join(f"{key}={value}" for key, value in settings.items())


@pytest.mark.parametrize("layout", ["flat", "separate"])
@pytest.mark.parametrize("hyper", ADAM_SETTINGS, ids=settings_id)
def test_adam_matches_torch_adam_over_200_steps(layout, hyper):
    parameters, tensors, ours, theirs = run_optimizers(layout, npvae.Adam, torch.optim.Adam, hyper)
    for p, tensor in zip(parameters, tensors):
        expected = tensor.detach().numpy()
        np.testing.assert_allclose(p.value, expected, rtol=OPTIM_RTOL, atol=1e-12 * np.abs(expected).max())
    states = [theirs.state[tensor] for tensor in tensors]
    assert ours.steps == OPTIM_STEPS == int(states[0]["step"])
    for key in ("exp_avg", "exp_avg_sq"):
        assert_optimizer_state_matches(getattr(ours, key), [s[key].numpy() for s in states], key)


@pytest.mark.parametrize("layout", ["flat", "separate"])
@pytest.mark.parametrize("hyper", SGD_SETTINGS, ids=settings_id)
def test_sgd_matches_torch_sgd_over_200_steps(layout, hyper):
    parameters, tensors, ours, theirs = run_optimizers(layout, npvae.SGD, torch.optim.SGD, hyper)
    for p, tensor in zip(parameters, tensors):
        expected = tensor.detach().numpy()
        np.testing.assert_allclose(p.value, expected, rtol=OPTIM_RTOL, atol=1e-12 * np.abs(expected).max())
    if hyper.get("momentum"):
        buffers = [theirs.state[tensor]["momentum_buffer"].numpy() for tensor in tensors]
        assert_optimizer_state_matches(ours.momentum_buffer, buffers, "momentum_buffer")


@pytest.mark.parametrize(
    "npvae_optimizer, torch_optimizer, hyper",
    [(npvae.Adam, torch.optim.Adam, ADAM_SETTINGS[1]), (npvae.SGD, torch.optim.SGD, SGD_SETTINGS[4])],
    ids=["Adam", "SGD"],
)
def test_optimizer_resumed_from_state_dict_stays_on_torchs_path(npvae_optimizer, torch_optimizer, hyper):
    """A fresh optimizer loaded with state_dict() at step 100 continues exactly as torch's."""
    parameters, tensors, _, _ = run_optimizers("flat", npvae_optimizer, torch_optimizer, hyper,
                                               resume_at=OPTIM_STEPS // 2)
    for p, tensor in zip(parameters, tensors):
        expected = tensor.detach().numpy()
        np.testing.assert_allclose(p.value, expected, rtol=OPTIM_RTOL, atol=1e-12 * np.abs(expected).max())


@pytest.mark.parametrize("max_norm", [0.5, 1e3], ids=["clipped", "unclipped"])
def test_clip_grad_norm_matches_torch(max_norm):
    parameters = optimizer_parameters("separate")
    rng = np.random.default_rng(31)
    tensors = []
    for p in parameters:
        p.grad[...] = rng.normal(size=p.shape)
        tensors.append(torch.tensor(p.value, requires_grad=True))
        tensors[-1].grad = torch.from_numpy(p.grad.copy())
    norm = npvae.clip_grad_norm(parameters, max_norm)
    norm_t = torch.nn.utils.clip_grad_norm_(tensors, max_norm)
    np.testing.assert_allclose(norm, norm_t.item(), rtol=RTOL[np.dtype(np.float64)])
    for p, tensor in zip(parameters, tensors):
        np.testing.assert_allclose(p.grad, tensor.grad.numpy(), rtol=RTOL[np.dtype(np.float64)])
