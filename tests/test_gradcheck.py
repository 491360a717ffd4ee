"""Tests for npvae.gradcheck: it passes correct gradients, catches wrong ones and points at them.

Defaults under test: central differences with step h = 1e-6; an entry passes when
|analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|) with rtol = 1e-5, atol = 1e-7.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import arrays_away_from_zero, float_arrays, seeds
from hypothesis import assume, given
from hypothesis import strategies as st

from npvae import Dense, LeakyReLU, Sequential, Tanh, bce_with_logits, gradcheck, gradcheck_module
from npvae.gradcheck import DEFAULT_ATOL, DEFAULT_RTOL, DEFAULT_STEP

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


class LeakyReLUForgettingTheSlope(LeakyReLU):
    """A wrong backward: passes the gradient through unchanged on the negative side too."""

    def backward(self, grad_out: np.ndarray, *, input_grad: bool = True) -> np.ndarray | None:
        return grad_out.copy() if input_grad else None


class DenseForgettingTheBiasGradient(Dense):
    """A wrong backward: the weight and input gradients are right, the bias gradient is never added."""

    def backward(self, grad_out: np.ndarray, *, input_grad: bool = True) -> np.ndarray | None:
        bias_grad = self.bias.grad.copy()
        grad_x = super().backward(grad_out, input_grad=input_grad)
        self.bias.grad[...] = bias_grad
        return grad_x


def cubic(x: np.ndarray) -> tuple[float, list[np.ndarray]]:
    """f(x) = sum(x^3), df/dx = 3 x^2."""
    return float(np.sum(x**3)), [3 * x**2]


def test_defaults_are_the_documented_tolerances() -> None:
    assert (DEFAULT_STEP, DEFAULT_RTOL, DEFAULT_ATOL) == (1e-6, 1e-5, 1e-7)
    report = gradcheck(cubic, [np.ones((2, 2))])
    assert (report.step, report.rtol, report.atol) == (1e-6, 1e-5, 1e-7)


@given(x=float_arrays())
def test_a_correct_gradient_passes(x: np.ndarray) -> None:
    report = gradcheck(cubic, [x], names=["x"])
    assert report.passed, str(report)
    assert [entry.name for entry in report.entries] == ["x"]


@given(x=float_arrays(low=0.5, high=3.0), data=st.data())
def test_a_gradient_wrong_in_one_entry_fails_and_the_worst_index_points_at_it(
    x: np.ndarray, data: st.DataObject
) -> None:
    wrong = (data.draw(st.integers(0, x.shape[0] - 1)), data.draw(st.integers(0, x.shape[1] - 1)))

    def fun(x: np.ndarray) -> tuple[float, list[np.ndarray]]:
        value, (grad,) = cubic(x)
        grad[wrong] *= 1.01
        return value, [grad]

    report = gradcheck(fun, [x], names=["x"])
    (entry,) = report.entries
    assert not report.passed and not entry.passed
    assert entry.worst_index == wrong
    assert entry.analytic == pytest.approx(1.01 * 3 * x[wrong] ** 2, rel=1e-12)
    assert entry.numeric == pytest.approx(3 * x[wrong] ** 2, rel=1e-6)
    assert entry.max_rel_error == pytest.approx(0.01 / 1.01, rel=1e-4)


@given(data=st.data())
def test_a_loss_returning_one_percent_too_much_gradient_fails(data: st.DataObject) -> None:
    logits = data.draw(float_arrays(low=-5.0, high=5.0))
    target = data.draw(float_arrays(logits.shape, low=0.0, high=1.0))
    assume(np.abs(1 / (1 + np.exp(-logits)) - target).max() > 1e-3)  # not a gradient of ~0 everywhere

    def fun(logits: np.ndarray) -> tuple[float, list[np.ndarray]]:
        value, grad = bce_with_logits(logits, target)
        return value.sum(), [grad * 1.01]

    report = gradcheck(fun, [logits], names=["logits"])
    (entry,) = report.entries
    assert not report.passed
    _, true_grad = bce_with_logits(logits, target)
    # the worst entry is one whose wrong analytic value is outside the tolerance
    assert entry.analytic == pytest.approx(1.01 * true_grad[entry.worst_index], rel=1e-12)
    assert abs(entry.analytic - entry.numeric) > DEFAULT_ATOL + DEFAULT_RTOL * abs(entry.analytic)


@given(x=arrays_away_from_zero(), seed=seeds)
def test_a_leaky_relu_backward_that_forgets_the_slope_fails_where_x_is_negative(x: np.ndarray, seed: int) -> None:
    report = gradcheck_module(LeakyReLUForgettingTheSlope(0.2), x, rng=np.random.default_rng(seed))
    if np.all(x > 0):
        assert report.passed, str(report)
        return
    (entry,) = report.entries
    assert entry.name == "input" and not report.passed
    assert x[entry.worst_index] < 0
    assert entry.numeric == pytest.approx(0.2 * entry.analytic, rel=1e-6)


def test_a_dense_backward_that_forgets_the_bias_fails_on_the_bias_only() -> None:
    rng = np.random.default_rng(0)
    dense = DenseForgettingTheBiasGradient(3, 4, rng=rng)
    report = gradcheck_module(dense, rng.standard_normal((5, 3)), rng=rng)
    verdicts = {entry.name: entry.passed for entry in report.entries}
    assert verdicts == {"input": True, "weight": True, "bias": False}
    assert not report.passed
    bias_entry = report.entries[2]
    assert bias_entry.analytic == 0.0 and abs(bias_entry.numeric) > 1e-3
    assert "FAIL" in str(report) and "bias" in str(report)


def test_a_wrong_layer_inside_a_sequential_is_caught() -> None:
    rng = np.random.default_rng(1)
    network = Sequential(Dense(3, 4, rng=rng), LeakyReLUForgettingTheSlope(0.2), Dense(4, 2, rng=rng), Tanh())
    x = rng.standard_normal((6, 3))
    assert not gradcheck_module(network, x, rng=rng).passed
    correct = Sequential(Dense(3, 4, rng=rng), LeakyReLU(0.2), Dense(4, 2, rng=rng), Tanh())
    assert gradcheck_module(correct, x, rng=rng).passed


def test_tolerance_is_atol_plus_rtol_times_the_larger_magnitude() -> None:
    # f(x) = sum(x^2) at x = 0 has gradient 0 and an exact central difference, so the only error
    # is the offset added to the analytic gradient
    def offset_by(delta: float):
        return lambda x: (float(np.sum(x**2)), [2 * x + delta])

    zero = np.zeros((1, 1))
    assert gradcheck(offset_by(0.9 * DEFAULT_ATOL), [zero]).passed
    assert not gradcheck(offset_by(1.1 * DEFAULT_ATOL), [zero]).passed
    assert gradcheck(offset_by(1.1 * DEFAULT_ATOL), [zero], atol=2 * DEFAULT_ATOL).passed
    # at x = 1 the gradient is 2: the relative part allows 1e-7 + 2e-5
    one = np.ones((1, 1))
    assert gradcheck(offset_by(1.9e-5), [one]).passed
    assert not gradcheck(offset_by(2.2e-5), [one]).passed


def test_report_aggregates_its_entries_and_prints_a_table() -> None:
    def fun(a: np.ndarray, b: np.ndarray) -> tuple[float, list[np.ndarray]]:
        return float(np.sum(a**2) + np.sum(b)), [2 * a, np.full_like(b, 2.0)]

    report = gradcheck(fun, [np.ones((2, 2)), np.ones(3)], names=["first", "second"])
    first, second = report.entries
    assert first.passed and not second.passed and not report.passed
    assert report.max_rel_error == max(first.max_rel_error, second.max_rel_error) == pytest.approx(0.5)
    assert report.max_abs_error == pytest.approx(1.0)
    text = str(report)
    assert "first" in text and "second" in text and "FAIL" in text and "ok" in text
    assert "rtol=1e-05" in text


def test_inputs_are_restored_after_the_check() -> None:
    x = np.random.default_rng(2).standard_normal((3, 4))
    before = x.copy()
    gradcheck(cubic, [x])
    np.testing.assert_array_equal(x, before)


def test_gradcheck_module_leaves_the_module_parameters_and_input_unchanged() -> None:
    rng = np.random.default_rng(3)
    dense = Dense(3, 2, rng=rng)
    x = rng.standard_normal((4, 3))
    state, x_before = dense.state_dict(), x.copy()
    gradcheck_module(dense, x, rng=rng)
    np.testing.assert_array_equal(x, x_before)
    for name, value in dense.state_dict().items():
        np.testing.assert_array_equal(value, state[name])


def test_gradcheck_module_names_entries_input_then_parameters() -> None:
    rng = np.random.default_rng(4)
    network = Sequential(Dense(2, 3, rng=rng), Tanh(), Dense(3, 1, rng=rng))
    report = gradcheck_module(network, rng.standard_normal((2, 2)), rng=rng)
    assert [e.name for e in report.entries] == ["input", "0.weight", "0.bias", "2.weight", "2.bias"]


def test_gradcheck_rejects_non_float64_inputs_and_parameters() -> None:
    with pytest.raises(TypeError, match="^x: gradient checks run in float64"):
        gradcheck(cubic, [np.ones((2, 2), dtype=np.float32)], names=["x"])
    with pytest.raises(TypeError, match="^x: "):
        gradcheck_module(Tanh(), np.ones((2, 2), dtype=np.float32), rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="^weight: "):
        gradcheck_module(Dense(2, 2, rng=np.random.default_rng(0), dtype=np.float32), np.ones((2, 2)),
                         rng=np.random.default_rng(0))


def test_gradcheck_rejects_mismatched_names_and_gradients() -> None:
    with pytest.raises(ValueError, match="^names: expected 1 names, got 2"):
        gradcheck(cubic, [np.ones(2)], names=["a", "b"])
    with pytest.raises(ValueError, match="^fun: expected 2 gradients, got 1"):
        gradcheck(lambda a, b: cubic(a), [np.ones(2), np.ones(2)])
    with pytest.raises(ValueError, match="^fun: gradient for input0 has shape"):
        gradcheck(lambda x: (0.0, [np.ones(3)]), [np.ones(2)])
