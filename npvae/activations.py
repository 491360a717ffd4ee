"""Elementwise activations. Each caches its output y, from which its derivative follows.

All keep the input's dtype, shape and memory order. Output and gradient arrays are work
buffers owned by the module (see ``npvae.nn``).
"""

from __future__ import annotations

import numpy as np

from . import _checks
from . import _kernels as kernels
from .nn import Module

__all__ = ["Identity", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "make_activation", "ACTIVATIONS"]


class _Elementwise(Module):
    """Base of the activations: y = f(x) elementwise, dL/dx = dL/dy * f'(x), with f' written in
    terms of the cached output y. A subclass gives the two formulas, ``_apply(x, out)`` and
    ``_gradient(grad_y, out)``; this class checks the arrays and owns the work buffers, which keep
    the input's memory order.

    The checks of dL/dy are O(1) (type, shape, dtype), so backward stays one pass over the data;
    they turn a mismatched gradient into an error naming ``grad_out`` instead of a NumPy
    broadcast (or a silent broadcast of a (1, n) gradient). Backward's ``accumulate`` is accepted
    for ``Module``'s signature and unused: no parameters.
    """

    def __init__(self) -> None:
        super().__init__()
        self._y: np.ndarray | None = None

    def _apply(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _gradient(self, grad_y: np.ndarray, out: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def forward(self, x: np.ndarray) -> np.ndarray:
        _checks.float_array("x", x)
        self._y = self._apply(x, self._buffer("y", x.shape, x.dtype, kernels.order_of(x)))
        return self._y

    def backward(
        self, grad_out: np.ndarray, *, input_grad: bool = True, accumulate: bool = True
    ) -> np.ndarray | None:
        self._check_grad_out(grad_out)
        if not input_grad:
            return None
        return self._gradient(grad_out, self._buffer("grad_x", grad_out.shape, grad_out.dtype,
                                                     kernels.order_of(self._y)))

    def _check_grad_out(self, grad_out: object) -> np.ndarray:
        y = self._y
        if y is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        if not isinstance(grad_out, np.ndarray):
            raise TypeError(
                f"grad_out: expected an ndarray of shape {y.shape} and dtype {y.dtype}, "
                f"got {type(grad_out).__name__}"
            )
        if grad_out.shape != y.shape:
            raise ValueError(f"grad_out: expected shape {y.shape} (the forward output's), got {grad_out.shape}")
        if grad_out.dtype != y.dtype:
            raise TypeError(f"grad_out: expected dtype {y.dtype} (the forward output's), got {grad_out.dtype}")
        return grad_out


class Identity(_Elementwise):
    """y = x.   Backward: dL/dx = dL/dy.   (Returns its input and dL/dy themselves: no copy.)"""

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._y = _checks.float_array("x", x)
        return self._y

    def backward(
        self, grad_out: np.ndarray, *, input_grad: bool = True, accumulate: bool = True
    ) -> np.ndarray | None:
        return self._check_grad_out(grad_out) if input_grad else None


class ReLU(_Elementwise):
    """y = max(x, 0).   Backward: dL/dx = dL/dy * [x > 0]  (0 at the kink x = 0)."""

    def _apply(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0, out=out)

    def _gradient(self, grad_y: np.ndarray, out: np.ndarray) -> np.ndarray:
        active = self._buffer("active", out.shape, np.dtype(bool), kernels.order_of(out))  # reused: no temporary
        np.greater(self._y, 0, out=active)
        return np.multiply(grad_y, active, out=out)


class LeakyReLU(_Elementwise):
    """y = x if x > 0 else a * x, with 0 <= a < 1 (the seed uses a = 0.2).

    Backward: dL/dx = dL/dy * (1 if x > 0 else a). Since a >= 0, y > 0 exactly when x > 0,
    so the cached output decides the branch. At the kink x = 0 the slope a is used.
    """

    def __init__(self, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.negative_slope = _checks.negative_slope(negative_slope)

    def _apply(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        # for 0 <= a < 1, max(x, a * x) picks x when x > 0 and a * x otherwise
        np.multiply(x, self.negative_slope, out=out)
        return np.maximum(x, out, out=out)

    def _gradient(self, grad_y: np.ndarray, out: np.ndarray) -> np.ndarray:
        # slope = a + (1 - a) * [y > 0], built as a float array: masked assignment
        # (np.copyto(..., where=)) is ~20x slower than these four plain passes
        slope = self._buffer("slope", out.shape, out.dtype, kernels.order_of(out))
        np.greater(self._y, 0, out=slope)
        slope *= 1.0 - self.negative_slope
        slope += self.negative_slope
        return np.multiply(grad_y, slope, out=out)

    def __repr__(self) -> str:
        return f"LeakyReLU(negative_slope={self.negative_slope})"


def sigmoid_into(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = 1 / (1 + exp(-x)), with a relative rounding error wherever the result is normal
    (``kernels.sigmoid``: for very negative x the result rounds to 0 without a warning)."""
    return kernels.sigmoid(x, out=out)


class Sigmoid(_Elementwise):
    """y = 1 / (1 + exp(-x)).   Backward: dL/dx = dL/dy * y * (1 - y).

    Stable for any |x|: y saturates to exactly 0 or 1 only where the true value rounds to it,
    and the derivative there is 0 (see ``sigmoid_into``).
    """

    def _apply(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        return sigmoid_into(x, out)

    def _gradient(self, grad_y: np.ndarray, out: np.ndarray) -> np.ndarray:
        np.subtract(1, self._y, out=out)
        out *= self._y
        out *= grad_y
        return out


class Tanh(_Elementwise):
    """y = tanh(x).   Backward: dL/dx = dL/dy * (1 - y^2)."""

    def _apply(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        return np.tanh(x, out=out)

    def _gradient(self, grad_y: np.ndarray, out: np.ndarray) -> np.ndarray:
        np.multiply(self._y, self._y, out=out)
        np.subtract(1, out, out=out)
        out *= grad_y
        return out


ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh", "identity")


def make_activation(name: str, negative_slope: float = 0.2) -> Module:
    """Build an activation from its name: one of ``ACTIVATIONS``."""
    if not isinstance(name, str):
        raise ValueError(f"activation: expected one of {ACTIVATIONS}, got {type(name).__name__} {name!r}")
    if name == "relu":
        return ReLU()
    if name == "leaky_relu":
        return LeakyReLU(negative_slope)
    if name == "sigmoid":
        return Sigmoid()
    if name == "tanh":
        return Tanh()
    if name == "identity":
        return Identity()
    raise ValueError(f"activation: expected one of {ACTIVATIONS}, got {name!r}")
