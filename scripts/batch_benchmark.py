"""Wall time of stylizing 4 photos with one painting: one ``nst-jax`` command against 4 separate runs.

  python scripts/batch_benchmark.py [--size 256] [--iterations 100]

The contents are ``examples/chelsea.png`` and the images of ``../shared/images`` other than the
style (``tubingen.jpg``, ``shipwreck.jpg``, ``the_scream.jpg``; the paintings stand in for photos:
the time does not depend on what an image shows); the style is ``starry_night.jpg``. Both ways run
the ``nst-jax`` tool (``scripts/stylize.py``) in fresh processes with the same settings, each way
with an empty compilation cache of its own (the 4 separate runs share theirs, as a user's runs
would). The one command compiles once per canvas shape; ``--shape-bucket`` lets the four aspect
ratios share one canvas. Prints the two wall times, their ratio and the compile count of each
command.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "images"
CONTENTS = [ROOT / "examples" / "chelsea.png", SHARED / "tubingen.jpg", SHARED / "shipwreck.jpg",
            SHARED / "the_scream.jpg"]
STYLE = SHARED / "starry_night.jpg"


def nst_jax(args: list[str], cache: pathlib.Path) -> tuple[float, str]:
    """Runs the tool; returns its wall time and its output."""
    cmd = [sys.executable, str(ROOT / "scripts" / "stylize.py"), *args, "--compile-cache", str(cache)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return seconds, proc.stdout


def compiled(output: str) -> str:
    """The tool's compile summary lines (``compiled ...``), joined."""
    return "; ".join(line.strip() for line in output.splitlines() if re.match(r"compiled \d", line)) or "(none)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="longest side in pixels (default 256)")
    parser.add_argument("--iterations", type=int, default=100, help="steps per image (default 100)")
    parser.add_argument("--shape-bucket", default="128",
                        help="passed to nst-jax (default 128: the four aspect ratios share canvases; auto: 0 on a CPU)")
    args = parser.parse_args(argv)
    missing = [str(p) for p in [*CONTENTS, STYLE] if not p.is_file()]
    if missing:
        raise SystemExit(f"missing input images: {', '.join(missing)}")
    common = ["--size", str(args.size), "--iterations", str(args.iterations), "--shape-bucket", args.shape_bucket]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "batch").mkdir()
        batch, out = nst_jax(["--content", *map(str, CONTENTS), "--style", str(STYLE), "-o", f"{tmp / 'batch'}/",
                              *common], tmp / "cache_batch")
        print(f"one command, {len(CONTENTS)} photos: {batch:.1f} s ({compiled(out)})")
        separate = []
        for i, content in enumerate(CONTENTS):
            seconds, out = nst_jax(["--content", str(content), "--style", str(STYLE), "-o", str(tmp / f"{i}.png"),
                                    *common], tmp / "cache_separate")
            separate.append(seconds)
            print(f"separate run {i + 1} ({content.name}): {seconds:.1f} s ({compiled(out)})")
    total = sum(separate)
    steps = f"{args.iterations} iteration{'s' if args.iterations != 1 else ''}"
    print(f"size {args.size} px, {steps}: one command {batch:.1f} s, "
          f"{len(CONTENTS)} separate runs {total:.1f} s (ratio {total / batch:.2f})")


if __name__ == "__main__":
    main()
