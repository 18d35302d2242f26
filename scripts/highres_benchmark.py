"""A high-resolution multi-scale run with tiled evaluation: time and peak memory per level.

  python scripts/highres_benchmark.py --size 4096 --output /tmp/highres.png

The content photo is centre-cropped to a square (so the output is size x size) and the run
goes coarse to fine (:func:`nst_jax._src.multiscale.stylize_multiscale`); levels larger than
--tile-size are evaluated tile by tile (:mod:`nst_jax._src.tiled`: the same loss and gradient in
the memory of one tile). The library's relative loss units give every level, and every output
size, the same balance of content and style, so the library's default weights serve at 4096 px
as at 256 px. After each level the
script prints its steps, loss evaluations, optimisation time (compilation separate) and
the process's peak resident memory so far (levels grow, so that is the level's peak).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import time

import numpy as np

from nst_jax import StylizeConfig, load_image, load_vgg19, make_weights, save_image, stylize_multiscale
from nst_jax._src import colour
from nst_jax._src.memory import check_memory
from nst_jax.spec import pyramid_sizes

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "images"


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30


def centre_square(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    s = min(h, w)
    return image[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=4096, help="output side, pixels")
    p.add_argument("--tile-size", type=int, default=1024, help="tile core size for levels larger than it")
    p.add_argument("--scales", type=int, default=4)
    p.add_argument("--min-size", type=int, default=512)
    p.add_argument("--scale-iterations", type=int, nargs="+", default=[100, 40, 6, 2],
                   help="L-BFGS steps per level, coarse to fine")
    p.add_argument("--style-weight", type=float, default=None, help="β (default: the library's)")
    p.add_argument("--style-layers", nargs="+", default=None, help="style layers (default: the library's)")
    p.add_argument("--content-layers", nargs="+", default=None, help="content layers (default: the library's)")
    p.add_argument("--output", type=pathlib.Path, help="write the final image here (PNG)")
    p.add_argument("--json", type=pathlib.Path, help="write the per-level figures here")
    args = p.parse_args(argv)

    if (SHARED / "tubingen.jpg").is_file():
        content_path, style_path = SHARED / "tubingen.jpg", SHARED / "starry_night.jpg"
    else:
        content_path, style_path = ROOT / "examples" / "chelsea.png", ROOT / "examples" / "swirls.png"
    sizes = pyramid_sizes(args.size, args.scales, args.min_size)
    layers = {name: tuple(value) for name, value in (("style_layers", args.style_layers),
                                                     ("content_layers", args.content_layers)) if value}
    config = StylizeConfig(tile_size=args.tile_size, chunk_size=2, **layers)
    weights = make_weights(config, style_weight=args.style_weight)
    beta = float(weights.style)
    vgg = load_vgg19()
    photo = centre_square(load_image(content_path))
    content = colour.resize(photo, (args.size, args.size))
    style = load_image(style_path, args.size)
    check_memory(config, content.shape, style.shape)
    print(f"{content_path.name} (centre square) in the style of {style_path.name}, {args.size}x{args.size}, "
          f"levels {sizes}, steps {args.scale_iterations}, tile {args.tile_size}, beta {beta:.4g}; "
          f"peak RSS after loading {peak_rss_gib():.2f} GiB", flush=True)

    rows = []
    t_level = [time.perf_counter()]

    def report(level, progress):
        if progress.step == progress.iterations:
            size = sizes[level]
            rows.append({"size": size, "steps": progress.iterations, "run_seconds": progress.seconds,
                         "wall_seconds": time.perf_counter() - t_level[0], "peak_rss_gib": peak_rss_gib(),
                         "total": progress.terms["total"]})
            print(f"level {size} px done: {progress.iterations} steps in {progress.seconds:.0f} s, "
                  f"peak RSS so far {peak_rss_gib():.2f} GiB", flush=True)
            t_level[0] = time.perf_counter()

    t = time.perf_counter()
    result = stylize_multiscale(vgg, sizes=sizes, config=config, content=content, style=style, weights=weights,
                                iterations=args.scale_iterations, callback=report)
    wall = time.perf_counter() - t
    for row, level in zip(rows, result.levels, strict=True):
        row["evaluations"] = int(level.history["evaluations_per_step"].sum())
        row["compile_seconds"] = level.compile_seconds
        print(f"level {row['size']:>5} px: {row['steps']:>3} steps, {row['evaluations']:>3} evaluations, "
              f"run {row['run_seconds']:.1f} s ({row['run_seconds'] / row['steps']:.2f} s/step), "
              f"compile+targets {row['compile_seconds']:.1f} s, peak RSS so far {row['peak_rss_gib']:.2f} GiB, "
              f"loss {row['total']:.4g}")
    print(f"total: {wall:.0f} s wall ({wall / 60:.1f} min) for a {args.size}x{args.size} result; "
          f"peak RSS {peak_rss_gib():.2f} GiB")
    if args.output:
        save_image(args.output, result.image)
        print(f"wrote {args.output}")
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "tile_size": args.tile_size, "levels": rows,
                                         "wall_seconds": wall, "peak_rss_gib": peak_rss_gib()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
