"""What the command-line tools share, one copy each: argument groups with the library's defaults, input
loading, the progress bar, signal handling and the mapping from exceptions to exit codes.

Exit codes (every tool): 0 done; 1 internal error, a bug (``NST_JAX_DEBUG=1`` shows the traceback);
2 bad usage, input, file or setting (nothing computed); 3 interrupted (SIGINT or SIGTERM); 4
numerical failure (NaN or Inf); 5 a fault of the system (disk full, permission denied, out of
memory); 6 a file appeared at an output path during the run (it is kept; the result is saved beside
it). Every error is one line on stderr, starting ``error:``, with control characters removed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import errno
import functools
import inspect
import math
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from nst_jax import files, load_vgg19, normalize_vgg19
from nst_jax.cli._request import VGG_CHOICES, Sources, init_source
from nst_jax.compilation import default_cache_dir, enable_compilation_cache
from nst_jax.config import (
    AUTO_SHAPE_BUCKET,
    COLOURS,
    CONTENT_TERM_NAMES,
    DEFAULT_LOSS_WEIGHTS,
    DEFAULT_PRESET,
    INITS,
    LOSS_UNITS,
    MODE_DEFAULTS,
    MODES,
    OPTIMIZERS,
    POOLINGS,
    PRECISIONS,
    PRESETS,
    RECONSTRUCTION_ITERATIONS,
    STYLE_LOSSES,
    TRANSFER_ITERATIONS,
    Preset,
    StylizeConfig,
    auto_shape_bucket,
    make_weights,
)
from nst_jax.errors import NSTError, NumericalError, OutputExists, clean, one_line
from nst_jax.host import check_memory, memory_limit_from_env
from nst_jax.spec import Choices, resolve_levels

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_NUMERICAL = 0, 1, 2, 3, 4
EXIT_ENVIRONMENT, EXIT_CONFLICT = 5, 6
INT_RANGE = (-(2**63), 2**63 - 1)  # integers beyond int64 are refused as usage errors

CONFIG_DEFAULTS = {f.name: f.default for f in dataclasses.fields(StylizeConfig)}
# make_weights' defaults; content, style and TV weights depend on the loss units (DEFAULT_LOSS_WEIGHTS).
WEIGHT_DEFAULTS = {
    name: p.default for name, p in inspect.signature(make_weights).parameters.items() if p.default is not p.empty}


class Exit(Exception):
    """A tool's outcome other than success: its exit code and its one-line message."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def integer(text: str) -> int:
    """An argparse type: an integer within the int64 range."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer: {text!r}") from None
    if not INT_RANGE[0] <= value <= INT_RANGE[1]:
        raise argparse.ArgumentTypeError(f"{text[:30]} is out of range (a 64-bit integer)")
    return value


def term_weight(text: str) -> tuple[str, float]:
    """An argparse type: ``NAME=WEIGHT``, a content term's name (:data:`~nst_jax.config.CONTENT_TERM_NAMES`)
    and its weight (whose range :func:`~nst_jax.config.make_weights` checks)."""
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not NAME=WEIGHT (e.g. structure=3)")
    if name not in CONTENT_TERM_NAMES:
        raise argparse.ArgumentTypeError(f"unknown content term {name[:40]!r} (choose from "
                                         f"{', '.join(CONTENT_TERM_NAMES)})")
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r}: the weight is not a number") from None


class TermWeights(argparse.Action):
    """``--content-term-weights NAME=WEIGHT ...`` as one mapping ``{term: weight}``, each name at most once;
    with ``append`` (a sweep's), one mapping per use of the option."""

    def __init__(self, *args: Any, append: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.append = append

    def __call__(self, parser, namespace, values, option_string=None):
        names = [name for name, _ in values]
        twice = next((name for name in names if names.count(name) > 1), None)
        if twice is not None:
            parser.error(f"argument {option_string}: {twice} is given twice")
        if self.append:
            earlier = getattr(namespace, self.dest, None)
            setattr(namespace, self.dest, [*(earlier if isinstance(earlier, list) else []), dict(values)])
        else:
            setattr(namespace, self.dest, dict(values))


def plural(count: int, word: str) -> str:
    """``"1 iteration"``, ``"3 iterations"``, ``"2 processes"``."""
    if count == 1:
        return f"{count} {word}"
    return f"{count} {word}{'es' if word.endswith(('s', 'sh', 'ch', 'x')) else 's'}"


class DefaultsFormatter(argparse.HelpFormatter):
    """Appends each option's default (lists as words): its ``shown_default`` where something other than
    argparse decides it (a preset, the mode), else argparse's default, except where there is none."""

    def _get_help_string(self, action):
        default = getattr(action, "shown_default", action.default)
        if default is None or default is argparse.SUPPRESS or action.option_strings == ["-h", "--help"]:
            return action.help
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{action.help} (default: {shown})"


def parser_action(parser: argparse.ArgumentParser, option: str) -> argparse.Action:
    """The action of ``option`` in ``parser`` (or one of its groups)."""
    return parser._option_string_actions[option]


def show_default(parser: argparse.ArgumentParser | argparse._ArgumentGroup, option: str, text: str) -> None:
    """Makes ``--help`` show ``text`` as the default of ``option`` (whose argparse default is None: the
    value is decided after parsing); ``parser`` may be one of its argument groups."""
    action = parser._option_string_actions[option]
    assert action.default is None, option
    action.shown_default = text


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line on stderr, exit code 2; options are never abbreviated, and a misspelt
    one gets a suggestion."""

    def __init__(self, **kwargs):
        super().__init__(formatter_class=DefaultsFormatter, allow_abbrev=False, **kwargs)

    def error(self, message):
        if message.startswith("unrecognized arguments:"):
            tokens = [t.split("=")[0] for t in message.split(":", 1)[1].split() if t.startswith("--")]
            guess = next((g for g in map(self.suggestion, tokens) if g), None)
            message += f"; did you mean {guess}?" if guess else ""
        self.exit(2, f"error: {clean(message)} (see --help)\n")

    def suggestion(self, token: str) -> str | None:
        """The option a misspelt or shortened ``token`` most likely meant."""
        known = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
        longer = sorted((s for s in known if s.startswith(token)), key=len)
        close = difflib.get_close_matches(token, known, n=1, cutoff=0.6)
        return longer[0] if longer else close[0] if close else None


def groups(p: argparse.ArgumentParser) -> dict[str, argparse._ArgumentGroup]:
    """The help's sections: basics, quality, output, performance, advanced (created once per parser)."""
    if not hasattr(p, "_nst_groups"):
        p._nst_groups = {name: p.add_argument_group(name) for name in
                         ("basics", "quality", "output", "performance", "advanced")}
    return p._nst_groups


def add_run_arguments(p: argparse.ArgumentParser, *, several_contents: bool = False) -> None:
    """Inputs and static settings common to every tool that runs an optimisation (``several_contents``:
    ``--content`` takes one or more photos; one is recorded as a plain path, as without it)."""
    g = groups(p)
    if several_contents:
        action = g["basics"].add_argument(
            "--content", nargs="+", metavar="IMAGE",
            help="content photo(s) (transfer and content modes); several are each stylized on their own, into "
                 "--output as a directory, sharing compiled programs where their shapes allow")
        action.scalar_if_single = True  # nst_jax.cli.saved reads a recorded single path back
    else:
        g["basics"].add_argument("--content", help="content photo (transfer and content modes)")
    g["basics"].add_argument(
        "--style", nargs="+", metavar="IMAGE",
        help="style image(s) (transfer and style modes); several are blended (--style-blend) or each styles one "
             "--masks region")
    g["basics"].add_argument("--mode", choices=MODES, default=CONFIG_DEFAULTS["mode"],
                             help="transfer; content reconstruction; style reconstruction (texture synthesis)")
    g["basics"].add_argument("--size", type=integer, default=files.DEFAULT_SIZE,
                             help="longest side of the output, pixels")
    g["basics"].add_argument("--iterations", type=integer, help="optimiser steps")
    show_default(p, "--iterations", f"{TRANSFER_ITERATIONS} (transfer mode); {RECONSTRUCTION_ITERATIONS} in "
                                    "content and style modes")
    _add_quality_arguments(g["quality"])
    _add_advanced_arguments(g["advanced"])
    g["performance"].add_argument(
        "--precision", choices=PRECISIONS, default=CONFIG_DEFAULTS["precision"],
        help="VGG convolutions in float32, or bf16 with float32 accumulation (losses stay float32)")
    g["performance"].add_argument(
        "--tile-size", type=integer, default=CONFIG_DEFAULTS["tile_size"], metavar="N",
        help="evaluate the loss and its gradient in N x N tiles (a multiple of 16) with a halo: the same result in "
             "the memory of one tile, for outputs too large for one pass, at more compute; 0 = off (Gram style "
             "loss only, no masks)")
    g["performance"].add_argument(
        "--shape-bucket", type=shape_bucket, default="auto", metavar="N|auto",
        help="run on a canvas whose sides are the output's rounded up to multiples of N px, so photos of other "
             "aspect ratios reuse the compiled programs (the same result up to rounding, on more pixels); 0 = off; "
             f"auto = {AUTO_SHAPE_BUCKET} on a GPU or TPU, where compiling costs far more than the extra pixels, "
             "0 on a CPU")
    add_cache_argument(p)


def shape_bucket(text: str) -> str | int:
    """``--shape-bucket``: ``auto`` or a non-negative integer."""
    return text if text == "auto" else integer(text)


def _add_quality_arguments(g) -> None:
    g.add_argument("--style-loss", choices=STYLE_LOSSES, default=CONFIG_DEFAULTS["style_loss"],
                   help="style statistics: Gram matrices (paper), mean + covariance, Wasserstein-2 between "
                        "Gaussian fits (in --loss-units paper w2 is in feature^2 units: use a style weight "
                        "1e3-1e4 times the Gram one), or sliced Wasserstein (Heitz et al. 2021)")
    g.add_argument("--style-scale", type=float, metavar="S",
                   help="resize the style image(s) to S times the output's longest side; larger S, larger "
                        "brush strokes")
    show_default(g, "--style-scale", "none (the style images at --size)")
    g.add_argument("--preserve-colour", choices=COLOURS, default=CONFIG_DEFAULTS["preserve_colour"],
                   help="keep the content's colours: luminance-only transfer, or the style's colours matched "
                        "to the content's mean and covariance first")
    g.add_argument("--masks", nargs="+", metavar="MASK",
                   help="spatial control: one mask image per style (white = that style's region), resized to the "
                        "output")
    g.add_argument("--init", help=f"starting image: {' | '.join(i for i in INITS if i != 'image')} | path to an image")
    show_default(g, "--init", "content (transfer mode); noise in content and style modes")


def _add_advanced_arguments(g) -> None:
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=CONFIG_DEFAULTS["optimizer"], help="pixel optimiser")
    g.add_argument("--content-layer", nargs="+", default=list(CONFIG_DEFAULTS["content_layers"]), metavar="LAYER",
                   help="content layer(s)")
    g.add_argument("--style-layers", nargs="+", default=list(CONFIG_DEFAULTS["style_layers"]), metavar="LAYER",
                   help="style layer(s)")
    g.add_argument("--noise-scale", type=float, default=CONFIG_DEFAULTS["noise_scale"],
                   help="std of the white-noise start around mid-grey (--init noise)")
    g.add_argument("--pooling", choices=POOLINGS, default=CONFIG_DEFAULTS["pooling"], help="VGG pooling")
    g.add_argument("--loss-units", choices=LOSS_UNITS, default=CONFIG_DEFAULTS["loss_units"],
                   help="relative: every term normalised, the same weights at any size; paper: Gatys et al.'s "
                        "eqs. 1 and 4 (the content term grows with the pixel count)")
    g.add_argument("--vgg", default="original", metavar="original|normalized|FILE",
                   help=f"VGG-19 parameters: the shipped ones ({files.DEFAULT_VGG_FILE.name}), the shipped ones "
                        "normalised so every filter's mean activation is 1 (as in the paper), or a converted "
                        "parameter file")


def add_cache_argument(p: argparse.ArgumentParser) -> None:
    target = groups(p)["performance"] if hasattr(p, "_nst_groups") else p
    target.add_argument("--compile-cache", default=default_cache_dir(), metavar="DIR",
                        help="persistent compilation cache directory, or 'off' (env NST_JAX_CACHE_DIR)")


def expand_values(tokens: list[str], what: str) -> list[float]:
    """Numbers, or ``START:STOP:NUM`` for NUM log-spaced values from START to STOP inclusive.

    Raises:
        NSTError: On a malformed token or a non-finite value.
    """
    values = []
    for token in tokens:
        parts = token.split(":")
        try:
            if len(parts) == 3:
                start, stop, num = float(parts[0]), float(parts[1]), int(parts[2])
                if start <= 0 or stop <= 0 or not 1 <= num <= 4096:
                    raise ValueError
                values += list(np.geomspace(start, stop, num)) if num > 1 else [start]
            elif len(parts) == 1:
                values.append(float(token))
            else:
                raise ValueError
        except ValueError:
            raise NSTError(f"{what}: {token!r} is neither a number nor START:STOP:NUM (positive, log-spaced)") from None
    if not all(math.isfinite(v) for v in values):
        raise NSTError(f"{what}: values must be finite")
    return [float(v) for v in values]


def add_weight_arguments(p: argparse.ArgumentParser, *, swept: bool = False) -> None:
    """α, β, TV weight, per-layer weights, learning rate: make_weights' arguments and defaults."""
    g = groups(p)["quality"]
    for option, name, label in (("content-weight", "content_weight", "alpha, the content weight"),
                                ("style-weight", "style_weight", "beta, the style weight"),
                                ("tv-weight", "tv_weight", "total-variation weight")):
        first, *others = LOSS_UNITS
        default = f"{DEFAULT_LOSS_WEIGHTS[first][name]:g} ({first} units)" + "".join(
            f"; {DEFAULT_LOSS_WEIGHTS[u][name]:g} in {u} units" for u in others) + "".join(
            f"; {values[name]:g} in {mode} mode ({units} units)"
            for (units, mode), values in MODE_DEFAULTS.items() if name in values)
        flag = f"--{option}s" if swept else f"--{option}"
        if swept:
            g.add_argument(flag, nargs="+", metavar="V", help=f"{label}: values or START:STOP:NUM")
        else:
            g.add_argument(flag, type=float, help=label)
        show_default(g, flag, default)
    g.add_argument("--content-layer-weights", nargs="+", type=float, metavar="W", help="one weight per content layer")
    show_default(g, "--content-layer-weights", "1 each")
    g.add_argument("--style-layer-weights", nargs="+", type=float, metavar="W", help="one weight per style layer")
    show_default(g, "--style-layer-weights", "1/L each (at the output level; the presets that taper relu5_1 at the "
                 f"coarse levels: {', '.join(n for n, p in PRESETS.items() if p.style_layer_weights)})")
    g.add_argument("--content-term-weights", nargs="+", type=term_weight, metavar="NAME=W", action=TermWeights,
                   append=swept,
                   help=f"content terms' weights at every level ({', '.join(CONTENT_TERM_NAMES)}: the paper's feature "
                        "distance, and the layout kept as the self-similarity of features); a term not named takes "
                        "its default, not the preset's" + ("; repeat the option to sweep several" if swept else ""))
    show_default(g, "--content-term-weights", _term_weights_default())
    g = groups(p)["advanced"]
    if swept:
        g.add_argument("--learning-rates", nargs="+", default=[str(WEIGHT_DEFAULTS["learning_rate"])], metavar="V",
                       help="Adam step sizes: values or START:STOP:NUM")
    else:
        g.add_argument("--learning-rate", type=float, default=WEIGHT_DEFAULTS["learning_rate"], help="Adam step size")


def _term_weights_default() -> str:
    """``--content-term-weights``' default: the default preset's, then each preset's and the terms' own."""
    own = dict(zip(CONTENT_TERM_NAMES, make_weights(StylizeConfig()).content_terms.tolist(), strict=True))
    presets = [f"{name} {_preset_terms(preset, {})}" for name, preset in PRESETS.items()
               if preset.content_term_weights]
    default = PRESETS[DEFAULT_PRESET]
    shown = _preset_terms(default, own) if default.content_term_weights else _terms(own)
    return f"{shown} (the presets': {'; '.join(presets)}; the others and a term not named: {_terms(own)})"


def _terms(weights: Mapping[str, float]) -> str:
    """``{"feature": 1.0, "structure": 3.0}`` as ``"feature=1 structure=3"``."""
    return " ".join(f"{name}={weight:g}" for name, weight in weights.items())


def _preset_terms(preset: Preset, base: Mapping[str, float]) -> str:
    """A preset's content term weights over ``base``'s: one level's where every level has the same, else
    each level's."""
    levels = [_terms({**base, **level}) for level in preset.content_term_weights or ()]
    return levels[0] if len(set(levels)) == 1 else " / ".join(levels)


def add_level_arguments(p: argparse.ArgumentParser, *, style_option: str, tv_option: str,
                        swept: bool = False) -> None:
    """``--preset`` and the coarse-to-fine options; their defaults in ``--help`` read from the preset's own
    resolution (:func:`nst_jax.spec.resolve_levels`) at the default size, as are those of ``--iterations``,
    ``style_option`` and ``tv_option``. ``swept`` (a sweep's): ``--preset`` takes a list, and
    ``--scale-style-weights`` may be repeated, each list one value of a swept axis."""
    g = groups(p)["quality"]
    presets = "; ".join(
        f"{name}: {preset.summary} ({plural(len(preset.iterations), 'level')}, "
        f"{'+'.join(map(str, preset.iterations))} steps, style weight "
        f"{'/'.join(f'{w:g}' for w in preset.style_weights)})" for name, preset in PRESETS.items())
    several = {"nargs": "+", "default": [DEFAULT_PRESET]} if swept else {"default": DEFAULT_PRESET}
    g.add_argument("--preset", choices=tuple(PRESETS), **several,
                   help=f"transfer settings chosen by measurement, from most photo to most painting: {presets}. "
                        "Options given explicitly (style and TV weights, --scales, --min-size, --iterations, "
                        "--scale-iterations, --scale-style-weights) override it; content and style modes and "
                        "--loss-units paper run one level with their own defaults")
    g.add_argument("--scales", type=integer, metavar="N",
                   help="coarse-to-fine: optimise at N sizes, each level half the next (from --min-size with it) "
                        "and starting from the previous one upsampled (steps are counted over all levels)")
    g.add_argument("--min-size", type=integer, metavar="PX",
                   help="longest side of the coarsest level; the levels are then geometric from it to --size")
    g.add_argument("--scale-iterations", type=integer, nargs="+", metavar="N",
                   help="steps at each level, coarse to fine")
    g.add_argument("--scale-style-weights", type=float, nargs="+", metavar="W",
                   **({"action": "append", "help": "style weight at each level, coarse to fine; repeat the option "
                                                   "to sweep several lists"} if swept else
                      {"help": "style weight at each level, coarse to fine"}))
    levels = resolve_levels(files.DEFAULT_SIZE, StylizeConfig(), Choices())
    at = f"the {DEFAULT_PRESET} preset's at {files.DEFAULT_SIZE} px"
    steps = " ".join(str(n) for _, n, _ in levels)
    betas = " ".join(f"{float(w.style):g}" for _, _, w in levels)
    sizes = " ".join(str(s) for s, _, _ in levels)
    parser_action(p, "--iterations").shown_default = (
        f"{steps}, {at}, per level; {RECONSTRUCTION_ITERATIONS} in content and style modes")
    show_default(p, "--scale-iterations", f"{steps}, {at}")
    parser_action(p, style_option).shown_default = f"{betas}, {at}, per level; 30 in paper units"
    show_default(p, "--scale-style-weights", f"{betas}, {at}")
    parser_action(p, tv_option).shown_default = (
        f"{float(levels[-1][2].tv):g}, the preset's; 1e4 in paper units, 0 in content mode")
    show_default(p, "--scales", f"{len(levels)}, {at}: levels of {sizes} px, each half the next; fewer below 256 px")
    show_default(p, "--min-size", f"{levels[0][0]}, {at}: half of each next level")


# Choices' fields by the argparse destination that sets them (where the tool has the option).
CHOICES = {"preset": "preset", "scales": "scales", "min_size": "min_size", "iterations": "iterations",
           "scale_iterations": "scale_iterations", "content_weight": "content_weight", "style_weight": "style_weight",
           "scale_style_weights": "scale_style_weights", "tv_weight": "tv_weight",
           "content_layer_weights": "content_layer_weights", "style_layer_weights": "style_layer_weights",
           "style_blend": "style_blend", "learning_rate": "learning_rate", "ema": "ema_decay",
           "content_term_weights": "content_term_weights"}


def choices_of(args: argparse.Namespace, **member: Any) -> Choices:
    """What the flags chose explicitly, for :func:`nst_jax.make_spec` (the one mapping); ``member``: a sweep
    member's own values (Choices fields)."""
    values = {field: getattr(args, dest, None) for dest, field in CHOICES.items()}
    return Choices(**{k: tuple(v) if isinstance(v, list) else v for k, v in {**values, **member}.items()})


def run_config(args: argparse.Namespace, **overrides) -> StylizeConfig:
    """The static config from parsed :func:`add_run_arguments`; the config validates itself (NSTError)."""
    init, _ = init_source(args.init)
    return StylizeConfig(**{
        "num_styles": max(len(args.style or []), 1), "style_scale": args.style_scale,
        "preserve_colour": args.preserve_colour, "mode": args.mode, "content_layers": tuple(args.content_layer),
        "style_layers": tuple(args.style_layers), "pooling": args.pooling, "optimizer": args.optimizer,
        "iterations": args.iterations, "init": init, "precision": args.precision, "noise_scale": args.noise_scale,
        "style_loss": args.style_loss, "tile_size": args.tile_size, "loss_units": args.loss_units,
        "shape_bucket": auto_shape_bucket(args.loss_units, args.tile_size) if args.shape_bucket == "auto"
        else args.shape_bucket, **overrides})


def sources_of(args: argparse.Namespace) -> Sources:
    """The files the parsed arguments name, and the size they load at."""
    return Sources(size=args.size, content=args.content, style=None if args.style is None else tuple(args.style),
                   masks=None if args.masks is None else tuple(args.masks), init=init_source(args.init)[1],
                   vgg=args.vgg)


def load_vgg(choice: str):
    """The VGG-19 parameters for ``--vgg``: ``original``, ``normalized`` or a file."""
    if choice not in VGG_CHOICES and not os.path.lexists(choice) and (
            choice.lower() in VGG_CHOICES or not pathlib.PurePath(choice).suffix):
        raise NSTError(f"--vgg {choice[:40]!r} is neither one of {', '.join(VGG_CHOICES)} nor an existing file")
    vgg = load_vgg19(None if choice in VGG_CHOICES else choice)
    return normalize_vgg19(vgg) if choice == "normalized" else vgg


def input_files(args: argparse.Namespace) -> list[tuple[str, str]]:
    """``(role, path)`` of every file a run reads (never to be written): images, masks, VGG file and its checksum."""
    return sources_of(args).files()


def load_inputs(sources: Sources, config: StylizeConfig) -> dict[str, Any]:
    """The images a run needs from their files, each checked as it loads, before any compute.

    Only what ``config`` uses is loaded; whether what it needs was given is the run's own check
    (:func:`nst_jax.make_spec`).

    Returns:
        ``{"content", "style", "init", "masks"}`` as :func:`nst_jax.make_spec` takes them: images
        ``[H, W, 3]`` in [0, 1] or None (``style`` a list when several are given); masks a list of
        ``[H_k, W_k]`` in [0, 1] or None.
    """
    if config.uses_style and sources.style and config.style_scale is not None:
        _check_style_memory(sources, config)
    content = files.load_image(sources.content, sources.size) if config.uses_content and sources.content else None
    style = None
    if config.uses_style and sources.style:
        # Loaded at the size the style scale asks for (the library's resize is then a no-op).
        size = sources.size if config.style_scale is None else round(config.style_scale * sources.size)
        style = [files.load_image(path, size) for path in sources.style]
        style = style[0] if len(style) == 1 else style
    init = files.load_image(sources.init, sources.size) if config.init == "image" and sources.init else None
    masks = None
    if sources.masks is not None:
        masks = [np.asarray(files.open_image(path), np.float32).mean(-1) / 255.0 for path in sources.masks]
    return {"content": content, "style": style, "init": init, "masks": masks}


def _check_style_memory(sources: Sources, config: StylizeConfig) -> None:
    """The memory check of a scaled style, from the images' headers, before any of them is decoded or resized
    (a style image at 8 times the output size would take gigabytes before the run's own check)."""
    size = round(config.style_scale * sources.size)
    styles = [shape for shape in (files.header_shape(path, size) for path in sources.style) if shape]
    shape = files.header_shape(sources.content, sources.size) if sources.content else None
    sides = [side for s in [*styles, *([shape] if shape else [])] for side in s[:2]]
    if styles and min(sides) >= files.MIN_SIZE:  # smaller ones are refused as they load, with their own message
        largest = max(styles, key=lambda s: s[0] * s[1])
        check_memory(config, shape or (sources.size, sources.size, 3), largest)


def load_run_inputs(args: argparse.Namespace, config: StylizeConfig):
    """:func:`load_inputs` for parsed arguments, with the VGG parameters and the compilation cache.

    Returns:
        ``(vgg, content, style, init_image, masks)``.
    """
    enable_compilation_cache(args.compile_cache)
    inputs = load_inputs(sources_of(args), config)
    return load_vgg(args.vgg), inputs["content"], inputs["style"], inputs["init"], inputs["masks"]


class SignalFlag:
    """SIGINT/SIGTERM set a flag (checked between chunks); a second signal interrupts at once."""

    def __init__(self):
        self.signum = None
        self.previous = {}

    def __enter__(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            self.previous[signum] = signal.signal(signum, self.handle)
        return self

    def handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


class Bar:
    """The progress bar: started at the first report, closed once; a context manager.

    Its rate and time left come from the optimisation's own measured wall time (``Progress.seconds``:
    the chunks' wall times, compilation excluded), not from tqdm's clock, which would count the
    compilation or, started at the first report, almost no time at all. The bar moves when a chunk
    of compiled steps returns (``StylizeConfig.chunk_size``, 10 steps, fewer where a save, a
    checkpoint or a preview falls; every step with ``--progress-every 1``, which ends a chunk after
    each step without recompiling): a per-step callback from inside the compiled program would keep
    that program out of the persistent compilation cache (JAX does not cache programs with host
    callbacks).

    Its time left is the steps left at that rate plus ``pending`` seconds (the compilation of levels
    still to come); its elapsed time counts from ``start`` (``time.time()``, the run's start by
    default: the bar's creation), so its last line, on a terminal or not, gives the run's wall time.
    """

    def __init__(self, total: int, *, initial: int = 0, desc: str | None = None, disable: bool = False,
                 start: float | None = None):
        self.kwargs = {"total": total, "initial": initial, "desc": desc, "disable": disable}
        self.initial = initial
        self.start = time.time() if start is None else start
        self.bar: Any = None

    def update(self, step: int, seconds: float | None = None, pending: float = 0.0, **postfix: str) -> None:
        """Moves the bar to ``step``; ``seconds``: optimisation time for the steps since ``initial``;
        ``pending``: seconds of work to come that the steps' rate does not show (compiling)."""
        if self.bar is None:  # delay: no line at creation, whose clock is not yet the run's
            self.bar = measured_tqdm()(unit="it", dynamic_ncols=True, bar_format=BAR_FORMAT, delay=1e-9,
                                       **self.kwargs)
            self.bar.start_t = self.start
        if seconds is not None and seconds > 0 and step > self.initial:
            self.bar.measured_rate = (step - self.initial) / seconds
        self.bar.pending = pending
        if postfix:
            self.bar.set_postfix(refresh=False, **postfix)  # shown by the update: the loss of this step
        self.bar.update(step - self.bar.n)
        self.bar.refresh()  # every report shown (tqdm skips updates within 0.1 s of the last line)

    def write(self, message: str) -> None:
        """One line on stdout, above the bar if there is one."""
        if self.bar is None:
            say(message)
        else:
            self.bar.write(clean(message))

    def close(self) -> None:
        """Closes the bar (again: nothing)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# tqdm's own layout with ``{left}`` for its ``{remaining}``: the steps left at the measured rate plus ``pending``.
BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{left}, {rate_fmt}{postfix}]"


@functools.cache
def measured_tqdm() -> type:
    """A tqdm class whose rate is ``measured_rate`` and whose time left (``{left}``) is the steps left at
    that rate plus ``pending`` seconds, unknown ("?") until the rate is set (made once, on the first
    bar: tqdm is imported only then)."""
    from tqdm import tqdm

    class MeasuredTqdm(tqdm):
        measured_rate: float | None = None
        pending: float = 0.0

        @property
        def format_dict(self) -> dict[str, Any]:
            d = {**super().format_dict, "rate": self.measured_rate}
            left = None if not self.measured_rate or d["total"] is None else (
                (d["total"] - d["n"]) / self.measured_rate + self.pending)
            return {**d, "left": "?" if left is None else tqdm.format_interval(left)}

    return MeasuredTqdm


def loss_line(last: dict) -> str:
    """``final loss: content=... style=... tv=... total=...`` from the last value of each term."""
    return "final loss: " + "  ".join(f"{k}={float(last[k]):.4g}" for k in ("content", "style", "tv", "total"))


def say(message: str) -> None:
    """One line on stdout, control characters removed."""
    write_line(clean(message), sys.stdout)


def write_line(text: str, stream: Any) -> None:
    """``text`` and a newline on ``stream``; characters its encoding cannot hold are escaped (``\\xe9``), so
    that the encoding of a terminal or a pipe (``PYTHONIOENCODING=ascii``) never fails a written result."""
    try:
        print(text, file=stream, flush=True)
    except UnicodeEncodeError:
        encoding = getattr(stream, "encoding", None) or "ascii"
        print(text.encode(encoding, "backslashreplace").decode(encoding), file=stream, flush=True)


@contextlib.contextmanager
def written(path: Any):
    """Notes on an interruption inside the block that ``path`` was written already."""
    try:
        yield
    except KeyboardInterrupt as err:
        err.add_note(f"{path} was written")
        raise


@contextlib.contextmanager
def interruptible():
    """SIGTERM (a batch scheduler's stop) as SIGINT: both raise ``KeyboardInterrupt``, from a tool's first
    instruction to its last, so either ends it with exit 3 and one line (:class:`SignalFlag` turns them
    into a checkpoint while an optimisation runs). Outside the main thread signals stay as they are."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            # After the tool's last instruction only its exit is left: the start-up handler's "nothing written"
            # would be wrong there, so a signal then leaves the exit code as it is.
            start_up = getattr(handler, "__module__", None) == "nst_jax._startup"  # nst_jax/_startup.py's
            signal.signal(signum, signal.SIG_IGN if start_up else handler)


# Values of NST_JAX_DEBUG: off and on.
DEBUG_VALUES = {"": False, "0": False, "false": False, "no": False, "off": False,
                "1": True, "true": True, "yes": True, "on": True}


def check_environment() -> None:
    """Every environment variable the tools read, checked before anything else (one line, exit 2).

    Raises:
        NSTError: Naming the variable and its value.
    """
    memory_limit_from_env()
    debug = os.environ.get("NST_JAX_DEBUG", "")
    if debug.lower() not in DEBUG_VALUES:
        raise NSTError(f"NST_JAX_DEBUG must be 0 or 1, got {debug[:40]!r}")
    cache = os.environ.get("NST_JAX_CACHE_DIR", "")
    if cache and cache != "off" and os.path.exists(cache) and not os.path.isdir(cache):
        raise NSTError(f"NST_JAX_CACHE_DIR={cache[:80]} is not a directory (a compilation cache directory, or off)")
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and not os.path.isabs(xdg):
        raise NSTError(f"XDG_CACHE_HOME must be an absolute path, got {xdg[:80]!r}")


def start_backend() -> None:
    """Starts JAX's backend, or exits 5 with one line naming what was asked for (``JAX_PLATFORMS``, an
    ``XLA_FLAGS`` flag XLA does not know: XLA itself would abort the process)."""
    import jax
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        return
    probe_xla_flags()
    try:
        jax.devices()
    except RuntimeError as err:
        asked = os.environ.get("JAX_PLATFORMS", "")
        if asked:
            raise Exit(EXIT_ENVIRONMENT, f"JAX_PLATFORMS={asked[:40]} asks for a backend that cannot start here (no "
                                         "such device, or no jaxlib plugin for it); unset JAX_PLATFORMS to use the "
                                         "devices present") from None
        raise Exit(EXIT_ENVIRONMENT, f"the JAX backend cannot start: {one_line(err)}") from None


# What the probe's child runs: XLA parses every flag (GPU ones too) when its first client starts, and the
# CPU's is the cheapest (0.3 s from a fresh interpreter through jaxlib alone, 2.4 s through jax on 2 busy
# cores) and takes no accelerator memory. Through jax where jaxlib's own entry point has gone.
PROBE_CHILD = """
try:
    from jaxlib.xla_client import make_cpu_client as start
except ImportError:
    import jax
    jax.config.update("jax_platforms", "cpu")
    start = jax.devices
start()
"""


def probe_xla_flags() -> None:
    """With ``XLA_FLAGS`` set, starts an XLA backend in a fresh child interpreter first: XLA ends the process
    (its own fatal log line, then exit 1 or an abort) on a flag it does not know, which no handler can
    catch. A child that fails otherwise (a Python exception) is left to the backend's own start. Once per
    process and value of ``XLA_FLAGS``. The child is a new interpreter, not a fork: a fork of a process
    running JAX's threads (or the distributed runtime's client) can deadlock, and JAX warns of it.

    Raises:
        Exit: ``EXIT_ENVIRONMENT``, naming the flags XLA refused.
    """
    flags = os.environ.get("XLA_FLAGS", "").strip()
    if flags:
        _probe(flags)


@functools.cache
def _probe(flags: str) -> None:
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    try:
        child = subprocess.run([sys.executable, "-c", PROBE_CHILD], env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
    except (OSError, subprocess.TimeoutExpired):  # no child to ask: the backend's own start decides
        return
    text = child.stderr[-65536:].decode(errors="replace")
    fatal = re.search(r"^F\d{4} .*", text, re.MULTILINE)
    if child.returncode < 0 or (child.returncode != 0 and fatal):
        found = re.search(r"Unknown flags? in XLA_FLAGS: *(.*)", text)
        what = one_line(found.group(1), 80) if found else one_line(text, 120) or "it aborted"
        raise Exit(EXIT_ENVIRONMENT, f"XLA_FLAGS: XLA cannot start with these flags ({what}); fix or unset XLA_FLAGS")


def environment_fault(err: BaseException) -> str | None:
    """The one-line description of a fault of the system (disk, permissions, memory), or None for others."""
    if isinstance(err, MemoryError):
        return "out of memory"
    if type(err).__name__ in ("XlaRuntimeError", "JaxRuntimeError") and "RESOURCE_EXHAUSTED" in str(err):
        return f"the device is out of memory ({one_line(err, 120)})"
    if isinstance(err, OSError) and err.errno is not None:
        where = f" ({err.filename})" if err.filename else ""
        name = errno.errorcode.get(err.errno, "")
        return f"{err.strerror or name}{where} [{name}]"
    return None


def exit_code(err: BaseException) -> tuple[int, str]:
    """The exit code and the one-line message for an exception that ended a tool: the one mapping.

    Notes added to the exception (``err.add_note``: what a run saved before it stopped) follow its
    message, separated by ``;``.
    """
    notes = "".join(f"; {note}" for note in getattr(err, "__notes__", ()))
    if isinstance(err, Exit):
        code, message = err.code, one_line(err, None)
    elif isinstance(err, OutputExists):
        code, message = EXIT_CONFLICT, one_line(err, None)
    elif isinstance(err, NumericalError):
        code, message = EXIT_NUMERICAL, one_line(err, None)
    elif isinstance(err, NSTError):
        code, message = EXIT_USAGE, one_line(err, None)
    elif isinstance(err, KeyboardInterrupt):
        code = EXIT_INTERRUPTED
        message = one_line(err, None) if str(err) else "interrupted" if notes else "interrupted; nothing written"
    elif (fault := environment_fault(err)) is not None:
        advice = "" if notes else "; free space or memory, or fix the permissions, and run again"
        code, message = EXIT_ENVIRONMENT, f"the system refused: {fault}{advice}"
    else:
        code, message = EXIT_INTERNAL, (f"internal error: {type(err).__name__}: {one_line(err)} "
                                        "(set NST_JAX_DEBUG=1 for the traceback)")
    return code, clean(message + notes)


def guarded_main(run: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Runs a tool's ``run(argv)``; any error becomes one line on stderr and an exit code, never a traceback.

    ``NST_JAX_DEBUG=1`` re-raises unexpected errors to show the traceback.
    """
    with interruptible():
        try:
            return run(argv)
        except BaseException as err:  # noqa: B036 - every outcome becomes an exit code
            if isinstance(err, SystemExit):
                raise
            code, message = exit_code(err)
            if code == EXIT_INTERNAL and DEBUG_VALUES.get(os.environ.get("NST_JAX_DEBUG", "").lower(), True):
                raise
            write_line(f"error: {message}", sys.stderr)
            return code
