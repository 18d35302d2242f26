"""Coarse-to-fine (multi-scale) optimisation.

The output is optimised at a pyramid of sizes (longest side, geometric from ``min_size`` to the
full size); each level starts from the previous level's output, upsampled (Lanczos), and each
level is one :func:`~nst_jax.api.stylize` call, so each level's chunk is compiled once (one
compilation per size). In the default relative loss units every level has the output's balance
of content and style; in paper units the content term grows with the pixel count, so the coarse
levels weigh style more than the full size does. The content photo and the masks are resized to
each level; the style images too, by the level's factor, unless ``config.style_scale`` already
ties them to the output size. The optimiser state is not carried between levels: L-BFGS's
curvature pairs and Adam's moments are per pixel of the previous grid and would not describe the
new one (upsampled Adam moments were considered and not used: the gradient scale per pixel
changes with the size). """

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from nst_jax import colour
from nst_jax.api import StylizeResult, stylize
from nst_jax.config import DEFAULT_MIN_SIZE, StylizeConfig, Weights, make_weights
from nst_jax.driver import Progress
from nst_jax.errors import NSTError
from nst_jax.plan import Plan, at_size, make_plan
from nst_jax.vgg import VGGParams


def pyramid_sizes(size: int, scales: int, min_size: int = DEFAULT_MIN_SIZE) -> list[int]:
    """Longest sides of the levels, ``scales`` of them geometric from ``min_size`` to ``size``.

    Args:
        size: The output's longest side.
        scales: The number of levels (1: the output alone).
        min_size: The coarsest level's longest side.

    Returns:
        The levels' longest sides, increasing.

    Raises:
        NSTError: If ``scales < 1`` or ``min_size`` is not in [32, size] when ``scales > 1``.
    """
    if scales < 1:
        raise NSTError(f"the number of scales must be at least 1, got {scales}")
    if scales == 1:
        return [int(size)]
    if not 32 <= min_size <= size:
        raise NSTError(f"--min-size must be between 32 and the output size {size}, got {min_size}")
    sizes = [int(round(s)) for s in np.geomspace(min_size, size, scales)]
    if len(set(sizes)) != len(sizes):
        raise NSTError(f"{scales} scales between {min_size} and {size} px repeat a size; use fewer scales")
    return sizes


@dataclasses.dataclass
class MultiScaleResult:
    """Result of :func:`stylize_multiscale`.

    Attributes:
        image: ``[H, W, 3]`` the full-size output in [0, 1].
        levels: Each level's :class:`~nst_jax.api.StylizeResult` (coarse to fine).
        sizes: The levels' longest sides.
    """

    image: np.ndarray
    levels: list[StylizeResult]
    sizes: list[int]

    @property
    def run_seconds(self) -> float:
        return sum(level.run_seconds for level in self.levels)

    @property
    def compile_seconds(self) -> float:
        return sum(level.compile_seconds for level in self.levels)


def stylize_multiscale(
    vgg: VGGParams,
    *,
    sizes: Sequence[int],
    config: StylizeConfig | None = None,
    content: np.ndarray | None = None,
    style: np.ndarray | Sequence[np.ndarray] | None = None,
    init: np.ndarray | None = None,
    masks: np.ndarray | None = None,
    weights: Weights | None = None,
    iterations: Sequence[int] | None = None,
    seed: int = 0,
    callback: Callable[[int, Progress], None] | None = None,
    plan: Plan | None = None,
) -> MultiScaleResult:
    """Coarse-to-fine Gatys optimisation.

    Args:
        vgg: VGG-19 parameters.
        sizes: Longest side of each level, increasing; the last is the output's (see
            :func:`pyramid_sizes`).
        iterations: Steps per level (default ``config.iterations`` at each).
        callback: Called as ``callback(level, progress)`` after every chunk.
        config: Static settings (``StylizeConfig()`` if None), shared by the levels.
        content: ``[H, W, 3]`` content photo at the full output size.
        style: Style image(s), as in :func:`~nst_jax.api.stylize`.
        init: ``[H, W, 3]`` start of the coarsest level, resized to it.
        masks: Region masks, resized to each level.
        weights: Loss weights shared by the levels (:func:`~nst_jax.config.make_weights` if None).
        seed: Seed of a noise start.
        plan: Inputs already checked (:func:`nst_jax.plan.make_plan`), instead of the four above.

    Returns:
        The output and every level's result.

    Raises:
        NSTError: On a bad input, sizes that do not increase or a miscounted ``iterations``.
        NumericalError: If a level's loss or image becomes NaN or Inf.
    """
    if plan is None:
        plan = make_plan(StylizeConfig() if config is None else config, content=content, style=style, init=init,
                         masks=masks)
    elif any(v is not None for v in (content, style, init, masks)):
        raise NSTError("give the inputs or a plan made from them, not both")
    config = plan.config
    sizes = [int(s) for s in sizes]
    iterations = list(iterations) if iterations is not None else [config.iterations] * len(sizes)
    if len(iterations) != len(sizes):
        raise NSTError(f"{len(iterations)} iteration counts given for {len(sizes)} scales")
    if sorted(sizes) != sizes:
        raise NSTError(f"scale sizes must increase, got {sizes}")
    full = max(plan.shape[:2])
    weights = make_weights(config) if weights is None else weights
    levels, previous = [], None
    for level, (size, steps) in enumerate(zip(sizes, iterations, strict=True)):
        shape = colour.shape_for_longest(plan.shape, size)
        if previous is None:
            level_config = dataclasses.replace(config, iterations=steps)
            level_init = None if plan.init is None else colour.resize(plan.init, shape)
        else:
            level_config = dataclasses.replace(config, iterations=steps, init="image")
            level_init = colour.resize(previous, shape)
        level_plan = at_size(plan, size, full, config=level_config, init=level_init)
        result = stylize(vgg, plan=level_plan, weights=weights, seed=seed,
                         callback=None if callback is None else (lambda p, level=level: callback(level, p)))
        levels.append(result)
        previous = result.image
    return MultiScaleResult(previous, levels, sizes)
