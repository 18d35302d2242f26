"""Multi-scale (coarse to fine) vs single-scale at one size: final full-size loss and wall time.

  python scripts/multiscale_benchmark.py --size 512 --iterations 200

Both runs use the same library defaults (L-BFGS, loss weights) and the same content and
style (../shared/images tubingen.jpg and starry_night.jpg if present, else the examples).
The single-scale run takes --iterations steps at full size from noise. The multi-scale run
spends the same budget counted in full-size-step equivalents (a step at half the side costs
about a quarter of one): --coarse-iterations steps at each coarse level from --min-size, and
the full-size level gets the steps left. The full-size loss
of both outputs is evaluated with the same loss function, and the optimisation wall time
(compilation excluded, reported separately) is printed.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax.numpy as jnp

from nst_jax import (
    StylizeConfig,
    compute_targets,
    load_image,
    load_vgg19,
    loss_terms,
    make_weights,
    save_image,
    stylize,
    stylize_multiscale,
)
from nst_jax.spec import pyramid_sizes

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "images"


def full_size_loss(vgg, image, content, style, config, weights) -> dict[str, float]:
    targets = compute_targets(vgg, content=content, style=style, config=config)
    terms = loss_terms(vgg, jnp.asarray(image), targets, weights, config=config)
    return {k: float(v) for k, v in terms.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--iterations", type=int, default=200, help="full-size steps of the single-scale run")
    p.add_argument("--scales", type=int, default=3)
    p.add_argument("--min-size", type=int, default=128)
    p.add_argument("--coarse-iterations", type=int, default=100, help="steps at each coarse level")
    p.add_argument("--output-dir", help="also save both images and a JSON summary here")
    args = p.parse_args(argv)

    if (SHARED / "tubingen.jpg").is_file():
        content_path, style_path = SHARED / "tubingen.jpg", SHARED / "starry_night.jpg"
    else:
        content_path, style_path = ROOT / "examples" / "chelsea.png", ROOT / "examples" / "swirls.png"
    vgg = load_vgg19()
    content, style = load_image(content_path, args.size), load_image(style_path, args.size)
    sizes = pyramid_sizes(args.size, args.scales, args.min_size)
    coarse_cost = sum(args.coarse_iterations * (s / args.size) ** 2 for s in sizes[:-1])
    last = max(1, round(args.iterations - coarse_cost))
    iterations = [args.coarse_iterations] * (len(sizes) - 1) + [last]
    config = StylizeConfig(iterations=args.iterations, chunk_size=25)
    weights = make_weights(config)

    single = stylize(vgg, content=content, style=style, config=config,
                     weights=weights)
    multi = stylize_multiscale(vgg, sizes=sizes, content=content, style=style,
                               config=config, weights=weights, iterations=iterations)
    rows = {
        "single": {"steps": [args.iterations], "sizes": [args.size], "run_seconds": single.run_seconds,
                   "compile_seconds": single.compile_seconds,
                   "loss": full_size_loss(vgg, single.image, content, style, config, weights)},
        "multi": {"steps": iterations, "sizes": sizes, "run_seconds": multi.run_seconds,
                  "compile_seconds": multi.compile_seconds,
                  "loss": full_size_loss(vgg, multi.image, content, style, config, weights)},
    }
    print(f"content {content_path.name}, style {style_path.name}, {content.shape[1]}x{content.shape[0]}, "
          f"budget {args.iterations} full-size L-BFGS steps")
    for name, row in rows.items():
        loss = row["loss"]
        print(f"{name:>6}: sizes {row['sizes']} steps {row['steps']}: total {loss['total']:.4g} "
              f"(content {loss['content']:.4g}, style {loss['style']:.4g}), run {row['run_seconds']:.1f} s, "
              f"compile {row['compile_seconds']:.1f} s")
    if args.output_dir:
        out = pathlib.Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_image(out / "single.png", single.image)
        save_image(out / "multi.png", multi.image)
        (out / "multiscale_benchmark.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
