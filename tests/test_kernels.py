"""Tests for npvae.kernels: each fast kernel equals its plain-NumPy reference, and the switch.

Tolerances. Two forms of one computation may round differently (BLAS sums in another order,
one exponential where the textbook has two), so fast and reference are compared within
rounding, not bit for bit. For a value that is a sum of n terms, the two may differ by
``TOLERANCE_ULPS * (n + 2) * eps * sum|terms|`` (``eps`` the dtype's machine epsilon; a
sum's rounding error is bounded by about n * eps * sum|terms|, and each form carries one); an
elementwise result differs by at most ``TOLERANCE_ULPS`` ulps of its size. Every kernel runs
over several shapes (1 row, 1 column, odd sizes, sizes past a fast block), both float dtypes
and, where a kernel takes matrices, row-major, column-major and strided inputs.
"""

from __future__ import annotations

import numpy as np
import pytest

import npvae
from npvae import VAE, Adam, kernels

KINDS = kernels.KINDS
DTYPES = [np.float32, np.float64]
SHAPES = [(1, 1), (1, 7), (5, 1), (6, 33), (64, 130)]
LAYOUTS = ["C", "F", "S"]
TOLERANCE_ULPS = 4


def _laid_out(array: np.ndarray, layout: str) -> np.ndarray:
    """``array``'s values stored row-major ("C"), column-major ("F") or as a strided view ("S")."""
    if layout == "S":
        wide = np.zeros((array.shape[0], 2 * array.shape[1]), dtype=array.dtype)
        wide[:, ::2] = array
        return wide[:, ::2]
    return array.copy(order=layout)


def assert_within_rounding(fast: np.ndarray, reference: np.ndarray, scale: np.ndarray | float, terms: int,
                           dtype: type) -> None:
    """|fast - reference| <= TOLERANCE_ULPS * (terms + 2) * eps * scale, elementwise."""
    eps = np.finfo(dtype).eps
    bound = TOLERANCE_ULPS * (terms + 2) * eps * np.asarray(scale, dtype=np.float64) + np.finfo(dtype).tiny
    difference = np.abs(np.asarray(fast, np.float64) - np.asarray(reference, np.float64))
    assert np.all(difference <= bound), f"largest excess {np.max(difference - bound):.3g}, bound up to {np.max(bound):.3g}"


def both(name: str):
    return kernels.implementation(name, "fast"), kernels.implementation(name, "reference")


def test_the_switch_rejects_an_unknown_kind_and_using_restores_the_previous_set() -> None:
    with pytest.raises(ValueError, match="^kind: "):
        kernels.use("blas")
    assert kernels.current() == "fast"
    with pytest.raises(RuntimeError):
        with kernels.using("reference"):
            assert kernels.current() == "reference"
            assert kernels.affine is kernels.implementation("affine", "reference")
            raise RuntimeError("leave the block by an exception")
    assert kernels.current() == "fast"
    assert kernels.affine is kernels.implementation("affine", "fast")


def test_npvae_kernels_is_importable_under_its_public_name() -> None:
    import npvae.kernels as public

    assert public is npvae.kernels is kernels


# -- the equivalence of each fast kernel with its reference ------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_affine_fast_equals_reference(dtype: type, shape: tuple[int, int], layout: str) -> None:
    rng = np.random.default_rng(0)
    rows, inner = shape
    x = _laid_out(rng.standard_normal(shape).astype(dtype), layout)
    w = _laid_out(rng.standard_normal((inner, 9)).astype(dtype), layout)
    b = rng.standard_normal(9).astype(dtype)
    fast, reference = both("affine")
    results = [kernel(x, w, b, out=np.empty((rows, 9), dtype=dtype, order=order))
               for kernel, order in ((fast, "F"), (reference, "C"))]
    assert all(result.dtype == dtype for result in results)
    assert_within_rounding(results[0], results[1], np.abs(x) @ np.abs(w) + np.abs(b), inner, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_matmul_and_column_sums_fast_equal_reference(dtype: type, shape: tuple[int, int], layout: str,
                                                     beta: float) -> None:
    rng = np.random.default_rng(1)
    rows, inner = shape
    a = _laid_out(rng.standard_normal(shape).astype(dtype), layout)
    g = _laid_out(rng.standard_normal((inner, 5)).astype(dtype), layout)
    start = rng.standard_normal((rows, 5)).astype(dtype)
    products = []
    for kernel in both("matmul"):
        out = start.copy(order="F" if layout == "F" else "C")
        products.append(kernel(a, g, out=out, beta=beta).copy())
    assert_within_rounding(*products, np.abs(a) @ np.abs(g) + np.abs(start), inner, dtype)
    sums = [kernel(g, out=start[0].copy(), beta=beta) for kernel in both("column_sums")]
    assert_within_rounding(*sums, np.abs(g).sum(axis=0) + np.abs(start[0]), inner, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layout", ["C", "F"])
def test_sigmoid_fast_equals_reference_to_a_few_ulps(dtype: type, shape: tuple[int, int], layout: str) -> None:
    rng = np.random.default_rng(2)
    x = _laid_out((rng.standard_normal(shape) * 30).astype(dtype), layout)
    x.flat[0] = -1000.0  # exp(-x) overflows in the fast form: the result must still round to 0
    fast, reference = (kernel(x, out=np.empty_like(x)) for kernel in both("sigmoid"))
    assert fast.flat[0] == 0.0 and reference.flat[0] == 0.0
    assert_within_rounding(fast, reference, np.abs(reference), 0, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layout", ["C", "F"])
def test_bce_with_logits_fast_equals_reference(dtype: type, shape: tuple[int, int], layout: str) -> None:
    rng = np.random.default_rng(3)
    logits = _laid_out((rng.standard_normal(shape) * 8).astype(dtype), layout)
    target = rng.uniform(0, 1, shape).astype(dtype)
    target[:, ::3] = np.round(target[:, ::3])  # binary pixels too, where max(l, 0) - t l may cancel to 0
    values, grads = [], []
    for kernel in both("bce_with_logits"):
        grad = np.empty_like(logits)
        values.append(kernel(logits, target, grad, np.empty_like(logits)))
        grads.append(grad)
    size = np.abs(logits) + np.log1p(np.exp(-np.abs(logits)))  # each term's magnitude is at most this
    assert_within_rounding(values[0], values[1], size.sum(axis=1), shape[1], dtype)
    assert_within_rounding(grads[0], grads[1], 1.0, 0, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("repeats", [1, 3])
def test_repeated_bce_with_logits_fast_equals_reference_and_the_plain_bce(dtype: type, repeats: int) -> None:
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 1, (4, 11)).astype(dtype)
    logits = (rng.standard_normal((4 * repeats, 11)) * 5).astype(dtype)
    fast, reference = (kernel(logits, x, repeats, np.empty_like(logits)) for kernel in both("repeated_bce_with_logits"))
    plain = kernels.implementation("bce_with_logits", "reference")(
        logits, np.repeat(x, repeats, axis=0), np.empty_like(logits), np.empty_like(logits))
    size = (np.abs(logits) + 1).sum(axis=1)
    assert_within_rounding(fast, reference, size, 11, dtype)
    assert_within_rounding(reference, plain, size, 11, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [1, 7, 8192, 20_001])
def test_moving_average_add_scaled_and_squared_norm_fast_equal_reference(dtype: type, size: int) -> None:
    rng = np.random.default_rng(5)
    average, x = rng.standard_normal(size).astype(dtype), rng.standard_normal(size).astype(dtype)
    averages = [average.copy(), average.copy()]
    for kernel, out in zip(both("moving_average"), averages):
        kernel(out, x, 0.9)
    assert_within_rounding(*averages, np.abs(average) + np.abs(x), 0, dtype)
    sums = [average.copy(), average.copy()]
    for kernel, out in zip(both("add_scaled"), sums):
        kernel(out, -0.3, x)
    assert_within_rounding(*sums, np.abs(average) + np.abs(x), 0, dtype)
    norms = [kernel(x) for kernel in both("squared_norm")]
    assert_within_rounding(*norms, float(np.sum(x.astype(np.float64) ** 2)), size, dtype)


def test_update_blocks_cover_every_element_once_in_small_blocks() -> None:
    values, grads = np.arange(20_000.0), np.arange(20_000.0) + 0.5
    fast, reference = both("update_blocks")
    assert reference([(values, grads)]) == [(values, grads)]
    blocks = fast([(values, grads)])
    assert max(block[0].size for block in blocks) <= kernels.BLOCK_SIZE
    for position in (0, 1):
        joined = np.concatenate([block[position] for block in blocks[::-1]])
        np.testing.assert_array_equal(joined, (values, grads)[position])
        assert all(np.shares_memory(block[position], (values, grads)[position]) for block in blocks)


@pytest.mark.parametrize("dtype", DTYPES)
def test_flush_subnormals_zeroes_only_subnormal_state_and_only_in_the_fast_set(dtype: type) -> None:
    tiny = np.finfo(dtype).tiny
    state = np.array([tiny / 4, -tiny / 8, tiny, 1.0, 0.0], dtype=dtype)
    fast, reference = both("flush_subnormals")
    for step, kernel, expected in ((49, fast, state), (50, reference, state),
                                   (50, fast, np.array([0.0, 0.0, tiny, 1.0, 0.0], dtype=dtype))):
        array = state.copy()
        kernel(step, [array])
        np.testing.assert_array_equal(array, expected)


# -- the whole library on each set ------------------------------------------------------------
def _train_steps(dtype: type, steps: int) -> tuple[float, list[np.ndarray]]:
    model = VAE(16, (12, 9), 3, seed=3, dtype=dtype)
    optimizer = Adam(model.parameters(), lr=1e-2)
    x = np.random.default_rng(6).uniform(0, 1, (10, 16)).astype(dtype)
    rng = np.random.default_rng(7)
    for _ in range(steps):
        loss = model.loss_and_grads(x, rng=rng)
        optimizer.step()
    return loss, [parameter.value.copy() for parameter in model.parameters()]


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-3)])
def test_the_library_trains_alike_on_both_kernel_sets(dtype: type, rtol: float) -> None:
    """Ten Adam steps of a VAE: loss and every parameter agree to rtol (1e-10 in float64; 1e-3 in
    float32, where ten steps amplify the rounding of a few ulps), with atol = rtol * the
    parameter's largest value."""
    results = {}
    for kind in KINDS:
        with kernels.using(kind):
            results[kind] = _train_steps(dtype, 10)
    (fast_loss, fast_values), (reference_loss, reference_values) = results["fast"], results["reference"]
    assert fast_loss == pytest.approx(reference_loss, rel=rtol)
    for mine, theirs in zip(fast_values, reference_values):
        np.testing.assert_allclose(mine, theirs, rtol=rtol, atol=rtol * np.abs(theirs).max())


def test_the_reference_set_really_runs_the_reference_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    called = set()
    for name in ("affine", "matmul", "column_sums", "bce_with_logits", "adam_update", "moving_average",
                 "add_scaled"):
        plain = kernels.implementation(name, "reference")
        monkeypatch.setitem(kernels._TABLES["reference"], name,
                            lambda *args, _name=name, _plain=plain, **kw: (called.add(_name), _plain(*args, **kw))[1])
    with kernels.using("reference"):
        _train_steps(np.float64, 1)
    assert called == {"affine", "matmul", "column_sums", "bce_with_logits", "adam_update", "moving_average",
                      "add_scaled"}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout_a", ["C", "F", "S"])
@pytest.mark.parametrize("layout_b", ["C", "F", "S"])
@pytest.mark.parametrize("layout_out", ["C", "F", "S"])
@pytest.mark.parametrize("beta", [0.0, 1.0])
@pytest.mark.parametrize("shape", [(5, 3, 4), (1, 3, 4), (5, 3, 1), (1, 1, 1), (5, 1, 4)])
@pytest.mark.parametrize("kind", KINDS)
def test_matmul_computes_a_b_plus_beta_out_in_place_for_any_memory_order(
    kind: str, dtype: type, layout_a: str, layout_b: str, layout_out: str, beta: float, shape: tuple[int, int, int]
) -> None:
    rows, inner, columns = shape
    rng = np.random.default_rng(0)
    a = rng.standard_normal((rows, inner)).astype(dtype)
    b = rng.standard_normal((inner, columns)).astype(dtype)
    start = rng.standard_normal((rows, columns)).astype(dtype)
    out = _laid_out(start, layout_out)
    if beta == 0.0:
        out[...] = np.nan  # as in BLAS, beta = 0 must not read out
    kernels.implementation("matmul", kind)(_laid_out(a, layout_a), _laid_out(b, layout_b), out=out, beta=beta)
    expected = a.astype(np.float64) @ b.astype(np.float64) + beta * start
    tolerance = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(out, expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("inner", [0, 3])
@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_matmul_over_an_empty_inner_dimension_gives_beta_out(kind: str, inner: int, beta: float) -> None:
    out = np.full((2, 4), 3.0)
    a, b = np.ones((2, inner)), np.ones((inner, 4))
    kernels.implementation("matmul", kind)(a, b, out=out, beta=beta)
    np.testing.assert_array_equal(out, np.full((2, 4), inner + 3.0 * beta))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layout", ["C", "F", "S"])
@pytest.mark.parametrize("beta", [0.0, 1.0])
@pytest.mark.parametrize("rows", [0, 1, 6])
def test_column_sums_computes_the_sum_over_rows_plus_beta_out_for_any_memory_order(
    kind: str, layout: str, beta: float, rows: int
) -> None:
    rng = np.random.default_rng(1)
    g, start = rng.standard_normal((rows, 4)), rng.standard_normal(4)
    out = start.copy()
    kernels.implementation("column_sums", kind)(_laid_out(g, layout) if rows else g, out=out, beta=beta)
    np.testing.assert_allclose(out, g.sum(axis=0) + beta * start, rtol=1e-14, atol=1e-14)


# -- all_finite: the one-pass BLAS form must never miss a NaN or inf ---------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_all_finite_finds_a_nan_or_inf_at_every_position(kind: str, dtype: type, bad: float) -> None:
    all_finite = kernels.implementation("all_finite", kind)
    rng = np.random.default_rng(5)
    # around every SIMD width and tail; 250,001 is above the size where OpenBLAS splits asum over threads
    for size in (*range(1, 70), 127, 128, 129, 1000, 65_537, 250_001):
        array = rng.standard_normal(size).astype(dtype)
        assert all_finite(array)
        positions = range(size) if size < 200 else (0, 1, size // 2, size - size // 5, size - 2, size - 1)
        for position in positions:
            array[position] = bad
            assert not all_finite(array), (size, position)
            array[position] = 0.5


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite_accepts_large_finite_values_whose_sum_overflows(kind: str, dtype: type) -> None:
    all_finite = kernels.implementation("all_finite", kind)
    array = np.full((3, 4), np.finfo(dtype).max, dtype=dtype)
    assert all_finite(array)
    assert all_finite(np.empty((0, 3), dtype=dtype))


# -- Adam: the unscaled fast step against the textbook one ----------------------------------------
def _adam_runs(dtype: type, betas: tuple[float, float], steps: int, weight_decay: float = 0.0):
    """(parameters, exp_avg, exp_avg_sq) after ``steps`` Adam steps on each kernel set, same gradients."""
    results = {}
    for kind in KINDS:
        rng = np.random.default_rng(11)
        parameter = npvae.Parameter(rng.standard_normal(20_001).astype(dtype))
        optimizer = Adam([parameter], lr=1e-2, betas=betas, weight_decay=weight_decay)
        with kernels.using(kind):
            for _ in range(steps):
                parameter.grad[...] = rng.standard_normal(parameter.grad.shape) * rng.uniform(0.1, 10)
                optimizer.step()
        results[kind] = parameter.value, optimizer.exp_avg, optimizer.exp_avg_sq
    return results["fast"], results["reference"]


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-13), (np.float32, 1e-5)])
@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.5, 0.999), (0.0, 0.9)])
def test_adam_update_fast_follows_the_reference_through_folds(dtype: type, rtol: float, betas) -> None:
    """73 steps (one fold at step 50, 23 steps of pending scale read out at the end): parameters,
    m and v agree to ``rtol`` times their largest entry (float32 1e-5, float64 1e-13; measured at
    most 1.1e-6 and 1e-15, on v, whose two forms round the decay differently at every step).
    Betas below ``ADAM_UNSCALED_MIN_BETA`` take the plain passes."""
    (value, m, v), (value_ref, m_ref, v_ref) = _adam_runs(dtype, betas, 73, weight_decay=0.01)
    for mine, theirs in ((value, value_ref), (m, m_ref), (v, v_ref)):
        np.testing.assert_allclose(mine, theirs, rtol=rtol, atol=rtol * np.abs(theirs).max())


def test_adam_update_fast_stores_unscaled_means_and_folds_them_every_interval() -> None:
    parameter = npvae.Parameter(np.ones(10))
    optimizer = Adam([parameter])
    parameter.grad[...] = 0.5
    optimizer.step()
    assert optimizer._scales == pytest.approx([0.9, 0.999])
    np.testing.assert_allclose(optimizer._exp_avg, 0.1 * 0.5 / 0.9)  # M = m / c1
    for _ in range(kernels.ADAM_FOLD_INTERVAL - 1):
        parameter.grad[...] = 0.0
        optimizer.step()
    assert optimizer._scales == [1.0, 1.0]  # folded at step 50
    np.testing.assert_allclose(optimizer._exp_avg, 0.05 * 0.9**49, rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_resumes_bit_exactly_from_a_state_read_between_folds(dtype: type) -> None:
    """A state_dict taken at step 23 (scales pending) folds them in: the optimizer that wrote it and
    one loaded from it take the next 40 steps (past a fold) bit for bit alike."""
    rng = np.random.default_rng(2)
    gradients = rng.standard_normal((63, 300)).astype(dtype)
    parameter = npvae.Parameter(rng.standard_normal(300).astype(dtype))
    optimizer = Adam([parameter], lr=1e-2)
    for gradient in gradients[:23]:
        parameter.grad[...] = gradient
        optimizer.step()
    assert optimizer._scales != [1.0, 1.0]
    saved_value, saved_state = parameter.value.copy(), optimizer.state_dict()
    resumed_parameter = npvae.Parameter(saved_value)
    resumed = Adam([resumed_parameter])
    resumed.load_state_dict(saved_state)
    for gradient in gradients[23:]:
        for p, opt in ((parameter, optimizer), (resumed_parameter, resumed)):
            p.grad[...] = gradient
            opt.step()
    np.testing.assert_array_equal(resumed_parameter.value, parameter.value)
    for name, array in optimizer.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[name], array)


# -- log1p without np.log1p (float32 BCE) ------------------------------------------------------------
def test_fast_float32_log1p_is_within_4_ulps_of_the_exact_value() -> None:
    """log(u) - ((u - 1) - e) / u, u = 1 + e, against log1p in float64 rounded to float32, over
    e = exp(-|l|) for |l| up to 104 (down to the subnormals), uniform e in [0, 1] and the edges
    (0, 1, the smallest subnormal, 2^-24 and 2^-23 where u - 1 rounds): 3.2 ulps measured
    (np.log1p: 0.8). A form that drops the correction (log(u) alone) is 2^23 ulps off at e = 2^-24."""
    rng = np.random.default_rng(0)
    e = np.concatenate([np.exp(-rng.uniform(0, 104, 200_000)), rng.uniform(0, 1, 100_000),
                        [0.0, 1.0, 1e-45, 1.2e-38, 2.0**-24, 2.0**-23, 3 * 2.0**-25]]).astype(np.float32)
    exact = np.log1p(e.astype(np.float64))
    out = np.empty_like(e)
    kernels._log1p_fast(e, out=out)
    ulp = np.spacing(np.abs(exact.astype(np.float32))).astype(np.float64)
    assert np.max(np.abs(out - exact) / ulp) <= 4
    assert np.max(np.abs(np.log(1 + e) - exact) / ulp) > 1e6  # the uncorrected log is far off


# -- the fast kernels cut into parts over npvae's threads ------------------------------------------------
def _count_parts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that receives the number of parts of every ``npvae.threads.run_parts`` call from here on."""
    counts: list[int] = []
    run_parts = npvae.threads.run_parts

    def counted(work, parts):
        counts.append(len(parts))
        return run_parts(work, parts)

    monkeypatch.setattr(npvae.threads, "run_parts", counted)
    return counts



@pytest.mark.parametrize("count", [2, 3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_products_cut_over_threads_equal_the_reference(count: int, dtype: type, layout: str) -> None:
    """A product above PARALLEL_MIN_FLOPS, cut by rows (row-major out) or columns (column-major
    out) over 2 or 3 threads, equals the plain a @ b (+ b) to rounding."""
    rng = np.random.default_rng(9)
    a = _laid_out(rng.standard_normal((97, 300)).astype(dtype), layout)
    w = _laid_out(rng.standard_normal((300, 141)).astype(dtype), layout)
    bias = rng.standard_normal(141).astype(dtype)
    assert 2 * 97 * 300 * 141 >= kernels.PARALLEL_MIN_FLOPS
    scale = np.abs(a) @ np.abs(w) + np.abs(bias)
    for order in ("C", "F"):
        out = np.empty((97, 141), dtype=dtype, order=order)
        with npvae.threads.limited(count):
            assert len(kernels._product_parts(a, w, out)) == count
            product = kernels.implementation("matmul", "fast")(a, w, out=out, beta=0.0).copy()
            affine = kernels.implementation("affine", "fast")(a, w, bias, out=out).copy()
        assert_within_rounding(product, a @ w, scale, 300, dtype)
        assert_within_rounding(affine, a @ w + bias, scale, 300, dtype)


@pytest.mark.parametrize("count", [2, 3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_cut_over_threads_equals_the_reference(count: int, dtype: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows of a BCE above PARALLEL_MIN_ELEMENTS, cut over 2 or 3 threads."""
    parts = _count_parts(monkeypatch)
    rng = np.random.default_rng(10)
    logits = (rng.standard_normal((66, 600)) * 8).astype(dtype)
    target = rng.uniform(0, 1, logits.shape).astype(dtype)
    assert logits.size >= kernels.PARALLEL_MIN_ELEMENTS
    fast, reference = both("bce_with_logits")
    expected_grad = np.empty_like(logits)
    expected = reference(logits, target, expected_grad, np.empty_like(logits))
    size = (np.abs(logits) + 1).sum(axis=1)
    for _ in range(5):
        grad = np.empty_like(logits)
        with npvae.threads.limited(count):
            value = fast(logits, target, grad, np.empty_like(logits))
        assert parts.pop() == count
        assert value.shape == (66,)
        assert_within_rounding(value, expected, size, 600, dtype)
        assert_within_rounding(grad, expected_grad, 1.0, 0, dtype)


@pytest.mark.parametrize("count", [2, 3])
@pytest.mark.parametrize("examples, repeats", [(1, 1100), (6, 200), (2, 600)])
def test_repeated_bce_cut_over_threads_equals_the_reference(count: int, examples: int, repeats: int,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """By examples (at least one per thread), by rows of the one example, or (2 examples, 3 threads) whole."""
    parts = _count_parts(monkeypatch)
    rng = np.random.default_rng(11)
    x = rng.uniform(0, 1, (examples, 30)).astype(np.float32)
    logits = (rng.standard_normal((examples * repeats, 30)) * 5).astype(np.float32)
    assert logits.size >= kernels.PARALLEL_MIN_ELEMENTS
    fast, reference = both("repeated_bce_with_logits")
    expected = reference(logits, x, repeats, np.empty_like(logits))
    with npvae.threads.limited(count):
        value = fast(logits, x, repeats, np.empty_like(logits))
    assert parts == ([] if 1 < examples < count else [count])
    assert_within_rounding(value, expected, (np.abs(logits) + 1).sum(axis=1), 30, np.float32)


def test_small_work_is_not_cut() -> None:
    a, w = np.ones((8, 20), np.float32), np.ones((20, 30), np.float32)
    with npvae.threads.limited(2):
        assert len(kernels._product_parts(a, w, np.empty((8, 30), np.float32))) == 1
        assert kernels._row_cuts(np.ones((8, 30))) == [slice(None)]


def test_cuts_cover_the_range_in_near_equal_consecutive_slices() -> None:
    assert kernels._cuts(10, 3) == [slice(0, 4), slice(4, 7), slice(7, 10)]
    assert kernels._cuts(2, 3) == [slice(0, 1), slice(1, 2)]
    assert kernels._cuts(0, 2) == [slice(0, 0)]


def test_each_thread_gets_its_own_scratch_arrays() -> None:
    """Kernels run on several threads at once: a scratch array shared between threads would let
    one part overwrite another's intermediate values."""
    import threading

    here = kernels._scratch((3, 4), np.float32, "test")
    assert kernels._scratch((3, 4), np.float32, "test") is here  # kept for the next call on this thread
    there = []
    helper = threading.Thread(target=lambda: there.append(kernels._scratch((3, 4), np.float32, "test")))
    helper.start()
    helper.join()
    assert there[0] is not here and not np.shares_memory(there[0], here)
