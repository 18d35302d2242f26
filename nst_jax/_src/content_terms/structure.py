"""The structure term: the cosine self-similarity of features on a coarse grid (after STROTSS).

Kolkin et al. (STROTSS, CVPR 2019) keep a photo's layout with the self-similarity of its
features: how alike each pair of positions is, whatever their colours and textures. Here a
layer's map ``[H, W, N]`` is cut into a grid of ``G_h x G_w`` cells (:func:`grid_shape`, at most
:data:`GRID` along the longest side), each cell's features are summed (:func:`cell_sums`), and
``S_ij = cos(s_i, s_j)`` over the ``P = G_h G_w`` cells is the structure (:func:`self_similarity`).
The term is ``Σ_ij (S_ij − S^c_ij)² / Σ_ij (S^c_ij)²`` against the photo's ``S^c`` (relative units,
1 for all-zero features whose cells have no direction), or ``Σ_ij (S_ij − S^c_ij)² / P²`` (paper
units). Its cost is one pass over the map plus a ``P x P`` product, the same at 4096 px as at
256 px, and the cell sums add up over tiles.

What it leaves free: cosines do not change when a cell's summed features are multiplied by any
positive number, so a change of the photo that scales each cell's features (brightness under a
ReLU network without biases, for instance) keeps its structure exactly; colours and textures
change features beyond that, and the term then measures how far the layout moved.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nst_jax._src.content_terms.base import ContentTerm, TileContext
from nst_jax._src.statistics.base import check_units, relative

# Cells along the longest side of a layer's map (fewer where the map has fewer positions).
GRID = 24
# Added to a cell's squared norm, so an all-zero cell has cosine 0 with everything and a finite gradient.
_EPS = 1e-12


def grid_shape(map_shape: tuple[int, int]) -> tuple[int, int]:
    """``(G_h, G_w)`` cells of a ``(H, W)`` map: :data:`GRID` along the longest side, the aspect ratio
    kept (at least 1), and never more cells than positions along a side."""
    h, w = int(map_shape[0]), int(map_shape[1])
    long = max(h, w)
    cells = [min(side, max(1, round(GRID * side / long))) for side in (h, w)]
    return cells[0], cells[1]


def cell_matrix(cells: int, length: jax.Array | int, start: jax.Array | int, size: int) -> jax.Array:
    """``[cells, size]`` 0/1: position ``start + k`` of a side of ``length`` positions lies in cell
    ``⌊(start + k) · cells / length⌋`` (positions at or beyond ``length`` in none)."""
    position = start + jnp.arange(size)
    cell = (position * cells) // length
    inside = position < length
    return ((cell[None, :] == jnp.arange(cells)[:, None]) & inside[None, :]).astype(jnp.float32)


def cell_sums(features: jax.Array, cells: tuple[int, int], length: tuple, start: tuple = (0, 0)) -> jax.Array:
    """The features summed per grid cell.

    Args:
        features: ``[h, w, N]``, a window of a layer's map starting at position ``start``.
        cells: ``(G_h, G_w)``.
        length: ``(H, W)`` of the map the grid divides (ints or traced).
        start: ``(row, col)`` of the window in that map.

    Returns:
        ``[G_h, G_w, N]``: over the window's positions, each cell's features summed.
    """
    rows = cell_matrix(cells[0], length[0], start[0], features.shape[0])
    cols = cell_matrix(cells[1], length[1], start[1], features.shape[1])
    hi = jax.lax.Precision.HIGHEST
    return jnp.einsum("gy,yxn,fx->gfn", rows, features, cols, precision=hi)


def self_similarity(sums: jax.Array) -> jax.Array:
    """``[P, P]`` cosines between the ``P = G_h G_w`` cells' summed features ``[G_h, G_w, N]``."""
    v = sums.reshape(-1, sums.shape[-1])
    unit = v / jnp.sqrt(jnp.sum(jnp.square(v), axis=-1, keepdims=True) + _EPS)
    return jnp.matmul(unit, unit.T, precision=jax.lax.Precision.HIGHEST)


def structure_distance(similarity: jax.Array, target: jax.Array, units: str = "relative") -> jax.Array:
    """``Σ (S − S^c)² / Σ (S^c)²`` (relative) or ``Σ (S − S^c)² / P²`` (paper) of ``[P, P]`` cosines."""
    check_units(units)
    error = jnp.sum(jnp.square(similarity - target))
    if units == "relative":
        return relative(error, jnp.sum(jnp.square(target)))
    return error / target.size


def structure(features: jax.Array, extent: jax.Array | None = None) -> jax.Array:
    """``[P, P]`` self-similarity of one layer's map ``[H, W, N]``, on the grid of its top-left
    ``extent`` (``[2]``, traced or not) if given, else of the whole map."""
    cells = grid_shape(features.shape[:2])
    length = features.shape[:2] if extent is None else (extent[0], extent[1])
    return self_similarity(cell_sums(features, cells, length))


def _loss(features: jax.Array, target: jax.Array, extent: jax.Array | None, units: str) -> jax.Array:
    return structure_distance(structure(features, extent), structure(target, extent), units)


def _tile_sum(features: jax.Array, valid: jax.Array, context: TileContext) -> jax.Array:
    return cell_sums(features * valid[:, :, None], grid_shape(context.map_shape), context.map_shape, context.origin)


def _summed_loss(sums: jax.Array, target: jax.Array, units: str) -> jax.Array:
    return structure_distance(self_similarity(sums), structure(target), units)


TERM = ContentTerm(name="structure", help="self-similarity of features on a coarse grid (STROTSS's layout)",
                   default_weight=0.0, loss=_loss, tile_sum=_tile_sum, summed_loss=_summed_loss)
