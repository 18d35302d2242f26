"""Atomic file writes: a temporary file in the target directory, moved into place.

Files get the mode a plain ``open()`` would give them (``0o666`` less the umask: 0644 under 022).
With ``replace=False`` the move never replaces a file: if one appeared at the destination while
the caller was writing, it is kept, the new file goes beside it and :class:`OutputExists` says where.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import tempfile

from nst_jax.errors import OutputExists


def file_mode() -> int:
    """``0o666`` less the process's umask."""
    try:
        with open("/proc/self/status") as f:
            mask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def _move_new(tmp: str, path: pathlib.Path) -> bool:
    """Moves ``tmp`` to ``path`` unless something exists there; False (``tmp`` left) if it does."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError as err:  # no hard links here (some network and FAT file systems): exclusive create
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, file_mode()))
        except FileExistsError:
            return False
        os.replace(tmp, path)
        return True
    os.unlink(tmp)
    return True


def _short(name: str, limit: int) -> str:
    """``name`` cut to at most ``limit`` bytes of the file system's encoding (whole characters)."""
    while len(os.fsencode(name)) > limit:
        name = name[:-1]
    return name


def place_new(tmp: str, path: pathlib.Path) -> None:
    """Moves ``tmp`` to ``path`` without replacing anything.

    Raises:
        OutputExists: If ``path`` exists; ``tmp`` then went to ``STEM.nst-jax-N.EXT`` beside it.
    """
    if _move_new(tmp, path):
        return
    for i in range(1, 1000):
        beside = path.with_name(f"{_short(path.stem, 200)}.nst-jax-{i}{path.suffix}")
        if _move_new(tmp, beside):
            raise OutputExists(path, beside)
    raise OutputExists(path, None)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", *, fsync: bool = False, replace: bool = True):
    """Opens a temporary file beside ``path``; on success it goes to ``path``, on any error it is removed.

    A reader never sees a partial file at ``path``, and an interrupted write leaves none.

    Args:
        path: Destination.
        mode: ``open()`` mode of the temporary file.
        fsync: Flush the data to disk before the move.
        replace: Replace an existing ``path``; if False, see :func:`place_new`.

    Raises:
        OutputExists: With ``replace=False``, if ``path`` exists when the file is complete.
    """
    path = pathlib.Path(path)
    # The temporary name is the destination's, cut so that it fits wherever the destination's name does.
    fd, tmp = tempfile.mkstemp(prefix=f".{_short(path.name, 200)}.", suffix=".tmp",
                               dir=path.parent if str(path.parent) else ".")
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, mode) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            place_new(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.filename == tmp:
            err.filename, err.filename2 = str(path), None  # the file the user named, not the hidden temporary one
        raise
