"""Gatys et al. loss terms, written for one image, in two unit systems.

Notation of the paper: a layer with ``N`` filters and ``M = H * W`` positions has features
``F`` of shape ``[N, M]`` (here stored ``[H, W, N]``), Gram matrix ``G = F Fᵀ`` and target
``A`` (the style image's Gram, scaled to ``M`` positions).

``units="relative"`` (the library's default): each term is
divided by its value at all-zero features, ``‖F − P‖² / ‖P‖²`` and ``‖G − A‖² / ‖A‖²``, and
the total variation is a mean per pixel value; none depends on the image size, the aspect
ratio or the scale of a layer's activations. ``units="paper"``: eq. 1 ``½ Σ (F − P)²``, eq. 4
``Σ (G − A)² / (4 N² M²)`` and a summed total variation.

Gram normalisation: :func:`gram_matrix` is the paper's unnormalised ``G = F Fᵀ`` (a sum over
the ``M`` positions, so it grows with the image); ``gram_matrix(F, normalize=True)`` is ``G / M``,
the second moment per position, which does not depend on the image size. The loss functions
here take unnormalised Grams and do the scaling themselves.

Every function takes one image or feature map and refuses a batch (``jax.vmap`` over it). The
style statistics themselves (Gram, mean and covariance, W2) live in :mod:`nst_jax._src.statistics`;
:func:`nst_jax.perceptual_loss` is the plain ``loss(x, y)`` form of these terms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from nst_jax._src import checks
from nst_jax._src.statistics.base import TINY, UNITS, check_units
from nst_jax._src.statistics.gram import gram_layer_loss
from nst_jax._src.statistics.gram import gram_matrix as _gram_matrix
from nst_jax._src.terms import weighted_sum
from nst_jax._src.vgg import validity_masks
from nst_jax.errors import NSTError

__all__ = ["UNITS", "content_factor", "content_loss", "gram_matrix", "style_layer_loss", "style_loss", "tv_loss"]

Units = Literal["relative", "paper"]


def gram_matrix(features: ArrayLike, *, normalize: bool = False) -> jax.Array:
    """Gram matrix ``G = F Fᵀ`` of one feature map (paper eq. 3), optionally per position.

    Args:
        features: ``[H, W, N]`` one feature map (``jax.vmap`` over a batch).
        normalize: False (default): ``G_ij = Σ_k F_ik F_jk`` summed over the ``M = H * W``
            positions, unnormalised, as the paper's eq. 3 and what :func:`style_layer_loss` and
            :func:`nst_jax.compute_targets` use; it scales with the image's area. True:
            ``G / M``, the mean over positions, the same for a texture at any size (compare
            Grams of images of different sizes with this).

    Returns:
        ``[N, N]``, in the features' dtype (bfloat16 and float16 are summed in float32).

    Raises:
        NSTError: For a batch or anything but one float ``[H, W, N]`` map.
    """
    gram = _gram_matrix(checks.promote_half(features))
    if normalize:
        h, w, _ = jnp.shape(features)
        gram = gram / (h * w)
    dtype = checks._dtype(features)
    return gram.astype(dtype) if dtype in checks.HALF_DTYPES else gram



def content_loss(features: ArrayLike, target: ArrayLike, *, units: Units = "relative") -> jax.Array:
    """Content term of one layer: ``‖F − P‖² / ‖P‖²`` (relative) or the paper's eq. 1, ``½ Σ (F − P)²``.

    Args:
        features: ``[H, W, N]`` features of the image being optimised.
        target: ``[H, W, N]`` features of the content photo, the same shape.
        units: ``"relative"`` or ``"paper"``.

    Returns:
        Scalar loss (float32 for bfloat16 or float16 input, which is computed in float32).

    Raises:
        NSTError: For a batch, differing shapes or unknown units.
    """
    checks.check_features(features, "content_loss's features")
    checks.check_same_shape(features, target, "content_loss: features and target")
    features, target = checks.promote_half(features), checks.promote_half(target)
    return content_factor(target, units=units) * jnp.sum(jnp.square(features - target))


def content_factor(target: ArrayLike, *, units: Units = "relative") -> jax.Array:
    """What :func:`content_loss` multiplies the summed squared error by: ``1 / ‖P‖²`` or ``½``.

    Sums of squared errors over parts of a map (tiles) times this factor add up to the loss.

    Args:
        target: ``[H, W, N]`` content features ``P``.
        units: ``"relative"`` or ``"paper"``.

    Returns:
        Scalar factor.

    Raises:
        NSTError: For unknown units.
    """
    check_units(units)
    if units == "relative":
        return 1.0 / jnp.maximum(jnp.sum(jnp.square(target)), TINY)
    return jnp.asarray(0.5, jnp.float32)


def style_layer_loss(features: ArrayLike, target_gram: ArrayLike, *, units: Units = "relative") -> jax.Array:
    """Style term of one layer: ``‖G − A‖² / ‖A‖²`` (relative) or the paper's eq. 4,
    ``E_l = Σ (G − A)² / (4 N² M²)``.

    Args:
        features: ``[H, W, N]`` features of the image being optimised.
        target_gram: ``[N, N]`` Gram matrix ``A`` of the style image's features at this layer,
            summed over as many positions as ``features`` has (see
            :func:`nst_jax.compute_targets`, which rescales it).
        units: ``"relative"`` or ``"paper"``.

    Returns:
        Scalar loss (float32 for bfloat16 or float16 input, which is computed in float32).

    Raises:
        NSTError: For a batch, a target of the wrong shape or unknown units.
    """
    h, w, n = checks.check_features(features, "style_layer_loss's features")
    if tuple(jnp.shape(target_gram)) != (n, n):
        raise NSTError(f"style_layer_loss: target Gram of shape {tuple(jnp.shape(target_gram))} for {n} filters")
    features, target_gram = checks.promote_half(features), checks.promote_half(target_gram)
    return gram_layer_loss(gram_matrix(features), target_gram, num_positions=h * w, units=units)


def _target_gram(target, name: str, style_blend: ArrayLike | None) -> jax.Array:
    """One layer's ``[N, N]`` target from an ``[N, N]`` array or a ``{"gram": [N, N] | [S, N, N]}`` entry of
    :attr:`nst_jax.Targets.style` (``S`` styles blended by ``style_blend``, equal by default)."""
    if isinstance(target, Mapping):
        if "gram" not in target:
            raise NSTError(f"style_loss: the target of layer {name} holds {sorted(target)}, not a Gram matrix: "
                           f"targets of another statistic need nst_jax._src.statistics.STATISTICS[...].loss")
        target = target["gram"]
    target = jnp.asarray(target)
    if target.ndim == 3:
        s = target.shape[0]
        b = jnp.full((s,), 1.0 / s) if style_blend is None else jnp.asarray(style_blend, jnp.float32)
        if b.shape != (s,):
            raise NSTError(f"style_loss: {b.shape[0] if b.ndim == 1 else b.shape} blend weights for {s} styles")
        target = jnp.tensordot(b / jnp.sum(b), target, 1)
    return target


def style_loss(
    features: Mapping[str, ArrayLike],
    target_grams: Mapping[str, ArrayLike | Mapping[str, ArrayLike]],
    layers: Sequence[str],
    layer_weights: ArrayLike,
    *,
    units: Units = "relative",
    style_blend: ArrayLike | None = None,
) -> jax.Array:
    """Paper eq. 5: ``Σ_l w_l E_l`` over ``layers``, each ``E_l`` a :func:`style_layer_loss`.

    Args:
        features: ``{layer: [H, W, N]}`` of the image being optimised.
        target_grams: ``{layer: [N, N]}`` unnormalised Gram targets summed over as many positions as
            ``features`` has, or the Gram targets :func:`nst_jax.compute_targets` makes
            (``targets.style``: ``{layer: {"gram": [S, N, N]}}``, ``S`` style images).
        layers: Layer names, in the order of ``layer_weights`` (a sequence, not a string).
        layer_weights: ``[L]`` weights ``w_l``, one per layer.
        units: ``"relative"`` or ``"paper"``.
        style_blend: ``[S]`` blend weights of ``S`` stacked style targets (normalised to sum 1, as
            ``Weights.style_blend``); None blends them equally. Unused for ``[N, N]`` targets.

    Returns:
        Scalar loss (float32 for bfloat16 or float16 input, which is computed in float32).

    Raises:
        NSTError: For a bare string or miscounted layer weights, targets of another statistic, or
            a target of the wrong shape.
    """
    layers = checks.layer_tuple(layers, "style_loss's layers")
    checks.check_layer_weights(layer_weights, layers, "style")
    return weighted_sum(jnp.asarray(layer_weights, jnp.float32), [
        style_layer_loss(features[name], _target_gram(target_grams[name], name, style_blend), units=units)
        for name in layers])


def tv_loss(image: ArrayLike, *, units: Units = "relative", extent: ArrayLike | None = None) -> jax.Array:
    """Squared total variation ``Σ (x[i+1, j] − x[i, j])² + (x[i, j+1] − x[i, j])²`` of one image.

    Summed over channels and all neighbour pairs of the ``[H, W, C]`` image in its [0, 1]
    range (``"paper"``), or that sum divided by the ``H * W * C`` pixel values (``"relative"``).
    With an ``extent`` only the top-left ``H_e x W_e`` pixels count (an output on a larger
    canvas, ``StylizeConfig.shape_bucket``): the pairs with both pixels inside, divided by
    ``H_e * W_e * C`` in relative units; the same value as the loss of the crop.

    Args:
        image: ``[H, W, C]`` float image.
        units: ``"relative"`` or ``"paper"``.
        extent: None, or ``[2]`` ints ``(H_e, W_e)``, traced or not (one program serves every extent).

    Returns:
        Scalar loss (float32 for bfloat16 or float16 input, which is computed in float32).

    Raises:
        NSTError: For a batch or unknown units.
    """
    check_units(units)
    h, w, c = checks.check_features(image, "tv_loss's image")
    image = checks.promote_half(image)
    dy = image[1:] - image[:-1]
    dx = image[:, 1:] - image[:, :-1]
    values = h * w * c
    if extent is not None:
        extent = jnp.asarray(extent, jnp.int32)
        inside = validity_masks((0, 0), (h, w), extent, 0)[0][:, :, None]
        dy = dy * (inside[1:] * inside[:-1])
        dx = dx * (inside[:, 1:] * inside[:, :-1])
        values = (extent[0] * extent[1] * c).astype(jnp.float32)
    total = jnp.sum(jnp.square(dy)) + jnp.sum(jnp.square(dx))
    return total / values if units == "relative" else total
