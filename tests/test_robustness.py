"""Robustness of the public API: arbitrary shapes, dtypes and values (issue 7).

The property tests below drive every public function and constructor with arbitrary input
(strategies ``arbitrary_arrays``, ``batch_shapes``, ``array_arguments`` and ``junk`` from
``conftest.py``) and check one contract for each call:

* valid arguments give results of the documented shape and dtype, finite (and in [0, 1] where
  the result is a probability); the oracle knows which arguments are valid, so a spurious
  rejection fails too;
* invalid arguments raise a documented error: ``TypeError`` or ``ValueError`` whose message
  starts with the name of an argument that was wrong (``"x: expected ..."``); for files,
  ``CheckpointError`` / ``ValueError`` naming the file, or ``FileNotFoundError`` / ``OSError``;
  for training, ``TrainingError`` where documented;
* nothing else escapes: no IndexError, AttributeError, ZeroDivisionError, numpy AxisError,
  f2py ``_fblas.error``, MemoryError, and no ``RuntimeWarning``: this module turns RuntimeWarning
  into an error, so a silent overflow or NaN inside a call fails the test;
* nothing hangs: sizes stay tiny (batch <= 5, dims <= 6, k <= 4, epochs <= 2), and hypothesis's
  deadline is 10 s per example (generous: CI machines are shared).

CI runs ``FUZZ_EXAMPLES`` = 150 hypothesis examples for each of 13 property tests and 50 for
the data-set loader test (each example reads the packaged digits): 2,000 examples in all.
``NPVAE_HYPOTHESIS_PROFILE=thorough`` runs ten times as many. The module takes about 20 s on
one core.

Decisions, where the issue leaves a choice (each is what the tests assert):

* Models take float arrays of any precision (converted to the model's dtype), 2-D
  (batch, input_dim), non-empty, finite, in [0, 1] for a Bernoulli decoder; integer and boolean
  arrays are a TypeError (uint8 pixels are never mistaken for intensities), float pixels in
  [0, 255] a ValueError for a Bernoulli model. A single vector is a ValueError (with a hint).
* Huge values (1e30) for Gaussian models: ``encode``, ``decode``, ``reconstruct`` and
  ``sample`` are compositions of affine maps and activations, so finite data give finite
  results and the tests require them. The loss methods (``terms``, ``elbo``,
  ``log_likelihood``, ``loss_and_grads``) exponentiate a log-variance that grows with the data,
  so their true value overflows: the correct answer is a ValueError naming ``x`` (or ``eps``),
  not a NaN, and all four give it. The fuzz keeps the data of these methods within
  |x| <= 10, where the loss is representable, so that a valid call must succeed. ``fit`` gives
  its documented TrainingError for such data (without NumPy warnings), and ``evaluate`` a
  ValueError naming ``x``.
* Layers (``Dense``, the activations) are the training path: they check types and shapes (of
  the input, and of the gradient in backward), not values. Non-finite values propagate as in
  IEEE arithmetic (as in torch.nn); finite input of moderate size gives finite output.
  ``Reparameterization.forward`` also checks values (NaN, overflow of exp(logvar / 2)); the VAE
  trains through its unchecked ``_forward``.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import re
import struct
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from conftest import (
    ANY_DTYPES,
    array_arguments,
    arbitrary_arrays,
    batch_shapes,
    float_dtypes,
    seeds,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from npvae import (
    AE,
    SGD,
    VAE,
    Adam,
    CheckpointError,
    Dense,
    History,
    LeakyReLU,
    Parameter,
    ReLU,
    Reparameterization,
    Sigmoid,
    Tanh,
    TrainingError,
    bce_with_logits,
    clip_grad_norm,
    datasets,
    evaluate,
    fit,
    gaussian_kl,
    gaussian_nll,
    gradcheck,
    gradcheck_module,
    load,
    load_checkpoint,
    save,
    squared_error,
)
from npvae.activations import ACTIVATIONS, make_activation
from npvae.models.base import OUTPUTS

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

FUZZ_EXAMPLES = 150 * (10 if os.environ.get("NPVAE_HYPOTHESIS_PROFILE") == "thorough" else 1)
fuzz = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Gaussian-model losses overflow on data much larger than this (a ValueError naming x, see
#: test_gaussian_loss_methods_reject_data_that_overflow_naming_x); the fuzz stays below, where a
#: valid call must succeed.
GAUSSIAN_LOSS_MAGNITUDE = 10.0
#: Huge but representable in float32 too, so that encode/decode results stay finite (data beyond
#: float32's range: test_float32_models_name_x_for_float64_data_beyond_float32_range).
HUGE = 1e30


# -- the oracle -------------------------------------------------------------------------------------
def named_argument(error: BaseException) -> str:
    """The part of an error message before its first ': ', where npvae names the argument."""
    return str(error).split(": ", 1)[0]


def assert_names_one_of(error: BaseException, names: set[str] | list[str] | tuple[str, ...]) -> None:
    head = named_argument(error)
    assert any(re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", head) for name in names), (
        f"{type(error).__name__} should start by naming one of {sorted(names)}: {error}"
    )


def attempt(call: Callable[[], Any], invalid: set[str], errors: tuple[type, ...] = (TypeError, ValueError)) -> Any:
    """Run ``call``. With no invalid argument it must succeed; with some, it must raise one of
    ``errors`` naming one of them. Any other exception (or RuntimeWarning) propagates."""
    if not invalid:
        event("valid arguments: result checked")
        return call()
    event("invalid arguments: error checked")
    with pytest.raises(errors) as caught:
        call()
    assert_names_one_of(caught.value, invalid)
    return None


def assert_array(result: Any, shape: tuple[int, ...], dtype: Any, *, unit: bool = False) -> None:
    assert isinstance(result, np.ndarray), type(result)
    assert result.shape == shape and result.dtype == np.dtype(dtype), (result.shape, result.dtype)
    assert np.isfinite(result).all(), result
    if unit:
        assert ((result >= 0) & (result <= 1)).all(), result


def is_positive_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value >= 1


def is_data(value: Any, width: int, dtype: Any, *, unit_interval: bool) -> bool:
    """Whether a model accepts ``value`` as a (batch, width) data array (see the decisions above)."""
    if not isinstance(value, (np.ndarray, list)):
        return False
    array = np.asarray(value)
    if array.dtype.kind != "f" or array.ndim != 2 or array.shape[0] == 0 or array.shape[1] != width:
        return False
    with np.errstate(over="ignore"):
        array = array.astype(dtype)
    if not np.isfinite(array).all():
        return False
    return not unit_interval or bool(array.min() >= 0 and array.max() <= 1)


def max_abs(value: Any) -> float:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return 0.0
    with np.errstate(invalid="ignore"):
        return float(np.nanmax(np.abs(array), initial=0.0))


def mostly(usual: st.SearchStrategy, other: st.SearchStrategy) -> st.SearchStrategy:
    """A value from ``usual`` three times in four, else one from ``other``."""
    return st.integers(0, 3).flatmap(lambda i: other if i == 0 else usual)


def valid_or(valid: st.SearchStrategy, *invalid: Any) -> st.SearchStrategy:
    """A value from ``valid`` (nine times in ten) or one of ``invalid``, tagged (value, is_valid):
    with several arguments per call, about half of the calls are entirely valid."""
    return st.integers(0, 9).flatmap(
        lambda i: st.sampled_from(invalid).map(lambda v: (v, False)) if i == 0 else valid.map(lambda v: (v, True))
    )


rngs = st.sampled_from(["generator"] * 4 + ["random_state", "int", "none", "string"]).map(
    lambda kind: {
        "generator": np.random.default_rng(0),
        "random_state": np.random.RandomState(0),
        "int": 0,
        "none": None,
        "string": "rng",
    }[kind]
)
counts = st.integers(1, 4) | st.sampled_from([0, -1, 2.0, True, None, "2", np.int64(3), np.uint8(2)])


# -- models -----------------------------------------------------------------------------------------
@st.composite
def models(draw: st.DrawFn) -> AE | VAE:
    model_class = draw(st.sampled_from([AE, VAE]))
    arguments = {
        "input_dim": draw(st.integers(1, 4)),
        "hidden_dims": tuple(draw(st.lists(st.integers(1, 4), max_size=2))),
        "latent_dim": draw(st.integers(1, 3)),
        "activation": draw(st.sampled_from(ACTIVATIONS)),
        "output": draw(st.sampled_from(OUTPUTS)),
        "seed": draw(seeds),
        "dtype": draw(float_dtypes),
    }
    if model_class is VAE:
        arguments["beta"] = draw(st.sampled_from([0.0, 0.5, 1.0, 4.0]))
    return model_class(**arguments)


#: Data arrays: any dtype, but mostly floats, so that the value checks are reached too.
data_dtypes = st.sampled_from([np.float32, np.float64] * 4 + list(ANY_DTYPES))


def data_for(model: AE | VAE, magnitude: float = HUGE) -> st.SearchStrategy:
    return array_arguments(arbitrary_arrays(batch_shapes(model.input_dim), dtypes=data_dtypes, magnitude=magnitude))


def mostly_clean_data_for(model: AE | VAE, magnitude: float = HUGE) -> st.SearchStrategy:
    """Valid data for ``model`` (values in [0, 1], or in [-3, 3] for a Gaussian decoder) three
    times in four, else ``data_for``: enough valid calls to train, and every kind of bad one."""
    low = 0.0 if model.output == "bernoulli" else -3.0
    clean = st.integers(1, 5).flatmap(lambda rows: hnp.arrays(
        st.sampled_from([np.float32, np.float64]), (rows, model.input_dim),
        elements=st.floats(low, 1.0 if low == 0 else 3.0, width=32)))
    return mostly(clean, data_for(model, magnitude))


def codes_for(model: AE | VAE, magnitude: float = HUGE) -> st.SearchStrategy:
    return array_arguments(arbitrary_arrays(batch_shapes(model.latent_dim), dtypes=data_dtypes, magnitude=magnitude))


LOSS_METHODS = ("terms", "elbo", "log_likelihood", "loss_and_grads")


@fuzz
@given(data=st.data())
def test_model_methods_give_documented_results_or_name_the_bad_argument(data: st.DataObject) -> None:
    model = data.draw(models())
    is_vae = isinstance(model, VAE)
    method = data.draw(st.sampled_from(
        ["encode", "reconstruct", "decode", "sample", "terms", "loss_and_grads"]
        + (["elbo", "log_likelihood"] if is_vae else [])
    ))
    bernoulli = model.output == "bernoulli"
    magnitude = GAUSSIAN_LOSS_MAGNITUDE if method in LOSS_METHODS and not bernoulli else HUGE
    invalid: set[str] = set()
    dtype, latent = model.dtype, model.latent_dim

    if method == "decode":
        z = data.draw(codes_for(model), label="z")
        if not is_data(z, latent, dtype, unit_interval=False):
            invalid.add("z")
        result = attempt(lambda: model.decode(z), invalid)
        if result is not None:
            assert_array(result, (len(z), model.input_dim), dtype, unit=bernoulli)
        return
    if method == "sample":
        n, rng = data.draw(counts, label="n"), data.draw(rngs, label="rng")
        invalid |= {"n"} if not is_positive_int(n) else set()
        invalid |= {"rng"} if not isinstance(rng, np.random.Generator) else set()
        result = attempt(lambda: model.sample(n, rng), invalid)
        if result is not None:
            assert_array(result, (int(n), model.input_dim), dtype, unit=bernoulli)
        return

    x = data.draw(data_for(model, magnitude), label="x")
    if not is_data(x, model.input_dim, dtype, unit_interval=bernoulli):
        invalid.add("x")
    batch = len(x) if "x" not in invalid else 0

    if method == "encode":
        result = attempt(lambda: model.encode(x), invalid)
        if result is not None:
            for array in (result if is_vae else (result,)):
                assert_array(array, (batch, latent), dtype)
        return
    if method == "reconstruct":
        result = attempt(lambda: model.reconstruct(x), invalid)
        if result is not None:
            assert_array(result, (batch, model.input_dim), dtype, unit=bernoulli)
        return

    noise = data.draw(st.sampled_from(["rng", "eps", "neither", "both"]), label="noise")
    arguments: dict[str, Any] = {}
    if noise in ("rng", "both"):
        arguments["rng"] = data.draw(rngs, label="rng")
    if noise in ("eps", "both"):
        # |eps| <= 10: larger noise can overflow a Gaussian decoder's loss (a ValueError naming
        # eps: test_gaussian_vae_loss_and_grads_names_eps_for_noise_that_overflows)
        arguments["eps"] = data.draw(codes_for(model, GAUSSIAN_LOSS_MAGNITUDE), label="eps")
    if is_vae and method != "log_likelihood":
        eps, rng = arguments.get("eps"), arguments.get("rng")
        if (eps is None) == (rng is None):
            invalid |= {"eps", "rng"}
        elif rng is not None and not isinstance(rng, np.random.Generator):
            invalid.add("rng")
        elif eps is not None and (not is_data(eps, latent, dtype, unit_interval=False)
                                  or (batch and len(eps) != batch)):
            invalid.add("eps")

    if method == "log_likelihood":
        k, max_rows = data.draw(counts, label="k"), data.draw(counts, label="max_rows")
        rng = data.draw(rngs, label="rng")
        invalid |= {name for name, value in (("k", k), ("max_rows", max_rows)) if not is_positive_int(value)}
        invalid |= {"rng"} if not isinstance(rng, np.random.Generator) else set()
        result = attempt(lambda: model.log_likelihood(x, k=k, rng=rng, max_rows=max_rows), invalid)
        if result is not None:
            assert_array(result, (batch,), np.float64)
        return
    if method == "loss_and_grads":
        # an AE accepts and ignores kl_weight; a VAE needs a finite real number >= 0
        kl_weight, kl_weight_ok = data.draw(
            valid_or(st.sampled_from([None, 0.0, 0.5, 1.0, 3.0, 2, np.float32(0.5)]),
                     -1.0, float("nan"), float("inf"), "1", True, [1.0]),
            label="kl_weight")
        if is_vae and not kl_weight_ok:
            invalid.add("kl_weight")
        result = attempt(lambda: model.loss_and_grads(x, kl_weight=kl_weight, **arguments), invalid)
        if result is not None:
            assert isinstance(result, float) and math.isfinite(result)
            assert all(np.isfinite(p.grad).all() for p in model.parameters())
        return
    call = model.terms if method == "terms" else model.elbo
    result = attempt(lambda: call(x, **arguments), invalid)
    if result is None:
        return
    if method == "elbo":
        assert_array(result, (batch,), dtype)
        return
    for array in result:
        assert_array(array, (batch,), dtype)
    assert (result.kl >= 0).all()
    if bernoulli:
        assert (result.recon >= 0).all()


# -- constructors -----------------------------------------------------------------------------------
sizes = valid_or(st.integers(1, 4), 0, -1, 2.0, "3", True, None, np.float64(2.0))


@fuzz
@given(data=st.data())
def test_model_constructors_build_valid_models_or_name_the_bad_argument(data: st.DataObject) -> None:
    model_class = data.draw(st.sampled_from([AE, VAE]))
    drawn = {
        "input_dim": data.draw(sizes),
        "latent_dim": data.draw(sizes),
        "hidden_dims": data.draw(valid_or(st.lists(st.integers(1, 4), max_size=2).map(tuple) | st.integers(1, 4),
                                          (0,), (2, -1), "ab", (2.5,), None, 3.5)),
        "activation": data.draw(valid_or(st.sampled_from(ACTIVATIONS), "swish", None, "ReLU", ["relu"], 3,
                                         np.array(["relu", "tanh"]))),
        "output": data.draw(valid_or(st.sampled_from(OUTPUTS), "poisson", None, "Bernoulli")),
        "negative_slope": data.draw(valid_or(st.floats(0.0, 0.99), -0.1, 1.0, float("nan"), float("inf"),
                                             "a", None, True, np.array([0.1, 0.2]))),
        "seed": data.draw(valid_or(seeds, -1, 1.5, None, "0", True)),
        "dtype": data.draw(valid_or(st.sampled_from([np.float32, np.float64, "float32", "float64"]),
                                    np.float16, np.int64, "nonsense", complex, bool, None)),
    }
    if model_class is VAE:
        drawn["beta"] = data.draw(valid_or(st.floats(0.0, 100.0), -1.0, float("nan"), float("inf"),
                                           "a", None, [1.0]))
    arguments = {name: value for name, (value, _) in drawn.items()}
    invalid = {name for name, (_, ok) in drawn.items() if not ok}
    model = attempt(lambda: model_class(**arguments), invalid)
    if model is None:
        return
    rebuilt = model_class(**model.config())
    assert all(np.array_equal(a, b) for a, b in zip(model.state_dict().values(), rebuilt.state_dict().values()))
    assert model.dtype == np.dtype(arguments["dtype"])
    x = np.full((2, model.input_dim), 0.5)
    assert_array(model.reconstruct(x), (2, model.input_dim), model.dtype)


@fuzz
@given(input_dim=sizes, hidden_dim=sizes, latent_dim=sizes, latent_num=sizes, seed=valid_or(seeds, -1, None))
def test_vae_from_seed_builds_or_names_the_bad_argument(input_dim, hidden_dim, latent_dim, latent_num, seed) -> None:
    drawn = {"input_dim": input_dim, "hidden_dim": hidden_dim, "latent_dim": latent_dim,
             "latent_num": latent_num, "seed": seed}
    invalid = {name for name, (_, ok) in drawn.items() if not ok}
    model = attempt(lambda: VAE.from_seed(**{name: value for name, (value, _) in drawn.items()}), invalid)
    if model is not None:
        assert (model.input_dim, model.latent_dim) == (input_dim[0], latent_num[0])


# -- losses -----------------------------------------------------------------------------------------
LOSSES = {
    "bce_with_logits": (bce_with_logits, ("logits", "target")),
    "squared_error": (squared_error, ("prediction", "target")),
    "gaussian_nll": (gaussian_nll, ("target", "mean", "logvar")),
    "gaussian_kl": (gaussian_kl, ("mu", "logvar")),
}
#: Larger values overflow inside the losses (NaN where the true value is finite, or inf with a
#: RuntimeWarning): see test_losses_do_not_return_nan_or_warn_for_extreme_finite_inputs.
LOSS_MAGNITUDE = {"logvar": 30.0}
LOSS_DEFAULT_MAGNITUDE = 1e6


@fuzz
@given(data=st.data())
def test_losses_give_documented_results_or_name_the_bad_argument(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(LOSSES)))
    function, argument_names = LOSSES[name]
    shape = data.draw(batch_shapes(data.draw(st.integers(1, 4))))
    dtype = data.draw(float_dtypes)
    arguments = {}
    for argument in argument_names:
        magnitude = LOSS_MAGNITUDE.get(argument, LOSS_DEFAULT_MAGNITUDE)
        # mostly the same shape and dtype for all arguments, so that the value checks are reached
        same = data.draw(st.integers(0, 9).map(bool))
        arrays = arbitrary_arrays(st.just(shape) if same else batch_shapes(3),
                                  dtypes=st.just(dtype) if same else st.sampled_from([np.float32, np.float64, np.int64]),
                                  magnitude=magnitude)
        arguments[argument] = data.draw(array_arguments(arrays), label=argument)

    first = arguments[argument_names[0]]
    invalid = set()
    for argument, value in arguments.items():
        ok = (isinstance(value, np.ndarray) and value.dtype in (np.float32, np.float64) and value.ndim == 2
              and np.isfinite(value).all())
        if isinstance(first, np.ndarray) and isinstance(value, np.ndarray):
            ok = ok and value.shape == first.shape and value.dtype == first.dtype
        if ok and argument == "target" and name == "bce_with_logits":
            ok = bool(((value >= 0) & (value <= 1)).all())
        if not ok:
            invalid.add(argument)
    result = attempt(lambda: function(*arguments.values()), invalid)
    if result is None:
        return
    value, grads = result
    batch = first.shape[0]
    assert_array(value, (batch,), first.dtype)
    for grad in (grads if isinstance(grads, tuple) else (grads,)):
        assert_array(grad, first.shape, first.dtype)
    if name in ("squared_error", "gaussian_kl"):
        assert (value >= 0).all()


@pytest.mark.parametrize("shape", [(0, 3), (2, 0)], ids=["empty_batch", "zero_width"])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_accept_an_empty_batch_or_zero_width(name: str, shape: tuple[int, int]) -> None:
    # a pinned example of the fuzz test above (the BLAS row sums must cope with size 0)
    function, argument_names = LOSSES[name]
    value, grads = function(*(np.zeros(shape) for _ in argument_names))
    assert_array(value, (shape[0],), np.float64)
    for grad in (grads if isinstance(grads, tuple) else (grads,)):
        assert_array(grad, shape, np.float64)


# -- layers -----------------------------------------------------------------------------------------
@fuzz
@given(data=st.data())
def test_layers_forward_and_backward_give_documented_results_or_name_the_bad_argument(data: st.DataObject) -> None:
    dtype = np.dtype(data.draw(float_dtypes))
    kind = data.draw(st.sampled_from(["dense", "identity", "relu", "leaky_relu", "sigmoid", "tanh"]))
    if kind == "dense":
        in_features = data.draw(st.integers(1, 4))
        layer = Dense(in_features, data.draw(st.integers(1, 4)), rng=np.random.default_rng(0), dtype=dtype)
        shapes = batch_shapes(in_features)
    else:
        layer = make_activation(kind, data.draw(st.floats(0.0, 0.99)))
        shapes = st.lists(st.integers(0, 4), max_size=3).map(tuple)
    x = data.draw(array_arguments(arbitrary_arrays(shapes, magnitude=HUGE)), label="x")
    x_ok = isinstance(x, np.ndarray) and x.dtype in (np.float32, np.float64)
    if kind == "dense":
        x_ok = x_ok and x.ndim == 2 and x.shape[1] == layer.in_features and x.dtype == dtype
    # layers check types and shapes, not values: NaN/inf propagate as IEEE arithmetic says, and
    # its warnings (inf * 0 in LeakyReLU(0), say) are expected there, so they are silenced for
    # non-finite x; finite x must not warn
    nonfinite_x = x_ok and not np.isfinite(x).all()
    silence = np.errstate(all="ignore") if nonfinite_x else contextlib.nullcontext()
    with silence:
        y = attempt(lambda: layer.forward(x), set() if x_ok else {"x"})
    if y is None:
        return
    out_shape = (x.shape[0], layer.out_features) if kind == "dense" else x.shape
    assert isinstance(y, np.ndarray) and y.shape == out_shape and y.dtype == x.dtype
    if np.isfinite(x).all() and max_abs(x) <= 1e6:
        assert np.isfinite(y).all()
    if kind == "sigmoid":
        with np.errstate(invalid="ignore"):
            assert not ((y < 0) | (y > 1)).any()
    # backward: mostly a gradient of the output's shape and dtype, else anything (named grad_out)
    well_formed = arbitrary_arrays(st.just(out_shape), dtypes=st.just(x.dtype), nonfinite=False, magnitude=1e6)
    anything = array_arguments(arbitrary_arrays(st.lists(st.integers(0, 4), max_size=3).map(tuple), magnitude=1e6))
    grad = data.draw(mostly(well_formed, anything), label="grad_out")
    grad_ok = isinstance(grad, np.ndarray) and grad.shape == out_shape and grad.dtype == x.dtype
    finite_y = np.isfinite(y).all()
    with np.errstate(all="ignore") if nonfinite_x else contextlib.nullcontext():
        grad_x = attempt(lambda: layer.backward(grad), set() if grad_ok else {"grad_out"})
    if grad_x is None:
        return
    assert isinstance(grad_x, np.ndarray) and grad_x.shape == x.shape
    if finite_y and np.isfinite(x).all() and max_abs(x) <= 1e6:
        assert np.isfinite(grad_x).all()


@fuzz
@given(
    in_features=sizes, out_features=sizes,
    init=valid_or(st.sampled_from(["he", "glorot"]), "xavier", None, "HE"),
    rng=valid_or(st.just(np.random.default_rng(0)), np.random.RandomState(0), 0, None),
    dtype=valid_or(float_dtypes, np.float16, np.int32, "nonsense"),
    negative_slope=valid_or(st.floats(0.0, 0.99), -0.1, 1.0, float("nan"), 1e200, "a", None),
)
def test_dense_constructor_builds_or_names_the_bad_argument(in_features, out_features, init, rng, dtype,
                                                            negative_slope) -> None:
    drawn = {"in_features": in_features, "out_features": out_features, "init": init, "rng": rng, "dtype": dtype,
             "negative_slope": negative_slope}
    invalid = {name for name, (_, ok) in drawn.items() if not ok}
    arguments = {name: value for name, (value, _) in drawn.items()}
    layer = attempt(lambda: Dense(arguments["in_features"], arguments["out_features"], rng=arguments["rng"],
                                  init=arguments["init"], dtype=arguments["dtype"],
                                  negative_slope=arguments["negative_slope"]),
                    invalid)
    if layer is not None:
        assert layer.weight.shape == (in_features[0], out_features[0])
        assert np.isfinite(layer.weight.value).all() and layer.weight.dtype == np.dtype(dtype[0])


# -- reparameterization -----------------------------------------------------------------------------
@fuzz
@given(data=st.data())
def test_reparameterization_gives_documented_results_or_names_the_bad_argument(data: st.DataObject) -> None:
    dtype = data.draw(float_dtypes)
    shape = data.draw(batch_shapes(data.draw(st.integers(1, 4))))
    arrays = {}
    for name in ("mu", "logvar", "eps"):
        same = data.draw(st.integers(0, 9).map(bool))
        # |values| <= 30: exp(logvar / 2) * eps stays finite (overflow:
        # test_reparameterization_forward_rejects_non_finite_input_and_overflow)
        strategy = arbitrary_arrays(st.just(shape) if same else batch_shapes(3),
                                    dtypes=st.just(dtype) if same else st.sampled_from([np.float32, np.float64, np.int64]),
                                    magnitude=30.0)
        arrays[name] = data.draw(array_arguments(strategy), label=name)
    noise = data.draw(st.sampled_from(["eps", "rng"] * 3 + ["both", "neither"]))
    rng = data.draw(rngs)
    mu, logvar, eps = arrays["mu"], arrays["logvar"], arrays["eps"]

    def float_array(value: Any) -> bool:
        return isinstance(value, np.ndarray) and value.dtype in (np.float32, np.float64)

    arguments = {"eps": eps if noise in ("eps", "both") else None, "rng": rng if noise in ("rng", "both") else None}
    invalid = set()
    if not float_array(mu) or mu.ndim != 2:
        invalid.add("mu")
    if not float_array(logvar) or not float_array(mu) or logvar.shape != mu.shape or logvar.dtype != mu.dtype:
        invalid.add("logvar")
    if (arguments["eps"] is None) == (arguments["rng"] is None):
        invalid |= {"eps", "rng"}
    elif arguments["eps"] is not None and (not float_array(eps) or not float_array(mu) or eps.shape != mu.shape
                                           or eps.dtype != mu.dtype):
        invalid.add("eps")
    elif arguments["rng"] is not None and not isinstance(rng, np.random.Generator):
        invalid.add("rng")
    for name, value in (("mu", mu), ("logvar", logvar), ("eps", arguments["eps"])):
        if float_array(value) and not np.isfinite(value).all():
            invalid.add(name)
    reparam = Reparameterization()
    z = attempt(lambda: reparam.forward(mu, logvar, **arguments), invalid)
    if z is None:
        return
    assert_array(z, mu.shape, mu.dtype)
    grad_z = data.draw(array_arguments(arbitrary_arrays(st.just(mu.shape) | batch_shapes(mu.shape[1]),
                                                        dtypes=st.sampled_from([mu.dtype, np.float32, np.int64]),
                                                        nonfinite=False, magnitude=1e6)), label="grad_z")
    grad_ok = float_array(grad_z) and grad_z.shape == mu.shape and grad_z.dtype == mu.dtype
    grads = attempt(lambda: reparam.backward(grad_z), set() if grad_ok else {"grad_z"})
    if grads is not None:
        for grad in grads:
            assert_array(grad, mu.shape, mu.dtype)


# -- optimizers -------------------------------------------------------------------------------------
NAN, INF = float("nan"), float("inf")
#: Hyperparameters: numbers of every kind (ints, NumPy scalars), or invalid ones: numbers out of
#: range, and non-numbers (strings, None, lists, bools).
learning_rates = valid_or(st.floats(1e-8, 1e3) | st.sampled_from([1, np.float32(0.01)]), 0.0, -1e-3, NAN, INF, -INF,
                          "a", "1e-3", None, [0.1], True)
decays = valid_or(st.floats(0.0, 1e3) | st.sampled_from([0, np.float64(0.1)]), -1e-3, NAN, INF, "0")
momenta = valid_or(st.floats(0.0, 10.0), -0.1, NAN, INF, None, [0.9])
dampenings = valid_or(st.floats(0.0, 1.0), -0.1, 1.5, NAN, "x")
betas_pairs = valid_or(st.tuples(st.floats(0.0, 0.999), st.floats(0.0, 0.9999)) | st.just([0.9, 0.99]),
                       0.9, (0.9,), (0.9, 0.99, 0.999), (1.0, 0.9), (0.9, -0.1), (NAN, 0.9), (0.9, INF),
                       (0.9, "x"), (None, 0.9))
# eps = 0 (or below the dtype's smallest normal number) divides 0 by 0 on a zero gradient
adam_eps = valid_or(st.floats(1e-30, 1e3), -1e-8, NAN, INF, 0.0, None)
nesterovs = valid_or(st.booleans(), "yes", 1, None)
max_norms = valid_or(st.floats(1e-8, 1e8) | st.just(1), 0.0, -1.0, NAN, INF)


@fuzz
@given(data=st.data())
def test_optimizers_build_and_step_or_name_the_bad_argument(data: st.DataObject) -> None:
    model = data.draw(models())
    parameters = model.parameters()
    params_kind = data.draw(st.sampled_from(["parameters"] * 12 + ["generator", "empty", "arrays", "mixed", "model"]))
    other_dtype = np.float32 if model.dtype == np.float64 else np.float64
    params: Any = {
        "parameters": parameters,
        "generator": (p for p in parameters),
        "empty": [],
        "arrays": [p.value for p in parameters],
        "mixed": [*parameters, Parameter(np.zeros(2, dtype=other_dtype))],
        "model": model,
    }[params_kind]
    invalid = set() if params_kind in ("parameters", "generator") else {"params"}
    optimizer_class = data.draw(st.sampled_from([SGD, Adam]))
    drawn = {"lr": data.draw(learning_rates), "weight_decay": data.draw(decays)}
    if optimizer_class is SGD:
        drawn |= {"momentum": data.draw(momenta), "dampening": data.draw(dampenings),
                  "nesterov": data.draw(nesterovs)}
    else:
        drawn |= {"betas": data.draw(betas_pairs), "eps": data.draw(adam_eps)}
    invalid |= {name for name, (_, ok) in drawn.items() if not ok}
    hyper = {name: value for name, (value, _) in drawn.items()}
    momentum = hyper.get("momentum", 0.0)
    if optimizer_class is SGD and not invalid and hyper["nesterov"] and (momentum == 0 or hyper["dampening"] != 0):
        invalid.add("nesterov")

    def make() -> Any:
        return optimizer_class(params, **hyper)

    optimizer = attempt(make, invalid)
    if optimizer is None:
        return
    model.loss_and_grads(np.full((2, model.input_dim), 0.5), rng=np.random.default_rng(0))
    # finite steps need finite updates: lr * (gradient + weight_decay * value) within range
    if float(hyper["lr"]) <= 10 and float(momentum) <= 10:
        for _ in range(2):
            optimizer.step()
        assert all(np.isfinite(p.value).all() for p in parameters)
        assert all(np.isfinite(array).all() for array in optimizer.state_dict().values())
    max_norm, ok = data.draw(max_norms, label="max_norm")
    norm = attempt(lambda: clip_grad_norm(parameters, max_norm), set() if ok else {"max_norm"})
    if norm is not None:
        assert math.isfinite(norm) and norm >= 0
        assert all(np.isfinite(p.grad).all() for p in parameters)


# -- training ---------------------------------------------------------------------------------------
@fuzz
@given(data=st.data())
def test_fit_and_evaluate_train_or_name_the_bad_argument(data: st.DataObject) -> None:
    model = data.draw(models())
    bernoulli = model.output == "bernoulli"
    other = VAE(model.input_dim, (2,), 1)
    x_train = data.draw(mostly_clean_data_for(model), label="x_train")
    x_val = data.draw(st.none() | mostly_clean_data_for(model), label="x_val")
    drawn = {
        "epochs": data.draw(valid_or(st.integers(0, 2), -1, 1.0, None, True)),
        "batch_size": data.draw(valid_or(st.integers(1, 8), 0, -2, 2.5, None, False)),
        "optimizer": data.draw(valid_or(st.sampled_from(["none", "adam", "sgd"]), "other", "string")),
        "seed": data.draw(valid_or(seeds, -1, 1.5, None)),
        "rng": data.draw(valid_or(st.sampled_from(["none", "generator"]), "random_state", "int")),
        "kl_warmup_epochs": data.draw(valid_or(st.integers(0, 3), -1, 0.5, None)),
        "binarize": data.draw(valid_or(st.booleans(), "yes", 1, None)),
        "history": data.draw(valid_or(st.sampled_from(["none", "new"]), "dict", "list")),
        "callbacks": data.draw(valid_or(st.sampled_from(["empty", "list"]), "callable", "not_callable", "none")),
        "progress": data.draw(valid_or(st.sampled_from([False, None]), "yes", 1)),
    }
    invalid = {name for name, (_, ok) in drawn.items() if not ok}
    values = {name: value for name, (value, _) in drawn.items()}
    values["optimizer"] = {
        "none": None, "adam": Adam(model.parameters()), "sgd": SGD(model.parameters(), lr=0.01),
        "other": Adam(other.parameters()), "string": "adam",
    }[values["optimizer"]]
    values["rng"] = {"none": None, "generator": np.random.default_rng(1), "random_state": np.random.RandomState(1),
                     "int": 1}[values["rng"]]
    values["history"] = {"none": None, "new": History(), "dict": {}, "list": []}[values["history"]]
    calls = []
    values["callbacks"] = {"empty": (), "list": [lambda epoch, history: calls.append(epoch)],
                           "callable": print, "not_callable": [1], "none": None}[values["callbacks"]]
    if not is_data(x_train, model.input_dim, model.dtype, unit_interval=bernoulli):
        invalid.add("x_train")
    elif values["binarize"] is True and not is_data(x_train, model.input_dim, model.dtype, unit_interval=True):
        invalid.add("x_train")
    if x_val is not None and not is_data(x_val, model.input_dim, model.dtype, unit_interval=bernoulli):
        invalid.add("x_val")
    before = model.state_dict()
    try:
        history = attempt(lambda: fit(model, x_train, x_val=x_val, **values), invalid)
    except TrainingError as error:
        # documented for data that overflow a Gaussian decoder (never for the Bernoulli one)
        assert not bernoulli and max(max_abs(x_train), max_abs(x_val)) > GAUSSIAN_LOSS_MAGNITUDE, error
        assert all(np.isfinite(p.value).all() for p in model.parameters())
        assert re.search(r"epoch \d+", str(error))
        return
    if history is None:
        assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items()), "a refused fit trained"
        return
    epochs = values["epochs"]
    assert isinstance(history, History) and len(history) == epochs
    assert calls == ([] if values["callbacks"] == () else list(range(1, epochs + 1)))
    assert all(math.isfinite(v) for name in History.FIELDS for v in getattr(history, name))
    assert history.has_validation == (x_val is not None and epochs > 0)
    if max_abs(x_train) <= GAUSSIAN_LOSS_MAGNITUDE or bernoulli:
        metrics = evaluate(model, x_train)
        assert set(metrics) == {"loss", "recon", "kl"} and all(math.isfinite(v) for v in metrics.values())


# -- checkpoints ------------------------------------------------------------------------------------
@fuzz
@given(data=st.data())
def test_checkpoint_save_and_load_round_trip_or_name_the_bad_argument(data: st.DataObject) -> None:
    model = data.draw(models())
    with tempfile.TemporaryDirectory() as directory:
        target = Path(directory) / "model.npz"
        drawn = {
            "model": data.draw(valid_or(st.just("model"), "dense", None, "string")),
            "path": data.draw(valid_or(st.sampled_from(["str", "path"]), None, 3, b"bytes", "", "missing_dir")),
            "optimizer": data.draw(valid_or(st.sampled_from(["none", "adam", "sgd"]), "other", "string")),
            "history": data.draw(valid_or(st.sampled_from(["none", "history"]), "dict")),
            "rng": data.draw(valid_or(st.sampled_from(["none", "pcg64", "dxsm"]), "mt19937", "random_state", 7)),
        }
        invalid = {name for name, (_, ok) in drawn.items() if not ok}
        path_kind = drawn["path"][0]
        values = {
            "model": {"model": model, "dense": Dense(2, 2, rng=np.random.default_rng(0)), None: None,
                      "string": "model"}[drawn["model"][0]],
            "path": {"str": str(target), "path": target, None: None, 3: 3, b"bytes": b"bytes", "": "",
                     "missing_dir": Path(directory) / "missing" / "model.npz"}[path_kind],
            "optimizer": {"none": None, "adam": Adam(model.parameters()), "sgd": SGD(model.parameters()),
                          "other": Adam(VAE(2, (2,), 1).parameters()), "string": "adam"}[drawn["optimizer"][0]],
            "history": {"none": None, "history": History(loss=[1.0], recon=[1.0], kl=[0.0], seconds=[0.1],
                                                         kl_weight=[1.0]), "dict": {}}[drawn["history"][0]],
            "rng": {"none": None, "pcg64": np.random.default_rng(3), "dxsm": np.random.Generator(np.random.PCG64DXSM(3)),
                    "mt19937": np.random.Generator(np.random.MT19937(3)), "random_state": np.random.RandomState(3),
                    7: 7}[drawn["rng"][0]],
        }
        if path_kind == "missing_dir":
            invalid.discard("path")
            if invalid:
                attempt(lambda: save(**values), invalid)
            else:
                with pytest.raises(FileNotFoundError):
                    save(**values)
            assert not (Path(directory) / "missing").exists()
            return
        written = attempt(lambda: save(**values), invalid)
        if written is None:
            assert list(Path(directory).iterdir()) == [], "a refused save left a file"
            return
        saved = load_checkpoint(written)
        assert type(saved.model) is type(model) and saved.model.config() == model.config()
        for (name, a), b in zip(model.state_dict().items(), saved.model.state_dict().values()):
            assert np.array_equal(a, b) and a.dtype == b.dtype, name
        assert (saved.optimizer is None) == (values["optimizer"] is None)
        assert (saved.history is None) == (values["history"] is None)
        assert (saved.rng is None) == (values["rng"] is None)
        if values["rng"] is not None:
            assert saved.rng.random() == values["rng"].random()
        assert [p.name for p in Path(directory).iterdir()] == ["model.npz"]


@fuzz
@given(data=st.data())
def test_loading_a_damaged_checkpoint_raises_checkpoint_error_naming_the_file(data: st.DataObject) -> None:
    model = data.draw(models())
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "model.npz"
        save(model, path, optimizer=Adam(model.parameters()), history=History(), rng=np.random.default_rng(0))
        content = bytearray(path.read_bytes())
        damage = data.draw(st.sampled_from(["truncate", "flip", "overwrite", "insert", "random"]))
        if damage == "truncate":
            content = content[: data.draw(st.integers(0, len(content) - 1))]
        elif damage == "flip":
            for index in data.draw(st.lists(st.integers(0, len(content) - 1), min_size=1, max_size=4)):
                content[index] ^= 1 << data.draw(st.integers(0, 7))
        elif damage == "overwrite":
            start = data.draw(st.integers(0, len(content) - 1))
            chunk = data.draw(st.binary(min_size=1, max_size=16))
            content[start : start + len(chunk)] = chunk
        elif damage == "insert":
            start = data.draw(st.integers(0, len(content)))
            content[start:start] = data.draw(st.binary(min_size=1, max_size=16))
        else:
            content = bytearray(data.draw(st.binary(max_size=64)))
        path.write_bytes(bytes(content))
        try:
            loaded = load_checkpoint(path)
        except CheckpointError as error:
            assert str(error).startswith(str(path)), error
            return
        # damage that misses every checked byte (zip comments, unused header fields) may load
        assert all(np.isfinite(p.value).all() for p in loaded.model.parameters())
        x = np.full((1, loaded.model.input_dim), 0.5)
        assert_array(loaded.model.reconstruct(x), (1, loaded.model.input_dim), loaded.model.dtype)


# -- data sets --------------------------------------------------------------------------------------
def no_network(*args: Any, **kwargs: Any) -> None:
    raise AssertionError("a robustness test tried to download")


@settings(fuzz, max_examples=max(FUZZ_EXAMPLES // 3, 10))
@given(
    name=valid_or(st.sampled_from(["digits"] * 4 + list(datasets.DATASETS)), "Digits", "cifar", None, 3, ["digits"],
                  np.array(["digits", "mnist"])),
    split=valid_or(st.sampled_from(["train", "test", "all"]), "validation", None, ["train"]),
    dtype=valid_or(st.sampled_from([np.float32, np.float64, "uint8", float, "float32"]),
                   np.float16, "int64", int, bool, None, "nonsense"),
    data_dir=valid_or(st.sampled_from(["none", "str", "path"]), 3, b"bytes"),
    download=valid_or(st.sampled_from([False, np.False_]), "no", "yes", 0, None),
)
def test_dataset_load_gives_documented_arrays_or_names_the_bad_argument(name, split, dtype, data_dir, download) -> None:
    drawn = {"name": name, "split": split, "dtype": dtype, "data_dir": data_dir, "download": download}
    invalid = {argument for argument, (_, ok) in drawn.items() if not ok}
    if name[1] and name[0] != "digits" and split[0] == "all":
        invalid.add("split")
    with tempfile.TemporaryDirectory() as directory, mock.patch.object(datasets, "_fetch_to", no_network):
        values = {argument: value for argument, (value, _) in drawn.items()}
        values["data_dir"] = {"none": directory, "str": directory, "path": Path(directory)}.get(values["data_dir"],
                                                                                              values["data_dir"])
        if not invalid and name[0] != "digits":
            with pytest.raises(FileNotFoundError, match=re.escape(directory)):
                datasets.load(**values)
            return
        loaded = attempt(lambda: datasets.load(**values), invalid)
    if loaded is None:
        return
    expected_rows = {"train": 1500, "test": 297, "all": 1797}[split[0]]
    assert loaded.x.shape == (expected_rows, 64) and loaded.labels.shape == (expected_rows,)
    assert loaded.x.dtype == np.dtype(dtype[0]) and loaded.labels.dtype == np.int64
    assert loaded.image_shape == (8, 8) and loaded.name == "digits"
    if loaded.x.dtype.kind == "f":
        assert loaded.x.min() >= 0 and loaded.x.max() <= 1
    assert loaded.labels.min() >= 0 and loaded.labels.max() <= 9


def _idx(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return struct.pack(f">I{len(dims)}I", magic, *dims) + payload


@fuzz
@given(data=st.data())
def test_loading_arbitrary_idx_files_gives_a_valid_dataset_or_a_value_error_naming_the_file(data: st.DataObject) -> None:
    n = data.draw(st.integers(0, 3))
    labels_n = data.draw(st.sampled_from([n, n, n + 1, max(n - 1, 0)]))
    image_magic = data.draw(st.sampled_from([0x803, 0x803, 0x803, 0x801, 0x802, 0x00000000]))
    image_dims = data.draw(st.sampled_from([(n, 28, 28)] * 3 + [(n, 8, 8), (n, 28)]))
    label_magic = data.draw(st.sampled_from([0x801, 0x801, 0x803]))
    pixels = data.draw(st.binary(min_size=math.prod(image_dims), max_size=math.prod(image_dims)))
    labels = bytes(data.draw(st.lists(st.integers(0, 9) | st.integers(0, 255), min_size=labels_n, max_size=labels_n)))
    files = {
        "train-images-idx3-ubyte": _idx(image_magic, image_dims if image_magic == 0x803 else (n,), pixels),
        "train-labels-idx1-ubyte": _idx(label_magic, (labels_n,) if label_magic == 0x801 else (labels_n, 1, 1), labels),
    }
    damage = data.draw(st.sampled_from([None] * 3 + ["truncate", "append"]))
    target = data.draw(st.sampled_from(sorted(files)))
    if damage == "truncate":
        files[target] = files[target][: data.draw(st.integers(0, len(files[target]) - 1))]
    elif damage == "append":
        files[target] += data.draw(st.binary(min_size=1, max_size=8))
    compress = data.draw(st.booleans())
    with tempfile.TemporaryDirectory() as directory, mock.patch.object(datasets, "_fetch_to", no_network):
        for stem, content in files.items():
            if compress:
                content = gzip.compress(content, mtime=0)
                if data.draw(st.booleans()):  # sometimes a damaged gzip stream
                    cut = data.draw(st.integers(0, len(content) - 1))
                    content = content[:cut] + bytes([content[cut] ^ 0xFF]) + content[cut + 1:]
            (Path(directory) / (stem + (".gz" if compress else ""))).write_bytes(content)
        dtype = data.draw(st.sampled_from([np.float32, np.float64, "uint8"]))
        try:
            loaded = datasets.load("mnist", "train", data_dir=directory, download=False, dtype=dtype)
        except ValueError as error:
            assert directory in str(error) or str(error).startswith("mnist:"), error
            return
    assert loaded.x.shape == (len(loaded.labels), 784) and loaded.x.dtype == np.dtype(dtype)
    assert loaded.labels.dtype == np.int64 and ((loaded.labels >= 0) & (loaded.labels <= 9)).all()
    if loaded.x.dtype.kind == "f":
        assert ((loaded.x >= 0) & (loaded.x <= 1)).all()


# -- gradcheck --------------------------------------------------------------------------------------
@fuzz
@given(data=st.data())
def test_gradcheck_reports_or_names_the_bad_argument(data: st.DataObject) -> None:
    count = data.draw(st.integers(0, 2))
    inputs = [data.draw(arbitrary_arrays(st.lists(st.integers(0, 3), max_size=2).map(tuple),
                                         dtypes=st.sampled_from([np.float64] * 8 + [np.float32, np.int64]),
                                         magnitude=1e3))
              for _ in range(count)]
    names_kind = data.draw(st.sampled_from(["none", "given"] * 4 + ["too_few", "string", "numbers"]))
    names = {"none": None, "given": [f"a{i}" for i in range(count)], "too_few": ["a"] * (count - 1) if count else [],
             "string": "ab", "numbers": list(range(count))}[names_kind]
    drawn = {
        "step": data.draw(valid_or(st.sampled_from([1e-6, 1e-4]), 0.0, -1e-6, float("nan"), "1e-6", None)),
        "rtol": data.draw(valid_or(st.sampled_from([1e-5, 0.0, 1e-3]), -1.0, float("inf"), None)),
        "atol": data.draw(valid_or(st.sampled_from([1e-7, 0.0, 1e-4]), -1e-7, float("nan"), "0")),
    }
    behaviour = data.draw(st.sampled_from(["right"] * 6 + ["wrong_grad"] * 3 + ["scalar_only", "array_value",
                                                                              "too_few_grads"]))

    def fun(*arrays: np.ndarray) -> Any:
        value = float(sum((a**2).sum() for a in arrays))
        grads = [(3 if behaviour == "wrong_grad" else 2) * a for a in arrays]
        if behaviour == "scalar_only":
            return value
        if behaviour == "array_value":
            return np.ones(3), grads
        if behaviour == "too_few_grads":
            return value, grads[:-1] if grads else [np.zeros(1)]
        return value, grads

    invalid = {name for name, (_, ok) in drawn.items() if not ok}
    settings_values = {name: value for name, (value, _) in drawn.items()}
    if not invalid and settings_values["rtol"] == 0 and settings_values["atol"] == 0:
        invalid.add("rtol")
    if names_kind == "string" or (names_kind in ("too_few", "numbers") and count):
        invalid.add("names")
    input_names = names if names_kind == "given" else [f"input{i}" for i in range(count)]
    for name, array in zip(input_names, inputs):
        if array.dtype != np.float64 or not np.isfinite(array).all():
            invalid.add(name)
    if behaviour in ("scalar_only", "array_value", "too_few_grads"):
        invalid.add("fun")
    report = attempt(lambda: gradcheck(fun, inputs, names=names, **settings_values), invalid)
    if report is None:
        return
    assert [entry.name for entry in report.entries] == input_names
    assert all(math.isfinite(entry.max_abs_error) for entry in report.entries)
    largest = max((max_abs(a) for a in inputs), default=0.0)
    if behaviour == "wrong_grad" and largest >= 1:
        assert not report.passed, str(report)  # an error of |x| is never within tolerance
    if behaviour == "right" and largest <= 1 and settings_values["atol"] >= 1e-7:
        # (with atol = 0, entries near 0 fail: their difference quotient rounds to 0)
        assert report.passed, str(report)
    assert str(report).startswith("gradcheck")


# -- example-based checks of the fixes made with this file -------------------------------------------
def tiny_vae(**kwargs: Any) -> VAE:
    return VAE(4, (3,), 2, **kwargs)


def test_fit_on_data_that_overflow_a_gaussian_vae_raises_training_error_not_numpy_warnings() -> None:
    model = tiny_vae(output="gaussian")
    with pytest.raises(TrainingError, match=r"epoch 1, batch 1 .*first step: check the scale of x_train, "
                                            r"largest \|value\| = 1e\+30"):
        fit(model, np.full((3, 4), 1e30), 2)


def test_fit_raises_training_error_when_the_validation_loss_overflows_and_records_nothing() -> None:
    model, history, epochs_seen = tiny_vae(output="gaussian"), History(), []
    with pytest.raises(TrainingError, match=r"non-finite validation loss after epoch 1 .*x_val") as caught:
        fit(model, np.full((3, 4), 0.5), 2, x_val=np.full((2, 4), 1e30), history=history,
            callbacks=[lambda epoch, h: epochs_seen.append(epoch)])
    assert (caught.value.epoch, caught.value.batch) == (1, 0)
    assert len(history) == 0 and history.as_dict() == History().as_dict() and epochs_seen == []


def test_fit_raises_training_error_when_an_update_overflows_the_parameters() -> None:
    model, epochs_seen = AE(4, (3,), 2, output="gaussian"), []
    with pytest.raises(TrainingError, match="non-finite parameters after epoch 1") as caught:
        fit(model, np.full((4, 4), 3.0), 3, batch_size=4, optimizer=SGD(model.parameters(), lr=1e308),
            callbacks=[lambda epoch, h: epochs_seen.append(epoch)])
    assert (caught.value.epoch, caught.value.batch) == (1, 0) and epochs_seen == []


def test_training_error_says_when_an_earlier_update_already_broke_the_parameters() -> None:
    model = AE(4, (3,), 2, output="gaussian")
    with pytest.raises(TrainingError, match="the parameters are already non-finite"):
        fit(model, np.full((8, 4), 3.0), 1, batch_size=4, optimizer=SGD(model.parameters(), lr=1e308))


def test_evaluate_names_x_when_the_loss_overflows() -> None:
    with pytest.raises(ValueError, match=r"^x: the model's loss on these data is not finite"):
        evaluate(tiny_vae(output="gaussian"), np.full((2, 4), 1e30))


@pytest.mark.parametrize("writer", ["save", "to_csv"])
def test_an_empty_path_is_a_value_error_naming_path(writer: str) -> None:
    with pytest.raises(ValueError, match="^path: expected a file name, got ''"):
        if writer == "save":
            save(tiny_vae(), "")
        else:
            History().to_csv("")
    with pytest.raises(ValueError, match="^path: "):
        load("")


@pytest.mark.parametrize("part", ["model", "optimizer"])
def test_save_refuses_non_finite_values_and_keeps_the_old_file(tmp_path: Path, part: str) -> None:
    model, path = tiny_vae(), tmp_path / "model.npz"
    optimizer = Adam(model.parameters())
    save(model, path, optimizer=optimizer)
    before = path.read_bytes()
    if part == "model":
        model.head.bias.value[0] = np.nan
    else:
        optimizer.exp_avg[1] = np.inf
    with pytest.raises(ValueError, match=f"^{part}: .* holds NaN or inf; refusing to save"):
        save(model, path, optimizer=optimizer)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["model.npz"]


def _rewrite_member(path: Path, member: str, array: np.ndarray) -> None:
    """Replace one array of an npz in place (a checkpoint written by some other tool)."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays[member] = array
    with open(path, "wb") as file:
        np.savez(file, **arrays)


@pytest.mark.parametrize("member", ["param/head.weight", "optim/exp_avg_sq"])
def test_load_rejects_non_finite_parameters_and_optimizer_state(tmp_path: Path, member: str) -> None:
    model, path = tiny_vae(), tmp_path / "model.npz"
    save(model, path, optimizer=Adam(model.parameters()))
    with np.load(path) as archive:
        damaged = archive[member].copy()
    damaged.flat[0] = np.nan
    _rewrite_member(path, member, damaged)
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(path))}: {member}: expected finite values"):
        load_checkpoint(path)


def test_dataset_load_refuses_a_truthy_non_bool_download_before_touching_the_network(tmp_path: Path) -> None:
    with mock.patch.object(datasets, "_fetch_to", no_network):
        with pytest.raises(TypeError, match="^download: expected True or False, got 'no'"):
            datasets.load("mnist", data_dir=tmp_path, download="no")


@pytest.mark.parametrize(("call", "name"), [
    (lambda: datasets.load("mnist", data_dir=3, download=False), "data_dir"),
    (lambda: datasets.load("digits", data_dir=b"/tmp"), "data_dir"),
    (lambda: datasets.read_idx(None), "path"),
])
def test_dataset_paths_of_the_wrong_type_are_type_errors_naming_them(call: Callable[[], Any], name: str) -> None:
    with pytest.raises(TypeError, match=f"^{name}: expected a str or os.PathLike"):
        call()


def test_dataset_names_given_as_arrays_are_refused_naming_name() -> None:
    with pytest.raises(ValueError, match="^name: expected one of"):
        datasets.load(np.array(["digits", "mnist"]))
    with pytest.raises(ValueError, match="^split: expected one of"):
        datasets.load("digits", split=np.array(["train", "test"]))


@pytest.mark.parametrize(("arguments", "error", "name"), [
    ({"step": 0.0}, ValueError, "step"),
    ({"step": float("nan")}, ValueError, "step"),
    ({"step": "1e-6"}, TypeError, "step"),
    ({"rtol": -1.0}, ValueError, "rtol"),
    ({"rtol": 0.0, "atol": 0.0}, ValueError, "rtol, atol"),
    ({"names": "ab"}, TypeError, "names"),
])
def test_gradcheck_checks_its_settings(arguments: dict, error: type, name: str) -> None:
    cubic = lambda x: (float((x**3).sum()), [3 * x**2])  # noqa: E731
    with pytest.raises(error, match=f"^{re.escape(name)}: "):
        gradcheck(cubic, [np.ones(2)], **arguments)


@pytest.mark.parametrize(("fun", "inputs", "error", "name"), [
    (None, [np.ones(2)], TypeError, "fun"),
    (lambda x: float(x.sum()), [np.ones(2)], TypeError, "fun"),
    (lambda x: (x, [np.ones(2)]), [np.ones(2)], TypeError, "fun"),
    (lambda x: (0.0, None), [np.ones(2)], TypeError, "fun"),
    (lambda x: (0.0, ["abc"]), [np.ones(2)], TypeError, "fun"),
    (lambda x: (0.0, [x]), np.ones(2), TypeError, "inputs"),
    (lambda x: (0.0, [x]), [np.array([1.0, np.nan])], ValueError, "input0"),
])
def test_gradcheck_names_a_bad_function_or_input(fun: Any, inputs: Any, error: type, name: str) -> None:
    with pytest.raises(error, match=f"^{name}: "):
        gradcheck(fun, inputs)


def test_gradcheck_refuses_a_read_only_input_instead_of_failing_inside_numpy() -> None:
    x = np.ones(2)
    x.setflags(write=False)
    with pytest.raises(ValueError, match="^input0: expected a writeable array"):
        gradcheck(lambda a: (float(a.sum()), [np.ones(2)]), [x])


@pytest.mark.parametrize(("module", "rng", "error", "name"), [
    (None, np.random.default_rng(0), TypeError, "module"),
    (lambda x: x, np.random.default_rng(0), TypeError, "module"),
    (VAE(2, (2,), 1), np.random.default_rng(0), TypeError, "module"),
    (Dense(2, 2, rng=np.random.default_rng(0)), None, TypeError, "rng"),
    (Dense(2, 2, rng=np.random.default_rng(0)), 0, TypeError, "rng"),
])
def test_gradcheck_module_names_a_bad_module_or_rng(module: Any, rng: Any, error: type, name: str) -> None:
    with pytest.raises(error, match=f"^{name}: "):
        gradcheck_module(module, np.ones((2, 2)), rng=rng)


def test_gradcheck_module_refuses_step_zero_instead_of_dividing_by_it() -> None:
    with pytest.raises(ValueError, match="^step: "):
        gradcheck_module(Dense(2, 2, rng=np.random.default_rng(0)), np.ones((2, 2)), rng=np.random.default_rng(0),
                         step=0.0)


@pytest.mark.parametrize(("grad_z", "error"), [
    ([[0.0, 0.0]], TypeError), (np.zeros((1, 2), dtype=np.int64), TypeError),
    (np.zeros((2, 2)), ValueError), (np.zeros((1, 2), dtype=np.float32), ValueError),
])
def test_reparameterization_backward_names_a_malformed_gradient(grad_z: Any, error: type) -> None:
    reparam = Reparameterization()
    reparam.forward(np.zeros((1, 2)), np.zeros((1, 2)), eps=np.ones((1, 2)))
    with pytest.raises(error, match="^grad_z: "):
        reparam.backward(grad_z)


def test_reparameterization_needs_a_batch_of_codes() -> None:
    with pytest.raises(ValueError, match=r"^mu: expected a 2-D array \(batch, latent_dim\), got shape \(3,\)"):
        Reparameterization().forward(np.zeros(3), np.zeros(3), rng=np.random.default_rng(0))


@pytest.mark.parametrize("function", ["save_image_grid", "save_reconstructions"])
def test_plots_refuse_integer_images_instead_of_clipping_them_to_white(tmp_path: Path, function: str) -> None:
    from npvae import plots

    pixels = np.arange(8, dtype=np.uint8).reshape(2, 4) * 30
    with pytest.raises(TypeError, match="^(images|x): expected intensities in \\[0, 1\\] as floats, got dtype uint8"):
        if function == "save_image_grid":
            plots.save_image_grid(pixels, (2, 2), tmp_path / "a.png", "title")
        else:
            plots.save_reconstructions(pixels, pixels, (2, 2), tmp_path / "a.png")
    assert list(tmp_path.iterdir()) == []


def test_latent_scatter_refuses_label_values_that_would_need_a_billion_colours(tmp_path: Path) -> None:
    from npvae import plots

    with pytest.raises(ValueError, match="^labels: expected class labels below 256"):
        plots.save_latent_scatter(np.zeros((3, 2)), np.array([0, 1, 10**9]), tmp_path / "a.png")


def test_save_history_points_a_training_history_to_as_dict(tmp_path: Path) -> None:
    from npvae import plots

    with pytest.raises(TypeError, match=r"^history: .*pass history\.as_dict\(\)"):
        plots.save_history(History(), tmp_path / "a.png")


# -- the gaps found in the core files (each was pinned by a strict xfail until fixed; the comment
# -- in each test says what the call did before the fix) ------------------------------------------


@pytest.mark.parametrize("model_class", [AE, VAE])
def test_float32_models_name_x_for_float64_data_beyond_float32_range(model_class: type) -> None:
    # models/base.py _as_batch: the cast warns (RuntimeWarning: overflow in cast) and then says
    # "expected finite values, found NaN or inf" about finite data
    with pytest.raises(ValueError, match=r"^x: .*float32"):
        model_class(4, (3,), 2, output="gaussian", dtype=np.float32).encode(np.full((2, 4), 1e39))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", ["terms", "elbo", "log_likelihood",
                                    "loss_and_grads"])
def test_gaussian_loss_methods_reject_data_that_overflow_naming_x(method: str, dtype: type) -> None:
    # models/vae.py: exp(logvar) overflows; the public methods compute under np.errstate and check
    model, x = tiny_vae(output="gaussian", dtype=dtype), np.full((2, 4), 1e30)
    rng = np.random.default_rng(0)
    call = {"terms": lambda: model.terms(x, rng=rng), "elbo": lambda: model.elbo(x, rng=rng),
            "log_likelihood": lambda: model.log_likelihood(x, k=2, rng=rng),
            "loss_and_grads": lambda: model.loss_and_grads(x, rng=rng)}[method]
    with pytest.raises(ValueError, match="^x: "):
        call()


def test_gaussian_ae_terms_in_float32_do_not_overflow_silently() -> None:
    # models/ae.py: the squared error of 1e30 overflows float32 to inf, with no warning at all
    with pytest.raises(ValueError, match="^x: "):
        AE(4, (3,), 2, output="gaussian", dtype=np.float32).terms(np.full((2, 4), 1e30))


def test_gaussian_vae_terms_with_huge_noise_do_not_overflow_silently() -> None:
    model = tiny_vae(output="gaussian", dtype=np.float32)
    with pytest.raises(ValueError, match="^eps: "):
        model.terms(np.full((2, 4), 0.5), eps=np.full((2, 2), 1e30))


@pytest.mark.parametrize("kl_weight", [float("nan"), float("inf"), -1.0, "a", [1.0]])
def test_loss_and_grads_rejects_a_bad_kl_weight(kl_weight: Any) -> None:
    # models/vae.py loss_and_grads: float(kl_weight) only; NaN/inf/-1 give a NaN or negative-weight loss
    with pytest.raises((ValueError, TypeError), match="^kl_weight: "):
        tiny_vae().loss_and_grads(np.full((2, 4), 0.5), rng=np.random.default_rng(0), kl_weight=kl_weight)


@pytest.mark.parametrize(("arguments", "name"), [
    ({"hidden_dims": None}, "hidden_dims"), ({"hidden_dims": 3.5}, "hidden_dims"),
    ({"negative_slope": "a"}, "negative_slope"), ({"negative_slope": None}, "negative_slope"),
    ({"negative_slope": np.array([0.1, 0.2])}, "negative_slope"),
    ({"activation": np.array(["relu", "tanh"])}, "activation"),
    ({"beta": "a"}, "beta"), ({"beta": None}, "beta"), ({"beta": [1.0]}, "beta"),
    ({"dtype": None}, "dtype"),
])
def test_model_constructors_name_every_bad_argument(arguments: dict, name: str) -> None:
    # models/base.py, models/vae.py, nn.as_float_dtype (dtype=None silently means float64)
    with pytest.raises((TypeError, ValueError), match=f"^{name}: "):
        VAE(4, **arguments)


def test_models_name_x_for_ragged_nested_lists() -> None:
    # models/base.py _as_batch: np.asarray raises NumPy's "inhomogeneous shape" ValueError
    with pytest.raises(ValueError, match="^x: "):
        tiny_vae().encode([[0.1, 0.2, 0.3, 0.4], [0.1]])


@pytest.mark.parametrize(("function", "arguments"), [
    (gaussian_nll, (np.zeros((2, 3)), np.zeros((2, 3)), np.full((2, 3), -1000.0))),  # NaN, true value finite
    (gaussian_nll, (np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32), np.full((2, 3), -100.0, np.float32))),
    (gaussian_kl, (np.zeros((2, 3)), np.full((2, 3), 1000.0))),
    (gaussian_kl, (np.full((2, 3), 1e20, np.float32), np.zeros((2, 3), np.float32))),
    (bce_with_logits, (np.full((2, 3), -1.7e308), np.full((2, 3), 0.5))),
    (squared_error, (np.full((2, 3), 1e200), np.zeros((2, 3)))),
], ids=["nll_logvar_-1000", "nll_float32_logvar_-100", "kl_logvar_1000", "kl_float32_mu_1e20",
        "bce_logits_-1.7e308", "squared_error_1e200"])
def test_losses_do_not_return_nan_or_warn_for_extreme_finite_inputs(function: Callable, arguments: tuple) -> None:
    # losses.py: either a finite, correct value or a ValueError naming the argument
    try:
        value, _ = function(*arguments)
    except ValueError as error:
        assert_names_one_of(error, ("logits", "target", "prediction", "mean", "logvar", "mu"))
        return
    assert np.isfinite(value).all()


def test_dense_forward_handles_an_empty_batch() -> None:
    # nn.py Dense.forward: BLAS raises "unexpected array size" for (0, in_features)
    y = Dense(3, 2, rng=np.random.default_rng(0)).forward(np.zeros((0, 3)))
    assert y.shape == (0, 2)


def _forwarded(layer: Any, shape: tuple[int, int] = (2, 2)) -> Any:
    layer.forward(np.zeros(shape))
    return layer


@pytest.mark.parametrize(("make_layer", "grad"), [
    (lambda: _forwarded(Dense(2, 2, rng=np.random.default_rng(0))), np.zeros((5, 2))),  # _fblas.error
    (lambda: _forwarded(Dense(2, 2, rng=np.random.default_rng(0))), [[0.0, 0.0], [0.0, 0.0]]),  # AttributeError
    (lambda: ReLU(), np.zeros((2, 2))),  # backward before forward: AttributeError
    (lambda: _forwarded(ReLU()), [[0.0, 0.0], [0.0, 0.0]]),
    (lambda: _forwarded(Tanh()), np.zeros((3, 3))),  # NumPy broadcast error, unnamed
    (lambda: _forwarded(Sigmoid()), np.zeros((2, 2), dtype=np.int64)),  # UFuncTypeError, unnamed
    (lambda: _forwarded(LeakyReLU()), np.zeros((2, 2), dtype=np.int64)),
], ids=["dense_batch", "dense_list", "relu_before_forward", "relu_list", "tanh_shape", "sigmoid_int", "leaky_int"])
def test_layer_backwards_refuse_malformed_gradients(make_layer: Callable, grad: Any) -> None:
    # nn.py, activations.py: O(1) checks (ndarray, shape, dtype) at the top of backward
    layer = make_layer()
    with pytest.raises((TypeError, ValueError, RuntimeError), match="^(grad_out: |.*before forward)"):
        layer.backward(grad)


@pytest.mark.parametrize("slope", [float("nan"), "a", 1e200, -5.0])
def test_dense_and_leaky_relu_check_negative_slope(slope: Any) -> None:
    # nn.py Dense: NaN gives NaN weights silently, "a" a bare TypeError, 1e200 OverflowError,
    # -5 is accepted; activations.py LeakyReLU("a"): bare TypeError
    with pytest.raises((TypeError, ValueError), match="^negative_slope: "):
        Dense(3, 2, rng=np.random.default_rng(0), negative_slope=slope)
    with pytest.raises((TypeError, ValueError), match="^negative_slope: "):
        LeakyReLU(slope)


@pytest.mark.parametrize("value", ["abc", None, np.zeros(3, dtype=np.int64)])
def test_parameter_refuses_non_float_values(value: Any) -> None:
    # nn.py Parameter: accepts str/None/int arrays; Adam.step then fails with UFuncTypeError
    with pytest.raises(TypeError, match="^value: "):
        Parameter(value)


@pytest.mark.parametrize(("optimizer_class", "arguments", "name"), [
    (SGD, {"lr": "a"}, "lr"), (SGD, {"lr": None}, "lr"), (SGD, {"lr": True}, "lr"),
    (SGD, {"momentum": [0.9]}, "momentum"), (SGD, {"momentum": 0.9, "nesterov": "yes"}, "nesterov"),
    (Adam, {"betas": (0.9, "x")}, "betas"), (Adam, {"eps": None}, "eps"),
])
def test_optimizers_name_non_numeric_hyperparameters(optimizer_class: type, arguments: dict, name: str) -> None:
    # optim.py _check_hyper: float(value) raises "could not convert string to float" etc.
    with pytest.raises((TypeError, ValueError), match=f"^{name}"):
        optimizer_class(tiny_vae().parameters(), **arguments)


def test_optimizers_name_params_when_given_a_model() -> None:
    # optim.py Optimizer: list(params) raises "'VAE' object is not iterable"
    with pytest.raises(TypeError, match="^params: "):
        Adam(tiny_vae())


def test_adam_rejects_eps_zero() -> None:
    # optim.py Adam: eps = 0 divides 0 by 0 on a zero gradient (NaN parameters, RuntimeWarning)
    with pytest.raises(ValueError, match="^eps: "):
        Adam(tiny_vae().parameters(), eps=0.0)


def test_clip_grad_norm_names_non_parameters() -> None:
    # optim.py clip_grad_norm: AttributeError 'numpy.ndarray' object has no attribute 'grad'
    with pytest.raises(TypeError, match=r"^params"):
        clip_grad_norm([np.zeros(3)], 1.0)


@pytest.mark.parametrize(("dtype", "big"), [(np.float32, 1e30), (np.float64, 1e200)])
def test_clip_grad_norm_computes_a_representable_norm_without_overflow(dtype: type, big: float) -> None:
    # optim.py clip_grad_norm: sum of squares overflows (norm inf, RuntimeWarning) and the
    # gradients are then scaled by max_norm / inf = 0 although their norm (= big) is representable
    parameter = Parameter(np.zeros(3, dtype=dtype))
    parameter.grad[:] = [big, 1.0, 2.0]
    norm = clip_grad_norm([parameter], 1.0)
    assert norm == pytest.approx(big, rel=1e-6)
    assert np.isclose(np.linalg.norm(parameter.grad.astype(np.float64)), 1.0, rtol=1e-3)


@pytest.mark.parametrize(("key", "value"), [("lr", -1.0), ("lr", np.nan), ("steps", -5), ("steps", 1.5),
                                            ("exp_avg_sq", "negative"), ("exp_avg", "nan")])
def test_optimizer_load_state_dict_validates_values(key: str, value: Any) -> None:
    # optim.py Optimizer.load_state_dict: only keys and shapes are checked
    optimizer = Adam(tiny_vae().parameters())
    state = optimizer.state_dict()
    if value == "negative":
        state[key] = np.full_like(state[key], -1.0)
    elif value == "nan":
        state[key] = np.full_like(state[key], np.nan)
    else:
        state[key] = np.array(value)
    with pytest.raises(ValueError, match=rf"^state\['{key}'\]"):
        optimizer.load_state_dict(state)


@pytest.mark.parametrize("case", ["nan", "beyond_float32", "none"])
def test_module_load_state_dict_names_bad_states(case: str) -> None:
    # nn.py Module.load_state_dict: NaN values are copied in silently; float64 values beyond
    # float32's range warn (overflow in cast) and become inf; None is "'NoneType' object is not iterable"
    model = tiny_vae(dtype=np.float32 if case == "beyond_float32" else np.float64)
    state: Any = model.state_dict()
    if case == "none":
        state = None
    else:
        state["head.weight"] = np.full(state["head.weight"].shape, np.nan if case == "nan" else 1e300)
    with pytest.raises((TypeError, ValueError), match=r"^state"):
        model.load_state_dict(state)


@pytest.mark.parametrize(("mu", "logvar"), [(np.full((1, 2), np.nan), np.zeros((1, 2))),
                                            (np.zeros((1, 2)), np.full((1, 2), 2000.0))])
def test_reparameterization_forward_rejects_non_finite_input_and_overflow(mu: np.ndarray, logvar: np.ndarray) -> None:
    # reparam.py: NaN propagated, exp(logvar / 2) overflowed with a RuntimeWarning. The public
    # forward now checks values; VAE._forward_terms calls the unchecked _forward, so that a
    # diverging fit still raises TrainingError (test_fit_on_data_that_overflow_a_gaussian_vae_...)
    with pytest.raises(ValueError, match="^(mu|logvar)"):
        Reparameterization().forward(mu, logvar, eps=np.zeros((1, 2)))


# -- more checks of those fixes ------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["elbo", "loss_and_grads"])
def test_gaussian_vae_loss_and_grads_names_eps_for_noise_that_overflows(method: str) -> None:
    # the same data with eps = 0 give a finite loss, so the noise is named, not x
    model = tiny_vae(output="gaussian", dtype=np.float32)
    with pytest.raises(ValueError, match=r"^eps: the loss overflows float32"):
        getattr(model, method)(np.full((2, 4), 0.5), eps=np.full((2, 2), 1e30))


def test_vae_loss_and_grads_accepts_integer_and_numpy_kl_weights() -> None:
    model, x, eps = tiny_vae(), np.full((2, 4), 0.5), np.zeros((2, 2))
    values = [model.loss_and_grads(x, eps=eps, kl_weight=weight) for weight in (1, np.float32(1.0), 1.0)]
    assert values[0] == values[1] == values[2]


def test_bce_with_logits_gives_the_finite_value_where_the_fast_row_sums_overflow() -> None:
    # three logits of -1.7e308: (l + |l|) / 2 summed as two halves overflows, the loss is 0
    value, grad = bce_with_logits(np.full((2, 3), -1.7e308), np.zeros((2, 3)))
    np.testing.assert_array_equal(value, [0.0, 0.0])
    np.testing.assert_array_equal(grad, np.zeros((2, 3)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gaussian_losses_accept_the_log_variances_whose_exponential_only_underflows(dtype: type) -> None:
    # gaussian_nll needs exp(-logvar), gaussian_kl exp(logvar): only one side of each can overflow
    big = np.full((2, 3), 1000.0, dtype=dtype)
    zeros = np.zeros((2, 3), dtype=dtype)
    nll, _ = gaussian_nll(zeros, zeros + 1, big)
    kl, _ = gaussian_kl(zeros, -big)
    np.testing.assert_allclose(nll, 0.5 * 3 * (np.log(2 * np.pi) + 1000.0), rtol=1e-6)
    np.testing.assert_allclose(kl, 0.5 * 3 * (-1.0 + 1000.0), rtol=1e-6)


def test_dense_backward_with_an_empty_batch_leaves_the_gradients_unchanged() -> None:
    layer = Dense(3, 2, rng=np.random.default_rng(0))
    layer.forward(np.zeros((0, 3)))
    layer.weight.grad[...] = 1.0
    grad_x = layer.backward(np.zeros((0, 2)))
    assert grad_x.shape == (0, 3)
    assert (layer.weight.grad == 1.0).all() and (layer.bias.grad == 0.0).all()


@pytest.mark.parametrize("grad", [np.zeros((2, 3)), np.zeros((1, 2)), np.zeros((2, 2), np.float32), [[0.0, 0.0]]],
                         ids=["shape", "broadcastable", "dtype", "list"])
def test_identity_backward_checks_its_gradient_like_the_other_activations(grad: Any) -> None:
    layer = make_activation("identity")
    layer.forward(np.zeros((2, 2)))
    with pytest.raises((TypeError, ValueError), match="^grad_out: "):
        layer.backward(grad)


def test_clip_grad_norm_refuses_a_nan_gradient_and_scales_nothing() -> None:
    parameters = [Parameter(np.zeros(2)), Parameter(np.zeros(3))]
    parameters[0].grad[:] = [3.0, 4.0]
    parameters[1].grad[:] = [1.0, np.nan, 2.0]
    with pytest.raises(ValueError, match=r"^params\[1\]\.grad: expected finite values"):
        clip_grad_norm(parameters, 1.0)
    np.testing.assert_array_equal(parameters[0].grad, [3.0, 4.0])


def test_clip_grad_norm_clips_gradients_whose_norm_is_beyond_float64() -> None:
    parameter = Parameter(np.zeros(4))
    parameter.grad[:] = 1e308
    assert clip_grad_norm([parameter], 2.0) == float("inf")
    np.testing.assert_allclose(parameter.grad, 1.0, rtol=1e-12)


@pytest.mark.parametrize("optimizer_class", [SGD, Adam])
def test_optimizer_load_state_dict_changes_nothing_when_the_last_entry_is_bad(optimizer_class: type) -> None:
    model = tiny_vae()
    hyper = {"lr": 0.1, "momentum": 0.9} if optimizer_class is SGD else {"lr": 0.1}
    optimizer = optimizer_class(model.parameters(), **hyper)
    model.loss_and_grads(np.full((2, 4), 0.5), rng=np.random.default_rng(0))
    optimizer.step()
    before = optimizer.state_dict()
    # valid new steps, lr (and first moments); the last array checked is bad
    last = "exp_avg_sq" if optimizer_class is Adam else "momentum_buffer"
    state = {**before, "steps": before["steps"] + 1, "lr": before["lr"] * 2}
    if optimizer_class is Adam:
        state["exp_avg"] = before["exp_avg"] + 1
    state[last] = np.full_like(before[last], -1.0 if optimizer_class is Adam else np.nan)
    with pytest.raises(ValueError, match=rf"^state\['{last}'\]"):
        optimizer.load_state_dict(state)
    after = optimizer.state_dict()
    assert all(np.array_equal(before[key], after[key]) for key in before)


def test_optimizer_load_state_dict_refuses_moments_beyond_the_parameters_dtype() -> None:
    optimizer = Adam(tiny_vae(dtype=np.float32).parameters())
    state = optimizer.state_dict()
    state["exp_avg"] = np.full(state["exp_avg"].shape, 1e300)
    with pytest.raises(ValueError, match=r"^state\['exp_avg'\]: values up to 1e\+300 exceed"):
        optimizer.load_state_dict(state)


def test_module_load_state_dict_changes_nothing_when_a_later_array_is_bad() -> None:
    model = tiny_vae()
    before = model.state_dict()
    state = {name: value + 1.0 for name, value in before.items()}
    last = list(state)[-1]
    state[last] = np.full(state[last].shape, np.inf)
    with pytest.raises(ValueError, match=rf"^state\['{re.escape(last)}'\]: expected finite values"):
        model.load_state_dict(state)
    assert all(np.array_equal(before[name], value) for name, value in model.state_dict().items())


def test_adam_refuses_an_eps_that_vanishes_in_float32() -> None:
    parameters = tiny_vae(dtype=np.float32).parameters()
    with pytest.raises(ValueError, match="^eps: expected a value >= 1.18e-38"):
        Adam(parameters, eps=1e-40)
    Adam(tiny_vae().parameters(), eps=1e-40)  # representable, and normal, in float64
