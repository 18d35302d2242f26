"""PSNR of content reconstructions (the paper's Fig. 1, bottom) with the library's defaults.

  python scripts/reconstruction_psnr.py                      # 192 px, 200 L-BFGS steps
  python scripts/reconstruction_psnr.py --tv-weights 0 30    # the TV weight's effect

Each row reconstructs a photo from one layer's features with ``mode="content"`` and the
defaults of ``make_weights`` (or the TV weights given), from the default noise start, and prints
the PSNR against the photo. A good reconstruction from relu2_1 is near-exact (the features keep
almost everything); deeper layers keep less, so their PSNR falls.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

from nst_jax import StylizeConfig, load_image, load_vgg19, make_weights, stylize

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "images"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two images in [0, 1]."""
    return float(10 * np.log10(1.0 / np.mean(np.square(np.asarray(a, np.float64) - b))))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photo", default=str(SHARED / "tubingen.jpg") if (SHARED / "tubingen.jpg").is_file()
                   else str(ROOT / "examples" / "chelsea.png"))
    p.add_argument("--size", type=int, default=192)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--layers", nargs="+", default=["relu2_1", "relu5_1"])
    p.add_argument("--tv-weights", type=float, nargs="+", default=[None])
    args = p.parse_args()
    vgg, photo = load_vgg19(), load_image(args.photo, args.size)
    print(f"{pathlib.Path(args.photo).name} at {photo.shape[1]}x{photo.shape[0]}, {args.iterations} steps")
    print("| layer | TV weight | PSNR dB |\n|---|---|---|")
    for layer in args.layers:
        for tv in args.tv_weights:
            config = StylizeConfig(mode="content", content_layers=(layer,), iterations=args.iterations,
                                   chunk_size=args.iterations)
            weights = make_weights(config, tv_weight=tv)
            result = stylize(vgg, content=photo, config=config, weights=weights)
            print(f"| {layer} | {float(weights.tv):g} | {psnr(result.image, photo):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
