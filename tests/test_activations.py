"""Tests for npvae.activations: values, gradients, dtypes, stability, input checks.

Gradients are checked with ``npvae.gradcheck_module`` in float64: central differences with step
h = 1e-6, an entry passing when |analytic - numeric| <= 1e-7 + 1e-5 * max(|analytic|, |numeric|)
(the library's defaults, rtol = 1e-5, atol = 1e-7). Inputs of ReLU and LeakyReLU keep
|x| >= 1e-3 so that no perturbation crosses the kink at 0.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
from conftest import arrays_away_from_zero, float_arrays, leaky_slopes, seeds, shapes
from hypothesis import given
from hypothesis import strategies as st

from npvae import Identity, LeakyReLU, ReLU, Sigmoid, Tanh, gradcheck_module
from npvae.activations import ACTIVATIONS, make_activation

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

ALL_ACTIVATIONS = [Identity, ReLU, lambda: LeakyReLU(0.2), Sigmoid, Tanh]
ACTIVATION_IDS = ["identity", "relu", "leaky_relu", "sigmoid", "tanh"]


def reference(module: object, x: np.ndarray) -> np.ndarray:
    """The activation's formula, written independently of npvae."""
    if isinstance(module, LeakyReLU):
        return np.where(x > 0, x, module.negative_slope * x)
    if isinstance(module, ReLU):
        return np.where(x > 0, x, 0.0)
    if isinstance(module, Sigmoid):
        return 1.0 / (1.0 + np.exp(-x))
    if isinstance(module, Tanh):
        return np.tanh(x)
    return x


# -- gradients -------------------------------------------------------------------------------
@pytest.mark.usefixtures("kernel_set")
@given(x=arrays_away_from_zero(), seed=seeds)
def test_relu_gradients_match_finite_differences_away_from_the_kink(x: np.ndarray, seed: int) -> None:
    report = gradcheck_module(ReLU(), x, rng=np.random.default_rng(seed))
    assert report.passed, str(report)


@pytest.mark.usefixtures("kernel_set")
@given(x=arrays_away_from_zero(), slope=leaky_slopes, seed=seeds)
def test_leaky_relu_gradients_match_finite_differences_for_every_slope(
    x: np.ndarray, slope: float, seed: int
) -> None:
    report = gradcheck_module(LeakyReLU(slope), x, rng=np.random.default_rng(seed))
    assert report.passed, str(report)


@pytest.mark.usefixtures("kernel_set")
@given(x=arrays_away_from_zero(high=1e-2), slope=st.none() | leaky_slopes, seed=seeds)
def test_relu_and_leaky_relu_gradients_match_just_beside_the_kink(x: np.ndarray, slope: float | None,
                                                                  seed: int) -> None:
    module = ReLU() if slope is None else LeakyReLU(slope)
    report = gradcheck_module(module, x, rng=np.random.default_rng(seed))
    assert report.passed, str(report)


@pytest.mark.usefixtures("kernel_set")
@pytest.mark.parametrize("module_class", [Identity, Sigmoid, Tanh], ids=["identity", "sigmoid", "tanh"])
@given(x=float_arrays(low=-6.0, high=6.0), seed=seeds)
def test_smooth_activation_gradients_match_finite_differences(
    module_class: type, x: np.ndarray, seed: int
) -> None:
    report = gradcheck_module(module_class(), x, rng=np.random.default_rng(seed))
    assert report.passed, str(report)


@pytest.mark.usefixtures("kernel_set")
@given(magnitude=float_arrays(low=20.0, high=40.0), sign=st.sampled_from([-1.0, 1.0]), seed=seeds)
def test_sigmoid_gradient_matches_at_large_inputs(magnitude: np.ndarray, sign: float, seed: int) -> None:
    report = gradcheck_module(Sigmoid(), sign * magnitude, rng=np.random.default_rng(seed))
    assert report.passed, str(report)


@given(magnitude=st.floats(20.0, 40.0), seed=seeds)
def test_sigmoid_gradient_at_a_large_negative_input_is_relatively_exact(magnitude: float, seed: int) -> None:
    # the default atol (1e-7) alone would accept any gradient below it (here < 3e-9), even 0;
    # with atol = 0 the tiny gradient must match to rtol = 1e-5 in relative terms. One entry
    # per check: in a sum with larger terms, the rounding of the sum would swamp its difference.
    report = gradcheck_module(Sigmoid(), np.array([[-magnitude]]), rng=np.random.default_rng(seed), atol=0.0)
    assert report.passed, str(report)


@given(magnitude=float_arrays(low=20.0, high=40.0))
def test_sigmoid_gradient_at_large_negative_inputs_matches_the_exact_derivative(magnitude: np.ndarray) -> None:
    sigmoid = Sigmoid()
    sigmoid.forward(-magnitude)
    exact = scipy.special.expit(-magnitude) * scipy.special.expit(magnitude)
    np.testing.assert_allclose(sigmoid.backward(np.ones_like(magnitude)), exact, rtol=1e-13, atol=0)


@given(x=float_arrays(low=20.0, high=40.0))
def test_sigmoid_gradient_at_large_positive_inputs_is_within_a_rounding_error(x: np.ndarray) -> None:
    sigmoid = Sigmoid()
    sigmoid.forward(x)
    grad_x = sigmoid.backward(np.ones_like(x))
    exact = scipy.special.expit(x) * scipy.special.expit(-x)
    np.testing.assert_allclose(grad_x, exact, rtol=0, atol=2 * np.finfo(np.float64).eps)


# -- values ----------------------------------------------------------------------------------
@pytest.mark.parametrize("make", ALL_ACTIVATIONS, ids=ACTIVATION_IDS)
@given(x=float_arrays(low=-30.0, high=30.0))
def test_forward_matches_the_formula(make: type, x: np.ndarray) -> None:
    module = make()
    np.testing.assert_allclose(module.forward(x), reference(module, x), rtol=1e-14, atol=1e-300)


@pytest.mark.parametrize("make", ALL_ACTIVATIONS, ids=ACTIVATION_IDS)
@given(x=arrays_away_from_zero(high=30.0), data=st.data())
def test_backward_matches_the_formula(make: type, x: np.ndarray, data: st.DataObject) -> None:
    module = make()
    grad_out = data.draw(float_arrays(x.shape))
    y = reference(module, x)
    derivative = {
        Identity: np.ones_like(x),
        ReLU: (x > 0).astype(float),
        LeakyReLU: np.where(x > 0, 1.0, 0.2),
        Sigmoid: y * (1.0 - y),
        Tanh: 1.0 - y**2,
    }[type(module)]
    module.forward(x)
    np.testing.assert_allclose(module.backward(grad_out), grad_out * derivative, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(x=st.data())
def test_sigmoid_output_is_in_the_unit_interval(dtype: type, x: st.DataObject) -> None:
    finfo = np.finfo(dtype)
    values = x.draw(float_arrays(low=float(finfo.min), high=float(finfo.max), dtype=dtype))
    y = Sigmoid().forward(values)
    assert np.all((y >= 0) & (y <= 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_its_gradient_stay_finite_without_warnings_at_huge_inputs(dtype: type) -> None:
    x = np.array([[-1e4, -100.0, 0.0, 100.0, 1e4]], dtype=dtype)
    sigmoid = Sigmoid()
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = sigmoid.forward(x)
        grad_x = sigmoid.backward(np.ones_like(x))
    assert y.dtype == dtype
    np.testing.assert_array_equal(y[:, [0, 2, 3, 4]], np.array([[0.0, 0.5, 1.0, 1.0]], dtype=dtype))
    assert 0.0 <= y[0, 1] < 1e-37
    assert np.all(np.isfinite(grad_x)) and grad_x[0, 2] == 0.25


@given(x=float_arrays(low=-50.0, high=50.0))
def test_tanh_output_is_in_minus_one_one_and_relu_output_is_non_negative(x: np.ndarray) -> None:
    assert np.all(np.abs(Tanh().forward(x)) <= 1)
    assert np.all(ReLU().forward(x) >= 0)


def test_relu_and_leaky_relu_use_the_zero_side_slope_at_exactly_zero() -> None:
    x = np.zeros((1, 3))
    relu, leaky = ReLU(), LeakyReLU(0.3)
    relu.forward(x)
    leaky.forward(x)
    np.testing.assert_array_equal(relu.backward(np.ones_like(x)), np.zeros_like(x))
    np.testing.assert_array_equal(leaky.backward(np.ones_like(x)), np.full_like(x, 0.3))


# -- dtypes, shapes, buffers -----------------------------------------------------------------
@pytest.mark.parametrize("make", ALL_ACTIVATIONS, ids=ACTIVATION_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(shape=shapes())
def test_forward_and_backward_keep_shape_and_dtype(make: type, dtype: type, shape: tuple[int, int]) -> None:
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    module = make()
    y = module.forward(x)
    grad_x = module.backward(np.ones(shape, dtype=dtype))
    assert y.shape == shape and y.dtype == dtype
    assert grad_x.shape == shape and grad_x.dtype == dtype


@pytest.mark.parametrize("make", ALL_ACTIVATIONS, ids=ACTIVATION_IDS)
def test_backward_without_input_grad_returns_none(make: type) -> None:
    module = make()
    module.forward(np.ones((2, 3)))
    assert module.backward(np.ones((2, 3)), input_grad=False) is None


def test_activations_have_no_parameters() -> None:
    for make in ALL_ACTIVATIONS:
        assert make().parameters() == []


# -- construction and bad input --------------------------------------------------------------
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_make_activation_builds_each_named_activation(name: str) -> None:
    expected = {"relu": ReLU, "leaky_relu": LeakyReLU, "sigmoid": Sigmoid, "tanh": Tanh, "identity": Identity}
    assert type(make_activation(name)) is expected[name]


def test_make_activation_passes_the_slope_to_leaky_relu() -> None:
    assert make_activation("leaky_relu", negative_slope=0.05).negative_slope == 0.05


def test_make_activation_rejects_an_unknown_name() -> None:
    with pytest.raises(ValueError, match="activation: .*'swish'"):
        make_activation("swish")


@pytest.mark.parametrize("slope", [-0.1, 1.0, 2.0, float("nan")])
def test_leaky_relu_rejects_a_slope_outside_zero_one(slope: float) -> None:
    with pytest.raises(ValueError, match="negative_slope"):
        LeakyReLU(slope)


@pytest.mark.parametrize("make", ALL_ACTIVATIONS, ids=ACTIVATION_IDS)
@pytest.mark.parametrize("bad", [np.ones((2, 3), dtype=np.int64), [[1.0, 2.0]], np.ones((2, 3), dtype=np.float16)],
                         ids=["int64", "list", "float16"])
def test_forward_rejects_non_float_arrays_naming_x(make: type, bad: object) -> None:
    with pytest.raises(TypeError, match="^x: "):
        make().forward(bad)
