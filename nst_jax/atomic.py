"""Atomic file writes: a temporary file in the target directory, renamed into place."""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", *, fsync: bool = False):
    """Opens a temporary file beside ``path``; on success it replaces ``path``, on any error it is removed.

    A reader never sees a partial file at ``path``, and an interrupted write leaves none.
    """
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
