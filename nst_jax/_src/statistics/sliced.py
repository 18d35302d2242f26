"""Sliced Wasserstein distance between a layer's feature distributions (Heitz et al., CVPR 2021).

A layer's ``M`` feature vectors (``[H, W, N]``) are projected on ``P = N`` fixed unit directions
``θ_p``; along each, the output's sorted projections are compared with the style's quantile
function ``Q_p``: ``E_l = (1/P) Σ_p (1/M) Σ_i (sort(F θ_p)_i − Q_p((i + ½) / M))²``, the mean
over directions of the squared 1-D Wasserstein-2 distance (paper units, feature²; relative units
divide by ``(1/P) Σ_p ∫ Q_p(u)² du``, its value at all-zero features). Unlike the Gram matrix or
a Gaussian fit, it matches the whole distribution along every direction, not its first two moments.

Numbers of positions differ between images, so a style's target is its quantile function at
:data:`QUANTILES` fixed levels ``(j + ½) / Q`` (linear interpolation between its sorted
projections, so styles of any size stack and blend), read back at the output's levels by linear
interpolation (:func:`resample`). With a region mask the distributions are weighted: a sorted
position's level is the midpoint of its cumulative weight. Several styles blend as the 1-D
Wasserstein barycentre along each direction (``Σ b_k Q_k``), not as a mixture.

The directions are drawn once per channel count ``N`` from NumPy's PCG64 seeded with ``N``
(:func:`directions`): independent of JAX's PRNG settings, so runs are reproducible and resumed
checkpoints bitwise equal; ``finish`` puts them into the reference, so the compiled step takes
them as an argument rather than baking them in as constants.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax._src.statistics.base import Arrays, Statistic, check_units, relative

# Levels of a style's stored quantile function: enough that a 1-D distribution of up to ~10^5
# positions loses only its outermost 1/2048 tails; [N, 1024] float32 per layer.
QUANTILES = 1024


@functools.cache
def _directions_np(n: int) -> np.ndarray:
    d = np.random.default_rng(n).standard_normal((n, n))
    return (d / np.linalg.norm(d, axis=0, keepdims=True)).astype(np.float32)


def directions(n: int) -> jax.Array:
    """The ``P = n`` unit projection directions of a layer with ``n`` filters, fixed for ``n``.

    Args:
        n: Number of filters ``N``.

    Returns:
        ``[N, P]`` float32, each column of unit length (Gaussian draws from NumPy's PCG64
        seeded with ``n``, normalised).
    """
    return jnp.asarray(_directions_np(int(n)))


def resample(values: jax.Array, levels: jax.Array) -> jax.Array:
    """A sorted sample's quantile function, read at ``levels`` by linear interpolation.

    ``values[p, i]`` sits at level ``(i + ½) / K``; levels outside ``[½/K, 1 − ½/K]`` take the
    end values.

    Args:
        values: ``[P, K]`` sorted along the last axis (one row per direction).
        levels: ``[P, L]`` or ``[1, L]`` levels in [0, 1].

    Returns:
        ``[P, L]``.
    """
    p, k = values.shape
    pos = jnp.clip(levels * k - 0.5, 0.0, k - 1)
    lo = jnp.floor(pos)
    frac = pos - lo
    lo = jnp.broadcast_to(lo.astype(jnp.int32), (p, levels.shape[1]))
    hi = jnp.minimum(lo + 1, k - 1)
    return (jnp.take_along_axis(values, lo, axis=1) * (1.0 - frac)
            + jnp.take_along_axis(values, hi, axis=1) * frac)


def projections(features: jax.Array, dirs: jax.Array) -> jax.Array:
    """``[P, M]``: the ``M = H * W`` feature vectors of ``[H, W, N]`` projected on ``dirs`` ``[N, P]``
    (positions on the last axis: XLA sorts rows faster than columns on CPU)."""
    f = features.reshape(-1, features.shape[-1])
    return jnp.matmul(dirs.T, f.T, precision=jax.lax.Precision.HIGHEST)


def weighted_sort(x: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Projections sorted per direction with their weights and cumulative-weight levels.

    Args:
        x: ``[P, M]`` projections.
        mask: ``[H, W]`` non-negative weights of the ``M`` positions.

    Returns:
        ``(x [P, M], w [P, M], levels [P, M])``: each row sorted ascending, the weights in the
        same order, and each position's level ``(Σ_{j<i} w_j + w_i / 2) / Σ w``.
    """
    w = mask.reshape(-1).astype(x.dtype)
    order = jnp.argsort(x, axis=1)
    xs, ws = jnp.take_along_axis(x, order, axis=1), w[order]
    return xs, ws, (jnp.cumsum(ws, axis=1) - 0.5 * ws) / jnp.maximum(jnp.sum(w), 1e-8)


def _uniform_levels(m: int, dtype) -> jax.Array:
    """``[1, m]`` levels ``(i + ½) / m``: those of ``m`` equally weighted sorted positions."""
    return ((jnp.arange(m, dtype=dtype) + 0.5) / m)[None, :]


def sliced_layer_loss(features: jax.Array, quantiles: jax.Array, dirs: jax.Array, mask: jax.Array | None = None, *,
                      units: str = "relative") -> jax.Array:
    """The sliced Wasserstein style loss of one layer.

    Args:
        features: ``[H, W, N]`` output features.
        quantiles: ``[P, Q]`` the style's quantile function per direction at levels ``(j + ½) / Q``.
        dirs: ``[N, P]`` the directions (:func:`directions`).
        mask: Optional ``[H, W]`` position weights (a region) of the output.
        units: ``"paper"``: ``(1/P) Σ_p Σ_i w_i (x_pi − Q_p(level_pi))² / Σ w`` (``x_p`` sorted);
            ``"relative"``: that divided by ``mean(quantiles²)``.

    Returns:
        Scalar loss.
    """
    check_units(units)
    x = projections(features, dirs)
    if mask is None:  # a plain sort (differentiable as it is), equal levels
        xs = jnp.sort(x, axis=1)
        w2 = jnp.mean(jnp.square(xs - resample(quantiles, _uniform_levels(xs.shape[1], xs.dtype))))
    else:
        xs, ws, levels = weighted_sort(x, mask)
        total = jnp.maximum(jnp.sum(ws[0]), 1e-8)
        w2 = jnp.mean(jnp.sum(ws * jnp.square(xs - resample(quantiles, levels)), axis=1)) / total
    if units == "relative":
        return relative(w2, jnp.mean(jnp.square(quantiles)))
    return w2


def summary(features: jax.Array, mask: jax.Array | None) -> dict[str, jax.Array]:
    """``{"quantiles": [P, Q]}``: the (weighted) quantile function of each direction's projections."""
    x = projections(features, directions(features.shape[-1]))
    u = _uniform_levels(QUANTILES, x.dtype)
    if mask is None:
        return {"quantiles": resample(jnp.sort(x, axis=1), u)}
    xs, _, levels = weighted_sort(x, mask)
    return {"quantiles": jax.vmap(jnp.interp, in_axes=(None, 0, 0))(u[0], levels, xs)}


def target(summary: Arrays, mass: jax.Array) -> dict[str, jax.Array]:
    """The style's quantiles, as they are (they do not depend on the number of positions)."""
    del mass
    return {"quantiles": summary["quantiles"]}


def barycentre(targets: Arrays, b: jax.Array) -> dict[str, jax.Array]:
    """``Σ b_k Q_k``: the 1-D Wasserstein barycentre of ``S`` styles along each direction."""
    return {"quantiles": jnp.tensordot(b, targets["quantiles"], 1)}


def _finish(reference: Arrays) -> dict[str, jax.Array]:
    q = reference["quantiles"]
    dirs = directions(q.shape[-2])
    return {**reference, "directions": dirs if q.ndim == 2 else jnp.broadcast_to(dirs, (q.shape[0],) + dirs.shape)}


def _loss(features: jax.Array, reference: Arrays, mask: jax.Array | None, units: str) -> jax.Array:
    return sliced_layer_loss(features, reference["quantiles"], reference["directions"], mask, units=units)


STATISTIC = Statistic(
    name="sliced", help="sliced Wasserstein distance (Heitz et al. 2021)",
    summary=summary, target=target, blend=barycentre, loss=_loss, finish=_finish,
    target_bytes=lambda n: 4 * (QUANTILES * n + n * n))
