"""How many threads npvae's kernels run on, the helper threads that run them, and the switch.

    with npvae.threads.limited(2):          # products and losses in the block on 2 threads
        model.log_likelihood(x, k=1000, rng=rng)

``fit(threads=...)``, ``VAE.log_likelihood(threads=...)`` and ``npvae train/eval --threads N``
go through ``limited``; ``None`` means ``DEFAULT_THREADS``.

What runs on several threads: a fast kernel with enough work (``npvae.kernels``: a matrix
product of at least ``PARALLEL_MIN_FLOPS``, a BCE or an Adam update over at least
``PARALLEL_MIN_ELEMENTS``) cuts it into one part per thread and calls ``run_parts``: part 0 on the
calling thread, the others on helper threads started once and reused. Each part is plain NumPy
(``np.matmul``, elementwise passes), which releases the GIL while it computes, so the parts run at
the same time; the caller then waits for the helpers on a lock, asleep. Each part's BLAS call
runs on one thread: inside ``limited``, OpenBLAS's own thread pool is set to 1 thread (through
``openblas_set_num_threads``, called with ctypes on each OpenBLAS that NumPy and SciPy load: what
threadpoolctl does, without the dependency; another BLAS is left as it is).

Why not OpenBLAS's own threads: its workers spin for ~0.1 s after every call and the caller spins
while it waits for them. On a 2-core AMD EPYC (issue 17; 784-400-20 VAE, MNIST, batch 128,
float32; ``demos/benchmark.py --epochs 5 --threads 2 --busy``, README "Speed"), with one CPU-bound
process running in another session, an epoch on OpenBLAS's 2 threads took 53.9 s, 11.8 times its
idle 4.6 s. With npvae's threads nothing spins: the waiting thread sleeps and gives its core back
(the price on an idle machine: a helper that slept wakes 65-200 us late, and the same epoch in
``fit`` took 5.0 s).
Elementwise work is split only in large pieces: a thread needs the GIL between two NumPy calls,
and small calls on two threads take turns at it, each turn costing more than it saves (Adam's
update in 80 blocks of 8,192 elements ran 1.5-1.8 times slower on two threads than on one; in one
share per thread, 2.5 times faster).

Why the default is 2 threads (or 1 on a one-CPU machine), in the same run: idle, a ``fit``
epoch took 5.55 s on 1 thread and 4.99 s on 2 (the median of 5); beside the competing process,
6.15 s on 1 thread and 5.85 s on 2 (1.17 times the idle 2-thread median). Two threads are faster
on an idle machine and no slower on a busy one; more than two cut a batch of 128 rows into parts
too small to gain, so the default stops at 2.

Results: identical for a fixed seed and thread count; across thread counts they agree to rounding
(a product cut by rows may round differently from the whole).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from . import _checks

__all__ = ["DEFAULT_THREADS", "resolve", "current", "blas_threads", "set_threads", "limited", "describe",
           "run_parts"]


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


#: threads used when ``threads=None``: 2, or 1 on a one-CPU machine (the module docstring says why)
DEFAULT_THREADS = min(2, _usable_cpus())

# (get, set) symbol names, tried in order: scipy-openblas wheels (64-bit and 32-bit integer
# builds), then a plain OpenBLAS
_SYMBOLS = (
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
)


class _OpenBLAS:
    """One loaded OpenBLAS library: its path and its get/set thread-count functions."""

    def __init__(self, path: str, get: ctypes._CFuncPtr, set_: ctypes._CFuncPtr) -> None:
        self.path = path
        self._get = get
        self._set = set_
        self._get.restype = ctypes.c_int
        self._set.argtypes = [ctypes.c_int]
        self._set.restype = None

    def get(self) -> int:
        return int(self._get())

    def set(self, threads: int) -> None:
        self._set(threads)


@functools.lru_cache(maxsize=1)
def _libraries() -> tuple[_OpenBLAS, ...]:
    """The OpenBLAS libraries loaded in this process (NumPy's and SciPy's), found once."""
    import numpy  # noqa: F401  (load both BLAS libraries before looking for them)
    import scipy.linalg  # noqa: F401

    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line})
    except OSError:
        return ()
    found = []
    for path in paths:
        try:
            library = ctypes.CDLL(path)  # already loaded: this returns the same handle
        except OSError:
            continue
        for get_name, set_name in _SYMBOLS:
            if hasattr(library, get_name) and hasattr(library, set_name):
                found.append(_OpenBLAS(path, getattr(library, get_name), getattr(library, set_name)))
                break
    return tuple(found)


def resolve(threads: int | None, name: str = "threads") -> int:
    """``threads`` checked (an int >= 1), or ``DEFAULT_THREADS`` for None."""
    if threads is None:
        return DEFAULT_THREADS
    return _checks.positive_int(name, threads)


def blas_threads() -> int | None:
    """The thread count of the loaded OpenBLAS libraries: one number if they agree, the largest
    if they differ, None if no OpenBLAS is controlled here."""
    counts = [library.get() for library in _libraries()]
    return max(counts) if counts else None


def current() -> int:
    """The number of threads npvae's fast kernels use now, on the calling thread (1: that thread
    alone; each thread of a program has its own count, set by ``limited`` or ``set_threads``)."""
    return getattr(_local, "threads", 1)


def set_threads(threads: int) -> None:
    """From now on, on the calling thread, run npvae's fast kernels on ``threads`` threads, and
    hold every loaded OpenBLAS at one (process-wide; ValueError unless an int >= 1)."""
    threads = _checks.positive_int("threads", threads)
    _use(threads)
    for library in _libraries():
        library.set(1)


@contextlib.contextmanager
def limited(threads: int | None) -> Iterator[int]:
    """Run the block with npvae's kernels on ``threads`` threads (None: ``DEFAULT_THREADS``) and
    OpenBLAS on one, then restore both. Yields the count used. The count is the calling thread's;
    OpenBLAS's is process-wide and restored when the last of overlapping blocks ends."""
    threads = resolve(threads)
    previous = current()
    _use(threads)
    _hold_openblas()
    try:
        yield threads
    finally:
        _release_openblas()
        _local.threads = previous


_openblas_lock = threading.Lock()
_openblas_holds = 0  # limited blocks running now, in any thread
_openblas_before: list[tuple[_OpenBLAS, int]] = []  # the counts the first of them found


def _hold_openblas() -> None:
    global _openblas_holds, _openblas_before
    with _openblas_lock:
        if _openblas_holds == 0:
            _openblas_before = [(library, library.get()) for library in _libraries()]
            for library, _ in _openblas_before:
                library.set(1)
        _openblas_holds += 1


def _release_openblas() -> None:
    global _openblas_holds
    with _openblas_lock:
        _openblas_holds -= 1
        if _openblas_holds == 0:
            for library, count in _openblas_before:
                library.set(count)


def describe(threads: int | None) -> str:
    """What a run header prints: the count used and whether it is the default."""
    threads = resolve(threads)
    policy = "default" if threads == DEFAULT_THREADS else "chosen"
    return f"{threads} thread{'s' if threads > 1 else ''} ({policy}; --threads N to change)"


Part = TypeVar("Part")
Result = TypeVar("Result")


# -- the helper threads --------------------------------------------------------------------------
class _Helper:
    """One helper thread, started once and reused: ``start(task)`` hands it a task, ``finish()``
    waits for it and returns its result and exception. Two locks, no queue: a hand-over
    costs ~20 us, a ThreadPoolExecutor's ~50 us. The waiting side blocks on a lock (it sleeps)."""

    def __init__(self) -> None:
        self._go = threading.Lock()
        self._go.acquire()
        self._done = threading.Lock()
        self._done.acquire()
        self._task: Callable[[], Any] | None = None
        self._result: Any = None
        self._error: BaseException | None = None
        threading.Thread(target=self._loop, name="npvae-kernels", daemon=True).start()

    def _loop(self) -> None:
        while True:
            self._go.acquire()
            try:
                self._result, self._error = self._task(), None
            except BaseException as error:  # handed to the caller by finish()
                self._result, self._error = None, error
            self._task = None
            self._done.release()

    def start(self, task: Callable[[], Any]) -> None:
        self._task = task
        self._go.release()

    def finish(self) -> tuple[Any, BaseException | None]:
        """(result, None), or (None, the task's exception)."""
        self._done.acquire()
        result, error = self._result, self._error
        self._result = self._error = None
        return result, error


def _with_errstate(settings: dict[str, Any], work: Callable[[Part], Result], part: Part) -> Result:
    with np.errstate(**settings):
        return work(part)


_local = threading.local()  # each program thread's count (``current``)
_pool_lock = threading.Lock()  # guards _helpers while it grows
_in_use = threading.Lock()  # held while run_parts has the helpers
_helpers: list[_Helper] = []  # started once, never ended; as many as the largest count used, less one


def _use(threads: int) -> None:
    """Set the calling thread's count, starting helper threads if there are fewer than threads - 1."""
    with _pool_lock:
        while len(_helpers) < threads - 1:
            _helpers.append(_Helper())
    _local.threads = threads


def _forget_helpers() -> None:
    """In a child process after fork: the helper threads were not copied, so start afresh."""
    global _pool_lock, _in_use, _openblas_lock
    _helpers.clear()
    _pool_lock, _in_use, _openblas_lock = threading.Lock(), threading.Lock(), threading.Lock()
    _local.threads = 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helpers)


def run_parts(work: Callable[[Part], Result], parts: Sequence[Part]) -> list[Result]:
    """[work(part) for part in parts], part 0 on the calling thread and part i on helper i, at
    the same time (at most ``current()`` parts). Returns when all are done; an exception in any
    part is raised after every part has finished, so that no thread still writes to the arrays.
    On the main thread, SIGINT and SIGTERM wait until then (a Ctrl-C arrives as soon as the parts
    are done, never while a helper still writes). Another thread of the program that finds the
    helpers busy runs its parts itself, one after another.

    Only NumPy calls that release the GIL (``np.matmul``, elementwise passes) run in parallel:
    the kernels that call this are written with those."""
    if len(parts) > current():
        raise ValueError(f"parts: expected at most {current()} (one per thread), got {len(parts)}")
    if len(parts) < 2 or not _in_use.acquire(blocking=False):
        return [work(part) for part in parts]
    try:
        with _signals_held():
            return _run_on_helpers(work, parts)
    finally:
        _in_use.release()


_HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back from the main thread for the block (POSIX); elsewhere nothing."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _run_on_helpers(work: Callable[[Part], Result], parts: Sequence[Part]) -> list[Result]:
    started = _helpers[: len(parts) - 1]
    # NumPy's error handling is per thread: the helpers take the caller's
    settings = {**np.geterr(), "call": np.geterrcall()}
    for helper, part in zip(started, parts[1:]):
        helper.start(functools.partial(_with_errstate, settings, work, part))
    first_error: BaseException | None = None
    try:
        results = [work(parts[0])]
    except BaseException as error:
        first_error, results = error, []
    for helper in started:
        result, error = helper.finish()
        results.append(result)
        first_error = first_error or error
    if first_error is not None:
        raise first_error
    return results
