"""Neural style transfer (Gatys et al.) from the command line.

  python scripts/stylize.py --content photo.jpg --style painting.jpg --output out.png

Every default comes from the library (`StylizeConfig`, `loss_weights`,
`nst_jax.image.DEFAULT_SIZE`). Errors are one line on stderr and exit code 2;
nothing is written unless the run finishes (intermediate saves excepted).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys

import numpy as np

from nst_jax import image as imageio
from nst_jax.errors import NSTError
from nst_jax.optimize import INITS, MODES, OPTIMIZERS, StylizeConfig, loss_weights, stylize
from nst_jax.vgg import POOLINGS
from nst_jax.weights import DEFAULT_WEIGHTS, load_vgg19

CONFIG_DEFAULTS = {f.name: f.default for f in dataclasses.fields(StylizeConfig)}
WEIGHT_DEFAULTS = {
    name: p.default for name, p in inspect.signature(loss_weights).parameters.items() if p.default is not p.empty}


class DefaultsFormatter(argparse.HelpFormatter):
    """Appends each option's default (lists as words), except where there is none."""

    def _get_help_string(self, action):
        default = action.default
        if default is None or default is argparse.SUPPRESS or action.option_strings == ["-h", "--help"]:
            return action.help
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{action.help} (default: {shown})"


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, exit code 2."""

    def error(self, message):
        self.exit(2, f"error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__.split("\n\n")[0], formatter_class=DefaultsFormatter)
    p.add_argument("--content", help="content photo (transfer and content modes)")
    p.add_argument("--style", help="style image (transfer and style modes)")
    p.add_argument("--output", required=True, help="output image (.png, .jpg, ...)")
    p.add_argument("--mode", choices=MODES, default=CONFIG_DEFAULTS["mode"],
                   help="transfer; content reconstruction; style reconstruction (texture synthesis)")
    p.add_argument("--size", type=int, default=imageio.DEFAULT_SIZE, help="longest side of the output, pixels")
    p.add_argument("--iterations", type=int, default=CONFIG_DEFAULTS["iterations"], help="optimiser steps")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=CONFIG_DEFAULTS["optimizer"], help="pixel optimiser")
    p.add_argument("--learning-rate", type=float, default=WEIGHT_DEFAULTS["learning_rate"], help="Adam step size")
    p.add_argument("--content-weight", type=float, default=WEIGHT_DEFAULTS["content_weight"], help="alpha")
    p.add_argument("--style-weight", type=float, default=WEIGHT_DEFAULTS["style_weight"], help="beta")
    p.add_argument("--tv-weight", type=float, default=WEIGHT_DEFAULTS["tv_weight"], help="total-variation weight")
    p.add_argument("--content-layer", nargs="+", default=list(CONFIG_DEFAULTS["content_layers"]), metavar="LAYER",
                   help="content layer(s)")
    p.add_argument("--content-layer-weights", nargs="+", type=float, metavar="W",
                   help="one weight per content layer [default: 1 each]")
    p.add_argument("--style-layers", nargs="+", default=list(CONFIG_DEFAULTS["style_layers"]), metavar="LAYER",
                   help="style layer(s)")
    p.add_argument("--style-layer-weights", nargs="+", type=float, metavar="W",
                   help="one weight per style layer [default: 1/L each]")
    p.add_argument("--init", default=CONFIG_DEFAULTS["init"],
                   help=f"starting image: {' | '.join(i for i in INITS if i != 'image')} | path to an image")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise initialisation")
    p.add_argument("--pooling", choices=POOLINGS, default=CONFIG_DEFAULTS["pooling"], help="VGG pooling")
    p.add_argument("--save-every", type=int, default=0, metavar="N",
                   help="also save OUTPUT_<step> every N iterations (0: never)")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="VGG-19 weights file")
    return p


def prepare(args: argparse.Namespace):
    """Validates every argument and loads every input; raises NSTError before any compute."""
    if not imageio.MIN_SIZE <= args.size <= imageio.MAX_SIZE:
        raise NSTError(f"--size must be between {imageio.MIN_SIZE} and {imageio.MAX_SIZE}, got {args.size}")
    if args.save_every < 0:
        raise NSTError(f"--save-every must be >= 0, got {args.save_every}")
    init_path = None
    init = args.init
    if init not in INITS or init == "image":
        init_path, init = args.init, "image"
    config = StylizeConfig(
        mode=args.mode, content_layers=tuple(args.content_layer), style_layers=tuple(args.style_layers),
        pooling=args.pooling, optimizer=args.optimizer, iterations=args.iterations, init=init,
        chunk_size=args.save_every or CONFIG_DEFAULTS["chunk_size"])
    weights = loss_weights(
        config, content_weight=args.content_weight, style_weight=args.style_weight, tv_weight=args.tv_weight,
        content_layer_weights=args.content_layer_weights, style_layer_weights=args.style_layer_weights,
        learning_rate=args.learning_rate)
    if config.uses_content and not args.content:
        raise NSTError(f"--content is required in {config.mode} mode")
    if config.uses_style and not args.style:
        raise NSTError(f"--style is required in {config.mode} mode")
    output = imageio.check_output_path(args.output)
    vgg = load_vgg19(args.weights)
    content = imageio.load_image(args.content, args.size) if config.uses_content else None
    style = imageio.load_image(args.style, args.size) if config.uses_style else None
    init_image = None
    if init_path is not None:
        reference = content if content is not None else style
        init_image = imageio.load_image(init_path, args.size)
        if config.uses_content and init_image.shape != reference.shape:
            raise NSTError(f"--init image resizes to {init_image.shape[1]}x{init_image.shape[0]}, "
                           f"the content to {reference.shape[1]}x{reference.shape[0]}; give them the same aspect ratio")
    return config, weights, output, vgg, content, style, init_image


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config, weights, output, vgg, content, style, init_image = prepare(args)
    except NSTError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    from tqdm import tqdm

    h, w = (content if content is not None else init_image if init_image is not None else style).shape[:2]
    print(f"compiling for {w}x{h} ...", flush=True)
    bar = None

    def on_chunk(progress):
        nonlocal bar
        if bar is None:  # started after compilation, so it/s and ETA measure the optimisation only
            bar = tqdm(total=config.iterations, unit="it", dynamic_ncols=True)
        bar.update(progress.step - bar.n)
        bar.set_postfix(loss=f"{progress.terms['total']:.4g}")
        if args.save_every and progress.step < progress.iterations:
            path = output.with_name(f"{output.stem}_{progress.step:05d}{output.suffix}")
            imageio.save_image(path, np.asarray(progress.image))

    try:
        result = stylize(vgg.params, convention=vgg.convention, content=content, style=style, init=init_image,
                         config=config, weights=weights, seed=args.seed, callback=on_chunk)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        print("error: interrupted; no output written", file=sys.stderr)
        return 130
    bar.close()
    imageio.save_image(output, result.image)
    h, w = result.image.shape[:2]
    terms = "  ".join(f"{k}={result.history[k][-1]:.4g}" for k in ("content", "style", "tv", "total"))
    print(f"wrote {output} ({w}x{h})")
    evaluations = int(result.history["evaluations_per_step"].sum())
    print(f"time per iteration: {result.seconds_per_iteration:.3f} s "
          f"({config.iterations} iterations, {evaluations} loss evaluations, in {result.run_seconds:.1f} s; "
          f"compile {result.compile_seconds:.1f} s)")
    print(f"final loss: {terms}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
