"""Optimizers (SGD with momentum, Adam) and global-norm gradient clipping.

Same names, defaults and update formulas as ``torch.optim``, so results can be compared with
PyTorch step for step. Optimizer state is plain arrays: ``state_dict()`` returns a dict of
NumPy arrays that ``npvae.save`` writes to an ``.npz`` and ``load_state_dict`` restores exactly.

When the parameters live in one flat buffer (``Module.flatten_parameters``, done by the
models), each update is a handful of NumPy/BLAS passes over that buffer, run block by block so
that the data stays in cache; otherwise the same update runs once per parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from scipy.linalg import blas

from .nn import Parameter

__all__ = ["Optimizer", "SGD", "Adam", "clip_grad_norm"]

# Elements per block of an update (see ``Optimizer._blocks``). Small enough that a block's
# arrays stay in the L2 cache across all of Adam's passes (5 * 32 KB in float32), and that
# OpenBLAS runs axpy on the calling thread: it hands vectors over 10,000 elements to its thread
# pool, whose wake-up costs more than this work and stalls badly when the cores are busy.
_BLOCK_SIZE = 8192


def _contiguous_base(arrays: list[np.ndarray]) -> np.ndarray | None:
    """The 1-D array that ``arrays`` tile exactly, in order, if there is one."""
    base = arrays[0].base
    if base is None or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    start = base.__array_interface__["data"][0]
    offset = 0
    for array in arrays:
        if array.base is not base or not array.flags.c_contiguous:
            return None
        if array.__array_interface__["data"][0] != start + offset * base.itemsize:
            return None
        offset += array.size
    return base if offset == base.size else None


def _check_hyper(name: str, value: float, low: float, high: float = np.inf, low_open: bool = False) -> float:
    value = float(value)
    if not (low < value if low_open else low <= value) or not value < high or not np.isfinite(value):
        bracket = "(" if low_open else "["
        raise ValueError(f"{name}: expected a value in {bracket}{low}, {high}), got {value!r}")
    return value


class Optimizer:
    """Base class: holds the parameters and flat per-element state buffers aligned with them."""

    def __init__(self, params: Iterable[Parameter]) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("params: expected at least one Parameter, got none")
        for index, parameter in enumerate(self.params):
            if not isinstance(parameter, Parameter):
                raise TypeError(f"params[{index}]: expected a Parameter, got {type(parameter).__name__}")
        dtypes = {parameter.value.dtype for parameter in self.params}
        if len(dtypes) != 1:
            raise TypeError(f"params: expected one dtype, got {sorted(map(str, dtypes))}")
        self.dtype = dtypes.pop()
        self.num_elements = sum(parameter.value.size for parameter in self.params)
        self.steps = 0
        self._cached_arrays: list[np.ndarray] = []
        self._cached_blocks: list[tuple[np.ndarray, ...]] = []

    def _state_buffer(self) -> np.ndarray:
        return np.zeros(self.num_elements, dtype=self.dtype)

    def _groups(self, *flat_states: np.ndarray) -> list[tuple[np.ndarray, ...]]:
        """(value, grad, *state) arrays to update: one group if values and grads are each one
        flat buffer, else one group per parameter with views into the flat state buffers."""
        values = _contiguous_base([parameter.value for parameter in self.params])
        grads = _contiguous_base([parameter.grad for parameter in self.params])
        if values is not None and grads is not None:
            return [(values, grads, *flat_states)]
        groups = []
        offset = 0
        for index, parameter in enumerate(self.params):
            if not (parameter.value.flags.c_contiguous and parameter.grad.flags.c_contiguous):
                raise ValueError(
                    f"params[{index}]: expected C-contiguous value and grad arrays (update "
                    "parameters in place, p.value[...] = new, rather than rebinding p.value)"
                )
            size = parameter.value.size
            views = (state[offset : offset + size].reshape(parameter.shape) for state in flat_states)
            groups.append((parameter.value, parameter.grad, *views))
            offset += size
        return groups

    def _blocks(self, *flat_states: np.ndarray) -> list[tuple[np.ndarray, ...]]:
        """``_groups`` cut into 1-D blocks of at most ``_BLOCK_SIZE`` elements.

        An update makes several passes over its arrays; done block by block, a block's arrays
        stay in the CPU's L2 cache from the first pass to the last, instead of each pass
        streaming the whole buffers from memory. The blocks are views, computed once and
        reused while every parameter keeps the same value and grad arrays (checked by identity
        at each call, so rebinding ``p.value`` or ``p.grad`` is still seen).
        """
        arrays = [array for parameter in self.params for array in (parameter.value, parameter.grad)]
        arrays.extend(flat_states)
        cached = self._cached_arrays
        if len(cached) != len(arrays) or any(new is not old for new, old in zip(arrays, cached)):
            self._cached_blocks = [
                tuple(array.reshape(-1)[start : start + _BLOCK_SIZE] for array in group)
                for group in self._groups(*flat_states)
                for start in range(0, group[0].size, _BLOCK_SIZE)
            ]
            self._cached_arrays = arrays
        return self._cached_blocks

    def zero_grad(self) -> None:
        for parameter in self.params:
            parameter.grad[...] = 0

    def step(self) -> None:
        raise NotImplementedError

    def _hyperparameters(self) -> dict[str, float]:
        raise NotImplementedError

    def _state_arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        """Step count, hyperparameters and per-element state, as copies of NumPy arrays."""
        state = {"steps": np.array(self.steps, dtype=np.int64)}
        state.update({name: np.array(value) for name, value in self._hyperparameters().items()})
        state.update({name: array.copy() for name, array in self._state_arrays().items()})
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore what ``state_dict`` returned, so that the next ``step`` continues exactly."""
        arrays = self._state_arrays()
        expected = {"steps", *self._hyperparameters(), *arrays}
        missing = sorted(expected - set(state))
        unexpected = sorted(set(state) - expected)
        if missing or unexpected:
            raise ValueError(f"state: missing keys {missing}, unexpected keys {unexpected}")
        for name, array in arrays.items():
            given = np.asarray(state[name])
            if given.shape != array.shape:
                raise ValueError(f"state[{name!r}]: expected shape {array.shape}, got {given.shape}")
        for name, array in arrays.items():
            array[...] = state[name]
        self.steps = int(state["steps"])
        for name in self._hyperparameters():
            setattr(self, name, float(state[name]))


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, as ``torch.optim.SGD``.

    g = grad + weight_decay * p
    b = g at the first step, then b = momentum * b + (1 - dampening) * g
    p = p - lr * (g + momentum * b if nesterov else b)          (b = g when momentum = 0)
    """

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(params)
        self.lr = _check_hyper("lr", lr, 0.0, low_open=True)
        self.momentum = _check_hyper("momentum", momentum, 0.0)
        self.dampening = _check_hyper("dampening", dampening, 0.0, 1.0 + 1e-12)
        self.weight_decay = _check_hyper("weight_decay", weight_decay, 0.0)
        if nesterov and (self.momentum == 0.0 or self.dampening != 0.0):
            raise ValueError("nesterov: requires momentum > 0 and dampening = 0")
        self.nesterov = bool(nesterov)
        self.momentum_buffer = self._state_buffer()

    def _hyperparameters(self) -> dict[str, float]:
        return {"lr": self.lr, "momentum": self.momentum, "dampening": self.dampening,
                "weight_decay": self.weight_decay}

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {"momentum_buffer": self.momentum_buffer}

    def step(self) -> None:
        for value, grad, buffer in self._blocks(self.momentum_buffer):
            direction = grad + self.weight_decay * value if self.weight_decay else grad
            if self.momentum:
                if self.steps == 0:
                    np.copyto(buffer, direction)
                else:
                    buffer *= self.momentum
                    buffer += (1.0 - self.dampening) * direction
                direction = direction + self.momentum * buffer if self.nesterov else buffer
            value -= self.lr * direction
        self.steps += 1


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015, Algorithm 1), computed as ``torch.optim.Adam`` computes it.

    At step t (from 1), with g = grad + weight_decay * p  (L2 penalty, not AdamW):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g^2
        p = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    The bias corrections 1 - beta^t undo the zero initialisation of m and v: at t = 1,
    m / (1 - beta1) = g and v / (1 - beta2) = g^2, so the first step is lr * g / (|g| + eps'),
    about lr in each coordinate.
    """

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params)
        self.lr = _check_hyper("lr", lr, 0.0, low_open=True)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        self.beta1 = _check_hyper("betas[0]", betas[0], 0.0, 1.0)
        self.beta2 = _check_hyper("betas[1]", betas[1], 0.0, 1.0)
        self.eps = _check_hyper("eps", eps, 0.0)
        self.weight_decay = _check_hyper("weight_decay", weight_decay, 0.0)
        self.exp_avg = self._state_buffer()
        self.exp_avg_sq = self._state_buffer()
        self._work = self._state_buffer()

    @property
    def betas(self) -> tuple[float, float]:
        return (self.beta1, self.beta2)

    def _hyperparameters(self) -> dict[str, float]:
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "weight_decay": self.weight_decay}

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}

    def step(self) -> None:
        self.steps += 1
        bias_correction1 = 1.0 - self.beta1**self.steps
        bias_correction2_sqrt = float(np.sqrt(1.0 - self.beta2**self.steps))
        # sqrt(v) / sqrt(bc2) + eps = (sqrt(v) + eps * sqrt(bc2)) / sqrt(bc2): the division by
        # sqrt(bc2) moves into the scalar step, saving a pass over memory
        step_size = self.lr * bias_correction2_sqrt / bias_correction1
        eps = self.eps * bias_correction2_sqrt
        axpy, scal = _level1(self.dtype)
        for value, grad, exp_avg, exp_avg_sq, work in self._blocks(
            self.exp_avg, self.exp_avg_sq, self._work
        ):
            if self.weight_decay:
                grad = grad + self.weight_decay * value
            # m = beta1 * m + (1 - beta1) * g
            scal(self.beta1, exp_avg)
            axpy(grad, exp_avg, a=1.0 - self.beta1)
            # v = beta2 * v + (1 - beta2) * g^2
            np.multiply(grad, grad, out=work)
            scal(self.beta2, exp_avg_sq)
            axpy(work, exp_avg_sq, a=1.0 - self.beta2)
            # p -= step_size * m / (sqrt(v) + eps)
            np.sqrt(exp_avg_sq, out=work)
            work += eps
            np.divide(exp_avg, work, out=work)
            axpy(work, value, a=-step_size)


def _level1(dtype: np.dtype):
    """BLAS y += a * x and x *= a for the dtype: in place, one pass each (NumPy's
    ``y += a * x`` makes two passes and a temporary)."""
    if dtype == np.float64:
        return blas.daxpy, blas.dscal
    return blas.saxpy, blas.sscal


def _squared_norm(array: np.ndarray) -> float:
    """sum(array^2) by SciPy's BLAS dot, not NumPy's ``np.dot``: the two bundle separate OpenBLAS
    builds whose thread pools, used alternately, fight over the cores (see ``nn._gemm``)."""
    flat = array.ravel()
    dot = blas.ddot if flat.dtype == np.float64 else blas.sdot
    return float(dot(flat, flat))


def clip_grad_norm(params: Iterable[Parameter], max_norm: float) -> float:
    """Scale all gradients by max_norm / (norm + 1e-6) when their global L2 norm exceeds max_norm.

    norm = sqrt(sum over parameters of sum(grad^2)), as ``torch.nn.utils.clip_grad_norm_``.
    Returns the norm before clipping.
    """
    max_norm = _check_hyper("max_norm", max_norm, 0.0, low_open=True)
    params = list(params)
    total = float(np.sqrt(sum(_squared_norm(parameter.grad) for parameter in params)))
    scale = max_norm / (total + 1e-6)
    if scale < 1.0:
        for parameter in params:
            parameter.grad *= scale
    return total
