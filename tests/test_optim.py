"""Tests for npvae.optim: SGD and Adam against update formulas written here in plain NumPy,
state saving and resuming, the flat-buffer and per-parameter paths, clip_grad_norm, bad input.

The reference formulas follow torch.optim (L2 weight decay added to the gradient):
    Adam:  g = grad + wd p;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
           p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    SGD:   g = grad + wd p;  b = g (first step) else mom b + (1 - damp) g;
           p -= lr * (g + mom b if nesterov else b)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from conftest import float_arrays, seeds
from hypothesis import given
from hypothesis import strategies as st

from npvae import SGD, Adam, Dense, LeakyReLU, Parameter, Sequential, clip_grad_norm

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

SHAPES = [(3, 4), (4,), (4, 2), (2,)]


def quadratic_gradient(values: list[np.ndarray]) -> list[np.ndarray]:
    """Gradient of f(p) = sum_i 1/2 * sum(c_i * (p_i - t_i)^2), a small problem whose gradient
    depends on where the optimizer has moved (so the steps differ from each other)."""
    grads = []
    for index, value in enumerate(values):
        scale = np.linspace(0.5, 3.0, value.size).reshape(value.shape)
        grads.append(scale * (value - (index + 1.0)))
    return grads


def make_parameters(seed: int = 0, dtype: type = np.float64) -> list[Parameter]:
    rng = np.random.default_rng(seed)
    return [Parameter(rng.standard_normal(shape).astype(dtype)) for shape in SHAPES]


def run(optimizer: SGD | Adam, params: list[Parameter], steps: int) -> None:
    """``steps`` optimizer steps on the quadratic problem."""
    for _ in range(steps):
        for parameter, grad in zip(params, quadratic_gradient([p.value for p in params])):
            parameter.grad[...] = grad
        optimizer.step()


def adam_reference(values: list[np.ndarray], steps: int, lr: float, betas: tuple[float, float], eps: float,
                   weight_decay: float) -> list[np.ndarray]:
    beta1, beta2 = betas
    values = [v.copy() for v in values]
    exp_avg = [np.zeros_like(v) for v in values]
    exp_avg_sq = [np.zeros_like(v) for v in values]
    for t in range(1, steps + 1):
        grads = quadratic_gradient(values)
        for i, (value, grad) in enumerate(zip(values, grads)):
            grad = grad + weight_decay * value
            exp_avg[i] = beta1 * exp_avg[i] + (1 - beta1) * grad
            exp_avg_sq[i] = beta2 * exp_avg_sq[i] + (1 - beta2) * grad * grad
            m_hat = exp_avg[i] / (1 - beta1**t)
            v_hat = exp_avg_sq[i] / (1 - beta2**t)
            values[i] = value - lr * m_hat / (np.sqrt(v_hat) + eps)
    return values


def sgd_reference(values: list[np.ndarray], steps: int, lr: float, momentum: float, dampening: float,
                  weight_decay: float, nesterov: bool) -> list[np.ndarray]:
    values = [v.copy() for v in values]
    buffers: list[np.ndarray] = []
    for t in range(steps):
        grads = quadratic_gradient(values)
        for i, (value, grad) in enumerate(zip(values, grads)):
            grad = grad + weight_decay * value
            direction = grad
            if momentum:
                if t == 0:
                    buffers.append(grad.copy())
                else:
                    buffers[i] = momentum * buffers[i] + (1 - dampening) * grad
                direction = grad + momentum * buffers[i] if nesterov else buffers[i]
            values[i] = value - lr * direction
    return values


def assert_values_close(params: list[Parameter], expected: list[np.ndarray], rtol: float = 1e-12) -> None:
    for parameter, value in zip(params, expected):
        np.testing.assert_allclose(parameter.value, value, rtol=rtol, atol=1e-14)


# -- Adam ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "hyper",
    [dict(), dict(lr=0.05), dict(lr=0.01, betas=(0.5, 0.9), eps=1e-3), dict(lr=0.02, weight_decay=0.1),
     dict(lr=0.1, betas=(0.0, 0.0))],
    ids=["defaults", "lr", "betas_eps", "weight_decay", "no_averaging"],
)
def test_adam_matches_the_closed_form_for_several_steps(hyper: dict) -> None:
    params = make_parameters()
    expected = adam_reference([p.value for p in params], 6, **{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8,
                                                               "weight_decay": 0.0, **hyper})
    run(Adam(params, **hyper), params, 6)
    assert_values_close(params, expected)


@given(grad=float_arrays((3, 4), low=-10.0, high=10.0), lr=st.floats(1e-4, 1.0))
def test_adam_first_step_is_lr_times_the_sign_of_the_gradient(grad: np.ndarray, lr: float) -> None:
    # bias correction at t = 1: m_hat = g, v_hat = g^2, so the update is -lr * g / (|g| + eps)
    parameter = Parameter(np.zeros((3, 4)))
    parameter.grad[...] = grad
    Adam([parameter], lr=lr).step()
    np.testing.assert_allclose(parameter.value, -lr * grad / (np.abs(grad) + 1e-8), rtol=1e-12, atol=1e-300)


def test_adam_state_is_flat_in_parameter_order() -> None:
    params = make_parameters()
    grads = quadratic_gradient([p.value for p in params])
    optimizer = Adam(params, betas=(0.8, 0.9))
    run(optimizer, params, 1)
    flat = np.concatenate([g.ravel() for g in grads])
    np.testing.assert_allclose(optimizer.exp_avg, 0.2 * flat, rtol=1e-14)
    np.testing.assert_allclose(optimizer.exp_avg_sq, 0.1 * flat**2, rtol=1e-14)
    assert optimizer.steps == 1


@pytest.mark.parametrize(
    "make",
    [lambda params: Adam(params, lr=0.05, betas=(0.8, 0.95), weight_decay=0.01),
     lambda params: SGD(params, lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)],
    ids=["adam", "sgd"],
)
def test_state_dict_resumes_exactly(make: Callable) -> None:
    params = make_parameters()
    optimizer = make(params)
    run(optimizer, params, 3)
    saved_values, saved_state = [p.value.copy() for p in params], optimizer.state_dict()
    run(optimizer, params, 2)

    resumed_params = [Parameter(value) for value in saved_values]
    resumed = type(optimizer)(resumed_params)  # default hyperparameters, replaced by the loaded ones
    resumed.load_state_dict(saved_state)
    run(resumed, resumed_params, 2)
    assert resumed.steps == optimizer.steps == 5
    for original, copy in zip(params, resumed_params):
        np.testing.assert_array_equal(copy.value, original.value)
    for name, array in optimizer.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[name], array)


def test_state_dict_is_a_copy() -> None:
    params = make_parameters()
    optimizer = Adam(params)
    run(optimizer, params, 1)
    state = optimizer.state_dict()
    state["exp_avg"][...] = 0
    assert np.any(optimizer.exp_avg != 0)


def network(seed: int, dtype: type = np.float64) -> Sequential:
    rng = np.random.default_rng(seed)
    return Sequential(Dense(3, 5, rng=rng, dtype=dtype), LeakyReLU(), Dense(5, 4, rng=rng, dtype=dtype),
                      LeakyReLU(), Dense(4, 2, rng=rng, dtype=dtype))


@pytest.mark.parametrize(
    "make",
    [lambda params: Adam(params, lr=0.01, weight_decay=0.01),
     lambda params: SGD(params, lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.01)],
    ids=["adam", "sgd"],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flat_buffer_and_per_parameter_paths_give_identical_results(make: Callable, dtype: type) -> None:
    flat, separate = network(0, dtype), network(0, dtype)
    flat.flatten_parameters()
    flat_params, separate_params = flat.parameters(), separate.parameters()
    assert all(p.value.base is flat_params[0].value.base for p in flat_params)
    assert not any(np.shares_memory(p.value, q.value) for p, q in zip(separate_params, separate_params[1:]))
    flat_optimizer, separate_optimizer = make(flat_params), make(separate_params)
    x = np.random.default_rng(1).standard_normal((8, 3)).astype(dtype)
    for _ in range(5):
        for model, optimizer in ((flat, flat_optimizer), (separate, separate_optimizer)):
            optimizer.zero_grad()
            model.forward(x)
            model.backward(np.ones((8, 2), dtype=dtype), input_grad=False)
            optimizer.step()
    # Two code paths (one BLAS call over the flat buffer vs one per parameter): OpenBLAS may round a
    # sliced vector differently from a whole one (its Haswell/Zen axpy does), so the paths agree to
    # within 4 ulps after 5 steps, not bit for bit. Measured: at most 1 ulp.
    for p, q in zip(flat_params, separate_params):
        assert p.value.dtype == q.value.dtype == dtype
        np.testing.assert_array_max_ulp(p.value, q.value, maxulp=4)


def test_optimizer_on_part_of_a_flattened_model_updates_only_that_part() -> None:
    model = network(2)
    model.flatten_parameters()
    before = model.state_dict()
    last_layer = model.layers[-1]
    for parameter in model.parameters():
        parameter.grad[...] = 1.0
    Adam(last_layer.parameters(), lr=0.1).step()
    for name, value in model.state_dict().items():
        if name.startswith("4."):
            np.testing.assert_allclose(value, before[name] - 0.1, rtol=1e-6)
        else:
            np.testing.assert_array_equal(value, before[name])


def test_optimizer_given_parameters_out_of_buffer_order_updates_each_correctly() -> None:
    model = network(3)
    model.flatten_parameters()
    params = model.parameters()[::-1]
    expected = adam_reference([p.value for p in params], 3, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)
    run(Adam(params, lr=0.01), params, 3)
    assert_values_close(params, expected)


@pytest.mark.parametrize("make", [lambda p: Adam(p, lr=0.01), lambda p: SGD(p, lr=0.01, momentum=0.9)],
                         ids=["adam", "sgd"])
def test_float32_parameters_and_state_stay_float32(make: Callable) -> None:
    params = make_parameters(dtype=np.float32)
    optimizer = make(params)
    run(optimizer, params, 3)
    assert all(p.value.dtype == np.float32 and p.grad.dtype == np.float32 for p in params)
    assert all(np.asarray(a).dtype == np.float32 for n, a in optimizer.state_dict().items()
               if n in ("exp_avg", "exp_avg_sq", "momentum_buffer"))


# -- SGD -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "hyper",
    [dict(lr=0.1), dict(lr=0.05, momentum=0.9), dict(lr=0.05, momentum=0.9, dampening=0.5),
     dict(lr=0.05, momentum=0.8, nesterov=True), dict(lr=0.05, momentum=0.9, weight_decay=0.1),
     dict(lr=0.05, weight_decay=0.2), dict(lr=0.02, momentum=0.7, nesterov=True, weight_decay=0.05)],
    ids=["plain", "momentum", "dampening", "nesterov", "momentum_weight_decay", "weight_decay", "all"],
)
def test_sgd_matches_the_closed_form_for_several_steps(hyper: dict) -> None:
    params = make_parameters()
    full = {"momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False, **hyper}
    expected = sgd_reference([p.value for p in params], 6, **full)
    run(SGD(params, **hyper), params, 6)
    assert_values_close(params, expected)


def test_sgd_first_momentum_step_is_not_dampened() -> None:
    parameter = Parameter(np.zeros(3))
    parameter.grad[...] = [1.0, -2.0, 0.5]
    SGD([parameter], lr=0.1, momentum=0.9, dampening=0.9).step()
    np.testing.assert_allclose(parameter.value, [-0.1, 0.2, -0.05], rtol=1e-15)


def test_zero_grad_resets_every_parameters_gradient() -> None:
    params = make_parameters()
    for parameter in params:
        parameter.grad[...] = 1.0
    Adam(params).zero_grad()
    assert all(not p.grad.any() for p in params)


# -- clip_grad_norm --------------------------------------------------------------------------
@given(seed=seeds, max_norm=st.floats(1e-3, 1e3))
def test_clip_grad_norm_returns_the_global_norm_and_scales_only_above_max_norm(seed: int, max_norm: float) -> None:
    rng = np.random.default_rng(seed)
    params = make_parameters(seed)
    for parameter in params:
        parameter.grad[...] = rng.standard_normal(parameter.shape) * rng.uniform(0.1, 10)
    grads = [p.grad.copy() for p in params]
    norm = np.sqrt(sum(float((g**2).sum()) for g in grads))
    returned = clip_grad_norm(params, max_norm)
    assert returned == pytest.approx(norm, rel=1e-12)
    scale = min(1.0, max_norm / (norm + 1e-6))
    for parameter, grad in zip(params, grads):
        np.testing.assert_allclose(parameter.grad, grad * scale, rtol=1e-12)
    new_norm = np.sqrt(sum(float((p.grad**2).sum()) for p in params))
    assert new_norm <= max_norm * (1 + 1e-12) or scale == 1.0


def test_clip_grad_norm_keeps_the_direction_of_the_gradient() -> None:
    params = [Parameter(np.zeros(2)), Parameter(np.zeros((1, 1)))]
    params[0].grad[...] = [3.0, 0.0]
    params[1].grad[...] = 4.0
    assert clip_grad_norm(params, 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(params[0].grad, [0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(params[1].grad, [[0.8]], rtol=1e-6)


@pytest.mark.parametrize("max_norm", [0.0, -1.0, float("nan"), float("inf")])
def test_clip_grad_norm_rejects_a_non_positive_or_non_finite_max_norm(max_norm: float) -> None:
    with pytest.raises(ValueError, match="^max_norm: "):
        clip_grad_norm(make_parameters(), max_norm)


# -- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, name",
    [
        (lambda p: SGD(p, lr=0.0), "lr"),
        (lambda p: SGD(p, lr=-1e-3), "lr"),
        (lambda p: SGD(p, lr=float("nan")), "lr"),
        (lambda p: SGD(p, lr=float("inf")), "lr"),
        (lambda p: SGD(p, momentum=-0.1), "momentum"),
        (lambda p: SGD(p, momentum=0.9, dampening=1.5), "dampening"),
        (lambda p: SGD(p, dampening=-0.5), "dampening"),
        (lambda p: SGD(p, weight_decay=-1e-4), "weight_decay"),
        (lambda p: SGD(p, nesterov=True), "nesterov"),
        (lambda p: SGD(p, momentum=0.9, dampening=0.1, nesterov=True), "nesterov"),
        (lambda p: Adam(p, lr=0.0), "lr"),
        (lambda p: Adam(p, betas=(1.0, 0.999)), r"betas\[0\]"),
        (lambda p: Adam(p, betas=(0.9, -0.1)), r"betas\[1\]"),
        (lambda p: Adam(p, betas=(0.9,)), "betas"),
        (lambda p: Adam(p, betas=0.9), "betas"),
        (lambda p: Adam(p, eps=-1e-8), "eps"),
        (lambda p: Adam(p, weight_decay=-0.1), "weight_decay"),
    ],
    ids=["sgd_lr_zero", "sgd_lr_negative", "sgd_lr_nan", "sgd_lr_inf", "momentum", "dampening_high",
         "dampening_negative", "sgd_weight_decay", "nesterov_without_momentum", "nesterov_with_dampening",
         "adam_lr", "beta1", "beta2", "betas_length", "betas_scalar", "eps", "adam_weight_decay"],
)
def test_optimizers_reject_bad_hyperparameters_naming_them(make: Callable, name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name}: "):
        make(make_parameters())


@pytest.mark.parametrize("optimizer_class", [SGD, Adam])
def test_optimizers_reject_empty_foreign_or_mixed_dtype_parameters(optimizer_class: type) -> None:
    with pytest.raises(ValueError, match="^params: "):
        optimizer_class([])
    with pytest.raises(TypeError, match=r"^params\[1\]: "):
        optimizer_class([Parameter(np.zeros(2)), np.zeros(2)])
    with pytest.raises(TypeError, match="^params: expected one dtype"):
        optimizer_class([Parameter(np.zeros(2)), Parameter(np.zeros(2, dtype=np.float32))])


@pytest.mark.parametrize("optimizer_class", [SGD, Adam])
def test_load_state_dict_rejects_missing_unexpected_and_misshapen_state(optimizer_class: type) -> None:
    optimizer = optimizer_class(make_parameters())
    state = optimizer.state_dict()
    missing = dict(state)
    missing.pop("steps")
    with pytest.raises(ValueError, match=r"^state: missing keys \['steps'\]"):
        optimizer.load_state_dict(missing)
    with pytest.raises(ValueError, match=r"^state: .*unexpected keys \['extra'\]"):
        optimizer.load_state_dict({**state, "extra": np.zeros(1)})
    array_name = "exp_avg" if optimizer_class is Adam else "momentum_buffer"
    with pytest.raises(ValueError, match=rf"^state\['{array_name}'\]: expected shape"):
        optimizer.load_state_dict({**state, array_name: np.zeros(3)})


@pytest.mark.parametrize("change", [{"momentum": 0.0}, {"dampening": 0.5}])
def test_nesterov_sgd_refuses_a_state_without_momentum_or_with_dampening_and_changes_nothing(change: dict) -> None:
    optimizer = SGD(make_parameters(), lr=0.1, momentum=0.9, nesterov=True)
    before = optimizer.state_dict()
    state = {**before, **{name: np.array(value) for name, value in change.items()}}
    with pytest.raises(ValueError, match=r"^nesterov: requires momentum > 0 and dampening = 0"):
        optimizer.load_state_dict(state)
    assert (optimizer.momentum, optimizer.dampening) == (0.9, 0.0)
    for name, value in optimizer.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


# -- the subnormal flush ----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_flushes_subnormal_state_to_zero_and_leaves_the_parameters_as_unflushed(
    dtype: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries whose gradient is 0 and whose state sits in the subnormal range are set to 0 every
    50 steps; the normal entries and every parameter come out bit-identical to an optimizer that
    never flushes (the documented claim: a subnormal moment moves no parameter)."""
    from npvae import kernels

    tiny = np.finfo(dtype).tiny
    runs = {}
    for name, interval in (("flushed", kernels.FLUSH_INTERVAL), ("unflushed", 10**9)):
        monkeypatch.setattr(kernels, "FLUSH_INTERVAL", interval)
        rng = np.random.default_rng(6)
        parameter = Parameter(rng.standard_normal(40).astype(dtype))
        optimizer = Adam([parameter], lr=1e-2)
        optimizer.exp_avg[:20] = tiny * rng.uniform(0.01, 0.9, 20)  # subnormal, where grad stays 0
        optimizer.exp_avg_sq[:20] = tiny * rng.uniform(0.01, 0.9, 20)
        states = {}
        for step in range(1, 121):  # flushes after steps 50 and 100; later steps use the zeroed state
            parameter.grad[:20] = 0.0
            parameter.grad[20:] = np.cos(step + np.arange(20))
            optimizer.step()
            if step in (49, 50):
                states[step] = optimizer.exp_avg.copy(), optimizer.exp_avg_sq.copy()
        runs[name] = parameter.value.copy(), states
    (flushed, flushed_states), (unflushed, unflushed_states) = runs["flushed"], runs["unflushed"]
    np.testing.assert_array_equal(flushed, unflushed)  # parameters: bit-identical after 120 steps
    for state in flushed_states[49]:  # not yet: the flush comes at the end of step 50
        assert np.all(state[:20] != 0)
    for state, reference in zip(flushed_states[50], unflushed_states[50]):
        assert np.all(state[:20] == 0) and np.all(reference[:20] != 0)
        np.testing.assert_array_equal(state[20:], reference[20:])


# -- duplicate parameters (issue 11 §5) ---------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda params: Adam(params, lr=0.1), lambda params: SGD(params, lr=0.1)])
def test_optimizers_refuse_the_same_parameter_twice(make: Callable) -> None:
    """Adam([p, p]) used to step p twice per step; as torch does, a repeated parameter is refused."""
    first, second = Parameter(np.ones(3)), Parameter(np.ones(2))
    with pytest.raises(ValueError, match=r"^params\[2\]: the same Parameter as params\[0\]"):
        make([first, second, first])
    make([first, second])  # distinct parameters are fine
