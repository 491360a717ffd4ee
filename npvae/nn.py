"""Parameters, modules, and the dense layer: each forward with its hand-written backward.

A module's ``forward(x)`` computes its output and caches what its backward needs;
``backward(grad_out)`` takes dL/d(output) and returns dL/d(input), adding each parameter's
gradient into ``Parameter.grad`` (gradients accumulate until ``zero_grad()``, as in PyTorch).

Work buffers: a module reuses its output and gradient arrays between calls with the same batch
shape, so a training step allocates only small temporaries (measured in docs/derivations.md,
section 12). The array a ``forward`` or ``backward`` returns is therefore owned by the module
and is overwritten by its next call: copy it to keep it.

The hot operations are kernels (``npvae.kernels``): ``Dense`` reads as its formulas and calls
``kernels.affine``, ``kernels.matmul`` and ``kernels.column_sums``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from . import _checks
from . import _kernels as kernels
from ._checks import float_dtype as as_float_dtype

__all__ = ["Parameter", "Module", "Sequential", "Dense", "as_float_dtype"]


class Parameter:
    """A trainable array and the gradient accumulated for it.

    Attributes
    ----------
    value : np.ndarray
        The parameter itself. Update it in place (``value[...] = ...``): the array may be a view
        into a flat buffer shared by all of a model's parameters.
    grad : np.ndarray
        dL/d(value), same shape and dtype; zero until a backward adds to it.
    """

    __slots__ = ("value", "grad")

    def __init__(self, value: np.ndarray) -> None:
        try:
            array = np.asarray(value, order="C")
        except (TypeError, ValueError):  # e.g. a ragged nested list
            array = None
        if array is None or array.dtype not in (np.float32, np.float64):
            if isinstance(value, np.ndarray):
                given = f"dtype {value.dtype}"
            elif array is not None and array.ndim == 0:
                given = f"{type(value).__name__} {value!r}"
            else:
                given = type(value).__name__ + ("" if array is None else f" of dtype {array.dtype}")
            raise TypeError(f"value: expected a float32 or float64 array, got {given}")
        self.value = array
        self.grad = np.zeros_like(self.value)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    @property
    def dtype(self) -> np.dtype:
        return self.value.dtype

    def __repr__(self) -> str:
        return f"Parameter(shape={self.value.shape}, dtype={self.value.dtype})"


class Module:
    """Base class: tracks parameters and submodules assigned as attributes, in assignment order.

    Subclasses call ``super().__init__()`` first, then assign ``Parameter`` and ``Module``
    attributes; ``named_parameters`` walks them in that order, giving stable dotted names such
    as ``"encoder.0.weight"`` (the names PyTorch would give the same structure).
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_buffers", {})

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    # -- computation -----------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(
        self, grad_out: np.ndarray, *, input_grad: bool = True, accumulate: bool = True
    ) -> np.ndarray | None:
        """Given dL/d(output), accumulate parameter grads and return dL/d(input).

        With ``input_grad=False`` the input gradient is not computed and None is returned (the
        first layer of a model never needs it: its input is data). With ``accumulate=False``
        the parameter grads are overwritten instead of added to: the same as ``zero_grad()``
        first, without its pass over memory (a model's ``loss_and_grads`` uses it).
        """
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: np.dtype, order: str = "C") -> np.ndarray:
        """A work array owned by this module, reused while shape, dtype and memory order
        ("C" row-major, "F" column-major) stay the same."""
        buffer = self._buffers.get(name)
        laid_out = buffer is not None and (buffer.flags.f_contiguous if order == "F" else buffer.flags.c_contiguous)
        if not laid_out or buffer.shape != shape or buffer.dtype != dtype:
            buffer = np.empty(shape, dtype=dtype, order=order)
            self._buffers[name] = buffer
        return buffer

    # -- parameters ------------------------------------------------------------------------
    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Yield ``(dotted_name, parameter)`` for this module's parameters, then its children's."""
        for name, parameter in self._parameters.items():
            yield prefix + name, parameter
        for name, module in self._modules.items():
            yield from module.named_parameters(prefix + name + ".")

    def parameters(self) -> list[Parameter]:
        return [parameter for _, parameter in self.named_parameters()]

    def zero_grad(self) -> None:
        for parameter in self.parameters():
            parameter.grad[...] = 0

    def num_parameters(self) -> int:
        return sum(parameter.value.size for parameter in self.parameters())

    def flatten_parameters(self) -> None:
        """Move every parameter's value and grad into one contiguous buffer each.

        Each ``Parameter.value`` (and ``.grad``) becomes a view into a flat 1-D array, in
        ``named_parameters`` order. Values are unchanged; an optimizer given these parameters
        then updates them all in a few passes over one array instead of one loop per parameter.
        """
        parameters = self.parameters()
        if not parameters:
            return
        dtype = parameters[0].value.dtype
        total = sum(parameter.value.size for parameter in parameters)
        flat_values = np.empty(total, dtype=dtype)
        flat_grads = np.zeros(total, dtype=dtype)
        offset = 0
        for parameter in parameters:
            size = parameter.value.size
            value_view = flat_values[offset : offset + size].reshape(parameter.value.shape)
            value_view[...] = parameter.value
            parameter.value = value_view
            parameter.grad = flat_grads[offset : offset + size].reshape(parameter.value.shape)
            offset += size

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of every parameter value, keyed by dotted name (PyTorch's naming)."""
        return {name: parameter.value.copy() for name, parameter in self.named_parameters()}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Copy values from ``state`` into the parameters, in place.

        Every array is checked (and converted to the parameters' dtype) before any parameter
        changes: on an error the module is left as it was.

        Raises
        ------
        TypeError
            If ``state`` is not a mapping, or an array is not a real floating-point array.
        ValueError
            If a name is missing or unexpected, an array's shape differs from the parameter's,
            or an array holds NaN or inf or values beyond the range of the parameters' dtype.
        """
        if not isinstance(state, Mapping):
            raise TypeError(
                f"state: expected a mapping of parameter names to arrays (as state_dict() returns), "
                f"got {type(state).__name__}"
            )
        own = dict(self.named_parameters())
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(
                f"state: expected the keys {sorted(own)}; missing {missing}, unexpected {unexpected}"
            )
        converted = {}
        for name, parameter in own.items():
            array = np.asarray(state[name])
            if array.shape != parameter.value.shape:
                raise ValueError(
                    f"state[{name!r}]: expected shape {parameter.value.shape}, got {array.shape}"
                )
            if not np.issubdtype(array.dtype, np.floating):
                raise TypeError(f"state[{name!r}]: expected a float array, got dtype {array.dtype}")
            converted[name] = _checks.state_array(name, array, parameter.value.dtype)
        for name, parameter in own.items():
            parameter.value[...] = converted[name]


class Sequential(Module):
    """Modules applied in order; children are named ``"0"``, ``"1"``, ... as in PyTorch.

    Backward runs the children's backwards in reverse order (the chain rule):
    dL/dx = J_1^T (J_2^T ( ... J_n^T dL/dy)).
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for index, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"modules[{index}]: expected a Module, got {type(module).__name__}")
            setattr(self, str(index), module)
        self.layers: tuple[Module, ...] = modules

    def __getitem__(self, index: int) -> Module:
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)

    def forward(self, x: np.ndarray) -> np.ndarray:
        for module in self.layers:
            x = module.forward(x)
        return x

    def backward(
        self, grad_out: np.ndarray, *, input_grad: bool = True, accumulate: bool = True
    ) -> np.ndarray | None:
        if not self.layers:
            return grad_out if input_grad else None
        # accumulate is passed on only when False, so that modules written without it still work
        options = {} if accumulate else {"accumulate": False}
        grad = grad_out
        last = len(self.layers) - 1
        for position, module in enumerate(reversed(self.layers)):
            grad = module.backward(grad, input_grad=input_grad or position != last, **options)
        return grad


class Dense(Module):
    """Fully connected layer: y = x @ W + b.

    Parameters
    ----------
    in_features, out_features : int
        Sizes of the input and output.
    rng : np.random.Generator
        Source of the initial weights.
    init : {"he", "glorot"}
        "he": W ~ N(0, gain^2 / in_features) with gain^2 = 2 / (1 + negative_slope^2), for a
        layer followed by ReLU/LeakyReLU (He et al. 2015, eq. 10). "glorot": W ~ U(-a, a) with
        a = sqrt(6 / (in_features + out_features)), for sigmoid/tanh/linear outputs (Glorot &
        Bengio 2010, eq. 16). b starts at 0.
    negative_slope : float
        Slope in [0, 1) of the LeakyReLU that follows, used by "he" (0 for ReLU).
    dtype : float32 or float64
        Dtype of the parameters; the input must have the same dtype.
    order : {"C", "F"}
        Memory order of the output y: row-major ("C", NumPy's default) or column-major ("F").
        Values agree either way up to rounding; only the speed of the matrix products differs.
        On the models' shapes the products of a step are faster with column-major hidden
        activations, so the models' MLPs use "F" for every layer followed by an activation and
        "C" for the others. The input gradient dL/dx takes the memory order of x.

    Shapes: x (batch, in_features) -> y (batch, out_features); W (in_features, out_features),
    which is PyTorch's ``Linear.weight`` transposed; b (out_features,).

    Backward, with G = dL/dy (batch, out_features):
        dL/dW += x^T @ G,   dL/db += sum over the batch of G,   dL/dx = G @ W^T.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        rng: np.random.Generator,
        init: str = "he",
        negative_slope: float = 0.0,
        dtype: Any = np.float64,
        order: str = "C",
    ) -> None:
        super().__init__()
        if order not in ("C", "F"):
            raise ValueError(f"order: expected 'C' or 'F', got {order!r}")
        self.order = order
        in_features = _checks.positive_int("in_features", in_features)
        out_features = _checks.positive_int("out_features", out_features)
        _checks.generator(rng)
        self.dtype = as_float_dtype(dtype)
        negative_slope = _checks.negative_slope(negative_slope)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        shape = (self.in_features, self.out_features)
        if init == "he":
            std = np.sqrt(2.0 / ((1.0 + negative_slope**2) * in_features))
            weight = rng.normal(0.0, std, size=shape)
        elif init == "glorot":
            limit = np.sqrt(6.0 / (in_features + out_features))
            weight = rng.uniform(-limit, limit, size=shape)
        else:
            raise ValueError(f"init: expected 'he' or 'glorot', got {init!r}")
        self.weight = Parameter(weight.astype(self.dtype))
        self.bias = Parameter(np.zeros(self.out_features, dtype=self.dtype))
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not isinstance(x, np.ndarray) or x.ndim != 2 or x.shape[1] != self.in_features:
            shape = getattr(x, "shape", type(x).__name__)
            raise ValueError(f"x: expected shape (batch, {self.in_features}), got {shape}")
        if x.dtype != self.dtype:
            raise TypeError(f"x: expected dtype {self.dtype} (the layer's), got {x.dtype}")
        self._x = x
        y = self._buffer("y", (x.shape[0], self.out_features), self.dtype, self.order)
        return kernels.affine(x, self.weight.value, self.bias.value, out=y)  # y = x @ W + b

    def backward(
        self, grad_out: np.ndarray, *, input_grad: bool = True, accumulate: bool = True
    ) -> np.ndarray | None:
        x = self._x
        if x is None:
            raise RuntimeError("Dense.backward called before forward")
        expected = (x.shape[0], self.out_features)  # the forward output's shape
        if not isinstance(grad_out, np.ndarray):
            raise TypeError(
                f"grad_out: expected an ndarray of shape {expected} and dtype {self.dtype}, "
                f"got {type(grad_out).__name__}"
            )
        if grad_out.shape != expected:
            raise ValueError(f"grad_out: expected shape {expected} (the forward output's), got {grad_out.shape}")
        if grad_out.dtype != self.dtype:
            raise TypeError(f"grad_out: expected dtype {self.dtype} (the layer's), got {grad_out.dtype}")
        # beta = 1 adds to the grads in place, beta = 0 overwrites them (accumulate=False)
        beta = 1.0 if accumulate else 0.0
        kernels.matmul(x.T, grad_out, out=self.weight.grad, beta=beta)  # dL/dW += x^T @ G
        kernels.column_sums(grad_out, out=self.bias.grad, beta=beta)  # dL/db += sum over the batch of G
        if not input_grad:
            return None
        grad_x = self._buffer("grad_x", x.shape, self.dtype, kernels.order_of(x))
        return kernels.matmul(grad_out, self.weight.value.T, out=grad_x, beta=0.0)  # dL/dx = G @ W^T

    def __repr__(self) -> str:
        order = ", order='F'" if self.order == "F" else ""
        return f"Dense({self.in_features}, {self.out_features}, dtype={self.dtype}{order})"
