"""The weighted loss terms, written once: ``α Σ_t u_t Σ_l c_l L_{t,l}``, ``β Σ_l w_l E_l``, ``τ · TV`` and their sum.

Both evaluations of the objective (one VGG pass, or tile by tile) compute per-term, per-layer
content losses ``L_{t,l}`` and per-layer style losses ``E_l`` their own way, then hand them here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

if TYPE_CHECKING:  # config imports TERMS from here: a run-time import of config would be a circle
    from nst_jax.config import Weights

# The names of the loss terms, in the order they are reported (nst_jax.config.TERMS is this object).
TERMS = ("content", "style", "tv", "total")


def weighted_sum(layer_weights: jax.Array, values: Sequence[jax.Array]) -> jax.Array:
    """``Σ_i layer_weights[i] · values[i]`` (float32 0 for no values)."""
    return sum((layer_weights[i] * v for i, v in enumerate(values)), jnp.zeros((), jnp.float32))


def weighted_terms(weights: Weights, *, content: Sequence[Sequence[jax.Array]] = (),
                   style: Sequence[jax.Array] = (), tv: jax.Array) -> dict[str, jax.Array]:
    """The loss terms from per-layer losses.

    Args:
        weights: The run's :class:`~nst_jax.config.Weights` (``content``, ``style``, ``tv``,
            ``content_terms``, ``content_layers``, ``style_layers`` are read).
        content: Per content term (``config.content_terms`` order), per content layer
            (``config.content_layers`` order) ``L_{t,l}`` (empty: no term).
        style: Per style layer ``E_l``, in ``config.style_layers`` order (empty: no term).
        tv: The unweighted total variation.

    Returns:
        ``{"content", "style", "tv", "total"}`` float32 scalars.
    """
    per_term = [weighted_sum(weights.content_layers, layers) for layers in content]
    content_term = weights.content * weighted_sum(weights.content_terms, per_term)
    style_term = weights.style * weighted_sum(weights.style_layers, style)
    tv_term = weights.tv * tv
    return {"content": content_term, "style": style_term, "tv": tv_term,
            "total": content_term + style_term + tv_term}
