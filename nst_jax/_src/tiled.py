"""Tile-by-tile sums of feature statistics, for images too large for one VGG pass.

This module computes features and sums over positions; the loss terms themselves are the
objective's (:mod:`nst_jax._src.objective` decides dense or tiled, and combines the sums). Every
term the tiled evaluation supports is a function of sums over feature positions (Gram
matrices, the content loss's squared error), so it can be summed over tiles. The image is cut
into a grid of square tiles of core size ``T`` (``StylizeConfig.tile_size``); each tile is
evaluated with a halo of ``halo`` pixels on every side, at least the receptive-field radius of
the deepest layer used (:func:`~nst_jax._src.vgg.receptive_radius`), so the features at the tile's
core positions are those of the whole image. ``T`` and the halo are multiples of ``2^k`` for
the ``k`` poolings before the deepest layer (:func:`~nst_jax.config.tile_alignment`), so every
tile's pooling windows line up with the whole image's.

Zero padding: VGG pads every convolution's input with zeros at the border of the map at that
level (``floor(H / 2^k) x floor(W / 2^k)`` after ``k`` poolings), which is not the same as
padding the image. Each tile therefore runs with per-level validity masks
(``VGG19(..., level_masks)``): every convolution's input is zeroed where its position lies
outside the whole image's map at that level. All tiles then have one static shape
``T + 2 * halo``, and the tile loop is one ``lax.fori_loop`` over tile indices with
``lax.dynamic_slice`` of the zero-padded image. Only core positions inside the whole map
contribute to the sums.

Gradient (:func:`tile_sums_and_grad`): for a loss ``f(S)`` of the summed statistics
``S = Σ_t s_t``, ``∂f/∂x = Σ_t <∂f/∂S, ∂s_t/∂x>``, so with the cotangent ``∂f/∂S`` (from a first,
forward-only pass :func:`tile_sums` where ``f`` is not linear in ``S``) each tile's pullback is
added into the whole image's gradient: the untiled gradient, up to float32 rounding. Cost: each
tile's halo is evaluated again by its neighbours, about ``((T + 2 halo) / T)²`` times the
untiled work, plus the forward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from nst_jax._src.vgg import (
    VGGParams,
    layer_channels,
    layer_level,
    receptive_radius,
    unchecked_features,
    validity_masks,
)
from nst_jax.config import LossConfig, tile_alignment
from nst_jax.errors import NSTError

# tile_fn(core, row, col) -> pytree of sums over the tile's core positions (see tile_sums).
TileFn = Callable[[dict[str, tuple[jax.Array, jax.Array]], jax.Array, jax.Array], Any]


def halo_size(layers: Sequence[str]) -> int:
    """The smallest exact halo for ``layers``: :func:`~nst_jax._src.vgg.receptive_radius` rounded up to
    :func:`tile_alignment` (96 for ``conv5_1``, whose radius is 85)."""
    align = tile_alignment(layers)
    return -(-receptive_radius(layers) // align) * align


class TileGrid(NamedTuple):
    """Static geometry of a tiling.

    Attributes:
        height: Image height ``H``.
        width: Image width ``W``.
        tile: Core size ``T`` of the square tiles.
        halo: Pixels evaluated around each core.
        rows: ``ceil(H / T)``.
        cols: ``ceil(W / T)``.
    """

    height: int
    width: int
    tile: int
    halo: int
    rows: int
    cols: int

    @property
    def span(self) -> int:
        """Side of the evaluated tile, ``T + 2 * halo``."""
        return self.tile + 2 * self.halo


def tile_grid(shape: Sequence[int], tile_size: int, layers: Sequence[str], halo: int | None = None) -> TileGrid:
    """The tiling of an image of ``shape`` ``(H, W, ...)`` for ``layers``.

    Args:
        shape: ``(H, W, ...)`` of the image.
        tile_size: Core size ``T``, a positive multiple of :func:`tile_alignment`.
        layers: The layers to be evaluated.
        halo: Override of :func:`halo_size` (a smaller halo is inexact; tests use it).

    Raises:
        NSTError: If ``tile_size`` or ``halo`` is not a multiple of the alignment.
    """
    align = tile_alignment(layers)
    halo = halo_size(layers) if halo is None else int(halo)
    if tile_size <= 0 or tile_size % align:
        raise NSTError(f"tile size must be a positive multiple of {align} for these layers, got {tile_size}")
    if halo < 0 or halo % align:
        raise NSTError(f"tile halo must be a multiple of {align}, got {halo}")
    h, w = int(shape[0]), int(shape[1])
    return TileGrid(h, w, int(tile_size), halo, -(-h // tile_size), -(-w // tile_size))


def _pad(image: jax.Array, grid: TileGrid) -> jax.Array:
    """``[H, W, C]`` -> ``[rows * T + 2 halo, cols * T + 2 halo, C]``, the image at ``(halo, halo)``."""
    bottom = grid.rows * grid.tile - grid.height + grid.halo
    right = grid.cols * grid.tile - grid.width + grid.halo
    return jnp.pad(image, ((grid.halo, bottom), (grid.halo, right), (0, 0)))


def _core_features(
    vgg: VGGParams, pixels: jax.Array, row: jax.Array, col: jax.Array, grid: TileGrid, *, layers: Sequence[str],
    config: LossConfig,
) -> dict[str, tuple[jax.Array, jax.Array]]:
    """Features of one tile at its core positions.

    Args:
        vgg: VGG-19 parameters.
        pixels: ``[span, span, 3]`` the tile's pixels, halo included (from the padded image).
        row: Tile row (traced int).
        col: Tile column (traced int).
        grid: The tiling.
        layers: Layers to return.
        config: Loss settings (pooling, precision).

    Returns:
        ``{layer: (features [T_l, T_l, N_l], valid [T_l, T_l])}`` with ``T_l = T / 2^k``; ``valid``
        is 1 at positions inside the whole image's map, 0 elsewhere.
    """
    masks = validity_masks((row * grid.tile - grid.halo, col * grid.tile - grid.halo), (grid.span, grid.span),
                           (grid.height, grid.width), max(layer_level(name) for name in layers))
    feats = unchecked_features(vgg, pixels, layers=layers, pooling=config.pooling, precision=config.precision,
                         level_masks=masks)
    out = {}
    for name in layers:
        k = layer_level(name)
        start, size = grid.halo >> k, grid.tile >> k
        out[name] = (feats[name][start:start + size, start:start + size], masks[k][start:start + size,
                                                                                   start:start + size])
    return out


def _tile_pixels(padded: jax.Array, grid: TileGrid, row: jax.Array, col: jax.Array) -> jax.Array:
    return lax.dynamic_slice(padded, (row * grid.tile, col * grid.tile, 0), (grid.span, grid.span, padded.shape[-1]))


def _for_each_tile(grid: TileGrid, body, init):
    """``lax.fori_loop`` of ``body(row, col, carry) -> carry`` over the tiles, row by row."""
    return lax.fori_loop(0, grid.rows * grid.cols, lambda i, carry: body(i // grid.cols, i % grid.cols, carry), init)


def assembled_features(
    vgg: VGGParams, image: jax.Array, *, layers: Sequence[str], config: LossConfig, halo: int | None = None,
) -> dict[str, jax.Array]:
    """Whole-image feature maps assembled from tiles (equal to ``extract_features`` up to rounding).

    Args:
        vgg: VGG-19 parameters.
        image: ``[H, W, 3]`` RGB in [0, 1].
        layers: Layer names to return.
        config: Loss settings with ``tile_size > 0`` (pooling, precision, tile size).
        halo: Override of :func:`halo_size`.

    Returns:
        ``{layer: [H >> k, W >> k, N_l]}``.
    """
    grid = tile_grid(image.shape, config.tile_size, layers, halo)
    padded = _pad(image, grid)
    sizes = {name: grid.tile >> layer_level(name) for name in layers}
    init = {name: jnp.zeros((grid.rows * sizes[name], grid.cols * sizes[name], layer_channels(name)), jnp.float32)
            for name in layers}

    def body(row, col, maps):
        core = _core_features(vgg, _tile_pixels(padded, grid, row, col), row, col, grid, layers=layers,
                              config=config)
        return {name: lax.dynamic_update_slice(maps[name], f * m[:, :, None], (row * sizes[name], col * sizes[name], 0))
                for name, (f, m) in core.items()}

    maps = _for_each_tile(grid, body, init)
    return {name: m[: grid.height >> layer_level(name), : grid.width >> layer_level(name)] for name, m in maps.items()}


def _one_tile(vgg: VGGParams, grid: TileGrid, layers: Sequence[str], config: LossConfig, tile_fn: TileFn):
    def one(pixels, row, col):
        return tile_fn(_core_features(vgg, pixels, row, col, grid, layers=layers, config=config), row, col)

    return one


def _setup(vgg, image, layers, config, tile_fn, halo):
    """The grid, the padded image, one tile's function ``(pixels, row, col) -> sums`` and zero sums."""
    grid = tile_grid(image.shape, config.tile_size, layers, halo)
    padded = _pad(image, grid)
    one = _one_tile(vgg, grid, layers, config, tile_fn)
    shapes = jax.eval_shape(one, _tile_pixels(padded, grid, 0, 0), 0, 0)
    return grid, padded, one, jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def tile_sums(
    vgg: VGGParams, image: jax.Array, *, layers: Sequence[str], config: LossConfig, tile_fn: TileFn,
    halo: int | None = None,
) -> Any:
    """``Σ_t tile_fn(core_t, row_t, col_t)`` over the tiles of ``image`` (forward only).

    Args:
        vgg: VGG-19 parameters.
        image: ``[H, W, 3]`` RGB in [0, 1].
        layers: The layers ``tile_fn`` reads.
        config: Loss settings with ``tile_size > 0`` (pooling, precision, tile size).
        tile_fn: ``tile_fn(core, row, col) -> pytree`` of sums over one tile's core positions;
            ``core`` is ``{layer: (features [T_l, T_l, N_l], valid [T_l, T_l])}``, ``valid`` 1 at
            positions inside the whole image's map.
        halo: Override of :func:`halo_size` (a smaller halo is inexact; tests use it).

    Returns:
        The pytree of ``tile_fn`` summed over the tiles.
    """
    grid, padded, one, init = _setup(vgg, image, layers, config, tile_fn, halo)

    def body(row, col, total):
        return jax.tree_util.tree_map(jnp.add, total, one(_tile_pixels(padded, grid, row, col), row, col))

    return _for_each_tile(grid, body, init)


def tile_sums_and_grad(
    vgg: VGGParams, image: jax.Array, *, layers: Sequence[str], config: LossConfig, tile_fn: TileFn,
    cotangent: Any, halo: int | None = None,
) -> tuple[Any, jax.Array]:
    """The sums of :func:`tile_sums` and the gradient ``[H, W, 3]`` of ``<cotangent, Σ_t s_t>`` in the image.

    For a loss ``f(Σ_t s_t)`` of the summed statistics, ``cotangent = ∂f/∂S`` (at the sums, from
    a first forward pass where ``f`` is not linear) gives ``∂f/∂x = Σ_t <∂f/∂S, ∂s_t/∂x>``: each
    tile's pullback, added into the whole image's gradient. Equal to differentiating the untiled
    loss up to float32 rounding (the sums run in another order). Arguments as :func:`tile_sums`.
    """
    grid, padded, one, zeros = _setup(vgg, image, layers, config, tile_fn, halo)

    def body(row, col, carry):
        grad, total = carry
        sums, pullback = jax.vjp(lambda pixels: one(pixels, row, col), _tile_pixels(padded, grid, row, col))
        (g,) = pullback(cotangent)
        start = (row * grid.tile, col * grid.tile, 0)
        grad = lax.dynamic_update_slice(grad, lax.dynamic_slice(grad, start, g.shape) + g, start)
        return grad, jax.tree_util.tree_map(jnp.add, total, sums)

    padded_grad, total = _for_each_tile(grid, body, (jnp.zeros_like(padded), zeros))
    return total, padded_grad[grid.halo:grid.halo + grid.height, grid.halo:grid.halo + grid.width]


def tile_slice(padded_map: jax.Array, row: jax.Array, col: jax.Array, size: int) -> jax.Array:
    """Tile ``(row, col)``'s core ``[size, size, N]`` of a map zero-padded to whole tiles (:func:`pad_map`)."""
    return lax.dynamic_slice(padded_map, (row * size, col * size, 0), (size, size, padded_map.shape[-1]))


def pad_map(feature_map: jax.Array, grid: TileGrid, name: str) -> jax.Array:
    """Layer ``name``'s whole-image map ``[H_l, W_l, N]`` zero-padded to whole tiles, so every core slice
    (:func:`tile_slice`) has one static shape."""
    size = grid.tile >> layer_level(name)
    return jnp.pad(feature_map, ((0, grid.rows * size - feature_map.shape[0]),
                                 (0, grid.cols * size - feature_map.shape[1]), (0, 0)))
