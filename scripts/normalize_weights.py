"""Measures the per-channel mean activations that normalise VGG-19 (see nst_jax/_src/normalize.py).

  python scripts/normalize_weights.py --images examples ../shared/images

writes weights/vgg19_normalization.npz (+ .sha256): the mean of every ReLU channel of the
shipped weights over every image found (PNG/JPEG, sorted by path), each resized to --size on
its longest side, all positions pooled. `--vgg normalized` applies it at load time.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from nst_jax._src.image import load_image
from nst_jax._src.normalize import DEFAULT_SCALES, channel_means, save_scales
from nst_jax._src.vgg_io import DEFAULT_VGG_FILE, load_vgg19

SUFFIXES = {".png", ".jpg", ".jpeg"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", nargs="+", required=True, help="image files or folders")
    p.add_argument("--size", type=int, default=256, help="longest side the images are resized to")
    p.add_argument("--vgg", default=str(DEFAULT_VGG_FILE), help="the VGG-19 file to normalise")
    p.add_argument("--output", default=str(DEFAULT_SCALES))
    args = p.parse_args(argv)
    paths = []
    for item in map(pathlib.Path, args.images):
        paths += sorted(q for q in item.iterdir() if q.suffix.lower() in SUFFIXES) if item.is_dir() else [item]
    vgg = load_vgg19(args.vgg)
    means = channel_means(vgg, (load_image(q, args.size) for q in paths))
    meta = {"images": [q.name for q in paths], "size": args.size, "pooling": "max",
            "weights_sha256": vgg.sha256,
            "rule": "mean of each ReLU channel over all images and positions (nst_jax/_src/normalize.py)"}
    digest = save_scales(args.output, means, meta)
    print(f"wrote {args.output} from {len(paths)} images ({', '.join(meta['images'])}); sha256 {digest[:12]}...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
