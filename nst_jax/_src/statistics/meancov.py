"""Mean and covariance of a layer's features, matched separately.

The Gram matrix per position of eq. 3 is ``G / M = C + μμᵀ``; this statistic matches its two
parts separately, each in the units of the Gram loss (features⁴), so the Gram loss's style
weight carries over. For non-negative ReLU features ``μμᵀ`` determines ``μ``. Several styles
blend as a mixture of their feature distributions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nst_jax._src.statistics.base import Arrays, Statistic, check_units, relative


def feature_stats(features: jax.Array, mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """Mean and covariance of a layer's features over positions.

    Args:
        features: ``[H, W, N]`` feature map.
        mask: Optional ``[H, W]`` non-negative position weights (a region); the
            statistics are then weighted: ``μ = Σ m f / Σ m``, ``C = Σ m (f − μ)(f − μ)ᵀ / Σ m``.

    Returns:
        ``(mean [N], cov [N, N])``; the covariance divides by the (weighted)
        number of positions, not by ``M − 1``.
    """
    f = features.reshape(-1, features.shape[-1])
    w = jnp.ones((f.shape[0],), f.dtype) if mask is None else mask.reshape(-1).astype(f.dtype)
    total = jnp.maximum(jnp.sum(w), 1e-8)
    mean = (w @ f) / total
    centred = f - mean
    cov = jnp.matmul((centred * w[:, None]).T, centred, precision=jax.lax.Precision.HIGHEST) / total
    return mean, cov


def meancov_layer_loss(
    features: jax.Array, target_mean: jax.Array, target_cov: jax.Array, mask: jax.Array | None = None, *,
    units: str = "relative",
) -> jax.Array:
    """``E_l = (‖C − C_s‖²_F + ‖μμᵀ − μ_sμ_sᵀ‖²_F) / (4 N²)`` (paper-style units), or divided by its
    value at zero features, ``‖C_s‖²_F + ‖μ_sμ_sᵀ‖²_F`` (relative).

    Args:
        features: ``[H, W, N]`` features of the image being optimised.
        target_mean: ``[N]`` mean of the style features.
        target_cov: ``[N, N]`` covariance of the style features (see :func:`feature_stats`).
        mask: Optional ``[H, W]`` region weights for the image's statistics.
        units: ``"relative"`` or ``"paper"``.

    Returns:
        Scalar loss.
    """
    check_units(units)
    n = features.shape[-1]
    mean, cov = feature_stats(features, mask)
    target_outer = jnp.outer(target_mean, target_mean)
    error = jnp.sum(jnp.square(cov - target_cov)) + jnp.sum(jnp.square(jnp.outer(mean, mean) - target_outer))
    if units == "relative":
        return relative(error, jnp.sum(jnp.square(target_cov)) + jnp.sum(jnp.square(target_outer)))
    return error / (4.0 * n**2)


def summary(features: jax.Array, mask: jax.Array | None) -> dict[str, jax.Array]:
    """``{"mean" [N], "cov" [N, N]}`` of one image's layer (:func:`feature_stats`)."""
    mean, cov = feature_stats(features, mask)
    return {"mean": mean, "cov": cov}


def target(summary: Arrays, mass: jax.Array) -> dict[str, jax.Array]:
    """The style's mean and covariance, as they are (they do not depend on the number of positions)."""
    del mass
    return {"mean": summary["mean"], "cov": summary["cov"]}


def mixture(targets: Arrays, b: jax.Array) -> dict[str, jax.Array]:
    """Mean and covariance of the mixture of ``S`` styles' feature distributions with weights ``b``:
    mean ``Σ b_k μ_k``, covariance ``Σ b_k (C_k + μ_k μ_kᵀ) − μμᵀ``."""
    mean = jnp.tensordot(b, targets["mean"], 1)
    second = jnp.tensordot(b, targets["cov"] + targets["mean"][:, :, None] * targets["mean"][:, None, :], 1)
    return {"mean": mean, "cov": second - jnp.outer(mean, mean)}


def _loss(features: jax.Array, reference: Arrays, mask: jax.Array | None, units: str) -> jax.Array:
    return meancov_layer_loss(features, reference["mean"], reference["cov"], mask, units=units)


def target_bytes(n: int) -> int:
    """Float32 bytes of a mean ``[N]`` and a covariance ``[N, N]``."""
    return 4 * (n * n + n)


STATISTIC = Statistic(
    name="meancov", help="mean and covariance",
    summary=summary, target=target, blend=mixture, loss=_loss, target_bytes=target_bytes)
