"""Makes the "Quality controls" images (docs/quality/*.png) of docs/guide/quality.md, one run per feature.

  python scripts/make_readme_examples.py [--size 256] [--iterations N] [--only NAME ...]

Inputs are the repository's own: examples/chelsea.png (CC0) and examples/swirls.png (made by
scripts/make_example_style.py); the second style is swirls.png with its colour channels
rotated (made here). Every run uses the library's defaults (StylizeConfig(), make_weights)
except what its entry sets; the loss weights are the same for every style loss and for the
normalised VGG, since the default relative loss units divide each term by its own scale.
Adam runs 200 steps. Outputs are at most --size px.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

from nst_jax import (
    StylizeConfig,
    load_image,
    load_vgg19,
    make_weights,
    normalize_vgg19,
    save_image,
    stylize,
    stylize_multiscale,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "quality"

# name: (config overrides, loss-weight overrides, extra inputs)
RUNS = {
    "baseline": ({}, {}, {}),
    "style_loss_meancov": ({"style_loss": "meancov"}, {}, {}),
    "style_loss_w2": ({"style_loss": "w2"}, {}, {}),
    "two_styles_blend": ({"num_styles": 2}, {"style_blend": [0.5, 0.5]}, {"styles": 2}),
    "style_scale_0.5": ({"style_scale": 0.5}, {}, {}),
    "style_scale_2": ({"style_scale": 2.0}, {}, {}),
    "colour_luminance": ({"preserve_colour": "luminance"}, {}, {}),
    "colour_match": ({"preserve_colour": "match"}, {}, {}),
    "multiscale": ({}, {}, {"sizes": 2}),
    "masks": ({"num_styles": 2}, {}, {"styles": 2, "masks": True}),
    "normalized_vgg": ({}, {}, {"normalized": True}),
    "adam": ({"optimizer": "adam", "iterations": 200}, {"learning_rate": 0.03}, {}),
    "adam_ema": ({"optimizer": "adam", "iterations": 200}, {"learning_rate": 0.03, "ema_decay": 0.95}, {}),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--iterations", type=int, default=StylizeConfig().iterations,
                   help="L-BFGS steps (default: the library's)")
    p.add_argument("--only", nargs="+", choices=sorted(RUNS))
    args = p.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    vgg = load_vgg19()
    content = load_image(ROOT / "examples" / "chelsea.png", args.size)
    style = load_image(ROOT / "examples" / "swirls.png", args.size)
    style2 = style[..., [2, 0, 1]].copy()
    save_image(OUT / "style2.png", style2)
    h, w = content.shape[:2]
    masks = np.zeros((2, h, w), np.float32)
    masks[0, :, : w // 2], masks[1, :, w // 2:] = 1.0, 1.0
    for name in args.only or RUNS:
        config_kw, weights_kw, extra = RUNS[name]
        config = StylizeConfig(**{"iterations": args.iterations, **config_kw})
        weights = make_weights(config, **weights_kw)
        net = normalize_vgg19(vgg) if extra.get("normalized") else vgg
        styles = [style, style2] if extra.get("styles") == 2 else style
        t = time.perf_counter()
        if extra.get("sizes"):
            half = args.iterations // 2
            result = stylize_multiscale(
                net, sizes=[args.size // 2, args.size], content=content,
                style=style, config=config, weights=weights, iterations=[args.iterations, half])
            final = result.levels[-1].history
            steps = f"{args.iterations} at {args.size // 2} px + {half} at {args.size} px"
        else:
            result = stylize(net, content=content, style=styles, config=config, weights=weights,
                             masks=masks if extra.get("masks") else None)
            final, steps = result.history, f"{config.iterations}"
        save_image(OUT / f"{name}.png", result.image)
        print(f"{name}: {steps} steps, {time.perf_counter() - t:.0f} s, final total loss {final['total'][-1]:.4g}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
