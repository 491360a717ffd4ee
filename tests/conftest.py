"""Shared hypothesis settings and strategies for the npvae tests.

Import the strategies from a test module with ``from conftest import float_arrays, ...``
(pytest puts ``tests/`` on ``sys.path`` because the directory has no ``__init__.py``).

Settings: the profile "npvae" (loaded by default) runs 25 examples per property with no
deadline (gradient checks take a variable few milliseconds); a failure prints the
``@reproduce_failure`` blob, and hypothesis's example database (``.hypothesis/``, git-ignored)
replays it first on the next run. Set ``NPVAE_HYPOTHESIS_PROFILE=thorough`` for 500 examples
per property.

Sizes stay small (batch 1..5, dims 1..6): a central-difference gradient check evaluates the
function twice per input entry, and small shapes already reach every branch.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

# the kernel_set fixture below is function-scoped on purpose: it selects the kernels for all of a
# property's examples, so Hypothesis's warning about function-scoped fixtures does not apply
_QUIET = [HealthCheck.function_scoped_fixture]
settings.register_profile("npvae", max_examples=25, deadline=None, print_blob=True, suppress_health_check=_QUIET)
settings.register_profile("thorough", max_examples=500, deadline=None, print_blob=True, suppress_health_check=_QUIET)
# CI (CI=true): the same examples on every run, so that a red CI always means a real, repeatable failure
settings.register_profile("ci", max_examples=25, deadline=None, print_blob=True, derandomize=True,
                          suppress_health_check=_QUIET)
settings.load_profile(os.environ.get("NPVAE_HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "npvae"))

MAX_BATCH = 5
MAX_DIM = 6

#: Step of the central differences in ``npvae.gradcheck``; inputs kept at least
#: ``KINK_MARGIN`` away from a kink are never carried across it by a perturbation.
GRADCHECK_STEP = 1e-6
KINK_MARGIN = 1e-3

batch_sizes = st.integers(1, MAX_BATCH)
dims = st.integers(1, MAX_DIM)
seeds = st.integers(0, 2**32 - 1)
float_dtypes = st.sampled_from([np.float32, np.float64])
leaky_slopes = st.sampled_from([0.0, 0.01, 0.2, 0.5, 0.99])


@st.composite
def shapes(draw: st.DrawFn, max_batch: int = MAX_BATCH, max_dim: int = MAX_DIM) -> tuple[int, int]:
    """A (batch, dim) shape with 1 <= batch <= max_batch and 1 <= dim <= max_dim."""
    return draw(st.integers(1, max_batch)), draw(st.integers(1, max_dim))


def _floats(low: float, high: float, dtype: np.dtype) -> st.SearchStrategy[float]:
    width = np.dtype(dtype).itemsize * 8
    return st.floats(low, high, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=width)


def float_arrays(
    shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]] | None = None,
    *,
    low: float = -3.0,
    high: float = 3.0,
    dtype: np.dtype = np.float64,
) -> st.SearchStrategy[np.ndarray]:
    """Float arrays of ``dtype`` with every value in [low, high] (finite, no subnormals).

    ``shape`` is a tuple, a strategy for one, or None for ``shapes()``.
    """
    return hnp.arrays(np.dtype(dtype), shapes() if shape is None else shape, elements=_floats(low, high, dtype))


def arrays_away_from_zero(
    shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]] | None = None,
    *,
    margin: float = KINK_MARGIN,
    high: float = 3.0,
    dtype: np.dtype = np.float64,
) -> st.SearchStrategy[np.ndarray]:
    """Float arrays with every |value| in [margin, high]: both signs, never near the kink at 0.

    With margin = 1e-3 much larger than the gradient-check step 1e-6, a finite-difference
    perturbation never changes the sign of an entry, so ReLU and LeakyReLU are smooth there.
    """
    elements = _floats(margin, high, dtype) | _floats(-high, -margin, dtype)
    return hnp.arrays(np.dtype(dtype), shapes() if shape is None else shape, elements=elements)


def unit_interval_arrays(
    shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]] | None = None,
    *,
    dtype: np.dtype = np.float64,
) -> st.SearchStrategy[np.ndarray]:
    """Float arrays with values in [0, 1] (Bernoulli targets, pixel intensities), 0 and 1 included."""
    return float_arrays(shape, low=0.0, high=1.0, dtype=dtype)


@st.composite
def same_shape_arrays(
    draw: st.DrawFn,
    count: int,
    *,
    low: float = -3.0,
    high: float = 3.0,
    dtype: np.dtype = np.float64,
) -> tuple[np.ndarray, ...]:
    """``count`` arrays of one drawn (batch, dim) shape, each with values in [low, high]."""
    shape = draw(shapes())
    return tuple(draw(float_arrays(shape, low=low, high=high, dtype=dtype)) for _ in range(count))


# -- arbitrary input, for the robustness tests (tests/test_robustness.py) ---------------------------
#: Every kind of array a caller might pass where floats are expected.
ANY_DTYPES = (np.float16, np.float32, np.float64, np.int8, np.uint8, np.int64, np.bool_, np.complex128)
any_dtypes = st.sampled_from(ANY_DTYPES)

#: Objects that are not arrays at all, for arguments that expect one.
junk = st.sampled_from([None, "abc", b"\x00\x01", 3, 2.5, True, {}, (), object()])


@st.composite
def batch_shapes(draw: st.DrawFn, width: int, max_batch: int = MAX_BATCH) -> tuple[int, ...]:
    """Usually a valid (batch, width) shape; otherwise one that a (batch, width) argument must
    refuse: another width, an empty batch, a single vector (width,), 3-D, or 0-d."""
    batch = draw(st.integers(1, max_batch))
    kind = draw(st.sampled_from(["valid"] * 10 + ["width", "empty", "vector", "3-D", "0-d"]))
    if kind == "width":
        return (batch, draw(st.integers(0, MAX_DIM + 1).filter(lambda w: w != width)))
    if kind == "empty":
        return (0, width)
    if kind == "vector":
        return (width,)
    if kind == "3-D":
        return (batch, width, draw(st.integers(1, 2)))
    if kind == "0-d":
        return ()
    return (batch, width)


def _elements(dtype: np.dtype, regime: str, magnitude: float) -> st.SearchStrategy:
    """Values representable in ``dtype`` for one value regime (see ``arbitrary_arrays``)."""
    if dtype.kind == "b":
        return st.booleans()
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return st.integers(max(info.min, 0), min(info.max, 255)) if regime != "wide" else st.integers(info.min, info.max)
    if dtype.kind == "c":
        if regime == "nonfinite":
            return st.complex_numbers(allow_nan=True, allow_infinity=True)
        return st.complex_numbers(max_magnitude=min(magnitude, 1e300), allow_nan=False, allow_infinity=False)
    width = dtype.itemsize * 8
    bound = float(dtype.type(min(magnitude, float(np.finfo(dtype).max))))
    unit = st.floats(0.0, 1.0, width=width)
    if regime == "unit":
        return unit
    if regime == "pixels":
        return st.integers(0, int(min(255, magnitude))).map(float)
    if regime == "wide":
        return st.floats(-bound, bound, width=width)
    return unit | st.sampled_from([float("nan"), float("inf"), float("-inf")])


@st.composite
def arbitrary_arrays(
    draw: st.DrawFn,
    shape: tuple[int, ...] | st.SearchStrategy[tuple[int, ...]],
    *,
    dtypes: st.SearchStrategy = any_dtypes,
    magnitude: float = 1e30,
    nonfinite: bool = True,
) -> np.ndarray:
    """An array of any dtype from ``dtypes`` and the given shape, its values from one regime:
    "unit" (floats in [0, 1]: valid data for a Bernoulli model), "pixels" (0..255, as raw image
    bytes would be), "wide" (|value| <= magnitude, extremes included) or, when ``nonfinite``,
    "nonfinite" (values in [0, 1] mixed with NaN, inf and -inf). Float values never exceed
    ``magnitude``; integer arrays span 0..255 or, in the "wide" regime, their whole range."""
    dtype = np.dtype(draw(dtypes))
    regimes = ["unit", "unit", "pixels", "wide"] + (["nonfinite"] if nonfinite else [])
    regime = draw(st.sampled_from(regimes))
    return draw(hnp.arrays(dtype, shape, elements=_elements(dtype, regime, magnitude)))


@st.composite
def array_arguments(draw: st.DrawFn, arrays: st.SearchStrategy[np.ndarray]) -> object:
    """What a caller passes for an array argument: usually the ndarray, sometimes the same
    values as nested Python lists, sometimes something that is no array at all (``junk``)."""
    array = draw(arrays)
    form = draw(st.sampled_from(["ndarray"] * 6 + ["list", "junk"]))
    if form == "list":
        return array.tolist()
    if form == "junk":
        return draw(junk)
    return array


@pytest.fixture(params=["fast", "reference"])
def kernel_set(request: pytest.FixtureRequest):
    """Run the test once on each kernel set of ``npvae.kernels`` (the fast default and the plain
    NumPy reference); the set in use is restored afterwards. Yields the set's name."""
    from npvae import kernels

    with kernels.using(request.param):
        yield request.param
