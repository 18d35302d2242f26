"""Coarse-to-fine (multi-scale) optimisation.

The output is optimised at a pyramid of sizes (longest side, geometric from ``min_size`` to
the full size); each level starts from the previous level's output, upsampled (Lanczos), and
each level is one :func:`~nst_jax.optimize.stylize` call, so each level's chunk is compiled
once (one compilation per size). The content photo and the masks are resized to each level;
the style images too, by the level's factor, unless ``config.style_scale`` already ties them
to the output size. The optimiser state is not carried between levels: L-BFGS's curvature
pairs and Adam's moments are per pixel of the previous grid and would not describe the new
one (upsampled Adam moments were considered and not used: the gradient scale per pixel
changes with the size).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from nst_jax import colour
from nst_jax.errors import NSTError
from nst_jax.optimize import LossWeights, Progress, StylizeConfig, StylizeResult, loss_weights, stylize

DEFAULT_MIN_SIZE = 128


def pyramid_sizes(size: int, scales: int, min_size: int = DEFAULT_MIN_SIZE) -> list[int]:
    """Longest sides of the levels, ``scales`` of them geometric from ``min_size`` to ``size``.

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
        levels: Each level's :class:`~nst_jax.optimize.StylizeResult` (coarse to fine).
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
    params: Mapping,
    *,
    convention: str,
    sizes: Sequence[int],
    config: StylizeConfig,
    content: np.ndarray | None = None,
    style: np.ndarray | Sequence[np.ndarray] | None = None,
    init: np.ndarray | None = None,
    masks: np.ndarray | None = None,
    weights: LossWeights | None = None,
    iterations: Sequence[int] | None = None,
    seed: int = 0,
    callback: Callable[[int, Progress], None] | None = None,
    keep_balance: bool = False,
) -> MultiScaleResult:
    """Coarse-to-fine Gatys optimisation.

    Args:
        params, convention, content, style, init, masks, config, weights, seed: As in
            :func:`~nst_jax.optimize.stylize`; ``content`` (or ``init``, or the first style in
            style mode) is at the full output size.
        sizes: Longest side of each level, increasing; the last is the output's (see
            :func:`pyramid_sizes`).
        iterations: Steps per level (default ``config.iterations`` at each).
        callback: Called as ``callback(level, progress)`` after every chunk.
        keep_balance: If True, each level's style weight β is scaled by the level's share of
            the output's pixels. The content term sums over positions while the normalised
            style term does not, so with one β for all levels the coarse levels weigh style
            more than the full size does; scaled, every level has the output's balance.

    Returns:
        The output and every level's result.
    """
    sizes = [int(s) for s in sizes]
    iterations = list(iterations) if iterations is not None else [config.iterations] * len(sizes)
    if len(iterations) != len(sizes):
        raise NSTError(f"{len(iterations)} iteration counts given for {len(sizes)} scales")
    if sorted(sizes) != sizes:
        raise NSTError(f"scale sizes must increase, got {sizes}")
    styles = None if style is None else [np.asarray(s) for s in (style if isinstance(style, (list, tuple))
                                                                  else [style])]
    reference = content if content is not None else init if init is not None else styles[0]
    full = max(reference.shape[:2])
    weights = loss_weights(config) if weights is None else weights
    levels, previous = [], None
    for level, (size, steps) in enumerate(zip(sizes, iterations, strict=True)):
        shape = colour.shape_for_longest(reference.shape, size)
        level_content = None if content is None else colour.resize(content, shape)
        level_styles = styles
        if styles is not None and config.style_scale is None:
            level_styles = [colour.resize(s, colour.shape_for_longest(s.shape, round(max(s.shape[:2]) * size / full)))
                            for s in styles]
        if previous is None:
            level_config = dataclasses.replace(config, iterations=steps)
            level_init = None if init is None else colour.resize(init, shape)
        else:
            level_config = dataclasses.replace(config, iterations=steps, init="image")
            level_init = colour.resize(previous, shape)
        if level_styles is not None and config.num_styles == 1:
            level_styles = level_styles[0]
        level_weights = weights
        if keep_balance:
            share = (shape[0] * shape[1]) / (reference.shape[0] * reference.shape[1])
            level_weights = weights._replace(style=weights.style * share)
        result = stylize(params, convention=convention, content=level_content, style=level_styles,
                         init=level_init, masks=masks, config=level_config, weights=level_weights, seed=seed,
                         callback=None if callback is None else (lambda p, level=level: callback(level, p)))
        levels.append(result)
        previous = result.image
    return MultiScaleResult(previous, levels, sizes)
