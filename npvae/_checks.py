"""Argument checks, each rule written once: the public functions of npvae call these at their door.

Every check returns the value in the form the caller keeps (an ``int``, a ``float``, a
``Path``, a ``np.dtype``) or raises ``TypeError`` / ``ValueError`` whose message starts with the
argument's name, then says what was expected and what was given:
``ValueError("epochs: expected an integer >= 0, got -1")``.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np

MAX_MESSAGE_CHARS = 300


def shorten(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text``, cut in the middle to ``limit`` characters, so that an error message stays short.

    A longer text keeps its first and last ``(limit - 5) // 2`` characters around `` ... ``.
    """
    if len(text) <= limit:
        return text
    half = (limit - 5) // 2
    return f"{text[:half]} ... {text[-half:]}"


def float_dtype(dtype: Any, name: str = "dtype") -> np.dtype:
    """``np.dtype(dtype)`` if it is float32 or float64; TypeError otherwise.

    None is refused too, although ``np.dtype(None)`` is float64: a dtype left unset by mistake
    should not silently choose one.
    """
    if dtype is None:
        raise TypeError(f"{name}: expected float32 or float64, got None")
    try:
        resolved = np.dtype(dtype)
    except TypeError as error:
        raise TypeError(f"{name}: expected float32 or float64, got {dtype!r}") from error
    if resolved not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"{name}: expected float32 or float64, got {resolved}")
    return resolved


def real_number(name: str, value: Any) -> float:
    """``float(value)`` for a real number (Python or NumPy int or float, not bool); TypeError
    naming ``name`` otherwise (strings, None, arrays, complex numbers)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__} {value!r}")
    return float(value)


def number_in(name: str, value: Any, low: float, high: float = np.inf, low_open: bool = False) -> float:
    """``value`` as a float if it is a finite real number in [low, high) (or (low, high))."""
    value = real_number(name, value)
    if not (low < value if low_open else low <= value) or not value < high or not np.isfinite(value):
        bracket = "(" if low_open else "["
        raise ValueError(f"{name}: expected a value in {bracket}{low}, {high}), got {value!r}")
    return value


def int_at_least(name: str, value: Any, low: int) -> int:
    """``int(value)`` for an integer (not bool) >= ``low``; ValueError naming ``name`` otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low:
        wanted = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ValueError(f"{name}: expected {wanted}, got {value!r}")
    return int(value)


def positive_int(name: str, value: Any) -> int:
    """``int_at_least(name, value, 1)``."""
    return int_at_least(name, value, 1)


def boolean(name: str, value: Any, allow_none: bool = False) -> bool | None:
    """``bool(value)`` for True or False (or None when ``allow_none``); TypeError otherwise."""
    if value is None and allow_none:
        return None
    if not isinstance(value, (bool, np.bool_)):
        wanted = "True, False or None" if allow_none else "True or False"
        raise TypeError(f"{name}: expected {wanted}, got {value!r}")
    return bool(value)


def generator(rng: Any, name: str = "rng") -> np.random.Generator:
    """``rng`` if it is a ``numpy.random.Generator``; TypeError otherwise."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{name}: expected a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def file_path(path: Any, name: str = "path") -> Path:
    """``Path(path)`` for a non-empty str or os.PathLike."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected str or os.PathLike, got {type(path).__name__}")
    if os.fspath(path) == "":
        raise ValueError(f"{name}: expected a file name, got ''")
    return Path(path)


def negative_slope(value: Any) -> float:
    """The LeakyReLU slope as a float in [0, 1), for Dense, LeakyReLU and the models.

    Below 0 the layer is not monotonic, at 1 it is linear, and ``LeakyReLU`` relies on
    0 <= a < 1 (max(x, a x) picks the right branch); NaN fails the comparison too.
    """
    slope = real_number("negative_slope", value)
    if not 0.0 <= slope < 1.0:
        raise ValueError(f"negative_slope: expected a value in [0, 1), got {value!r}")
    return slope


def float_array(name: str, array: Any) -> np.ndarray:
    """``array`` if it is a float32 or float64 ndarray; TypeError naming ``name`` otherwise."""
    if not isinstance(array, np.ndarray) or array.dtype not in (np.float32, np.float64):
        given = f"dtype {array.dtype}" if isinstance(array, np.ndarray) else type(array).__name__
        raise TypeError(f"{name}: expected a float32 or float64 ndarray, got {given}")
    return array


def largest_magnitude(array: np.ndarray) -> str:
    """max |array| as text, exact in any float precision (longdouble beyond float64 included)."""
    return np.format_float_scientific(np.abs(array).max(initial=0), precision=3, trim="-")


def state_array(name: str, array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``array`` in ``dtype`` for loading as state ``name``; ValueError if it holds NaN or inf,
    or values that overflow ``dtype`` (1e300 into float32), naming ``state[name]``."""
    with np.errstate(over="ignore"):  # values beyond the dtype's range are reported below
        converted = array.astype(dtype, copy=False)
    if not np.isfinite(converted).all():
        if not np.isfinite(array).all():
            raise ValueError(f"state[{name!r}]: expected finite values, found NaN or inf")
        raise ValueError(
            f"state[{name!r}]: values up to {largest_magnitude(array)} exceed the range of "
            f"the parameters' dtype {dtype}"
        )
    return converted
