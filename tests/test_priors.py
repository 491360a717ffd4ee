"""Priors over code indices: MADE's gradients and autoregressive property, both priors as
normalized distributions, their fits, their samples, and bad input.

Gradient checks are float64 central differences at npvae.gradcheck's defaults (rtol 1e-5,
atol 1e-7), on tanh networks (no kinks to step across).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import npvae
from npvae import kernels
from npvae.priors import CategoricalPrior, MADEPrior, MaskedDense, made_degrees, made_masks


def _made(num_latents=3, num_codes=4, hidden_dims=(7, 6), **kwargs) -> MADEPrior:
    return MADEPrior(num_latents, num_codes, hidden_dims, activation="tanh", seed=5, **kwargs)


def _indices(rows=9, num_latents=3, num_codes=4, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, num_codes, (rows, num_latents))


def _all_sequences(num_latents, num_codes) -> np.ndarray:
    return np.array(list(itertools.product(range(num_codes), repeat=num_latents)))


def test_made_gradients_match_finite_differences():
    made, indices = _made(), _indices()
    for layer in made.net.layers:  # non-zero biases, so that their gradients are exercised too
        if isinstance(layer, MaskedDense):
            layer.bias.value[...] = np.random.default_rng(1).normal(0, 0.5, layer.bias.value.shape)
    made.loss_and_grads(indices)
    named = dict(made.named_parameters())
    grads = [p.grad.copy() for p in named.values()]
    report = npvae.gradcheck(lambda *_: (made.nll(indices), grads), [p.value for p in named.values()],
                             names=list(named))
    assert report.passed, str(report)


def test_masked_dense_gradients_match_finite_differences():
    mask = made_masks(made_degrees(3, 2, (5,)))[0]
    layer = MaskedDense(6, 5, mask, rng=np.random.default_rng(0), dtype=np.float64)
    report = npvae.gradcheck_module(layer, np.random.default_rng(1).normal(size=(4, 6)), rng=np.random.default_rng(2))
    assert report.passed, str(report)


class _UnmaskedGradient(MaskedDense):
    """The planted mistake: dL/dW = x^T G without the mask."""

    def backward(self, grad_out, *, input_grad=True, accumulate=True):
        result = super().backward(grad_out, input_grad=input_grad, accumulate=accumulate)
        full = np.empty_like(self.weight.grad)
        kernels.matmul(self._x.T, grad_out, out=full, beta=0.0)
        self.weight.grad[...] = full
        return result


def test_masked_dense_gradient_check_catches_an_unmasked_weight_gradient():
    mask = made_masks(made_degrees(3, 2, (5,)))[0]
    layer = _UnmaskedGradient(6, 5, mask, rng=np.random.default_rng(0), dtype=np.float64)
    report = npvae.gradcheck_module(layer, np.random.default_rng(1).normal(size=(4, 6)), rng=np.random.default_rng(2))
    assert not report.passed


@pytest.mark.parametrize("num_latents, hidden_dims", [(1, (4,)), (2, (3,)), (4, (9, 5)), (5, (12,))])
def test_made_logits_of_position_i_never_depend_on_positions_from_i_on(num_latents, hidden_dims):
    """Change every position >= i: the logits of position i stay bit-identical; change a
    position < i: they move (position i does read its past)."""
    made = MADEPrior(num_latents, 3, hidden_dims, seed=1)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 3, (20, num_latents))
    logits = made.logits(base)
    for position in range(num_latents):
        changed = base.copy()
        changed[:, position:] = (changed[:, position:] + rng.integers(1, 3, changed[:, position:].shape)) % 3
        np.testing.assert_array_equal(made.logits(changed)[:, position], logits[:, position])
        if position > 0:
            past = base.copy()
            past[:, :position] = (past[:, :position] + 1) % 3
            assert not np.array_equal(made.logits(past)[:, position], logits[:, position])


def test_made_masks_follow_the_degrees():
    degrees = made_degrees(3, 2, (4,))
    np.testing.assert_array_equal(degrees[0], [1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(degrees[1], [1, 2, 1, 2])
    into_output = made_masks(degrees)[1]
    assert not into_output[:, :2].any()  # position 1 reads no hidden unit: its marginal is the bias


@pytest.mark.parametrize("make", [lambda: _made(2, 3, (5,)), lambda: CategoricalPrior(2, 3).fit(_indices(10, 2, 3))])
def test_priors_are_normalized_distributions(make):
    prior = make()
    total = np.exp(prior.log_prob(_all_sequences(2, 3))).sum()
    assert total == pytest.approx(1.0, abs=1e-12)


def test_categorical_fit_is_the_smoothed_frequency():
    indices = np.array([[0, 2], [0, 1], [1, 2], [0, 2]])
    prior = CategoricalPrior(2, 3, alpha=0.5).fit(indices)
    expected = np.array([[3.5, 1.5, 0.5], [0.5, 1.5, 3.5]]) / (4 + 1.5)
    np.testing.assert_allclose(np.exp(prior.log_prob(indices)), expected[0, indices[:, 0]] * expected[1, indices[:, 1]])
    assert prior.nll(indices) == pytest.approx(-np.mean(np.log(expected[0, indices[:, 0]] * expected[1, indices[:, 1]])))


@pytest.mark.parametrize("make", [lambda: _made(2, 3, (5,)), lambda: CategoricalPrior(2, 3).fit(_indices(10, 2, 3))])
def test_sample_frequencies_follow_the_probabilities(make):
    prior = make()
    samples = prior.sample(20000, np.random.default_rng(0))
    assert samples.shape == (20000, 2) and samples.dtype == np.int64
    sequences = _all_sequences(2, 3)
    frequencies = np.array([np.mean(np.all(samples == s, axis=1)) for s in sequences])
    # 4 standard errors of a frequency near 0.5 with 20000 draws: 0.014
    np.testing.assert_allclose(frequencies, np.exp(prior.log_prob(sequences)), atol=0.014)


def test_made_learns_a_dependence_the_categorical_prior_cannot_express():
    """k_2 = k_1 and k_3 = (k_1 + 1) mod K, k_1 uniform: the true NLL is log 6 = 1.79 nats;
    the independent prior cannot go below 3 log 6 = 5.38."""
    rng = np.random.default_rng(0)
    first = rng.integers(0, 6, 600)
    indices = np.stack([first, first, (first + 1) % 6], axis=1)
    made = MADEPrior(3, 6, (32,), seed=0)
    losses = made.fit(indices, 40, batch_size=64, lr=1e-2, rng=np.random.default_rng(1))
    categorical = CategoricalPrior(3, 6).fit(indices)
    assert losses[-1] < losses[0]
    assert made.nll(indices) < 2.0 < 5.3 < categorical.nll(indices)


@pytest.mark.parametrize("indices, error, message", [
    (np.array([[0.0, 1.0, 2.0]]), TypeError, r"^indices: expected an integer array"),
    (np.array([[0, 1, 4]]), ValueError, r"^indices: expected values in \[0, 4\)"),
    (np.array([[0, 1]]), ValueError, r"^indices: expected shape \(batch, 3\)"),
    (np.zeros((0, 3), dtype=int), ValueError, r"^indices: expected shape \(batch, 3\) with batch >= 1"),
])
def test_priors_reject_bad_indices(indices, error, message):
    for prior in (_made(), CategoricalPrior(3, 4)):
        with pytest.raises(error, match=message):
            prior.log_prob(indices)
    with pytest.raises(error, match=message):
        CategoricalPrior(3, 4).fit(indices)


def test_priors_reject_bad_arguments():
    with pytest.raises(ValueError, match=r"^num_codes: expected a positive integer"):
        MADEPrior(3, 0)
    with pytest.raises(ValueError, match=r"^alpha: expected a finite value > 0"):
        CategoricalPrior(3, 4, alpha=0)
    with pytest.raises(TypeError, match=r"^rng: expected a numpy.random.Generator"):
        _made().sample(2, rng=0)
    with pytest.raises(ValueError, match=r"^mask: expected shape \(6, 5\)"):
        MaskedDense(6, 5, np.ones((5, 6)), rng=np.random.default_rng(0))
