"""The quality ratios of stylized images: style, content and speckle (see nst_jax/metrics.py).

  python scripts/evaluate.py CONTENT STYLE OUTPUT [OUTPUT ...] [--json]

Lower is better on each: style ratio 0 is the painting's statistics (the photo scores 1), content
ratio 0 is the photo's relu4_2 features (the painting scores 1), speckle ratio 1 is the painting's
own high-frequency energy. The content photo is resized to each output's size, the style image as
the definitions say. Errors are one line on stderr, exit code 2.
"""

from __future__ import annotations

import json
import sys

from nst_jax.cli import args as cli


def main(argv: list[str] | None = None) -> int:
    return cli.guarded_main(run, argv)


def run(argv: list[str] | None) -> int:
    p = cli.OneLineParser(description=__doc__.split("\n\n")[0])
    p.add_argument("content", help="the content photo")
    p.add_argument("style", help="the style image")
    p.add_argument("outputs", nargs="+", metavar="output", help="stylized image(s)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--vgg", default="original", help="VGG-19 parameters (original, normalized or a file)")
    args = p.parse_args(argv)

    from nst_jax.image import load_image
    from nst_jax.metrics import RATIOS, evaluate

    content, style = load_image(args.content), load_image(args.style)
    outputs = {path: load_image(path) for path in args.outputs}  # every file checked before any compute
    vgg = cli.load_vgg(args.vgg)
    results = {path: evaluate(vgg, content=content, style=style, output=image) for path, image in outputs.items()}
    if args.json:
        print(json.dumps({"content": args.content, "style": args.style, "outputs": results}, indent=1))
        return 0
    width = max(len(path) for path in results)
    print(f"{'output':<{width}}  {'style':>7}  {'content':>7}  {'speckle':>7}")
    for path, r in results.items():
        print(f"{path:<{width}}  " + "  ".join(f"{r[name]:>7.3f}" for name in RATIOS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
