"""Optimizers (SGD with momentum, Adam) and global-norm gradient clipping.

Same names, defaults and update formulas as ``torch.optim``, so results can be compared with
PyTorch step for step. Optimizer state is plain arrays: ``state_dict()`` returns a dict of
NumPy arrays that ``npvae.save`` writes to an ``.npz`` and ``load_state_dict`` restores exactly.

When the parameters live in one flat buffer (``Module.flatten_parameters``, done by the
models), each update is a handful of passes over that buffer; otherwise the same update runs
once per parameter. The passes are kernels (``npvae.kernels``): the fast set runs them as BLAS
scal/axpy, block by block so that the data stays in cache, and flushes subnormal state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from . import _checks
from . import _kernels as kernels
from . import threads as npvae_threads
from .nn import Module, Parameter

__all__ = ["Optimizer", "SGD", "Adam", "clip_grad_norm"]

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


def _parameter_list(params: Any) -> list[Parameter]:
    """``list(params)``, checking that it holds Parameters (TypeError naming ``params`` otherwise)."""
    if isinstance(params, Module):
        raise TypeError(
            f"params: expected an iterable of Parameters, got a {type(params).__name__} "
            "(use model.parameters())"
        )
    if isinstance(params, Parameter) or not isinstance(params, Iterable):
        raise TypeError(f"params: expected an iterable of Parameters, got {type(params).__name__}")
    params = list(params)
    for index, parameter in enumerate(params):
        if not isinstance(parameter, Parameter):
            raise TypeError(f"params[{index}]: expected a Parameter, got {type(parameter).__name__}")
    seen: dict[int, int] = {}
    for index, parameter in enumerate(params):
        if id(parameter) in seen:  # the same Parameter twice would be stepped twice per step
            raise ValueError(f"params[{index}]: the same Parameter as params[{seen[id(parameter)]}]; "
                             "expected each parameter once")
        seen[id(parameter)] = index
    return params


class Optimizer:
    """Base class: holds the parameters and flat per-element state buffers aligned with them."""

    #: hyperparameter -> (low, high, low_open): its allowed interval, checked by the
    #: constructor and by ``load_state_dict``
    _BOUNDS: dict[str, tuple[float, float, bool]] = {}
    #: state arrays whose entries must be >= 0
    _NON_NEGATIVE: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Parameter]) -> None:
        self.params = _parameter_list(params)
        if not self.params:
            raise ValueError("params: expected at least one Parameter, got none")
        dtypes = {parameter.value.dtype for parameter in self.params}
        if len(dtypes) != 1:
            raise TypeError(f"params: expected one dtype, got {sorted(map(str, dtypes))}")
        self.dtype = dtypes.pop()
        self.num_elements = sum(parameter.value.size for parameter in self.params)
        self.steps = 0
        self._cached_arrays: list[np.ndarray] = []
        self._cached_blocks: list[tuple[np.ndarray, ...]] = []
        self._largest_block = 0

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
        """``_groups`` as the kernels update them (``kernels.update_blocks``: the fast set cuts them
        into cache-sized blocks, or one share per thread). Computed once and reused while every
        parameter keeps the same value and grad arrays and the kernel set and thread count are the
        same (checked by identity at each call, so rebinding ``p.value`` or ``p.grad`` is still seen)."""
        arrays = [array for parameter in self.params for array in (parameter.value, parameter.grad)]
        arrays.extend(flat_states)
        key = (kernels.current(), npvae_threads.current(), *arrays)
        cached = self._cached_arrays
        if len(cached) != len(key) or any(new is not old for new, old in zip(key, cached)):
            self._cached_blocks = kernels.update_blocks(self._groups(*flat_states))
            self._cached_arrays = list(key)
            self._largest_block = max(block[0].size for block in self._cached_blocks)
        return self._cached_blocks

    def nonfinite_state(self) -> list[str]:
        """The names of the state arrays (``state_dict`` keys) holding NaN or inf: an empty list for
        a healthy optimizer. Float32 Adam's ``exp_avg_sq`` overflows to inf where g^2 exceeds the
        float range (|g| above ~1.8e19), and the parameters it scales then never move again."""
        return [name for name, array in self._state_arrays().items() if not kernels.all_finite(array)]

    def zero_grad(self) -> None:
        for parameter in self.params:
            parameter.grad[...] = 0

    def step(self) -> None:
        raise NotImplementedError

    def _hyperparameters(self) -> dict[str, float]:
        raise NotImplementedError

    def _check_combination(self, hyperparameters: dict[str, float]) -> None:
        """Raise ValueError if loaded ``hyperparameters`` break a rule between them (none here)."""

    def _check_hyperparameter(self, key: str, value: Any, name: str | None = None) -> float:
        """``value`` checked against ``_BOUNDS[key]``, as a float; errors name ``name`` (default ``key``)."""
        low, high, low_open = self._BOUNDS[key]
        return _checks.number_in(key if name is None else name, value, low, high, low_open)

    def _state_arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        """Step count, hyperparameters and per-element state, as copies of NumPy arrays."""
        state = {"steps": np.array(self.steps, dtype=np.int64)}
        state.update({name: np.array(value) for name, value in self._hyperparameters().items()})
        state.update({name: array.copy() for name, array in self._state_arrays().items()})
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore what ``state_dict`` returned, so that the next ``step`` continues exactly.

        Everything is checked before anything changes (on an error the optimizer is left as
        it was): the keys; ``steps`` a non-negative integer; each hyperparameter a real number
        in the interval the constructor allows; each state array of the right shape, finite,
        within the parameters' dtype, and >= 0 where it must be (Adam's ``exp_avg_sq``).

        Raises
        ------
        TypeError
            ``state`` not a mapping; a hyperparameter or state array that is not numeric.
        ValueError
            Missing or unexpected keys, or a value outside its allowed range.
        """
        if not isinstance(state, Mapping):
            raise TypeError(
                f"state: expected a mapping (as state_dict() returns), got {type(state).__name__}"
            )
        arrays = self._state_arrays()
        expected = {"steps", *self._hyperparameters(), *arrays}
        missing = sorted(expected - set(state))
        unexpected = sorted(set(state) - expected)
        if missing or unexpected:
            raise ValueError(f"state: missing keys {missing}, unexpected keys {unexpected}")
        steps = np.asarray(state["steps"])
        if steps.shape != () or steps.dtype.kind not in "iu" or steps < 0:
            raise ValueError(f"state['steps']: expected a non-negative integer, got {state['steps']!r}")
        hyperparameters = {}
        for name in self._hyperparameters():
            value = np.asarray(state[name])
            if value.shape != () or value.dtype.kind not in "iuf":
                raise TypeError(f"state[{name!r}]: expected a real number, got {state[name]!r}")
            hyperparameters[name] = self._check_hyperparameter(name, value.item(), f"state[{name!r}]")
        self._check_combination(hyperparameters)
        converted = {}
        for name, array in arrays.items():
            given = np.asarray(state[name])
            if given.shape != array.shape:
                raise ValueError(f"state[{name!r}]: expected shape {array.shape}, got {given.shape}")
            if given.dtype.kind not in "iuf":
                raise TypeError(f"state[{name!r}]: expected a real numeric array, got dtype {given.dtype}")
            converted[name] = _checks.state_array(name, given, self.dtype)
            if name in self._NON_NEGATIVE and converted[name].size and converted[name].min() < 0:
                raise ValueError(f"state[{name!r}]: expected values >= 0, got {converted[name].min():g}")
        for name, array in arrays.items():
            array[...] = converted[name]
        self.steps = int(steps)
        for name, value in hyperparameters.items():
            setattr(self, name, value)


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, as ``torch.optim.SGD``.

    g = grad + weight_decay * p
    b = g at the first step, then b = momentum * b + (1 - dampening) * g
    p = p - lr * (g + momentum * b if nesterov else b)          (b = g when momentum = 0)
    """

    _BOUNDS = {"lr": (0.0, np.inf, True), "momentum": (0.0, np.inf, False),
               "dampening": (0.0, 1.0 + 1e-12, False), "weight_decay": (0.0, np.inf, False)}

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
        self.lr = self._check_hyperparameter("lr", lr)
        self.momentum = self._check_hyperparameter("momentum", momentum)
        self.dampening = self._check_hyperparameter("dampening", dampening)
        self.weight_decay = self._check_hyperparameter("weight_decay", weight_decay)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov: expected True or False, got {nesterov!r}")
        self.nesterov = bool(nesterov)
        self._check_combination(self._hyperparameters())
        self.momentum_buffer = self._state_buffer()

    def _hyperparameters(self) -> dict[str, float]:
        return {"lr": self.lr, "momentum": self.momentum, "dampening": self.dampening,
                "weight_decay": self.weight_decay}

    def _check_combination(self, hyperparameters: dict[str, float]) -> None:
        """Nesterov momentum needs momentum > 0 and no dampening, in the constructor and in a
        loaded state alike (the state does not carry ``nesterov``: it stays the constructor's)."""
        if self.nesterov and (hyperparameters["momentum"] == 0.0 or hyperparameters["dampening"] != 0.0):
            raise ValueError(
                f"nesterov: requires momentum > 0 and dampening = 0, got momentum "
                f"{hyperparameters['momentum']!r} and dampening {hyperparameters['dampening']!r}"
            )

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
        kernels.flush_subnormals(self.steps, list(self._state_arrays().values()))


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015, Algorithm 1), computed as ``torch.optim.Adam`` computes it.

    At step t (from 1), with g = grad + weight_decay * p  (L2 penalty, not AdamW):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g^2
        p = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    The bias corrections 1 - beta^t undo the zero initialisation of m and v: at t = 1,
    m / (1 - beta1) = g and v / (1 - beta2) = g^2, so the first step is lr * g / (|g| + eps'),
    about lr in each coordinate.

    ``eps`` must be at least the smallest normal number of the parameters' dtype (1.2e-38 in
    float32): a smaller one vanishes from the denominator, which is then 0 for a zero gradient.

    The fast kernels keep m and v unscaled between folds every 50 steps (``kernels.adam_update``):
    reading them (``exp_avg``, ``exp_avg_sq``, ``state_dict``) folds the scales in first, so what
    is read is always m and v, and a run resumed from a ``state_dict`` continues bit for bit like
    the run that wrote it. (Reading changes when the fold happens, so a run that reads its state
    mid-way may differ from one that does not by rounding, never by more.)

    One departure from torch, for speed: every 50 steps, entries of m and v that have decayed
    below the smallest normal float are set to 0 (``kernels.flush_subnormals``, fast kernels only); on MNIST the
    parameters stay bit-identical to those of the unflushed update (checked over 3 epochs).
    """

    _BOUNDS = {"lr": (0.0, np.inf, True), "beta1": (0.0, 1.0, False), "beta2": (0.0, 1.0, False),
               "eps": (0.0, np.inf, True), "weight_decay": (0.0, np.inf, False)}
    _NON_NEGATIVE = ("exp_avg_sq",)

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params)
        self.lr = self._check_hyperparameter("lr", lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        self.beta1 = self._check_hyperparameter("beta1", betas[0], "betas[0]")
        self.beta2 = self._check_hyperparameter("beta2", betas[1], "betas[1]")
        self.eps = self._check_hyperparameter("eps", eps)
        self.weight_decay = self._check_hyperparameter("weight_decay", weight_decay)
        # m = c1 * _exp_avg and v = c2 * _exp_avg_sq with (c1, c2) = _scales: the fast kernel
        # keeps the arrays unscaled between folds (kernels.adam_update); read them through
        # exp_avg / exp_avg_sq, which fold the scales in first
        self._exp_avg = self._state_buffer()
        self._exp_avg_sq = self._state_buffer()
        self._scales = [1.0, 1.0]
        # scratch for g^2 and the step direction, as large as the largest block: the fast kernels'
        # blocks are small on one thread, so it stays in cache (on several, each thread's share
        # uses a scratch array of its own, and this one serves the plain passes only)
        self._work = np.empty(0, dtype=self.dtype)

    @property
    def exp_avg(self) -> np.ndarray:
        """m, the running mean of the gradients (the array itself, with any pending scale folded in)."""
        self._normalize()
        return self._exp_avg

    @property
    def exp_avg_sq(self) -> np.ndarray:
        """v, the running mean of the squared gradients (the array itself, scale folded in)."""
        self._normalize()
        return self._exp_avg_sq

    def _normalize(self) -> None:
        if self._scales != [1.0, 1.0]:
            kernels.normalize_adam([self._exp_avg], [self._exp_avg_sq], self._scales)

    @property
    def betas(self) -> tuple[float, float]:
        return (self.beta1, self.beta2)

    def _hyperparameters(self) -> dict[str, float]:
        return {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "weight_decay": self.weight_decay}

    def _check_hyperparameter(self, key: str, value: Any, name: str | None = None) -> float:
        checked = super()._check_hyperparameter(key, value, name)
        smallest = float(np.finfo(self.dtype).tiny)
        if key == "eps" and checked < smallest:
            raise ValueError(
                f"{key if name is None else name}: expected a value >= {smallest:.3g} (the smallest normal "
                f"{self.dtype}; a smaller eps vanishes from the update's denominator), got {checked!r}"
            )
        return checked

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}

    def step(self) -> None:
        self.steps += 1
        blocks = self._blocks(self._exp_avg, self._exp_avg_sq)
        if self._work.size < self._largest_block:
            self._work = np.empty(self._largest_block, dtype=self.dtype)
        hyper = (self.lr, self.beta1, self.beta2, self.eps, self.weight_decay)
        kernels.adam_update(blocks, self._work, self.steps, hyper, self._scales)
        kernels.flush_subnormals(self.steps, [self._exp_avg, self._exp_avg_sq])


def _rescaled_norm(params: list[Parameter], max_norm: float) -> tuple[float, float]:
    """(norm, max_norm / norm) for gradients whose sum of squares overflowed the plain sum.

    With m the largest |entry|, norm = m * sqrt(sum((grad / m)^2)): every (grad / m)^2 <= 1, so
    nothing overflows, and the scale (max_norm / m) / sqrt(...) is exact even when the norm
    itself is beyond float64 (returned as inf).
    """
    for index, parameter in enumerate(params):
        if not np.isfinite(parameter.grad).all():
            raise ValueError(
                f"params[{index}].grad: expected finite values, found NaN or inf (the gradients' norm is "
                "undefined; no gradient was scaled)"
            )
    largest = max(float(np.abs(parameter.grad).max(initial=0.0)) for parameter in params)
    root = math.sqrt(sum(kernels.squared_norm(parameter.grad / largest) for parameter in params))
    return largest * root, (max_norm / largest) / root


def clip_grad_norm(params: Iterable[Parameter], max_norm: float) -> float:
    """Scale all gradients by max_norm / (norm + 1e-6) when their global L2 norm exceeds max_norm.

    norm = sqrt(sum over parameters of sum(grad^2)), as ``torch.nn.utils.clip_grad_norm_``.
    Returns the norm before clipping. Gradients too large to square in their dtype (|grad| above
    about 1e19 in float32, 1e154 in float64) are clipped correctly too: the norm is then computed
    from the gradients divided by their largest entry, and a norm beyond float64 returns inf.

    Raises
    ------
    TypeError
        ``params`` not an iterable of Parameters (for a model, pass ``model.parameters()``).
    ValueError
        ``max_norm`` not a finite number > 0; a gradient holding NaN or inf, whose norm is
        undefined (unlike torch, which would scale every gradient to NaN or 0): nothing is
        scaled, and the caller should skip the step.
    """
    max_norm = _checks.number_in("max_norm", max_norm, 0.0, low_open=True)
    params = _parameter_list(params)
    squared = sum(kernels.squared_norm(parameter.grad) for parameter in params)
    if math.isfinite(squared):
        total = math.sqrt(squared)
        scale = max_norm / (total + 1e-6)
    else:  # overflow, or a NaN/inf gradient: the careful pass tells which
        total, scale = _rescaled_norm(params, max_norm)
    if scale < 1.0:
        for parameter in params:
            parameter.grad *= scale
    return total
