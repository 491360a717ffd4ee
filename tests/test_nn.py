"""Tests for npvae.nn: Parameter, Module bookkeeping, Sequential, Dense.

Gradients are checked with ``npvae.gradcheck_module`` in float64: central differences with step
h = 1e-6, an entry passing when |analytic - numeric| <= 1e-7 + 1e-5 * max(|analytic|, |numeric|)
(the library's defaults, rtol = 1e-5, atol = 1e-7).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import arrays_away_from_zero, dims, float_arrays, leaky_slopes, seeds, shapes
from hypothesis import given
from hypothesis import strategies as st

from npvae import Dense, Identity, LeakyReLU, Module, Parameter, ReLU, Sequential, Sigmoid, Tanh, gradcheck_module
from npvae.nn import as_float_dtype

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


def small_network(rng: np.random.Generator, sizes: tuple[int, ...] = (3, 4, 5, 2)) -> Sequential:
    """Dense -> LeakyReLU -> Dense -> Tanh -> Dense -> Sigmoid, with non-zero biases."""
    layers: list[Module] = []
    activations = [LeakyReLU(0.2), Tanh(), Sigmoid()]
    for (fan_in, fan_out), activation in zip(zip(sizes[:-1], sizes[1:]), activations):
        dense = Dense(fan_in, fan_out, rng=rng, init="glorot")
        dense.bias.value[...] = rng.normal(0.0, 0.5, fan_out)
        layers += [dense, activation]
    return Sequential(*layers)


class Pair(Module):
    """A module with a parameter and two named submodules, for the naming tests."""

    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__()
        self.scale = Parameter(np.ones(3))
        self.encoder = Sequential(Dense(2, 3, rng=rng), ReLU(), Dense(3, 3, rng=rng))
        self.head = Dense(3, 1, rng=rng)


# -- gradients -------------------------------------------------------------------------------
@pytest.mark.usefixtures("kernel_set")
@given(shape=shapes(), out_features=dims, init=st.sampled_from(["he", "glorot"]), seed=seeds, data=st.data())
def test_dense_gradients_match_finite_differences(
    shape: tuple[int, int], out_features: int, init: str, seed: int, data: st.DataObject
) -> None:
    rng = np.random.default_rng(seed)
    dense = Dense(shape[1], out_features, rng=rng, init=init)
    dense.bias.value[...] = rng.standard_normal(out_features)
    report = gradcheck_module(dense, data.draw(float_arrays(shape)), rng=rng)
    assert report.passed, str(report)


@pytest.mark.usefixtures("kernel_set")
@given(x=arrays_away_from_zero(shapes(max_dim=3)), seed=seeds)
def test_sequential_gradients_match_finite_differences(x: np.ndarray, seed: int) -> None:
    rng = np.random.default_rng(seed)
    network = small_network(rng, sizes=(x.shape[1], 4, 5, 2))
    report = gradcheck_module(network, x, rng=rng)
    assert report.passed, str(report)


@given(x=float_arrays(), slope=leaky_slopes, seed=seeds)
def test_sequential_of_identity_and_leaky_relu_has_a_correct_gradient(x: np.ndarray, slope: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    network = Sequential(Identity(), Dense(x.shape[1], 3, rng=rng, negative_slope=slope), Identity())
    report = gradcheck_module(network, x, rng=rng)
    assert report.passed, str(report)


@given(seed=seeds, batch=st.integers(1, 5))
def test_dense_gradients_are_right_for_a_non_contiguous_input(seed: int, batch: int) -> None:
    rng = np.random.default_rng(seed)
    dense = Dense(3, 4, rng=rng)
    wide = rng.standard_normal((batch, 6))
    x = wide[:, ::2]  # a strided view: x.T is neither C- nor Fortran-contiguous
    x_copy = x.copy()
    weights = rng.standard_normal((batch, 4))
    dense.forward(x)
    grad_x = dense.backward(weights).copy()
    np.testing.assert_allclose(dense.weight.grad, x_copy.T @ weights, rtol=1e-13)
    np.testing.assert_allclose(dense.bias.grad, weights.sum(axis=0), rtol=1e-13)
    np.testing.assert_allclose(grad_x, weights @ dense.weight.value.T, rtol=1e-13)


def test_dense_backward_implements_the_documented_formulas() -> None:
    rng = np.random.default_rng(0)
    dense = Dense(3, 2, rng=rng)
    x, grad_y = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    np.testing.assert_allclose(dense.forward(x), x @ dense.weight.value + dense.bias.value, rtol=1e-14)
    grad_x = dense.backward(grad_y)
    np.testing.assert_allclose(grad_x, grad_y @ dense.weight.value.T, rtol=1e-14)
    np.testing.assert_allclose(dense.weight.grad, x.T @ grad_y, rtol=1e-14)
    np.testing.assert_allclose(dense.bias.grad, grad_y.sum(axis=0), rtol=1e-14)


def test_layer_gradients_accumulate_across_two_backward_calls() -> None:
    rng = np.random.default_rng(1)
    network = small_network(rng)
    x, grad_y = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    network.forward(x)
    network.backward(grad_y)
    once = [p.grad.copy() for p in network.parameters()]
    network.forward(x)
    network.backward(grad_y)
    for parameter, single in zip(network.parameters(), once):
        np.testing.assert_allclose(parameter.grad, 2 * single, rtol=1e-14)


def test_zero_grad_resets_every_gradient() -> None:
    rng = np.random.default_rng(2)
    network = small_network(rng)
    network.forward(rng.standard_normal((4, 3)))
    network.backward(rng.standard_normal((4, 2)))
    assert all(np.any(p.grad != 0) for p in network.parameters())
    network.zero_grad()
    assert all(np.all(p.grad == 0) for p in network.parameters())


@pytest.mark.parametrize(
    "make",
    [lambda rng: Dense(3, 3, rng=rng), lambda rng: small_network(rng, (3, 4, 3)),
     lambda rng: Sequential(ReLU(), Identity())],
    ids=["dense", "sequential", "sequential_of_activations"],
)
def test_backward_without_input_grad_returns_none_and_still_fills_parameter_grads(make) -> None:
    rng = np.random.default_rng(3)
    module = make(rng)
    module.forward(rng.standard_normal((2, 3)))
    assert module.backward(rng.standard_normal((2, 3)), input_grad=False) is None
    assert all(np.any(p.grad != 0) for p in module.parameters())


def test_empty_sequential_backward_without_input_grad_returns_none() -> None:
    # Module.backward's contract: input_grad=False returns None, for every module
    empty = Sequential()
    empty.forward(np.ones((2, 3)))
    assert empty.backward(np.ones((2, 3)), input_grad=False) is None


# -- dtypes and shapes -----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(shape=shapes(), out_features=dims)
def test_dense_keeps_dtype_and_shape(dtype: type, shape: tuple[int, int], out_features: int) -> None:
    rng = np.random.default_rng(5)
    dense = Dense(shape[1], out_features, rng=rng, dtype=dtype)
    y = dense.forward(rng.standard_normal(shape).astype(dtype))
    grad_x = dense.backward(np.ones_like(y))
    assert y.dtype == dtype and y.shape == (shape[0], out_features)
    assert grad_x.dtype == dtype and grad_x.shape == shape
    assert all(p.value.dtype == dtype and p.grad.dtype == dtype for p in dense.parameters())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sequential_keeps_dtype(dtype: type) -> None:
    rng = np.random.default_rng(6)
    network = Sequential(Dense(3, 4, rng=rng, dtype=dtype), LeakyReLU(), Dense(4, 2, rng=rng, dtype=dtype), Sigmoid())
    y = network.forward(rng.standard_normal((5, 3)).astype(dtype))
    assert y.dtype == dtype
    assert network.backward(np.ones_like(y)).dtype == dtype


# -- initialisation --------------------------------------------------------------------------
def test_he_init_has_the_documented_standard_deviation() -> None:
    dense = Dense(400, 300, rng=np.random.default_rng(7), init="he", negative_slope=0.2)
    expected = np.sqrt(2.0 / ((1 + 0.2**2) * 400))
    assert abs(dense.weight.value.std() - expected) < 0.01 * expected
    assert np.all(dense.bias.value == 0)


def test_glorot_init_is_uniform_within_the_documented_limit() -> None:
    dense = Dense(200, 100, rng=np.random.default_rng(8), init="glorot")
    limit = np.sqrt(6.0 / 300)
    assert np.abs(dense.weight.value).max() <= limit
    assert np.abs(dense.weight.value).max() > 0.99 * limit
    assert abs(dense.weight.value.std() - limit / np.sqrt(3)) < 0.01 * limit


def test_dense_init_is_reproducible_from_the_rng_seed() -> None:
    first = Dense(4, 3, rng=np.random.default_rng(9))
    second = Dense(4, 3, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(first.weight.value, second.weight.value)


# -- names, state, flattening ----------------------------------------------------------------
def test_named_parameters_are_dotted_torch_style_names_in_assignment_order() -> None:
    names = [name for name, _ in Pair(np.random.default_rng(10)).named_parameters()]
    assert names == ["scale", "encoder.0.weight", "encoder.0.bias", "encoder.2.weight", "encoder.2.bias",
                     "head.weight", "head.bias"]


def test_parameters_and_num_parameters_agree_with_named_parameters() -> None:
    module = Pair(np.random.default_rng(11))
    named = [p for _, p in module.named_parameters()]
    assert module.parameters() == named
    assert module.num_parameters() == 3 + (2 * 3 + 3) + (3 * 3 + 3) + (3 + 1)


def test_state_dict_round_trip_restores_the_outputs() -> None:
    source, target = Pair(np.random.default_rng(12)), Pair(np.random.default_rng(13))
    x = np.random.default_rng(14).standard_normal((4, 2))
    state = source.state_dict()
    target.load_state_dict(state)
    np.testing.assert_array_equal(target.head.forward(target.encoder.forward(x)),
                                  source.head.forward(source.encoder.forward(x)))
    assert target.state_dict().keys() == state.keys()


def test_state_dict_returns_copies() -> None:
    module = Pair(np.random.default_rng(15))
    state = module.state_dict()
    state["head.bias"][...] = 42.0
    assert np.all(module.head.bias.value == 0)


@pytest.mark.parametrize(
    "edit, error, pattern",
    [
        (lambda s: s.pop("head.bias"), ValueError, r"state: .*missing \['head.bias'\]"),
        (lambda s: s.update(extra=np.zeros(1)), ValueError, r"state: .*unexpected \['extra'\]"),
        (lambda s: s.update({"head.weight": np.zeros((1, 3))}), ValueError, r"state\['head.weight'\]: .*\(3, 1\)"),
        (lambda s: s.update({"scale": np.ones(3, dtype=np.int64)}), TypeError, r"state\['scale'\]: .*int64"),
    ],
    ids=["missing_key", "unexpected_key", "wrong_shape", "integer_array"],
)
def test_load_state_dict_rejects_bad_state_and_changes_nothing(edit, error: type, pattern: str) -> None:
    module = Pair(np.random.default_rng(16))
    before = module.state_dict()
    state = {name: value + 1.0 for name, value in before.items()}
    edit(state)
    with pytest.raises(error, match=pattern):
        module.load_state_dict(state)
    for name, value in module.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_flatten_parameters_keeps_values_and_makes_views_of_one_buffer() -> None:
    rng = np.random.default_rng(17)
    network = small_network(rng)
    x = rng.standard_normal((4, 3))
    before = network.state_dict()
    y_before = network.forward(x).copy()
    network.flatten_parameters()
    parameters = network.parameters()
    for name, value in network.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
    # the values are copied exactly; the output is another code path (weights moved into one buffer,
    # at other addresses, where OpenBLAS may split the product differently): within 4 ulps
    np.testing.assert_array_max_ulp(network.forward(x), y_before, maxulp=4)
    value_base, grad_base = parameters[0].value.base, parameters[0].grad.base
    assert value_base is not None and grad_base is not None and value_base is not grad_base
    assert value_base.ndim == 1 and value_base.size == network.num_parameters()
    assert all(p.value.base is value_base and p.grad.base is grad_base for p in parameters)
    np.testing.assert_array_equal(value_base, np.concatenate([p.value.ravel() for p in parameters]))


def test_after_flattening_backward_fills_the_flat_gradient_buffer() -> None:
    rng = np.random.default_rng(18)
    network = small_network(rng)
    network.flatten_parameters()
    network.forward(rng.standard_normal((4, 3)))
    network.backward(rng.standard_normal((4, 2)))
    parameters = network.parameters()
    np.testing.assert_array_equal(parameters[0].grad.base, np.concatenate([p.grad.ravel() for p in parameters]))
    assert np.any(parameters[0].grad.base != 0)


@pytest.mark.parametrize("shape", [(2, 3), (4,), ()], ids=["matrix", "vector", "scalar"])
def test_parameter_keeps_its_shape_and_starts_with_a_zero_gradient(shape: tuple[int, ...]) -> None:
    parameter = Parameter(np.ones(shape, dtype=np.float32))
    assert parameter.shape == shape and parameter.dtype == np.float32
    assert parameter.grad.shape == shape and parameter.grad.dtype == np.float32 and not parameter.grad.any()


def test_parameter_makes_a_fortran_ordered_value_c_contiguous_with_the_same_values() -> None:
    value = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    parameter = Parameter(value)
    assert parameter.value.flags.c_contiguous
    np.testing.assert_array_equal(parameter.value, value)


# -- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.ones((2, 4)), np.ones(3), np.ones((2, 3, 1)), [[1.0, 2.0, 3.0]]],
                         ids=["wrong_width", "1d", "3d", "list"])
def test_dense_forward_rejects_a_wrong_shape_naming_x(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^x: expected shape \(batch, 3\)"):
        Dense(3, 2, rng=np.random.default_rng(0)).forward(bad)


@pytest.mark.parametrize("layer_dtype, input_dtype", [(np.float64, np.float32), (np.float32, np.float64),
                                                      (np.float64, np.int64)])
def test_dense_forward_rejects_a_dtype_other_than_the_layers(layer_dtype: type, input_dtype: type) -> None:
    dense = Dense(3, 2, rng=np.random.default_rng(0), dtype=layer_dtype)
    with pytest.raises(TypeError, match=f"^x: expected dtype {np.dtype(layer_dtype)}"):
        dense.forward(np.ones((2, 3), dtype=input_dtype))


@pytest.mark.parametrize("size", [0, -1, 2.0, True, "3"])
@pytest.mark.parametrize("argument", ["in_features", "out_features"])
def test_dense_rejects_a_non_positive_or_non_integer_size(argument: str, size: object) -> None:
    sizes = {"in_features": 3, "out_features": 2, argument: size}
    with pytest.raises(ValueError, match=f"^{argument}: "):
        Dense(sizes["in_features"], sizes["out_features"], rng=np.random.default_rng(0))


def test_dense_rejects_an_unknown_init_a_missing_generator_and_an_integer_dtype() -> None:
    with pytest.raises(ValueError, match="^init: .*'xavier'"):
        Dense(3, 2, rng=np.random.default_rng(0), init="xavier")
    with pytest.raises(TypeError, match="^rng: "):
        Dense(3, 2, rng=0)
    with pytest.raises(TypeError, match="^dtype: "):
        Dense(3, 2, rng=np.random.default_rng(0), dtype=np.int32)
    with pytest.raises(ValueError, match="^order: .*'A'"):
        Dense(3, 2, rng=np.random.default_rng(0), order="A")


def test_dense_backward_before_forward_raises() -> None:
    with pytest.raises(RuntimeError, match="before forward"):
        Dense(3, 2, rng=np.random.default_rng(0)).backward(np.ones((1, 2)))


def test_sequential_rejects_a_non_module_naming_its_position() -> None:
    with pytest.raises(TypeError, match=r"^modules\[1\]: "):
        Sequential(ReLU(), np.tanh)


@pytest.mark.parametrize("dtype", ["float32", np.float64, np.dtype("float32")])
def test_as_float_dtype_accepts_float32_and_float64(dtype: object) -> None:
    assert as_float_dtype(dtype) in (np.float32, np.float64)


@pytest.mark.parametrize("dtype", [np.float16, np.int64, "not a dtype", complex])
def test_as_float_dtype_rejects_other_dtypes(dtype: object) -> None:
    with pytest.raises(TypeError, match="^dtype: "):
        as_float_dtype(dtype)


def test_backward_without_accumulate_overwrites_stale_gradients() -> None:
    rng = np.random.default_rng(3)
    net = Sequential(Dense(4, 5, rng=rng), LeakyReLU(0.2), Dense(5, 2, rng=rng, init="glorot"))
    x, grad_out = rng.standard_normal((6, 4)), rng.standard_normal((6, 2))
    net.zero_grad()
    net.forward(x)
    net.backward(grad_out)
    expected = [p.grad.copy() for p in net.parameters()]
    for parameter in net.parameters():
        parameter.grad[...] = 1e9  # stale garbage that accumulate=False must not keep
    net.forward(x)
    net.backward(grad_out, accumulate=False)
    for parameter, grad in zip(net.parameters(), expected):
        np.testing.assert_array_equal(parameter.grad, grad)


# -- memory order: Dense(order=) ------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_column_major_output_has_the_same_values_and_gradients(dtype: type) -> None:
    rng = np.random.default_rng(2)
    row_major = Dense(7, 5, rng=np.random.default_rng(3), dtype=dtype)
    column_major = Dense(7, 5, rng=np.random.default_rng(3), dtype=dtype, order="F")
    x, grad_y = rng.standard_normal((6, 7)).astype(dtype), rng.standard_normal((6, 5)).astype(dtype)
    y_c, y_f = row_major.forward(x), column_major.forward(x)
    assert y_c.flags.c_contiguous and y_f.flags.f_contiguous and not y_f.flags.c_contiguous
    tolerance = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(y_f, y_c, rtol=tolerance, atol=tolerance)
    grad_x_c = row_major.backward(grad_y).copy()
    grad_x_f = column_major.backward(np.asfortranarray(grad_y))
    np.testing.assert_allclose(grad_x_f, grad_x_c, rtol=tolerance, atol=tolerance)
    for mine, theirs in zip(column_major.parameters(), row_major.parameters()):
        np.testing.assert_allclose(mine.grad, theirs.grad, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("make", [ReLU, lambda: LeakyReLU(0.2), Sigmoid, Tanh, Identity])
def test_activations_and_input_gradients_keep_the_inputs_memory_order(make) -> None:
    rng = np.random.default_rng(4)
    x, grad_y = rng.standard_normal((5, 3)), rng.standard_normal((5, 4))
    results = {}
    for order in ("C", "F"):
        network = Sequential(Dense(3, 4, rng=np.random.default_rng(5), order=order), make())
        y = network.forward(x.copy(order=order))
        grad_x = network.backward(grad_y.copy(order=order))
        grad_activation = network[1].backward(grad_y.copy(order=order))  # the activation's own output
        for array in (y, grad_x, grad_activation):
            assert array.flags.f_contiguous if order == "F" else array.flags.c_contiguous
        results[order] = y.copy(), grad_x.copy(), grad_activation.copy()
    for row_major, column_major in zip(results["C"], results["F"]):
        np.testing.assert_allclose(column_major, row_major, rtol=1e-13, atol=1e-15)
