"""A perceptual loss in the form ``loss(x, y)``: VGG-19 feature and style-statistic distances.

:func:`perceptual_loss` compares two RGB images in [0, 1] through the frozen VGG-19: a
*content* term (features at ``content_layers``, the same positions compared) and a *style*
term (a statistic of the features at ``style_layers``, positions pooled, so ``x`` and ``y``
may differ in size when there is no content term). Nothing else: no total variation, no hidden
weights, no stop-gradient (differentiate in ``x``, ``y`` or both). One image pair per call;
``jax.vmap`` over a batch::

    loss = jax.vmap(lambda x, y: nst_jax.perceptual_loss(vgg, x, y))(xs, ys).mean()

The terms, for layer weights ``w_l`` (``layer_weights``)::

    content = content_weight · Σ_l w_l ‖F_l(x) − F_l(y)‖² / ‖F_l(y)‖²
    style   = style_weight   · Σ_l w_l ‖G_l(x)/M_x − G_l(y)/M_y‖² / ‖G_l(y)/M_y‖²      (gram)

with ``F_l`` the ``[H, W, N]`` features, ``G_l = F Fᵀ`` the Gram matrix summed over the ``M``
positions (so ``G / M`` is the per-position Gram, :func:`nst_jax.gram_matrix` with
``normalize=True``: the style term does not depend on either image's size). These are the
library's ``units="relative"`` terms (:mod:`nst_jax._src.losses`): 1 for a blank ``x`` and 0 at
``y``. ``units="paper"`` gives Gatys et al.'s eq. 1 (``½ Σ (F − P)²``) and eq. 4
(``Σ (G − A)² / (4 N² M²)``, ``A`` the style Gram rescaled to ``x``'s positions) instead.
``statistic`` picks another style statistic from :data:`nst_jax.config.STYLE_LOSSES`
(``"meancov"``, ``"w2"``, ``"sliced"``, ...).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, ParamSpec

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from nst_jax._src import checks, losses
from nst_jax._src.statistics import STATISTICS
from nst_jax._src.statistics.base import check_units
from nst_jax._src.terms import weighted_sum
from nst_jax._src.vgg import (
    DEFAULT_CONTENT_LAYERS,
    DEFAULT_STYLE_LAYERS,
    Autodiff,
    InputRange,
    RangeCheck,
    VGGParams,
    check_fits,
    check_layers,
    features_in_compute_dtype,
)
from nst_jax.errors import NSTError

__all__ = ["DEFAULT_CONTENT_LAYERS", "DEFAULT_STYLE_LAYERS", "perceptual_loss", "perceptual_terms"]

P = ParamSpec("P")


def _layer_weight(layer_weights: Mapping[str, float] | None, name: str, default: float) -> float:
    if layer_weights is None or name not in layer_weights:
        return default
    return layer_weights[name]


def perceptual_terms(
    vgg: VGGParams,
    x: ArrayLike,
    y: ArrayLike,
    *,
    content_layers: Sequence[str] = DEFAULT_CONTENT_LAYERS,
    style_layers: Sequence[str] = DEFAULT_STYLE_LAYERS,
    content_weight: ArrayLike = 1.0,
    style_weight: ArrayLike = 1.0,
    layer_weights: Mapping[str, float] | None = None,
    statistic: str = "gram",
    units: Literal["relative", "paper"] = "relative",
    pooling: Literal["max", "avg"] = "max",
    precision: Literal["fp32", "bf16"] = "fp32",
    autodiff: Autodiff | None = None,
    input_range: InputRange = "0-1",
    range_check: RangeCheck = "concrete",
) -> dict[str, jax.Array]:
    """The content and style terms of :func:`perceptual_loss`, and their sum.

    Args:
        vgg: VGG-19 parameters (:func:`nst_jax.load_vgg19`).
        x: ``[H, W, 3]`` float RGB in [0, 1], e.g. a model's output.
        y: ``[H', W', 3]`` float RGB in [0, 1], the reference; the same size as ``x`` when there
            are content layers.
        content_layers: Layers whose features are compared position by position; ``()`` for none.
        style_layers: Layers whose style statistic is compared; ``()`` for none.
        content_weight: Multiplies the content sum (a number or a traced scalar).
        style_weight: Multiplies the style sum.
        layer_weights: ``{layer: w_l}``; a layer not named keeps its default, 1 for a content layer
            and ``1 / len(style_layers)`` for a style layer (the paper's). A layer in both lists
            gets the named weight in both sums.
        statistic: The style statistic, one of :data:`nst_jax.config.STYLE_LOSSES`.
        units: ``"relative"`` (each layer's term divided by its value for a blank ``x``) or
            ``"paper"`` (Gatys et al.'s eqs. 1 and 4).
        pooling: ``"max"`` or ``"avg"``.
        precision: ``"fp32"`` or ``"bf16"`` convolutions.
        autodiff: As in :func:`nst_jax.extract_features`.
        input_range: The range of ``x`` and ``y``: ``"0-1"``, ``"-1-1"`` or ``"0-255"``.
        range_check: ``"concrete"``, ``"checkify"`` or ``"off"``, as in :func:`nst_jax.extract_features`.

    Returns:
        ``{"content", "style", "total"}`` scalars (the weighted sums and their sum): float32 for
        any image dtype (bfloat16 and float16 included; the gradient comes back in the image's
        dtype), float64 for float64 images with ``jax_enable_x64`` on.

    Raises:
        NSTError: On a batch or non-image, an integer dtype, unknown layers or statistic, no layers
            at all, differing sizes with content layers, or an image too small for its layers.
    """
    content_layers = check_layers(content_layers, "content_layers")
    style_layers = check_layers(style_layers, "style_layers")
    if not content_layers and not style_layers:
        raise NSTError("perceptual_loss needs at least one content or style layer")
    if statistic not in STATISTICS:
        raise NSTError(f"unknown style statistic {statistic!r} (choose from {', '.join(STATISTICS)})")
    check_units(units)
    x_shape = checks.check_image(x, "perceptual_loss's x")
    y_shape = checks.check_image(y, "perceptual_loss's y")
    if content_layers and x_shape != y_shape:
        raise NSTError(f"perceptual_loss: x {x_shape} and y {y_shape} differ in size, which content layers need "
                       "(resize one, or pass content_layers=() for a style-only loss)")
    layers = tuple(dict.fromkeys(content_layers + style_layers))
    check_fits(x_shape, layers, "x")
    check_fits(y_shape, layers, "y")
    options = {"pooling": pooling, "precision": precision, "autodiff": autodiff, "input_range": input_range,
               "range_check": range_check}
    fx = features_in_compute_dtype(vgg, x, layers=layers, what="perceptual_loss's x", **options)
    fy = features_in_compute_dtype(vgg, y, layers=layers, what="perceptual_loss's y", **options)

    stat = STATISTICS[statistic]

    def style_layer(name):
        h, w, _ = fx[name].shape
        reference = stat.finish(stat.target(stat.summary(fy[name], None), jnp.asarray(h * w, fy[name].dtype)))
        return stat.loss(fx[name], reference, None, units)

    content = jnp.asarray(content_weight) * weighted_sum(
        [_layer_weight(layer_weights, name, 1.0) for name in content_layers],
        [losses.content_loss(fx[name], fy[name], units=units) for name in content_layers])
    style = jnp.asarray(style_weight) * weighted_sum(
        [_layer_weight(layer_weights, name, 1.0 / max(len(style_layers), 1)) for name in style_layers],
        [style_layer(name) for name in style_layers])
    return {"content": content, "style": style, "total": content + style}


def _total_of(terms: Callable[P, dict[str, jax.Array]]) -> Callable[P, jax.Array]:
    """``terms(...)["total"]``, with ``terms``' parameters: one signature for both public functions, which
    ``inspect``, pdoc and type checkers (through the ``ParamSpec``) all read."""

    @functools.wraps(terms)
    def loss(*args: P.args, **kwargs: P.kwargs) -> jax.Array:
        return terms(*args, **kwargs)["total"]

    loss.__signature__ = inspect.signature(terms).replace(return_annotation="jax.Array")  # type: ignore[attr-defined]
    return loss


perceptual_loss = _total_of(perceptual_terms)
perceptual_loss.__name__ = perceptual_loss.__qualname__ = "perceptual_loss"
perceptual_loss.__doc__ = """VGG-19 perceptual loss of one image pair: ``content + style`` (see the module's docstring).

    A pure function of ``x`` and ``y`` (and ``vgg``), safe under ``jax.jit``, ``jax.grad`` and
    ``jax.vmap``; no total-variation or other term is added.

    Args:
        vgg: VGG-19 parameters (:func:`nst_jax.load_vgg19`).
        x: ``[H, W, 3]`` float RGB in [0, 1].
        y: ``[H', W', 3]`` float RGB in [0, 1] (the same size as ``x`` with content layers).
        content_layers: Layers compared position by position; ``()`` for a style-only loss.
        style_layers: Layers whose style statistic is compared; ``()`` for a content-only loss.
        content_weight: Multiplies the content sum.
        style_weight: Multiplies the style sum.
        layer_weights: ``{layer: w_l}`` (defaults: 1 per content layer, ``1 / L`` per style layer).
        statistic: ``"gram"`` (default) or another of :data:`nst_jax.config.STYLE_LOSSES`.
        units: ``"relative"`` or ``"paper"``.
        pooling: ``"max"`` or ``"avg"``.
        precision: ``"fp32"`` or ``"bf16"``.
        autodiff: ``"fast"``, ``"stock"`` or None (see :func:`nst_jax.autodiff_mode`).
        input_range: ``"0-1"`` (default), ``"-1-1"`` or ``"0-255"``: the images' value range.
        range_check: ``"concrete"`` (refuse concrete images clearly out of range), ``"checkify"``
            (traced ones too, via ``jax.experimental.checkify``) or ``"off"``.

    Returns:
        Scalar loss, float32 for any image dtype (float64 for float64 images under x64).

    Raises:
        NSTError: As :func:`perceptual_terms`.
    """
