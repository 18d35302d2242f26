"""Compile ahead (nst_jax._src.ahead): the next level compiles in a background thread, changing neither the result
nor the programs compiled; its failures fall back to the foreground; its thread ends with the run."""

import contextlib
import threading
import time

import jax
import numpy as np
import pytest

from nst_jax import StylizeConfig
from nst_jax._src import driver
from nst_jax._src.ahead import THREAD_NAME, CompileAhead
from nst_jax._src.multiscale import stylize_multiscale

from .conftest import PAINTING, compiled_programs, smooth_image

CONTENT = smooth_image(64, 53, seed=3)
# The settings and levels of test_multiscale's CLI test (32 -> 45 -> 64 px), so they share compiled programs.
SMALL = StylizeConfig(content_layers=("relu1_1",), style_layers=("relu1_1",), optimizer="adam")
LEVELS = dict(sizes=[32, 45, 64], iterations=[4, 3, 2], content=CONTENT, style=PAINTING, config=SMALL)
PROGRAMS = ("local_start", "local_chunk")  # driver.start_program's and driver.chunk_program's


def ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_NAME)]


@contextlib.contextmanager
def programs_by_thread():
    """``{program name: [names of the threads that compiled it]}`` for the block's compilations (JAX's log)."""
    seen: dict[str, list[str]] = {}
    with compiled_programs(seen):
        yield seen


def forget_programs():
    """Drops every program compiled in memory, so the next run compiles (or loads from the persistent cache,
    which JAX logs as a compilation too) all of its programs again."""
    jax.clear_caches()
    driver._start_program.cache_clear()
    driver._chunk_program.cache_clear()


def test_compile_ahead_is_bitwise_equal_and_compiles_nothing_twice(vgg):
    runs, names, threads = {}, {}, {}
    for ahead in (False, True):
        forget_programs()
        with compiled_programs() as names[ahead], programs_by_thread() as threads[ahead]:
            runs[ahead] = stylize_multiscale(vgg, **LEVELS, compile_ahead=ahead)
    # The same programs, each compiled once: the background's are the foreground's (the thread-local
    # jax.log_compiles of compiled_programs reaches the worker, or its compilations would be missing here).
    assert sorted(names[True]) == sorted(names[False]) and names[False].count("local_chunk") == 3, names
    for name in PROGRAMS:
        assert threads[False][name] == ["MainThread"] * 3
        # Level 0's in the foreground; levels 1 and 2's in the thread while the level before ran (level 1's
        # may finish first: it compiles while level 0's does).
        assert sorted(t.startswith(THREAD_NAME) for t in threads[True][name]) == [False, True, True], threads[True]
    np.testing.assert_array_equal(runs[True].image, runs[False].image)
    for mine, theirs in zip(runs[True].levels, runs[False].levels, strict=True):
        for key in theirs.history:
            np.testing.assert_array_equal(mine.history[key], theirs.history[key], err_msg=key)
    assert not ahead_threads()


def test_compile_ahead_failure_falls_back_to_the_foreground(vgg, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("XLA ran out of host memory")

    reference = stylize_multiscale(vgg, **LEVELS, compile_ahead=False)
    monkeypatch.setattr(driver, "compile_programs", broken)
    forget_programs()
    with programs_by_thread() as threads:
        result = stylize_multiscale(vgg, **LEVELS)
    assert all(threads[name] == ["MainThread"] * 3 for name in PROGRAMS), threads
    np.testing.assert_array_equal(result.image, reference.image)
    assert not ahead_threads()


class Stop(Exception):
    pass


def test_compile_ahead_thread_ends_with_an_interrupted_run(vgg, monkeypatch):
    """The callback stops level 0 while level 1 compiles: the run raises the callback's error after the
    compile in flight has ended, and leaves no thread behind."""
    compiled, real = threading.Event(), driver.compile_programs

    def slow(*args, **kwargs):
        time.sleep(1.0)  # still compiling when the callback raises
        real(*args, **kwargs)
        compiled.set()

    def stop(level, progress):
        raise Stop

    monkeypatch.setattr(driver, "compile_programs", slow)
    with pytest.raises(Stop):
        stylize_multiscale(vgg, **LEVELS, callback=stop)
    assert compiled.is_set() and not ahead_threads()


def test_compile_ahead_drops_errors_and_passes_thread_settings():
    seen = []
    with CompileAhead() as ahead:
        assert not ahead.wait()  # nothing submitted
        ahead.submit(lambda: 1 / 0)  # preparing fails: nothing runs
        assert not ahead.wait()
        ahead.submit(lambda: lambda: 1 / 0)  # the job fails
        assert not ahead.wait()
        with jax.log_compiles(True):  # a setting of this thread only
            ahead.submit(lambda: lambda: seen.append(jax.config.jax_log_compiles))
        assert ahead.wait() and seen == [True]
        ahead.submit(lambda: lambda: seen.append(jax.config.jax_log_compiles))
        assert ahead.wait() and seen == [True, False]
    assert not ahead_threads()
    with CompileAhead(enabled=False) as ahead:
        ahead.submit(lambda: lambda: seen.append("ran"))
        assert not ahead.wait() and seen == [True, False] and not ahead_threads()
