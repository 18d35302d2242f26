"""The paper's content term: the squared distance of features (Gatys et al., eq. 1).

``‖F − P‖² / ‖P‖²`` (relative units) or ``½ Σ (F − P)²`` (paper units) at a layer, the output's
features ``F`` against the photo's ``P`` position by position (:func:`nst_jax._src.losses.content_loss`).
The squared errors add up over tiles.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from nst_jax._src import losses
from nst_jax._src.content_terms.base import ContentTerm, TileContext


def _loss(features: jax.Array, target: jax.Array, extent: jax.Array | None, units: str) -> jax.Array:
    del extent  # features and target are both zero outside it
    return losses.content_loss(features, target, units=units)


def _tile_sum(features: jax.Array, valid: jax.Array, context: TileContext) -> jax.Array:
    size = features.shape[0]
    target = lax.dynamic_slice(context.target, (*context.origin, 0), (size, size, context.target.shape[-1]))
    return jnp.sum(jnp.square((features - target) * valid[:, :, None]))


def _summed_loss(sums: jax.Array, target: jax.Array, units: str) -> jax.Array:
    return losses.content_factor(target, units=units) * sums


TERM = ContentTerm(name="feature", help="the paper's: distance of features, position by position",
                   default_weight=1.0, loss=_loss, tile_sum=_tile_sum, summed_loss=_summed_loss, linear=True)
