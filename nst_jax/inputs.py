"""The input side of a run: image arrays checked, the output's shape, and the input-side controls.

:func:`prepare_inputs` is the one place where the images a user hands to
:func:`nst_jax.stylize` (or :func:`nst_jax.sweep`, or a multi-scale level) are checked and turned
into what the optimisation works on: float32 ``[H, W, 3]`` arrays, the style images resized for
``config.style_scale``, the colour controls applied, masks resized to the output. The rule for
the output's shape (:func:`output_shape`) is written here once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from nst_jax import checks, colour
from nst_jax.config import StylizeConfig
from nst_jax.errors import NSTError
from nst_jax.image import MIN_SIZE


def as_image(x: Any, what: str, *, min_size: int = MIN_SIZE) -> np.ndarray:
    """One checked image as float32 numpy ``[H, W, 3]`` (float64 input, e.g. with x64 on, is converted).

    Raises:
        NSTError: On a batch, a wrong shape, an integer dtype, a non-finite value, or a side
            below ``min_size``.
    """
    h, w, _ = checks.check_image(x, what)
    if min(h, w) < min_size:
        raise NSTError(f"{what} of {w}x{h} px is smaller than the {min_size} px the network needs on each side")
    arr = np.asarray(x, np.float32)
    if not np.isfinite(arr).all():
        raise NSTError(f"{what} holds NaN or Inf values")
    return arr


def style_list(style: Any) -> list:
    """A style argument (one image, or a list or tuple of them) as a list."""
    return list(style) if isinstance(style, (list, tuple)) else [style]


def output_shape(config: StylizeConfig, *, content=None, init=None, style=None) -> tuple[int, int, int]:
    """The shape ``(H, W, 3)`` of the output: the content's; without a content term the start
    image's; else the first style image's."""
    if config.uses_content and content is not None:
        return tuple(np.shape(content))
    if init is not None:
        return tuple(np.shape(init))
    if style is not None:
        return tuple(np.shape(style_list(style)[0]))
    raise NSTError(f"{config.mode} mode needs {'a content' if config.uses_content else 'a style'} image")


class Inputs(NamedTuple):
    """The arrays an optimisation works on, after :func:`prepare_inputs`.

    Attributes:
        content: ``[H, W, 3]`` or None (as optimised: grey in luminance mode).
        styles: List of ``config.num_styles`` ``[H_s, W_s, 3]`` (resized, colour-treated), or None.
        init: ``[H, W, 3]`` or None.
        masks: ``[S, H, W]`` float32 in [0, 1] at the output size, or None.
        shape: ``(H, W, 3)`` of the output.
        original_content: The content as given (luminance mode takes its chroma from it).
    """

    content: np.ndarray | None
    styles: list[np.ndarray] | None
    init: np.ndarray | None
    masks: np.ndarray | None
    shape: tuple[int, int, int]
    original_content: np.ndarray | None


def prepare_inputs(
    config: StylizeConfig, *, content: Any = None, style: Any = None, init: Any = None, masks: Any = None,
) -> Inputs:
    """Checks the inputs against ``config`` and applies the input-side quality controls.

    In order: every image checked (:func:`as_image`), the output shape (:func:`output_shape`),
    the style images resized for ``config.style_scale`` (relative to the output's longest
    side), ``preserve_colour="match"`` (each style's colours matched to the content's),
    ``"luminance"`` (content, styles and init replaced by grey luminance images, the styles'
    luminance matched to the content's mean and standard deviation), masks resized to the
    output size.

    Raises:
        NSTError: On a missing, miscounted or malformed input, or masks of the wrong count.
    """
    if config.uses_content and content is None:
        raise NSTError(f"{config.mode} mode needs a content image")
    content = as_image(content, "content image") if config.uses_content else None
    styles = None
    if config.uses_style:
        if style is None:
            raise NSTError(f"{config.mode} mode needs a style image")
        styles = [as_image(s, "style image", min_size=16) for s in style_list(style)]
        if len(styles) != config.num_styles:
            raise NSTError(f"{len(styles)} style images given for config.num_styles = {config.num_styles}")
    if config.init == "image" and init is None:
        raise NSTError("init 'image' needs an init image")
    init = None if init is None else as_image(init, "init image")
    shape = output_shape(config, content=content, init=init, style=styles)
    if init is not None and init.shape != shape:
        raise NSTError(f"init image has shape {init.shape}, the output {shape}; give it the content's size")
    if styles is not None and config.style_scale is not None:
        longest = round(config.style_scale * max(shape[:2]))
        styles = [colour.resize(s, colour.shape_for_longest(s.shape, longest)) for s in styles]
        if min(min(s.shape[:2]) for s in styles) < 16:
            raise NSTError(f"style scale {config.style_scale} makes a style image smaller than 16 px")
    original = content
    if config.preserve_colour == "match":
        styles = [colour.match_colour(s, content) for s in styles]
    elif config.preserve_colour == "luminance":
        styles = [colour.luminance_image(s, like=content) for s in styles]
        content = colour.luminance_image(content)
        if init is not None:
            init = colour.luminance_image(init)
    if masks is not None:
        if config.tile_size:
            raise NSTError("region masks are not supported with tiled evaluation (tile size > 0)")
        masks = np.asarray(masks, np.float32)
        if masks.ndim != 3 or masks.shape[0] != config.num_styles:
            raise NSTError(f"masks must be [S, H, W] with S = {config.num_styles} style images, "
                           f"got shape {masks.shape}")
        masks = np.clip(np.stack([colour.resize(m, shape[:2]) for m in masks]), 0.0, 1.0)
    return Inputs(content, styles, init, masks, shape, original)


def finish_image(config: StylizeConfig, image: np.ndarray, inputs: Inputs) -> np.ndarray:
    """The output image from the optimised one ``[H, W, 3]``: clipped to [0, 1], and in
    luminance mode recombined with the content's chroma."""
    image = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
    if config.preserve_colour == "luminance":
        image = colour.recombine_luminance(image, inputs.original_content)
    return image


def targets_inputs(inputs: Inputs) -> dict[str, Any]:
    """The keyword arguments of :func:`nst_jax.compute_targets` for prepared inputs."""
    style = None if inputs.styles is None else (inputs.styles[0] if len(inputs.styles) == 1 else inputs.styles)
    return {"content": inputs.content, "style": style, "output_shape": inputs.shape, "masks": inputs.masks}


def check_seeds(seeds: Sequence[int] | None, count: int) -> np.ndarray:
    """``count`` seeds as an int64 array (all 0 if None)."""
    seeds = np.zeros(count, np.int64) if seeds is None else np.asarray(seeds, np.int64).reshape(-1)
    if seeds.shape != (count,):
        raise NSTError(f"{len(seeds)} seeds given for {count} members")
    return seeds
