"""What a new photo costs in compilation: cold, warm and another aspect ratio, with and without shape buckets.

  python scripts/reuse_benchmark.py --size 512 --iterations 2

Each row is one ``nst-jax`` process (wall time, and the compile summary line the CLI prints), in
this order, with one fresh persistent compilation cache per bucket setting: the first photo cold;
the same photo again (warm cache); a crop of it with another aspect ratio that rounds to the same
canvas for a bucket of 128 px (a 4:3 photo cropped to 3:2). Few iterations, so the figures are
dominated by start-up and compilation.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import subprocess
import sys
import tempfile
import time

from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "images"


def images() -> tuple[pathlib.Path, pathlib.Path]:
    if (SHARED / "tubingen.jpg").is_file():
        return SHARED / "tubingen.jpg", SHARED / "starry_night.jpg"
    return ROOT / "examples" / "chelsea.png", ROOT / "examples" / "swirls.png"


def run(content: pathlib.Path, style: pathlib.Path, out: pathlib.Path, args, bucket: int, cache: str) -> tuple:
    cmd = [sys.executable, "-m", "nst_jax.cli._stylize", str(content), str(style), "-o", str(out), "--overwrite",
           "--size", str(args.size), "--iterations", str(args.iterations), "--shape-bucket", str(bucket),
           "--compile-cache", cache]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    if proc.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    summary = next((line for line in proc.stdout.splitlines() if line.startswith("compiled ")), "?")
    size = re.search(r"wrote \S+ \((\d+x\d+)\)", proc.stdout)
    return wall, summary, size.group(1) if size else "?"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--buckets", type=int, nargs="+", default=[0, 128])
    args = p.parse_args()
    content, style = images()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        with Image.open(content) as im:  # a 3:2 crop of the (landscape) photo: the same orientation, other rows
            w, h = im.size
            im.convert("RGB").crop((0, 0, w, min(h, w * 2 // 3))).save(tmp / "crop.png")
        print("| bucket | run | output | wall s | compilation |\n|---|---|---|---|---|")
        for bucket in args.buckets:
            cache = str(tmp / f"cache{bucket}")
            rows = [("cold", content), ("warm, same photo", content), ("warm, 3:2 crop", tmp / "crop.png")]
            walls = []
            for name, photo in rows:
                wall, summary, size = run(photo, style, tmp / "out.png", args, bucket, cache)
                walls.append(wall)
                print(f"| {bucket} | {name} | {size} | {wall:.1f} | {summary} |", flush=True)
            print(f"| {bucket} | another aspect ratio / cold | | {walls[2] / walls[0]:.2f} | |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
