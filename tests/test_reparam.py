"""Tests for npvae.reparam: z = mu + exp(logvar / 2) * eps and its backward.

Gradients are checked with ``npvae.gradcheck`` in float64 on L = sum(z * w) for a fixed random
w, with eps given: central differences with step h = 1e-6, an entry passing when
|analytic - numeric| <= 1e-7 + 1e-5 * max(|analytic|, |numeric|) (the library's defaults,
rtol = 1e-5, atol = 1e-7).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import float_arrays, same_shape_arrays, seeds, shapes
from hypothesis import given

from npvae import Reparameterization, gradcheck

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


@given(arrays=same_shape_arrays(4))
def test_reparameterization_gradients_match_finite_differences(arrays: tuple[np.ndarray, ...]) -> None:
    mu, logvar, eps, weights = arrays
    reparam = Reparameterization()

    def fun(mu: np.ndarray, logvar: np.ndarray) -> tuple[float, list[np.ndarray]]:
        z = reparam.forward(mu, logvar, eps=eps)
        value = float(np.sum(z * weights))
        grad_mu, grad_logvar = reparam.backward(weights)
        return value, [grad_mu.copy(), grad_logvar.copy()]

    report = gradcheck(fun, [mu, logvar], names=["mu", "logvar"])
    assert report.passed, str(report)


@given(arrays=same_shape_arrays(4))
def test_reparameterization_implements_the_documented_formulas(arrays: tuple[np.ndarray, ...]) -> None:
    mu, logvar, eps, grad_z = arrays
    reparam = Reparameterization()
    sigma = np.exp(logvar / 2)
    np.testing.assert_allclose(reparam.forward(mu, logvar, eps=eps), mu + sigma * eps, rtol=1e-14, atol=1e-14)
    grad_mu, grad_logvar = reparam.backward(grad_z)
    np.testing.assert_array_equal(grad_mu, grad_z)
    np.testing.assert_allclose(grad_logvar, grad_z * eps * sigma / 2, rtol=1e-14, atol=1e-300)


@given(arrays=same_shape_arrays(2), seed=seeds)
def test_reparameterization_with_rng_draws_standard_normal_noise_from_it(
    arrays: tuple[np.ndarray, np.ndarray], seed: int
) -> None:
    mu, logvar = arrays
    z = Reparameterization().forward(mu, logvar, rng=np.random.default_rng(seed))
    eps = np.random.default_rng(seed).standard_normal(mu.shape)
    np.testing.assert_allclose(z, mu + np.exp(logvar / 2) * eps, rtol=1e-14, atol=1e-14)


def test_reparameterized_samples_have_the_requested_mean_and_variance() -> None:
    mu, logvar = np.full((100_000, 2), [1.5, -2.0]), np.full((100_000, 2), [np.log(0.25), np.log(4.0)])
    z = Reparameterization().forward(mu, logvar, rng=np.random.default_rng(0))
    np.testing.assert_allclose(z.mean(axis=0), [1.5, -2.0], atol=0.02)
    np.testing.assert_allclose(z.var(axis=0), [0.25, 4.0], rtol=0.02)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(shape=shapes(), seed=seeds)
def test_reparameterization_keeps_dtype_and_shape_with_eps_or_rng(dtype: type, shape: tuple[int, int],
                                                                  seed: int) -> None:
    mu, logvar = np.zeros(shape, dtype=dtype), np.zeros(shape, dtype=dtype)
    for noise in ({"eps": np.ones(shape, dtype=dtype)}, {"rng": np.random.default_rng(seed)}):
        reparam = Reparameterization()
        z = reparam.forward(mu, logvar, **noise)
        grad_mu, grad_logvar = reparam.backward(np.ones(shape, dtype=dtype))
        assert all(a.dtype == dtype and a.shape == shape for a in (z, grad_mu, grad_logvar))


def test_reparameterization_backward_before_forward_raises() -> None:
    with pytest.raises(RuntimeError, match="before forward"):
        Reparameterization().backward(np.ones((1, 2)))


@pytest.mark.parametrize("noise", [{}, {"eps": np.zeros((2, 3)), "rng": np.random.default_rng(0)}],
                         ids=["neither", "both"])
def test_reparameterization_needs_exactly_one_of_eps_and_rng(noise: dict) -> None:
    with pytest.raises(ValueError, match="^eps, rng: expected exactly one"):
        Reparameterization().forward(np.zeros((2, 3)), np.zeros((2, 3)), **noise)


@pytest.mark.parametrize(
    "mu, logvar, eps, error, name",
    [
        (np.zeros((2, 3), dtype=np.int64), np.zeros((2, 3)), np.zeros((2, 3)), TypeError, "mu"),
        (np.zeros((2, 3)), [[0.0] * 3] * 2, np.zeros((2, 3)), TypeError, "logvar"),
        (np.zeros((2, 3)), np.zeros((2, 4)), np.zeros((2, 3)), ValueError, "logvar"),
        (np.zeros((2, 3)), np.zeros((2, 3), dtype=np.float32), np.zeros((2, 3)), ValueError, "logvar"),
        (np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((3, 3)), ValueError, "eps"),
        (np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 3), dtype=np.float32), ValueError, "eps"),
    ],
    ids=["int_mu", "list_logvar", "logvar_shape", "logvar_dtype", "eps_shape", "eps_dtype"],
)
def test_reparameterization_rejects_bad_input_naming_the_argument(mu, logvar, eps, error: type, name: str) -> None:
    with pytest.raises(error, match=f"^{name}: "):
        Reparameterization().forward(mu, logvar, eps=eps)


def test_reparameterization_rejects_a_non_generator_rng() -> None:
    with pytest.raises(TypeError, match="^rng: "):
        Reparameterization().forward(np.zeros((1, 2)), np.zeros((1, 2)), rng=42)


@given(mu=float_arrays())
def test_reparameterization_with_zero_noise_returns_mu(mu: np.ndarray) -> None:
    np.testing.assert_array_equal(Reparameterization().forward(mu, np.zeros_like(mu), eps=np.zeros_like(mu)), mu)


def test_the_noise_each_entry_gets_does_not_depend_on_the_memory_order_of_mu() -> None:
    rng = np.random.default_rng(8)
    mu, logvar = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    z_row_major = Reparameterization().forward(mu, logvar, rng=np.random.default_rng(9))
    z_column_major = Reparameterization().forward(
        np.asfortranarray(mu), np.asfortranarray(logvar), rng=np.random.default_rng(9)
    )
    np.testing.assert_array_equal(z_column_major, z_row_major)
