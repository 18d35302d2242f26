"""Compile and run time of one small stylization under several ``XLA_FLAGS`` settings.

    python scripts/xla_flags_probe.py [--size 64] [FLAGS ...]

Each setting runs in a fresh process (XLA reads its flags once), with the persistent compilation cache
off: a ``stylize`` of 10 steps at ``--size`` px, twice (the first compiles, the second reuses). The
default settings compared are none, ``--xla_backend_optimization_level=0`` and
``--xla_cpu_multi_thread_eigen=false``. Prints the compile summary, the first and second run's seconds
and the process's wall and CPU time.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

CHILD = """
import sys, time
import numpy as np
import nst_jax
from nst_jax.compilation import CompileStats
size = int(sys.argv[1])
vgg = nst_jax.load_vgg19()
rng = np.random.default_rng(0)
content, style = (rng.uniform(size=(size, size, 3)).astype(np.float32) for _ in range(2))
config = nst_jax.StylizeConfig(iterations=10, chunk_size=10)
with CompileStats() as stats:
    t = time.perf_counter()
    nst_jax.stylize(vgg, content=content, style=style, config=config)
    first = time.perf_counter() - t
t = time.perf_counter()
nst_jax.stylize(vgg, content=content, style=style, config=config)
print(f"{stats.summary()}; first run {first:.1f} s, second {time.perf_counter() - t:.2f} s")
"""

DEFAULT_FLAGS = ["", "--xla_backend_optimization_level=0", "--xla_cpu_multi_thread_eigen=false"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("flags", nargs="*", default=DEFAULT_FLAGS, help="XLA_FLAGS values ('' for none)")
    args = parser.parse_args()
    for flags in args.flags:
        env = dict(os.environ, XLA_FLAGS=flags, NST_JAX_CACHE_DIR="off")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", CHILD, str(args.size)], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        line = proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 else f"failed: {proc.stderr[-300:]}"
        print(f"XLA_FLAGS={flags!r}: {line}; process {wall:.1f} s wall, "
              f"{after.ru_utime - before.ru_utime:.1f} s user", flush=True)


if __name__ == "__main__":
    main()
