"""The Gatys objective of one image: targets computed once, then loss terms and their gradient.

The data path: an image's VGG features (:mod:`nst_jax.vgg`) against :class:`Targets` (the
content photo's features and the style images' statistics, :func:`compute_targets`), weighted
by the :class:`~nst_jax.config.LossWeights` pytree into the terms ``α·L_content``,
``β·L_style``, ``tv·L_tv`` and their sum (:func:`loss_terms`). Whether an image is evaluated
in one VGG pass or tile by tile (:mod:`nst_jax.tiled`, for outputs too large for one pass) is
decided here, in :func:`loss_terms`, and nowhere else; both give the same values and gradient.

:func:`make_loss` packages this as a pure function of ``(vgg, image, targets, weights)`` for use
as a perceptual loss in other models; it needs a :class:`~nst_jax.config.LossConfig` only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from nst_jax import checks, losses, tiled
from nst_jax.config import LossConfig, LossWeights
from nst_jax.errors import NSTError
from nst_jax.vgg import VGGParams, check_fits, features, layer_channels, layer_level


class Targets(NamedTuple):
    """What the loss matches, computed once before an optimisation (a pytree of arrays).

    Attributes:
        content: ``{layer: [H_l, W_l, N_l]}`` features of the content photo.
        style: ``{layer: {name: [S, ...]}}`` statistics of each of the ``S`` style images:
            ``"gram": [S, N_l, N_l]`` for ``style_loss="gram"``, Gram matrices scaled by
            ``M_out / M_style`` (with masks: by ``Σ m² / M_style``, the region's squared
            mask mass at that layer) so they compare with the output's Grams; ``"mean": [S, N_l]``
            and ``"cov": [S, N_l, N_l]`` for ``"meancov"`` and ``"w2"``.
        masks: None, or ``{layer: [S, H_l, W_l]}``, the output's region masks downsampled to
            each style layer's grid (:func:`mask_pyramid`).
    """

    content: dict[str, jax.Array]
    style: dict[str, dict[str, jax.Array]]
    masks: dict[str, jax.Array] | None = None


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


def _features(vgg: VGGParams, image: jax.Array, config: LossConfig, layers: Sequence[str]) -> dict[str, jax.Array]:
    return features(vgg, image, layers=layers, pooling=config.pooling, precision=config.precision)


def _grams(vgg: VGGParams, image: jax.Array, config: LossConfig) -> dict[str, tuple[jax.Array, int]]:
    """``{layer: (G, M)}``: each style layer's Gram matrix of one image and the positions it sums over."""
    if tiled.tiles(config, image.shape):
        return tiled.grams(vgg, image, layers=config.style_layers, config=config)
    feats = _features(vgg, image, config, config.style_layers)
    return {name: (losses.gram_matrix(f), f.shape[0] * f.shape[1]) for name, f in feats.items()}


def _as_list(style) -> list:
    return list(style) if isinstance(style, (list, tuple)) else [style]


def compute_targets(
    vgg: VGGParams, *, content: jax.Array | None = None, style: jax.Array | Sequence[jax.Array] | None = None,
    config: LossConfig, output_shape: Sequence[int] | None = None, masks: jax.Array | None = None,
) -> Targets:
    """Content features and style statistics, computed once (outside any optimisation loop).

    Args:
        vgg: VGG-19 parameters (:func:`nst_jax.load_vgg19`).
        content: ``[H, W, 3]`` content photo, float RGB in [0, 1] (used when ``config`` has a
            content term).
        style: ``[H_s, W_s, 3]`` style image, or a sequence of ``config.num_styles`` of them
            (sizes may differ; used when ``config`` has a style term).
        config: Static loss settings (a :class:`~nst_jax.config.StylizeConfig` is one too).
        output_shape: ``(H, W, 3)`` of the image the targets will be compared with; the
            content's shape by default (required in style mode).
        masks: Optional ``[S, H, W]`` region masks at the output size, one per style image.

    Returns:
        The targets.

    Raises:
        NSTError: On a missing, batched, integer or too small image, or a miscounted style list.
    """
    content_targets, style_targets, mask_targets = {}, {}, None
    if config.uses_content:
        if content is None:
            raise NSTError(f"{config.mode} mode needs a content image")
        shape = checks.check_image(content, "content image")
        check_fits(shape, config.content_layers, "content image")
        content = jnp.asarray(content, jnp.float32)
        output_shape = tuple(shape) if output_shape is None else tuple(output_shape)
        if tiled.tiles(config, content.shape):
            content_targets = tiled.features(vgg, content, layers=config.content_layers, config=config)
        else:
            content_targets = _features(vgg, content, config, config.content_layers)
    if config.uses_style:
        if style is None:
            raise NSTError(f"{config.mode} mode needs a style image")
        styles = _as_list(style)
        if len(styles) != config.num_styles:
            raise NSTError(f"{len(styles)} style images given, config.num_styles is {config.num_styles}")
        for s in styles:
            check_fits(checks.check_image(s, "style image"), config.style_layers, "style image")
        styles = [jnp.asarray(s, jnp.float32) for s in styles]
        if output_shape is None:
            output_shape = tuple(styles[0].shape)
        check_fits(output_shape, config.style_layers, "output")
        out_shapes = {name: layer_shape(output_shape, name) for name in config.style_layers}
        if masks is not None:
            mask_targets = mask_pyramid(jnp.asarray(masks, jnp.float32), out_shapes)
        if config.style_loss == "gram":
            per_style = [_grams(vgg, s, config) for s in styles]
        else:
            per_style = [_features(vgg, s, config, config.style_layers) for s in styles]
        for name in config.style_layers:
            stats = {}
            if config.style_loss == "gram":
                m_out = out_shapes[name][0] * out_shapes[name][1]
                grams = []
                for k, style_grams in enumerate(per_style):
                    gram, positions = style_grams[name]
                    mass = m_out if mask_targets is None else jnp.sum(jnp.square(mask_targets[name][k]))
                    grams.append(gram * (mass / positions))
                stats["gram"] = jnp.stack(grams)
            else:
                means, covs = zip(*(losses.feature_stats(feats[name]) for feats in per_style), strict=True)
                stats["mean"], stats["cov"] = jnp.stack(means), jnp.stack(covs)
            style_targets[name] = stats
    return Targets(content_targets, style_targets, mask_targets)


def style_reference(targets: Targets, weights: LossWeights, *, config: LossConfig) -> dict[str, dict]:
    """The statistics the style loss compares with, from the targets and the dynamic blend.

    Without masks the ``S`` styles are blended into one reference: the statistics of the
    mixture of the styles' feature distributions with weights ``b = style_blend / Σ style_blend``
    (Gram: ``Σ b_k A_k``; mean ``Σ b_k μ_k``; covariance ``Σ b_k (C_k + μ_k μ_kᵀ) − μμᵀ``). For
    the Gram loss in paper units this equals summing per-style losses ``Σ b_k E(G, A_k)`` up to
    a constant, so the gradients are the same. With masks each region keeps its own style's
    statistics. For ``"w2"`` the square roots of the reference covariances are added
    (``"cov_sqrt"``). Constant during a run: the stylizer computes it once, at ``init``.

    Returns:
        ``{layer: {name: array}}``: ``[N, ...]`` statistics without masks, ``[S, N, ...]`` with.
    """
    b = weights.style_blend / jnp.sum(weights.style_blend)
    out = {}
    for name, stats in targets.style.items():
        if targets.masks is not None:
            ref = dict(stats)
        elif config.style_loss == "gram":
            ref = {"gram": jnp.tensordot(b, stats["gram"], 1)}
        else:
            mean = jnp.tensordot(b, stats["mean"], 1)
            second = jnp.tensordot(b, stats["cov"] + stats["mean"][:, :, None] * stats["mean"][:, None, :], 1)
            ref = {"mean": mean, "cov": second - jnp.outer(mean, mean)}
        if config.style_loss == "w2":
            ref["cov_sqrt"] = (jax.vmap(losses.sqrtm_psd) if ref["cov"].ndim == 3 else losses.sqrtm_psd)(ref["cov"])
        out[name] = ref
    return out


def _style_layer(features: jax.Array, ref: Mapping[str, jax.Array], config: LossConfig,
                 mask: jax.Array | None = None) -> jax.Array:
    units = config.loss_units
    if config.style_loss == "gram":
        f = features if mask is None else features * mask[:, :, None]
        h, w, _ = features.shape
        return losses.gram_layer_loss(losses.gram_matrix(f), ref["gram"], num_positions=h * w, units=units)
    if config.style_loss == "meancov":
        return losses.meancov_layer_loss(features, ref["mean"], ref["cov"], mask, units=units)
    return losses.w2_layer_loss(features, ref["mean"], ref["cov"], ref["cov_sqrt"], mask, units=units)


def style_term(
    features: Mapping[str, jax.Array], targets: Targets, reference: Mapping[str, Mapping[str, jax.Array]],
    weights: LossWeights, *, config: LossConfig,
) -> jax.Array:
    """``Σ_l w_l E_l`` for ``config.style_loss`` (unweighted by β).

    With masks (Gatys et al. 2017, guided Gram matrices) ``E_l = Σ_k S b_k E_l^{(k)}``, region
    ``k``'s features (Gram: ``F ⊙ m_k``; mean/covariance: weighted by ``m_k``) compared with
    style ``k``'s statistics; equal blend weights give each region weight 1.
    """
    total = jnp.zeros((), jnp.float32)
    b = weights.style_blend / jnp.sum(weights.style_blend)
    for i, name in enumerate(config.style_layers):
        ref = reference[name]
        if targets.masks is None:
            e = _style_layer(features[name], ref, config)
        else:
            e = sum(config.num_styles * b[k] * _style_layer(
                features[name], {key: v[k] for key, v in ref.items()}, config, targets.masks[name][k])
                for k in range(config.num_styles))
        total = total + weights.style_layers[i] * e
    return total


def _check_call(image, targets: Targets, weights: LossWeights, config: LossConfig) -> None:
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
    if config.uses_style:
        if set(targets.style) != set(config.style_layers):
            raise NSTError("the targets hold no style statistics for this config's style layers; "
                           "compute them with the same config")
        checks.check_layer_weights(weights.style_layers, config.style_layers, "style")


def dense_terms(
    vgg: VGGParams, image: jax.Array, targets: Targets, weights: LossWeights, reference: Mapping | None, *,
    config: LossConfig,
) -> dict[str, jax.Array]:
    """The weighted loss terms of one image from one VGG pass (see :func:`loss_terms`)."""
    feats = _features(vgg, image, config, config.feature_layers)
    zero = jnp.zeros((), jnp.float32)
    units = config.loss_units
    content = zero
    if config.uses_content:
        content = weights.content * sum(
            weights.content_layers[i] * losses.content_loss(feats[name], targets.content[name], units=units)
            for i, name in enumerate(config.content_layers))
    style = zero
    if config.uses_style:
        style = weights.style * style_term(feats, targets, reference, weights, config=config)
    tv = weights.tv * losses.tv_loss(image, units=units)
    return {"content": content, "style": style, "tv": tv, "total": content + style + tv}


def loss_terms(
    vgg: VGGParams, image: jax.Array, targets: Targets, weights: LossWeights, *, config: LossConfig,
    reference: Mapping | None = None,
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
    _check_call(image, targets, weights, config)
    image = jnp.asarray(image, jnp.float32)
    if config.uses_style and reference is None:
        reference = style_reference(targets, weights, config=config)
    if tiled.tiles(config, image.shape):
        return tiled.differentiable_terms(image, vgg, targets, weights, reference, config)
    return dense_terms(vgg, image, targets, weights, reference, config=config)


def make_loss(config: LossConfig) -> Callable[..., tuple[jax.Array, dict[str, jax.Array]]]:
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

    def loss(vgg: VGGParams, image: jax.Array, targets: Targets, weights: LossWeights):
        terms = loss_terms(vgg, image, targets, weights, config=config)
        return terms["total"], terms

    return loss

