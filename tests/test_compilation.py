"""Compile accounting (nst_jax.compilation): programs are counted, never timed."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax.compilation import CompileStats


def test_counts_programs_and_repeats_add_nothing():
    @jax.jit
    def double(x):
        return 2.0 * x

    @jax.jit
    def total(x):
        return jnp.sum(x * x)

    a, b = np.ones((4, 3), np.float32), np.ones((5, 3), np.float32)
    with CompileStats() as stats:
        double(a).block_until_ready()
        total(a).block_until_ready()
        double(b).block_until_ready()  # a new shape: a new program
    assert stats.programs == 3
    names = [r.name for r in stats.records]
    assert sorted(names) == sorted([names[0], names[0], names[1]]) and "double" in names[0] and "total" in names[1]
    shapes = [r.shapes for r in stats.records if r.name == names[0]]
    assert "4,3" in shapes[0] and "5,3" in shapes[1]
    assert stats.summary().startswith("compiled 3 XLA programs")
    assert names[1] in stats.table()

    with CompileStats() as again:
        double(a).block_until_ready()
        total(a).block_until_ready()
        double(b).block_until_ready()
    assert again.programs == 0
    assert again.summary().startswith("compiled 0 XLA programs")


def test_nested_windows_and_logging_restored():
    import logging

    logger = logging.getLogger("jax._src.interpreters.pxla")
    level, filters = logger.level, list(logger.filters)
    f = jax.jit(lambda x: x + 1.0)
    with CompileStats() as outer:
        f(np.zeros(3, np.float32)).block_until_ready()
        with CompileStats() as inner:
            f(np.zeros(7, np.float32)).block_until_ready()
    assert (outer.programs, inner.programs) == (2, 1)
    assert logger.level == level and logger.filters == filters


def test_import_registers_nothing():
    code = ("import jax.monitoring as m, nst_jax, nst_jax.compilation; from jax._src import monitoring as s; "
            "before = len(s.get_event_listeners()); nst_jax.compilation.collector(); nst_jax.compilation.collector(); "
            "print(before, len(s.get_event_listeners()) - before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, added = map(int, out.stdout.split())
    assert added == 1


def test_persistent_cache_hits_are_counted(tmp_path):
    code = f"""
import jax, numpy as np
from nst_jax._src.cache import enable_compilation_cache
from nst_jax.compilation import CompileStats
enable_compilation_cache({str(tmp_path)!r})
with CompileStats() as s:
    jax.jit(lambda x: x * 3.0 + 1.0)(np.ones((6, 2), np.float32)).block_until_ready()
print(s.programs, s.hits, s.misses)
"""
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert first == ["1", "0", "1"]
    assert second == ["1", "1", "0"]


def test_short_shapes():
    from nst_jax.compilation import short_shapes

    assert short_shapes("float32[2], int32[]") == "float32[2], int32[]"
    many = "float32[64], float32[3,3,3,64], float32[64], float32[1,43,64,3], int32[], float32[1,10,43,64,3]"
    assert short_shapes(many, limit=2) == ("6 inputs (1 conv kernels, 2 biases), largest float32[1,10,43,64,3], "
                                           "float32[1,43,64,3]")
