"""Gatys et al. loss terms, written for one image.

Notation of the paper: a layer with ``N`` filters and ``M = H * W`` positions
has features ``F`` of shape ``[N, M]`` (here stored ``[H, W, N]``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp


def gram_matrix(features: jax.Array) -> jax.Array:
    """Unnormalised Gram matrix ``G = F Fᵀ`` (paper eq. 3).

    Args:
        features: ``[H, W, N]`` feature map.

    Returns:
        ``[N, N]`` with ``G_ij = Σ_k F_ik F_jk`` summed over the ``M = H * W``
        positions; no division by ``M`` or ``N`` here (see :func:`style_layer_loss`).
    """
    f = features.reshape(-1, features.shape[-1])
    return jnp.matmul(f.T, f, precision=jax.lax.Precision.HIGHEST)


def content_loss(features: jax.Array, target: jax.Array) -> jax.Array:
    """Paper eq. 1: ``½ Σ (F − P)²``, a plain sum over all positions and filters.

    Args:
        features: ``[H, W, N]`` features of the image being optimised.
        target: ``[H, W, N]`` features of the content photo.

    Returns:
        Scalar loss.
    """
    return 0.5 * jnp.sum(jnp.square(features - target))


def style_layer_loss(features: jax.Array, target_gram: jax.Array) -> jax.Array:
    """Paper eq. 4: ``E_l = 1 / (4 N² M²) Σ (G − A)²``.

    Args:
        features: ``[H, W, N]`` features of the image being optimised.
        target_gram: ``[N, N]`` Gram matrix ``A`` of the style image's features
            at this layer (its own ``M`` may differ; ``M`` here is that of ``features``).

    Returns:
        Scalar loss.
    """
    h, w, n = features.shape
    m = h * w
    diff = gram_matrix(features) - target_gram
    return jnp.sum(jnp.square(diff)) / (4.0 * n**2 * m**2)


def style_loss(
    features: Mapping[str, jax.Array],
    target_grams: Mapping[str, jax.Array],
    layers: Sequence[str],
    layer_weights: jax.Array,
) -> jax.Array:
    """Paper eq. 5: ``Σ_l w_l E_l``.

    Note the style image's Gram ``A`` sums over its own positions; when its size
    differs from the output's, the targets are rescaled by the caller (see
    ``nst_jax.optimize.compute_targets``) so that ``A`` is comparable to ``G``.

    Args:
        features: ``{layer: [H, W, N]}`` of the image being optimised.
        target_grams: ``{layer: [N, N]}``.
        layers: Layer names, in the order of ``layer_weights``.
        layer_weights: ``[L]`` weights ``w_l``.

    Returns:
        Scalar loss.
    """
    return sum(layer_weights[i] * style_layer_loss(features[name], target_grams[name]) for i, name in enumerate(layers))


def tv_loss(image: jax.Array) -> jax.Array:
    """Squared total variation: ``Σ (x[i+1, j] − x[i, j])² + (x[i, j+1] − x[i, j])²``.

    Summed over channels and all neighbour pairs of the ``[H, W, C]`` image in
    its [0, 1] RGB range.
    """
    dy = image[1:, :, :] - image[:-1, :, :]
    dx = image[:, 1:, :] - image[:, :-1, :]
    return jnp.sum(jnp.square(dy)) + jnp.sum(jnp.square(dx))
