"""JAX's persistent compilation cache, so a second run of the same shape skips compilation."""

from __future__ import annotations

import os
import pathlib

import jax

OFF = "off"


def default_cache_dir() -> str:
    """The directory :func:`enable_compilation_cache` uses by default.

    Returns:
        ``$NST_JAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/nst_jax/jax``, else ``~/.cache/nst_jax/jax``
        (``NST_JAX_CACHE_DIR=off`` turns the cache off by default).
    """
    if os.environ.get("NST_JAX_CACHE_DIR"):
        return os.environ["NST_JAX_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nst_jax", "jax")


def enable_compilation_cache(path: str | os.PathLike[str] | None = None) -> pathlib.Path | None:
    """Stores every compiled program under ``path`` (:func:`default_cache_dir` if None).

    Args:
        path: Cache directory, or ``"off"`` to leave the cache off.

    Returns:
        The directory in use, or None when off or when it cannot be created
        (the run then simply compiles as usual).
    """
    path = default_cache_dir() if path is None else str(path)
    if path == OFF:
        return None
    try:
        directory = pathlib.Path(path).expanduser()
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return directory
