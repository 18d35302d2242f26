"""The input plan of a run: every input checked, hashed, given the output's shape and resized, once.

:func:`make_plan` is the only place where the images handed to :func:`nst_jax.stylize`,
:func:`nst_jax.sweep`, :func:`nst_jax.stylize_multiscale` or the command line are validated,
hashed for the run record and given the output's shape (:func:`output_shape`, the one rule). The
API and the CLI both call it; the CLI passes its :class:`Plan` on, so nothing is checked twice.
:func:`optimised_inputs` then applies the input-side quality controls (style scale, colour,
masks at the output size) and :func:`at_size` gives a multi-scale level's plan.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from nst_jax._src import checks, colour
from nst_jax._src.image import MIN_SIZE
from nst_jax.config import StylizeConfig
from nst_jax.errors import NSTError

# Style images may be smaller than outputs: the deepest default style layer needs 16 px.
MIN_STYLE_SIZE = 16


def as_image(x: ArrayLike, what: str, *, min_size: int = MIN_SIZE) -> np.ndarray:
    """One checked image as float32 numpy ``[H, W, 3]`` (float64 input, e.g. with x64 on, is converted).

    Raises:
        NSTError: On a batch, a wrong shape, an integer dtype, a non-finite value, values clearly
            outside [0, 1] (:func:`nst_jax._src.checks.check_range`), or a side below ``min_size``.
    """
    h, w, _ = checks.check_image(x, what)
    if min(h, w) < min_size:
        raise NSTError(f"{what} of {w}x{h} px is smaller than the {min_size} px the network needs on each side")
    arr = np.asarray(x, np.float32)
    if not np.isfinite(arr).all():
        raise NSTError(f"{what} holds NaN or Inf values")
    checks.check_range(arr, "0-1", what, settable=False)
    return arr


def style_list(style: Any) -> list[Any]:
    """A style argument (one image, or a list or tuple of them) as a list."""
    return list(style) if isinstance(style, (list, tuple)) else [style]


def output_shape(config: StylizeConfig, *, content: Any = None, init: Any = None,
                 style: Any = None) -> tuple[int, int, int]:
    """The rule for the output's shape ``(H, W, 3)``: the content's; without a content term the start
    image's; else the first style image's.

    Raises:
        NSTError: If the mode's defining image is missing.
    """
    if config.uses_content and content is not None:
        return tuple(np.shape(content))
    if init is not None:
        return tuple(np.shape(init))
    if style is not None:
        return tuple(np.shape(style_list(style)[0]))
    raise NSTError(f"{config.mode} mode needs {'a content' if config.uses_content else 'a style'} image")


def canvas_shape(config: StylizeConfig, shape: Sequence[int]) -> tuple[int, int, int]:
    """The rule for the shape the optimisation runs at: the output's ``(H, W, C)``, or with
    ``config.shape_bucket = B`` its sides rounded up to multiples of ``B``."""
    b = config.shape_bucket
    if not b:
        return tuple(int(d) for d in shape)
    return -(-int(shape[0]) // b) * b, -(-int(shape[1]) // b) * b, int(shape[2])


def array_digest(array: np.ndarray | None) -> dict[str, Any] | None:
    """``{"shape", "sha256"}`` of an array's float32 values (None for None)."""
    if array is None:
        return None
    arr = np.ascontiguousarray(np.asarray(array, np.float32))
    return {"shape": list(arr.shape), "sha256": hashlib.sha256(arr.tobytes()).hexdigest()}


@dataclasses.dataclass(frozen=True)
class Plan:
    """Checked inputs of one run and what follows from them.

    Attributes:
        config: The static settings the inputs were checked against.
        content: ``[H, W, 3]`` float32 content photo as given, or None.
        styles: ``config.num_styles`` float32 ``[H_s, W_s, 3]`` style images as given, or None.
        init: ``[H, W, 3]`` float32 start image, or None.
        masks: ``S`` float32 ``[H', W']`` region masks as given (any size), or None.
        shape: ``(H, W, 3)`` of the output (:func:`output_shape`).
        digests: ``{"content", "style", "init", "masks"}`` sha256 digests of the inputs as given,
            for the run record; a multi-scale level's also ``"level"`` (:func:`at_size`).
    """

    config: StylizeConfig
    content: np.ndarray | None
    styles: tuple[np.ndarray, ...] | None
    init: np.ndarray | None
    masks: tuple[np.ndarray, ...] | None
    shape: tuple[int, int, int]
    digests: dict[str, Any]

    @property
    def canvas(self) -> tuple[int, int, int]:
        """The shape the optimisation runs at (:func:`canvas_shape`)."""
        return canvas_shape(self.config, self.shape)

    @property
    def style(self) -> np.ndarray | list[np.ndarray] | None:
        """The style argument as the API takes it: one image, or a list of several."""
        if self.styles is None:
            return None
        return self.styles[0] if len(self.styles) == 1 else list(self.styles)

    @property
    def largest_style_shape(self) -> tuple[int, int, int] | None:
        """The shape of the style image with the most pixels, after ``config.style_scale``."""
        if not self.styles:
            return None
        return max((_scaled_style_shape(self.config, s.shape, self.shape) for s in self.styles),
                   key=lambda s: s[0] * s[1])


def _check_masks(config: StylizeConfig, masks: Any) -> tuple[np.ndarray, ...] | None:
    checks.check_masks_untiled(config.tile_size, masks)
    if masks is None:
        return None
    arrays = tuple(np.asarray(m, np.float32) for m in masks)
    if len(arrays) != config.num_styles:
        raise NSTError(f"{len(arrays)} masks given for {config.num_styles} style images; give one mask per style")
    if any(m.ndim != 2 or min(m.shape) < 1 for m in arrays):
        shapes = [m.shape for m in arrays]
        raise NSTError(f"masks must be {config.num_styles} [H, W] arrays (or one [S, H, W] array), one per style "
                       f"image, got shapes {shapes}")
    if not all(np.isfinite(m).all() for m in arrays):
        raise NSTError("masks hold NaN or Inf values")
    return arrays


def make_plan(config: StylizeConfig, *, content: ArrayLike | None = None,
              style: ArrayLike | Sequence[ArrayLike] | None = None, init: ArrayLike | None = None,
              masks: ArrayLike | Sequence[ArrayLike] | None = None) -> Plan:
    """Checks every input against ``config``, fixes the output's shape and hashes the inputs.

    Args:
        config: Static settings.
        content: ``[H, W, 3]`` content photo, float RGB in [0, 1] (transfer and content modes).
        style: ``[H_s, W_s, 3]`` style image or a sequence of ``config.num_styles`` of them.
        init: ``[H, W, 3]`` start image when ``config.init == "image"``.
        masks: ``[S, H', W']`` region masks in [0, 1], one per style image, or a sequence of ``S``
            ``[H_k, W_k]`` masks of any sizes (resized to the output by :func:`optimised_inputs`).

    Returns:
        The plan.

    Raises:
        NSTError: On a missing, miscounted or malformed input.
    """
    if config.uses_content and content is None:
        raise NSTError(f"{config.mode} mode needs a content image")
    content = as_image(content, "content image") if config.uses_content else None
    styles = None
    if config.uses_style:
        if style is None:
            raise NSTError(f"{config.mode} mode needs a style image")
        styles = tuple(as_image(s, "style image", min_size=MIN_STYLE_SIZE) for s in style_list(style))
        if len(styles) != config.num_styles:
            raise NSTError(f"{len(styles)} style images given for config.num_styles = {config.num_styles}")
    if config.init == "image" and init is None:
        raise NSTError("init 'image' needs an init image")
    init = None if init is None else as_image(init, "init image")
    shape = output_shape(config, content=content, init=init, style=styles)
    if init is not None and init.shape != shape:
        raise NSTError(f"init image is {init.shape[1]}x{init.shape[0]}, the output {shape[1]}x{shape[0]}; give it the "
                       "content's size (an image of the same aspect ratio, loaded at the same size)")
    masks = _check_masks(config, masks)
    if styles is not None:
        for s in styles:
            scaled = _scaled_style_shape(config, s.shape, shape)
            if min(scaled[:2]) < MIN_STYLE_SIZE:
                raise NSTError(f"style scale {config.style_scale} makes a style image smaller than {MIN_STYLE_SIZE} px")
    digests = {"content": array_digest(content), "init": array_digest(init),
               "masks": None if masks is None else [array_digest(m) for m in masks],
               "style": None if styles is None else (array_digest(styles[0]) if len(styles) == 1
                                                      else [array_digest(s) for s in styles])}
    return Plan(config, content, styles, init, masks, shape, digests)


def _scaled_style_shape(config: StylizeConfig, style_shape: Sequence[int], shape: Sequence[int]) -> tuple:
    if config.style_scale is None:
        return tuple(style_shape)
    return (*colour.shape_for_longest(style_shape, round(config.style_scale * max(shape[:2]))), *style_shape[2:])


class Inputs(NamedTuple):
    """The arrays an optimisation works on (:func:`optimised_inputs`).

    Attributes:
        content: ``[H, W, 3]`` or None (as optimised: grey in luminance mode).
        styles: ``config.num_styles`` ``[H_s, W_s, 3]`` (resized, colour-treated), or None.
        init: ``[H, W, 3]`` or None.
        masks: ``[S, H, W]`` float32 in [0, 1] at the output size, or None.
    """

    content: np.ndarray | None
    styles: list[np.ndarray] | None
    init: np.ndarray | None
    masks: np.ndarray | None


def run_plan(config: StylizeConfig | None, plan: Plan | None, **inputs: Any) -> Plan:
    """A run's plan, as :func:`nst_jax.stylize`, :func:`nst_jax.sweep` and
    :func:`nst_jax.stylize_multiscale` take it: the one given, or one made from the inputs.

    Args:
        config: The run's settings (``StylizeConfig()`` if None); with a plan, None or the plan's.
        plan: A plan from :func:`make_plan`, or None.
        **inputs: ``content``, ``style``, ``init`` and ``masks`` (all None with a plan).

    Returns:
        The plan.

    Raises:
        NSTError: If ``config`` is not a ``StylizeConfig``, ``plan`` not a ``Plan``, both a plan and
            inputs are given, or the config differs from the plan's.
    """
    if plan is None:
        config = StylizeConfig() if config is None else config
        if not isinstance(config, StylizeConfig):
            raise NSTError(f"config must be a StylizeConfig (optimiser settings included), got {type(config).__name__}")
        return make_plan(config, **inputs)
    if not isinstance(plan, Plan):
        raise NSTError(f"plan must be a nst_jax.host.Plan, got {type(plan).__name__}")
    if any(v is not None for v in inputs.values()):
        raise NSTError("give the inputs or a plan made from them, not both")
    if config is not None and config != plan.config:
        raise NSTError("config differs from the plan's; make the plan with this config")
    return plan


def optimised_inputs(plan: Plan) -> Inputs:
    """The input-side quality controls applied to a plan's inputs.

    In order: the style images resized for ``config.style_scale`` (relative to the output's
    longest side), ``preserve_colour="match"`` (each style's colours matched to the content's),
    ``"luminance"`` (content, styles and init replaced by grey luminance images, the styles'
    luminance matched to the content's mean and standard deviation), masks resized to the output
    size and clipped to [0, 1].
    """
    config, content, init = plan.config, plan.content, plan.init
    styles = None if plan.styles is None else [
        colour.resize(s, _scaled_style_shape(config, s.shape, plan.shape)[:2]) for s in plan.styles]
    if config.preserve_colour == "match":
        styles = [colour.match_colour(s, content) for s in styles]
    elif config.preserve_colour == "luminance":
        styles = [colour.luminance_image(s, like=content) for s in styles]
        content = colour.luminance_image(content)
        if init is not None:
            init = colour.luminance_image(init)
    masks = None
    if plan.masks is not None:
        masks = np.clip(np.stack([colour.resize(m, plan.shape[:2]) for m in plan.masks]), 0.0, 1.0)
    return Inputs(content, styles, init, masks)


def finish_image(plan: Plan, image: np.ndarray) -> np.ndarray:
    """The output image from the optimised one ``[H, W, 3]``: clipped to [0, 1], and in
    luminance mode recombined with the content's chroma."""
    image = np.clip(np.asarray(image, np.float32), 0.0, 1.0)
    if plan.config.preserve_colour == "luminance":
        image = colour.recombine_luminance(image, plan.content)
    return image


def at_size(plan: Plan, size: int, full_size: int, *, config: StylizeConfig, init: np.ndarray | None,
            level: Mapping[str, Any] | None = None) -> Plan:
    """A multi-scale level's plan: the inputs resized so the output's longest side is ``size``.

    The content photo is resized to the level; the style images too, by the level's factor
    ``size / full_size``, unless ``config.style_scale`` already ties them to the output size.
    Masks stay as given (they are resized to each level's output by :func:`optimised_inputs`).
    The digests, and so the run record, are the full plan's plus ``level``: the original inputs
    and the levels before it determine the level's inputs (its start is the previous level's output).

    Args:
        plan: The full-size plan.
        size: The level's longest side.
        full_size: The output's longest side.
        config: The level's settings (its step count and start).
        init: The level's start image at the level's size, or None.
        level: What places the level in its run (:func:`nst_jax.stylize_multiscale`
            records its index and every level's size and steps), or None for a plain run.

    Returns:
        The level's plan.
    """
    shape = (*colour.shape_for_longest(plan.shape, size), plan.shape[2])
    content = None if plan.content is None else colour.resize(plan.content, shape[:2])
    styles = plan.styles
    if styles is not None and config.style_scale is None:
        styles = tuple(colour.resize(s, colour.shape_for_longest(s.shape, round(max(s.shape[:2]) * size / full_size)))
                       for s in styles)
    digests = plan.digests if level is None else {**plan.digests, "level": dict(level)}
    return dataclasses.replace(plan, config=config, content=content, styles=styles, init=init, shape=shape,
                               digests=digests)


def check_seeds(seeds: Sequence[int] | None, count: int) -> np.ndarray:
    """``count`` seeds as an int64 array (all 0 if None).

    Raises:
        NSTError: On a miscounted list or a seed outside the int64 range.
    """
    try:
        seeds = np.zeros(count, np.int64) if seeds is None else np.asarray(seeds, np.int64).reshape(-1)
    except (OverflowError, ValueError, TypeError):
        raise NSTError(f"seeds must be integers in the int64 range, got {seeds!r}") from None
    if seeds.shape != (count,):
        raise NSTError(f"{len(seeds)} seeds given for {count} members")
    return seeds
