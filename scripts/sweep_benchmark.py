"""A sweep against the same runs in a loop, from the command line, cold and warm.

  python scripts/sweep_benchmark.py                      # 4 members, the default preset at 128 px
  python scripts/sweep_benchmark.py --size 256 --members 8

One ``nst-jax-sweep PHOTO PAINTING --style-weight-factors F1 ... FK`` against K ``nst-jax PHOTO
PAINTING --scale-style-weights ...`` runs of the same members (each with its member's per-level style
weights, so the images are the same), each side with its own persistent compilation cache: cold (the
cache empty) and warm (the same commands again). Prints the wall time of each, their ratio, the
sweep's peak resident memory (GNU time's maximum RSS) against the memory estimate it checked before
it started, and the CPU model. Every figure is measured in this run.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import re
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def cpu_model() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def timed(argv: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """``(wall seconds, peak RSS in bytes, stdout)`` of one command (GNU time where installed)."""
    gnu_time = pathlib.Path("/usr/bin/time")
    prefix = [str(gnu_time), "-f", "MAXRSS_KB %M"] if gnu_time.is_file() else []
    t0 = time.perf_counter()
    proc = subprocess.run(prefix + argv, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(argv[:3])} ... failed: {proc.stderr.strip().splitlines()[-1:]}")
    found = re.search(r"MAXRSS_KB (\d+)", proc.stderr)
    return wall, int(found.group(1)) * 1024 if found else 0, proc.stdout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--content", default=str(ROOT / "examples" / "chelsea.png"))
    p.add_argument("--style", default=str(ROOT / "examples" / "swirls.png"))
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                   help="further options for both tools (e.g. --scale-iterations 3 2 for a quick check)")
    args = p.parse_args(argv)
    import nst_jax

    factors = [2.0 ** (k - args.members // 2) for k in range(args.members)]
    base = [str(args.content), str(args.style), "--size", str(args.size), *args.extra]
    with tempfile.TemporaryDirectory(prefix="nst_sweep_bench_") as work:
        work = pathlib.Path(work)
        dry = subprocess.run([sys.executable, "-m", "nst_jax.cli._stylize", *base, "-o", str(work / "x.png"),
                              "--dry-run"], capture_output=True, text=True, check=True)
        plan = json.loads(dry.stdout)
        levels, one_estimate = plan["spec"]["levels"], plan["memory"]["estimate_bytes"] / 2**20
        betas = [level["weights"]["style"] for level in levels]
        sweep = [sys.executable, "-m", "nst_jax.cli._sweep", *base, "--no-metrics", "--overwrite",
                 "--compile-cache", str(work / "cache_sweep"), "--output-dir", str(work / "sweep"),
                 "--style-weight-factors", *map(str, factors)]
        loop = [[sys.executable, "-m", "nst_jax.cli._stylize", *base, "--overwrite", "--compile-cache",
                 str(work / "cache_loop"), "-o", str(work / f"loop_{k}.png"),
                 "--scale-style-weights", *(f"{b * f:g}" for b in betas)] for k, f in enumerate(factors)]
        rows = []
        for when in ("cold", "warm"):
            sweep_wall, sweep_rss, out = timed(sweep)
            estimate = re.search(r"memory estimate: (\d+) MiB", out)
            singles = [timed(command) for command in loop]
            loop_wall, loop_rss = sum(t[0] for t in singles), max(t[1] for t in singles)
            rows.append((when, sweep_wall, loop_wall, sweep_rss, loop_rss, int(estimate.group(1)) if estimate else 0))
    steps = "+".join(str(level["iterations"]) for level in levels)
    print(f"nst_jax {nst_jax.__version__}; CPU: {cpu_model()}; {args.members} members, {len(levels)} levels "
          f"({steps} steps) at {args.size} px")
    print("wall time of the sweep and of the loop; peak RSS of the sweep and of the largest single run, and the "
          "memory estimates each checks (the RSS adds the process's own: JAX, XLA, the decoded VGG)")
    print(f"{'':5} {'sweep s':>8} {'loop s':>8} {'sweep/loop':>10} {'sweep RSS':>10} {'run RSS':>8} "
          f"{'RSS extra':>9} {'est sweep':>9} {'est run':>8} {'est extra':>9}  (MiB)")
    for when, sweep_wall, loop_wall, rss, run_rss, estimate in rows:
        extra = (rss - run_rss) / 2**20
        print(f"{when:5} {sweep_wall:8.1f} {loop_wall:8.1f} {sweep_wall / loop_wall:10.2f} {rss / 2**20:10.0f} "
              f"{run_rss / 2**20:8.0f} {extra:9.0f} {estimate:9d} {one_estimate:8.0f} {estimate - one_estimate:9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
