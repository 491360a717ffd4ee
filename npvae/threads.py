"""How many threads NumPy's and SciPy's BLAS may use: the thread policy, and a switch for it.

    with npvae.threads.limited(1):          # every matrix product in the block on one thread
        model.log_likelihood(x, k=1000, rng=rng)

``fit(threads=...)``, ``VAE.log_likelihood(threads=...)`` and ``npvae train/eval --threads N``
go through ``limited``; ``None`` means ``DEFAULT_THREADS``.

Why the default is 1 thread (2-core AMD EPYC, OpenBLAS Haswell kernel, 784-400-20 VAE,
MNIST, batch 128, float32; issue 17): on an idle machine an epoch took 3.1 s with 2 BLAS threads
and 4.2 s with 1 thread under load; with one CPU-bound process running in another session, the
2-thread epoch took 51-56 s (17x). OpenBLAS's worker threads spin for ~0.1 s after every call and
the calling thread spins while it waits for them, so on a machine where the scheduler gives us one
core they burn it against each other. One thread runs every product on the calling thread: never
the fastest on an idle machine, never the collapse on a busy one. Pass ``threads=2`` (or more) on a
machine you have to yourself.

How: OpenBLAS's own ``openblas_set_num_threads`` through ctypes, on each OpenBLAS that NumPy and
SciPy have loaded (they ship separate builds; npvae's fast kernels call SciPy's, and NumPy's
``@`` the other). This is what threadpoolctl does for OpenBLAS, in ~40 lines and without a
dependency; a BLAS other than OpenBLAS (MKL, Accelerate) is left as it is and ``current()``
reports it as uncontrolled. Linux only finds the libraries through ``/proc/self/maps``; elsewhere
nothing is controlled and nothing breaks.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from collections.abc import Iterator

from . import _checks

__all__ = ["DEFAULT_THREADS", "resolve", "current", "set_threads", "limited", "describe"]

#: threads used when ``threads=None``: see the module docstring for the measurements
DEFAULT_THREADS = 1

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


def current() -> int | None:
    """The thread count of the loaded OpenBLAS libraries: one number if they agree, the largest
    if they differ, None if no OpenBLAS is controlled here."""
    counts = [library.get() for library in _libraries()]
    return max(counts) if counts else None


def set_threads(threads: int) -> None:
    """Let every loaded OpenBLAS use ``threads`` threads from now on (ValueError unless an int >= 1)."""
    threads = _checks.positive_int("threads", threads)
    for library in _libraries():
        library.set(threads)


@contextlib.contextmanager
def limited(threads: int | None) -> Iterator[int]:
    """Run the block with ``threads`` BLAS threads (None: ``DEFAULT_THREADS``), then restore each
    library's previous count. Yields the count used."""
    threads = resolve(threads)
    previous = [(library, library.get()) for library in _libraries()]
    for library, _ in previous:
        library.set(threads)
    try:
        yield threads
    finally:
        for library, count in previous:
            library.set(count)


def describe(threads: int | None) -> str:
    """What a run header prints: the count used, and whether BLAS can be told so here."""
    threads = resolve(threads)
    if not _libraries():
        return f"{threads} requested (no OpenBLAS found to limit: the BLAS library's own default applies)"
    policy = "default" if threads == DEFAULT_THREADS else "chosen"
    return f"{threads} BLAS thread{'s' if threads > 1 else ''} ({policy}; --threads N to change)"
