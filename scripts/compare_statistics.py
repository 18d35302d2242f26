"""Each registered style statistic on a small panel, scored by the independent judge (nst_jax/_src/metrics.py).

  python scripts/compare_statistics.py                       # 3 pairs at 256 px, 60 steps, every statistic
  python scripts/compare_statistics.py --pairs chelsea:swirls --size 192 --steps 10 --statistics gram sliced
  python scripts/compare_statistics.py --statistics sliced --style-weight 200   # another balance

For each photo x painting pair and each statistic of nst_jax._src.statistics.STATISTICS, one run with the
library's defaults and ``style_loss`` set (relative units: every statistic's layer term is 1 at
blank features and 0 at the style, so the default weights carry over, though not exactly), timed
(compilation and targets included; wall time, and the process's CPU time summed over its threads,
which says more than the wall time on a shared machine), then scored with the eval extra's judge
(ImageNet VGG-16 + LPIPS: style ratio at full, 1/2 and 1/4 size, LPIPS content ratio, speckle;
lower is better) and, as the secondary columns, nst_jax's own VGG-19 ratios. Then each statistic's
geometric mean over the pairs.
Needs the eval extra (pip install 'nst_jax[eval]'). Photos and paintings: examples/ and
../shared/images (pairs whose files are absent are skipped, and said so).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "images"
IMAGES = {"chelsea": ROOT / "examples" / "chelsea.png", "swirls": ROOT / "examples" / "swirls.png",
          "tubingen": SHARED / "tubingen.jpg", "starry_night": SHARED / "starry_night.jpg",
          "the_scream": SHARED / "the_scream.jpg", "shipwreck": SHARED / "shipwreck.jpg"}
PAIRS = ("tubingen:starry_night", "chelsea:swirls", "tubingen:the_scream")
COLUMNS = ("style_x1", "style_x2", "style_x4", "content_lpips", "speckle_ratio", "style_ratio", "content_ratio")
HEADER = ("style", "style½", "style¼", "content", "speckle", "vgg19 sty", "vgg19 con")


def parse(argv: list[str] | None) -> argparse.Namespace:
    from nst_jax._src.statistics import STATISTICS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", nargs="+", default=list(PAIRS), help="photo:painting names (%(default)s)")
    p.add_argument("--size", type=int, default=256, help="longest side in pixels (%(default)s)")
    p.add_argument("--steps", type=int, default=60, help="L-BFGS steps per run (%(default)s)")
    p.add_argument("--statistics", nargs="+", default=list(STATISTICS), choices=list(STATISTICS))
    p.add_argument("--style-weight", type=float, help="β for every run (default: the library's)")
    p.add_argument("--json", type=pathlib.Path, help="also write every row as JSON here")
    return p.parse_args(argv)


def run_pair(vgg, judge, photo: str, painting: str, args: argparse.Namespace) -> list[dict]:
    """One run per statistic on one pair, each scored; rows printed as they come."""
    from nst_jax import StylizeConfig, make_weights, stylize
    from nst_jax._src.image import load_image
    from nst_jax._src.metrics import Evaluator

    content, style = load_image(IMAGES[photo], args.size), load_image(IMAGES[painting], args.size)
    evaluator = Evaluator(vgg, content=content, style=style, shape=content.shape, judge=judge)
    rows = []
    for name in args.statistics:
        start, cpu = time.perf_counter(), time.process_time()
        config = StylizeConfig(style_loss=name, iterations=args.steps)
        weights = make_weights(config, style_weight=args.style_weight)
        result = stylize(vgg, content=content, style=style, config=config, weights=weights)
        row = {"pair": f"{photo} x {painting}", "statistic": name, "seconds": time.perf_counter() - start,
               "cpu_seconds": time.process_time() - cpu, **evaluator(result.image)}
        print(f"| {row['pair']} | {name} | " + " | ".join(f"{row[k]:.3f}" for k in COLUMNS)
              + f" | {row['seconds']:.0f} s | {row['cpu_seconds']:.0f} s |", flush=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    from nst_jax.cli import _args as cli

    return cli.guarded_main(run, argv)


def run(argv: list[str] | None) -> int:
    args = parse(argv)
    from nst_jax._src.metrics import load_judge
    from nst_jax._src.vgg_io import load_vgg19

    judge, vgg = load_judge(), load_vgg19()
    beta = "the default style weight" if args.style_weight is None else f"style weight {args.style_weight:g}"
    print(f"{args.size} px, {args.steps} L-BFGS steps, library defaults with style_loss set and {beta}; "
          f"judged by {judge.name}")
    print("| pair | statistic | " + " | ".join(HEADER) + " | wall | CPU |")
    print("|---|---|" + "---|" * (len(HEADER) + 2))
    rows = []
    for pair in args.pairs:
        photo, _, painting = pair.partition(":")
        missing = [n for n in (photo, painting) if n not in IMAGES or not IMAGES[n].is_file()]
        if missing:
            print(f"skipping {pair}: no image {', '.join(missing)}", file=sys.stderr)
            continue
        rows += run_pair(vgg, judge, photo, painting, args)
    print("\ngeometric mean over the pairs (lower is better):")
    print("| statistic | " + " | ".join(HEADER) + " | mean wall | mean CPU |")
    print("|---|" + "---|" * (len(HEADER) + 2))
    for name in args.statistics:
        mine = [r for r in rows if r["statistic"] == name]
        if mine:
            means = [float(np.exp(np.mean(np.log([max(r[k], 1e-12) for r in mine])))) for k in COLUMNS]
            wall, cpu = (np.mean([r[k] for r in mine]) for k in ("seconds", "cpu_seconds"))
            print(f"| {name} | " + " | ".join(f"{m:.3f}" for m in means) + f" | {wall:.0f} s | {cpu:.0f} s |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
