"""The Gatys objective of one image: targets computed once, then loss terms and their gradient.

The data path: an image's VGG features (:mod:`nst_jax._src.vgg`) against :class:`Targets` (the
content photo's features and the style images' statistics, :func:`compute_targets`), weighted
by the :class:`~nst_jax.config.Weights` pytree into the terms ``α·L_content``,
``β·L_style``, ``tv·L_tv`` and their sum (:func:`loss_terms`, combined by
:func:`nst_jax._src.terms.weighted_terms`). The style statistic comes from the registry
(:data:`nst_jax._src.statistics.STATISTICS`). Whether an image is evaluated in one VGG pass or tile
by tile is :func:`evaluation`'s decision, made for every image here (targets and loss) and for
the memory estimate; both give the same values and gradient. The tiled evaluation
(:mod:`nst_jax._src.tiled`) contributes sums of features and statistics only; the terms are
computed from them here.

:func:`make_loss` packages this as a pure function of ``(vgg, image, targets, weights)`` for use
as a perceptual loss in other models; it needs a :class:`~nst_jax.config.LossConfig` only.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from nst_jax._src import checks, losses, plan, tiled
from nst_jax._src.content_terms import CONTENT_TERMS, ContentTerm, TileContext
from nst_jax._src.statistics import STATISTICS, Statistic
from nst_jax._src.terms import weighted_terms
from nst_jax._src.vgg import (
    VGGParams,
    check_fits,
    check_vgg,
    layer_channels,
    layer_level,
    unchecked_features,
    validity_masks,
)
from nst_jax.config import LossConfig, Weights
from nst_jax.errors import NSTError


class Targets(NamedTuple):
    """What the loss matches, computed once before an optimisation (a pytree of arrays).

    Attributes:
        content: ``{layer: [H_l, W_l, N_l]}`` features of the content photo.
        style: ``{layer: {name: [S, ...]}}`` statistics of each of the ``S`` style images:
            the style statistic's targets (``Statistic.target``), e.g. ``"gram": [S, N_l, N_l]``
            for ``style_loss="gram"``, Gram matrices scaled by ``M_out / M_style`` (with masks: by
            ``Σ m² / M_style``, the region's squared mask mass at that layer) so they compare with
            the output's Grams; ``"mean": [S, N_l]`` and ``"cov": [S, N_l, N_l]`` for
            ``"meancov"`` and ``"w2"``.
        masks: None, or ``{layer: [S, H_l, W_l]}``, the output's region masks downsampled to
            each style layer's grid (:func:`mask_pyramid`).
        extent: None, or ``[2]`` int32 ``(H, W)``: the output fills only the top-left ``H x W``
            of the image evaluated (a canvas, ``StylizeConfig.shape_bucket``); the VGG zeroes
            every convolution's input outside it at each level and every term is restricted to
            it (:func:`nst_jax._src.vgg.validity_masks`). Dynamic, so one compiled program serves every extent.
    """

    content: dict[str, jax.Array]
    style: dict[str, dict[str, jax.Array]]
    masks: dict[str, jax.Array] | None = None
    extent: jax.Array | None = None


def layer_shape(image_shape: Sequence[int], name: str) -> tuple[int, int, int]:
    """``(H_l, W_l, N_l)`` of layer ``name``'s map for an ``(H, W, ...)`` image."""
    k = layer_level(name)
    return int(image_shape[0]) >> k, int(image_shape[1]) >> k, layer_channels(name)


def _pool_mask(mask: jax.Array) -> jax.Array:
    h, w = mask.shape[0] // 2, mask.shape[1] // 2
    return mask[: 2 * h, : 2 * w].reshape(h, 2, w, 2, *mask.shape[2:]).mean(axis=(1, 3))


def mask_pyramid(masks: jax.Array, layer_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, jax.Array]:
    """Region masks on each layer's grid: 2x2 average pooling (floor, like VGG's pooling), repeated.

    Args:
        masks: ``[S, H, W]`` masks at the output's size, values in [0, 1].
        layer_shapes: ``{layer: (H_l, W_l, N_l)}`` feature shapes.

    Returns:
        ``{layer: [S, H_l, W_l]}``.
    """
    out = {}
    for name, shape in layer_shapes.items():
        m = jnp.moveaxis(masks, 0, -1)
        while m.shape[:2] != tuple(shape[:2]):
            if m.shape[0] < shape[0] or m.shape[1] < shape[1]:
                raise NSTError(f"mask of {masks.shape[1:]} does not pool to layer {name}'s {shape[:2]}")
            m = _pool_mask(m)
        out[name] = jnp.moveaxis(m, -1, 0)
    return out


Evaluation = Literal["dense", "tiled"]

_warned_x64 = False


def _warn_float32(*images) -> None:
    """Warns once per process that float64 images (with ``jax_enable_x64`` on) are computed in float32."""
    global _warned_x64
    if _warned_x64 or not jax.config.jax_enable_x64:
        return
    if any(x is not None and np.dtype(getattr(x, "dtype", np.float32)) == np.float64 for x in images):
        _warned_x64 = True
        warnings.warn("nst_jax: the objective computes in float32; float64 images are converted "
                      "(nst_jax.extract_features and perceptual_loss compute in float64)", stacklevel=3)


def evaluation(config: LossConfig, shape: Sequence[int]) -> Evaluation:
    """How an image of ``shape`` ``(H, W, ...)`` is evaluated: the one place this is decided.

    ``"tiled"`` when ``config.tile_size`` is set and smaller than the image's longest side (one
    tile covering everything would only add halo), else ``"dense"`` (one VGG pass).
    """
    return "tiled" if config.tile_size and max(shape[0], shape[1]) > config.tile_size else "dense"


def statistic(config: LossConfig) -> Statistic:
    """The style statistic of ``config`` (:data:`nst_jax._src.statistics.STATISTICS`)."""
    return STATISTICS[config.style_loss]


def content_terms(config: LossConfig) -> list[ContentTerm]:
    """The content terms of ``config``, in order (:data:`nst_jax._src.content_terms.CONTENT_TERMS`)."""
    return [CONTENT_TERMS[name] for name in config.content_terms]


def _dense_features(vgg: VGGParams, image: jax.Array, config: LossConfig, layers: Sequence[str],
                    extent: jax.Array | None = None) -> tuple[dict[str, jax.Array], dict[str, jax.Array] | None]:
    """``({layer: [H_l, W_l, N_l]}, validity)`` from one VGG pass; with an ``extent`` the features
    are zero outside it and ``validity`` is ``{layer: [H_l, W_l]}`` (else None)."""
    if extent is None:
        return unchecked_features(vgg, image, layers=layers, pooling=config.pooling,
                                  precision=config.precision), None
    masks = validity_masks((0, 0), image.shape[:2], extent, max(layer_level(name) for name in layers))
    feats = unchecked_features(vgg, image, layers=layers, pooling=config.pooling, precision=config.precision,
                               level_masks=masks)
    validity = {name: masks[layer_level(name)] for name in layers}
    return {name: f * validity[name][:, :, None] for name, f in feats.items()}, validity


def image_features(vgg: VGGParams, image: jax.Array, config: LossConfig, layers: Sequence[str],
                   extent: jax.Array | None = None) -> dict[str, jax.Array]:
    """``{layer: [H_l, W_l, N_l]}`` of one checked image, in one pass (zero outside ``extent``) or
    assembled from tiles."""
    if evaluation(config, image.shape) == "tiled":
        return tiled.assembled_features(vgg, image, layers=layers, config=config)
    return _dense_features(vgg, image, config, layers, extent)[0]


def image_summaries(vgg: VGGParams, image: jax.Array, config: LossConfig) -> dict[str, dict[str, jax.Array]]:
    """``{style layer: summary}``: the style statistic's summary of one checked image, per style layer."""
    stat = statistic(config)
    if evaluation(config, image.shape) == "tiled":
        return tiled.tile_sums(vgg, image, layers=config.style_layers, config=config,
                               tile_fn=lambda core, row, col: {name: stat.summary(*core[name]) for name in core})
    feats, _ = _dense_features(vgg, image, config, config.style_layers)
    return {name: stat.summary(f, None) for name, f in feats.items()}


def _style_targets(vgg: VGGParams, styles: Sequence[jax.Array], config: LossConfig, output_shape: Sequence[int],
                   masks: dict[str, jax.Array] | None, extent: jax.Array | None) -> dict[str, dict[str, jax.Array]]:
    stat = statistic(config)
    summaries = [image_summaries(vgg, s, config) for s in styles]
    out = {}
    for name in config.style_layers:
        h, w, _ = layer_shape(output_shape, name)
        if extent is not None:  # the output's positions: its extent at this layer, not the canvas
            h, w = jnp.right_shift(extent[0], layer_level(name)), jnp.right_shift(extent[1], layer_level(name))
        per_style = []
        for k, summary in enumerate(summaries):
            mass = jnp.float32(h * w) if masks is None else jnp.sum(jnp.square(masks[name][k]))
            per_style.append(stat.target(summary[name], mass))
        out[name] = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *per_style)
    return out


def _as_list(style) -> list:
    return list(style) if isinstance(style, (list, tuple)) else [style]


def compute_targets(
    vgg: VGGParams, *, content: ArrayLike | None = None, style: ArrayLike | Sequence[ArrayLike] | None = None,
    config: LossConfig, output_shape: Sequence[int] | None = None, masks: ArrayLike | None = None,
) -> Targets:
    """Content features and style statistics, computed once (outside any optimisation loop).

    Args:
        vgg: VGG-19 parameters (:func:`nst_jax.load_vgg19`).
        content: ``[H, W, 3]`` content photo, float RGB in [0, 1] (used when ``config`` has a
            content term).
        style: ``[H_s, W_s, 3]`` style image, or a sequence of ``config.num_styles`` of them
            (sizes may differ; used when ``config`` has a style term).
        config: Static loss settings (a :class:`~nst_jax.config.StylizeConfig` is one too).
        output_shape: ``(H, W, 3)`` of the image the targets will be compared with; by default
            the output shape rule's (:func:`nst_jax._src.plan.output_shape`) for ``content`` and
            ``style``: the content's, else the first style image's (pass the start image's
            shape for a style-only run from a start image of another size).
        masks: Optional ``[S, H, W]`` region masks at the output size, one per style image.

    Returns:
        The targets.

    Raises:
        NSTError: On a missing, batched, integer or too small image, a miscounted style list, or
            masks with a tile size set (:func:`nst_jax._src.checks.check_masks_untiled`).
    """
    _warn_float32(content, *_as_list(style))
    if config.uses_content and content is None:
        raise NSTError(f"{config.mode} mode needs a content image")
    if config.uses_style and style is None:
        raise NSTError(f"{config.mode} mode needs a style image")
    styles = _as_list(style) if config.uses_style else []
    if len(styles) not in (0, config.num_styles):
        raise NSTError(f"{len(styles)} style images given, config.num_styles is {config.num_styles}")
    for s in styles:
        check_fits(checks.check_image(s, "style image"), config.style_layers, "style image")
    if config.uses_content:
        check_fits(checks.check_image(content, "content image"), config.content_layers, "content image")
    if output_shape is None:
        output_shape = plan.output_shape(config, content=content, style=styles or None)
    return targets_of(vgg, config=config, content=content, styles=styles, output_shape=tuple(output_shape),
                      masks=masks)


def targets_of(vgg: VGGParams, *, config: LossConfig, output_shape: tuple[int, ...], content: ArrayLike | None = None,
               styles: Sequence[ArrayLike] = (), masks: ArrayLike | None = None,
               extent: ArrayLike | None = None) -> Targets:
    """:func:`compute_targets` of inputs checked already (by :func:`nst_jax.host.make_plan`); with an
    ``extent`` (see :class:`Targets`) ``output_shape`` is the canvas's, and the content and masks
    are zero outside the extent."""
    checks.check_masks_untiled(config.tile_size, masks)
    extent = None if extent is None else jnp.asarray(extent, jnp.int32)
    mask_targets = None
    if config.uses_style:
        check_fits(output_shape, config.style_layers, "output")
        if masks is not None:
            mask_targets = mask_pyramid(jnp.asarray(masks, jnp.float32),
                                        {name: layer_shape(output_shape, name) for name in config.style_layers})
    content_targets = {}
    if config.uses_content:
        content_targets = image_features(vgg, jnp.asarray(content, jnp.float32), config, config.content_layers,
                                         extent)
    style_targets = {}
    if config.uses_style:
        style_targets = _style_targets(vgg, [jnp.asarray(s, jnp.float32) for s in styles], config, output_shape,
                                       mask_targets, extent)
    return Targets(content_targets, style_targets, mask_targets, extent)


def style_reference(targets: Targets, weights: Weights, *, config: LossConfig) -> dict[str, dict[str, Any]]:
    """The statistics the style loss compares with, from the targets and the dynamic blend.

    Without masks the ``S`` styles are blended into one reference by the statistic's
    ``blend`` with weights ``b = style_blend / Σ style_blend`` (Gram: ``Σ b_k A_k``, which in
    paper units equals summing per-style losses ``Σ b_k E(G, A_k)`` up to a constant, so the
    gradients are the same; mean and covariance: those of the mixture). With masks each region
    keeps its own style's statistics. The statistic's ``finish`` then adds its derived constants
    (W2: the covariance's square root). Constant during a run: the stylizer computes it once,
    at ``init``.

    Returns:
        ``{layer: {name: array}}``: ``[N, ...]`` statistics without masks, ``[S, N, ...]`` with.
    """
    stat = statistic(config)
    b = weights.style_blend / jnp.sum(weights.style_blend)
    out = {}
    for name, stats in targets.style.items():
        out[name] = stat.finish(dict(stats) if targets.masks is not None else stat.blend(stats, b))
    return out


def _style_layer_losses(features: Mapping[str, jax.Array], targets: Targets, reference: Mapping[str, Any],
                        weights: Weights, config: LossConfig,
                        validity: Mapping[str, jax.Array] | None = None) -> list[jax.Array]:
    """``E_l`` per style layer, over the positions inside the extent (``validity``) if any. With
    masks (Gatys et al. 2017, guided statistics) ``E_l = Σ_k S b_k E_l^{(k)}``, region ``k``'s
    features compared with style ``k``'s statistics; equal blend weights give each region weight 1
    (region masks are zero outside the extent)."""
    stat, units = statistic(config), config.loss_units
    if targets.masks is None:
        return [stat.loss(features[name], reference[name], None if validity is None else validity[name], units)
                for name in config.style_layers]
    b = weights.style_blend / jnp.sum(weights.style_blend)
    return [sum(config.num_styles * b[k] * stat.loss(features[name], {key: v[k] for key, v in reference[name].items()},
                                                     targets.masks[name][k], units)
                for k in range(config.num_styles))
            for name in config.style_layers]


def check_call(image: ArrayLike, targets: Targets, weights: Weights, config: LossConfig) -> None:
    """Static checks of one :func:`loss_terms` call: the image, and targets made for its size and config."""
    shape = checks.check_image(image)
    check_fits(shape, config.feature_layers)
    if config.uses_content:
        if set(targets.content) != set(config.content_layers):
            raise NSTError("the targets hold no content features for this config's content layers; "
                           "compute them with the same config")
        for name in config.content_layers:
            if tuple(targets.content[name].shape) != layer_shape(shape, name):
                raise NSTError(f"content target {name} has shape {tuple(targets.content[name].shape)}, the image's "
                               f"features {layer_shape(shape, name)}: compute the targets at output_shape={shape}")
        checks.check_layer_weights(weights.content_layers, config.content_layers, "content")
        if tuple(np.shape(weights.content_terms)) != (len(config.content_terms),):
            raise NSTError(f"weights.content_terms has shape {tuple(np.shape(weights.content_terms))} for "
                           f"{len(config.content_terms)} content terms ({', '.join(config.content_terms)})")
    if config.uses_style:
        if set(targets.style) != set(config.style_layers):
            raise NSTError("the targets hold no style statistics for this config's style layers; "
                           "compute them with the same config")
        checks.check_layer_weights(weights.style_layers, config.style_layers, "style")
    checks.check_masks_untiled(config.tile_size, targets.masks)


def _dense_terms(vgg: VGGParams, image: jax.Array, targets: Targets, weights: Weights, reference: Mapping[str, Any],
                 config: LossConfig) -> dict[str, jax.Array]:
    """The weighted loss terms of one image from one VGG pass."""
    feats, validity = _dense_features(vgg, image, config, config.feature_layers, targets.extent)
    content = [[term.loss(feats[name], targets.content[name], _layer_extent(targets.extent, name), config.loss_units)
                for name in config.content_layers] for term in content_terms(config)] if config.uses_content else []
    style = _style_layer_losses(feats, targets, reference, weights, config, validity) if config.uses_style else []
    return weighted_terms(weights, content=content, style=style,
                          tv=losses.tv_loss(image, units=config.loss_units, extent=targets.extent))


def _layer_extent(extent: jax.Array | None, name: str) -> jax.Array | None:
    """The output's extent ``[2]`` on layer ``name``'s map (None without one)."""
    return None if extent is None else jnp.right_shift(extent, layer_level(name))


def _tile_fn(config: LossConfig, padded_targets: Mapping[str, jax.Array], map_shapes: Mapping[str, tuple[int, int]],
             *, style: bool, content: Sequence[ContentTerm]):
    """One tile's sums: the style statistic's summary per style layer, and per content term and layer the
    term's sums (:attr:`~nst_jax._src.content_terms.ContentTerm.tile_sum`)."""
    stat = statistic(config)

    def fn(core, row, col):
        out = {}
        if style:
            out["style"] = {name: stat.summary(*core[name]) for name in config.style_layers}
        if content:
            out["content"] = {}
            for term in content:
                out["content"][term.name] = {}
                for name in config.content_layers:
                    f, valid = core[name]
                    context = TileContext((row * f.shape[0], col * f.shape[1]), map_shapes[name],
                                          padded_targets[name])
                    out["content"][term.name][name] = term.tile_sum(f, valid, context)
        return out

    return fn


def _terms_from_sums(sums: Mapping[str, Any], tv: jax.Array, weights: Weights, reference: Mapping[str, Any],
                     targets: Targets, config: LossConfig) -> dict[str, jax.Array]:
    stat = statistic(config)
    content = [[term.summed_loss(sums["content"][term.name][name], targets.content[name], config.loss_units)
                for name in config.content_layers] for term in content_terms(config)] if config.uses_content else []
    style = [stat.summed_loss(sums["style"][name], reference[name], config.loss_units)
             for name in config.style_layers] if config.uses_style else []
    return weighted_terms(weights, content=content, style=style, tv=tv)


def _tiled_pieces(image: jax.Array, targets: Targets, config: LossConfig):
    """The content targets padded to whole tiles, and the content layers' map shapes."""
    if not config.uses_content:
        return {}, {}
    grid = tiled.tile_grid(image.shape, config.tile_size, config.feature_layers)
    padded = {name: tiled.pad_map(targets.content[name], grid, name) for name in config.content_layers}
    shapes = {name: tuple(targets.content[name].shape[:2]) for name in config.content_layers}
    return padded, shapes


def _tiled_terms(image, vgg, targets, weights, reference, config) -> dict[str, jax.Array]:
    padded, shapes = _tiled_pieces(image, targets, config)
    terms = content_terms(config) if config.uses_content else []
    sums = tiled.tile_sums(vgg, image, layers=config.feature_layers, config=config,
                           tile_fn=_tile_fn(config, padded, shapes, style=config.uses_style, content=terms))
    return _terms_from_sums(sums, losses.tv_loss(image, units=config.loss_units), weights, reference, targets, config)


def _tiled_terms_and_grad(image, vgg, targets, weights, reference, config) -> tuple[dict[str, jax.Array], jax.Array]:
    """The terms and the total's gradient ``[H, W, 3]``: a forward pass over the tiles for the style
    statistics and the content terms the loss is not linear in, then one pullback pass
    (:func:`tiled.tile_sums_and_grad`)."""
    padded, shapes = _tiled_pieces(image, targets, config)
    terms = content_terms(config) if config.uses_content else []
    nonlinear = [term for term in terms if not term.linear]
    at = {}
    if config.uses_style or nonlinear:
        layers = tuple(dict.fromkeys((config.style_layers if config.uses_style else ())
                                     + (config.content_layers if nonlinear else ())))
        at = tiled.tile_sums(vgg, image, layers=layers, config=config,
                             tile_fn=_tile_fn(config, padded, shapes, style=config.uses_style, content=nonlinear))
    for term in terms:  # a loss linear in its sums: any point gives their cotangent
        if term.linear:
            at.setdefault("content", {})[term.name] = {name: jnp.zeros((), jnp.float32)
                                                       for name in config.content_layers}
    zero = jnp.zeros((), jnp.float32)
    cotangent = jax.grad(lambda s: _terms_from_sums(s, zero, weights, reference, targets, config)["total"])(at)
    sums, grad = tiled.tile_sums_and_grad(
        vgg, image, layers=config.feature_layers, config=config, cotangent=lax.stop_gradient(cotangent),
        tile_fn=_tile_fn(config, padded, shapes, style=config.uses_style, content=terms))
    tv, tv_grad = jax.value_and_grad(lambda x: losses.tv_loss(x, units=config.loss_units))(image)
    return _terms_from_sums(sums, tv, weights, reference, targets, config), grad + weights.tv * tv_grad


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _tiled_total(image, vgg, targets, weights, reference, config):
    terms = _tiled_terms(image, vgg, targets, weights, reference, config)
    return terms["total"], terms


def _tiled_total_fwd(image, vgg, targets, weights, reference, config):
    terms, grad = _tiled_terms_and_grad(image, vgg, targets, weights, reference, config)
    return (terms["total"], terms), (grad, vgg, targets, weights, reference)


def _tiled_total_bwd(config, residuals, cotangents):
    # Only the image is differentiated; the reported terms' gradient is stopped (evaluate_terms).
    grad, *others = residuals
    zeros = jax.tree_util.tree_map(jnp.zeros_like, tuple(others))
    return (cotangents[0] * grad, *zeros)


_tiled_total.defvjp(_tiled_total_fwd, _tiled_total_bwd)


def evaluate_terms(vgg: VGGParams, image: jax.Array, targets: Targets, weights: Weights, reference: Mapping[str, Any],
                   config: LossConfig) -> dict[str, jax.Array]:
    """:func:`loss_terms` of a checked float32 image and a computed ``reference`` (``{}`` without style).

    Tiled (see :func:`evaluation`), ``jax.grad`` of ``["total"]`` runs the two tile passes of
    :func:`_tiled_terms_and_grad` instead of differentiating through the tile loop; the other
    entries are then reported values whose gradient is stopped.
    """
    if evaluation(config, image.shape) == "tiled":
        total, terms = _tiled_total(image, vgg, targets, weights, reference, config)
        return {**lax.stop_gradient({k: v for k, v in terms.items() if k != "total"}), "total": total}
    return _dense_terms(vgg, image, targets, weights, reference, config)


def loss_terms(
    vgg: VGGParams, image: ArrayLike, targets: Targets, weights: Weights, *, config: LossConfig,
    reference: Mapping[str, Any] | None = None,
) -> dict[str, jax.Array]:
    """Weighted loss terms of one image: ``α·L_content``, ``β·L_style``, ``tv·L_tv`` and their sum.

    Pure and differentiable in ``image`` (``jax.grad`` of ``["total"]``); evaluated in one
    VGG pass, or tile by tile when ``config.tile_size`` is set and smaller than the image
    (same values and gradient; the other terms are then reported values whose gradient is
    stopped).

    Args:
        vgg: VGG-19 parameters.
        image: ``[H, W, 3]`` float RGB being optimised.
        targets: From :func:`compute_targets` for this image's shape and ``config``.
        weights: Loss weights (``learning_rate`` and ``ema_decay`` unused).
        config: Static loss settings.
        reference: :func:`style_reference` of the targets and weights, if already computed.

    Returns:
        ``{"content", "style", "tv", "total"}`` float32 scalars.

    Raises:
        NSTError: On a batched, integer or too small image, or targets of another shape or config.
    """
    check_vgg(vgg)  # first: a params dict here is the likelier mistake than the targets
    check_call(image, targets, weights, config)
    _warn_float32(image)
    if reference is None:
        reference = style_reference(targets, weights, config=config) if config.uses_style else {}
    return evaluate_terms(vgg, jnp.asarray(image, jnp.float32), targets, weights, reference, config)


class LossFn(Protocol):
    """The loss :func:`make_loss` returns."""

    def __call__(self, vgg: VGGParams, image: ArrayLike, targets: Targets,
                 weights: Weights) -> tuple[jax.Array, dict[str, jax.Array]]:
        """``(total, {"content", "style", "tv", "total"})`` of one ``[H, W, 3]`` image."""
        ...


def make_loss(config: LossConfig) -> LossFn:
    """A pure loss function for ``config``, e.g. a perceptual loss inside another model's training.

    Args:
        config: Static loss settings: terms, layers, style statistic, pooling, precision, units.

    Returns:
        ``loss(vgg, image, targets, weights) -> (total, terms)``, where ``image`` is one
        ``[H, W, 3]`` RGB image in [0, 1], ``targets`` come from :func:`compute_targets`
        (with this config) and ``terms`` is ``{"content", "style", "tv", "total"}``. Safe under
        ``jax.jit``, ``jax.grad`` (``has_aux=True``) and ``jax.vmap`` over images (targets and
        weights broadcast or batched alike).
    """
    config = config.loss_config()

    def loss(vgg: VGGParams, image: ArrayLike, targets: Targets, weights: Weights):
        terms = loss_terms(vgg, image, targets, weights, config=config)
        return terms["total"], terms

    return loss
