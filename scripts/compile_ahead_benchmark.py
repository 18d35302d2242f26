"""A cold three-level default run with and without compiling the next level ahead, each in a fresh process.

  python scripts/compile_ahead_benchmark.py --size 256 --repeats 3

Each run is its own process, so nothing is warm: no program in memory, and a fresh, empty
persistent compilation cache (enabled as the command line enables it). The run is the default
one, ``nst_jax.make_spec(content=photo, style=painting)`` (the preset's three levels) of
examples/chelsea.png and examples/swirls.png at ``--size``, through
``nst_jax.run_spec(vgg, spec, compile_ahead=...)`` off and on, alternating. Per setting the table
gives the minimum and median over ``--repeats`` of:

- wall: the ``run_spec`` call, from the spec to the output (JAX's start-up and loading the
  weights excluded);
- compile: the levels' own compile time (``compile_seconds``: tracing and compiling in the
  foreground, or waiting for the thread, plus computing the targets and the start);
- run: the optimisation steps (``run_seconds``);
- xla: seconds XLA spent compiling, in both threads (:class:`nst_jax.compilation.CompileStats`);
- cpu: the process's CPU seconds (user and system, all threads) during the call: the work done,
  which, unlike wall time, other processes on a shared machine hardly change.

The machine's load average before and after is printed too: on a shared machine, read the wall
times with it.

``--layers relu1_1`` (content and style layers) makes a quick smoke run of the script.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SETTINGS = {"off": False, "on": True}
COLUMNS = ("wall", "compile", "run", "xla", "cpu")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else :func:`platform.processor`) and the CPUs this process may use."""
    name = ""
    try:
        lines = pathlib.Path("/proc/cpuinfo").read_text().splitlines()
        name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{name or platform.processor() or platform.machine()}, {cpus} CPUs"


def child(args: argparse.Namespace) -> int:
    """One cold run in this process; prints its figures as one JSON line."""
    from nst_jax import StylizeConfig, load_image, load_vgg19, make_spec, run_spec
    from nst_jax.compilation import CompileStats, enable_compilation_cache

    enable_compilation_cache(args.cache)
    config = StylizeConfig() if not args.layers else StylizeConfig(content_layers=tuple(args.layers),
                                                                   style_layers=tuple(args.layers))
    # The style loaded as the command line loads it: at the size the style scale asks for.
    style_size = args.size if config.style_scale is None else round(config.style_scale * args.size)
    spec = make_spec(config, content=load_image(EXAMPLES / "chelsea.png", args.size),
                     style=load_image(EXAMPLES / "swirls.png", style_size))
    vgg = load_vgg19()
    t, cpu = time.perf_counter(), time.process_time()
    with CompileStats(shapes=False) as stats:
        result = run_spec(vgg, spec, compile_ahead=SETTINGS[args.child])
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    print(json.dumps({"wall": wall, "compile": result.compile_seconds, "run": result.run_seconds,
                      "xla": stats.seconds("compile"), "cpu": cpu, "sizes": spec.sizes,
                      "iterations": spec.iterations}))
    return 0


def run_child(setting: str, args: argparse.Namespace) -> dict:
    """:func:`child` in a fresh process with a fresh compilation cache."""
    with tempfile.TemporaryDirectory(prefix="nst_jax_ahead_cache_") as cache:
        cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--child", setting, "--cache", cache,
               "--size", str(args.size), *(["--layers", *args.layers] if args.layers else [])]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"the {setting} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: dict[str, list[dict]]) -> str:
    """Min and median per setting and column, seconds."""
    head = "| compile ahead | " + " | ".join(f"{c} s min / median" for c in COLUMNS) + " |"
    lines = [head, "|---" * (len(COLUMNS) + 1) + "|"]
    for setting, runs in rows.items():
        cells = [f"{min(r[c] for r in runs):.2f} / {statistics.median(r[c] for r in runs):.2f}" for c in COLUMNS]
        lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=256, help="the output's longest side, px")
    p.add_argument("--repeats", type=int, default=3, help="cold runs per setting")
    p.add_argument("--layers", nargs="+", help="content and style layers (default: the library's)")
    p.add_argument("--child", choices=sorted(SETTINGS), help=argparse.SUPPRESS)
    p.add_argument("--cache", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    rows: dict[str, list[dict]] = {setting: [] for setting in SETTINGS}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    for _ in range(args.repeats):
        for setting in SETTINGS:  # alternating, so a drift in the machine's load hits both alike
            rows[setting].append(run_child(setting, args))
    first = rows["off"][0]
    print(f"cold default run at {args.size} px: levels {first['sizes']} px, {first['iterations']} steps; "
          f"{args.repeats} runs per setting, each in a fresh process with an empty compilation cache")
    after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"CPU: {cpu_model()}; load average {load:.1f} before, {after:.1f} after; "
          f"layers: {' '.join(args.layers) if args.layers else 'default'}")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
