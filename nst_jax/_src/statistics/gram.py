"""The paper's style statistic: Gram matrices (Gatys et al., eqs. 3-5).

A layer with ``N`` filters and ``M = H * W`` positions has features ``F`` (stored ``[H, W, N]``)
and Gram matrix ``G = F Fᵀ`` summed over positions, unnormalised. A style image's Gram is
rescaled to the output's positions (``A = G_s · M_out / M_s``; with a region mask ``m``, by
``Σ m² / M_s``), so images of any size compare. Loss: ``‖G − A‖² / ‖A‖²`` (relative units) or
eq. 4, ``Σ (G − A)² / (4 N² M²)`` (paper units). Gram matrices add up over disjoint sets of
positions, so the statistic can be evaluated tile by tile.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nst_jax._src import checks
from nst_jax._src.statistics.base import Arrays, Statistic, check_units, relative


def gram_matrix(features: jax.Array) -> jax.Array:
    """Unnormalised Gram matrix ``G = F Fᵀ`` (paper eq. 3).

    Args:
        features: ``[H, W, N]`` one feature map (``jax.vmap`` over a batch).

    Returns:
        ``[N, N]`` with ``G_ij = Σ_k F_ik F_jk`` summed over the ``M = H * W`` positions; no
        division by ``M`` or ``N`` (:func:`gram_layer_loss` normalises; ``G / M`` is the
        size-independent second moment).
    """
    checks.check_features(features, "gram_matrix's features")
    f = features.reshape(-1, features.shape[-1])
    return jnp.matmul(f.T, f, precision=jax.lax.Precision.HIGHEST)


def gram_layer_loss(gram: jax.Array, target_gram: jax.Array, *, num_positions: int | jax.Array,
                    units: str = "relative") -> jax.Array:
    """The style loss of one layer from its Gram matrix.

    Args:
        gram: ``[N, N]`` Gram matrix ``G`` of the image being optimised.
        target_gram: ``[N, N]`` target ``A`` (summed over as many positions as ``G``).
        num_positions: ``M``, the number of positions ``G`` sums over (paper units only).
        units: ``"relative"``: ``‖G − A‖² / ‖A‖²``; ``"paper"``: ``Σ (G − A)² / (4 N² M²)``.

    Returns:
        Scalar loss.
    """
    check_units(units)
    error = jnp.sum(jnp.square(gram - target_gram))
    if units == "relative":
        return relative(error, jnp.sum(jnp.square(target_gram)))
    n = gram.shape[-1]
    return error / (4.0 * n**2 * num_positions**2)


def _summary(features: jax.Array, mask: jax.Array | None) -> dict[str, jax.Array]:
    f = features if mask is None else features * mask[:, :, None]
    positions = features.shape[0] * features.shape[1] if mask is None else jnp.sum(mask)
    return {"gram": gram_matrix(f), "positions": jnp.asarray(positions, jnp.float32)}


def _target(summary: Arrays, mass: jax.Array) -> dict[str, jax.Array]:
    return {"gram": summary["gram"] * (mass / summary["positions"])}


def _blend(targets: Arrays, b: jax.Array) -> dict[str, jax.Array]:
    return {"gram": jnp.tensordot(b, targets["gram"], 1)}


def _loss(features: jax.Array, reference: Arrays, mask: jax.Array | None, units: str) -> jax.Array:
    h, w, _ = features.shape
    f = features if mask is None else features * mask[:, :, None]
    return gram_layer_loss(gram_matrix(f), reference["gram"], num_positions=h * w, units=units)


def _summed_loss(summary: Arrays, reference: Arrays, units: str) -> jax.Array:
    return gram_layer_loss(summary["gram"], reference["gram"], num_positions=summary["positions"], units=units)


STATISTIC = Statistic(
    name="gram", help="Gram matrices (the paper's)",
    summary=_summary, target=_target, blend=_blend, loss=_loss, summed_loss=_summed_loss,
    target_bytes=lambda n: 4 * n * n)
