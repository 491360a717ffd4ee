"""What the AE and the VAE share: the MLP builder, the decoder's likelihood, the checks at the
public door, the per-example loss terms, and the memory a model of given sizes needs."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from .. import _checks
from .. import _kernels as kernels
from ..activations import ACTIVATIONS, make_activation, sigmoid_into
from ..losses import LOG_2PI, bce_with_logits_into, squared_error_into
from ..nn import Dense, Module, Sequential, as_float_dtype

__all__ = ["Autoencoder", "LossTerms", "mlp", "memory_bytes", "OUTPUTS"]

OUTPUTS = ("bernoulli", "gaussian")


class LossTerms(NamedTuple):
    """Per-example terms of the negative ELBO, in nats: loss = recon + beta * kl (kl = 0 for an AE)."""

    loss: np.ndarray
    recon: np.ndarray
    kl: np.ndarray


def memory_bytes(
    input_dim: int, hidden_dims: Sequence[int], latent_dim: int, *, rows: int, dtype: Any = np.float64
) -> int:
    """An upper estimate, in bytes, of the memory a model of these sizes uses on ``rows`` rows at once.

    Counts the parameters with their gradients and Adam's two moments (4 arrays of P entries,
    P = the weights and biases of encoder, head and decoder) and, for ``rows`` rows, every
    layer's work arrays (output, activation output, input gradient, activation gradient, the
    loss's scratch: at most 6 arrays of each layer width). It is what ``fit`` with
    ``batch_size=rows``, ``sample(rows)`` or ``log_likelihood(max_rows=rows)`` (whose decoder
    pass covers ``rows`` rows at a time, whatever k and n) needs beyond the data, within a small
    factor. Python integers: no overflow for any sizes, so a caller can refuse ``hidden_dims=[10**9]``
    before building anything. The work of ``log_likelihood`` is n * k decoder rows.
    """
    input_dim = _checks.positive_int("input_dim", input_dim)
    latent_dim = _checks.positive_int("latent_dim", latent_dim)
    hidden = [_checks.positive_int(f"hidden_dims[{i}]", h) for i, h in enumerate(hidden_dims)]
    rows = _checks.positive_int("rows", rows)
    itemsize = as_float_dtype(dtype).itemsize
    widths = [input_dim, *hidden, 2 * latent_dim]  # encoder and head; the decoder mirrors them
    weights = sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(widths[:-1], widths[1:]))
    decoder = [latent_dim, *reversed(hidden), input_dim]
    weights += sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(decoder[:-1], decoder[1:]))
    work = 6 * rows * (sum(widths) + sum(decoder))
    return (4 * weights + work) * itemsize


def mlp(
    sizes: Sequence[int],
    activation: str,
    negative_slope: float,
    rng: np.random.Generator,
    dtype: np.dtype,
    final_activation: bool,
) -> Sequential:
    """Dense layers sizes[0] -> sizes[1] -> ... with ``activation`` between them.

    Layers followed by a ReLU-family activation get He init, the others Glorot init.
    ``final_activation`` puts the activation after the last layer too.
    """
    relu_family = activation in ("relu", "leaky_relu")
    slope = negative_slope if activation == "leaky_relu" else 0.0
    layers: list[Module] = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        activated = final_activation or index < len(sizes) - 2
        init = "he" if activated and relu_family else "glorot"
        # an activated layer's output feeds, through its activation, the next layer's products:
        # column-major is faster there (see Dense); the other layers (a decoder's output, an
        # AE's code) keep NumPy's row-major order, the order of the data they meet in the loss
        order = "F" if activated else "C"
        layers.append(Dense(fan_in, fan_out, rng=rng, init=init, negative_slope=slope, dtype=dtype, order=order))
        if activated:
            layers.append(make_activation(activation, negative_slope))
    return Sequential(*layers)


class Autoencoder(Module):
    """Base of AE and VAE: configuration, decoder likelihood, and checks at the public door.

    The decoder outputs, per pixel, a logit (output="bernoulli": p(x|z) = Bernoulli(sigmoid(l)))
    or a mean (output="gaussian": p(x|z) = N(mean, 1)). The reconstruction term is that
    likelihood's negative log, in nats, summed over pixels:
        bernoulli: sum_j softplus(l_j) - x_j l_j                     (losses.bce_with_logits)
        gaussian:  1/2 sum_j (x_j - mean_j)^2 + D/2 log(2 pi)         (losses.gaussian_nll, logvar 0)
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dims: Sequence[int],
        latent_dim: int,
        activation: str,
        output: str,
        negative_slope: float,
        seed: int,
        dtype: Any,
    ) -> None:
        super().__init__()
        self.input_dim = _checks.positive_int("input_dim", input_dim)
        self.latent_dim = _checks.positive_int("latent_dim", latent_dim)
        if isinstance(hidden_dims, (int, np.integer)):
            hidden_dims = (hidden_dims,)
        if (isinstance(hidden_dims, (str, bytes)) or not isinstance(hidden_dims, Iterable)
                or getattr(hidden_dims, "ndim", 1) != 1):  # a 0-d or 2-D array is not a list of widths
            raise TypeError(
                f"hidden_dims: expected a sequence of positive integers, got {type(hidden_dims).__name__} "
                f"{hidden_dims!r}"
            )
        self.hidden_dims = tuple(_checks.positive_int(f"hidden_dims[{i}]", h) for i, h in enumerate(hidden_dims))
        # isinstance first: comparing an array with the names would be elementwise
        if not isinstance(activation, str) or activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {ACTIVATIONS}, got {activation!r}")
        if not isinstance(output, str) or output not in OUTPUTS:
            raise ValueError(f"output: expected one of {OUTPUTS}, got {output!r}")
        self.negative_slope = _checks.negative_slope(negative_slope)
        self.seed = _checks.int_at_least("seed", seed, 0)
        self.activation = activation
        self.output = output
        self.dtype = as_float_dtype(dtype)

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this model (saved in checkpoints)."""
        return {
            "input_dim": self.input_dim,
            "hidden_dims": list(self.hidden_dims),
            "latent_dim": self.latent_dim,
            "activation": self.activation,
            "output": self.output,
            "negative_slope": self.negative_slope,
            "seed": self.seed,
            "dtype": str(self.dtype),
        }

    def __repr__(self) -> str:
        """``VAE(784 -> [400] -> 20, relu, bernoulli, float32, 0.65 M params)``: the shape of the
        network, its activation, likelihood, dtype and size (and beta when it is not 1)."""
        count = self.num_parameters()
        size = f"{count / 1e6:.2f} M params" if count >= 10_000 else f"{count:,} params"
        hidden = ", ".join(map(str, self.hidden_dims))
        beta = getattr(self, "beta", 1.0)
        extra = f", beta={beta:g}" if beta != 1.0 else ""
        return (f"{type(self).__name__}({self.input_dim} -> [{hidden}] -> {self.latent_dim}, {self.activation}, "
                f"{self.output}, {self.dtype}{extra}, {size})")

    def _build_decoder(self, rng: np.random.Generator) -> Sequential:
        sizes = (self.latent_dim, *reversed(self.hidden_dims), self.input_dim)
        return mlp(sizes, self.activation, self.negative_slope, rng, self.dtype, final_activation=False)

    # -- checks at the public door ---------------------------------------------------------
    def validate(self, x: Any, name: str = "x") -> np.ndarray:
        """Check a data array once and return it in the model's dtype: (batch, input_dim), at least
        one row, floating point (integers are refused, so 0..255 pixels are never taken for
        [0, 1]), finite, within the dtype's range, and in [0, 1] for a Bernoulli decoder.
        Errors name ``name``. The ``*_unchecked`` methods trust an array returned by this."""
        return self._as_batch(x, name=name)

    def _as_batch(self, x: Any, name: str = "x", width: int | None = None, data: bool = True) -> np.ndarray:
        """Validate a (batch, width) array and return it in the model's dtype.

        Floating-point input of another precision is converted (a documented conversion);
        integer or boolean input is refused, so that 0..255 pixels are never mistaken for [0, 1].
        """
        width = self.input_dim if width is None else width
        try:
            array = np.asarray(x)
        except ValueError as error:  # NumPy's "inhomogeneous shape" for ragged nested lists
            raise ValueError(
                f"{name}: expected a (batch, {width}) array, got a ragged nested sequence ({error})"
            ) from None
        if not np.issubdtype(array.dtype, np.floating):
            hint = " (scale pixel values to [0, 1] first, e.g. x / 255)" if data else ""
            raise TypeError(f"{name}: expected a floating-point array, got dtype {array.dtype}{hint}")
        if array.ndim != 2 or array.shape[1] != width:
            hint = " (for one example use x[None, :])" if array.ndim == 1 else ""
            raise ValueError(f"{name}: expected shape (batch, {width}), got {array.shape}{hint}")
        if array.shape[0] == 0:
            raise ValueError(f"{name}: expected at least one row, got an empty batch")
        with np.errstate(over="ignore"):  # values beyond the model's range are reported below
            converted = array.astype(self.dtype, copy=False)
        if not kernels.all_finite(converted):
            if np.isfinite(array).all():
                raise ValueError(
                    f"{name}: values up to {_checks.largest_magnitude(array)} exceed the model's {self.dtype} "
                    f"range (|value| <= {np.finfo(self.dtype).max:.3g}); rescale the data"
                )
            raise ValueError(f"{name}: expected finite values, found NaN or inf")
        array = converted
        if data and self.output == "bernoulli" and (array.min() < 0 or array.max() > 1):
            raise ValueError(
                f"{name}: a Bernoulli decoder needs data in [0, 1], got values in "
                f"[{array.min():g}, {array.max():g}] (use output='gaussian' for other data)"
            )
        return array

    def _deterministic_terms(self, x: Any) -> LossTerms:
        """``terms`` of a model without noise (AE, VQ-VAE): x checked, ``terms_unchecked`` under
        ``np.errstate``, and a ValueError naming ``x`` if the loss overflows the model's dtype."""
        x = self._as_batch(x)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # checked below
            terms = self.terms_unchecked(x, None, None)
        if not np.isfinite(terms.loss).all():
            raise self._loss_overflow_error(x)
        return terms

    def _loss_overflow_error(self, x: np.ndarray) -> ValueError:
        """The error for a loss on validated ``x`` that came out NaN or inf: its computation
        overflowed the model's dtype (a Gaussian decoder on data of a far larger scale than it was
        built for; the public loss methods compute under ``np.errstate`` and check the result)."""
        return ValueError(
            f"x: the loss overflows {self.dtype} on these data (largest |x| = {_checks.largest_magnitude(x)}); "
            "rescale the data"
        )

    def _as_latent(self, z: Any) -> np.ndarray:
        return self._as_batch(z, name="z", width=self.latent_dim, data=False)

    def _finite_output(self, array: np.ndarray, what: str, name: str, given: np.ndarray) -> np.ndarray:
        """``array`` if it is finite; else the ValueError for a computation that overflowed the
        model's dtype: on inputs too large (``name``, e.g. a z near the float max) or with
        parameters too large (a loaded checkpoint with huge weights)."""
        if kernels.all_finite(array):
            return array
        largest_weight = max((float(np.abs(p.value).max(initial=0.0)) for p in self.parameters()), default=0.0)
        raise ValueError(
            f"{name}: the model's {what} overflows {self.dtype} (largest |{name}| = "
            f"{_checks.largest_magnitude(given)}, largest |parameter| = {largest_weight:.3g}); "
            f"{'the parameters are unusable' if not np.isfinite(largest_weight) or largest_weight > 1e6 else 'rescale ' + name}"
        )

    # -- the decoder's likelihood ----------------------------------------------------------
    def _mean_of(self, decoded: np.ndarray) -> np.ndarray:
        """The decoder's mean: sigmoid(logits) (bernoulli) or the output itself (gaussian)."""
        if self.output == "bernoulli":
            return sigmoid_into(decoded, np.empty_like(decoded))
        return decoded.copy()

    def _reconstruction_nll(self, decoded: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(-log p(x | z) per example in nats, its gradient d(sum)/d(decoded)), the gradient a
        work buffer of this model (overwritten by the next call)."""
        grad = self._buffer("grad_decoded", decoded.shape, self.dtype)
        if self.output == "bernoulli":
            work = self._buffer("nll_work", decoded.shape, self.dtype)
            return bce_with_logits_into(decoded, x, grad, work), grad
        nll = squared_error_into(decoded, x, grad)  # 1/2 |x - mean|^2 + D/2 log(2 pi)
        nll *= 0.5
        nll += 0.5 * LOG_2PI * self.input_dim
        grad *= 0.5
        return nll, grad

    def _streamed_log_likelihood(self, x: np.ndarray, mu_all: np.ndarray, logvar_all: np.ndarray, k: int,
                                 rng: np.random.Generator, max_rows: int,
                                 decode: Callable[[np.ndarray, int, int, int], np.ndarray]) -> np.ndarray:
        """The IWAE estimate L_k per row of x, from the encoder's mu_all, logvar_all (n, latent_dim).

        ``decode(z, start, stop, m)`` is the decoder's output for the codes z of rows start..stop-1,
        m codes each (a CVAE joins their labels).

        Blocks of ``per_block`` examples times ``chunk`` samples (at most ``max_rows`` decoder
        rows); the log-sum-exp over k runs over the chunks as they come, keeping per example the
        largest log-weight seen, m, and s = sum_i exp(log w_i - m):
            m' = max(m, max_chunk log w),   s' = s exp(m - m') + sum_chunk exp(log w - m')
        so memory is bounded for any k (no (n, k) array), and L_k = m + log s - log k.
        """
        result = np.empty(x.shape[0], dtype=np.float64)
        per_block = max(1, max_rows // k)
        chunk = max(1, max_rows // per_block)
        for start in range(0, x.shape[0], per_block):
            stop = min(start + per_block, x.shape[0])
            n = stop - start
            largest = np.full(n, -np.inf)
            total = np.zeros(n)
            for first in range(0, k, chunk):
                m = min(chunk, k - first)
                mu = np.repeat(mu_all[start:stop], m, axis=0)
                logvar = np.repeat(logvar_all[start:stop], m, axis=0)
                eps = rng.standard_normal(mu.shape, dtype=self.dtype)
                z = mu + np.exp(0.5 * logvar) * eps
                recon = self._repeated_reconstruction_nll(decode(z, start, stop, m), x[start:stop], m)
                log_w = -recon + 0.5 * (np.einsum("ij,ij->i", eps, eps) - np.einsum("ij,ij->i", z, z)
                                         + logvar.sum(axis=1))
                log_w = log_w.astype(np.float64).reshape(n, m)
                new_largest = np.maximum(largest, log_w.max(axis=1))
                total *= np.exp(largest - new_largest)
                total += np.exp(log_w - new_largest[:, None]).sum(axis=1)
                largest = new_largest
            result[start:stop] = largest + np.log(total) - np.log(k)
        return result

    def _repeated_reconstruction_nll(self, decoded: np.ndarray, x: np.ndarray, repeats: int) -> np.ndarray:
        """-log p(x_i | z_r) for each decoded row r, row r belonging to x[r // repeats].

        The value of ``_reconstruction_nll(decoded, np.repeat(x, repeats, axis=0))`` without
        its gradient (and, in the fast kernel, without the repeated copy of x).
        """
        if self.output != "bernoulli":
            return self._reconstruction_nll(decoded, np.repeat(x, repeats, axis=0))[0]
        work = self._buffer("repeated_nll_work", decoded.shape, self.dtype)
        return kernels.repeated_bce_with_logits(decoded, x, repeats, work)

    # -- what every model offers -----------------------------------------------------------
    def decode(self, z: Any) -> np.ndarray:
        """Decode latent codes z (n, latent_dim) to the decoder's mean (n, input_dim):
        pixel probabilities for a Bernoulli decoder, the mean for a Gaussian one.

        Raises ValueError naming ``z`` if decoding overflows the model's dtype (z near the
        float maximum, or parameters too large)."""
        z = self._as_latent(z)
        with np.errstate(over="ignore", invalid="ignore"):  # checked below
            decoded = self._finite_output(self.decoder.forward(z), "decoder output", "z", z)
        return self._mean_of(decoded)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Decode n codes drawn from N(0, I): (n, input_dim) decoder means.

        Raises ValueError if decoding overflows the model's dtype (parameters too large)."""
        n = _checks.positive_int("n", n)
        z = _checks.generator(rng).standard_normal((n, self.latent_dim), dtype=self.dtype)
        with np.errstate(over="ignore", invalid="ignore"):  # checked below
            decoded = self._finite_output(self.decoder.forward(z), "decoder output", "z", z)
        return self._mean_of(decoded)
