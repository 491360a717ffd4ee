"""Gradient checking: compare a hand-written gradient with central finite differences.

For a scalar function f and each entry x_i of each input,

    numeric_i = (f(x + h e_i) - f(x - h e_i)) / (2 h),

whose error is O(h^2) (truncation: h^2/6 * f''') plus O(eps_machine * |f| / h) (rounding).
In float64 (eps_machine ~ 2.2e-16) the default h = 1e-6 keeps both near 1e-10 for functions of
moderate size and curvature, so an entry passes when

    |analytic_i - numeric_i| <= atol + rtol * max(|analytic_i|, |numeric_i|),

with rtol = 1e-5 and atol = 1e-7 by default: three or more orders of magnitude above the
finite-difference noise, and far below the error of any real mistake in a backward (which is
of the size of the gradient itself). Checks run in float64 only; float32 would drown the
comparison in rounding noise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from . import _checks
from .nn import Module

__all__ = ["GradcheckEntry", "GradcheckReport", "gradcheck", "gradcheck_module",
           "DEFAULT_STEP", "DEFAULT_RTOL", "DEFAULT_ATOL"]

DEFAULT_STEP = 1e-6
DEFAULT_RTOL = 1e-5
DEFAULT_ATOL = 1e-7


@dataclass(frozen=True)
class GradcheckEntry:
    """The comparison for one array: its worst entry and the largest errors seen."""

    name: str
    max_abs_error: float
    max_rel_error: float
    worst_index: tuple[int, ...]
    analytic: float
    numeric: float
    passed: bool


@dataclass(frozen=True)
class GradcheckReport:
    """One ``GradcheckEntry`` per checked array; ``passed`` when every entry passed."""

    entries: tuple[GradcheckEntry, ...]
    step: float
    rtol: float
    atol: float

    @property
    def passed(self) -> bool:
        return all(entry.passed for entry in self.entries)

    @property
    def max_rel_error(self) -> float:
        return max((entry.max_rel_error for entry in self.entries), default=0.0)

    @property
    def max_abs_error(self) -> float:
        return max((entry.max_abs_error for entry in self.entries), default=0.0)

    def __str__(self) -> str:
        lines = [f"gradcheck (central differences, h={self.step:g}, rtol={self.rtol:g}, atol={self.atol:g})",
                 f"{'array':<28}{'max rel err':>13}{'max abs err':>13}  worst entry (analytic vs numeric)"]
        for e in self.entries:
            flag = "ok" if e.passed else "FAIL"
            lines.append(f"{e.name:<28}{e.max_rel_error:>13.2e}{e.max_abs_error:>13.2e}  "
                         f"{e.worst_index} {e.analytic:.10g} vs {e.numeric:.10g}  {flag}")
        return "\n".join(lines)


def _compare(name: str, analytic: np.ndarray, numeric: np.ndarray, rtol: float, atol: float) -> GradcheckEntry:
    abs_error = np.abs(analytic - numeric)
    scale = np.maximum(np.abs(analytic), np.abs(numeric))
    rel_error = abs_error / np.maximum(scale, np.finfo(np.float64).tiny)
    # > 1 means the entry fails; an exact match passes even with atol = 0 and scale = 0 (0 / 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        violation = np.where(abs_error == 0, 0.0, abs_error / (atol + rtol * scale))
    worst = np.unravel_index(int(np.argmax(violation)), violation.shape) if violation.size else ()
    return GradcheckEntry(
        name=name,
        max_abs_error=float(abs_error.max(initial=0.0)),
        max_rel_error=float(np.where(abs_error > 0, rel_error, 0.0).max(initial=0.0)),
        worst_index=tuple(int(i) for i in worst),
        analytic=float(analytic[worst]) if violation.size else 0.0,
        numeric=float(numeric[worst]) if violation.size else 0.0,
        passed=bool(np.all(violation <= 1.0)),
    )


def _numeric_gradient(value_of: Callable[[], float], array: np.ndarray, step: float) -> np.ndarray:
    """Central differences of value_of() with respect to each entry of ``array``, perturbed in place."""
    numeric = np.empty_like(array)
    for index in np.ndindex(array.shape):
        original = array[index]
        array[index] = original + step
        plus = value_of()
        array[index] = original - step
        minus = value_of()
        array[index] = original
        numeric[index] = (plus - minus) / (2.0 * step)
    return numeric


def _check_float64(name: str, array: np.ndarray) -> None:
    """A finite, writeable float64 ndarray (its entries are perturbed in place and restored)."""
    if not isinstance(array, np.ndarray) or array.dtype != np.float64:
        given = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
        raise TypeError(f"{name}: gradient checks run in float64, got {given}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: expected finite values, found NaN or inf")
    if not array.flags.writeable:
        raise ValueError(f"{name}: expected a writeable array (entries are perturbed in place and restored)")


def _check_settings(step: float, rtol: float, atol: float) -> tuple[float, float, float]:
    """step > 0, rtol >= 0, atol >= 0, all finite, not both tolerances 0."""
    checked = []
    for name, value in (("step", step), ("rtol", rtol), ("atol", atol)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
        value = float(value)
        if not np.isfinite(value) or value < 0 or (name == "step" and value == 0):
            wanted = "a finite value > 0" if name == "step" else "a finite value >= 0"
            raise ValueError(f"{name}: expected {wanted}, got {value!r}")
        checked.append(value)
    if checked[1] == 0 and checked[2] == 0:
        raise ValueError("rtol, atol: expected at least one of them > 0 (finite differences are never exact), got 0 and 0")
    return checked[0], checked[1], checked[2]


def _evaluate(fun: Callable[..., tuple[float, Sequence[np.ndarray]]], inputs: list[np.ndarray]
              ) -> tuple[float, Sequence[object]]:
    """fun(*inputs), checked to be a pair (real scalar value, sequence of gradients)."""
    result = fun(*inputs)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise TypeError(f"fun: expected to return a pair (value, grads), got {type(result).__name__}")
    value, grads = result
    value = np.asarray(value)
    if value.shape != () or value.dtype.kind not in "biuf":
        raise TypeError(f"fun: expected a real scalar value, got dtype {value.dtype} shape {value.shape}")
    if isinstance(grads, (str, bytes, np.ndarray)) or not isinstance(grads, Sequence):
        raise TypeError(f"fun: expected a sequence of gradients, one per input, got {type(grads).__name__}")
    return float(value), grads


def gradcheck(
    fun: Callable[..., tuple[float, Sequence[np.ndarray]]],
    inputs: Sequence[np.ndarray],
    *,
    names: Sequence[str] | None = None,
    step: float = DEFAULT_STEP,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
) -> GradcheckReport:
    """Check the gradients that ``fun`` returns against central finite differences.

    Parameters
    ----------
    fun : callable
        ``fun(*inputs) -> (value, grads)``: a scalar value and one gradient per input, each of
        the input's shape. (Wrap a per-example loss as ``lambda *a: (v.sum(), g)``.)
    inputs : sequence of float64 arrays
        The point at which to check: finite, writeable (entries are perturbed in place and
        restored).
    names : names of the inputs for the report (default "input0", "input1", ...).
    step, rtol, atol : see the module docstring for the defaults and why. step > 0; rtol,
        atol >= 0, not both 0.

    Raises
    ------
    TypeError
        ``fun`` not callable or not returning (real scalar, gradients); inputs not float64
        arrays; names not strings.
    ValueError
        Non-finite or read-only inputs; counts or shapes that do not match; bad step or
        tolerances.
    """
    if not callable(fun):
        raise TypeError(f"fun: expected a callable, got {type(fun).__name__}")
    if isinstance(inputs, (str, bytes, np.ndarray)) or not isinstance(inputs, Sequence):
        raise TypeError(f"inputs: expected a sequence of float64 arrays, e.g. [x], got {type(inputs).__name__}")
    inputs = list(inputs)
    if names is None:
        names = [f"input{i}" for i in range(len(inputs))]
    elif isinstance(names, str) or not isinstance(names, Sequence) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"names: expected a sequence of strings, one per input, got {names!r}")
    names = list(names)
    if len(names) != len(inputs):
        raise ValueError(f"names: expected {len(inputs)} names, got {len(names)}")
    step, rtol, atol = _check_settings(step, rtol, atol)
    for name, array in zip(names, inputs):
        _check_float64(name, array)
    _, given_grads = _evaluate(fun, inputs)
    if len(given_grads) != len(inputs):
        raise ValueError(f"fun: expected {len(inputs)} gradients, got {len(given_grads)}")
    grads = []
    for name, grad in zip(names, given_grads):
        grad = np.asarray(grad)
        if grad.dtype.kind not in "biuf":
            raise TypeError(f"fun: gradient for {name} is not a real array, got dtype {grad.dtype}")
        grads.append(grad.astype(np.float64))
    entries = []
    for name, array, grad in zip(names, inputs, grads):
        if grad.shape != array.shape:
            raise ValueError(f"fun: gradient for {name} has shape {grad.shape}, expected {array.shape}")
        numeric = _numeric_gradient(lambda: _evaluate(fun, inputs)[0], array, step)
        entries.append(_compare(name, grad, numeric, rtol, atol))
    return GradcheckReport(tuple(entries), step, rtol, atol)


def gradcheck_module(
    module: Module,
    x: np.ndarray,
    *,
    rng: np.random.Generator,
    step: float = DEFAULT_STEP,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
) -> GradcheckReport:
    """Check a module's input gradient and every parameter gradient.

    The scalar checked is L = sum(module(x) * w), with w a fixed random array from ``rng``:
    a random projection exercises every output, and dL/dy = w is what backward receives.
    The module's existing parameter grads are overwritten (zeroed first).

    ``module`` is a layer with its own ``forward(x)`` (Dense, an activation, a Sequential); a
    model (AE, VAE) has none: check its ``loss_and_grads`` with :func:`gradcheck` instead.
    ``x`` and the parameters must be finite float64 arrays. Raises TypeError / ValueError as
    :func:`gradcheck` does, and TypeError for a non-Module or a non-Generator ``rng``.
    """
    if not isinstance(module, Module):
        raise TypeError(f"module: expected an npvae Module, got {type(module).__name__}")
    if type(module).forward is Module.forward:
        raise TypeError(
            f"module: {type(module).__name__} has no forward(x) of its own (a model? check its "
            "loss_and_grads with gradcheck instead)"
        )
    _checks.generator(rng)
    step, rtol, atol = _check_settings(step, rtol, atol)
    _check_float64("x", x)
    for name, parameter in module.named_parameters():
        _check_float64(name, parameter.value)
    x = x.copy()
    weights = rng.standard_normal(np.shape(module.forward(x)))

    def loss() -> float:
        return float(np.sum(module.forward(x) * weights))

    module.zero_grad()
    loss()
    analytic_x = np.array(module.backward(weights), dtype=np.float64)
    entries = [_compare("input", analytic_x, _numeric_gradient(loss, x, step), rtol, atol)]
    for name, parameter in module.named_parameters():
        analytic = parameter.grad.copy()
        entries.append(_compare(name, analytic, _numeric_gradient(loss, parameter.value, step), rtol, atol))
    return GradcheckReport(tuple(entries), step, rtol, atol)
