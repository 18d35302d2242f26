"""Preset candidates in this process, scored by the judge: the quick form of calibrate_defaults.py.

  python scripts/explore_presets.py --pairs astronaut:the_scream --candidates balanced_old taper_s1 \\
      --size 256 --out /tmp/cal

Runs each candidate of ``calibrate_defaults.PRESET_CANDIDATES`` (or a registered preset) through
the library (``make_spec`` + ``run_spec``, what ``nst-jax --preset NAME`` resolves and runs) on
each pair, in one process, so every candidate after the first reuses the compiled programs (the
presets differ in dynamic weights only). Writes ``OUT/NAME/PHOTO-PAINTING-SIZE.png`` and adds the
judge's ratios and the run's seconds to ``OUT/scores.json`` (calibrate_defaults.py's ``--json``
layout, which ``make_ghosts_figure.py`` reads), and prints one line per run. Wall times here
exclude process start-up and include compiling only for the first candidate of a size; they are
not the command line's (calibrate_defaults.py measures that).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from calibrate_defaults import PRESET_CANDIDATES  # noqa: E402
from panel import find  # noqa: E402

KEYS = ("style_x1", "style_x2", "style_x4", "content_lpips", "speckle_ratio", "structure")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", nargs="+", required=True, metavar="PHOTO:PAINTING")
    p.add_argument("--candidates", nargs="+", required=True, metavar="NAME")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--out", type=pathlib.Path, required=True)
    args = p.parse_args(argv)

    import numpy as np

    from nst_jax import config as config_module
    from nst_jax import load_image, load_vgg19, make_spec, run_spec, save_image
    from nst_jax.evaluation import Evaluator, optional_judge
    from nst_jax.spec import Choices

    config_module.PRESETS.update({n: PRESET_CANDIDATES[n] for n in args.candidates if n in PRESET_CANDIDATES})
    vgg = load_vgg19()
    scores_path = args.out / "scores.json"
    for pair in args.pairs:
        photo_name, painting_name = pair.split(":")
        photo, painting = load_image(find(photo_name), args.size), load_image(find(painting_name), args.size)
        evaluator = None
        for name in args.candidates:
            spec = make_spec(content=photo, style=painting, choices=Choices(preset=name))
            t = time.perf_counter()
            image = np.asarray(run_spec(vgg, spec).image)
            seconds = time.perf_counter() - t
            out = args.out / name / f"{photo_name}-{painting_name}-{args.size}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            save_image(out, image)
            if evaluator is None:
                evaluator = Evaluator(vgg, content=photo, style=painting, shape=image.shape[:2],
                                      judge=optional_judge(image.shape[:2]))
            ratios = evaluator(image)
            scores = json.loads(scores_path.read_text()) if scores_path.is_file() else {}
            scores.setdefault(name, {})[pair] = {**ratios, "seconds": seconds}
            scores_path.write_text(json.dumps(scores, indent=1) + "\n")
            print(f"{pair} {name} {seconds:.0f} s " + " ".join(f"{k} {ratios[k]:.3f}" for k in KEYS), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
