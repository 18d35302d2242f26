"""Exact tile-by-tile evaluation of the loss and its gradient, for images too large for one VGG pass.

The Gram matrices and the content loss are sums over feature positions, so they can be summed
over tiles. The image is cut into a grid of square tiles of core size ``T``
(``StylizeConfig.tile_size``); each tile is evaluated with a halo of ``halo`` pixels on every
side, at least the receptive-field radius of the deepest layer used
(:func:`~nst_jax.vgg.receptive_radius`), so the features at the tile's core positions are
those of the whole image. ``T`` and the halo are multiples of ``2^k`` for the ``k`` poolings
before the deepest layer (:func:`tile_alignment`), so every tile's pooling windows line up
with the whole image's.

Zero padding: VGG pads every convolution's input with zeros at the border of the map at that
level (``floor(H / 2^k) x floor(W / 2^k)`` after ``k`` poolings), which is not the same as
padding the image. Each tile therefore runs with per-level validity masks
(``VGG19(..., level_masks)``): every convolution's input is zeroed where its position lies
outside the whole image's map at that level. All tiles then have one static shape
``T + 2 * halo``, and the tile loop is one ``lax.fori_loop`` over tile indices with
``lax.dynamic_slice`` of the zero-padded image. Only core positions inside the whole map
contribute to the sums.

Gradient, in two passes over the tiles: pass 1 (forward only) sums the tiles' Gram matrices
``G_l = Σ_t G_l^t``; the style loss and ``∂L/∂G_l`` follow from the sums. Pass 2 differentiates,
per tile, ``Σ_l <∂L/∂G_l, G_l^t> + L_content^t`` with respect to the tile's pixels and adds the
result into the whole image's gradient; since ``∂L/∂x = Σ_t Σ_l <∂L/∂G_l, ∂G_l^t/∂x>`` this is the
untiled gradient, up to float32 rounding (the sums run in another order). The TV term is
evaluated on the whole image. :func:`total_loss` wraps this as a ``jax.custom_vjp`` function, so
``jax.value_and_grad`` of it (Adam, L-BFGS's line search) runs the two passes.

Supported: the Gram style loss (several styles blended through ``style_reference``), the content
loss, per-layer weights, both poolings and precisions; not region masks, ``"meancov"`` or ``"w2"``.
Cost: each tile's halo is evaluated again by its neighbours, about ``((T + 2 halo) / T)²`` times
the untiled work, plus the forward pass 1.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from nst_jax import losses
from nst_jax.config import LossConfig, LossWeights, tile_alignment
from nst_jax.errors import NSTError
from nst_jax.vgg import VGGParams, layer_channels, layer_level, receptive_radius
from nst_jax.vgg import features as vgg_features

if TYPE_CHECKING:  # objective imports this module: the type only, for annotations
    from nst_jax.objective import Targets


def halo_size(layers: Sequence[str]) -> int:
    """The smallest exact halo for ``layers``: :func:`~nst_jax.vgg.receptive_radius` rounded up to
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


def tiles(config: LossConfig, shape: Sequence[int]) -> bool:
    """Whether an image of ``shape`` ``(H, W, ...)`` is evaluated in tiles: ``config.tile_size`` is set
    and smaller than the image's longest side (one tile covering everything would only add halo)."""
    return bool(config.tile_size) and max(shape[0], shape[1]) > config.tile_size


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


def _level_masks(grid: TileGrid, row: jax.Array, col: jax.Array, levels: int) -> list[jax.Array]:
    """Validity masks ``[span / 2^k, span / 2^k]`` of tile ``(row, col)`` for levels ``k = 0..levels``."""
    masks = []
    for k in range(levels + 1):
        size = grid.span >> k
        offsets = jnp.arange(size)
        # Global position of the tile's first pixel at level k (exact: tile and halo are multiples of 2^k).
        ys = (row * grid.tile - grid.halo) // 2**k + offsets
        xs = (col * grid.tile - grid.halo) // 2**k + offsets
        valid_y = (ys >= 0) & (ys < grid.height >> k)
        valid_x = (xs >= 0) & (xs < grid.width >> k)
        masks.append((valid_y[:, None] & valid_x[None, :]).astype(jnp.float32))
    return masks


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
    levels = max(layer_level(name) for name in layers)
    masks = _level_masks(grid, row, col, levels)
    feats = vgg_features(vgg, pixels, layers=layers, pooling=config.pooling, precision=config.precision,
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


def _check(targets: Targets) -> None:
    # StylizeConfig already refuses tiling with a non-Gram style loss; masks arrive with the targets.
    if targets.masks is not None:
        raise NSTError("tiled evaluation does not support region masks")


def features(
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


def grams(
    vgg: VGGParams, image: jax.Array, *, layers: Sequence[str], config: LossConfig, halo: int | None = None,
) -> dict[str, tuple[jax.Array, int]]:
    """Whole-image Gram matrices summed over tiles (equal to ``gram_matrix`` of the features up to rounding).

    Args:
        vgg: VGG-19 parameters.
        image: ``[H, W, 3]`` RGB in [0, 1].
        layers: Layer names.
        config: Loss settings with ``tile_size > 0``.
        halo: Override of :func:`halo_size`.

    Returns:
        ``{layer: (G [N_l, N_l], M_l)}``, ``M_l = (H >> k) * (W >> k)`` the positions ``G`` sums over.
    """
    grid = tile_grid(image.shape, config.tile_size, layers, halo)
    padded = _pad(image, grid)
    init = {name: jnp.zeros((layer_channels(name),) * 2, jnp.float32) for name in layers}

    def body(row, col, total):
        core = _core_features(vgg, _tile_pixels(padded, grid, row, col), row, col, grid, layers=layers,
                              config=config)
        return {name: total[name] + losses.gram_matrix(f * m[:, :, None]) for name, (f, m) in core.items()}

    total = _for_each_tile(grid, body, init)
    return {name: (g, _positions(grid, name)) for name, g in total.items()}


def _positions(grid: TileGrid, name: str) -> int:
    k = layer_level(name)
    return (grid.height >> k) * (grid.width >> k)


class _Pieces(NamedTuple):
    """What one evaluation shares between its passes (all closed over by the tile loop bodies).

    ``content_factors[l]`` turns layer ``l``'s summed squared error into its loss: ``1 / ‖P_l‖²``
    over the whole target (relative units) or ``½`` (paper units), so tiles add up exactly.
    """

    grid: TileGrid
    padded: jax.Array
    content_targets: dict[str, jax.Array]
    content_factors: dict[str, jax.Array]


def _pieces(image, targets: Targets, config: LossConfig, halo) -> _Pieces:
    _check(targets)
    grid = tile_grid(image.shape, config.tile_size, config.feature_layers, halo)
    content_targets, factors = {}, {}
    if config.uses_content:
        # Padded to whole tiles so each tile's core slice has a static shape.
        for name in config.content_layers:
            t, size = targets.content[name], grid.tile >> layer_level(name)
            content_targets[name] = jnp.pad(t, ((0, grid.rows * size - t.shape[0]),
                                                (0, grid.cols * size - t.shape[1]), (0, 0)))
            factors[name] = losses.content_factor(t, units=config.loss_units)
    return _Pieces(grid, _pad(image, grid), content_targets, factors)


def _tile_stats(
    pixels: jax.Array, row: jax.Array, col: jax.Array, vgg: VGGParams, weights: LossWeights, pieces: _Pieces, *,
    config: LossConfig, style: bool, content: bool,
) -> tuple[dict[str, jax.Array], jax.Array]:
    """One tile's Gram matrices ``{layer: [N, N]}`` over its core (if ``style``) and its share of the
    weighted content loss ``α Σ_l c_l L_l`` (if ``content``; else 0)."""
    grid = pieces.grid
    layers = tuple(dict.fromkeys((config.content_layers if content else ()) + (config.style_layers if style else ())))
    core = _core_features(vgg, pixels, row, col, grid, layers=layers, config=config)
    tile_grams = {name: losses.gram_matrix(core[name][0] * core[name][1][:, :, None])
                  for name in (config.style_layers if style else ())}
    content_value = jnp.zeros((), jnp.float32)
    if content:
        for i, name in enumerate(config.content_layers):
            f, m = core[name]
            size = f.shape[0]
            target = lax.dynamic_slice(pieces.content_targets[name], (row * size, col * size, 0), f.shape)
            error = jnp.sum(jnp.square((f - target) * m[:, :, None]))
            content_value += weights.content_layers[i] * pieces.content_factors[name] * error
        content_value = weights.content * content_value
    return tile_grams, content_value


def _style_value(total_grams: Mapping[str, jax.Array], reference: Mapping, weights: LossWeights, grid: TileGrid,
                 config: LossConfig) -> jax.Array:
    """``β Σ_l w_l E_l`` from the whole image's Gram matrices (as ``objective.style_term`` without masks)."""
    value = jnp.zeros((), jnp.float32)
    for i, name in enumerate(config.style_layers):
        value += weights.style_layers[i] * losses.gram_layer_loss(
            total_grams[name], reference[name]["gram"], num_positions=_positions(grid, name), units=config.loss_units)
    return weights.style * value


def _pass_sums(vgg: VGGParams, weights: LossWeights, pieces: _Pieces, *, config: LossConfig, content: bool):
    """Pass 1 (forward only): the Gram matrices and (if ``content``) the content loss, summed over tiles."""
    layers = config.style_layers if config.uses_style else ()
    init = ({name: jnp.zeros((layer_channels(name),) * 2, jnp.float32) for name in layers},
            jnp.zeros((), jnp.float32))

    def body(row, col, carry):
        pixels = _tile_pixels(pieces.padded, pieces.grid, row, col)
        g, c = _tile_stats(pixels, row, col, vgg, weights, pieces, config=config, style=config.uses_style,
                           content=content)
        return {name: carry[0][name] + g[name] for name in g}, carry[1] + c

    return _for_each_tile(pieces.grid, body, init)


def loss_terms(
    image: jax.Array, vgg: VGGParams, targets: Targets, weights: LossWeights, *, config: LossConfig,
    reference: Mapping | None = None, halo: int | None = None,
) -> dict[str, jax.Array]:
    """:func:`nst_jax.objective.loss_terms`, evaluated tile by tile (one forward pass over the tiles).

    Args:
        image: ``[H, W, 3]`` RGB being optimised.
        vgg: VGG-19 parameters.
        targets: ``objective.Targets`` (no masks).
        weights: Loss weights.
        config: Loss settings with ``tile_size > 0`` and the Gram style loss.
        reference: ``objective.style_reference(targets, weights)`` (needed when the config uses style).
        halo: Override of :func:`halo_size`.

    Returns:
        ``{"content", "style", "tv", "total"}`` scalars.
    """
    pieces = _pieces(image, targets, config, halo)
    total_grams, content = _pass_sums(vgg, weights, pieces, config=config, content=config.uses_content)
    style = _style_value(total_grams, reference, weights, pieces.grid, config) if config.uses_style else (
        jnp.zeros((), jnp.float32))
    tv = weights.tv * losses.tv_loss(image, units=config.loss_units)
    return {"content": content, "style": style, "tv": tv, "total": content + style + tv}


def terms_and_grad(
    image: jax.Array, vgg: VGGParams, targets: Targets, weights: LossWeights, *, config: LossConfig,
    reference: Mapping | None = None, halo: int | None = None,
) -> tuple[dict[str, jax.Array], jax.Array]:
    """The loss terms and the total's gradient ``[H, W, 3]`` with respect to the image, tile by tile.

    Arguments as :func:`loss_terms`. Equal to ``jax.value_and_grad`` of the untiled total up to
    float32 rounding. Runs pass 1 (forward, Gram sums) when the config uses style, then pass 2
    (per tile: value and gradient of the linearised style loss plus the content loss).
    """
    pieces = _pieces(image, targets, config, halo)
    grid = pieces.grid
    style, style_grads = jnp.zeros((), jnp.float32), {}
    if config.uses_style:
        total_grams, _ = _pass_sums(vgg, weights, pieces, config=config, content=False)
        style, style_grads = jax.value_and_grad(_style_value)(total_grams, reference, weights, grid, config)
        style_grads = lax.stop_gradient(style_grads)

    def tile_objective(pixels, row, col):
        g, c = _tile_stats(pixels, row, col, vgg, weights, pieces, config=config, style=config.uses_style,
                           content=config.uses_content)
        linear = sum((jnp.sum(style_grads[name] * g[name]) for name in g), jnp.zeros((), jnp.float32))
        return linear + c, c

    def body(row, col, carry):
        grad, content = carry
        pixels = _tile_pixels(pieces.padded, grid, row, col)
        (_, c), g = jax.value_and_grad(tile_objective, has_aux=True)(pixels, row, col)
        start = (row * grid.tile, col * grid.tile, 0)
        grad = lax.dynamic_update_slice(grad, lax.dynamic_slice(grad, start, g.shape) + g, start)
        return grad, content + c

    padded_grad, content = _for_each_tile(grid, body, (jnp.zeros_like(pieces.padded), jnp.zeros((), jnp.float32)))
    tv, tv_grad = jax.value_and_grad(lambda x: weights.tv * losses.tv_loss(x, units=config.loss_units))(image)
    grad = padded_grad[grid.halo:grid.halo + grid.height, grid.halo:grid.halo + grid.width] + tv_grad
    return {"content": content, "style": style, "tv": tv, "total": content + style + tv}, grad


def value_and_grad(
    image: jax.Array, vgg: VGGParams, targets: Targets, weights: LossWeights, *, config: LossConfig,
    reference: Mapping | None = None, halo: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The total loss and its gradient ``[H, W, 3]``, tile by tile (see :func:`terms_and_grad`)."""
    terms, grad = terms_and_grad(image, vgg, targets, weights, config=config, reference=reference, halo=halo)
    return terms["total"], grad


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _total_and_terms(image, vgg, targets, weights, reference, config):
    terms = loss_terms(image, vgg, targets, weights, config=config, reference=reference)
    return terms["total"], terms


def _total_and_terms_fwd(image, vgg, targets, weights, reference, config):
    terms, grad = terms_and_grad(image, vgg, targets, weights, config=config, reference=reference)
    return (terms["total"], terms), (grad, vgg, targets, weights, reference)


def _total_and_terms_bwd(config, residuals, cotangents):
    # The terms are reported, not differentiated (differentiable_terms stops their gradient).
    grad, *others = residuals
    zeros = jax.tree_util.tree_map(jnp.zeros_like, tuple(others))
    return (cotangents[0] * grad, *zeros)


_total_and_terms.defvjp(_total_and_terms_fwd, _total_and_terms_bwd)


def differentiable_terms(
    image: jax.Array, vgg: VGGParams, targets: Targets, weights: LossWeights, reference: Mapping | None,
    config: LossConfig,
) -> dict[str, jax.Array]:
    """The tiled loss terms ``{"content", "style", "tv", "total"}``; ``"total"`` is differentiable in
    ``image`` ``[H, W, 3]``.

    Evaluated alone it is :func:`loss_terms` (one forward pass); under ``jax.grad`` /
    ``jax.value_and_grad`` it runs :func:`terms_and_grad` instead of differentiating through the
    tile loop. Only the image gets a gradient (zeros for every other argument), and only through
    ``"total"``: the other entries are reported values (their gradient is stopped). Positional
    arguments only: ``config`` is static.
    """
    total, terms = _total_and_terms(image, vgg, targets, weights, reference, config)
    reported = lax.stop_gradient({k: v for k, v in terms.items() if k != "total"})
    return {**reported, "total": total}


def total_loss(
    image: jax.Array, vgg: VGGParams, targets: Targets, weights: LossWeights, reference: Mapping | None,
    config: LossConfig,
) -> jax.Array:
    """The tiled total loss as a differentiable function of ``image`` (see :func:`differentiable_terms`)."""
    return differentiable_terms(image, vgg, targets, weights, reference, config)["total"]
