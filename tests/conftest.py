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
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

settings.register_profile("npvae", max_examples=25, deadline=None, print_blob=True)
settings.register_profile("thorough", max_examples=500, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("NPVAE_HYPOTHESIS_PROFILE", "npvae"))

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
