"""One compiled Gatys optimisation over the pixels of an image.

Static choices (modes, layers, optimiser, step counts) live in the frozen
:class:`StylizeConfig`; everything numeric a sweep may vary (loss weights,
per-layer weights, learning rate) lives in the :class:`LossWeights` pytree.
The optimisation runs as chunks of ``config.chunk_size`` steps, each chunk one
``lax.fori_loop`` inside one compiled function that takes the VGG params as an
argument; the host calls it repeatedly for progress and intermediate saves,
without retracing.

Pixel range: the image is optimised unconstrained (L-BFGS's curvature pairs
assume no projection) and clipped to [0, 1] only when written out.

Numerics: after every chunk the loss terms, the per-step totals and the image
are checked; anything not finite stops the run with a
:class:`~nst_jax.errors.NumericalError` carrying the last finite image.

Checkpoints: :meth:`Progress.checkpoint` snapshots a run between chunks and
``stylize(resume=...)`` continues it; chunks are deterministic and the same
compiled program runs any step count, so a resumed run is bitwise equal to an
uninterrupted one (same platform, same config).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nst_jax import checkpoint as ckpt
from nst_jax import linesearch, losses, tiled
from nst_jax.errors import NSTError, NumericalError
from nst_jax.vgg import POOLINGS, PRECISIONS, check_layers, extract_features

MODES = ("transfer", "content", "style")
OPTIMIZERS = ("lbfgs", "adam")
INITS = ("noise", "content", "image")
TERMS = ("content", "style", "tv", "total")
STYLE_LOSSES = ("gram", "meancov", "w2")
COLOURS = ("none", "luminance", "match")

# Per-step history entries (kept as lists of per-chunk arrays while running) and their dtypes.
PER_STEP = {"total_per_step": np.float32, "evaluations_per_step": np.int32}

# How often each compiled function's Python body has been traced (tests check chunks never retrace).
TRACE_COUNTS: collections.Counter = collections.Counter()


@dataclasses.dataclass(frozen=True)
class StylizeConfig:
    """Static settings of one optimisation (hashable; a jit static argument).

    Attributes:
        mode: ``"transfer"`` (content + style), ``"content"`` (reconstruct the
            content photo from its features alone) or ``"style"`` (texture
            synthesis from the style Grams alone).
        content_layers: Layers whose features the content loss matches.
        style_layers: Layers whose Gram matrices the style loss matches.
        pooling: ``"max"`` or ``"avg"``.
        optimizer: ``"lbfgs"`` (optax's L-BFGS direction with the vmap-friendly strong-Wolfe
            line search of :mod:`nst_jax.linesearch`) or ``"adam"``.
        iterations: Optimiser steps (one L-BFGS step may evaluate the loss
            more than once in its line search).
        chunk_size: Steps per compiled chunk; progress is reported and
            intermediate images can be saved between chunks.
        init: ``"noise"`` (Gaussian white noise around mid-grey from the seed, see
            ``noise_scale``), ``"content"`` (the content photo) or ``"image"`` (a given image).
        noise_scale: Standard deviation of the white noise start ``0.5 + noise_scale * N(0, 1)``.
            A small amplitude matters: the loss does not see every pixel pattern (pooling,
            ReLUs), and what it cannot see stays as it started. Measured on the content
            reconstruction from relu2_1 (Tübingen, 128 px, 200 L-BFGS steps): PSNR 15.7 dB
            from uniform [0, 1] noise, 29.9 dB at 0.01, 32.4 dB at 0.001.
        lbfgs_memory: Number of curvature pairs L-BFGS keeps.
        precision: ``"fp32"``, or ``"bf16"``: VGG convolutions multiply in bf16
            with float32 accumulation; the image, Gram matrices and losses stay float32.
        style_loss: Style statistics matched per layer: ``"gram"`` (the paper's Gram
            matrices, eq. 4), ``"meancov"`` (mean and covariance,
            :func:`~nst_jax.losses.meancov_layer_loss`) or ``"w2"`` (Wasserstein-2 distance
            between Gaussian fits, :func:`~nst_jax.losses.w2_layer_loss`).
        num_styles: Number of style images. Without masks their statistics are blended with
            ``LossWeights.style_blend`` (see :func:`style_reference`); with masks, style ``k``
            governs region ``k`` of the output.
        style_scale: If set, each style image is resized (before its statistics are taken)
            so its longest side is ``style_scale`` times the output's longest side; larger
            values give larger brush strokes. None uses the style images as given.
        preserve_colour: ``"none"`` (the style's colours), ``"luminance"`` (luminance-only
            transfer, the content's chroma kept) or ``"match"`` (the style's colours matched
            to the content's mean and covariance first); see :mod:`nst_jax.colour`.
        tile_size: 0 (off), or the core size ``T`` of square tiles in which the loss, its
            gradient and the targets are evaluated (:mod:`nst_jax.tiled`): the same values up
            to float32 rounding, with VGG activation memory of one ``T + 2 * halo`` tile
            instead of the whole image, at about ``((T + 2 halo) / T)²`` times the compute
            (halo 96 px for layers up to conv5_1). A multiple of 16 (32 with pool5); Gram
            style loss only, no region masks.
    """

    mode: str = "transfer"
    content_layers: tuple[str, ...] = ("relu4_2",)
    style_layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    pooling: str = "max"
    optimizer: str = "lbfgs"
    iterations: int = 500
    chunk_size: int = 10
    init: str = "noise"
    lbfgs_memory: int = 10
    precision: str = "fp32"
    noise_scale: float = 1e-3
    style_loss: str = "gram"
    num_styles: int = 1
    style_scale: float | None = None
    preserve_colour: str = "none"
    tile_size: int = 0

    def __post_init__(self):
        for field in ("content_layers", "style_layers"):
            object.__setattr__(self, field, tuple(getattr(self, field)))
        if self.mode not in MODES:
            raise NSTError(f"unknown mode {self.mode!r} (choose from {', '.join(MODES)})")
        if self.optimizer not in OPTIMIZERS:
            raise NSTError(f"unknown optimizer {self.optimizer!r} (choose from {', '.join(OPTIMIZERS)})")
        if self.init not in INITS:
            raise NSTError(f"unknown init {self.init!r} (choose from {', '.join(INITS)})")
        if self.pooling not in POOLINGS:
            raise NSTError(f"unknown pooling {self.pooling!r} (choose from {', '.join(POOLINGS)})")
        if self.uses_content and not self.content_layers:
            raise NSTError("at least one content layer is needed")
        if self.uses_style and not self.style_layers:
            raise NSTError("at least one style layer is needed")
        check_layers(self.content_layers + self.style_layers)
        if not 1 <= self.iterations <= 1_000_000:
            raise NSTError(f"iterations must be between 1 and 1000000, got {self.iterations}")
        if not 1 <= self.chunk_size <= 100_000:
            raise NSTError(f"chunk size must be between 1 and 100000, got {self.chunk_size}")
        if self.precision not in PRECISIONS:
            raise NSTError(f"unknown precision {self.precision!r} (choose from {', '.join(PRECISIONS)})")
        if not (math.isfinite(self.noise_scale) and self.noise_scale >= 0):
            raise NSTError(f"noise scale must be a finite number >= 0, got {self.noise_scale}")
        if self.lbfgs_memory < 1:
            raise NSTError(f"L-BFGS memory must be at least 1, got {self.lbfgs_memory}")
        if self.mode == "style" and self.init == "content":
            raise NSTError("style mode has no content image to initialise from")
        if self.style_loss not in STYLE_LOSSES:
            raise NSTError(f"unknown style loss {self.style_loss!r} (choose from {', '.join(STYLE_LOSSES)})")
        if self.preserve_colour not in COLOURS:
            raise NSTError(f"unknown colour option {self.preserve_colour!r} (choose from {', '.join(COLOURS)})")
        if self.preserve_colour != "none" and self.mode != "transfer":
            raise NSTError("keeping the content's colours needs transfer mode")
        if not 1 <= self.num_styles <= 64:
            raise NSTError(f"the number of style images must be between 1 and 64, got {self.num_styles}")
        if self.style_scale is not None:
            object.__setattr__(self, "style_scale", float(self.style_scale))
            if not (math.isfinite(self.style_scale) and 0.05 <= self.style_scale <= 8):
                raise NSTError(f"style scale must be between 0.05 and 8, got {self.style_scale}")
        if self.tile_size:
            align = tiled.tile_alignment(self.feature_layers)
            if not (isinstance(self.tile_size, int) and self.tile_size > 0 and self.tile_size % align == 0):
                raise NSTError(f"tile size must be 0 (off) or a positive multiple of {align}, got {self.tile_size}")
            if self.uses_style and self.style_loss != "gram":
                raise NSTError(f"tiled evaluation supports only the Gram style loss, not {self.style_loss!r}")

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


class LossWeights(NamedTuple):
    """Dynamic numbers of the loss and optimiser: a pytree of float32 arrays.

    Every leaf can carry a leading batch axis for a vmapped sweep.

    Attributes:
        content: α, the content loss weight.
        style: β, the style loss weight.
        tv: Weight of the total-variation term.
        content_layers: ``[len(config.content_layers)]`` per-layer content weights.
        style_layers: ``[len(config.style_layers)]`` per-layer style weights ``w_l``.
        learning_rate: Adam's step size in [0, 1] pixel units (L-BFGS uses a line search).
        style_blend: ``[config.num_styles]`` blend weights of the style images, normalised
            to sum 1 where used (so ``0.7, 0.3`` and ``7, 3`` are the same blend).
        ema_decay: Decay ``d`` of the exponential moving average of the image over steps,
            which is the output: ``e_t = d e_{t-1} + (1 − d) x_t``, ``e_0 = 0``, output
            ``e_t / (1 − dᵗ)`` (bias-corrected, so the start image has no weight). 0 turns
            it off (the output is the last iterate, exactly).
    """

    content: jax.Array
    style: jax.Array
    tv: jax.Array
    content_layers: jax.Array
    style_layers: jax.Array
    learning_rate: jax.Array
    style_blend: jax.Array
    ema_decay: jax.Array


def loss_weights(
    config: StylizeConfig,
    *,
    content_weight: float = 1.0,
    style_weight: float = 30.0,
    tv_weight: float = 1e4,
    content_layer_weights: Any = None,
    style_layer_weights: Any = None,
    learning_rate: float = 2e-2,
    style_blend: Any = None,
    ema_decay: float = 0.0,
) -> LossWeights:
    """Builds :class:`LossWeights`; the defaults here are the library's (and the CLI's).

    Loss units are those of the shipped (un-normalised, Caffe-scale) VGG-19: with the
    paper's normalisations (eqs. 1, 4), α = 1 and β = 30 give a balanced transfer at
    256 px (tuned on Tübingen / Starry Night). The content term is a sum over positions
    and grows with the pixel count while the style term does not, so at 512 px β ≈ 100
    keeps the same balance. The TV term (a sum of squared neighbour differences of the
    [0, 1] image) at 1e4 is under 1% of the total and smooths pixel noise. Per-layer
    weights default to ``1 / L`` for style (the paper's ``w_l = 1/5``) and 1 for content.
    For ``style_loss="w2"`` (feature² units) a style weight about 1e3-1e4 times the
    Gram loss's looked comparable at 128-192 px. The style blend defaults to equal weights.

    Raises:
        NSTError: If a per-layer weights list does not match its layer list, or a weight is negative or not finite.
    """
    def layer_array(values, layers, default, what):
        if values is None:
            return np.full(len(layers), default, np.float32)
        arr = np.asarray(values, np.float32).reshape(-1)
        if arr.shape != (len(layers),):
            raise NSTError(f"{len(arr)} {what} layer weights given for {len(layers)} {what} layers")
        return arr

    cw = layer_array(content_layer_weights, config.content_layers, 1.0, "content")
    sw = layer_array(style_layer_weights, config.style_layers, 1.0 / max(len(config.style_layers), 1), "style")
    if style_blend is None:
        blend = np.full(config.num_styles, 1.0 / config.num_styles, np.float32)
    else:
        blend = np.asarray(style_blend, np.float32).reshape(-1)
        if blend.shape != (config.num_styles,):
            raise NSTError(f"{len(blend)} style blend weights given for {config.num_styles} style images")
        if not (np.isfinite(blend).all() and (blend >= 0).all() and blend.sum() > 0):
            raise NSTError(f"style blend weights must be finite, >= 0 and not all 0, got {blend.tolist()}")
    if not (math.isfinite(float(ema_decay)) and 0.0 <= float(ema_decay) < 1.0):
        raise NSTError(f"EMA decay must be in [0, 1), got {ema_decay}")
    scalars = {"content weight": content_weight, "style weight": style_weight, "tv weight": tv_weight,
               "learning rate": learning_rate}
    for name, value in list(scalars.items()) + [("content layer weight", v) for v in cw] + [
            ("style layer weight", v) for v in sw]:
        if not (math.isfinite(float(value)) and float(value) >= 0):
            raise NSTError(f"{name} must be a finite number >= 0, got {value}")
    return LossWeights(
        content=jnp.float32(content_weight), style=jnp.float32(style_weight), tv=jnp.float32(tv_weight),
        content_layers=jnp.asarray(cw), style_layers=jnp.asarray(sw), learning_rate=jnp.float32(learning_rate),
        style_blend=jnp.asarray(blend), ema_decay=jnp.float32(ema_decay))


class Targets(NamedTuple):
    """What the loss matches, computed once before the optimisation.

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


class RunState(NamedTuple):
    """The optimisation's carry: image ``[H, W, 3]``, optimiser state, step counter and the
    (not bias-corrected) moving average of the image (see ``LossWeights.ema_decay``)."""

    image: jax.Array
    opt_state: Any
    step: jax.Array
    ema: jax.Array


def _features(params, image, config: StylizeConfig, convention: str, layers=None):
    return extract_features(params, image, layers=layers or config.feature_layers, convention=convention,
                            pooling=config.pooling, precision=config.precision)


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


def _style_grams(params, image, config: StylizeConfig, convention: str) -> dict[str, tuple[jax.Array, int]]:
    """``{layer: (G, M)}``: each style layer's Gram matrix of one image and the positions it sums over."""
    if tiled.tiles(config, image.shape):
        return tiled.grams(params, image, layers=config.style_layers, config=config, convention=convention)
    feats = _features(params, image, config, convention, config.style_layers)
    return {name: (losses.gram_matrix(f), f.shape[0] * f.shape[1]) for name, f in feats.items()}


@functools.partial(jax.jit, static_argnames=("config", "convention", "output_shape"))
def compute_targets(
    params: Mapping, content: jax.Array | None, style: jax.Array | Sequence[jax.Array] | None, *,
    config: StylizeConfig, convention: str, output_shape: tuple[int, int, int], masks: jax.Array | None = None,
) -> Targets:
    """Content features and style statistics, computed once (outside the optimisation loop).

    Args:
        params: VGG-19 params.
        content: ``[H, W, 3]`` content photo in [0, 1] (ignored in style mode).
        style: ``[H_s, W_s, 3]`` style image in [0, 1], or a sequence of ``config.num_styles``
            of them (sizes may differ; ignored in content mode).
        config: Static settings.
        convention: The weights' input convention.
        output_shape: ``(H, W, 3)`` of the image to be optimised.
        masks: Optional ``[S, H, W]`` region masks at the output size, one per style image.

    Returns:
        The targets.
    """
    content_targets, style_targets, mask_targets = {}, {}, None
    if config.uses_content:
        if tiled.tiles(config, content.shape):
            content_targets = tiled.features(params, content, layers=config.content_layers, config=config,
                                             convention=convention)
        else:
            content_targets = _features(params, content, config, convention, config.content_layers)
    if config.uses_style:
        styles = [style] if not isinstance(style, (list, tuple)) else list(style)
        if len(styles) != config.num_styles:
            raise NSTError(f"{len(styles)} style images given, config.num_styles is {config.num_styles}")
        out_shapes = jax.eval_shape(
            lambda x: _features(params, x, config, convention, config.style_layers),
            jax.ShapeDtypeStruct(output_shape, jnp.float32))
        if masks is not None:
            mask_targets = mask_pyramid(jnp.asarray(masks, jnp.float32),
                                        {k: v.shape for k, v in out_shapes.items()})
        if config.style_loss == "gram":
            per_style = [_style_grams(params, s, config, convention) for s in styles]
        else:
            per_style = [_features(params, s, config, convention, config.style_layers) for s in styles]
        for name in config.style_layers:
            stats = {}
            if config.style_loss == "gram":
                m_out = out_shapes[name].shape[0] * out_shapes[name].shape[1]
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


def style_reference(targets: Targets, weights: LossWeights, *, config: StylizeConfig) -> dict[str, dict]:
    """The statistics the style loss compares with, from the targets and the dynamic blend.

    Without masks the ``S`` styles are blended into one reference: the statistics of the
    mixture of the styles' feature distributions with weights ``b = style_blend / Σ style_blend``
    (Gram: ``Σ b_k A_k``; mean ``Σ b_k μ_k``; covariance ``Σ b_k (C_k + μ_k μ_kᵀ) − μμᵀ``). For
    the Gram loss this equals summing per-style losses ``Σ b_k E(G, A_k)`` up to a constant,
    so the gradients are the same. With masks each region keeps its own style's statistics.
    For ``"w2"`` the square roots of the reference covariances are added (``"cov_sqrt"``).
    Computed once per chunk, outside the step loop.

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


def _style_layer(features: jax.Array, ref: Mapping[str, jax.Array], config: StylizeConfig,
                 mask: jax.Array | None = None) -> jax.Array:
    if config.style_loss == "gram":
        f = features if mask is None else features * mask[:, :, None]
        h, w, _ = features.shape
        return losses.gram_layer_loss(losses.gram_matrix(f), ref["gram"], num_positions=h * w)
    if config.style_loss == "meancov":
        return losses.meancov_layer_loss(features, ref["mean"], ref["cov"], mask)
    return losses.w2_layer_loss(features, ref["mean"], ref["cov"], ref["cov_sqrt"], mask)


def style_term(
    features: Mapping[str, jax.Array], targets: Targets, reference: Mapping[str, Mapping[str, jax.Array]],
    weights: LossWeights, *, config: StylizeConfig,
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


def loss_terms(
    image: jax.Array, params: Mapping, targets: Targets, weights: LossWeights, *,
    config: StylizeConfig, convention: str, reference: Mapping | None = None,
) -> dict[str, jax.Array]:
    """Weighted loss terms of one image: ``α·L_content``, ``β·L_style``, ``tv·L_tv`` and their sum.

    Args:
        image: ``[H, W, 3]`` RGB being optimised.
        params: VGG-19 params.
        targets: From :func:`compute_targets`.
        weights: Dynamic weights.
        config: Static settings.
        convention: The weights' input convention.
        reference: :func:`style_reference` of the targets and weights, if already computed.

    Returns:
        ``{"content", "style", "tv", "total"}`` scalars.
    """
    feats = _features(params, image, config, convention)
    zero = jnp.zeros((), image.dtype)
    content = zero
    if config.uses_content:
        content = weights.content * sum(
            weights.content_layers[i] * losses.content_loss(feats[name], targets.content[name])
            for i, name in enumerate(config.content_layers))
    style = zero
    if config.uses_style:
        if reference is None:
            reference = style_reference(targets, weights, config=config)
        style = weights.style * style_term(feats, targets, reference, weights, config=config)
    tv = weights.tv * losses.tv_loss(image)
    return {"content": content, "style": style, "tv": tv, "total": content + style + tv}


def make_optimizer(config: StylizeConfig, weights: LossWeights) -> optax.GradientTransformationExtraArgs:
    """The optax transformation for ``config.optimizer`` (Adam reads its step size from ``weights``)."""
    if config.optimizer == "adam":
        return optax.adam(weights.learning_rate)
    return optax.chain(optax.scale_by_lbfgs(memory_size=config.lbfgs_memory), optax.scale(-1.0),
                       linesearch.scale_by_wolfe_linesearch())


@functools.partial(jax.jit, static_argnames=("config",))
def init_state(image: jax.Array, weights: LossWeights, *, config: StylizeConfig) -> RunState:
    """The optimisation state at step 0 for a starting image ``[H, W, 3]``."""
    return RunState(image, make_optimizer(config, weights).init(image), jnp.zeros((), jnp.int32),
                    jnp.zeros_like(image))


def output_image(state: RunState, weights: LossWeights) -> jax.Array:
    """The image a run outputs (unclipped): the bias-corrected moving average ``e_t / (1 − dᵗ)``,
    or the start image at step 0; with ``ema_decay = 0`` exactly the last iterate."""
    d = weights.ema_decay
    corrected = state.ema / (1.0 - jnp.power(d, state.step.astype(jnp.float32)))
    return jnp.where(state.step == 0, state.image, corrected)


def _run_chunk(
    state: RunState, params: Mapping, targets: Targets, weights: LossWeights, num_steps: jax.Array, *,
    config: StylizeConfig, convention: str,
) -> tuple[RunState, jax.Array, dict[str, jax.Array]]:
    """Runs ``num_steps <= config.chunk_size`` optimiser steps as one ``lax.fori_loop``.

    Returns:
        The new state; per-step records ``{"total": [chunk_size] float32, "evaluations":
        [chunk_size] int32}``, the total loss at the start of each step and the number of
        loss-and-gradient evaluations the step made (entries past ``num_steps`` are NaN / 0),
        plus ``"start"``: the terms at the start of the chunk's first step where that step
        evaluated them (always for Adam; for L-BFGS at step 0 only, later steps reuse the line
        search's value), else NaN, so a run learns its initial loss without a separate pass;
        and the loss terms at the new iterate (``state.image``, not the moving average).
    """
    TRACE_COUNTS["run_chunk"] += 1
    optimizer = make_optimizer(config, weights)
    reference = style_reference(targets, weights, config=config) if config.uses_style else None

    def terms_fn(image):
        if tiled.tiles(config, image.shape):  # same values and gradient, evaluated tile by tile
            terms = tiled.differentiable_terms(image, params, targets, weights, reference, config, convention)
        else:
            terms = loss_terms(image, params, targets, weights, config=config, convention=convention,
                               reference=reference)
        return terms["total"], terms

    def value_fn(image):
        return terms_fn(image)[0]

    value_and_grad = jax.value_and_grad(terms_fn, has_aux=True)
    unknown = {name: jnp.full((), jnp.nan, jnp.float32) for name in TERMS}

    def cached_value_and_grad(state):
        # L-BFGS reuses the value and gradient its line search computed at the accepted
        # point; only step 0 has none yet. Deciding on the step counter (shared by all
        # members of a sweep, which vmaps it unbatched) keeps this a real branch under vmap.
        return jax.lax.cond(
            state.step == 0, lambda: value_and_grad(state.image),
            lambda: ((optax.tree_utils.tree_get(state.opt_state, "value"), unknown),
                     optax.tree_utils.tree_get(state.opt_state, "grad")))

    def body(i, carry):
        state, records = carry
        if config.optimizer == "lbfgs":
            (value, terms), grad = cached_value_and_grad(state)
            updates, opt_state = optimizer.update(
                grad, state.opt_state, state.image, value=value, grad=grad, value_fn=value_fn)
            # Line-search evaluations, plus the initial one before any value is cached.
            evaluations = optax.tree_utils.tree_get(opt_state, "num_linesearch_steps") + (state.step == 0)
        else:
            (value, terms), grad = value_and_grad(state.image)
            updates, opt_state = optimizer.update(grad, state.opt_state, state.image)
            evaluations = 1
        image = optax.apply_updates(state.image, updates)
        ema = weights.ema_decay * state.ema + (1.0 - weights.ema_decay) * image
        records = {"total": records["total"].at[i].set(value),
                   "evaluations": records["evaluations"].at[i].set(evaluations),
                   "start": jax.tree_util.tree_map(lambda new, old: jnp.where(i == 0, new, old),
                                                   terms, records["start"])}
        return RunState(image, opt_state, state.step + 1, ema), records

    records = {"total": jnp.full((config.chunk_size,), jnp.nan, jnp.float32),
               "evaluations": jnp.zeros((config.chunk_size,), jnp.int32),
               "start": unknown}
    state, records = jax.lax.fori_loop(0, num_steps, body, (state, records))
    terms = (tiled.loss_terms if tiled.tiles(config, state.image.shape) else loss_terms)(
        state.image, params, targets, weights, config=config, convention=convention, reference=reference)
    return state, records, terms


run_chunk = jax.jit(_run_chunk, static_argnames=("config", "convention"), donate_argnames=("state",))


def history_arrays(history: Mapping[str, list]) -> dict[str, np.ndarray]:
    """The running history as arrays: per-chunk lists of :data:`PER_STEP` entries concatenated."""
    out = {k: np.asarray(v) for k, v in history.items() if k not in PER_STEP}
    for name, dtype in PER_STEP.items():
        out[name] = np.concatenate([np.zeros(0, dtype), *history[name]])
    return out


@dataclasses.dataclass
class Progress:
    """What a callback sees after each chunk.

    Attributes:
        step: Steps done so far.
        iterations: Total steps of the run.
        terms: ``{"content", "style", "tv", "total"}`` floats at the current iterate.
        image: ``[H, W, 3]`` the current output: the moving average if ``ema_decay > 0``
            (unclipped), recombined with the content's chroma in luminance mode (clipped).
        seconds: Wall time of the optimisation so far, compilation excluded.
        state: The full optimisation state (valid until the callback returns:
            the next chunk donates its buffers).
        history: The loss history so far (lists; see :class:`StylizeResult`).
        run: The run record (:func:`nst_jax.checkpoint.run_record`).
    """

    step: int
    iterations: int
    terms: dict[str, float]
    image: jax.Array
    seconds: float
    state: RunState | None = None
    history: dict[str, list] | None = None
    run: dict[str, Any] | None = None

    def checkpoint(self, notes: Mapping[str, Any] | None = None) -> ckpt.Checkpoint:
        """A host copy of this point of the run, for :func:`nst_jax.checkpoint.save_checkpoint`."""
        leaves = [np.asarray(leaf) for leaf in jax.device_get(jax.tree_util.tree_leaves(self.state))]
        return ckpt.Checkpoint(self.step, leaves, history_arrays(self.history), self.run, dict(notes or {}))


@dataclasses.dataclass
class StylizeResult:
    """Result of :func:`stylize`.

    Attributes:
        image: ``[H, W, 3]`` float32 numpy RGB, clipped to [0, 1].
        history: ``{"step": [K], "content": [K], "style": [K], "tv": [K], "total": [K]}``
            weighted loss terms at step 0 and after every chunk, plus
            ``"total_per_step": [iterations]``, the total at the start of each step, and
            ``"evaluations_per_step": [iterations]``, loss-and-gradient evaluations of each step.
        compile_seconds: Time spent tracing and compiling.
        run_seconds: Time spent in the optimisation loop.
    """

    image: np.ndarray
    history: dict[str, np.ndarray]
    compile_seconds: float
    run_seconds: float

    @property
    def seconds_per_iteration(self) -> float:
        return self.run_seconds / max(int(self.history["step"][-1]), 1)


def initial_image(
    config: StylizeConfig, shape: tuple[int, int, int], *, seed: int = 0,
    content: np.ndarray | None = None, image: np.ndarray | None = None,
) -> jax.Array:
    """The starting image ``[H, W, 3]`` for ``config.init``."""
    if config.init == "noise":
        return 0.5 + config.noise_scale * jax.random.normal(jax.random.key(seed), shape, jnp.float32)
    source = content if config.init == "content" else image
    if source is None:
        raise NSTError(f"init {config.init!r} needs {'a content' if config.init == 'content' else 'an init'} image")
    if tuple(source.shape) != tuple(shape):
        raise NSTError(f"init image has shape {tuple(source.shape)}, expected {tuple(shape)}")
    return jnp.asarray(source, jnp.float32)


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
    config: StylizeConfig, *, content: np.ndarray | None = None, style: Any = None,
    init: np.ndarray | None = None, masks: Any = None,
) -> Inputs:
    """Checks the inputs against ``config`` and applies the input-side quality controls.

    In order: the output shape (content's; else the init's; else the first style's), the
    style images resized for ``config.style_scale`` (relative to the output's longest side),
    ``preserve_colour="match"`` (each style's colours matched to the content's),
    ``"luminance"`` (content, styles and init replaced by grey luminance images, the styles'
    luminance matched to the content's mean and standard deviation), masks resized to the
    output size.

    Raises:
        NSTError: On a missing or miscounted input, or masks of the wrong count.
    """
    from nst_jax import colour

    if config.uses_content and content is None:
        raise NSTError(f"{config.mode} mode needs a content image")
    styles = None
    if config.uses_style:
        if style is None:
            raise NSTError(f"{config.mode} mode needs a style image")
        styles = [np.asarray(s, np.float32) for s in (style if isinstance(style, (list, tuple)) else [style])]
        if len(styles) != config.num_styles:
            raise NSTError(f"{len(styles)} style images given for config.num_styles = {config.num_styles}")
    if config.uses_content:
        shape = tuple(content.shape)
    elif init is not None:
        shape = tuple(init.shape)
    else:
        shape = tuple(styles[0].shape)
    if styles is not None and config.style_scale is not None:
        longest = round(config.style_scale * max(shape[:2]))
        styles = [colour.resize(s, colour.shape_for_longest(s.shape, longest)) for s in styles]
        if min(min(s.shape[:2]) for s in styles) < 16:
            raise NSTError(f"style scale {config.style_scale} makes a style image smaller than 16 px")
    original = None if content is None else np.asarray(content, np.float32)
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
        from nst_jax import colour

        image = colour.recombine_luminance(image, inputs.original_content)
    return image


@jax.jit
def _all_finite(x: jax.Array) -> jax.Array:
    return jnp.isfinite(x).all()


def _describe(terms: Mapping[str, float]) -> str:
    bad = [k for k in TERMS if not math.isfinite(terms[k])]
    return f"{', '.join(bad)} loss not finite" if bad else "the image holds NaN or Inf"


def _restore_state(resume: ckpt.Checkpoint, shape, weights: LossWeights, config: StylizeConfig) -> RunState:
    """The checkpoint's leaves as a :class:`RunState` of this run's structure, shapes and dtypes checked."""
    template = jax.eval_shape(
        functools.partial(init_state, config=config), jax.ShapeDtypeStruct(shape, jnp.float32), weights)
    specs, treedef = jax.tree_util.tree_flatten(template)
    fits = len(specs) == len(resume.leaves) and all(
        tuple(spec.shape) == leaf.shape and spec.dtype == leaf.dtype
        for spec, leaf in zip(specs, resume.leaves, strict=True))
    if not fits:
        raise NSTError("cannot resume: the checkpoint's optimiser state does not fit this run (another version?)")
    state = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(leaf) for leaf in resume.leaves])
    if not 0 <= resume.step <= config.iterations or int(state.step) != resume.step:
        raise NSTError(f"cannot resume: the checkpoint is at step {resume.step} of {config.iterations}")
    return state


def stylize(
    params: Mapping,
    *,
    convention: str,
    content: np.ndarray | None = None,
    style: np.ndarray | Sequence[np.ndarray] | None = None,
    init: np.ndarray | None = None,
    config: StylizeConfig = StylizeConfig(),
    weights: LossWeights | None = None,
    seed: int = 0,
    masks: np.ndarray | None = None,
    callback: Callable[[Progress], None] | None = None,
    sync_every: Sequence[int] = (),
    resume: ckpt.Checkpoint | None = None,
    record: Mapping[str, Any] | None = None,
) -> StylizeResult:
    """Runs one Gatys optimisation.

    Args:
        params: VGG-19 params (``VGGWeights.params``), passed to the compiled
            function as an argument.
        convention: The weights' input convention (``VGGWeights.convention``).
        content: ``[H, W, 3]`` content photo, RGB in [0, 1] (transfer and content modes).
        style: ``[H_s, W_s, 3]`` style image, RGB in [0, 1] (transfer and style modes), or
            a list of ``config.num_styles`` of them (blended, or one per mask region).
        init: ``[H, W, 3]`` starting image when ``config.init == "image"``;
            in style mode it also sets the output shape.
        config: Static settings (style loss, style scale, colour, ...).
        weights: Loss weights; ``loss_weights(config)`` if None.
        seed: Seed of the noise initialisation.
        masks: Spatial control: ``[S, H', W']`` masks in [0, 1], one per style image, resized
            to the output size; region ``k`` of the output takes style ``k``'s statistics.
        callback: Called with a :class:`Progress` after every chunk; it may
            save ``progress.checkpoint()`` and may raise to stop the run.
        sync_every: Step counts (0 ignored) at whose multiples a chunk also
            ends, so the callback sees those steps (intermediate saves,
            checkpoints); this does not change the result.
        resume: A checkpoint of this same run to continue from.
        record: Extra entries for the run record (e.g. the weights file's
            sha256); with ``resume``, they must match too.

    Returns:
        The stylized image and the loss history.

    Raises:
        NSTError: If ``resume`` belongs to a different run (the message lists
            the differences) or its state does not fit.
        NumericalError: If the loss or the image becomes NaN or Inf.
    """
    inputs = prepare_inputs(config, content=content, style=style, init=init, masks=masks)
    weights = loss_weights(config) if weights is None else weights
    shape = inputs.shape
    run = ckpt.run_record(config, weights, convention=convention, seed=seed, content=content, style=style,
                          init=init, masks=masks, extra=record)
    if resume is not None:
        diffs = ckpt.differences(resume.run, run)
        if diffs:
            raise NSTError("cannot resume: the checkpoint belongs to a different run: " + "; ".join(diffs))
    t0 = time.perf_counter()
    content, init = inputs.content, inputs.init
    targets = compute_targets(
        params, None if content is None else jnp.asarray(content),
        None if inputs.styles is None else [jnp.asarray(s) for s in inputs.styles],
        config=config, convention=convention, output_shape=shape,
        masks=None if inputs.masks is None else jnp.asarray(inputs.masks))
    if resume is None:
        state = init_state(initial_image(config, shape, seed=seed, content=content, image=init), weights,
                           config=config)
    else:
        state = _restore_state(resume, shape, weights, config)
    chunk = run_chunk.lower(
        state, params, targets, weights, jnp.int32(0), config=config, convention=convention).compile()
    jax.block_until_ready(targets)  # dispatched asynchronously; counted here, not in the first chunk
    if resume is None:
        # The step-0 terms come from the first chunk's first evaluation (records["start"]).
        history = {name: [] for name in (*TERMS, "step", *PER_STEP)}
        done = 0
    else:
        history = {k: [float(x) for x in resume.history[k]] for k in (*TERMS, "step")}
        history.update({name: [np.asarray(resume.history[name], dtype)] for name, dtype in PER_STEP.items()})
        done = resume.step
    compile_seconds = time.perf_counter() - t0

    run_seconds = 0.0
    while done < config.iterations:
        n = min(config.chunk_size, config.iterations - done)
        for every in sync_every:
            if every > 0:
                n = min(n, every - done % every)
        t = time.perf_counter()
        last_good = jnp.copy(state.image)  # the chunk donates `state`
        state, records, terms = chunk(state, params, targets, weights, jnp.int32(n))
        terms = {k: float(v) for k, v in jax.device_get(terms).items()}
        if done == 0:
            terms0 = {k: float(v) for k, v in jax.device_get(records["start"]).items()}
            if not all(math.isfinite(v) for v in terms0.values()):
                raise NumericalError(f"the loss is not finite at the start ({_describe(terms0)}); "
                                     "check the weights and the loss weights", step=0, image=np.asarray(last_good))
            for name in TERMS:
                history[name].append(terms0[name])
            history["step"].append(0)
        totals = np.asarray(records["total"])[:n]
        if not (all(math.isfinite(v) for v in terms.values()) and np.isfinite(totals).all()
                and bool(_all_finite(state.image))):
            raise NumericalError(
                f"the optimisation diverged between steps {done} and {done + n} ({_describe(terms)}); "
                "lower the learning rate or the loss weights", step=done, image=np.asarray(last_good))
        run_seconds += time.perf_counter() - t
        done += n
        history["total_per_step"].append(totals)
        history["evaluations_per_step"].append(np.asarray(records["evaluations"])[:n])
        for name in TERMS:
            history[name].append(terms[name])
        history["step"].append(done)
        if callback is not None:
            image = output_image(state, weights)
            if config.preserve_colour == "luminance":
                image = finish_image(config, image, inputs)
            callback(Progress(done, config.iterations, terms, image, run_seconds, state, history, run))
    out = history_arrays(history)
    image = finish_image(config, output_image(state, weights), inputs)
    return StylizeResult(image, out, compile_seconds, run_seconds)
