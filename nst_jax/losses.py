"""Gatys et al. loss terms, written for one image, in two unit systems.

Notation of the paper: a layer with ``N`` filters and ``M = H * W`` positions has features
``F`` of shape ``[N, M]`` (here stored ``[H, W, N]``), Gram matrix ``G = F Fᵀ`` and target
``A`` (the style image's Gram, scaled to ``M`` positions).

``units="relative"`` (the library's default): each term is
divided by its value at all-zero features, ``‖F − P‖² / ‖P‖²`` and ``‖G − A‖² / ‖A‖²``, and
the total variation is a mean per pixel value; none depends on the image size, the aspect
ratio or the scale of a layer's activations. ``units="paper"``: eq. 1 ``½ Σ (F − P)²``, eq. 4
``Σ (G − A)² / (4 N² M²)`` and a summed total variation.

Every function takes one image or feature map and refuses a batch (``jax.vmap`` over it). The
style statistics themselves (Gram, mean and covariance, W2) live in :mod:`nst_jax.statistics`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

from nst_jax import checks
from nst_jax.errors import NSTError
from nst_jax.statistics.base import TINY, UNITS, check_units
from nst_jax.statistics.gram import gram_layer_loss, gram_matrix
from nst_jax.terms import weighted_sum

__all__ = ["UNITS", "content_factor", "content_loss", "gram_matrix", "style_layer_loss", "style_loss", "tv_loss"]



def content_loss(features: jax.Array, target: jax.Array, *, units: str = "relative") -> jax.Array:
    """Content term of one layer: ``‖F − P‖² / ‖P‖²`` (relative) or the paper's eq. 1, ``½ Σ (F − P)²``.

    Args:
        features: ``[H, W, N]`` features of the image being optimised.
        target: ``[H, W, N]`` features of the content photo, the same shape.
        units: ``"relative"`` or ``"paper"``.

    Returns:
        Scalar loss.
    """
    checks.check_features(features, "content_loss's features")
    checks.check_same_shape(features, target, "content_loss: features and target")
    return content_factor(target, units=units) * jnp.sum(jnp.square(features - target))


def content_factor(target: jax.Array, *, units: str = "relative") -> jax.Array:
    """What :func:`content_loss` multiplies the summed squared error by: ``1 / ‖P‖²`` or ``½``.

    Sums of squared errors over parts of a map (tiles) times this factor add up to the loss.
    """
    check_units(units)
    if units == "relative":
        return 1.0 / jnp.maximum(jnp.sum(jnp.square(target)), TINY)
    return jnp.asarray(0.5, jnp.float32)


def style_layer_loss(features: jax.Array, target_gram: jax.Array, *, units: str = "relative") -> jax.Array:
    """Style term of one layer: ``‖G − A‖² / ‖A‖²`` (relative) or the paper's eq. 4,
    ``E_l = Σ (G − A)² / (4 N² M²)``.

    Args:
        features: ``[H, W, N]`` features of the image being optimised.
        target_gram: ``[N, N]`` Gram matrix ``A`` of the style image's features at this layer,
            summed over as many positions as ``features`` has (see
            :func:`nst_jax.compute_targets`, which rescales it).
        units: ``"relative"`` or ``"paper"``.

    Returns:
        Scalar loss.
    """
    h, w, n = checks.check_features(features, "style_layer_loss's features")
    if tuple(jnp.shape(target_gram)) != (n, n):
        raise NSTError(f"style_layer_loss: target Gram of shape {tuple(jnp.shape(target_gram))} for {n} filters")
    return gram_layer_loss(gram_matrix(features), target_gram, num_positions=h * w, units=units)


def style_loss(
    features: Mapping[str, jax.Array],
    target_grams: Mapping[str, jax.Array],
    layers: Sequence[str],
    layer_weights: jax.Array,
    *,
    units: str = "relative",
) -> jax.Array:
    """Paper eq. 5: ``Σ_l w_l E_l`` over ``layers``, each ``E_l`` a :func:`style_layer_loss`.

    Args:
        features: ``{layer: [H, W, N]}`` of the image being optimised.
        target_grams: ``{layer: [N, N]}``.
        layers: Layer names, in the order of ``layer_weights`` (a sequence, not a string).
        layer_weights: ``[L]`` weights ``w_l``, one per layer.
        units: ``"relative"`` or ``"paper"``.

    Returns:
        Scalar loss.
    """
    layers = checks.layer_tuple(layers, "style_loss's layers")
    checks.check_layer_weights(layer_weights, layers, "style")
    return weighted_sum(layer_weights, [style_layer_loss(features[name], target_grams[name], units=units)
                                        for name in layers])


def tv_loss(image: jax.Array, *, units: str = "relative") -> jax.Array:
    """Squared total variation ``Σ (x[i+1, j] − x[i, j])² + (x[i, j+1] − x[i, j])²`` of one image.

    Summed over channels and all neighbour pairs of the ``[H, W, C]`` image in its [0, 1]
    range (``"paper"``), or that sum divided by the ``H * W * C`` pixel values (``"relative"``).
    """
    check_units(units)
    shape = checks.check_features(image, "tv_loss's image")
    dy = image[1:, :, :] - image[:-1, :, :]
    dx = image[:, 1:, :] - image[:, :-1, :]
    total = jnp.sum(jnp.square(dy)) + jnp.sum(jnp.square(dx))
    return total / (shape[0] * shape[1] * shape[2]) if units == "relative" else total
