"""What a content term is: the interface every entry of :data:`nst_jax._src.content_terms.CONTENT_TERMS` fills.

A content term compares the output's features at a content layer (``[H, W, N]``) with the
content photo's at the same layer (the target, the same shape) and returns the layer's content
loss ``L_{t,l}`` of term ``t``. The objective (:mod:`nst_jax._src.objective`) weighs them
``α Σ_t u_t Σ_l c_l L_{t,l}`` (``u`` is ``Weights.content_terms``, ``c`` ``Weights.content_layers``)
and calls only these functions, so a new term is one new module here plus its line in the
registry. Tiled evaluation (:mod:`nst_jax._src.tiled`) needs the term's per-tile sums to add up to
what its loss reads (``tile_sum`` and ``summed_loss``); a term without them is refused with
tiles by :class:`~nst_jax.config.LossConfig`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax


class TileContext(NamedTuple):
    """Where one tile's core lies in a layer's whole map (tiled evaluation).

    Attributes:
        origin: ``(row, col)`` traced int32 of the core's top-left position in the layer's map.
        map_shape: ``(H_l, W_l)`` of the layer's whole map (static ints).
        target: The photo's features at the layer, zero-padded to whole tiles
            (:func:`nst_jax._src.tiled.pad_map`), so a core's slice has one static shape.
    """

    origin: tuple[jax.Array, jax.Array]
    map_shape: tuple[int, int]
    target: jax.Array


@dataclasses.dataclass(frozen=True)
class ContentTerm:
    """One content term: its loss, its default weight and its tiled form.

    Attributes:
        name: The registry key (``LossConfig.content_terms``).
        help: One line for ``--help``.
        default_weight: Its ``Weights.content_terms`` entry when none is given (the paper's feature
            distance 1, other terms 0, so the library's default objective is the paper's).
        loss: ``loss(features [H, W, N], target [H, W, N], extent [2] | None, units) -> scalar``,
            the layer's term ``L_{t,l}``; with an ``extent`` ``(H_e, W_e)`` at this layer only its
            top-left part is the output (features and target are zero outside it).
        tile_sum: ``tile_sum(features [T, T, N], valid [T, T], context) -> pytree`` of sums over
            one tile's core positions that add up over tiles, or None where the term has no such
            form (tiled evaluation then refuses it).
        summed_loss: ``summed_loss(sums, target [H, W, N], units) -> scalar``, the loss from the
            sums over every tile.
        linear: Whether the loss is linear in the sums (its gradient then needs no first pass
            over the tiles).
    """

    name: str
    help: str
    default_weight: float
    loss: Callable[[jax.Array, jax.Array, jax.Array | None, str], jax.Array]
    tile_sum: Callable[[jax.Array, jax.Array, TileContext], Any] | None = None
    summed_loss: Callable[[Any, jax.Array, str], jax.Array] | None = None
    linear: bool = False

    @property
    def additive(self) -> bool:
        """Whether the term can be evaluated tile by tile."""
        return self.tile_sum is not None and self.summed_loss is not None
