"""How much memory this process may use, and how to say a number of bytes.

The command line estimates what a request needs (a model's parameters and optimizer state, a
batch of activations, a grid of samples) and refuses, with the figures, a request that cannot
fit, instead of letting NumPy die half-way with a MemoryError or the kernel kill the process.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["available_memory", "format_bytes"]

_MEMINFO = Path("/proc/meminfo")
_CGROUP_LIMIT = Path("/sys/fs/cgroup/memory.max")  # cgroup v2: the container's limit, or "max"


def _meminfo_available() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (Linux), else None."""
    try:
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the value is in kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _physical_memory() -> int | None:
    """Total physical memory from sysconf (POSIX), else None."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _cgroup_limit() -> int | None:
    try:
        text = _CGROUP_LIMIT.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory() -> int | None:
    """Bytes a new allocation can use: the smallest of MemAvailable (Linux), the cgroup limit and
    the physical memory; None where none of them can be read (then nothing is refused)."""
    known = [value for value in (_meminfo_available(), _cgroup_limit(), _physical_memory()) if value]
    return min(known) if known else None


def format_bytes(count: float) -> str:
    """1536 -> '1.5 KiB', 8e11 -> '745.1 GiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if count < 1024 or unit == "PiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")
