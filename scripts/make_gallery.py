"""The gallery: every content photo in the style of every painting, with the defaults, at 512 px.

  python scripts/make_gallery.py                      # docs/gallery.jpg and docs/gallery/*.jpg

Each cell is one run of the command line with no flags but the images (``nst-jax --content C
--style S --output ...``), so the gallery shows exactly what a new user gets. Photos: the
content images of examples/ and ../shared/images; paintings: examples/swirls.png and the three
paintings in ../shared/images. Writes the outputs (at most 512 px each, JPEG) to docs/gallery/
and a labelled grid of them to docs/gallery.jpg (512 px wide); no input image is copied. Prints
the wall time of every run and the three quality ratios of nst_jax/metrics.py.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "images"
PHOTOS = {"chelsea": ROOT / "examples" / "chelsea.png", "tubingen": SHARED / "tubingen.jpg"}
PAINTINGS = {"swirls": ("Swirls (examples/)", ROOT / "examples" / "swirls.png"),
             "starry_night": ("The Starry Night", SHARED / "starry_night.jpg"),
             "the_scream": ("The Scream", SHARED / "the_scream.jpg"),
             "shipwreck": ("The Shipwreck", SHARED / "shipwreck.jpg")}
LIMIT = 512  # longest side of every committed image


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output-dir", type=pathlib.Path, default=ROOT / "docs", help="where gallery.jpg and gallery/ go")
    p.add_argument("--size", type=int, default=512, help="longest side of each output")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                   help="further nst-jax options for every run (the gallery shows the defaults without them)")
    args = p.parse_args(argv)

    from nst_jax.cli.stylize import main as nst_jax_main
    from nst_jax.figures import labelled_grid, save_reduced
    from nst_jax.image import load_image
    from nst_jax.metrics import evaluate
    from nst_jax.vgg_io import load_vgg19

    photos = {k: v for k, v in PHOTOS.items() if v.is_file()}
    paintings = {k: v for k, v in PAINTINGS.items() if v[1].is_file()}
    (args.output_dir / "gallery").mkdir(parents=True, exist_ok=True)
    vgg = load_vgg19()
    tiles, labels = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for photo, photo_path in photos.items():
            row, row_labels = [], []
            for painting, (title, painting_path) in paintings.items():
                out = pathlib.Path(tmp) / f"{photo}_{painting}.png"
                t = time.perf_counter()
                code = nst_jax_main(["--content", str(photo_path), "--style", str(painting_path), "--output", str(out),
                                     "--size", str(args.size), *args.extra])
                wall = time.perf_counter() - t
                if code != 0:
                    print(f"error: the run for {photo} x {painting} exited with {code}", file=sys.stderr)
                    return code
                image = load_image(out)
                ratios = evaluate(vgg, content=load_image(photo_path, args.size),
                                  style=load_image(painting_path, args.size), output=image)
                print(f"{photo} x {painting}: {wall:.0f} s; style {ratios['style_ratio']:.3f}, content "
                      f"{ratios['content_ratio']:.3f}, speckle {ratios['speckle_ratio']:.2f}", flush=True)
                save_reduced(args.output_dir / "gallery" / f"{photo}_{painting}.jpg", Image.open(out), LIMIT)
                row.append(image)
                row_labels.append(title)
            tiles.append(row)
            labels.append(row_labels)
    width = max(t.shape[1] for row in tiles for t in row)
    scale = (LIMIT - 6 * (len(paintings) + 1)) / (len(paintings) * width)
    small = [[np.asarray(Image.fromarray((t * 255 + 0.5).astype(np.uint8)).resize(
        (round(t.shape[1] * scale), round(t.shape[0] * scale)), Image.LANCZOS), np.float32) / 255 for t in row]
        for row in tiles]
    sheet = labelled_grid(small, labels, font_size=9)
    save_reduced(args.output_dir / "gallery.jpg", sheet, LIMIT)
    print(f"wrote {args.output_dir / 'gallery.jpg'} and {len(photos) * len(paintings)} images in "
          f"{args.output_dir / 'gallery'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
