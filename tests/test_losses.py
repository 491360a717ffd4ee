"""Tests for npvae.losses: values against independent formulas, gradients, stability, input checks.

Gradients are checked with ``npvae.gradcheck`` in float64 on the sum of the per-example values:
central differences with step h = 1e-6, an entry passing when
|analytic - numeric| <= 1e-7 + 1e-5 * max(|analytic|, |numeric|) (the library's defaults,
rtol = 1e-5, atol = 1e-7). Value ranges are kept moderate (|logits| <= 12, |logvar| <= 2) so
that the rounding error of the summed value, about 1e-16 * |value| / h, stays below atol.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from conftest import float_arrays, same_shape_arrays, shapes, unit_interval_arrays
from hypothesis import given
from hypothesis import strategies as st

from npvae import bce_with_logits, gaussian_kl, gaussian_nll, gradcheck, squared_error

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

LOG_2PI = math.log(2 * math.pi)


# -- gradients -------------------------------------------------------------------------------
@pytest.mark.usefixtures("kernel_set")
@given(data=st.data())
def test_bce_with_logits_gradient_matches_finite_differences(data: st.DataObject) -> None:
    logits = data.draw(float_arrays(low=-12.0, high=12.0))
    target = data.draw(unit_interval_arrays(logits.shape))

    def fun(logits: np.ndarray) -> tuple[float, list[np.ndarray]]:
        value, grad_logits = bce_with_logits(logits, target)
        return value.sum(), [grad_logits]

    report = gradcheck(fun, [logits], names=["logits"])
    assert report.passed, str(report)


@pytest.mark.usefixtures("kernel_set")
@given(arrays=same_shape_arrays(2))
def test_squared_error_gradient_matches_finite_differences(arrays: tuple[np.ndarray, np.ndarray]) -> None:
    prediction, target = arrays

    def fun(prediction: np.ndarray) -> tuple[float, list[np.ndarray]]:
        value, grad_prediction = squared_error(prediction, target)
        return value.sum(), [grad_prediction]

    report = gradcheck(fun, [prediction], names=["prediction"])
    assert report.passed, str(report)


@pytest.mark.usefixtures("kernel_set")
@given(arrays=same_shape_arrays(2, low=-2.0, high=2.0), data=st.data())
def test_gaussian_nll_gradients_match_finite_differences(
    arrays: tuple[np.ndarray, np.ndarray], data: st.DataObject
) -> None:
    target, mean = arrays
    logvar = data.draw(float_arrays(target.shape, low=-2.0, high=2.0))

    def fun(mean: np.ndarray, logvar: np.ndarray) -> tuple[float, list[np.ndarray]]:
        value, grads = gaussian_nll(target, mean, logvar)
        return value.sum(), list(grads)

    report = gradcheck(fun, [mean, logvar], names=["mean", "logvar"])
    assert report.passed, str(report)


@pytest.mark.usefixtures("kernel_set")
@given(arrays=same_shape_arrays(2))
def test_gaussian_kl_gradients_match_finite_differences(arrays: tuple[np.ndarray, np.ndarray]) -> None:
    def fun(mu: np.ndarray, logvar: np.ndarray) -> tuple[float, list[np.ndarray]]:
        value, grads = gaussian_kl(mu, logvar)
        return value.sum(), list(grads)

    report = gradcheck(fun, list(arrays), names=["mu", "logvar"])
    assert report.passed, str(report)


# -- values against independent formulas -----------------------------------------------------
@given(data=st.data())
def test_bce_with_logits_equals_the_cross_entropy_of_the_sigmoid(data: st.DataObject) -> None:
    logits = data.draw(float_arrays(low=-15.0, high=15.0))
    target = data.draw(unit_interval_arrays(logits.shape))
    probs = 1.0 / (1.0 + np.exp(-logits))
    expected = -(target * np.log(probs) + (1 - target) * np.log1p(-probs)).sum(axis=1)
    value, grad_logits = bce_with_logits(logits, target)
    np.testing.assert_allclose(value, expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(grad_logits, probs - target, rtol=1e-12, atol=1e-15)


@given(arrays=same_shape_arrays(2))
def test_squared_error_equals_the_sum_of_squares(arrays: tuple[np.ndarray, np.ndarray]) -> None:
    prediction, target = arrays
    value, grad_prediction = squared_error(prediction, target)
    np.testing.assert_allclose(value, ((prediction - target) ** 2).sum(axis=1), rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(grad_prediction, 2 * (prediction - target), rtol=1e-15, atol=0)


@given(arrays=same_shape_arrays(3, low=-3.0, high=3.0))
def test_gaussian_nll_equals_minus_the_normal_log_density(arrays: tuple[np.ndarray, ...]) -> None:
    target, mean, logvar = arrays
    expected = -scipy.stats.norm.logpdf(target, loc=mean, scale=np.exp(logvar / 2)).sum(axis=1)
    value, _ = gaussian_nll(target, mean, logvar)
    np.testing.assert_allclose(value, expected, rtol=1e-12, atol=1e-12)


@given(arrays=same_shape_arrays(2))
def test_gaussian_nll_with_unit_variance_is_half_the_squared_error_plus_a_constant(
    arrays: tuple[np.ndarray, np.ndarray],
) -> None:
    target, mean = arrays
    value, (grad_mean, grad_logvar) = gaussian_nll(target, mean, np.zeros_like(mean))
    squared, grad_squared = squared_error(mean, target)
    np.testing.assert_allclose(value, 0.5 * squared + target.shape[1] / 2 * LOG_2PI, rtol=1e-13)
    np.testing.assert_allclose(grad_mean, 0.5 * grad_squared, rtol=1e-15, atol=0)
    np.testing.assert_allclose(grad_logvar, 0.5 * (1 - (target - mean) ** 2), rtol=1e-13, atol=1e-15)


@given(arrays=same_shape_arrays(2))
def test_gaussian_kl_equals_the_closed_form(arrays: tuple[np.ndarray, np.ndarray]) -> None:
    mu, logvar = arrays
    expected = -0.5 * (1 + logvar - mu**2 - np.exp(logvar)).sum(axis=1)
    value, (grad_mu, grad_logvar) = gaussian_kl(mu, logvar)
    np.testing.assert_allclose(value, expected, rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(grad_mu, mu)
    np.testing.assert_allclose(grad_logvar, np.expm1(logvar) / 2, rtol=1e-13, atol=1e-300)


def test_gaussian_kl_matches_a_monte_carlo_estimate() -> None:
    rng = np.random.default_rng(0)
    mu, logvar = np.array([[0.5, -1.0]]), np.array([[-0.7, 0.4]])
    z = mu + np.exp(logvar / 2) * rng.standard_normal((200_000, 2))
    log_q = scipy.stats.norm.logpdf(z, mu, np.exp(logvar / 2)).sum(axis=1)
    log_p = scipy.stats.norm.logpdf(z).sum(axis=1)
    estimate = log_q - log_p
    value, _ = gaussian_kl(mu, logvar)
    assert abs(value[0] - estimate.mean()) < 4 * estimate.std() / np.sqrt(estimate.size)


# -- properties ------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data())
def test_gaussian_kl_is_non_negative(dtype: type, data: st.DataObject) -> None:
    mu, logvar = data.draw(same_shape_arrays(2, low=-20.0, high=20.0, dtype=dtype))
    value, _ = gaussian_kl(mu, logvar)
    assert np.all(value >= 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(shape=shapes())
def test_gaussian_kl_is_exactly_zero_at_the_prior(dtype: type, shape: tuple[int, int]) -> None:
    value, (grad_mu, grad_logvar) = gaussian_kl(np.zeros(shape, dtype=dtype), np.zeros(shape, dtype=dtype))
    assert np.all(value == 0) and np.all(grad_mu == 0) and np.all(grad_logvar == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data(), which=st.sampled_from(["mu", "logvar"]), magnitude=st.floats(1e-3, 10.0),
       sign=st.sampled_from([-1.0, 1.0]))
def test_gaussian_kl_is_positive_when_one_entry_is_off_the_prior(
    dtype: type, data: st.DataObject, which: str, magnitude: float, sign: float
) -> None:
    shape = data.draw(shapes())
    index = (data.draw(st.integers(0, shape[0] - 1)), data.draw(st.integers(0, shape[1] - 1)))
    mu, logvar = np.zeros(shape, dtype=dtype), np.zeros(shape, dtype=dtype)
    (mu if which == "mu" else logvar)[index] = sign * magnitude
    value, _ = gaussian_kl(mu, logvar)
    assert value[index[0]] > 0
    assert np.all(np.delete(value, index[0]) == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_with_huge_logits_is_finite_and_equals_the_asymptote(dtype: type) -> None:
    logits = np.array([[1e4, -1e4], [1e4, -1e4]], dtype=dtype)
    target = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value, grad_logits = bce_with_logits(logits, target)
    # wrong sign: softplus(l) - t l = |l| exactly; right sign: 0
    np.testing.assert_array_equal(value, np.array([2e4, 0.0], dtype=dtype))
    np.testing.assert_array_equal(grad_logits, np.array([[1.0, -1.0], [0.0, 0.0]], dtype=dtype))


@given(logits=float_arrays(low=-1e4, high=1e4))
def test_bce_with_logits_is_finite_and_non_negative_for_binary_targets(logits: np.ndarray) -> None:
    target = (logits < 0.5).astype(np.float64)
    value, grad_logits = bce_with_logits(logits, target)
    assert np.all(np.isfinite(value)) and np.all(value >= 0)
    assert np.all(np.abs(grad_logits) <= 1)


# -- dtypes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(shape=shapes())
def test_every_loss_keeps_the_input_dtype_and_shapes(dtype: type, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    a, b, c = (rng.uniform(0, 1, shape).astype(dtype) for _ in range(3))
    results = [
        (bce_with_logits(a, b)[0], [bce_with_logits(a, b)[1]]),
        (squared_error(a, b)[0], [squared_error(a, b)[1]]),
        (gaussian_nll(a, b, c)[0], list(gaussian_nll(a, b, c)[1])),
        (gaussian_kl(a, b)[0], list(gaussian_kl(a, b)[1])),
    ]
    for value, grads in results:
        assert value.dtype == dtype and value.shape == (shape[0],)
        assert all(grad.dtype == dtype and grad.shape == shape for grad in grads)


# -- bad input -------------------------------------------------------------------------------
LOSSES = {
    "bce_with_logits": (lambda a, b, c: bce_with_logits(a, b), ["logits", "target"]),
    "squared_error": (lambda a, b, c: squared_error(a, b), ["prediction", "target"]),
    "gaussian_nll": (gaussian_nll, ["target", "mean", "logvar"]),
    "gaussian_kl": (lambda a, b, c: gaussian_kl(a, b), ["mu", "logvar"]),
}
ARGUMENTS = [(loss, position, name) for loss, (_, names) in LOSSES.items() for position, name in enumerate(names)]
ARGUMENT_IDS = [f"{loss}-{name}" for loss, _, name in ARGUMENTS]


def valid_arguments() -> list[np.ndarray]:
    return [np.full((2, 3), 0.5) for _ in range(3)]


@pytest.mark.parametrize("loss, position, name", ARGUMENTS, ids=ARGUMENT_IDS)
@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_losses_reject_non_finite_input_naming_the_argument(loss: str, position: int, name: str,
                                                            bad_value: float) -> None:
    arguments = valid_arguments()
    arguments[position][1, 2] = bad_value
    with pytest.raises(ValueError, match=f"^{name}: expected finite values"):
        LOSSES[loss][0](*arguments)


@pytest.mark.parametrize("loss, position, name", ARGUMENTS, ids=ARGUMENT_IDS)
@pytest.mark.parametrize("shape", [(2, 4), (3, 3), (6,), (2, 3, 1)], ids=["width", "batch", "1d", "3d"])
def test_losses_reject_a_wrong_shape_naming_the_argument(loss: str, position: int, name: str,
                                                         shape: tuple[int, ...]) -> None:
    arguments = valid_arguments()
    arguments[position] = np.full(shape, 0.5)
    # a shape that disagrees with the first argument's is reported naming both
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        LOSSES[loss][0](*arguments)


@pytest.mark.parametrize("loss, position, name", [a for a in ARGUMENTS if a[1] > 0],
                         ids=[i for a, i in zip(ARGUMENTS, ARGUMENT_IDS) if a[1] > 0])
def test_losses_reject_mismatched_dtypes_naming_the_argument(loss: str, position: int, name: str) -> None:
    arguments = valid_arguments()
    arguments[position] = arguments[position].astype(np.float32)
    with pytest.raises(ValueError, match=f"^{name}: expected dtype float64"):
        LOSSES[loss][0](*arguments)


@pytest.mark.parametrize("loss, position, name", ARGUMENTS, ids=ARGUMENT_IDS)
@pytest.mark.parametrize("bad", [np.ones((2, 3), dtype=np.int64), np.ones((2, 3), dtype=bool),
                                 [[0.5, 0.5, 0.5]] * 2], ids=["int64", "bool", "list"])
def test_losses_reject_non_float_arrays_with_type_error_naming_the_argument(loss: str, position: int, name: str,
                                                                            bad: object) -> None:
    arguments = valid_arguments()
    arguments[position] = bad
    with pytest.raises(TypeError, match=f"^{name}: "):
        LOSSES[loss][0](*arguments)


@pytest.mark.parametrize("bad_value", [-1e-9, 1.0 + 1e-9, -3.0, 255.0])
def test_bce_rejects_targets_outside_the_unit_interval(bad_value: float) -> None:
    target = np.full((2, 3), 0.5)
    target[0, 1] = bad_value
    with pytest.raises(ValueError, match=r"^target: expected values in \[0, 1\]"):
        bce_with_logits(np.zeros((2, 3)), target)


def test_bce_accepts_the_unit_interval_endpoints() -> None:
    value, _ = bce_with_logits(np.zeros((1, 2)), np.array([[0.0, 1.0]]))
    np.testing.assert_allclose(value, [2 * np.log(2)], rtol=1e-15)
