"""Compile ahead: one background thread that compiles the programs a run needs next while it computes.

A coarse-to-fine run (:func:`nst_jax.run_spec`) knows every level's shapes before it starts, so
while level ``L`` compiles and runs, level ``L + 1``'s programs can compile
(:func:`nst_jax._src.api.stylize_compiler`). On an accelerator the host is idle while the device
computes, and XLA compiles on the host (on a GPU mostly autotuning: 50.7 s of a cold 58.9 s
single run on an H200, docs/gpu/device_report_2.md). Tracing and lowering hold the GIL; XLA's
compile (jaxlib releases the GIL around it, jax-ml/jax#11788) and the wait for the device's
results do not, so the two threads overlap. On a CPU the steps and the compile share the cores:
a cold default run at 256 px on 2 shared CPU cores (scripts/compile_ahead_benchmark.py, medians
of 3) used the same CPU time with and without it (109.4 and 110.8 s); the foreground's compile
time fell from 32.0 to 23.3 s, the steps' rose from 91.5 to 96.5 s, and the wall time (124.2
against 129.2 s) moved less than it varied between runs of one setting (97 to 129 s). Not yet
measured on a GPU, where the thread's autotuning also times kernels on the device the steps use.

The background work changes nothing but when a program is compiled: it fills JAX's in-memory jit
cache, which the foreground's call then reads (keyed by shapes, shardings and settings, so a call
that differs compiles its own program). A failure while preparing or compiling ahead is logged
and dropped; the foreground then compiles the program itself and raises whatever it raises, at
the same point of the run as without compile-ahead. The thread lives inside
``with CompileAhead(...)``: leaving the block, also by an exception, waits for the compile in
progress (XLA's compile cannot be cancelled; it ends) and joins the thread.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

logger = logging.getLogger(__name__)

THREAD_NAME = "nst_jax-compile-ahead"


def _thread_settings() -> list[tuple[Any, Any]]:
    """The JAX settings the calling thread has set for itself (``with jax.log_compiles(True):``,
    ``with jax.default_matmul_precision(...):``): ``(setting, value)`` pairs.

    JAX keeps such settings per thread and its jit cache is keyed by the ones that change a program,
    so a worker without them would compile a program the caller never looks up. JAX has no public
    way to read them; with another JAX layout this reads none (the results stay right: the caller
    then compiles its own program).
    """
    try:
        from jax._src import config as jax_config

        unset = jax_config.config_ext.unset
        return [(state, value) for state in jax_config.config_states.values()
                if (value := state.get_local()) is not unset]
    except (ImportError, AttributeError):
        return []


@contextlib.contextmanager
def _with_settings(settings: list[tuple[Any, Any]]) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for state, value in settings:
            stack.enter_context(state(value))  # a JAX setting is its own context manager
        yield


class CompileAhead:
    """A context manager with one background thread that runs compile jobs one at a time.

    ::

        with CompileAhead() as ahead:
            for level in levels:
                ahead.wait()                          # this level's programs, compiled while the last one ran
                ahead.submit(level_compiler, level + 1)  # its inputs prepared here, compiled in the thread
                run(level)

    Args:
        enabled: False makes :meth:`submit` and :meth:`wait` do nothing (no thread is started).
    """

    def __init__(self, enabled: bool = True):
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=THREAD_NAME) if enabled else None
        self._future: Future | None = None

    def submit(self, prepare: Callable[..., Callable[[], Any]], *args: Any, **kwargs: Any) -> None:
        """Waits for the job before, calls ``prepare(*args, **kwargs)`` here and starts the job it returns in
        the thread, under this thread's own JAX settings.

        ``prepare`` does the host's part (and any small JAX program it needs) in the calling thread,
        so the two threads never compile the same small program at once (JAX would compile it twice);
        the job should only trace and compile. An error in ``prepare`` is logged and dropped, as the
        job's: the foreground meets it again where it would have without compile-ahead.
        """
        if self._pool is None:
            return
        self.wait()
        try:
            job = prepare(*args, **kwargs)
        except Exception:
            logger.debug("preparing to compile ahead failed; the run compiles in the foreground", exc_info=True)
            return
        settings = _thread_settings()

        def run() -> None:
            with _with_settings(settings):
                job()

        self._future = self._pool.submit(run)

    def wait(self) -> bool:
        """Waits for the last job submitted.

        Returns:
            Whether it ran and succeeded; False without one, or when it raised (the error is logged
            at debug level and dropped: the foreground compiles the program itself and raises it).
        """
        future, self._future = self._future, None
        if future is None:
            return False
        try:
            future.result()
        except Exception:
            logger.debug("compiling ahead failed; the run compiles in the foreground", exc_info=True)
            return False
        return True

    def close(self) -> None:
        """Waits for the job in progress (a compile cannot be stopped), drops any other, joins the thread."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._future = None

    def __enter__(self) -> CompileAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
