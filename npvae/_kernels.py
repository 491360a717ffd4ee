"""The hot operations, each twice: a plain-NumPy reference and the fast form, and a switch.

The modules, losses and optimizers read as their formulas and call these kernels for the
work (``y = x @ W + b`` is ``kernels.affine(x, W, b, out=y)``). Each kernel exists as

    _<name>_reference   the textbook NumPy line(s): what a learner steps through in a debugger
    _<name>_fast        the same function made fast: BLAS with beta, layout-aware products,
                        one exponential where the textbook has two, blocked in-place updates

and ``tests/test_kernels.py`` holds each pair equal, to rounding, over shapes, dtypes and
memory orders. The fast set is the default; ``use("reference")`` (or, for a block of code,
``with using("reference"):``) switches the whole library to the plain forms::

    import npvae
    with npvae.kernels.using("reference"):
        loss = model.loss_and_grads(x, rng=rng)      # every product, loss and update in plain NumPy

Call kernels through the module (``kernels.affine(...)``): ``use`` rebinds the module's names,
so a name imported on its own (``from npvae.kernels import affine``) would not follow the switch.

Threads: the fast products (``np.matmul``, which releases the GIL while BLAS runs), the BCE
kernels and Adam's update cut large work into one part per thread of ``npvae.threads``
(``_product_parts``, ``_row_cuts``, ``_adam_share``); with one thread (``threads.current() == 1``)
they run whole. The SciPy BLAS calls left (scal, axpy and dot in the optimizers' updates and
norms, asum, gemm with beta) keep the GIL and run on the calling thread. All kernels write into
caller-owned arrays (``out=``) or per-thread scratch arrays and allocate nothing per call on the
fast path but the few rows-long vectors they return.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator, Sequence

import numpy as np
import scipy.special
from scipy.linalg import blas

from . import threads

__all__ = ["use", "using", "current", "KINDS", "affine", "matmul", "column_sums", "all_finite",
           "sigmoid", "bce_with_logits", "repeated_bce_with_logits", "moving_average", "add_scaled",
           "adam_update", "normalize_adam", "squared_norm", "update_blocks", "flush_subnormals", "order_of"]

KINDS = ("fast", "reference")

# Elements per block of a fast optimizer update (see ``_update_blocks_fast``). Small enough that a
# block's arrays stay in the L2 cache across all of Adam's passes (5 * 32 KB in float32), and that
# OpenBLAS runs axpy on the calling thread: it hands vectors over 10,000 elements to its thread
# pool, whose wake-up costs more than this work and stalls badly when the cores are busy.
BLOCK_SIZE = 8192
# The fast kernels split a product of at least this many FLOPs, and a BCE over at least this many
# elements, over npvae's threads (``npvae.threads``); below that, handing a part to a helper
# thread (~20 us) costs about what it saves
PARALLEL_MIN_FLOPS = 4_000_000
PARALLEL_MIN_ELEMENTS = 32_768
# Every this many optimizer steps, the fast kernels set subnormal optimizer state to 0
FLUSH_INTERVAL = 50
# Every this many steps, the fast Adam folds its scales into its state (see ``_adam_update_fast``):
# at the same steps as the flush, and before it, so that the flush sees m and v themselves
ADAM_FOLD_INTERVAL = 50


def order_of(array: np.ndarray) -> str:
    """"F" for an array stored column-major (and not also row-major), else "C"."""
    return "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"


# -- affine: y = x @ W + b ---------------------------------------------------------------------
def _affine_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    out[...] = x @ w + b
    return out


def _affine_fast(x: np.ndarray, w: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    def part(piece: tuple[np.ndarray, np.ndarray, np.ndarray, slice]) -> None:
        x_part, w_part, out_part, columns = piece
        np.matmul(x_part, w_part, out=out_part)  # no temporary: BLAS writes into out's memory order
        out_part += b[columns]

    threads.run_parts(part, _product_parts(x, w, out))
    return out


# -- matmul: out = a @ b + beta * out ----------------------------------------------------------
def _matmul_reference(a: np.ndarray, b: np.ndarray, out: np.ndarray, beta: float) -> np.ndarray:
    if beta == 0.0:
        out[...] = a @ b  # as in BLAS, out is not read when beta = 0 (it may hold garbage)
    else:
        out[...] = beta * out + a @ b
    return out


def _column_major(array: np.ndarray) -> tuple[np.ndarray, bool]:
    """(m, transposed): ``array`` as the Fortran-ordered matrix BLAS reads, without a copy when
    it is C- or F-contiguous. A C-ordered array's transpose is Fortran-ordered, so BLAS gets
    ``array.T`` with the flag to transpose it back; a strided view is copied."""
    if array.flags.f_contiguous:
        return array, False
    if array.flags.c_contiguous:
        return array.T, True
    return np.asfortranarray(array), False


def _matmul_fast(a: np.ndarray, b: np.ndarray, out: np.ndarray, beta: float) -> np.ndarray:
    """beta = 0 (every product of a training step): ``np.matmul`` into ``out``, which hands any
    C- or F-ordered operands to BLAS without a copy and releases the GIL while it runs, cut into
    one part per thread for a large product (``_product_parts``). beta != 0 (a backward that
    accumulates): BLAS gemm with beta (``_gemm``), on the calling thread."""
    if beta != 0.0:
        return _gemm(a, b, out, beta)
    threads.run_parts(lambda piece: np.matmul(piece[0], piece[1], out=piece[2]), _product_parts(a, b, out))
    return out


def _product_parts(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, slice]]:
    """out = a @ b cut into (a_part, b_part, out_part, columns) for ``npvae.threads.run_parts``: one
    part per thread when the product has ``PARALLEL_MIN_FLOPS``, else one. A row-major ``out`` is
    cut by rows (of a), a column-major one by columns (of b), so each part of out is contiguous."""
    count = threads.current()
    if count == 1 or 2 * a.shape[0] * a.shape[1] * b.shape[1] < PARALLEL_MIN_FLOPS:
        return [(a, b, out, slice(None))]
    if order_of(out) == "F":
        return [(a, b[:, cut], out[:, cut], cut) for cut in _cuts(out.shape[1], count)]
    return [(a[cut], b, out[cut], slice(None)) for cut in _cuts(out.shape[0], count)]


def _cuts(size: int, parts: int) -> list[slice]:
    """range(size) cut into at most ``parts`` non-empty consecutive slices whose lengths differ by
    at most one, the longer first: _cuts(10, 3) = [0:4, 4:7, 7:10]."""
    parts = max(1, min(parts, size))
    length, extra = divmod(size, parts)
    cuts, start = [], 0
    for index in range(parts):
        stop = start + length + (1 if index < extra else 0)
        cuts.append(slice(start, stop))
        start = stop
    return cuts


def _gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray, beta: float) -> np.ndarray:
    """out = a @ b + beta * out by SciPy's BLAS gemm, for operands in either memory order: a
    row-major ``out`` is computed as out^T = b^T a^T, whose result is column-major; each operand
    goes to BLAS as itself or as its transpose with the transpose flag, so no C- or F-contiguous
    array is copied. (SciPy's wrappers keep the GIL while BLAS runs: never cut into parts.)"""
    if a.shape[1] == 0 or out.size == 0:  # BLAS rejects empty arrays; a product over nothing is 0
        if beta == 0.0:
            out.fill(0)
        elif beta != 1.0:
            out *= beta
        return out
    target = out
    if not target.flags.f_contiguous:
        a, b, target = b.T, a.T, target.T
    a, trans_a = _column_major(a)
    b, trans_b = _column_major(b)
    gemm = blas.dgemm if out.dtype == np.float64 else blas.sgemm
    result = gemm(1.0, a, b, beta=beta, c=target, trans_a=trans_a, trans_b=trans_b, overwrite_c=True)
    if not np.may_share_memory(result, out):  # BLAS got a copy of ``out``: write the result back
        target[...] = result
    return out


# -- column sums: out = sum over rows of g + beta * out (a bias gradient) ------------------------
def _column_sums_reference(g: np.ndarray, out: np.ndarray, beta: float) -> np.ndarray:
    if beta == 0.0:
        out[...] = g.sum(axis=0)
    else:
        out[...] = beta * out + g.sum(axis=0)
    return out


def _column_sums_fast(g: np.ndarray, out: np.ndarray, beta: float) -> np.ndarray:
    # G^T 1 by one BLAS gemv: several times faster than sum(axis=0) on a step's small matrices
    _matvec(g.T, _ones(g.shape[0], g.dtype), out=out, beta=beta)
    return out


def _matvec(a: np.ndarray, x: np.ndarray, *, out: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> None:
    """out = alpha * a @ x + beta * out, in place, for ``a`` in either memory order: ``np.matmul``
    (BLAS gemv, the GIL released), then the scalings, which are exact for the alphas used (0.5, 1, -1)."""
    if beta == 0.0:
        np.matmul(a, x, out=out)
        if alpha != 1.0:
            out *= alpha
        return
    product = _scratch(out.shape, out.dtype, "matvec")
    np.matmul(a, x, out=product)
    if alpha != 1.0:
        product *= alpha
    if beta != 1.0:
        out *= beta
    out += product


@functools.lru_cache(maxsize=64)
def _ones(length: int, dtype: np.dtype) -> np.ndarray:
    """A read-only vector of ``length`` ones, for sums by ``_matvec``; cached, as it never changes."""
    ones = np.ones(length, dtype=dtype)
    ones.flags.writeable = False
    return ones


# -- all_finite: no NaN or inf anywhere ---------------------------------------------------------
def _all_finite_reference(array: np.ndarray) -> bool:
    return bool(np.isfinite(array).all())


def _all_finite_fast(array: np.ndarray) -> bool:
    """sum |a| (BLAS asum, one pass, no temporary) is NaN or inf when any entry is, so a finite
    sum settles it; a sum that is not finite may also be an overflow of large finite entries,
    which the elementwise test then tells apart."""
    flat = array.ravel(order="K")  # a view of any contiguous array, C- or F-ordered
    if flat.size == 0:
        return True
    if flat.dtype == np.float64:
        total = blas.dasum(flat)
    elif flat.dtype == np.float32:
        total = blas.sasum(flat)
    else:
        return bool(np.isfinite(flat).all())
    return bool(np.isfinite(total)) or bool(np.isfinite(flat).all())


# -- sigmoid: out = 1 / (1 + exp(-x)) -------------------------------------------------------------
def _sigmoid_reference(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    return scipy.special.expit(x, out=out)


def _sigmoid_fast(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Four plain passes, several times faster than expit here. For x below about -88 (float32)
    or -709 (float64) exp(-x) overflows to inf and 1 / inf = 0, the correct value rounded."""
    np.negative(x, out=out)
    with np.errstate(over="ignore"):
        np.exp(out, out=out)
    out += 1
    np.reciprocal(out, out=out)
    return out


# -- bce_with_logits: per-row softplus(l) - t l, and its gradient sigmoid(l) - t ----------------------
def _bce_with_logits_reference(
    logits: np.ndarray, target: np.ndarray, grad_logits: np.ndarray, work: np.ndarray
) -> np.ndarray:
    """softplus(l) = max(l, 0) + log1p(exp(-|l|)): exp never overflows. The small log1p terms
    are added after max(l, 0) - t l, which may cancel to exactly 0."""
    value = (np.maximum(logits, 0) - target * logits).sum(axis=1)
    value += np.log1p(np.exp(-np.abs(logits))).sum(axis=1)
    grad_logits[...] = scipy.special.expit(logits) - target
    return value


def _softplus_row_parts(logits: np.ndarray, work: np.ndarray, scratch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sum_j max(l_j, 0), sum_j log1p(e_j)) per row with e = exp(-|l|), left in ``work``.

    max(l, 0) = (l + |l|) / 2, so no exponent is ever positive; the row sums are BLAS gemv
    products with a vector of ones. ``scratch`` receives log1p(e); it may be ``work`` itself
    when e is not needed afterwards.
    """
    ones = _ones(logits.shape[1], logits.dtype)
    positive_part = np.empty(logits.shape[0], dtype=logits.dtype)
    log1p_part = np.empty(logits.shape[0], dtype=logits.dtype)
    np.abs(logits, out=work)
    _matvec(logits, ones, out=positive_part, alpha=0.5)
    _matvec(work, ones, out=positive_part, alpha=0.5, beta=1.0)
    np.negative(work, out=work)
    np.exp(work, out=work)
    if scratch is work and logits.dtype == np.float32:  # _log1p_fast needs e kept apart from its output
        scratch = _scratch(logits.shape, logits.dtype, "log1p")
    _log1p_fast(work, out=scratch)
    _matvec(scratch, ones, out=log1p_part)
    return positive_part, log1p_part


def _log1p_fast(e: np.ndarray, out: np.ndarray) -> np.ndarray:
    """log(1 + e) for 0 <= e <= 1, into ``out`` (which must not be ``e`` in float32).

    float64: np.log1p. float32: np.log1p is not vectorised there (on AVX2 ~4 times slower than
    a log), so with u = fl(1 + e) and d = (u - 1) - e, the rounding error of 1 + e (both
    subtractions exact: 1 <= u <= 2 and u - 1 is within a factor 2 of e, or 0),
        log(1 + e) = log(u - d) = log(u) - d / u + O((d / u)^2),   |d| <= 2^-24
    within 4 ulps of the exact value (tests/test_kernels.py; np.log1p: 1 ulp), in six fast passes.
    """
    if e.dtype != np.float32:
        return np.log1p(e, out=out)
    correction = _scratch(e.shape, e.dtype, "correction")
    np.add(e, 1, out=out)  # u
    np.subtract(out, 1, out=correction)
    correction -= e  # d
    correction /= out
    np.log(out, out=out)
    out -= correction
    return out


_SCRATCH = threading.local()  # each thread's own scratch arrays: threads may run kernels at once


def _scratch(shape: tuple[int, ...], dtype: np.dtype, purpose: str) -> np.ndarray:
    """This thread's scratch array for ``purpose``, kept for its next call of the same shape (the
    fast kernels allocate nothing per step: a new array of a batch's size would be new pages each
    time). At most 8 are kept per thread."""
    arrays = getattr(_SCRATCH, "arrays", None)
    if arrays is None:
        arrays = _SCRATCH.arrays = {}
    key = (shape, np.dtype(dtype), purpose)
    array = arrays.get(key)
    if array is None:
        if len(arrays) >= 8:
            arrays.clear()
        array = arrays[key] = np.empty(shape, dtype=dtype)
    return array


def _bce_with_logits_fast(
    logits: np.ndarray, target: np.ndarray, grad_logits: np.ndarray, work: np.ndarray
) -> np.ndarray:
    """``_bce_rows`` on each thread's share of the rows (``npvae.threads``), values put together in order."""
    cuts = _row_cuts(logits)
    if len(cuts) == 1:
        return _bce_rows(logits, target, grad_logits, work)
    parts = threads.run_parts(lambda rows: _bce_rows(logits[rows], target[rows], grad_logits[rows], work[rows]), cuts)
    return np.concatenate(parts)


def _row_cuts(array: np.ndarray) -> list[slice]:
    """The rows of a row-major ``array`` cut into one slice per thread when it has
    ``PARALLEL_MIN_ELEMENTS``, else one slice (a column-major array is never cut: its rows are not contiguous)."""
    count = threads.current()
    if count == 1 or array.size < PARALLEL_MIN_ELEMENTS or not array.flags.c_contiguous:
        return [slice(None)]
    return _cuts(array.shape[0], count)


def _bce_rows(logits: np.ndarray, target: np.ndarray, grad_logits: np.ndarray, work: np.ndarray) -> np.ndarray:
    """Value and gradient from the one exponential e = exp(-|l|):
        value = max(l, 0) - t l + log1p(e)
        sigmoid(l) = max([l >= 0], e) / (1 + e)        (1/(1+e) for l >= 0, e/(1+e) for l < 0)
    No masked (where=) NumPy operation: those are many times slower than plain passes. The
    halves (l + |l|) / 2 can overflow for |l| near the float max although the loss does not:
    the caller sees a non-finite value and may recompute with the reference form.
    """
    value, log1p_part = _softplus_row_parts(logits, work, grad_logits)
    value -= np.einsum("ij,ij->i", target, logits)
    value += log1p_part
    np.greater_equal(logits, 0, out=grad_logits)
    np.maximum(grad_logits, work, out=grad_logits)
    work += 1
    grad_logits /= work
    grad_logits -= target
    return value


# -- repeated_bce_with_logits: the BCE value of row r of logits against x[r // repeats] --------------
def _repeated_bce_with_logits_reference(
    logits: np.ndarray, x: np.ndarray, repeats: int, work: np.ndarray
) -> np.ndarray:
    target = np.repeat(x, repeats, axis=0)
    return _bce_with_logits_reference(logits, target, np.empty_like(logits), work)


def _repeated_bce_with_logits_fast(
    logits: np.ndarray, x: np.ndarray, repeats: int, work: np.ndarray
) -> np.ndarray:
    """``_repeated_bce_rows`` on each thread's share: whole rows of x each (their blocks of logits)
    when x has a row per thread, else, for one row of x, a share of its block."""
    cuts = _row_cuts(logits)
    if len(cuts) == 1 or 1 < x.shape[0] < len(cuts):
        return _repeated_bce_rows(logits, x, repeats, work)
    if x.shape[0] == 1:
        parts = threads.run_parts(lambda rows: _repeated_bce_rows(logits[rows], x, rows.stop - rows.start, work[rows]),
                                  cuts)
    else:
        cuts = _cuts(x.shape[0], len(cuts))

        def part(examples: slice) -> np.ndarray:
            rows = slice(examples.start * repeats, examples.stop * repeats)
            return _repeated_bce_rows(logits[rows], x[examples], repeats, work[rows])

        parts = threads.run_parts(part, cuts)
    return np.concatenate(parts)


def _repeated_bce_rows(logits: np.ndarray, x: np.ndarray, repeats: int, work: np.ndarray) -> np.ndarray:
    """Without the repeated copy of x: the target enters only through sum_j x_j l_j, one gemv
    per row of x over its block of logits."""
    value, log1p_part = _softplus_row_parts(logits, work, work)
    for index, row in enumerate(x):
        block = slice(index * repeats, (index + 1) * repeats)
        _matvec(logits[block], row, out=value[block], alpha=-1.0, beta=1.0)
    value += log1p_part
    return value


# -- moving_average: average = decay * average + (1 - decay) * x, in place ----------------------------
def _moving_average_reference(average: np.ndarray, x: np.ndarray, decay: float) -> None:
    average *= decay
    average += (1.0 - decay) * x


_SCAL_AXPY = {np.dtype(np.float64): (blas.dscal, blas.daxpy), np.dtype(np.float32): (blas.sscal, blas.saxpy)}


def _moving_average_fast(average: np.ndarray, x: np.ndarray, decay: float) -> None:
    # BLAS scal and axpy: one pass each, no temporary (NumPy's a += c * x makes two and one)
    scal, axpy = _SCAL_AXPY[average.dtype]
    scal(decay, average)
    axpy(x, average, a=1.0 - decay)


# -- add_scaled: y = y + alpha * x, in place ---------------------------------------------------------
def _add_scaled_reference(y: np.ndarray, alpha: float, x: np.ndarray) -> None:
    y += alpha * x


def _add_scaled_fast(y: np.ndarray, alpha: float, x: np.ndarray) -> None:
    _SCAL_AXPY[y.dtype][1](x, y, a=alpha)


# -- adam_update: one Adam step over an optimizer's blocks --------------------------------------------
# The fast form keeps Adam's running means unscaled: it stores M and V with m = c1 M, v = c2 V for
# scalars c1, c2 (``scales``), so that the decays m <- beta1 m and v <- beta2 v are scalar updates
# of c1, c2 instead of passes over memory. Every ``ADAM_FOLD_INTERVAL`` steps, and whenever the state
# is read (``normalize_adam``), the scales are folded back into the arrays (c = 1).
# Below this beta (beta1 = 0 included) the fast form runs the plain passes: c would fall below
# 0.85^50 = 3e-4 between two folds, and M, V grow by 1 / c
ADAM_UNSCALED_MIN_BETA = 0.85


def _adam_update_reference(
    blocks: Sequence[tuple[np.ndarray, ...]], work: np.ndarray, step: int,
    hyper: tuple[float, float, float, float, float], scales: list[float],
) -> None:
    """At step t, for each block (p, g, m, v), with g = g + weight_decay * p (``scales`` are folded
    in first, and stay 1):
        m = beta1 m + (1 - beta1) g,    v = beta2 v + (1 - beta2) g^2
        p = p - (lr sqrt(bc2) / bc1) m / (sqrt(v) + eps sqrt(bc2)),   bc = 1 - beta^t
    (torch's p - lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps), with sqrt(bc2) moved into the scalars.)
    """
    lr, beta1, beta2, eps, weight_decay = hyper
    _normalize_adam_reference([b[2] for b in blocks], [b[3] for b in blocks], scales)
    bias_correction2_sqrt = float(np.sqrt(1.0 - beta2**step))
    step_size = lr * bias_correction2_sqrt / (1.0 - beta1**step)
    for value, grad, exp_avg, exp_avg_sq in blocks:
        work_block = work[: value.size].reshape(value.shape)
        if weight_decay:
            grad = grad + weight_decay * value
        moving_average(exp_avg, grad, beta1)
        np.multiply(grad, grad, out=work_block)
        moving_average(exp_avg_sq, work_block, beta2)
        np.sqrt(exp_avg_sq, out=work_block)
        work_block += eps * bias_correction2_sqrt
        np.divide(exp_avg, work_block, out=work_block)
        add_scaled(value, -step_size, work_block)


def _adam_update_fast(
    blocks: Sequence[tuple[np.ndarray, ...]], work: np.ndarray, step: int,
    hyper: tuple[float, float, float, float, float], scales: list[float],
) -> None:
    """The same step in 7 passes over memory instead of 9 (10 NumPy passes per thread on several threads,
    ``_adam_share``), on unscaled means M, V (m = c1 M, v = c2 V):
        c1 <- beta1 c1,   M <- M + ((1 - beta1) / c1) g          (so c1 M = beta1 m + (1 - beta1) g)
        c2 <- beta2 c2,   V <- V + ((1 - beta2) / c2) g^2
        p  <- p - (step_size c1 / sqrt(c2)) M / (sqrt(V) + eps sqrt(bc2) / sqrt(c2))
    which is the reference's update with m = c1 M, v = c2 V substituted (sqrt(v) = sqrt(c2) sqrt(V)).
    c1 and c2 only shrink, so M and V grow by at most 1 / beta^ADAM_FOLD_INTERVAL (194x for
    beta1 = 0.9) before the scales are folded back every ``ADAM_FOLD_INTERVAL`` steps. With a beta
    below ``ADAM_UNSCALED_MIN_BETA`` the scales would underflow within a few steps (and beta1 = 0
    divides by 0): the plain passes run instead, with c = 1.
    """
    lr, beta1, beta2, eps, weight_decay = hyper
    if min(beta1, beta2) < ADAM_UNSCALED_MIN_BETA:
        _adam_update_reference(blocks, work, step, hyper, scales)  # its passes are the fast kernels'
        return
    scales[0] *= beta1
    scales[1] *= beta2
    scale1, scale2_sqrt = scales[0], float(np.sqrt(scales[1]))
    bias_correction2_sqrt = float(np.sqrt(1.0 - beta2**step))
    step_size = lr * bias_correction2_sqrt / (1.0 - beta1**step) * scale1 / scale2_sqrt
    eps_unscaled = eps * bias_correction2_sqrt / scale2_sqrt
    coefficients = ((1.0 - beta1) / scale1, (1.0 - beta2) / scales[1], eps_unscaled, step_size)
    if _threaded_update(blocks):  # one share of the parameters per thread (``_update_blocks_fast``)
        threads.run_parts(lambda share: _adam_share(blocks[share], coefficients, weight_decay),
                          _cuts(len(blocks), threads.current()))
    else:
        _adam_blocks(blocks, work, coefficients, weight_decay)
    if step % ADAM_FOLD_INTERVAL == 0:
        _normalize_adam_reference([b[2] for b in blocks], [b[3] for b in blocks], scales)


def _adam_blocks(blocks: Sequence[tuple[np.ndarray, ...]], work: np.ndarray,
                 coefficients: tuple[float, float, float, float], weight_decay: float) -> None:
    """The 7 passes over each cache-sized block (p, g, M, V): three BLAS axpy (y += a x), with
    a = (1 - beta1) / c1, (1 - beta2) / c2 and -step_size c1 / sqrt(c2) (``_adam_update_fast``)."""
    m_rate, v_rate, eps_unscaled, step_size = coefficients
    axpy = blas.daxpy if work.dtype == np.float64 else blas.saxpy
    for value, grad, exp_avg, exp_avg_sq in blocks:
        work_block = work[: value.size]
        if weight_decay:
            grad = grad + weight_decay * value
        axpy(grad, exp_avg, a=m_rate)
        np.multiply(grad, grad, out=work_block)
        axpy(work_block, exp_avg_sq, a=v_rate)
        np.sqrt(exp_avg_sq, out=work_block)
        work_block += eps_unscaled
        np.divide(exp_avg, work_block, out=work_block)
        axpy(work_block, value, a=-step_size)


def _adam_share(blocks: Sequence[tuple[np.ndarray, ...]], coefficients: tuple[float, float, float, float],
                weight_decay: float) -> None:
    """``_adam_blocks`` on one thread's share, in NumPy passes that release the GIL (SciPy's axpy
    keeps it, and two threads would take turns): 10 passes over a few large blocks instead of 7 over
    many small ones, each long enough that the threads rarely meet at the GIL."""
    m_rate, v_rate, eps_unscaled, step_size = coefficients
    work = _scratch((max(block[0].size for block in blocks),), blocks[0][0].dtype, "adam")
    for value, grad, exp_avg, exp_avg_sq in blocks:
        work_block = work[: value.size]
        if weight_decay:
            grad = grad + weight_decay * value
        np.multiply(grad, m_rate, out=work_block)
        exp_avg += work_block
        np.multiply(grad, grad, out=work_block)
        work_block *= v_rate
        exp_avg_sq += work_block
        np.sqrt(exp_avg_sq, out=work_block)
        work_block += eps_unscaled
        np.divide(exp_avg, work_block, out=work_block)
        work_block *= -step_size
        value += work_block


def _threaded_update(blocks_or_groups: Sequence[tuple[np.ndarray, ...]]) -> bool:
    """Whether the fast optimizer updates run on npvae's threads: more than one thread, and at
    least ``PARALLEL_MIN_ELEMENTS`` parameters."""
    return threads.current() > 1 and sum(group[0].size for group in blocks_or_groups) >= PARALLEL_MIN_ELEMENTS


def _normalize_adam_reference(exp_avgs: Sequence[np.ndarray], exp_avg_sqs: Sequence[np.ndarray],
                              scales: list[float]) -> None:
    """Fold the scales into the state: m = c1 M, v = c2 V in place, then c1 = c2 = 1 (no pass when
    they are 1 already, as they always are on the reference kernels)."""
    for arrays, scale in ((exp_avgs, scales[0]), (exp_avg_sqs, scales[1])):
        if scale != 1.0:
            for array in arrays:
                array *= array.dtype.type(scale)
    scales[:] = [1.0, 1.0]


_normalize_adam_fast = _normalize_adam_reference  # one form: a multiplication by a scalar


# -- squared_norm: sum of squares of an array ------------------------------------------------------
def _squared_norm_reference(array: np.ndarray) -> float:
    return float(np.sum(np.square(array, dtype=array.dtype)))


def _squared_norm_fast(array: np.ndarray) -> float:
    flat = array.ravel()
    if flat.size == 0:  # BLAS rejects empty vectors
        return 0.0
    dot = blas.ddot if flat.dtype == np.float64 else blas.sdot
    return float(dot(flat, flat))


# -- update_blocks: the pieces an optimizer updates one after another ---------------------------------
def _update_blocks_reference(groups: Sequence[tuple[np.ndarray, ...]]) -> list[tuple[np.ndarray, ...]]:
    return list(groups)


def _update_blocks_fast(groups: Sequence[tuple[np.ndarray, ...]]) -> list[tuple[np.ndarray, ...]]:
    """Each group of aligned arrays cut into 1-D views of at most ``BLOCK_SIZE`` elements, last
    block first; on several threads (``_threaded_update``), into one share per thread instead.

    An update makes several passes over its arrays; done block by block, a block's arrays stay
    in the L2 cache from the first pass to the last. Last block first: the first layer's
    parameters, which the next forward pass reads first, are then the last updated and still in
    cache when it starts (in one interleaved measurement, 2.5% off an epoch of the benchmark's VAE).
    """
    if _threaded_update(groups):  # a share of every group per thread, thread by thread: see ``_adam_share``
        count = threads.current()
        cuts = [_cuts(group[0].size, count) + [slice(0, 0)] * (count - min(count, group[0].size)) for group in groups]
        return [tuple(array.reshape(-1)[group_cuts[part]] for array in group)
                for part in range(count) for group, group_cuts in zip(groups, cuts)]
    return [
        tuple(array.reshape(-1)[start : start + BLOCK_SIZE] for array in group)
        for group in groups
        for start in range(0, group[0].size, BLOCK_SIZE)
    ][::-1]


# -- flush_subnormals: optimizer state below the smallest normal float set to 0 ------------------------
def _flush_subnormals_reference(step: int, arrays: Sequence[np.ndarray]) -> None:
    """The textbook update keeps subnormal state, as torch does."""


def _flush_subnormals_fast(step: int, arrays: Sequence[np.ndarray]) -> None:
    """Every ``FLUSH_INTERVAL`` steps, set the state's subnormal entries to 0.

    Where a gradient stays exactly 0 (the weights of MNIST's never-lit border pixels), a running
    average decays geometrically through the subnormal floats (|x| < 1.2e-38 in float32) on its
    way to 0, and x86 CPUs do arithmetic on subnormals ~100 times slower: without this, Adam
    takes 3 times longer by the fourth epoch of MNIST. Such a value moves no parameter: its share
    of an update, below lr * 1.2e-38 / eps, is lost in the rounding of any parameter not itself
    within ~1e-24 of 0.
    """
    if step % FLUSH_INTERVAL == 0:
        for array in arrays:
            array[np.abs(array) < np.finfo(array.dtype).tiny] = 0.0


# -- the switch ------------------------------------------------------------------------------------
_NAMES = ("affine", "matmul", "column_sums", "all_finite", "sigmoid", "bce_with_logits",
          "repeated_bce_with_logits", "moving_average", "add_scaled", "adam_update", "normalize_adam",
          "squared_norm", "update_blocks", "flush_subnormals")
_TABLES = {kind: {name: globals()[f"_{name}_{kind}"] for name in _NAMES} for kind in KINDS}
_current = "fast"


def use(kind: str) -> None:
    """Run the whole library on the ``"fast"`` kernels (the default) or the plain ``"reference"`` ones."""
    global _current
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    globals().update(_TABLES[kind])
    _current = kind


def current() -> str:
    """The kernel set in use: "fast" or "reference"."""
    return _current


@contextlib.contextmanager
def using(kind: str) -> Iterator[None]:
    """``use(kind)`` for the ``with`` block, then back to the set in use before it."""
    previous = _current
    use(kind)
    try:
        yield
    finally:
        use(previous)


def implementation(name: str, kind: str) -> object:
    """The ``kind`` ("fast" or "reference") form of kernel ``name``, whatever the switch says."""
    if kind not in KINDS or name not in _NAMES:
        raise ValueError(f"name, kind: expected one of {_NAMES} and one of {KINDS}, got {name!r}, {kind!r}")
    return _TABLES[kind][name]


use("fast")
