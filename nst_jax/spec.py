"""A run, resolved once: what every front door builds and every runner takes.

A :class:`RunSpec` holds everything a run does: its checked inputs (a :class:`nst_jax.host.Plan`,
whose config is the static settings), and per level, coarse to fine, the level's shape, its
optimiser steps and its :class:`~nst_jax.config.Weights`. A plain run is a spec with one level.

:func:`make_spec` is the one builder and the one place a run is validated: inputs (through
:func:`nst_jax.host.make_plan`), levels and weights. It takes either explicit levels (what
:func:`nst_jax.stylize_multiscale` is given) or a user's :class:`Choices`: a preset and whatever
was set explicitly, which :func:`resolve_levels` turns into levels, the one resolution of a preset
that :func:`nst_jax.preset_levels`, the library and the command line share.

:meth:`RunSpec.to_json` is what records and checkpoints store; :func:`spec_from_json` reads it
back, untrusted, each field checked against the spec's own definition (the config's field types
and its own validation, the level ranges, :func:`~nst_jax.config.make_weights`'s checks), and
checks the inputs it is given against the recorded digests.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from nst_jax._src import colour
from nst_jax._src.image import MAX_SIZE, MIN_SIZE
from nst_jax._src.optimizers import label as optimizer_label
from nst_jax._src.plan import Plan, run_plan
from nst_jax.config import (
    DEFAULT_MIN_SIZE,
    DEFAULT_PRESET,
    PRESETS,
    Level,
    Preset,
    StylizeConfig,
    Weights,
    halving,
    make_weights,
    preset_layer_weights,
)
from nst_jax.errors import NSTError

__all__ = ["SPEC_VERSION", "Choices", "LevelSpec", "RunSpec", "config_from_json", "halving_sizes", "make_spec",
           "pyramid_sizes", "resolve_levels", "spec_from_json"]

# The version of RunSpec.to_json's layout; a record of another version is refused, naming it.
SPEC_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Choices:
    """What a user set explicitly; ``None`` leaves a value to the preset or to the library's defaults.

    A preset applies to style transfer in relative loss units (:data:`~nst_jax.config.PRESETS`);
    elsewhere a run is one level with the mode's defaults (:func:`~nst_jax.config.make_weights`,
    :class:`~nst_jax.config.StylizeConfig`).

    Attributes:
        preset: A key of :data:`~nst_jax.config.PRESETS`, or None for one level with the
            library's defaults (what :func:`nst_jax.stylize` does).
        scales: The number of levels (default: the preset's, halving from the output size).
        min_size: The coarsest level's longest side; the levels are then geometric from it
            (:func:`pyramid_sizes`) instead of halving.
        iterations: Steps at every level (default: the preset's per level).
        scale_iterations: Steps per level, coarse to fine.
        content_weight: α at every level.
        style_weight: β at every level (default: the preset's per level).
        scale_style_weights: β per level, coarse to fine.
        tv_weight: The total-variation weight (default: the preset's).
        content_layer_weights: One weight per content layer.
        style_layer_weights: One weight per style layer (default: the preset's per level, where it
            names the run's style layers, else ``1 / L``).
        content_term_weights: One weight per content term (``config.content_terms``), or
            ``{term: weight}`` (default: the preset's per level, else each term's default).
        style_blend: One blend weight per style image.
        learning_rate: Adam's step size.
        ema_decay: Decay of the output's moving average over steps.
    """

    preset: str | None = DEFAULT_PRESET
    scales: int | None = None
    min_size: int | None = None
    iterations: int | None = None
    scale_iterations: tuple[int, ...] | None = None
    content_weight: float | None = None
    style_weight: float | None = None
    scale_style_weights: tuple[float, ...] | None = None
    tv_weight: float | None = None
    content_layer_weights: tuple[float, ...] | None = None
    style_layer_weights: tuple[float, ...] | None = None
    style_blend: tuple[float, ...] | None = None
    learning_rate: float | None = None
    ema_decay: float | None = None
    content_term_weights: tuple[float, ...] | Mapping[str, float] | None = None

    def weight_overrides(self) -> dict[str, Any]:
        """The :func:`~nst_jax.config.make_weights` arguments set here, other than β and the TV weight."""
        names = ("content_weight", "content_layer_weights", "style_layer_weights", "style_blend", "learning_rate",
                 "ema_decay", "content_term_weights")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


class LevelSpec(NamedTuple):
    """One level of a run.

    Attributes:
        shape: ``(H, W)`` of the level's output.
        iterations: Its optimiser steps.
        weights: Its loss weights (unbatched).
    """

    shape: tuple[int, int]
    iterations: int
    weights: Weights


@dataclasses.dataclass(frozen=True, eq=False)
class RunSpec:
    """A resolved run: its checked inputs and settings, and its levels coarse to fine.

    Attributes:
        plan: The checked inputs at the output's size; ``plan.config`` is the static settings
            (its ``iterations`` is the output level's).
        levels: Each level's shape, steps and weights, coarse to fine; the last is the output's.
        seed: Seed of a noise start.
    """

    plan: Plan
    levels: tuple[LevelSpec, ...]
    seed: int = 0

    @property
    def config(self) -> StylizeConfig:
        return self.plan.config

    @property
    def sizes(self) -> list[int]:
        """The levels' longest sides, coarse to fine."""
        return [max(level.shape) for level in self.levels]

    @property
    def iterations(self) -> list[int]:
        return [level.iterations for level in self.levels]

    @property
    def weights(self) -> list[Weights]:
        return [level.weights for level in self.levels]

    @property
    def total(self) -> int:
        """Steps of the whole run, every level's."""
        return sum(self.iterations)

    def to_json(self) -> dict[str, Any]:
        """The spec as JSON values (what records and checkpoints store): the config, the seed, per
        level ``shape`` ``[H, W]``, ``iterations`` and ``weights``, and the inputs' digests."""
        return {
            "spec_version": SPEC_VERSION,
            "config": _config_json(self.config),
            "seed": int(self.seed),
            "levels": [{"shape": list(level.shape), "iterations": level.iterations,
                        "weights": {name: _float32_json(value) for name, value in level.weights._asdict().items()}}
                       for level in self.levels],
            "inputs": self.plan.digests,
        }


def _float32_json(value: Any) -> float | list[float]:
    """float32 values as the shortest decimals that read back as the same float32 (0.2, not 0.2000000029)."""
    arr = np.asarray(value, np.float32)
    floats = [float(str(v)) for v in arr.reshape(-1)]
    return floats if arr.ndim else floats[0]


def _config_json(config: StylizeConfig) -> dict[str, Any]:
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    values["optimizer"] = optimizer_label(config.optimizer)
    return {name: list(v) if isinstance(v, tuple) else v for name, v in values.items()}


MAX_LEVELS = 16  # the most levels a run has (a record holds at most as many)


def pyramid_sizes(size: int, scales: int, min_size: int = DEFAULT_MIN_SIZE) -> list[int]:
    """Longest sides of ``scales`` levels geometric from ``min_size`` to ``size``.

    Args:
        size: The output's longest side.
        scales: The number of levels (1: the output alone).
        min_size: The coarsest level's longest side.

    Returns:
        The levels' longest sides, increasing.

    Raises:
        NSTError: If ``scales < 1``, ``min_size`` is not in [32, size] with several levels, or two
            levels round to one size.
    """
    if scales < 1:
        raise NSTError(f"the number of scales must be at least 1, got {scales}")
    if scales == 1:
        return [int(size)]
    if not MIN_SIZE <= min_size <= size:
        raise NSTError(f"--min-size must be between {MIN_SIZE} and the output size {size}, got {min_size}")
    if scales > MAX_LEVELS:  # before the sizes are listed: a huge count would fill the memory
        raise NSTError(f"--scales {str(scales)[:20]}: a run has at most {MAX_LEVELS} levels")
    sizes = [int(round(s)) for s in np.geomspace(min_size, size, scales)]
    if len(set(sizes)) != len(sizes):
        raise NSTError(f"{scales} scales between {min_size} and {size} px repeat a size; use fewer scales")
    return sizes


def halving_sizes(size: int, scales: int) -> list[int]:
    """Longest sides of ``scales`` levels, each half the next, the last ``size`` (the presets' rule,
    :meth:`~nst_jax.config.Preset.levels`).

    Args:
        size: The output's longest side.
        scales: The number of levels.

    Returns:
        The levels' longest sides, increasing.

    Raises:
        NSTError: If ``scales < 1`` or the coarsest level would be under 32 px.
    """
    if scales < 1:
        raise NSTError(f"the number of scales must be at least 1, got {scales}")
    if scales > MAX_LEVELS:  # before the sizes are listed: a huge count would fill the memory
        raise NSTError(f"--scales {str(scales)[:20]}: a run has at most {MAX_LEVELS} levels")
    sizes = halving(size, scales)
    if sizes[0] < MIN_SIZE:
        raise NSTError(f"{scales} scales halving from {size} px make a {sizes[0]} px level, under the {MIN_SIZE} px "
                       "the network needs; use fewer scales, or give a minimum size")
    return sizes


def _applicable_preset(config: StylizeConfig, name: str | None) -> Preset | None:
    if name is None:
        return None
    if name not in PRESETS:
        raise NSTError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    return PRESETS[name] if config.mode == "transfer" and config.loss_units == "relative" else None


def _per_level(values: Sequence[Any] | None, every: Any, base: list[Any], what: str) -> list[Any]:
    """A level setting: the per-level list given, else one value for every level, else ``base``."""
    if values is not None:
        values = list(values)
        if len(values) != len(base):
            raise NSTError(f"{len(values)} {what} given for {len(base)} level{'s' * (len(base) != 1)}")
        return values
    return [every] * len(base) if every is not None else base


def resolve_levels(size: int, config: StylizeConfig | None = None,
                   choices: Choices | None = None) -> list[tuple[int, int, Weights]]:
    """The levels of a run whose output's longest side is ``size``: the one resolution of a preset
    and of what was set explicitly.

    The preset (transfer in relative units only) gives the levels, halving from ``size``
    (:meth:`~nst_jax.config.Preset.levels`), their steps and β, and the TV weight. Explicit
    choices win: ``scales`` (levels halving from ``size``, or geometric from ``min_size``, each
    with the output level's β and the mode's step count), ``iterations`` / ``scale_iterations``,
    ``style_weight`` / ``scale_style_weights``, ``tv_weight`` and the other weights. Without a
    preset a run is one level with the library's defaults.

    Args:
        size: The output's longest side, pixels.
        config: The static settings (``StylizeConfig()`` if None).
        choices: What was set explicitly (``Choices()``: the default preset, nothing else).

    Returns:
        ``(longest side, steps, weights)`` per level, coarse to fine.

    Raises:
        NSTError: For an unknown preset, miscounted per-level lists, conflicting choices or an
            invalid value.
    """
    config = StylizeConfig() if config is None else config
    c = Choices() if choices is None else choices
    preset = _applicable_preset(config, c.preset)
    if c.iterations is not None and c.scale_iterations is not None:
        raise NSTError("give iterations for every level or per level (--iterations or --scale-iterations), not both")
    if c.style_weight is not None and c.scale_style_weights and c.scale_style_weights[-1] != c.style_weight:
        raise NSTError("give --style-weight or --scale-style-weights, not both (unless --style-weight is the last)")
    if c.scales is None and preset is not None:
        levels = preset.levels(size)
        sizes = [level.size for level in levels] if c.min_size is None else pyramid_sizes(size, len(levels),
                                                                                            c.min_size)
    else:
        scales = 1 if c.scales is None else c.scales
        sizes = halving_sizes(size, scales) if c.min_size is None else pyramid_sizes(size, scales, c.min_size)
        # Each level as the preset's output level (β, layer and term weights), with the mode's steps.
        last = preset.levels(size)[-1] if preset is not None else Level(size, config.iterations, None)
        levels = [last._replace(iterations=config.iterations)] * len(sizes)
    steps = _per_level(c.scale_iterations, c.iterations, [level.iterations for level in levels],
                       "per-level step counts (--scale-iterations)")
    betas = _per_level(c.scale_style_weights, c.style_weight, [level.style_weight for level in levels],
                       "per-level style weights (--scale-style-weights)")
    tv = c.tv_weight if c.tv_weight is not None else preset.tv_weight if preset is not None else None
    weights = [make_weights(config, style_weight=beta, tv_weight=tv,
                            **{**_preset_level_weights(level, config), **c.weight_overrides()})
               for level, beta in zip(levels, betas, strict=True)]
    return list(zip(sizes, [int(n) for n in steps], weights, strict=True))


def _preset_level_weights(level: Level, config: StylizeConfig) -> dict[str, Any]:
    """A preset level's per-layer style weights and per-term content weights, as :func:`make_weights`
    arguments, for ``config``'s layers and terms (:func:`~nst_jax.config.preset_layer_weights`)."""
    out: dict[str, Any] = {}
    layer_weights = preset_layer_weights(level, config.style_layers)
    if layer_weights is not None:
        out["style_layer_weights"] = layer_weights
    if level.content_term_weights is not None:
        out["content_term_weights"] = {t: w for t, w in level.content_term_weights.items()
                                       if t in config.content_terms}
    return out


def _level_shapes(plan: Plan, sizes: Sequence[int]) -> list[tuple[int, int]]:
    full = max(plan.shape[:2])
    if not sizes:
        raise NSTError("a run needs at least one level")
    if list(sizes) != sorted(set(sizes)):
        raise NSTError(f"level sizes must increase, got {list(sizes)}")
    if sizes[-1] != full:
        raise NSTError(f"the last level is the output: its longest side must be {full} px, got {sizes[-1]}")
    if sizes[0] < MIN_SIZE:
        raise NSTError(f"level sizes must be at least {MIN_SIZE} px, got {sizes[0]}")
    return [tuple(plan.shape[:2]) if s == full else colour.shape_for_longest(plan.shape, s) for s in sizes]


def _check_level_weights(weights: Any, config: StylizeConfig) -> Weights:
    if not isinstance(weights, Weights):
        raise NSTError(f"weights must be the Weights of nst_jax.make_weights, got {type(weights).__name__}")
    expected = Weights((), (), (), (len(config.content_layers),), (len(config.style_layers),), (config.num_styles,),
                       (), (), (len(config.content_terms),))
    for name, want, leaf in zip(Weights._fields, expected, weights, strict=True):
        if tuple(np.shape(leaf)) != want:
            raise NSTError(f"weights.{name} has shape {tuple(np.shape(leaf))}, expected {want}; a level takes "
                           "unbatched weights (nst_jax.sweep takes stacked ones)")
    # The values go through make_weights' own checks (finite, >= 0, EMA decay below 1).
    return make_weights(config, content_weight=float(weights.content), style_weight=float(weights.style),
                        tv_weight=float(weights.tv), content_layer_weights=np.asarray(weights.content_layers),
                        style_layer_weights=np.asarray(weights.style_layers),
                        style_blend=np.asarray(weights.style_blend), learning_rate=float(weights.learning_rate),
                        ema_decay=float(weights.ema_decay), content_term_weights=np.asarray(weights.content_terms))


def make_spec(
    config: StylizeConfig | None = None,
    *,
    content: Any = None,
    style: Any = None,
    init: Any = None,
    masks: Any = None,
    plan: Plan | None = None,
    choices: Choices | None = None,
    levels: Sequence[tuple[int, int, Weights]] | None = None,
    seed: int = 0,
) -> RunSpec:
    """Builds and validates a run: the one place its inputs, levels and weights are checked.

    ``nst_jax.make_spec(content=photo, style=painting)`` is what ``nst-jax PHOTO PAINTING`` runs
    (``--dry-run`` prints its :meth:`RunSpec.to_json`) at the photo's size.

    Args:
        config: Static settings (``StylizeConfig()`` if None; with a plan, None or the plan's).
        content: ``[H, W, 3]`` content photo in [0, 1] (see :func:`nst_jax.host.make_plan`).
        style: A style image, or a list of ``config.num_styles``.
        init: ``[H, W, 3]`` start image when ``config.init == "image"``.
        masks: Region masks, one per style image.
        plan: Inputs checked already, instead of the four above.
        choices: A preset and explicit choices (:func:`resolve_levels`); ``Choices()`` if neither
            this nor ``levels`` is given.
        levels: Instead of ``choices``: ``(longest side, steps, weights)`` per level, coarse to
            fine, the last at the output's longest side.
        seed: Seed of a noise start (an int64).

    Returns:
        The spec; its config's ``iterations`` is the output level's.

    Raises:
        NSTError: On a bad input, level or weight, or both ``choices`` and ``levels``.
    """
    plan = run_plan(config, plan, content=content, style=style, init=init, masks=masks)
    if choices is not None and levels is not None:
        raise NSTError("give choices or explicit levels, not both")
    if levels is None:
        levels = resolve_levels(max(plan.shape[:2]), plan.config, choices)
    levels = [tuple(level) for level in levels]
    if any(len(level) != 3 for level in levels):
        raise NSTError("each level is (longest side, steps, weights)")
    shapes = _level_shapes(plan, [_integer(level[0], "level size") for level in levels])
    steps = [_integer(level[1], "iterations") for level in levels]
    for n in steps:  # StylizeConfig holds the rule for a step count
        dataclasses.replace(plan.config, iterations=n)
    weights = [_check_level_weights(level[2], plan.config) for level in levels]
    seed = _integer(seed, "seed")
    if not -(2**63) <= seed < 2**63:
        raise NSTError(f"seed must be in the int64 range, got {seed}")
    plan = dataclasses.replace(plan, config=dataclasses.replace(plan.config, iterations=steps[-1]))
    return RunSpec(plan, tuple(LevelSpec(s, n, w) for s, n, w in zip(shapes, steps, weights, strict=True)), seed)


def _integer(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise NSTError(f"{what} must be an integer, got {str(value)[:40]}")
    return int(value)


# --- Reading a stored spec back (untrusted) ----------------------------------------------------------------------

def _matches(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a config field's type annotation."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if origin is typing.Literal:
        return isinstance(value, str)  # the choice itself is the config's own check
    if origin is tuple:
        return isinstance(value, list) and len(value) <= 64 and all(_matches(v, args[0]) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str) and len(value) <= 64
    return False


def config_from_json(data: Any, source: str) -> StylizeConfig:
    """A :class:`~nst_jax.config.StylizeConfig` from its JSON form, each field checked against its type,
    then by the config's own validation.

    Args:
        data: The stored ``config`` (:meth:`RunSpec.to_json`), untrusted.
        source: What it came from, for messages.

    Returns:
        The config.

    Raises:
        NSTError: Naming the source and the field.
    """
    if not isinstance(data, dict):
        raise NSTError(f"{source}: 'config' must be a JSON object")
    hints = typing.get_type_hints(StylizeConfig)
    fields = {f.name for f in dataclasses.fields(StylizeConfig)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise NSTError(f"{source}: unknown config field {unknown[0]!r}")
    for name, value in data.items():
        if not _matches(value, hints[name]):
            raise NSTError(f"{source}: config field {name!r} has the wrong type ({str(value)[:40]})")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    try:
        return StylizeConfig(**values)
    except NSTError as err:
        raise NSTError(f"{source}: {err}") from None


def _level_from_json(data: Any, config: StylizeConfig, source: str) -> tuple[tuple[int, int], int, Weights]:
    if not isinstance(data, dict) or set(data) != {"shape", "iterations", "weights"}:
        raise NSTError(f"{source}: a level must hold shape, iterations and weights")
    shape, weights = data["shape"], data["weights"]
    if not (isinstance(shape, list) and len(shape) == 2 and all(_matches(s, int) and 1 <= s <= MAX_SIZE
                                                                  for s in shape)):
        raise NSTError(f"{source}: a level's shape must be [H, W] with sides from 1 to {MAX_SIZE}")
    if not _matches(data["iterations"], int):
        raise NSTError(f"{source}: a level's iterations must be an integer")
    # Records written before the content terms hold no content_terms: the defaults, the objective they ran.
    if not isinstance(weights, dict) or set(weights) | {"content_terms"} != set(Weights._fields):
        raise NSTError(f"{source}: a level's weights must hold {', '.join(Weights._fields)}")
    for name, value in weights.items():
        flat = value if isinstance(value, list) else [value]
        if len(flat) > 64 or not all(_matches(v, float) for v in flat):
            raise NSTError(f"{source}: weights.{name} must be finite numbers")
    try:
        made = make_weights(config, content_weight=weights["content"], style_weight=weights["style"],
                            tv_weight=weights["tv"], content_layer_weights=weights["content_layers"],
                            style_layer_weights=weights["style_layers"], style_blend=weights["style_blend"],
                            learning_rate=weights["learning_rate"], ema_decay=weights["ema_decay"],
                            content_term_weights=weights.get("content_terms"))
    except NSTError as err:
        raise NSTError(f"{source}: {err}") from None
    return tuple(shape), data["iterations"], made


def spec_from_json(data: Any, source: str, *, inputs: Mapping[str, Any]) -> RunSpec:
    """The spec a record or checkpoint stored (:meth:`RunSpec.to_json`), run on ``inputs``.

    Every field is checked against the spec's definition; the inputs (loaded again from the
    recorded sources) must have the recorded digests, and the recorded level shapes must be the
    ones they give.

    Args:
        data: The stored JSON value (untrusted).
        source: What it came from, for messages.
        inputs: ``content``, ``style``, ``init`` and ``masks`` arrays as :func:`make_spec` takes them.

    Returns:
        The spec.

    Raises:
        NSTError: On another spec version, a malformed field, or inputs or shapes that differ.
    """
    if not isinstance(data, dict):
        raise NSTError(f"{source} holds no run specification")
    if data.get("spec_version") != SPEC_VERSION:
        raise NSTError(f"{source}: its run specification has version {str(data.get('spec_version'))[:20]}, this "
                       f"nst_jax reads version {SPEC_VERSION}")
    config = config_from_json(data.get("config"), source)
    levels = data.get("levels")
    if not isinstance(levels, list) or not 1 <= len(levels) <= MAX_LEVELS:
        raise NSTError(f"{source}: 'levels' must be a list of 1 to {MAX_LEVELS} levels")
    parsed = [_level_from_json(level, config, source) for level in levels]
    if not _matches(data.get("seed"), int):
        raise NSTError(f"{source}: 'seed' must be an integer")
    spec = make_spec(config, **inputs, seed=data["seed"],
                     levels=[(max(shape), steps, weights) for shape, steps, weights in parsed])
    differences = _differences(data.get("inputs"), spec.plan.digests, "inputs")
    if differences:
        raise NSTError(f"{source}: the inputs differ from the recorded ones: {'; '.join(differences)}")
    recorded = [shape for shape, _, _ in parsed]
    if recorded != [level.shape for level in spec.levels]:
        raise NSTError(f"{source}: the recorded level shapes {recorded} are not the inputs' "
                       f"{[level.shape for level in spec.levels]}")
    return spec


def _differences(saved: Any, current: Any, name: str) -> list[str]:
    if isinstance(saved, dict) and isinstance(current, dict):
        return [d for key in sorted(set(saved) | set(current))
                for d in _differences(saved.get(key), current.get(key), f"{name}.{key}")]
    return [] if saved == current else [name]
