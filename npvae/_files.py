"""Atomic file writes: a file appears complete, or not at all.

Every file npvae writes (checkpoints, history CSVs, figures, downloads) goes through
``write_atomically``, so a crash, a full disk or Ctrl-C part-way through never leaves a
half-written file in place of a good one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(file)`` on a new temp file beside ``path``, fsync it, then rename it to ``path``.

    ``os.replace`` is atomic on POSIX and Windows: readers see the old file or the complete new
    one. The temp file is created like any new file (mode 0666 less the umask). On any
    exception, KeyboardInterrupt included, it is deleted, ``path`` is untouched, and the
    exception propagates; an OSError that names no file (ENOSPC from a write) is raised again
    naming ``path``, so that "No space left on device" says where.
    """
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except OSError as error:
        temp.unlink(missing_ok=True)
        if error.filename is None and error.errno is not None:
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path
